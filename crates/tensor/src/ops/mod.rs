//! The differentiable ops, one family per module, each with its forward and backward side by side.

pub mod batch_norm;
pub mod conv2d;
pub mod elementwise;
pub mod matmul;
pub mod normalize;
pub mod pool;
pub mod reduce;
pub mod shape_ops;
pub mod softmax;
