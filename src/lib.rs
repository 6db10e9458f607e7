//! # deepgen
//!
//! A transparent GPU engine for deep generative models, on wgpu, with every
//! kernel a hand-written WGSL compute shader. A tour, bottom to top:
//!
//! 1. [`gpu`]: the adapter, device and queue; the pipeline cache; the buffer pool;
//!    command batching (one submit per training step); the one async host read. It knows
//!    neither ops nor kernels: it runs the kernel descriptions [`ops`] hands it.
//! 2. `shaders/*.wgsl`: the kernels, each file opening with what it computes,
//!    its bindings and its dispatch grid.
//! 3. [`Tensor`]: a shape plus GPU storage; [`autograd`]: the tape that
//!    [`Tensor::backward`] walks in reverse.
//! 4. [`ops`]: the kernel table (`ops/kernels.rs`), and one file per op family, forward
//!    beside backward.
//! 5. [`nn`] and [`optim`]: layers with PyTorch's layouts and initialisation, built and named
//!    once through [`nn::Builder`]; Adam.
//! 6. [`models`]: every model (autoencoder, VAEs, GANs, classifier, DB-VAE); [`infer`]: running
//!    a model over many inputs in chunks; [`train`]: the one training skeleton
//!    ([`train::fit`]) and each family's public step; [`eval`] and [`latent`]: likelihoods,
//!    Frechet distance, outliers, traversals; [`conditional`]: sampling a chosen digit,
//!    analogies and the conditional accuracy of the models told the digit.
//! 7. [`data`], [`viz`], [`checkpoint`]: MNIST, PNG grids, safetensors files.
//!
//! `examples/tour.rs` walks through the same layers in one run.

#![warn(missing_docs)]

pub mod autograd;
pub mod checkpoint;
pub mod conditional;
pub mod data;
pub mod error;
pub mod eval;
pub mod files;
pub mod fuzz;
pub mod gpu;
pub mod infer;
pub mod latent;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod shape;
pub mod tensor;
pub mod train;
pub mod viz;

pub use autograd::{Gradients, no_grad};
pub use error::{Error, Result};
pub use gpu::Gpu;
pub use shape::Shape;
pub use tensor::Tensor;
