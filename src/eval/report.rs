//! `deepgen eval`: every number for one checkpoint, as a struct that serialises to the JSON
//! the command writes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::{self, Checkpoint};
use crate::data::BINARIZE_SEED;
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::eval::frechet::{
    class_entropy, class_histogram, features_and_classes, frechet_distance,
};
use crate::eval::likelihood::likelihood;
use crate::gpu::Gpu;
use crate::infer::prior_samples;
use crate::models::{Classifier, FEATURE_DIM, ModelKind};

/// What to compute.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Directory with MNIST.
    pub data_dir: PathBuf,
    /// Importance samples K for the IWAE bound.
    pub iwae_k: usize,
    /// Evaluate the likelihood on the first N test images only (None: all 10,000).
    pub test_images: Option<usize>,
    /// Generated samples for the classifier-Frechet distance and class entropy (0 skips them).
    pub fid_samples: usize,
    /// The digit classifier checkpoint whose features the distance uses.
    pub classifier: PathBuf,
    /// Evaluate on the fixed binarization of the test set (automatic for checkpoints trained
    /// with --binarize).
    pub binarize: bool,
    /// Seed of the GPU generator (importance samples, prior samples).
    pub seed: u64,
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
}

impl Classifier {
    /// Loads a classifier checkpoint written by `deepgen train classifier`.
    ///
    /// Errors: [`Error::Checkpoint`] if the file holds another kind of model or other tensors.
    pub fn from_checkpoint(gpu: &Gpu, ckpt: &Checkpoint) -> Result<Classifier> {
        use crate::nn::Module;
        use rand::SeedableRng;
        ckpt.expect_kind(ModelKind::Classifier)?;
        let classifier = Classifier::new(gpu, &mut rand::rngs::StdRng::seed_from_u64(0))?;
        ckpt.load_into(&classifier.named_state())?;
        classifier.set_training(false);
        Ok(classifier)
    }
}

/// Loads the classifier at `path`, or explains how to make one.
pub fn load_classifier(gpu: &Gpu, path: &Path) -> Result<Classifier> {
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "no classifier checkpoint here; train one with `deepgen train classifier` \
                     (writes runs/classifier/model.safetensors) or pass --classifier PATH"
                .into(),
        });
    }
    Classifier::from_checkpoint(gpu, &checkpoint::load(path)?)
}

/// Evaluates the checkpoint at `path`.
///
/// Errors: checkpoint and data errors; a missing classifier when `fid_samples > 0`.
pub fn evaluate(gpu: &Gpu, path: &Path, opts: &EvalOptions) -> Result<EvalReport> {
    let ckpt = checkpoint::load(path)?;
    let model = ckpt.into_model(gpu)?;
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
    };
    if let Some(vae) = model.as_variational() {
        let test = if binarized {
            mnist.test.binarized(BINARIZE_SEED)
        } else {
            mnist.test.clone()
        };
        let l = likelihood(vae, gpu, &test, opts.iwae_k, opts.test_images)?;
        report.neg_elbo = Some(l.neg_elbo);
        report.iwae_nll = Some(l.iwae_nll);
        report.iwae_k = Some(l.iwae_k);
        report.test_images = Some(l.test_images);
    }
    if opts.fid_samples > 0 {
        let classifier = load_classifier(gpu, &opts.classifier)?;
        let generated = prior_samples(model.as_ref(), gpu, opts.fid_samples)?;
        let (gen_features, gen_classes) = features_and_classes(&classifier, gpu, &generated)?;
        let (test_features, _) = features_and_classes(&classifier, gpu, &mnist.test.images)?;
        let n_train = mnist.test.len().min(mnist.train.len());
        let (train_features, _) =
            features_and_classes(&classifier, gpu, &mnist.train.images[..n_train * 784])?;
        report.classifier_fid = Some(frechet_distance(
            &gen_features,
            &test_features,
            FEATURE_DIM,
        )?);
        report.classifier_fid_floor = Some(frechet_distance(
            &train_features,
            &test_features,
            FEATURE_DIM,
        )?);
        report.class_entropy = Some(class_entropy(&gen_classes, 10));
        report.class_histogram = Some(class_histogram(&gen_classes, 10));
        report.samples = Some(opts.fid_samples);
        report.classifier = Some(opts.classifier.display().to_string());
    }
    Ok(report)
}
