//! The conditional GAN (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"), at
//! the DCGAN's sizes ([`crate::models::Dcgan`]): both players are told the digit y.
//!
//! - Generator G(z, y): the DCGAN generator whose first linear layer is fed `[z; y]` (y one-hot,
//!   10): `W [z; y] + b = W_z z + W_y y + b`, two linear products summed (`fc` and `fc_label`;
//!   the label layer's bias adds to `fc`'s and is cancelled by the batch norm that follows, as
//!   any bias there is), then 128x7x7 -> batch norm, ReLU -> conv_transpose(128 -> 64) -> batch
//!   norm, ReLU -> conv_transpose(64 -> 1) -> tanh.
//! - Discriminator D(x, y): a *projection discriminator* (Miyato & Koyama 2018, "cGANs with
//!   Projection Discriminator", eq. 3): `D(x, y) = psi(phi(x)) + <embed(y), phi(x)>`, with
//!   phi the DCGAN discriminator's features (conv(1 -> 64) leaky ReLU -> conv(64 -> 128) batch
//!   norm leaky ReLU -> flatten, 6,272 per image), psi its final linear layer (6272 -> 1), and
//!   embed a learned vector of 6,272 per class (`embed`, a linear layer 10 -> 6272 fed the
//!   one-hot y: column y of its weight plus its bias; the bias's term `<b, phi(x)>` does not
//!   depend on y and adds to psi's).
//!
//! Why projection rather than one-hot input channels: the label then acts where the
//! discriminator's evidence is richest (its last features) as an inner product, which is the
//! form the log-likelihood ratio `log q(y|x)/p(y|x)` takes for a softmax model of the class
//! (Miyato & Koyama's derivation), and it reported better class-conditional samples than
//! concatenating y to the input or a hidden layer; it needs no op beyond a linear layer, a
//! product and a row sum, and only 10 x 6,272 extra weights, where ten constant input channels
//! would make the first convolution's im2col 11 times wider for 10 values of information.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Conditional, Generative, Model, ModelKind, NUM_CLASSES, cycling_one_hot};
use crate::nn::{
    BatchNorm2d, Builder, Conv2d, ConvTranspose2d, HasLayers, Init, Layers, Linear, flatten,
};
use crate::ops::Conv2dOptions;
use crate::tensor::Tensor;

const SLOPE: f32 = 0.2;
/// Features of the discriminator's last layer, 128 x 7 x 7.
const FEATURES: usize = 128 * 7 * 7;

/// Generator and projection discriminator of the conditional GAN.
pub struct Cgan {
    /// Size of the noise vector z.
    pub noise_dim: usize,
    g_fc: Linear,
    g_fc_label: Linear,
    g_bn0: BatchNorm2d,
    g_deconv1: ConvTranspose2d,
    g_bn1: BatchNorm2d,
    g_deconv2: ConvTranspose2d,
    d_conv1: Conv2d,
    d_conv2: Conv2d,
    d_bn2: BatchNorm2d,
    d_fc: Linear,
    d_embed: Linear,
    layers: Layers,
}

impl Cgan {
    /// A conditional GAN with the DCGAN's N(0, 0.02) initialisation, the generator's label
    /// weights scaled by sqrt(noise_dim) (N(0, 0.02^2 noise_dim): the label's variance in the
    /// first layer equals the noise's).
    ///
    /// Errors: upload errors.
    pub fn new(gpu: &Gpu, noise_dim: usize, rng: &mut impl Rng) -> Result<Cgan> {
        let up = Conv2dOptions::new(2, 1);
        let mut b = Builder::new(gpu, rng).with_init(Init::Dcgan);
        let model = Cgan {
            noise_dim,
            g_fc: b.linear("generator.fc", noise_dim, FEATURES)?,
            g_fc_label: b.linear("generator.fc_label", NUM_CLASSES, FEATURES)?,
            g_bn0: b.batch_norm("generator.bn0", 128)?,
            g_deconv1: b.conv_transpose2d("generator.deconv1", 128, 64, 4, up, false)?,
            g_bn1: b.batch_norm("generator.bn1", 64)?,
            g_deconv2: b.conv_transpose2d("generator.deconv2", 64, 1, 4, up, true)?,
            d_conv1: b.conv2d("discriminator.conv1", 1, 64, 4, up, true)?,
            d_conv2: b.conv2d("discriminator.conv2", 64, 128, 4, up, false)?,
            d_bn2: b.batch_norm("discriminator.bn2", 128)?,
            d_fc: b.linear("discriminator.fc", FEATURES, 1)?,
            d_embed: b.linear("discriminator.embed", NUM_CLASSES, FEATURES)?,
            layers: b.finish(),
        };
        // The label's share of the generator's first pre-activations: z adds noise_dim terms
        // of N(0, 0.02) weights times N(0, 1) inputs (standard deviation 0.02 sqrt(noise_dim)),
        // the one-hot y one weight. Drawn at N(0, 0.02) as well, the label would carry
        // 1/noise_dim of the variance the batch norm sees, and Adam's steps of about lr per
        // weight take thousands of steps to grow it (measured: samples ignored the label after
        // 200 steps, conditional accuracy 0.10). Scaling its weights by sqrt(noise_dim) gives it
        // the same variance as z from the start, as an N(0, 1) label embedding fed beside z
        // would.
        {
            let _no_grad = crate::autograd::no_grad();
            let w = &model.g_fc_label.weight;
            w.copy_from(&w.scale((noise_dim as f32).sqrt())?)?;
        }
        Ok(model)
    }

    /// G: `z (B, noise_dim)` and one-hot `y (B, 10)` -> images `(B, 784)` in [-1, 1].
    ///
    /// Errors: [`crate::Error::Shape`] for other shapes.
    pub fn generator(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        let b = z.dims()[0];
        let h = self
            .g_fc
            .forward(z)?
            .add(&self.g_fc_label.forward(y)?)?
            .reshape([b, 128, 7, 7])?;
        let h = self.g_bn0.forward(&h)?.relu()?;
        let h = self.g_bn1.forward(&self.g_deconv1.forward(&h)?)?.relu()?;
        self.g_deconv2.forward(&h)?.tanh()?.reshape([b, 784])
    }

    /// D: images `x (B, 784)` in [-1, 1] and one-hot `y (B, 10)` -> real/fake logits `(B, 1)`,
    /// `psi(phi(x)) + <embed(y), phi(x)>`.
    ///
    /// Errors: [`crate::Error::Shape`] for other shapes.
    pub fn discriminator(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let b = x.dims()[0];
        let h = self
            .d_conv1
            .forward(&x.reshape([b, 1, 28, 28])?)?
            .leaky_relu(SLOPE)?;
        let h = self
            .d_bn2
            .forward(&self.d_conv2.forward(&h)?)?
            .leaky_relu(SLOPE)?;
        let phi = flatten(&h)?;
        let projection = phi
            .mul(&self.d_embed.forward(y)?)?
            .sum_axis(1)?
            .reshape([b, 1])?;
        self.d_fc.forward(&phi)?.add(&projection)
    }

    /// The generator's parameters, `generator.*`.
    pub fn generator_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.parameters_in("generator")
    }

    /// The discriminator's parameters, `discriminator.*`.
    pub fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.parameters_in("discriminator")
    }

    /// Train/eval mode of the generator's batch norms alone (eval when sampling).
    pub fn set_generator_training(&self, training: bool) {
        self.layers.set_training_in("generator", training)
    }
}

impl HasLayers for Cgan {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Cgan {
    fn kind(&self) -> ModelKind {
        ModelKind::Cgan
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("latent_dim".to_string(), self.noise_dim.to_string()),
            ("input_dim".to_string(), "784".to_string()),
            ("classes".to_string(), NUM_CLASSES.to_string()),
        ])
    }
}

impl Generative for Cgan {
    fn latent_dim(&self) -> usize {
        self.noise_dim
    }

    /// Decodes `z (n, noise_dim)` with the labels 0, 1, ..., 9, 0, 1, ... by row, to [0, 1].
    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        let y = cycling_one_hot(z.gpu(), z.dims()[0])?;
        self.generate_given(z, &y)
    }

    fn as_conditional(&self) -> Option<&dyn Conditional> {
        Some(self)
    }
}

impl Conditional for Cgan {
    fn generate_given(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.generator(z, y)?.affine(0.5, 0.5)
    }
}
