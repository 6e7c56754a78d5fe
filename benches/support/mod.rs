//! What the kernel benches share (a module, not a bench target: Cargo discovers only
//! `benches/*.rs` and `benches/*/main.rs`).

use simclr_tensor::Tensor;

/// A scalar whose backward hands `gy` to `y` unchanged: `backward()` from it runs `y`'s
/// backward with `dy = gy`, like PyTorch's `y.backward(gy)`, so no loss reduction is timed.
pub fn inject(y: &Tensor, gy: Vec<f32>) -> Tensor {
    Tensor::from_op(vec![0.0], &[], &[y], move |_, _| vec![Some(gy)])
}
