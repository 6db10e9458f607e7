//! Training: one skeleton, [`fit`], and each model family's step and evaluation.
//!
//! [`fit`] owns what every run shares: the output directory (one run per directory, locked:
//! [`run`]), seeding the GPU generator, the epoch's batches and their upload, the progress bar,
//! reading the losses back every `--log-every` steps, the epoch sums kept on the GPU, the
//! NaN/infinity checks of every loss and metric, metrics.jsonl, the checkpoint and the
//! training state after every epoch ([`state`]: what `--resume` continues from), stopping at
//! a step boundary on Ctrl-C, and the image grids. A model family brings a [`Trainable`]: its
//! step (batch in, losses out; it calls `backward()` and its optimizers), its evaluation, and
//! the list of its optimizers (so that their state can be saved and restored). The steps are public functions ([`vae::vae_step`], [`gan::gan_step`],
//! [`classifier::classifier_step`], [`dbvae::dbvae_step`]) that the examples call too.
//!
//! - [`vae`]: the VAEs (MLP and convolutional) and the plain autoencoder;
//! - [`gan`]: the MLP GAN and the DCGAN;
//! - [`classifier`]: the digit classifier;
//! - [`dbvae`]: the debiasing VAE and its plain twin; [`debias`]: the experiment over seeds;
//! - [`wgan`]: the WGAN-GP, whose critic step differentiates a gradient;
//! - [`conditional`]: the conditional VAE and the conditional GAN, told the digit;
//! - [`pix2pix`] and [`cyclegan`]: image-to-image translation, paired and unpaired.

pub mod classifier;
pub mod conditional;
pub mod cyclegan;
pub mod dbvae;
pub mod debias;
pub mod gan;
pub mod pix2pix;
pub mod run;
pub mod state;
pub mod vae;
pub mod wgan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::autograd::{Gradients, no_grad};
use crate::checkpoint::{self, HostTensor, read_back};
use crate::data::{Batches, Dataset, Mnist};
use crate::error::{Error, Result};
use crate::files::append_line;
use crate::gpu::Gpu;
use crate::models::{Model, ModelKind, largest_floats_per_sample, max_batch_size};
use crate::optim::Adam;
use crate::tensor::Tensor;
use crate::viz;

pub use crate::data::BINARIZE_SEED;
pub use classifier::train_classifier;
pub use conditional::{train_cgan, train_cvae};
pub use gan::{train_dcgan, train_gan};
pub use run::{Existing, RunDir};
pub use state::{ExtraState, OptimizerState, PartialEpoch, TrainState};
pub use vae::{train_autoencoder, train_conv_vae, train_vae};
pub use wgan::train_wgan_gp;

/// The conditional VAE's default latent size. With the label in both networks, a 2-d code
/// (the style: slant, width, thickness) keeps its prior samples on the digits' manifold, so
/// that a sample asked for a digit is that digit (conditional accuracy 0.968 after 20 epochs);
/// a 20-d code (`--latent-dim 20`, the VAE's) gives the better likelihood (test -ELBO 101.75
/// against 133.01) but draws the asked digit far less often (0.735 after 10 epochs): its prior
/// samples fall off the manifold the codes of real images occupy. The command's purpose is to
/// draw the digit asked for, so the default is the 2-d code. README, "Conditional generation",
/// has the figures of both.
pub const CVAE_LATENT_DIM: usize = 2;

/// The conditional VAE's default epochs: with its 2-d latent, 20 epochs bring the conditional
/// accuracy over 0.95 (0.968 measured; 0.943 after 10). README, "Conditional generation".
pub const CVAE_EPOCHS: usize = 20;

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
    /// `--force`: delete the run `out_dir` holds, if any, and start afresh.
    pub force: bool,
    /// `--resume`: continue the run `out_dir` holds from its training state.
    pub resume: bool,
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
            force: false,
            resume: false,
        }
    }
}

impl TrainConfig {
    /// The defaults for `kind`: lr 1e-3 and latent 20 for the autoencoders and the
    /// classifier; lr 2e-4 and a 100-d noise vector for the GANs (Radford et al. 2016), lr 1e-4
    /// for the WGAN-GP (Gulrajani et al. 2017); the conditional GAN as the GANs; the
    /// conditional VAE lr 1e-3, a 2-d latent ([`CVAE_LATENT_DIM`]) and 20 epochs
    /// ([`CVAE_EPOCHS`]); lr 2e-4 for pix2pix and CycleGAN (both papers); output in runs/NAME.
    pub fn for_model(kind: ModelKind) -> TrainConfig {
        let gan = matches!(
            kind,
            ModelKind::Gan | ModelKind::Dcgan | ModelKind::WganGp | ModelKind::Cgan
        );
        TrainConfig {
            // WGAN-GP: Gulrajani et al. 2017, Algorithm 1.
            lr: match kind {
                ModelKind::WganGp => 1e-4,
                // Isola et al. 2017, sec. 3.3; Zhu et al. 2017, sec. 4.
                ModelKind::Pix2Pix | ModelKind::CycleGan => 2e-4,
                _ if gan => 2e-4,
                _ => 1e-3,
            },
            latent_dim: match kind {
                ModelKind::Cvae => CVAE_LATENT_DIM,
                _ if gan => 100,
                _ => 20,
            },
            epochs: match kind {
                ModelKind::Classifier => 2,
                ModelKind::Cvae => CVAE_EPOCHS,
                _ => 10,
            },
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

    /// `OUT/train_state.safetensors`: what `--resume` continues from ([`state`]).
    pub fn state_path(&self) -> PathBuf {
        self.out_dir.join(run::STATE_FILE)
    }

    /// How [`fit`] treats an output directory that holds a run.
    pub fn existing(&self) -> Existing {
        if self.resume {
            Existing::Resume
        } else if self.force {
            Existing::Replace
        } else {
            Existing::Refuse
        }
    }
}

/// Adam and the parameters it updates: the optimizer state a step owns, which a trainer
/// lists in [`Trainable::optimizers`] so that `--resume` restores it.
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

    /// The values that must be finite: every loss, mean and rate the line reports (not the
    /// accuracies of a subgroup that may be empty, which are NaN by definition, nor wall-clock
    /// figures). A NaN or infinity stops training with [`Error::NonFiniteLoss`], before the
    /// epoch's checkpoint is written, naming the fields (those the line serializes as null).
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

    /// The trainer's optimizers, each under a name unique within the trainer (`adam`; a GAN's
    /// `discriminator` and `generator`), always in the same order. [`fit`] saves their moments
    /// and step counts in the training state after every epoch (and on Ctrl-C) and restores
    /// them on `--resume`. The default, none, marks a trainer that cannot be resumed:
    /// `--resume` is refused, and Ctrl-C stops without saving a state.
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        Vec::new()
    }

    /// Whatever else the trainer needs to continue exactly where it stopped, beyond the model,
    /// the optimizers and the GPU generator (which [`fit`] saves): a host random generator,
    /// values its [`Trainable::epoch_batches`] computed. Saved with the training state.
    /// Default: nothing.
    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState::default())
    }

    /// Restores what [`Trainable::extra_state`] saved, on `--resume` (after
    /// [`Trainable::begin`]).
    ///
    /// Errors: [`Error::Checkpoint`] for a missing or malformed entry.
    fn restore_extra_state(&mut self, state: &ExtraState) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// Set when a stop is asked (Ctrl-C); read by [`fit`] at every step boundary.
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every [`fit`] in the process to stop at its next step boundary, saving a state to
/// resume from (the binary calls this on Ctrl-C and SIGTERM). Returns whether a stop had been
/// asked already (a second Ctrl-C: the binary then quits at once).
pub fn request_stop() -> bool {
    STOP.swap(true, Ordering::SeqCst)
}

/// Whether a stop was asked ([`request_stop`]).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Refuses a batch size whose largest intermediate would not fit in one of the adapter's
/// storage bindings ([`max_batch_size`]), naming the largest that fits. `images` is the
/// number of training images: a batch is never larger. Called by [`fit`] before anything is
/// written.
///
/// Errors: [`Error::Invalid`] naming `--batch-size`.
pub fn check_batch_size(
    gpu: &Gpu,
    batch_size: usize,
    images: usize,
    model: &dyn Model,
) -> Result<()> {
    let (kind, meta) = (model.kind(), model.metadata());
    let binding = gpu.max_binding_bytes();
    let max = max_batch_size(kind, &meta, binding);
    let largest = batch_size.min(images);
    if largest <= max {
        return Ok(());
    }
    let per_image = largest_floats_per_sample(kind, &meta);
    Err(Error::Invalid(format!(
        "--batch-size {batch_size} is too large for a `{}` model on this adapter: its largest \
         intermediate, {per_image} floats per image, would take {} bytes for a batch of \
         {largest}, more than the adapter's largest storage binding ({binding} bytes). The \
         largest batch size that fits is {max}",
        kind.name(),
        per_image as u64 * 4 * largest as u64
    )))
}

/// The settings a resumed run must repeat: the trainer's checkpoint metadata (model sizes and
/// its own settings), the seed, learning rate, batch size, beta, binarization, image limit
/// and the number of training images.
pub fn run_settings<T: Trainable>(cfg: &TrainConfig, trainer: &T) -> BTreeMap<String, String> {
    let mut s = trainer.metadata();
    s.insert("seed".into(), cfg.seed.to_string());
    s.insert("lr".into(), cfg.lr.to_string());
    s.insert("batch_size".into(), cfg.batch_size.to_string());
    s.insert("beta".into(), cfg.beta.to_string());
    s.insert("binarized".into(), cfg.binarize.to_string());
    s.insert(
        "limit".into(),
        cfg.limit.map_or("none".to_string(), |n| n.to_string()),
    );
    s.insert("train_images".into(), trainer.train_set().len().to_string());
    s
}

/// The command-line flag of a setting of [`run_settings`], for messages.
fn flag_of(key: &str) -> String {
    match key {
        "seed" | "lr" | "beta" | "limit" => format!("--{key}"),
        "batch_size" => "--batch-size".into(),
        "binarized" => "--binarize".into(),
        "latent_dim" => "--latent-dim".into(),
        "rare_fraction" => "--rare-fraction".into(),
        "vae_weight" => "--vae-weight".into(),
        "debias" => "--plain (not given: true)".into(),
        "lambda_identity" => "--lambda-identity".into(),
        "train_images" => "training images (--data, --limit)".into(),
        other => other.into(),
    }
}

/// Restores a saved run into `trainer` and the GPU generator, after checking that it is a
/// run of the same model with the same settings.
fn restore<T: Trainable>(
    gpu: &Gpu,
    trainer: &mut T,
    state: &TrainState,
    path: &Path,
    settings: &BTreeMap<String, String>,
) -> Result<()> {
    let out_dir = |reason: String| Error::OutDir {
        path: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        reason,
    };
    let kind = trainer.model().kind();
    if state.kind != kind {
        return Err(out_dir(format!(
            "--resume: it holds a `{}` run, and this command trains a `{}`",
            state.kind.name(),
            kind.name()
        )));
    }
    let mut keys: Vec<&String> = settings.keys().chain(state.settings.keys()).collect();
    keys.sort();
    keys.dedup();
    let missing = "(not set)".to_string();
    let differ: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (saved, now) = (
                state.settings.get(k).unwrap_or(&missing),
                settings.get(k).unwrap_or(&missing),
            );
            (saved != now).then(|| format!("{} {saved} (this command: {now})", flag_of(k)))
        })
        .collect();
    if !differ.is_empty() {
        return Err(out_dir(format!(
            "--resume: the run was started with other settings: {}. Resume with the settings it \
             was started with, or start afresh with --force",
            differ.join("; ")
        )));
    }
    let names: Vec<&'static str> = trainer.optimizers().iter().map(|(n, _)| *n).collect();
    let saved: Vec<&str> = state.optimizers.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort();
    if sorted != saved {
        return Err(out_dir(format!(
            "--resume: the state holds optimizers {saved:?}, the trainer has {names:?}"
        )));
    }
    state
        .model_checkpoint(path)
        .load_into(&trainer.model().named_state())?;
    for (name, opt) in trainer.optimizers() {
        state.optimizers[name].restore(opt, name, path)?;
    }
    gpu.set_rng_state(state.rng.0, state.rng.1);
    trainer.restore_extra_state(&state.extra)
}

/// Writes OUT/train_state.safetensors: `model` (host copies of the model's state; read back
/// if None), the optimizers, the GPU generator, the trainer's extra state, `epochs_done` and
/// the epoch in progress, if any.
#[allow(clippy::too_many_arguments)]
fn save_state<T: Trainable>(
    gpu: &Gpu,
    run: &RunDir,
    trainer: &mut T,
    settings: &BTreeMap<String, String>,
    epochs_done: usize,
    partial: Option<PartialEpoch>,
    model: Option<Vec<HostTensor>>,
) -> Result<()> {
    let model = match model {
        Some(m) => m,
        None => read_back(&trainer.model().named_state())?,
    };
    let kind = trainer.model().kind();
    let extra = trainer.extra_state()?;
    let optimizers = trainer
        .optimizers()
        .into_iter()
        .map(|(name, opt)| Ok((name.to_string(), OptimizerState::read(opt)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    TrainState {
        kind,
        settings: settings.clone(),
        epochs_done,
        partial,
        rng: gpu.rng_state(),
        model,
        optimizers,
        extra,
    }
    .save(&run.state_path())
}

/// The fields of `metrics` that serialize as null (NaN and infinities do), by name, for
/// messages: `test_loss`, or `test_kl_per_dim (20 of 20 values)` for an array.
fn null_fields(metrics: &impl Serialize) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(metrics) else {
        return out;
    };
    for (name, v) in fields {
        match v {
            serde_json::Value::Null => out.push(name),
            serde_json::Value::Array(a) => {
                let nulls = a.iter().filter(|x| x.is_null()).count();
                if nulls > 0 {
                    out.push(format!("{name} ({nulls} of {} values)", a.len()));
                }
            }
            _ => {}
        }
    }
    out
}

/// What [`fit`] continues from on `--resume`: the first epoch to run, the epoch in progress
/// (if the run stopped inside one) and the last good checkpoint.
type Resumed = (usize, Option<PartialEpoch>, Option<PathBuf>);

/// Loads OUT/train_state.safetensors, checks it against this run and restores it into
/// `trainer` and the GPU generator ([`restore`]), keeps the metrics lines of the epochs it
/// holds, and says where the run resumes. None when the run has all its epochs already.
///
/// Errors: as [`TrainState::load`] and [`restore`]; [`Error::OutDir`] if `--epochs` is below
/// the epoch in progress.
fn resume<T: Trainable>(
    gpu: &Gpu,
    cfg: &TrainConfig,
    run: &RunDir,
    trainer: &mut T,
    settings: &BTreeMap<String, String>,
) -> Result<Option<Resumed>> {
    let state = TrainState::load(&run.state_path())?;
    restore(gpu, trainer, &state, &run.state_path(), settings)?;
    run.keep_metrics_up_to(state.epochs_done)?;
    let first_epoch = state.epochs_done + 1;
    let last_good = (state.epochs_done > 0).then(|| run.model_path());
    match &state.partial {
        Some(p) => println!(
            "resuming {} at epoch {first_epoch}, step {} of {}",
            run.path().display(),
            p.steps_done + 1,
            p.batches.len()
        ),
        None => println!(
            "resuming {} after epoch {}",
            run.path().display(),
            state.epochs_done
        ),
    }
    if first_epoch > cfg.epochs {
        if state.partial.is_some() {
            return Err(Error::OutDir {
                path: cfg.out_dir.clone(),
                reason: format!(
                    "--resume: epoch {first_epoch} is in progress, but --epochs is {}",
                    cfg.epochs
                ),
            });
        }
        println!(
            "it has finished {} epochs already (--epochs {}): nothing to do; pass a larger \
             --epochs to train on",
            state.epochs_done, cfg.epochs
        );
        return Ok(None);
    }
    Ok(Some((first_epoch, state.partial, last_good)))
}

/// Trains `trainer` for `cfg.epochs` epochs. Checks the batch size against the adapter
/// ([`check_batch_size`]); opens the output directory ([`RunDir::open`]: locked, stray
/// temporary files removed, a directory holding another run refused unless `cfg.force` or
/// `cfg.resume`); seeds the GPU generator with `cfg.seed`; with `cfg.resume`, restores the
/// saved run ([`TrainState`]: model, optimizers, generator, the trainer's own state, the epoch
/// in progress) after checking it is the same model with the same settings. Then every epoch:
/// runs the steps over the epoch's batches (one submit each; losses read back every
/// `cfg.log_every` steps), reads the epoch sums back, checks them, evaluates, checks every
/// metric, prints and appends the metrics line, writes model.safetensors and the training
/// state atomically, and the model's grids; at the end, its final grids. If a stop is asked
/// ([`request_stop`], Ctrl-C), stops at the next step boundary after saving the state.
/// Returns the metrics of the epochs this call ran.
///
/// Errors: [`Error::Invalid`] for a batch size too large for the adapter; [`Error::OutDir`]
/// for a directory another run holds or uses, or a state that does not match;
/// [`Error::NonFiniteLoss`] if a shown loss, an epoch mean or a metric is NaN or infinite
/// (nothing of that epoch is written; the checkpoint of the last good epoch stays);
/// [`Error::Interrupted`] when stopped; the step's and evaluation's errors; I/O errors naming
/// the file.
pub fn fit<T: Trainable>(gpu: &Gpu, cfg: &TrainConfig, trainer: &mut T) -> Result<Vec<T::Metrics>> {
    check_batch_size(
        gpu,
        cfg.batch_size,
        trainer.train_set().len(),
        trainer.model(),
    )?;
    let resumable = !trainer.optimizers().is_empty();
    if cfg.resume && !resumable {
        return Err(Error::OutDir {
            path: cfg.out_dir.clone(),
            reason: format!(
                "--resume: a `{}` trainer does not list its optimizers, so its runs cannot be \
                 resumed",
                trainer.model().kind().name()
            ),
        });
    }
    let run = RunDir::open(&cfg.out_dir, cfg.existing())?;
    gpu.manual_seed(cfg.seed);
    trainer.begin()?;
    let settings = run_settings(cfg, trainer);
    let (first_epoch, mut partial, mut last_good) = if cfg.resume {
        match resume(gpu, cfg, &run, trainer, &settings)? {
            Some(r) => r,
            None => return Ok(Vec::new()),
        }
    } else {
        // The checkpoint of this run's last epoch whose every value was finite: none yet.
        (1, None, None)
    };
    let pixels = trainer.train_set().pixels();
    let n_train = trainer.train_set().len();
    let mut history = Vec::new();
    for epoch in first_epoch..=cfg.epochs {
        // The step's sums added over the epoch, kept on the GPU: the first step's as they
        // are, then `+=` each step's (the same values as starting from zeros, 0 + s = s).
        let (batches, first_step, mut sums, mut images, seconds_before) = match partial.take() {
            Some(p) => {
                if p.batches.iter().flatten().any(|&i| i >= n_train) {
                    return Err(Error::Checkpoint {
                        path: run.state_path(),
                        reason: format!(
                            "its epoch order indexes beyond the {n_train} training images"
                        ),
                    });
                }
                let sums = p
                    .sums
                    .iter()
                    .map(|(shape, v)| Tensor::from_slice(gpu, v, shape.clone()))
                    .collect::<Result<Vec<_>>>()?;
                (p.batches, p.steps_done, sums, p.images, p.seconds)
            }
            None => (trainer.epoch_batches(cfg, epoch)?, 0, Vec::new(), 0, 0.0),
        };
        let steps = batches.len();
        let bar = epoch_bar(cfg.progress, epoch, cfg.epochs, steps);
        bar.set_position(first_step.min(steps) as u64);
        let start = Instant::now();
        for (step, indices) in batches.iter().enumerate().skip(first_step) {
            let host = trainer.train_set().gather(indices);
            let x = Tensor::from_slice(gpu, &host, [indices.len(), pixels])?;
            let out = trainer.step(&Batch { x: &x, indices })?;
            {
                let _no_grad = no_grad();
                sums = if sums.is_empty() {
                    out.sums
                } else {
                    if sums.len() != out.sums.len() {
                        return Err(Error::Invalid(format!(
                            "the step returned {} sums, the epoch holds {}",
                            out.sums.len(),
                            sums.len()
                        )));
                    }
                    sums.iter()
                        .zip(&out.sums)
                        .map(|(s, t)| s.add(t))
                        .collect::<Result<_>>()?
                };
            }
            end_step(
                gpu,
                cfg,
                &bar,
                &out.shown,
                epoch,
                step,
                steps,
                last_good.as_deref(),
            )?;
            images += indices.len();
            if stop_requested() {
                bar.finish_and_clear();
                let state = if resumable {
                    let sums = sums
                        .iter()
                        .map(|s| Ok((s.dims().to_vec(), s.to_vec()?)))
                        .collect::<Result<Vec<_>>>()?;
                    let p = PartialEpoch {
                        steps_done: step + 1,
                        batches,
                        sums,
                        images,
                        seconds: seconds_before + start.elapsed().as_secs_f64(),
                    };
                    save_state(gpu, &run, trainer, &settings, epoch - 1, Some(p), None)?;
                    Some(run.state_path())
                } else {
                    None
                };
                return Err(Error::Interrupted {
                    epoch,
                    step: step + 1,
                    state,
                });
            }
        }
        let means = sums
            .iter()
            .map(|s| s.item().map(|v| v as f64 / images as f64))
            .collect::<Result<Vec<f64>>>()?;
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        for (i, &m) in means.iter().enumerate() {
            check_finite(
                &format!("the epoch mean of training sum {i}"),
                m,
                epoch,
                steps,
                last_good.as_deref(),
            )?;
        }
        let stats = EpochStats {
            epoch,
            means,
            seconds,
            images,
        };
        let metrics = trainer.end_epoch(&stats)?;
        if let Some(v) = metrics.finite_values().into_iter().find(|v| !v.is_finite()) {
            let names = null_fields(&metrics);
            let what = match names.len() {
                0 => "a metric".to_string(),
                1..=4 => names.join(", "),
                n => format!("{} and {} more", names[..3].join(", "), n - 3),
            };
            check_finite(&what, v, epoch, steps, last_good.as_deref())?;
        }
        println!("{}", metrics.line(cfg.epochs));
        append_jsonl(&run.metrics_path(), &metrics)?;
        let model = trainer.model();
        let host = read_back(&model.named_state())?;
        save_checkpoint(cfg, model.kind(), trainer.metadata(), &host, epoch)?;
        if resumable {
            save_state(gpu, &run, trainer, &settings, epoch, None, Some(host))?;
        }
        last_good = Some(run.model_path());
        for grid in trainer.epoch_images(epoch)? {
            grid.save(&cfg.out_dir)?;
        }
        history.push(metrics);
        if stop_requested() && epoch < cfg.epochs {
            return Err(Error::Interrupted {
                epoch,
                step: steps,
                state: resumable.then(|| run.state_path()),
            });
        }
    }
    for grid in trainer.final_images()? {
        grid.save(&cfg.out_dir)?;
    }
    Ok(history)
}

/// Appends one JSON object as a line to `path`, in one write, never through a symbolic link.
///
/// Errors: [`Error::Io`] naming the file.
pub fn append_jsonl(path: &Path, record: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(record).map_err(|e| Error::Invalid(e.to_string()))?;
    append_line(path, &line)
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

/// Writes OUT/model.safetensors from host copies of the model's state, with the model's
/// metadata plus the epoch and training settings.
///
/// Errors: [`Error::Io`] naming the file.
pub fn save_checkpoint(
    cfg: &TrainConfig,
    kind: ModelKind,
    mut meta: BTreeMap<String, String>,
    state: &[HostTensor],
    epoch: usize,
) -> Result<()> {
    meta.insert("epoch".into(), epoch.to_string());
    meta.insert("seed".into(), cfg.seed.to_string());
    meta.insert("lr".into(), cfg.lr.to_string());
    meta.insert("batch_size".into(), cfg.batch_size.to_string());
    meta.insert("beta".into(), cfg.beta.to_string());
    meta.insert("binarized".into(), cfg.binarize.to_string());
    checkpoint::save_host(&cfg.checkpoint_path(), kind, &meta, state)
}

/// Ends a training step: every `log_every` steps (and at the last step of the epoch) reads the
/// losses back, which submits the step's work, checks them for NaN and infinity, and shows
/// them on the progress bar; otherwise submits the step. Either way one submit per step.
/// `last_good` is the run's last good checkpoint, for the error.
///
/// Errors: [`Error::NonFiniteLoss`] naming the loss, the epoch and the 1-based step.
#[allow(clippy::too_many_arguments)]
pub fn end_step(
    gpu: &Gpu,
    cfg: &TrainConfig,
    bar: &ProgressBar,
    losses: &[(&'static str, Tensor)],
    epoch: usize,
    step: usize,
    steps: usize,
    last_good: Option<&Path>,
) -> Result<()> {
    if (step + 1).is_multiple_of(cfg.log_every) || step + 1 == steps {
        let mut message = String::new();
        for (name, loss) in losses {
            let value = loss.item()?;
            check_finite(name, value.into(), epoch, step + 1, last_good)?;
            message.push_str(&format!("{name} {value:.4} "));
        }
        bar.set_message(message);
    } else {
        gpu.flush();
    }
    bar.inc(1);
    Ok(())
}

/// Stops training with [`Error::NonFiniteLoss`] naming `quantity` if `value` is NaN or
/// infinite; `last_good` is the run's last good checkpoint.
pub fn check_finite(
    quantity: &str,
    value: f64,
    epoch: usize,
    step: usize,
    last_good: Option<&Path>,
) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(Error::NonFiniteLoss {
        quantity: quantity.to_string(),
        value: value as f32,
        epoch,
        step,
        checkpoint: last_good.map(Path::to_path_buf),
    })
}
