//! `deepgen debias`: the plain classifier against the DB-VAE on the biased task, over several
//! seeds, and the report (mean and standard deviation of each subgroup accuracy over seeds)
//! written to OUT/debias.json.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::gpu::Gpu;
use crate::models::ModelKind;
use crate::train::TrainConfig;
use crate::train::dbvae::{DebiasConfig, DebiasMetrics, train_dbvae};

/// What `deepgen debias` is told.
#[derive(Clone, Debug)]
pub struct DebiasExperiment {
    /// MNIST directory.
    pub data_dir: PathBuf,
    /// Seeds; each trains the plain classifier and the DB-VAE.
    pub seeds: Vec<u64>,
    /// Epochs per run.
    pub epochs: usize,
    /// Fraction of the odd training digits drawn inverted.
    pub rare_fraction: f64,
    /// Use only the first N training and test images.
    pub limit: Option<usize>,
    /// Output directory: debias.json, upweighted.png, and OUT/seedS/{plain,dbvae}/ per run.
    pub out_dir: PathBuf,
    /// Show progress bars.
    pub progress: bool,
    /// Replace the runs `out_dir` holds (each run's `--force`).
    pub force: bool,
}

/// The last epoch of both models for one seed.
#[derive(Clone, Debug, Serialize)]
pub struct DebiasRun {
    /// The seed of both runs.
    pub seed: u64,
    /// The plain classifier.
    pub plain: DebiasMetrics,
    /// The DB-VAE.
    pub dbvae: DebiasMetrics,
}

/// One model's accuracies over the seeds, each as (mean, sample standard deviation).
#[derive(Clone, Debug, Serialize)]
pub struct DebiasSummary {
    /// `plain` or `DB-VAE`.
    pub model: String,
    /// Accuracy on images without the attribute.
    pub common_accuracy: (f64, f64),
    /// Accuracy on images with the attribute.
    pub rare_accuracy: (f64, f64),
    /// common - rare.
    pub gap: (f64, f64),
    /// Recall of the positive class among inverted odd digits.
    pub rare_positive_accuracy: (f64, f64),
}

/// The contents of OUT/debias.json.
#[derive(Clone, Debug, Serialize)]
pub struct DebiasReport {
    /// Fraction of the odd training digits inverted.
    pub rare_fraction: f64,
    /// Epochs per run.
    pub epochs: usize,
    /// Plain, then DB-VAE.
    pub summary: Vec<DebiasSummary>,
    /// Every seed's last epochs.
    pub runs: Vec<DebiasRun>,
}

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value) of
/// `values`.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
        / (values.len().max(2) - 1) as f64)
        .sqrt();
    (mean, sd)
}

/// The summary of either model over `runs`.
pub fn summarize(runs: &[DebiasRun]) -> Vec<DebiasSummary> {
    [(false, "plain"), (true, "DB-VAE")]
        .into_iter()
        .map(|(dbvae, name)| {
            let stats = |f: fn(&DebiasMetrics) -> f64| {
                let v: Vec<f64> = runs
                    .iter()
                    .map(|r| f(if dbvae { &r.dbvae } else { &r.plain }))
                    .collect();
                mean_sd(&v)
            };
            DebiasSummary {
                model: name.to_string(),
                common_accuracy: stats(|m| m.common_accuracy),
                rare_accuracy: stats(|m| m.rare_accuracy),
                gap: stats(|m| m.gap),
                rare_positive_accuracy: stats(|m| m.rare_positive_accuracy),
            }
        })
        .collect()
}

/// Runs the experiment: for every seed, the plain classifier then the DB-VAE (latent size 16,
/// the defaults of `deepgen train dbvae` otherwise), each in OUT/seedS/{plain,dbvae}; calls
/// `on_run(seed, name, last epoch)` after each run. Writes OUT/debias.json (keys sorted) and
/// copies the first seed's OUT/seedS/dbvae/upweighted.png to OUT/upweighted.png.
///
/// Errors: the runs' errors; [`Error::Invalid`] without seeds; I/O errors naming the file.
pub fn run_debias(
    gpu: &Gpu,
    exp: &DebiasExperiment,
    mut on_run: impl FnMut(u64, &str, &DebiasMetrics),
) -> Result<DebiasReport> {
    if exp.seeds.is_empty() {
        return Err(Error::Invalid("the debias experiment needs a seed".into()));
    }
    let mut runs = Vec::new();
    for &seed in &exp.seeds {
        let mut last = Vec::new();
        for debias in [false, true] {
            let name = if debias { "dbvae" } else { "plain" };
            let train = TrainConfig {
                data_dir: exp.data_dir.clone(),
                epochs: exp.epochs,
                seed,
                limit: exp.limit,
                out_dir: exp.out_dir.join(format!("seed{seed}")).join(name),
                latent_dim: 16,
                progress: exp.progress,
                force: exp.force,
                ..TrainConfig::for_model(ModelKind::DbVae)
            };
            let cfg = DebiasConfig {
                debias,
                rare_fraction: exp.rare_fraction,
                ..DebiasConfig::new(train)
            };
            let (_, history) = train_dbvae(gpu, &cfg)?;
            let m = history
                .last()
                .cloned()
                .ok_or_else(|| Error::Invalid("the debias experiment ran no epoch".into()))?;
            on_run(seed, name, &m);
            last.push(m);
        }
        let dbvae = last.pop().expect("two runs");
        let plain = last.pop().expect("two runs");
        runs.push(DebiasRun { seed, plain, dbvae });
    }
    let report = DebiasReport {
        rare_fraction: exp.rare_fraction,
        epochs: exp.epochs,
        summary: summarize(&runs),
        runs,
    };
    // Through a serde_json::Value, whose maps sort their keys.
    let json = serde_json::to_value(&report)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .map_err(|e| Error::Invalid(format!("debias.json: {e}")))?;
    write_atomic(&exp.out_dir.join("debias.json"), json.as_bytes())?;
    let src = exp
        .out_dir
        .join(format!("seed{}/dbvae/upweighted.png", exp.seeds[0]));
    let dst = exp.out_dir.join("upweighted.png");
    std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
    Ok(report)
}
