//! Pooling over the spatial axes of `[N, C, H, W]`: max, average, and global average.
//!
//! Windows are `k × k` with stride `s`, no padding, and floor mode (as PyTorch's defaults):
//! `Ho = (H − k)/s + 1`, likewise `Wo`.
//!
//! - Max: `y[o] = max_{i ∈ window(o)} x[i]`. The forward keeps, for every output, the position
//!   of its maximum (a `u32` within its plane; the first one on ties), so the backward is a
//!   scatter: `dx[argmax(o)] += dy[o]`.
//! - Average: `y[o] = (1/k²) Σ_{i ∈ window(o)} x[i]`, so `dx[i] += dy[o]/k²` for every `i` in
//!   the window of `o`.
//! - Global average: `y[n, c] = (1/HW) Σ_{h,w} x[n, c, h, w]`, so `dx = dy/(HW)` broadcast.
//!
//! Every `(n, c)` plane is independent, so the passes run in parallel over planes.
//!
//! ## The 2×2, stride-2 max-pool (and its fusion with ReLU)
//!
//! The common case `kernel = stride = 2` has its own kernel: each output reads two values from
//! each of two input rows and picks among the four with branch-free selects (compare + blend,
//! which vectorise; the generic loop's data-dependent branch mispredicts about half the time on
//! real activations). The argmax is kept as a one-byte code `0..=3` (row-major within the
//! window), a quarter of the memory of a `u32` index, and the backward writes every input
//! gradient exactly once (`dx = dy` where the code matches, `0` elsewhere), so it needs no
//! zero-filled buffer and no scatter.
//!
//! [`Tensor::relu_max_pool2d`] is `max_pool2d(relu(x))` (the `ReLU, MaxPool2d` pair of a CNN)
//! as one op: `y = max(0, x₀, x₁, x₂, x₃)` with the code of the first strictly positive
//! maximum, or "none" when every value is `≤ 0` (or NaN, which ReLU maps to 0), in which case
//! no gradient flows. It equals the two ops applied in turn bit for bit, values and gradients
//! (ties go to the first maximum in both), but reads the convolution's output once and writes a
//! quarter of it, instead of a ReLU pass over the whole map plus a pool pass, and the same again
//! backwards.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::parallel::min_items;
use crate::tensor::Tensor;
use crate::vector::sum_map;

/// Validates a windowed pool's operands; returns `(planes, h, w, ho, wo)`.
fn window_geometry(
    op: &str,
    shape: &[usize],
    kernel: usize,
    stride: usize,
) -> (usize, usize, usize, usize, usize) {
    let &[n, c, h, w] = shape else {
        panic!("{op}: input {shape:?} must have 4 axes [N, C, H, W]");
    };
    assert!(
        kernel >= 1 && stride >= 1,
        "{op}: kernel ({kernel}) and stride ({stride}) must be at least 1"
    );
    assert!(
        h >= kernel && w >= kernel,
        "{op}: kernel {kernel}×{kernel} is larger than input {shape:?}"
    );
    (
        n * c,
        h,
        w,
        (h - kernel) / stride + 1,
        (w - kernel) / stride + 1,
    )
}

/// Runs `f(out_plane, in_plane)` for every plane, in parallel when the input is large
/// ([`crate::parallel`]).
fn for_planes<A: Send, B: Sync>(
    out: &mut [A],
    out_plane: usize,
    inp: &[B],
    in_plane: usize,
    f: impl Fn(&mut [A], &[B]) + Sync + Send,
) {
    if out_plane == 0 || in_plane == 0 {
        return;
    }
    out.par_chunks_mut(out_plane)
        .zip(inp.par_chunks(in_plane))
        .with_min_len(min_items(in_plane))
        .for_each(|(o, i)| f(o, i));
}

/// The code of a 2×2 window whose gradient goes nowhere (its ReLU'd maximum is 0).
const NONE: u8 = 4;

/// One output row of the 2×2 max-pool: `r0`, `r1` are the two input rows under it. With `RELU`
/// the maximum starts at 0 with code [`NONE`] and only a strictly larger value replaces it (so
/// NaN never does, as after a ReLU); without, it starts at the window's first value and a
/// larger value or a NaN replaces it (PyTorch's rule: first maximum on ties, NaN propagates).
#[inline(always)]
fn pool2x2_row<const RELU: bool>(
    r0: &[f32],
    r1: &[f32],
    out: &mut [MaybeUninit<f32>],
    code: &mut [MaybeUninit<u8>],
) {
    let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
    for ((o, c), (p0, p1)) in out.iter_mut().zip(code.iter_mut()).zip(pairs) {
        let window = [p0[0], p0[1], p1[0], p1[1]];
        let (mut best, mut at) = if RELU { (0.0, NONE) } else { (window[0], 0) };
        for (j, &v) in window.iter().enumerate().skip(usize::from(!RELU)) {
            let take = if RELU {
                v > best
            } else {
                v > best || v.is_nan()
            };
            best = if take { v } else { best };
            at = if take { j as u8 } else { at };
        }
        o.write(best);
        c.write(at);
    }
}

/// Backward of one output row of the 2×2 max-pool: writes both input-gradient rows `d0`, `d1`
/// in full (`dy` at the window position named by the code, 0 elsewhere, including an odd
/// width's last column).
#[inline(always)]
fn unpool2x2_row(
    dy: &[f32],
    code: &[u8],
    d0: &mut [MaybeUninit<f32>],
    d1: &mut [MaybeUninit<f32>],
) {
    let pick = |c: u8, j: u8, g: f32| if c == j { g } else { 0.0 };
    let pairs = d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2));
    for ((&g, &c), (q0, q1)) in dy.iter().zip(code).zip(pairs) {
        q0[0].write(pick(c, 0, g));
        q0[1].write(pick(c, 1, g));
        q1[0].write(pick(c, 2, g));
        q1[1].write(pick(c, 3, g));
    }
    let wo = dy.len();
    for d in d0[2 * wo..].iter_mut().chain(&mut d1[2 * wo..]) {
        d.write(0.0);
    }
}

/// The 2×2 pool of one `[h, w]` plane (`h·w = plane.len()`) into `out` and `code`
/// (`[h/2, w/2]` each, every element written); with `RELU`, of `relu(plane)`.
pub(crate) fn pool2x2_plane<const RELU: bool>(
    plane: &[f32],
    w: usize,
    out: &mut [MaybeUninit<f32>],
    code: &mut [MaybeUninit<u8>],
) {
    let wo = w / 2;
    for ((out, code), rows) in out
        .chunks_exact_mut(wo)
        .zip(code.chunks_exact_mut(wo))
        .zip(plane.chunks_exact(2 * w))
    {
        let (r0, r1) = rows.split_at(w);
        pool2x2_row::<RELU>(r0, r1, out, code);
    }
}

/// The backward of [`pool2x2_plane`]: writes the whole `[h, w]` input gradient `dx` of one
/// plane from its output gradient `dy` and codes (rows and columns no window covers get 0).
pub(crate) fn unpool2x2_plane(dy: &[f32], code: &[u8], w: usize, dx: &mut [MaybeUninit<f32>]) {
    let wo = w / 2;
    let (pairs, rest) = dx.split_at_mut(2 * (dy.len() / wo.max(1)) * w);
    for ((d, g), code) in pairs
        .chunks_exact_mut(2 * w)
        .zip(dy.chunks_exact(wo))
        .zip(code.chunks_exact(wo))
    {
        let (d0, d1) = d.split_at_mut(w);
        unpool2x2_row(g, code, d0, d1);
    }
    for d in rest {
        d.write(0.0);
    }
}

/// A `len`-element vector whose every element `fill` writes, built without zero-filling it
/// first: `fill(i, chunk)` receives the uninitialised `chunk_len`-element chunk `i` (the last
/// one may be shorter), in parallel when there are enough ([`crate::parallel`]). (Shared with
/// the elementwise ops.)
///
/// # Safety
/// `fill` must write every element of every chunk it is given: the vector's elements are
/// taken as initialised afterwards.
pub(crate) unsafe fn vec_filled_by(
    len: usize,
    chunk_len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    let chunk_len = chunk_len.max(1);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk_len)
        .enumerate()
        .with_min_len(min_items(chunk_len))
        .for_each(|(i, c)| fill(i, c));
    // SAFETY: the capacity is at least `len`, and `fill` wrote every one of the first `len`
    // elements (each chunk in full: the caller's contract).
    unsafe { v.set_len(len) };
    v
}

/// `max_pool2d(x, 2, 2)`, or `max_pool2d(relu(x), 2, 2)` with `RELU`, with one-byte argmax codes.
fn pool2x2<const RELU: bool>(
    x: &Tensor,
    (planes, h, w, ho, wo): (usize, usize, usize, usize, usize),
) -> Tensor {
    let (ip, op) = (h * w, ho * wo);
    let mut y: Vec<f32> = Vec::with_capacity(planes * op);
    let mut codes: Vec<u8> = Vec::with_capacity(planes * op);
    y.spare_capacity_mut()[..planes * op]
        .par_chunks_mut(op)
        .zip(codes.spare_capacity_mut()[..planes * op].par_chunks_mut(op))
        .zip(x.data().par_chunks(ip))
        .with_min_len(min_items(ip))
        .for_each(|((out, code), plane)| pool2x2_plane::<RELU>(plane, w, out, code));
    // SAFETY: both capacities are `planes·op`, and the loops above wrote every output and code
    // of every plane (`pool2x2_row` writes all `wo` of a row, for each of the `ho` rows).
    unsafe {
        y.set_len(planes * op);
        codes.set_len(planes * op);
    }
    let mut shape = x.shape().to_vec();
    shape[2..].copy_from_slice(&[ho, wo]);
    Tensor::from_op(y, &shape, &[x], move |dy, _| {
        // SAFETY: chunk `p` is plane `p` (`ip` values), and `unpool2x2_plane` writes every
        // value of the plane it is given.
        let dx = unsafe {
            vec_filled_by(planes * ip, ip, |p, dx| {
                let (g, code) = (&dy[p * op..][..op], &codes[p * op..][..op]);
                unpool2x2_plane(g, code, w, dx);
            })
        };
        vec![Some(dx)]
    })
}

impl Tensor {
    /// Max pooling with a `kernel × kernel` window and `stride`, no padding, floor mode
    /// (`torch.nn.functional.max_pool2d(x, kernel, stride)`). `[N, C, H, W] → [N, C, Ho, Wo]`.
    /// Keeps the argmax of each window for the backward.
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Tensor {
        let (planes, h, w, ho, wo) = window_geometry("max_pool2d", self.shape(), kernel, stride);
        if kernel == 2 && stride == 2 {
            return pool2x2::<false>(self, (planes, h, w, ho, wo));
        }
        assert!(
            h * w <= u32::MAX as usize,
            "max_pool2d: planes of input {:?} are too large for u32 indices",
            self.shape()
        );
        let mut y = vec![0.0f32; planes * ho * wo];
        let mut arg = vec![0u32; planes * ho * wo];
        let forward = |((out, idx), plane): ((&mut [f32], &mut [u32]), &[f32])| {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (y0, x0) = (oy * stride, ox * stride);
                    let (mut best, mut at) = (f32::NEG_INFINITY, y0 * w + x0);
                    for ky in 0..kernel {
                        let row = (y0 + ky) * w + x0;
                        for (kx, &v) in plane[row..row + kernel].iter().enumerate() {
                            // As PyTorch: the first maximum wins ties, and a NaN propagates.
                            if v > best || v.is_nan() {
                                (best, at) = (v, row + kx);
                            }
                        }
                    }
                    out[oy * wo + ox] = plane[at];
                    idx[oy * wo + ox] = at as u32;
                }
            }
        };
        {
            let x = self.data();
            let (op, ip) = (ho * wo, h * w);
            y.par_chunks_mut(op)
                .zip(arg.par_chunks_mut(op))
                .zip(x.par_chunks(ip))
                .with_min_len(min_items(ip))
                .for_each(forward);
        }
        let mut shape = self.shape().to_vec();
        shape[2..].copy_from_slice(&[ho, wo]);
        Tensor::from_op(y, &shape, &[self], move |dy, _| {
            let mut dx = vec![0.0; planes * h * w];
            let scatter = |((dx, g), idx): ((&mut [f32], &[f32]), &[u32])| {
                for (&g, &a) in g.iter().zip(idx) {
                    dx[a as usize] += g;
                }
            };
            let (op, ip) = (ho * wo, h * w);
            dx.par_chunks_mut(ip)
                .zip(dy.par_chunks(op))
                .zip(arg.par_chunks(op))
                .with_min_len(min_items(ip))
                .for_each(scatter);
            vec![Some(dx)]
        })
    }

    /// `max_pool2d(relu(x), kernel, stride)` (the `nn.ReLU(), nn.MaxPool2d(k, s)` pair), fused
    /// for `kernel = stride = 2` into one pass forward and one backward (see the module docs);
    /// other windows run the two ops in turn. `[N, C, H, W] → [N, C, Ho, Wo]`.
    pub fn relu_max_pool2d(&self, kernel: usize, stride: usize) -> Tensor {
        let geometry = window_geometry("relu_max_pool2d", self.shape(), kernel, stride);
        if kernel == 2 && stride == 2 {
            pool2x2::<true>(self, geometry)
        } else {
            self.relu().max_pool2d(kernel, stride)
        }
    }

    /// Average pooling with a `kernel × kernel` window and `stride`, no padding, floor mode
    /// (`torch.nn.functional.avg_pool2d(x, kernel, stride)`). `[N, C, H, W] → [N, C, Ho, Wo]`.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize) -> Tensor {
        let (planes, h, w, ho, wo) = window_geometry("avg_pool2d", self.shape(), kernel, stride);
        let scale = 1.0 / (kernel * kernel) as f32;
        let mut y = vec![0.0f32; planes * ho * wo];
        for_planes(&mut y, ho * wo, &self.data(), h * w, |out, plane| {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (y0, x0) = (oy * stride, ox * stride);
                    let mut s = 0.0;
                    for ky in 0..kernel {
                        let row = &plane[(y0 + ky) * w + x0..][..kernel];
                        s += row.iter().sum::<f32>();
                    }
                    out[oy * wo + ox] = s * scale;
                }
            }
        });
        let mut shape = self.shape().to_vec();
        shape[2..].copy_from_slice(&[ho, wo]);
        Tensor::from_op(y, &shape, &[self], move |dy, _| {
            let mut dx = vec![0.0; planes * h * w];
            for_planes(&mut dx, h * w, dy, ho * wo, |dx, plane| {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let g = plane[oy * wo + ox] * scale;
                        let (y0, x0) = (oy * stride, ox * stride);
                        for ky in 0..kernel {
                            dx[(y0 + ky) * w + x0..][..kernel]
                                .iter_mut()
                                .for_each(|d| *d += g);
                        }
                    }
                }
            });
            vec![Some(dx)]
        })
    }

    /// Global average pooling: the mean of each `(n, c)` plane, `[N, C, H, W] → [N, C]`.
    pub fn global_avg_pool2d(&self) -> Tensor {
        let &[n, c, h, w] = self.shape() else {
            panic!(
                "global_avg_pool2d: input {:?} must have 4 axes [N, C, H, W]",
                self.shape()
            );
        };
        let hw = h * w;
        let scale = 1.0 / hw.max(1) as f32;
        let mut y = vec![0.0f32; n * c];
        for_planes(&mut y, 1, &self.data(), hw, |out, plane| {
            out[0] = sum_map(plane, |v| v) * scale;
        });
        Tensor::from_op(y, &[n, c], &[self], move |dy, _| {
            let mut dx = vec![0.0; n * c * hw];
            for_planes(&mut dx, hw, dy, 1, |dx, g| dx.fill(g[0] * scale));
            vec![Some(dx)]
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use crate::Tensor;

    /// Values with many exact ties, zeros, negatives and a few NaNs: the cases where the order
    /// of the selects matters.
    fn awkward(shape: &[usize], seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        (0..n)
            .map(|_| match rng.gen_range(0..10) {
                0 => f32::NAN,
                1 | 2 => 0.0,
                3 => 0.5,
                _ => rng.gen_range(-2i32..3) as f32 * 0.25,
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// `f(x)` and `dx` of `Σ f(x)·g` for a fixed `g`.
    fn value_and_grad(x: &[f32], shape: &[usize], f: impl Fn(&Tensor) -> Tensor) -> [Vec<u32>; 2] {
        let x = Tensor::from_vec(x.to_vec(), shape).set_requires_grad(true);
        let y = f(&x);
        let g: Vec<f32> = (0..y.numel()).map(|i| (i % 7) as f32 - 3.0).collect();
        y.mul(&Tensor::from_vec(g, y.shape())).sum().backward();
        [bits(&y.to_vec()), bits(&x.grad().unwrap().to_vec())]
    }

    #[test]
    fn relu_max_pool_equals_relu_then_max_pool_bit_for_bit() {
        // Even and odd sizes; the large one takes the parallel path.
        for (i, shape) in [
            [2, 3, 4, 4],
            [1, 2, 5, 7],
            [3, 2, 6, 3],
            [1, 3, 5, 6],
            [4, 32, 28, 28],
        ]
        .iter()
        .enumerate()
        {
            let x = awkward(shape, i as u64);
            let fused = value_and_grad(&x, shape, |t| t.relu_max_pool2d(2, 2));
            let apart = value_and_grad(&x, shape, |t| t.relu().max_pool2d(2, 2));
            assert_eq!(fused, apart, "{shape:?}");
        }
        // Other windows fall back to the two ops.
        let x = awkward(&[1, 2, 7, 6], 9);
        let fused = value_and_grad(&x, &[1, 2, 7, 6], |t| t.relu_max_pool2d(3, 2));
        let apart = value_and_grad(&x, &[1, 2, 7, 6], |t| t.relu().max_pool2d(3, 2));
        assert_eq!(fused, apart);
    }

    #[test]
    fn fast_2x2_max_pool_keeps_first_max_and_propagates_nan() {
        let x = Tensor::from_vec(
            vec![1.0, 1.0, f32::NAN, 0.0, 1.0, 1.0, 2.0, 5.0],
            &[1, 1, 2, 4],
        )
        .set_requires_grad(true);
        let y = x.max_pool2d(2, 2);
        let v = y.to_vec();
        assert_eq!(v[0], 1.0);
        assert!(v[1].is_nan());
        y.sum().backward();
        assert_eq!(
            x.grad().unwrap().to_vec(),
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
