//! The conditional models' training on [`fit`]: the conditional VAE ([`cvae_step`],
//! [`CvaeTrainer`]) and the conditional GAN ([`cgan_step`], [`CganTrainer`]). Each step reads
//! the batch's labels from the training split (by the indices [`Batch`] carries) and hands
//! them to the model one-hot.
//!
//! - Conditional VAE: the negative ELBO of x given y with one reparameterized z per image,
//!   Adam with PyTorch's defaults; after every epoch the test negative ELBO given the labels
//!   (metrics.jsonl has the VAE's fields, so the two compare line by line).
//! - Conditional GAN: Algorithm 1 of Goodfellow et al. 2014 with both players told y (Mirza &
//!   Osindero 2014): the generated half of the discriminator's batch is drawn for the real
//!   batch's labels (so fakes follow the data's class frequencies and no host generator is
//!   needed), the generator's non-saturating loss through D(G(z, y), y). Adam (0.5, 0.999).
//!
//! Grids: OUT/samples_epoch_NNN.png after every epoch and OUT/samples.png at the end, 10 rows
//! (digits 0-9) by 8 columns (the same 8 fixed codes in every row and every epoch); the
//! conditional VAE also writes OUT/reconstructions.png and OUT/analogies.png at the end.

use rand::SeedableRng;

use crate::autograd::no_grad;
use crate::conditional::{analogies, class_grid_of, cvae_eval};
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::{Cgan, Conditional, Cvae, MlpConfig, Model, NUM_CLASSES, one_hot};
use crate::nn::Module;
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::train::gan::{GanMetrics, adversarial_step};
use crate::train::vae::VaeMetrics;
use crate::train::{Batch, EpochStats, Grid, Optimizer, Step, TrainConfig, Trainable, fit};
use crate::viz;

/// Codes (columns) of the per-epoch grids.
pub const GRID_COLUMNS: usize = 8;

/// The labels of the training images `indices`, one-hot `(B, 10)`.
fn batch_labels(gpu: &Gpu, data: &Dataset, indices: &[usize]) -> Result<Tensor> {
    let labels: Vec<u8> = indices.iter().map(|&i| data.labels[i]).collect();
    one_hot(gpu, &labels)
}

/// The fixed codes of the grids, drawn from the GPU generator, host side.
fn fixed_codes(gpu: &Gpu, latent_dim: usize) -> Result<Vec<f32>> {
    let _no_grad = no_grad();
    Tensor::randn(gpu, [GRID_COLUMNS, latent_dim])?.to_vec()
}

/// The 10 x 8 grid of `codes`, as a [`Grid`] named `file`.
fn grid(
    model: &dyn Conditional,
    gpu: &Gpu,
    codes: &Option<Vec<f32>>,
    file: String,
) -> Result<Grid> {
    let codes = codes
        .as_ref()
        .ok_or_else(|| Error::Invalid("the conditional trainer was not started".into()))?;
    Ok(Grid::new(
        file,
        class_grid_of(model, gpu, codes)?,
        GRID_COLUMNS,
    ))
}

/// One conditional VAE step on `x (B, 784)` in [0, 1] with one-hot labels `y (B, 10)`: the
/// (beta-weighted) negative ELBO of x given y ([`Cvae::loss`]), `backward()`, one Adam update.
/// Shows `loss`; sums per sample: loss, reconstruction, KL (nats).
///
/// Errors: shape and GPU errors.
pub fn cvae_step(
    model: &Cvae,
    optimizer: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    beta: f32,
) -> Result<Step> {
    let loss = model.loss(x, y, beta)?;
    let grads = loss.loss.backward()?;
    optimizer.step(&grads)?;
    let _no_grad = no_grad();
    Ok(Step {
        sums: vec![loss.per_sample.sum()?, loss.recon.sum()?, loss.kl.sum()?],
        shown: vec![("loss", loss.loss)],
    })
}

/// The conditional VAE's part of [`fit`].
pub struct CvaeTrainer<'m> {
    /// The model.
    pub model: &'m Cvae,
    /// Adam over every parameter.
    pub optimizer: Optimizer,
    /// MNIST (the test split already binarized in `--binarize` mode).
    pub data: Mnist,
    /// Weight of the KL term.
    pub beta: f32,
    /// Binarize each training batch afresh.
    pub binarize: bool,
    codes: Option<Vec<f32>>,
    gpu: Gpu,
}

impl<'m> CvaeTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate, beta and binarization.
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: &'m Cvae, data: Mnist) -> Self {
        CvaeTrainer {
            optimizer: Optimizer::new(Adam::new(cfg.lr), model.parameters()),
            model,
            data,
            beta: cfg.beta,
            binarize: cfg.binarize,
            codes: None,
            gpu: gpu.clone(),
        }
    }
}

impl Trainable for CvaeTrainer<'_> {
    type Metrics = VaeMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn begin(&mut self) -> Result<()> {
        self.codes = Some(fixed_codes(&self.gpu, self.model.config.latent_dim)?);
        Ok(())
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        let y = batch_labels(&self.gpu, &self.data.train, batch.indices)?;
        let x = if self.binarize {
            batch.x.bernoulli()?
        } else {
            batch.x.clone()
        };
        cvae_step(self.model, &mut self.optimizer, &x, &y, self.beta)
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("adam", &mut self.optimizer)]
    }

    fn end_epoch(&mut self, stats: &EpochStats) -> Result<VaeMetrics> {
        let eval = cvae_eval(self.model, &self.gpu, &self.data.test, self.beta)?;
        Ok(VaeMetrics {
            epoch: stats.epoch,
            train_loss: stats.means[0],
            test_loss: eval.loss,
            test_recon: eval.recon,
            test_kl: eval.kl,
            train_recon: stats.means[1],
            train_kl: stats.means[2],
            test_kl_per_dim: eval.kl_per_dim,
            beta: self.beta,
            seconds: stats.seconds,
            images_per_second: stats.images_per_second(),
            train_images: self.data.train.len(),
            test_images: self.data.test.len(),
            variational: true,
        })
    }

    fn epoch_images(&mut self, epoch: usize) -> Result<Vec<Grid>> {
        let g = grid(
            self.model,
            &self.gpu,
            &self.codes,
            format!("samples_epoch_{epoch:03}.png"),
        );
        Ok(vec![g?])
    }

    fn final_images(&mut self) -> Result<Vec<Grid>> {
        let model = self.model;
        model.set_training(false);
        let samples = grid(model, &self.gpu, &self.codes, "samples.png".into())?;
        let test = &self.data.test;
        let rows = 8.min(test.len());
        let analogy = Grid::new(
            "analogies.png",
            analogies(model, &self.gpu, test, 0, rows)?,
            NUM_CLASSES + 1,
        );
        // Reconstructions: 32 test images beside their decoded means, given their labels.
        let n = 32.min(test.len());
        let recon = {
            let _no_grad = no_grad();
            let p = test.pixels();
            let x = Tensor::from_slice(&self.gpu, &test.images[..n * p], [n, p])?;
            let y = one_hot(&self.gpu, &test.labels[..n])?;
            let (mu, _) = model.encode(&x, &y)?;
            let r = model.generate_given(&mu, &y)?.to_vec()?;
            viz::interleave(&test.images[..n * p], &r, p)
        };
        Ok(vec![
            samples,
            Grid::new("reconstructions.png", recon, 16),
            analogy,
        ])
    }
}

/// Trains the conditional VAE of [`Cvae`] (the VAE's sizes, `cfg.latent_dim`) with [`fit`]:
/// metrics.jsonl (the VAE's fields; `test_loss` is the negative ELBO of x given y),
/// model.safetensors and OUT/samples_epoch_NNN.png after every epoch; samples.png,
/// reconstructions.png and analogies.png at the end.
///
/// Errors: data errors; [`Error::NonFiniteLoss`] if the loss diverges; I/O errors.
pub fn train_cvae(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Cvae, Vec<VaeMetrics>)> {
    let data = cfg.load_data()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let config = MlpConfig {
        latent_dim: cfg.latent_dim,
        ..MlpConfig::default()
    };
    let model = Cvae::new(gpu, config, &mut rng)?;
    let history = fit(gpu, cfg, &mut CvaeTrainer::new(gpu, cfg, &model, data))?;
    Ok((model, history))
}

/// One conditional GAN step on real images `x (B, 784)` in [0, 1] with their one-hot labels
/// `y (B, 10)`: the discriminator's update on (real, y) against 1 and on (G(z, y), y) against 0
/// for a fresh `z ~ N(0, I)` (G's output detached), then the generator's update through the
/// updated discriminator, `-log D(G(z, y), y)`. Shows `d_loss` and `g_loss`; sums per sample:
/// d_loss, g_loss, D(x, y), D(G(z, y), y).
///
/// Errors: shape and GPU errors.
pub fn cgan_step(
    model: &Cgan,
    discriminator: &mut Optimizer,
    generator: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
) -> Result<Step> {
    adversarial_step(
        discriminator,
        generator,
        x,
        model.noise_dim,
        |z| model.generator(z, y),
        |images| model.discriminator(images, y),
    )
}

/// Adam with betas (0.5, 0.999) (Radford et al. 2016).
fn gan_adam(lr: f32, params: Vec<(String, Tensor)>) -> Optimizer {
    let params = params.into_iter().map(|(_, t)| t).collect();
    Optimizer::new(Adam::new(lr).with_betas(0.5, 0.999), params)
}

/// The conditional GAN's part of [`fit`]: one optimizer per player, the fixed codes of the
/// grids.
pub struct CganTrainer<'m> {
    /// The model.
    pub model: &'m Cgan,
    /// Adam over the discriminator's parameters.
    pub discriminator: Optimizer,
    /// Adam over the generator's parameters.
    pub generator: Optimizer,
    /// MNIST.
    pub data: Mnist,
    codes: Option<Vec<f32>>,
    gpu: Gpu,
}

impl<'m> CganTrainer<'m> {
    /// A trainer for `model` on `data` with `cfg`'s learning rate.
    pub fn new(gpu: &Gpu, cfg: &TrainConfig, model: &'m Cgan, data: Mnist) -> Self {
        CganTrainer {
            model,
            discriminator: gan_adam(cfg.lr, model.discriminator_parameters()),
            generator: gan_adam(cfg.lr, model.generator_parameters()),
            data,
            codes: None,
            gpu: gpu.clone(),
        }
    }

    /// The fixed-code grid, decoded with the generator's batch norms on their running
    /// statistics.
    fn grid(&self, file: String) -> Result<Grid> {
        self.model.set_generator_training(false);
        let g = grid(self.model, &self.gpu, &self.codes, file);
        self.model.set_generator_training(true);
        g
    }
}

impl Trainable for CganTrainer<'_> {
    type Metrics = GanMetrics;

    fn model(&self) -> &dyn Model {
        self.model
    }

    fn train_set(&self) -> &Dataset {
        &self.data.train
    }

    fn begin(&mut self) -> Result<()> {
        self.codes = Some(fixed_codes(&self.gpu, self.model.noise_dim)?);
        Ok(())
    }

    fn step(&mut self, batch: &Batch) -> Result<Step> {
        let y = batch_labels(&self.gpu, &self.data.train, batch.indices)?;
        cgan_step(
            self.model,
            &mut self.discriminator,
            &mut self.generator,
            batch.x,
            &y,
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
        let g = self.grid("samples.png".into());
        // Training is over: the model stays in eval mode.
        self.model.set_training(false);
        Ok(vec![g?])
    }
}

/// Trains the conditional GAN of [`Cgan`] (noise size `cfg.latent_dim`) with [`fit`]:
/// metrics.jsonl (the GAN's fields), model.safetensors and OUT/samples_epoch_NNN.png after
/// every epoch, OUT/samples.png at the end; leaves the model in eval mode.
///
/// Errors: data errors; [`Error::NonFiniteLoss`] if a loss diverges; I/O errors.
pub fn train_cgan(gpu: &Gpu, cfg: &TrainConfig) -> Result<(Cgan, Vec<GanMetrics>)> {
    let data = cfg.load_data()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let model = Cgan::new(gpu, cfg.latent_dim, &mut rng)?;
    let history = fit(gpu, cfg, &mut CganTrainer::new(gpu, cfg, &model, data))?;
    Ok((model, history))
}
