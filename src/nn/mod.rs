//! Layers built from ops: each holds its parameters (leaf tensors that require
//! grad) and has a `forward`. Parameter names follow PyTorch (`fc1.weight`), so a
//! checkpoint's tensor names read like a `state_dict`. Models create their layers through
//! a [`Builder`], which names each layer once and registers it (see [`layers`]).

mod conv;
pub mod init;
pub mod layers;
mod linear;
mod norm;

pub use conv::{Conv2d, ConvTranspose2d};
pub use init::Init;
pub use layers::{Builder, HasLayers, Layers};
pub use linear::Linear;
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, Dropout, flatten};

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

    /// State that is not trained but belongs in a checkpoint (batch norm's running statistics).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Parameters then buffers: everything a checkpoint stores.
    fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut s = self.named_parameters();
        s.extend(self.named_buffers());
        s
    }

    /// Switches training behaviour (batch statistics, dropout) on or off, as
    /// PyTorch's `train()` / `eval()`. Containers forward it to their layers.
    fn set_training(&self, _training: bool) {}
}
