//! Finite-difference gradient checking, the test every differentiable op must pass.
//!
//! For a function `f` of some input tensors, [`gradcheck`] reduces the output to a scalar
//! `L = Σ w ⊙ f(x)` with fixed pseudo-random weights `w` (so every output element matters, with
//! a different weight), gets `∂L/∂x` from [`Tensor::backward`], and compares it with the central
//! difference `(L(x + h·eᵢ) − L(x − h·eᵢ)) / 2h` for every element `i` of every input.
//!
//! ## Tolerances for f32
//!
//! The crate computes in f32 (unit roundoff `u ≈ 6·10⁻⁸`). A central difference has truncation
//! error `O(h²·f‴)` and rounding error about `u·|L| / h`; `h = 10⁻²` balances them for inputs
//! and outputs of order one, giving errors around `10⁻⁴`. The check therefore accepts
//! `|analytic − numeric| ≤ atol + rtol·|numeric|` with `atol = 10⁻³`, `rtol = 10⁻²` by default
//! ([`GradcheckOptions`]). `L` is accumulated in f64, so only the function's own f32 rounding
//! enters. Inputs must keep a distance larger than `h` from kinks (ReLU at 0, max-pool ties).

use crate::tensor::Tensor;

/// Step and tolerances of [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step `h`.
    pub step: f32,
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance (of the numeric derivative).
    pub rtol: f32,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            step: 1e-2,
            atol: 1e-3,
            rtol: 1e-2,
        }
    }
}

fn weights(n: usize) -> Vec<f32> {
    // A fixed, deterministic spread of weights in [0.5, 1.5) with alternating signs.
    (0..n)
        .map(|i| {
            let r =
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32;
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            sign * (0.5 + r)
        })
        .collect()
}

fn weighted_sum(out: &Tensor, w: &[f32]) -> f64 {
    out.data()
        .iter()
        .zip(w)
        .map(|(&o, &w)| o as f64 * w as f64)
        .sum()
}

/// Checks the gradients of `f` at `inputs` with the default options; see [`gradcheck_with`].
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Result<(), String> {
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// Compares backward's gradient of `Σ w ⊙ f(inputs)` with central differences, for every
/// element of every input. Returns a description of the worst failures, if any.
pub fn gradcheck_with(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<(), String> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|x| x.copy().set_requires_grad(true))
        .collect();
    let out = f(&leaves);
    let w = weights(out.numel());
    let loss = out.mul(&Tensor::from_vec(w.clone(), out.shape())).sum();
    loss.backward();

    let mut failures = Vec::new();
    for (which, leaf) in leaves.iter().enumerate() {
        let analytic = leaf
            .grad()
            .map(|g| g.to_vec())
            .unwrap_or_else(|| vec![0.0; leaf.numel()]);
        for (i, &expected) in analytic.iter().enumerate() {
            let original = leaf.data()[i];
            let at = |delta: f32| {
                leaf.data_mut()[i] = original + delta;
                let value = crate::no_grad(|| weighted_sum(&f(&leaves), &w));
                leaf.data_mut()[i] = original;
                value
            };
            let numeric = ((at(opts.step) - at(-opts.step)) / (2.0 * opts.step as f64)) as f32;
            let err = (expected - numeric).abs();
            // NaN errors fail too: only a finite error within tolerance passes.
            let within = err <= opts.atol + opts.rtol * numeric.abs();
            if !within {
                failures.push(format!(
                    "input {which} element {i}: analytic {expected:.6} vs numeric {numeric:.6}"
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        let shown = failures.len().min(8);
        Err(format!(
            "{} gradient mismatches; first {shown}:\n{}",
            failures.len(),
            failures[..shown].join("\n")
        ))
    }
}
