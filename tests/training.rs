//! Training smoke tests on a few hundred MNIST images: the loss falls, every
//! output is written, checkpoints round-trip, a step is one submit with no
//! allocations, and a diverging run stops without touching the last checkpoint.

mod common;

use std::path::PathBuf;

use common::gpu;
use deepgen::checkpoint;
use deepgen::data::Batches;
use deepgen::models::{Generative, MlpConfig, ModelKind, Vae, VariationalModel};
use deepgen::nn::Module;
use deepgen::optim::Adam;
use deepgen::train::{TrainConfig, train_autoencoder, train_vae};
use deepgen::{Error, Tensor};
use rand::SeedableRng;

fn config(out: &std::path::Path, limit: usize, epochs: usize) -> TrainConfig {
    TrainConfig {
        data_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        epochs,
        batch_size: 64,
        limit: Some(limit),
        out_dir: out.to_path_buf(),
        progress: false,
        log_every: 4,
        ..TrainConfig::default()
    }
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn vae_smoke_loss_falls_and_outputs_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 512, 3);
    let gpu = gpu();
    let (model, history) = train_vae(&gpu, &cfg).unwrap();
    assert_eq!(history.len(), 3);
    assert!(
        history[2].train_loss < history[0].train_loss - 20.0,
        "{history:?}"
    );
    assert!(history[2].test_loss < history[0].test_loss, "{history:?}");
    assert!(
        history
            .iter()
            .all(|m| m.test_images == 512 && m.train_images == 512 && m.images_per_second > 0.0)
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(cfg.metrics_path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        for key in [
            "epoch",
            "train_loss",
            "test_loss",
            "seconds",
            "images_per_second",
        ] {
            assert!(
                line.get(key).is_some(),
                "metrics line {i} lacks {key}: {line}"
            );
        }
        assert_eq!(line["epoch"], i + 1);
    }
    // 8x8 grid of 28x28 with 2-pixel padding; 32 pairs in rows of 16.
    assert_eq!(
        png_size(&dir.path().join("samples.png")),
        (8 * 30 + 2, 8 * 30 + 2)
    );
    assert_eq!(
        png_size(&dir.path().join("reconstructions.png")),
        (16 * 30 + 2, 4 * 30 + 2)
    );

    // Checkpoint round trip: same kind, same weights, same reconstructions.
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.kind().unwrap(), ModelKind::Vae);
    assert_eq!(ckpt.metadata["latent_dim"], "20");
    assert_eq!(ckpt.metadata["epoch"], "3");
    let loaded = ckpt.into_model(&gpu).unwrap();
    for ((n1, a), (n2, b)) in model
        .named_parameters()
        .iter()
        .zip(loaded.named_parameters())
    {
        assert_eq!(n1, &n2);
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{n1}");
    }
    let x = Tensor::from_slice(&gpu, &vec![0.5; 3 * 784], [3, 784]).unwrap();
    assert_eq!(
        model.reconstruct(&x).unwrap().to_vec().unwrap(),
        loaded.reconstruct(&x).unwrap().to_vec().unwrap()
    );
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"encoder.fc1.weight".to_string())
            && names.contains(&"decoder.fc2.bias".to_string())
    );

    // A checkpoint of another kind is refused with both kinds named.
    let err = ckpt
        .expect_kind(ModelKind::Autoencoder)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`vae` checkpoint") && err.contains("`ae` model"),
        "{err}"
    );
}

#[test]
fn autoencoder_smoke_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 256, 3);
    let (_, history) = train_autoencoder(&gpu(), &cfg).unwrap();
    assert!(
        history[2].train_loss < history[0].train_loss - 20.0,
        "{history:?}"
    );
    assert_eq!(
        checkpoint::load(&cfg.checkpoint_path())
            .unwrap()
            .kind()
            .unwrap(),
        ModelKind::Autoencoder
    );
    assert!(
        dir.path().join("samples.png").is_file()
            && dir.path().join("reconstructions.png").is_file()
    );
}

#[test]
fn a_training_step_is_one_submit_without_allocations() {
    let gpu = gpu();
    let mnist =
        deepgen::data::Mnist::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
            .unwrap();
    let train = mnist.train.truncate(640);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let model = Vae::new(&gpu, MlpConfig::default(), &mut rng).unwrap();
    let params = model.parameters();
    let mut opt = Adam::new(1e-3);
    gpu.flush();
    let mut per_step = Vec::new();
    for indices in Batches::new(train.len(), 128, 0, 1) {
        let before = gpu.stats();
        let x = Tensor::from_slice(&gpu, &train.gather(&indices), [indices.len(), 784]).unwrap();
        let loss = model.loss(&x, 1.0).unwrap();
        let grads = loss.loss.backward().unwrap();
        opt.step(&params, &grads).unwrap();
        drop((loss, grads, x));
        gpu.flush();
        let after = gpu.stats();
        per_step.push((
            after.submits - before.submits,
            after.readbacks - before.readbacks,
            after.buffers_created - before.buffers_created,
            after.bind_groups_created - before.bind_groups_created,
            after.dispatches - before.dispatches,
        ));
    }
    for (i, &(submits, readbacks, buffers, bind_groups, dispatches)) in per_step.iter().enumerate()
    {
        assert_eq!(submits, 1, "step {i}: {per_step:?}");
        assert_eq!(readbacks, 0, "step {i}");
        assert!(dispatches > 20, "step {i} recorded {dispatches} dispatches");
        if i >= 2 {
            assert_eq!(buffers, 0, "step {i} allocated buffers: {per_step:?}");
            assert_eq!(bind_groups, 0, "step {i} created bind groups: {per_step:?}");
        }
    }
}

#[test]
fn diverging_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    // A good run leaves a checkpoint ...
    let good = config(dir.path(), 128, 1);
    train_vae(&gpu, &good).unwrap();
    let before = std::fs::read(good.checkpoint_path()).unwrap();
    // ... then a run with an absurd learning rate diverges in the same directory.
    let bad = TrainConfig {
        lr: 1e30,
        log_every: 1,
        epochs: 2,
        ..good.clone()
    };
    let Err(err) = train_vae(&gpu, &bad) else {
        panic!("training with lr 1e30 should diverge")
    };
    match &err {
        Error::NonFiniteLoss {
            value,
            epoch,
            step,
            checkpoint,
        } => {
            assert!(!value.is_finite());
            assert_eq!(*epoch, 1);
            assert!(*step >= 2);
            assert_eq!(
                checkpoint.as_deref(),
                Some(good.checkpoint_path().as_path())
            );
        }
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("epoch 1") && msg.contains("step"), "{msg}");
    assert_eq!(
        std::fs::read(good.checkpoint_path()).unwrap(),
        before,
        "the checkpoint was overwritten"
    );
    // The kept checkpoint still loads.
    checkpoint::load(&good.checkpoint_path())
        .unwrap()
        .into_model(&gpu)
        .unwrap();
}

#[test]
fn gan_smoke_writes_metrics_grids_and_a_sampleable_checkpoint() {
    use deepgen::train::train_gan;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        lr: 2e-4,
        latent_dim: 16,
        ..config(dir.path(), 256, 2)
    };
    let gpu = gpu();
    let (_, history) = train_gan(&gpu, &cfg).unwrap();
    assert_eq!(history.len(), 2);
    for m in &history {
        assert!(m.d_loss.is_finite() && m.g_loss.is_finite());
        assert!(
            (0.0..=1.0).contains(&m.d_real) && (0.0..=1.0).contains(&m.d_fake),
            "{m:?}"
        );
    }
    let text = std::fs::read_to_string(cfg.metrics_path()).unwrap();
    for key in [
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "seconds",
        "images_per_second",
    ] {
        assert!(
            text.lines().all(|l| l.contains(key)),
            "{key} missing in {text}"
        );
    }
    for f in [
        "samples_epoch_001.png",
        "samples_epoch_002.png",
        "samples.png",
    ] {
        assert_eq!(
            png_size(&dir.path().join(f)),
            (8 * 30 + 2, 8 * 30 + 2),
            "{f}"
        );
    }
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.kind().unwrap(), ModelKind::Gan);
    let model = ckpt.into_model(&gpu).unwrap();
    let z = Tensor::randn(&gpu, [5, 16]).unwrap();
    let images = model.generate(&z).unwrap().to_vec().unwrap();
    assert_eq!(images.len(), 5 * 784);
    assert!(
        images.iter().all(|v| (0.0..=1.0).contains(v)),
        "GAN samples must be pixel intensities"
    );
    assert!(
        model
            .reconstruct(&Tensor::zeros(&gpu, [1, 784]).unwrap())
            .is_err(),
        "a GAN has no encoder"
    );
}

#[test]
fn dcgan_and_conv_vae_smoke() {
    use deepgen::train::{train_conv_vae, train_dcgan};
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    let cfg = TrainConfig {
        lr: 2e-4,
        latent_dim: 8,
        batch_size: 32,
        ..config(&dir.path().join("dcgan"), 64, 1)
    };
    let (_, history) = train_dcgan(&gpu, &cfg).unwrap();
    assert!(history[0].d_loss.is_finite() && history[0].g_loss.is_finite());
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.kind().unwrap(), ModelKind::Dcgan);
    // Batch-norm running statistics are part of the checkpoint.
    assert!(ckpt.tensors.contains_key("generator.bn1.running_var"));
    ckpt.into_model(&gpu).unwrap();

    let cfg = TrainConfig {
        latent_dim: 8,
        ..config(&dir.path().join("cvae"), 256, 2)
    };
    let (_, history) = train_conv_vae(&gpu, &cfg).unwrap();
    assert!(history[1].train_loss < history[0].train_loss, "{history:?}");
    assert_eq!(
        checkpoint::load(&cfg.checkpoint_path())
            .unwrap()
            .kind()
            .unwrap(),
        ModelKind::ConvVae
    );
    assert!(dir.path().join("cvae/reconstructions.png").is_file());
}

#[test]
fn classifier_smoke_learns_and_cannot_sample() {
    use deepgen::train::train_classifier;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 512, 2);
    let gpu = gpu();
    let (_, history) = train_classifier(&gpu, &cfg).unwrap();
    assert!(history[1].train_loss < history[0].train_loss);
    // 512 images, 2 epochs: far above chance (0.1) already.
    assert!(history[1].test_accuracy > 0.5, "{history:?}");
    let text = std::fs::read_to_string(cfg.metrics_path()).unwrap();
    assert!(
        text.lines()
            .all(|l| l.contains("test_accuracy") && l.contains("test_loss"))
    );
    let err = checkpoint::load(&cfg.checkpoint_path())
        .unwrap()
        .into_model(&gpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("classifier") && err.contains("cannot generate"),
        "{err}"
    );
}
