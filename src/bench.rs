//! Kernel timing shared by `cargo bench` (benches/kernels.rs) and `deepgen bench`.
//!
//! [`run_suite`] is the benchmark suite: it measures the adapter's two ceilings (copy bandwidth
//! and FMA rate, with GPU timestamp queries), then checks and times every kernel family at the
//! models' shapes and reports each kernel's fraction of the ceiling that binds it (roofline).
//! Matmuls are set beside a CPU reference (`matrixmultiply::sgemm`, one thread).
//!
//! [`time_op`] is the older, simpler helper (used by `examples/profile_conv.rs`): it records
//! `reps` dispatches of one op into one submit, waits for the GPU, and divides: host timing
//! around recording plus a blocking submit, after a warm-up run that compiles the pipeline.
//! The median of several such runs is reported.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, TimestampPair};
use crate::ops::{
    Conv2dOptions, bce_with_logits, conv_transpose2d, conv2d, kl_divergence, reparameterize,
    reparameterize_kl,
};
use crate::optim::Adam;
use crate::tensor::Tensor;

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

// ---------------------------------------------------------------------------------------------
// The suite of `deepgen bench` and `cargo bench`.
// ---------------------------------------------------------------------------------------------

/// `timing` of a measurement bracketed by GPU timestamp queries (work this module records itself).
pub const TIMING_GPU: &str = "gpu-timestamp";
/// `timing` of a measurement taken on the host around a blocking submit (see [`run_suite`]).
pub const TIMING_HOST: &str = "host";

/// How the suite times the engine's ops on `gpu`: GPU timestamps written into the engine's
/// command stream ([`Gpu::gpu_seconds`]) where the adapter has timestamp queries inside
/// encoders, host time around a blocking submit elsewhere.
fn op_timing(gpu: &Gpu) -> &'static str {
    if gpu.has_gpu_timer() {
        TIMING_GPU
    } else {
        TIMING_HOST
    }
}

/// Dispatches one timed batch may hold: below the engine's 2,048 uniform slots per submit, so a
/// batch reaches the GPU as exactly one submit.
const MAX_BATCH_DISPATCHES: u64 = 1500;
/// Largest relative error accepted by the checks: max |got - want| / max |want|.
const TOLERANCE: f64 = 1e-4;
/// Bytes copied by `copy_buffer_to_buffer` to measure the bandwidth ceiling (the shader copy
/// moves at most the adapter's largest storage binding).
const COPY_BYTES: u64 = 256 << 20;
/// GPU memory the graphs of one timed backward batch may hold (they are alive together).
const BACKWARD_BATCH_BYTES: f64 = 256.0 * 1048576.0;

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
    /// Device-to-device copy bandwidth, GB/s (bytes read + bytes written per second): the better
    /// of `copy_gbps` and `shader_copy_gbps`.
    pub bandwidth_gbps: f64,
    /// Arithmetic rate of a compute-bound FMA kernel, GFLOP/s (an FMA counts 2).
    pub fma_gflops: f64,
    /// `copy_buffer_to_buffer` of `copy_bytes` bytes, GB/s read + written.
    pub copy_gbps: f64,
    /// A copy of `shader_copy_bytes` bytes by a compute shader (vec4 loads and stores), GB/s
    /// read + written.
    pub shader_copy_gbps: f64,
    /// Bytes per `copy_buffer_to_buffer`.
    pub copy_bytes: u64,
    /// Bytes per shader copy (at most the adapter's largest storage binding).
    pub shader_copy_bytes: u64,
    /// How the ceilings were timed: `gpu-timestamp` or `host`.
    pub timing: String,
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
    /// GFLOP/s of the CPU reference at the same shape (`matrixmultiply::sgemm` on one thread,
    /// same process and machine); matmul rows only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_gflops: Option<f64>,
    /// `gflops / cpu_gflops`: above 1 the GPU kernel beats the CPU reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_cpu: Option<f64>,
}

/// The output of `deepgen bench`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SuiteReport {
    /// Adapter name.
    pub adapter: String,
    /// Backend (Vulkan, Metal, ...).
    pub backend: String,
    /// The matmul kernels in use (`Texture` or `Generic`, see [`crate::ops::MatmulPath`]).
    pub matmul_path: String,
    /// Whether this was the `--quick` suite.
    pub quick: bool,
    /// Measured ceilings.
    pub ceilings: Ceilings,
    /// One row per kernel and shape.
    pub kernels: Vec<KernelRow>,
    /// How to read the figures: timing methods, FLOP and byte conventions.
    pub notes: Vec<String>,
}

/// `1.234 s`, `12.34 ms` or `123.4 us`.
fn format_seconds(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} us", s * 1e6)
    }
}

impl SuiteReport {
    /// The report as a text table: kernel, shape, median time, GFLOP/s, GB/s, percent of the
    /// binding ceiling, timing method, and (matmul) the ratio to the CPU reference.
    pub fn table(&self) -> String {
        let c = &self.ceilings;
        let mut s = format!(
            "adapter: {} ({}); matmul path: {}{}\n\
             ceilings ({}): bandwidth {:.1} GB/s (read + written; copy_buffer_to_buffer of \
             {} MiB {:.1}, shader copy of {} MiB {:.1}), FMA {:.1} GFLOP/s\n\n",
            self.adapter,
            self.backend,
            self.matmul_path,
            if self.quick { "; --quick" } else { "" },
            c.timing,
            c.bandwidth_gbps,
            c.copy_bytes >> 20,
            c.copy_gbps,
            c.shader_copy_bytes >> 20,
            c.shader_copy_gbps,
            c.fma_gflops,
        );
        let header = format!(
            "{:<26} {:<24} {:>11} {:>9} {:>8} {:>7}  {:<13} {:>16}\n",
            "kernel", "shape", "time", "GFLOP/s", "GB/s", "% ceil", "timing", "vs CPU (GFLOP/s)"
        );
        s.push_str(&header);
        s.push_str(&"-".repeat(header.len() - 1));
        s.push('\n');
        for r in &self.kernels {
            let vs_cpu = match (r.vs_cpu, r.cpu_gflops) {
                (Some(v), Some(g)) => format!("{v:.2}x ({g:.1})"),
                _ => String::new(),
            };
            s.push_str(&format!(
                "{:<26} {:<24} {:>11} {:>9.2} {:>8.2} {:>6.1}%  {:<13} {:>16}\n",
                r.kernel,
                r.shape,
                format_seconds(r.median_seconds),
                r.gflops,
                r.gbps,
                100.0 * r.fraction_of_ceiling,
                r.timing,
                vs_cpu
            ));
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str(&format!("note: {n}\n"));
            }
        }
        s
    }
}

/// How long each measurement runs.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Seconds a timed batch aims for.
    target_s: f64,
    /// Timed batches per row; the median is reported.
    runs: usize,
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

/// Median seconds per call of `run(setup())`, timed over a batch of calls: with GPU timestamps
/// written around the batch ([`Gpu::gpu_seconds`]) where the adapter has them, else on the host
/// around the batch's blocking submit.
///
/// Each timed batch first makes its states with `setup` (untimed, submitted and finished: e.g.
/// the forward graphs whose backward is timed), then records `run` on each state. GPU timestamps
/// cover exactly the batch's GPU work; host timing starts after the recording, so it excludes
/// the engine's host-side recording of the ops but includes wgpu's encoding and validation at
/// submit, the submit itself and the wait. Batches are sized to about `plan.target_s` and to at most
/// `max_live` states (memory) and [`MAX_BATCH_DISPATCHES`] dispatches; a batch that the engine
/// submitted early (its uniform arena filled) is retried at half the size, and a single call
/// that submits on its own is timed with its recording. One warm-up call compiles the pipelines
/// and fills the buffer pool and bind-group cache first.
fn time_calls<S>(
    gpu: &Gpu,
    plan: Plan,
    max_live: usize,
    mut setup: impl FnMut() -> Result<S>,
    mut run: impl FnMut(S) -> Result<()>,
) -> Result<f64> {
    // Warm-up, and the dispatches per call.
    let state = setup()?;
    gpu.synchronize()?;
    let before = gpu.stats();
    run(state)?;
    let after = gpu.stats();
    gpu.synchronize()?;
    let per_call = (after.dispatches - before.dispatches).max(1);
    // A call that submits on its own (over 2,048 dispatches) is timed with its recording.
    let self_submitting = after.submits != before.submits;
    // One call, to size the batches.
    let state = setup()?;
    gpu.synchronize()?;
    let start = Instant::now();
    run(state)?;
    gpu.synchronize()?;
    let single = start.elapsed().as_secs_f64().max(1e-7);
    let mut reps = ((plan.target_s / single).ceil() as usize)
        .min(max_live)
        .min((MAX_BATCH_DISPATCHES / per_call) as usize)
        .max(1);
    if self_submitting {
        reps = 1;
    }
    let mut times = Vec::with_capacity(plan.runs);
    while times.len() < plan.runs {
        let states = (0..reps).map(|_| setup()).collect::<Result<Vec<S>>>()?;
        gpu.synchronize()?;
        let submits = gpu.stats().submits;
        if gpu.has_gpu_timer() && !self_submitting {
            // GPU timestamps written into the command stream around the batch.
            let seconds = gpu.gpu_seconds(|| {
                for state in states {
                    run(state)?;
                }
                Ok(())
            })?;
            // gpu_seconds submits once itself; more means the batch was split.
            if gpu.stats().submits - submits > 1 && reps > 1 {
                reps /= 2;
                continue;
            }
            times.push(seconds.unwrap_or(f64::NAN) / reps as f64);
            continue;
        }
        let start = Instant::now();
        for state in states {
            run(state)?;
        }
        let flushed = gpu.stats().submits != submits;
        if flushed && !self_submitting && reps > 1 {
            // Part of the batch ran during recording: retry smaller.
            gpu.synchronize()?;
            reps /= 2;
            continue;
        }
        // The submit and the wait only, unless work was submitted during recording.
        let clock = if flushed { start } else { Instant::now() };
        gpu.synchronize()?;
        times.push(clock.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(median(times))
}

/// Median seconds per call of a host function, run in batches of about `plan.target_s`.
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

/// The gradient of `t` in `grads`, host side; an error naming `op` if it has none.
fn gradient(grads: &crate::Gradients, t: &Tensor, op: &str) -> Result<Vec<f32>> {
    grads
        .get(t)
        .ok_or_else(|| Error::Invalid(format!("bench: {op} gave no gradient")))?
        .to_vec()
}

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

/// The rows `rows` (each `len` values long) of `data`, concatenated.
fn pick<T: Copy>(data: &[T], rows: &[usize], len: usize) -> Vec<T> {
    rows.iter()
        .flat_map(|&r| data[r * len..(r + 1) * len].iter().copied())
        .collect()
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
struct Work {
    flops: f64,
    bytes: f64,
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

// ---------------------------------------------------------------------------------------------
// Ceilings: a large buffer copy and a compute-bound FMA kernel, timed with GPU timestamps.
// ---------------------------------------------------------------------------------------------

/// The arithmetic-rate probe (a measurement tool, not an engine kernel). Each invocation keeps
/// 8 independent vec4 accumulators in registers and runs ITERS rounds of 16 vec4 FMAs on them
/// (two per accumulator): 16 * 4 lanes * 2 = 128 FLOPs per round. The result is stored only if
/// it equals a value it never reaches, which keeps every FMA live without a memory stream.
/// Grid: (min(G, 65535), ceil(G / 65535), 1) workgroups of 64.
const FMA_WGSL: &str = r#"
const ITERS: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> sink: array<vec4<f32>>;

@compute @workgroup_size(64)
fn fma_probe(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    let s = f32(i & 1023u) * 1e-6;
    let m = vec4<f32>(0.99991, 0.99993, 0.99995, 0.99997);
    let c = vec4<f32>(1e-6, 2e-6, 3e-6, 4e-6);
    var a0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    for (var r = 0u; r < ITERS; r++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    let total = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    if (total.x == 1234.5678) {
        sink[i & 15u] = total;
    }
}
"#;

/// FLOPs of one invocation of [`FMA_WGSL`]: ITERS rounds x 16 vec4 FMAs x 4 lanes x 2.
const FMA_FLOPS_PER_INVOCATION: f64 = 256.0 * 16.0 * 4.0 * 2.0;
/// Workgroup size of [`FMA_WGSL`].
const FMA_WORKGROUP: u64 = 64;

/// The bandwidth probe: `dst = src` with vec4 loads and stores, a grid-stride loop.
const COPY_WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy_probe(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>) {
    let n = arrayLength(&dst);
    let stride = groups.x * 256u;
    for (var i = gid.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}
"#;

/// Workgroups of [`COPY_WGSL`]'s grid-stride loop.
const COPY_GROUPS: u32 = 4096;

/// Times work recorded straight into wgpu command encoders, with timestamp queries where the
/// device has them.
struct Stopwatch<'a> {
    gpu: &'a Gpu,
    /// The two timestamps, where the device has timestamp queries.
    queries: Option<TimestampPair>,
}

impl<'a> Stopwatch<'a> {
    fn new(gpu: &'a Gpu) -> Stopwatch<'a> {
        let device = gpu.device();
        let queries = device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| TimestampPair::new(device));
        Stopwatch { gpu, queries }
    }

    /// Submits what `record` records and returns (seconds, timing). `record` gets the query set,
    /// if any, and must write timestamp 0 before its work and 1 after it (as compute-pass
    /// timestamp writes). Falls back to host time around the submit and wait when the device has
    /// no timestamp queries or they read back as zero.
    fn time(
        &self,
        record: impl FnOnce(&mut wgpu::CommandEncoder, Option<&wgpu::QuerySet>),
    ) -> Result<(f64, &'static str)> {
        let device = self.gpu.device();
        let queue = self.gpu.queue();
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("deepgen bench probe"),
        });
        record(&mut encoder, self.queries.as_ref().map(|q| &q.set));
        if let Some(pair) = &self.queries {
            pair.resolve(&mut encoder);
        }
        let start = Instant::now();
        queue.submit([encoder.finish()]);
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let host = start.elapsed().as_secs_f64();
        for scope in [validation, oom] {
            if let Some(e) = crate::gpu::block_on(scope.pop()) {
                return Err(Error::Gpu(format!("bench probe: {e}")));
            }
        }
        let Some(pair) = &self.queries else {
            return Ok((host, TIMING_HOST));
        };
        let ticks = pair.read(self.gpu)?;
        let period_ns = queue.get_timestamp_period() as f64;
        if ticks[0] == 0 || ticks[1] <= ticks[0] || period_ns <= 0.0 {
            return Ok((host, TIMING_HOST));
        }
        Ok(((ticks[1] - ticks[0]) as f64 * period_ns * 1e-9, TIMING_GPU))
    }
}

/// Timestamp writes for a pass: `begin` writes query 0 at its start, `end` query 1 at its end.
fn pass_timestamps(
    set: Option<&wgpu::QuerySet>,
    begin: bool,
    end: bool,
) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
    set.map(|query_set| wgpu::ComputePassTimestampWrites {
        query_set,
        beginning_of_pass_write_index: begin.then_some(0),
        end_of_pass_write_index: end.then_some(1),
    })
}

/// A compute pipeline of one WGSL probe with an automatic layout.
fn probe_pipeline(gpu: &Gpu, source: &str, entry: &str) -> wgpu::ComputePipeline {
    let device = gpu.device();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(entry),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// Workgroup grid for `groups` workgroups: (min(G, max), ceil(G / max), 1).
fn probe_grid(gpu: &Gpu, groups: u64) -> [u32; 3] {
    let max = gpu
        .device()
        .limits()
        .max_compute_workgroups_per_dimension
        .max(1) as u64;
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(max);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}

/// One ceiling measurement, as a row of the report.
struct Probe {
    kernel: &'static str,
    shape: String,
    seconds: f64,
    work: Work,
    timing: &'static str,
}

/// Measures the bandwidth ceiling (a buffer copy, and the same copy by a shader) and the FMA
/// ceiling. Each is the best of `runs` timings (other processes only ever slow a run down).
fn measure_ceilings(gpu: &Gpu, plan: Plan) -> Result<(Ceilings, Vec<Probe>)> {
    gpu.synchronize()?;
    let device = gpu.device();
    let watch = Stopwatch::new(gpu);
    let limits = device.limits();
    let bytes = COPY_BYTES.min(limits.max_buffer_size) / 256 * 256;
    let shader_bytes = bytes.min(limits.max_storage_buffer_binding_size) / 256 * 256;
    let binding = |buffer| {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: std::num::NonZeroU64::new(shader_bytes),
        })
    };
    let buffer = |label| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (src, dst) = (
        buffer("deepgen bench copy src"),
        buffer("deepgen bench copy dst"),
    );
    let best = |f: &mut dyn FnMut() -> Result<(f64, &'static str)>| -> Result<(f64, &'static str)> {
        // The first run also pays for wgpu's lazy zeroing of the new buffers.
        f()?;
        let mut best = (f64::INFINITY, TIMING_GPU);
        for _ in 0..plan.runs {
            let (t, timing) = f()?;
            if t < best.0 {
                best = (t, timing);
            }
        }
        Ok(best)
    };
    // copy_buffer_to_buffer, bracketed by two empty passes that carry the timestamps.
    let (copy_s, copy_timing) = best(&mut || {
        watch.time(|encoder, set| {
            drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("deepgen bench copy start"),
                timestamp_writes: pass_timestamps(set, true, false),
            }));
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
            drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("deepgen bench copy end"),
                timestamp_writes: pass_timestamps(set, false, true),
            }));
        })
    })?;
    // The same copy by a shader.
    let copy_pipeline = probe_pipeline(gpu, COPY_WGSL, "copy_probe");
    let copy_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("deepgen bench copy probe"),
        layout: &copy_pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: binding(&src),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: binding(&dst),
            },
        ],
    });
    let (shader_s, shader_timing) = best(&mut || {
        watch.time(|encoder, set| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("deepgen bench copy probe"),
                timestamp_writes: pass_timestamps(set, true, true),
            });
            pass.set_pipeline(&copy_pipeline);
            pass.set_bind_group(0, &copy_group, &[]);
            pass.dispatch_workgroups(COPY_GROUPS, 1, 1);
        })
    })?;
    drop((src, dst));
    // FMA: grow the grid until one dispatch runs for the target time.
    let fma_pipeline = probe_pipeline(gpu, FMA_WGSL, "fma_probe");
    let sink = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("deepgen bench fma sink"),
        size: 256,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let fma_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("deepgen bench fma probe"),
        layout: &fma_pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: sink.as_entire_binding(),
        }],
    });
    let fma = |groups: u64| {
        let grid = probe_grid(gpu, groups);
        watch.time(|encoder, set| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("deepgen bench fma probe"),
                timestamp_writes: pass_timestamps(set, true, true),
            });
            pass.set_pipeline(&fma_pipeline);
            pass.set_bind_group(0, &fma_group, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        })
    };
    let mut groups: u64 = 64;
    fma(groups)?;
    loop {
        let (t, _) = fma(groups)?;
        if t >= plan.target_s / 2.0 || groups >= 1 << 22 {
            break;
        }
        groups = (groups as f64 * (plan.target_s / t.max(1e-6)).clamp(2.0, 64.0)) as u64;
        groups = groups.min(1 << 22);
    }
    let (fma_s, fma_timing) = best(&mut || fma(groups))?;
    let invocations = (probe_grid(gpu, groups)
        .iter()
        .map(|&g| g as u64)
        .product::<u64>()
        * FMA_WORKGROUP) as f64;
    let fma_flops = invocations * FMA_FLOPS_PER_INVOCATION;

    let copy_work = Work {
        flops: 0.0,
        bytes: 2.0 * bytes as f64,
    };
    let shader_work = Work {
        flops: 0.0,
        bytes: 2.0 * shader_bytes as f64,
    };
    let copy_gbps = copy_work.bytes / copy_s / 1e9;
    let shader_copy_gbps = shader_work.bytes / shader_s / 1e9;
    let fma_gflops = fma_flops / fma_s / 1e9;
    let timing = if [copy_timing, shader_timing, fma_timing].contains(&TIMING_HOST) {
        TIMING_HOST
    } else {
        TIMING_GPU
    };
    let ceilings = Ceilings {
        bandwidth_gbps: copy_gbps.max(shader_copy_gbps),
        fma_gflops,
        copy_gbps,
        shader_copy_gbps,
        copy_bytes: bytes,
        shader_copy_bytes: shader_bytes,
        timing: timing.into(),
    };
    let probes = vec![
        Probe {
            kernel: "copy_buffer_to_buffer",
            shape: format!("{} MiB", bytes >> 20),
            seconds: copy_s,
            work: copy_work,
            timing: copy_timing,
        },
        Probe {
            kernel: "copy (shader probe)",
            shape: format!("{} MiB", shader_bytes >> 20),
            seconds: shader_s,
            work: shader_work,
            timing: shader_timing,
        },
        Probe {
            kernel: "fma (shader probe)",
            shape: format!("{invocations} invocations"),
            seconds: fma_s,
            work: Work {
                flops: fma_flops,
                bytes: 0.0,
            },
            timing: fma_timing,
        },
    ];
    Ok((ceilings, probes))
}

// ---------------------------------------------------------------------------------------------
// The kernels.
// ---------------------------------------------------------------------------------------------

/// A convolution layer of the DCGAN or the conv VAE (square images and kernels).
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    /// conv_transpose2d instead of conv2d.
    transpose: bool,
    n: usize,
    cin: usize,
    /// Input height and width.
    hw: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
}

/// The convolution layers of the DCGAN (first four, batch 128) and of the conv VAE.
const CONV_CASES: [ConvCase; 8] = {
    const fn case(transpose: bool, cin: usize, hw: usize, cout: usize, bias: bool) -> ConvCase {
        ConvCase {
            transpose,
            n: 128,
            cin,
            hw,
            cout,
            k: 4,
            stride: 2,
            pad: 1,
            bias,
        }
    }
    [
        // DCGAN discriminator and generator.
        case(false, 1, 28, 64, true),
        case(false, 64, 14, 128, false),
        case(true, 128, 7, 64, false),
        case(true, 64, 14, 1, true),
        // Conv VAE encoder and decoder.
        case(false, 1, 28, 32, true),
        case(false, 32, 14, 64, true),
        case(true, 64, 7, 32, true),
        case(true, 32, 14, 1, true),
    ]
};

impl ConvCase {
    fn kernel(&self) -> &'static str {
        if self.transpose {
            "conv_transpose2d"
        } else {
            "conv2d"
        }
    }

    /// `128x64x14x14->128 k4s2p1`: input (N, C, H, W) -> output channels, kernel, stride, padding.
    fn shape(&self) -> String {
        format!(
            "{}x{}x{}x{}->{} k{}s{}p{}",
            self.n, self.cin, self.hw, self.hw, self.cout, self.k, self.stride, self.pad
        )
    }

    fn input_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.hw, self.hw]
    }

    /// conv2d: (O, C, KH, KW); conv_transpose2d: (C_in, C_out, KH, KW) (PyTorch's layouts).
    fn weight_dims(&self) -> [usize; 4] {
        if self.transpose {
            [self.cin, self.cout, self.k, self.k]
        } else {
            [self.cout, self.cin, self.k, self.k]
        }
    }

    fn output_dims(&self) -> [usize; 4] {
        let o = if self.transpose {
            (self.hw - 1) * self.stride + self.k - 2 * self.pad
        } else {
            (self.hw + 2 * self.pad - self.k) / self.stride + 1
        };
        [self.n, self.cout, o, o]
    }

    /// Forward FLOPs: 2 N OH OW O C KH KW of the convolution (for a transposed convolution, of
    /// the convolution it is the transpose of: 2 N H W C_in C_out KH KW).
    fn forward_flops(&self) -> f64 {
        let small = if self.transpose {
            self.hw
        } else {
            self.output_dims()[2]
        };
        2.0 * (self.n * small * small * self.cin * self.cout * self.k * self.k) as f64
    }

    fn numel(dims: [usize; 4]) -> usize {
        dims.iter().product()
    }

    /// Forward: reads x, weight, bias, writes y. Backward: reads x, weight, dy, writes dx,
    /// dweight, dbias.
    fn work(&self, backward: bool) -> Work {
        let x = Self::numel(self.input_dims());
        let w = Self::numel(self.weight_dims());
        let y = Self::numel(self.output_dims());
        let b = if self.bias { self.cout } else { 0 };
        if backward {
            Work {
                flops: 2.0 * self.forward_flops(),
                bytes: 4.0 * (x + w + y + x + w + b) as f64,
            }
        } else {
            Work {
                flops: self.forward_flops(),
                bytes: 4.0 * (x + w + b + y) as f64,
            }
        }
    }

    /// GPU bytes one forward graph holds for its backward (unfolded input, output, loss).
    fn graph_bytes(&self) -> f64 {
        let [_, _, oh, ow] = self.output_dims();
        let unfolded = if self.transpose {
            self.n * self.hw * self.hw * (self.cin + self.cout * self.k * self.k)
        } else {
            self.n * oh * ow * self.cin * self.k * self.k
        };
        4.0 * (unfolded + 2 * Self::numel(self.output_dims())) as f64
    }

    /// Calls `f(y index, x index, weight index)` for every multiply-add of the forward pass
    /// whose sample is in `samples` and whose weight's first index is in `w0s`.
    fn taps(&self, samples: &[usize], w0s: &[usize], mut f: impl FnMut(usize, usize, usize)) {
        let [_, cin, h, w] = self.input_dims();
        let [_, cout, oh, ow] = self.output_dims();
        let (k, s, p) = (self.k, self.stride as isize, self.pad as isize);
        let inside = |v: isize, len: usize| (0..len as isize).contains(&v);
        for &n in samples {
            for &w0 in w0s {
                if !self.transpose {
                    // w0 = output channel o.
                    let o = w0;
                    for (yh, yw, c, kh, kw) in itertools5(oh, ow, cin, k, k) {
                        let ih = yh as isize * s - p + kh as isize;
                        let iw = yw as isize * s - p + kw as isize;
                        if inside(ih, h) && inside(iw, w) {
                            f(
                                ((n * cout + o) * oh + yh) * ow + yw,
                                ((n * cin + c) * h + ih as usize) * w + iw as usize,
                                ((o * cin + c) * k + kh) * k + kw,
                            );
                        }
                    }
                } else {
                    // w0 = input channel ci.
                    let ci = w0;
                    for (ih, iw, co, kh, kw) in itertools5(h, w, cout, k, k) {
                        let yh = ih as isize * s - p + kh as isize;
                        let yw = iw as isize * s - p + kw as isize;
                        if inside(yh, oh) && inside(yw, ow) {
                            f(
                                ((n * cout + co) * oh + yh as usize) * ow + yw as usize,
                                ((n * cin + ci) * h + ih) * w + iw,
                                ((ci * cout + co) * k + kh) * k + kw,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Every (a, b, c, d, e) below the bounds, last fastest.
fn itertools5(
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
    (0..a).flat_map(move |i| {
        (0..b).flat_map(move |j| {
            (0..c).flat_map(move |l| (0..d).flat_map(move |m| (0..e).map(move |q| (i, j, l, m, q))))
        })
    })
}

/// The element-wise ops of the suite.
#[derive(Clone, Copy, Debug)]
enum Elementwise {
    Add,
    Mul,
    Relu,
    Sigmoid,
    Tanh,
    Exp,
}

impl Elementwise {
    const ALL: [Elementwise; 6] = [
        Elementwise::Add,
        Elementwise::Mul,
        Elementwise::Relu,
        Elementwise::Sigmoid,
        Elementwise::Tanh,
        Elementwise::Exp,
    ];

    fn name(self) -> &'static str {
        match self {
            Elementwise::Add => "add",
            Elementwise::Mul => "mul",
            Elementwise::Relu => "relu",
            Elementwise::Sigmoid => "sigmoid",
            Elementwise::Tanh => "tanh",
            Elementwise::Exp => "exp",
        }
    }

    fn binary(self) -> bool {
        matches!(self, Elementwise::Add | Elementwise::Mul)
    }

    /// Counted FLOPs per element (a transcendental counts 1): sigmoid 1 / (1 + exp(-x)) 4,
    /// tanh (1 - exp(-2x)) / (1 + exp(-2x)) 5.
    fn flops(self) -> f64 {
        match self {
            Elementwise::Sigmoid => 4.0,
            Elementwise::Tanh => 5.0,
            _ => 1.0,
        }
    }

    fn host(self, a: f64, b: f64) -> f64 {
        match self {
            Elementwise::Add => a + b,
            Elementwise::Mul => a * b,
            Elementwise::Relu => a.max(0.0),
            Elementwise::Sigmoid => 1.0 / (1.0 + (-a).exp()),
            Elementwise::Tanh => a.tanh(),
            Elementwise::Exp => a.exp(),
        }
    }

    fn run(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Elementwise::Add => a.add(b),
            Elementwise::Mul => a.mul(b),
            Elementwise::Relu => a.relu(),
            Elementwise::Sigmoid => a.sigmoid(),
            Elementwise::Tanh => a.tanh(),
            Elementwise::Exp => a.exp(),
        }
    }
}

/// Builds the report row by row.
struct Suite<'a> {
    gpu: &'a Gpu,
    filter: Option<&'a str>,
    quick: bool,
    plan: Plan,
    ceilings: Ceilings,
    rows: Vec<KernelRow>,
    rng: rand::rngs::StdRng,
}

impl Suite<'_> {
    fn wants(&self, kernel: &str, shape: &str) -> bool {
        self.filter.is_none_or(|f| {
            kernel.contains(f) || shape.contains(f) || format!("{kernel} {shape}").contains(f)
        })
    }

    fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        use rand::RngExt;
        (0..n).map(|_| self.rng.random_range(lo..hi)).collect()
    }

    /// Host data uniform in [lo, hi) and the same data on the GPU.
    fn tensor(&mut self, dims: &[usize], lo: f32, hi: f32) -> Result<(Vec<f32>, Tensor)> {
        let data = self.uniform(dims.iter().product(), lo, hi);
        let t = Tensor::from_slice(self.gpu, &data, dims)?;
        Ok((data, t))
    }

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
        });
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
        let seconds = self.checked_seconds(kernel, shape, what, want, op)?;
        self.push(kernel, shape, seconds, work, op_timing(self.gpu), None);
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
    ) -> Result<f64> {
        let _no_grad = crate::autograd::no_grad();
        let got = op()?.to_vec()?;
        check(kernel, shape, what, &got, want)?;
        time_calls(
            self.gpu,
            self.plan,
            usize::MAX,
            || Ok(()),
            |()| {
                op()?;
                Ok(())
            },
        )
    }

    /// Seconds of the backward of `leaf.sum()` for a leaf shaped `dims`: the loss-gradient
    /// broadcast that every timed backward also runs, subtracted from it.
    fn sum_backward_seconds(&self, dims: &[usize], max_live: usize) -> Result<f64> {
        let leaf = Tensor::zeros(self.gpu, dims)?.requires_grad_();
        time_calls(
            self.gpu,
            self.plan,
            max_live,
            || leaf.sum(),
            |loss| {
                loss.backward()?;
                Ok(())
            },
        )
    }

    /// Times the backward of `forward()` (a tensor shaped `out_dims`) and adds its row: the
    /// backward of `forward().sum()` minus that of a leaf's sum, so only the op's own backward
    /// kernels count. Should noise leave no positive difference, the row reports the backward
    /// with the loss-gradient broadcast and says so in its shape.
    fn backward_row(
        &mut self,
        kernel: &str,
        shape: &str,
        out_dims: &[usize],
        max_live: usize,
        work: Work,
        mut forward: impl FnMut() -> Result<Tensor>,
    ) -> Result<()> {
        let total = time_calls(
            self.gpu,
            self.plan,
            max_live,
            || forward()?.sum(),
            |loss| {
                loss.backward()?;
                Ok(())
            },
        )?;
        let base = self.sum_backward_seconds(out_dims, max_live)?;
        if total - base > 0.0 {
            self.push(kernel, shape, total - base, work, op_timing(self.gpu), None);
        } else {
            let shape = format!("{shape} (with sum backward)");
            self.push(kernel, &shape, total, work, op_timing(self.gpu), None);
        }
        Ok(())
    }

    // --- matmul ----------------------------------------------------------------------------

    fn matmul_cases(&self) -> Vec<(MatmulVariant, usize, usize, usize)> {
        use MatmulVariant::*;
        let squares: &[usize] = if self.quick {
            &[256, 1024]
        } else {
            &[256, 512, 1024, 2048]
        };
        let mut cases: Vec<_> = squares
            .iter()
            .flat_map(|&s| [NN, NT, TN].map(|v| (v, s, s, s)))
            .collect();
        // The MLP VAE (batch 128, 784 -> 400 -> 20): layer forwards run matmul_nt, input
        // gradients matmul, weight gradients matmul_tn.
        cases.extend([
            (NT, 128, 784, 400),
            (NT, 128, 400, 784),
            (NN, 128, 784, 400),
            (NN, 128, 400, 784),
            (TN, 400, 128, 784),
            (TN, 784, 128, 400),
            (NT, 128, 400, 20),
            (NT, 128, 20, 400),
        ]);
        if !self.quick {
            cases.extend([
                // The DCGAN discriminator's second conv as im2col products: forward,
                // input gradient, weight gradient.
                (NT, 6272, 1024, 128),
                (NN, 6272, 128, 1024),
                (TN, 128, 6272, 1024),
                // The conv VAE's fully connected layer 3136 -> 256.
                (NT, 128, 3136, 256),
            ]);
        }
        cases
    }

    fn matmul(&mut self, variant: MatmulVariant, m: usize, k: usize, n: usize) -> Result<()> {
        let kernel = variant.name();
        let shape = format!("{m}x{k}x{n}");
        if !self.wants(kernel, &shape) {
            return Ok(());
        }
        use MatmulVariant::*;
        let a_dims = if variant == TN { [k, m] } else { [m, k] };
        let b_dims = if variant == NT { [n, k] } else { [k, n] };
        let (a, ta) = self.tensor(&a_dims, -1.0, 1.0)?;
        let (b, tb) = self.tensor(&b_dims, -1.0, 1.0)?;
        // Strides of op(A) (M x K) and op(B) (K x N) in their stored layouts.
        let (rsa, csa) = if variant == TN { (1, m) } else { (k, 1) };
        let (rsb, csb) = if variant == NT { (1, k) } else { (n, 1) };
        let sgemm = |c: &mut [f32]| {
            debug_assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
            // SAFETY: a, b and c hold m*k, k*n and m*n floats, and the strides address exactly
            // those elements (op(A)[i][l] = a[i*rsa + l*csa] < m*k, likewise B and C); c does
            // not alias a or b.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        };
        let mut want = vec![0.0f32; m * n];
        sgemm(&mut want);
        let op = || match variant {
            NN => ta.matmul(&tb),
            NT => ta.matmul_nt(&tb),
            TN => ta.matmul_tn(&tb),
        };
        let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        let seconds = self.checked_seconds(kernel, &shape, "product", &want64, op)?;
        let cpu_seconds = cpu_time(self.plan, || sgemm(&mut want));
        let flops = 2.0 * (m * k * n) as f64;
        let work = Work {
            flops,
            bytes: 4.0 * (m * k + k * n + m * n) as f64,
        };
        self.push(
            kernel,
            &shape,
            seconds,
            work,
            op_timing(self.gpu),
            Some(flops / cpu_seconds / 1e9),
        );
        Ok(())
    }

    // --- convolutions ----------------------------------------------------------------------

    fn conv(&mut self, case: ConvCase) -> Result<()> {
        let kernel = case.kernel();
        let backward_kernel = format!("{kernel}_backward");
        let shape = case.shape();
        let (want_forward, want_backward) = (
            self.wants(kernel, &shape),
            self.wants(&backward_kernel, &shape),
        );
        if !want_forward && !want_backward {
            return Ok(());
        }
        let (x_dims, w_dims, y_dims) = (case.input_dims(), case.weight_dims(), case.output_dims());
        let (xs, x) = self.tensor(&x_dims, -1.0, 1.0)?;
        let (ws, w) = self.tensor(&w_dims, -0.5, 0.5)?;
        let (bs, b) = if case.bias {
            let (bs, b) = self.tensor(&[case.cout], -0.5, 0.5)?;
            (bs, Some(b))
        } else {
            (vec![0.0; case.cout], None)
        };
        let opt = Conv2dOptions::new(case.stride, case.pad);
        let forward = |x: &Tensor, w: &Tensor, b: Option<&Tensor>| {
            if case.transpose {
                conv_transpose2d(x, w, b, opt, [0, 0])
            } else {
                conv2d(x, w, b, opt)
            }
        };
        // The checks compare the first and last samples of the batch (and weight gradients
        // of the first and last rows), computed on the host by direct loops in f64.
        let samples = [0, case.n - 1];
        let w0s = [0, w_dims[0] - 1];
        let y_len = y_dims[1..].iter().product::<usize>();
        let x_len = x_dims[1..].iter().product::<usize>();
        let w_len = w_dims[1..].iter().product::<usize>();
        if want_forward {
            let got = {
                let _no_grad = crate::autograd::no_grad();
                forward(&x, &w, b.as_ref())?.to_vec()?
            };
            let mut want = vec![0.0f64; ConvCase::numel(y_dims)];
            case.taps(
                &samples,
                &(0..w_dims[0]).collect::<Vec<_>>(),
                |yi, xi, wi| {
                    want[yi] += xs[xi] as f64 * ws[wi] as f64;
                },
            );
            for (i, v) in want.iter_mut().enumerate() {
                *v += bs[(i / (y_dims[2] * y_dims[3])) % case.cout] as f64;
            }
            check(
                kernel,
                &shape,
                "output",
                &pick(&got, &samples, y_len),
                &pick(&want, &samples, y_len),
            )?;
            let seconds = time_calls(
                self.gpu,
                self.plan,
                usize::MAX,
                || Ok(()),
                |()| {
                    let _no_grad = crate::autograd::no_grad();
                    forward(&x, &w, b.as_ref())?;
                    Ok(())
                },
            )?;
            self.push(
                kernel,
                &shape,
                seconds,
                case.work(false),
                op_timing(self.gpu),
                None,
            );
        }
        if want_backward {
            let xg = x.clone().requires_grad_();
            let wg = w.clone().requires_grad_();
            let bg = b.clone().map(Tensor::requires_grad_);
            // Check with a random output gradient: loss = sum(y * g), so dy = g.
            let (gs, g) = self.tensor(&y_dims, -1.0, 1.0)?;
            let grads = forward(&xg, &wg, bg.as_ref())?.mul(&g)?.sum()?.backward()?;
            let grad = |t: &Tensor, what: &str| -> Result<Vec<f32>> {
                grads
                    .get(t)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "bench check failed: {backward_kernel} {shape}: no gradient for the {what}"
                        ))
                    })?
                    .to_vec()
            };
            let (dx, dw) = (grad(&xg, "input")?, grad(&wg, "weight")?);
            let mut want_dx = vec![0.0f64; ConvCase::numel(x_dims)];
            case.taps(
                &samples,
                &(0..w_dims[0]).collect::<Vec<_>>(),
                |yi, xi, wi| {
                    want_dx[xi] += gs[yi] as f64 * ws[wi] as f64;
                },
            );
            let mut want_dw = vec![0.0f64; ConvCase::numel(w_dims)];
            case.taps(&(0..case.n).collect::<Vec<_>>(), &w0s, |yi, xi, wi| {
                want_dw[wi] += gs[yi] as f64 * xs[xi] as f64;
            });
            check(
                &backward_kernel,
                &shape,
                "input gradient",
                &pick(&dx, &samples, x_len),
                &pick(&want_dx, &samples, x_len),
            )?;
            check(
                &backward_kernel,
                &shape,
                "weight gradient",
                &pick(&dw, &w0s, w_len),
                &pick(&want_dw, &w0s, w_len),
            )?;
            if let Some(bg) = &bg {
                let db = grad(bg, "bias")?;
                let plane = y_dims[2] * y_dims[3];
                let mut want_db = vec![0.0f64; case.cout];
                for (i, &v) in gs.iter().enumerate() {
                    want_db[(i / plane) % case.cout] += v as f64;
                }
                check(&backward_kernel, &shape, "bias gradient", &db, &want_db)?;
            }
            drop(grads);
            let max_live = ((BACKWARD_BATCH_BYTES / case.graph_bytes()) as usize).max(1);
            self.backward_row(
                &backward_kernel,
                &shape,
                &y_dims,
                max_live,
                case.work(true),
                || forward(&xg, &wg, bg.as_ref()),
            )?;
        }
        Ok(())
    }

    // --- element-wise ops and reductions ---------------------------------------------------

    fn sizes(&self) -> &'static [[usize; 2]] {
        if self.quick {
            &[[1024, 1024]]
        } else {
            &[[1024, 1024], [4096, 4096]]
        }
    }

    fn elementwise(&mut self, op: Elementwise, dims: [usize; 2]) -> Result<()> {
        let (kernel, shape) = (op.name(), dims_string(&dims));
        if !self.wants(kernel, &shape) {
            return Ok(());
        }
        let n = dims[0] * dims[1];
        let (a, ta) = self.tensor(&dims, -2.0, 2.0)?;
        let (b, tb) = self.tensor(&dims, -2.0, 2.0)?;
        let want: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| op.host(x as f64, y as f64))
            .collect();
        let floats = if op.binary() { 3 * n } else { 2 * n };
        let work = Work::per_element(n, op.flops(), floats);
        self.forward_row(kernel, &shape, "output", &want, work, || op.run(&ta, &tb))
    }

    /// `sum` (all elements), `sum_axis0` (column sums) and `sum_axis1` (row sums) of a matrix.
    fn reduction(&mut self, kernel: &str, dims: [usize; 2]) -> Result<()> {
        let shape = dims_string(&dims);
        if !self.wants(kernel, &shape) {
            return Ok(());
        }
        let [rows, cols] = dims;
        // Non-negative data, so that max |want| measures the sums' scale.
        let (x, t) = self.tensor(&dims, 0.0, 1.0)?;
        let op = |t: &Tensor| match kernel {
            "sum" => t.sum(),
            "sum_axis0" => t.sum_axis(0),
            _ => t.sum_axis(1),
        };
        let want: Vec<f64> = match kernel {
            "sum" => vec![x.iter().map(|&v| v as f64).sum()],
            "sum_axis0" => (0..cols)
                .map(|c| (0..rows).map(|r| x[r * cols + c] as f64).sum())
                .collect(),
            _ => x
                .chunks(cols)
                .map(|row| row.iter().map(|&v| v as f64).sum())
                .collect(),
        };
        let n = rows * cols;
        let work = Work::per_element(n, 1.0, n + want.len());
        self.forward_row(kernel, &shape, "sums", &want, work, || op(&t))
    }

    // --- the VAE's fused kernels -----------------------------------------------------------

    /// bce_with_logits at (128, 784); kl_divergence, reparameterize and the two fused
    /// (reparameterize_kl) at (128, 20); each forward and backward.
    fn vae(&mut self) -> Result<()> {
        let (b, d, z) = (128usize, 784usize, 20usize);
        // Binary cross-entropy on logits, per sample.
        let bce_shape = dims_string(&[b, d]);
        let (xs, x) = self.tensor(&[b, d], -4.0, 4.0)?;
        let (ts, t) = self.tensor(&[b, d], 0.0, 1.0)?;
        let bce_host = |x: f64, t: f64| x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        if self.wants("bce_with_logits", &bce_shape) {
            let want: Vec<f64> = (0..b)
                .map(|r| {
                    (0..d)
                        .map(|j| bce_host(xs[r * d + j] as f64, ts[r * d + j] as f64))
                        .sum()
                })
                .collect();
            // Counted per element: max, multiply, subtract, abs, exp, log1p, add, accumulate.
            let work = Work::per_element(b * d, 8.0, 2 * b * d + b);
            self.forward_row("bce_with_logits", &bce_shape, "loss", &want, work, || {
                bce_with_logits(&x, &t)
            })?;
        }
        if self.wants("bce_with_logits_backward", &bce_shape) {
            let xg = x.clone().requires_grad_();
            let grads = bce_with_logits(&xg, &t)?.sum()?.backward()?;
            let got = gradient(&grads, &xg, "bce_with_logits")?;
            let want: Vec<f64> = xs
                .iter()
                .zip(&ts)
                .map(|(&x, &t)| sigmoid(x as f64) - t as f64)
                .collect();
            check(
                "bce_with_logits_backward",
                &bce_shape,
                "gradient",
                &got,
                &want,
            )?;
            drop(grads);
            // sigmoid (4), subtract, multiply; reads x, t, dloss, writes dx.
            let work = Work::per_element(b * d, 6.0, 3 * b * d + b);
            self.backward_row(
                "bce_with_logits_backward",
                &bce_shape,
                &[b],
                usize::MAX,
                work,
                || bce_with_logits(&xg, &t),
            )?;
        }
        // The closed-form KL term and the reparameterization trick.
        let latent_shape = dims_string(&[b, z]);
        let (mus, mu) = self.tensor(&[b, z], -1.0, 1.0)?;
        let (lvs, lv) = self.tensor(&[b, z], -2.0, 1.0)?;
        let (es, eps) = self.tensor(&[b, z], -2.0, 2.0)?;
        if self.wants("kl_divergence", &latent_shape) {
            let want: Vec<f64> = (0..b)
                .map(|r| {
                    -0.5 * (0..z)
                        .map(|j| {
                            let (m, l) = (mus[r * z + j] as f64, lvs[r * z + j] as f64);
                            1.0 + l - m * m - l.exp()
                        })
                        .sum::<f64>()
                })
                .collect();
            // Counted per element: add, subtract, square, exp, subtract, accumulate.
            let work = Work::per_element(b * z, 6.0, 2 * b * z + b);
            self.forward_row("kl_divergence", &latent_shape, "kl", &want, work, || {
                kl_divergence(&mu, &lv)
            })?;
        }
        if self.wants("kl_divergence_backward", &latent_shape) {
            let (mug, lvg) = (mu.clone().requires_grad_(), lv.clone().requires_grad_());
            let grads = kl_divergence(&mug, &lvg)?.sum()?.backward()?;
            let got_mu = gradient(&grads, &mug, "kl_divergence")?;
            let got_lv = gradient(&grads, &lvg, "kl_divergence")?;
            let want_mu: Vec<f64> = mus.iter().map(|&m| m as f64).collect();
            let want_lv: Vec<f64> = lvs
                .iter()
                .map(|&l| ((l as f64).exp() - 1.0) / 2.0)
                .collect();
            check(
                "kl_divergence_backward",
                &latent_shape,
                "dmu",
                &got_mu,
                &want_mu,
            )?;
            check(
                "kl_divergence_backward",
                &latent_shape,
                "dlogvar",
                &got_lv,
                &want_lv,
            )?;
            drop(grads);
            // dmu = dkl mu, dlogvar = dkl (exp(logvar) - 1) / 2; reads mu, logvar, dkl.
            let work = Work::per_element(b * z, 5.0, 4 * b * z + b);
            self.backward_row(
                "kl_divergence_backward",
                &latent_shape,
                &[b],
                usize::MAX,
                work,
                || kl_divergence(&mug, &lvg),
            )?;
        }
        if self.wants("reparameterize", &latent_shape) {
            let want: Vec<f64> = (0..b * z)
                .map(|i| mus[i] as f64 + (lvs[i] as f64 / 2.0).exp() * es[i] as f64)
                .collect();
            // Counted per element: halve, exp, multiply, add.
            let work = Work::per_element(b * z, 4.0, 4 * b * z);
            self.forward_row("reparameterize", &latent_shape, "z", &want, work, || {
                reparameterize(&mu, &lv, &eps)
            })?;
        }
        if self.wants("reparameterize_backward", &latent_shape) {
            let (mug, lvg) = (mu.clone().requires_grad_(), lv.clone().requires_grad_());
            let grads = reparameterize(&mug, &lvg, &eps)?.sum()?.backward()?;
            let got = gradient(&grads, &lvg, "reparameterize")?;
            let want: Vec<f64> = (0..b * z)
                .map(|i| es[i] as f64 * (lvs[i] as f64 / 2.0).exp() / 2.0)
                .collect();
            check(
                "reparameterize_backward",
                &latent_shape,
                "dlogvar",
                &got,
                &want,
            )?;
            drop(grads);
            // dlogvar = dz eps exp(logvar / 2) / 2: reads logvar, eps, dz, writes dlogvar.
            let work = Work::per_element(b * z, 5.0, 4 * b * z);
            self.backward_row(
                "reparameterize_backward",
                &latent_shape,
                &[b, z],
                usize::MAX,
                work,
                || reparameterize(&mug, &lvg, &eps),
            )?;
        }
        // Both in one kernel, as the VAE's training step runs them.
        if self.wants("reparameterize_kl", &latent_shape) {
            let want_z: Vec<f64> = (0..b * z)
                .map(|i| mus[i] as f64 + (lvs[i] as f64 / 2.0).exp() * es[i] as f64)
                .collect();
            let want_kl: Vec<f64> = (0..b)
                .map(|r| {
                    -0.5 * (0..z)
                        .map(|j| {
                            let (m, l) = (mus[r * z + j] as f64, lvs[r * z + j] as f64);
                            1.0 + l - m * m - l.exp()
                        })
                        .sum::<f64>()
                })
                .collect();
            let got_kl = {
                let _no_grad = crate::autograd::no_grad();
                reparameterize_kl(&mu, &lv, &eps)?.1.to_vec()?
            };
            check("reparameterize_kl", &latent_shape, "kl", &got_kl, &want_kl)?;
            // The two ops' counts: 4 + 6 per element; reads mu, logvar, eps, writes z and kl.
            let work = Work::per_element(b * z, 10.0, 4 * b * z + b);
            self.forward_row(
                "reparameterize_kl",
                &latent_shape,
                "z",
                &want_z,
                work,
                || Ok(reparameterize_kl(&mu, &lv, &eps)?.0),
            )?;
        }
        if self.wants("reparameterize_kl_backward", &latent_shape) {
            let (mug, lvg) = (mu.clone().requires_grad_(), lv.clone().requires_grad_());
            // The loss sum(z) + sum(kl): dmu = 1 + (-mu), dlogvar = eps exp(logvar / 2) / 2
            // + (1 - exp(logvar)) / 2 * (-1).
            let loss = {
                let (zt, klt) = reparameterize_kl(&mug, &lvg, &eps)?;
                zt.sum()?.add(&klt.sum()?)?
            };
            let grads = loss.backward()?;
            let got = gradient(&grads, &lvg, "reparameterize_kl")?;
            let want: Vec<f64> = (0..b * z)
                .map(|i| {
                    let l = lvs[i] as f64;
                    es[i] as f64 * (l / 2.0).exp() / 2.0 - (1.0 - l.exp()) / 2.0
                })
                .collect();
            check(
                "reparameterize_kl_backward",
                &latent_shape,
                "dlogvar",
                &got,
                &want,
            )?;
            drop(grads);
            // Timed through z alone (the kl gradient enters as zeros, one fill of 128 floats):
            // reads mu, logvar, eps, dz, dkl, writes dmu and dlogvar.
            let work = Work::per_element(b * z, 9.0, 6 * b * z + b);
            self.backward_row(
                "reparameterize_kl_backward",
                &latent_shape,
                &[b, z],
                usize::MAX,
                work,
                || Ok(reparameterize_kl(&mug, &lvg, &eps)?.0),
            )?;
        }
        Ok(())
    }

    // --- Adam ----------------------------------------------------------------------------------

    /// One Adam step over 1M parameters (one tensor).
    fn adam(&mut self) -> Result<()> {
        let dims = [1024usize, 1024];
        let shape = dims_string(&dims);
        if !self.wants("adam", &shape) {
            return Ok(());
        }
        let n = dims[0] * dims[1];
        let (ps, p) = self.tensor(&dims, -0.01, 0.01)?;
        let (gs, g) = self.tensor(&dims, -1.0, 1.0)?;
        let p = p.requires_grad_();
        // d(sum(p * g))/dp = g.
        let grads = p.mul(&g)?.sum()?.backward()?;
        let params = [p.clone()];
        let mut check_adam = Adam::new(1e-3);
        check_adam.step(&params, &grads)?;
        let got = p.to_vec()?;
        let (lr, (b1, b2), eps) = (
            check_adam.lr as f64,
            check_adam.betas,
            check_adam.eps as f64,
        );
        let (b1, b2) = (b1 as f64, b2 as f64);
        let want: Vec<f64> = ps
            .iter()
            .zip(&gs)
            .map(|(&p, &g)| {
                let (p, g) = (p as f64, g as f64);
                let m = (1.0 - b1) * g;
                let v = (1.0 - b2) * g * g;
                p - lr * (m / (1.0 - b1)) / ((v / (1.0 - b2)).sqrt() + eps)
            })
            .collect();
        // Compare the updates, which are much smaller than the parameters.
        let got_delta: Vec<f32> = got.iter().zip(&ps).map(|(&a, &b)| a - b).collect();
        let want_delta: Vec<f64> = want.iter().zip(&ps).map(|(&a, &b)| a - b as f64).collect();
        check("adam", &shape, "update", &got_delta, &want_delta)?;
        let mut adam = Adam::new(1e-3);
        let seconds = time_calls(
            self.gpu,
            self.plan,
            usize::MAX,
            || Ok(()),
            |()| adam.step(&params, &grads),
        )?;
        // Counted per parameter: 16 (moments, bias corrections, sqrt, divide, update); reads
        // grad, param, m, v and writes param, m, v.
        self.push(
            "adam",
            &shape,
            seconds,
            Work::per_element(n, 16.0, 7 * n),
            op_timing(self.gpu),
            None,
        );
        Ok(())
    }
}

/// Runs the benchmark suite: measures the adapter's ceilings, then times every kernel family
/// at representative shapes, after checking each kernel's output against a host reference
/// once (a mismatch is an [`Error::Invalid`] naming the kernel and shape).
///
/// Families: matmul (NN, NT, TN) at square sizes 256..2048 (`--quick`: 256 and 1024) and at
/// the models' shapes, each beside `matrixmultiply::sgemm` on one CPU thread; conv2d and
/// conv_transpose2d forward and backward at the DCGAN and conv-VAE layers (batch 128);
/// element-wise ops and reductions at 1M and 16M elements (`--quick`: 1M); the VAE's fused
/// loss kernels; one Adam step over 1M parameters.
///
/// Timing: the ceilings are dispatched by this module and bracketed by GPU timestamp queries
/// where the device has `TIMESTAMP_QUERY` (`gpu-timestamp`). The engine's ops are timed in
/// batches (see `time_calls`): with timestamps written into the engine's command stream
/// ([`Gpu::gpu_seconds`]) where the device also has `TIMESTAMP_QUERY_INSIDE_ENCODERS`
/// (`gpu-timestamp`), else on the host around the batch's submit and the wait (`host`). Rows
/// report the median of several batches; ceilings the best run.
///
/// Errors: a failed check; GPU errors of the measurements.
pub fn run_suite(gpu: &Gpu, opts: &SuiteOptions) -> Result<SuiteReport> {
    let plan = Plan::new(opts.quick);
    let (ceilings, probes) = measure_ceilings(gpu, plan)?;
    let mut suite = Suite {
        gpu,
        filter: opts.filter.as_deref(),
        quick: opts.quick,
        plan,
        ceilings,
        rows: Vec::new(),
        rng: rand::SeedableRng::seed_from_u64(2024),
    };
    for p in probes {
        if suite.wants(p.kernel, &p.shape) {
            suite.push(p.kernel, &p.shape, p.seconds, p.work, p.timing, None);
        }
    }
    for (variant, m, k, n) in suite.matmul_cases() {
        suite.matmul(variant, m, k, n)?;
    }
    for case in CONV_CASES {
        suite.conv(case)?;
    }
    for &dims in suite.sizes() {
        for op in Elementwise::ALL {
            suite.elementwise(op, dims)?;
        }
    }
    for &dims in suite.sizes() {
        for kernel in ["sum", "sum_axis0", "sum_axis1"] {
            suite.reduction(kernel, dims)?;
        }
    }
    suite.vae()?;
    suite.adam()?;
    gpu.synchronize()?;
    let info = gpu.summary();
    let notes = vec![
        format!(
            "timing: ceilings by {}; kernels by {}",
            suite.ceilings.timing,
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
         a host reference (relative error < 1e-4) before timing"
            .into(),
    ];
    Ok(SuiteReport {
        adapter: info.name,
        backend: info.backend,
        matmul_path: format!("{:?}", gpu.matmul_path()),
        quick: opts.quick,
        ceilings: suite.ceilings,
        kernels: suite.rows,
        notes,
    })
}
