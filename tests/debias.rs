//! The debiasing experiment's parts: the biased dataset builder, the DB-VAE's resampling
//! weights, and a smoke run of both models; and `deepgen outliers` as a user runs it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::gpu;
use deepgen::data::Mnist;
use deepgen::data::biased::BiasedMnist;
use deepgen::data::biased::BiasedSplit;
use deepgen::models::DbVae;
use deepgen::nn::Module;
use deepgen::train::TrainConfig;
use deepgen::train::dbvae::{DebiasConfig, resampling_weights, subgroup_accuracy, train_dbvae};
use deepgen::train::debias::mean_sd;
use rand::SeedableRng;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

#[test]
fn biased_builder_produces_the_stated_proportions() {
    let mnist = Mnist::load(&data_dir()).unwrap();
    let task = BiasedMnist::build(&mnist.train, &mnist.test, 0.015, 7);
    let count = |split: &deepgen::data::biased::BiasedSplit, odd: bool| {
        let members: Vec<usize> = (0..split.len())
            .filter(|&i| (split.target[i] == 1.0) == odd)
            .collect();
        let inverted = members.iter().filter(|&&i| split.inverted[i]).count();
        (members.len(), inverted)
    };
    let (odd, odd_inv) = count(&task.train, true);
    let (even, even_inv) = count(&task.train, false);
    assert_eq!(odd + even, 60_000);
    assert_eq!(
        odd, 30_508,
        "odd training digits: 6742 + 6131 + 5421 + 6265 + 5949"
    );
    assert_eq!(
        odd_inv,
        (0.015 * odd as f64).round() as usize,
        "exactly 1.5% of odd digits inverted"
    );
    assert_eq!(even_inv, (0.5 * even as f64).round() as usize);
    let (t_odd, t_odd_inv) = count(&task.test, true);
    let (t_even, t_even_inv) = count(&task.test, false);
    assert_eq!((t_odd_inv as f64 / t_odd as f64 * 100.0).round(), 50.0);
    assert_eq!((t_even_inv as f64 / t_even as f64 * 100.0).round(), 50.0);
    // Labels are the parity; inverted images are 1 - x.
    for i in (0..60_000).step_by(997) {
        assert_eq!(task.train.target[i], (mnist.train.labels[i] % 2) as f32);
        let (a, b) = (task.train.data.image(i), mnist.train.image(i));
        let want: Vec<f32> = if task.train.inverted[i] {
            b.iter().map(|v| 1.0 - v).collect()
        } else {
            b.to_vec()
        };
        assert_eq!(a, &want[..]);
    }
    // Seeded: the same seed picks the same images.
    assert_eq!(
        BiasedMnist::build(&mnist.train, &mnist.test, 0.015, 7)
            .train
            .inverted,
        task.train.inverted
    );
}

#[test]
fn resampling_weights_are_a_distribution_that_favours_rare_latents() {
    // 1-D: 990 points near 0, 10 points near 5.
    let mut mu: Vec<f64> = (0..990).map(|i| (i % 10) as f64 * 0.01).collect();
    mu.extend((0..10).map(|i| 5.0 + i as f64 * 0.01));
    let w = resampling_weights(&mu, 1, 10, 0.001);
    assert_eq!(w.len(), 1000);
    assert!(w.iter().all(|&v| v > 0.0));
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let (common, rare) = (w[0], w[995]);
    assert!(rare > 50.0 * common, "rare {rare} vs common {common}");
    // The 10 rare points now carry about as much mass as the 990 common ones.
    let rare_mass: f64 = w[990..].iter().sum();
    assert!(rare_mass > 0.45, "rare mass {rare_mass}");
    // Equal densities give equal weights.
    let flat = resampling_weights(&(0..100).map(|i| i as f64).collect::<Vec<_>>(), 1, 10, 0.01);
    assert!(flat.iter().all(|&v| (v - 0.01).abs() < 1e-12));
    // Two dimensions: rarity in either raises the weight.
    let mu2 = [0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 0.1, 0.1, 9.0, 0.0];
    let w2 = resampling_weights(&mu2, 2, 10, 0.001);
    assert!(w2[4] > w2[0] && w2[4] > w2[1]);
}

#[test]
fn dbvae_and_plain_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    for debias in [false, true] {
        let out = dir.path().join(if debias { "dbvae" } else { "plain" });
        let train = TrainConfig {
            data_dir: data_dir(),
            epochs: 2,
            limit: Some(2000),
            out_dir: out.clone(),
            progress: false,
            latent_dim: 8,
            ..TrainConfig::default()
        };
        let cfg = DebiasConfig {
            debias,
            ..DebiasConfig::new(train)
        };
        let (model, history) = train_dbvae(&gpu, &cfg).unwrap();
        assert_eq!(history.len(), 2);
        let m = &history[1];
        assert!(m.common_accuracy > 0.7, "{m:?}");
        // The subgroup accuracies recomputed here, on the host, from the trained model's
        // logits for the whole test split in one batch.
        let mnist = Mnist::load(&data_dir()).unwrap();
        let task = BiasedMnist::build(
            &mnist.train.truncate(2000),
            &mnist.test.truncate(2000),
            cfg.rare_fraction,
            0,
        );
        let test = &task.test;
        let x = deepgen::Tensor::from_slice(&gpu, &test.data.images, [test.len(), 784]).unwrap();
        let logits = model.classify(&x).unwrap().to_vec().unwrap();
        let accuracy = |keep: &dyn Fn(usize) -> bool| {
            let members: Vec<usize> = (0..test.len()).filter(|&i| keep(i)).collect();
            let right = members
                .iter()
                .filter(|&&i| (logits[i] > 0.0) == (test.target[i] == 1.0))
                .count();
            right as f64 / members.len() as f64
        };
        let common = accuracy(&|i| !test.inverted[i]);
        let rare = accuracy(&|i| test.inverted[i]);
        let rare_positive = accuracy(&|i| test.inverted[i] && test.target[i] == 1.0);
        assert!(
            (m.common_accuracy - common).abs() < 1e-9,
            "{m:?} vs {common}"
        );
        assert!((m.rare_accuracy - rare).abs() < 1e-9, "{m:?} vs {rare}");
        assert!(
            (m.rare_positive_accuracy - rare_positive).abs() < 1e-9,
            "{m:?}"
        );
        assert!((m.gap - (common - rare)).abs() < 1e-9, "{m:?}");
        if debias {
            // Resampling draws the rare inverted digits far more often than their 1.5%.
            assert!(m.inverted_share_of_positives > 0.03, "{m:?}");
            assert!(out.join("upweighted.png").is_file());
        } else {
            assert!((m.inverted_share_of_positives - 0.015).abs() < 0.01);
        }
        let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert!(text.lines().all(|l| l.contains("common_accuracy")
            && l.contains("rare_accuracy")
            && l.contains("gap")));
    }
}

#[test]
fn subgroup_accuracy_of_a_constant_classifier_on_a_hand_built_split() {
    let gpu = gpu();
    let model = DbVae::new(&gpu, 4, &mut rand::rngs::StdRng::seed_from_u64(0)).unwrap();
    // Ten images: positives 0, 1, 2, 7, 9; inverted 2, 3, 5, 7, 8.
    let target = [1., 1., 1., 0., 0., 0., 0., 1., 0., 1.];
    let inverted = [
        false, false, true, true, false, true, false, true, true, false,
    ];
    let mut data = Mnist::load(&data_dir()).unwrap().test.truncate(10);
    data.images
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = (i % 7) as f32 / 7.0);
    let split = BiasedSplit {
        data,
        target: target.to_vec(),
        inverted: inverted.to_vec(),
    };
    // Zero the class head's weight and set its bias: the logit is the bias for every image.
    let params = model.named_parameters();
    let param = |name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let weight = param("encoder.fc_class.weight");
    let bias = param("encoder.fc_class.bias");
    weight
        .copy_from(&deepgen::Tensor::zeros(&gpu, [1, 400]).unwrap())
        .unwrap();
    for (logit, want) in [
        // Always "odd": right on the positives. Common (not inverted: 0, 1, 4, 6, 9) has
        // 3 positives of 5; rare (2, 3, 5, 7, 8) has 2 of 5; every inverted positive is found.
        (1.0, (0.6, 0.4, 1.0)),
        // Always "even": right on the negatives, and no inverted positive is found.
        (-1.0, (0.4, 0.6, 0.0)),
    ] {
        bias.copy_from(&deepgen::Tensor::full(&gpu, [1], logit).unwrap())
            .unwrap();
        let got = subgroup_accuracy(&model, &gpu, &split).unwrap();
        assert_eq!(got, want, "logit {logit}");
    }
}

#[test]
fn mean_and_sample_sd_of_known_values() {
    // 1, 2, 3, 4: mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over n - 1 = 3.
    let (mean, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(mean, 2.5);
    assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-15, "{sd}");
    assert_eq!(mean_sd(&[0.7]), (0.7, 0.0));
}

#[test]
fn outliers_cli_writes_summary_scores_and_grid() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_deepgen"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let vae = dir.path().join("vae");
    run(&[
        "train",
        "vae",
        "--limit",
        "512",
        "--epochs",
        "2",
        "--no-progress",
        "--out",
        vae.to_str().unwrap(),
    ]);
    let out = dir.path().join("ood");
    let ckpt = vae.join("model.safetensors");
    let stdout = run(&[
        "outliers",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--ood",
        "noise",
        "--limit",
        "100",
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("AUROC"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in ["auroc", "fpr_at_95_tpr", "score", "in_count", "ood_count"] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    assert_eq!(
        (s["in_count"].as_u64(), s["ood_count"].as_u64()),
        (Some(100), Some(100))
    );
    assert!(
        s["auroc"].as_f64().unwrap() > 0.95,
        "uniform noise is easy to tell from digits: {s}"
    );
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert_eq!(csv.lines().count(), 201);
    assert!(csv.starts_with("index,set,score"));
    let grid = image::open(out.join("most_unusual.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (8 * 30 + 2, 8 * 30 + 2));
    // Rotated digits, scored by reconstruction error.
    run(&[
        "outliers",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--ood",
        "rotated",
        "--score",
        "recon",
        "--limit",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    // The entropy-corrected score.
    let stdout = run(&[
        "outliers",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--ood",
        "noise",
        "--score",
        "excess",
        "--limit",
        "50",
        "--samples",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["score"], "excess", "{stdout}");
    assert!(
        s["auroc"].as_f64().unwrap() > 0.95,
        "noise stays far from digits: {s}"
    );
}

#[test]
fn png_code_length_orders_images_by_complexity() {
    use deepgen::eval::score::png_code_length_nats;
    use rand::{RngExt, SeedableRng};
    let blank = vec![0.0f32; 784];
    let mnist = Mnist::load(&data_dir()).unwrap();
    let digit = mnist.test.image(0).to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let noise: Vec<f32> = (0..784).map(|_| rng.random::<f32>()).collect();
    let (b, d, n) = (
        png_code_length_nats(&blank, 28, 28).unwrap(),
        png_code_length_nats(&digit, 28, 28).unwrap(),
        png_code_length_nats(&noise, 28, 28).unwrap(),
    );
    assert!(b < d && d < n, "blank {b} < digit {d} < noise {n} nats");
    // 784 uniform bytes cannot be stored in fewer than 784 bytes.
    assert!(n >= 784.0 * 8.0 * std::f64::consts::LN_2, "{n}");
    assert!(png_code_length_nats(&blank, 28, 27).is_err());
}

#[test]
fn intensity_entropy_is_the_bce_floor() {
    use deepgen::eval::score::intensity_entropy_nats;
    // Binary pixels have no entropy; a pixel at 0.5 has ln 2; 0.2 has -(0.2 ln 0.2 + 0.8 ln 0.8).
    assert_eq!(intensity_entropy_nats(&[0.0, 1.0, 1.0, 0.0]), 0.0);
    let h = intensity_entropy_nats(&[0.5, 0.2, 1.0]);
    let want = std::f64::consts::LN_2 - (0.2f64 * 0.2f64.ln() + 0.8 * 0.8f64.ln());
    assert!((h - want).abs() < 1e-6, "{h} vs {want}");
}
