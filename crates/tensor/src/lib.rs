//! # simclr-tensor
//!
//! An f32 [`Tensor`] with define-by-run reverse-mode automatic differentiation, and the CPU
//! kernels a small convolutional network needs, written to be read as well as run fast.
//!
//! Read it in this order:
//! 1. [`tensor`]: what a tensor is (shape, shared buffer, gradient slot).
//! 2. [`autograd`]: how every op records its backward, and how `backward()` walks the graph.
//! 3. [`ops`]: the ops, each with the math of its forward and backward in its doc comment.
//! 4. [`gemm`]: the matrix product the heavy kernels stand on.
//! 5. [`gradcheck`]: how each op's backward is proven against finite differences.
//! 6. [`profile`]: where a step's time goes, op by op (two hooks in [`autograd`]).
//!
//! ```
//! use simclr_tensor::Tensor;
//! let w = Tensor::from_vec(vec![1.0, -2.0], &[2]).set_requires_grad(true);
//! let x = Tensor::from_vec(vec![3.0, 4.0], &[2]);
//! let loss = w.mul(&x).sum(); // 3 - 8
//! loss.backward();
//! assert_eq!(loss.item(), -5.0);
//! assert_eq!(w.grad().unwrap().to_vec(), vec![3.0, 4.0]);
//! ```

pub mod autograd;
pub mod collective;
pub mod gemm;
pub mod gradcheck;
pub mod memory;
pub mod ops;
pub mod parallel;
pub mod profile;
pub mod shape;
pub mod tensor;
pub mod vector;

pub use autograd::{is_grad_enabled, no_grad};
pub use collective::{Collective, Solo, ThreadGroup};
pub use gradcheck::{gradcheck, gradcheck_with, GradcheckOptions};
pub use ops::batch_norm::BatchNormStats;
pub use tensor::Tensor;
