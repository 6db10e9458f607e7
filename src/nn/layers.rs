//! Naming each layer once. A model creates its layers through a [`Builder`], which records
//! every parameter, buffer and train/eval switch under the layer's dotted name, in creation
//! order, in a [`Layers`] registry (as PyTorch's `self.fc1 = nn.Linear(..)` registers `fc1`).
//! The model's [`Module`] methods (parameters for the optimizer, state for the checkpoint,
//! `set_training`) all come from that registry, so a layer cannot be left out of one of them.
//!
//! ```ignore
//! let mut b = Builder::new(gpu, rng);
//! let model = Vae {
//!     enc_fc1: b.linear("encoder.fc1", 784, 400)?,   // -> encoder.fc1.weight, encoder.fc1.bias
//!     ...
//!     layers: b.finish(),
//! };
//! ```

use std::cell::Cell;
use std::rc::Rc;

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{BatchNorm, Conv2d, ConvTranspose2d, Dropout, Init, Linear, Module};
use crate::ops::Conv2dOptions;
use crate::tensor::Tensor;

/// Every parameter, buffer and train/eval switch of a model, by dotted name
/// (`encoder.fc1.weight`), in the order the layers were created.
#[derive(Default)]
pub struct Layers {
    parameters: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
    switches: Vec<(String, Rc<Cell<bool>>)>,
}

/// Whether `name` is `scope` itself or lies under `scope.`.
fn in_scope(name: &str, scope: &str) -> bool {
    name.strip_prefix(scope)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

impl Layers {
    /// The parameters under `scope` (e.g. `generator`: `generator.fc1.weight`, ...), in order.
    pub fn parameters_in(&self, scope: &str) -> Vec<(String, Tensor)> {
        self.parameters
            .iter()
            .filter(|(n, _)| in_scope(n, scope))
            .cloned()
            .collect()
    }

    /// Switches the layers under `scope` alone to training or eval behaviour (a GAN samples
    /// with its generator's batch norms on their running statistics).
    pub fn set_training_in(&self, scope: &str, training: bool) {
        for (_, s) in self.switches.iter().filter(|(n, _)| in_scope(n, scope)) {
            s.set(training);
        }
    }

    /// The names of the layers with a train/eval switch (batch norm, dropout), in order.
    pub fn switch_names(&self) -> Vec<String> {
        self.switches.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl Module for Layers {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.parameters.clone()
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.buffers.clone()
    }

    fn set_training(&self, training: bool) {
        for (_, s) in &self.switches {
            s.set(training);
        }
    }
}

/// A model whose layers were made by a [`Builder`]: its [`Module`] methods are the registry's.
pub trait HasLayers {
    /// The registry filled while the model was built.
    fn layers(&self) -> &Layers;
}

impl<T: HasLayers> Module for T {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers().named_parameters()
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.layers().named_buffers()
    }

    fn set_training(&self, training: bool) {
        self.layers().set_training(training)
    }
}

/// Creates layers and records them in a [`Layers`] registry under the names given. Weights
/// are drawn from `rng` in creation order, each layer weight first, then bias.
pub struct Builder<'a, R: Rng> {
    gpu: Gpu,
    rng: &'a mut R,
    init: Init,
    layers: Layers,
}

impl<'a, R: Rng> Builder<'a, R> {
    /// A builder with PyTorch's default initialisation.
    pub fn new(gpu: &Gpu, rng: &'a mut R) -> Builder<'a, R> {
        Builder {
            gpu: gpu.clone(),
            rng,
            init: Init::PyTorch,
            layers: Layers::default(),
        }
    }

    /// Initialises the layers made from now on with `init` (DCGAN's N(0, 0.02)).
    pub fn with_init(mut self, init: Init) -> Builder<'a, R> {
        self.init = init;
        self
    }

    /// A [`Linear`] layer `in_features -> out_features` named `name`.
    ///
    /// Errors: upload errors; [`Error::Invalid`] if `name` is taken.
    pub fn linear(
        &mut self,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Linear> {
        let layer = Linear::with_init(&self.gpu, in_features, out_features, self.init, self.rng)?;
        self.register(name, &layer, None)?;
        Ok(layer)
    }

    /// A square-kernel [`Conv2d`] layer (bias optional: none before a batch norm).
    ///
    /// Errors: as [`Builder::linear`].
    pub fn conv2d(
        &mut self,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv2dOptions,
        bias: bool,
    ) -> Result<Conv2d> {
        let layer = Conv2d::new(
            &self.gpu,
            in_channels,
            out_channels,
            kernel_size,
            options,
            bias,
            self.init,
            self.rng,
        )?;
        self.register(name, &layer, None)?;
        Ok(layer)
    }

    /// A square-kernel [`ConvTranspose2d`] layer without output padding.
    ///
    /// Errors: as [`Builder::linear`].
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv2dOptions,
        bias: bool,
    ) -> Result<ConvTranspose2d> {
        let layer = ConvTranspose2d::new(
            &self.gpu,
            in_channels,
            out_channels,
            kernel_size,
            options,
            0,
            bias,
            self.init,
            self.rng,
        )?;
        self.register(name, &layer, None)?;
        Ok(layer)
    }

    /// A [`BatchNorm`] layer over `channels`: scale 1 (PyTorch) or N(1, 0.02) (DCGAN), shift 0.
    ///
    /// Errors: as [`Builder::linear`].
    pub fn batch_norm(&mut self, name: &str, channels: usize) -> Result<BatchNorm> {
        let layer = BatchNorm::with_init(&self.gpu, channels, self.init, self.rng)?;
        self.register(name, &layer, Some(layer.training_switch()))?;
        Ok(layer)
    }

    /// A [`Dropout`] layer with drop probability `p` (no parameters; a train/eval switch).
    ///
    /// Errors: [`Error::Invalid`] if `name` is taken.
    pub fn dropout(&mut self, name: &str, p: f32) -> Result<Dropout> {
        let layer = Dropout::new(p);
        self.register(name, &layer, Some(layer.training_switch()))?;
        Ok(layer)
    }

    /// The registry of every layer made.
    pub fn finish(self) -> Layers {
        self.layers
    }

    fn register(
        &mut self,
        name: &str,
        layer: &dyn Module,
        switch: Option<Rc<Cell<bool>>>,
    ) -> Result<()> {
        let l = &mut self.layers;
        let taken = l
            .parameters
            .iter()
            .chain(&l.buffers)
            .any(|(n, _)| in_scope(n, name))
            || l.switches.iter().any(|(n, _)| n == name);
        if taken || name.is_empty() {
            return Err(Error::Invalid(format!(
                "layer name `{name}` is empty or already used in this model"
            )));
        }
        let prefix = |named: Vec<(String, Tensor)>| {
            named
                .into_iter()
                .map(|(n, t)| (format!("{name}.{n}"), t))
                .collect::<Vec<_>>()
        };
        l.parameters.extend(prefix(layer.named_parameters()));
        l.buffers.extend(prefix(layer.named_buffers()));
        if let Some(s) = switch {
            l.switches.push((name.to_string(), s));
        }
        Ok(())
    }
}
