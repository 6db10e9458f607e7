//! The GAN family (Goodfellow et al. 2014, Algorithm 1): the MLP GAN and the DCGAN. Each step
//! ([`gan_step`]) has the two halves of the game, in order:
//!
//! 1. Discriminator: maximise log D(x) + log(1 - D(G(z))): BCE with logits against
//!    1 on real images and 0 on generated ones, the generated batch *detached* so no
//!    gradient reaches G.
//! 2. Generator: the non-saturating loss of sec. 3, maximise log D(G(z)) (BCE against 1),
//!    backpropagated *through* D into G; only G's parameters are updated.
//!
//! Images are scaled to [-1, 1] to match the generator's tanh. After every epoch the same 64
//! noise vectors are decoded into OUT/samples_epoch_NNN.png, so the grids show the generator
//! changing; OUT/samples.png at the end.

use rand::SeedableRng;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::decode_to_host;
use crate::models::{Adversarial, Dcgan, MlpGan, Model};
use crate::ops::bce_with_logits;
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{
    Batch, EpochStats, Grid, Metrics, Optimizer, Step, TrainConfig, Trainable, fit,
};

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

impl GanMetrics {
    /// The epoch's line from the means of a GAN step's four values, in the order the GAN
    /// steps return them: d_loss, g_loss, D(x), D(G(z)).
    pub fn from_stats(stats: &EpochStats) -> GanMetrics {
        GanMetrics {
            epoch: stats.epoch,
            d_loss: stats.means[0],
            g_loss: stats.means[1],
            d_real: stats.means[2],
            d_fake: stats.means[3],
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
        }
    }
}

impl Metrics for GanMetrics {
    fn line(&self, epochs: usize) -> String {
        format!(
            "epoch {:>3}/{epochs}  d_loss {:.4}  g_loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  {:.1} s  {:.0} img/s",
            self.epoch,
            self.d_loss,
            self.g_loss,
            self.d_real,
            self.d_fake,
            self.seconds,
            self.images_per_second
        )
    }

    fn finite_values(&self) -> Vec<f64> {
        vec![self.d_loss, self.g_loss, self.d_real, self.d_fake]
    }
}

/// One GAN training step on real images `x (B, 784)` in [0, 1]: the discriminator's update on
/// real images (scaled to [-1, 1]) and on `G(z)` for a fresh `z ~ N(0, I)` of
/// `(B, latent_dim)` (detached), then the generator's update through the updated
/// discriminator. Shows `d_loss` and `g_loss`; sums per sample: d_loss, g_loss, D(x), D(G(z)).
///
/// Errors: shape and GPU errors.
pub fn gan_step(
    model: &dyn Adversarial,
    discriminator: &mut Optimizer,
    generator: &mut Optimizer,
    x: &Tensor,
) -> Result<Step> {
    adversarial_step(
        discriminator,
        generator,
        x,
        model.latent_dim(),
        |z| model.generator(z),
        |images| model.discriminator(images),
    )
}

/// The step of [`gan_step`] with the players given as functions: `generate` maps `z (B,
/// latent_dim)` to images `(B, 784)` in [-1, 1], `discriminate` maps images to logits `(B, 1)`.
/// The conditional GAN's step ([`crate::train::conditional::cgan_step`]) is this one with the
/// batch's labels bound into both.
///
/// Errors: shape and GPU errors.
pub fn adversarial_step(
    discriminator: &mut Optimizer,
    generator: &mut Optimizer,
    x: &Tensor,
    latent_dim: usize,
    generate: impl Fn(&Tensor) -> Result<Tensor>,
    discriminate: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Step> {
    let (gpu, b) = (x.gpu(), x.dims()[0]);
    let real = x.affine(2.0, -1.0)?;
    let ones = Tensor::full(gpu, [b, 1], 1.0)?;
    let zeros = Tensor::zeros(gpu, [b, 1])?;

    // 1. Discriminator step on real and detached fake images.
    let z = Tensor::randn(gpu, [b, latent_dim])?;
    let fake = generate(&z)?;
    let d_real_logits = discriminate(&real)?;
    let d_fake_logits = discriminate(&fake.detach())?;
    let d_loss = bce_with_logits(&d_real_logits, &ones)?
        .add(&bce_with_logits(&d_fake_logits, &zeros)?)?
        .mean()?;
    let d_grads = d_loss.backward()?;
    discriminator.step(&d_grads)?;

    // 2. Generator step through the (updated) discriminator: maximise log D(G(z)).
    let g_loss = bce_with_logits(&discriminate(&fake)?, &ones)?.mean()?;
    let g_grads = g_loss.backward()?;
    generator.step(&g_grads)?;

    let _no_grad = no_grad();
    let scale = b as f32;
    Ok(Step {
        sums: vec![
            d_loss.scale(scale)?,
            g_loss.scale(scale)?,
            d_real_logits.sigmoid()?.sum()?,
            d_fake_logits.sigmoid()?.sum()?,
        ],
        shown: vec![("d_loss", d_loss), ("g_loss", g_loss)],
    })
}

/// Adam with betas (0.5, 0.999), as both players use (Radford et al. 2016).
fn gan_adam(lr: f32, params: Vec<(String, Tensor)>) -> Optimizer {
    let params = params.into_iter().map(|(_, t)| t).collect();
    Optimizer::new(Adam::new(lr).with_betas(0.5, 0.999), params)
}

/// The GAN family's part of [`fit`]: one optimizer per player, the fixed noise of the
/// per-epoch grids.
pub struct GanTrainer<'m> {
    /// The GAN.
    pub model: &'m dyn Adversarial,
    /// Adam over the discriminator's parameters.
    pub discriminator: Optimizer,
    /// Adam over the generator's parameters.
    pub generator: Optimizer,
    /// MNIST.
    pub data: Mnist,
    /// The 64 noise vectors of every grid, drawn once the GPU generator is seeded.
    fixed_noise: Option<Tensor>,
    gpu: Gpu,
}

impl<'m> GanTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate.
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: &'m dyn Adversarial, data: Mnist) -> Self {
        GanTrainer {
            model,
            discriminator: gan_adam(cfg.lr, model.discriminator_parameters()),
            generator: gan_adam(cfg.lr, model.generator_parameters()),
            data,
            fixed_noise: None,
            gpu: gpu.clone(),
        }
    }

    /// The fixed-noise grid, decoded with the generator's batch norms on their running
    /// statistics.
    fn grid(&self, file: String) -> Result<Grid> {
        let noise = self
            .fixed_noise
            .as_ref()
            .ok_or_else(|| Error::Invalid("the GAN trainer was not started".into()))?;
        self.model.set_generator_training(false);
        let images = decode_to_host(self.model, noise);
        self.model.set_generator_training(true);
        Ok(Grid::new(file, images?, 8))
    }
}

impl Trainable for GanTrainer<'_> {
    type Metrics = GanMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn begin(&mut self) -> Result<()> {
        // The same 64 noise vectors every epoch, so the grids show the generator changing.
        self.fixed_noise = Some(Tensor::randn(&self.gpu, [64, self.model.latent_dim()])?);
        Ok(())
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        gan_step(
            self.model,
            &mut self.discriminator,
            &mut self.generator,
            batch.x,
        )
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![
            ("discriminator", &mut self.discriminator),
            ("generator", &mut self.generator),
        ]
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<GanMetrics> {
        Ok(GanMetrics::from_stats(stats))
    }

    fn epoch_images(&mut self, epoch: usize) -> Result<Vec<Grid>> {
        Ok(vec![self.grid(format!("samples_epoch_{epoch:03}.png"))?])
    }

    fn final_images(&mut self) -> Result<Vec<Grid>> {
        let grid = self.grid("samples.png".into());
        // Training is over: the model stays in eval mode.
        self.model.set_training(false);
        Ok(vec![grid?])
    }
}

/// Trains the MLP GAN; see [`train_adversarial`].
///
/// Errors: as [`train_adversarial`].
pub fn train_gan(gpu: &Gpu, cfg: &TrainConfig) -> Result<(MlpGan, Vec<GanMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = MlpGan::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = train_adversarial(gpu, cfg, &model)?;
    Ok((model, history))
}

/// Trains the DCGAN; see [`train_adversarial`].
///
/// Errors: as [`train_adversarial`].
pub fn train_dcgan(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Dcgan, Vec<GanMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = Dcgan::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = train_adversarial(gpu, cfg, &model)?;
    Ok((model, history))
}

/// Trains a GAN with [`fit`]. Writes metrics.jsonl, model.safetensors and
/// OUT/samples_epoch_NNN.png (a fixed-noise 8x8 grid) after every epoch, OUT/samples.png at
/// the end; leaves the model in eval mode.
///
/// Errors: data errors; [`Error::NonFiniteLoss`] if a loss diverges; I/O errors.
pub fn train_adversarial(
    gpu: &Gpu,
    cfg: &TrainConfig,
    model: &dyn Adversarial,
) -> Result<Vec<GanMetrics>> {
    let data = cfg.load_data()?;
    fit(gpu, cfg, &mut GanTrainer::new(gpu, cfg, model, data))
}
