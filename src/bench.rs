//! Kernel timing shared by `cargo bench` (benches/kernels.rs) and `deepgen bench`.
//!
//! A measurement records `reps` dispatches of one op into one submit, waits for
//! the GPU, and divides: host timing around a blocking submit, after a warm-up
//! run that compiles the pipeline. The median of several such runs is reported.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// One timed kernel at one shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// Kernel family, e.g. `matmul_nt`.
    pub kernel: String,
    /// Shape, e.g. `128x784x400` (M x K x N for matmul).
    pub shape: String,
    /// Median seconds per call.
    pub median_seconds: f64,
    /// Floating-point operations per call (an FMA counts 2).
    pub flops: f64,
    /// Minimum bytes moved per call (each input read once, each output written once).
    pub bytes: f64,
}

impl Measurement {
    /// Achieved GFLOP/s.
    pub fn gflops(&self) -> f64 {
        self.flops / self.median_seconds / 1e9
    }

    /// Achieved GB/s.
    pub fn gbps(&self) -> f64 {
        self.bytes / self.median_seconds / 1e9
    }
}

/// Median seconds per call of `op`, run `reps` times per submit, `runs` submits.
pub fn time_op(
    gpu: &Gpu,
    reps: usize,
    runs: usize,
    mut op: impl FnMut() -> Result<Tensor>,
) -> Result<f64> {
    let _no_grad = crate::autograd::no_grad();
    drop(op()?);
    gpu.synchronize()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..reps {
            drop(op()?);
        }
        gpu.synchronize()?;
        times.push(start.elapsed().as_secs_f64() / reps as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Which matmul entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// C = A B
    NN,
    /// C = A B^T
    NT,
    /// C = A^T B
    TN,
}

impl MatmulVariant {
    /// The op's name.
    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::NN => "matmul",
            MatmulVariant::NT => "matmul_nt",
            MatmulVariant::TN => "matmul_tn",
        }
    }
}

/// Times C (m x n) = op(A) op(B) with contracted dimension k, on random inputs.
pub fn bench_matmul(
    gpu: &Gpu,
    variant: MatmulVariant,
    m: usize,
    k: usize,
    n: usize,
    budget_flops: f64,
) -> Result<Measurement> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut rand_t = |rows: usize, cols: usize| -> Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Tensor::from_slice(gpu, &data, [rows, cols])
    };
    let (a, b) = match variant {
        MatmulVariant::NN => (rand_t(m, k)?, rand_t(k, n)?),
        MatmulVariant::NT => (rand_t(m, k)?, rand_t(n, k)?),
        MatmulVariant::TN => (rand_t(k, m)?, rand_t(k, n)?),
    };
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((budget_flops / flops) as usize).clamp(1, 200);
    let seconds = time_op(gpu, reps, 5, || match variant {
        MatmulVariant::NN => a.matmul(&b),
        MatmulVariant::NT => a.matmul_nt(&b),
        MatmulVariant::TN => a.matmul_tn(&b),
    })?;
    Ok(Measurement {
        kernel: variant.name().into(),
        shape: format!("{m}x{k}x{n}"),
        median_seconds: seconds,
        flops,
        bytes: 4.0 * (m * k + k * n + m * n) as f64,
    })
}

/// What `deepgen bench` runs.
#[derive(Clone, Debug, Default)]
pub struct SuiteOptions {
    /// Only kernels whose name or shape contains this text.
    pub filter: Option<String>,
    /// Fewer, smaller shapes.
    pub quick: bool,
}

/// The measured ceilings of the adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ceilings {
    /// Device-to-device copy bandwidth, GB/s (bytes read + bytes written per second).
    pub bandwidth_gbps: f64,
    /// Arithmetic rate of a compute-bound FMA kernel, GFLOP/s (an FMA counts 2).
    pub fma_gflops: f64,
}

/// One kernel's row in the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelRow {
    /// Kernel family, e.g. `matmul`.
    pub kernel: String,
    /// Shape, e.g. `1024x1024x1024`.
    pub shape: String,
    /// Median seconds per call.
    pub median_seconds: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
    /// Achieved GB/s.
    pub gbps: f64,
    /// Achieved fraction of the binding ceiling (roofline).
    pub fraction_of_ceiling: f64,
    /// `gpu-timestamp` or `host`.
    pub timing: String,
}

/// The output of `deepgen bench`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SuiteReport {
    /// Adapter name.
    pub adapter: String,
    /// Measured ceilings.
    pub ceilings: Ceilings,
    /// One row per kernel and shape.
    pub kernels: Vec<KernelRow>,
}

impl SuiteReport {
    /// The report as a text table.
    pub fn table(&self) -> String {
        todo!("implemented by the benchmark suite")
    }
}

/// Runs the benchmark suite.
pub fn run_suite(_gpu: &Gpu, _opts: &SuiteOptions) -> Result<SuiteReport> {
    todo!("implemented by the benchmark suite")
}
