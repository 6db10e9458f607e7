//! The `deepgen` binary: parses the command line and reports errors with context.

mod cli;
#[path = "../benches/workbench/mod.rs"]
mod workbench;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{
    AnalogiesArgs, ClassArg, Cli, Command, DebiasArgs, EvalArgs, InterpolateArgs, OutlierArgs,
    SampleArgs, ScoreArg, TrainArgs, TranslateArgs, TraverseArgs,
};
use deepgen::data::Mnist;
use deepgen::eval::report::{EvalOptions, check_options, evaluate};
use deepgen::eval::score::{OutlierOptions, Score, detect_outliers};
use deepgen::files::check_output_file;
use deepgen::infer::prior_samples;
use deepgen::latent::{self, TraversalSpec};
use deepgen::models::ModelKind;
use deepgen::train::dbvae::{DebiasConfig, train_dbvae};
use deepgen::train::debias::{DebiasExperiment, run_debias};
use deepgen::train::{
    TrainConfig, train_autoencoder, train_cgan, train_classifier, train_conv_vae, train_cvae,
    train_dcgan, train_gan, train_vae, train_wgan_gp,
};
use deepgen::viz::grid_cols;
use deepgen::{Gpu, checkpoint, conditional, viz};

/// Runs the command; on error prints it with its causes (as returning an error from `main`
/// does) and exits with status 1. A training run stopped by Ctrl-C or SIGTERM prints the one
/// line saying where its state is and exits with 130 (the shell's convention for SIGINT).
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let interrupted = e.chain().find(|c| {
                matches!(
                    c.downcast_ref::<deepgen::Error>(),
                    Some(deepgen::Error::Interrupted { .. })
                )
            });
            match interrupted {
                // A stop that was asked for is not a failure to report: one line, no
                // "Error:" and no backtrace, and the shell's status for SIGINT.
                Some(stop) => {
                    eprintln!("deepgen: {stop}");
                    ExitCode::from(130)
                }
                None => {
                    eprintln!("Error: {e:?}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => info(),
        Command::Train(args) => train(args),
        Command::Sample(args) => sample(args),
        Command::Traverse(args) => traverse(args),
        Command::Interpolate(args) => interpolate(args),
        Command::Analogies(args) => analogies(args),
        Command::Eval(args) => eval(args),
        Command::Outliers(args) => outliers(args),
        Command::Debias(args) => debias(args),
        Command::Bench(args) => bench(args),
        Command::Translate(args) => translate(args),
    }
}

/// Opens the GPU; warns when the adapter is OpenGL's, which wgpu falls back to when no
/// Vulkan, Metal or DX12 driver is installed.
fn open_gpu() -> Result<Gpu> {
    let gpu = Gpu::new().context("opening the GPU")?;
    let s = gpu.summary();
    if s.backend == "Gl" {
        let chosen = std::env::var(deepgen::gpu::ADAPTER_ENV).is_ok_and(|v| !v.trim().is_empty());
        let why = if chosen {
            format!("as {} asked", deepgen::gpu::ADAPTER_ENV)
        } else {
            "no Vulkan, Metal or DX12 driver was found".to_string()
        };
        eprintln!(
            "warning: using {} through OpenGL ({why}); the GL backend lacks features deepgen \
             relies on. On CPU-only Linux install Mesa's lavapipe (`apt-get install \
             mesa-vulkan-drivers`); {}=<words of the name or [backend]> picks an adapter",
            s.name,
            deepgen::gpu::ADAPTER_ENV
        );
    }
    Ok(gpu)
}

/// Ctrl-C (and SIGTERM) ask a training run to stop at the next step boundary, saving a state
/// that `--resume` continues from; a second Ctrl-C quits at once.
fn stop_on_ctrl_c() {
    let handler = ctrlc::set_handler(|| {
        if deepgen::train::request_stop() {
            eprintln!("\nstopping now, without saving");
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after this step and saving the training state (Ctrl-C again to quit at once)"
        );
    });
    if let Err(e) = handler {
        eprintln!("warning: Ctrl-C will not save a resumable state ({e})");
    }
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
    tuning_info(&gpu)
}

/// `deepgen info`'s autotuner part: what is forced, where the cache is, and its choices for
/// this adapter and driver.
fn tuning_info(gpu: &deepgen::Gpu) -> Result<()> {
    use deepgen::ops::tune;
    let forced = |v: Option<&'static str>, var: &str| match v {
        Some(v) => format!("{v} (forced: {var} or in code)"),
        None => format!("autotuned ({var}=auto)"),
    };
    println!(
        "matmul version: {}",
        forced(
            gpu.forced_matmul_version().map(|v| v.name()),
            deepgen::ops::MATMUL_ENV
        )
    );
    println!(
        "conv algorithm: {}",
        forced(
            gpu.forced_conv_algorithm().map(|a| a.name()),
            deepgen::ops::CONV_ENV
        )
    );
    let Some(path) = tune::cache_path() else {
        println!(
            "tuning cache: none (no cache directory; set {})",
            tune::CACHE_DIR_ENV
        );
        return Ok(());
    };
    let key = tune::adapter_key(gpu);
    let choices = tune::read_cache(&path)?.remove(&key).unwrap_or_default();
    println!(
        "tuning cache: {} ({} choices for this adapter and driver; delete the file to measure again)",
        path.display(),
        choices.len()
    );
    for (class, choice) in &choices {
        println!("  {class:<52} {choice}");
    }
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let kind = args.model;
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
        binarize: args.binarize,
        force: args.force,
        resume: args.resume,
    };
    if args.l1_only && kind != ModelKind::Pix2Pix {
        anyhow::bail!(
            "--l1-only is pix2pix's ablation; a `{}` model has no L1 term",
            kind.name()
        );
    }
    if args.width.is_some() && !matches!(kind, ModelKind::Pix2Pix | ModelKind::CycleGan) {
        anyhow::bail!(
            "--width sets pix2pix's and cyclegan's sizes, not a `{}` model's",
            kind.name()
        );
    }
    let gpu = open_gpu()?;
    stop_on_ctrl_c();
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
        ModelKind::Cvae => train_cvae(&gpu, &cfg).map(|_| ()),
        ModelKind::Cgan => train_cgan(&gpu, &cfg).map(|_| ()),
        ModelKind::WganGp => {
            let arch = match args.arch {
                cli::ArchArg::Conv => deepgen::models::WganArch::Conv,
                cli::ArchArg::Mlp => deepgen::models::WganArch::Mlp,
            };
            train_wgan_gp(&gpu, &cfg, arch).map(|_| ())
        }
        ModelKind::Pix2Pix => {
            let opts = deepgen::train::pix2pix::Pix2PixOptions {
                width: args
                    .width
                    .map_or(deepgen::train::pix2pix::DEFAULT_WIDTH, |w| w as usize),
                l1_only: args.l1_only,
            };
            deepgen::train::pix2pix::train_pix2pix(&gpu, &cfg, opts).map(|_| ())
        }
        ModelKind::CycleGan => {
            let opts = deepgen::train::cyclegan::CycleGanOptions {
                width: args
                    .width
                    .map_or(deepgen::train::cyclegan::DEFAULT_WIDTH, |w| w as usize),
                blocks: args.blocks as usize,
                lambda_identity: args.lambda_identity,
            };
            deepgen::train::cyclegan::train_cyclegan(&gpu, &cfg, opts).map(|_| ())
        }
        ModelKind::DbVae => {
            let dcfg = DebiasConfig {
                debias: !args.plain,
                rare_fraction: args.rare_fraction,
                vae_weight: args.vae_weight,
                alpha: args.alpha as f64,
                ..DebiasConfig::new(cfg.clone())
            };
            train_dbvae(&gpu, &dcfg).map(|_| ())
        }
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
    check_output_file(&args.out, "--out", &["png", "npy"])?;
    let ckpt = checkpoint::load(&args.checkpoint).context("loading the checkpoint")?;
    if let Some(wanted) = args.model {
        ckpt.expect_kind(wanted)?;
    }
    let gpu = open_gpu()?;
    gpu.manual_seed(args.seed);
    let model = ckpt.into_model(&gpu)?;
    if model.kind() == ModelKind::Autoencoder {
        eprintln!(
            "note: a plain autoencoder has no prior over z; samples from N(0, I) are not expected \
             to look like digits (that is what the VAE adds)"
        );
    }
    let (images, n, cols) = match args.class {
        None => {
            let n = args.n.unwrap_or(64) as usize;
            (prior_samples(model.as_ref(), &gpu, n)?, n, grid_cols(n))
        }
        Some(class) => {
            let conditional = model.as_conditional().ok_or_else(|| {
                anyhow::anyhow!(
                    "--class: {} holds a `{}` model, which is not told the digit; --class needs \
                     a conditional one (`deepgen train cvae` or `deepgen train cgan`)",
                    args.checkpoint.display(),
                    model.kind().name()
                )
            })?;
            match class {
                ClassArg::Digit(c) => {
                    let n = args.n.unwrap_or(64) as usize;
                    let images = conditional::class_samples(conditional, &gpu, c, n)?;
                    (images, n, grid_cols(n))
                }
                ClassArg::All => {
                    let cols = args.n.unwrap_or(8) as usize;
                    let images = conditional::class_grid(conditional, &gpu, cols)?;
                    (images, 10 * cols, cols)
                }
            }
        }
    };
    let is_npy = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        deepgen::files::write_npy(&args.out, &images, &[n, 28, 28])?;
    } else {
        viz::save_grid(&args.out, &images, 28, 28, cols)?;
    }
    println!("wrote {n} samples to {}", args.out.display());
    Ok(())
}

fn traverse(args: TraverseArgs) -> Result<()> {
    check_output_file(&args.out, "--out", &["png"])?;
    let gpu = open_gpu()?;
    let model = checkpoint::load(&args.checkpoint)?.into_model(&gpu)?;
    let mnist = Mnist::load(&args.data)?;
    let spec = TraversalSpec {
        image_index: args.image_index,
        dims: args.dims,
        steps: args.steps as usize,
        range: args.range,
    };
    let t = latent::traverse(model.as_ref(), &gpu, &mnist.test, &spec)?;
    if t.dims.is_empty() {
        anyhow::bail!(
            "no dimension to traverse: every latent dimension is inactive (KL < {} nats)",
            latent::INACTIVE_KL
        );
    }
    viz::save_grid(&args.out, &t.images, 28, 28, spec.steps)?;
    println!(
        "rows (dimension: mean KL in nats), columns z_d from {:.2} to {:.2}:",
        -args.range, args.range
    );
    for d in &t.dims {
        match &t.kl_per_dim {
            Some(kl) => println!("  z[{d}]: {:.3}", kl[*d]),
            None => println!("  z[{d}]"),
        }
    }
    if !t.inactive.is_empty() {
        println!(
            "skipped {} inactive dimensions (KL < {} nats): {:?}",
            t.inactive.len(),
            latent::INACTIVE_KL,
            t.inactive
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

fn interpolate(args: InterpolateArgs) -> Result<()> {
    check_output_file(&args.out, "--out", &["png"])?;
    let gpu = open_gpu()?;
    let model = checkpoint::load(&args.checkpoint)?.into_model(&gpu)?;
    let mnist = Mnist::load(&args.data)?;
    for i in [args.from, args.to] {
        if model.as_variational().is_some() && i >= mnist.test.len() {
            anyhow::bail!(
                "test image {i} does not exist (the test set has {} images)",
                mnist.test.len()
            );
        }
    }
    let images = latent::interpolate(
        model.as_ref(),
        &gpu,
        &mnist.test,
        args.from,
        args.to,
        args.steps as usize,
    )?;
    let n = images.len() / 784;
    viz::save_grid(&args.out, &images, 28, 28, n)?;
    let how = if model.as_variational().is_some() {
        "linear between the codes of the two test images (originals at the ends)"
    } else {
        "spherical between the two seeded noise vectors"
    };
    println!("wrote {} ({n} images, {how})", args.out.display());
    Ok(())
}

fn analogies(args: AnalogiesArgs) -> Result<()> {
    check_output_file(&args.out, "--out", &["png"])?;
    let ckpt = checkpoint::load(&args.checkpoint).context("loading the checkpoint")?;
    let kind = ckpt.kind()?;
    if kind != ModelKind::Cvae {
        anyhow::bail!(
            "{} holds a `{}` model: analogies encode a test image with its label and decode the \
             code as every digit, which needs a conditional VAE (`deepgen train cvae`)",
            args.checkpoint.display(),
            kind.name()
        );
    }
    let gpu = open_gpu()?;
    let model = ckpt.into_model(&gpu)?;
    let cvae = model
        .as_conditional()
        .and_then(|c| c.as_cvae())
        .context("the checkpoint's model is not a conditional VAE")?;
    let mnist = Mnist::load(&args.data)?;
    let images = conditional::analogies(
        cvae,
        &gpu,
        &mnist.test,
        args.image_index,
        args.count as usize,
    )?;
    let rows = images.len() / (11 * 784);
    viz::save_grid(&args.out, &images, 28, 28, 11)?;
    println!(
        "wrote {} ({rows} rows: test images {} to {}, each followed by its code decoded as 0-9)",
        args.out.display(),
        args.image_index,
        args.image_index + rows - 1
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    if let Some(path) = &args.json {
        check_output_file(path, "--json", &[])?;
    }
    let opts = EvalOptions {
        data_dir: args.data,
        iwae_k: args.samples as usize,
        test_images: args.test_images.map(|n| n as usize),
        fid_samples: args.fid_samples as usize,
        classifier: args.classifier,
        binarize: args.binarize,
        seed: args.seed,
        progress: true,
    };
    check_options(&opts)?;
    let gpu = open_gpu()?;
    let r = evaluate(&gpu, &args.checkpoint, &opts).context("evaluating")?;
    println!(
        "model {} ({}){}",
        r.model,
        r.checkpoint,
        if r.binarized {
            ", binarized test set"
        } else {
            ""
        }
    );
    if let (Some(e), Some(i), Some(k), Some(n)) = (r.neg_elbo, r.iwae_nll, r.iwae_k, r.test_images)
    {
        println!("  test negative ELBO      {e:.2} nats");
        println!("  IWAE NLL (K = {k:>5})    {i:.2} nats   ({n} test images)");
    }
    if let (Some(fd), Some(floor), Some(h), Some(n)) = (
        r.classifier_fid,
        r.classifier_fid_floor,
        r.class_entropy,
        r.samples,
    ) {
        println!(
            "  classifier-FID          {fd:.3}   (train vs test floor {floor:.3}; {n} samples)"
        );
        println!(
            "  class entropy           {h:.3} nats (uniform: {:.3}), histogram {:?}",
            10f64.ln(),
            r.class_histogram.clone().unwrap_or_default()
        );
    }
    if let Some(e) = r.neg_elbo_given_label {
        println!(
            "  test negative ELBO of x given its label  {e:.2} nats   ({} test images)",
            r.test_images.unwrap_or(0)
        );
    }
    if let Some(a) = &r.conditional_accuracy {
        println!(
            "  conditional accuracy    {:.4}   ({} samples per digit), per digit {:?}",
            a.accuracy,
            a.samples_per_class,
            a.per_class
                .iter()
                .map(|v| (v * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&r)?;
        deepgen::files::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `deepgen bench`: the kernel workbench (benches/workbench/), shared with `cargo bench`.
fn bench(args: workbench::Args) -> Result<()> {
    workbench::run(&open_gpu()?, &args).context("benchmarking")
}

fn debias(args: DebiasArgs) -> Result<()> {
    let gpu = open_gpu()?;
    let exp = DebiasExperiment {
        data_dir: args.data,
        seeds: args.seeds,
        epochs: args.epochs as usize,
        rare_fraction: args.rare_fraction,
        limit: args.limit.map(|n| n as usize),
        out_dir: args.out,
        progress: true,
        force: args.force,
    };
    stop_on_ctrl_c();
    let report = run_debias(&gpu, &exp, |seed, name, m| {
        println!(
            "seed {seed} {name:>5}: accuracy common {:.4}  rare {:.4}  gap {:+.4}  (inverted odd digits {:.4})",
            m.common_accuracy, m.rare_accuracy, m.gap, m.rare_positive_accuracy
        );
    })
    .context("debias experiment")?;
    println!(
        "\nover {} seeds (mean +- standard deviation), rare fraction {}:",
        report.runs.len(),
        report.rare_fraction
    );
    println!(
        "{:<8} {:>17} {:>17} {:>17} {:>22}",
        "model", "common", "rare", "gap", "inverted odd digits"
    );
    for s in &report.summary {
        let (c, r, g, p) = (
            s.common_accuracy,
            s.rare_accuracy,
            s.gap,
            s.rare_positive_accuracy,
        );
        println!(
            "{:<8} {:>8.4} +- {:.4} {:>8.4} +- {:.4} {:>+8.4} +- {:.4} {:>13.4} +- {:.4}",
            s.model, c.0, c.1, r.0, r.1, g.0, g.1, p.0, p.1
        );
    }
    println!(
        "wrote {} and {}",
        exp.out_dir.join("debias.json").display(),
        exp.out_dir.join("upweighted.png").display()
    );
    Ok(())
}

fn outliers(args: OutlierArgs) -> Result<()> {
    let gpu = open_gpu()?;
    let opts = OutlierOptions {
        checkpoint: args.checkpoint,
        data_dir: args.data,
        ood: args.ood,
        score: match args.score {
            ScoreArg::Elbo => Score::Elbo,
            ScoreArg::Iwae => Score::Iwae,
            ScoreArg::Recon => Score::Recon,
            ScoreArg::Complexity => Score::Complexity,
            ScoreArg::Excess => Score::Excess,
        },
        samples: args.samples as usize,
        limit: args.limit.map(|n| n as usize),
        out_dir: args.out,
        seed: args.seed,
        progress: true,
    };
    let s = detect_outliers(&gpu, &opts).context("outlier detection")?;
    println!(
        "{} vs {}: AUROC {:.4}  FPR@95%TPR {:.4}  (score {}; mean {:.2} in, {:.2} ood; {} + {} images)",
        opts.data_dir.display(),
        s.ood,
        s.auroc,
        s.fpr_at_95_tpr,
        s.score.name(),
        s.in_mean_score,
        s.ood_mean_score,
        s.in_count,
        s.ood_count
    );
    if s.auroc < 0.5 {
        println!(
            "note: AUROC below 0.5: the model gives the outliers a *higher* likelihood than its own test data \
             (the pitfall of Nalisnick et al. 2019)"
        );
    }
    println!(
        "wrote summary.json, scores.csv and most_unusual.png in {}",
        opts.out_dir.display()
    );
    Ok(())
}

/// `deepgen translate`: a grid of test digits translated by a pix2pix or CycleGAN checkpoint
/// and, with --eval, its figures on the test set (see `deepgen::eval::translation`).
fn translate(args: TranslateArgs) -> Result<()> {
    use deepgen::data::domains::{restyle, top_half};
    use deepgen::eval::translation::{Translator, evaluate_cyclegan, evaluate_pix2pix, triples};
    use deepgen::models::Direction;
    check_output_file(&args.out, "--out", &["png"])?;
    if let Some(path) = &args.json {
        if !args.eval {
            anyhow::bail!("--json writes the figures of --eval; add --eval");
        }
        check_output_file(path, "--json", &[])?;
    }
    let ckpt = checkpoint::load(&args.checkpoint).context("loading the checkpoint")?;
    let gpu = open_gpu()?;
    let model = Translator::from_checkpoint(&gpu, &ckpt)?;
    let direction = match args.direction {
        cli::DirectionArg::AToB => Direction::AToB,
        cli::DirectionArg::BToA => Direction::BToA,
    };
    if matches!(model, Translator::Pix2Pix(_)) && direction == Direction::BToA {
        anyhow::bail!(
            "--direction b-to-a: a pix2pix model translates one way only (top half -> whole \
             digit); b-to-a is CycleGAN's"
        );
    }
    let mut test = Mnist::load_test(&args.data, "--data")?;
    let n = args.n as usize;
    if n > test.len() {
        anyhow::bail!("--n {n}: the test set has {} images", test.len());
    }
    let _no_grad = deepgen::no_grad();
    let first = test.clone().truncate(n);
    let (grid, what) = match &model {
        Translator::Pix2Pix(m) => {
            let inputs = top_half(&first).images;
            let out = deepgen::train::pix2pix::complete(m, &gpu, &inputs)?;
            (
                triples(&inputs, &out, &first.images, n),
                "input (top half), completion, target",
            )
        }
        Translator::CycleGan(m) => {
            use deepgen::train::cyclegan::translate_images;
            let (x, back) = match direction {
                Direction::AToB => (first.images.clone(), Direction::BToA),
                Direction::BToA => (restyle(&first).images, Direction::AToB),
            };
            let there = translate_images(m, &gpu, direction, &x)?;
            let round = translate_images(m, &gpu, back, &there)?;
            let what = match direction {
                Direction::AToB => "a, G(a), F(G(a))",
                Direction::BToA => "b (restyled test digit), F(b), G(F(b))",
            };
            (triples(&x, &there, &round, n), what)
        }
    };
    viz::save_grid(&args.out, &grid, 28, 28, 3)?;
    println!("wrote {} ({n} rows: {what})", args.out.display());
    if !args.eval {
        return Ok(());
    }
    if let Some(k) = args.test_images {
        test = test.truncate(k as usize);
    }
    let classifier = deepgen::eval::report::load_classifier(&gpu, None)?;
    let json = match &model {
        Translator::Pix2Pix(m) => {
            let r = evaluate_pix2pix(&gpu, m, &classifier, &test, true)?;
            println!(
                "pix2pix{} on {} test digits (bottom half completed):",
                if r.l1_only { " (L1 only)" } else { "" },
                r.test_images
            );
            println!(
                "  classifier accuracy     {:.4}   (whole digits {:.4}; top halves alone {:.4})",
                r.accuracy, r.accuracy_originals, r.accuracy_inputs
            );
            if let Some(f) = r.classifier_fid {
                println!("  classifier-FID          {f:.3}   (completions vs test digits)");
            }
            println!(
                "  L1 to target            {:.4}   per pixel in [0, 1] ({:.4} on the bottom half)",
                r.l1, r.l1_bottom
            );
            print_turned_into(&r.confusion, "completed as");
            serde_json::to_string_pretty(&r)?
        }
        Translator::CycleGan(m) => {
            let r = evaluate_cyclegan(&gpu, m, &classifier, &test)?;
            println!("CycleGAN on {} test digits:", r.test_images);
            println!(
                "  label preservation A->B {:.4}   (classifier on 1 - G(a); ceiling 1 - restyle(a): {:.4})",
                r.label_preservation, r.label_preservation_ceiling
            );
            println!(
                "  cycle L1 |F(G(a)) - a|  {:.4}   per pixel in [0, 1]",
                r.cycle_l1
            );
            println!("  |G(a) - restyle(a)|     {:.4}", r.l1_to_restyled);
            println!(
                "  label preservation B->A {:.4}   (classifier on F(b), b = restyle(a))",
                r.label_preservation_b_to_a
            );
            println!("  cycle L1 |G(F(b)) - b|  {:.4}", r.cycle_l1_b_to_a);
            print_turned_into(&r.confusion, "A->B: 1 - G(a) read as");
            print_turned_into(&r.confusion_b_to_a, "B->A: F(b) read as");
            serde_json::to_string_pretty(&r)?
        }
    };
    if let Some(path) = &args.json {
        deepgen::files::write_atomic(path, json.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Prints the digits a translation turns into others: the confusion cells off the diagonal
/// holding at least 5% of their digit.
fn print_turned_into(confusion: &[[usize; 10]; 10], how: &str) {
    let cells = deepgen::eval::translation::turned_into(confusion, 0.05);
    if cells.is_empty() {
        println!("  no digit {how} another in 5% of its cases or more");
    }
    for (t, p, c, f) in cells {
        println!("  {t}s {how} {p}: {c} ({:.1}% of the {t}s)", 100.0 * f);
    }
}
