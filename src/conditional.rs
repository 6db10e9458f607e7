//! Conditional generation with the models told the digit ([`crate::models::Conditional`]: the
//! conditional VAE and the conditional GAN): samples of one digit, the 10-row grid (one row per
//! digit, one column per code z), the conditional VAE's analogies (Kingma et al. 2014, fig. 1:
//! a test image's code decoded with every label, style kept and digit changed), its negative
//! ELBO of x given y, and the conditional accuracy (the fraction of samples asked for digit c
//! that a digit classifier labels c). `train` and `eval` both use this module; it uses
//! neither.

use crate::autograd::no_grad;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, sum_chunks};
use crate::models::{Classifier, Conditional, Cvae, NUM_CLASSES, one_hot, predicted_class};
use crate::tensor::Tensor;

/// Decodes host codes `z` (n x latent_dim, row-major) with `labels` (n digits) into images
/// (n x 784 intensities in [0, 1]), host side, [`EVAL_BATCH`] rows at a time, without
/// recording.
///
/// Errors: [`Error::Invalid`] if the counts differ or a label is not a digit; GPU errors.
pub fn generate_labelled(
    model: &dyn Conditional,
    gpu: &Gpu,
    z: &[f32],
    labels: &[u8],
) -> Result<Vec<f32>> {
    let d = model.latent_dim();
    if z.len() != labels.len() * d {
        return Err(Error::Invalid(format!(
            "{} values of z are not {} codes of {d}",
            z.len(),
            labels.len()
        )));
    }
    let _no_grad = no_grad();
    let mut out = Vec::with_capacity(labels.len() * 784);
    for (zs, ys) in z.chunks(EVAL_BATCH * d).zip(labels.chunks(EVAL_BATCH)) {
        let codes = Tensor::from_slice(gpu, zs, [ys.len(), d])?;
        out.extend(model.generate_given(&codes, &one_hot(gpu, ys)?)?.to_vec()?);
    }
    Ok(out)
}

/// `n` samples of digit `class`: codes z ~ N(0, I) drawn from the GPU generator
/// [`EVAL_BATCH`] at a time, `(m, latent_dim)` each (the draws of
/// [`crate::infer::prior_samples`]), decoded with y = `class`. Host images, n x 784.
///
/// Errors: [`Error::Invalid`] for a class that is not a digit; GPU errors.
pub fn class_samples(model: &dyn Conditional, gpu: &Gpu, class: u8, n: usize) -> Result<Vec<f32>> {
    let _no_grad = no_grad();
    let mut images = Vec::with_capacity(n * 784);
    let mut left = n;
    while left > 0 {
        let m = left.min(EVAL_BATCH);
        let z = Tensor::randn(gpu, [m, model.latent_dim()])?;
        let y = one_hot(gpu, &vec![class; m])?;
        images.extend(model.generate_given(&z, &y)?.to_vec()?);
        left -= m;
    }
    Ok(images)
}

/// The 10-row grid of the host codes `z` (cols x latent_dim): row c, column j is code j
/// decoded with digit c. Host images, row by row (10 x cols images).
///
/// Errors: as [`generate_labelled`].
pub fn class_grid_of(model: &dyn Conditional, gpu: &Gpu, z: &[f32]) -> Result<Vec<f32>> {
    let cols = z.len() / model.latent_dim().max(1);
    let mut codes = Vec::with_capacity(z.len() * NUM_CLASSES);
    let mut labels = Vec::with_capacity(cols * NUM_CLASSES);
    for c in 0..NUM_CLASSES {
        codes.extend_from_slice(z);
        labels.extend(std::iter::repeat_n(c as u8, cols));
    }
    generate_labelled(model, gpu, &codes, &labels)
}

/// [`class_grid_of`] `cols` codes z ~ N(0, I) drawn from the GPU generator: `deepgen sample
/// --class all`.
///
/// Errors: as [`generate_labelled`].
pub fn class_grid(model: &dyn Conditional, gpu: &Gpu, cols: usize) -> Result<Vec<f32>> {
    let z = {
        let _no_grad = no_grad();
        Tensor::randn(gpu, [cols, model.latent_dim()])?.to_vec()?
    };
    class_grid_of(model, gpu, &z)
}

/// Analogies (Kingma et al. 2014, fig. 1): the test images `first .. first + count` (fewer
/// at the end of the set) are encoded with their own labels, q(z|x,y), and each mean code mu
/// is decoded with every digit 0-9. One row per test image: the image, then its code decoded
/// as 0, 1, ..., 9 (11 images per row). Host images.
///
/// Errors: [`Error::Invalid`] naming `--image-index` if `first` is beyond the test set; GPU
/// errors.
pub fn analogies(
    model: &Cvae,
    gpu: &Gpu,
    test: &Dataset,
    first: usize,
    count: usize,
) -> Result<Vec<f32>> {
    if first >= test.len() {
        return Err(Error::Invalid(format!(
            "--image-index {first} is out of range: the test set has {} images (0 to {})",
            test.len(),
            test.len().saturating_sub(1)
        )));
    }
    let n = count.min(test.len() - first);
    let _no_grad = no_grad();
    let p = test.pixels();
    let x = Tensor::from_slice(gpu, &test.images[first * p..(first + n) * p], [n, p])?;
    let (mu, _) = model.encode(&x, &one_hot(gpu, &test.labels[first..first + n])?)?;
    let codes = mu.to_vec()?;
    let d = model.config.latent_dim;
    // Row i: the image, then mu_i decoded with 0..9.
    let mut z = Vec::with_capacity(n * NUM_CLASSES * d);
    let mut labels = Vec::with_capacity(n * NUM_CLASSES);
    for code in codes.chunks(d) {
        for c in 0..NUM_CLASSES {
            z.extend_from_slice(code);
            labels.push(c as u8);
        }
    }
    let decoded = generate_labelled(model, gpu, &z, &labels)?;
    let mut out = Vec::with_capacity(n * (NUM_CLASSES + 1) * p);
    for (i, row) in decoded.chunks(NUM_CLASSES * p).enumerate() {
        out.extend_from_slice(test.image(first + i));
        out.extend_from_slice(row);
    }
    Ok(out)
}

/// The test-split figures of a conditional VAE, nats per image.
#[derive(Clone, Debug)]
pub struct CvaeEval {
    /// Mean of `recon + beta * kl`: with beta = 1, the negative ELBO of x given y.
    pub loss: f64,
    /// Mean reconstruction term (BCE summed over pixels).
    pub recon: f64,
    /// Mean KL(q(z|x,y) || N(0, I)).
    pub kl: f64,
    /// Mean KL of each latent dimension, in dimension order.
    pub kl_per_dim: Vec<f64>,
}

/// The (beta-weighted) negative ELBO of every image of `data` given its label, one z sample
/// per image (eps from the GPU generator, one `(m, latent_dim)` draw per chunk of
/// [`EVAL_BATCH`] images, as [`crate::train::vae::evaluate_vae`] draws them), in eval mode,
/// without recording; and the KL of each latent dimension.
///
/// Errors: GPU and readback errors.
pub fn cvae_eval(model: &Cvae, gpu: &Gpu, data: &Dataset, beta: f32) -> Result<CvaeEval> {
    use crate::nn::Module;
    model.set_training(false);
    let sums = sum_chunks(gpu, Rows::images(data), EVAL_BATCH, |x, range| {
        let y = one_hot(gpu, &data.labels[range])?;
        let l = model.loss(x, &y, beta)?;
        let (mu, logvar) = model.encode(x, &y)?;
        // 1/2 (mu^2 + exp(logvar) - 1 - logvar), summed over the chunk per dimension.
        let kl = mu
            .mul(&mu)?
            .add(&logvar.exp()?)?
            .sub(&logvar)?
            .affine(0.5, -0.5)?
            .sum_axis(0)?;
        Ok(vec![l.per_sample.sum()?, l.recon.sum()?, l.kl.sum()?, kl])
    });
    model.set_training(true);
    let sums = sums?;
    let n = data.len().max(1) as f64;
    let mean = |i: usize| -> Result<f64> {
        Ok(match sums.get(i) {
            Some(s) => s.item()? as f64 / n,
            None => 0.0,
        })
    };
    let kl_per_dim = match sums.get(3) {
        Some(t) => t.to_vec()?.into_iter().map(|v| v as f64 / n).collect(),
        None => Vec::new(),
    };
    Ok(CvaeEval {
        loss: mean(0)?,
        recon: mean(1)?,
        kl: mean(2)?,
        kl_per_dim,
    })
}

/// How often a classifier labels samples asked for digit c as c.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConditionalAccuracy {
    /// Samples per digit.
    pub samples_per_class: usize,
    /// The fraction labelled c of the samples asked for c, for c = 0..9.
    pub per_class: Vec<f64>,
    /// The mean over the ten digits (equal counts: the fraction of all samples).
    pub accuracy: f64,
    /// `confusion[c][k]`: samples asked for c that the classifier labelled k.
    pub confusion: Vec<Vec<usize>>,
}

/// The conditional accuracy of `model`: for every digit c, `per_class` samples asked for c
/// ([`class_samples`]: z ~ N(0, I) from the GPU generator, digits in order 0..9) classified
/// by `classifier` (put in eval mode here).
///
/// Errors: GPU and readback errors.
pub fn conditional_accuracy(
    model: &dyn Conditional,
    classifier: &Classifier,
    gpu: &Gpu,
    per_class: usize,
) -> Result<ConditionalAccuracy> {
    use crate::nn::Module;
    classifier.set_training(false);
    let _no_grad = no_grad();
    let mut confusion = vec![vec![0usize; NUM_CLASSES]; NUM_CLASSES];
    for (c, row) in confusion.iter_mut().enumerate() {
        let mut left = per_class;
        while left > 0 {
            let m = left.min(EVAL_BATCH);
            let z = Tensor::randn(gpu, [m, model.latent_dim()])?;
            let images = model.generate_given(&z, &one_hot(gpu, &vec![c as u8; m])?)?;
            let logits = classifier.forward(&images)?.to_vec()?;
            for k in logits.chunks_exact(NUM_CLASSES).map(predicted_class) {
                row[k] += 1;
            }
            left -= m;
        }
    }
    let per_class_acc: Vec<f64> = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| row[c] as f64 / per_class.max(1) as f64)
        .collect();
    Ok(ConditionalAccuracy {
        samples_per_class: per_class,
        accuracy: per_class_acc.iter().sum::<f64>() / NUM_CLASSES as f64,
        per_class: per_class_acc,
        confusion,
    })
}
