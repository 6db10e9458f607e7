//! Measuring generative models with the numbers the literature uses.
//!
//! - [`likelihood`]: test negative ELBO and the importance-weighted bound on the negative
//!   log-likelihood (Burda et al. 2016) for VAEs; KL per latent dimension.
//! - [`frechet`]: a Frechet distance between feature statistics of generated and real images,
//!   computed with the engine-trained digit classifier (not Inception), and the entropy of the
//!   classifier's predicted classes (mode collapse shows as low entropy).
//! - [`outliers`]: AUROC and FPR at 95% TPR for outlier detection; [`score`]: per-image
//!   outlier scores and `deepgen outliers`.
//! - [`report`]: `deepgen eval`, every number for one checkpoint.
//!
//! Evaluation passes run through [`crate::infer`]'s chunked loop, as training's do; `eval`
//! does not depend on `train`, nor `train` on `eval`.
//!
//! The heavy parts (decoders, encoders, classifier) run on the GPU; the final reductions
//! (log-sum-exp over importance samples, covariance and matrix square root) run on the host
//! in f64, the last through nalgebra.

pub mod frechet;
pub mod likelihood;
pub mod outliers;
pub mod report;
pub mod score;
pub mod translation;
