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
use crate::tensor::Tensor;

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

/// Mean and covariance of feature rows accumulated chunk by chunk: the count, the mean and
/// the co-moment sum_i (x_i - mean)(x_i - mean)^T, each new chunk merged with the update of
/// Chan, Golub & LeVeque (1979): with delta = mean_b - mean_a and n = n_a + n_b,
/// mean = mean_a + delta n_b / n and M = M_a + M_b + delta delta^T n_a n_b / n. Memory is
/// O(d^2) whatever the number of rows, so the Frechet statistics of any number of generated
/// images take constant memory; the result equals [`mean_cov`] of all rows up to float
/// rounding (tests/eval_streaming.rs checks it).
#[derive(Clone, Debug)]
pub struct FeatureStats {
    n: usize,
    mean: DVector<f64>,
    comoment: DMatrix<f64>,
}

impl FeatureStats {
    /// No rows yet, of `d` features each.
    pub fn new(d: usize) -> FeatureStats {
        FeatureStats {
            n: 0,
            mean: DVector::zeros(d),
            comoment: DMatrix::zeros(d, d),
        }
    }

    /// Adds `rows` (a whole number of rows of `d` values, row-major).
    ///
    /// Errors: [`Error::Invalid`] for a ragged length.
    pub fn add_rows(&mut self, rows: &[f64]) -> Result<()> {
        let d = self.mean.len();
        if d == 0 || !rows.len().is_multiple_of(d) {
            return Err(Error::Invalid(format!(
                "feature statistics: {} values are not whole rows of {d}",
                rows.len()
            )));
        }
        let m = rows.len() / d;
        if m == 0 {
            return Ok(());
        }
        let x = DMatrix::from_row_slice(m, d, rows);
        let mean_b = x.row_mean().transpose();
        let centered = DMatrix::from_fn(m, d, |i, j| x[(i, j)] - mean_b[j]);
        let comoment_b = centered.transpose() * &centered;
        if self.n == 0 {
            self.mean = mean_b;
            self.comoment = comoment_b;
        } else {
            let (na, nb) = (self.n as f64, m as f64);
            let n = na + nb;
            let delta = &mean_b - &self.mean;
            self.mean += &delta * (nb / n);
            self.comoment += comoment_b + &delta * delta.transpose() * (na * nb / n);
        }
        self.n += m;
        Ok(())
    }

    /// Rows added.
    pub fn count(&self) -> usize {
        self.n
    }

    /// The mean row.
    pub fn mean(&self) -> &DVector<f64> {
        &self.mean
    }

    /// The unbiased covariance (the co-moment over n - 1), as [`mean_cov`].
    pub fn covariance(&self) -> DMatrix<f64> {
        &self.comoment / (self.n.max(2) - 1) as f64
    }
}

/// The Frechet distance between the Gaussians of two accumulated sets.
///
/// Errors: [`Error::Invalid`] if a set has fewer than 2 rows (no covariance) or the sizes
/// differ.
pub fn frechet_distance_of(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    for (name, set) in [("first", a), ("second", b)] {
        if set.count() < 2 {
            return Err(Error::Invalid(format!(
                "frechet distance: the {name} set has {} rows; a covariance needs at least two",
                set.count()
            )));
        }
    }
    if a.mean.len() != b.mean.len() {
        return Err(Error::Invalid(format!(
            "frechet distance: {} features against {}",
            a.mean.len(),
            b.mean.len()
        )));
    }
    Ok(frechet_distance_from_stats(
        a.mean(),
        &a.covariance(),
        b.mean(),
        &b.covariance(),
    ))
}

/// The classifier's features of every image of `rows`, accumulated into [`FeatureStats`] and
/// a histogram of predicted classes, [`EVAL_BATCH`] images at a time (constant memory), in
/// eval mode (the classifier is left in eval mode). `bar` advances by the images done.
///
/// Errors: GPU and readback errors.
pub fn feature_stats(
    classifier: &Classifier,
    gpu: &Gpu,
    rows: Rows,
    bar: &indicatif::ProgressBar,
) -> Result<(FeatureStats, Vec<usize>)> {
    use crate::nn::Module;
    classifier.set_training(false);
    let mut stats = FeatureStats::new(FEATURE_DIM);
    let mut counts = vec![0usize; 10];
    for_each_chunk(gpu, rows, EVAL_BATCH, |x, range| {
        add_features(classifier, x, &mut stats, &mut counts)?;
        bar.inc(range.len() as u64);
        Ok(())
    })?;
    Ok((stats, counts))
}

/// Adds the features and predicted classes of images `x (m, 784)` (on the GPU, in [0, 1])
/// to `stats` and `counts` (ten classes); the classifier must be in eval mode.
///
/// Errors: GPU and readback errors.
pub fn add_features(
    classifier: &Classifier,
    x: &Tensor,
    stats: &mut FeatureStats,
    counts: &mut [usize],
) -> Result<()> {
    let _no_grad = crate::autograd::no_grad();
    let f = classifier.features(x)?;
    let logits = classifier.classify_features(&f)?.to_vec()?;
    let feats: Vec<f64> = f.to_vec()?.into_iter().map(f64::from).collect();
    stats.add_rows(&feats)?;
    for c in logits.chunks_exact(10).map(predicted_class) {
        counts[c.min(counts.len() - 1)] += 1;
    }
    Ok(())
}

/// Entropy (nats) of a histogram of class counts: ln 10 = 2.303 when all ten classes are
/// equally frequent, 0 when every sample is in one class.
pub fn entropy_of_counts(counts: &[usize]) -> f64 {
    let n = counts.iter().sum::<usize>().max(1) as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 / n * (c as f64 / n).ln())
        .sum::<f64>()
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
    entropy_of_counts(&class_histogram(classes, num_classes))
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
