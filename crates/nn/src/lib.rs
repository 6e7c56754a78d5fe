//! # simclr-nn
//!
//! Neural-network building blocks on top of [`simclr_tensor`]: the [`Module`] abstraction with
//! PyTorch state-dict names, layers, the report's encoders (the small MNIST CNN and
//! ResNet-18/34 with a CIFAR stem), the SimCLR projection head, optimizers with learning-rate
//! schedules, and safetensors checkpoints that interoperate with PyTorch.
//!
//! Read it in this order: [`module`] (what a module is), [`init`] (how weights start),
//! [`linear`], [`activation`], [`sequential`], the
//! encoders, [`optim`], and [`checkpoint`].

pub mod activation;
pub mod checkpoint;
pub mod head;
pub mod init;
pub mod linear;
pub mod module;
pub mod optim;
pub mod sequential;

pub use activation::{Flatten, Identity, ReLU};
pub use checkpoint::{Checkpoint, CheckpointError, KeyProblem, LoadOptions, LoadReport};
pub use head::ProjectionHead;
pub use linear::Linear;
pub use module::Module;
pub use optim::{
    Adam, AdamConfig, Lars, LarsConfig, OptimStateError, Optimizer, Schedule, Sgd, SgdConfig,
};
pub use sequential::Sequential;
