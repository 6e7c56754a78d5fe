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
//!
//! The forward does not walk the `Sequential` child by child: each `ReLU, MaxPool2d` pair runs
//! as one fused op, [`Tensor::relu_max_pool2d`], which computes exactly `max_pool2d(relu(x))`
//! (values and gradients, bit for bit) but reads each convolution's output once and writes a
//! quarter of it, where the separate ops would make a ReLU pass over the whole feature map and
//! keep its output, forward and backward. The modules stay in the `Sequential` at their indices,
//! so the structure and the state-dict names are PyTorch's.

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
        // Children 0..=7 as listed above, with 1-2 and 4-5 fused (see the module docs).
        let layer = |i: usize| self.net.get(i).expect("the encoder has 8 children");
        let h = layer(0).forward(x).relu_max_pool2d(2, 2);
        let h = layer(3).forward(&h).relu_max_pool2d(2, 2);
        layer(7).forward(&h.flatten())
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.net.named_parameters()
    }
}
