//! The [`Module`] abstraction: a layer or a model is something that maps a tensor to a tensor
//! and can list its learnable parameters and its buffers under PyTorch state-dict names.
//!
//! Names are what make models interoperable: a composite module asks each child for its
//! `(name, tensor)` pairs and prefixes them with the child's own name and a dot, so a ResNet's
//! first block's first convolution weight is `layer1.0.conv1.weight`, exactly the key a
//! torchvision state dict uses. Checkpoints, optimizers' state and PyTorch weight files are all
//! keyed by these names.
//!
//! Parameters are [`Tensor`] handles (cheap `Rc` clones) that share their buffer with the layer,
//! so an optimizer that updates the handles it was given updates the model. Buffers (BatchNorm
//! running statistics) are saved and loaded like parameters but never receive gradients.
//! Train / eval mode is interior state (a `Cell<bool>`) so `&self` suffices to switch it.

use simclr_tensor::Tensor;

/// A differentiable function with named parameters, the building block of every model.
pub trait Module {
    /// Applies the module to a batch.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Learnable parameters with PyTorch state-dict names (`"layer1.0.conv1.weight"`), in a
    /// stable order (the order PyTorch's `named_parameters()` yields).
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// Non-learnable state saved with the model (BatchNorm `running_mean`, `running_var` and
    /// `num_batches_tracked`, the last stored as an f32 scalar), with state-dict names.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Switches train / eval mode (only BatchNorm behaves differently), recursively.
    fn set_training(&self, _training: bool) {}

    /// The parameters without their names, in the order of [`Module::named_parameters`].
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Parameters followed by buffers: everything a checkpoint stores for the model.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut all = self.named_parameters();
        all.extend(self.named_buffers());
        all
    }

    /// The total number of learnable scalars.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Stops gradients from reaching the parameters (e.g. a frozen encoder under a linear probe).
    fn freeze(&self) {
        for p in self.parameters() {
            p.zero_grad();
            let _ = p.set_requires_grad(false);
        }
    }

    /// Makes every parameter trainable again.
    fn unfreeze(&self) {
        for p in self.parameters() {
            let _ = p.set_requires_grad(true);
        }
    }

    /// Clears the accumulated gradient of every parameter.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Puts the module in training mode (shorthand for `set_training(true)`).
    fn train(&self) {
        self.set_training(true);
    }

    /// Puts the module in evaluation mode (shorthand for `set_training(false)`).
    fn eval(&self) {
        self.set_training(false);
    }
}

/// Prefixes each name with `prefix.` (the way a parent names its child's tensors).
pub fn prefixed(prefix: &str, named: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    named
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Tensor) -> Tensor {
        (**self).forward(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        (**self).named_parameters()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        (**self).named_buffers()
    }
    fn set_training(&self, training: bool) {
        (**self).set_training(training)
    }
}
