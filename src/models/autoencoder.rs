//! The lecture's first model: a deterministic autoencoder with a low-dimensional
//! bottleneck, trained on reconstruction loss alone. Same sizes as the VAE:
//! encoder 784 -> 400 (ReLU) -> z (latent_dim); decoder latent_dim -> 400 (ReLU) -> 784 logits.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Generative, MlpConfig, ModelKind};
use crate::nn::{Linear, Module, prefixed};
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
}

impl Autoencoder {
    /// An autoencoder with PyTorch-default initialisation from `rng`.
    pub fn new(gpu: &Gpu, config: MlpConfig, rng: &mut impl Rng) -> Result<Autoencoder> {
        let MlpConfig {
            input_dim,
            hidden_dim,
            latent_dim,
        } = config;
        Ok(Autoencoder {
            config,
            enc_fc1: Linear::new(gpu, input_dim, hidden_dim, rng)?,
            fc_z: Linear::new(gpu, hidden_dim, latent_dim, rng)?,
            dec_fc1: Linear::new(gpu, latent_dim, hidden_dim, rng)?,
            dec_fc2: Linear::new(gpu, hidden_dim, input_dim, rng)?,
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

impl Module for Autoencoder {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("encoder.fc1", &self.enc_fc1);
        p.extend(prefixed("encoder.fc_z", &self.fc_z));
        p.extend(prefixed("decoder.fc1", &self.dec_fc1));
        p.extend(prefixed("decoder.fc2", &self.dec_fc2));
        p
    }
}

impl Generative for Autoencoder {
    fn kind(&self) -> ModelKind {
        ModelKind::Autoencoder
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.config.to_metadata()
    }

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
