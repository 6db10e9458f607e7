//! The lecture's first model: a deterministic autoencoder with a low-dimensional
//! bottleneck, trained on reconstruction loss alone. Same sizes as the VAE:
//! encoder 784 -> 400 (ReLU) -> z (latent_dim); decoder latent_dim -> 400 (ReLU) -> 784 logits.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Generative, MlpConfig, Model, ModelKind};
use crate::nn::{Builder, HasLayers, Layers, Linear};
use crate::ops::Activation;
use crate::ops::bce_with_logits;
use crate::tensor::Tensor;

/// Encoder x -> z and decoder z -> x'.
pub struct Autoencoder {
    /// Sizes.
    pub config: MlpConfig,
    /// input -> hidden
    pub enc_fc1: Linear,
    /// hidden -> z
    pub fc_z: Linear,
    /// latent -> hidden
    pub dec_fc1: Linear,
    /// hidden -> input logits
    pub dec_fc2: Linear,
    layers: Layers,
}

impl Autoencoder {
    /// An autoencoder with PyTorch-default initialisation from `rng`.
    pub fn new(gpu: &Gpu, config: MlpConfig, rng: &mut impl Rng) -> Result<Autoencoder> {
        let MlpConfig {
            input_dim,
            hidden_dim,
            latent_dim,
        } = config;
        let mut b = Builder::new(gpu, rng);
        Ok(Autoencoder {
            config,
            enc_fc1: b.linear("encoder.fc1", input_dim, hidden_dim)?,
            fc_z: b.linear("encoder.fc_z", hidden_dim, latent_dim)?,
            dec_fc1: b.linear("decoder.fc1", latent_dim, hidden_dim)?,
            dec_fc2: b.linear("decoder.fc2", hidden_dim, input_dim)?,
            layers: b.finish(),
        })
    }

    /// `x (B, input_dim)` -> `z (B, latent_dim)`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.fc_z
            .forward(&self.enc_fc1.forward_act(x, Activation::Relu)?)
    }

    /// `z (B, latent_dim)` -> logits `(B, input_dim)`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.dec_fc2
            .forward(&self.dec_fc1.forward_act(z, Activation::Relu)?)
    }

    /// Per-sample reconstruction loss (BCE with logits summed over pixels, nats), shape (B,).
    pub fn loss(&self, x: &Tensor) -> Result<Tensor> {
        bce_with_logits(&self.decode(&self.encode(x)?)?, x)
    }
}

impl HasLayers for Autoencoder {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Autoencoder {
    fn kind(&self) -> ModelKind {
        ModelKind::Autoencoder
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.config.to_metadata()
    }
}

impl Generative for Autoencoder {
    fn latent_dim(&self) -> usize {
        self.config.latent_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z)?.sigmoid()
    }

    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.generate(&self.encode(x)?)
    }
}
