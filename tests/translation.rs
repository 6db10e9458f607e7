//! pix2pix and CycleGAN (issue 13): they learn on a tiny subset (a test that fails if the
//! step did not update the right networks), their commands write what the other models write,
//! `--resume` gives the run never stopped, and bad input is refused naming the problem.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use deepgen::autograd::clear_tape;
use deepgen::checkpoint;
use deepgen::data::Mnist;
use deepgen::data::domains::{restyle, split_domains, top_half_mask};
use deepgen::models::{CycleGan, Direction, Pix2Pix};
use deepgen::optim::Adam;
use deepgen::train::Optimizer;
use deepgen::train::cyclegan::{LAMBDA_CYCLE, LAMBDA_IDENTITY, cyclegan_step, translate_images};
use deepgen::train::pix2pix::{LAMBDA, complete, pix2pix_step};
use deepgen::{Tensor, no_grad};
use rand::SeedableRng;

fn mnist() -> Mnist {
    Mnist::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/mnist"
    )))
    .unwrap()
}

/// Adam with betas (0.5, 0.999) at lr 2e-3, ten times the papers' rate, so that a few steps
/// show learning.
fn adam(params: Vec<(String, Tensor)>) -> Optimizer {
    Optimizer::new(
        Adam::new(2e-3).with_betas(0.5, 0.999),
        params.into_iter().map(|(_, t)| t).collect(),
    )
}

fn mean_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / a.len() as f64
}

/// pix2pix, GAN + L1 and L1 alone, on 32 digits for 25 steps: the L1 of the completions to
/// the whole digits (eval mode, the measure `deepgen translate --eval` reports) must fall to
/// under 60% of the untrained model's. It stays put if the generator's optimizer is not
/// stepped or the gradients do not reach it through the skips.
#[test]
fn pix2pix_learns_to_complete_digits_on_a_tiny_subset() {
    let gpu = gpu();
    let data = mnist().train.truncate(32);
    let mask = Tensor::from_slice(&gpu, &top_half_mask(28, 28), [784]).unwrap();
    let inputs: Vec<f32> = data
        .images
        .chunks(784)
        .flat_map(|img| {
            img.iter()
                .zip(top_half_mask(28, 28))
                .map(|(v, m)| v * m)
                .collect::<Vec<_>>()
        })
        .collect();
    for l1_only in [false, true] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let model = Pix2Pix::new(&gpu, 8, l1_only, &mut rng).unwrap();
        let l1_now = |model: &Pix2Pix| {
            use deepgen::nn::Module;
            model.set_training(false);
            let out = complete(model, &gpu, &inputs).unwrap();
            model.set_training(true);
            mean_abs(&out, &data.images)
        };
        let before = l1_now(&model);
        let (mut g, mut d) = (
            adam(model.generator_parameters()),
            adam(model.discriminator_parameters()),
        );
        let y = tensor(&data.images, &[32, 784]);
        let mut last = None;
        for _ in 0..25 {
            let s = pix2pix_step(
                &model,
                &mut g,
                (!l1_only).then_some(&mut d),
                &y,
                &mask,
                LAMBDA,
            )
            .unwrap();
            assert_eq!(s.d_loss.is_some(), !l1_only);
            last = Some(s);
            clear_tape();
        }
        let s = last.unwrap();
        let train_l1 = s.l1.item().unwrap();
        if let (Some(dl), Some(gg)) = (&s.d_loss, &s.g_gan) {
            assert!(dl.item().unwrap().is_finite() && gg.item().unwrap().is_finite());
        }
        let after = l1_now(&model);
        assert!(
            after < 0.6 * before && train_l1.is_finite(),
            "l1_only {l1_only}: test-mode L1 {before:.4} -> {after:.4} (train {train_l1:.4})"
        );
    }
}

/// CycleGAN on 16 digits per domain for 20 steps: the cycle L1 |F(G(a)) - a| falls to under
/// 70% of the untrained model's, and G(a) moves toward B's style (bright background): its mean
/// intensity rises above the untrained output's.
#[test]
fn cyclegan_learns_the_cycle_on_a_tiny_subset() {
    let gpu = gpu();
    let (a, b) = split_domains(&mnist().train.truncate(32));
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let model = CycleGan::new(&gpu, 8, 1, &mut rng).unwrap();
    let measure = |model: &CycleGan| {
        let g = translate_images(model, &gpu, Direction::AToB, &a.images).unwrap();
        let fg = translate_images(model, &gpu, Direction::BToA, &g).unwrap();
        (
            mean_abs(&fg, &a.images),
            g.iter().map(|&v| f64::from(v)).sum::<f64>() / g.len() as f64,
        )
    };
    let (cycle_before, bright_before) = measure(&model);
    let (mut g, mut d) = (
        adam(model.generator_parameters()),
        adam(model.discriminator_parameters()),
    );
    let (ta, tb) = (tensor(&a.images, &[16, 784]), tensor(&b.images, &[16, 784]));
    for _ in 0..20 {
        let s = cyclegan_step(
            &model,
            &mut g,
            &mut d,
            &ta,
            &tb,
            (LAMBDA_CYCLE, LAMBDA_IDENTITY),
        )
        .unwrap();
        let _ng = no_grad();
        assert!(s.d_a.item().unwrap().is_finite() && s.d_b.item().unwrap().is_finite());
        clear_tape();
    }
    let (cycle_after, bright_after) = measure(&model);
    assert!(
        cycle_after < 0.7 * cycle_before,
        "cycle L1 {cycle_before:.4} -> {cycle_after:.4}"
    );
    assert!(
        bright_after > bright_before + 0.05,
        "mean intensity of G(a) {bright_before:.3} -> {bright_after:.3} (B's: {:.3})",
        b.images.iter().map(|&v| f64::from(v)).sum::<f64>() / b.images.len() as f64
    );
    // Restyling is what the domains say: B's mean intensity is high (inverted).
    assert!(restyle(&a).images.iter().sum::<f32>() / a.images.len() as f32 > 0.6);
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepgen"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn deepgen")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "deepgen {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        !o.status.success(),
        "deepgen {args:?} should fail: {}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// metrics.jsonl without wall-clock fields.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            m.remove("seconds");
            m.remove("images_per_second");
            v
        })
        .collect()
}

fn tensor_bits(path: &Path) -> BTreeMap<String, Vec<u32>> {
    checkpoint::load(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, (_, v))| (n, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// Trains `model` for 2 epochs straight, and for 1 epoch then `--resume --epochs 2`: the same
/// metrics, weights and grids. Returns the straight run's directory (kept in `dir`).
fn resume_equals_straight(dir: &Path, model: &str, args: &[&str]) -> std::path::PathBuf {
    let (straight, resumed) = (
        dir.join(format!("{model}_straight")),
        dir.join(format!("{model}_resumed")),
    );
    let base = |out: &Path, epochs: &str| -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            model,
            "--no-progress",
            "--out",
            s(out),
            "--epochs",
            epochs,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(args.iter().map(|x| x.to_string()));
        v
    };
    let as_str = |v: &[String]| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let run_v = |v: Vec<String>| {
        let joined = as_str(&v);
        let args: Vec<&str> = joined.split('\u{0}').collect();
        ok(&args)
    };
    run_v(base(&straight, "2"));
    run_v(base(&resumed, "1"));
    let mut again = base(&resumed, "2");
    again.push("--resume".into());
    assert!(run_v(again).contains("resuming"));
    assert_eq!(metrics(&resumed), metrics(&straight), "{model}: metrics");
    assert_eq!(
        tensor_bits(&resumed.join("model.safetensors")),
        tensor_bits(&straight.join("model.safetensors")),
        "{model}: weights"
    );
    for f in std::fs::read_dir(&straight).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "png") {
            let name = p.file_name().unwrap();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(resumed.join(name)).unwrap(),
                "{model}: {name:?}"
            );
        }
    }
    straight
}

#[test]
fn pix2pix_command_writes_its_outputs_resumes_and_translates() {
    let dir = tempfile::tempdir().unwrap();
    let out = resume_equals_straight(
        dir.path(),
        "pix2pix",
        &["--limit", "64", "--batch-size", "32", "--width", "4"],
    );
    let m = metrics(&out);
    assert_eq!(m.len(), 2);
    for key in ["d_loss", "g_gan", "train_l1", "test_l1", "test_images"] {
        assert!(
            m[1].get(key).is_some_and(|v| !v.is_null()),
            "{key}: {}",
            m[1]
        );
    }
    for f in [
        "translations_epoch_001.png",
        "translations_epoch_002.png",
        "translations.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let ckpt = checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(ckpt.metadata["model"], "pix2pix");
    assert_eq!(ckpt.metadata["width"], "4");
    assert_eq!(ckpt.metadata["l1_only"], "false");
    assert_eq!(ckpt.metadata["epoch"], "2");

    let model = s(&out.join("model.safetensors")).to_string();
    let png = dir.path().join("t.png");
    let json = dir.path().join("t.json");
    let stdout = ok(&[
        "translate",
        "--checkpoint",
        &model,
        "--out",
        s(&png),
        "--n",
        "4",
        "--eval",
        "--test-images",
        "50",
        "--json",
        s(&json),
    ]);
    assert!(
        png.is_file() && stdout.contains("classifier accuracy"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["test_images"], 50);
    assert!(r["l1"].as_f64().unwrap() > 0.0 && r["classifier_fid"].as_f64().is_some());

    // Bad input, each named.
    let err = fails(&[
        "translate",
        "--checkpoint",
        &model,
        "--out",
        s(&png),
        "--direction",
        "b-to-a",
    ]);
    assert!(err.contains("pix2pix") && err.contains("b-to-a"), "{err}");
    let err = fails(&[
        "translate",
        "--checkpoint",
        &model,
        "--out",
        s(&dir.path().join("t.jpg")),
    ]);
    assert!(err.contains("--out"), "{err}");
    let err = fails(&[
        "translate",
        "--checkpoint",
        &model,
        "--out",
        s(&png),
        "--json",
        s(&json),
    ]);
    assert!(err.contains("--eval"), "{err}");
    let err = fails(&["sample", "--checkpoint", &model, "--out", s(&png)]);
    assert!(err.contains("deepgen translate"), "{err}");
    let err = fails(&[
        "train",
        "vae",
        "--l1-only",
        "--out",
        s(&dir.path().join("v")),
    ]);
    assert!(err.contains("--l1-only"), "{err}");
    // A resume with the other loss is refused naming the setting.
    let err = fails(&[
        "train",
        "pix2pix",
        "--no-progress",
        "--out",
        s(&out),
        "--resume",
        "--epochs",
        "3",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--width",
        "4",
        "--l1-only",
    ]);
    assert!(err.contains("l1_only"), "{err}");
}

#[test]
fn cyclegan_command_writes_its_outputs_resumes_and_translates_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--width",
        "4",
        "--blocks",
        "1",
    ];
    let out = resume_equals_straight(
        dir.path(),
        "cyclegan",
        &[&settings[..], &["--lambda-identity", "5"]].concat(),
    );
    let m = metrics(&out);
    for key in [
        "d_a",
        "d_b",
        "g_gan",
        "cycle_l1",
        "identity_l1",
        "test_cycle_l1",
        "test_cycle_l1_b",
    ] {
        assert!(
            m[1].get(key).is_some_and(|v| v.is_number()),
            "{key}: {}",
            m[1]
        );
    }
    // --lambda-identity 5 reaches the step (the default, 0, reports 0).
    assert!(m[1]["identity_l1"].as_f64().unwrap() > 0.0, "{}", m[1]);
    for f in [
        "a_to_b_epoch_002.png",
        "b_to_a_epoch_002.png",
        "a_to_b.png",
        "b_to_a.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // The identity weight is a setting of the run: resuming with another one is refused.
    let resume = [
        &[
            "train",
            "cyclegan",
            "--no-progress",
            "--out",
            s(&out),
            "--epochs",
            "3",
        ][..],
        &settings,
        &["--lambda-identity", "0", "--resume"],
    ]
    .concat();
    let err = fails(&resume);
    assert!(err.contains("--lambda-identity"), "{err}");
    let model = s(&out.join("model.safetensors")).to_string();
    for dirn in ["a-to-b", "b-to-a"] {
        let png = dir.path().join(format!("{dirn}.png"));
        ok(&[
            "translate",
            "--checkpoint",
            &model,
            "--out",
            s(&png),
            "--direction",
            dirn,
            "--n",
            "3",
        ]);
        assert!(png.is_file());
    }
    let stdout = ok(&[
        "translate",
        "--checkpoint",
        &model,
        "--out",
        s(&dir.path().join("e.png")),
        "--eval",
        "--test-images",
        "20",
    ]);
    assert!(
        stdout.contains("label preservation A->B") && stdout.contains("cycle L1"),
        "{stdout}"
    );
}

#[test]
fn translate_refuses_other_checkpoints_and_forged_sizes() {
    let gpu = gpu();
    let dir = tempfile::tempdir().unwrap();
    // Another kind of model: named, with what translate takes.
    let vae = dir.path().join("vae");
    ok(&[
        "train",
        "vae",
        "--no-progress",
        "--limit",
        "64",
        "--epochs",
        "1",
        "--out",
        s(&vae),
    ]);
    let err = fails(&[
        "translate",
        "--checkpoint",
        s(&vae.join("model.safetensors")),
        "--out",
        s(&dir.path().join("x.png")),
    ]);
    assert!(
        err.contains("`vae` checkpoint") && err.contains("pix2pix"),
        "{err}"
    );

    // A CycleGAN saved in memory, its metadata then forged: width and blocks each refused.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let model = CycleGan::new(&gpu, 4, 1, &mut rng).unwrap();
    let path = dir.path().join("c.safetensors");
    {
        use deepgen::models::Model;
        use deepgen::nn::Module;
        let state = checkpoint::read_back(&model.named_state()).unwrap();
        checkpoint::save_host(&path, model.kind(), &model.metadata(), &state).unwrap();
    }
    use deepgen::eval::translation::Translator;
    let mut ckpt = checkpoint::load(&path).unwrap();
    assert!(Translator::from_checkpoint(&gpu, &ckpt).is_ok());
    ckpt.metadata.insert("width".into(), "100000".into());
    let err = Translator::from_checkpoint(&gpu, &ckpt)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("width") && err.contains("g_ab.stem.weight"),
        "{err}"
    );
    ckpt.metadata.insert("width".into(), "4".into());
    ckpt.metadata.insert("blocks".into(), "1000000".into());
    let err = Translator::from_checkpoint(&gpu, &ckpt)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("blocks"), "{err}");
}
