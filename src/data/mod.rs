//! Data: the IDX file format, the MNIST dataset, and shuffled mini-batches.
//! Host-side only (files, threads allowed); nothing here touches the GPU.

pub mod biased;
pub mod domains;
pub mod idx;
mod mnist;

pub use idx::{IdxArray, IdxError, read_idx, read_idx_bytes, read_idx_dims, read_idx_from};
pub use mnist::{Batches, Dataset, IMAGE_SIDE, Mnist};

/// Seed of the one fixed binarization of a test set (`--binarize` training, `deepgen eval` and
/// `deepgen outliers` on binarized checkpoints): every tool binarizes the test images the same way.
pub const BINARIZE_SEED: u64 = 0;
