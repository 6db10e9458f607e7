//! The conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using
//! Deep Conditional Generative Models", sec. 4; the generative model of Kingma, Rezende,
//! Mohamed & Welling 2014, "Semi-supervised Learning with Deep Generative Models", M2, with the
//! label always observed): encoder q(z | x, y), decoder p(x | z, y), y the digit's one-hot
//! label, the MLP VAE's sizes otherwise:
//!
//! - encoder: `h = relu(W_x x + W_y y + b)` (784 + 10 -> 400), then mu and logvar (400 -> latent);
//! - decoder: `h = relu(W_z z + W_y' y + b')` (latent + 10 -> 400), then 784 Bernoulli logits.
//!
//! The label enters the first layer of each network. Feeding the concatenation `[x; y]` to a
//! linear layer is `W [x; y] + b = W_x x + W_y y + b` with `W = [W_x W_y]` split by columns, so
//! the layer is two linear products summed and no concatenation op is needed: `fc1` holds `W_x`
//! and a bias, `fc1_label` holds `W_y` and a second bias (the sum of the two biases is the `b`
//! of the concatenated layer; one redundant vector of 400, kept so both are ordinary
//! [`Linear`] layers). Since y is one-hot, `W_y y` is the column of `W_y` of the digit: a
//! learned per-class offset of the first layer's pre-activations.
//!
//! The loss is the negative ELBO of x given y (Sohn et al. 2015, eq. 4):
//! `-log p(x|y) <= E_q(z|x,y)[-log p(x|z,y)] + KL(q(z|x,y) || N(0, I))`, the prior p(z|y) taken
//! as N(0, I) (independent of y, as in M2), so sampling a digit c is z ~ N(0, I), decode with
//! y = c.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{
    Conditional, Generative, MlpConfig, Model, ModelKind, NUM_CLASSES, VaeLoss, cycling_one_hot,
};
use crate::nn::{Builder, HasLayers, Layers, Linear};
use crate::tensor::Tensor;

/// Encoder q(z|x,y) and decoder p(x|z,y).
pub struct Cvae {
    /// Sizes (input 784, hidden 400, latent).
    pub config: MlpConfig,
    enc_fc1: Linear,
    enc_fc1_label: Linear,
    fc_mu: Linear,
    fc_logvar: Linear,
    dec_fc1: Linear,
    dec_fc1_label: Linear,
    dec_fc2: Linear,
    layers: Layers,
}

/// `relu(first(a) + label(y))`: the first layer of a network fed `[a; y]` (see the module
/// documentation for the identity).
fn first_layer(first: &Linear, label: &Linear, a: &Tensor, y: &Tensor) -> Result<Tensor> {
    first.forward(a)?.add(&label.forward(y)?)?.relu()
}

impl Cvae {
    /// A conditional VAE with PyTorch-default initialisation from `rng`.
    ///
    /// Errors: upload errors.
    pub fn new(gpu: &Gpu, config: MlpConfig, rng: &mut impl Rng) -> Result<Cvae> {
        let MlpConfig {
            input_dim,
            hidden_dim,
            latent_dim,
        } = config;
        let mut b = Builder::new(gpu, rng);
        Ok(Cvae {
            config,
            enc_fc1: b.linear("encoder.fc1", input_dim, hidden_dim)?,
            enc_fc1_label: b.linear("encoder.fc1_label", NUM_CLASSES, hidden_dim)?,
            fc_mu: b.linear("encoder.fc_mu", hidden_dim, latent_dim)?,
            fc_logvar: b.linear("encoder.fc_logvar", hidden_dim, latent_dim)?,
            dec_fc1: b.linear("decoder.fc1", latent_dim, hidden_dim)?,
            dec_fc1_label: b.linear("decoder.fc1_label", NUM_CLASSES, hidden_dim)?,
            dec_fc2: b.linear("decoder.fc2", hidden_dim, input_dim)?,
            layers: b.finish(),
        })
    }

    /// q(z|x,y): `x (B, 784)` in [0, 1] and one-hot `y (B, 10)` -> `(mu, logvar)`, each
    /// `(B, latent_dim)`.
    ///
    /// Errors: [`crate::Error::Shape`] for other shapes.
    pub fn encode(&self, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = first_layer(&self.enc_fc1, &self.enc_fc1_label, x, y)?;
        Ok((self.fc_mu.forward(&h)?, self.fc_logvar.forward(&h)?))
    }

    /// p(x|z,y): `z (B, latent_dim)` and one-hot `y (B, 10)` -> Bernoulli logits `(B, 784)`.
    ///
    /// Errors: [`crate::Error::Shape`] for other shapes.
    pub fn decode(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        let h = first_layer(&self.dec_fc1, &self.dec_fc1_label, z, y)?;
        self.dec_fc2.forward(&h)
    }

    /// The (beta-weighted) negative ELBO of `x (B, 784)` given its labels `y (B, 10)`, one
    /// reparameterized z per image (eps from the GPU generator): per sample
    /// `BCE(decode(z, y), x) + beta KL(q(z|x,y) || N(0, I))`, nats, and its batch mean.
    ///
    /// Errors: shape and GPU errors.
    pub fn loss(&self, x: &Tensor, y: &Tensor, beta: f32) -> Result<VaeLoss> {
        let (mu, logvar) = self.encode(x, y)?;
        let eps = Tensor::randn(x.gpu(), mu.shape().clone())?;
        let (z, kl) = crate::ops::reparameterize_kl(&mu, &logvar, &eps)?;
        let recon = crate::ops::bce_with_logits(&self.decode(&z, y)?, x)?;
        VaeLoss::combine(recon, kl, beta)
    }
}

impl HasLayers for Cvae {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Cvae {
    fn kind(&self) -> ModelKind {
        ModelKind::Cvae
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.config.to_metadata();
        m.insert("classes".into(), NUM_CLASSES.to_string());
        m
    }
}

impl Generative for Cvae {
    fn latent_dim(&self) -> usize {
        self.config.latent_dim
    }

    /// Decodes `z (n, latent_dim)` with the labels 0, 1, ..., 9, 0, 1, ... by row (a
    /// class-balanced mixture: what `deepgen eval`'s Frechet distance measures).
    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        let y = cycling_one_hot(z.gpu(), z.dims()[0])?;
        self.generate_given(z, &y)
    }

    fn as_conditional(&self) -> Option<&dyn Conditional> {
        Some(self)
    }
}

impl Conditional for Cvae {
    fn generate_given(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.decode(z, y)?.sigmoid()
    }

    fn as_cvae(&self) -> Option<&Cvae> {
        Some(self)
    }
}
