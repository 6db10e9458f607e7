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
use crate::models::{Model, ModelKind};
use crate::nn::{BatchNorm2d, Builder, Conv2d, Dropout, HasLayers, Layers, Linear, flatten};
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
    layers: Layers,
}

impl Classifier {
    /// A classifier with PyTorch-default initialisation.
    pub fn new(gpu: &Gpu, rng: &mut impl Rng) -> Result<Classifier> {
        let down = Conv2dOptions::new(2, 1);
        let mut b = Builder::new(gpu, rng);
        Ok(Classifier {
            conv1: b.conv2d("conv1", 1, 32, 4, down, false)?,
            bn1: b.batch_norm("bn1", 32)?,
            conv2: b.conv2d("conv2", 32, 64, 4, down, false)?,
            bn2: b.batch_norm("bn2", 64)?,
            fc1: b.linear("fc1", 64 * 7 * 7, FEATURE_DIM)?,
            dropout: b.dropout("dropout", 0.25)?,
            fc2: b.linear("fc2", FEATURE_DIM, 10)?,
            layers: b.finish(),
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
}

impl HasLayers for Classifier {
    fn layers(&self) -> &Layers {
        &self.layers
    }
}

impl Model for Classifier {
    fn kind(&self) -> ModelKind {
        ModelKind::Classifier
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("classes".to_string(), "10".to_string()),
            ("input_dim".to_string(), "784".to_string()),
        ])
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
