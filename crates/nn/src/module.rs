//! The [`Module`] abstraction: a layer or a model is something that maps a tensor to a tensor
//! and can list its learnable parameters and its buffers under PyTorch state-dict names.
//!
//! Names are what make models interoperable: a composite module lists its named children
//! ([`Module::children`]), and its tensors are theirs prefixed with the child's name and a dot,
//! so a ResNet's first block's first convolution weight is `layer1.0.conv1.weight`, exactly the
//! key a torchvision state dict uses. Checkpoints, optimizers' state and PyTorch weight files are
//! all keyed by these names.
//!
//! There are two kinds of module. A *layer* ([`crate::Conv2d`], [`crate::Linear`],
//! [`crate::BatchNorm2d`]) owns tensors and says so by implementing
//! [`Module::named_parameters`] (and [`Module::named_buffers`], [`Module::set_training`] where it
//! has them). A *composite* ([`crate::Sequential`], a ResNet block, a whole model) implements
//! only [`Module::forward`] and [`Module::children`]; the walks over parameters, buffers and
//! train / eval mode come with the trait.
//!
//! Parameters are [`Tensor`] handles (cheap `Rc` clones) that share their buffer with the layer,
//! so an optimizer that updates the handles it was given updates the model. Buffers (BatchNorm
//! running statistics) are saved and loaded like parameters but never receive gradients.
//! Train / eval mode is interior state (a `Cell<bool>`) so `&self` suffices to switch it.

use std::rc::Rc;

use simclr_tensor::{Collective, Tensor};

/// A differentiable function with named parameters, the building block of every model.
pub trait Module {
    /// Applies the module to a batch.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// The direct sub-modules with their names (`"conv1"`, `"layer1"`, `"0"`), in the order
    /// PyTorch registers them (`named_children()`). None for a layer.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }

    /// Learnable parameters with PyTorch state-dict names (`"layer1.0.conv1.weight"`), in a
    /// stable order (the order PyTorch's `named_parameters()` yields): by default the
    /// children's, each prefixed with the child's name.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.children()
            .into_iter()
            .flat_map(|(name, child)| prefixed(&name, child.named_parameters()))
            .collect()
    }

    /// Non-learnable state saved with the model (BatchNorm `running_mean`, `running_var` and
    /// `num_batches_tracked`, the last stored as an f32 scalar), with state-dict names: by
    /// default the children's.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.children()
            .into_iter()
            .flat_map(|(name, child)| prefixed(&name, child.named_buffers()))
            .collect()
    }

    /// Switches train / eval mode (only BatchNorm behaves differently): by default, of every
    /// child.
    fn set_training(&self, training: bool) {
        for (_, child) in self.children() {
            child.set_training(training);
        }
    }

    /// Makes every batch norm of the module compute its training statistics over the ranks of
    /// `group` (`SyncBatchNorm`, see [`simclr_tensor::collective`]), or again over its own
    /// batch with `None`: by default, of every child.
    fn sync_batch_norm(&self, group: Option<&Rc<dyn Collective>>) {
        for (_, child) in self.children() {
            child.sync_batch_norm(group);
        }
    }

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

/// Children listed as `(&str, &dyn Module)` pairs, with owned names (for [`Module::children`]).
pub fn named<'a>(children: &[(&str, &'a dyn Module)]) -> Vec<(String, &'a dyn Module)> {
    children
        .iter()
        .map(|&(name, child)| (name.to_string(), child))
        .collect()
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
    fn children(&self) -> Vec<(String, &dyn Module)> {
        (**self).children()
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
    fn sync_batch_norm(&self, group: Option<&Rc<dyn Collective>>) {
        (**self).sync_batch_norm(group)
    }
}
