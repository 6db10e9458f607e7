//! Instance normalization (kernels in `shaders/instance_norm.wgsl`): Ulyanov et al. 2016,
//! "Instance Normalization: The Missing Ingredient for Fast Stylization", eq. 2; the
//! normalization of CycleGAN's networks (Zhu et al. 2017, sec. 4 and appendix 7.2).

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::ops::rows_grid;
use crate::tensor::Tensor;

/// Params of every entry point of `instance_norm.wgsl`: the tensor viewed as
/// `(rows = N * C, inner = H * W)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct InstanceNormParams {
    /// Planes: N * C.
    pub rows: u32,
    /// Channels C (row r is channel r % C).
    pub channels: u32,
    /// Values per plane: H * W.
    pub inner: u32,
    /// Added to the variance.
    pub eps: f32,
}

/// Instance normalization of `x (N, C, H, W)` (or any `(N, C, ...)`): every (sample, channel)
/// plane normalised by its own mean and biased variance, `xhat = (x - mean) / sqrt(var + eps)`,
/// then `y = gamma[c] xhat + beta[c]` when `affine = Some((gamma, beta))`, each `(C,)`; `xhat`
/// itself when None. The same in training and evaluation (no running statistics), as
/// `torch.nn.InstanceNorm2d(C, affine=..., eps=eps)` with `track_running_stats=False`.
///
/// Gradients flow to `x`, `gamma` and `beta`:
/// `dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat))` (means over the plane),
/// `dgamma[c] = sum_{n, plane} dy xhat`, `dbeta[c] = sum_{n, plane} dy`.
///
/// Errors: [`Error::Shape`] if `x` is not `(N, C, ...)` with a non-empty plane or gamma/beta
/// are not `(C,)`; with `create_graph` ([`crate::autograd::grad`]), [`Error::Invalid`] naming
/// `instance_norm`: its backward kernels have no derivative of their own (first order only).
pub fn instance_norm(x: &Tensor, affine: Option<(&Tensor, &Tensor)>, eps: f32) -> Result<Tensor> {
    const OP: &str = "instance_norm";
    let [n, c, rest @ ..] = x.dims() else {
        return Err(Error::shape(
            OP,
            format!("input {} must be (N, C, H, W)", x.shape()),
        ));
    };
    let (n, c) = (*n, *c);
    let inner: usize = rest.iter().product();
    if inner == 0 || rest.is_empty() {
        return Err(Error::shape(
            OP,
            format!("input {} must be (N, C, H, W) with H * W >= 1", x.shape()),
        ));
    }
    if let Some((gamma, beta)) = affine {
        for (name, t) in [("gamma", gamma), ("beta", beta)] {
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
    }
    let gpu = x.gpu();
    let rows = n * c;
    let params = InstanceNormParams {
        rows: rows as u32,
        channels: c as u32,
        inner: inner as u32,
        eps,
    };
    let (gamma, beta) = match affine {
        Some((g, b)) => (g.clone(), b.clone()),
        None => (Tensor::full(gpu, [c], 1.0)?, Tensor::zeros(gpu, [c])?),
    };
    let mean = Tensor::alloc(gpu, OP, rows)?;
    let invstd = Tensor::alloc(gpu, OP, rows)?;
    Kernel::InstanceNormStats.dispatch(
        gpu,
        &[x.storage(), &mean, &invstd],
        &params,
        rows_grid(rows),
    );
    let total = x.numel();
    let grid = grid_1d(total as u64, WORKGROUP_1D);
    let y = Tensor::alloc(gpu, OP, total)?;
    Kernel::InstanceNormForward.dispatch(
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
    let mean = Tensor::from_storage(gpu, mean, [rows].into());
    let invstd = Tensor::from_storage(gpu, invstd, [rows].into());
    let (sx, sgamma) = (x.detach(), gamma.detach());
    let backward = Box::new(
        move |dy: &Tensor, wanted: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only(OP)?;
            let gpu = dy.gpu();
            let s_dy = Tensor::alloc(gpu, "instance_norm_backward", rows)?;
            let s_dy_xhat = Tensor::alloc(gpu, "instance_norm_backward", rows)?;
            Kernel::InstanceNormBackwardReduce.dispatch(
                gpu,
                &[
                    sx.storage(),
                    dy.storage(),
                    mean.storage(),
                    invstd.storage(),
                    &s_dy,
                    &s_dy_xhat,
                ],
                &params,
                rows_grid(rows),
            );
            let dx = Tensor::alloc(gpu, "instance_norm_backward", total)?;
            Kernel::InstanceNormBackwardDx.dispatch(
                gpu,
                &[
                    sx.storage(),
                    dy.storage(),
                    mean.storage(),
                    invstd.storage(),
                    sgamma.storage(),
                    &s_dy,
                    &s_dy_xhat,
                    &dx,
                ],
                &params,
                grid,
            );
            let mut grads = vec![Some(Tensor::from_storage(gpu, dx, sx.shape().clone()))];
            if wanted.len() == 3 {
                let dgamma = Tensor::alloc(gpu, "instance_norm_backward", c)?;
                let dbeta = Tensor::alloc(gpu, "instance_norm_backward", c)?;
                Kernel::InstanceNormBackwardAffine.dispatch(
                    gpu,
                    &[&s_dy, &s_dy_xhat, &dgamma, &dbeta],
                    &params,
                    grid_1d(c as u64, WORKGROUP_1D),
                );
                grads.push(Some(Tensor::from_storage(gpu, dgamma, [c].into())));
                grads.push(Some(Tensor::from_storage(gpu, dbeta, [c].into())));
            }
            Ok(grads)
        },
    );
    let inputs: Vec<&Tensor> = match affine {
        Some((g, b)) => vec![x, g, b],
        None => vec![x],
    };
    Ok(Tensor::from_op(
        gpu,
        y,
        x.shape().clone(),
        &inputs,
        backward,
    ))
}
