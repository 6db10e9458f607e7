//! DCGAN for 28x28 images (Radford et al. 2016, "Unsupervised Representation Learning with
//! Deep Convolutional Generative Adversarial Networks", sec. 3-4), scaled to [-1, 1]:
//! generator z -> linear -> 128x7x7 (batch norm over the 128 channels, ReLU) -> conv_transpose(128 -> 64, k4 s2 p1)
//! -> 64x14x14 (batch norm, ReLU) -> conv_transpose(64 -> 1, k4 s2 p1) -> 1x28x28 tanh;
//! discriminator conv(1 -> 64, k4 s2 p1) leaky_relu 0.2 -> conv(64 -> 128, k4 s2 p1) batch norm
//! leaky_relu 0.2 -> flatten -> linear 6272 -> 1 logit. Weights from N(0, 0.02) (sec. 4),
//! batch-norm scales from N(1, 0.02).

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Adversarial, Generative, Model, ModelKind};
use crate::nn::{
    BatchNorm2d, Builder, Conv2d, ConvTranspose2d, HasLayers, Init, Layers, Linear, flatten,
};
use crate::ops::Conv2dOptions;
use crate::tensor::Tensor;

const SLOPE: f32 = 0.2;

/// Generator and discriminator of the DCGAN.
pub struct Dcgan {
    /// Size of the noise vector z.
    pub noise_dim: usize,
    g_fc: Linear,
    g_bn0: BatchNorm2d,
    g_deconv1: ConvTranspose2d,
    g_bn1: BatchNorm2d,
    g_deconv2: ConvTranspose2d,
    d_conv1: Conv2d,
    d_conv2: Conv2d,
    d_bn2: BatchNorm2d,
    d_fc: Linear,
    layers: Layers,
}

impl Dcgan {
    /// A DCGAN with the paper's N(0, 0.02) initialisation.
    pub fn new(gpu: &Gpu, noise_dim: usize, rng: &mut impl Rng) -> Result<Dcgan> {
        let up = Conv2dOptions::new(2, 1);
        // Batch norm scales from N(1, 0.02) under the DCGAN init, as in the reference code.
        let mut b = Builder::new(gpu, rng).with_init(Init::Dcgan);
        Ok(Dcgan {
            noise_dim,
            g_fc: b.linear("generator.fc", noise_dim, 128 * 7 * 7)?,
            g_bn0: b.batch_norm("generator.bn0", 128)?,
            // No bias before a batch norm: it would be cancelled by the mean subtraction.
            g_deconv1: b.conv_transpose2d("generator.deconv1", 128, 64, 4, up, false)?,
            g_bn1: b.batch_norm("generator.bn1", 64)?,
            g_deconv2: b.conv_transpose2d("generator.deconv2", 64, 1, 4, up, true)?,
            d_conv1: b.conv2d("discriminator.conv1", 1, 64, 4, up, true)?,
            d_conv2: b.conv2d("discriminator.conv2", 64, 128, 4, up, false)?,
            d_bn2: b.batch_norm("discriminator.bn2", 128)?,
            d_fc: b.linear("discriminator.fc", 128 * 7 * 7, 1)?,
            layers: b.finish(),
        })
    }
}

impl Adversarial for Dcgan {
    fn generator(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dims()[0];
        let h = self.g_fc.forward(z)?.reshape([b, 128, 7, 7])?;
        let h = self.g_bn0.forward(&h)?.relu()?;
        let h = self.g_bn1.forward(&self.g_deconv1.forward(&h)?)?.relu()?;
        self.g_deconv2.forward(&h)?.tanh()?.reshape([b, 784])
    }

    fn discriminator(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dims()[0];
        let h = self
            .d_conv1
            .forward(&x.reshape([b, 1, 28, 28])?)?
            .leaky_relu(SLOPE)?;
        let h = self
            .d_bn2
            .forward(&self.d_conv2.forward(&h)?)?
            .leaky_relu(SLOPE)?;
        self.d_fc.forward(&flatten(&h)?)
    }
}

impl HasLayers for Dcgan {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Dcgan {
    fn kind(&self) -> ModelKind {
        ModelKind::Dcgan
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("latent_dim".to_string(), self.noise_dim.to_string()),
            ("input_dim".to_string(), "784".to_string()),
        ])
    }
}

impl Generative for Dcgan {
    fn latent_dim(&self) -> usize {
        self.noise_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.generator(z)?.affine(0.5, 0.5)
    }
}
