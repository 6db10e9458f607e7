//! The VAE's loss kernels: `bce_with_logits` at (128, 784) (the reconstruction term, nats per
//! sample), and at (128, 20) the closed-form `kl_divergence`, the reparameterization trick and
//! `reparameterize_kl`, the two in one kernel as the VAE's training step runs them; each forward
//! and backward.
//!
//! Versions, on lavapipe (`shaders/loss.wgsl`, `shaders/vae.wgsl`; commit 16b5c9d fused them):
//!
//! | version | kernels | figure |
//! | --- | --- | --- |
//! | v1 one kernel per term: `reparameterize_forward` + `kl_divergence_forward`, and their two backwards | rows `reparameterize`, `kl_divergence` and their backwards | 37.1 + 32.2 us forward, 25.1 + 76.6 us backward (README, `--filter 128x20`, commit f076732) |
//! | v2 fused: `vae_sample_forward` (z and kl from one read of mu, logvar, eps) and `vae_sample_backward` | rows `reparameterize_kl`, `reparameterize_kl_backward` | 36.3 us forward, 117 us backward (same run) |
//! | BCE: `bce_with_logits_forward`; in training `bce_with_logits_forward_grad` writes the gradient in the same pass, and the backward only scales it | rows `bce_with_logits`, `bce_with_logits_backward` | 304 us forward, 386 us backward (docs/bench_lavapipe.json, commit f7f5e66) |
//!
//! At (128, 20) every row is one dispatch's fixed cost: fusing is the lever, not the kernels.
//!
//! Cases: [`KERNELS`], each a row forward (every output checked against its f64 reference,
//! the first output timed as inference) and a row backward (the gradient of the sum of every
//! output checked against the reference's; the backward of the first output's sum timed, the
//! loss-gradient broadcast subtracted).
//!
//! Version switch: none: the engine's training step runs v2 (`reparameterize_kl`); the v1 rows
//! time the separate ops, which remain public.

use deepgen::ops::{bce_with_logits, kl_divergence, reparameterize, reparameterize_kl};
use deepgen::{Result, Tensor};

use super::reference::{
    ref_bce_with_logits, ref_bce_with_logits_grad, ref_kl_divergence, ref_kl_divergence_grad,
    ref_reparameterize, ref_reparameterize_grad,
};
use super::{Bench, Work, check, dims_string, gradient, to_f64};

/// An input: values uniform in [lo, hi), and whether the backward computes its gradient.
struct Input {
    lo: f32,
    hi: f32,
    grad: bool,
}

/// The data a row moves and computes: FLOPs per element, and floats read or written per element
/// and per row (each input read once, each output written once).
struct Count {
    flops: f64,
    per_element: usize,
    per_row: usize,
}

impl Count {
    fn work(&self, rows: usize, cols: usize) -> Work {
        let n = rows * cols;
        Work::per_element(n, self.flops, self.per_element * n + self.per_row * rows)
    }
}

/// One reference: what the check calls it, and its f64 values.
type Named = (&'static str, Vec<f64>);
/// A reference gradient: the index of the input it is the gradient of, and the named values.
type InputGradient = (usize, Named);

/// One kernel of the family: its forward and backward rows.
struct Kernel {
    name: &'static str,
    /// (rows, cols) of every input.
    dims: [usize; 2],
    inputs: &'static [Input],
    /// The outputs; the first is the one timed.
    forward: fn(&[Tensor]) -> Result<Vec<Tensor>>,
    /// The f64 reference of each output, from the inputs and the row count.
    reference: fn(&[Vec<f64>], usize) -> Vec<Named>,
    /// d (sum of every output) / d input, for each input with `grad`, with its index.
    gradient: fn(&[Vec<f64>]) -> Vec<InputGradient>,
    forward_count: Count,
    backward_count: Count,
}

const X: Input = Input {
    lo: -4.0,
    hi: 4.0,
    grad: true,
};
const TARGET: Input = Input {
    lo: 0.0,
    hi: 1.0,
    grad: false,
};
const MU: Input = Input {
    lo: -1.0,
    hi: 1.0,
    grad: true,
};
const LOGVAR: Input = Input {
    lo: -2.0,
    hi: 1.0,
    grad: true,
};
const EPS: Input = Input {
    lo: -2.0,
    hi: 2.0,
    grad: false,
};

/// Element-wise sum of two references.
fn plus(a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

const KERNELS: [Kernel; 4] = [
    Kernel {
        name: "bce_with_logits",
        dims: [128, 784],
        inputs: &[X, TARGET],
        forward: |t| Ok(vec![bce_with_logits(&t[0], &t[1])?]),
        reference: |x, rows| vec![("loss", ref_bce_with_logits(&x[0], &x[1], rows))],
        gradient: |x| vec![(0, ("gradient", ref_bce_with_logits_grad(&x[0], &x[1])))],
        // max, multiply, subtract, abs, exp, log1p, add, accumulate; reads x, t, writes loss.
        forward_count: Count {
            flops: 8.0,
            per_element: 2,
            per_row: 1,
        },
        // sigmoid (4), subtract, multiply; reads x, t, dloss, writes dx.
        backward_count: Count {
            flops: 6.0,
            per_element: 3,
            per_row: 1,
        },
    },
    Kernel {
        name: "kl_divergence",
        dims: [128, 20],
        inputs: &[MU, LOGVAR],
        forward: |t| Ok(vec![kl_divergence(&t[0], &t[1])?]),
        reference: |x, rows| vec![("kl", ref_kl_divergence(&x[0], &x[1], rows))],
        gradient: |x| {
            let (dmu, dlogvar) = ref_kl_divergence_grad(&x[0], &x[1]);
            vec![(0, ("dmu", dmu)), (1, ("dlogvar", dlogvar))]
        },
        // add, subtract, square, exp, subtract, accumulate; reads mu, logvar, writes kl.
        forward_count: Count {
            flops: 6.0,
            per_element: 2,
            per_row: 1,
        },
        // dmu = dkl mu, dlogvar = dkl (exp(logvar) - 1) / 2; reads mu, logvar, dkl, writes both.
        backward_count: Count {
            flops: 5.0,
            per_element: 4,
            per_row: 1,
        },
    },
    Kernel {
        name: "reparameterize",
        dims: [128, 20],
        inputs: &[MU, LOGVAR, EPS],
        forward: |t| Ok(vec![reparameterize(&t[0], &t[1], &t[2])?]),
        reference: |x, _| vec![("z", ref_reparameterize(&x[0], &x[1], &x[2]))],
        gradient: |x| {
            let (dmu, dlogvar) = ref_reparameterize_grad(&x[1], &x[2]);
            vec![(0, ("dmu", dmu)), (1, ("dlogvar", dlogvar))]
        },
        // halve, exp, multiply, add; reads mu, logvar, eps, writes z.
        forward_count: Count {
            flops: 4.0,
            per_element: 4,
            per_row: 0,
        },
        // dlogvar = dz eps exp(logvar / 2) / 2: reads logvar, eps, dz, writes dlogvar.
        backward_count: Count {
            flops: 5.0,
            per_element: 4,
            per_row: 0,
        },
    },
    Kernel {
        name: "reparameterize_kl",
        dims: [128, 20],
        inputs: &[MU, LOGVAR, EPS],
        forward: |t| {
            let (z, kl) = reparameterize_kl(&t[0], &t[1], &t[2])?;
            Ok(vec![z, kl])
        },
        reference: |x, rows| {
            vec![
                ("z", ref_reparameterize(&x[0], &x[1], &x[2])),
                ("kl", ref_kl_divergence(&x[0], &x[1], rows)),
            ]
        },
        gradient: |x| {
            let (dmu_z, dlogvar_z) = ref_reparameterize_grad(&x[1], &x[2]);
            let (dmu_kl, dlogvar_kl) = ref_kl_divergence_grad(&x[0], &x[1]);
            vec![
                (0, ("dmu", plus(dmu_z, dmu_kl))),
                (1, ("dlogvar", plus(dlogvar_z, dlogvar_kl))),
            ]
        },
        // The two ops' counts, 4 + 6; reads mu, logvar, eps, writes z and kl.
        forward_count: Count {
            flops: 10.0,
            per_element: 4,
            per_row: 1,
        },
        // Timed through z alone (the kl gradient enters as zeros, one fill of 128 floats):
        // reads mu, logvar, eps, dz, dkl, writes dmu and dlogvar.
        backward_count: Count {
            flops: 9.0,
            per_element: 6,
            per_row: 1,
        },
    },
];

/// Checks and times every kernel, forward and backward.
pub fn run(bench: &mut Bench) -> Result<()> {
    for kernel in &KERNELS {
        row(bench, kernel)?;
    }
    Ok(())
}

fn row(bench: &mut Bench, k: &Kernel) -> Result<()> {
    let shape = dims_string(&k.dims);
    let backward_name = format!("{}_backward", k.name);
    let (forward, backward) = (
        bench.wants(k.name, &shape),
        bench.wants(&backward_name, &shape),
    );
    if !forward && !backward {
        return Ok(());
    }
    let [rows, cols] = k.dims;
    let mut host = Vec::new();
    let mut tensors = Vec::new();
    for input in k.inputs {
        let (values, t) = bench.tensor(&k.dims, input.lo, input.hi)?;
        host.push(to_f64(&values));
        tensors.push(t);
    }
    // The first output, the one timed.
    let first = |inputs: &[Tensor]| Ok((k.forward)(inputs)?.swap_remove(0));
    if forward {
        let outputs = {
            let _no_grad = deepgen::no_grad();
            (k.forward)(&tensors)?
        };
        for (out, (what, want)) in outputs.iter().zip((k.reference)(&host, rows)) {
            check(k.name, &shape, what, &out.to_vec()?, &want)?;
        }
        drop(outputs);
        let (seconds, timing) = bench.inference_seconds(|| first(&tensors))?;
        let work = k.forward_count.work(rows, cols);
        bench.push(k.name, &shape, seconds, work, timing, None);
    }
    if backward {
        let leaves: Vec<Tensor> = tensors
            .iter()
            .zip(k.inputs)
            .map(|(t, input)| {
                if input.grad {
                    t.clone().requires_grad_()
                } else {
                    t.clone()
                }
            })
            .collect();
        // The check's loss: the sum of every output.
        let mut loss: Option<Tensor> = None;
        for out in (k.forward)(&leaves)? {
            let s = out.sum()?;
            loss = Some(match loss {
                None => s,
                Some(l) => l.add(&s)?,
            });
        }
        let loss = loss.expect("every kernel has an output");
        let out_dims = {
            let _no_grad = deepgen::no_grad();
            first(&tensors)?.dims().to_vec()
        };
        let grads = loss.backward()?;
        for (i, (what, want)) in (k.gradient)(&host) {
            let got = gradient(&grads, &leaves[i], k.name)?;
            check(&backward_name, &shape, what, &got, &want)?;
        }
        drop((grads, loss));
        let work = k.backward_count.work(rows, cols);
        bench.backward_row(&backward_name, &shape, &out_dims, usize::MAX, work, || {
            first(&leaves)
        })?;
    }
    Ok(())
}
