//! Sums and means over one axis or over all elements, and their backward: a
//! broadcast of `dy` back over the reduced axis (kernels in `shaders/reduce.wgsl`).

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Storage, grid_1d};
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::ops::rows_grid;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Params of `reduce_sum` and `reduce_backward`: the tensor viewed as (outer, len, inner).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    /// Product of the dimensions before the axis.
    pub outer: u32,
    /// Length of the reduced axis.
    pub len: u32,
    /// Product of the dimensions after the axis.
    pub inner: u32,
    /// Factor applied to the sums (1 for sum, 1/len for mean).
    pub scale: f32,
}

/// Params of `reduce_sum_rows`: sums of `rows` contiguous rows of `len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowsParams {
    /// Number of rows (one workgroup each).
    pub rows: u32,
    /// Row length.
    pub len: u32,
    /// Elements at flat index >= total count as 0 (a ragged last row).
    pub total: u32,
    /// Factor applied to the sums.
    pub scale: f32,
}

/// Rows of this length or more use one workgroup per row instead of one thread.
const WIDE_ROW: usize = 64;
/// Sums over more elements than this run in two passes (partial sums, then their sum).
const CHUNK: usize = 4096;

fn sum_rows(
    gpu: &Gpu,
    x: &Storage,
    rows: usize,
    len: usize,
    total: usize,
    scale: f32,
) -> Result<Storage> {
    let y = Tensor::alloc(gpu, "sum", rows)?;
    let params = RowsParams {
        rows: rows as u32,
        len: len as u32,
        total: total as u32,
        scale,
    };
    Kernel::ReduceSumRows.dispatch(gpu, &[x, &y], &params, rows_grid(rows));
    Ok(y)
}

/// Sums `x` viewed as (outer, len, inner) over `len`, times `scale`: (outer * inner) values.
fn reduce_storage(
    gpu: &Gpu,
    x: &Storage,
    outer: usize,
    len: usize,
    inner: usize,
    scale: f32,
) -> Result<Storage> {
    if inner == 1 && outer == 1 && len > CHUNK {
        let chunks = len.div_ceil(CHUNK);
        let partial = sum_rows(gpu, x, chunks, CHUNK, len, 1.0)?;
        return sum_rows(gpu, &partial, 1, chunks, chunks, scale);
    }
    if inner == 1 && len >= WIDE_ROW {
        return sum_rows(gpu, x, outer, len, outer * len, scale);
    }
    let y = Tensor::alloc(gpu, "sum", outer * inner)?;
    let params = ReduceParams {
        outer: outer as u32,
        len: len as u32,
        inner: inner as u32,
        scale,
    };
    let grid = grid_1d((outer * inner) as u64, WORKGROUP_1D);
    Kernel::ReduceSum.dispatch(gpu, &[x, &y], &params, grid);
    Ok(y)
}

/// The shared forward of every reduction: `x` viewed as (outer, len, inner) -> `out_shape`.
fn reduce_op(
    x: &Tensor,
    outer: usize,
    len: usize,
    inner: usize,
    scale: f32,
    out_shape: Shape,
) -> Result<Tensor> {
    let gpu = x.gpu();
    let y = reduce_storage(gpu, x.storage(), outer, len, inner, scale)?;
    let in_shape = x.shape().clone();
    let backward = Box::new(
        move |dy: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(broadcast_back(
                dy,
                (outer, len, inner),
                scale,
                in_shape.clone(),
            )?)])
        },
    );
    Ok(Tensor::from_op(gpu, y, out_shape, &[x], backward))
}

/// The backward of a reduction: `dx = scale * dy` broadcast over the reduced axis of
/// `(outer, len, inner)` (the `reduce_backward` kernel), shaped `in_shape`. An op of its own,
/// recorded when recording is on: it is linear in dy, and its own backward is the reduction
/// again, `ddy = scale * sum over the axis of ddx`.
fn broadcast_back(
    dy: &Tensor,
    (outer, len, inner): (usize, usize, usize),
    scale: f32,
    in_shape: Shape,
) -> Result<Tensor> {
    let gpu = dy.gpu();
    let n = outer * len * inner;
    let dx = Tensor::alloc(gpu, "sum_backward", n)?;
    let params = ReduceParams {
        outer: outer as u32,
        len: len as u32,
        inner: inner as u32,
        scale,
    };
    let grid = grid_1d(n as u64, WORKGROUP_1D);
    Kernel::ReduceBackward.dispatch(gpu, &[dy.storage(), &dx], &params, grid);
    let dy_shape = dy.shape().clone();
    let backward = Box::new(
        move |ddx: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(reduce_op(
                ddx,
                outer,
                len,
                inner,
                scale,
                dy_shape.clone(),
            )?)])
        },
    );
    Ok(Tensor::from_op(gpu, dx, in_shape, &[dy], backward))
}

impl Tensor {
    fn axis_view(&self, op: &'static str, axis: usize) -> Result<(usize, usize, usize, Shape)> {
        let dims = self.dims();
        if axis >= dims.len() {
            return Err(Error::shape(
                op,
                format!("axis {axis} is out of range for shape {}", self.shape()),
            ));
        }
        let outer = dims[..axis].iter().product();
        let inner = dims[axis + 1..].iter().product();
        let mut out: Vec<usize> = dims.to_vec();
        out.remove(axis);
        Ok((outer, dims[axis], inner, Shape::new(out)))
    }

    /// Sum over `axis`, which is removed from the shape (`torch.sum(x, dim)`).
    ///
    /// Errors: [`Error::Shape`] if `axis` is out of range.
    pub fn sum_axis(&self, axis: usize) -> Result<Tensor> {
        let (outer, len, inner, shape) = self.axis_view("sum_axis", axis)?;
        reduce_op(self, outer, len, inner, 1.0, shape)
    }

    /// Mean over `axis`, which is removed from the shape.
    ///
    /// Errors: [`Error::Shape`] if `axis` is out of range or has length 0.
    pub fn mean_axis(&self, axis: usize) -> Result<Tensor> {
        let (outer, len, inner, shape) = self.axis_view("mean_axis", axis)?;
        if len == 0 {
            return Err(Error::shape(
                "mean_axis",
                format!("axis {axis} of {} is empty", self.shape()),
            ));
        }
        reduce_op(self, outer, len, inner, 1.0 / len as f32, shape)
    }

    /// Sum of all elements: a scalar of shape `()`.
    pub fn sum(&self) -> Result<Tensor> {
        reduce_op(self, 1, self.numel(), 1, 1.0, Shape::scalar())
    }

    /// Mean of all elements: a scalar of shape `()`.
    ///
    /// Errors: [`Error::Shape`] for an empty tensor.
    pub fn mean(&self) -> Result<Tensor> {
        if self.numel() == 0 {
            return Err(Error::shape(
                "mean",
                format!("mean of an empty tensor {}", self.shape()),
            ));
        }
        reduce_op(
            self,
            1,
            self.numel(),
            1,
            1.0 / self.numel() as f32,
            Shape::scalar(),
        )
    }
}
