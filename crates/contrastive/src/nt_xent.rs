//! NT-Xent, the normalised-temperature cross-entropy loss of SimCLR, as one fused op.
//!
//! [`reference`] is the loss written with generic tensor ops, as the formulas below read;
//! [`nt_xent`] computes the same values and gradients with a kernel of its own, described after
//! them.
//!
//! ## The loss
//!
//! A batch of `M = 2N` projections `z ∈ ℝ^{M×D}` holds two views of `N` images: rows `i` and
//! `p(i) = (i + N) mod M` are a positive pair. Each row is L2-normalised and compared with every
//! other row by cosine similarity over a temperature `τ`:
//!
//! ```text
//! ẑᵢ  = zᵢ / uᵢ,            uᵢ = max(‖zᵢ‖₂, ε)          (ε = NORM_EPS = 1e-8)
//! Sᵢⱼ = ⟨ẑᵢ, ẑⱼ⟩ / τ        (S = ẑẑᵀ/τ, one GEMM)
//! ℓᵢ  = −S_{i,p(i)} + log Σ_{j≠i} exp Sᵢⱼ                (self-similarity excluded)
//! L   = (1/M) Σᵢ ℓᵢ
//! ```
//!
//! i.e. a cross-entropy over the `M − 1` other rows with the positive as the target class,
//! averaged over all `2N` rows, exactly `F.cross_entropy(sim.masked_fill(eye, -inf), target)`.
//! The log-sum-exp is shifted (`log Σ eˢ = c + log Σ e^{s−c}`) so nothing overflows or
//! vanishes for any `τ` (with `τ = 0.05`, `S` spans ±20; at `τ = 0.005`, ±200).
//!
//! ## Its derivative
//!
//! With `Pᵢⱼ = exp Sᵢⱼ / Σ_{k≠i} exp Sᵢₖ` for `j ≠ i` (`Pᵢᵢ = 0`) and `Yᵢⱼ = [j = p(i)]`,
//!
//! ```text
//! ∂L/∂Sᵢⱼ = (Pᵢⱼ − Yᵢⱼ) / M
//! ```
//!
//! `S = ẑẑᵀ/τ` uses `ẑ` on both sides, so with `G = (P − Y)/M` the gradient reaching `ẑ` is
//! `(G + Gᵀ)ẑ/τ`. `Y` is symmetric (`p` is its own inverse), hence
//!
//! ```text
//! ∂L/∂ẑ = A ẑ / (Mτ),       A = P + Pᵀ − 2Y
//! ```
//!
//! which is **one GEMM** (`M²D` multiply-adds) once `A` is formed. Through the normalisation
//! `ẑᵢ = zᵢ/uᵢ`:
//!
//! ```text
//! ∂L/∂zᵢ = (gᵢ − ẑᵢ ⟨gᵢ, ẑᵢ⟩) / uᵢ     where gᵢ = ∂L/∂ẑᵢ      (‖zᵢ‖ > ε)
//! ∂L/∂zᵢ = gᵢ / ε                                              (norm clamped: u is constant)
//! ```
//!
//! the component of `gᵢ` tangent to the unit sphere at `ẑᵢ`, scaled by `1/uᵢ`: moving `zᵢ`
//! along itself does not change the loss. (For identical rows every `gᵢ ∥ ẑᵢ`, so the gradient
//! is exactly zero, one of the tests.)
//!
//! ## The kernel
//!
//! `S` is symmetric, so the forward pass computes only its block upper triangle: row block
//! `b` (64 rows from `r₀`) gets columns `r₀..M` by one GEMM, blocks in parallel — 56 % of the
//! flops of `ẑẑᵀ` at `M = 512`. The log-sum-exp then needs a shift: since `|Sᵢⱼ| ≤ 1/τ`, the
//! one constant `c = 1/τ` keeps every `exp(Sᵢⱼ − c)` in `[e^{−2/τ}, 1]`, safe in f32 for
//! `τ ≥ 0.025` (no row-maximum pass), and — being the same for all rows — keeps
//! `E = exp(S − c)` symmetric. So `exp` (a branch-free Cephes polynomial the compiler
//! vectorises, about 1 ulp) runs on the stored triangle only; row `i`'s sum is its stored part
//! plus column sums of the earlier blocks (reduced in block order: deterministic), and
//! `ℓᵢ = c + log Σᵢ − S_{i,p(i)}`. Per-row losses are summed in f64 in row order.
//!
//! Backward: by symmetry `Pⱼᵢ = Eᵢⱼ/Σⱼ`, so `Aᵢⱼ = Eᵢⱼ(1/Σᵢ + 1/Σⱼ) − 2Yᵢⱼ` is formed in
//! place on the stored triangle, and `Aẑ` is the GEMM `M²D` done in two parallel passes over
//! stored blocks: row block `b` takes `A[b, r₀..M]·ẑ[r₀..M]`, then adds
//! `A[0..r₀, b]ᵀ·ẑ[0..r₀]` (a strided view: the GEMM's packing transposes it for free); then
//! the normalisation's backward, in place. Nothing of size `M²` besides the one triangle
//! buffer is written, and it comes from (and returns to) a per-thread pool.
//!
//! For `τ < 0.025` one shift no longer keeps every exponential in range, and [`nt_xent`] runs
//! [`reference`] instead: the loss composed from generic tensor ops, each row shifted by its
//! own maximum inside the cross-entropy. Temperatures that low are rarely used, so that path
//! is kept simple rather than fast.
//!
//! ## Bad input
//!
//! An odd number of rows, `N < 2` (fewer than two pairs leaves no negative), a non-2-D input
//! or a non-positive / non-finite `τ` is a caller bug: [`nt_xent`] panics with a message that
//! starts with `nt_xent:` and names the shape. [`check_nt_xent_shape`] tests the same
//! conditions without panicking, for callers that want a `Result`.

use std::cell::RefCell;

use rayon::prelude::*;
use simclr_tensor::gemm::{gemm_serial, MatMut, MatRef};
use simclr_tensor::vector::{dot, transpose};
use simclr_tensor::{is_grad_enabled, Tensor};

/// The clamp on row norms, as in the PyTorch reference (`z / z.norm().clamp_min(1e-8)`).
pub const NORM_EPS: f32 = 1e-8;

/// NT-Xent composed from generic tensor ops, the formula above line for line: normalise the
/// rows, `S = ẑẑᵀ/τ`, mask the diagonal, and take the cross-entropy of each row with the other
/// view of its image as the target. It is the definition [`nt_xent`] is tested against, and
/// what it runs for `τ < 0.025`. Same contract as [`nt_xent`] (which checks the shape).
pub fn reference(z: &Tensor, temperature: f32) -> Tensor {
    let m = z.dim(0);
    let zn = z.l2_normalize(1, NORM_EPS);
    let s = zn.matmul(&zn.transpose(0, 1)).mul_scalar(1.0 / temperature);
    // Self-similarity excluded: the lowest finite logit, so no infinity enters the arithmetic.
    let mut mask = vec![0.0; m * m];
    (0..m).for_each(|i| mask[i * m + i] = f32::MIN);
    let positives: Vec<usize> = (0..m).map(|i| (i + m / 2) % m).collect();
    s.add(&Tensor::from_vec(mask, &[m, m]))
        .cross_entropy(&positives)
}

thread_local! {
    /// Spare `M×M` buffers, so a training loop reuses one similarity matrix across steps.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer(len: usize) -> Vec<f32> {
    let mut buf = POOL
        .with(|p| {
            let mut p = p.borrow_mut();
            // The smallest spare buffer that fits.
            let pos = (0..p.len())
                .filter(|&i| p[i].capacity() >= len)
                .min_by_key(|&i| p[i].capacity());
            pos.map(|i| p.swap_remove(i))
        })
        .unwrap_or_default();
    // Callers overwrite every element, so a reused buffer is not cleared.
    buf.resize(len, 0.0);
    buf.truncate(len);
    buf
}

fn give_buffer(buf: Vec<f32>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < 6 {
            p.push(buf);
        }
    });
}

/// Checks that `shape` is a valid NT-Xent input `[2N, D]` with `N ≥ 2`, `D ≥ 1`; returns
/// `(2N, D)` or a message naming the problem (the text [`nt_xent`] panics with).
pub fn check_nt_xent_shape(shape: &[usize]) -> Result<(usize, usize), String> {
    match *shape {
        [m, d] if m % 2 == 0 && m >= 4 && d >= 1 => Ok((m, d)),
        [m, d] if m % 2 == 1 => Err(format!(
            "nt_xent: projections of shape [{m}, {d}] have an odd number of rows; \
             expected [2N, D] with rows i and i+N a positive pair"
        )),
        [m, d] if m < 4 => Err(format!(
            "nt_xent: projections of shape [{m}, {d}] hold N = {} pair(s); need N ≥ 2 so every \
             row has a negative",
            m / 2
        )),
        [m, 0] => Err(format!(
            "nt_xent: projections of shape [{m}, 0] have no features"
        )),
        _ => Err(format!(
            "nt_xent: projections must be 2-D [2N, D], got shape {shape:?}"
        )),
    }
}

/// The SimCLR NT-Xent loss of projections `z: [2N, D]` (rows `i` and `i + N` are positive
/// pairs) at temperature `temperature`, as a scalar tensor; differentiable with respect to `z`.
///
/// See the [module docs](self) for the formula, its derivative and the kernel.
///
/// # Panics
///
/// With a message starting `nt_xent:` and naming the shape, if `z` is not `[2N, D]` with
/// `N ≥ 2` and `D ≥ 1`, or if `temperature` is not finite and positive.
///
/// ```
/// use simclr_contrastive::nt_xent;
/// use simclr_tensor::Tensor;
/// // Two pairs of identical views, orthogonal to each other: the positive wins clearly.
/// let z = Tensor::from_vec(vec![1., 0., 0., 1., 1., 0., 0., 1.], &[4, 2]).set_requires_grad(true);
/// let loss = nt_xent(&z, 0.5);
/// loss.backward();
/// let expect = -2.0 + (2.0f32.exp() + 2.0 * 1.0).ln(); // −S⁺ + log(e² + e⁰ + e⁰)
/// assert!((loss.item() - expect).abs() < 1e-5);
/// ```
pub fn nt_xent(z: &Tensor, temperature: f32) -> Tensor {
    let (m, d) = check_nt_xent_shape(z.shape()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        temperature.is_finite() && temperature > 0.0,
        "nt_xent: temperature must be finite and positive, got {temperature} (projections {:?})",
        z.shape()
    );
    let Some(shift) = fixed_shift(temperature) else {
        return reference(z, temperature);
    };

    // ẑ = z / max(‖z‖, ε), remembering 1/u per row (negative marks a clamped norm).
    let mut zhat = take_buffer(m * d);
    let mut inv_norm = vec![0.0f32; m];
    normalize_rows(&z.data(), d, &mut zhat, &mut inv_norm);
    // ẑᵀ, dense, so the GEMM packs its right operand from contiguous rows.
    let mut zhat_t = take_buffer(d * m);
    transpose(&zhat, m, d, &mut zhat_t);

    // S is symmetric, so only its block upper triangle is computed: row block b (rows
    // r0..r0+bs) gets columns r0..M, one GEMM per block, blocks in parallel (≈ 56 % of the
    // flops of the full product at M = 512).
    let bs = SYM_BLOCK.min(m);
    let mut upper = take_buffer(m * m);
    upper
        .par_chunks_mut(bs * m)
        .enumerate()
        .for_each(|(b, u_blk)| {
            let (r0, rows) = (b * bs, u_blk.len() / m);
            gemm_serial(
                1.0 / temperature,
                MatRef::new(&zhat[r0 * d..(r0 + rows) * d], rows, d),
                MatRef {
                    data: &zhat_t[r0..],
                    rows: d,
                    cols: m - r0,
                    row_stride: m,
                    col_stride: 1,
                },
                0.0,
                MatMut {
                    data: &mut u_blk[r0..],
                    rows,
                    cols: m - r0,
                    row_stride: m,
                    col_stride: 1,
                },
            );
        });
    give_buffer(zhat_t);

    let saved = Saved {
        zhat,
        inv_norm,
        inv_sum: vec![0.0f32; m],
        m,
        d,
        bs,
        temperature,
    };
    let mut row_loss = vec![(0.0f32, 0.0f32); m];
    let e = saved.exp_upper(upper, shift, &mut row_loss);
    let mut saved = saved;
    saved.inv_sum = row_loss.iter().map(|l| l.1).collect();
    let loss = (row_loss.iter().map(|l| l.0 as f64).sum::<f64>() / m as f64) as f32;

    if !(is_grad_enabled() && z.requires_grad()) {
        give_buffer(e);
        give_buffer(saved.zhat);
        return Tensor::scalar(loss);
    }
    Tensor::from_op(vec![loss], &[], &[z], move |g, _| {
        vec![Some(saved.backward_upper(e, g[0]))]
    })
}

/// What the backward pass needs from the forward pass.
struct Saved {
    zhat: Vec<f32>,
    inv_norm: Vec<f32>,
    /// `1 / Σ_{j≠i} Eᵢⱼ` per row.
    inv_sum: Vec<f32>,
    m: usize,
    d: usize,
    /// Row-block size of the triangular layout.
    bs: usize,
    temperature: f32,
}

impl Saved {
    /// Fast path (one shift `c` for all rows, so `E = exp(S − c)` is symmetric like `S`):
    /// `E` is computed in place on the stored block upper triangle only. Row sums are the
    /// stored part of each row plus, for the columns left of its block, column sums of the
    /// earlier blocks' rows (reduced in block order, so the result is deterministic).
    /// Fills `out[i] = (ℓᵢ, 1/Σᵢ)`; returns the buffer, now `E` in the same layout.
    fn exp_upper(&self, mut upper: Vec<f32>, c: f32, out: &mut [(f32, f32)]) -> Vec<f32> {
        let (m, bs) = (self.m, self.bs);
        let n = m / 2;
        // The positive logit S_{i,p(i)} is stored at row min(i, p(i)), column max(i, p(i)).
        let positive: Vec<f32> = (0..m)
            .map(|i| {
                let j = (i + n) % m;
                upper[i.min(j) * m + i.max(j)]
            })
            .collect();
        let parts: Vec<(Vec<f32>, Vec<f32>)> = upper
            .par_chunks_mut(bs * m)
            .enumerate()
            .map(|(b, u_blk)| {
                let r0 = b * bs;
                let rows = u_blk.len() / m;
                let mut row_sums = vec![0.0f32; rows];
                let mut col_sums = vec![0.0f32; m];
                let tail = (r0 + bs).min(m);
                for (k, row) in u_blk.chunks_exact_mut(m).enumerate() {
                    let stored = &mut row[r0..];
                    let diag = k; // column r0 + k
                    stored[diag] = f32::NEG_INFINITY;
                    let sum = exp_sub_sum(stored, c) - stored[diag];
                    stored[diag] = 0.0;
                    row_sums[k] = sum;
                    col_sums[tail..]
                        .iter_mut()
                        .zip(&row[tail..])
                        .for_each(|(s, &v)| *s += v);
                }
                (row_sums, col_sums)
            })
            .collect();
        for (b, (row_sums, _)) in parts.iter().enumerate() {
            for (k, &part) in row_sums.iter().enumerate() {
                let i = b * bs + k;
                let mut sum = part;
                for (_, col_sums) in &parts[..b] {
                    sum += col_sums[i];
                }
                out[i] = (c + sum.ln() - positive[i], 1.0 / sum);
            }
        }
        upper
    }

    /// `∂L/∂z` from the symmetric `E` stored as a block upper triangle. In place,
    /// `A = E ⊙ (invᵢ + invⱼ) − 2Y` on the stored elements (`Pⱼᵢ = Eᵢⱼ·invⱼ` by symmetry);
    /// then `g = Aẑ` in two parallel passes of GEMMs on stored blocks only: row block `b`
    /// takes its stored rows `A[b, r0..M]·ẑ[r0..M]`, then adds the transposed stored columns
    /// `A[0..r0, b]ᵀ·ẑ[0..r0]` (strided views: the packing transposes for free).
    fn backward_upper(self, mut a: Vec<f32>, g: f32) -> Vec<f32> {
        let (m, d, bs) = (self.m, self.d, self.bs);
        let n = m / 2;
        let scale = g / (m as f32 * self.temperature);
        let (zhat, inv) = (&self.zhat, &self.inv_sum);
        let mut dz = vec![0.0f32; m * d];
        a.par_chunks_mut(bs * m)
            .zip(dz.par_chunks_mut(bs * d))
            .enumerate()
            .for_each(|(b, (a_blk, dz_blk))| {
                let r0 = b * bs;
                let rows = dz_blk.len() / d;
                for (k, row) in a_blk.chunks_exact_mut(m).enumerate() {
                    let i = r0 + k;
                    let si = inv[i];
                    row[r0..]
                        .iter_mut()
                        .zip(&inv[r0..])
                        .for_each(|(v, &sj)| *v *= si + sj);
                    let j = (i + n) % m;
                    if j >= r0 {
                        row[j] -= 2.0;
                    }
                }
                gemm_serial(
                    scale,
                    MatRef {
                        data: &a_blk[r0..],
                        rows,
                        cols: m - r0,
                        row_stride: m,
                        col_stride: 1,
                    },
                    MatRef::new(&zhat[r0 * d..], m - r0, d),
                    0.0,
                    MatMut::new(dz_blk, rows, d),
                );
            });
        dz.par_chunks_mut(bs * d)
            .enumerate()
            .for_each(|(b, dz_blk)| {
                let r0 = b * bs;
                let rows = dz_blk.len() / d;
                if r0 > 0 {
                    gemm_serial(
                        scale,
                        MatRef {
                            data: &a[r0..],
                            rows,
                            cols: r0,
                            row_stride: 1,
                            col_stride: m,
                        },
                        MatRef::new(&zhat[..r0 * d], r0, d),
                        1.0,
                        MatMut::new(dz_blk, rows, d),
                    );
                }
                normalize_rows_backward(
                    dz_blk,
                    &zhat[r0 * d..(r0 + rows) * d],
                    &self.inv_norm[r0..r0 + rows],
                    d,
                );
            });
        give_buffer(a);
        give_buffer(self.zhat);
        dz
    }
}

/// Rows per block of the forward pass's triangular GEMMs.
const SYM_BLOCK: usize = 64;

/// `out[i] = x[i] / max(‖x[i]‖, ε)` row by row; `inv_norm[i] = 1/‖x[i]‖`, or `−1/ε` where the
/// norm was clamped.
fn normalize_rows(x: &[f32], d: usize, out: &mut [f32], inv_norm: &mut [f32]) {
    for ((row, o), inv) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).zip(inv_norm) {
        let norm = dot(row, row).sqrt();
        let (scale, mark) = if norm > NORM_EPS {
            (1.0 / norm, 1.0 / norm)
        } else {
            (1.0 / NORM_EPS, -1.0 / NORM_EPS)
        };
        o.iter_mut().zip(row).for_each(|(o, &v)| *o = v * scale);
        *inv = mark;
    }
}

/// `gᵢ ← (gᵢ − ẑᵢ⟨gᵢ, ẑᵢ⟩)/uᵢ` in place (or `gᵢ/ε` where the norm was clamped).
fn normalize_rows_backward(g: &mut [f32], zhat: &[f32], inv_norm: &[f32], d: usize) {
    for ((gr, zr), &inv) in g
        .chunks_exact_mut(d)
        .zip(zhat.chunks_exact(d))
        .zip(inv_norm)
    {
        if inv < 0.0 {
            gr.iter_mut().for_each(|v| *v *= -inv);
        } else {
            let c = dot(gr, zr);
            gr.iter_mut()
                .zip(zr)
                .for_each(|(gv, &zv)| *gv = (*gv - zv * c) * inv);
        }
    }
}

/// The shift `c` that makes `exp(S − c)` safe without a row maximum, if there is one:
/// `|Sᵢⱼ| ≤ 1/τ`, so with `c = 1/τ` every exponent lies in `[−2/τ, 0]`; for `τ ≥ 0.025` that is
/// at least −80, where f32 `exp` neither overflows nor underflows to 0. Smaller `τ` runs
/// [`reference`], whose cross-entropy shifts each row by its maximum.
fn fixed_shift(temperature: f32) -> Option<f32> {
    (2.0 / temperature <= 80.0).then_some(1.0 / temperature)
}

/// `r[j] ← exp(r[j] − max)` for every `j`; returns the sum of the new values.
fn exp_sub_sum(r: &mut [f32], max: f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = r.chunks_exact_mut(16);
    for c in &mut chunks {
        for l in 0..16 {
            let e = fast_exp(c[l] - max);
            c[l] = e;
            acc[l] += e;
        }
    }
    let mut tail = 0.0;
    for v in chunks.into_remainder() {
        *v = fast_exp(*v - max);
        tail += *v;
    }
    acc.iter().sum::<f32>() + tail
}

/// `eˣ` for `x ≤ 0` (clamped below at −87, where it returns ~10⁻³⁸ instead of a denormal),
/// branch-free so loops over it vectorise: `x = n·ln2 + r` with `n` rounded by the
/// 1.5·2²³ trick, `eʳ` by Cephes' degree-6 polynomial on |r| ≤ ln2/2, times `2ⁿ` built from
/// its exponent bits.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let k = t - ROUND; // round(x·log₂e)
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // The low mantissa bits of t hold k (two's complement around 0x4B40_0000).
    let kbits = t.to_bits().wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits(kbits.wrapping_add(127) << 23);
    er * scale
}

#[cfg(test)]
mod tests;
