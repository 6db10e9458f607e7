//! The Frechet statistics accumulated chunk by chunk (`FeatureStats`, what `deepgen eval`
//! keeps instead of every generated image) against the same statistics of all rows at once.

use deepgen::eval::frechet::{FeatureStats, frechet_distance, frechet_distance_of, mean_cov};
use rand::{RngExt, SeedableRng};

/// `n` rows of `d` features, each feature with its own offset and scale (as classifier
/// features have), seeded.
fn rows(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * d)
        .map(|i| {
            let j = (i % d) as f64;
            (j * 0.37).sin() * 5.0 + (1.0 + j * 0.1) * rng.random_range(-1.0..1.0)
        })
        .collect()
}

#[test]
fn chunked_statistics_equal_the_whole_set_up_to_rounding() {
    let d = 16;
    let x = rows(1001, d, 1);
    let (mean, cov) = mean_cov(&x, d);
    // Chunks of 250 (eval's), of 1 (the worst case for the merge) and of uneven sizes.
    for sizes in [vec![250usize], vec![1], vec![7, 300, 1, 93]] {
        let mut stats = FeatureStats::new(d);
        let mut at = 0;
        let mut k = 0;
        while at < 1001 {
            let m = sizes[k % sizes.len()].min(1001 - at);
            stats.add_rows(&x[at * d..(at + m) * d]).unwrap();
            at += m;
            k += 1;
        }
        assert_eq!(stats.count(), 1001);
        let dm = (stats.mean() - &mean).amax();
        let dc = (stats.covariance() - &cov).amax() / cov.amax();
        assert!(dm < 1e-12, "{sizes:?}: mean differs by {dm}");
        assert!(
            dc < 1e-12,
            "{sizes:?}: covariance differs by {dc} (relative)"
        );
    }
}

#[test]
fn streamed_frechet_distance_equals_the_one_of_all_rows() {
    let d = 8;
    let (a, b) = (rows(600, d, 2), rows(900, d, 3));
    let whole = frechet_distance(&a, &b, d).unwrap();
    let mut sa = FeatureStats::new(d);
    let mut sb = FeatureStats::new(d);
    for c in a.chunks(250 * d) {
        sa.add_rows(c).unwrap();
    }
    for c in b.chunks(250 * d) {
        sb.add_rows(c).unwrap();
    }
    let streamed = frechet_distance_of(&sa, &sb).unwrap();
    assert!(
        (streamed - whole).abs() <= 1e-9 * whole.abs().max(1.0),
        "{streamed} vs {whole}"
    );
    // A set with fewer than two rows has no covariance: refused, not a NaN.
    let mut one = FeatureStats::new(d);
    one.add_rows(&a[..d]).unwrap();
    assert!(frechet_distance_of(&one, &sb).is_err());
    assert!(
        one.add_rows(&a[..d - 1]).is_err(),
        "a ragged row is refused"
    );
}
