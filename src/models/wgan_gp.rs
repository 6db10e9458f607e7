//! WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"): a generator and a
//! *critic*, a real-valued score whose gap between real and generated images estimates the
//! Wasserstein-1 distance while the critic stays 1-Lipschitz, a constraint the gradient
//! penalty enforces softly (sec. 4; training in `train::wgan`). The penalty is taken per
//! sample, so the critic has no batch norm (sec. 4, "No critic batch normalization").
//!
//! Two architectures, for 28x28 images scaled to [-1, 1]:
//! - `conv` (DCGAN-sized): generator as the DCGAN's (z -> linear -> 128x7x7 batch norm ReLU ->
//!   conv_transpose(128 -> 64, k4 s2 p1) batch norm ReLU -> conv_transpose(64 -> 1) tanh);
//!   critic conv(1 -> 64, k4 s2 p1) leaky_relu 0.2 -> conv(64 -> 128, k4 s2 p1) leaky_relu 0.2
//!   -> flatten -> linear 6272 -> 1. Weights from N(0, 0.02), as the DCGAN.
//! - `mlp`: generator as the MLP GAN's (z -> 256 -> 512 bn -> 1024 bn -> 784 tanh, leaky_relu
//!   0.2); critic 784 -> 512 -> 256 -> 1 with leaky_relu 0.2. PyTorch's default initialisation.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::{Adversarial, Generative, Model, ModelKind};
use crate::nn::{
    BatchNorm, Builder, Conv2d, ConvTranspose2d, HasLayers, Init, Layers, Linear, flatten,
};
use crate::ops::{Activation, Conv2dOptions};
use crate::tensor::Tensor;

const SLOPE: f32 = 0.2;

/// The two WGAN-GP architectures (`--arch` on the command line, `arch` in a checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WganArch {
    /// DCGAN-sized convolutional generator and critic.
    Conv,
    /// Fully connected generator and critic, the MLP GAN's sizes.
    Mlp,
}

impl WganArch {
    /// `conv` or `mlp`.
    pub fn name(self) -> &'static str {
        match self {
            WganArch::Conv => "conv",
            WganArch::Mlp => "mlp",
        }
    }

    /// Parses [`WganArch::name`].
    pub fn from_name(name: &str) -> Option<WganArch> {
        [WganArch::Conv, WganArch::Mlp]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

enum Generator {
    Conv {
        fc: Linear,
        bn0: BatchNorm,
        deconv1: ConvTranspose2d,
        bn1: BatchNorm,
        deconv2: ConvTranspose2d,
    },
    Mlp {
        fc1: Linear,
        fc2: Linear,
        bn2: BatchNorm,
        fc3: Linear,
        bn3: BatchNorm,
        fc4: Linear,
    },
}

enum Critic {
    Conv {
        conv1: Conv2d,
        conv2: Conv2d,
        fc: Linear,
    },
    Mlp {
        fc1: Linear,
        fc2: Linear,
        fc3: Linear,
    },
}

/// Generator G(z) and critic D(x) of a WGAN-GP; layers under `generator.` and `critic.`.
pub struct WganGp {
    /// Size of the noise vector z.
    pub noise_dim: usize,
    /// Which architecture.
    pub arch: WganArch,
    generator: Generator,
    critic: Critic,
    layers: Layers,
}

impl WganGp {
    /// A WGAN-GP of `arch` with a `noise_dim`-d noise vector.
    ///
    /// Errors: upload errors.
    pub fn new(gpu: &Gpu, arch: WganArch, noise_dim: usize, rng: &mut impl Rng) -> Result<WganGp> {
        let (generator, critic, layers) = match arch {
            WganArch::Conv => {
                let s2 = Conv2dOptions::new(2, 1);
                let mut b = Builder::new(gpu, rng).with_init(Init::Dcgan);
                let generator = Generator::Conv {
                    fc: b.linear("generator.fc", noise_dim, 128 * 7 * 7)?,
                    bn0: b.batch_norm("generator.bn0", 128)?,
                    deconv1: b.conv_transpose2d("generator.deconv1", 128, 64, 4, s2, false)?,
                    bn1: b.batch_norm("generator.bn1", 64)?,
                    deconv2: b.conv_transpose2d("generator.deconv2", 64, 1, 4, s2, true)?,
                };
                let critic = Critic::Conv {
                    conv1: b.conv2d("critic.conv1", 1, 64, 4, s2, true)?,
                    conv2: b.conv2d("critic.conv2", 64, 128, 4, s2, true)?,
                    fc: b.linear("critic.fc", 128 * 7 * 7, 1)?,
                };
                (generator, critic, b.finish())
            }
            WganArch::Mlp => {
                let mut b = Builder::new(gpu, rng);
                let generator = Generator::Mlp {
                    fc1: b.linear("generator.fc1", noise_dim, 256)?,
                    fc2: b.linear("generator.fc2", 256, 512)?,
                    bn2: b.batch_norm("generator.bn2", 512)?,
                    fc3: b.linear("generator.fc3", 512, 1024)?,
                    bn3: b.batch_norm("generator.bn3", 1024)?,
                    fc4: b.linear("generator.fc4", 1024, 784)?,
                };
                let critic = Critic::Mlp {
                    fc1: b.linear("critic.fc1", 784, 512)?,
                    fc2: b.linear("critic.fc2", 512, 256)?,
                    fc3: b.linear("critic.fc3", 256, 1)?,
                };
                (generator, critic, b.finish())
            }
        };
        Ok(WganGp {
            noise_dim,
            arch,
            generator,
            critic,
            layers,
        })
    }

    /// The critic D: `x (B, 784)` in [-1, 1] -> scores `(B, 1)` (unbounded reals, no sigmoid).
    ///
    /// Errors: shape errors.
    pub fn critic(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dims()[0];
        match &self.critic {
            Critic::Conv { conv1, conv2, fc } => {
                let h = conv1
                    .forward(&x.reshape([b, 1, 28, 28])?)?
                    .leaky_relu(SLOPE)?;
                let h = conv2.forward(&h)?.leaky_relu(SLOPE)?;
                fc.forward(&flatten(&h)?)
            }
            Critic::Mlp { fc1, fc2, fc3 } => {
                let h = fc1.forward_act(x, Activation::LeakyRelu(SLOPE))?;
                let h = fc2.forward_act(&h, Activation::LeakyRelu(SLOPE))?;
                fc3.forward(&h)
            }
        }
    }

    /// The critic's parameters, `critic.*` (what the critic's optimizer updates).
    pub fn critic_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.parameters_in("critic")
    }
}

impl Adversarial for WganGp {
    fn generator(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dims()[0];
        match &self.generator {
            Generator::Conv {
                fc,
                bn0,
                deconv1,
                bn1,
                deconv2,
            } => {
                let h = fc.forward(z)?.reshape([b, 128, 7, 7])?;
                let h = bn0.forward(&h)?.relu()?;
                let h = bn1.forward(&deconv1.forward(&h)?)?.relu()?;
                deconv2.forward(&h)?.tanh()?.reshape([b, 784])
            }
            Generator::Mlp {
                fc1,
                fc2,
                bn2,
                fc3,
                bn3,
                fc4,
            } => {
                let h = fc1.forward_act(z, Activation::LeakyRelu(SLOPE))?;
                let h = bn2.forward(&fc2.forward(&h)?)?.leaky_relu(SLOPE)?;
                let h = bn3.forward(&fc3.forward(&h)?)?.leaky_relu(SLOPE)?;
                fc4.forward(&h)?.tanh()
            }
        }
    }

    /// The critic (a score, not a logit).
    fn discriminator(&self, x: &Tensor) -> Result<Tensor> {
        self.critic(x)
    }

    fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        self.critic_parameters()
    }
}

impl HasLayers for WganGp {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for WganGp {
    fn kind(&self) -> ModelKind {
        ModelKind::WganGp
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("latent_dim".to_string(), self.noise_dim.to_string()),
            ("input_dim".to_string(), "784".to_string()),
            ("arch".to_string(), self.arch.name().to_string()),
        ])
    }
}

impl Generative for WganGp {
    fn latent_dim(&self) -> usize {
        self.noise_dim
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.generator(z)?.affine(0.5, 0.5)
    }
}

/// The architecture recorded in a checkpoint's metadata.
///
/// Errors: [`Error::Checkpoint`] naming `origin` if `arch` is missing or unknown.
pub fn arch_from_metadata(
    meta: &BTreeMap<String, String>,
    origin: &std::path::Path,
) -> Result<WganArch> {
    meta.get("arch")
        .and_then(|a| WganArch::from_name(a))
        .ok_or_else(|| Error::Checkpoint {
            path: origin.to_path_buf(),
            reason: "metadata has no valid `arch` (conv or mlp)".into(),
        })
}
