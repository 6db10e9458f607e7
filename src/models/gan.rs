//! The MLP GAN of the lecture (Goodfellow et al. 2014, "Generative Adversarial Nets"),
//! for 28x28 images scaled to [-1, 1]:
//! generator z(noise_dim) -> 256 -> 512 -> 1024 -> 784 tanh (leaky_relu 0.2 between,
//! batch norm on the 512 and 1024 layers, as the common PyTorch implementations do);
//! discriminator 784 -> 512 -> 256 -> 1 logit with leaky_relu 0.2.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Adversarial, Generative, Model, ModelKind};
use crate::nn::{BatchNorm1d, Builder, HasLayers, Layers, Linear};
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
    layers: Layers,
}

impl MlpGan {
    /// A GAN with PyTorch-default initialisation.
    pub fn new(gpu: &Gpu, noise_dim: usize, rng: &mut impl Rng) -> Result<MlpGan> {
        let mut b = Builder::new(gpu, rng);
        Ok(MlpGan {
            noise_dim,
            g_fc1: b.linear("generator.fc1", noise_dim, 256)?,
            g_fc2: b.linear("generator.fc2", 256, 512)?,
            g_bn2: b.batch_norm("generator.bn2", 512)?,
            g_fc3: b.linear("generator.fc3", 512, 1024)?,
            g_bn3: b.batch_norm("generator.bn3", 1024)?,
            g_fc4: b.linear("generator.fc4", 1024, 784)?,
            d_fc1: b.linear("discriminator.fc1", 784, 512)?,
            d_fc2: b.linear("discriminator.fc2", 512, 256)?,
            d_fc3: b.linear("discriminator.fc3", 256, 1)?,
            layers: b.finish(),
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
}

impl HasLayers for MlpGan {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for MlpGan {
    fn kind(&self) -> ModelKind {
        ModelKind::Gan
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("latent_dim".to_string(), self.noise_dim.to_string()),
            ("input_dim".to_string(), "784".to_string()),
        ])
    }
}

impl Generative for MlpGan {
    fn latent_dim(&self) -> usize {
        self.noise_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        // tanh output in [-1, 1] -> pixel intensities in [0, 1].
        self.generator(z)?.affine(0.5, 0.5)
    }
}
