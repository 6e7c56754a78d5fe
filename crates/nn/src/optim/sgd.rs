//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
//! following `torch.optim.SGD`:
//!
//! ```text
//! g ← g + λ·θ
//! b ← g                              on the first step
//! b ← μ·b + (1 − dampening)·g        afterwards
//! g ← g + μ·b  (Nesterov)   or   g ← b
//! θ ← θ − lr·g
//! ```
//!
//! With `momentum = 0` it is plain gradient descent and keeps no buffer.

use simclr_tensor::Tensor;

use super::{config_lr_and_slots_methods, zip_update1, Optimizer, Slots};

/// Hyper-parameters of [`Sgd`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor μ (0 disables momentum).
    pub momentum: f32,
    /// Dampening of the gradient's contribution to the momentum buffer.
    pub dampening: f32,
    /// L2 weight decay λ added to the gradient.
    pub weight_decay: f32,
    /// Use Nesterov momentum (needs `momentum > 0` and `dampening = 0`).
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f32) -> SgdConfig {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// Heavy-ball momentum μ.
    pub fn momentum(self, momentum: f32) -> SgdConfig {
        SgdConfig { momentum, ..self }
    }

    /// Nesterov momentum on or off.
    pub fn nesterov(self, nesterov: bool) -> SgdConfig {
        SgdConfig { nesterov, ..self }
    }

    /// L2 weight decay λ.
    pub fn weight_decay(self, weight_decay: f32) -> SgdConfig {
        SgdConfig {
            weight_decay,
            ..self
        }
    }
}

/// The scalars of one momentum-SGD update of one tensor.
struct SgdKernel {
    lr: f32,
    mu: f32,
    dampening: f32,
    wd: f32,
}

impl SgdKernel {
    #[inline]
    fn run<const FIRST: bool, const NESTEROV: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        b: &mut [f32],
    ) {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
            let g = g + self.wd * *p;
            *b = if FIRST {
                g
            } else {
                self.mu * *b + (1.0 - self.dampening) * g
            };
            let d = if NESTEROV { g + self.mu * *b } else { *b };
            *p -= self.lr * d;
        }
    }
}

/// The SGD optimizer.
pub struct Sgd {
    config: SgdConfig,
    /// The parameters, their step counts, and the `momentum_buffer`s.
    slots: Slots<1>,
}

impl Sgd {
    /// An optimizer over `params`.
    ///
    /// Panics if Nesterov is requested without momentum or with dampening (as PyTorch does).
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Sgd {
        assert!(
            !config.nesterov || (config.momentum > 0.0 && config.dampening == 0.0),
            "Sgd: Nesterov momentum requires a momentum and zero dampening"
        );
        Sgd {
            config,
            slots: Slots::new(params, ["momentum_buffer"]),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) {
        let SgdConfig {
            lr,
            momentum: mu,
            dampening,
            weight_decay: wd,
            nesterov,
        } = self.config;
        let Slots {
            params,
            steps,
            buffers: [momentum_buffer],
            ..
        } = &mut self.slots;
        for (i, p) in params.iter().enumerate() {
            let grad = p.grad_ref();
            let Some(g) = grad.as_ref() else { continue };
            steps[i] += 1;
            let first = steps[i] == 1;
            let mut data = p.data_mut();
            if mu == 0.0 {
                zip_update1(&mut data, g, &mut [], |p, g, _| {
                    for j in 0..p.len() {
                        p[j] -= lr * (g[j] + wd * p[j]);
                    }
                });
                continue;
            }
            let k = SgdKernel {
                lr,
                mu,
                dampening,
                wd,
            };
            // One specialised loop per (first step, Nesterov) case keeps the branches out of
            // the vectorised inner loop.
            zip_update1(&mut data, g, &mut momentum_buffer[i], |p, g, b| {
                match (first, nesterov) {
                    (true, true) => k.run::<true, true>(p, g, b),
                    (true, false) => k.run::<true, false>(p, g, b),
                    (false, true) => k.run::<false, true>(p, g, b),
                    (false, false) => k.run::<false, false>(p, g, b),
                }
            });
        }
    }

    // `lr`, `set_lr`, `params`, `state` and `load_state`, on `self.config.lr` and `self.slots`.
    config_lr_and_slots_methods!();
}
