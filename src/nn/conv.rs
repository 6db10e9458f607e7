//! Convolution layers.

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::{Init, Module, init};
use crate::ops::{Conv2dOptions, conv_transpose2d, conv2d};
use crate::tensor::Tensor;

/// `torch.nn.Conv2d`: `x (N, in_channels, H, W) -> (N, out_channels, OH, OW)`.
///
/// `weight (out_channels, in_channels, KH, KW)`, `bias (out_channels,)`.
pub struct Conv2d {
    /// (out_channels, in_channels, KH, KW)
    pub weight: Tensor,
    /// (out_channels,), absent when built without bias (before a batch norm)
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// A square-kernel layer initialised by `init`: PyTorch's default (Kaiming-uniform,
    /// bound 1/sqrt(fan_in) for weight and bias, fan_in = in_channels * k * k) or DCGAN's N(0, 0.02).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv2dOptions,
        bias: bool,
        init: Init,
        rng: &mut impl Rng,
    ) -> Result<Conv2d> {
        let fan_in = in_channels * kernel_size * kernel_size;
        let shape = [out_channels, in_channels, kernel_size, kernel_size];
        Ok(Conv2d {
            weight: init::weight(gpu, shape, fan_in, init, rng)?,
            bias: if bias {
                Some(init::bias(gpu, out_channels, fan_in, init, rng)?)
            } else {
                None
            },
            options,
        })
    }

    /// Applies the convolution.
    ///
    /// Errors: the shape errors of [`conv2d`].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), self.options)
    }
}

impl Module for Conv2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }
}

/// `torch.nn.ConvTranspose2d`: `x (N, in_channels, H, W) -> (N, out_channels, OH, OW)` with
/// `OH = (H - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1`.
///
/// `weight (in_channels, out_channels, KH, KW)` (PyTorch's layout), `bias (out_channels,)`.
pub struct ConvTranspose2d {
    /// (in_channels, out_channels, KH, KW)
    pub weight: Tensor,
    /// (out_channels,)
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation.
    pub options: Conv2dOptions,
    /// Extra rows/columns on the bottom/right of the output.
    pub output_padding: [usize; 2],
}

impl ConvTranspose2d {
    /// A square-kernel layer. PyTorch computes the default init's fan_in from the weight's
    /// second dimension: out_channels * k * k.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv2dOptions,
        output_padding: usize,
        bias: bool,
        init: Init,
        rng: &mut impl Rng,
    ) -> Result<ConvTranspose2d> {
        let fan_in = out_channels * kernel_size * kernel_size;
        let shape = [in_channels, out_channels, kernel_size, kernel_size];
        Ok(ConvTranspose2d {
            weight: init::weight(gpu, shape, fan_in, init, rng)?,
            bias: if bias {
                Some(init::bias(gpu, out_channels, fan_in, init, rng)?)
            } else {
                None
            },
            options,
            output_padding: [output_padding; 2],
        })
    }

    /// Applies the transposed convolution.
    ///
    /// Errors: the shape errors of [`conv_transpose2d`].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv_transpose2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.options,
            self.output_padding,
        )
    }
}

impl Module for ConvTranspose2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }
}
