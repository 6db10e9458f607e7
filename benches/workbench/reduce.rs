//! Reductions of a matrix: `sum` (all elements), `sum_axis0` (column sums), `sum_axis1` (row
//! sums), at 1M and 16M elements. Bandwidth-bound, like the element-wise ops.
//!
//! Versions: two kernels of `shaders/reduce.wgsl`, one version each, both shipping; the engine
//! picks by shape (src/ops/reduce.rs). Figures on lavapipe from docs/bench_lavapipe.json
//! (commit f7f5e66):
//!
//! | kernel | used for | figure |
//! | --- | --- | --- |
//! | `reduce_sum`: one invocation per output, a loop over the reduced axis | axes that are not last, or short last axes (sum_axis0 here) | sum_axis0 4.99 GB/s at 1M, 4.72 at 16M |
//! | `reduce_sum_rows`: one workgroup of `ROW_WG` per row, tree reduction in workgroup memory (`ROW_WG` one subgroup on CPU adapters, commit 8d8380d) | last axes of 64 or more (sum_axis1), and sums of all elements in two passes over 4,096-element chunks (sum) | sum_axis1 3.61 and 4.37 GB/s, sum 3.79 and 4.35 |
//!
//! Cases: [`KERNELS`] at each of elementwise.rs's sizes; each checked against the f64 reference
//! (`ref_reduce`) on every output, then timed as inference.
//!
//! Version switch: none (the shape decides).

use deepgen::{Result, Tensor};

use super::elementwise::SIZES;
use super::reference::ref_reduce;
use super::{Bench, Work, dims_string, to_f64};

/// A reduction of the suite: its name, the op, and (outer, len, inner) of the reduced view of
/// a (rows, cols) matrix.
struct Kernel {
    name: &'static str,
    forward: fn(&Tensor) -> Result<Tensor>,
    view: fn(usize, usize) -> [usize; 3],
}

const KERNELS: [Kernel; 3] = [
    Kernel {
        name: "sum",
        forward: |t| t.sum(),
        view: |rows, cols| [1, rows * cols, 1],
    },
    Kernel {
        name: "sum_axis0",
        forward: |t| t.sum_axis(0),
        view: |rows, cols| [1, rows, cols],
    },
    Kernel {
        name: "sum_axis1",
        forward: |t| t.sum_axis(1),
        view: |rows, cols| [rows, cols, 1],
    },
];

/// Checks and times every reduction at every size.
pub fn run(bench: &mut Bench) -> Result<()> {
    for (dims, in_quick) in SIZES {
        if bench.quick && !in_quick {
            continue;
        }
        for kernel in &KERNELS {
            row(bench, kernel, dims)?;
        }
    }
    Ok(())
}

fn row(bench: &mut Bench, kernel: &Kernel, dims: [usize; 2]) -> Result<()> {
    let shape = dims_string(&dims);
    if !bench.wants(kernel.name, &shape) {
        return Ok(());
    }
    // Non-negative data, so that max |want| measures the sums' scale.
    let (x, t) = bench.tensor(&dims, 0.0, 1.0)?;
    let [outer, len, inner] = (kernel.view)(dims[0], dims[1]);
    let want = ref_reduce(&to_f64(&x), outer, len, inner, 1.0);
    let n = dims[0] * dims[1];
    let work = Work::per_element(n, 1.0, n + want.len());
    bench.forward_row(kernel.name, &shape, "sums", &want, work, || {
        (kernel.forward)(&t)
    })
}
