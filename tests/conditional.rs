//! The conditional VAE and the conditional GAN (issue 13, parts 1 and 2): the label reaches
//! every network that is told it, a briefly trained conditional VAE draws the digit it is
//! asked for more often than chance, both train on the skeleton with its outputs and resume
//! exactly, and the commands (`sample --class`, `analogies`, `eval`) refuse bad input naming
//! the problem.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::gpu;
use deepgen::checkpoint;
use deepgen::conditional::{class_grid_of, conditional_accuracy};
use deepgen::eval::report::load_classifier;
use deepgen::models::{Cgan, Conditional, Cvae, MlpConfig, one_hot};
use deepgen::nn::Module;
use deepgen::train::{TrainConfig, train_cgan, train_cvae};
use deepgen::{Tensor, no_grad};
use rand::SeedableRng;

fn config(out: &Path, limit: usize, epochs: usize, latent_dim: usize) -> TrainConfig {
    TrainConfig {
        data_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        epochs,
        batch_size: 64,
        limit: Some(limit),
        out_dir: out.to_path_buf(),
        progress: false,
        log_every: 8,
        latent_dim,
        ..TrainConfig::default()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

/// Pixel size of a grid of `rows` x `cols` 28x28 cells (2 pixels of padding, viz.rs).
fn grid_size(rows: u32, cols: u32) -> (u32, u32) {
    (cols * 30 + 2, rows * 30 + 2)
}

#[test]
fn the_label_reaches_the_cvae_encoder_and_decoder() {
    let gpu = gpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let config = MlpConfig {
        latent_dim: 5,
        ..MlpConfig::default()
    };
    let model = Cvae::new(&gpu, config, &mut rng).unwrap();
    let _g = no_grad();
    let z = Tensor::randn(&gpu, [4, 5]).unwrap();
    let x = Tensor::from_slice(&gpu, &[0.5; 4 * 784], [4, 784]).unwrap();
    let (y3, y8) = (
        one_hot(&gpu, &[3; 4]).unwrap(),
        one_hot(&gpu, &[8; 4]).unwrap(),
    );
    let a = model.generate_given(&z, &y3).unwrap().to_vec().unwrap();
    let b = model.generate_given(&z, &y8).unwrap().to_vec().unwrap();
    assert!(max_abs_diff(&a, &b) > 1e-3, "the decoder ignores the label");
    let (mu3, _) = model.encode(&x, &y3).unwrap();
    let (mu8, _) = model.encode(&x, &y8).unwrap();
    assert!(
        max_abs_diff(&mu3.to_vec().unwrap(), &mu8.to_vec().unwrap()) > 1e-3,
        "the encoder ignores the label"
    );
    // The same label twice decodes the same.
    let c = model.generate_given(&z, &y3).unwrap().to_vec().unwrap();
    assert_eq!(a, c);
    // A label outside 0-9 is refused, naming it.
    let e = one_hot(&gpu, &[1, 10]).err().unwrap().to_string();
    assert!(e.contains("label 10") && e.contains("row 1"), "{e}");
}

#[test]
fn the_label_reaches_the_cgan_generator_and_discriminator() {
    let gpu = gpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let model = Cgan::new(&gpu, 16, &mut rng).unwrap();
    // The generator's label weights start at 0.02 sqrt(noise_dim) = 0.08, as z's share.
    let params: BTreeMap<_, _> = model.named_parameters().into_iter().collect();
    let std = |name: &str| {
        let v = params[name].to_vec().unwrap();
        let n = v.len() as f64;
        (v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / n).sqrt()
    };
    let (label, noise) = (std("generator.fc_label.weight"), std("generator.fc.weight"));
    assert!((label - 0.08).abs() < 0.005, "label weights {label}");
    assert!((noise - 0.02).abs() < 0.002, "noise weights {noise}");
    model.set_training(false);
    let _g = no_grad();
    let z = Tensor::randn(&gpu, [4, 16]).unwrap();
    let (y1, y7) = (
        one_hot(&gpu, &[1; 4]).unwrap(),
        one_hot(&gpu, &[7; 4]).unwrap(),
    );
    let a = model.generator(&z, &y1).unwrap();
    let b = model.generator(&z, &y7).unwrap();
    let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    assert!(
        max_abs_diff(&av, &bv) > 1e-4,
        "the generator ignores the label"
    );
    let d1 = model.discriminator(&a, &y1).unwrap().to_vec().unwrap();
    let d7 = model.discriminator(&a, &y7).unwrap().to_vec().unwrap();
    assert_eq!(d1.len(), 4);
    assert!(
        max_abs_diff(&d1, &d7) > 1e-5,
        "the discriminator ignores the label: {d1:?} {d7:?}"
    );
}

#[test]
fn a_briefly_trained_cvae_draws_the_asked_digit_more_often_than_chance() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    let cfg = config(dir.path(), 6000, 3, 2);
    let (model, history) = train_cvae(&gpu, &cfg).unwrap();
    assert_eq!(history.len(), 3);
    assert!(history[2].test_loss < history[0].test_loss, "{history:?}");
    assert_eq!(history[2].test_kl_per_dim.len(), 2);
    // Every output the other models write, and the 10-row grids.
    for f in [
        "metrics.jsonl",
        "model.safetensors",
        "train_state.safetensors",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    for f in [
        "samples_epoch_001.png",
        "samples_epoch_003.png",
        "samples.png",
    ] {
        assert_eq!(png_size(&dir.path().join(f)), grid_size(10, 8), "{f}");
    }
    assert_eq!(
        png_size(&dir.path().join("analogies.png")),
        grid_size(8, 11)
    );
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.metadata["model"], "cvae");
    assert_eq!(ckpt.metadata["latent_dim"], "2");

    // Samples asked for digit c are classified c far more often than 1 in 10.
    let classifier = load_classifier(&gpu, None).unwrap();
    gpu.manual_seed(1);
    let acc = conditional_accuracy(&model, &classifier, &gpu, 50).unwrap();
    assert!(acc.accuracy > 0.4, "{acc:?}");
    assert_eq!(acc.confusion.iter().flatten().sum::<usize>(), 500);
    // The same codes decoded as two digits differ in every row of the grid.
    let z = vec![0.3f32; 2 * 3];
    let grid = class_grid_of(&model, &gpu, &z).unwrap();
    assert_eq!(grid.len(), 10 * 3 * 784);
    let row = |c: usize| &grid[c * 3 * 784..(c + 1) * 3 * 784];
    assert!(max_abs_diff(row(0), row(1)) > 0.1);
}

#[test]
fn a_cgan_trains_and_its_label_parameters_learn() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    let cfg = TrainConfig {
        batch_size: 32,
        lr: 2e-4,
        ..config(dir.path(), 256, 1, 16)
    };
    // The untrained model of the same seed: the initial label weights.
    let init = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let m = Cgan::new(&gpu, 16, &mut rng).unwrap();
        m.named_parameters()
            .into_iter()
            .map(|(n, t)| (n, t.to_vec().unwrap()))
            .collect::<BTreeMap<_, _>>()
    };
    let (model, history) = train_cgan(&gpu, &cfg).unwrap();
    assert_eq!(history.len(), 1);
    let m = &history[0];
    assert!(m.d_loss.is_finite() && m.g_loss.is_finite() && m.d_real > 0.0 && m.d_fake > 0.0);
    let trained: BTreeMap<_, _> = model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap()))
        .collect();
    for name in ["generator.fc_label.weight", "discriminator.embed.weight"] {
        assert!(
            max_abs_diff(&init[name], &trained[name]) > 1e-5,
            "{name} did not move: the label does not reach the loss"
        );
    }
    for f in ["samples_epoch_001.png", "samples.png"] {
        assert_eq!(png_size(&dir.path().join(f)), grid_size(10, 8), "{f}");
    }
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.metadata["model"], "cgan");
    let built = ckpt.into_model(&gpu).unwrap();
    assert!(built.as_conditional().is_some());
}

// The command line.

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn train(model: &str, out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["train", model, "--no-progress", "--out", s(out)];
    all.extend_from_slice(args);
    run(&all)
}

/// Checkpoints trained once for the command tests: a cvae, a vae and a cgan (tiny).
fn checkpoints() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for (model, args) in [
            ("cvae", &["--limit", "256", "--epochs", "1"][..]),
            ("vae", &["--limit", "128", "--epochs", "1"][..]),
            (
                "cgan",
                &[
                    "--limit",
                    "64",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "32",
                    "--latent-dim",
                    "8",
                ][..],
            ),
        ] {
            let o = train(model, &dir.path().join(model), args);
            assert!(o.status.success(), "{}", text(&o));
        }
        dir
    })
    .path()
}

fn ckpt(model: &str) -> PathBuf {
    checkpoints().join(model).join("model.safetensors")
}

#[test]
fn sample_class_draws_one_digit_or_the_ten_row_grid() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["cvae", "cgan"] {
        let out = dir.path().join(format!("{model}_all.png"));
        let o = run(&[
            "sample",
            "--checkpoint",
            s(&ckpt(model)),
            "--class",
            "all",
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(png_size(&out), grid_size(10, 8), "{model}");
        let out = dir.path().join(format!("{model}_all5.npy"));
        let o = run(&[
            "sample",
            "--checkpoint",
            s(&ckpt(model)),
            "--class",
            "all",
            "--n",
            "5",
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        // 50 images of 784 float32 after the .npy header.
        let len = std::fs::metadata(&out).unwrap().len();
        assert!(len > 50 * 784 * 4 && len < 50 * 784 * 4 + 256, "{len}");
        let out = dir.path().join(format!("{model}_7.png"));
        let o = run(&[
            "sample",
            "--checkpoint",
            s(&ckpt(model)),
            "--class",
            "7",
            "--n",
            "12",
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("wrote 12 samples"));
    }
}

#[test]
fn bad_classes_and_checkpoints_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let (cvae, vae, cgan) = (ckpt("cvae"), ckpt("vae"), ckpt("cgan"));
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &[
                "sample",
                "--checkpoint",
                s(&cvae),
                "--class",
                "11",
                "--out",
                s(&out),
            ],
            &["--class", "`11` is not a digit", "0 to 9"],
        ),
        (
            &[
                "sample",
                "--checkpoint",
                s(&cvae),
                "--class",
                "-1",
                "--out",
                s(&out),
            ],
            &["--class"],
        ),
        (
            &[
                "sample",
                "--checkpoint",
                s(&vae),
                "--class",
                "3",
                "--out",
                s(&out),
            ],
            &["--class", "`vae` model", "not told the digit", "train cvae"],
        ),
        (
            &[
                "analogies",
                "--checkpoint",
                s(&cvae),
                "--image-index",
                "10000",
                "--out",
                s(&out),
            ],
            &["--image-index 10000 is out of range", "10000 images"],
        ),
        (
            &[
                "analogies",
                "--checkpoint",
                s(&cgan),
                "--image-index",
                "0",
                "--out",
                s(&out),
            ],
            &["`cgan` model", "conditional VAE"],
        ),
        (
            &[
                "analogies",
                "--checkpoint",
                s(&vae),
                "--image-index",
                "0",
                "--out",
                s(&out),
            ],
            &["`vae` model", "conditional VAE"],
        ),
        (
            &[
                "sample",
                "--checkpoint",
                s(&cvae),
                "--class",
                "3",
                "--model",
                "cgan",
                "--out",
                s(&out),
            ],
            &["`cvae` checkpoint", "`cgan` model was asked for"],
        ),
    ];
    for (args, wanted) in cases {
        let o = run(args);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        for w in wanted {
            assert!(err.contains(w), "{args:?}: no {w:?} in\n{err}");
        }
        assert!(!out.exists(), "{args:?} wrote its output");
    }
}

#[test]
fn analogies_and_eval_of_a_cvae() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("analogies.png");
    let o = run(&[
        "analogies",
        "--checkpoint",
        s(&ckpt("cvae")),
        "--image-index",
        "9997",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // Three test images are left from 9997: three rows of the image and its ten decodings.
    assert_eq!(png_size(&out), grid_size(3, 11));
    let json = dir.path().join("eval.json");
    let o = run(&[
        "eval",
        "--checkpoint",
        s(&ckpt("cvae")),
        "--fid-samples",
        "100",
        "--test-images",
        "200",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(r["neg_elbo_given_label"].as_f64().unwrap() > 50.0, "{r}");
    assert_eq!(r["test_images"], 200);
    let acc = &r["conditional_accuracy"];
    assert_eq!(acc["samples_per_class"], 10);
    assert_eq!(acc["per_class"].as_array().unwrap().len(), 10);
    assert!(r["classifier_fid"].as_f64().unwrap() > 0.0);
}

/// The lines of metrics.jsonl without the wall-clock fields.
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

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
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

/// Two epochs straight, and one epoch then `--resume --epochs 2`: the same metrics, weights
/// and grids, bit for bit.
fn resumed_equals_straight(model: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (straight, resumed) = (dir.path().join("straight"), dir.path().join("resumed"));
    let o = train(model, &straight, &[args, &["--epochs", "2"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let o = train(model, &resumed, &[args, &["--epochs", "1"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let o = train(
        model,
        &resumed,
        &[args, &["--epochs", "2", "--resume"]].concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("resuming"));
    assert_eq!(metrics(&resumed), metrics(&straight), "{model}: metrics");
    assert_eq!(metrics(&straight).len(), 2);
    assert_eq!(
        tensor_bits(&resumed.join("model.safetensors")),
        tensor_bits(&straight.join("model.safetensors")),
        "{model}: weights"
    );
    assert_eq!(files(&resumed), files(&straight), "{model}: images");
}

#[test]
fn a_resumed_cvae_run_equals_an_uninterrupted_one() {
    resumed_equals_straight("cvae", &["--limit", "512", "--batch-size", "32"]);
}

#[test]
fn a_resumed_cgan_run_equals_an_uninterrupted_one() {
    resumed_equals_straight(
        "cgan",
        &["--limit", "64", "--batch-size", "16", "--latent-dim", "8"],
    );
}

/// A copy of the checkpoint at `src` with `edit` applied to its metadata.
fn forge(src: &Path, dst: &Path, edit: impl FnOnce(&mut BTreeMap<String, String>)) {
    use safetensors::tensor::TensorView;
    let ckpt = checkpoint::load(src).unwrap();
    let mut meta = ckpt.metadata.clone();
    edit(&mut meta);
    let tensors: BTreeMap<_, _> = ckpt.tensors.into_iter().collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (shape, v))| {
            let view = TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(v),
            )
            .unwrap();
            (n.clone(), view)
        })
        .collect();
    let info: std::collections::HashMap<String, String> = meta.into_iter().collect();
    std::fs::write(dst, safetensors::serialize(views, Some(info)).unwrap()).unwrap();
}

#[test]
fn forged_sizes_and_kinds_are_refused_naming_the_tensor() {
    use deepgen::models::{ModelKind, largest_floats_per_sample};
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("s.png");
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        (
            "cvae",
            "latent_dim",
            "1000000000",
            &["`latent_dim` = 1000000000", "encoder.fc_mu.weight"],
        ),
        (
            "cvae",
            "hidden_dim",
            "7",
            &["`hidden_dim` = 7", "encoder.fc1.weight"],
        ),
        (
            "cgan",
            "latent_dim",
            "1000000000",
            &["`latent_dim` = 1000000000", "generator.fc.weight"],
        ),
        // A cvae checkpoint that says it is a cgan: the cgan's tensors are not there.
        (
            "cvae",
            "model",
            "cgan",
            &["has no tensor `generator.fc.weight`", "`cgan` checkpoint"],
        ),
    ];
    for (model, key, value, wanted) in cases {
        let bad = dir.path().join(format!("{model}_{key}.safetensors"));
        forge(&ckpt(model), &bad, |meta| {
            meta.insert(key.into(), value.into());
        });
        let o = run(&[
            "sample",
            "--checkpoint",
            s(&bad),
            "--class",
            "all",
            "--out",
            s(&png),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        for w in wanted {
            assert!(err.contains(w), "{model} {key}: no {w:?} in\n{err}");
        }
        assert!(!png.exists());
    }
    // The batch-size bound: the conditional GAN's largest intermediate is the DCGAN's, the
    // conditional VAE's the VAE's.
    let meta = BTreeMap::new();
    assert_eq!(
        largest_floats_per_sample(ModelKind::Cgan, &meta),
        largest_floats_per_sample(ModelKind::Dcgan, &meta)
    );
    assert_eq!(largest_floats_per_sample(ModelKind::Cvae, &meta), 784);
}
