//! The debiasing VAE of Amini et al. 2019, "Uncovering and Mitigating Algorithmic Bias
//! through Learned Latent Structure" (AIES), sec. 3: a classifier whose encoder is also
//! the encoder of a VAE. One shared hidden layer feeds three heads: the class logit, and
//! the mean and log-variance of q(z|x); a decoder maps z back to the image.
//!
//! Encoder 784 -> 400 (ReLU) -> {class logit (1), mu (latent_dim), logvar (latent_dim)};
//! decoder latent_dim -> 400 (ReLU) -> 784 logits. With the VAE loss switched off it is the
//! plain classifier of the comparison: the same architecture and parameters.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Model, ModelKind};
use crate::nn::{Builder, HasLayers, Layers, Linear};
use crate::ops::Activation;
use crate::tensor::Tensor;

/// Classifier and VAE sharing an encoder.
pub struct DbVae {
    /// Size of z.
    pub latent_dim: usize,
    enc_fc1: Linear,
    fc_class: Linear,
    fc_mu: Linear,
    fc_logvar: Linear,
    dec_fc1: Linear,
    dec_fc2: Linear,
    layers: Layers,
}

/// The encoder's three outputs for a batch.
pub struct DbVaeOutput {
    /// Class logits (B, 1): > 0 predicts the positive class.
    pub logit: Tensor,
    /// Mean of q(z|x), (B, latent_dim).
    pub mu: Tensor,
    /// Log-variance of q(z|x), (B, latent_dim).
    pub logvar: Tensor,
}

impl DbVae {
    /// A DB-VAE with PyTorch-default initialisation.
    pub fn new(gpu: &Gpu, latent_dim: usize, rng: &mut impl Rng) -> Result<DbVae> {
        let mut b = Builder::new(gpu, rng);
        Ok(DbVae {
            latent_dim,
            enc_fc1: b.linear("encoder.fc1", 784, 400)?,
            fc_class: b.linear("encoder.fc_class", 400, 1)?,
            fc_mu: b.linear("encoder.fc_mu", 400, latent_dim)?,
            fc_logvar: b.linear("encoder.fc_logvar", 400, latent_dim)?,
            dec_fc1: b.linear("decoder.fc1", latent_dim, 400)?,
            dec_fc2: b.linear("decoder.fc2", 400, 784)?,
            layers: b.finish(),
        })
    }

    /// The encoder: `x (B, 784)` -> class logit and q(z|x).
    pub fn encode(&self, x: &Tensor) -> Result<DbVaeOutput> {
        let h = self.enc_fc1.forward_act(x, Activation::Relu)?;
        Ok(DbVaeOutput {
            logit: self.fc_class.forward(&h)?,
            mu: self.fc_mu.forward(&h)?,
            logvar: self.fc_logvar.forward(&h)?,
        })
    }

    /// Only the class logits `(B, 1)` (what the plain classifier computes).
    pub fn classify(&self, x: &Tensor) -> Result<Tensor> {
        self.fc_class
            .forward(&self.enc_fc1.forward_act(x, Activation::Relu)?)
    }

    /// The decoder: `z (B, latent_dim)` -> logits `(B, 784)`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.dec_fc2
            .forward(&self.dec_fc1.forward_act(z, Activation::Relu)?)
    }
}

impl HasLayers for DbVae {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for DbVae {
    fn kind(&self) -> ModelKind {
        ModelKind::DbVae
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("latent_dim".to_string(), self.latent_dim.to_string())])
    }
}
