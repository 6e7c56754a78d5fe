//! The convolution as its definition, forward and backward: the formulas at the top of
//! [`super`] written as nested loops over every output, input channel and kernel tap, with no
//! column matrix, no GEMM and no scheduling. Slow and plainly right, it is the place to start
//! reading and the oracle every fast path of [`Tensor::conv2d`](crate::Tensor::conv2d) is
//! tested against (`tests.rs`: every path, at the shapes that select it).
//!
//! Shapes as in `torch.nn.functional.conv2d`: input `[n, cin, h, w]`, weight
//! `[cout, cin, kh, kw]`, bias `[cout]`, output `[n, cout, ho, wo]` with
//! `ho = (h + 2·pad − kh)/stride + 1` (floor), likewise `wo`. Sums run in f64.

use crate::Tensor;

/// The sizes of one convolution and the visit of every `(output, tap)` pair that reads an
/// input pixel (taps over the zero padding read nothing and are skipped).
struct Loops {
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
}

impl Loops {
    fn new(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Loops {
        let (&[n, cin, h, wd], &[cout, wcin, kh, kw]) = (x.shape(), w.shape()) else {
            panic!(
                "conv2d reference: input {:?}, weight {:?}",
                x.shape(),
                w.shape()
            );
        };
        assert!(cin == wcin && stride >= 1 && h + 2 * pad >= kh && wd + 2 * pad >= kw);
        Loops {
            x: [n, cin, h, wd],
            w: [cout, cin, kh, kw],
            stride,
            pad,
        }
    }

    /// `[n, cout, ho, wo]`.
    fn out_shape(&self) -> [usize; 4] {
        let ([n, _, h, wd], [cout, _, kh, kw]) = (self.x, self.w);
        let (s, p) = (self.stride, self.pad);
        [n, cout, (h + 2 * p - kh) / s + 1, (wd + 2 * p - kw) / s + 1]
    }

    /// `f(o, xi, wi)` for every output index `o` and every tap of it that reads input index
    /// `xi` with weight index `wi`: `y[o] = b + Σ x[xi]·w[wi]` over exactly these triples.
    fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ([n, cin, h, wd], [cout, _, kh, kw]) = (self.x, self.w);
        let [_, _, ho, wo] = self.out_shape();
        let (s, p) = (self.stride, self.pad);
        for ni in 0..n {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let o = ((ni * cout + co) * ho + oy) * wo + ox;
                        for ci in 0..cin {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    // Input pixel (oy·s + ky − p, ox·s + kx − p), if inside.
                                    let (iy, ix) = (oy * s + ky, ox * s + kx);
                                    if iy < p || ix < p || iy - p >= h || ix - p >= wd {
                                        continue;
                                    }
                                    let xi = ((ni * cin + ci) * h + iy - p) * wd + ix - p;
                                    let wi = ((co * cin + ci) * kh + ky) * kw + kx;
                                    f(o, xi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv2d(x, w) + b` by its definition; returns the output values (`[n, cout, ho, wo]`,
/// row-major).
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, pad: usize) -> Vec<f32> {
    let loops = Loops::new(x, w, stride, pad);
    let [n, cout, ho, wo] = loops.out_shape();
    let (xv, wv) = (x.data(), w.data());
    let bias = b.map(Tensor::to_vec);
    let mut acc: Vec<f64> = (0..n * cout * ho * wo)
        .map(|o| {
            bias.as_ref()
                .map_or(0.0, |b| b[o / (ho * wo) % cout] as f64)
        })
        .collect();
    loops.for_each(|o, xi, wi| acc[o] += xv[xi] as f64 * wv[wi] as f64);
    acc.into_iter().map(|v| v as f32).collect()
}

/// The three gradients of `Σ dy ⊙ conv2d(x, w, b)`, by the definition: every `(o, xi, wi)`
/// triple of the forward sends `dy[o]·w[wi]` to `dx[xi]` and `dy[o]·x[xi]` to `dw[wi]`, and
/// `db[co]` sums `dy` over the outputs of channel `co`. Returns `(dx, dw, db)`.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    dy: &[f32],
    stride: usize,
    pad: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let loops = Loops::new(x, w, stride, pad);
    let [n, cout, ho, wo] = loops.out_shape();
    assert_eq!(
        dy.len(),
        n * cout * ho * wo,
        "conv2d reference: dy has the wrong size"
    );
    let (xv, wv) = (x.data(), w.data());
    let mut dx = vec![0.0f64; xv.len()];
    let mut dw = vec![0.0f64; wv.len()];
    loops.for_each(|o, xi, wi| {
        dx[xi] += dy[o] as f64 * wv[wi] as f64;
        dw[wi] += dy[o] as f64 * xv[xi] as f64;
    });
    let mut db = vec![0.0f64; cout];
    for (o, &g) in dy.iter().enumerate() {
        db[o / (ho * wo) % cout] += g as f64;
    }
    let f32s = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (f32s(dx), f32s(dw), f32s(db))
}
