//! Helpers shared by the integration tests: a GPU per test thread, seeded random
//! inputs, tolerance checks and a finite-difference gradient checker; and the f64 reference
//! ops, which live in benches/workbench/reference.rs (the kernel workbench checks against the
//! same ones) and are re-exported here.
#![allow(dead_code)]

#[path = "../../benches/workbench/reference.rs"]
mod reference;
// Not every test file uses a reference.
#[allow(unused_imports)]
pub use reference::*;

use deepgen::ops::Activation;
use deepgen::{Gpu, Result, Tensor};
use rand::{RngExt, SeedableRng, rngs::StdRng};

thread_local! {
    static GPU: Gpu = Gpu::new().unwrap_or_else(|e| panic!(
        "these tests need a GPU adapter and found none: {e}\n\
         On CPU-only Linux install Mesa's software Vulkan driver: apt-get install -y mesa-vulkan-drivers"
    ));
}

/// The GPU of this test thread (tests never skip: no adapter is a failure).
pub fn gpu() -> Gpu {
    GPU.with(|g| g.clone())
}

/// Runs `f` once per matmul version the adapter can run (v1, v2, v3 everywhere; v4 with a
/// fixed subgroup size; v5 with 8-lane subgroups, such as lavapipe), forcing it in-process with
/// `Gpu::force_matmul_version`, then restores what was forced before. Says in the test output
/// which versions ran and, for a version the adapter cannot run, that it did not and why:
/// written straight to stderr, which the test harness does not capture (it captures the print
/// macros only), so the line shows in a plain `cargo test` run.
pub fn for_each_matmul_path(f: impl Fn(deepgen::ops::MatmulVersion)) {
    use deepgen::ops::MatmulVersion;
    use std::io::Write;
    use strum::VariantArray;
    let gpu = gpu();
    let before = gpu.forced_matmul_version();
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    for &version in MatmulVersion::VARIANTS {
        let line = match gpu.force_matmul_version(Some(version)) {
            Ok(()) => {
                f(version);
                format!("{test}: matmul {} ran\n", version.name())
            }
            Err(why) => format!("{test}: matmul {} NOT RUN: {why}\n", version.name()),
        };
        std::io::stderr().write_all(line.as_bytes()).ok();
    }
    gpu.force_matmul_version(before).expect("it ran before");
}

/// Runs `f` once per convolution algorithm (im2col, implicit GEMM), forcing it in-process with
/// `Gpu::force_conv_algorithm`, then restores what was forced before.
pub fn for_each_conv_algorithm(f: impl Fn(deepgen::ops::ConvAlgorithm)) {
    use deepgen::ops::ConvAlgorithm;
    let gpu = gpu();
    let before = gpu.forced_conv_algorithm();
    for algorithm in [ConvAlgorithm::Im2col, ConvAlgorithm::Implicit] {
        gpu.force_conv_algorithm(Some(algorithm));
        f(algorithm);
    }
    gpu.force_conv_algorithm(before);
}

/// `n` values uniform in [lo, hi), seeded.
pub fn rand_vec(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` values uniform in [-1, 1) whose magnitude is at least `gap` (away from kinks at 0).
pub fn rand_away_from_zero(n: usize, seed: u64, gap: f32) -> Vec<f32> {
    rand_vec(n, seed, -1.0, 1.0)
        .into_iter()
        .map(|v| {
            if v.abs() < gap {
                v.signum() * gap + v
            } else {
                v
            }
        })
        .collect()
}

pub fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&gpu(), data, shape.to_vec()).expect("upload")
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| element-wise, naming the first failure.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs reference {}",
        got.len(),
        want.len()
    );
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        assert!(
            g.is_finite() && (g - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, reference {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// One instance of every activation, with the parameters the tests use (derived from the enum,
/// so a new activation is tested as soon as it has a sample here and a formula in
/// `ref_activation`).
pub fn activations() -> Vec<Activation> {
    use deepgen::ops::ActivationKind as K;
    use strum::VariantArray;
    K::VARIANTS
        .iter()
        .map(|kind| match kind {
            K::Identity => Activation::Identity,
            K::Relu => Activation::Relu,
            K::LeakyRelu => Activation::LeakyRelu(0.2),
            K::Sigmoid => Activation::Sigmoid,
            K::Tanh => Activation::Tanh,
            K::Exp => Activation::Exp,
            K::Affine => Activation::Affine(-1.5, 0.25),
            K::Sqrt => Activation::Sqrt,
        })
        .collect()
}

// ---- gradient checking ---------------------------------------------------------

/// An input of a gradient check: values, shape, and whether to check its gradient.
pub struct Input {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
    pub check: bool,
}

pub fn input(data: Vec<f32>, shape: &[usize]) -> Input {
    Input {
        data,
        shape: shape.to_vec(),
        check: true,
    }
}

pub fn constant(data: Vec<f32>, shape: &[usize]) -> Input {
    Input {
        data,
        shape: shape.to_vec(),
        check: false,
    }
}

/// Checks the GPU backward of `op` two ways, for L(x) = sum(w * op(x)) with fixed random w:
/// 1. against central finite differences of the f64 reference `reference` (h = 1e-6),
///    element by element, relative tolerance `rtol`;
/// 2. against a central difference of the GPU forward itself along a random direction
///    (h = 1e-2 or 1e-3, whichever is closer), so the kernels' forward and backward agree.
pub fn gradcheck(
    name: &str,
    inputs: &[Input],
    op: impl Fn(&[Tensor]) -> Result<Tensor>,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    rtol: f64,
) {
    let gpu = gpu();
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|i| {
            let t = Tensor::from_slice(&gpu, &i.data, i.shape.clone()).unwrap();
            if i.check { t.requires_grad_() } else { t }
        })
        .collect();
    let out = op(&leaves).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let w = rand_vec(out.numel(), 99, -1.0, 1.0);
    let w_t = Tensor::from_slice(&gpu, &w, out.shape().clone()).unwrap();
    let loss = out.mul(&w_t).unwrap().sum().unwrap();
    let grads = loss
        .backward()
        .unwrap_or_else(|e| panic!("{name}: backward failed: {e}"));

    let ref_inputs: Vec<Vec<f64>> = inputs.iter().map(|i| to_f64(&i.data)).collect();
    let w64 = to_f64(&w);
    let ref_loss =
        |xs: &[Vec<f64>]| -> f64 { reference(xs).iter().zip(&w64).map(|(a, b)| a * b).sum() };
    for (k, inp) in inputs.iter().enumerate() {
        if !inp.check {
            continue;
        }
        let g = grads
            .get(&leaves[k])
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"))
            .to_vec()
            .unwrap();
        assert_eq!(
            g.len(),
            inp.data.len(),
            "{name}: gradient {k} has the wrong size"
        );
        let h = 1e-6;
        let mut numeric = Vec::with_capacity(g.len());
        let mut xs = ref_inputs.clone();
        for j in 0..inp.data.len() {
            let orig = xs[k][j];
            xs[k][j] = orig + h;
            let plus = ref_loss(&xs);
            xs[k][j] = orig - h;
            let minus = ref_loss(&xs);
            xs[k][j] = orig;
            numeric.push((plus - minus) / (2.0 * h));
        }
        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
        assert_close(
            &format!("{name}: d/d input {k} vs finite differences"),
            &g,
            &numeric,
            rtol,
            rtol * scale,
        );

        // GPU directional derivative. Central differences trade rounding (small h, f32 sums)
        // against truncation and kinks (large h, relu): accept the better of two steps.
        let v = rand_vec(inp.data.len(), 7 + k as u64, -1.0, 1.0);
        let directional = |hd: f32| -> f64 {
            let eval = |sign: f32| -> f64 {
                let _ng = deepgen::no_grad();
                let shifted: Vec<Tensor> = inputs
                    .iter()
                    .enumerate()
                    .map(|(kk, i)| {
                        let data: Vec<f32> = if kk == k {
                            i.data
                                .iter()
                                .zip(&v)
                                .map(|(x, d)| x + sign * hd * d)
                                .collect()
                        } else {
                            i.data.clone()
                        };
                        Tensor::from_slice(&gpu, &data, i.shape.clone()).unwrap()
                    })
                    .collect();
                let o = op(&shifted).unwrap().to_vec().unwrap();
                o.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum()
            };
            (eval(1.0) - eval(-1.0)) / (2.0 * hd as f64)
        };
        let analytic: f64 = g.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
        let error = |fd: f64| (fd - analytic).abs() / analytic.abs().max(fd.abs()).max(1e-2);
        let (fd_coarse, fd_fine) = (directional(1e-2), directional(1e-3));
        assert!(
            error(fd_coarse).min(error(fd_fine)) <= 2e-2,
            "{name}: input {k}: GPU directional derivative {fd_coarse} (h 1e-2) / {fd_fine} (h 1e-3) vs backward {analytic}"
        );
    }
}

/// A two-tensor op under test.
pub type BinaryOp = fn(&Tensor, &Tensor) -> Result<Tensor>;
/// A binary f64 reference function.
pub type Ref2 = fn(f64, f64) -> f64;
