//! pix2pix for 28x28 digits (Isola et al. 2017, "Image-to-Image Translation with Conditional
//! Adversarial Networks"): a U-Net generator and a PatchGAN discriminator that sees
//! (input, output) pairs, images in [-1, 1]. Sizes scaled from the paper's 256x256 (sec. 3.1,
//! appendix 6.1.1) to 28x28, `w` = `width` base channels:
//!
//! - generator (U-Net, Ronneberger et al. 2015; skips by [`concat_channels`]):
//!   enc1 conv(1 -> w, k4 s2 p1) 28 -> 14, leaky_relu 0.2 (no norm: the paper's first layer);
//!   enc2 conv(w -> 2w, k4 s2 p1) 14 -> 7, batch norm, leaky_relu 0.2;
//!   enc3 conv(2w -> 4w, k3 s2 p1) 7 -> 4, relu (the innermost layer, no norm);
//!   dec3 conv_transpose(4w -> 2w, k3 s2 p1) 4 -> 7, batch norm, relu, concat enc2 -> 4w;
//!   dec2 conv_transpose(4w -> w, k4 s2 p1) 7 -> 14, batch norm, relu, concat enc1 -> 2w;
//!   dec1 conv_transpose(2w -> 1, k4 s2 p1) 14 -> 28, tanh.
//! - discriminator (PatchGAN, sec. 3.2.2) on the 2-channel pair [input, image]:
//!   conv(2 -> w, k4 s2 p1) 28 -> 14 leaky_relu 0.2; conv(w -> 2w, k4 s2 p1) 14 -> 7, batch
//!   norm, leaky_relu 0.2; conv(2w -> 1, k3 s1 p1): a 7 x 7 map of logits, each judging an
//!   18 x 18 patch (its receptive field).
//!
//! Weights from N(0, 0.02), batch-norm scales from N(1, 0.02) (appendix 6.2).
//!
//! Left out from the paper: dropout in the decoder as the source of noise (sec. 2.1: the
//! authors found the generator ignores input noise and that dropout gives little
//! stochasticity; completing a digit from its top half is run as a deterministic map), and
//! batch norm on test-batch statistics (translation uses the running ones, eval mode).

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::{Model, ModelKind};
use crate::nn::{BatchNorm2d, Builder, Conv2d, ConvTranspose2d, HasLayers, Init, Layers};
use crate::ops::{Conv2dOptions, concat_channels};
use crate::tensor::Tensor;

const SLOPE: f32 = 0.2;

/// pix2pix's generator (U-Net) and discriminator (PatchGAN).
pub struct Pix2Pix {
    /// Base channel count w.
    pub width: usize,
    /// Trained with the L1 term alone (the paper's ablation): its discriminator is untrained.
    pub l1_only: bool,
    enc1: Conv2d,
    enc2: Conv2d,
    enc2_bn: BatchNorm2d,
    enc3: Conv2d,
    dec3: ConvTranspose2d,
    dec3_bn: BatchNorm2d,
    dec2: ConvTranspose2d,
    dec2_bn: BatchNorm2d,
    dec1: ConvTranspose2d,
    d_conv1: Conv2d,
    d_conv2: Conv2d,
    d_bn2: BatchNorm2d,
    d_out: Conv2d,
    layers: Layers,
}

/// `(B, 784)` or `(B, 1, 28, 28)` -> `(B, 1, 28, 28)`, naming `what` in the error.
pub(crate) fn as_image(x: &Tensor, what: &str) -> Result<Tensor> {
    match x.dims() {
        [b, 784] => x.reshape([*b, 1, 28, 28]),
        [_, 1, 28, 28] => Ok(x.clone()),
        _ => Err(Error::shape(
            "translation",
            format!("{what} {} must be (B, 784) or (B, 1, 28, 28)", x.shape()),
        )),
    }
}

impl Pix2Pix {
    /// A pix2pix of base width `width` (32 by default), N(0, 0.02) initialisation.
    ///
    /// Errors: upload errors; [`Error::Invalid`] for a width of 0.
    pub fn new(gpu: &Gpu, width: usize, l1_only: bool, rng: &mut impl Rng) -> Result<Pix2Pix> {
        if width == 0 {
            return Err(Error::Invalid("pix2pix: width must be at least 1".into()));
        }
        let w = width;
        let (down4, down3, same3) = (
            Conv2dOptions::new(2, 1),
            Conv2dOptions::new(2, 1),
            Conv2dOptions::new(1, 1),
        );
        let mut b = Builder::new(gpu, rng).with_init(Init::Dcgan);
        Ok(Pix2Pix {
            width,
            l1_only,
            enc1: b.conv2d("generator.enc1", 1, w, 4, down4, true)?,
            // No bias before a batch norm: the mean subtraction cancels it.
            enc2: b.conv2d("generator.enc2", w, 2 * w, 4, down4, false)?,
            enc2_bn: b.batch_norm("generator.enc2_bn", 2 * w)?,
            enc3: b.conv2d("generator.enc3", 2 * w, 4 * w, 3, down3, true)?,
            dec3: b.conv_transpose2d("generator.dec3", 4 * w, 2 * w, 3, down3, false)?,
            dec3_bn: b.batch_norm("generator.dec3_bn", 2 * w)?,
            dec2: b.conv_transpose2d("generator.dec2", 4 * w, w, 4, down4, false)?,
            dec2_bn: b.batch_norm("generator.dec2_bn", w)?,
            dec1: b.conv_transpose2d("generator.dec1", 2 * w, 1, 4, down4, true)?,
            d_conv1: b.conv2d("discriminator.conv1", 2, w, 4, down4, true)?,
            d_conv2: b.conv2d("discriminator.conv2", w, 2 * w, 4, down4, false)?,
            d_bn2: b.batch_norm("discriminator.bn2", 2 * w)?,
            d_out: b.conv2d("discriminator.out", 2 * w, 1, 3, same3, true)?,
            layers: b.finish(),
        })
    }

    /// G: input images `(B, 784)` or `(B, 1, 28, 28)` in [-1, 1] -> `(B, 1, 28, 28)` in
    /// [-1, 1] (tanh).
    ///
    /// Errors: [`Error::Shape`] for other shapes.
    pub fn generator(&self, x: &Tensor) -> Result<Tensor> {
        let x = as_image(x, "generator input")?;
        let e1 = self.enc1.forward(&x)?.leaky_relu(SLOPE)?;
        let e2 = self
            .enc2_bn
            .forward(&self.enc2.forward(&e1)?)?
            .leaky_relu(SLOPE)?;
        let e3 = self.enc3.forward(&e2)?.relu()?;
        let d3 = self.dec3_bn.forward(&self.dec3.forward(&e3)?)?.relu()?;
        let d2 = self
            .dec2_bn
            .forward(&self.dec2.forward(&concat_channels(&d3, &e2)?)?)?
            .relu()?;
        self.dec1.forward(&concat_channels(&d2, &e1)?)?.tanh()
    }

    /// D: the pair (`input`, `image`), each `(B, 1, 28, 28)` in [-1, 1] -> patch logits
    /// `(B, 1, 7, 7)` (real pair: high).
    ///
    /// Errors: [`Error::Shape`] for other shapes.
    pub fn discriminator(&self, input: &Tensor, image: &Tensor) -> Result<Tensor> {
        let pair = concat_channels(
            &as_image(input, "discriminator input")?,
            &as_image(image, "discriminator image")?,
        )?;
        let h = self.d_conv1.forward(&pair)?.leaky_relu(SLOPE)?;
        let h = self
            .d_bn2
            .forward(&self.d_conv2.forward(&h)?)?
            .leaky_relu(SLOPE)?;
        self.d_out.forward(&h)
    }

    /// Translates inputs `(B, 784)` in [0, 1] into outputs `(B, 784)` in [0, 1].
    ///
    /// Errors: as [`Pix2Pix::generator`].
    pub fn translate(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dims()[0];
        self.generator(&x.affine(2.0, -1.0)?)?
            .affine(0.5, 0.5)?
            .reshape([b, 784])
    }

    /// The generator's parameters, `generator.*`.
    pub fn generator_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.parameters_in("generator")
    }

    /// The discriminator's parameters, `discriminator.*`.
    pub fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.parameters_in("discriminator")
    }
}

impl HasLayers for Pix2Pix {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Pix2Pix {
    fn kind(&self) -> ModelKind {
        ModelKind::Pix2Pix
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("width".to_string(), self.width.to_string()),
            ("l1_only".to_string(), self.l1_only.to_string()),
            ("input_dim".to_string(), "784".to_string()),
            ("task".to_string(), "complete the bottom half".to_string()),
        ])
    }
}
