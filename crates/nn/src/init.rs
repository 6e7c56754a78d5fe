//! Weight initialisation as PyTorch does it, drawn from a caller-supplied seeded RNG so the
//! same seed gives bit-identical weights.
//!
//! * `nn.Linear` / `nn.Conv2d` default (`reset_parameters`): weights from Kaiming-uniform with
//!   `a = √5`, whose bound `gain·√(3/fan_in)` with `gain = √(2/(1+a²))` simplifies to
//!   `1/√fan_in`; biases from `U(−1/√fan_in, 1/√fan_in)`.
//! * torchvision's ResNet re-initialises its convolutions with Kaiming-normal, `mode="fan_out"`,
//!   `nonlinearity="relu"`: `N(0, 2/fan_out)`.
//! * BatchNorm: weight 1, bias 0, running mean 0, running variance 1.
//!
//! `fan_in` is `in_features` for a linear layer and `C_in·k_h·k_w` for a convolution;
//! `fan_out` is `C_out·k_h·k_w`.

use simclr_tensor::Tensor;

/// `U(−1/√fan_in, 1/√fan_in)`: PyTorch's default for linear/conv weights
/// (Kaiming-uniform, `a = √5`) and biases.
pub fn pytorch_default_uniform(shape: &[usize], fan_in: usize, rng: &mut impl rand::Rng) -> Tensor {
    let bound = if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f32).sqrt()
    };
    uniform(shape, bound, rng)
}

/// Kaiming-uniform with negative slope `a`: `U(−b, b)` with `b = √(2/(1+a²))·√(3/fan_in)`.
pub fn kaiming_uniform(shape: &[usize], fan_in: usize, a: f32, rng: &mut impl rand::Rng) -> Tensor {
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let bound = gain * (3.0 / fan_in.max(1) as f32).sqrt();
    uniform(shape, bound, rng)
}

/// Kaiming-normal for ReLU networks, fan-out mode: `N(0, 2/fan_out)` (torchvision's ResNet
/// convolution init).
pub fn kaiming_normal_fan_out(shape: &[usize], fan_out: usize, rng: &mut impl rand::Rng) -> Tensor {
    let std = (2.0 / fan_out.max(1) as f32).sqrt();
    let t = Tensor::randn(shape, rng);
    t.data_mut().iter_mut().for_each(|v| *v *= std);
    t
}

/// `U(−bound, bound)`; a zero bound gives zeros without consuming randomness.
fn uniform(shape: &[usize], bound: f32, rng: &mut impl rand::Rng) -> Tensor {
    if bound > 0.0 {
        Tensor::uniform(shape, -bound, bound, rng)
    } else {
        Tensor::zeros(shape)
    }
}

/// A trainable leaf holding `t`'s values (what every layer stores as a parameter).
pub fn parameter(t: Tensor) -> Tensor {
    t.set_requires_grad(true)
}
