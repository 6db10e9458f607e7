//! Parameter initialisation, drawn on the host from a seeded generator and uploaded.

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// A parameter of `shape` drawn from U(-bound, bound).
pub fn uniform(
    gpu: &Gpu,
    shape: impl Into<Shape>,
    bound: f32,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    let shape = shape.into();
    let dist = Uniform::new_inclusive(-bound, bound)
        .map_err(|e| Error::Invalid(format!("uniform init with bound {bound}: {e}")))?;
    let data: Vec<f32> = (0..shape.numel()).map(|_| dist.sample(rng)).collect();
    Ok(Tensor::from_slice(gpu, &data, shape)?.requires_grad_())
}

/// A parameter of `shape` drawn from N(mean, std^2) (DCGAN uses N(0, 0.02)).
pub fn normal(
    gpu: &Gpu,
    shape: impl Into<Shape>,
    mean: f32,
    std: f32,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    let shape = shape.into();
    let dist = Normal::new(mean, std)
        .map_err(|e| Error::Invalid(format!("normal init with std {std}: {e}")))?;
    let data: Vec<f32> = (0..shape.numel()).map(|_| dist.sample(rng)).collect();
    Ok(Tensor::from_slice(gpu, &data, shape)?.requires_grad_())
}

/// PyTorch's default for `nn.Linear` and `nn.Conv2d` weights: Kaiming-uniform with
/// a = sqrt(5) (He et al. 2015), which reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn kaiming_uniform(
    gpu: &Gpu,
    shape: impl Into<Shape>,
    fan_in: usize,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    uniform(gpu, shape, 1.0 / (fan_in.max(1) as f32).sqrt(), rng)
}

/// How a layer's weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's default for Linear and Conv layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    /// for weight and bias (Kaiming-uniform with a = sqrt(5)).
    #[default]
    PyTorch,
    /// DCGAN (Radford et al. 2016, sec. 4): weights from N(0, 0.02), biases zero.
    Dcgan,
}

/// A weight tensor of `shape` drawn by `init` (`fan_in` for the PyTorch default).
pub fn weight(
    gpu: &Gpu,
    shape: impl Into<Shape>,
    fan_in: usize,
    init: Init,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    match init {
        Init::PyTorch => kaiming_uniform(gpu, shape, fan_in, rng),
        Init::Dcgan => normal(gpu, shape, 0.0, 0.02, rng),
    }
}

/// A bias vector of `len` drawn by `init`.
pub fn bias(
    gpu: &Gpu,
    len: usize,
    fan_in: usize,
    init: Init,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    match init {
        Init::PyTorch => kaiming_uniform(gpu, [len], fan_in, rng),
        Init::Dcgan => Ok(Tensor::zeros(gpu, [len])?.requires_grad_()),
    }
}
