//! Per-image outlier scores from a VAE, and the outlier-detection report.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_distr::{Distribution, Uniform};
use serde::Serialize;

use crate::checkpoint;
use crate::data::{BINARIZE_SEED, Dataset, Mnist};
use crate::error::{Error, Result};
use crate::eval::likelihood::image_bounds_with_progress;
use crate::eval::outliers::{auroc, fpr_at_95_tpr};
use crate::files::write_atomic;
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, collect_chunks};
use crate::models::VariationalModel;
use crate::ops::bce_with_logits;
use crate::viz;

/// How an image is scored; higher means more unusual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Score {
    /// Negative ELBO, averaged over the importance samples (nats).
    Elbo,
    /// Importance-weighted negative log-likelihood bound (nats).
    Iwae,
    /// Reconstruction error of the mean code: BCE of decode(mu) against x (nats).
    Recon,
    /// Negative ELBO minus the image's input complexity, its lossless PNG code length in nats:
    /// S(x) = -log p(x) - L(x) (Serra et al. 2020, "Input complexity and out-of-distribution
    /// detection with likelihood-based generative models", sec. 3, eq. 2). A likelihood ratio
    /// against a universal compressor as the background model: it removes the part of the
    /// likelihood that only says "this image is simple", the cause of Nalisnick et al.'s (2019)
    /// failure case (a Fashion-MNIST model finds MNIST more likely than its own test set).
    Complexity,
    /// Negative ELBO in excess of the pixels' own binary entropy, sum_p H(x_p), the least
    /// BCE any decoder can reach on x (nats). It is the likelihood ratio against the
    /// per-pixel Bernoulli model that fits x exactly, i.e. Serra et al.'s complexity
    /// correction with the complexity measured in the VAE's own units: grey, textured images
    /// (Fashion-MNIST) stop looking unlikely merely for being grey, near-binary ones (MNIST)
    /// stop looking likely merely for being near-binary.
    Excess,
}

impl Score {
    /// The name used on the command line and in summary.json.
    pub fn name(self) -> &'static str {
        match self {
            Score::Elbo => "elbo",
            Score::Iwae => "iwae",
            Score::Recon => "recon",
            Score::Complexity => "complexity",
            Score::Excess => "excess",
        }
    }
}

/// Binary entropy of the pixel intensities, sum_p -x_p ln x_p - (1 - x_p) ln(1 - x_p), in
/// nats: the BCE of a perfect reconstruction, the floor under the VAE's reconstruction term
/// (0 for a binary image; 784 ln 2 = 543 nats for an all-0.5 one).
pub fn intensity_entropy_nats(pixels: &[f32]) -> f64 {
    pixels
        .iter()
        .map(|&v| {
            let v = f64::from(v);
            if v <= 0.0 || v >= 1.0 {
                0.0
            } else {
                -v * v.ln() - (1.0 - v) * (1.0 - v).ln()
            }
        })
        .sum()
}

/// Lossless code length of an image in nats: the size of its 8-bit grayscale PNG (best
/// compression, adaptive filters) times 8 ln 2. `pixels` are intensities in [0, 1], row-major
/// `rows x cols`. The PNG headers add the same ~70 bytes to every image of a size, so they
/// do not change a ranking.
///
/// Errors: [`Error::Invalid`] if the encoder fails or `pixels` is not `rows * cols` long.
pub fn png_code_length_nats(pixels: &[f32], rows: usize, cols: usize) -> Result<f64> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    if pixels.len() != rows * cols {
        return Err(Error::Invalid(format!(
            "png_code_length_nats: {} pixels for a {rows}x{cols} image",
            pixels.len()
        )));
    }
    let bytes: Vec<u8> = pixels
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            &bytes,
            cols as u32,
            rows as u32,
            image::ExtendedColorType::L8,
        )
        .map_err(|e| Error::Invalid(format!("PNG encoding for the complexity score: {e}")))?;
    Ok(png.len() as f64 * 8.0 * std::f64::consts::LN_2)
}

/// Scores every image of `data` (in [0, 1], `(n x 784)`) with `k` importance samples.
pub fn score_images(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    score: Score,
    k: usize,
) -> Result<Vec<f64>> {
    score_images_with_progress(model, gpu, data, score, k, &ProgressBar::hidden())
}

/// [`score_images`], advancing `bar` by the images done (the importance-sampled scores).
pub fn score_images_with_progress(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    score: Score,
    k: usize,
    bar: &ProgressBar,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(data.len());
    match score {
        Score::Elbo | Score::Iwae | Score::Complexity | Score::Excess => {
            let bounds = image_bounds_with_progress(model, gpu, data, data.len(), k, bar)?;
            for (i, (elbo, iwae)) in bounds.into_iter().enumerate() {
                let image = data.image(i);
                out.push(match score {
                    Score::Iwae => -iwae,
                    Score::Complexity => -elbo - png_code_length_nats(image, data.rows, data.cols)?,
                    Score::Excess => -elbo - intensity_entropy_nats(image),
                    _ => -elbo,
                });
            }
        }
        Score::Recon => {
            let bce = collect_chunks(gpu, Rows::images(data), EVAL_BATCH, |x| {
                let (mu, _) = model.encode(x)?;
                bce_with_logits(&model.decode(&mu)?, x)
            })?;
            out.extend(bce.into_iter().map(f64::from));
        }
    }
    Ok(out)
}

/// `n` images of uniform noise in [0, 1], seeded.
pub fn noise_images(n: usize, seed: u64) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dist = Uniform::new(0.0f32, 1.0).expect("valid range");
    Dataset {
        images: (0..n * 784).map(|_| dist.sample(&mut rng)).collect(),
        labels: vec![0; n],
        rows: 28,
        cols: 28,
    }
}

/// The images of `data` rotated by 90 degrees (counter-clockwise).
pub fn rotated90(data: &Dataset) -> Dataset {
    let (h, w) = (data.rows, data.cols);
    let mut images = Vec::with_capacity(data.images.len());
    for i in 0..data.len() {
        let img = data.image(i);
        // out[r][c] = in[c][w - 1 - r]
        for r in 0..w {
            for c in 0..h {
                images.push(img[c * w + (w - 1 - r)]);
            }
        }
    }
    Dataset {
        images,
        labels: data.labels.clone(),
        rows: w,
        cols: h,
    }
}

/// The outlier set named on the command line: a directory of IDX files (its test split),
/// `noise` (10,000 uniform-noise images) or `rotated` (the in-distribution test set turned 90 degrees).
/// Only the directory's test split is read (t10k-images and t10k-labels); messages name
/// `--ood`.
///
/// Errors: [`Error::Data`] naming `--ood` and the directory if it does not exist; the
/// errors of [`Mnist::load_test`].
pub fn outlier_set(spec: &str, inliers: &Dataset) -> Result<Dataset> {
    match spec {
        "noise" => Ok(noise_images(inliers.len(), 1)),
        "rotated" => Ok(rotated90(inliers)),
        dir => {
            let path = Path::new(dir);
            if !path.exists() {
                return Err(Error::data(
                    path,
                    "--ood: no such directory. --ood takes a directory holding \
                     t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz) (its test split \
                     is scored), or `noise`, or `rotated`",
                ));
            }
            Mnist::load_test(path, "--ood")
        }
    }
}

/// Contents of OUT/summary.json.
#[derive(Clone, Debug, Serialize)]
pub struct OutlierSummary {
    /// Area under the ROC curve, outliers as positives (1 = perfect, 0.5 = chance, < 0.5 =
    /// outliers look *more* typical than the inliers).
    pub auroc: f64,
    /// Fraction of inliers flagged at the threshold that flags 95% of the outliers.
    pub fpr_at_95_tpr: f64,
    /// The score used.
    pub score: Score,
    /// In-distribution images scored.
    pub in_count: usize,
    /// Outlier images scored.
    pub ood_count: usize,
    /// Mean score of the inliers (nats).
    pub in_mean_score: f64,
    /// Mean score of the outliers (nats).
    pub ood_mean_score: f64,
    /// The outlier set.
    pub ood: String,
    /// The checkpoint.
    pub checkpoint: String,
}

/// What `deepgen outliers` is told.
#[derive(Clone, Debug)]
pub struct OutlierOptions {
    /// The VAE checkpoint.
    pub checkpoint: PathBuf,
    /// In-distribution data directory (its test split is scored).
    pub data_dir: PathBuf,
    /// Outlier set: a directory, `noise` or `rotated`.
    pub ood: String,
    /// The score.
    pub score: Score,
    /// Importance samples per image for elbo and iwae.
    pub samples: usize,
    /// Score only the first N images of each set.
    pub limit: Option<usize>,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Seed of the GPU generator.
    pub seed: u64,
    /// Show progress bars on stderr for the scoring passes.
    pub progress: bool,
}

/// A progress bar over the `len` images of the set `what` (hidden unless `enabled`).
fn scoring_bar(enabled: bool, len: usize, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "scoring {prefix} [{bar:30}] {pos}/{len} images {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Scores both sets, computes AUROC and FPR@95%TPR, and writes OUT/summary.json,
/// OUT/scores.csv and OUT/most_unusual.png (the 64 highest-scoring inliers).
///
/// Errors: checkpoint errors (a model without an encoder is refused), data and I/O errors.
pub fn detect_outliers(gpu: &Gpu, opts: &OutlierOptions) -> Result<OutlierSummary> {
    let ckpt = checkpoint::load(&opts.checkpoint)?;
    let model = ckpt.into_model(gpu)?;
    let vae = model.as_variational().ok_or_else(|| Error::Checkpoint {
        path: opts.checkpoint.clone(),
        reason: format!(
            "a `{}` model has no likelihood to score outliers with; use a VAE",
            model.kind().name()
        ),
    })?;
    let binarized = ckpt.metadata.get("binarized").is_some_and(|v| v == "true");
    // The output directory is made and checked before the scoring, not after it.
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    crate::files::check_output_file(&opts.out_dir.join("summary.json"), "--out", &[])?;
    let limit = opts.limit.unwrap_or(usize::MAX);
    let mut inliers = Mnist::load(&opts.data_dir)?.test.truncate(limit);
    let mut outliers = outlier_set(&opts.ood, &inliers)?.truncate(limit);
    if binarized {
        inliers = inliers.binarized(BINARIZE_SEED);
        outliers = outliers.binarized(BINARIZE_SEED + 1);
    }
    gpu.manual_seed(opts.seed);
    let mut scores = Vec::new();
    for (set, what) in [(&inliers, "inliers"), (&outliers, "outliers")] {
        let bar = scoring_bar(opts.progress, set.len(), what);
        let s = score_images_with_progress(vae, gpu, set, opts.score, opts.samples, &bar);
        bar.finish_and_clear();
        scores.push(s?);
    }
    let ood_scores = scores.pop().expect("two sets");
    let in_scores = scores.pop().expect("two sets");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let summary = OutlierSummary {
        auroc: auroc(&in_scores, &ood_scores),
        fpr_at_95_tpr: fpr_at_95_tpr(&in_scores, &ood_scores),
        score: opts.score,
        in_count: in_scores.len(),
        ood_count: ood_scores.len(),
        in_mean_score: mean(&in_scores),
        ood_mean_score: mean(&ood_scores),
        ood: opts.ood.clone(),
        checkpoint: opts.checkpoint.display().to_string(),
    };
    let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&opts.out_dir.join("summary.json"), json.as_bytes())?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Invalid(format!("scores.csv: {e}"));
    csv.write_record(["index", "set", "score"])
        .map_err(csv_err)?;
    for (set, scores) in [("in", &in_scores), ("ood", &ood_scores)] {
        for (i, s) in scores.iter().enumerate() {
            csv.write_record([i.to_string(), set.to_string(), format!("{s:.4}")])
                .map_err(csv_err)?;
        }
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| Error::Invalid(format!("scores.csv: {e}")))?;
    write_atomic(&opts.out_dir.join("scores.csv"), &bytes)?;
    let mut order: Vec<usize> = (0..in_scores.len()).collect();
    order.sort_by(|&a, &b| in_scores[b].total_cmp(&in_scores[a]));
    order.truncate(64);
    viz::save_grid(
        &opts.out_dir.join("most_unusual.png"),
        &inliers.gather(&order),
        28,
        28,
        8,
    )?;
    Ok(summary)
}
