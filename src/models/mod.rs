//! Models built from `nn/`: the lecture's autoencoder and variational autoencoder.
//!
//! Each model can describe itself as checkpoint metadata (its kind and
//! hyperparameters) and be rebuilt from it, so `deepgen sample --checkpoint F`
//! needs nothing but the file.

mod autoencoder;
mod vae;

pub use autoencoder::Autoencoder;
pub use vae::{Vae, VaeLoss, VaeOutput};

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::Module;
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

/// The kinds of model deepgen trains; the name is the `model` entry of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Variational autoencoder (`vae`).
    Vae,
    /// Plain autoencoder (`ae`).
    Autoencoder,
}

impl ModelKind {
    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Vae => "vae",
            ModelKind::Autoencoder => "ae",
        }
    }

    /// Parses a checkpoint's `model` entry.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        match name {
            "vae" => Some(ModelKind::Vae),
            "ae" => Some(ModelKind::Autoencoder),
            _ => None,
        }
    }
}

/// A trained model that can generate images from latent codes.
pub trait Generative: Module {
    /// The model's kind.
    fn kind(&self) -> ModelKind;

    /// Hyperparameters to store in a checkpoint's metadata.
    fn metadata(&self) -> BTreeMap<String, String>;

    /// Size of the latent code.
    fn latent_dim(&self) -> usize;

    /// Decodes latent codes `z (n, latent_dim)` into pixel intensities in [0, 1], `(n, input_dim)`.
    fn generate(&self, z: &Tensor) -> Result<Tensor>;

    /// Encodes and decodes images `x (n, input_dim)` in [0, 1]: the reconstruction, `(n, input_dim)`
    /// (for a VAE, decoded from the mean mu).
    fn reconstruct(&self, x: &Tensor) -> Result<Tensor>;
}

/// Builds an untrained model of `kind` with `config` (the seed only matters until
/// a checkpoint is loaded into it).
pub fn build(
    gpu: &Gpu,
    kind: ModelKind,
    config: MlpConfig,
    seed: u64,
) -> Result<Box<dyn Generative>> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok(match kind {
        ModelKind::Vae => Box::new(Vae::new(gpu, config, &mut rng)?),
        ModelKind::Autoencoder => Box::new(Autoencoder::new(gpu, config, &mut rng)?),
    })
}
