//! Running a model over many rows in fixed-size chunks, without recording gradients: the one
//! loop behind every evaluation pass (test losses and accuracies, latent means, classifier
//! features, decoded samples and codes). `train`, `eval` and `latent` all use it, and none
//! of them imports another.
//!
//! Each chunk is uploaded as an `(m, width)` tensor, `m <= chunk`; a closure runs the model on
//! it. [`sum_chunks`] adds the closure's tensors on the GPU in chunk order (one readback when
//! the caller reads the totals); [`collect_chunks`] brings each chunk's output to the host.

use std::ops::Range;

use crate::autograd::no_grad;
use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Generative, VariationalModel};
use crate::tensor::Tensor;

/// Rows per chunk of every evaluation pass. Small enough that the largest intermediate (the
/// classifier's second convolution's im2col matrix, 196 x 512 floats per image; a DCGAN
/// generator's, 200 MB per 1,000 codes) fits in a 128 MiB storage binding. It also fixes the
/// order of evaluation sums (a sum of per-chunk sums) and the shapes of the noise drawn per
/// chunk, so changing it changes the last bits of test losses and, for latent sizes that are
/// not multiples of 4, which normals each sample gets.
pub const EVAL_BATCH: usize = 250;

/// Host rows to feed a model chunk by chunk.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    /// A row-major matrix, `width` values per row (images, latent codes).
    Host(&'a [f32], usize),
    /// The images `indices` of a dataset, in that order.
    Gather(&'a Dataset, &'a [usize]),
}

impl<'a> Rows<'a> {
    /// Every image of `data`, in order.
    pub fn images(data: &'a Dataset) -> Rows<'a> {
        Rows::first(data, data.len())
    }

    /// The first `n` images of `data` (all of them if it has fewer).
    pub fn first(data: &'a Dataset, n: usize) -> Rows<'a> {
        let p = data.pixels();
        Rows::Host(&data.images[..n.min(data.len()) * p], p)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match *self {
            Rows::Host(values, width) => values.len() / width.max(1),
            Rows::Gather(_, indices) => indices.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        match *self {
            Rows::Host(_, width) => width,
            Rows::Gather(data, _) => data.pixels(),
        }
    }

    /// Rows `range` as a `(range.len(), width)` tensor.
    fn upload(&self, gpu: &Gpu, range: Range<usize>) -> Result<Tensor> {
        let w = self.width();
        let shape = [range.len(), w];
        match *self {
            Rows::Host(values, _) => {
                Tensor::from_slice(gpu, &values[range.start * w..range.end * w], shape)
            }
            Rows::Gather(data, indices) => {
                Tensor::from_slice(gpu, &data.gather(&indices[range]), shape)
            }
        }
    }
}

/// Calls `f(x, range)` on consecutive chunks of at most `chunk` rows, in order, with gradient
/// recording off: `x` is the chunk as a `(range.len(), width)` tensor, `range` its rows.
///
/// Errors: upload errors and whatever `f` returns (the first one stops the pass).
pub fn for_each_chunk(
    gpu: &Gpu,
    rows: Rows,
    chunk: usize,
    mut f: impl FnMut(&Tensor, Range<usize>) -> Result<()>,
) -> Result<()> {
    let _no_grad = no_grad();
    let (n, chunk) = (rows.len(), chunk.max(1));
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        f(&rows.upload(gpu, start..end)?, start..end)?;
        start = end;
    }
    Ok(())
}

/// Totals over all chunks of the tensors `f` returns for each chunk (the same number and
/// shapes every time, e.g. per-chunk sums of per-sample losses), added on the GPU in chunk
/// order: `((t_1 + t_2) + t_3) + ...`. Empty when there are no rows.
///
/// Errors: as [`for_each_chunk`].
pub fn sum_chunks(
    gpu: &Gpu,
    rows: Rows,
    chunk: usize,
    mut f: impl FnMut(&Tensor, Range<usize>) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    let mut totals: Vec<Tensor> = Vec::new();
    for_each_chunk(gpu, rows, chunk, |x, range| {
        let terms = f(x, range)?;
        totals = if totals.is_empty() {
            terms
        } else {
            totals
                .iter()
                .zip(&terms)
                .map(|(s, t)| s.add(t))
                .collect::<Result<_>>()?
        };
        Ok(())
    })?;
    Ok(totals)
}

/// The tensor `f` returns for each chunk, read back and concatenated on the host in row order.
///
/// Errors: as [`for_each_chunk`]; readback errors.
pub fn collect_chunks(
    gpu: &Gpu,
    rows: Rows,
    chunk: usize,
    mut f: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for_each_chunk(gpu, rows, chunk, |x, _| {
        out.extend(f(x)?.to_vec()?);
        Ok(())
    })?;
    Ok(out)
}

/// Decodes `n` codes z ~ N(0, I) and returns their images (n x pixels), host side: codes are
/// drawn from the GPU generator [`EVAL_BATCH`] at a time, `(m, latent_dim)` each.
///
/// Errors: GPU and readback errors.
pub fn prior_samples(model: &dyn Generative, gpu: &Gpu, n: usize) -> Result<Vec<f32>> {
    let _no_grad = no_grad();
    let mut images = Vec::new();
    let mut left = n;
    while left > 0 {
        let m = left.min(EVAL_BATCH);
        let z = Tensor::randn(gpu, [m, model.latent_dim()])?;
        images.extend(model.generate(&z)?.to_vec()?);
        left -= m;
    }
    Ok(images)
}

/// Decodes host codes `z` (n x latent_dim, row-major) to images (n x pixels), host side,
/// [`EVAL_BATCH`] codes at a time.
///
/// Errors: GPU and readback errors.
pub fn decode_codes(model: &dyn Generative, gpu: &Gpu, z: &[f32]) -> Result<Vec<f32>> {
    collect_chunks(
        gpu,
        Rows::Host(z, model.latent_dim()),
        EVAL_BATCH,
        |codes| model.generate(codes),
    )
}

/// Decodes codes `z (n, latent_dim)` already on the GPU to images in [0, 1], host side,
/// without recording.
///
/// Errors: GPU and readback errors.
pub fn decode_to_host(model: &dyn Generative, z: &Tensor) -> Result<Vec<f32>> {
    let _no_grad = no_grad();
    model.generate(z)?.to_vec()
}

/// Mean KL(q(z_d|x) || N(0, 1)) of every latent dimension d over the first `max_images`
/// images of `data` (all if None), nats: the dimensions a VAE actually uses have KL well above
/// 0; unused ("inactive") ones about 0. Empty for an empty set.
///
/// Errors: GPU and readback errors.
pub fn kl_per_dim(
    model: &dyn VariationalModel,
    gpu: &Gpu,
    data: &Dataset,
    max_images: Option<usize>,
) -> Result<Vec<f64>> {
    let n = max_images.unwrap_or(data.len()).min(data.len());
    let totals = sum_chunks(gpu, Rows::first(data, n), EVAL_BATCH, |x, _| {
        let (mu, logvar) = model.encode(x)?;
        // 1/2 (mu^2 + exp(logvar) - 1 - logvar), summed over the batch.
        let kl = mu
            .mul(&mu)?
            .add(&logvar.exp()?)?
            .sub(&logvar)?
            .affine(0.5, -0.5)?
            .sum_axis(0)?;
        Ok(vec![kl])
    })?;
    match totals.first() {
        Some(t) => Ok(t
            .to_vec()?
            .into_iter()
            .map(|v| v as f64 / n as f64)
            .collect()),
        None => Ok(Vec::new()),
    }
}
