//! Models built from `nn/`: the lecture's autoencoder and variational autoencoders,
//! the GANs, and a digit classifier.
//!
//! Each model names each of its layers once, through an [`crate::nn::Builder`]; its
//! parameters, buffers and train/eval switches come from that registry. Each model can
//! describe itself as checkpoint metadata (its kind and hyperparameters, [`Model`]) and the
//! generative ones can be rebuilt from it, so `deepgen sample --checkpoint F` needs nothing
//! but the file.

mod autoencoder;
mod cgan;
mod classifier;
mod conv_vae;
mod cvae;
pub mod cyclegan;
mod dbvae;
mod dcgan;
mod gan;
pub mod pix2pix;
mod vae;
mod wgan_gp;

pub use autoencoder::Autoencoder;
pub use cgan::Cgan;
pub use classifier::{Classifier, FEATURE_DIM, predicted_class};
pub use conv_vae::ConvVae;
pub use cvae::Cvae;
pub use cyclegan::{CycleGan, Direction};
pub use dbvae::{DbVae, DbVaeOutput};
pub use dcgan::Dcgan;
pub use gan::MlpGan;
pub use pix2pix::Pix2Pix;
pub use vae::Vae;
pub use wgan_gp::{WganArch, WganGp};

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{HasLayers, Module};
use crate::tensor::Tensor;

/// Sizes of the MLP (variational) autoencoder: input -> hidden -> latent -> hidden -> input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlpConfig {
    /// Pixels per image (784 for MNIST).
    pub input_dim: usize,
    /// Width of the hidden layer (400 in Kingma & Welling's MNIST experiments).
    pub hidden_dim: usize,
    /// Size of the latent code z (20 by default).
    pub latent_dim: usize,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            input_dim: 784,
            hidden_dim: 400,
            latent_dim: 20,
        }
    }
}

impl MlpConfig {
    /// As checkpoint metadata entries.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("input_dim".to_string(), self.input_dim.to_string()),
            ("hidden_dim".to_string(), self.hidden_dim.to_string()),
            ("latent_dim".to_string(), self.latent_dim.to_string()),
        ])
    }

    /// From checkpoint metadata; `origin` names the file for errors.
    pub fn from_metadata(
        meta: &BTreeMap<String, String>,
        origin: &std::path::Path,
    ) -> Result<MlpConfig> {
        let get = |key: &str| -> Result<usize> {
            meta.get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Checkpoint {
                    path: origin.to_path_buf(),
                    reason: format!("metadata has no valid `{key}`"),
                })
        };
        Ok(MlpConfig {
            input_dim: get("input_dim")?,
            hidden_dim: get("hidden_dim")?,
            latent_dim: get("latent_dim")?,
        })
    }
}

/// The kinds of model deepgen trains; the name is the `model` entry of a checkpoint
/// and the argument of `deepgen train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// MLP variational autoencoder (`vae`).
    Vae,
    /// Plain autoencoder (`ae`).
    Autoencoder,
    /// Convolutional variational autoencoder (`conv-vae`).
    ConvVae,
    /// MLP generative adversarial network (`gan`).
    Gan,
    /// Deep convolutional GAN (`dcgan`).
    Dcgan,
    /// Digit classifier (`classifier`).
    Classifier,
    /// Debiasing VAE or its plain-classifier twin (`dbvae`).
    DbVae,
    /// Wasserstein GAN with gradient penalty (`wgan-gp`), convolutional or MLP.
    WganGp,
    /// Conditional VAE, q(z|x,y) and p(x|z,y) (`cvae`).
    Cvae,
    /// Conditional GAN, DCGAN-sized, projection discriminator (`cgan`).
    Cgan,
    /// pix2pix, paired image-to-image translation (`pix2pix`): completes digits from their top half.
    Pix2Pix,
    /// CycleGAN, unpaired translation between two domains (`cyclegan`).
    CycleGan,
}

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 12] = [
        ModelKind::Vae,
        ModelKind::Autoencoder,
        ModelKind::ConvVae,
        ModelKind::Gan,
        ModelKind::Dcgan,
        ModelKind::Classifier,
        ModelKind::DbVae,
        ModelKind::WganGp,
        ModelKind::Cvae,
        ModelKind::Cgan,
        ModelKind::Pix2Pix,
        ModelKind::CycleGan,
    ];

    /// The name (on the command line and in checkpoints) and a one-line description (the
    /// command line's help).
    fn spec(self) -> (&'static str, &'static str) {
        match self {
            ModelKind::Vae => ("vae", "Variational autoencoder (MLP 784-400-20)"),
            ModelKind::Autoencoder => (
                "ae",
                "Plain autoencoder (same sizes, deterministic bottleneck)",
            ),
            ModelKind::ConvVae => ("conv-vae", "Convolutional variational autoencoder"),
            ModelKind::Gan => ("gan", "MLP generative adversarial network"),
            ModelKind::Dcgan => ("dcgan", "Deep convolutional GAN"),
            ModelKind::Classifier => ("classifier", "Convolutional digit classifier"),
            ModelKind::DbVae => (
                "dbvae",
                "Debiasing VAE on the biased \"is it odd?\" task (with --plain: the same network as a plain classifier)",
            ),
            ModelKind::WganGp => (
                "wgan-gp",
                "Wasserstein GAN with gradient penalty (--arch conv|mlp)",
            ),
            ModelKind::Cvae => (
                "cvae",
                "Conditional VAE: the VAE's MLP told the digit (sample --class, analogies)",
            ),
            ModelKind::Cgan => (
                "cgan",
                "Conditional GAN: the DCGAN told the digit, projection discriminator",
            ),
            ModelKind::Pix2Pix => (
                "pix2pix",
                "pix2pix: U-Net completing a digit from its top half (--l1-only: without the GAN term)",
            ),
            ModelKind::CycleGan => (
                "cyclegan",
                "CycleGAN: MNIST <-> thickened, inverted MNIST from unpaired halves",
            ),
        }
    }

    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        self.spec().0
    }

    /// What the model is, in one line.
    pub fn description(self) -> &'static str {
        self.spec().1
    }

    /// Parses a checkpoint's `model` entry.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Where each size hyperparameter in a checkpoint's metadata shows in its stored tensors:
/// `(metadata key, tensor name, axis)`. A checkpoint is checked against this table before a
/// model is built from its metadata ([`crate::checkpoint::Checkpoint::check_buildable`]), so
/// a forged `latent_dim` of 10^9 is refused with the tensor that contradicts it instead of
/// allocating a model of that size. Every other tensor of these models has a fixed size, so
/// the model built is no larger than a constant times the tensors in the file.
///
/// A new model kind adds its row: the keys its `build` arm reads, each with a tensor whose
/// shape holds that value (PyTorch layout: a linear layer's weight is `(out, in)`). `meta`
/// picks the row of a kind whose tensor names depend on its architecture (the WGAN-GP's `arch`).
pub fn size_keys(
    kind: ModelKind,
    meta: &BTreeMap<String, String>,
) -> &'static [(&'static str, &'static str, usize)] {
    match kind {
        ModelKind::Vae => &[
            ("input_dim", "encoder.fc1.weight", 1),
            ("hidden_dim", "encoder.fc1.weight", 0),
            ("latent_dim", "encoder.fc_mu.weight", 0),
        ],
        ModelKind::Cvae => &[
            ("input_dim", "encoder.fc1.weight", 1),
            ("hidden_dim", "encoder.fc1.weight", 0),
            ("latent_dim", "encoder.fc_mu.weight", 0),
        ],
        ModelKind::Autoencoder => &[
            ("input_dim", "encoder.fc1.weight", 1),
            ("hidden_dim", "encoder.fc1.weight", 0),
            ("latent_dim", "encoder.fc_z.weight", 0),
        ],
        ModelKind::ConvVae | ModelKind::DbVae => &[("latent_dim", "encoder.fc_mu.weight", 0)],
        ModelKind::Gan => &[("latent_dim", "generator.fc1.weight", 1)],
        ModelKind::Dcgan | ModelKind::Cgan => &[("latent_dim", "generator.fc.weight", 1)],
        ModelKind::WganGp => match meta.get("arch").map(String::as_str) {
            Some("mlp") => &[("latent_dim", "generator.fc1.weight", 1)],
            _ => &[("latent_dim", "generator.fc.weight", 1)],
        },
        ModelKind::Classifier => &[],
        ModelKind::Pix2Pix => &[("width", "generator.enc1.weight", 0)],
        ModelKind::CycleGan => &[("width", "g_ab.stem.weight", 0)],
    }
}

/// The largest intermediate tensor of one training step of a `kind` model, in floats per
/// image of the batch: every activation, gradient and im2col matrix grows with the batch,
/// and the largest must fit in one storage binding, so the batch size can be at most
/// `max_binding_bytes / (4 * this)` ([`max_batch_size`]). `meta` gives the sizes
/// (`latent_dim`, `hidden_dim`, `input_dim`; the defaults where absent).
///
/// - MLPs (VAE, autoencoder, DB-VAE, GAN): the widest layer, `max(input, hidden, latent)`;
///   the GAN's widest generator layer has 1,024 units.
/// - Conv VAE and classifier: the im2col matrix of the 32 -> 64 channel convolution at 7 x 7
///   output positions, 49 rows of 32 x 4 x 4 = 512 per image, 25,088 floats (the conv VAE's
///   decoder has its transpose in the backward pass).
/// - Conditional VAE: as the VAE; conditional GAN: as the DCGAN.
/// - DCGAN: the 128 -> 64 channel transposed convolution's column matrix, 49 rows of
///   64 x 4 x 4 = 1,024, 50,176 floats (the discriminator's 64 -> 128 convolution has as many).
///
/// - pix2pix (width w): the 2w -> 4w transposed convolution's column matrix (and the
///   w -> 2w convolution's im2col), 49 rows of 16 w, or the discriminator's first im2col, 196
///   rows of 2 x 4 x 4.
/// - CycleGAN (width w): the last convolution's im2col, 784 rows of w x 3 x 3.
///
/// Measured on lavapipe (128 MiB bindings): a DCGAN step at 668 images runs and at 669 fails;
/// the classifier and the conv VAE at 1,337 and 1,338; the VAE at 42,799 and 42,800; the GAN
/// at 32,768 and 32,769, as these figures predict.
pub fn largest_floats_per_sample(kind: ModelKind, meta: &BTreeMap<String, String>) -> usize {
    let get = |key: &str, default: usize| -> usize {
        meta.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let latent = get("latent_dim", 20);
    match kind {
        ModelKind::Vae | ModelKind::Autoencoder | ModelKind::Cvae => get("input_dim", 784)
            .max(get("hidden_dim", 400))
            .max(latent),
        ModelKind::DbVae => 784.max(latent),
        ModelKind::Gan => 1024.max(latent),
        ModelKind::ConvVae | ModelKind::Classifier => (7 * 7 * 32 * 4 * 4).max(latent),
        // The conditional GAN has the DCGAN's convolutions (its label layers are 6,272 wide).
        ModelKind::Dcgan | ModelKind::Cgan => (7 * 7 * 64 * 4 * 4).max(latent),
        // The conv critic and generator are the DCGAN's; the MLP ones the MLP GAN's.
        ModelKind::WganGp => match meta.get("arch").map(String::as_str) {
            Some("mlp") => 1024.max(latent),
            _ => (7 * 7 * 64 * 4 * 4).max(latent),
        },
        ModelKind::Pix2Pix => (49 * 16 * get("width", 32)).max(196 * 2 * 16),
        ModelKind::CycleGan => 784 * 9 * get("width", 16).max(1),
    }
}

/// The largest training batch of a `kind` model whose largest intermediate
/// ([`largest_floats_per_sample`]) fits in a storage binding of `max_binding_bytes`.
pub fn max_batch_size(
    kind: ModelKind,
    meta: &BTreeMap<String, String>,
    max_binding_bytes: u64,
) -> usize {
    let per_sample = largest_floats_per_sample(kind, meta).max(1) as u64 * 4;
    (max_binding_bytes / per_sample) as usize
}

/// The terms of the negative ELBO. Per-sample tensors have shape (B,); values are nats.
pub struct VaeLoss {
    /// Batch mean of `recon + beta * kl`: the scalar to call `backward()` on.
    pub loss: Tensor,
    /// Per-sample loss `recon + beta * kl` (the negative ELBO when beta = 1).
    pub per_sample: Tensor,
    /// Per-sample reconstruction term: BCE with logits summed over pixels.
    pub recon: Tensor,
    /// Per-sample KL(q(z|x) || N(0, I)).
    pub kl: Tensor,
}

impl VaeLoss {
    /// `recon + beta * kl` per sample and its batch mean.
    pub fn combine(recon: Tensor, kl: Tensor, beta: f32) -> Result<VaeLoss> {
        let per_sample = if beta == 1.0 {
            recon.add(&kl)?
        } else {
            recon.add(&kl.scale(beta)?)?
        };
        let loss = per_sample.mean()?;
        Ok(VaeLoss {
            loss,
            per_sample,
            recon,
            kl,
        })
    }
}

/// A VAE: encoder to (mu, logvar), decoder to Bernoulli logits, negative-ELBO loss.
/// Inputs are `(B, 784)` pixel intensities in [0, 1] whatever the layers inside.
pub trait VariationalModel: Generative {
    /// q(z|x): `x (B, 784)` -> `(mu, logvar)`, each `(B, latent_dim)`.
    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)>;

    /// p(x|z): `z (B, latent_dim)` -> logits `(B, 784)`.
    fn decode(&self, z: &Tensor) -> Result<Tensor>;

    /// The (beta-weighted) negative ELBO of a batch with one reparameterized sample of z per
    /// image: `recon + beta * kl` per sample, and its batch mean (nats). `x (B, 784)` holds
    /// pixel intensities in [0, 1], used as BCE targets; eps comes from the GPU generator.
    fn loss(&self, x: &Tensor, beta: f32) -> Result<VaeLoss> {
        self.loss_with_eps(x, None, beta)
    }

    /// [`VariationalModel::loss`] with the reparameterization noise given: `eps
    /// (B, latent_dim)` from N(0, I), or None to draw it from the GPU generator. Given noise
    /// makes a step reproducible across drivers whose generators differ in the last bits (the
    /// browser test compares one step in the page with the same step natively).
    ///
    /// Errors: shape errors if `eps` is not `(B, latent_dim)`; GPU errors.
    fn loss_with_eps(&self, x: &Tensor, eps: Option<&Tensor>, beta: f32) -> Result<VaeLoss> {
        let (mu, logvar) = self.encode(x)?;
        let drawn;
        let eps = match eps {
            Some(eps) => eps,
            None => {
                drawn = Tensor::randn(x.gpu(), mu.shape().clone())?;
                &drawn
            }
        };
        // z and KL(q(z|x) || N(0, I)) from one fused kernel (same values as
        // `reparameterize` and `kl_divergence`).
        let (z, kl) = crate::ops::reparameterize_kl(&mu, &logvar, eps)?;
        let recon = crate::ops::bce_with_logits(&self.decode(&z)?, x)?;
        VaeLoss::combine(recon, kl, beta)
    }

    /// The most codes `decode` should be given at once by the importance-sampling passes
    /// (`eval::likelihood`), so that no intermediate outgrows an adapter's storage-binding
    /// limit (128 MiB is wgpu's default). A memory budget: per-image weights depend on it only
    /// through rounding (tests/eval.rs checks chunked against whole). The other evaluation
    /// passes use `infer::EVAL_BATCH`, which also fixes the order of their sums.
    fn max_decode_rows(&self) -> usize {
        8192
    }
}

/// A GAN: generator G(z) -> images in [-1, 1] as `(B, 784)`, discriminator D(x) -> logits
/// `(B, 1)`. The two players are the layers named under `generator.` and `discriminator.`.
pub trait Adversarial: Generative + HasLayers {
    /// G: `z (B, noise_dim)` -> `(B, 784)` in [-1, 1] (tanh).
    fn generator(&self, z: &Tensor) -> Result<Tensor>;

    /// D: `x (B, 784)` in [-1, 1] -> real/fake logits `(B, 1)`.
    fn discriminator(&self, x: &Tensor) -> Result<Tensor>;

    /// The generator's parameters, `generator.*` (what the generator's optimizer updates).
    fn generator_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers().parameters_in("generator")
    }

    /// The discriminator's parameters, `discriminator.*`.
    fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers().parameters_in("discriminator")
    }

    /// Train/eval mode of the generator's batch norms alone (eval when sampling).
    fn set_generator_training(&self, training: bool) {
        self.layers().set_training_in("generator", training)
    }
}

/// What every model tells a checkpoint: its kind and hyperparameters (and, through
/// [`Module`], its named parameters and buffers).
pub trait Model: Module {
    /// The model's kind.
    fn kind(&self) -> ModelKind;

    /// Hyperparameters to store in a checkpoint's metadata.
    fn metadata(&self) -> BTreeMap<String, String>;
}

/// A trained model that can generate images from latent codes.
pub trait Generative: Model {
    /// Size of the latent code.
    fn latent_dim(&self) -> usize;

    /// Decodes latent codes `z (n, latent_dim)` into pixel intensities in [0, 1], `(n, input_dim)`.
    fn generate(&self, z: &Tensor) -> Result<Tensor>;

    /// The model as a conditional one (told the digit), if it is one: `deepgen sample
    /// --class`, `deepgen analogies` and the conditional accuracy of `deepgen eval` need it.
    fn as_conditional(&self) -> Option<&dyn Conditional> {
        None
    }

    /// The model as a VAE (encoder with mu and logvar), if it is one.
    fn as_variational(&self) -> Option<&dyn VariationalModel> {
        None
    }

    /// Encodes and decodes images `x (n, input_dim)` in [0, 1]: the reconstruction, `(n, input_dim)`
    /// (for a VAE, decoded from the mean mu).
    ///
    /// Errors: [`Error::Invalid`] for models without an encoder (the GANs).
    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let _ = x;
        Err(Error::Invalid(format!(
            "a {} model has no encoder to reconstruct with",
            self.kind().name()
        )))
    }
}

/// Digit classes of the conditional models (MNIST's 0-9).
pub const NUM_CLASSES: usize = 10;

/// A generative model told which digit to draw: the conditional VAE and the conditional GAN.
/// Its [`Generative::generate`] decodes row i with the label `i mod 10` (a class-balanced
/// mixture).
pub trait Conditional: Generative {
    /// Decodes codes `z (n, latent_dim)` with one-hot labels `y (n, 10)` into pixel intensities
    /// in [0, 1], `(n, 784)`.
    ///
    /// Errors: [`Error::Shape`] for other shapes.
    fn generate_given(&self, z: &Tensor, y: &Tensor) -> Result<Tensor>;

    /// The model as a conditional VAE (which has an encoder q(z|x,y)), if it is one.
    fn as_cvae(&self) -> Option<&Cvae> {
        None
    }
}

/// One-hot rows `(n, 10)` of `labels`, built on the host and uploaded.
///
/// Errors: [`Error::Invalid`] naming the first label that is not a digit 0-9.
pub fn one_hot(gpu: &Gpu, labels: &[u8]) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * NUM_CLASSES];
    for (i, &c) in labels.iter().enumerate() {
        if c as usize >= NUM_CLASSES {
            return Err(Error::Invalid(format!(
                "label {c} at row {i} is not a digit 0-{}",
                NUM_CLASSES - 1
            )));
        }
        v[i * NUM_CLASSES + c as usize] = 1.0;
    }
    Tensor::from_slice(gpu, &v, [labels.len(), NUM_CLASSES])
}

/// The labels 0, 1, ..., 9, 0, 1, ... of `n` rows, one-hot `(n, 10)`: what a conditional model's
/// [`Generative::generate`] decodes with.
///
/// Errors: upload errors.
pub fn cycling_one_hot(gpu: &Gpu, n: usize) -> Result<Tensor> {
    let labels: Vec<u8> = (0..n).map(|i| (i % NUM_CLASSES) as u8).collect();
    one_hot(gpu, &labels)
}

/// Builds an untrained generative model of `kind` from checkpoint-style metadata
/// (the seed only matters until a checkpoint is loaded into it).
///
/// Errors: [`Error::Checkpoint`] naming `origin` if the metadata lacks a value, or if
/// `kind` is the classifier, which does not generate.
pub fn build(
    gpu: &Gpu,
    kind: ModelKind,
    meta: &BTreeMap<String, String>,
    origin: &std::path::Path,
    seed: u64,
) -> Result<Box<dyn Generative>> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let latent = || -> Result<usize> {
        meta.get("latent_dim")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Checkpoint {
                path: origin.to_path_buf(),
                reason: "metadata has no valid `latent_dim`".into(),
            })
    };
    Ok(match kind {
        ModelKind::Vae => Box::new(Vae::new(
            gpu,
            MlpConfig::from_metadata(meta, origin)?,
            &mut rng,
        )?),
        ModelKind::Autoencoder => Box::new(Autoencoder::new(
            gpu,
            MlpConfig::from_metadata(meta, origin)?,
            &mut rng,
        )?),
        ModelKind::ConvVae => Box::new(ConvVae::new(gpu, latent()?, &mut rng)?),
        ModelKind::Gan => Box::new(MlpGan::new(gpu, latent()?, &mut rng)?),
        ModelKind::Dcgan => Box::new(Dcgan::new(gpu, latent()?, &mut rng)?),
        ModelKind::Cvae => Box::new(Cvae::new(
            gpu,
            MlpConfig::from_metadata(meta, origin)?,
            &mut rng,
        )?),
        ModelKind::Cgan => Box::new(Cgan::new(gpu, latent()?, &mut rng)?),
        ModelKind::WganGp => Box::new(WganGp::new(
            gpu,
            wgan_gp::arch_from_metadata(meta, origin)?,
            latent()?,
            &mut rng,
        )?),
        ModelKind::Pix2Pix | ModelKind::CycleGan => {
            return Err(Error::Checkpoint {
                path: origin.to_path_buf(),
                reason: format!(
                    "this is a `{}` checkpoint: an image-to-image translation model, which \
                     translates images instead of sampling them; use `deepgen translate`",
                    kind.name()
                ),
            });
        }
        ModelKind::Classifier | ModelKind::DbVae => {
            return Err(Error::Checkpoint {
                path: origin.to_path_buf(),
                reason: format!(
                    "this is a `{}` checkpoint: a classifier, which cannot generate samples",
                    kind.name()
                ),
            });
        }
    })
}
