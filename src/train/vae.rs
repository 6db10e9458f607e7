//! The VAE family: the VAEs (MLP and convolutional) and the plain autoencoder.
//!
//! One step ([`vae_step`], [`autoencoder_step`]): forward, loss, `backward()`, Adam update,
//! all recorded into one submit. The loss stays on the GPU (summed there by [`fit`] for the
//! epoch average) and is read back only every `log_every` steps. After every epoch the model
//! is evaluated on the test split ([`evaluate_vae`], [`evaluate_autoencoder`]); after the
//! last, samples.png (64 prior samples) and reconstructions.png (32 test images beside their
//! reconstructions) are written.

use rand::SeedableRng;
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::{Dataset, Mnist};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, kl_per_dim, prior_samples, sum_chunks};
use crate::models::{Autoencoder, ConvVae, Generative, MlpConfig, Model, Vae, VariationalModel};
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::{
    Batch, EpochStats, Grid, Metrics, Optimizer, Step, TrainConfig, Trainable, fit,
};
use crate::viz;

/// One line of metrics.jsonl. Losses are per sample, in nats, averaged over the split.
#[derive(Clone, Debug, Serialize)]
pub struct VaeMetrics {
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
    /// each dimension carries; beta > 1 switches more of them off. Empty for the autoencoder.
    pub test_kl_per_dim: Vec<f64>,
    /// Weight of the KL term the model was trained with (0 for the autoencoder).
    pub beta: f32,
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Images in the training split.
    pub train_images: usize,
    /// Images in the test split.
    pub test_images: usize,
    /// Whether the model is a VAE (the line shows the recon and KL terms); not written.
    #[serde(skip)]
    pub variational: bool,
}

impl Metrics for VaeMetrics {
    fn line(&self, epochs: usize) -> String {
        let terms = if self.variational {
            format!(" (recon {:.3} + kl {:.3})", self.test_recon, self.test_kl)
        } else {
            String::new()
        };
        format!(
            "epoch {:>3}/{epochs}  train_loss {:.3}  test_loss {:.3}{terms}  {:.1} s  {:.0} img/s",
            self.epoch, self.train_loss, self.test_loss, self.seconds, self.images_per_second
        )
    }

    fn finite_values(&self) -> Vec<f64> {
        let mut v = vec![
            self.train_loss,
            self.train_recon,
            self.train_kl,
            self.test_loss,
            self.test_recon,
            self.test_kl,
        ];
        v.extend(&self.test_kl_per_dim);
        v
    }
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

/// Evaluates the (beta-weighted) negative ELBO on `data`, one z sample per image (eps from the
/// GPU generator, one `(m, latent_dim)` draw per chunk of [`EVAL_BATCH`] images), in eval mode,
/// without recording gradients. One readback per term at the end.
///
/// Errors: GPU and readback errors.
pub fn evaluate_vae(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    beta: f32,
) -> Result<VaeEval> {
    model.set_training(false);
    let sums = sum_chunks(gpu, Rows::images(data), EVAL_BATCH, |x, _| {
        let l = model.loss(x, beta)?;
        Ok(vec![l.per_sample.sum()?, l.recon.sum()?, l.kl.sum()?])
    });
    model.set_training(true);
    let sums = sums?;
    let n = data.len().max(1) as f64;
    let mean = |i: usize| -> Result<f64> {
        Ok(match sums.get(i) {
            Some(s) => s.item()? as f64 / n,
            None => 0.0,
        })
    };
    Ok(VaeEval {
        loss: mean(0)?,
        recon: mean(1)?,
        kl: mean(2)?,
    })
}

/// Mean per-sample reconstruction loss (BCE summed over pixels, nats) of an autoencoder on
/// `data`, in chunks of [`EVAL_BATCH`] images.
///
/// Errors: GPU and readback errors.
pub fn evaluate_autoencoder(model: &Autoencoder, gpu: &Gpu, data: &Dataset) -> Result<f64> {
    let sums = sum_chunks(gpu, Rows::images(data), EVAL_BATCH, |x, _| {
        Ok(vec![model.loss(x)?.sum()?])
    })?;
    let sum = match sums.first() {
        Some(s) => s.item()? as f64,
        None => 0.0,
    };
    Ok(sum / data.len().max(1) as f64)
}

/// One VAE training step on `x (B, 784)` in [0, 1]: the (beta-weighted) negative ELBO with one
/// reparameterized sample per image ([`VariationalModel::loss`]: eps from the GPU generator,
/// z and KL from the fused `reparameterize_kl` kernel), `backward()`, one Adam update.
/// Shows the batch mean `loss`; sums per sample: loss, reconstruction, KL (nats).
///
/// Errors: shape and GPU errors.
pub fn vae_step(
    model: &dyn VariationalModel,
    optimizer: &mut Optimizer,
    x: &Tensor,
    beta: f32,
) -> Result<Step> {
    let loss = model.loss(x, beta)?;
    let grads = loss.loss.backward()?;
    optimizer.step(&grads)?;
    let _no_grad = no_grad();
    Ok(Step {
        sums: vec![loss.per_sample.sum()?, loss.recon.sum()?, loss.kl.sum()?],
        shown: vec![("loss", loss.loss)],
    })
}

/// One autoencoder training step on `x (B, 784)`: reconstruction BCE (summed over pixels,
/// averaged over the batch), `backward()`, one Adam update. Shows `loss`; sums the per-sample
/// loss.
///
/// Errors: shape and GPU errors.
pub fn autoencoder_step(
    model: &Autoencoder,
    optimizer: &mut Optimizer,
    x: &Tensor,
) -> Result<Step> {
    let per_sample = model.loss(x)?;
    let loss = per_sample.mean()?;
    let grads = loss.backward()?;
    optimizer.step(&grads)?;
    let _no_grad = no_grad();
    Ok(Step {
        sums: vec![per_sample.sum()?],
        shown: vec![("loss", loss)],
    })
}

/// The model a [`VaeTrainer`] trains.
#[derive(Clone, Copy)]
pub enum Autoencoding<'m> {
    /// A VAE: negative ELBO, evaluation with KL per dimension.
    Variational(&'m dyn VariationalModel),
    /// The plain autoencoder: reconstruction loss only.
    Plain(&'m Autoencoder),
}

impl<'m> Autoencoding<'m> {
    fn generative(self) -> &'m dyn Generative {
        match self {
            Autoencoding::Variational(m) => m,
            Autoencoding::Plain(m) => m,
        }
    }
}

/// The VAE family's part of [`fit`]: Adam with PyTorch's defaults, optional dynamic
/// binarization of the training batches (VAEs, `--binarize`), test evaluation every epoch.
pub struct VaeTrainer<'m> {
    /// The model.
    pub model: Autoencoding<'m>,
    /// Adam over every parameter.
    pub optimizer: Optimizer,
    /// MNIST (the test split already binarized in `--binarize` mode).
    pub data: Mnist,
    /// Weight of the KL term.
    pub beta: f32,
    /// Binarize each training batch afresh (VAEs only).
    pub binarize: bool,
    gpu: Gpu,
}

impl<'m> VaeTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate, beta and binarization.
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: Autoencoding<'m>, data: Mnist) -> Self {
        VaeTrainer {
            optimizer: Optimizer::new(Adam::new(cfg.lr), model.generative().parameters()),
            model,
            data,
            beta: cfg.beta,
            binarize: cfg.binarize,
            gpu: gpu.clone(),
        }
    }
}

impl Trainable for VaeTrainer<'_> {
    type Metrics = VaeMetrics;

    fn model(&self) -> &dyn Model {
        self.model.generative()
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        match self.model {
            Autoencoding::Variational(model) => {
                // Dynamic binarization: a fresh 0/1 draw of every training image each time.
                let x = if self.binarize {
                    batch.x.bernoulli()?
                } else {
                    batch.x.clone()
                };
                vae_step(model, &mut self.optimizer, &x, self.beta)
            }
            Autoencoding::Plain(model) => autoencoder_step(model, &mut self.optimizer, batch.x),
        }
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<VaeMetrics> {
        let (gpu, test) = (&self.gpu, &self.data.test);
        let mut m = VaeMetrics {
            epoch: stats.epoch,
            train_loss: stats.means[0],
            test_loss: 0.0,
            test_recon: 0.0,
            test_kl: 0.0,
            train_recon: stats.means[0],
            train_kl: 0.0,
            test_kl_per_dim: Vec::new(),
            beta: 0.0,
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
            train_images: self.data.train.len(),
            test_images: test.len(),
            variational: false,
        };
        match self.model {
            Autoencoding::Variational(model) => {
                let eval = evaluate_vae(model, gpu, test, self.beta)?;
                model.set_training(false);
                let kl = kl_per_dim(model, gpu, test, None);
                model.set_training(true);
                m = VaeMetrics {
                    test_loss: eval.loss,
                    test_recon: eval.recon,
                    test_kl: eval.kl,
                    train_recon: stats.means[1],
                    train_kl: stats.means[2],
                    test_kl_per_dim: kl?,
                    beta: self.beta,
                    variational: true,
                    ..m
                };
            }
            Autoencoding::Plain(model) => {
                let loss = evaluate_autoencoder(model, gpu, test)?;
                m.test_loss = loss;
                m.test_recon = loss;
            }
        }
        Ok(m)
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("adam", &mut self.optimizer)]
    }

    fn final_images(&mut self) -> Result<Vec<Grid>> {
        let model = self.model.generative();
        model.set_training(false);
        let samples = prior_samples(model, &self.gpu, 64)?;
        let pairs = reconstructions(model, &self.gpu, &self.data.test, 32)?;
        let mut recon = Grid::new("reconstructions.png", pairs, 16);
        recon.size = (self.data.test.rows, self.data.test.cols);
        Ok(vec![Grid::new("samples.png", samples, 8), recon])
    }
}

/// The first `n` test images interleaved with their reconstructions (image, reconstruction,
/// image, ...), host side.
fn reconstructions(
    model: &dyn Generative,
    gpu: &Gpu,
    test: &Dataset,
    n: usize,
) -> Result<Vec<f32>> {
    let _no_grad = no_grad();
    let n = n.min(test.len());
    let originals = &test.images[..n * test.pixels()];
    let x = Tensor::from_slice(gpu, originals, [n, test.pixels()])?;
    let recon = model.reconstruct(&x)?.to_vec()?;
    Ok(viz::interleave(originals, &recon, test.pixels()))
}

/// Trains the MLP VAE of [`Vae`] on MNIST; see [`train_variational`] for what it writes.
///
/// Errors: as [`train_variational`].
pub fn train_vae(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Vae, Vec<VaeMetrics>)> {
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
///
/// Errors: as [`train_variational`].
pub fn train_conv_vae(gpu: &Gpu, cfg: &TrainConfig) -> Result<(ConvVae, Vec<VaeMetrics>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = ConvVae::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = train_variational(gpu, cfg, &model)?;
    Ok((model, history))
}

/// Trains a VAE with [`fit`]: writes metrics.jsonl, model.safetensors (after every epoch,
/// atomically), samples.png and reconstructions.png into `cfg.out_dir`.
///
/// Errors: data errors; [`crate::Error::NonFiniteLoss`] if the loss diverges (the
/// checkpoint of the last finished epoch stays on disk); I/O errors naming the file.
pub fn train_variational(
    gpu: &Gpu,
    cfg: &TrainConfig,
    model: &dyn VariationalModel,
) -> Result<Vec<VaeMetrics>> {
    let data = cfg.load_data()?;
    let mut trainer = VaeTrainer::new(gpu, cfg, Autoencoding::Variational(model), data);
    fit(gpu, cfg, &mut trainer)
}

/// Trains the plain autoencoder (reconstruction loss only), writing the same outputs as
/// [`train_variational`].
///
/// Errors: as [`train_variational`].
pub fn train_autoencoder(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Autoencoder, Vec<VaeMetrics>)> {
    let data = cfg.load_data()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let config = MlpConfig {
        input_dim: data.train.pixels(),
        latent_dim: cfg.latent_dim,
        ..MlpConfig::default()
    };
    let model = Autoencoder::new(gpu, config, &mut rng)?;
    let mut trainer = VaeTrainer::new(gpu, cfg, Autoencoding::Plain(&model), data);
    let history = fit(gpu, cfg, &mut trainer)?;
    Ok((model, history))
}
