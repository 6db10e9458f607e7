//! Training: one skeleton, [`fit`], and each model family's step and evaluation.
//!
//! [`fit`] owns what every run shares: the output directory, seeding the GPU generator, the
//! epoch's batches and their upload, the progress bar, reading the losses back every
//! `--log-every` steps, the epoch sums kept on the GPU, the NaN/infinity check, metrics.jsonl,
//! the checkpoint after every epoch and the image grids. A model family brings a
//! [`Trainable`]: its step (batch in, losses out; it calls `backward()` and its optimizers) and
//! its evaluation. The steps are public functions ([`vae::vae_step`], [`gan::gan_step`],
//! [`classifier::classifier_step`], [`dbvae::dbvae_step`]) that the examples call too.
//!
//! - [`vae`]: the VAEs (MLP and convolutional) and the plain autoencoder;
//! - [`gan`]: the MLP GAN and the DCGAN;
//! - [`classifier`]: the digit classifier;
//! - [`dbvae`]: the debiasing VAE and its plain twin; [`debias`]: the experiment over seeds;
//! - [`wgan`]: the WGAN-GP, whose critic step differentiates a gradient.

pub mod classifier;
pub mod dbvae;
pub mod debias;
pub mod gan;
pub mod vae;
pub mod wgan;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::autograd::{Gradients, no_grad};
use crate::checkpoint;
use crate::data::{Batches, Dataset, Mnist};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::{Model, ModelKind};
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::viz;

pub use crate::data::BINARIZE_SEED;
pub use classifier::train_classifier;
pub use gan::{train_dcgan, train_gan};
pub use vae::{train_autoencoder, train_conv_vae, train_vae};
pub use wgan::train_wgan_gp;

/// Everything a training run is told on the command line.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Directory with the four MNIST IDX files.
    pub data_dir: PathBuf,
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Size of the latent code.
    pub latent_dim: usize,
    /// Seed of initialisation, shuffling and the GPU noise generator.
    pub seed: u64,
    /// Use only the first N training and N test images (quick runs).
    pub limit: Option<usize>,
    /// Output directory (metrics.jsonl, model.safetensors, PNGs).
    pub out_dir: PathBuf,
    /// Weight of the KL term (1 = the ELBO).
    pub beta: f32,
    /// Read the loss back (progress bar, NaN check) every this many steps.
    pub log_every: usize,
    /// Show progress bars.
    pub progress: bool,
    /// Binarized MNIST: training batches are binarized afresh every step (dynamic
    /// binarization) and the test set once with [`BINARIZE_SEED`].
    pub binarize: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data_dir: PathBuf::from("data/mnist"),
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
            latent_dim: 20,
            seed: 0,
            limit: None,
            out_dir: PathBuf::from("runs/vae"),
            beta: 1.0,
            log_every: 50,
            progress: true,
            binarize: false,
        }
    }
}

impl TrainConfig {
    /// The defaults for `kind`: lr 1e-3 and latent 20 for the autoencoders and the
    /// classifier; lr 2e-4 and a 100-d noise vector for the GANs (Radford et al. 2016), lr 1e-4
    /// for the WGAN-GP (Gulrajani et al. 2017);
    /// output in runs/NAME.
    pub fn for_model(kind: ModelKind) -> TrainConfig {
        let gan = matches!(kind, ModelKind::Gan | ModelKind::Dcgan | ModelKind::WganGp);
        TrainConfig {
            // WGAN-GP: Gulrajani et al. 2017, Algorithm 1.
            lr: match kind {
                ModelKind::WganGp => 1e-4,
                _ if gan => 2e-4,
                _ => 1e-3,
            },
            latent_dim: if gan { 100 } else { 20 },
            epochs: if kind == ModelKind::Classifier { 2 } else { 10 },
            out_dir: PathBuf::from("runs").join(kind.name()),
            ..TrainConfig::default()
        }
    }

    /// Loads MNIST from `data_dir`, cut to `limit` images per split if set; in binarize
    /// mode the test set is binarized with [`BINARIZE_SEED`].
    pub fn load_data(&self) -> Result<Mnist> {
        let mut data = Mnist::load(&self.data_dir)?;
        if let Some(n) = self.limit {
            data.train = data.train.truncate(n);
            data.test = data.test.truncate(n);
        }
        if self.binarize {
            data.test = data.test.binarized(BINARIZE_SEED);
        }
        if data.train.is_empty() {
            return Err(Error::data(&self.data_dir, "the training set is empty"));
        }
        Ok(data)
    }

    /// `OUT/metrics.jsonl`
    pub fn metrics_path(&self) -> PathBuf {
        self.out_dir.join("metrics.jsonl")
    }

    /// `OUT/model.safetensors`
    pub fn checkpoint_path(&self) -> PathBuf {
        self.out_dir.join("model.safetensors")
    }
}

/// Adam and the parameters it updates: the optimizer state a step owns (and that a resumed
/// run will need).
pub struct Optimizer {
    /// The update rule and its moments.
    pub adam: Adam,
    /// The tensors it updates, in a fixed order.
    pub params: Vec<Tensor>,
}

impl Optimizer {
    /// Adam over `params`.
    pub fn new(adam: Adam, params: Vec<Tensor>) -> Optimizer {
        Optimizer { adam, params }
    }

    /// One update of every parameter from `grads` (one dispatch per tensor).
    ///
    /// Errors: as [`Adam::step`].
    pub fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.adam.step(&self.params, grads)
    }
}

/// One training batch as [`fit`] hands it to a step.
pub struct Batch<'a> {
    /// The images, `(B, pixels)` intensities in [0, 1], on the GPU.
    pub x: &'a Tensor,
    /// Their indices in the training split (for labels).
    pub indices: &'a [usize],
}

/// What a training step returns. Both lists hold scalar tensors still on the GPU.
pub struct Step {
    /// Batch means to show on the progress bar and check for NaN every `log_every` steps,
    /// e.g. `("loss", loss)`.
    pub shown: Vec<(&'static str, Tensor)>,
    /// Per-batch sums of per-sample values (nats, probabilities), in a fixed order: [`fit`]
    /// adds them over the epoch on the GPU and divides by the epoch's images.
    pub sums: Vec<Tensor>,
}

/// The training side of an epoch, as [`fit`] gives it to [`Trainable::end_epoch`].
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// The step's sums over the epoch divided by `images`: per-sample means, in step order.
    pub means: Vec<f64>,
    /// Wall-clock seconds of the epoch's steps (evaluation excluded).
    pub seconds: f64,
    /// Training images seen in the epoch.
    pub images: usize,
}

impl EpochStats {
    /// Training images per second.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds
    }
}

/// An image grid to write into the output directory.
pub struct Grid {
    /// File name, e.g. `samples.png`.
    pub file: String,
    /// The images, `rows * cols` intensities in [0, 1] each, one after the other.
    pub images: Vec<f32>,
    /// Image height and width.
    pub size: (usize, usize),
    /// Images per row of the grid.
    pub per_row: usize,
}

impl Grid {
    /// A grid of 28x28 images.
    pub fn new(file: impl Into<String>, images: Vec<f32>, per_row: usize) -> Grid {
        Grid {
            file: file.into(),
            images,
            size: (28, 28),
            per_row,
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let (h, w) = self.size;
        viz::save_grid(&dir.join(&self.file), &self.images, h, w, self.per_row)
    }
}

/// One line of metrics.jsonl.
pub trait Metrics: Serialize {
    /// The line printed after the epoch, e.g. `epoch   1/10  train_loss ...`.
    fn line(&self, epochs: usize) -> String;

    /// The values that must be finite (losses and means; not accuracies of a subgroup that
    /// may be empty): a NaN or infinity stops training with [`Error::NonFiniteLoss`].
    fn finite_values(&self) -> Vec<f64>;
}

/// A model family's part of training; [`fit`] does the rest.
pub trait Trainable {
    /// One line of metrics.jsonl.
    type Metrics: Metrics;

    /// The model: its kind, metadata and named state go into the checkpoint.
    fn model(&self) -> &dyn Model;

    /// The checkpoint's metadata (the model's by default).
    fn metadata(&self) -> BTreeMap<String, String> {
        self.model().metadata()
    }

    /// The split whose images the batches index.
    fn train_set(&self) -> &Dataset;

    /// Called once after the GPU generator is seeded, before the first epoch (the GAN draws
    /// its fixed noise here).
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }

    /// The indices of the epoch's batches, in order: by default the seeded shuffle of
    /// [`Batches::new`] over the training split.
    fn epoch_batches(&mut self, cfg: &TrainConfig, epoch: usize) -> Result<Vec<Vec<usize>>> {
        Ok(Batches::new(
            self.train_set().len(),
            cfg.batch_size,
            cfg.seed,
            epoch as u64,
        )
        .collect())
    }

    /// One training step: forward, loss, `backward()`, the optimizers' updates.
    fn step(&mut self, batch: &Batch) -> Result<Step>;

    /// After the epoch's steps: evaluates and returns the epoch's metrics line.
    fn end_epoch(&mut self, stats: &EpochStats) -> Result<Self::Metrics>;

    /// Grids to write after each epoch (after its checkpoint).
    fn epoch_images(&mut self, epoch: usize) -> Result<Vec<Grid>> {
        let _ = epoch;
        Ok(Vec::new())
    }

    /// Grids to write when training ends.
    fn final_images(&mut self) -> Result<Vec<Grid>> {
        Ok(Vec::new())
    }
}

/// Trains `trainer` for `cfg.epochs` epochs. Creates `cfg.out_dir`, starts a fresh
/// metrics.jsonl, seeds the GPU generator with `cfg.seed`, then every epoch: runs the steps
/// over the epoch's batches (one submit each; losses read back every `cfg.log_every` steps),
/// reads the epoch sums back, checks them, evaluates, prints and appends the metrics line,
/// writes model.safetensors atomically, and the model's grids; at the end, its final grids.
/// Returns the metrics of every epoch.
///
/// Errors: [`Error::NonFiniteLoss`] if a shown loss, an epoch mean or an evaluated loss is
/// NaN or infinite (the checkpoint of the last finished epoch stays on disk); the step's and
/// evaluation's errors; I/O errors naming the file.
pub fn fit<T: Trainable>(gpu: &Gpu, cfg: &TrainConfig, trainer: &mut T) -> Result<Vec<T::Metrics>> {
    prepare_out_dir(cfg)?;
    gpu.manual_seed(cfg.seed);
    trainer.begin()?;
    let pixels = trainer.train_set().pixels();
    let mut history = Vec::new();
    for epoch in 1..=cfg.epochs {
        let batches = trainer.epoch_batches(cfg, epoch)?;
        let steps = batches.len();
        let bar = epoch_bar(cfg.progress, epoch, cfg.epochs, steps);
        let start = Instant::now();
        // The step's sums added over the epoch, kept on the GPU: the first step's as they
        // are, then `+=` each step's (the same values as starting from zeros, 0 + s = s).
        let mut sums: Vec<Tensor> = Vec::new();
        let mut images = 0;
        for (step, indices) in batches.iter().enumerate() {
            let host = trainer.train_set().gather(indices);
            let x = Tensor::from_slice(gpu, &host, [indices.len(), pixels])?;
            let out = trainer.step(&Batch { x: &x, indices })?;
            {
                let _no_grad = no_grad();
                sums = if sums.is_empty() {
                    out.sums
                } else {
                    sums.iter()
                        .zip(&out.sums)
                        .map(|(s, t)| s.add(t))
                        .collect::<Result<_>>()?
                };
            }
            end_step(gpu, cfg, &bar, &out.shown, epoch, step, steps)?;
            images += indices.len();
        }
        let means = sums
            .iter()
            .map(|s| s.item().map(|v| v as f64 / images as f64))
            .collect::<Result<Vec<f64>>>()?;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        for &m in &means {
            check_finite(m, epoch, steps, &cfg.checkpoint_path())?;
        }
        let stats = EpochStats {
            epoch,
            means,
            seconds,
            images,
        };
        let metrics = trainer.end_epoch(&stats)?;
        for v in metrics.finite_values() {
            check_finite(v, epoch, steps, &cfg.checkpoint_path())?;
        }
        println!("{}", metrics.line(cfg.epochs));
        append_jsonl(&cfg.metrics_path(), &metrics)?;
        let model = trainer.model();
        save_checkpoint(
            cfg,
            model.kind(),
            trainer.metadata(),
            &model.named_state(),
            epoch,
        )?;
        for grid in trainer.epoch_images(epoch)? {
            grid.save(&cfg.out_dir)?;
        }
        history.push(metrics);
    }
    for grid in trainer.final_images()? {
        grid.save(&cfg.out_dir)?;
    }
    Ok(history)
}

/// Creates the output directory and starts a fresh metrics.jsonl.
pub fn prepare_out_dir(cfg: &TrainConfig) -> Result<()> {
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| Error::io(&cfg.out_dir, e))?;
    let path = cfg.metrics_path();
    std::fs::write(&path, b"").map_err(|e| Error::io(&path, e))
}

/// Appends one JSON object as a line to `path`.
pub fn append_jsonl(path: &Path, record: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_string(record).map_err(|e| Error::Invalid(e.to_string()))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(line.as_bytes()).map_err(|e| Error::io(path, e))
}

/// A progress bar over one epoch's steps (hidden when `enabled` is false).
pub fn epoch_bar(enabled: bool, epoch: usize, epochs: usize, steps: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}

/// Writes OUT/model.safetensors with the model's metadata plus the epoch and training settings.
pub fn save_checkpoint(
    cfg: &TrainConfig,
    kind: ModelKind,
    mut meta: BTreeMap<String, String>,
    state: &[(String, Tensor)],
    epoch: usize,
) -> Result<()> {
    meta.insert("epoch".into(), epoch.to_string());
    meta.insert("seed".into(), cfg.seed.to_string());
    meta.insert("lr".into(), cfg.lr.to_string());
    meta.insert("batch_size".into(), cfg.batch_size.to_string());
    meta.insert("beta".into(), cfg.beta.to_string());
    meta.insert("binarized".into(), cfg.binarize.to_string());
    checkpoint::save(&cfg.checkpoint_path(), kind, &meta, state)
}

/// Ends a training step: every `log_every` steps (and at the last step of the epoch) reads the
/// losses back, which submits the step's work, checks them for NaN and infinity, and shows
/// them on the progress bar; otherwise submits the step. Either way one submit per step.
///
/// Errors: [`Error::NonFiniteLoss`] naming the epoch and the 1-based step.
#[allow(clippy::too_many_arguments)]
pub fn end_step(
    gpu: &Gpu,
    cfg: &TrainConfig,
    bar: &ProgressBar,
    losses: &[(&'static str, Tensor)],
    epoch: usize,
    step: usize,
    steps: usize,
) -> Result<()> {
    if (step + 1).is_multiple_of(cfg.log_every) || step + 1 == steps {
        let mut message = String::new();
        for (name, loss) in losses {
            let value = loss.item()?;
            check_finite(value.into(), epoch, step + 1, &cfg.checkpoint_path())?;
            message.push_str(&format!("{name} {value:.4} "));
        }
        bar.set_message(message);
    } else {
        gpu.flush();
    }
    bar.inc(1);
    Ok(())
}

/// Stops training with [`Error::NonFiniteLoss`] if `value` is NaN or infinite.
pub fn check_finite(value: f64, epoch: usize, step: usize, checkpoint: &Path) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(Error::NonFiniteLoss {
        value: value as f32,
        epoch,
        step,
        checkpoint: checkpoint.is_file().then(|| checkpoint.to_path_buf()),
    })
}
