//! Layers built from ops: each holds its parameters (leaf tensors that require
//! grad) and has a `forward`. Parameter names follow PyTorch (`fc1.weight`), so a
//! checkpoint's tensor names read like a `state_dict`.

pub mod init;
mod linear;

pub use linear::Linear;

use crate::tensor::Tensor;

/// Something with named parameters.
pub trait Module {
    /// Every parameter with its dotted name, e.g. `("encoder.fc1.weight", w)`.
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// The parameters alone, in the same order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Total number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }
}

/// Prefixes the parameter names of `module` with `prefix.`.
pub fn prefixed(prefix: &str, module: &dyn Module) -> Vec<(String, Tensor)> {
    module
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}
