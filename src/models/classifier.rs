//! A digit classifier trained by the engine: it proves the convolution kernels on a task
//! with a sharp answer, and its 128-d penultimate layer is the feature space in which
//! later tools compare generated and real images.
//!
//! conv(1 -> 32, k4 s2 p1) batch norm ReLU [32x14x14] -> conv(32 -> 64, k4 s2 p1) batch norm
//! ReLU [64x7x7] -> flatten -> linear 3136 -> 128 ReLU (the features) -> dropout 0.25 ->
//! linear 128 -> 10 logits; softmax cross-entropy. Strided convolutions instead of pooling;
//! batch norm so that two epochs are enough (98.3% without it, 2 epochs).

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::{
    BatchNorm2d, Conv2d, Dropout, Init, Linear, Module, flatten, prefixed, prefixed_buffers,
};
use crate::ops::Activation;
use crate::ops::Conv2dOptions;
use crate::tensor::Tensor;

/// Width of the penultimate (feature) layer.
pub const FEATURE_DIM: usize = 128;

/// Convolutional classifier of 28x28 digits into 10 classes.
pub struct Classifier {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
}

impl Classifier {
    /// A classifier with PyTorch-default initialisation.
    pub fn new(gpu: &Gpu, rng: &mut impl Rng) -> Result<Classifier> {
        let init = Init::PyTorch;
        Ok(Classifier {
            conv1: Conv2d::new(gpu, 1, 32, 4, Conv2dOptions::new(2, 1), false, init, rng)?,
            bn1: BatchNorm2d::new(gpu, 32)?,
            conv2: Conv2d::new(gpu, 32, 64, 4, Conv2dOptions::new(2, 1), false, init, rng)?,
            bn2: BatchNorm2d::new(gpu, 64)?,
            fc1: Linear::new(gpu, 64 * 7 * 7, FEATURE_DIM, rng)?,
            dropout: Dropout::new(0.25),
            fc2: Linear::new(gpu, FEATURE_DIM, 10, rng)?,
        })
    }

    /// The 128-d penultimate features: `x (B, 784)` in [0, 1] -> `(B, 128)`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dims()[0];
        let h = self
            .bn1
            .forward(&self.conv1.forward(&x.reshape([b, 1, 28, 28])?)?)?
            .relu()?;
        let h = self.bn2.forward(&self.conv2.forward(&h)?)?.relu()?;
        self.fc1.forward_act(&flatten(&h)?, Activation::Relu)
    }

    /// Class logits: `x (B, 784)` -> `(B, 10)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.classify_features(&self.features(x)?)
    }

    /// Class logits from features: `(B, 128)` -> `(B, 10)` (dropout in training mode).
    pub fn classify_features(&self, features: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.dropout.forward(features)?)
    }

    /// Hyperparameters for the checkpoint.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("classes".to_string(), "10".to_string()),
            ("input_dim".to_string(), "784".to_string()),
        ])
    }
}

impl Module for Classifier {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = prefixed("conv1", &self.conv1);
        p.extend(prefixed("bn1", &self.bn1));
        p.extend(prefixed("conv2", &self.conv2));
        p.extend(prefixed("bn2", &self.bn2));
        p.extend(prefixed("fc1", &self.fc1));
        p.extend(prefixed("fc2", &self.fc2));
        p
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut b = prefixed_buffers("bn1", &self.bn1);
        b.extend(prefixed_buffers("bn2", &self.bn2));
        b
    }

    fn set_training(&self, training: bool) {
        self.bn1.set_training(training);
        self.bn2.set_training(training);
        self.dropout.set_training(training);
    }
}

/// The predicted digit of one row of class logits: the index of the largest (0 for an empty
/// row).
pub fn predicted_class(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(c, _)| c)
}
