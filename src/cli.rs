//! Command-line interface: the subcommands of `deepgen` and their arguments (clap derive);
//! `main.rs` runs them.

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
    /// Decode samples from a checkpoint's prior: a PNG grid, or an N x 28 x 28 .npy array.
    Sample(SampleArgs),
    /// Latent traversal: vary one latent dimension at a time and decode (rows = dimensions).
    Traverse(TraverseArgs),
    /// Decode a path between two codes (two test images for a VAE, two noise seeds for a GAN).
    Interpolate(InterpolateArgs),
    /// Conditional VAE analogies: test images encoded, each code decoded as every digit 0-9.
    Analogies(AnalogiesArgs),
    /// Test negative ELBO, IWAE negative log-likelihood, classifier-Frechet distance, class entropy.
    Eval(EvalArgs),
    /// Outlier detection with a VAE's likelihood: AUROC and FPR at 95% TPR.
    Outliers(OutlierArgs),
    /// The debiasing experiment: plain classifier vs DB-VAE over several seeds, subgroup accuracies.
    Debias(DebiasArgs),
    /// Time every kernel family against the adapter's measured bandwidth and FMA ceilings.
    Bench(crate::workbench::Args),
    /// Translate test digits with a pix2pix or CycleGAN checkpoint: a grid of rows (input,
    /// output, target) for pix2pix, (x, T(x), back again) for CycleGAN; --eval measures it on
    /// the test set with the built-in classifier.
    Translate(TranslateArgs),
}

/// The per-image scores of `deepgen outliers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScoreArg {
    /// Negative ELBO (nats).
    Elbo,
    /// Importance-weighted negative log-likelihood bound (nats).
    Iwae,
    /// Reconstruction error of the mean code (nats).
    Recon,
    /// Negative ELBO minus the image's PNG code length (nats; Serra et al. 2020).
    Complexity,
    /// Negative ELBO minus the pixels' binary entropy, the least BCE a decoder can reach (nats).
    Excess,
}

/// Parses a model name of [`ModelKind::ALL`]; `--help` lists each with its description.
fn model_kind() -> impl clap::builder::TypedValueParser<Value = ModelKind> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let names = ModelKind::ALL.map(|k| PossibleValue::new(k.name()).help(k.description()));
    PossibleValuesParser::new(names)
        .map(|name| ModelKind::from_name(&name).expect("a name from ModelKind::ALL"))
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
    #[arg(value_parser = model_kind())]
    pub model: ModelKind,
    /// Directory with the four MNIST IDX files (.gz or raw).
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Passes over the training set [default: 10; 2 for the classifier, 20 for cvae].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Images per training step.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch_size: u64,
    /// Adam learning rate (positive) [default: 1e-3; 2e-4 for the GANs].
    #[arg(long, value_parser = positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Size of the latent code z, or of the GANs' noise vector [default: 20; 100 for the GANs;
    /// 2 for cvae].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub latent_dim: Option<u64>,
    /// Seed of initialisation, shuffling and the GPU noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N training and N test images (for quick runs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Output directory [default: runs/MODEL]. A directory that holds another run is refused
    /// unless --force or --resume is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the run the output directory holds (its metrics, checkpoint and training
    /// state are deleted first).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the run the output directory holds from its training state (saved after
    /// every epoch and on Ctrl-C), with the same settings; --epochs may be raised.
    #[arg(long)]
    pub resume: bool,
    /// Weight of the KL term of the VAE loss (1 = the ELBO; >1 = beta-VAE).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_f32, allow_negative_numbers = true)]
    pub beta: f32,
    /// Read the loss back every N steps (progress bar and NaN check).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
    /// Hide the progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Binarized MNIST (VAEs): binarize training batches afresh every step, and the test set
    /// once with a fixed seed, as the binarized-MNIST likelihood literature does.
    #[arg(long)]
    pub binarize: bool,
    /// dbvae: train the plain classifier (no VAE loss, uniform sampling) instead.
    #[arg(long)]
    pub plain: bool,
    /// dbvae: weight of the VAE loss beside the classification loss.
    #[arg(long, default_value_t = 0.01, value_parser = non_negative_f32)]
    pub vae_weight: f32,
    /// dbvae: smoothing alpha of the latent density estimate (smaller = stronger debiasing).
    #[arg(long, default_value_t = 0.001, value_parser = positive_f32)]
    pub alpha: f32,
    /// dbvae: fraction of the odd training digits drawn inverted (the rare attribute).
    #[arg(long, default_value_t = 0.015, value_parser = fraction)]
    pub rare_fraction: f64,
    /// wgan-gp: the generator's and critic's architecture.
    #[arg(long, value_enum, default_value_t = ArchArg::Conv)]
    pub arch: ArchArg,
    /// pix2pix: train the U-Net with the L1 term alone (the paper's ablation; no discriminator).
    #[arg(long)]
    pub l1_only: bool,
    /// pix2pix and cyclegan: base channel count of the networks (default 32 for pix2pix, 16
    /// for cyclegan).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub width: Option<u64>,
    /// cyclegan: residual blocks per generator.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=16))]
    pub blocks: u64,
    /// cyclegan: weight of the identity terms |G(b) - b| + |F(a) - a| (0, the default, leaves
    /// them out, as the paper's sec. 4; 5 = 0.5 lambda is its sec. 5.2's).
    #[arg(long, default_value_t = deepgen::train::cyclegan::DEFAULT_LAMBDA_IDENTITY, value_parser = non_negative_f32)]
    pub lambda_identity: f32,
}

/// The WGAN-GP architectures of `deepgen train wgan-gp --arch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    /// DCGAN-sized convolutional generator and critic.
    Conv,
    /// Fully connected generator and critic (the MLP GAN's sizes).
    Mlp,
}

fn fid_samples(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if v == 1 {
        return Err("a covariance needs at least 2 samples: give 0 (skip) or 2 or more".into());
    }
    Ok(v)
}

fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("must be between 0 and 1, got {s}"));
    }
    Ok(v)
}

/// Options of `deepgen debias`.
#[derive(clap::Args, Debug)]
pub struct DebiasArgs {
    /// Seeds; each trains the plain classifier and the DB-VAE.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Epochs per run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Fraction of the odd training digits drawn inverted.
    #[arg(long, default_value_t = 0.015, value_parser = fraction)]
    pub rare_fraction: f64,
    /// MNIST directory.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Use only the first N training and test images.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Output directory (debias.json, upweighted.png, one folder per run).
    #[arg(long, default_value = "runs/debias")]
    pub out: PathBuf,
    /// Replace the runs the output directory holds.
    #[arg(long)]
    pub force: bool,
}

/// Options of `deepgen sample`.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// A model.safetensors written by `deepgen train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Number of samples [default: 64]; with --class all, the number of codes z, one per
    /// column [default: 8].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub n: Option<u64>,
    /// Output: a .png grid, or a .npy file of N x 28 x 28 float32 intensities in [0, 1]
    /// (other extensions are refused).
    #[arg(long, default_value = "samples.png")]
    pub out: PathBuf,
    /// Seed of the latent codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Refuse the checkpoint unless it holds this kind of model.
    #[arg(long, value_parser = model_kind())]
    pub model: Option<ModelKind>,
    /// Conditional models (cvae, cgan): samples of this digit, 0-9; or `all`: a 10-row grid,
    /// one row per digit, one column per code z.
    #[arg(long, value_parser = class_arg, allow_hyphen_values = true)]
    pub class: Option<ClassArg>,
}

/// The digit of `deepgen sample --class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassArg {
    /// Samples of this digit.
    Digit(u8),
    /// One row per digit.
    All,
}

fn class_arg(s: &str) -> Result<ClassArg, String> {
    if s == "all" {
        return Ok(ClassArg::All);
    }
    match s.parse::<u8>() {
        Ok(d) if d <= 9 => Ok(ClassArg::Digit(d)),
        _ => Err(format!(
            "`{s}` is not a digit: give 0 to 9, or `all` for a 10-row grid (one row per digit)"
        )),
    }
}

/// Options of `deepgen analogies`.
#[derive(clap::Args, Debug)]
pub struct AnalogiesArgs {
    /// A conditional VAE checkpoint (`deepgen train cvae`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The first test image to encode.
    #[arg(long)]
    pub image_index: usize,
    /// Test images to encode, one row each (fewer at the end of the test set).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub count: u64,
    /// MNIST directory.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Output PNG: one row per test image, the image then its code decoded as 0, 1, ..., 9.
    #[arg(long)]
    pub out: PathBuf,
}

/// Options of `deepgen traverse`.
#[derive(clap::Args, Debug)]
pub struct TraverseArgs {
    /// A checkpoint of a VAE (or a GAN: from z = 0, dimensions in order).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Start from the code of this test image [default: z = 0].
    #[arg(long)]
    pub image_index: Option<usize>,
    /// Dimensions to vary, e.g. --dims 3,0,7 [default: active ones by decreasing KL].
    #[arg(long, value_delimiter = ',')]
    pub dims: Option<Vec<usize>>,
    /// Values per dimension.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u64).range(2..=64))]
    pub steps: u64,
    /// Values run from -RANGE to +RANGE.
    #[arg(long, default_value_t = 3.0, value_parser = positive_f32)]
    pub range: f32,
    /// MNIST directory (for the test image and the per-dimension KL).
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

/// Options of `deepgen interpolate`.
#[derive(clap::Args, Debug)]
pub struct InterpolateArgs {
    /// A checkpoint of a VAE or a GAN.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// First test image (VAE) or noise seed (GAN).
    #[arg(long)]
    pub from: usize,
    /// Last test image (VAE) or noise seed (GAN).
    #[arg(long)]
    pub to: usize,
    /// Decoded points along the path.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=64))]
    pub steps: u64,
    /// MNIST directory.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Output PNG (one row).
    #[arg(long)]
    pub out: PathBuf,
}

/// Options of `deepgen eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The checkpoint to evaluate.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Importance samples K of the IWAE bound (the papers use 5000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub samples: u64,
    /// Evaluate the likelihood on the first N test images [default: all 10,000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub test_images: Option<u64>,
    /// Generated samples for the classifier-Frechet distance and class entropy (0: skip; else
    /// at least 2).
    #[arg(long, default_value_t = 10_000, value_parser = fid_samples)]
    pub fid_samples: u64,
    /// Digit classifier checkpoint for the Frechet distance [default: the one built into
    /// deepgen, models/classifier/model.safetensors].
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Use the fixed binarization of the test set (automatic for --binarize checkpoints).
    #[arg(long)]
    pub binarize: bool,
    /// MNIST directory.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Seed of the importance and prior samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `deepgen outliers`.
#[derive(clap::Args, Debug)]
pub struct OutlierArgs {
    /// A VAE checkpoint trained on the in-distribution data.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// In-distribution data (its test split is scored).
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Outliers: a directory of IDX files (its test split, e.g. /usr/share/datasets/fashion-mnist),
    /// `noise` (uniform noise images) or `rotated` (the in-distribution test set turned 90 degrees).
    #[arg(long)]
    pub ood: String,
    /// How to score an image (higher = more unusual).
    #[arg(long, value_enum, default_value_t = ScoreArg::Elbo)]
    pub score: ScoreArg,
    /// Importance samples per image for the elbo and iwae scores.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub samples: u64,
    /// Score only the first N images of each set.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Output directory for summary.json, scores.csv and most_unusual.png.
    #[arg(long, default_value = "runs/outliers")]
    pub out: PathBuf,
    /// Seed of the importance samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Which way a CycleGAN translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// A -> B: MNIST to thick inverted digits (G). The only direction of pix2pix.
    AToB,
    /// B -> A: thick inverted digits to MNIST (F).
    BToA,
}

#[derive(clap::Args, Debug)]
pub struct TranslateArgs {
    /// A pix2pix or cyclegan model.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The grid to write (.png).
    #[arg(long)]
    pub out: PathBuf,
    /// CycleGAN: which way to translate.
    #[arg(long, value_enum, default_value_t = DirectionArg::AToB)]
    pub direction: DirectionArg,
    /// Rows of the grid: the first N test digits.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub n: u64,
    /// Measure the model on the test set (pix2pix: accuracy, classifier-FID, L1; CycleGAN:
    /// label preservation, cycle L1, confusion) with the built-in classifier.
    #[arg(long)]
    pub eval: bool,
    /// With --eval: the first N test digits only (default: all 10,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    pub test_images: Option<u64>,
    /// With --eval: also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory with the MNIST files.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
}
