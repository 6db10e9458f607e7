//! Test negative ELBO, the importance-weighted (IWAE) estimate of the negative
//! log-likelihood, and the KL of each latent dimension ([`kl_per_dim`], which lives in
//! [`crate::infer`] because training reports it too).

use indicatif::ProgressBar;

use crate::autograd::no_grad;
use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::VariationalModel;
use crate::ops::{bce_with_logits, reparameterize};
use crate::tensor::Tensor;

pub use crate::infer::kl_per_dim;

/// Likelihood figures of a VAE on a test set, nats per image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Likelihood {
    /// Negative ELBO, averaged over the K importance samples of every image: -E_q[log w].
    pub neg_elbo: f64,
    /// Importance-weighted estimate of -log p(x) (Burda et al. 2016, eq. 8):
    /// -log (1/K sum_k w_k), w_k = p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).
    pub iwae_nll: f64,
    /// Number of importance samples K.
    pub iwae_k: usize,
    /// Test images evaluated.
    pub test_images: usize,
}

/// log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) for `k` samples of each image in `x`
/// (`(B, 784)`, host values), returned image-major: `B * k` values.
///
/// With z = mu + sigma eps: log p(z) - log q(z|x) = 1/2 sum_d (logvar_d + eps_d^2 - z_d^2)
/// (the 2 pi terms cancel), and log p(x|z) = -BCE(decoder logits, x) summed over pixels.
pub fn log_weights(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    x: &[f32],
    pixels: usize,
    k: usize,
) -> Result<Vec<f64>> {
    let _no_grad = no_grad();
    let b = x.len() / pixels;
    let x = Tensor::from_slice(gpu, x, [b, pixels])?;
    let (mu, logvar) = model.encode(&x)?;
    let d = mu.dims()[1];
    // Samples per decode: b * kc codes at a time, within the model's decode budget.
    let kc = (model.max_decode_rows() / b.max(1)).clamp(1, k);
    let mut w = vec![0.0f64; b * k];
    let mut done = 0;
    while done < k {
        let kn = kc.min(k - done);
        let (mu, logvar, x) = (
            mu.repeat_rows(kn)?,
            logvar.repeat_rows(kn)?,
            x.repeat_rows(kn)?,
        );
        let eps = Tensor::randn(gpu, [b * kn, d])?;
        let z = reparameterize(&mu, &logvar, &eps)?;
        let log_px = bce_with_logits(&model.decode(&z)?, &x)?.scale(-1.0)?;
        let log_ratio = logvar
            .add(&eps.mul(&eps)?)?
            .sub(&z.mul(&z)?)?
            .sum_axis(1)?
            .scale(0.5)?;
        let chunk = log_px.add(&log_ratio)?.to_vec()?;
        // `chunk` is image-major: kn samples of image 0, then of image 1, ...
        for (i, row) in chunk.chunks_exact(kn).enumerate() {
            for (s, v) in row.iter().enumerate() {
                w[i * k + done + s] = f64::from(*v);
            }
        }
        done += kn;
    }
    Ok(w)
}

/// log (1/n) sum exp(v), computed stably.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + (v.iter().map(|x| (x - m).exp()).sum::<f64>() / v.len() as f64).ln()
}

/// Negative ELBO and IWAE negative log-likelihood with `k` importance samples over the first
/// `max_images` images of `data` (all if None), in nats per image.
pub fn likelihood(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    k: usize,
    max_images: Option<usize>,
) -> Result<Likelihood> {
    likelihood_with_progress(model, gpu, data, k, max_images, &ProgressBar::hidden())
}

/// [`likelihood`], advancing `bar` by the images done.
pub fn likelihood_with_progress(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    k: usize,
    max_images: Option<usize>,
    bar: &ProgressBar,
) -> Result<Likelihood> {
    let n = max_images.unwrap_or(data.len()).min(data.len());
    let (mut elbo_sum, mut iwae_sum) = (0.0, 0.0);
    for (elbo, iwae) in image_bounds_with_progress(model, gpu, data, n, k, bar)? {
        elbo_sum += elbo;
        iwae_sum += iwae;
    }
    Ok(Likelihood {
        neg_elbo: -elbo_sum / n as f64,
        iwae_nll: -iwae_sum / n as f64,
        iwae_k: k,
        test_images: n,
    })
}

/// The two bounds on log p(x) of each of the first `n` images of `data`, nats, with `k`
/// importance samples: (the ELBO estimate mean_k log w_k, the IWAE bound log mean_k w_k).
/// Decodes [`VariationalModel::max_decode_rows`] codes at a time.
pub fn image_bounds(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    n: usize,
    k: usize,
) -> Result<Vec<(f64, f64)>> {
    image_bounds_with_progress(model, gpu, data, n, k, &ProgressBar::hidden())
}

/// [`image_bounds`], advancing `bar` by the images done.
pub fn image_bounds_with_progress(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    n: usize,
    k: usize,
    bar: &ProgressBar,
) -> Result<Vec<(f64, f64)>> {
    let per_batch = (model.max_decode_rows() / k.max(1)).max(1);
    let idx: Vec<usize> = (0..n.min(data.len())).collect();
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(per_batch) {
        let w = log_weights(model, gpu, &data.gather(chunk), data.pixels(), k)?;
        out.extend(
            w.chunks_exact(k)
                .map(|image| (image.iter().sum::<f64>() / k as f64, log_mean_exp(image))),
        );
        bar.inc(chunk.len() as u64);
    }
    Ok(out)
}
