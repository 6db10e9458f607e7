//! `deepgen eval`: every number for one checkpoint, as a struct that serialises to the JSON
//! the command writes.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::checkpoint::{self, Checkpoint};
use crate::conditional::{ConditionalAccuracy, conditional_accuracy, cvae_eval};
use crate::data::BINARIZE_SEED;
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::eval::frechet::{
    FeatureStats, add_features, entropy_of_counts, feature_stats, frechet_distance_of,
};
use crate::eval::likelihood::likelihood_with_progress;
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows};
use crate::models::{Classifier, FEATURE_DIM, ModelKind};
use crate::tensor::Tensor;

/// The digit classifier shipped with deepgen, `models/classifier/model.safetensors` (its
/// README gives the command that trained it, the seed, the test accuracy and the checksum),
/// built into the binary: the features of the Frechet distance when `--classifier` is not
/// given, so `deepgen eval` works without training one first.
pub const BUILTIN_CLASSIFIER: &[u8] = include_bytes!("../../models/classifier/model.safetensors");

/// How the report names the built-in classifier.
pub const BUILTIN_CLASSIFIER_NAME: &str = "built-in (models/classifier/model.safetensors)";

/// What to compute.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Directory with MNIST.
    pub data_dir: PathBuf,
    /// Importance samples K for the IWAE bound.
    pub iwae_k: usize,
    /// Evaluate the likelihood on the first N test images only (None: all 10,000).
    pub test_images: Option<usize>,
    /// Generated samples for the classifier-Frechet distance and class entropy (0 skips them;
    /// otherwise at least 2, for a covariance).
    pub fid_samples: usize,
    /// The digit classifier checkpoint whose features the distance uses; None: the built-in
    /// one ([`BUILTIN_CLASSIFIER`]).
    pub classifier: Option<PathBuf>,
    /// Evaluate on the fixed binarization of the test set (automatic for checkpoints trained
    /// with --binarize).
    pub binarize: bool,
    /// Seed of the GPU generator (importance samples, prior samples).
    pub seed: u64,
    /// Show progress bars on stderr for the passes.
    pub progress: bool,
}

impl EvalOptions {
    /// Defaults as `deepgen eval` has them: bundled MNIST, K = 1000, all test images, 10,000
    /// samples, the built-in classifier, seed 0, no progress bars.
    pub fn new(data_dir: impl Into<PathBuf>) -> EvalOptions {
        EvalOptions {
            data_dir: data_dir.into(),
            iwae_k: 1000,
            test_images: None,
            fid_samples: 10_000,
            classifier: None,
            binarize: false,
            seed: 0,
            progress: false,
        }
    }
}

/// The figures of one checkpoint. Likelihoods are nats per test image.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Model kind.
    pub model: String,
    /// The checkpoint file.
    pub checkpoint: String,
    /// Whether the test set was binarized (seed [`BINARIZE_SEED`]).
    pub binarized: bool,
    /// Test negative ELBO (VAEs).
    pub neg_elbo: Option<f64>,
    /// IWAE estimate of the test negative log-likelihood (VAEs).
    pub iwae_nll: Option<f64>,
    /// Importance samples per image.
    pub iwae_k: Option<usize>,
    /// Test images in the likelihood figures.
    pub test_images: Option<usize>,
    /// Frechet distance between classifier features of generated and test images.
    pub classifier_fid: Option<f64>,
    /// The same distance between 10,000 training and the 10,000 test images: the floor.
    pub classifier_fid_floor: Option<f64>,
    /// Entropy (nats) of the classifier's predicted-class histogram of the samples; ln 10 = 2.303 is uniform.
    pub class_entropy: Option<f64>,
    /// Samples per predicted class 0..9.
    pub class_histogram: Option<Vec<usize>>,
    /// Generated samples used.
    pub samples: Option<usize>,
    /// The classifier checkpoint used.
    pub classifier: Option<String>,
    /// Conditional VAE: test negative ELBO of x given its label y (one z sample per image).
    pub neg_elbo_given_label: Option<f64>,
    /// Conditional models: how often samples asked for digit c are classified c, over
    /// `fid_samples / 10` samples per digit ([`crate::conditional::conditional_accuracy`]).
    pub conditional_accuracy: Option<ConditionalAccuracy>,
}

impl Classifier {
    /// Loads a classifier checkpoint written by `deepgen train classifier`.
    ///
    /// Errors: [`Error::Checkpoint`] if the file holds another kind of model or other tensors.
    pub fn from_checkpoint(gpu: &Gpu, ckpt: &Checkpoint) -> Result<Classifier> {
        use crate::nn::Module;
        use rand::SeedableRng;
        ckpt.expect_kind(ModelKind::Classifier)?;
        ckpt.check_buildable(ModelKind::Classifier, gpu.max_binding_bytes())?;
        let classifier = Classifier::new(gpu, &mut rand::rngs::StdRng::seed_from_u64(0))?;
        ckpt.load_into(&classifier.named_state())?;
        classifier.set_training(false);
        Ok(classifier)
    }
}

/// Loads the classifier at `path`, or explains how to make one; None: the built-in one.
///
/// Errors: [`Error::Checkpoint`] for a missing file (with how to train one) or a checkpoint
/// that is not a classifier.
pub fn load_classifier(gpu: &Gpu, path: Option<&Path>) -> Result<Classifier> {
    let Some(path) = path else {
        let ckpt = checkpoint::load_bytes(BUILTIN_CLASSIFIER, Path::new(BUILTIN_CLASSIFIER_NAME))?;
        return Classifier::from_checkpoint(gpu, &ckpt);
    };
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "no classifier checkpoint here; train one with `deepgen train classifier` \
                     (writes runs/classifier/model.safetensors), or leave out --classifier to use \
                     the built-in one"
                .into(),
        });
    }
    Classifier::from_checkpoint(gpu, &checkpoint::load(path)?)
}

/// A progress bar over `len` items (hidden unless `enabled`), labelled `what`.
fn pass_bar(enabled: bool, len: usize, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} images {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Refuses options that cannot give a figure, before any work: `fid_samples` of 1.
///
/// Errors: [`Error::Invalid`] naming `--fid-samples`.
pub fn check_options(opts: &EvalOptions) -> Result<()> {
    if opts.fid_samples == 1 {
        return Err(Error::Invalid(
            "--fid-samples 1: a covariance needs at least 2 samples; give 0 to skip the sample \
             figures, or 2 or more"
                .into(),
        ));
    }
    Ok(())
}

/// Evaluates the checkpoint at `path`. Everything that can be refused is checked before the
/// passes: the options, the checkpoint, that there is something to compute, the classifier,
/// the data. The Frechet statistics are accumulated as the samples are generated,
/// [`EVAL_BATCH`] at a time, in memory that does not grow with `fid_samples`.
///
/// Errors: as [`check_options`]; checkpoint and data errors; [`Error::Invalid`] for a model
/// without a likelihood when `fid_samples` is 0 (nothing to compute); a missing classifier.
pub fn evaluate(gpu: &Gpu, path: &Path, opts: &EvalOptions) -> Result<EvalReport> {
    check_options(opts)?;
    let ckpt = checkpoint::load(path)?;
    let model = ckpt.into_model(gpu)?;
    let cvae = model.as_conditional().and_then(|c| c.as_cvae());
    if model.as_variational().is_none() && cvae.is_none() && opts.fid_samples == 0 {
        return Err(Error::Invalid(format!(
            "nothing to evaluate: a `{}` model has no likelihood, and --fid-samples 0 skips the \
             sample figures; give --fid-samples N (at least 2)",
            model.kind().name()
        )));
    }
    let classifier = if opts.fid_samples > 0 {
        Some(load_classifier(gpu, opts.classifier.as_deref())?)
    } else {
        None
    };
    let binarized = opts.binarize || ckpt.metadata.get("binarized").is_some_and(|v| v == "true");
    let mnist = Mnist::load(&opts.data_dir)?;
    gpu.manual_seed(opts.seed);
    let mut report = EvalReport {
        model: model.kind().name().into(),
        checkpoint: path.display().to_string(),
        binarized,
        neg_elbo: None,
        iwae_nll: None,
        iwae_k: None,
        test_images: None,
        classifier_fid: None,
        classifier_fid_floor: None,
        class_entropy: None,
        class_histogram: None,
        samples: None,
        classifier: None,
        neg_elbo_given_label: None,
        conditional_accuracy: None,
    };
    if let Some(cvae) = cvae {
        let test = if binarized {
            mnist.test.binarized(BINARIZE_SEED)
        } else {
            mnist.test.clone()
        };
        let n = opts.test_images.unwrap_or(test.len()).min(test.len());
        report.neg_elbo_given_label = Some(cvae_eval(cvae, gpu, &test.truncate(n), 1.0)?.loss);
        report.test_images = Some(n);
    }
    if let Some(vae) = model.as_variational() {
        let test = if binarized {
            mnist.test.binarized(BINARIZE_SEED)
        } else {
            mnist.test.clone()
        };
        let n = opts.test_images.unwrap_or(test.len()).min(test.len());
        let bar = pass_bar(opts.progress, n, &format!("IWAE, K = {}", opts.iwae_k));
        let l = likelihood_with_progress(vae, gpu, &test, opts.iwae_k, opts.test_images, &bar);
        bar.finish_and_clear();
        let l = l?;
        report.neg_elbo = Some(l.neg_elbo);
        report.iwae_nll = Some(l.iwae_nll);
        report.iwae_k = Some(l.iwae_k);
        report.test_images = Some(l.test_images);
    }
    if let Some(classifier) = classifier {
        // Generated images go from the model to the classifier on the GPU, EVAL_BATCH at a
        // time (the draws of `infer::prior_samples`, in the same order), and only their
        // statistics stay.
        let bar = pass_bar(opts.progress, opts.fid_samples, "samples");
        let mut gen_stats = FeatureStats::new(FEATURE_DIM);
        let mut histogram = vec![0usize; 10];
        let mut left = opts.fid_samples;
        let pass = (|| -> Result<()> {
            let _no_grad = crate::autograd::no_grad();
            while left > 0 {
                let m = left.min(EVAL_BATCH);
                let z = Tensor::randn(gpu, [m, model.latent_dim()])?;
                let images = model.generate(&z)?;
                add_features(&classifier, &images, &mut gen_stats, &mut histogram)?;
                left -= m;
                bar.inc(m as u64);
            }
            Ok(())
        })();
        bar.finish_and_clear();
        pass?;
        let n_test = mnist.test.len();
        let bar = pass_bar(opts.progress, n_test, "test features");
        let test = feature_stats(&classifier, gpu, Rows::images(&mnist.test), &bar);
        bar.finish_and_clear();
        let (test_stats, _) = test?;
        let n_train = n_test.min(mnist.train.len());
        let bar = pass_bar(opts.progress, n_train, "train features");
        let train = feature_stats(&classifier, gpu, Rows::first(&mnist.train, n_train), &bar);
        bar.finish_and_clear();
        let (train_stats, _) = train?;
        report.classifier_fid = Some(frechet_distance_of(&gen_stats, &test_stats)?);
        report.classifier_fid_floor = Some(frechet_distance_of(&train_stats, &test_stats)?);
        report.class_entropy = Some(entropy_of_counts(&histogram));
        report.class_histogram = Some(histogram);
        report.samples = Some(opts.fid_samples);
        if let Some(conditional) = model.as_conditional() {
            let per_class = opts.fid_samples / 10;
            if per_class > 0 {
                report.conditional_accuracy = Some(conditional_accuracy(
                    conditional,
                    &classifier,
                    gpu,
                    per_class,
                )?);
            }
        }
        report.classifier = Some(match &opts.classifier {
            Some(p) => p.display().to_string(),
            None => BUILTIN_CLASSIFIER_NAME.to_string(),
        });
    }
    Ok(report)
}
