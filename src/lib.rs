//! # simclr
//!
//! SimCLR contrastive self-supervised learning on a multicore CPU, from scratch. This umbrella
//! package re-exports the crates, read in this order, and owns the cross-crate benchmarks
//! (`benches/`): `gemm`, `conv`, `loss` and `step`.
//!
//! - [`tensor`]: `Tensor`, reverse-mode autodiff, GEMM, im2col conv, pooling, batch norm.
//! - [`nn`]: modules, the report's encoders, ResNet-18/34, optimizers, checkpoints.
//! - [`data`]: MNIST / CIFAR-10 parsers, downloads, splits, the augmenting loader.
//! - [`contrastive`]: NT-Xent, SimCLR pretraining, linear / kNN evaluation.
//! - [`baselines`]: k-means and GMM clustering with cluster accuracy, NMI and ARI.
//!
//! The experiments themselves run with `cargo xtask mnist` (see the README).

pub use simclr_baselines as baselines;
pub use simclr_contrastive as contrastive;
pub use simclr_data as data;
pub use simclr_nn as nn;
pub use simclr_tensor as tensor;
