//! Element-wise ops: add, mul (binary) and relu, sigmoid, tanh, exp (unary), at 1M and 16M
//! elements. Bandwidth-bound: the figure to watch is GB/s against the copy ceilings.
//!
//! Versions (`shaders/elementwise.wgsl`: `unary_forward`, `binary_forward`), on lavapipe:
//!
//! | version | kernel | figure |
//! | --- | --- | --- |
//! | v1 one element per invocation | replaced | add of 1M elements 2.6 ms (the shader's header) |
//! | v2 four elements per invocation, buffers bound as `array<vec4<f32>>` (commit 8d8380d) | `unary_forward`, `binary_forward` | add 1M 1.9 ms at the time; 4.7-4.9 GB/s at 1M and 5.0-5.2 at 16M for every op (docs/bench_lavapipe.json, commit f7f5e66): time follows bytes, not arithmetic |
//!
//! Cases: [`OPS`] at each of [`SIZES`] (`--quick`: 1M only); each checked against its f64
//! reference on every element, then timed as inference.
//!
//! Version switch: none (one version in the tree).

use deepgen::ops::Activation;
use deepgen::{Result, Tensor};

use super::reference::ref_activation;
use super::{Bench, Work, dims_string};

/// An element-wise op of the suite.
struct Op {
    name: &'static str,
    /// Reads two inputs (the second is ignored by unary ops).
    binary: bool,
    /// Counted FLOPs per element (a transcendental counts 1): sigmoid 1 / (1 + exp(-x)) 4,
    /// tanh (1 - exp(-2x)) / (1 + exp(-2x)) 5.
    flops: f64,
    forward: fn(&Tensor, &Tensor) -> Result<Tensor>,
    reference: fn(f64, f64) -> f64,
}

const OPS: [Op; 6] = [
    Op {
        name: "add",
        binary: true,
        flops: 1.0,
        forward: |a, b| a.add(b),
        reference: |a, b| a + b,
    },
    Op {
        name: "mul",
        binary: true,
        flops: 1.0,
        forward: |a, b| a.mul(b),
        reference: |a, b| a * b,
    },
    Op {
        name: "relu",
        binary: false,
        flops: 1.0,
        forward: |a, _| a.relu(),
        reference: |a, _| ref_activation(Activation::Relu, a),
    },
    Op {
        name: "sigmoid",
        binary: false,
        flops: 4.0,
        forward: |a, _| a.sigmoid(),
        reference: |a, _| ref_activation(Activation::Sigmoid, a),
    },
    Op {
        name: "tanh",
        binary: false,
        flops: 5.0,
        forward: |a, _| a.tanh(),
        reference: |a, _| ref_activation(Activation::Tanh, a),
    },
    Op {
        name: "exp",
        binary: false,
        flops: 1.0,
        forward: |a, _| a.exp(),
        reference: |a, _| ref_activation(Activation::Exp, a),
    },
];

/// Matrix sizes, and whether `--quick` runs them (shared with reduce.rs).
pub const SIZES: [([usize; 2], bool); 2] = [([1024, 1024], true), ([4096, 4096], false)];

/// Checks and times every op at every size.
pub fn run(bench: &mut Bench) -> Result<()> {
    for (dims, in_quick) in SIZES {
        if bench.quick && !in_quick {
            continue;
        }
        for op in &OPS {
            row(bench, op, dims)?;
        }
    }
    Ok(())
}

fn row(bench: &mut Bench, op: &Op, dims: [usize; 2]) -> Result<()> {
    let shape = dims_string(&dims);
    if !bench.wants(op.name, &shape) {
        return Ok(());
    }
    let n = dims[0] * dims[1];
    let (a, ta) = bench.tensor(&dims, -2.0, 2.0)?;
    let (b, tb) = bench.tensor(&dims, -2.0, 2.0)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| (op.reference)(x as f64, y as f64))
        .collect();
    let floats = if op.binary { 3 * n } else { 2 * n };
    let work = Work::per_element(n, op.flops, floats);
    bench.forward_row(op.name, &shape, "output", &want, work, || {
        (op.forward)(&ta, &tb)
    })
}
