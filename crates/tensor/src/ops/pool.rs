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

use rayon::prelude::*;

use crate::tensor::Tensor;

/// `Σ f(x[i])`, with 16 independent partial sums so the compiler can vectorise it (a plain
/// `iter().sum()` of f32 must add in order, one element per add latency). Shared by the
/// pooling, normalisation and convolution passes.
pub(crate) fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ f(x[i], y[i])` over two equally long slices, vectorised like [`sum_map`].
pub(crate) fn sum_map2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [0.0f32; 16];
    let (cx, cy) = (x.chunks_exact(16), y.chunks_exact(16));
    let tail: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(&a, &b)| f(a, b))
        .sum();
    for (a16, b16) in cx.zip(cy) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a16).zip(b16) {
            *acc += f(a, b);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Below this many input elements a pooling pass runs on one thread.
const PAR_MIN: usize = 1 << 15;

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

/// Runs `f(out_plane, in_plane)` for every plane, in parallel when the input is large.
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
    if inp.len() < PAR_MIN {
        out.chunks_mut(out_plane)
            .zip(inp.chunks(in_plane))
            .for_each(|(o, i)| f(o, i));
    } else {
        out.par_chunks_mut(out_plane)
            .zip(inp.par_chunks(in_plane))
            .for_each(|(o, i)| f(o, i));
    }
}

impl Tensor {
    /// Max pooling with a `kernel × kernel` window and `stride`, no padding, floor mode
    /// (`torch.nn.functional.max_pool2d(x, kernel, stride)`). `[N, C, H, W] → [N, C, Ho, Wo]`.
    /// Keeps the argmax of each window for the backward.
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Tensor {
        let (planes, h, w, ho, wo) = window_geometry("max_pool2d", self.shape(), kernel, stride);
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
            if x.len() < PAR_MIN {
                y.chunks_mut(op)
                    .zip(arg.chunks_mut(op))
                    .zip(x.chunks(ip))
                    .for_each(forward);
            } else {
                y.par_chunks_mut(op)
                    .zip(arg.par_chunks_mut(op))
                    .zip(x.par_chunks(ip))
                    .for_each(forward);
            }
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
            if dx.len() < PAR_MIN {
                dx.chunks_mut(ip)
                    .zip(dy.chunks(op))
                    .zip(arg.chunks(op))
                    .for_each(scatter);
            } else {
                dx.par_chunks_mut(ip)
                    .zip(dy.par_chunks(op))
                    .zip(arg.par_chunks(op))
                    .for_each(scatter);
            }
            vec![Some(dx)]
        })
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
