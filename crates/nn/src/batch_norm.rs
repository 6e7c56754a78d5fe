//! Batch normalisation over the channels of an NCHW batch (`nn.BatchNorm2d`).
//!
//! In training mode each channel is normalised with the mean and (biased) variance of the
//! current batch, `y = γ·(x − μ_B)/√(σ²_B + ε) + β`, and exponential running averages
//! `r ← (1 − momentum)·r + momentum·batch` (unbiased variance) are updated in place; in eval
//! mode the running averages replace the batch statistics, so the layer is a fixed affine map.
//! `num_batches_tracked` counts training batches, as in PyTorch (kept as an f32 scalar here;
//! PyTorch's int64 loads too, see [`crate::checkpoint`]).
//!
//! In a data-parallel run, [`Module::sync_batch_norm`] makes the training statistics those of
//! the ranks' batches together (`nn.SyncBatchNorm`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use simclr_tensor::{BatchNormStats, Collective, Tensor};

use crate::init::parameter;
use crate::module::Module;

/// `nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1)`.
pub struct BatchNorm2d {
    /// Scale γ, `[C]`, initialised to 1.
    pub weight: Tensor,
    /// Shift β, `[C]`, initialised to 0.
    pub bias: Tensor,
    /// Running mean, `[C]`, initialised to 0.
    pub running_mean: Tensor,
    /// Running (unbiased) variance, `[C]`, initialised to 1.
    pub running_var: Tensor,
    /// Number of training batches seen, a scalar.
    pub num_batches_tracked: Tensor,
    /// Weight of the current batch in the running averages.
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
    training: Cell<bool>,
    across: RefCell<Option<Rc<dyn Collective>>>,
}

impl BatchNorm2d {
    /// A layer for `channels` channels with PyTorch's defaults, in training mode.
    pub fn new(channels: usize) -> BatchNorm2d {
        BatchNorm2d {
            weight: parameter(Tensor::ones(&[channels])),
            bias: parameter(Tensor::zeros(&[channels])),
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::ones(&[channels]),
            num_batches_tracked: Tensor::scalar(0.0),
            momentum: 0.1,
            eps: 1e-5,
            training: Cell::new(true),
            across: RefCell::new(None),
        }
    }

    /// Whether the layer normalises with batch statistics (training) or running ones (eval).
    pub fn is_training(&self) -> bool {
        self.training.get()
    }

    /// `self.forward(x).relu()` as one fused op ([`Tensor::batch_norm2d_relu`]): the same
    /// result, without storing the normalised map before the ReLU.
    pub fn forward_relu(&self, x: &Tensor) -> Tensor {
        self.with_stats(|stats| x.batch_norm2d_relu(&self.weight, &self.bias, stats))
    }

    /// `relu(self(x) + residual)` as one op ([`Tensor::batch_norm2d_add_relu`]): the end of
    /// a residual block.
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Tensor {
        self.with_stats(|stats| x.batch_norm2d_add_relu(residual, &self.weight, &self.bias, stats))
    }

    /// The statistics for one batch (counted when training), applied to `x` by `apply`.
    fn with_stats(&self, apply: impl FnOnce(BatchNormStats) -> Tensor) -> Tensor {
        let across = self.across.borrow();
        apply(BatchNormStats {
            running_mean: &self.running_mean,
            running_var: &self.running_var,
            training: self.count_batch(),
            momentum: self.momentum,
            eps: self.eps,
            across: across.as_ref(),
        })
    }

    /// Counts a training batch; returns whether the layer is training.
    fn count_batch(&self) -> bool {
        let training = self.training.get();
        if training {
            self.num_batches_tracked.data_mut()[0] += 1.0;
        }
        training
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.with_stats(|stats| x.batch_norm2d(&self.weight, &self.bias, stats))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
            (
                "num_batches_tracked".to_string(),
                self.num_batches_tracked.clone(),
            ),
        ]
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }

    fn sync_batch_norm(&self, group: Option<&Rc<dyn Collective>>) {
        *self.across.borrow_mut() = group.cloned();
    }
}
