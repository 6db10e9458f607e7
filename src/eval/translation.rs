//! Measuring the translation models (issue 13) with the built-in digit classifier, on test
//! digits: `deepgen translate --eval` and the trainers' per-epoch figures.
//!
//! - pix2pix (completing a digit from its top half): the classifier's accuracy on the
//!   completions against the original labels, the classifier-FID of the completions against
//!   the test set, and the L1 distance to the whole digit (mean absolute error per pixel,
//!   intensities in [0, 1]).
//! - CycleGAN: label preservation, the classifier's accuracy on G(a) mapped back to MNIST's
//!   style by inverting its intensities (the thickening stays: the accuracy of the classifier
//!   on the restyled digits themselves, inverted back, is the ceiling, reported beside it);
//!   the cycle L1 `mean |F(G(a)) - a|`; the confusion matrix (true digit -> predicted digit)
//!   that names the digits it turns into others; the same for F on restyled test digits.

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::data::domains::{invert, restyle, top_half};
use crate::error::{Error, Result};
use crate::eval::frechet::{
    FeatureStats, feature_stats, features_and_classes, frechet_distance_of,
};
use crate::gpu::Gpu;
use crate::infer::{EVAL_BATCH, Rows, for_each_chunk};
use crate::models::{Classifier, CycleGan, Direction, ModelKind, Pix2Pix};
use crate::nn::Module;

/// A translation model loaded from a checkpoint.
pub enum Translator {
    /// pix2pix.
    Pix2Pix(Box<Pix2Pix>),
    /// CycleGAN.
    CycleGan(Box<CycleGan>),
}

/// A size from the metadata, naming the key in the error.
fn meta_usize(ckpt: &Checkpoint, key: &str) -> Result<usize> {
    ckpt.metadata
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Checkpoint {
            path: ckpt.path.clone(),
            reason: format!("metadata has no valid `{key}`"),
        })
}

impl Translator {
    /// Rebuilds the pix2pix or CycleGAN a checkpoint holds, checked against the adapter's
    /// limits and its tensors first, weights loaded, in eval mode.
    ///
    /// Errors: [`Error::Checkpoint`] for a checkpoint of another kind (naming it and what
    /// `deepgen translate` takes), metadata that disagrees with the tensors (a CycleGAN's
    /// `blocks` against its residual blocks' tensors), missing or mis-shaped tensors.
    pub fn from_checkpoint(gpu: &Gpu, ckpt: &Checkpoint) -> Result<Translator> {
        use rand::SeedableRng;
        let kind = ckpt.kind()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let t = match kind {
            ModelKind::Pix2Pix | ModelKind::CycleGan => {
                ckpt.check_buildable(kind, gpu.max_binding_bytes())?;
                let width = meta_usize(ckpt, "width")?;
                if kind == ModelKind::Pix2Pix {
                    let l1_only = ckpt.metadata.get("l1_only").is_some_and(|v| v == "true");
                    Translator::Pix2Pix(Box::new(Pix2Pix::new(gpu, width, l1_only, &mut rng)?))
                } else {
                    let blocks = meta_usize(ckpt, "blocks")?;
                    let has = |i: usize| {
                        ckpt.tensors
                            .contains_key(&format!("g_ab.res{i}.conv1.weight"))
                    };
                    if (blocks > 0 && !has(blocks - 1)) || has(blocks) {
                        return Err(Error::Checkpoint {
                            path: ckpt.path.clone(),
                            reason: format!(
                                "metadata `blocks` = {blocks} disagrees with its residual blocks' \
                                 tensors (g_ab.resN.*); refused before building the model"
                            ),
                        });
                    }
                    Translator::CycleGan(Box::new(CycleGan::new(gpu, width, blocks, &mut rng)?))
                }
            }
            other => {
                return Err(Error::Checkpoint {
                    path: ckpt.path.clone(),
                    reason: format!(
                        "this is a `{}` checkpoint; `deepgen translate` takes a `pix2pix` or \
                         `cyclegan` checkpoint (deepgen train pix2pix | cyclegan)",
                        other.name()
                    ),
                });
            }
        };
        let module: &dyn Module = match &t {
            Translator::Pix2Pix(m) => m.as_ref(),
            Translator::CycleGan(m) => m.as_ref(),
        };
        ckpt.load_into(&module.named_state())?;
        module.set_training(false);
        Ok(t)
    }
}

/// Runs `f` (a translation of `(m, 784)` images in [0, 1] on the GPU, to the same) over
/// `images` in chunks of [`EVAL_BATCH`]: the outputs, on the host, in order.
///
/// Errors: GPU errors and `f`'s.
pub fn translate_all(
    gpu: &Gpu,
    images: &[f32],
    f: impl Fn(&crate::tensor::Tensor) -> Result<crate::tensor::Tensor>,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(images.len());
    for_each_chunk(gpu, Rows::Host(images, 784), EVAL_BATCH, |x, _| {
        out.extend(f(x)?.to_vec()?);
        Ok(())
    })?;
    Ok(out)
}

/// Mean absolute difference per value.
pub fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().max(1) as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / n
}

/// The classifier's predicted class of each image (`(n, 784)` in [0, 1]) and their confusion
/// matrix against `labels`: `confusion[true][predicted]`.
///
/// Errors: GPU errors.
pub fn classify(
    classifier: &Classifier,
    gpu: &Gpu,
    images: &[f32],
    labels: &[u8],
) -> Result<(Vec<usize>, [[usize; 10]; 10])> {
    let (_, classes) = features_and_classes(classifier, gpu, images)?;
    let mut confusion = [[0usize; 10]; 10];
    for (&t, &p) in labels.iter().zip(&classes) {
        confusion[usize::from(t).min(9)][p.min(9)] += 1;
    }
    Ok((classes, confusion))
}

/// The fraction of the confusion matrix on its diagonal.
pub fn accuracy(confusion: &[[usize; 10]; 10]) -> f64 {
    let total: usize = confusion.iter().flatten().sum();
    let right: usize = (0..10).map(|i| confusion[i][i]).sum();
    right as f64 / total.max(1) as f64
}

/// The off-diagonal cells of a confusion matrix holding at least `min_fraction` of their
/// true digit's images, largest first: `(true digit, predicted digit, count, fraction)`.
pub fn turned_into(
    confusion: &[[usize; 10]; 10],
    min_fraction: f64,
) -> Vec<(usize, usize, usize, f64)> {
    let mut out = Vec::new();
    for (t, row) in confusion.iter().enumerate() {
        let n = row.iter().sum::<usize>().max(1) as f64;
        for (p, &c) in row.iter().enumerate() {
            if p != t && c as f64 / n >= min_fraction {
                out.push((t, p, c, c as f64 / n));
            }
        }
    }
    out.sort_by(|a, b| b.3.total_cmp(&a.3));
    out
}

/// pix2pix's figures on test digits.
#[derive(Clone, Debug, Serialize)]
pub struct Pix2PixReport {
    /// Test digits completed.
    pub test_images: usize,
    /// Whether the model was trained with L1 alone.
    pub l1_only: bool,
    /// The classifier's accuracy on the completions, against the original labels.
    pub accuracy: f64,
    /// The classifier's accuracy on the whole test digits (the ceiling).
    pub accuracy_originals: f64,
    /// The classifier's accuracy on the inputs (bottom half blank): what completing adds.
    pub accuracy_inputs: f64,
    /// Classifier-FID of the completions against the test digits (None when skipped).
    pub classifier_fid: Option<f64>,
    /// Mean absolute error per pixel to the whole digit, intensities in [0, 1].
    pub l1: f64,
    /// Mean absolute error per pixel on the bottom half alone (the part completed).
    pub l1_bottom: f64,
    /// confusion[true digit][predicted digit] of the completions.
    pub confusion: [[usize; 10]; 10],
}

/// Completes the first `n` digits of `test` with `model` and measures them (see the module
/// doc); `fid` false skips the Frechet distance.
///
/// Errors: GPU errors; [`Error::Invalid`] for fewer than 2 test images with `fid`.
pub fn evaluate_pix2pix(
    gpu: &Gpu,
    model: &Pix2Pix,
    classifier: &Classifier,
    test: &Dataset,
    fid: bool,
) -> Result<Pix2PixReport> {
    let inputs = top_half(test);
    let _no_grad = crate::autograd::no_grad();
    let outputs = translate_all(gpu, &inputs.images, |x| model.translate(x))?;
    let (_, confusion) = classify(classifier, gpu, &outputs, &test.labels)?;
    let (_, conf_orig) = classify(classifier, gpu, &test.images, &test.labels)?;
    let (_, conf_in) = classify(classifier, gpu, &inputs.images, &test.labels)?;
    let classifier_fid = if fid {
        if test.len() < 2 {
            return Err(Error::Invalid(
                "classifier-FID needs at least 2 test images".into(),
            ));
        }
        let bar = indicatif::ProgressBar::hidden();
        let (a, _): (FeatureStats, _) =
            feature_stats(classifier, gpu, Rows::Host(&outputs, 784), &bar)?;
        let (b, _) = feature_stats(classifier, gpu, Rows::images(test), &bar)?;
        Some(frechet_distance_of(&a, &b)?)
    } else {
        None
    };
    let half = crate::data::domains::KEPT_ROWS * 28;
    let bottom =
        |v: &[f32]| -> Vec<f32> { v.chunks(784).flat_map(|c| c[half..].to_vec()).collect() };
    Ok(Pix2PixReport {
        test_images: test.len(),
        l1_only: model.l1_only,
        accuracy: accuracy(&confusion),
        accuracy_originals: accuracy(&conf_orig),
        accuracy_inputs: accuracy(&conf_in),
        classifier_fid,
        l1: mean_abs_diff(&outputs, &test.images),
        l1_bottom: mean_abs_diff(&bottom(&outputs), &bottom(&test.images)),
        confusion,
    })
}

/// CycleGAN's figures on test digits.
#[derive(Clone, Debug, Serialize)]
pub struct CycleGanReport {
    /// Test digits translated each way.
    pub test_images: usize,
    /// Label preservation A -> B: the classifier's accuracy on 1 - G(a) against a's label.
    pub label_preservation: f64,
    /// The ceiling of that figure: the classifier's accuracy on the restyled test digits
    /// inverted back (thick strokes on black), 1 - restyle(a).
    pub label_preservation_ceiling: f64,
    /// Cycle L1 A -> B -> A: mean |F(G(a)) - a| per pixel, intensities in [0, 1].
    pub cycle_l1: f64,
    /// Label preservation B -> A: the classifier's accuracy on F(b), b = restyle(a).
    pub label_preservation_b_to_a: f64,
    /// Cycle L1 B -> A -> B: mean |G(F(b)) - b|.
    pub cycle_l1_b_to_a: f64,
    /// Mean |G(a) - restyle(a)|: how close G comes to the restyling itself (never trained on
    /// pairs).
    pub l1_to_restyled: f64,
    /// confusion[true digit][predicted digit] of 1 - G(a).
    pub confusion: [[usize; 10]; 10],
    /// confusion of F(b).
    pub confusion_b_to_a: [[usize; 10]; 10],
}

/// Translates the digits of `test` both ways with `model` and measures them (module doc).
///
/// Errors: GPU errors.
pub fn evaluate_cyclegan(
    gpu: &Gpu,
    model: &CycleGan,
    classifier: &Classifier,
    test: &Dataset,
) -> Result<CycleGanReport> {
    let _no_grad = crate::autograd::no_grad();
    let a = &test.images;
    let b = restyle(test).images;
    let g_a = translate_all(gpu, a, |x| model.translate(Direction::AToB, x))?;
    let fg_a = translate_all(gpu, &g_a, |x| model.translate(Direction::BToA, x))?;
    let f_b = translate_all(gpu, &b, |x| model.translate(Direction::BToA, x))?;
    let gf_b = translate_all(gpu, &f_b, |x| model.translate(Direction::AToB, x))?;
    let (_, confusion) = classify(classifier, gpu, &invert(&g_a), &test.labels)?;
    let (_, ceiling) = classify(classifier, gpu, &invert(&b), &test.labels)?;
    let (_, confusion_b_to_a) = classify(classifier, gpu, &f_b, &test.labels)?;
    Ok(CycleGanReport {
        test_images: test.len(),
        label_preservation: accuracy(&confusion),
        label_preservation_ceiling: accuracy(&ceiling),
        cycle_l1: mean_abs_diff(&fg_a, a),
        label_preservation_b_to_a: accuracy(&confusion_b_to_a),
        cycle_l1_b_to_a: mean_abs_diff(&gf_b, &b),
        l1_to_restyled: mean_abs_diff(&g_a, &b),
        confusion,
        confusion_b_to_a,
    })
}

/// Rows of three images for a grid: for each of the `n` first images of `first`, its image
/// in `first`, `second` and `third` (each `(m, 784)`).
pub fn triples(first: &[f32], second: &[f32], third: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * n * 784);
    for i in 0..n {
        for v in [first, second, third] {
            out.extend_from_slice(&v[i * 784..(i + 1) * 784]);
        }
    }
    out
}
