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
//! Its parameters are exactly those of a PyTorch `nn.Sequential` of those layers, under the
//! Sequential's state-dict names: `0.weight`, `0.bias`, `3.weight`, `3.bias`, `7.weight`,
//! `7.bias` (420,352 parameters, as PyTorch counts them), with PyTorch's default
//! initialisation, drawn in that order.
//!
//! [`MnistEncoder::with_widths`] builds the same layers with other channel counts (`cargo xtask
//! mnist --widths C1,C2`): 128 channels out of the second convolution learn more per epoch
//! than the report's 64, at 1.6 times the step's time (docs/recipes.md).
//!
//! The forward does not run the layers one by one: each `Conv2d, ReLU, MaxPool2d` triple is
//! one fused op, [`Tensor::conv2d_relu_max_pool2d`], which computes exactly
//! `max_pool2d(relu(conv2d(x)))` (values and gradients, bit for bit) but keeps only the pooled
//! output: the convolution's output (25 MB for the first layer at batch 256) and its gradient
//! live a few images at a time in a scratch buffer that stays in cache, where the separate ops
//! would write and read them whole for the batch, forward and backward.

use simclr_tensor::Tensor;

use crate::conv::{Conv2d, Conv2dConfig};
use crate::linear::Linear;
use crate::module::{named, Module};

/// Conv-ReLU-Pool-Conv-ReLU-Pool-Flatten-Linear, `[N, 1, 28, 28] → [N, 128]`.
pub struct MnistEncoder {
    /// Layer 0: `Conv2d(1→32, 3×3, padding 1)` (the report's widths).
    conv1: Conv2d,
    /// Layer 3: `Conv2d(32→64, 3×3, padding 1)`.
    conv2: Conv2d,
    /// Layer 7: `Linear(3136→out_features)`.
    fc: Linear,
    out_features: usize,
}

impl MnistEncoder {
    /// The channels of the report's two convolutions.
    pub const REPORT_WIDTHS: [usize; 2] = [32, 64];

    /// The report's encoder with 128 output features.
    pub fn new(rng: &mut impl rand::Rng) -> MnistEncoder {
        MnistEncoder::with_widths(Self::REPORT_WIDTHS, 128, rng)
    }

    /// The same network with `widths[0]` and `widths[1]` channels out of its two convolutions
    /// (the report's: [32, 64]) and `out_features` outputs: `Linear(widths[1]·49 →
    /// out_features)` after the second pool.
    pub fn with_widths(
        widths: [usize; 2],
        out_features: usize,
        rng: &mut impl rand::Rng,
    ) -> MnistEncoder {
        let [c1, c2] = widths;
        MnistEncoder {
            conv1: Conv2dConfig::new(1, c1, 3).with_padding(1).init(rng),
            conv2: Conv2dConfig::new(c1, c2, 3).with_padding(1).init(rng),
            fc: Linear::new(c2 * 7 * 7, out_features, rng),
            out_features,
        }
    }

    /// Dimension of the output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

/// `max_pool2d(relu(conv(x)), 2)` as one fused op.
fn conv_relu_pool(conv: &Conv2d, x: &Tensor) -> Tensor {
    x.conv2d_relu_max_pool2d(&conv.weight, conv.bias.as_ref(), conv.stride, conv.padding)
}

impl Module for MnistEncoder {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = conv_relu_pool(&self.conv1, x);
        let h = conv_relu_pool(&self.conv2, &h);
        self.fc.forward(&h.flatten())
    }

    /// Named by their index in the PyTorch `nn.Sequential` the encoder is written as (the
    /// ReLU, pool and flatten between them hold nothing).
    fn children(&self) -> Vec<(String, &dyn Module)> {
        named(&[("0", &self.conv1), ("3", &self.conv2), ("7", &self.fc)])
    }
}
