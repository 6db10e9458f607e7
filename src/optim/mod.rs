//! Optimizers: update parameters in place from their gradients.

mod adam;

pub use adam::{Adam, AdamParams};
