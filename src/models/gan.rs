//! The MLP GAN of the lecture (Goodfellow et al. 2014, "Generative Adversarial Nets"),
//! for 28x28 images scaled to [-1, 1]:
//! generator z(noise_dim) -> 256 -> 512 -> 1024 -> 784 tanh (leaky_relu 0.2 between,
//! batch norm on the 512 and 1024 layers, as the common PyTorch implementations do);
//! discriminator 784 -> 512 -> 256 -> 1 logit with leaky_relu 0.2.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Adversarial, Generative, ModelKind};
use crate::nn::{BatchNorm1d, Linear, Module, prefixed, prefixed_buffers};
use crate::ops::Activation;
use crate::tensor::Tensor;

/// Slope of leaky_relu on negative inputs.
const SLOPE: f32 = 0.2;

/// Generator G(z) and discriminator D(x) of the MLP GAN.
pub struct MlpGan {
    /// Size of the noise vector z.
    pub noise_dim: usize,
    g_fc1: Linear,
    g_fc2: Linear,
    g_bn2: BatchNorm1d,
    g_fc3: Linear,
    g_bn3: BatchNorm1d,
    g_fc4: Linear,
    d_fc1: Linear,
    d_fc2: Linear,
    d_fc3: Linear,
}

impl MlpGan {
    /// A GAN with PyTorch-default initialisation.
    pub fn new(gpu: &Gpu, noise_dim: usize, rng: &mut impl Rng) -> Result<MlpGan> {
        Ok(MlpGan {
            noise_dim,
            g_fc1: Linear::new(gpu, noise_dim, 256, rng)?,
            g_fc2: Linear::new(gpu, 256, 512, rng)?,
            g_bn2: BatchNorm1d::new(gpu, 512)?,
            g_fc3: Linear::new(gpu, 512, 1024, rng)?,
            g_bn3: BatchNorm1d::new(gpu, 1024)?,
            g_fc4: Linear::new(gpu, 1024, 784, rng)?,
            d_fc1: Linear::new(gpu, 784, 512, rng)?,
            d_fc2: Linear::new(gpu, 512, 256, rng)?,
            d_fc3: Linear::new(gpu, 256, 1, rng)?,
        })
    }
}

impl Adversarial for MlpGan {
    fn generator(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.g_fc1.forward_act(z, Activation::LeakyRelu(SLOPE))?;
        let h = self
            .g_bn2
            .forward(&self.g_fc2.forward(&h)?)?
            .leaky_relu(SLOPE)?;
        let h = self
            .g_bn3
            .forward(&self.g_fc3.forward(&h)?)?
            .leaky_relu(SLOPE)?;
        self.g_fc4.forward(&h)?.tanh()
    }

    fn discriminator(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.d_fc1.forward_act(x, Activation::LeakyRelu(SLOPE))?;
        let h = self.d_fc2.forward_act(&h, Activation::LeakyRelu(SLOPE))?;
        self.d_fc3.forward(&h)
    }

    fn generator_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("generator.fc1", &self.g_fc1);
        p.extend(prefixed("generator.fc2", &self.g_fc2));
        p.extend(prefixed("generator.bn2", &self.g_bn2));
        p.extend(prefixed("generator.fc3", &self.g_fc3));
        p.extend(prefixed("generator.bn3", &self.g_bn3));
        p.extend(prefixed("generator.fc4", &self.g_fc4));
        p
    }

    fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("discriminator.fc1", &self.d_fc1);
        p.extend(prefixed("discriminator.fc2", &self.d_fc2));
        p.extend(prefixed("discriminator.fc3", &self.d_fc3));
        p
    }

    fn set_generator_training(&self, training: bool) {
        self.g_bn2.set_training(training);
        self.g_bn3.set_training(training);
    }
}

impl Module for MlpGan {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.generator_parameters();
        p.extend(self.discriminator_parameters());
        p
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut b = prefixed_buffers("generator.bn2", &self.g_bn2);
        b.extend(prefixed_buffers("generator.bn3", &self.g_bn3));
        b
    }

    fn set_training(&self, training: bool) {
        self.set_generator_training(training);
    }
}

impl Generative for MlpGan {
    fn kind(&self) -> ModelKind {
        ModelKind::Gan
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
        // tanh output in [-1, 1] -> pixel intensities in [0, 1].
        self.generator(z)?.affine(0.5, 0.5)
    }
}
