//! `cargo bench`: the benchmark suite of `deepgen bench` ([`deepgen::bench::run_suite`]).
//!
//! Every kernel family at the models' shapes, each checked once against a host reference and
//! then timed, with its GFLOP/s, GB/s and fraction of the adapter's measured ceilings; matmuls
//! beside a CPU reference (`matrixmultiply::sgemm`, one thread).
//!
//! `cargo bench -- <filter>` runs only the rows whose kernel name or shape contains the filter
//! (e.g. `matmul_nt`, `128x784`, `conv2d`); `cargo bench -- --quick` runs the smaller suite;
//! `--json PATH` also writes the report as JSON (the format of `deepgen bench --json`).
//!
//! The matmul rows include 1024^3 and the MLP VAE's own shapes. Shapes are M x K x N:
//! C (M x N) = op(A) op(B) with K contracted. The VAE's layers (batch 128): encoder
//! 784 -> 400 and decoder 400 -> 784 run `matmul_nt` forward; their input gradients run
//! `matmul` and their weight gradients `matmul_tn`.

use deepgen::bench::{SuiteOptions, run_suite};
use deepgen::{Error, Gpu};

fn main() -> deepgen::Result<()> {
    let mut opts = SuiteOptions::default();
    let mut json: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--json" => json = args.next(),
            // `--bench`, which cargo passes, and any other harness flag.
            flag if flag.starts_with('-') => {}
            _ if opts.filter.is_none() => opts.filter = Some(arg),
            _ => {}
        }
    }
    let gpu = Gpu::new()?;
    let report = run_suite(&gpu, &opts)?;
    print!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Invalid(format!("serializing the report: {e}")))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        println!("wrote {path}");
    }
    Ok(())
}
