//! The Frechet distance between two sets of feature vectors, each summarised by a
//! Gaussian (mean, covariance):
//!
//!   d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))
//!
//! (Dowson & Landau 1982; the "FID" of Heusel et al. 2017 is this distance on Inception-v3
//! features). Here the features are the 128-d penultimate layer of deepgen's own digit
//! classifier, so the number is a *classifier-Frechet distance* on MNIST, comparable within
//! this project (and with its train-vs-test floor), not with published Inception FIDs.
//!
//! Tr((S_1 S_2)^(1/2)) = Tr((A S_2 A)^(1/2)) with A = S_1^(1/2): both matrices are symmetric
//! positive semi-definite, so both roots come from nalgebra's symmetric eigendecomposition.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, for_each_chunk};
use crate::models::{Classifier, FEATURE_DIM, predicted_class};

/// Mean and (unbiased) covariance of `n` feature rows of length `d`.
pub fn mean_cov(features: &[f64], d: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = features.len() / d;
    let x = DMatrix::from_row_slice(n, d, features);
    let mean = x.row_mean().transpose();
    let centered = DMatrix::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
    let cov = centered.transpose() * &centered / (n.max(2) - 1) as f64;
    (mean, cov)
}

/// Square root of a symmetric positive semi-definite matrix (negative eigenvalues from
/// rounding are clamped to 0).
fn sqrt_psd(m: DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(m);
    let roots = eig.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// The Frechet distance between Gaussians (mu1, s1) and (mu2, s2).
pub fn frechet_distance_from_stats(
    mu1: &DVector<f64>,
    s1: &DMatrix<f64>,
    mu2: &DVector<f64>,
    s2: &DMatrix<f64>,
) -> f64 {
    let a = sqrt_psd(s1.clone());
    let m = &a * s2 * &a;
    let m = (&m + m.transpose()) * 0.5;
    let tr_sqrt: f64 = SymmetricEigen::new(m)
        .eigenvalues
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    (mu1 - mu2).norm_squared() + s1.trace() + s2.trace() - 2.0 * tr_sqrt
}

/// The Frechet distance between two sets of `d`-dimensional feature rows.
///
/// Errors: [`Error::Invalid`] if a set has fewer than 2 rows or a ragged length.
pub fn frechet_distance(a: &[f64], b: &[f64], d: usize) -> Result<f64> {
    for (name, set) in [("first", a), ("second", b)] {
        if d == 0 || !set.len().is_multiple_of(d) || set.len() / d < 2 {
            return Err(Error::Invalid(format!(
                "frechet distance: the {name} set has {} values, not at least two rows of {d}",
                set.len()
            )));
        }
    }
    let (m1, s1) = mean_cov(a, d);
    let (m2, s2) = mean_cov(b, d);
    Ok(frechet_distance_from_stats(&m1, &s1, &m2, &s2))
}

/// The classifier's features and predicted classes for images `(n x 784)` in [0, 1], in
/// chunks of [`EVAL_BATCH`], in eval mode (the classifier is left in eval mode).
///
/// Errors: GPU and readback errors.
pub fn features_and_classes(
    classifier: &Classifier,
    gpu: &Gpu,
    images: &[f32],
) -> Result<(Vec<f64>, Vec<usize>)> {
    use crate::nn::Module;
    classifier.set_training(false);
    let pixels = 784;
    let mut feats = Vec::with_capacity(images.len() / pixels * FEATURE_DIM);
    let mut classes = Vec::with_capacity(images.len() / pixels);
    for_each_chunk(gpu, Rows::Host(images, pixels), EVAL_BATCH, |x, _| {
        let f = classifier.features(x)?;
        let logits = classifier.classify_features(&f)?.to_vec()?;
        feats.extend(f.to_vec()?.into_iter().map(f64::from));
        classes.extend(logits.chunks_exact(10).map(predicted_class));
        Ok(())
    })?;
    Ok((feats, classes))
}

/// Entropy (nats) of the histogram of predicted classes: ln 10 = 2.303 when all ten digits
/// are equally frequent, 0 when every sample is the same digit.
pub fn class_entropy(classes: &[usize], num_classes: usize) -> f64 {
    let counts = class_histogram(classes, num_classes);
    let n = classes.len().max(1) as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 / n * (c as f64 / n).ln())
        .sum::<f64>()
}

/// How many of `classes` fall in each of `num_classes` classes (out-of-range values count as
/// the last class).
pub fn class_histogram(classes: &[usize], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; num_classes];
    for &c in classes {
        counts[c.min(num_classes - 1)] += 1;
    }
    counts
}
