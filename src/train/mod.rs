//! Training loops and what they write: metrics.jsonl, checkpoints, image grids.
//!
//! The loops themselves are in [`vae`] (the VAEs and the plain autoencoder),
//! [`gan`] (the MLP GAN and the DCGAN) and [`classifier`]; this file holds the
//! configuration and the pieces every loop shares.

pub mod classifier;
pub mod dbvae;
pub mod gan;
pub mod vae;

use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::autograd::no_grad;
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::Generative;
use crate::tensor::Tensor;
use crate::viz;

pub use classifier::train_classifier;
pub use gan::{train_dcgan, train_gan};
pub use vae::{train_autoencoder, train_conv_vae, train_vae};

use std::collections::BTreeMap;

use crate::checkpoint;
use crate::models::ModelKind;

/// Images per evaluation batch: small enough that the largest im2col matrix (the
/// classifier's second convolution, 196 x 512 floats per image) fits in a 128 MiB binding.
pub const EVAL_BATCH: usize = 250;

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

/// Seed of the fixed binarization of the test set in `--binarize` mode.
pub const BINARIZE_SEED: u64 = 0;

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
    /// classifier; lr 2e-4 and a 100-d noise vector for the GANs (Radford et al. 2016);
    /// output in runs/NAME.
    pub fn for_model(kind: ModelKind) -> TrainConfig {
        let gan = matches!(kind, ModelKind::Gan | ModelKind::Dcgan);
        TrainConfig {
            lr: if gan { 2e-4 } else { 1e-3 },
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
    losses: &[(&str, &Tensor)],
    epoch: usize,
    step: usize,
    steps: usize,
) -> Result<()> {
    if (step + 1).is_multiple_of(cfg.log_every) || step + 1 == steps {
        let mut message = String::new();
        for (name, loss) in losses {
            let value = loss.item()?;
            check_finite(value, epoch, step + 1, &cfg.checkpoint_path())?;
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
pub fn check_finite(value: f32, epoch: usize, step: usize, checkpoint: &Path) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(Error::NonFiniteLoss {
        value,
        epoch,
        step,
        checkpoint: checkpoint.is_file().then(|| checkpoint.to_path_buf()),
    })
}

/// Decodes `n` codes z ~ N(0, I) and returns their images (n x pixels), host side.
///
/// Decodes [`EVAL_BATCH`] codes at a time: a DCGAN generator's im2col matrix for 1,000 codes
/// (200 MB) would exceed the storage-binding limit of many adapters (128 MiB on lavapipe).
pub fn prior_samples(model: &dyn Generative, gpu: &Gpu, n: usize) -> Result<Vec<f32>> {
    let mut images = Vec::new();
    let mut left = n;
    while left > 0 {
        let m = left.min(EVAL_BATCH);
        let z = Tensor::randn(gpu, [m, model.latent_dim()])?;
        images.extend(decode_to_host(model, &z)?);
        left -= m;
    }
    Ok(images)
}

/// Decodes given codes `z (n, latent_dim)` to images in [0, 1], host side, without recording.
pub fn decode_to_host(model: &dyn Generative, z: &Tensor) -> Result<Vec<f32>> {
    let _no_grad = no_grad();
    model.generate(z)?.to_vec()
}

/// Decodes host codes `z` (n x latent_dim, row-major) to images (n x pixels), host side,
/// [`EVAL_BATCH`] codes at a time, for the same storage-binding reason as [`prior_samples`].
pub fn decode_codes(model: &dyn Generative, gpu: &Gpu, z: &[f32]) -> Result<Vec<f32>> {
    let d = model.latent_dim();
    let mut images = Vec::new();
    for chunk in z.chunks(EVAL_BATCH * d) {
        let codes = Tensor::from_slice(gpu, chunk, [chunk.len() / d, d])?;
        images.extend(decode_to_host(model, &codes)?);
    }
    Ok(images)
}

/// Writes `n` prior samples as a square-ish PNG grid (8 per row for 64).
pub fn write_samples(
    model: &dyn Generative,
    gpu: &Gpu,
    n: usize,
    side: usize,
    path: &Path,
) -> Result<()> {
    let images = prior_samples(model, gpu, n)?;
    viz::save_grid(path, &images, side, side, grid_cols(n))
}

/// Writes the first `n` test images beside their reconstructions (8 pairs per row).
pub fn write_reconstructions(
    model: &dyn Generative,
    gpu: &Gpu,
    test: &Dataset,
    n: usize,
    path: &Path,
) -> Result<()> {
    let _no_grad = no_grad();
    let n = n.min(test.len());
    let idx: Vec<usize> = (0..n).collect();
    let originals = test.gather(&idx);
    let x = Tensor::from_slice(gpu, &originals, [n, test.pixels()])?;
    let recon = model.reconstruct(&x)?.to_vec()?;
    let pairs = viz::interleave(&originals, &recon, test.pixels());
    viz::save_grid(path, &pairs, test.rows, test.cols, 16)
}

/// Columns of a square-ish grid of `n` images (8 for 64).
pub fn grid_cols(n: usize) -> usize {
    ((n as f64).sqrt().ceil() as usize).max(1)
}
