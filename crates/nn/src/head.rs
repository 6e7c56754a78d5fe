//! The SimCLR projection head `g(h) = W₂·ReLU(W₁·h + b₁) + b₂`, which maps encoder features
//! into the space where the contrastive loss is computed (and is discarded afterwards).
//!
//! It is a `Sequential` of `Linear(in→hidden)`, `ReLU`, `Linear(hidden→out)`, so its
//! state-dict names are those of the PyTorch `nn.Sequential`: `0.weight`, `0.bias`,
//! `2.weight`, `2.bias`.

use simclr_tensor::Tensor;

use crate::activation::ReLU;
use crate::linear::Linear;
use crate::module::Module;
use crate::sequential::Sequential;

/// Linear(in→hidden) – ReLU – Linear(hidden→out).
pub struct ProjectionHead {
    net: Sequential,
    out_features: usize,
}

impl ProjectionHead {
    /// A PyTorch-initialised head (the report uses 128→256→128 on MNIST, 512→256→128 on CIFAR).
    pub fn new(
        in_features: usize,
        hidden: usize,
        out_features: usize,
        rng: &mut impl rand::Rng,
    ) -> ProjectionHead {
        let net = Sequential::new()
            .add(Linear::new(in_features, hidden, rng))
            .add(ReLU)
            .add(Linear::new(hidden, out_features, rng));
        ProjectionHead { net, out_features }
    }

    /// Dimension of the projections.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Module for ProjectionHead {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.net.forward(x)
    }
    /// The `Sequential`'s children, so the names are PyTorch's `0.weight`, `2.bias`, ….
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.net.children()
    }
}
