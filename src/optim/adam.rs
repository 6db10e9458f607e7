//! Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1),
//! bias-corrected, as an in-place kernel (`shaders/adam.wgsl`).

use std::collections::HashMap;

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::tensor::{Tensor, TensorId};

/// Params of `adam_step`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamParams {
    /// Number of parameters in the tensor.
    pub n: u32,
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first-moment estimate.
    pub beta1: f32,
    /// Decay of the second-moment estimate.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// 1 - beta1^t.
    pub bias_correction1: f32,
    /// 1 - beta2^t.
    pub bias_correction2: f32,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay` of `Adam`).
    pub weight_decay: f32,
}

/// The Adam optimizer with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8).
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// (beta1, beta2).
    pub betas: (f32, f32),
    /// Numerical floor in the denominator.
    pub eps: f32,
    /// L2 penalty.
    pub weight_decay: f32,
    step: u32,
    /// First and second moments per parameter, zero-initialised on first use.
    state: HashMap<TensorId, (Tensor, Tensor)>,
}

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f32) -> Adam {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// Sets (beta1, beta2), e.g. (0.5, 0.999) for GANs.
    pub fn with_betas(mut self, beta1: f32, beta2: f32) -> Adam {
        self.betas = (beta1, beta2);
        self
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Sets the steps taken so far (a resumed run: the bias corrections continue from it).
    pub fn set_steps(&mut self, steps: u32) {
        self.step = steps;
    }

    /// The first and second moments (PyTorch's `exp_avg`, `exp_avg_sq`) of parameter `p`, each
    /// of its shape; None before its first update.
    pub fn moments(&self, p: &Tensor) -> Option<&(Tensor, Tensor)> {
        self.state.get(&p.id())
    }

    /// Sets the moments of parameter `p` (a resumed run), replacing any it had.
    ///
    /// Errors: [`Error::Shape`] if either moment's shape differs from `p`'s.
    pub fn set_moments(&mut self, p: &Tensor, exp_avg: Tensor, exp_avg_sq: Tensor) -> Result<()> {
        for m in [&exp_avg, &exp_avg_sq] {
            if m.shape() != p.shape() {
                return Err(Error::shape(
                    "adam",
                    format!("moment {} for parameter {}", m.shape(), p.shape()),
                ));
            }
        }
        self.state.insert(p.id(), (exp_avg, exp_avg_sq));
        Ok(())
    }

    /// One update of every parameter in `params` that has a gradient in `grads`
    /// (parameters without one are left alone, as in PyTorch). One dispatch per tensor.
    ///
    /// Errors: [`Error::Shape`] if a gradient's shape differs from its parameter's.
    pub fn step(&mut self, params: &[Tensor], grads: &Gradients) -> Result<()> {
        let _no_grad = crate::autograd::no_grad();
        self.step += 1;
        let t = self.step as i32;
        let (beta1, beta2) = self.betas;
        for p in params {
            let Some(g) = grads.get(p) else { continue };
            if g.shape() != p.shape() {
                return Err(Error::shape(
                    "adam",
                    format!("gradient {} for parameter {}", g.shape(), p.shape()),
                ));
            }
            let gpu = p.gpu();
            let (m, v) = match self.state.get(&p.id()) {
                Some(s) => s.clone(),
                None => {
                    let s = (
                        Tensor::zeros(gpu, p.shape().clone())?,
                        Tensor::zeros(gpu, p.shape().clone())?,
                    );
                    self.state.insert(p.id(), s.clone());
                    s
                }
            };
            let params = AdamParams {
                n: p.numel() as u32,
                lr: self.lr,
                beta1,
                beta2,
                eps: self.eps,
                bias_correction1: 1.0 - beta1.powi(t),
                bias_correction2: 1.0 - beta2.powi(t),
                weight_decay: self.weight_decay,
            };
            Kernel::AdamStep.dispatch(
                gpu,
                &[g.storage(), p.storage(), m.storage(), v.storage()],
                &params,
                grid_1d((p.numel() as u64).div_ceil(4), WORKGROUP_1D),
            );
        }
        Ok(())
    }
}
