//! LARS (layer-wise adaptive rate scaling), as in the SimCLR paper's `LARSOptimizer`.
//!
//! Each weight tensor gets its own learning rate scaled by a *trust ratio*, the ratio of the
//! weight's norm to its (decayed) gradient's norm, so that every layer moves by a similar
//! relative amount whatever its scale — what makes very large batches trainable:
//!
//! ```text
//! g ← g + λ·θ                                   (not for excluded tensors)
//! r = η·‖θ‖/‖g‖  if ‖θ‖ > 0 and ‖g‖ > 0, else 1 (r = 1 for excluded tensors)
//! v ← μ·v + lr·r·g
//! θ ← θ − v                   or, with Nesterov,   θ ← θ − (μ·v + lr·r·g)
//! ```
//!
//! SimCLR excludes BatchNorm parameters and biases from both the weight decay and the
//! adaptation; they are exactly the 1-D tensors, so this implementation excludes every
//! parameter with fewer than two axes (configurable).

use rayon::prelude::*;
use simclr_tensor::parallel::min_items;
use simclr_tensor::Tensor;

use super::{
    chunk_sum_sq, config_lr_and_slots_methods, l2_norm, zip_update1, Optimizer, Slots, CHUNK,
};

/// Hyper-parameters of [`Lars`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LarsConfig {
    /// Base learning rate (SimCLR: 0.3 × batch / 256).
    pub lr: f32,
    /// Momentum μ (SimCLR: 0.9).
    pub momentum: f32,
    /// Weight decay λ (SimCLR: 1e-6).
    pub weight_decay: f32,
    /// Trust coefficient η (SimCLR: 0.001).
    pub eta: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Exclude tensors with fewer than two axes (biases, BatchNorm) from decay and adaptation.
    pub exclude_1d: bool,
}

impl LarsConfig {
    /// SimCLR's settings (momentum 0.9, weight decay 1e-6, η 0.001, 1-D tensors excluded)
    /// with learning rate `lr`.
    pub fn simclr(lr: f32) -> LarsConfig {
        LarsConfig {
            lr,
            momentum: 0.9,
            weight_decay: 1e-6,
            eta: 1e-3,
            nesterov: false,
            exclude_1d: true,
        }
    }
}

/// `v ← μ·v + lr·(g + λθ)`, `θ ← θ − v` (or the Nesterov variant) over one chunk.
#[inline]
fn lars_kernel<const NESTEROV: bool>(
    p: &mut [f32],
    g: &[f32],
    v: &mut [f32],
    mu: f32,
    wd: f32,
    lr: f32,
) {
    for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
        let g = g + wd * *p;
        *v = mu * *v + lr * g;
        *p -= if NESTEROV { mu * *v + lr * g } else { *v };
    }
}

/// `‖g + λθ‖`, accumulated in f64 without materialising the sum (parallel for large tensors).
fn decayed_norm(g: &[f32], w: &[f32], wd: f32) -> f64 {
    let sq = |(g, w): (&[f32], &[f32])| chunk_sum_sq(g.len(), |i| g[i] + wd * w[i]);
    g.par_chunks(CHUNK)
        .zip(w.par_chunks(CHUNK))
        .with_min_len(min_items(CHUNK))
        .map(sq)
        .sum::<f64>()
        .sqrt()
}

/// The LARS optimizer.
pub struct Lars {
    config: LarsConfig,
    /// The parameters, their step counts, and the `momentum` buffers.
    slots: Slots<1>,
}

/// Whether `p` is excluded from weight decay and trust-ratio adaptation under `config`.
fn excluded(config: &LarsConfig, p: &Tensor) -> bool {
    config.exclude_1d && p.ndim() < 2
}

impl Lars {
    /// An optimizer over `params`.
    pub fn new(params: Vec<Tensor>, config: LarsConfig) -> Lars {
        Lars {
            config,
            slots: Slots::new(params, ["momentum"]),
        }
    }

    /// Whether `p` is excluded from weight decay and trust-ratio adaptation.
    pub fn is_excluded(&self, p: &Tensor) -> bool {
        excluded(&self.config, p)
    }
}

impl Optimizer for Lars {
    fn step(&mut self) {
        let LarsConfig {
            lr,
            momentum: mu,
            weight_decay,
            eta,
            nesterov,
            ..
        } = self.config;
        let Slots {
            params,
            steps,
            buffers: [momentum],
            ..
        } = &mut self.slots;
        for (i, p) in params.iter().enumerate() {
            let excluded = excluded(&self.config, p);
            let grad = p.grad_ref();
            let Some(g) = grad.as_ref() else { continue };
            steps[i] += 1;
            let wd = if excluded { 0.0 } else { weight_decay };
            let mut data = p.data_mut();
            let scaled_lr = if excluded {
                lr
            } else {
                // The norm of the decayed gradient g + λθ, computed without materialising it.
                let w_norm = l2_norm(&data);
                let g_norm = if wd == 0.0 {
                    l2_norm(g)
                } else {
                    decayed_norm(g, &data, wd)
                };
                let trust = if w_norm > 0.0 && g_norm > 0.0 {
                    (eta as f64 * w_norm / g_norm) as f32
                } else {
                    1.0
                };
                lr * trust
            };
            zip_update1(&mut data, g, &mut momentum[i], |p, g, v| {
                if nesterov {
                    lars_kernel::<true>(p, g, v, mu, wd, scaled_lr)
                } else {
                    lars_kernel::<false>(p, g, v, mu, wd, scaled_lr)
                }
            });
        }
    }

    // `lr`, `set_lr`, `params`, `state` and `load_state`, on `self.config.lr` and `self.slots`.
    config_lr_and_slots_methods!();
}
