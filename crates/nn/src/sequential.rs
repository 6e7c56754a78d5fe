//! [`Sequential`]: children applied in order, named `"0"`, `"1"`, … like `torch.nn.Sequential`.
//!
//! A child's tensors are prefixed with its index, so a `Sequential` of
//! `[Conv2d, ReLU, MaxPool2d, Conv2d]` names its second convolution's weight `3.weight` — the
//! same key PyTorch would use, which is what lets a PyTorch state dict load unchanged.

use simclr_tensor::Tensor;

use crate::module::Module;

/// An ordered list of modules; `forward` threads the input through each in turn.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty sequence (its forward is the identity).
    pub fn new() -> Sequential {
        Sequential { layers: Vec::new() }
    }

    /// Appends a child (it will be named by its index); returns `self` for chaining.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a child in place.
    pub fn push(&mut self, layer: impl Module + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        h
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, layer)| (i.to_string(), layer.as_ref() as &dyn Module))
            .collect()
    }
}
