//! The `deepgen` binary: parses the command line and reports errors with context.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, SampleArgs, TrainArgs};
use deepgen::models::ModelKind;
use deepgen::train::{
    TrainConfig, train_autoencoder, train_classifier, train_conv_vae, train_dcgan, train_gan,
    train_vae, write_samples,
};
use deepgen::{Gpu, checkpoint};

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => info(),
        Command::Train(args) => train(args),
        Command::Sample(args) => sample(args),
    }
}

fn open_gpu() -> Result<Gpu> {
    Gpu::new().context("opening the GPU")
}

fn info() -> Result<()> {
    let gpu = open_gpu()?;
    let s = gpu.summary();
    println!("adapter:      {}", s.name);
    println!("backend:      {}", s.backend);
    println!("device type:  {}", s.device_type);
    println!("driver:       {}", s.driver);
    println!(
        "max storage buffer binding: {} bytes ({:.0} MiB)",
        s.max_storage_buffer_binding_size,
        s.max_storage_buffer_binding_size as f64 / 1048576.0
    );
    println!(
        "max buffer size:            {} bytes ({:.0} MiB)",
        s.max_buffer_size,
        s.max_buffer_size as f64 / 1048576.0
    );
    println!(
        "max invocations per workgroup: {}",
        s.max_compute_invocations_per_workgroup
    );
    println!(
        "max workgroup size (x, y, z):  {:?}",
        s.max_compute_workgroup_size
    );
    println!(
        "max workgroups per dimension:  {}",
        s.max_compute_workgroups_per_dimension
    );
    println!(
        "workgroup shared memory:       {} bytes",
        s.max_compute_workgroup_storage_size
    );
    println!(
        "timestamp queries:             {}",
        if s.timestamp_query { "yes" } else { "no" }
    );
    println!(
        "(choose another adapter with {}=<part of its name>)",
        deepgen::gpu::ADAPTER_ENV
    );
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let kind = args.model.kind();
    let defaults = TrainConfig::for_model(kind);
    let cfg = TrainConfig {
        data_dir: args.data,
        epochs: args.epochs.map_or(defaults.epochs, |e| e as usize),
        batch_size: args.batch_size as usize,
        lr: args.lr.unwrap_or(defaults.lr),
        latent_dim: args.latent_dim.map_or(defaults.latent_dim, |d| d as usize),
        seed: args.seed,
        limit: args.limit.map(|n| n as usize),
        out_dir: args.out.unwrap_or(defaults.out_dir),
        beta: args.beta,
        log_every: args.log_every as usize,
        progress: !args.no_progress,
    };
    let gpu = open_gpu()?;
    println!(
        "deepgen: training {} on {} ({}), output in {}",
        kind.name(),
        gpu.summary().name,
        cfg.data_dir.display(),
        cfg.out_dir.display()
    );
    let what = format!("training {}", kind.name());
    match kind {
        ModelKind::Vae => train_vae(&gpu, &cfg).map(|_| ()),
        ModelKind::Autoencoder => train_autoencoder(&gpu, &cfg).map(|_| ()),
        ModelKind::ConvVae => train_conv_vae(&gpu, &cfg).map(|_| ()),
        ModelKind::Gan => train_gan(&gpu, &cfg).map(|_| ()),
        ModelKind::Dcgan => train_dcgan(&gpu, &cfg).map(|_| ()),
        ModelKind::Classifier => train_classifier(&gpu, &cfg).map(|_| ()),
    }
    .context(what)?;
    println!(
        "wrote {} and {} in {}",
        cfg.metrics_path().display(),
        cfg.checkpoint_path().display(),
        cfg.out_dir.display()
    );
    Ok(())
}

fn sample(args: SampleArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.checkpoint).context("loading the checkpoint")?;
    if let Some(wanted) = args.model {
        ckpt.expect_kind(wanted.kind())?;
    }
    let gpu = open_gpu()?;
    gpu.manual_seed(args.seed);
    let model = ckpt.into_model(&gpu)?;
    if model.kind() == ModelKind::Autoencoder {
        eprintln!(
            "note: a plain autoencoder has no prior over z; samples from N(0, I) are not expected to look like digits (that is what the VAE adds)"
        );
    }
    let side = (model
        .metadata()
        .get("input_dim")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(784.0))
    .sqrt() as usize;
    write_samples(model.as_ref(), &gpu, args.n as usize, side, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} samples to {}", args.n, args.out.display());
    Ok(())
}
