//! The report's MNIST encoder, a small CNN for `[N, 1, 28, 28]` images:
//!
//! ```text
//! index  layer                          output
//!   0    Conv2d(1→32, 3×3, padding 1)    [N, 32, 28, 28]
//!   1    ReLU
//!   2    MaxPool2d(2)                    [N, 32, 14, 14]
//!   3    Conv2d(32→64, 3×3, padding 1)   [N, 64, 14, 14]
//!   4    ReLU
//!   5    MaxPool2d(2)                    [N, 64, 7, 7]
//!   6    Flatten                         [N, 3136]
//!   7    Linear(3136→128)                [N, 128]
//! ```
//!
//! It is exactly a PyTorch `nn.Sequential` of those layers, so its state-dict names are the
//! Sequential's: `0.weight`, `0.bias`, `3.weight`, `3.bias`, `7.weight`, `7.bias`
//! (420,352 parameters, as PyTorch counts them), with PyTorch's default initialisation.

use simclr_tensor::Tensor;

use crate::activation::{Flatten, ReLU};
use crate::conv::Conv2d;
use crate::linear::Linear;
use crate::module::Module;
use crate::pool::MaxPool2d;
use crate::sequential::Sequential;

/// Conv-ReLU-Pool-Conv-ReLU-Pool-Flatten-Linear, `[N, 1, 28, 28] → [N, 128]`.
pub struct MnistEncoder {
    net: Sequential,
    out_features: usize,
}

impl MnistEncoder {
    /// The report's encoder with 128 output features.
    pub fn new(rng: &mut impl rand::Rng) -> MnistEncoder {
        MnistEncoder::with_out_features(128, rng)
    }

    /// The same network with another feature dimension.
    pub fn with_out_features(out_features: usize, rng: &mut impl rand::Rng) -> MnistEncoder {
        let net = Sequential::new()
            .add(Conv2d::new(1, 32, 3, 1, 1, true, rng))
            .add(ReLU)
            .add(MaxPool2d::new(2, 2))
            .add(Conv2d::new(32, 64, 3, 1, 1, true, rng))
            .add(ReLU)
            .add(MaxPool2d::new(2, 2))
            .add(Flatten)
            .add(Linear::new(64 * 7 * 7, out_features, rng));
        MnistEncoder { net, out_features }
    }

    /// Dimension of the output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Module for MnistEncoder {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.net.forward(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.net.named_parameters()
    }
}
