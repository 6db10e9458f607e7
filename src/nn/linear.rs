//! Fully connected layer.

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{Init, Module, init};
use crate::ops::Activation;
use crate::tensor::Tensor;

/// `y = x W^T + b`, with PyTorch's layout and initialisation.
///
/// Shapes: `x (batch_size, in_features) -> y (batch_size, out_features)`;
/// `weight (out_features, in_features)`, `bias (out_features,)`.
pub struct Linear {
    /// (out_features, in_features)
    pub weight: Tensor,
    /// (out_features,)
    pub bias: Tensor,
}

impl Linear {
    /// A layer initialised as `torch.nn.Linear`: weight and bias from
    /// U(-1/sqrt(in_features), 1/sqrt(in_features)).
    pub fn new(
        gpu: &Gpu,
        in_features: usize,
        out_features: usize,
        rng: &mut impl Rng,
    ) -> Result<Linear> {
        Linear::with_init(gpu, in_features, out_features, Init::PyTorch, rng)
    }

    /// A layer initialised by `init` (PyTorch's default or DCGAN's N(0, 0.02)).
    pub fn with_init(
        gpu: &Gpu,
        in_features: usize,
        out_features: usize,
        init: Init,
        rng: &mut impl Rng,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: init::weight(gpu, [out_features, in_features], in_features, init, rng)?,
            bias: init::bias(gpu, out_features, in_features, init, rng)?,
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `x W^T + b`.
    ///
    /// Errors: [`Error::Shape`] unless `x` is `(batch_size, in_features)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::Identity)
    }

    /// `activation(x W^T + b)` in one fused kernel (see [`Tensor::linear`]).
    ///
    /// Errors: [`Error::Shape`] unless `x` is `(batch_size, in_features)`.
    pub fn forward_act(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        if x.dims().len() != 2 || x.dims()[1] != self.in_features() {
            return Err(Error::shape(
                "linear",
                format!(
                    "input {} does not fit a layer of {} -> {} features (expected (batch_size, {}))",
                    x.shape(),
                    self.in_features(),
                    self.out_features(),
                    self.in_features()
                ),
            ));
        }
        x.linear(&self.weight, &self.bias, activation)
    }
}

impl Module for Linear {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
}
