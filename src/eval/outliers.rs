//! Scoring outlier detection: the area under the ROC curve and the false-positive rate at
//! 95% true-positive rate. Outliers are the positive class; a higher score means "more
//! unusual".

/// AUROC: the probability that a random outlier scores higher than a random inlier, ties
/// counting one half (the Mann-Whitney U statistic over n_in * n_out), computed exactly
/// from average ranks in O(n log n).
///
/// Returns NaN if either set is empty.
pub fn auroc(inlier_scores: &[f64], outlier_scores: &[f64]) -> f64 {
    let (n_in, n_out) = (inlier_scores.len(), outlier_scores.len());
    if n_in == 0 || n_out == 0 {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = inlier_scores
        .iter()
        .map(|&s| (s, false))
        .chain(outlier_scores.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (1-based, tie-averaged) ranks of the outliers.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * all[i..=j].iter().filter(|e| e.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n_out * (n_out + 1)) as f64 / 2.0;
    u / (n_in as f64 * n_out as f64)
}

/// The fraction of inliers flagged when the threshold is set so that 95% of outliers are
/// flagged (score >= threshold): lower is better. The threshold is the largest score that
/// keeps at least 95% of the outliers at or above it.
///
/// Returns NaN if either set is empty.
pub fn fpr_at_95_tpr(inlier_scores: &[f64], outlier_scores: &[f64]) -> f64 {
    fpr_at_tpr(inlier_scores, outlier_scores, 0.95)
}

/// [`fpr_at_95_tpr`] for any true-positive rate in (0, 1].
pub fn fpr_at_tpr(inlier_scores: &[f64], outlier_scores: &[f64], tpr: f64) -> f64 {
    if inlier_scores.is_empty() || outlier_scores.is_empty() {
        return f64::NAN;
    }
    let mut out: Vec<f64> = outlier_scores.to_vec();
    out.sort_by(|a, b| b.total_cmp(a));
    let needed = ((tpr * out.len() as f64).ceil() as usize).clamp(1, out.len());
    let threshold = out[needed - 1];
    inlier_scores.iter().filter(|&&s| s >= threshold).count() as f64 / inlier_scores.len() as f64
}
