//! Evaluation and latent-space tools: the IWAE bound against the ELBO, the Frechet
//! distance, AUROC on hand-checked cases, traversal and interpolation image sizes, and
//! samples written as NumPy arrays.

mod common;

use std::path::PathBuf;

use common::gpu;
use deepgen::data::Mnist;
use deepgen::eval::frechet::{class_entropy, frechet_distance};
use deepgen::eval::likelihood::{likelihood, log_mean_exp, log_weights};
use deepgen::eval::outliers::{auroc, fpr_at_95_tpr};
use deepgen::latent::{TraversalSpec, interpolate, slerp, traverse};
use deepgen::models::{Generative, Model, VariationalModel};
use deepgen::train::{TrainConfig, train_vae};
use rand::{RngExt, SeedableRng};

fn mnist() -> Mnist {
    Mnist::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")).unwrap()
}

fn small_vae(dir: &std::path::Path) -> deepgen::models::Vae {
    let cfg = TrainConfig {
        data_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        epochs: 2,
        limit: Some(1024),
        out_dir: dir.to_path_buf(),
        progress: false,
        latent_dim: 8,
        ..TrainConfig::default()
    };
    train_vae(&gpu(), &cfg).unwrap().0
}

#[test]
fn iwae_is_below_the_elbo_and_tightens_with_k() {
    let dir = tempfile::tempdir().unwrap();
    let vae = small_vae(dir.path());
    let gpu = gpu();
    let test = mnist().test.truncate(200);
    gpu.manual_seed(1);
    // log weights of 200 images x 64 samples; the K-sample bound uses the first K of each image.
    let w = log_weights(&vae, &gpu, &test.images, 784, 64).unwrap();
    let bound = |k: usize| -> f64 {
        -w.chunks_exact(64)
            .map(|s| log_mean_exp(&s[..k]))
            .sum::<f64>()
            / 200.0
    };
    let neg_elbo = -w.iter().sum::<f64>() / w.len() as f64;
    let (b1, b4, b16, b64) = (bound(1), bound(4), bound(16), bound(64));
    assert!(
        b64 <= neg_elbo,
        "IWAE {b64} must not exceed the negative ELBO {neg_elbo}"
    );
    assert!(
        b1 >= b4 && b4 >= b16 && b16 >= b64,
        "the bound must tighten with K: {b1} {b4} {b16} {b64}"
    );
    assert!(b1 - b64 > 0.1, "and by a visible amount: {b1} -> {b64}");
    // The library figure agrees with its definition.
    gpu.manual_seed(2);
    let l = likelihood(&vae, &gpu, &test, 50, Some(100)).unwrap();
    assert_eq!((l.iwae_k, l.test_images), (50, 100));
    assert!(
        l.iwae_nll <= l.neg_elbo && l.iwae_nll > 50.0 && l.neg_elbo < 400.0,
        "{l:?}"
    );
}

/// The VAE with a tiny decode budget, to drive `log_weights` through its sample chunks.
struct SmallBatches<'a>(&'a deepgen::models::Vae);

impl deepgen::nn::Module for SmallBatches<'_> {
    fn named_parameters(&self) -> Vec<(String, deepgen::Tensor)> {
        self.0.named_parameters()
    }
}

impl Model for SmallBatches<'_> {
    fn kind(&self) -> deepgen::models::ModelKind {
        self.0.kind()
    }
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.0.metadata()
    }
}

impl Generative for SmallBatches<'_> {
    fn latent_dim(&self) -> usize {
        self.0.latent_dim()
    }
    fn generate(&self, z: &deepgen::Tensor) -> deepgen::Result<deepgen::Tensor> {
        self.0.generate(z)
    }
}

impl VariationalModel for SmallBatches<'_> {
    fn encode(&self, x: &deepgen::Tensor) -> deepgen::Result<(deepgen::Tensor, deepgen::Tensor)> {
        self.0.encode(x)
    }
    fn decode(&self, z: &deepgen::Tensor) -> deepgen::Result<deepgen::Tensor> {
        self.0.decode(z)
    }
    fn loss(&self, x: &deepgen::Tensor, beta: f32) -> deepgen::Result<deepgen::models::VaeLoss> {
        self.0.loss(x, beta)
    }
    fn max_decode_rows(&self) -> usize {
        3
    }
}

#[test]
fn log_weights_in_sample_chunks_match_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let vae = small_vae(dir.path());
    let gpu = gpu();
    let test = mnist().test.truncate(1);
    // One image, K = 7: chunks of 3, 3 and 1 samples draw the same normals in the same order
    // (latent_dim 8: every chunk is whole Philox blocks), so the weights must agree.
    gpu.manual_seed(5);
    let whole = log_weights(&vae, &gpu, &test.images, 784, 7).unwrap();
    gpu.manual_seed(5);
    let chunked = log_weights(&SmallBatches(&vae), &gpu, &test.images, 784, 7).unwrap();
    assert_eq!(whole.len(), 7);
    for (a, b) in whole.iter().zip(&chunked) {
        assert!(
            (a - b).abs() < 1e-3 * a.abs().max(1.0),
            "{whole:?} vs {chunked:?}"
        );
    }
    // Several images in chunks of one sample each: every slot filled with a finite weight.
    let five = mnist().test.truncate(5);
    let w = log_weights(&SmallBatches(&vae), &gpu, &five.images, 784, 4).unwrap();
    assert_eq!(w.len(), 20);
    assert!(w.iter().all(|v| v.is_finite() && *v < 0.0), "{w:?}");
}

#[test]
fn log_mean_exp_is_stable() {
    assert!((log_mean_exp(&[0.0, 0.0]) - 0.0).abs() < 1e-12);
    assert!((log_mean_exp(&[-1000.0, -1000.0 + 2f64.ln()]) - (-1000.0 + 1.5f64.ln())).abs() < 1e-9);
    assert!((log_mean_exp(&[800.0, 800.0]) - 800.0).abs() < 1e-9);
}

fn gaussian_set(n: usize, d: usize, shift: f64, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * d)
        .map(|i| {
            let u: f64 = rng.random_range(-1.0..1.0);
            u * (1.0 + (i % d) as f64 * 0.1) + shift
        })
        .collect()
}

#[test]
fn frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift() {
    let d = 16;
    let a = gaussian_set(2000, d, 0.0, 1);
    let same = frechet_distance(&a, &a, d).unwrap();
    assert!(same.abs() < 1e-6, "{same}");
    let mut previous = same;
    for shift in [0.1, 0.5, 1.0] {
        let b: Vec<f64> = a.iter().map(|v| v + shift).collect();
        let fd = frechet_distance(&a, &b, d).unwrap();
        // A pure shift of the mean adds exactly |shift|^2 per dimension.
        assert!(
            (fd - shift * shift * d as f64).abs() < 1e-6,
            "shift {shift}: {fd}"
        );
        assert!(fd > previous);
        previous = fd;
    }
    // Scaling changes the covariance term: for S2 = c^2 S1 the trace term is (1 - c)^2 Tr(S1).
    let scaled: Vec<f64> = a.iter().map(|v| v * 2.0).collect();
    let (_, s1) = deepgen::eval::frechet::mean_cov(&a, d);
    let (m1, _) = deepgen::eval::frechet::mean_cov(&a, d);
    let want = s1.trace() + m1.norm_squared();
    let fd = frechet_distance(&a, &scaled, d).unwrap();
    assert!((fd - want).abs() < 1e-6 * want.max(1.0), "{fd} vs {want}");
    assert!(
        frechet_distance(&a[..d], &a, d).is_err(),
        "one row is not a distribution"
    );
}

#[test]
fn class_entropy_measures_mode_collapse() {
    assert!(
        (class_entropy(&(0..1000).map(|i| i % 10).collect::<Vec<_>>(), 10) - 10f64.ln()).abs()
            < 1e-12
    );
    assert_eq!(class_entropy(&[3; 100], 10), 0.0);
    assert!((class_entropy(&[1, 2, 1, 2], 10) - 2f64.ln()).abs() < 1e-12);
}

#[test]
fn auroc_on_hand_checked_cases() {
    // Perfect separation, reversed, and chance.
    assert_eq!(auroc(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 1.0);
    assert_eq!(auroc(&[4.0, 5.0], &[1.0, 2.0, 3.0]), 0.0);
    assert_eq!(auroc(&[1.0, 1.0], &[1.0, 1.0, 1.0]), 0.5);
    // in = {1, 3}, out = {2, 4}: pairs (out > in): 2>1, 4>1, 4>3 -> 3 of 4.
    assert_eq!(auroc(&[1.0, 3.0], &[2.0, 4.0]), 0.75);
    // A tie counts one half: in = {1, 2}, out = {2, 3}: 2=2 (0.5), 2>1, 3>1, 3>2 -> 3.5 of 4.
    assert_eq!(auroc(&[1.0, 2.0], &[2.0, 3.0]), 0.875);
    assert!(auroc(&[], &[1.0]).is_nan());
    // Against the O(n^2) definition on random scores with many ties.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let a: Vec<f64> = (0..300).map(|_| rng.random_range(0..20) as f64).collect();
    let b: Vec<f64> = (0..200).map(|_| rng.random_range(5..25) as f64).collect();
    let pairs: f64 = a
        .iter()
        .flat_map(|x| {
            b.iter().map(move |y| {
                if y > x {
                    1.0
                } else if y == x {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    assert!((auroc(&a, &b) - pairs / (300.0 * 200.0)).abs() < 1e-12);
}

#[test]
fn fpr_at_95_tpr_on_hand_checked_cases() {
    let outliers: Vec<f64> = (1..=20).map(|i| i as f64).collect(); // 95% of 20 = 19: threshold 2
    assert_eq!(fpr_at_95_tpr(&[0.0, 1.0, 1.5, 2.0, 3.0], &outliers), 0.4);
    assert_eq!(fpr_at_95_tpr(&[0.0, 0.5], &outliers), 0.0);
    assert_eq!(fpr_at_95_tpr(&[100.0], &outliers), 1.0);
}

#[test]
fn traversal_and_interpolation_images_have_the_stated_size() {
    let dir = tempfile::tempdir().unwrap();
    let vae = small_vae(dir.path());
    let gpu = gpu();
    let test = mnist().test.truncate(500);
    let spec = TraversalSpec {
        image_index: Some(3),
        dims: Some(vec![0, 5, 2]),
        steps: 7,
        range: 2.5,
    };
    let t = traverse(&vae, &gpu, &test, &spec).unwrap();
    assert_eq!(t.dims, vec![0, 5, 2]);
    assert_eq!(t.images.len(), 3 * 7 * 784);
    assert_eq!(t.values.first(), Some(&-2.5));
    assert_eq!(t.values.last(), Some(&2.5));
    // Default: every active dimension, most informative first.
    let all = traverse(
        &vae,
        &gpu,
        &test,
        &TraversalSpec {
            dims: None,
            image_index: None,
            ..spec.clone()
        },
    )
    .unwrap();
    let kl = all.kl_per_dim.clone().unwrap();
    assert_eq!(all.dims.len() + all.inactive.len(), 8);
    assert!(
        all.dims.windows(2).all(|w| kl[w[0]] >= kl[w[1]]),
        "sorted by KL: {kl:?}"
    );
    assert!(
        all.inactive
            .iter()
            .all(|&d| kl[d] < deepgen::latent::INACTIVE_KL)
    );
    assert!(
        traverse(
            &vae,
            &gpu,
            &test,
            &TraversalSpec {
                dims: Some(vec![8]),
                ..spec.clone()
            }
        )
        .is_err()
    );
    // Interpolation: the two originals plus 10 decoded steps, whose ends are the two images'
    // reconstructions (decoded from their means).
    let strip = interpolate(&vae, &gpu, &test, 0, 1, 10).unwrap();
    assert_eq!(strip.len(), 12 * 784);
    assert_eq!(&strip[..784], test.image(0));
    assert_eq!(&strip[11 * 784..], test.image(1));
    for (slot, image) in [(1, 0), (10, 1)] {
        let x = deepgen::Tensor::from_slice(&gpu, test.image(image), [1, 784]).unwrap();
        let recon = vae.reconstruct(&x).unwrap().to_vec().unwrap();
        let decoded = &strip[slot * 784..(slot + 1) * 784];
        let worst = recon
            .iter()
            .zip(decoded)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "step {slot} vs reconstruction of image {image}: {worst}"
        );
    }
    // The middle of the path differs from both ends.
    let middle = &strip[5 * 784..6 * 784];
    assert!(middle != &strip[784..2 * 784] && middle != &strip[10 * 784..11 * 784]);
}

#[test]
fn slerp_keeps_the_norm_of_equal_norm_endpoints() {
    let a = [3.0f32, 0.0, 4.0];
    let b = [0.0f32, 5.0, 0.0];
    for t in [0.0, 0.25, 0.5, 1.0] {
        let z = slerp(&a, &b, t);
        let norm = z.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 5.0).abs() < 1e-4, "t {t}: norm {norm}");
    }
    assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
}
