//! The kernel workbench, in the manner of llm.c's dev/cuda: every kernel family checked once
//! against its f64 reference, then timed at the models' shapes, with its GFLOP/s, GB/s and
//! fraction of the adapter's measured ceilings (roofline).
//!
//! It is not part of the library. Its two front ends include it by path and only parse
//! arguments: `deepgen bench` (src/main.rs: `#[path = "../benches/workbench/mod.rs"] mod
//! workbench;`) and `cargo bench` (benches/kernels.rs: `mod workbench;`). It uses the library's
//! public API only.
//!
//! | file | family | kernels (shaders/) |
//! | --- | --- | --- |
//! | `ceilings.rs` | the adapter's bandwidth and FMA ceilings | `copy_buffer_to_buffer`, `probe.wgsl` |
//! | `matmul.rs` | matmul, matmul_nt, matmul_tn (v1..v5, the autotuner's pick) | `matmul_naive.wgsl`, `matmul.wgsl`, `matmul_tiled.wgsl`, `matmul_subgroup.wgsl`, `matmul_texture.wgsl` |
//! | `conv.rs` | conv2d, conv_transpose2d, forward and backward (im2col, implicit GEMM, the autotuner's pick) | `conv.wgsl` + the matmuls, `conv_implicit.wgsl` |
//! | `elementwise.rs` | add, mul, relu, sigmoid, tanh, exp | `elementwise.wgsl` |
//! | `reduce.rs` | sum, sum_axis0, sum_axis1 | `reduce.wgsl` |
//! | `vae_loss.rs` | bce_with_logits, kl_divergence, reparameterize, reparameterize_kl | `loss.wgsl`, `vae.wgsl` |
//! | `adam.rs` | one Adam step | `adam.wgsl` |
//! | `reference.rs` | the f64 references, shared with the tests (tests/common/mod.rs includes it) | |
//! | `report.rs` | the report: the JSON of `deepgen bench --json` (a contract) and the text table | |
//!
//! Each family file opens with its kernel's numbered versions and the figure each reached, its
//! cases (a table of shapes) and how to run a given version. This file holds what they share:
//! the options, the one timing path ([`measure`]) and the batching around it
//! ([`Bench::time_calls`]), the check against a reference, and the row builder the families
//! call.
//!
//! Timing: GPU timestamps written into the engine's command stream before and after a batch of
//! calls ([`Gpu::gpu_seconds`]) where the adapter has timestamp queries inside encoders
//! (`gpu-timestamp`), else host time around the batch's submit and the wait (`host`). The
//! ceilings' probes are recorded into the same stream and timed the same way. Rows report the
//! median of several batches; ceilings the best of several runs (other processes only ever slow
//! a run down).

mod adam;
mod ceilings;
mod conv;
mod elementwise;
mod matmul;
mod reduce;
pub mod reference;
mod report;
mod vae_loss;

use std::path::PathBuf;
use std::time::Instant;

use deepgen::{Error, Gpu, Result, Tensor};

use report::format_seconds;
pub use report::{Ceilings, KernelRow, Report, TunerRow};

/// `timing` of a measurement bracketed by GPU timestamps.
pub const TIMING_GPU: &str = "gpu-timestamp";
/// `timing` of a measurement taken on the host around a submit and the wait.
pub const TIMING_HOST: &str = "host";

/// Dispatches one timed batch may hold: below the engine's 2,048 uniform slots per submit, so a
/// batch reaches the GPU as exactly one submit.
const MAX_BATCH_DISPATCHES: u64 = 1500;
/// Largest relative error accepted by the checks: max |got - want| / max |want|.
const TOLERANCE: f64 = 1e-4;

/// The options of `deepgen bench` and `cargo bench` (both front ends parse them with clap).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Only the kernels whose name or shape contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Fewer and smaller shapes, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run only this matmul version (v1..v5, see benches/workbench/matmul.rs) for every product,
    /// conv rows included; without it every version the adapter can run has its matmul rows
    /// and the autotuner picks for the rest.
    #[arg(long, value_parser = matmul::parse_version)]
    pub matmul: Option<deepgen::ops::MatmulVersion>,
}

/// Runs the suite on `gpu`, prints its table and, with `--json`, writes the report atomically.
///
/// Errors: a failed check (an [`Error::Invalid`] naming the kernel and shape); a matmul version
/// the adapter cannot run; GPU errors; the JSON file's I/O errors.
pub fn run(gpu: &Gpu, args: &Args) -> Result<()> {
    let report = run_suite(gpu, args)?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Invalid(format!("serializing the report: {e}")))?;
        deepgen::files::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Measures the ceilings, then checks and times every family, in the order of the report.
fn run_suite(gpu: &Gpu, args: &Args) -> Result<Report> {
    gpu.force_matmul_version(args.matmul)?;
    let plan = Plan::new(args.quick);
    let (ceilings, probes) = ceilings::measure_ceilings(gpu, plan)?;
    let mut bench = Bench {
        gpu,
        filter: args.filter.as_deref(),
        quick: args.quick,
        plan,
        ceilings,
        rows: Vec::new(),
        tuner: Vec::new(),
        version: None,
        forced_matmul: args.matmul,
        rng: rand::SeedableRng::seed_from_u64(2024),
    };
    for p in probes {
        if bench.wants(p.kernel, &p.shape) {
            bench.push(p.kernel, &p.shape, p.seconds, p.work, p.timing, None);
        }
    }
    matmul::run(&mut bench)?;
    conv::run(&mut bench)?;
    elementwise::run(&mut bench)?;
    reduce::run(&mut bench)?;
    vae_loss::run(&mut bench)?;
    adam::run(&mut bench)?;
    gpu.synchronize()?;
    let info = gpu.summary();
    let notes = vec![
        format!(
            "timing: ceilings by {}; kernels by {}",
            bench.ceilings.timing,
            if gpu.has_gpu_timer() {
                "GPU timestamps written into the engine's command stream before and after a \
                 batch of calls (Gpu::gpu_seconds; the engine's host-side recording is not counted)"
            } else {
                "host time around the blocking submit of a pre-recorded batch (excludes the \
                 engine's recording of the ops, includes wgpu's encoding at submit and the wait)"
            }
        ),
        "roofline: % ceil = max(GFLOP/s / FMA ceiling, GB/s / bandwidth ceiling); bytes = each \
         input read once and each output written once; matmul FLOPs 2MKN (shape MxKxN); conv \
         FLOPs 2 N OH OW O C KH KW forward, twice that backward (dx and dweight); a \
         transcendental counts 1 FLOP. Data that stays in cache can beat the copy bandwidth."
            .into(),
        "backward rows: backward of sum(op(...)) minus backward of sum(leaf), i.e. without \
         the loss-gradient broadcast"
            .into(),
        "vs CPU: matrixmultiply::sgemm (crate matrixmultiply 0.3, one thread) on the same \
         shapes and machine, timed in the same run; every kernel's output was checked against \
         its f64 reference (relative error < 1e-4) before timing"
            .into(),
    ];
    Ok(Report {
        adapter: info.name,
        backend: info.backend,
        matmul_path: args
            .matmul
            .map_or("autotuned".to_string(), |v| v.name().to_string()),
        quick: args.quick,
        ceilings: bench.ceilings,
        kernels: bench.rows,
        tuner: bench.tuner,
        notes,
    })
}

// ---- timing ------------------------------------------------------------------------------------

/// How long each measurement runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Seconds a timed batch aims for.
    pub target_s: f64,
    /// Timed batches per row (the median is reported), runs per ceiling (the best).
    pub runs: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                target_s: 0.02,
                runs: 3,
            }
        } else {
            Plan {
                target_s: 0.08,
                runs: 5,
            }
        }
    }
}

/// The middle value (the upper one of an even count). `v` must not be empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One timed batch of GPU work.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    /// Seconds of the batch.
    pub seconds: f64,
    /// [`TIMING_GPU`] or [`TIMING_HOST`].
    pub timing: &'static str,
    /// The engine did not send the batch as one submit (its uniform arena filled): the span
    /// then includes host time between the submits.
    pub split: bool,
}

/// The workbench's one timing path: the seconds the GPU spends on the work `record` records
/// (engine ops, or raw commands through [`Gpu::record`]), after earlier work has finished.
///
/// With GPU timestamps ([`Gpu::gpu_seconds`], where the adapter has timestamp queries inside
/// encoders): the span between a timestamp written before the batch and one after it. Else, on
/// the host: from the end of the recording through the submit and the wait; if the engine
/// submitted during the recording, from before the recording. Should the timestamps read back
/// as no time at all, host time around the whole call is reported instead, as `host`.
pub fn measure(gpu: &Gpu, record: impl FnOnce() -> Result<()>) -> Result<Timed> {
    gpu.synchronize()?;
    let submits = gpu.stats().submits;
    let start = Instant::now();
    if gpu.has_gpu_timer() {
        let seconds = gpu.gpu_seconds(record)?.unwrap_or(0.0);
        // gpu_seconds submits once itself; more means the batch was split.
        let split = gpu.stats().submits - submits > 1;
        return Ok(if seconds > 0.0 {
            Timed {
                seconds,
                timing: TIMING_GPU,
                split,
            }
        } else {
            Timed {
                seconds: start.elapsed().as_secs_f64(),
                timing: TIMING_HOST,
                split,
            }
        });
    }
    record()?;
    let split = gpu.stats().submits != submits;
    // The submit and the wait only, unless work was submitted during recording.
    let clock = if split { start } else { Instant::now() };
    gpu.synchronize()?;
    Ok(Timed {
        seconds: clock.elapsed().as_secs_f64(),
        timing: TIMING_HOST,
        split,
    })
}

/// Median seconds per call of a host function, run in batches of about `plan.target_s` (the
/// CPU reference of the matmul rows).
fn cpu_time(plan: Plan, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    f();
    let single = start.elapsed().as_secs_f64().max(1e-7);
    let reps = ((plan.target_s / single).ceil() as usize).clamp(1, 10_000);
    let times = (0..plan.runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    median(times)
}

// ---- checks ------------------------------------------------------------------------------------

/// Fails unless `got` matches `want` to [`TOLERANCE`]: max |got - want| / max |want|.
fn check(kernel: &str, shape: &str, what: &str, got: &[f32], want: &[f64]) -> Result<()> {
    if got.len() != want.len() {
        return Err(Error::Invalid(format!(
            "bench check failed: {kernel} {shape}: {what} has {} values, the reference {}",
            got.len(),
            want.len()
        )));
    }
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > worst.1 {
            worst = (i, d);
        }
    }
    let rel = worst.1 / scale.max(f64::MIN_POSITIVE);
    if rel < TOLERANCE {
        return Ok(());
    }
    let (i, d) = worst;
    Err(Error::Invalid(format!(
        "bench check failed: {kernel} {shape}: {what} differs from the reference: \
         max |got - want| = {d:.3e} at index {i} (got {}, want {}), {rel:.2e} of max |want| = \
         {scale:.3e}; tolerance {TOLERANCE:.0e}",
        got[i], want[i]
    )))
}

/// The gradient of `t` in `grads`, host side; an error naming `op` if it has none.
fn gradient(grads: &deepgen::Gradients, t: &Tensor, op: &str) -> Result<Vec<f32>> {
    grads
        .get(t)
        .ok_or_else(|| Error::Invalid(format!("bench: {op} gave no gradient")))?
        .to_vec()
}

/// The rows `rows` (each `len` values long) of `data`, concatenated.
fn pick<T: Copy>(data: &[T], rows: &[usize], len: usize) -> Vec<T> {
    rows.iter()
        .flat_map(|&r| data[r * len..(r + 1) * len].iter().copied())
        .collect()
}

/// f32 values as f64, for the references.
fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `128x784`.
fn dims_string(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// FLOPs and minimum bytes moved by one call.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// Floating-point operations (an FMA counts 2, a transcendental 1).
    pub flops: f64,
    /// Bytes: each input read once, each output written once.
    pub bytes: f64,
}

impl Work {
    /// `flops_per` operations per element over `n` elements, moving `floats` f32 values.
    fn per_element(n: usize, flops_per: f64, floats: usize) -> Work {
        Work {
            flops: n as f64 * flops_per,
            bytes: 4.0 * floats as f64,
        }
    }
}

// ---- the row builder that the families share ---------------------------------------------------

/// Builds the report row by row: the families call its check-and-time helpers.
pub struct Bench<'a> {
    gpu: &'a Gpu,
    filter: Option<&'a str>,
    quick: bool,
    plan: Plan,
    ceilings: Ceilings,
    rows: Vec<KernelRow>,
    /// The autotuner's picks against the fastest measured version.
    tuner: Vec<TunerRow>,
    /// The version the next rows ran (set by the families that have several).
    version: Option<String>,
    /// `--matmul`: the one matmul version of the run.
    forced_matmul: Option<deepgen::ops::MatmulVersion>,
    rng: rand::rngs::StdRng,
}

impl Bench<'_> {
    /// Whether the filter keeps the row `kernel` at `shape`.
    fn wants(&self, kernel: &str, shape: &str) -> bool {
        self.filter.is_none_or(|f| {
            kernel.contains(f) || shape.contains(f) || format!("{kernel} {shape}").contains(f)
        })
    }

    /// Host data uniform in [lo, hi) and the same data on the GPU.
    fn tensor(&mut self, dims: &[usize], lo: f32, hi: f32) -> Result<(Vec<f32>, Tensor)> {
        use rand::RngExt;
        let n = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.rng.random_range(lo..hi)).collect();
        let t = Tensor::from_slice(self.gpu, &data, dims)?;
        Ok((data, t))
    }

    /// Adds a row (and says it on stderr, for long runs).
    fn push(
        &mut self,
        kernel: &str,
        shape: &str,
        seconds: f64,
        work: Work,
        timing: &str,
        cpu_gflops: Option<f64>,
    ) {
        let gflops = work.flops / seconds / 1e9;
        let gbps = work.bytes / seconds / 1e9;
        let fraction = (gflops / self.ceilings.fma_gflops).max(gbps / self.ceilings.bandwidth_gbps);
        eprintln!(
            "bench: {kernel} {shape}: {} ({gflops:.2} GFLOP/s, {gbps:.2} GB/s)",
            format_seconds(seconds)
        );
        self.rows.push(KernelRow {
            kernel: kernel.into(),
            shape: shape.into(),
            median_seconds: seconds,
            gflops,
            gbps,
            fraction_of_ceiling: fraction,
            timing: timing.into(),
            cpu_gflops,
            vs_cpu: cpu_gflops.map(|c| gflops / c),
            version: self.version.clone(),
            tuner_pick: None,
        });
    }

    /// Records the autotuner's pick for `kernel` at `shape` against the rows of this run with
    /// that kernel and shape (one per version): marks the pick's row (when `mark`) and adds a
    /// [`TunerRow`]. Nothing if the pick or any other version has no row.
    fn tuner_pick(&mut self, kernel: &str, shape: &str, pick: &str, mark: bool) {
        let rows: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let r = &self.rows[i];
                r.kernel == kernel && r.shape == shape && r.version.is_some()
            })
            .collect();
        let version = |i: usize| self.rows[i].version.clone().unwrap_or_default();
        let Some(&picked) = rows.iter().find(|&&i| version(i) == pick) else {
            return;
        };
        let Some(&fastest) = rows
            .iter()
            .filter(|&&i| version(i) != "auto")
            .min_by(|&&a, &&b| {
                self.rows[a]
                    .median_seconds
                    .total_cmp(&self.rows[b].median_seconds)
            })
        else {
            return;
        };
        let fastest_version = version(fastest);
        if mark {
            for &i in &rows {
                self.rows[i].tuner_pick = Some(i == picked);
            }
        }
        let (p, f) = (
            self.rows[picked].median_seconds,
            self.rows[fastest].median_seconds,
        );
        self.tuner.push(TunerRow {
            kernel: kernel.into(),
            shape: shape.into(),
            pick: pick.into(),
            pick_seconds: p,
            fastest: fastest_version,
            fastest_seconds: f,
            ratio: p / f,
        });
    }

    /// Median seconds per call of `run(setup())`, timed over batches of calls by [`measure`],
    /// and how they were timed.
    ///
    /// Each timed batch first makes its states with `setup` (untimed, submitted and finished:
    /// e.g. the forward graphs whose backward is timed), then records `run` on each state.
    /// Batches are sized to about `plan.target_s` and to at most `max_live` states (memory) and
    /// [`MAX_BATCH_DISPATCHES`] dispatches; a batch that the engine split into several submits
    /// is retried at half the size (a single call that submits on its own is timed as it is).
    /// One warm-up call compiles the pipelines and fills the buffer pool and bind-group cache
    /// first.
    fn time_calls<S>(
        &self,
        max_live: usize,
        mut setup: impl FnMut() -> Result<S>,
        mut run: impl FnMut(S) -> Result<()>,
    ) -> Result<(f64, &'static str)> {
        let gpu = self.gpu;
        // Warm-up, and the dispatches per call.
        let state = setup()?;
        gpu.synchronize()?;
        let before = gpu.stats();
        let start = Instant::now();
        run(state)?;
        let after = gpu.stats();
        gpu.synchronize()?;
        let warm_up = start.elapsed().as_secs_f64();
        let per_call = (after.dispatches - before.dispatches).max(1);
        // One call, to size the batches (the warm-up stands in for it when it took over a
        // second: compiling is then a small part of it).
        let single = if warm_up > 1.0 {
            warm_up
        } else {
            let state = setup()?;
            gpu.synchronize()?;
            let start = Instant::now();
            run(state)?;
            gpu.synchronize()?;
            start.elapsed().as_secs_f64().max(1e-7)
        };
        // A call of over half a second (the slow versions at large shapes) is timed once more,
        // not `plan.runs` times: their rows only need to show how far behind they are.
        let runs = if single > 0.5 { 1 } else { self.plan.runs };
        let mut reps = ((self.plan.target_s / single).ceil() as usize)
            .min(max_live)
            .min((MAX_BATCH_DISPATCHES / per_call) as usize)
            .max(1);
        let mut times = Vec::with_capacity(runs);
        let mut timing = TIMING_GPU;
        while times.len() < runs {
            let states = (0..reps).map(|_| setup()).collect::<Result<Vec<S>>>()?;
            let timed = measure(gpu, || {
                for state in states {
                    run(state)?;
                }
                Ok(())
            })?;
            if timed.split && reps > 1 {
                reps /= 2;
                continue;
            }
            if timed.timing == TIMING_HOST {
                timing = TIMING_HOST;
            }
            times.push(timed.seconds / reps as f64);
        }
        Ok((median(times), timing))
    }

    /// Checks `op()` against the host values `want` once, then times it and adds its row.
    fn forward_row(
        &mut self,
        kernel: &str,
        shape: &str,
        what: &str,
        want: &[f64],
        work: Work,
        op: impl FnMut() -> Result<Tensor>,
    ) -> Result<()> {
        let (seconds, timing) = self.checked_seconds(kernel, shape, what, want, op)?;
        self.push(kernel, shape, seconds, work, timing, None);
        Ok(())
    }

    /// Checks `op()` against the host values `want` once, then returns its time per call
    /// (outside the tape, as inference).
    fn checked_seconds(
        &self,
        kernel: &str,
        shape: &str,
        what: &str,
        want: &[f64],
        mut op: impl FnMut() -> Result<Tensor>,
    ) -> Result<(f64, &'static str)> {
        let got = {
            let _no_grad = deepgen::no_grad();
            op()?.to_vec()?
        };
        check(kernel, shape, what, &got, want)?;
        self.inference_seconds(op)
    }

    /// Seconds per call of `op` outside the tape (as inference), and how they were timed.
    fn inference_seconds(
        &self,
        mut op: impl FnMut() -> Result<Tensor>,
    ) -> Result<(f64, &'static str)> {
        let _no_grad = deepgen::no_grad();
        self.time_calls(
            usize::MAX,
            || Ok(()),
            |()| {
                op()?;
                Ok(())
            },
        )
    }

    /// Times the backward of `forward()` (a tensor shaped `out_dims`) and adds its row: the
    /// backward of `forward().sum()` minus that of a leaf's sum (the loss-gradient broadcast
    /// that every timed backward also runs), so only the op's own backward kernels count.
    /// Should noise leave no positive difference, the row reports the backward with the
    /// broadcast and says so in its shape.
    fn backward_row(
        &mut self,
        kernel: &str,
        shape: &str,
        out_dims: &[usize],
        max_live: usize,
        work: Work,
        mut forward: impl FnMut() -> Result<Tensor>,
    ) -> Result<()> {
        let backward = |loss: Tensor| -> Result<()> {
            loss.backward()?;
            Ok(())
        };
        let (total, timing) = self.time_calls(max_live, || forward()?.sum(), backward)?;
        let leaf = Tensor::zeros(self.gpu, out_dims)?.requires_grad_();
        let (base, base_timing) = self.time_calls(max_live, || leaf.sum(), backward)?;
        let timing = if base_timing == TIMING_HOST {
            TIMING_HOST
        } else {
            timing
        };
        if total - base > 0.0 {
            self.push(kernel, shape, total - base, work, timing, None);
        } else {
            let shape = format!("{shape} (with sum backward)");
            self.push(kernel, &shape, total, work, timing, None);
        }
        Ok(())
    }
}
