//! One Adam step (`deepgen::optim::Adam`, Kingma & Ba 2015 with PyTorch's defaults) over 1M
//! parameters in one tensor: bandwidth-bound, 7 streams (reads grad, param, m, v; writes param,
//! m, v).
//!
//! Versions (`shaders/adam.wgsl`, `adam_step`), on lavapipe, `deepgen bench --filter adam`:
//!
//! | version | kernel | 1024x1024 |
//! | --- | --- | --- |
//! | v1 four parameters per invocation as one vec4 (commit 8d8380d), param read twice (for weight decay and for the update, with the stores to m and v between the reads, so both loads stay) | replaced | 3.34 ms (median of three runs alternated with v2); 3.26 ms, 9.0 GB/s in docs/bench_lavapipe.json (commit f7f5e66) |
//! | v2 param read once (commit 87ccaee) | `adam_step` | 3.06 ms (median of three, same sitting) |
//!
//! Cases: [`CASES`]. The update of the first step from zero moments is checked against the f64
//! reference (`ref_adam_step`; the updates, not the parameters, since they are much smaller),
//! then the step is timed.
//!
//! Version switch: none (one version in the tree).

use deepgen::Result;
use deepgen::optim::Adam;

use super::reference::{AdamConfig, ref_adam_step};
use super::{Bench, Work, check, dims_string, to_f64};

/// Parameter tensor shapes.
const CASES: [[usize; 2]; 1] = [[1024, 1024]];

/// Checks and times every case.
pub fn run(bench: &mut Bench) -> Result<()> {
    for dims in CASES {
        row(bench, dims)?;
    }
    Ok(())
}

fn row(bench: &mut Bench, dims: [usize; 2]) -> Result<()> {
    let shape = dims_string(&dims);
    if !bench.wants("adam", &shape) {
        return Ok(());
    }
    let n = dims[0] * dims[1];
    let (ps, p) = bench.tensor(&dims, -0.01, 0.01)?;
    let (gs, g) = bench.tensor(&dims, -1.0, 1.0)?;
    let p = p.requires_grad_();
    // d(sum(p * g))/dp = g.
    let grads = p.mul(&g)?.sum()?.backward()?;
    let params = [p.clone()];
    let mut check_adam = Adam::new(1e-3);
    check_adam.step(&params, &grads)?;
    let got = p.to_vec()?;
    let config = AdamConfig {
        lr: check_adam.lr as f64,
        betas: (check_adam.betas.0 as f64, check_adam.betas.1 as f64),
        eps: check_adam.eps as f64,
        weight_decay: check_adam.weight_decay as f64,
    };
    let mut want = to_f64(&ps);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    ref_adam_step(&mut want, &mut m, &mut v, &to_f64(&gs), 1, config);
    // Compare the updates, which are much smaller than the parameters.
    let got_delta: Vec<f32> = got.iter().zip(&ps).map(|(&a, &b)| a - b).collect();
    let want_delta: Vec<f64> = want.iter().zip(&ps).map(|(&a, &b)| a - b as f64).collect();
    check("adam", &shape, "update", &got_delta, &want_delta)?;
    let mut adam = Adam::new(1e-3);
    let (seconds, timing) =
        bench.time_calls(usize::MAX, || Ok(()), |()| adam.step(&params, &grads))?;
    // Counted per parameter: 16 (moments, bias corrections, sqrt, divide, update); reads
    // grad, param, m, v and writes param, m, v.
    bench.push(
        "adam",
        &shape,
        seconds,
        Work::per_element(n, 16.0, 7 * n),
        timing,
        None,
    );
    Ok(())
}
