//! Batch normalization and dropout layers: the two whose behaviour depends on train/eval mode.

use std::cell::Cell;
use std::rc::Rc;

use rand::Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::{Init, Module, init};
use crate::ops::batch_norm;
use crate::tensor::Tensor;

/// `torch.nn.BatchNorm1d` / `BatchNorm2d` (the same op: axis 1 is the channel axis):
/// `x (N, C)` or `(N, C, H, W)` -> same shape. gamma = 1, beta = 0, running mean 0 and
/// variance 1 at start; momentum 0.1, eps 1e-5.
pub struct BatchNorm {
    /// Scale gamma, (C,).
    pub weight: Tensor,
    /// Shift beta, (C,).
    pub bias: Tensor,
    /// Running mean, (C,): a buffer, saved in checkpoints, not trained.
    pub running_mean: Tensor,
    /// Running (unbiased) variance, (C,).
    pub running_var: Tensor,
    /// Weight of each new batch in the running statistics.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
    /// Train/eval mode, shared with the model's [`crate::nn::Layers`] registry.
    training: Rc<Cell<bool>>,
}

/// `torch.nn.BatchNorm1d`: the same layer over `(N, C)`.
pub type BatchNorm1d = BatchNorm;
/// `torch.nn.BatchNorm2d`: the same layer over `(N, C, H, W)`.
pub type BatchNorm2d = BatchNorm;

impl BatchNorm {
    /// A layer over `channels` channels, in training mode.
    pub fn new(gpu: &Gpu, channels: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            weight: Tensor::full(gpu, [channels], 1.0)?.requires_grad_(),
            bias: Tensor::zeros(gpu, [channels])?.requires_grad_(),
            running_mean: Tensor::zeros(gpu, [channels])?,
            running_var: Tensor::full(gpu, [channels], 1.0)?,
            momentum: 0.1,
            eps: 1e-5,
            training: Rc::new(Cell::new(true)),
        })
    }

    /// A layer initialised by `init`: scale 1 (PyTorch), or drawn from N(1, 0.02) as in the
    /// DCGAN reference code.
    pub fn with_init(
        gpu: &Gpu,
        channels: usize,
        init: Init,
        rng: &mut impl Rng,
    ) -> Result<BatchNorm> {
        let mut bn = BatchNorm::new(gpu, channels)?;
        if init == Init::Dcgan {
            bn.weight = init::normal(gpu, [channels], 1.0, 0.02, rng)?;
        }
        Ok(bn)
    }

    /// The train/eval flag, for a registry that switches it with the rest of the model.
    pub(crate) fn training_switch(&self) -> Rc<Cell<bool>> {
        self.training.clone()
    }

    /// Normalises with batch statistics (training) or the running ones (eval).
    ///
    /// Errors: the shape errors of [`batch_norm`].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        batch_norm(
            x,
            &self.weight,
            &self.bias,
            &self.running_mean,
            &self.running_var,
            self.training.get(),
            self.momentum,
            self.eps,
        )
    }
}

impl Module for BatchNorm {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".into(), self.running_mean.clone()),
            ("running_var".into(), self.running_var.clone()),
        ]
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }
}

/// `torch.nn.Dropout(p)`: zeroes elements with probability p in training mode
/// (scaling the rest by 1/(1-p)); the identity in eval mode.
pub struct Dropout {
    /// Drop probability.
    pub p: f32,
    /// Train/eval mode, shared with the model's [`crate::nn::Layers`] registry.
    training: Rc<Cell<bool>>,
}

impl Dropout {
    /// A dropout layer in training mode.
    pub fn new(p: f32) -> Dropout {
        Dropout {
            p,
            training: Rc::new(Cell::new(true)),
        }
    }

    /// The train/eval flag, for a registry that switches it with the rest of the model.
    pub(crate) fn training_switch(&self) -> Rc<Cell<bool>> {
        self.training.clone()
    }

    /// Applies dropout in training mode; returns `x` in eval mode.
    ///
    /// Errors: [`crate::Error::Invalid`] unless 0 <= p < 1.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.training.get() {
            x.dropout(self.p)
        } else {
            Ok(x.clone())
        }
    }
}

impl Module for Dropout {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }
}

/// `torch.nn.Flatten()`: `(N, ...) -> (N, product of the rest)`.
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    let n = x.dims().first().copied().unwrap_or(1);
    x.reshape([n, x.numel().checked_div(n).unwrap_or(0)])
}
