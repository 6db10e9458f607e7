//! pix2pix training (Isola et al. 2017, sec. 3.3), on the skeleton [`fit`]: the paired task of
//! completing a digit from its top half (input: the digit with its bottom 14 rows blanked;
//! target: the whole digit), images scaled to [-1, 1].
//!
//! Each step ([`pix2pix_step`]), as the paper's code: G translates the input x into G(x);
//! 1. the discriminator: minimise `(BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)) / 2`, averaged over
//!    its 7 x 7 patches, G(x) detached (the paper halves D's objective, sec. 3.3);
//! 2. the generator: minimise `BCE(D(x, G(x)), 1) + lambda |y - G(x)|_1` (eq. 4, the
//!    non-saturating form of sec. 3.3), lambda = 100, the L1 term the mean over pixels in
//!    [-1, 1] units.
//!
//! With `l1_only` (the paper's ablation, table 1 "L1"): the same U-Net minimising the L1 term
//! alone; the discriminator is never run or trained.
//!
//! Adam with lr 2e-4 and betas (0.5, 0.999) for both (sec. 3.3). metrics.jsonl reports the
//! epoch means of each term, the training L1 in [0, 1] intensity units, and the L1 of the
//! completions of the first [`EVAL_IMAGES`] test digits; OUT/translations_epoch_NNN.png shows
//! rows of (input, output, target) for the first 8 test digits.

use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::domains::{top_half, top_half_mask};
use crate::data::{Dataset, Mnist};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, for_each_chunk};
use crate::models::{Model, Pix2Pix};
use crate::nn::Module;
use crate::ops::{bce_with_logits, l1_loss};
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{
    Batch, EpochStats, Grid, Metrics, Optimizer, Step, TrainConfig, Trainable, fit,
};

/// Weight of the L1 term (the paper's lambda, sec. 4.2).
pub const LAMBDA: f32 = 100.0;
/// Test digits completed after every epoch for `test_l1`.
pub const EVAL_IMAGES: usize = 1000;
/// Test digits in each epoch's grid.
pub const GRID_IMAGES: usize = 8;
/// Default base width of the U-Net and the PatchGAN.
pub const DEFAULT_WIDTH: usize = 32;

/// The settings `deepgen train pix2pix` adds to [`TrainConfig`].
#[derive(Clone, Copy, Debug)]
pub struct Pix2PixOptions {
    /// Base channel count of both networks.
    pub width: usize,
    /// Train with the L1 term alone (no discriminator).
    pub l1_only: bool,
}

impl Default for Pix2PixOptions {
    fn default() -> Self {
        Pix2PixOptions {
            width: DEFAULT_WIDTH,
            l1_only: false,
        }
    }
}

/// One line of metrics.jsonl for pix2pix: epoch means over the training images.
#[derive(Clone, Debug, Serialize)]
pub struct Pix2PixMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// The discriminator's loss (nats, mean over patches, halved); None with `--l1-only`.
    pub d_loss: Option<f64>,
    /// The generator's adversarial term `BCE(D(x, G(x)), 1)` (nats per patch); None with
    /// `--l1-only`.
    pub g_gan: Option<f64>,
    /// Mean |G(x) - y| per pixel on the training batches, intensities in [0, 1].
    pub train_l1: f64,
    /// Mean |G(x) - y| per pixel on the first [`EVAL_IMAGES`] test digits (eval mode).
    pub test_l1: f64,
    /// Test digits behind `test_l1`.
    pub test_images: usize,
    /// Seconds of training steps.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

impl Metrics for Pix2PixMetrics {
    fn line(&self, epochs: usize) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        format!(
            "epoch {:>3}/{epochs}  d_loss {}  g_gan {}  train_l1 {:.4}  test_l1 {:.4}  {:.1} s  {:.0} img/s",
            self.epoch,
            opt(self.d_loss),
            opt(self.g_gan),
            self.train_l1,
            self.test_l1,
            self.seconds,
            self.images_per_second
        )
    }

    fn finite_values(&self) -> Vec<f64> {
        let mut v = vec![self.train_l1, self.test_l1];
        v.extend(self.d_loss);
        v.extend(self.g_gan);
        v
    }
}

/// What one step computed: batch means, scalars on the GPU.
pub struct Pix2PixStep {
    /// The discriminator's loss (None with `l1_only`).
    pub d_loss: Option<Tensor>,
    /// The generator's adversarial term (None with `l1_only`).
    pub g_gan: Option<Tensor>,
    /// Mean |G(x) - y| per pixel in [0, 1] units.
    pub l1: Tensor,
}

/// One pix2pix step on targets `y (B, 784)` in [0, 1] and the top-half `mask (784,)`:
/// input `x = y * mask`, then the discriminator's update and the generator's (module doc);
/// with `discriminator` None, the L1 term alone updates the generator.
///
/// Errors: shape and GPU errors.
pub fn pix2pix_step(
    model: &Pix2Pix,
    generator: &mut Optimizer,
    discriminator: Option<&mut Optimizer>,
    y: &Tensor,
    mask: &Tensor,
    lambda: f32,
) -> Result<Pix2PixStep> {
    let gpu = y.gpu();
    let b = y.dims()[0];
    let (x, real) = {
        let _no_grad = no_grad();
        (
            y.mul(mask)?.affine(2.0, -1.0)?.reshape([b, 1, 28, 28])?,
            y.affine(2.0, -1.0)?.reshape([b, 1, 28, 28])?,
        )
    };
    let fake = model.generator(&x)?;
    let l1 = l1_loss(&fake, &real)?.mean()?;
    let Some(discriminator) = discriminator else {
        let grads = l1.scale(lambda)?.backward()?;
        generator.step(&grads)?;
        let _no_grad = no_grad();
        return Ok(Pix2PixStep {
            d_loss: None,
            g_gan: None,
            l1: l1.scale(0.5)?,
        });
    };
    // 1. The discriminator, on the real pair and the detached fake pair.
    let patches_mean = |logits: &Tensor, target: f32| -> Result<Tensor> {
        let t = Tensor::full(gpu, logits.shape().clone(), target)?;
        let per_patch = 1.0 / (logits.numel() / b) as f32;
        bce_with_logits(logits, &t)?.mean()?.scale(per_patch)
    };
    let d_real = patches_mean(&model.discriminator(&x, &real)?, 1.0)?;
    let d_fake = patches_mean(&model.discriminator(&x, &fake.detach())?, 0.0)?;
    let d_loss = d_real.add(&d_fake)?.scale(0.5)?;
    let grads = d_loss.backward()?;
    discriminator.step(&grads)?;
    drop(grads);
    // 2. The generator, through the updated discriminator.
    let g_gan = patches_mean(&model.discriminator(&x, &fake)?, 1.0)?;
    let g_loss = g_gan.add(&l1.scale(lambda)?)?;
    let grads = g_loss.backward()?;
    generator.step(&grads)?;
    let _no_grad = no_grad();
    Ok(Pix2PixStep {
        d_loss: Some(d_loss.detach()),
        g_gan: Some(g_gan.detach()),
        l1: l1.scale(0.5)?,
    })
}

/// Adam with lr `lr` and betas (0.5, 0.999).
fn adam(lr: f32, params: Vec<(String, Tensor)>) -> Optimizer {
    let params = params.into_iter().map(|(_, t)| t).collect();
    Optimizer::new(Adam::new(lr).with_betas(0.5, 0.999), params)
}

/// Completes `inputs` (`(n, 784)` in [0, 1], bottom half blank) in chunks, eval mode: the
/// outputs on the host.
///
/// Errors: GPU errors.
pub fn complete(model: &Pix2Pix, gpu: &Gpu, inputs: &[f32]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(inputs.len());
    for_each_chunk(gpu, Rows::Host(inputs, 784), EVAL_BATCH, |x, _| {
        out.extend(model.translate(x)?.to_vec()?);
        Ok(())
    })?;
    Ok(out)
}

/// Mean |a - b| per value.
pub(crate) fn mean_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / a.len().max(1) as f64
}

/// Rows of (first, second, third) image triples, `n` rows, for a grid.
pub(crate) fn triples(first: &[f32], second: &[f32], third: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * n * 784);
    for i in 0..n {
        for v in [first, second, third] {
            out.extend_from_slice(&v[i * 784..(i + 1) * 784]);
        }
    }
    out
}

/// pix2pix's part of [`fit`].
pub struct Pix2PixTrainer<'m> {
    /// The model.
    pub model: &'m Pix2Pix,
    /// Adam over the generator's parameters.
    pub generator: Optimizer,
    /// Adam over the discriminator's parameters (listed, never stepped, with `l1_only`).
    pub discriminator: Optimizer,
    /// MNIST.
    pub data: Mnist,
    /// The L1 weight.
    pub lambda: f32,
    mask: Tensor,
    /// The first [`EVAL_IMAGES`] test digits, whole, and their top halves.
    test: Dataset,
    test_inputs: Dataset,
    gpu: Gpu,
}

impl<'m> Pix2PixTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate, lambda = [`LAMBDA`].
    ///
    /// Errors: upload errors.
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: &'m Pix2Pix, data: Mnist) -> Result<Self> {
        let test = data.test.clone().truncate(EVAL_IMAGES);
        Ok(Pix2PixTrainer {
            model,
            generator: adam(cfg.lr, model.generator_parameters()),
            discriminator: adam(cfg.lr, model.discriminator_parameters()),
            lambda: LAMBDA,
            mask: Tensor::from_slice(gpu, &top_half_mask(28, 28), [784])?,
            test_inputs: top_half(&test),
            test,
            data,
            gpu: gpu.clone(),
        })
    }

    /// The first [`GRID_IMAGES`] test digits' (input, output, target) rows, eval mode.
    fn grid(&self, file: String) -> Result<Grid> {
        let n = GRID_IMAGES.min(self.test.len());
        let inputs = &self.test_inputs.images[..n * 784];
        self.model.set_training(false);
        let out = complete(self.model, &self.gpu, inputs);
        self.model.set_training(true);
        Ok(Grid::new(
            file,
            triples(inputs, &out?, &self.test.images, n),
            3,
        ))
    }
}

impl Trainable for Pix2PixTrainer<'_> {
    type Metrics = Pix2PixMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        let b = batch.x.dims()[0] as f32;
        let d = (!self.model.l1_only).then_some(&mut self.discriminator);
        let s = pix2pix_step(
            self.model,
            &mut self.generator,
            d,
            batch.x,
            &self.mask,
            self.lambda,
        )?;
        let _no_grad = no_grad();
        let mut sums = vec![s.l1.scale(b)?];
        let mut shown = vec![("l1", s.l1)];
        if let (Some(d), Some(g)) = (s.d_loss, s.g_gan) {
            sums.push(d.scale(b)?);
            sums.push(g.scale(b)?);
            shown.push(("d", d));
            shown.push(("g_gan", g));
        }
        Ok(Step { sums, shown })
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![
            ("discriminator", &mut self.discriminator),
            ("generator", &mut self.generator),
        ]
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<Pix2PixMetrics> {
        self.model.set_training(false);
        let out = complete(self.model, &self.gpu, &self.test_inputs.images);
        self.model.set_training(true);
        let test_l1 = mean_abs(&out?, &self.test.images);
        Ok(Pix2PixMetrics {
            epoch: stats.epoch,
            train_l1: stats.means[0],
            d_loss: stats.means.get(1).copied(),
            g_gan: stats.means.get(2).copied(),
            test_l1,
            test_images: self.test.len(),
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
        })
    }

    fn epoch_images(&mut self, epoch: usize) -> Result<Vec<Grid>> {
        Ok(vec![
            self.grid(format!("translations_epoch_{epoch:03}.png"))?,
        ])
    }

    fn final_images(&mut self) -> Result<Vec<Grid>> {
        let grid = self.grid("translations.png".into());
        self.model.set_training(false);
        Ok(vec![grid?])
    }
}

/// Trains pix2pix (or, with `opts.l1_only`, its U-Net with L1 alone) with [`fit`]:
/// metrics.jsonl, model.safetensors and OUT/translations_epoch_NNN.png after every epoch,
/// OUT/translations.png at the end; leaves the model in eval mode.
///
/// Errors: data errors; [`crate::Error::NonFiniteLoss`] if a loss diverges; I/O errors.
pub fn train_pix2pix(
    gpu: &Gpu,
    cfg: &TrainConfig,
    opts: Pix2PixOptions,
) -> Result<(Pix2Pix, Vec<Pix2PixMetrics>)> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = Pix2Pix::new(gpu, opts.width, opts.l1_only, &mut rng)?;
    let data = cfg.load_data()?;
    let history = fit(gpu, cfg, &mut Pix2PixTrainer::new(gpu, cfg, &model, data)?)?;
    Ok((model, history))
}
