//! A convolutional VAE for 28x28 images: the MLP VAE's loss with conv layers.
//!
//! Encoder: conv(1 -> 32, k4 s2 p1) ReLU [32x14x14] -> conv(32 -> 64, k4 s2 p1) ReLU [64x7x7]
//! -> flatten -> linear 3136 -> 256 ReLU -> (mu, logvar) of latent_dim.
//! Decoder: linear latent_dim -> 256 ReLU -> linear 256 -> 3136 ReLU -> 64x7x7 ->
//! conv_transpose(64 -> 32, k4 s2 p1) ReLU [32x14x14] -> conv_transpose(32 -> 1, k4 s2 p1)
//! -> 784 Bernoulli logits.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Generative, Model, ModelKind, VariationalModel};
use crate::nn::{Builder, Conv2d, ConvTranspose2d, HasLayers, Layers, Linear, flatten};
use crate::ops::Activation;
use crate::ops::Conv2dOptions;
use crate::tensor::Tensor;

/// Width of the fully connected layer between the convolutions and the code.
const HIDDEN: usize = 256;

/// Convolutional encoder q(z|x) and transposed-convolution decoder p(x|z).
pub struct ConvVae {
    /// Size of z.
    pub latent_dim: usize,
    enc_conv1: Conv2d,
    enc_conv2: Conv2d,
    enc_fc: Linear,
    fc_mu: Linear,
    fc_logvar: Linear,
    dec_fc1: Linear,
    dec_fc2: Linear,
    dec_deconv1: ConvTranspose2d,
    dec_deconv2: ConvTranspose2d,
    layers: Layers,
}

impl ConvVae {
    /// A conv VAE with PyTorch-default initialisation.
    pub fn new(gpu: &Gpu, latent_dim: usize, rng: &mut impl Rng) -> Result<ConvVae> {
        let down = Conv2dOptions::new(2, 1);
        let mut b = Builder::new(gpu, rng);
        Ok(ConvVae {
            latent_dim,
            enc_conv1: b.conv2d("encoder.conv1", 1, 32, 4, down, true)?,
            enc_conv2: b.conv2d("encoder.conv2", 32, 64, 4, down, true)?,
            enc_fc: b.linear("encoder.fc", 64 * 7 * 7, HIDDEN)?,
            fc_mu: b.linear("encoder.fc_mu", HIDDEN, latent_dim)?,
            fc_logvar: b.linear("encoder.fc_logvar", HIDDEN, latent_dim)?,
            dec_fc1: b.linear("decoder.fc1", latent_dim, HIDDEN)?,
            dec_fc2: b.linear("decoder.fc2", HIDDEN, 64 * 7 * 7)?,
            dec_deconv1: b.conv_transpose2d("decoder.deconv1", 64, 32, 4, down, true)?,
            dec_deconv2: b.conv_transpose2d("decoder.deconv2", 32, 1, 4, down, true)?,
            layers: b.finish(),
        })
    }

    /// q(z|x): `x (B, 784)` -> `(mu, logvar)`, each `(B, latent_dim)`.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let b = x.dims()[0];
        let h = self
            .enc_conv1
            .forward(&x.reshape([b, 1, 28, 28])?)?
            .relu()?;
        let h = self.enc_conv2.forward(&h)?.relu()?;
        let h = self.enc_fc.forward_act(&flatten(&h)?, Activation::Relu)?;
        Ok((self.fc_mu.forward(&h)?, self.fc_logvar.forward(&h)?))
    }

    /// p(x|z): `z (B, latent_dim)` -> logits `(B, 784)`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dims()[0];
        let h = self.dec_fc1.forward_act(z, Activation::Relu)?;
        let h = self
            .dec_fc2
            .forward_act(&h, Activation::Relu)?
            .reshape([b, 64, 7, 7])?;
        let h = self.dec_deconv1.forward(&h)?.relu()?;
        self.dec_deconv2.forward(&h)?.reshape([b, 784])
    }
}

impl VariationalModel for ConvVae {
    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        ConvVae::encode(self, x)
    }

    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        ConvVae::decode(self, z)
    }

    /// 512: the first transposed convolution's column matrix is 25,088 floats per code
    /// (49 positions x 32 channels x 16 taps), 51 MB for 512 codes.
    fn max_decode_rows(&self) -> usize {
        512
    }
}

impl HasLayers for ConvVae {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for ConvVae {
    fn kind(&self) -> ModelKind {
        ModelKind::ConvVae
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("latent_dim".to_string(), self.latent_dim.to_string()),
            ("input_dim".to_string(), "784".to_string()),
        ])
    }
}

impl Generative for ConvVae {
    fn as_variational(&self) -> Option<&dyn VariationalModel> {
        Some(self)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z)?.sigmoid()
    }

    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let (mu, _) = self.encode(x)?;
        self.generate(&mu)
    }
}
