//! The losses of image-to-image translation (kernels in `shaders/pair_loss.wgsl`), per sample
//! like [`crate::ops::mse_loss`]: shape `(batch_size,)`, reduced over every other dimension;
//! call `.mean()` for the batch average.
//!
//! - [`l1_loss`]: mean absolute error, pix2pix's L1 term (Isola et al. 2017, eq. 3) and
//!   CycleGAN's cycle-consistency and identity terms (Zhu et al. 2017, eq. 2, sec. 5.2).
//! - [`least_squares_loss`]: the least-squares GAN loss (Mao et al. 2017, eq. 2, with the 0-1
//!   coding CycleGAN uses, Zhu et al. 2017, sec. 4). It is the mean squared error against a
//!   constant target, `mean_d (x - target)^2` (`MSELoss(D(x), full_like(D(x), target))`), with
//!   the constant in the kernel's Params rather than a tensor of copies.
//!
//! Both are first order only: their backward kernels have no derivative of their own, so
//! [`crate::autograd::grad`] with `create_graph` through them is refused with an error naming the
//! op (no translation loss here needs a gradient penalty).

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::ops::rows_grid;
use crate::tensor::Tensor;

/// Params of every entry point of `pair_loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PairLossParams {
    /// Rows (samples).
    pub rows: u32,
    /// Features per row.
    pub dim: u32,
    /// The constant target of the least-squares loss (unused by L1); `target` is reserved in WGSL.
    pub value: f32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

fn rows_dim(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    match x.dims().first() {
        Some(&rows) if rows > 0 => Ok((rows, x.numel() / rows)),
        _ => Err(Error::shape(
            op,
            format!(
                "prediction {} must be (batch_size, ...) with batch_size >= 1",
                x.shape()
            ),
        )),
    }
}

/// Mean absolute error over the features of each sample: `loss[b] = mean_d |x - t|`;
/// `.mean()` of the result is PyTorch's `L1Loss()`.
///
/// Shapes: `pred`, `target` `(batch_size, ...)` -> `(batch_size,)`. The gradient flows to
/// `pred` only: `dloss[b] sign(x - t) / D` (0 where x = t, PyTorch's choice of subgradient).
///
/// Errors: [`Error::Shape`] if the shapes differ or the batch is empty; with `create_graph`,
/// [`Error::Invalid`] naming `l1_loss` (first order only).
pub fn l1_loss(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    const OP: &str = "l1_loss";
    if pred.shape() != target.shape() {
        return Err(Error::shape(
            OP,
            format!(
                "prediction {} and target {} must have the same (batch_size, ...) shape",
                pred.shape(),
                target.shape()
            ),
        ));
    }
    let (rows, dim) = rows_dim(OP, pred)?;
    let gpu = pred.gpu();
    let params = PairLossParams {
        rows: rows as u32,
        dim: dim as u32,
        value: 0.0,
        _pad: 0,
    };
    let loss = Tensor::alloc(gpu, OP, rows)?;
    Kernel::L1Forward.dispatch(
        gpu,
        &[pred.storage(), target.storage(), &loss],
        &params,
        rows_grid(rows),
    );
    let (sx, st) = (pred.detach(), target.detach());
    let backward = Box::new(
        move |dloss: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only(OP)?;
            let gpu = dloss.gpu();
            let dx = Tensor::alloc(gpu, OP, rows * dim)?;
            Kernel::L1Backward.dispatch(
                gpu,
                &[sx.storage(), st.storage(), dloss.storage(), &dx],
                &params,
                grid_1d((rows * dim) as u64, WORKGROUP_1D),
            );
            Ok(vec![
                Some(Tensor::from_storage(gpu, dx, sx.shape().clone())),
                None,
            ])
        },
    );
    Ok(Tensor::from_op(
        gpu,
        loss,
        [rows].into(),
        &[pred, target],
        backward,
    ))
}

/// The least-squares GAN loss of `pred` against the constant `target` (1 for "real", 0 for
/// "fake"): `loss[b] = mean_d (x - target)^2`, the mean squared error against a constant.
/// A discriminator with patch outputs `(B, 1, h, w)` gets one value per sample, the mean over
/// its patches.
///
/// Shapes: `pred (batch_size, ...)` -> `(batch_size,)`. The gradient:
/// `dloss[b] 2 (x - target) / D`.
///
/// Errors: [`Error::Shape`] for an empty batch; with `create_graph`, [`Error::Invalid`] naming
/// `least_squares_loss` (first order only).
pub fn least_squares_loss(pred: &Tensor, target: f32) -> Result<Tensor> {
    const OP: &str = "least_squares_loss";
    let (rows, dim) = rows_dim(OP, pred)?;
    let gpu = pred.gpu();
    let params = PairLossParams {
        rows: rows as u32,
        dim: dim as u32,
        value: target,
        _pad: 0,
    };
    let loss = Tensor::alloc(gpu, OP, rows)?;
    Kernel::LeastSquaresForward.dispatch(gpu, &[pred.storage(), &loss], &params, rows_grid(rows));
    let sx = pred.detach();
    let backward = Box::new(
        move |dloss: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only(OP)?;
            let gpu = dloss.gpu();
            let dx = Tensor::alloc(gpu, OP, rows * dim)?;
            Kernel::LeastSquaresBackward.dispatch(
                gpu,
                &[sx.storage(), dloss.storage(), &dx],
                &params,
                grid_1d((rows * dim) as u64, WORKGROUP_1D),
            );
            Ok(vec![Some(Tensor::from_storage(
                gpu,
                dx,
                sx.shape().clone(),
            ))])
        },
    );
    Ok(Tensor::from_op(gpu, loss, [rows].into(), &[pred], backward))
}
