//! Command-line interface: `deepgen info | train | sample`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use deepgen::models::ModelKind;

/// deepgen: deep generative models on the GPU, with hand-written WGSL kernels.
#[derive(Parser, Debug)]
#[command(name = "deepgen", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the GPU adapter, backend, driver and the limits that matter.
    Info,
    /// Train a model on MNIST (or a dataset in the same format).
    Train(TrainArgs),
    /// Decode samples from a checkpoint's prior into a PNG grid.
    Sample(SampleArgs),
}

/// The models `deepgen train` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// Variational autoencoder (MLP 784-400-20).
    Vae,
    /// Plain autoencoder (same sizes, deterministic bottleneck).
    Ae,
    /// Convolutional variational autoencoder.
    ConvVae,
    /// MLP generative adversarial network.
    Gan,
    /// Deep convolutional GAN.
    Dcgan,
    /// Convolutional digit classifier.
    Classifier,
}

impl ModelArg {
    /// The library's model kind.
    pub fn kind(self) -> ModelKind {
        match self {
            ModelArg::Vae => ModelKind::Vae,
            ModelArg::Ae => ModelKind::Autoencoder,
            ModelArg::ConvVae => ModelKind::ConvVae,
            ModelArg::Gan => ModelKind::Gan,
            ModelArg::Dcgan => ModelKind::Dcgan,
            ModelArg::Classifier => ModelKind::Classifier,
        }
    }
}

fn positive_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("must be a positive number, got {s}"));
    }
    Ok(v)
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("must be a non-negative number, got {s}"));
    }
    Ok(v)
}

/// Options of `deepgen train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Which model.
    #[arg(value_enum)]
    pub model: ModelArg,
    /// Directory with the four MNIST IDX files (.gz or raw).
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Passes over the training set [default: 10; 2 for the classifier].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Images per training step.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch_size: u64,
    /// Adam learning rate (positive) [default: 1e-3; 2e-4 for the GANs].
    #[arg(long, value_parser = positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Size of the latent code z, or of the GANs' noise vector [default: 20; 100 for the GANs].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub latent_dim: Option<u64>,
    /// Seed of initialisation, shuffling and the GPU noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N training and N test images (for quick runs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Output directory [default: runs/MODEL].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Weight of the KL term of the VAE loss (1 = the ELBO; >1 = beta-VAE).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_f32, allow_negative_numbers = true)]
    pub beta: f32,
    /// Read the loss back every N steps (progress bar and NaN check).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
    /// Hide the progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// Options of `deepgen sample`.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// A model.safetensors written by `deepgen train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Number of samples.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub n: u64,
    /// Output PNG.
    #[arg(long, default_value = "samples.png")]
    pub out: PathBuf,
    /// Seed of the latent codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Refuse the checkpoint unless it holds this kind of model.
    #[arg(long, value_enum)]
    pub model: Option<ModelArg>,
}
