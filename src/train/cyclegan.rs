//! CycleGAN training (Zhu et al. 2017, sec. 3-4), on the skeleton [`fit`]: unpaired
//! translation between A = MNIST digits of the first half of the training set and B = the
//! second half restyled (strokes thickened by a 3 x 3 maximum filter, intensities inverted;
//! [`split_domains`]), images scaled to [-1, 1].
//!
//! Each step ([`cyclegan_step`]), as the authors' code: a batch a from A and a batch b from B;
//! 1. the generators G: A -> B and F: B -> A together minimise
//!    `LS(D_B(G(a)), 1) + LS(D_A(F(b)), 1)`
//!    `+ lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)`          (cycle consistency, eq. 2-3)
//!    `+ lambda_id (|G(b) - b|_1 + |F(a) - a|_1)`             (identity, sec. 5.2)
//!    with LS the least-squares GAN loss against a constant ([`least_squares_loss`], sec. 4),
//!    lambda = 10, lambda_id = `--lambda-identity` (0 by default, as the paper's sec. 4, so
//!    the identity terms are left out; 5 = 0.5 lambda is sec. 5.2's), the L1 terms means over
//!    pixels in [-1, 1] units;
//! 2. the discriminators minimise `(LS(D_B(b), 1) + LS(D_B(G(a)), 0)) / 2` and the same for
//!    D_A with a and F(b), the fakes detached.
//!
//! Adam with lr 2e-4 and betas (0.5, 0.999), one for both generators and one for both
//! discriminators (the authors' code). One epoch is one pass over A; each A index i is paired
//! with B image `order[i % |B|]`, `order` a permutation of B seeded by `--seed` (the batches of
//! A are shuffled every epoch, so the pairs in a batch change; the pairing itself carries no
//! information, the domains being different images). Left out: the history of 50 generated
//! images the discriminators are also shown (sec. 4; Shrivastava et al. 2017), and the linear
//! decay of the learning rate over the second half of training.
//!
//! metrics.jsonl reports each term's epoch mean (the L1 terms in [0, 1] intensity units) and
//! the cycle L1 of the first [`EVAL_IMAGES`] test digits each way; OUT/a_to_b_epoch_NNN.png
//! shows rows of (a, G(a), F(G(a))) and OUT/b_to_a_epoch_NNN.png rows of (b, F(b), G(F(b)))
//! for the first 8 test digits (and their restyled twins).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::domains::{restyle, split_domains};
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, for_each_chunk};
use crate::models::{CycleGan, Direction, Model};
use crate::nn::Module;
use crate::ops::{l1_loss, least_squares_loss};
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::pix2pix::{mean_abs, triples};
use crate::train::{
    Batch, EpochStats, Grid, Metrics, Optimizer, Step, TrainConfig, Trainable, fit,
};

/// Weight of the cycle-consistency terms (the paper's lambda, sec. 4).
pub const LAMBDA_CYCLE: f32 = 10.0;
/// Weight of the identity terms where the paper uses them: 0.5 lambda (sec. 5.2, photos from
/// paintings; the authors' code's default `lambda_identity` 0.5).
pub const LAMBDA_IDENTITY: f32 = 0.5 * LAMBDA_CYCLE;
/// `deepgen train cyclegan`'s identity weight: 0, as the paper's main experiments (sec. 4; the
/// identity term enters only in sec. 5.2, for photos from paintings). Measured here (README,
/// "Image-to-image translation"): at width 8, after 1,000 steps, the paper's 0.5 lambda left G
/// painting hatched blobs (label preservation 0.145) where 0 drew the thick inverted digits
/// (0.848 after 750 steps).
pub const DEFAULT_LAMBDA_IDENTITY: f32 = 0.0;
/// Test digits translated after every epoch for the test cycle L1.
pub const EVAL_IMAGES: usize = 1000;
/// Test digits in each epoch's grids.
pub const GRID_IMAGES: usize = 8;
/// Default base width of the generators and discriminators.
pub const DEFAULT_WIDTH: usize = 16;
/// Default residual blocks per generator.
pub const DEFAULT_BLOCKS: usize = 2;

/// The settings `deepgen train cyclegan` adds to [`TrainConfig`].
#[derive(Clone, Copy, Debug)]
pub struct CycleGanOptions {
    /// Base channel count.
    pub width: usize,
    /// Residual blocks per generator.
    pub blocks: usize,
    /// Weight of the identity terms (`--lambda-identity`; [`DEFAULT_LAMBDA_IDENTITY`] = 0 by
    /// default, which leaves them out; [`LAMBDA_IDENTITY`] is the paper's 0.5 lambda).
    pub lambda_identity: f32,
}

impl Default for CycleGanOptions {
    fn default() -> Self {
        CycleGanOptions {
            width: DEFAULT_WIDTH,
            blocks: DEFAULT_BLOCKS,
            lambda_identity: DEFAULT_LAMBDA_IDENTITY,
        }
    }
}

/// One line of metrics.jsonl for CycleGAN: epoch means over the A images of the epoch.
#[derive(Clone, Debug, Serialize)]
pub struct CycleGanMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// D_A's least-squares loss (halved).
    pub d_a: f64,
    /// D_B's least-squares loss (halved).
    pub d_b: f64,
    /// The generators' adversarial terms, `LS(D_B(G(a)), 1) + LS(D_A(F(b)), 1)`.
    pub g_gan: f64,
    /// Cycle L1, the mean of both directions, per pixel in [0, 1] units.
    pub cycle_l1: f64,
    /// Identity L1, the mean of |G(b) - b| and |F(a) - a|, per pixel in [0, 1] units.
    pub identity_l1: f64,
    /// Mean |F(G(a)) - a| per pixel over the first [`EVAL_IMAGES`] test digits.
    pub test_cycle_l1: f64,
    /// Mean |G(F(b)) - b| over their restyled twins.
    pub test_cycle_l1_b: f64,
    /// Seconds of training steps.
    pub seconds: f64,
    /// A images per second (each step also takes as many B images).
    pub images_per_second: f64,
}

impl Metrics for CycleGanMetrics {
    fn line(&self, epochs: usize) -> String {
        format!(
            "epoch {:>3}/{epochs}  d_a {:.4}  d_b {:.4}  g_gan {:.4}  cycle {:.4}  identity {:.4}  test cycle {:.4} / {:.4}  {:.1} s  {:.0} img/s",
            self.epoch,
            self.d_a,
            self.d_b,
            self.g_gan,
            self.cycle_l1,
            self.identity_l1,
            self.test_cycle_l1,
            self.test_cycle_l1_b,
            self.seconds,
            self.images_per_second
        )
    }

    fn finite_values(&self) -> Vec<f64> {
        vec![
            self.d_a,
            self.d_b,
            self.g_gan,
            self.cycle_l1,
            self.identity_l1,
            self.test_cycle_l1,
            self.test_cycle_l1_b,
        ]
    }
}

/// What one step computed: batch means, scalars on the GPU (L1 terms in [0, 1] units).
pub struct CycleGanStep {
    /// D_A's loss.
    pub d_a: Tensor,
    /// D_B's loss.
    pub d_b: Tensor,
    /// The generators' adversarial terms.
    pub g_gan: Tensor,
    /// Mean of the two cycle L1 terms.
    pub cycle_l1: Tensor,
    /// Mean of the two identity L1 terms.
    pub identity_l1: Tensor,
}

/// One CycleGAN step on `a (B, 784)` from A and `b (B', 784)` from B, both in [0, 1]: the
/// generators' update, then the discriminators' (module doc). `lambda_identity` 0 skips the
/// identity terms.
///
/// Errors: shape and GPU errors.
pub fn cyclegan_step(
    model: &CycleGan,
    generators: &mut Optimizer,
    discriminators: &mut Optimizer,
    a: &Tensor,
    b: &Tensor,
    (lambda_cycle, lambda_identity): (f32, f32),
) -> Result<CycleGanStep> {
    let (real_a, real_b) = {
        let _no_grad = no_grad();
        let scaled = |x: &Tensor| x.affine(2.0, -1.0)?.reshape([x.dims()[0], 1, 28, 28]);
        (scaled(a)?, scaled(b)?)
    };
    // 1. The generators.
    let fake_b = model.generate(Direction::AToB, &real_a)?;
    let fake_a = model.generate(Direction::BToA, &real_b)?;
    let g_gan = least_squares_loss(&model.discriminate(true, &fake_b)?, 1.0)?
        .mean()?
        .add(&least_squares_loss(&model.discriminate(false, &fake_a)?, 1.0)?.mean()?)?;
    let cycle = l1_loss(&model.generate(Direction::BToA, &fake_b)?, &real_a)?
        .mean()?
        .add(&l1_loss(&model.generate(Direction::AToB, &fake_a)?, &real_b)?.mean()?)?;
    let mut g_loss = g_gan.add(&cycle.scale(lambda_cycle)?)?;
    let identity = if lambda_identity > 0.0 {
        let id = l1_loss(&model.generate(Direction::AToB, &real_b)?, &real_b)?
            .mean()?
            .add(&l1_loss(&model.generate(Direction::BToA, &real_a)?, &real_a)?.mean()?)?;
        g_loss = g_loss.add(&id.scale(lambda_identity)?)?;
        Some(id)
    } else {
        None
    };
    let grads = g_loss.backward()?;
    generators.step(&grads)?;
    drop(grads);
    // 2. The discriminators, on real images and the detached fakes.
    let d_loss = |domain_b: bool, real: &Tensor, fake: &Tensor| -> Result<Tensor> {
        least_squares_loss(&model.discriminate(domain_b, real)?, 1.0)?
            .mean()?
            .add(&least_squares_loss(&model.discriminate(domain_b, &fake.detach())?, 0.0)?.mean()?)?
            .scale(0.5)
    };
    let d_a = d_loss(false, &real_a, &fake_a)?;
    let d_b = d_loss(true, &real_b, &fake_b)?;
    let grads = d_a.add(&d_b)?.backward()?;
    discriminators.step(&grads)?;
    let _no_grad = no_grad();
    // Means of two terms in [-1, 1] units -> per pixel in [0, 1]: a quarter.
    let identity_l1 = match identity {
        Some(id) => id.scale(0.25)?,
        None => Tensor::zeros(a.gpu(), [])?,
    };
    Ok(CycleGanStep {
        d_a: d_a.detach(),
        d_b: d_b.detach(),
        g_gan: g_gan.detach(),
        cycle_l1: cycle.scale(0.25)?,
        identity_l1,
    })
}

/// Adam with lr `lr` and betas (0.5, 0.999).
fn adam(lr: f32, params: Vec<(String, Tensor)>) -> Optimizer {
    let params = params.into_iter().map(|(_, t)| t).collect();
    Optimizer::new(Adam::new(lr).with_betas(0.5, 0.999), params)
}

/// Translates `images` (`(n, 784)` in [0, 1]) in `direction` in chunks: the outputs on the
/// host. The model should be in eval mode (instance norm behaves the same either way).
///
/// Errors: GPU errors.
pub fn translate_images(
    model: &CycleGan,
    gpu: &Gpu,
    direction: Direction,
    images: &[f32],
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(images.len());
    for_each_chunk(gpu, Rows::Host(images, 784), EVAL_BATCH, |x, _| {
        out.extend(model.translate(direction, x)?.to_vec()?);
        Ok(())
    })?;
    Ok(out)
}

/// CycleGAN's part of [`fit`].
pub struct CycleGanTrainer<'m> {
    /// The model.
    pub model: &'m CycleGan,
    /// Adam over both generators.
    pub generators: Optimizer,
    /// Adam over both discriminators.
    pub discriminators: Optimizer,
    /// Domain A (the batches [`fit`] draws index it).
    pub a: Dataset,
    /// Domain B.
    pub b: Dataset,
    /// (cycle, identity) weights.
    pub lambdas: (f32, f32),
    /// B image paired with A index i: `b_order[i % |B|]`.
    b_order: Vec<usize>,
    /// The first [`EVAL_IMAGES`] test digits and their restyled twins.
    test_a: Dataset,
    test_b: Dataset,
    gpu: Gpu,
}

impl<'m> CycleGanTrainer<'m> {
    /// A trainer for `model` on the domains of `data`'s training set ([`split_domains`]).
    ///
    /// Errors: [`Error::Invalid`] if the training set has fewer than 2 images (a domain
    /// would be empty).
    pub fn new(
        gpu: &Gpu,
        cfg: &TrainConfig,
        model: &'m CycleGan,
        data: &Mnist,
        lambda_identity: f32,
    ) -> Result<Self> {
        if data.train.len() < 2 {
            return Err(Error::Invalid(format!(
                "cyclegan: {} training image(s) cannot make two domains (--limit at least 2)",
                data.train.len()
            )));
        }
        let (a, b) = split_domains(&data.train);
        let mut b_order: Vec<usize> = (0..b.len()).collect();
        b_order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xb0b));
        let test_a = data.test.clone().truncate(EVAL_IMAGES);
        Ok(CycleGanTrainer {
            model,
            generators: adam(cfg.lr, model.generator_parameters()),
            discriminators: adam(cfg.lr, model.discriminator_parameters()),
            a,
            b,
            lambdas: (LAMBDA_CYCLE, lambda_identity),
            b_order,
            test_b: restyle(&test_a),
            test_a,
            gpu: gpu.clone(),
        })
    }

    /// Rows of (x, T(x), T'(T(x))) for the first [`GRID_IMAGES`] test digits of `x`'s domain.
    fn grid(&self, file: String, direction: Direction) -> Result<Grid> {
        let (x, back) = match direction {
            Direction::AToB => (&self.test_a, Direction::BToA),
            Direction::BToA => (&self.test_b, Direction::AToB),
        };
        let n = GRID_IMAGES.min(x.len());
        let x = &x.images[..n * 784];
        let there = translate_images(self.model, &self.gpu, direction, x)?;
        let round = translate_images(self.model, &self.gpu, back, &there)?;
        Ok(Grid::new(file, triples(x, &there, &round, n), 3))
    }
}

impl Trainable for CycleGanTrainer<'_> {
    type Metrics = CycleGanMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    /// The model's metadata and the loss weights (a resumed run must repeat them).
    fn metadata(&self) -> BTreeMap<String, String> {
        let mut meta = self.model.metadata();
        meta.insert("lambda_cycle".into(), self.lambdas.0.to_string());
        meta.insert("lambda_identity".into(), self.lambdas.1.to_string());
        meta
    }

    fn train_set(&self) -> &Dataset {
        &self.a
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        let n = batch.x.dims()[0] as f32;
        let b_idx: Vec<usize> = batch
            .indices
            .iter()
            .map(|&i| self.b_order[i % self.b_order.len()])
            .collect();
        let b = Tensor::from_slice(&self.gpu, &self.b.gather(&b_idx), [b_idx.len(), 784])?;
        let s = cyclegan_step(
            self.model,
            &mut self.generators,
            &mut self.discriminators,
            batch.x,
            &b,
            self.lambdas,
        )?;
        let _no_grad = no_grad();
        Ok(Step {
            sums: vec![
                s.d_a.scale(n)?,
                s.d_b.scale(n)?,
                s.g_gan.scale(n)?,
                s.cycle_l1.scale(n)?,
                s.identity_l1.scale(n)?,
            ],
            shown: vec![("cycle", s.cycle_l1), ("g_gan", s.g_gan), ("d_b", s.d_b)],
        })
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![
            ("discriminators", &mut self.discriminators),
            ("generators", &mut self.generators),
        ]
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<CycleGanMetrics> {
        let (a, b) = (&self.test_a.images, &self.test_b.images);
        let g_a = translate_images(self.model, &self.gpu, Direction::AToB, a)?;
        let fg_a = translate_images(self.model, &self.gpu, Direction::BToA, &g_a)?;
        let f_b = translate_images(self.model, &self.gpu, Direction::BToA, b)?;
        let gf_b = translate_images(self.model, &self.gpu, Direction::AToB, &f_b)?;
        Ok(CycleGanMetrics {
            epoch: stats.epoch,
            d_a: stats.means[0],
            d_b: stats.means[1],
            g_gan: stats.means[2],
            cycle_l1: stats.means[3],
            identity_l1: stats.means[4],
            test_cycle_l1: mean_abs(&fg_a, a),
            test_cycle_l1_b: mean_abs(&gf_b, b),
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
        })
    }

    fn epoch_images(&mut self, epoch: usize) -> Result<Vec<Grid>> {
        Ok(vec![
            self.grid(format!("a_to_b_epoch_{epoch:03}.png"), Direction::AToB)?,
            self.grid(format!("b_to_a_epoch_{epoch:03}.png"), Direction::BToA)?,
        ])
    }

    fn final_images(&mut self) -> Result<Vec<Grid>> {
        self.model.set_training(false);
        Ok(vec![
            self.grid("a_to_b.png".into(), Direction::AToB)?,
            self.grid("b_to_a.png".into(), Direction::BToA)?,
        ])
    }
}

/// Trains a CycleGAN with [`fit`]: metrics.jsonl, model.safetensors and the two grids after
/// every epoch, OUT/a_to_b.png and OUT/b_to_a.png at the end.
///
/// Errors: data errors; [`Error::NonFiniteLoss`] if a loss diverges; I/O errors.
pub fn train_cyclegan(
    gpu: &Gpu,
    cfg: &TrainConfig,
    opts: CycleGanOptions,
) -> Result<(CycleGan, Vec<CycleGanMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = CycleGan::new(gpu, opts.width, opts.blocks, &mut rng)?;
    let data = cfg.load_data()?;
    let history = fit(
        gpu,
        cfg,
        &mut CycleGanTrainer::new(gpu, cfg, &model, &data, opts.lambda_identity)?,
    )?;
    Ok((model, history))
}
