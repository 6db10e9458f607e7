//! WGAN-GP training (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs",
//! Algorithm 1), on the skeleton [`fit`]:
//!
//! 1. Critic ([`critic_step`]), n_critic = 5 times per generator step: for real images x, fake
//!    images G(z) (no gradient to G) and interpolates x^ = eps x + (1 - eps) G(z) with one
//!    eps ~ U[0, 1] per sample, minimise
//!    `L = E[D(G(z))] - E[D(x)] + lambda E[(||grad_x^ D(x^)||_2 - 1)^2]`, lambda = 10.
//!    The penalty differentiates a gradient: grad_x^ D(x^) is computed by
//!    [`crate::autograd::grad`] with `create_graph`, and `L.backward()` then runs through that
//!    gradient's own graph to the critic's parameters.
//! 2. Generator ([`generator_step`]): minimise `-E[D(G(z))]`.
//!
//! Adam with lr 1e-4 and betas (0.5, 0.9) for both (the paper's Algorithm 1 uses beta1 = 0;
//! its DCGAN-style experiments' code 0.5). One epoch is one pass of the critic over the
//! training set (n_critic critic batches per generator step). Images are scaled to [-1, 1].
//!
//! Per epoch metrics.jsonl adds the Wasserstein estimate `E[D(x)] - E[D(G(z))]` (the critic's
//! loss without the penalty, negated), the penalty term and the mean gradient norm at the
//! interpolates (the penalty pulls it to 1); OUT/wasserstein.png plots the estimate every
//! [`CURVE_EVERY`] critic steps over the whole run (OUT/wasserstein.csv holds the points).

// ChaCha12, the algorithm of rand's StdRng (the same numbers for the same seed: the test in
// train/dbvae.rs checks it), used by name for its serializable state (resume).
use rand::rngs::ChaCha12Rng as StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::autograd::{grad, no_grad, release_since, tape_mark};
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::gpu::Gpu;
use crate::infer::decode_to_host;
use crate::models::{Adversarial, Model, WganArch, WganGp};
use crate::nn::Module;
use crate::optim::Adam;
use crate::plot::{Series, line_plot};
use crate::shape::Shape;
use crate::tensor::Tensor;
use crate::train::{
    Batch, EpochStats, ExtraState, Grid, Metrics, Optimizer, Step, TrainConfig, Trainable, fit,
};

/// Weight of the gradient penalty (the paper's lambda).
pub const LAMBDA: f32 = 10.0;
/// Critic steps per generator step.
pub const N_CRITIC: usize = 5;
/// The Wasserstein-estimate curve keeps one point every this many critic steps.
pub const CURVE_EVERY: usize = 10;
/// Added under the square root of the penalty's norm: ||g|| = sqrt(sum g^2 + NORM_EPS).
/// NOTE: the norm's derivative g / ||g|| has no limit at g = 0; the epsilon keeps it finite
/// (PyTorch's `norm` backward returns 0 there instead).
pub const NORM_EPS: f32 = 1e-12;

/// One line of metrics.jsonl for a WGAN-GP; all values are epoch means over the critic steps
/// (per sample where a value is per sample), `g_loss` over the generator steps.
#[derive(Clone, Debug, Serialize)]
pub struct WganMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// The Wasserstein estimate `E[D(x)] - E[D(G(z))]`: minus the critic's loss without the
    /// penalty.
    pub wasserstein: f64,
    /// The penalty term as added to the critic's loss, `lambda E[(||grad D(x^)|| - 1)^2]`.
    pub gradient_penalty: f64,
    /// Mean L2 norm of the critic's gradient at the interpolates, `E ||grad_x^ D(x^)||`.
    pub grad_norm: f64,
    /// The critic's loss, `E[D(G(z))] - E[D(x)] + penalty`.
    pub critic_loss: f64,
    /// The generator's loss, `-E[D(G(z))]`, mean over the epoch's generator steps (None if
    /// the epoch had none: fewer than n_critic batches).
    pub g_loss: Option<f64>,
    /// Critic steps in the epoch.
    pub critic_steps: usize,
    /// Generator steps in the epoch.
    pub generator_steps: usize,
    /// Seconds of training steps.
    pub seconds: f64,
    /// Real images per second (through the critic).
    pub images_per_second: f64,
}

impl Metrics for WganMetrics {
    fn line(&self, epochs: usize) -> String {
        format!(
            "epoch {:>3}/{epochs}  W {:.4}  gp {:.4}  |grad| {:.3}  critic {:.4}  g_loss {}  {:.1} s  {:.0} img/s",
            self.epoch,
            self.wasserstein,
            self.gradient_penalty,
            self.grad_norm,
            self.critic_loss,
            self.g_loss.map_or("-".into(), |g| format!("{g:.4}")),
            self.seconds,
            self.images_per_second
        )
    }

    fn finite_values(&self) -> Vec<f64> {
        let mut v = vec![
            self.wasserstein,
            self.gradient_penalty,
            self.grad_norm,
            self.critic_loss,
        ];
        v.extend(self.g_loss);
        v
    }
}

/// What one critic step computed: scalars on the GPU.
pub struct CriticStep {
    /// The critic's loss (with the penalty).
    pub loss: Tensor,
    /// The Wasserstein estimate `mean D(x) - mean D(G(z))`.
    pub wasserstein: Tensor,
    /// The penalty term, `lambda mean (||g|| - 1)^2` (0 when `lambda` is 0).
    pub penalty: Tensor,
    /// The sum over the batch of the gradient norms at the interpolates (0 when `lambda` is 0).
    pub grad_norm_sum: Tensor,
}

/// One critic step of Algorithm 1 on real images `x (B, 784)` in [0, 1], fresh `z ~ N(0, I)`
/// and the interpolation weights `eps (B, 784)` (one U[0, 1] value per sample, repeated over
/// its pixels): the loss `mean D(G(z)) - mean D(x) + lambda mean (||grad D(x^)||_2 - 1)^2`
/// at `x^ = G(z) + eps (x - G(z))`, its backward through the penalty's gradient, one Adam
/// update of the critic. With `lambda` 0 the penalty is not computed at all (a WGAN critic step
/// without its constraint: the cost comparison). Leaves the tape as it found it.
///
/// Errors: shape and GPU errors.
pub fn critic_step(
    model: &WganGp,
    critic: &mut Optimizer,
    x: &Tensor,
    eps: &Tensor,
    lambda: f32,
) -> Result<CriticStep> {
    let mark = tape_mark();
    let (gpu, b) = (x.gpu(), x.dims()[0]);
    let real = x.affine(2.0, -1.0)?;
    let z = Tensor::randn(gpu, [b, model.noise_dim])?;
    let (fake, x_hat) = {
        let _no_grad = no_grad();
        let fake = model.generator(&z)?;
        let x_hat = fake.add(&eps.mul(&real.sub(&fake)?)?)?;
        // A leaf that requires grad: the penalty's gradient is taken with respect to it.
        (fake, x_hat.requires_grad_())
    };
    let d_real = model.critic(&real)?.mean()?;
    let d_fake = model.critic(&fake)?.mean()?;
    let wasserstein_loss = d_fake.sub(&d_real)?;
    let (loss, penalty, grad_norm_sum) = if lambda > 0.0 {
        let d_hat = model.critic(&x_hat)?;
        // grad_x^ D(x^) per sample (the (B, 1) scores are seeded with ones), recorded.
        let g = grad(&[&d_hat], &[&x_hat], true)?
            .pop()
            .flatten()
            .ok_or_else(|| Error::Invalid("the critic does not depend on its input".into()))?;
        let norm = g.mul(&g)?.sum_axis(1)?.affine(1.0, NORM_EPS)?.sqrt()?;
        let gap = norm.affine(1.0, -1.0)?;
        let penalty = gap.mul(&gap)?.mean()?.scale(lambda)?;
        (wasserstein_loss.add(&penalty)?, penalty, norm.sum()?)
    } else {
        let zero = Tensor::zeros(gpu, [])?;
        (wasserstein_loss.clone(), zero.clone(), zero)
    };
    let grads = loss.backward()?;
    critic.step(&grads)?;
    drop(grads);
    // The critic's pass at the interpolates is reached by the loss only through its gradient:
    // its nodes (and the unneeded ones of the gradient's graph) stay behind; drop them.
    release_since(mark);
    let _no_grad = no_grad();
    Ok(CriticStep {
        wasserstein: wasserstein_loss.scale(-1.0)?,
        loss: loss.detach(),
        penalty: penalty.detach(),
        grad_norm_sum: grad_norm_sum.detach(),
    })
}

/// One generator step on a batch of `batch_size` fresh noise vectors: minimise
/// `-mean D(G(z))`, backpropagated through the critic into G; only G is updated. Returns the
/// loss (a scalar on the GPU).
///
/// Errors: shape and GPU errors.
pub fn generator_step(
    model: &WganGp,
    generator: &mut Optimizer,
    gpu: &Gpu,
    batch_size: usize,
) -> Result<Tensor> {
    let z = Tensor::randn(gpu, [batch_size, model.noise_dim])?;
    let g_loss = model.critic(&model.generator(&z)?)?.mean()?.scale(-1.0)?;
    let grads = g_loss.backward()?;
    generator.step(&grads)?;
    Ok(g_loss)
}

/// Adam with lr `lr` and betas (0.5, 0.9).
fn wgan_adam(lr: f32, params: Vec<(String, Tensor)>) -> Optimizer {
    let params = params.into_iter().map(|(_, t)| t).collect();
    Optimizer::new(Adam::new(lr).with_betas(0.5, 0.9), params)
}

/// The WGAN-GP's part of [`fit`]: one optimizer per player, the interpolation weights' generator,
/// the fixed noise of the grids, the Wasserstein-estimate curve.
pub struct WganTrainer<'m> {
    /// The model.
    pub model: &'m WganGp,
    /// Adam over the critic's parameters.
    pub critic: Optimizer,
    /// Adam over the generator's parameters.
    pub generator: Optimizer,
    /// MNIST.
    pub data: Mnist,
    /// Penalty weight.
    pub lambda: f32,
    /// Critic steps per generator step.
    pub n_critic: usize,
    out_dir: std::path::PathBuf,
    /// Draws the interpolation weights eps (seeded).
    rng: StdRng,
    fixed_noise: Option<Tensor>,
    /// Critic steps so far (all epochs), and in this epoch.
    steps: usize,
    epoch_steps: usize,
    /// This epoch's generator losses, summed on the GPU, and their count.
    g_sum: Option<Tensor>,
    g_steps: usize,
    /// Wasserstein estimates of every CURVE_EVERY-th critic step not read back yet.
    pending: Vec<(usize, Tensor)>,
    /// The curve so far: (critic step, estimate).
    curve: Vec<(f64, f64)>,
    gpu: Gpu,
}

impl<'m> WganTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate and seed, lambda = [`LAMBDA`],
    /// n_critic = [`N_CRITIC`].
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: &'m WganGp, data: Mnist) -> Self {
        WganTrainer {
            model,
            critic: wgan_adam(cfg.lr, model.critic_parameters()),
            generator: wgan_adam(cfg.lr, model.generator_parameters()),
            data,
            lambda: LAMBDA,
            n_critic: N_CRITIC,
            out_dir: cfg.out_dir.clone(),
            rng: StdRng::seed_from_u64(cfg.seed ^ 0x9e37_79b9),
            fixed_noise: None,
            steps: 0,
            epoch_steps: 0,
            g_sum: None,
            g_steps: 0,
            pending: Vec::new(),
            curve: Vec::new(),
            gpu: gpu.clone(),
        }
    }

    /// eps for a batch of `b`: one U[0, 1] draw per sample, repeated over its 784 pixels.
    fn interpolation_weights(&mut self, b: usize, pixels: usize) -> Result<Tensor> {
        let mut eps = Vec::with_capacity(b * pixels);
        for _ in 0..b {
            let e: f32 = self.rng.random_range(0.0..1.0);
            eps.extend(std::iter::repeat_n(e, pixels));
        }
        Tensor::from_slice(&self.gpu, &eps, [b, pixels])
    }

    fn grid(&self, file: String) -> Result<Grid> {
        let noise = self
            .fixed_noise
            .as_ref()
            .ok_or_else(|| Error::Invalid("the WGAN-GP trainer was not started".into()))?;
        self.model.set_generator_training(false);
        let images = decode_to_host(self.model, noise);
        self.model.set_generator_training(true);
        Ok(Grid::new(file, images?, 8))
    }

    /// Writes OUT/wasserstein.png and OUT/wasserstein.csv from the curve so far.
    fn write_curve(&self) -> Result<()> {
        if self.curve.is_empty() {
            return Ok(());
        }
        let mut csv = String::from("critic_step,wasserstein\n");
        for (s, w) in &self.curve {
            csv.push_str(&format!("{s},{w}\n"));
        }
        write_atomic(&self.out_dir.join("wasserstein.csv"), csv.as_bytes())?;
        line_plot(
            &self.out_dir.join("wasserstein.png"),
            &format!(
                "WGAN-GP ({}): Wasserstein estimate, every {CURVE_EVERY} critic steps",
                self.model.arch.name()
            ),
            "critic step",
            "E[D(x)] - E[D(G(z))]",
            &[Series {
                name: "Wasserstein estimate",
                points: &self.curve,
            }],
        )
    }
}

impl Trainable for WganTrainer<'_> {
    type Metrics = WganMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn begin(&mut self) -> Result<()> {
        self.fixed_noise = Some(Tensor::randn(&self.gpu, [64, self.model.noise_dim])?);
        Ok(())
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        let (b, pixels) = (batch.x.dims()[0], batch.x.dims()[1]);
        let eps = self.interpolation_weights(b, pixels)?;
        let c = critic_step(self.model, &mut self.critic, batch.x, &eps, self.lambda)?;
        self.steps += 1;
        self.epoch_steps += 1;
        if self.steps.is_multiple_of(self.n_critic) {
            let g_loss = generator_step(self.model, &mut self.generator, &self.gpu, b)?;
            let _no_grad = no_grad();
            self.g_sum = Some(match self.g_sum.take() {
                Some(s) => s.add(&g_loss)?,
                None => g_loss.detach(),
            });
            self.g_steps += 1;
        }
        if self.steps.is_multiple_of(CURVE_EVERY) {
            self.pending.push((self.steps, c.wasserstein.clone()));
        }
        let _no_grad = no_grad();
        let scale = b as f32;
        Ok(Step {
            sums: vec![
                c.wasserstein.scale(scale)?,
                c.penalty.scale(scale)?,
                c.grad_norm_sum.clone(),
                c.loss.scale(scale)?,
            ],
            shown: vec![("W", c.wasserstein), ("gp", c.penalty)],
        })
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![
            ("critic", &mut self.critic),
            ("generator", &mut self.generator),
        ]
    }

    /// The interpolation weights' generator, the step counters, the epoch's generator-loss sum
    /// (when a run resumes inside an epoch) and the Wasserstein curve so far (the estimates
    /// not read back yet included).
    fn extra_state(&self) -> Result<ExtraState> {
        let mut s = ExtraState::default();
        let rng: String = self
            .rng
            .serialize_state()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        s.values.insert("rng".into(), rng);
        s.values.insert("steps".into(), self.steps.to_string());
        s.values
            .insert("epoch_steps".into(), self.epoch_steps.to_string());
        s.values.insert("g_steps".into(), self.g_steps.to_string());
        if let Some(g) = &self.g_sum {
            s.arrays.insert("g_sum".into(), vec![f64::from(g.item()?)]);
        }
        let mut curve = self.curve.clone();
        for (step, w) in &self.pending {
            curve.push((*step as f64, f64::from(w.item()?)));
        }
        s.arrays
            .insert("curve_steps".into(), curve.iter().map(|p| p.0).collect());
        s.arrays
            .insert("curve_values".into(), curve.iter().map(|p| p.1).collect());
        Ok(s)
    }

    fn restore_extra_state(&mut self, state: &ExtraState) -> Result<()> {
        let bad = |what: &str| Error::Invalid(format!("training state: no valid `extra.{what}`"));
        let hex = state.values.get("rng").ok_or_else(|| bad("rng"))?;
        let mut bytes = [0u8; 49];
        if hex.len() != 2 * bytes.len() || !hex.is_ascii() {
            return Err(bad("rng"));
        }
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("rng"))?;
        }
        self.rng = StdRng::deserialize_state(&bytes);
        let count = |key: &str| -> Result<usize> {
            state
                .values
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(key))
        };
        self.steps = count("steps")?;
        self.epoch_steps = count("epoch_steps")?;
        self.g_steps = count("g_steps")?;
        self.g_sum = match state.arrays.get("g_sum").map(Vec::as_slice) {
            Some(&[v]) => Some(Tensor::from_slice(&self.gpu, &[v as f32], Shape::scalar())?),
            Some(_) => return Err(bad("g_sum")),
            None => None,
        };
        let (steps, values) = (
            state
                .arrays
                .get("curve_steps")
                .ok_or_else(|| bad("curve_steps"))?,
            state
                .arrays
                .get("curve_values")
                .ok_or_else(|| bad("curve_values"))?,
        );
        if steps.len() != values.len() {
            return Err(bad("curve_values"));
        }
        self.curve = steps.iter().copied().zip(values.iter().copied()).collect();
        self.pending.clear();
        Ok(())
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<WganMetrics> {
        for (step, w) in std::mem::take(&mut self.pending) {
            self.curve.push((step as f64, f64::from(w.item()?)));
        }
        self.write_curve()?;
        let g_loss = match self.g_sum.take() {
            Some(s) => Some(f64::from(s.item()?) / self.g_steps as f64),
            None => None,
        };
        let metrics = WganMetrics {
            epoch: stats.epoch,
            wasserstein: stats.means[0],
            gradient_penalty: stats.means[1],
            grad_norm: stats.means[2],
            critic_loss: stats.means[3],
            g_loss,
            critic_steps: self.epoch_steps,
            generator_steps: self.g_steps,
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
        };
        self.g_steps = 0;
        self.epoch_steps = 0;
        Ok(metrics)
    }

    fn epoch_images(&mut self, epoch: usize) -> Result<Vec<Grid>> {
        Ok(vec![self.grid(format!("samples_epoch_{epoch:03}.png"))?])
    }

    fn final_images(&mut self) -> Result<Vec<Grid>> {
        let grid = self.grid("samples.png".into());
        self.model.set_training(false);
        Ok(vec![grid?])
    }
}

/// Trains a WGAN-GP of `arch` with [`fit`]: metrics.jsonl, model.safetensors,
/// OUT/samples_epoch_NNN.png (fixed noise) and OUT/wasserstein.png after every epoch,
/// OUT/samples.png at the end; leaves the model in eval mode.
///
/// Errors: data errors; [`Error::NonFiniteLoss`] if a loss diverges; I/O errors.
pub fn train_wgan_gp(
    gpu: &Gpu,
    cfg: &TrainConfig,
    arch: WganArch,
) -> Result<(WganGp, Vec<WganMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = WganGp::new(gpu, arch, cfg.latent_dim, &mut rng)?;
    let data = cfg.load_data()?;
    let history = fit(gpu, cfg, &mut WganTrainer::new(gpu, cfg, &model, data))?;
    Ok((model, history))
}
