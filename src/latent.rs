//! Looking inside the latent space: latent traversals (perturb one dimension, decode)
//! and interpolations between two codes, the lecture's continuity and completeness made
//! visible. VAEs start from an encoded test image; GANs, which have no encoder, from
//! seeded noise vectors.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::autograd::no_grad;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::{decode_codes, kl_per_dim};
use crate::models::Generative;
use crate::tensor::Tensor;

/// Dimensions whose mean KL is below this many nats are "inactive": the VAE does not use them.
pub const INACTIVE_KL: f64 = 0.01;

/// What to traverse.
#[derive(Clone, Debug)]
pub struct TraversalSpec {
    /// Start from the code (mu) of this test image; None starts from z = 0.
    pub image_index: Option<usize>,
    /// The dimensions to vary (rows, in this order); None: every active dimension of a VAE,
    /// sorted by mean KL (most informative first), or the first 10 of a GAN's noise.
    pub dims: Option<Vec<usize>>,
    /// Values per dimension (columns).
    pub steps: usize,
    /// The values run evenly from -range to +range.
    pub range: f32,
}

/// A traversal grid and what it shows.
#[derive(Clone, Debug)]
pub struct Traversal {
    /// `dims.len() * steps` decoded images, row by row (784 values each).
    pub images: Vec<f32>,
    /// The dimension of each row.
    pub dims: Vec<usize>,
    /// The values of the columns.
    pub values: Vec<f32>,
    /// Mean KL per dimension over the test set (VAEs only), nats.
    pub kl_per_dim: Option<Vec<f64>>,
    /// Dimensions left out as inactive (KL < [`INACTIVE_KL`]).
    pub inactive: Vec<usize>,
}

/// The starting code: the test image's mu (VAE) or zeros.
fn base_code(
    model: &dyn Generative,
    gpu: &Gpu,
    test: &Dataset,
    image: Option<usize>,
) -> Result<Vec<f32>> {
    let d = model.latent_dim();
    let Some(i) = image else {
        return Ok(vec![0.0; d]);
    };
    let vae = model.as_variational().ok_or_else(|| {
        Error::Invalid(format!(
            "a {} model has no encoder: --image-index needs a VAE",
            model.kind().name()
        ))
    })?;
    if i >= test.len() {
        return Err(Error::Invalid(format!(
            "--image-index {i}: the test set has {} images",
            test.len()
        )));
    }
    let _no_grad = no_grad();
    let x = Tensor::from_slice(gpu, test.image(i), [1, test.pixels()])?;
    vae.encode(&x)?.0.to_vec()
}

/// Varies one latent dimension at a time across `[-range, range]` while holding the others.
///
/// Errors: [`Error::Invalid`] for a dimension out of range, fewer than 2 steps, or an image
/// index without an encoder.
pub fn traverse(
    model: &dyn Generative,
    gpu: &Gpu,
    test: &Dataset,
    spec: &TraversalSpec,
) -> Result<Traversal> {
    let d = model.latent_dim();
    if spec.steps < 2 {
        return Err(Error::Invalid(format!(
            "--steps must be at least 2, got {}",
            spec.steps
        )));
    }
    let kl = match model.as_variational() {
        Some(vae) => Some(kl_per_dim(vae, gpu, test, Some(2000))?),
        None => None,
    };
    let mut inactive = Vec::new();
    let dims: Vec<usize> = match (&spec.dims, &kl) {
        (Some(dims), _) => {
            if let Some(&bad) = dims.iter().find(|&&x| x >= d) {
                return Err(Error::Invalid(format!(
                    "--dims: dimension {bad} does not exist (latent_dim is {d})"
                )));
            }
            dims.clone()
        }
        (None, Some(kl)) => {
            let mut order: Vec<usize> = (0..d).collect();
            order.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]));
            inactive = order
                .iter()
                .copied()
                .filter(|&i| kl[i] < INACTIVE_KL)
                .collect();
            order.retain(|&i| kl[i] >= INACTIVE_KL);
            order
        }
        (None, None) => (0..d.min(10)).collect(),
    };
    let base = base_code(model, gpu, test, spec.image_index)?;
    let values: Vec<f32> = (0..spec.steps)
        .map(|j| -spec.range + 2.0 * spec.range * j as f32 / (spec.steps - 1) as f32)
        .collect();
    let mut z = Vec::with_capacity(dims.len() * spec.steps * d);
    for &dim in &dims {
        for &v in &values {
            let mut code = base.clone();
            code[dim] = v;
            z.extend(code);
        }
    }
    let images = if z.is_empty() {
        Vec::new()
    } else {
        decode_codes(model, gpu, &z)?
    };
    Ok(Traversal {
        images,
        dims,
        values,
        kl_per_dim: kl,
        inactive,
    })
}

/// A seeded N(0, I) noise vector: "noise vector number `seed`" of a GAN.
pub fn seeded_noise(seed: u64, d: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..d).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Spherical interpolation between a and b at t in [0, 1] (Shoemake 1985; White 2016 for
/// GAN noise, whose mass lies near a sphere): keeps the norm where linear interpolation
/// would pass through the unlikely region near 0.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b)).max(1e-12))
        .clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.abs() < 1e-6 {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| (1.0 - t) * x + t * y)
            .collect();
    }
    let (wa, wb) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

/// Decoded images along a path between two codes: for a VAE, linear between the codes (mu)
/// of test images `from` and `to`, with the two originals added at the ends; for a GAN,
/// spherical between noise vectors number `from` and `to`. Returns `(steps [+ 2]) * 784` values.
///
/// Errors: [`Error::Invalid`] if an index is outside the test set or steps < 2.
pub fn interpolate(
    model: &dyn Generative,
    gpu: &Gpu,
    test: &Dataset,
    from: usize,
    to: usize,
    steps: usize,
) -> Result<Vec<f32>> {
    if steps < 2 {
        return Err(Error::Invalid(format!(
            "--steps must be at least 2, got {steps}"
        )));
    }
    let ts: Vec<f32> = (0..steps).map(|j| j as f32 / (steps - 1) as f32).collect();
    match model.as_variational() {
        Some(_) => {
            let a = base_code(model, gpu, test, Some(from))?;
            let b = base_code(model, gpu, test, Some(to))?;
            let z: Vec<f32> = ts
                .iter()
                .flat_map(|&t| a.iter().zip(&b).map(move |(x, y)| (1.0 - t) * x + t * y))
                .collect();
            let decoded = decode_codes(model, gpu, &z)?;
            let mut out = test.image(from).to_vec();
            out.extend(decoded);
            out.extend_from_slice(test.image(to));
            Ok(out)
        }
        None => {
            let d = model.latent_dim();
            let (a, b) = (seeded_noise(from as u64, d), seeded_noise(to as u64, d));
            let z: Vec<f32> = ts.iter().flat_map(|&t| slerp(&a, &b, t)).collect();
            decode_codes(model, gpu, &z)
        }
    }
}
