//! The workbench's report: the JSON that `deepgen bench --json` writes (a contract, tested by
//! tests/cli.rs: field names and meanings stay; new fields may be added) and the text table
//! both front ends print.

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
    /// The kernel version this row ran (matmul `v1`..`v5`; conv `im2col`, `implicit`, or
    /// `auto`: the autotuner's choice per product); absent for one-version kernels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether this version is the autotuner's pick for this kernel and shape (matmul rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuner_pick: Option<bool>,
}

/// The autotuner's pick for one kernel and shape against every version measured in the run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TunerRow {
    /// Kernel family, e.g. `matmul_nt`, `conv2d_backward`.
    pub kernel: String,
    /// Shape, as in the rows.
    pub shape: String,
    /// The autotuner's pick (matmul: a version; conv: `auto`, its per-product choices).
    pub pick: String,
    /// The pick's median seconds in this run.
    pub pick_seconds: f64,
    /// The fastest version measured in this run.
    pub fastest: String,
    /// Its median seconds.
    pub fastest_seconds: f64,
    /// `pick_seconds / fastest_seconds` (1 when the pick is the fastest).
    pub ratio: f64,
}

/// The output of `deepgen bench`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Adapter name.
    pub adapter: String,
    /// Backend (Vulkan, Metal, ...).
    pub backend: String,
    /// The matmul version forced for the run (`--matmul`), or `autotuned` (every version has
    /// its rows and the tuner's pick is marked).
    pub matmul_path: String,
    /// Whether this was the `--quick` suite.
    pub quick: bool,
    /// Measured ceilings.
    pub ceilings: Ceilings,
    /// One row per kernel, version and shape.
    pub kernels: Vec<KernelRow>,
    /// The autotuner's pick against the fastest measured version, per kernel and shape (runs
    /// without `--matmul`).
    pub tuner: Vec<TunerRow>,
    /// How to read the figures: timing methods, FLOP and byte conventions.
    pub notes: Vec<String>,
}

/// `1.234 s`, `12.34 ms` or `123.4 us`.
pub fn format_seconds(s: f64) -> String {
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

impl Report {
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
            let kernel = match (&r.version, r.tuner_pick) {
                (Some(v), Some(true)) => format!("{} {v}*", r.kernel),
                (Some(v), _) => format!("{} {v}", r.kernel),
                (None, _) => r.kernel.clone(),
            };
            s.push_str(&format!(
                "{:<26} {:<24} {:>11} {:>9.2} {:>8.2} {:>6.1}%  {:<13} {:>16}\n",
                kernel,
                r.shape,
                format_seconds(r.median_seconds),
                r.gflops,
                r.gbps,
                100.0 * r.fraction_of_ceiling,
                r.timing,
                vs_cpu
            ));
        }
        if !self.tuner.is_empty() {
            let fastest = self.tuner.iter().filter(|t| t.ratio <= 1.0).count();
            let near = self.tuner.iter().filter(|t| t.ratio <= 1.1).count();
            s.push_str(&format!(
                "\nautotuner (* above): pick fastest in {fastest}/{n}, within 10% in {near}/{n}\n",
                n = self.tuner.len()
            ));
            for t in self.tuner.iter().filter(|t| t.ratio > 1.0) {
                s.push_str(&format!(
                    "  {} {}: pick {} {} vs fastest {} {} ({:.2}x)\n",
                    t.kernel,
                    t.shape,
                    t.pick,
                    format_seconds(t.pick_seconds),
                    t.fastest,
                    format_seconds(t.fastest_seconds),
                    t.ratio
                ));
            }
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
