//! Adam and AdamW, with PyTorch's exact update order.
//!
//! For each parameter with gradient `g`, at its step `t` (counted per parameter from 1):
//!
//! ```text
//! Adam:   g ← g + λ·θ                      (L2 weight decay folded into the gradient)
//! AdamW:  θ ← θ·(1 − lr·λ)                 (decoupled weight decay)
//! m ← β₁·m + (1 − β₁)·g
//! v ← β₂·v + (1 − β₂)·g²
//! θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! The bias corrections are computed in f64 (as PyTorch does in Python floats) and the
//! elementwise work in f32.

use simclr_tensor::Tensor;

use super::{config_lr_and_slots_methods, zip_update, Optimizer, Slots};

/// Hyper-parameters of [`Adam`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f32, f32),
    /// Added to the denominator for numerical stability.
    pub eps: f32,
    /// Weight decay λ (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f32,
    /// `true` for AdamW's decoupled weight decay, `false` for Adam's L2 penalty.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    /// `torch.optim.Adam`'s defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn adam(lr: f32) -> AdamConfig {
        AdamConfig {
            lr,
            ..AdamConfig::default()
        }
    }

    /// AdamW with learning rate `lr` and decoupled weight decay `weight_decay`
    /// (`torch.optim.AdamW`'s default decay is 0.01).
    pub fn adamw(lr: f32, weight_decay: f32) -> AdamConfig {
        AdamConfig {
            lr,
            weight_decay,
            decoupled_weight_decay: true,
            ..AdamConfig::default()
        }
    }
}

const NO_DECAY: u8 = 0;
const DECOUPLED: u8 = 1;
const L2: u8 = 2;

/// The scalars of one Adam update of one tensor.
struct AdamKernel {
    b1: f32,
    b2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    wd: f32,
    decay: f32,
}

impl AdamKernel {
    /// Updates a chunk of parameters `p` with gradients `g` and moments `m`, `v`.
    #[inline]
    fn run<const MODE: u8>(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = if MODE == L2 { g + self.wd * *p } else { g };
            if MODE == DECOUPLED {
                *p *= self.decay;
            }
            *m += (g - *m) * (1.0 - self.b1);
            *v = *v * self.b2 + (1.0 - self.b2) * g * g;
            let denom = v.sqrt() / self.bc2_sqrt + self.eps;
            *p -= self.step_size * *m / denom;
        }
    }
}

/// The Adam / AdamW optimizer.
pub struct Adam {
    config: AdamConfig,
    /// The parameters, their step counts, and the moments `exp_avg`, `exp_avg_sq`.
    slots: Slots<2>,
}

impl Adam {
    /// An optimizer over `params` (e.g. `model.parameters()`).
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Adam {
        Adam {
            config,
            slots: Slots::new(params, ["exp_avg", "exp_avg_sq"]),
        }
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

impl Optimizer for Adam {
    fn step(&mut self) {
        let AdamConfig {
            lr,
            betas: (b1, b2),
            eps,
            weight_decay: wd,
            decoupled_weight_decay: decoupled,
        } = self.config;
        let Slots {
            params,
            steps,
            buffers: [exp_avg, exp_avg_sq],
            ..
        } = &mut self.slots;
        for (i, p) in params.iter().enumerate() {
            let grad = p.grad_ref();
            let Some(g) = grad.as_ref() else { continue };
            steps[i] += 1;
            let t = steps[i] as i32;
            let bc1 = 1.0 - (b1 as f64).powi(t);
            let bc2_sqrt = (1.0 - (b2 as f64).powi(t)).sqrt() as f32;
            let step_size = (lr as f64 / bc1) as f32;
            let decay = 1.0 - lr * wd;
            let mut data = p.data_mut();
            zip_update(
                &mut data,
                g,
                &mut exp_avg[i],
                &mut exp_avg_sq[i],
                |p, g, m, v| {
                    let k = AdamKernel {
                        b1,
                        b2,
                        eps,
                        step_size,
                        bc2_sqrt,
                        wd,
                        decay,
                    };
                    // One specialised loop per weight-decay mode keeps the branch out of the
                    // vectorised inner loop.
                    match (wd != 0.0, decoupled) {
                        (false, _) => k.run::<NO_DECAY>(p, g, m, v),
                        (true, true) => k.run::<DECOUPLED>(p, g, m, v),
                        (true, false) => k.run::<L2>(p, g, m, v),
                    }
                },
            );
        }
    }

    // `lr`, `set_lr`, `params`, `state` and `load_state`, on `self.config.lr` and `self.slots`.
    config_lr_and_slots_methods!();
}
