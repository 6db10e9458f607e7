//! The training loops of the VAEs (MLP and convolutional) and of the plain
//! autoencoder, written out step by step.
//!
//! One step: upload a batch, forward, loss, `backward()`, Adam update, one
//! submit. The loss stays on the GPU (summed there for the epoch average) and is
//! read back only every `log_every` steps, for the progress bar and the NaN check.

use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::{Batches, Dataset};
use crate::error::Result;
use crate::eval::likelihood::kl_per_dim;
use crate::gpu::Gpu;
use crate::models::{Autoencoder, ConvVae, Generative, MlpConfig, Vae, VariationalModel};
use crate::nn::Module;
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{
    EVAL_BATCH, TrainConfig, append_jsonl, check_finite, end_step, epoch_bar, prepare_out_dir,
    save_checkpoint, write_reconstructions, write_samples,
};

/// One line of metrics.jsonl. Losses are per sample, in nats, averaged over the split.
#[derive(Clone, Debug, Serialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch (negative ELBO for the VAEs, BCE for the autoencoder).
    pub train_loss: f64,
    /// Mean loss on the test split after the epoch.
    pub test_loss: f64,
    /// Test reconstruction term (BCE summed over pixels).
    pub test_recon: f64,
    /// Test KL term (0 for the autoencoder).
    pub test_kl: f64,
    /// Mean training reconstruction term over the epoch (BCE summed over pixels).
    pub train_recon: f64,
    /// Mean training KL term over the epoch.
    pub train_kl: f64,
    /// Test KL of each latent dimension (nats), in dimension order: how much of the code
    /// each dimension carries; beta > 1 switches more of them off.
    pub test_kl_per_dim: Vec<f64>,
    /// Weight of the KL term the model was trained with.
    pub beta: f32,
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Images in the training split.
    pub train_images: usize,
    /// Images in the test split.
    pub test_images: usize,
}

/// Test-split figures of a VAE: mean per-sample loss, reconstruction and KL terms.
pub struct VaeEval {
    /// Mean of recon + beta * kl.
    pub loss: f64,
    /// Mean BCE term.
    pub recon: f64,
    /// Mean KL term.
    pub kl: f64,
}

/// Evaluates the (beta-weighted) negative ELBO on `data`, one z sample per image,
/// in batches of EVAL_BATCH, without recording gradients. One readback at the end.
pub fn evaluate_vae(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    beta: f32,
) -> Result<VaeEval> {
    let _no_grad = no_grad();
    model.set_training(false);
    let mut sums = [
        Tensor::zeros(gpu, [])?,
        Tensor::zeros(gpu, [])?,
        Tensor::zeros(gpu, [])?,
    ];
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = Tensor::from_slice(gpu, &data.gather(chunk), [chunk.len(), data.pixels()])?;
        let l = model.loss(&x, beta)?;
        for (s, t) in sums.iter_mut().zip([&l.per_sample, &l.recon, &l.kl]) {
            *s = s.add(&t.sum()?)?;
        }
    }
    model.set_training(true);
    let n = data.len().max(1) as f64;
    let [loss, recon, kl] = sums.map(|s| s.item().map(|v| v as f64 / n));
    Ok(VaeEval {
        loss: loss?,
        recon: recon?,
        kl: kl?,
    })
}

/// Mean per-sample reconstruction loss of an autoencoder on `data`.
pub fn evaluate_autoencoder(model: &Autoencoder, gpu: &Gpu, data: &Dataset) -> Result<f64> {
    let _no_grad = no_grad();
    let mut sum = Tensor::zeros(gpu, [])?;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = Tensor::from_slice(gpu, &data.gather(chunk), [chunk.len(), data.pixels()])?;
        sum = sum.add(&model.loss(&x)?.sum()?)?;
    }
    Ok(sum.item()? as f64 / data.len().max(1) as f64)
}

/// Trains the MLP VAE of [`Vae`] on MNIST; see [`train_variational`] for what it writes.
pub fn train_vae(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Vae, Vec<EpochMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let config = MlpConfig {
        latent_dim: cfg.latent_dim,
        ..MlpConfig::default()
    };
    let model = Vae::new(gpu, config, &mut rng)?;
    let history = train_variational(gpu, cfg, &model)?;
    Ok((model, history))
}

/// Trains the convolutional VAE of [`ConvVae`]; see [`train_variational`].
pub fn train_conv_vae(gpu: &Gpu, cfg: &TrainConfig) -> Result<(ConvVae, Vec<EpochMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = ConvVae::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = train_variational(gpu, cfg, &model)?;
    Ok((model, history))
}

/// The VAE training loop. Writes metrics.jsonl, model.safetensors (after every epoch,
/// atomically), samples.png and reconstructions.png into `cfg.out_dir`.
///
/// Errors: data errors; [`crate::Error::NonFiniteLoss`] if the loss diverges (the
/// checkpoint of the last finished epoch stays on disk); I/O errors naming the file.
pub fn train_variational(
    gpu: &Gpu,
    cfg: &TrainConfig,
    model: &dyn VariationalModel,
) -> Result<Vec<EpochMetrics>> {
    let data = cfg.load_data()?;
    let pixels = data.train.pixels();
    prepare_out_dir(cfg)?;
    gpu.manual_seed(cfg.seed);
    let params = model.parameters();
    let mut optimizer = Adam::new(cfg.lr);
    let mut history = Vec::new();

    for epoch in 1..=cfg.epochs {
        let batches = Batches::new(data.train.len(), cfg.batch_size, cfg.seed, epoch as u64);
        let steps = batches.num_batches();
        let bar = epoch_bar(cfg.progress, epoch, cfg.epochs, steps);
        let start = Instant::now();
        // Sums of per-sample loss, reconstruction and KL over the epoch, kept on the GPU.
        let mut sums = [
            Tensor::zeros(gpu, [])?,
            Tensor::zeros(gpu, [])?,
            Tensor::zeros(gpu, [])?,
        ];
        for (step, indices) in batches.enumerate() {
            let mut x =
                Tensor::from_slice(gpu, &data.train.gather(&indices), [indices.len(), pixels])?;
            if cfg.binarize {
                // Dynamic binarization: a fresh 0/1 draw of every training image each time.
                x = x.bernoulli()?;
            }
            let loss = model.loss(&x, cfg.beta)?;
            let grads = loss.loss.backward()?;
            optimizer.step(&params, &grads)?;
            {
                let _no_grad = no_grad();
                for (s, t) in sums
                    .iter_mut()
                    .zip([&loss.per_sample, &loss.recon, &loss.kl])
                {
                    *s = s.add(&t.sum()?)?;
                }
            }
            end_step(gpu, cfg, &bar, &[("loss", &loss.loss)], epoch, step, steps)?;
        }
        let n = data.train.len() as f64;
        let [train_loss, train_recon, train_kl] = sums.map(|s| s.item().map(|v| v as f64 / n));
        let (train_loss, train_recon, train_kl) = (train_loss?, train_recon?, train_kl?);
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        check_finite(train_loss as f32, epoch, steps, &cfg.checkpoint_path())?;
        let test = evaluate_vae(model, gpu, &data.test, cfg.beta)?;
        model.set_training(false);
        let test_kl_per_dim = kl_per_dim(model, gpu, &data.test, None)?;
        model.set_training(true);
        let metrics = EpochMetrics {
            epoch,
            train_loss,
            test_loss: test.loss,
            test_recon: test.recon,
            test_kl: test.kl,
            train_recon,
            train_kl,
            test_kl_per_dim,
            beta: cfg.beta,
            seconds,
            images_per_second: data.train.len() as f64 / seconds,
            train_images: data.train.len(),
            test_images: data.test.len(),
        };
        println!(
            "epoch {epoch:>3}/{}  train_loss {:.3}  test_loss {:.3} (recon {:.3} + kl {:.3})  {:.1} s  {:.0} img/s",
            cfg.epochs,
            metrics.train_loss,
            metrics.test_loss,
            metrics.test_recon,
            metrics.test_kl,
            metrics.seconds,
            metrics.images_per_second
        );
        append_jsonl(&cfg.metrics_path(), &metrics)?;
        save_checkpoint(
            cfg,
            model.kind(),
            model.metadata(),
            &model.named_state(),
            epoch,
        )?;
        history.push(metrics);
    }
    model.set_training(false);
    write_samples(model, gpu, 64, 28, &cfg.out_dir.join("samples.png"))?;
    write_reconstructions(
        model,
        gpu,
        &data.test,
        32,
        &cfg.out_dir.join("reconstructions.png"),
    )?;
    Ok(history)
}

/// Trains the plain autoencoder (reconstruction loss only), writing the same outputs as
/// [`train_variational`].
///
/// Errors: as [`train_variational`].
pub fn train_autoencoder(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Autoencoder, Vec<EpochMetrics>)> {
    let data = cfg.load_data()?;
    let pixels = data.train.pixels();
    prepare_out_dir(cfg)?;
    gpu.manual_seed(cfg.seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let config = MlpConfig {
        input_dim: pixels,
        latent_dim: cfg.latent_dim,
        ..MlpConfig::default()
    };
    let model = Autoencoder::new(gpu, config, &mut rng)?;
    let params = model.parameters();
    let mut optimizer = Adam::new(cfg.lr);
    let mut history = Vec::new();

    for epoch in 1..=cfg.epochs {
        let batches = Batches::new(data.train.len(), cfg.batch_size, cfg.seed, epoch as u64);
        let steps = batches.num_batches();
        let bar = epoch_bar(cfg.progress, epoch, cfg.epochs, steps);
        let start = Instant::now();
        let mut loss_sum = Tensor::zeros(gpu, [])?;
        for (step, indices) in batches.enumerate() {
            let x = Tensor::from_slice(gpu, &data.train.gather(&indices), [indices.len(), pixels])?;
            let per_sample = model.loss(&x)?;
            let loss = per_sample.mean()?;
            let grads = loss.backward()?;
            optimizer.step(&params, &grads)?;
            {
                let _no_grad = no_grad();
                loss_sum = loss_sum.add(&per_sample.sum()?)?;
            }
            end_step(gpu, cfg, &bar, &[("loss", &loss)], epoch, step, steps)?;
        }
        let train_loss = loss_sum.item()? as f64 / data.train.len() as f64;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        check_finite(train_loss as f32, epoch, steps, &cfg.checkpoint_path())?;
        let test_loss = evaluate_autoencoder(&model, gpu, &data.test)?;
        let metrics = EpochMetrics {
            epoch,
            train_loss,
            test_loss,
            test_recon: test_loss,
            test_kl: 0.0,
            train_recon: train_loss,
            train_kl: 0.0,
            test_kl_per_dim: Vec::new(),
            beta: 0.0,
            seconds,
            images_per_second: data.train.len() as f64 / seconds,
            train_images: data.train.len(),
            test_images: data.test.len(),
        };
        println!(
            "epoch {epoch:>3}/{}  train_loss {:.3}  test_loss {:.3}  {:.1} s  {:.0} img/s",
            cfg.epochs,
            metrics.train_loss,
            metrics.test_loss,
            metrics.seconds,
            metrics.images_per_second
        );
        append_jsonl(&cfg.metrics_path(), &metrics)?;
        save_checkpoint(
            cfg,
            model.kind(),
            model.metadata(),
            &model.named_state(),
            epoch,
        )?;
        history.push(metrics);
    }
    write_samples(&model, gpu, 64, 28, &cfg.out_dir.join("samples.png"))?;
    write_reconstructions(
        &model,
        gpu,
        &data.test,
        32,
        &cfg.out_dir.join("reconstructions.png"),
    )?;
    Ok((model, history))
}
