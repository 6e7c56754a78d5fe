//! Batch normalisation over the channels of `[N, C, H, W]` (`torch.nn.functional.batch_norm`).
//!
//! For channel `c`, with `M = N·H·W` values `x` in the batch:
//!
//! ```text
//! training:  μ = (1/M) Σ x,   σ² = (1/M) Σ (x − μ)²        (biased, used to normalise)
//!            running_mean ← (1 − m)·running_mean + m·μ
//!            running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)   (unbiased)
//! eval:      μ = running_mean,  σ² = running_var
//! both:      x̂ = (x − μ)/√(σ² + ε),   y = γ·x̂ + β
//! ```
//!
//! The forward folds normalise and affine into one pass, `y = a·x + b` with `a = γ/σ` and
//! `b = β − μ·a` (σ = √(σ² + ε)).
//!
//! Backward, per channel (sums over the channel's `M` values):
//!
//! ```text
//! dγ = Σ dy·x̂,   dβ = Σ dy
//! training:  dx = (γ/σ)·(dy − mean(dy) − x̂·mean(dy·x̂))    (μ and σ depend on x)
//! eval:      dx = (γ/σ)·dy                                 (the statistics are constants)
//! ```
//!
//! The training `dx` is again affine in `(dy, x)` per channel, so it too is one fused pass.
//! Statistics are reduced in parallel over channels, accumulated in f64. The variance takes
//! one pass over memory but keeps the stability of two: each `H·W` plane is summed twice while
//! it is in cache (its sum, then its squared deviations about its own mean), and the planes'
//! deviations are moved to the channel's mean exactly ([`PlaneMoments::squares_about`]). The
//! elementwise passes run in parallel over `(n, c)` planes.
//!
//! **Across ranks** (`SyncBatchNorm`): in a data-parallel run each rank holds a shard of the
//! batch, and [`BatchNormStats::across`] makes the sums above run over the whole batch — each
//! rank sums its shard, then [`Collective::sum_f64`] adds the ranks' sums (`M`, `Σx`,
//! `Σ(x − μ)²` forward; `Σdy`, `Σdy·x̂` backward, for `dx`). Every rank thus normalises and
//! differentiates exactly as one process holding the whole batch would; `dγ` and `dβ` stay
//! the rank's own part, summed with the other gradients before the optimizer step.

use std::mem::MaybeUninit;
use std::rc::Rc;

use rayon::prelude::*;

use crate::collective::Collective;
use crate::parallel::min_items;
use crate::tensor::Tensor;
use crate::vector::{sum_map, sum_map2};

/// `f(c)` for every channel, each reading `channel_len` values, in parallel when that is
/// worth it ([`crate::parallel`]).
fn per_channel<T: Send>(
    channels: usize,
    channel_len: usize,
    f: impl Fn(usize) -> T + Sync + Send,
) -> Vec<T> {
    (0..channels)
        .into_par_iter()
        .with_min_len(min_items(channel_len))
        .map(f)
        .collect()
}

/// `(Σ g, Σ g·(x − μ))` over channel `c` of the `[n, channels, hw]` arrays `dy` and `x`, where
/// `g = gate(dy, x)`: `dy` itself, or `dy` masked by a ReLU recomputed from `x`. Each plane is
/// summed twice while it is in cache (so the channel takes one pass over memory), in f32
/// (vectorised); the planes in f64.
fn channel_grad_sums(
    (n, channels, hw): (usize, usize, usize),
    c: usize,
    (dy, x): (&[f32], &[f32]),
    mu: f32,
    gate: impl Fn(f32, f32) -> f32 + Copy,
) -> (f64, f64) {
    (0..n).fold((0.0, 0.0), |(sum, sum_x), ni| {
        let at = (ni * channels + c) * hw;
        let (g, x) = (&dy[at..at + hw], &x[at..at + hw]);
        let plane_sum = sum_map2(g, x, gate);
        let plane_sum_x = sum_map2(g, x, |g, v| gate(g, v) * (v - mu));
        (sum + plane_sum as f64, sum_x + plane_sum_x as f64)
    })
}

/// One plane's contribution to its channel's statistics: the plane's sum, and the sum of
/// squared deviations from the plane's own mean `mean` (two passes over a plane that is in
/// cache, so the channel's moments take one pass over memory instead of two).
struct PlaneMoments {
    sum: f64,
    mean: f32,
    deviations: f64,
}

impl PlaneMoments {
    /// `Σ (v − μ)²` over the plane's `hw` values for any `μ`, exactly (up to rounding), from
    /// the plane's deviations about its own mean `p`:
    /// `Σ(v − p)² + 2(p − μ)·Σ(v − p) + hw·(p − μ)²`.
    fn squares_about(&self, mu: f64, hw: usize) -> f64 {
        let (p, hw) = (self.mean as f64, hw as f64);
        self.deviations + 2.0 * (p - mu) * (self.sum - hw * p) + hw * (p - mu) * (p - mu)
    }
}

/// [`PlaneMoments`] of every plane of channel `c` of an `[n, channels, hw]` array.
fn plane_moments(
    (n, channels, hw): (usize, usize, usize),
    c: usize,
    x: &[f32],
) -> Vec<PlaneMoments> {
    (0..n)
        .map(|ni| {
            let plane = &x[(ni * channels + c) * hw..][..hw];
            let sum = sum_map(plane, |v| v);
            let mean = sum / hw as f32;
            let deviations = sum_map(plane, |v| (v - mean) * (v - mean)) as f64;
            PlaneMoments {
                sum: sum as f64,
                mean,
                deviations,
            }
        })
        .collect()
}

/// A new `len`-value buffer whose every `hw`-long plane `p` is written by `body(p, plane)`, in
/// parallel over the planes. The buffer is not zeroed first: the passes here write every value
/// of their planes, and a zeroing pass would cost as much as one of them.
fn write_planes(
    len: usize,
    hw: usize,
    body: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    if hw > 0 {
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(hw)
            .enumerate()
            .with_min_len(min_items(hw))
            .for_each(|(p, plane)| body(p, plane));
    }
    // SAFETY: `len` values are allocated, and every plane's values were written by `body`
    // (each body below writes its whole plane; `len` is a multiple of `hw`, so 0 when `hw` is).
    unsafe { out.set_len(len) };
    out
}

/// `out[n, c, :] = a[c]·u[n, c, :] + b[c]·v[n, c, :] + d[c]` over all planes (`v` optional),
/// clamped at 0 when `RELU`.
fn affine_planes<const RELU: bool>(
    u: &[f32],
    v: Option<&[f32]>,
    coef: &[(f32, f32, f32)],
    hw: usize,
) -> Vec<f32> {
    let channels = coef.len();
    let body = |p: usize, o: &mut [MaybeUninit<f32>]| {
        let (a, b, d) = coef[p % channels];
        let u = &u[p * hw..(p + 1) * hw];
        match v {
            Some(v) => {
                let v = &v[p * hw..(p + 1) * hw];
                for ((o, &u), &v) in o.iter_mut().zip(u).zip(v) {
                    o.write(a * u + b * v + d);
                }
            }
            None if RELU => {
                for (o, &u) in o.iter_mut().zip(u) {
                    o.write((a * u + d).max(0.0));
                }
            }
            None => {
                for (o, &u) in o.iter_mut().zip(u) {
                    o.write(a * u + d);
                }
            }
        }
    };
    write_planes(u.len(), hw, body)
}

/// `out[n, c, :] = max(a[c]·x[n, c, :] + d[c] + r[n, c, :], 0)`: batch norm's output, a
/// residual added, a ReLU (in the order of the three ops, so their values bit for bit).
fn affine_add_relu_planes(x: &[f32], r: &[f32], coef: &[(f32, f32, f32)], hw: usize) -> Vec<f32> {
    let channels = coef.len();
    let body = |p: usize, o: &mut [MaybeUninit<f32>]| {
        let (a, _, d) = coef[p % channels];
        let (x, r) = (&x[p * hw..(p + 1) * hw], &r[p * hw..(p + 1) * hw]);
        for ((o, &x), &r) in o.iter_mut().zip(x).zip(r) {
            o.write((a * x + d + r).max(0.0));
        }
    };
    write_planes(x.len(), hw, body)
}

/// The ReLU's backward, recomputed from batch norm's input `x` with the forward's arithmetic
/// ([`affine_planes`]): the output gradient `g` where `a·x + d` was positive, else 0.
#[inline(always)]
fn relu_gate((a, _, d): (f32, f32, f32)) -> impl Fn(f32, f32) -> f32 + Copy {
    move |g, x| if a * x + d > 0.0 { g } else { 0.0 }
}

/// `dx[n, c, :] = a[c]·g + b[c]·x + d[c]` ([`affine_planes`]) with `g` the output gradient
/// `dy` through the ReLU of [`affine_planes::<true>`] ([`relu_gate`], `fwd` its coefficients),
/// so the masked `dy` is never written out.
fn relu_grad_planes(
    dy: &[f32],
    x: &[f32],
    coef: &[(f32, f32, f32)],
    fwd: &[(f32, f32, f32)],
    hw: usize,
) -> Vec<f32> {
    let channels = coef.len();
    let body = |p: usize, o: &mut [MaybeUninit<f32>]| {
        let ((a, b, d), gate) = (coef[p % channels], relu_gate(fwd[p % channels]));
        let (g, x) = (&dy[p * hw..(p + 1) * hw], &x[p * hw..(p + 1) * hw]);
        for ((o, &g), &x) in o.iter_mut().zip(g).zip(x) {
            o.write(a * gate(g, x) + b * x + d);
        }
    };
    write_planes(dy.len(), hw, body)
}

/// `dy` where the forward's value before the ReLU, `a[c]·x + d[c] + r`
/// ([`affine_add_relu_planes`]), was positive, else 0: the gradient of both batch norm's
/// output and the residual `r`, written out because the residual's gradient is this map.
fn residual_relu_mask(
    dy: &[f32],
    x: &[f32],
    r: &[f32],
    coef: &[(f32, f32, f32)],
    hw: usize,
) -> Vec<f32> {
    let channels = coef.len();
    let body = |p: usize, o: &mut [MaybeUninit<f32>]| {
        let (a, _, d) = coef[p % channels];
        let span = p * hw..(p + 1) * hw;
        let (g, x, r) = (&dy[span.clone()], &x[span.clone()], &r[span]);
        for (((o, &g), &x), &r) in o.iter_mut().zip(g).zip(x).zip(r) {
            o.write(if a * x + d + r > 0.0 { g } else { 0.0 });
        }
    };
    write_planes(dy.len(), hw, body)
}

/// The statistics a batch norm uses and keeps: the running estimates (updated in place while
/// training), the mode, and the constants — `torch.nn.functional.batch_norm`'s arguments after
/// the affine parameters.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormStats<'a> {
    /// Running mean, `[C]`.
    pub running_mean: &'a Tensor,
    /// Running (unbiased) variance, `[C]`.
    pub running_var: &'a Tensor,
    /// Normalise with the batch's statistics and update the running ones (else use them).
    pub training: bool,
    /// Weight of the batch in the running update (PyTorch's default 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (PyTorch's default 1e-5).
    pub eps: f32,
    /// In training, the ranks of a data-parallel run whose batches together make the batch
    /// (`SyncBatchNorm`): the statistics and the backward's sums are summed over them.
    /// `None`: this process's batch is the batch.
    pub across: Option<&'a Rc<dyn Collective>>,
}

impl<'a> BatchNormStats<'a> {
    /// Training mode with PyTorch's defaults (momentum 0.1, ε = 1e-5).
    pub fn new(running_mean: &'a Tensor, running_var: &'a Tensor) -> Self {
        BatchNormStats {
            running_mean,
            running_var,
            training: true,
            momentum: 0.1,
            eps: 1e-5,
            across: None,
        }
    }

    /// The same in training (`true`) or eval (`false`) mode.
    pub fn training(self, training: bool) -> Self {
        BatchNormStats { training, ..self }
    }
}

impl Tensor {
    /// Batch normalisation of `[N, C, H, W]` over `N, H, W` for each channel, as
    /// `torch.nn.functional.batch_norm(x, running_mean, running_var, weight, bias, training,
    /// momentum, eps)`.
    ///
    /// Training: normalises with the batch statistics (biased variance) and updates
    /// `running_mean` / `running_var` in place (the latter with the unbiased variance), by
    /// PyTorch's convention `new = (1 − momentum)·old + momentum·batch`. Eval: normalises with
    /// the running statistics. `weight` (γ), `bias` (β) and the running statistics are `[C]`.
    /// Differentiable in the input, `weight` and `bias`.
    pub fn batch_norm2d(&self, weight: &Tensor, bias: &Tensor, stats: BatchNormStats) -> Tensor {
        self.batch_norm2d_then::<false>(None, weight, bias, stats)
    }

    /// `batch_norm2d(..).relu()` as one op: the same values and gradients bit for bit, but the
    /// normalised map before the ReLU is never stored. The backward needs only the input (as
    /// batch norm's own does): the ReLU's mask is recomputed from it, `γ·x̂ + β > 0`, with the
    /// forward's arithmetic. In a ResNet this drops one feature map per `BatchNorm, ReLU` pair
    /// from the memory a training step holds, and a pass over it each way.
    pub fn batch_norm2d_relu(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        stats: BatchNormStats,
    ) -> Tensor {
        self.batch_norm2d_then::<true>(None, weight, bias, stats)
    }

    /// `batch_norm2d(..).add(residual).relu()` as one op, the end of a residual block: the
    /// same values and gradients bit for bit (`residual`'s gradient is the ReLU's), with one
    /// pass over the maps each way instead of three, and neither the normalised map nor the
    /// sum stored. Like [`batch_norm2d_relu`](Self::batch_norm2d_relu), the backward
    /// recomputes the ReLU's mask, from the input and `residual` (which must have the input's
    /// shape).
    pub fn batch_norm2d_add_relu(
        &self,
        residual: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        stats: BatchNormStats,
    ) -> Tensor {
        assert!(
            residual.shape() == self.shape(),
            "batch_norm2d_add_relu: residual {:?} must have the input's shape {:?}",
            residual.shape(),
            self.shape()
        );
        self.batch_norm2d_then::<true>(Some(residual), weight, bias, stats)
    }

    /// Batch norm, plus `residual` if given, followed by a ReLU when `RELU` (always, with a
    /// residual).
    fn batch_norm2d_then<const RELU: bool>(
        &self,
        residual: Option<&Tensor>,
        weight: &Tensor,
        bias: &Tensor,
        stats: BatchNormStats,
    ) -> Tensor {
        let BatchNormStats {
            running_mean,
            running_var,
            training,
            momentum,
            eps,
            across,
        } = stats;
        let across = if training { across.cloned() } else { None };
        let &[n, c, h, w] = self.shape() else {
            panic!(
                "batch_norm2d: input {:?} must have 4 axes [N, C, H, W]",
                self.shape()
            );
        };
        for (name, t) in [
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ] {
            assert!(
                t.shape() == [c],
                "batch_norm2d: input {:?} has {c} channels but {name} is {:?}",
                self.shape(),
                t.shape()
            );
        }
        let (hw, m) = (h * w, n * h * w);
        let dims = (n, c, hw);
        assert!(
            !training || m > 1,
            "batch_norm2d: training needs more than one value per channel, input is {:?}",
            self.shape()
        );
        let gamma = weight.to_vec();
        let x_ref = self.data();
        let x: &[f32] = &x_ref;
        // Per-channel mean and 1/σ, over this batch or (`across`) the ranks' batches together:
        // each pass sums locally, then over the ranks; `m_all` values per channel in all.
        let m_all = match &across {
            Some(group) => {
                let mut count = [m as f64];
                group.sum_f64(&mut count);
                count[0] as usize
            }
            None => m,
        };
        let stats: Vec<(f32, f32)> = if training {
            let sum_over_ranks = |mut sums: Vec<f64>| {
                if let Some(group) = &across {
                    group.sum_f64(&mut sums);
                }
                sums
            };
            let planes = per_channel(c, m, |ci| plane_moments(dims, ci, x));
            let means = sum_over_ranks(
                planes
                    .iter()
                    .map(|p| p.iter().map(|q| q.sum).sum())
                    .collect(),
            );
            let means: Vec<f64> = means.iter().map(|s| s / m_all as f64).collect();
            let squares = sum_over_ranks(
                (planes.iter().zip(&means))
                    .map(|(p, &mean)| p.iter().map(|q| q.squares_about(mean, hw)).sum())
                    .collect(),
            );
            let moments: Vec<(f64, f64)> = means
                .iter()
                .zip(&squares)
                .map(|(&mean, &sq)| (mean, sq / m_all as f64))
                .collect();
            let mut rm = running_mean.data_mut();
            let mut rv = running_var.data_mut();
            let unbias = m_all as f64 / (m_all - 1) as f64;
            for (ci, &(mean, var)) in moments.iter().enumerate() {
                rm[ci] = (1.0 - momentum) * rm[ci] + momentum * mean as f32;
                rv[ci] = (1.0 - momentum) * rv[ci] + momentum * (var * unbias) as f32;
            }
            moments
                .iter()
                .map(|&(mean, var)| (mean as f32, 1.0 / (var as f32 + eps).sqrt()))
                .collect()
        } else {
            let (rm, rv) = (running_mean.data(), running_var.data());
            rm.iter()
                .zip(rv.iter())
                .map(|(&mu, &var)| (mu, 1.0 / (var + eps).sqrt()))
                .collect()
        };
        let beta = bias.data();
        let coef: Vec<(f32, f32, f32)> = (0..c)
            .map(|ci| {
                let (mu, inv) = stats[ci];
                let a = gamma[ci] * inv;
                (a, 0.0, beta[ci] - mu * a)
            })
            .collect();
        drop(beta);
        let y = match residual {
            Some(r) => affine_add_relu_planes(x, &r.data(), &coef, hw),
            None => affine_planes::<RELU>(x, None, &coef, hw),
        };
        drop(x_ref);
        let (x_t, r_t) = (self.clone(), residual.cloned());
        let mut inputs = vec![self, weight, bias];
        inputs.extend(residual);
        Tensor::from_op(y, self.shape(), &inputs, move |dy, needs| {
            let x_ref = x_t.data();
            let x: &[f32] = &x_ref;
            // Through the ReLU: dy where the forward's `a·x + d (+ r)` was positive. With a
            // residual the masked dy is also the residual's gradient, so it is written out;
            // without one the mask is recomputed wherever dy is read (the sums, then dx), which
            // spares writing a map and reading it twice.
            let masked = r_t
                .as_ref()
                .map(|r| residual_relu_mask(dy, x, &r.data(), &coef, hw));
            let gated = RELU && masked.is_none();
            let dy = masked.as_deref().unwrap_or(dy);
            // Σ dy and Σ dy·x̂ per channel.
            let sums = per_channel(c, m, |ci| {
                let (mu, inv) = stats[ci];
                let (sum_dy, sum_dy_x) = if gated {
                    channel_grad_sums(dims, ci, (dy, x), mu, relu_gate(coef[ci]))
                } else {
                    channel_grad_sums(dims, ci, (dy, x), mu, |g, _| g)
                };
                (sum_dy, sum_dy_x * inv as f64)
            });
            // dx needs the sums over the whole batch; γ's and β's gradients stay this rank's
            // part (the runner sums every parameter's gradient over the ranks).
            let summed: Vec<(f64, f64)>;
            let sums_all = match &across {
                Some(group) if needs[0] => {
                    let mut flat: Vec<f64> = sums.iter().flat_map(|&(a, b)| [a, b]).collect();
                    group.sum_f64(&mut flat);
                    summed = flat.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    &summed[..]
                }
                _ => &sums[..],
            };
            let dx = needs[0].then(|| {
                let grad_coef: Vec<(f32, f32, f32)> = (0..c)
                    .map(|ci| {
                        let (mu, inv) = stats[ci];
                        let a = gamma[ci] * inv;
                        if !training {
                            return (a, 0.0, 0.0);
                        }
                        // dx = a·(dy − Σdy/M − (x − μ)·inv·Σ(dy·x̂)/M) = a·dy + b·x + d
                        let (sum_dy, sum_dy_xhat) = sums_all[ci];
                        let k = (sum_dy_xhat / m_all as f64) as f32 * inv;
                        let b = -a * k;
                        let d = -a * (sum_dy / m_all as f64) as f32 + a * k * mu;
                        (a, b, d)
                    })
                    .collect();
                if gated {
                    relu_grad_planes(dy, x, &grad_coef, &coef, hw)
                } else {
                    affine_planes::<false>(dy, training.then_some(x), &grad_coef, hw)
                }
            });
            let dgamma = needs[1].then(|| sums.iter().map(|s| s.1 as f32).collect());
            let dbeta = needs[2].then(|| sums.iter().map(|s| s.0 as f32).collect());
            let mut grads = vec![dx, dgamma, dbeta];
            if r_t.is_some() {
                // The residual's gradient is the ReLU's.
                grads.push(needs[3].then(|| masked.expect("a residual ends in a ReLU")));
            }
            grads
        })
    }
}
