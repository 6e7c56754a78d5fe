//! # simclr
//!
//! SimCLR contrastive self-supervised learning on a multicore CPU, from scratch. This umbrella
//! package re-exports the crates, read in this order, and owns what spans them: the
//! benchmarks (`benches/`: `gemm`, `conv`, `loss` and `step`) and the integration tests
//! (`tests/`: SimCLR end to end on real MNIST, and a killed run resumed to the same bytes).
//! Each crate keeps its own unit tests; the runner's command-line tests are `xtask/tests/`.
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
