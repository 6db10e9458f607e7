//! The GAN training loop (Goodfellow et al. 2014, Algorithm 1), shared by the MLP GAN
//! and the DCGAN. Each step has the two halves of the game, in order:
//!
//! 1. Discriminator: maximise log D(x) + log(1 - D(G(z))): BCE with logits against
//!    1 on real images and 0 on generated ones, the generated batch *detached* so no
//!    gradient reaches G.
//! 2. Generator: the non-saturating loss of sec. 3, maximise log D(G(z)) (BCE against 1),
//!    backpropagated *through* D into G; only G's parameters are updated.
//!
//! Images are scaled to [-1, 1] to match the generator's tanh.

use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::Batches;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Adversarial, Dcgan, MlpGan};
use crate::ops::bce_with_logits;
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{
    TrainConfig, append_jsonl, check_finite, decode_to_host, end_step, epoch_bar, prepare_out_dir,
    save_checkpoint,
};
use crate::viz;

/// One line of metrics.jsonl for a GAN; all values are epoch means.
#[derive(Clone, Debug, Serialize)]
pub struct GanMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Discriminator loss: BCE on real + BCE on fake, nats per sample.
    pub d_loss: f64,
    /// Generator loss: -log D(G(z)), nats per sample.
    pub g_loss: f64,
    /// Mean D(x) on real images (a probability).
    pub d_real: f64,
    /// Mean D(G(z)) on generated images, before the discriminator's update.
    pub d_fake: f64,
    /// Seconds of training steps.
    pub seconds: f64,
    /// Real images per second.
    pub images_per_second: f64,
}

/// Trains the MLP GAN; see [`train_adversarial`].
pub fn train_gan(gpu: &Gpu, cfg: &TrainConfig) -> Result<(MlpGan, Vec<GanMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = MlpGan::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = train_adversarial(gpu, cfg, &model)?;
    Ok((model, history))
}

/// Trains the DCGAN; see [`train_adversarial`].
pub fn train_dcgan(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Dcgan, Vec<GanMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = Dcgan::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = train_adversarial(gpu, cfg, &model)?;
    Ok((model, history))
}

/// The GAN loop: Adam with betas (0.5, 0.999) for both players (Radford et al. 2016).
/// Writes metrics.jsonl, OUT/samples_epoch_NNN.png (a fixed-noise 8x8 grid after
/// every epoch), OUT/samples.png and model.safetensors (after every epoch).
///
/// Errors: data errors; [`crate::Error::NonFiniteLoss`] if a loss diverges; I/O errors.
pub fn train_adversarial(
    gpu: &Gpu,
    cfg: &TrainConfig,
    model: &dyn Adversarial,
) -> Result<Vec<GanMetrics>> {
    let data = cfg.load_data()?;
    let pixels = data.train.pixels();
    prepare_out_dir(cfg)?;
    gpu.manual_seed(cfg.seed);
    let g_params: Vec<Tensor> = model
        .generator_parameters()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let d_params: Vec<Tensor> = model
        .discriminator_parameters()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut opt_g = Adam::new(cfg.lr).with_betas(0.5, 0.999);
    let mut opt_d = Adam::new(cfg.lr).with_betas(0.5, 0.999);
    // The same 64 noise vectors every epoch, so the grids show the generator changing.
    let fixed_noise = Tensor::randn(gpu, [64, cfg.latent_dim])?;
    let mut history = Vec::new();

    for epoch in 1..=cfg.epochs {
        let batches = Batches::new(data.train.len(), cfg.batch_size, cfg.seed, epoch as u64);
        let steps = batches.num_batches();
        let bar = epoch_bar(cfg.progress, epoch, cfg.epochs, steps);
        let start = Instant::now();
        // Epoch sums kept on the GPU: d_loss, g_loss, D(x), D(G(z)) (each per sample).
        let mut sums = [
            Tensor::zeros(gpu, [])?,
            Tensor::zeros(gpu, [])?,
            Tensor::zeros(gpu, [])?,
            Tensor::zeros(gpu, [])?,
        ];
        for (step, indices) in batches.enumerate() {
            let b = indices.len();
            let real = Tensor::from_slice(gpu, &data.train.gather(&indices), [b, pixels])?
                .affine(2.0, -1.0)?;
            let ones = Tensor::full(gpu, [b, 1], 1.0)?;
            let zeros = Tensor::zeros(gpu, [b, 1])?;

            // 1. Discriminator step on real and detached fake images.
            let z = Tensor::randn(gpu, [b, cfg.latent_dim])?;
            let fake = model.generator(&z)?;
            let d_real_logits = model.discriminator(&real)?;
            let d_fake_logits = model.discriminator(&fake.detach())?;
            let d_loss = bce_with_logits(&d_real_logits, &ones)?
                .add(&bce_with_logits(&d_fake_logits, &zeros)?)?
                .mean()?;
            let d_grads = d_loss.backward()?;
            opt_d.step(&d_params, &d_grads)?;

            // 2. Generator step through the (updated) discriminator: maximise log D(G(z)).
            let g_loss = bce_with_logits(&model.discriminator(&fake)?, &ones)?.mean()?;
            let g_grads = g_loss.backward()?;
            opt_g.step(&g_params, &g_grads)?;

            {
                let _no_grad = no_grad();
                let scale = b as f32;
                let terms = [
                    d_loss.scale(scale)?,
                    g_loss.scale(scale)?,
                    d_real_logits.sigmoid()?.sum()?,
                    d_fake_logits.sigmoid()?.sum()?,
                ];
                for (s, t) in sums.iter_mut().zip(&terms) {
                    *s = s.add(t)?;
                }
            }
            end_step(
                gpu,
                cfg,
                &bar,
                &[("d_loss", &d_loss), ("g_loss", &g_loss)],
                epoch,
                step,
                steps,
            )?;
        }
        let n = data.train.len() as f64;
        let [d_loss, g_loss, d_real, d_fake] = sums.map(|s| s.item().map(|v| v as f64 / n));
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let metrics = GanMetrics {
            epoch,
            d_loss: d_loss?,
            g_loss: g_loss?,
            d_real: d_real?,
            d_fake: d_fake?,
            seconds,
            images_per_second: n / seconds,
        };
        check_finite(
            metrics.d_loss as f32 + metrics.g_loss as f32,
            epoch,
            steps,
            &cfg.checkpoint_path(),
        )?;
        println!(
            "epoch {epoch:>3}/{}  d_loss {:.4}  g_loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  {:.1} s  {:.0} img/s",
            cfg.epochs,
            metrics.d_loss,
            metrics.g_loss,
            metrics.d_real,
            metrics.d_fake,
            metrics.seconds,
            metrics.images_per_second
        );
        append_jsonl(&cfg.metrics_path(), &metrics)?;
        // Sample with the generator's batch norms in eval mode (running statistics).
        model.set_generator_training(false);
        let grid = decode_to_host(model, &fixed_noise)?;
        model.set_generator_training(true);
        viz::save_grid(
            &cfg.out_dir.join(format!("samples_epoch_{epoch:03}.png")),
            &grid,
            28,
            28,
            8,
        )?;
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
    let grid = decode_to_host(model, &fixed_noise)?;
    viz::save_grid(&cfg.out_dir.join("samples.png"), &grid, 28, 28, 8)?;
    Ok(history)
}
