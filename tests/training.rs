//! Training smoke tests on a few hundred MNIST images: the loss falls, every
//! output is written, checkpoints round-trip, a step is one submit with no
//! allocations, and a diverging run stops without touching the last checkpoint.

mod common;

use std::path::PathBuf;

use common::gpu;
use deepgen::checkpoint;
use deepgen::data::Batches;
use deepgen::models::{Generative, MlpConfig, ModelKind, Vae};
use deepgen::nn::Module;
use deepgen::optim::Adam;
use deepgen::train::vae::vae_step;
use deepgen::train::{Optimizer, TrainConfig, train_autoencoder, train_vae};
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
    // The step of the CLI's loop (train::vae::vae_step), sums included.
    let gpu = gpu();
    let mnist =
        deepgen::data::Mnist::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
            .unwrap();
    let train = mnist.train.truncate(640);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let model = Vae::new(&gpu, MlpConfig::default(), &mut rng).unwrap();
    let mut opt = Optimizer::new(Adam::new(1e-3), model.parameters());
    gpu.flush();
    let mut per_step = Vec::new();
    for indices in Batches::new(train.len(), 128, 0, 1) {
        let before = gpu.stats();
        let x = Tensor::from_slice(&gpu, &train.gather(&indices), [indices.len(), 784]).unwrap();
        // The step `deepgen train vae` runs, with its three epoch sums.
        let step = vae_step(&model, &mut opt, &x, 1.0).unwrap();
        drop((step, x));
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
    let metrics = std::fs::read(good.metrics_path()).unwrap();
    // ... a second run into the same directory is refused, and loses nothing ...
    let bad = TrainConfig {
        lr: 1e30,
        log_every: 1,
        epochs: 2,
        ..good.clone()
    };
    match train_vae(&gpu, &bad) {
        Err(Error::OutDir { reason, .. }) => {
            assert!(
                reason.contains("--force") && reason.contains("--resume"),
                "{reason}"
            )
        }
        Err(other) => panic!("expected OutDir, got {other:?}"),
        Ok(_) => panic!("a second run into a finished run's directory must be refused"),
    }
    assert_eq!(std::fs::read(good.checkpoint_path()).unwrap(), before);
    assert_eq!(std::fs::read(good.metrics_path()).unwrap(), metrics);
    // ... and with --force it replaces the run: it diverges in its first epoch, so no
    // checkpoint is left to be called "the last good one".
    let forced = TrainConfig { force: true, ..bad };
    let Err(err) = train_vae(&gpu, &forced) else {
        panic!("training with lr 1e30 should diverge")
    };
    match &err {
        Error::NonFiniteLoss {
            quantity,
            value,
            epoch,
            step,
            checkpoint,
        } => {
            assert!(!value.is_finite());
            assert_eq!((quantity.as_str(), *epoch), ("loss", 1));
            assert!(*step >= 2);
            assert_eq!(checkpoint, &None, "no epoch of this run finished");
        }
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("epoch 1") && msg.contains("step"), "{msg}");
    assert!(
        !good.checkpoint_path().exists(),
        "--force deleted the old run"
    );
    assert_eq!(std::fs::read_to_string(good.metrics_path()).unwrap(), "");
}

/// The VAE trainer with its test loss turned NaN from `poison_from` on: what a run sees when
/// the weights diverge while the training losses still read finite.
struct NanTestLoss<'m> {
    inner: deepgen::train::vae::VaeTrainer<'m>,
    poison_from: usize,
}

impl deepgen::train::Trainable for NanTestLoss<'_> {
    type Metrics = deepgen::train::vae::VaeMetrics;
    fn model(&self) -> &dyn deepgen::models::Model {
        self.inner.model()
    }
    fn train_set(&self) -> &deepgen::data::Dataset {
        self.inner.train_set()
    }
    fn step(&mut self, batch: &deepgen::train::Batch) -> deepgen::Result<deepgen::train::Step> {
        self.inner.step(batch)
    }
    fn end_epoch(
        &mut self,
        stats: &deepgen::train::EpochStats,
    ) -> deepgen::Result<deepgen::train::vae::VaeMetrics> {
        let mut m = self.inner.end_epoch(stats)?;
        if stats.epoch >= self.poison_from {
            m.test_loss = f64::NAN;
        }
        Ok(m)
    }
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        self.inner.optimizers()
    }
}

#[test]
fn a_nan_test_loss_stops_the_run_and_the_last_good_epoch_stays() {
    use deepgen::train::fit;
    use deepgen::train::vae::{Autoencoding, VaeTrainer};
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    let cfg = config(dir.path(), 128, 3);
    let model = Vae::new(
        &gpu,
        MlpConfig::default(),
        &mut rand::rngs::StdRng::seed_from_u64(0),
    )
    .unwrap();
    let data = cfg.load_data().unwrap();
    let inner = VaeTrainer::new(&gpu, &cfg, Autoencoding::Variational(&model), data);
    let mut trainer = NanTestLoss {
        inner,
        poison_from: 2,
    };
    let err = fit(&gpu, &cfg, &mut trainer).unwrap_err();
    match &err {
        Error::NonFiniteLoss {
            quantity,
            epoch,
            checkpoint,
            ..
        } => {
            assert_eq!((quantity.as_str(), *epoch), ("test_loss", 2), "{err}");
            assert_eq!(checkpoint.as_deref(), Some(cfg.checkpoint_path().as_path()));
        }
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
    // Nothing of epoch 2 was written: one metrics line, the checkpoint and state of epoch 1.
    let metrics = std::fs::read_to_string(cfg.metrics_path()).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.metadata["epoch"], "1");
    let state = deepgen::train::TrainState::load(&cfg.state_path()).unwrap();
    assert_eq!(state.epochs_done, 1);
}

#[test]
fn gan_smoke_learns_and_writes_metrics_grids_and_a_sampleable_checkpoint() {
    use deepgen::eval::outliers::auroc;
    use deepgen::models::{Adversarial, MlpGan};
    use deepgen::train::train_gan;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        lr: 2e-4,
        latent_dim: 16,
        batch_size: 32,
        ..config(dir.path(), 512, 2)
    };
    let gpu = gpu();
    let (trained, history) = train_gan(&gpu, &cfg).unwrap();
    assert_eq!(history.len(), 2);

    // Learning, measured on images the run never saw: 256 held-out test digits and 256 fresh
    // fakes. The untrained twin (same seed, same initial weights) is the baseline.
    let untrained =
        MlpGan::new(&gpu, 16, &mut rand::rngs::StdRng::seed_from_u64(cfg.seed)).unwrap();
    untrained.set_training(false);
    let mnist = deepgen::data::Mnist::load(&cfg.data_dir).unwrap();
    let held_out = &mnist.test.images[..256 * 784];
    let real = Tensor::from_slice(&gpu, held_out, [256, 784]).unwrap();
    let z = Tensor::randn(&gpu, [256, 16]).unwrap();
    let _no_grad = deepgen::no_grad();
    let d_score = |gan: &MlpGan, images: &Tensor| -> Vec<f64> {
        let scaled = images.affine(2.0, -1.0).unwrap();
        let logits = gan.discriminator(&scaled).unwrap().to_vec().unwrap();
        logits.into_iter().map(f64::from).collect()
    };
    let pixel_mean = |v: &[f32]| v.iter().map(|&p| p as f64).sum::<f64>() / v.len() as f64;
    let data_mean = pixel_mean(held_out);
    let mut report = Vec::new();
    for (name, gan) in [("untrained", &untrained), ("trained", &trained)] {
        let fake = gan.generate(&z).unwrap();
        let separation = auroc(&d_score(gan, &fake), &d_score(gan, &real));
        let gap = (pixel_mean(&fake.to_vec().unwrap()) - data_mean).abs();
        report.push((name, separation, gap));
    }
    let [(_, d_before, gap_before), (_, d_after, gap_after)] = report[..] else {
        unreachable!()
    };
    // The discriminator ranks a held-out digit above a fake (AUROC of D's logits; 0.5 is
    // chance) far more often than it did untrained (0.62 -> 0.96 on lavapipe).
    assert!(
        d_after > 0.85 && d_after > d_before + 0.2,
        "D(real) vs D(fake) AUROC {d_before:.3} -> {d_after:.3}"
    );
    // The generator's mean pixel moves toward the data's (0.119): on lavapipe its distance
    // falls from 0.381 to 0.201 in these 32 steps.
    assert!(
        gap_after < 0.75 * gap_before,
        "|mean fake pixel - mean data pixel| {gap_before:.3} -> {gap_after:.3}"
    );
    drop(_no_grad);

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
    // The checkpoint reloads into the same generator (batch-norm running statistics
    // included): the same codes give the same images.
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.kind().unwrap(), ModelKind::Gan);
    let loaded = ckpt.into_model(&gpu).unwrap();
    let z = Tensor::randn(&gpu, [5, 16]).unwrap();
    assert_eq!(
        loaded.generate(&z).unwrap().to_vec().unwrap(),
        trained.generate(&z).unwrap().to_vec().unwrap()
    );
    assert!(
        loaded
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
    assert_eq!(history.len(), 1);
    let ckpt = checkpoint::load(&cfg.checkpoint_path()).unwrap();
    assert_eq!(ckpt.kind().unwrap(), ModelKind::Dcgan);
    // Batch-norm running statistics are part of the checkpoint, as trained (they start at 1).
    let (_, running_var) = &ckpt.tensors["generator.bn1.running_var"];
    assert!(running_var.iter().any(|&v| v != 1.0), "{running_var:?}");
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

/// (name, number of values) of a layer's weight and bias, from the architecture.
fn linear(name: &str, inputs: usize, outputs: usize) -> Vec<(String, usize)> {
    vec![
        (format!("{name}.weight"), inputs * outputs),
        (format!("{name}.bias"), outputs),
    ]
}

fn conv(name: &str, in_ch: usize, out_ch: usize, k: usize, bias: bool) -> Vec<(String, usize)> {
    let mut v = vec![(format!("{name}.weight"), in_ch * out_ch * k * k)];
    if bias {
        v.push((format!("{name}.bias"), out_ch));
    }
    v
}

fn bn(name: &str, channels: usize) -> Vec<(String, usize)> {
    vec![
        (format!("{name}.weight"), channels),
        (format!("{name}.bias"), channels),
    ]
}

fn bn_buffers(name: &str, channels: usize) -> Vec<(String, usize)> {
    vec![
        (format!("{name}.running_mean"), channels),
        (format!("{name}.running_var"), channels),
    ]
}

/// A model, its expected (parameter name, size) list and its expected buffers.
type Case = (
    &'static str,
    Box<dyn Module>,
    Vec<(String, usize)>,
    Vec<(String, usize)>,
);

#[test]
fn every_model_registers_every_layer_under_its_checkpoint_name() {
    use deepgen::models::{Adversarial, Autoencoder, Classifier, ConvVae, DbVae, Dcgan, MlpGan};
    let gpu = gpu();
    let rng = || rand::rngs::StdRng::seed_from_u64(0);
    let cat = |parts: Vec<Vec<(String, usize)>>| parts.concat();
    let mlp = MlpConfig::default(); // 784-400-20
    let cases: Vec<Case> = vec![
        (
            "vae",
            Box::new(Vae::new(&gpu, mlp, &mut rng()).unwrap()),
            cat(vec![
                linear("encoder.fc1", 784, 400),
                linear("encoder.fc_mu", 400, 20),
                linear("encoder.fc_logvar", 400, 20),
                linear("decoder.fc1", 20, 400),
                linear("decoder.fc2", 400, 784),
            ]),
            vec![],
        ),
        (
            "ae",
            Box::new(Autoencoder::new(&gpu, mlp, &mut rng()).unwrap()),
            cat(vec![
                linear("encoder.fc1", 784, 400),
                linear("encoder.fc_z", 400, 20),
                linear("decoder.fc1", 20, 400),
                linear("decoder.fc2", 400, 784),
            ]),
            vec![],
        ),
        (
            "conv-vae",
            Box::new(ConvVae::new(&gpu, 20, &mut rng()).unwrap()),
            cat(vec![
                conv("encoder.conv1", 1, 32, 4, true),
                conv("encoder.conv2", 32, 64, 4, true),
                linear("encoder.fc", 64 * 7 * 7, 256),
                linear("encoder.fc_mu", 256, 20),
                linear("encoder.fc_logvar", 256, 20),
                linear("decoder.fc1", 20, 256),
                linear("decoder.fc2", 256, 64 * 7 * 7),
                conv("decoder.deconv1", 64, 32, 4, true),
                conv("decoder.deconv2", 32, 1, 4, true),
            ]),
            vec![],
        ),
        (
            "gan",
            Box::new(MlpGan::new(&gpu, 100, &mut rng()).unwrap()),
            cat(vec![
                linear("generator.fc1", 100, 256),
                linear("generator.fc2", 256, 512),
                bn("generator.bn2", 512),
                linear("generator.fc3", 512, 1024),
                bn("generator.bn3", 1024),
                linear("generator.fc4", 1024, 784),
                linear("discriminator.fc1", 784, 512),
                linear("discriminator.fc2", 512, 256),
                linear("discriminator.fc3", 256, 1),
            ]),
            cat(vec![
                bn_buffers("generator.bn2", 512),
                bn_buffers("generator.bn3", 1024),
            ]),
        ),
        (
            "dcgan",
            Box::new(Dcgan::new(&gpu, 100, &mut rng()).unwrap()),
            cat(vec![
                linear("generator.fc", 100, 128 * 7 * 7),
                bn("generator.bn0", 128),
                conv("generator.deconv1", 128, 64, 4, false),
                bn("generator.bn1", 64),
                conv("generator.deconv2", 64, 1, 4, true),
                conv("discriminator.conv1", 1, 64, 4, true),
                conv("discriminator.conv2", 64, 128, 4, false),
                bn("discriminator.bn2", 128),
                linear("discriminator.fc", 128 * 7 * 7, 1),
            ]),
            cat(vec![
                bn_buffers("generator.bn0", 128),
                bn_buffers("generator.bn1", 64),
                bn_buffers("discriminator.bn2", 128),
            ]),
        ),
        (
            "classifier",
            Box::new(Classifier::new(&gpu, &mut rng()).unwrap()),
            cat(vec![
                conv("conv1", 1, 32, 4, false),
                bn("bn1", 32),
                conv("conv2", 32, 64, 4, false),
                bn("bn2", 64),
                linear("fc1", 64 * 7 * 7, 128),
                linear("fc2", 128, 10),
            ]),
            cat(vec![bn_buffers("bn1", 32), bn_buffers("bn2", 64)]),
        ),
        (
            "dbvae",
            Box::new(DbVae::new(&gpu, 16, &mut rng()).unwrap()),
            cat(vec![
                linear("encoder.fc1", 784, 400),
                linear("encoder.fc_class", 400, 1),
                linear("encoder.fc_mu", 400, 16),
                linear("encoder.fc_logvar", 400, 16),
                linear("decoder.fc1", 16, 400),
                linear("decoder.fc2", 400, 784),
            ]),
            vec![],
        ),
    ];
    for (name, model, params, buffers) in &cases {
        let got = |named: Vec<(String, Tensor)>| -> Vec<(String, usize)> {
            named.into_iter().map(|(n, t)| (n, t.numel())).collect()
        };
        assert_eq!(&got(model.named_parameters()), params, "{name} parameters");
        assert_eq!(&got(model.named_buffers()), buffers, "{name} buffers");
        let total: usize = params.iter().map(|(_, n)| n).sum();
        assert_eq!(model.num_parameters(), total, "{name}");
    }
    // Two totals by hand. VAE: 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784.
    assert_eq!(cases[0].1.num_parameters(), 652_824);
    // DCGAN: 100*6272+6272 + 256 + 128*64*16 + 128 + 64*16+1 (generator: 765,953)
    //      + 64*16+64 + 64*128*16 + 256 + 6272+1 (discriminator: 138,689).
    assert_eq!(cases[4].1.num_parameters(), 904_642);
    // A GAN's two players split its parameters by scope, nothing left over.
    let gan = Dcgan::new(&gpu, 100, &mut rng()).unwrap();
    let (g, d) = (gan.generator_parameters(), gan.discriminator_parameters());
    assert_eq!(g.len() + d.len(), gan.named_parameters().len());
    assert!(g.iter().all(|(n, _)| n.starts_with("generator.")));
    assert!(d.iter().all(|(n, _)| n.starts_with("discriminator.")));
}

#[test]
fn set_training_reaches_every_batch_norm_and_dropout() {
    use deepgen::models::{Adversarial, Classifier, Dcgan};
    let gpu = gpu();
    let rng = || rand::rngs::StdRng::seed_from_u64(1);
    let _no_grad = deepgen::no_grad();
    let x = Tensor::from_slice(&gpu, &common::rand_vec(4 * 784, 3, 0.0, 1.0), [4, 784]).unwrap();
    // In training mode the classifier's dropout draws a new mask every pass; in eval mode
    // (batch norms on their running statistics, no dropout) two passes agree, and image 0's
    // logits do not depend on the rest of the batch.
    let classifier = Classifier::new(&gpu, &mut rng()).unwrap();
    use deepgen::nn::HasLayers;
    assert_eq!(
        classifier.layers().switch_names(),
        ["bn1", "bn2", "dropout"]
    );
    let pass = |x: &Tensor| classifier.forward(x).unwrap().to_vec().unwrap();
    assert_ne!(pass(&x), pass(&x), "dropout is on in training mode");
    classifier.set_training(false);
    let batch = pass(&x);
    assert_eq!(batch, pass(&x));
    let first = Tensor::from_slice(&gpu, &x.to_vec().unwrap()[..784], [1, 784]).unwrap();
    let alone = pass(&first);
    for (a, b) in alone.iter().zip(&batch[..10]) {
        assert!((a - b).abs() < 1e-4, "{alone:?} vs {:?}", &batch[..10]);
    }
    // A GAN's generator alone: with its batch norms in eval mode, a code decodes to the same
    // image whatever else is in the batch; in training mode (batch statistics) it does not.
    let gan = Dcgan::new(&gpu, 8, &mut rng()).unwrap();
    let z = Tensor::from_slice(&gpu, &common::rand_vec(3 * 8, 4, -1.0, 1.0), [3, 8]).unwrap();
    let z0 = Tensor::from_slice(&gpu, &z.to_vec().unwrap()[..8], [1, 8]).unwrap();
    let first_image =
        |codes: &Tensor| gan.generator(codes).unwrap().to_vec().unwrap()[..784].to_vec();
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(max_diff(&first_image(&z), &first_image(&z0)) > 1e-3);
    gan.set_generator_training(false);
    assert!(max_diff(&first_image(&z), &first_image(&z0)) < 1e-4);
}

#[test]
fn train_and_eval_do_not_import_each_other() {
    fn sources(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    for (module, other) in [("train", "eval"), ("eval", "train")] {
        let mut files = Vec::new();
        sources(&src.join(module), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                let grouped = code.contains("crate::{") && code.contains(&format!("{other}::"));
                assert!(
                    !code.contains(&format!("crate::{other}")) && !grouped,
                    "{}:{}: {module} must not use {other} (shared code lives in infer.rs): {line}",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn every_family_stops_on_a_diverging_loss() {
    use deepgen::train::dbvae::{DebiasConfig, train_dbvae};
    use deepgen::train::{train_classifier, train_gan};
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu();
    let cfg = |name: &str| TrainConfig {
        lr: 1e30,
        log_every: 1000,
        ..config(&dir.path().join(name), 128, 1)
    };
    let diverged = |r: deepgen::Result<()>, what: &str| match r {
        Err(Error::NonFiniteLoss { epoch: 1, .. }) => {}
        other => panic!("{what}: expected NonFiniteLoss at epoch 1, got {other:?}"),
    };
    diverged(train_classifier(&gpu, &cfg("c")).map(|_| ()), "classifier");
    diverged(
        train_gan(
            &gpu,
            &TrainConfig {
                latent_dim: 8,
                ..cfg("g")
            },
        )
        .map(|_| ()),
        "gan",
    );
    let plain = DebiasConfig {
        debias: false,
        ..DebiasConfig::new(cfg("d"))
    };
    diverged(train_dbvae(&gpu, &plain).map(|_| ()), "dbvae");
}
