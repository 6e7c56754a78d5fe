//! NT-Xent, the normalised-temperature cross-entropy loss of SimCLR, as one fused op.
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
//! The log-sum-exp subtracts the row maximum `mᵢ = max_{j≠i} Sᵢⱼ` first, so nothing overflows
//! for any `τ` (with `τ = 0.05`, `S` spans ±20 and `exp` would otherwise reach 5·10⁸ per term).
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
//! which is **one GEMM** once `A` is formed in place from `P` (an `M²` pass of adds, blocked
//! so the transposed reads stay in cache). Through the normalisation `ẑᵢ = zᵢ/uᵢ`:
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
//! Forward: normalise rows → `S` by one GEMM (α = 1/τ) → per row, in parallel over rows: mask
//! the diagonal, max, `exp(S − m)` with a branch-free polynomial `exp` that the compiler
//! vectorises (Cephes' `expf` polynomial, about 1 ulp), sum, `ℓᵢ`, and `P` left in `S`'s buffer.
//! The per-row losses are summed in f64 in row order, so the result is deterministic.
//! Backward: `A` in place in the same buffer → one GEMM → the normalisation's backward in place.
//! The `M²` buffer is taken from (and returned to) a per-thread pool, so steps allocate it once.
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
use simclr_tensor::{is_grad_enabled, Tensor};

/// The clamp on row norms, as in the PyTorch reference (`z / z.norm().clamp_min(1e-8)`).
pub const NORM_EPS: f32 = 1e-8;

thread_local! {
    /// Spare `M×M` buffers, so a training loop reuses one similarity matrix across steps.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    /// Each worker's block of `A = P + Pᵀ − 2Y` in the backward pass.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer(len: usize) -> Vec<f32> {
    let mut buf = POOL
        .with(|p| {
            let mut p = p.borrow_mut();
            let pos = p.iter().position(|b| b.capacity() >= len);
            pos.map(|i| p.swap_remove(i))
        })
        .unwrap_or_default();
    // Every element is overwritten by the GEMM (β = 0), so a reused buffer is not cleared.
    buf.resize(len, 0.0);
    buf.truncate(len);
    buf
}

fn give_buffer(buf: Vec<f32>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < 2 {
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
    let n = m / 2;

    // ẑ = z / max(‖z‖, ε), remembering 1/u per row (negative marks a clamped norm).
    let mut zhat = vec![0.0f32; m * d];
    let mut inv_norm = vec![0.0f32; m];
    normalize_rows(&z.data(), d, &mut zhat, &mut inv_norm);
    // ẑᵀ, dense, so the GEMM packs its right operand from contiguous rows.
    let mut zhat_t = vec![0.0f32; d * m];
    transpose(&zhat, m, d, &mut zhat_t);

    // Per block of rows, in parallel: S_blk = ẑ_blk ẑᵀ/τ, then P and the row losses in place
    // while the block is still in cache.
    let mut p = take_buffer(m * m);
    let mut row_loss = vec![0.0f32; m];
    let bs = block_rows(m);
    let forward_block = |(b, (s_blk, loss_blk)): (usize, (&mut [f32], &mut [f32]))| {
        let (r0, rows) = (b * bs, loss_blk.len());
        gemm_serial(
            1.0 / temperature,
            MatRef::new(&zhat[r0 * d..(r0 + rows) * d], rows, d),
            MatRef::new(&zhat_t, d, m),
            0.0,
            MatMut::new(s_blk, rows, m),
        );
        for (k, (row, l)) in s_blk.chunks_exact_mut(m).zip(loss_blk).enumerate() {
            *l = softmax_row(row, r0 + k, n);
        }
    };
    p.par_chunks_mut(bs * m)
        .zip(row_loss.par_chunks_mut(bs))
        .enumerate()
        .for_each(forward_block);
    drop(zhat_t);
    let loss = (row_loss.iter().map(|&l| l as f64).sum::<f64>() / m as f64) as f32;

    if !(is_grad_enabled() && z.requires_grad()) {
        give_buffer(p);
        return Tensor::scalar(loss);
    }
    Tensor::from_op(vec![loss], &[], &[z], move |g, _| {
        // Per block of rows, in parallel: A_blk = P_blk + (Pᵀ)_blk − 2Y_blk in a scratch
        // buffer, g_blk = A_blk ẑ · g/(Mτ) by one GEMM, then the normalisation's backward.
        let scale = g[0] / (m as f32 * temperature);
        let mut dz = vec![0.0f32; m * d];
        dz.par_chunks_mut(bs * d)
            .enumerate()
            .for_each(|(b, dz_blk)| {
                let (r0, rows) = (b * bs, dz_blk.len() / d);
                SCRATCH.with(|cell| {
                    let mut a = cell.borrow_mut();
                    a.resize(rows * m, 0.0);
                    symmetric_block(&p, m, n, r0, rows, &mut a[..rows * m]);
                    gemm_serial(
                        scale,
                        MatRef::new(&a[..rows * m], rows, m),
                        MatRef::new(&zhat, m, d),
                        0.0,
                        MatMut::new(dz_blk, rows, d),
                    );
                });
                normalize_rows_backward(
                    dz_blk,
                    &zhat[r0 * d..(r0 + rows) * d],
                    &inv_norm[r0..r0 + rows],
                    d,
                );
            });
        give_buffer(p);
        vec![Some(dz)]
    })
}

/// Rows per parallel block: one block per thread. Each block's GEMM re-packs the whole
/// right operand (`M×D`), so more, smaller blocks cost more packing than they gain in balance.
fn block_rows(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    m.div_ceil(threads).next_multiple_of(16).min(m)
}

/// `out = xᵀ` for a row-major `rows × cols` `x`, in 16×16 tiles so neither side strides
/// through memory one element per cache line.
fn transpose(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const T: usize = 16;
    for i0 in (0..rows).step_by(T) {
        for k0 in (0..cols).step_by(T) {
            for i in i0..(i0 + T).min(rows) {
                for k in k0..(k0 + T).min(cols) {
                    out[k * rows + i] = x[i * cols + k];
                }
            }
        }
    }
}

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

/// A dot product with 16 independent accumulators, so it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Row `i` of `S` (logits over all `M` columns) becomes the softmax over `j ≠ i` (with
/// `Pᵢᵢ = 0`); returns `ℓᵢ = logsumexp_{j≠i} Sᵢⱼ − S_{i,p(i)}`.
fn softmax_row(r: &mut [f32], i: usize, n: usize) -> f32 {
    let m = r.len();
    r[i] = f32::NEG_INFINITY;
    let max = row_max(r);
    let positive = r[(i + n) % m];
    let sum = exp_sub_sum(r, max) - r[i];
    r[i] = 0.0;
    let inv = 1.0 / sum;
    r.iter_mut().for_each(|v| *v *= inv);
    max + sum.ln() - positive
}

/// The maximum of a row, 16 lanes at a time.
fn row_max(r: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = r.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    for c in chunks {
        for l in 0..16 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    acc.iter().fold(tail, |a, &v| if v > a { v } else { a })
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

/// Rows `r0..r0 + rows` of `A = P + Pᵀ − 2Y` into `a` (`rows × M`). The `Pᵀ` part reads
/// column tiles of `P` as contiguous row segments `P[j, r0..r0+rows]`, 16 columns at a time,
/// so the 16 destination lines stay in L1.
fn symmetric_block(p: &[f32], m: usize, n: usize, r0: usize, rows: usize, a: &mut [f32]) {
    const T: usize = 16;
    let mut tile = [[0.0f32; T]; T];
    for j0 in (0..m).step_by(T) {
        let cols = T.min(m - j0);
        for r1 in (0..rows).step_by(T) {
            let rr = T.min(rows - r1);
            // tile[c][r] = P[j0 + c, r0 + r1 + r]
            for (c, t) in tile.iter_mut().enumerate().take(cols) {
                t[..rr].copy_from_slice(&p[(j0 + c) * m + r0 + r1..][..rr]);
            }
            for r in 0..rr {
                let src = &p[(r0 + r1 + r) * m + j0..][..cols];
                let dst = &mut a[(r1 + r) * m + j0..][..cols];
                for (c, (v, &s)) in dst.iter_mut().zip(src).enumerate() {
                    *v = s + tile[c][r];
                }
            }
        }
    }
    for (k, row) in a.chunks_exact_mut(m).enumerate() {
        row[(r0 + k + n) % m] -= 2.0;
    }
}

#[cfg(test)]
mod tests;
