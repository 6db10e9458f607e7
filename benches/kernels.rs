//! `cargo bench`: the kernel workbench (benches/workbench/), the same suite as `deepgen bench`.
//!
//! `cargo bench -- --quick` runs the smaller suite; `cargo bench -- conv2d` (or `--filter
//! conv2d`) only the rows whose kernel name or shape contains the text; `--json PATH` also
//! writes the report as JSON (the format of `deepgen bench --json`); `--matmul v2` runs that
//! matmul version. Each kernel family's file in benches/workbench/ lists its versions, the
//! figure each reached and its cases.

mod workbench;

use clap::Parser;

/// The workbench's options, plus what `cargo bench` passes.
#[derive(Parser, Debug)]
#[command(name = "cargo bench --bench kernels --", about)]
struct Cli {
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// The filter as a plain argument, as in `cargo bench -- conv2d`.
    #[arg(conflicts_with = "filter")]
    name: Option<String>,
    #[command(flatten)]
    args: workbench::Args,
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    cli.args.filter = cli.args.filter.or(cli.name);
    let gpu = deepgen::Gpu::new()?;
    workbench::run(&gpu, &cli.args)?;
    Ok(())
}
