//! The adapter's two ceilings, the roofs of every row's "% ceil": bandwidth (bytes read +
//! written per second) and arithmetic rate (GFLOP/s, an FMA counts 2).
//!
//! Versions: the probes are measuring tools, not engine kernels, and have one version each.
//! They were sized on lavapipe (benches/NOTES.md): 2, 4, 8 or 16 FMA chains per invocation and
//! workgroups of 64 or 256 all gave the same rate, so the FMA probe is not latency-bound.
//!
//! | probe | what | lavapipe (docs/bench_lavapipe.json, commit f7f5e66) |
//! | --- | --- | --- |
//! | `copy_buffer_to_buffer` | 256 MiB buffer to buffer (lavapipe: a one-thread memcpy) | 19.5 GB/s (quiet runs 24-25) |
//! | `copy_probe` (shaders/probe.wgsl) | the same copy by a shader, vec4 loads and stores, at most the largest storage binding (128 MiB) | 8.4 GB/s (quiet 9.4) |
//! | `fma_probe` (shaders/probe.wgsl) | 8 independent vec4 FMA chains per invocation, grid grown until one dispatch runs about half the plan's batch time | 126 GFLOP/s |
//!
//! Cases: the three probes above, always (they are also rows of the report, which `--filter`
//! can drop; the ceilings are measured regardless).
//!
//! Version switch: none. The probes are recorded into the engine's command stream
//! ([`Gpu::record`]) and timed by the workbench's one timing path ([`super::measure`]); each
//! ceiling is the best of `plan.runs` runs after one warm-up run.

use std::num::NonZeroU64;

use deepgen::{Error, Gpu, Result};

use super::{Ceilings, Plan, TIMING_GPU, TIMING_HOST, Timed, Work, measure};

/// The probes' source (validated by tests/shaders.rs).
const PROBE_WGSL: &str = include_str!("../../shaders/probe.wgsl");
/// Bytes copied by `copy_buffer_to_buffer` (the shader copy moves at most the adapter's largest
/// storage binding).
const COPY_BYTES: u64 = 256 << 20;
/// Workgroups of `copy_probe`'s grid-stride loop.
const COPY_GROUPS: u32 = 4096;
/// FLOPs of one invocation of `fma_probe`: ITERS (256) rounds x 16 vec4 FMAs x 4 lanes x 2.
const FMA_FLOPS_PER_INVOCATION: f64 = 256.0 * 16.0 * 4.0 * 2.0;
/// Workgroup size of `fma_probe`.
const FMA_WORKGROUP: u64 = 64;
/// Most workgroups the FMA grid grows to.
const FMA_MAX_GROUPS: u64 = 1 << 22;

/// One ceiling measurement, as a row of the report.
pub struct Probe {
    pub kernel: &'static str,
    pub shape: String,
    pub seconds: f64,
    pub work: Work,
    pub timing: &'static str,
}

/// A compute pipeline of one probe entry point, with an automatic layout.
fn pipeline(gpu: &Gpu, entry: &str) -> wgpu::ComputePipeline {
    let device = gpu.device();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("probe.wgsl"),
        source: wgpu::ShaderSource::Wgsl(PROBE_WGSL.into()),
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

/// Records one dispatch of `pipeline` over `grid` into the engine's command stream.
fn dispatch(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    grid: [u32; 3],
) {
    gpu.record(|encoder| {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("deepgen bench probe"),
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
    });
}

/// Workgroup grid for `groups` workgroups: (min(G, max), ceil(G / max), 1).
fn grid(gpu: &Gpu, groups: u64) -> [u32; 3] {
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

/// Times what `record` records, once.
fn time(gpu: &Gpu, record: &dyn Fn()) -> Result<Timed> {
    measure(gpu, || {
        record();
        Ok(())
    })
}

/// The best (shortest) of `runs` timings of `record` (run once before, as a warm-up that also
/// pays for wgpu's lazy zeroing of new buffers); `host` if any run was host-timed.
fn best(gpu: &Gpu, runs: usize, record: &dyn Fn()) -> Result<(f64, &'static str)> {
    let mut best = (f64::INFINITY, TIMING_GPU);
    for _ in 0..runs {
        let t = time(gpu, record)?;
        if t.timing == TIMING_HOST {
            best.1 = TIMING_HOST;
        }
        best.0 = best.0.min(t.seconds);
    }
    Ok(best)
}

/// Measures the bandwidth ceiling (a buffer copy, and the same copy by a shader) and the FMA
/// ceiling, and returns them with the three probes as report rows.
///
/// Errors: out of memory or a validation error while setting the probes up (caught with error
/// scopes, so that a small adapter reports it rather than aborting); GPU errors.
pub fn measure_ceilings(gpu: &Gpu, plan: Plan) -> Result<(Ceilings, Vec<Probe>)> {
    let device = gpu.device();
    let limits = device.limits();
    let bytes = COPY_BYTES.min(limits.max_buffer_size) / 256 * 256;
    let shader_bytes = bytes.min(limits.max_storage_buffer_binding_size) / 256 * 256;
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let buffer = |label, size| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let src = buffer("deepgen bench copy src", bytes);
    let dst = buffer("deepgen bench copy dst", bytes);
    let sink = buffer("deepgen bench fma sink", 256);
    let binding = |binding, buffer, size| wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: NonZeroU64::new(size),
        }),
    };
    let copy_pipeline = pipeline(gpu, "copy_probe");
    let copy_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("deepgen bench copy probe"),
        layout: &copy_pipeline.get_bind_group_layout(0),
        entries: &[
            binding(0, &src, shader_bytes),
            binding(1, &dst, shader_bytes),
        ],
    });
    let fma_pipeline = pipeline(gpu, "fma_probe");
    let fma_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("deepgen bench fma probe"),
        layout: &fma_pipeline.get_bind_group_layout(0),
        entries: &[binding(1, &sink, 256)],
    });
    let copy = || gpu.record(|encoder| encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes));
    let shader_copy = || dispatch(gpu, &copy_pipeline, &copy_group, [COPY_GROUPS, 1, 1]);
    let (fma_pipeline, fma_group) = (&fma_pipeline, &fma_group);
    let fma = |groups| move || dispatch(gpu, fma_pipeline, fma_group, grid(gpu, groups));
    // One run of each under the error scopes: the warm-ups.
    time(gpu, &copy)?;
    time(gpu, &shader_copy)?;
    time(gpu, &fma(64))?;
    for scope in [validation, oom] {
        if let Some(e) = deepgen::gpu::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("bench probe: {e}")));
        }
    }

    let (copy_s, copy_timing) = best(gpu, plan.runs, &copy)?;
    let (shader_s, shader_timing) = best(gpu, plan.runs, &shader_copy)?;
    drop((src, dst));
    // FMA: grow the grid until one dispatch runs for half the target time (the last run of the
    // loop is the warm-up at the final size).
    let mut groups: u64 = 64;
    loop {
        let t = time(gpu, &fma(groups))?.seconds;
        if t >= plan.target_s / 2.0 || groups >= FMA_MAX_GROUPS {
            break;
        }
        groups = (groups as f64 * (plan.target_s / t.max(1e-6)).clamp(2.0, 64.0)) as u64;
        groups = groups.min(FMA_MAX_GROUPS);
    }
    let (fma_s, fma_timing) = best(gpu, plan.runs, &fma(groups))?;
    let invocations =
        (grid(gpu, groups).iter().map(|&g| g as u64).product::<u64>() * FMA_WORKGROUP) as f64;
    let fma_flops = invocations * FMA_FLOPS_PER_INVOCATION;

    let copy_work = Work {
        flops: 0.0,
        bytes: 2.0 * bytes as f64,
    };
    let shader_work = Work {
        flops: 0.0,
        bytes: 2.0 * shader_bytes as f64,
    };
    let fma_work = Work {
        flops: fma_flops,
        bytes: 0.0,
    };
    let copy_gbps = copy_work.bytes / copy_s / 1e9;
    let shader_copy_gbps = shader_work.bytes / shader_s / 1e9;
    let timing = if [copy_timing, shader_timing, fma_timing].contains(&TIMING_HOST) {
        TIMING_HOST
    } else {
        TIMING_GPU
    };
    let ceilings = Ceilings {
        bandwidth_gbps: copy_gbps.max(shader_copy_gbps),
        fma_gflops: fma_flops / fma_s / 1e9,
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
            work: fma_work,
            timing: fma_timing,
        },
    ];
    Ok((ceilings, probes))
}
