//! Stateless layers: [`ReLU`] and [`Flatten`].
//!
//! They hold no parameters; they exist as modules so that a [`crate::Sequential`] can list them
//! at their index, keeping the numbering of later children identical to a PyTorch
//! `nn.Sequential` (whose parameter names contain those indices).

use simclr_tensor::Tensor;

use crate::module::Module;

/// `max(x, 0)` elementwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReLU;

impl Module for ReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.relu()
    }
}

/// `[N, …] → [N, rest]`: keeps the batch axis, flattens everything else (`nn.Flatten()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten()
    }
}
