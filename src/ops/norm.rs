//! Batch normalization (kernels in `shaders/norm.wgsl`).
//!
//! Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training
//! by Reducing Internal Covariate Shift", Algorithm 1 (forward) and sec. 3 (backward);
//! running statistics as PyTorch keeps them.

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::tensor::Tensor;

/// Params of every entry point of `norm.wgsl`: the tensor viewed as (outer, channels, inner).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    /// Batch size N.
    pub outer: u32,
    /// Channels C (features for batch_norm1d).
    pub channels: u32,
    /// Values per channel per sample: H*W (1 for batch_norm1d).
    pub inner: u32,
    /// 1: normalise with batch statistics and update the running ones; 0: use the running ones.
    pub training: u32,
    /// Added to the variance.
    pub eps: f32,
    /// Weight of the new batch statistic in the running average.
    pub momentum: f32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 2],
}

/// Batch normalization over the channel axis (axis 1).
///
/// Shapes: `x (N, C)` or `(N, C, H, W)`; `gamma`, `beta`, `running_mean`, `running_var` `(C,)`.
/// In training mode the batch's mean and (biased) variance over every axis but 1 normalise
/// `x`, and the running statistics are updated in place:
/// `running = (1 - momentum) running + momentum stat` (with the unbiased variance), as
/// `torch.nn.BatchNorm2d(momentum=0.1, eps=1e-5)`. In eval mode the running statistics
/// normalise. Gradients flow to `x`, `gamma` and `beta`.
///
/// Errors: [`Error::Shape`] if `x` has fewer than 2 dimensions or a per-channel tensor is not `(C,)`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<Tensor> {
    const OP: &str = "batch_norm";
    if x.dims().len() < 2 {
        return Err(Error::shape(
            OP,
            format!("input {} must be (N, C) or (N, C, H, W)", x.shape()),
        ));
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let inner: usize = x.dims()[2..].iter().product();
    for (name, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ] {
        if t.dims() != [c] {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} {} must be ({c},) for input {}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    let gpu = x.gpu();
    let params = NormParams {
        outer: n as u32,
        channels: c as u32,
        inner: inner as u32,
        training: training as u32,
        eps,
        momentum,
        _pad: [0; 2],
    };
    let mean = Tensor::alloc(gpu, OP, c)?;
    let invstd = Tensor::alloc(gpu, OP, c)?;
    Kernel::BatchNormStats.dispatch(
        gpu,
        &[
            x.storage(),
            &mean,
            &invstd,
            running_mean.storage(),
            running_var.storage(),
        ],
        &params,
        [c as u32, 1, 1],
    );
    let total = x.numel();
    let y = Tensor::alloc(gpu, OP, total)?;
    let grid = grid_1d(total as u64, WORKGROUP_1D);
    Kernel::BatchNormForward.dispatch(
        gpu,
        &[
            x.storage(),
            &mean,
            &invstd,
            gamma.storage(),
            beta.storage(),
            &y,
        ],
        &params,
        grid,
    );
    let mean = Tensor::from_storage(gpu, mean, [c].into());
    let invstd = Tensor::from_storage(gpu, invstd, [c].into());
    let (sx, sgamma) = (x.clone(), gamma.detach());
    let backward = Box::new(
        move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only(OP)?;
            let gpu = dy.gpu();
            let dgamma = Tensor::alloc(gpu, "batch_norm_backward", c)?;
            let dbeta = Tensor::alloc(gpu, "batch_norm_backward", c)?;
            Kernel::BatchNormBackwardReduce.dispatch(
                gpu,
                &[
                    sx.storage(),
                    dy.storage(),
                    mean.storage(),
                    invstd.storage(),
                    &dgamma,
                    &dbeta,
                ],
                &params,
                [c as u32, 1, 1],
            );
            let dx = Tensor::alloc(gpu, "batch_norm_backward", total)?;
            Kernel::BatchNormBackwardDx.dispatch(
                gpu,
                &[
                    sx.storage(),
                    dy.storage(),
                    mean.storage(),
                    invstd.storage(),
                    sgamma.storage(),
                    &dgamma,
                    &dbeta,
                    &dx,
                ],
                &params,
                grid,
            );
            Ok(vec![
                Some(Tensor::from_storage(gpu, dx, sx.shape().clone())),
                Some(Tensor::from_storage(gpu, dgamma, [c].into())),
                Some(Tensor::from_storage(gpu, dbeta, [c].into())),
            ])
        },
    );
    Ok(Tensor::from_op(
        gpu,
        y,
        x.shape().clone(),
        &[x, gamma, beta],
        backward,
    ))
}
