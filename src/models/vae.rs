//! The MLP variational autoencoder of Kingma & Welling 2014 (sec. 3 and appendix C.2):
//! encoder 784 -> 400 (ReLU) -> (mu, logvar) of size latent_dim;
//! decoder latent_dim -> 400 (ReLU) -> 784 Bernoulli logits.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Generative, MlpConfig, Model, ModelKind, VariationalModel};
use crate::nn::{Builder, HasLayers, Layers, Linear};
use crate::ops::Activation;
use crate::tensor::Tensor;

/// Encoder q(z|x) and decoder p(x|z).
pub struct Vae {
    /// Sizes.
    pub config: MlpConfig,
    /// input -> hidden
    pub enc_fc1: Linear,
    /// hidden -> mu
    pub fc_mu: Linear,
    /// hidden -> logvar
    pub fc_logvar: Linear,
    /// latent -> hidden
    pub dec_fc1: Linear,
    /// hidden -> input logits
    pub dec_fc2: Linear,
    layers: Layers,
}

impl Vae {
    /// A VAE with PyTorch-default initialisation from `rng`.
    pub fn new(gpu: &Gpu, config: MlpConfig, rng: &mut impl Rng) -> Result<Vae> {
        let MlpConfig {
            input_dim,
            hidden_dim,
            latent_dim,
        } = config;
        let mut b = Builder::new(gpu, rng);
        Ok(Vae {
            config,
            enc_fc1: b.linear("encoder.fc1", input_dim, hidden_dim)?,
            fc_mu: b.linear("encoder.fc_mu", hidden_dim, latent_dim)?,
            fc_logvar: b.linear("encoder.fc_logvar", hidden_dim, latent_dim)?,
            dec_fc1: b.linear("decoder.fc1", latent_dim, hidden_dim)?,
            dec_fc2: b.linear("decoder.fc2", hidden_dim, input_dim)?,
            layers: b.finish(),
        })
    }

    /// q(z|x): `x (B, input_dim)` -> `(mu, logvar)`, each `(B, latent_dim)`.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.enc_fc1.forward_act(x, Activation::Relu)?;
        Ok((self.fc_mu.forward(&h)?, self.fc_logvar.forward(&h)?))
    }

    /// p(x|z): `z (B, latent_dim)` -> logits `(B, input_dim)`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.dec_fc2
            .forward(&self.dec_fc1.forward_act(z, Activation::Relu)?)
    }
}

impl VariationalModel for Vae {
    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Vae::encode(self, x)
    }

    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Vae::decode(self, z)
    }
}

impl HasLayers for Vae {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Vae {
    fn kind(&self) -> ModelKind {
        ModelKind::Vae
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.config.to_metadata()
    }
}

impl Generative for Vae {
    fn as_variational(&self) -> Option<&dyn VariationalModel> {
        Some(self)
    }

    fn latent_dim(&self) -> usize {
        self.config.latent_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z)?.sigmoid()
    }

    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let (mu, _) = self.encode(x)?;
        self.generate(&mu)
    }
}
