//! CycleGAN for 28x28 digits (Zhu et al. 2017, "Unpaired Image-to-Image Translation using
//! Cycle-Consistent Adversarial Networks"): generators G: A -> B and F: B -> A, discriminators
//! D_A and D_B, images in [-1, 1]. Sizes scaled from the paper's 256x256 (sec. 4, appendix
//! 7.2) to 28x28, `w` = `width` base channels, `n` = `blocks` residual blocks:
//!
//! - each generator (Johnson et al. 2016's ResNet generator, the paper's; no skip connection
//!   from input to output, so nothing can pass the input through the cycle unchanged beside
//!   the translation): conv(1 -> w, k3 s1 p1) 28x28, IN, relu; conv(w -> 2w, k4 s2 p1) 14x14,
//!   IN, relu; conv(2w -> 4w, k4 s2 p1) 7x7, IN, relu; n residual blocks
//!   `x + IN(conv(relu(IN(conv(x)))))` (4w channels, k3 s1 p1); conv_transpose(4w -> 2w,
//!   k4 s2 p1) 14x14, IN, relu; conv_transpose(2w -> w, k4 s2 p1) 28x28, IN, relu;
//!   conv(w -> 1, k3 s1 p1), tanh.
//! - each discriminator (a PatchGAN, sec. 4): conv(1 -> w, k4 s2 p1) leaky_relu 0.2;
//!   conv(w -> 2w, k4 s2 p1), IN, leaky_relu 0.2; conv(2w -> 1, k3 s1 p1): a 7 x 7 map of
//!   scores (least-squares GAN: no sigmoid).
//!
//! IN is instance norm without affine parameters ([`instance_norm`], as the authors' code's
//! `InstanceNorm2d(affine=False)`); convolutions before it have no bias (it would be
//! subtracted). Weights from N(0, 0.02) (sec. 4).
//!
//! Left out from the paper: the 7x7 first and last convolutions (3x3 here: 28x28 digits have
//! nothing a 7x7 kernel sees that two 3x3 layers do not, at a fifth of the cost) and
//! reflection padding (zero padding: the kernel table has no reflection pad; the digits'
//! borders are background).

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::pix2pix::as_image;
use crate::models::{Model, ModelKind};
use crate::nn::{Builder, Conv2d, ConvTranspose2d, HasLayers, Init, Layers};
use crate::ops::{Conv2dOptions, instance_norm};
use crate::tensor::Tensor;

const SLOPE: f32 = 0.2;
/// Instance norm's epsilon (PyTorch's default).
pub const IN_EPS: f32 = 1e-5;

fn norm(x: &Tensor) -> Result<Tensor> {
    instance_norm(x, None, IN_EPS)
}

/// One ResNet generator (G or F).
struct ResnetGenerator {
    stem: Conv2d,
    down1: Conv2d,
    down2: Conv2d,
    blocks: Vec<(Conv2d, Conv2d)>,
    up1: ConvTranspose2d,
    up2: ConvTranspose2d,
    out: Conv2d,
}

impl ResnetGenerator {
    fn new<R: Rng>(b: &mut Builder<R>, name: &str, w: usize, blocks: usize) -> Result<Self> {
        let (same, down) = (Conv2dOptions::new(1, 1), Conv2dOptions::new(2, 1));
        let mut res = Vec::with_capacity(blocks);
        let stem = b.conv2d(&format!("{name}.stem"), 1, w, 3, same, false)?;
        let down1 = b.conv2d(&format!("{name}.down1"), w, 2 * w, 4, down, false)?;
        let down2 = b.conv2d(&format!("{name}.down2"), 2 * w, 4 * w, 4, down, false)?;
        for i in 0..blocks {
            res.push((
                b.conv2d(
                    &format!("{name}.res{i}.conv1"),
                    4 * w,
                    4 * w,
                    3,
                    same,
                    false,
                )?,
                b.conv2d(
                    &format!("{name}.res{i}.conv2"),
                    4 * w,
                    4 * w,
                    3,
                    same,
                    false,
                )?,
            ));
        }
        Ok(ResnetGenerator {
            stem,
            down1,
            down2,
            blocks: res,
            up1: b.conv_transpose2d(&format!("{name}.up1"), 4 * w, 2 * w, 4, down, false)?,
            up2: b.conv_transpose2d(&format!("{name}.up2"), 2 * w, w, 4, down, false)?,
            out: b.conv2d(&format!("{name}.out"), w, 1, 3, same, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = norm(&self.stem.forward(x)?)?.relu()?;
        let h = norm(&self.down1.forward(&h)?)?.relu()?;
        let mut h = norm(&self.down2.forward(&h)?)?.relu()?;
        for (c1, c2) in &self.blocks {
            let r = norm(&c1.forward(&h)?)?.relu()?;
            h = h.add(&norm(&c2.forward(&r)?)?)?;
        }
        let h = norm(&self.up1.forward(&h)?)?.relu()?;
        let h = norm(&self.up2.forward(&h)?)?.relu()?;
        self.out.forward(&h)?.tanh()
    }
}

/// One PatchGAN discriminator (D_A or D_B).
struct PatchDiscriminator {
    conv1: Conv2d,
    conv2: Conv2d,
    out: Conv2d,
}

impl PatchDiscriminator {
    fn new<R: Rng>(b: &mut Builder<R>, name: &str, w: usize) -> Result<Self> {
        let (same, down) = (Conv2dOptions::new(1, 1), Conv2dOptions::new(2, 1));
        Ok(PatchDiscriminator {
            conv1: b.conv2d(&format!("{name}.conv1"), 1, w, 4, down, true)?,
            conv2: b.conv2d(&format!("{name}.conv2"), w, 2 * w, 4, down, false)?,
            out: b.conv2d(&format!("{name}.out"), 2 * w, 1, 3, same, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(x)?.leaky_relu(SLOPE)?;
        let h = norm(&self.conv2.forward(&h)?)?.leaky_relu(SLOPE)?;
        self.out.forward(&h)
    }
}

/// CycleGAN's two generators and two discriminators. Parameter names: `g_ab.*` (G),
/// `g_ba.*` (F), `d_a.*`, `d_b.*`.
pub struct CycleGan {
    /// Base channel count w.
    pub width: usize,
    /// Residual blocks per generator.
    pub blocks: usize,
    g_ab: ResnetGenerator,
    g_ba: ResnetGenerator,
    d_a: PatchDiscriminator,
    d_b: PatchDiscriminator,
    layers: Layers,
}

/// A direction of translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A -> B (G).
    AToB,
    /// B -> A (F).
    BToA,
}

impl CycleGan {
    /// A CycleGAN of base width `width` (16 by default) with `blocks` residual blocks per
    /// generator (2 by default), N(0, 0.02) initialisation.
    ///
    /// Errors: upload errors; [`Error::Invalid`] for a width of 0.
    pub fn new(gpu: &Gpu, width: usize, blocks: usize, rng: &mut impl Rng) -> Result<CycleGan> {
        if width == 0 {
            return Err(Error::Invalid("cyclegan: width must be at least 1".into()));
        }
        let mut b = Builder::new(gpu, rng).with_init(Init::Dcgan);
        Ok(CycleGan {
            width,
            blocks,
            g_ab: ResnetGenerator::new(&mut b, "g_ab", width, blocks)?,
            g_ba: ResnetGenerator::new(&mut b, "g_ba", width, blocks)?,
            d_a: PatchDiscriminator::new(&mut b, "d_a", width)?,
            d_b: PatchDiscriminator::new(&mut b, "d_b", width)?,
            layers: b.finish(),
        })
    }

    /// G (`AToB`) or F (`BToA`): images `(B, 784)` or `(B, 1, 28, 28)` in [-1, 1] ->
    /// `(B, 1, 28, 28)` in [-1, 1].
    ///
    /// Errors: [`Error::Shape`] for other shapes.
    pub fn generate(&self, direction: Direction, x: &Tensor) -> Result<Tensor> {
        let x = as_image(x, "generator input")?;
        match direction {
            Direction::AToB => self.g_ab.forward(&x),
            Direction::BToA => self.g_ba.forward(&x),
        }
    }

    /// D_A (`domain_b` false) or D_B: images in [-1, 1] -> patch scores `(B, 1, 7, 7)`.
    ///
    /// Errors: [`Error::Shape`] for other shapes.
    pub fn discriminate(&self, domain_b: bool, x: &Tensor) -> Result<Tensor> {
        let x = as_image(x, "discriminator input")?;
        if domain_b {
            self.d_b.forward(&x)
        } else {
            self.d_a.forward(&x)
        }
    }

    /// Translates images `(B, 784)` in [0, 1] in `direction`: `(B, 784)` in [0, 1].
    ///
    /// Errors: as [`CycleGan::generate`].
    pub fn translate(&self, direction: Direction, x: &Tensor) -> Result<Tensor> {
        let b = x.dims()[0];
        self.generate(direction, &x.affine(2.0, -1.0)?)?
            .affine(0.5, 0.5)?
            .reshape([b, 784])
    }

    /// The two generators' parameters (`g_ab.*`, `g_ba.*`), updated by one Adam as in the
    /// paper's code.
    pub fn generator_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.layers.parameters_in("g_ab");
        p.extend(self.layers.parameters_in("g_ba"));
        p
    }

    /// The two discriminators' parameters (`d_a.*`, `d_b.*`).
    pub fn discriminator_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.layers.parameters_in("d_a");
        p.extend(self.layers.parameters_in("d_b"));
        p
    }
}

impl HasLayers for CycleGan {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for CycleGan {
    fn kind(&self) -> ModelKind {
        ModelKind::CycleGan
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("width".to_string(), self.width.to_string()),
            ("blocks".to_string(), self.blocks.to_string()),
            ("input_dim".to_string(), "784".to_string()),
            (
                "domains".to_string(),
                "A: MNIST; B: strokes thickened (3x3 max) and inverted".to_string(),
            ),
        ])
    }
}
