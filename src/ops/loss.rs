//! Per-sample reconstruction losses (kernels in `shaders/loss.wgsl`).
//!
//! Both return one value per sample, shape `(batch_size,)`, reduced over every
//! other dimension (a `(B, 784)` matrix and a `(B, 1, 28, 28)` image batch alike);
//! call `.mean()` on the result for the batch average.

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::ops::rows_grid;
use crate::tensor::Tensor;

/// Params of the per-row kernels of `loss.wgsl` and `vae.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowParams {
    /// Rows (samples).
    pub rows: u32,
    /// Features per row.
    pub dim: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 2],
}

fn check_same(op: &'static str, x: &Tensor, t: &Tensor) -> Result<()> {
    if x.shape() != t.shape() || x.dims().is_empty() {
        return Err(Error::shape(
            op,
            format!(
                "prediction {} and target {} must have the same (batch_size, ...) shape",
                x.shape(),
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Shared body of the two losses: forward kernel per row, backward kernel per element.
fn row_loss(
    op: &'static str,
    x: &Tensor,
    t: &Tensor,
    forward: Kernel,
    backward_kernel: Option<Kernel>,
) -> Result<Tensor> {
    check_same(op, x, t)?;
    let gpu = x.gpu();
    let rows = x.dims()[0];
    let dim = x.numel().checked_div(rows).unwrap_or(0);
    let loss = Tensor::alloc(gpu, op, rows)?;
    let params = RowParams {
        rows: rows as u32,
        dim: dim as u32,
        _pad: [0; 2],
    };
    forward.dispatch(
        gpu,
        &[x.storage(), t.storage(), &loss],
        &params,
        rows_grid(rows),
    );
    let (sx, st) = (x.clone(), t.detach());
    let backward = Box::new(
        move |dloss: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only(op)?;
            let gpu = dloss.gpu();
            let dx = Tensor::alloc(gpu, op, rows * dim)?;
            let backward_kernel =
                backward_kernel.ok_or_else(|| Error::Invalid(format!("{op}: no backward")))?;
            backward_kernel.dispatch(
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
    Ok(Tensor::from_op(gpu, loss, [rows].into(), &[x, t], backward))
}

/// Binary cross-entropy on logits, summed over the features of each sample, in nats:
/// `loss[b] = sum_d max(x, 0) - x t + log(1 + exp(-|x|))`, which equals
/// `-sum_d t log(sigmoid(x)) + (1 - t) log(1 - sigmoid(x))` but stays finite for
/// logits of any size (the form of PyTorch's `BCEWithLogitsLoss`).
///
/// Shapes: `logits` and `targets` `(batch_size, ...)`, targets in [0, 1]
/// (continuous intensities allowed) -> `(batch_size,)`. The gradient flows to
/// the logits only: `(sigmoid(x) - t) * dloss`. When the result will be backpropagated the
/// forward kernel also writes `sigmoid(x) - t` (one pass, one exp per element), and the
/// backward only scales it by `dloss`.
///
/// Errors: [`Error::Shape`] if the shapes differ.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let recording = crate::autograd::is_grad_enabled() && logits.requires_grad();
    if !recording {
        // Nothing will flow back (targets take no gradient): the loss alone, never recorded.
        let _no_grad = crate::autograd::no_grad();
        return row_loss(
            "bce_with_logits",
            logits,
            targets,
            Kernel::BceWithLogitsForward,
            None,
        );
    }
    check_same("bce_with_logits", logits, targets)?;
    let gpu = logits.gpu();
    let rows = logits.dims()[0];
    let dim = logits.numel().checked_div(rows).unwrap_or(0);
    let loss = Tensor::alloc(gpu, "bce_with_logits", rows)?;
    let g = Tensor::alloc(gpu, "bce_with_logits", rows * dim)?;
    let params = RowParams {
        rows: rows as u32,
        dim: dim as u32,
        _pad: [0; 2],
    };
    Kernel::BceWithLogitsForwardGrad.dispatch(
        gpu,
        &[logits.storage(), targets.storage(), &loss, &g],
        &params,
        rows_grid(rows),
    );
    let g = Tensor::from_storage(gpu, g, logits.shape().clone());
    let backward = Box::new(
        move |dloss: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only("bce_with_logits")?;
            let gpu = dloss.gpu();
            let dx = Tensor::alloc(gpu, "bce_with_logits_backward", rows * dim)?;
            Kernel::BceWithLogitsBackward.dispatch(
                gpu,
                &[g.storage(), dloss.storage(), &dx],
                &params,
                grid_1d((rows * dim) as u64, WORKGROUP_1D),
            );
            Ok(vec![
                Some(Tensor::from_storage(gpu, dx, g.shape().clone())),
                None,
            ])
        },
    );
    Ok(Tensor::from_op(
        gpu,
        loss,
        [rows].into(),
        &[logits, targets],
        backward,
    ))
}

/// Mean squared error over the features of each sample: `loss[b] = mean_d (x - t)^2`;
/// `.mean()` of the result is PyTorch's `MSELoss()`.
///
/// Shapes: `pred`, `target` `(batch_size, ...)` -> `(batch_size,)`. The gradient flows to `pred`.
///
/// Errors: [`Error::Shape`] if the shapes differ.
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    row_loss(
        "mse_loss",
        pred,
        target,
        Kernel::MseForward,
        Some(Kernel::MseBackward),
    )
}

/// Softmax cross-entropy with logits, per sample, in nats:
/// `loss[b] = log sum_c exp(x[b, c]) - x[b, label[b]]` (PyTorch's `CrossEntropyLoss(reduction='none')`),
/// computed with the max subtracted so that no exp overflows.
///
/// Shapes: `logits (batch_size, classes)`, `labels (batch_size,)` holding class indices as
/// f32 (0.0, 1.0, ...) -> `(batch_size,)`. A label outside [0, classes) gives NaN for
/// its sample. The gradient flows to the logits: `(softmax(x) - onehot(label)) * dloss`.
///
/// Errors: [`Error::Shape`] unless logits are a matrix and labels a vector of its rows.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    const OP: &str = "softmax_cross_entropy";
    let [rows, classes] = logits.dims()[..] else {
        return Err(Error::shape(
            OP,
            format!("logits {} must be (batch_size, classes)", logits.shape()),
        ));
    };
    if labels.dims() != [rows] {
        return Err(Error::shape(
            OP,
            format!(
                "labels {} must be ({rows},) for logits {}",
                labels.shape(),
                logits.shape()
            ),
        ));
    }
    let gpu = logits.gpu();
    let loss = Tensor::alloc(gpu, OP, rows)?;
    let lse = Tensor::alloc(gpu, OP, rows)?;
    let params = RowParams {
        rows: rows as u32,
        dim: classes as u32,
        _pad: [0; 2],
    };
    Kernel::SoftmaxCrossEntropyForward.dispatch(
        gpu,
        &[logits.storage(), labels.storage(), &loss, &lse],
        &params,
        rows_grid(rows),
    );
    let lse = Tensor::from_storage(gpu, lse, [rows].into());
    let (sx, sl) = (logits.clone(), labels.detach());
    let backward = Box::new(
        move |dloss: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only(OP)?;
            let gpu = dloss.gpu();
            let dx = Tensor::alloc(gpu, OP, rows * classes)?;
            Kernel::SoftmaxCrossEntropyBackward.dispatch(
                gpu,
                &[
                    sx.storage(),
                    sl.storage(),
                    lse.storage(),
                    dloss.storage(),
                    &dx,
                ],
                &params,
                grid_1d((rows * classes) as u64, WORKGROUP_1D),
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
        &[logits, labels],
        backward,
    ))
}
