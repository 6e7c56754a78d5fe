//! # simclr-nn
//!
//! Neural-network building blocks on top of [`simclr_tensor`]: the [`Module`] abstraction with
//! PyTorch state-dict names, layers, the report's encoders (the small MNIST CNN and
//! ResNet-18/34 with a CIFAR stem), the SimCLR projection head, optimizers with learning-rate
//! schedules, and safetensors checkpoints that interoperate with PyTorch.
//!
//! Read it in this order: [`module`] (what a module is), [`init`] (how weights start),
//! [`linear`], [`conv`], [`batch_norm`], [`activation`], [`sequential`], the
//! encoders ([`mnist`], [`resnet`]) and the [`head`], then [`optim`] and [`checkpoint`].
//!
//! ```
//! use rand::SeedableRng;
//! use simclr_nn::{Adam, AdamConfig, MnistEncoder, Module, Optimizer, ProjectionHead};
//! use simclr_tensor::Tensor;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let encoder = MnistEncoder::new(&mut rng);
//! let head = ProjectionHead::new(encoder.out_features(), 256, 128, &mut rng);
//! let mut params = encoder.parameters();
//! params.extend(head.parameters());
//! let mut opt = Adam::new(params, AdamConfig::adam(1e-3));
//! let x = Tensor::randn(&[2, 1, 28, 28], &mut rng);
//! let z = head.forward(&encoder.forward(&x)); // [2, 128]
//! z.mul(&z).mean().backward();
//! opt.step();
//! assert_eq!(z.shape(), &[2, 128]);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation;
pub mod batch_norm;
pub mod checkpoint;
pub mod conv;
pub mod head;
pub mod init;
pub mod linear;
pub mod mnist;
pub mod module;
pub mod optim;
pub mod resnet;
pub mod sequential;

pub use activation::{Flatten, ReLU};
pub use batch_norm::BatchNorm2d;
pub use checkpoint::{Checkpoint, CheckpointError, KeyProblem, LoadOptions, LoadReport};
pub use conv::{Conv2d, Conv2dConfig, ConvInit};
pub use head::ProjectionHead;
pub use linear::Linear;
pub use mnist::MnistEncoder;
pub use module::Module;
pub use optim::{
    Adam, AdamConfig, Lars, LarsConfig, OptimStateError, Optimizer, Schedule, Sgd, SgdConfig,
};
pub use resnet::{BasicBlock, ResNet};
pub use sequential::Sequential;
