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
use crate::models::{Adversarial, Generative, ModelKind};
use crate::nn::{
    BatchNorm2d, Conv2d, ConvTranspose2d, Init, Linear, Module, flatten, init, prefixed,
    prefixed_buffers,
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
}

/// A batch norm layer whose scale starts from N(1, 0.02), as in the DCGAN reference code.
fn dcgan_bn(gpu: &Gpu, channels: usize, rng: &mut impl Rng) -> Result<BatchNorm2d> {
    let mut bn = BatchNorm2d::new(gpu, channels)?;
    bn.weight = init::normal(gpu, [channels], 1.0, 0.02, rng)?;
    Ok(bn)
}

impl Dcgan {
    /// A DCGAN with the paper's N(0, 0.02) initialisation.
    pub fn new(gpu: &Gpu, noise_dim: usize, rng: &mut impl Rng) -> Result<Dcgan> {
        let up = Conv2dOptions::new(2, 1);
        let init = Init::Dcgan;
        Ok(Dcgan {
            noise_dim,
            g_fc: Linear::with_init(gpu, noise_dim, 128 * 7 * 7, init, rng)?,
            // No bias before a batch norm: it would be cancelled by the mean subtraction.
            g_bn0: dcgan_bn(gpu, 128, rng)?,
            // No bias before a batch norm: it would be cancelled by the mean subtraction.
            g_deconv1: ConvTranspose2d::new(gpu, 128, 64, 4, up, 0, false, init, rng)?,
            g_bn1: dcgan_bn(gpu, 64, rng)?,
            g_deconv2: ConvTranspose2d::new(gpu, 64, 1, 4, up, 0, true, init, rng)?,
            d_conv1: Conv2d::new(gpu, 1, 64, 4, up, true, init, rng)?,
            d_conv2: Conv2d::new(gpu, 64, 128, 4, up, false, init, rng)?,
            d_bn2: dcgan_bn(gpu, 128, rng)?,
            d_fc: Linear::with_init(gpu, 128 * 7 * 7, 1, init, rng)?,
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

    fn generator_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("generator.fc", &self.g_fc);
        p.extend(prefixed("generator.bn0", &self.g_bn0));
        p.extend(prefixed("generator.deconv1", &self.g_deconv1));
        p.extend(prefixed("generator.bn1", &self.g_bn1));
        p.extend(prefixed("generator.deconv2", &self.g_deconv2));
        p
    }

    fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("discriminator.conv1", &self.d_conv1);
        p.extend(prefixed("discriminator.conv2", &self.d_conv2));
        p.extend(prefixed("discriminator.bn2", &self.d_bn2));
        p.extend(prefixed("discriminator.fc", &self.d_fc));
        p
    }

    fn set_generator_training(&self, training: bool) {
        self.g_bn0.set_training(training);
        self.g_bn1.set_training(training);
    }
}

impl Module for Dcgan {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.generator_parameters();
        p.extend(self.discriminator_parameters());
        p
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut b = prefixed_buffers("generator.bn0", &self.g_bn0);
        b.extend(prefixed_buffers("generator.bn1", &self.g_bn1));
        b.extend(prefixed_buffers("discriminator.bn2", &self.d_bn2));
        b
    }

    fn set_training(&self, training: bool) {
        self.set_generator_training(training);
        self.d_bn2.set_training(training);
    }
}

impl Generative for Dcgan {
    fn kind(&self) -> ModelKind {
        ModelKind::Dcgan
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("latent_dim".to_string(), self.noise_dim.to_string()),
            ("input_dim".to_string(), "784".to_string()),
        ])
    }

    fn latent_dim(&self) -> usize {
        self.noise_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.generator(z)?.affine(0.5, 0.5)
    }
}
