//! The CPU kernels behind [`Tensor::conv2d`](crate::Tensor::conv2d): the geometry of one
//! convolution, im2col / col2im over a band of output rows, and a direct kernel for a single
//! input channel.
//!
//! ## im2col over a band of rows
//!
//! Row `r = (ci·kh + ky)·kw + kx` of the column matrix holds, for every output pixel
//! `(oy, ox)`, the input value under tap `(ky, kx)` of channel `ci`:
//! `cols[r][(oy − oy0)·Wo + ox] = x[ci, oy·s + ky − p, ox·s + kx − p]` (zero outside the
//! image). A band covers output rows `oy0..oy1`, so its `K × (oy1 − oy0)·Wo` columns fit in
//! L2 while the GEMM reads them. [`col2im_band`] is the adjoint: it adds each column entry back
//! onto the input pixel it was copied from.

/// Sizes of one 2-D convolution: input `[n, cin, h, w]`, weight `[cout, cin, kh, kw]`,
/// output `[n, cout, ho, wo]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

/// Target size of one band of columns: well inside the 1 MiB L2 of the machines this was tuned
/// on, leaving room for the GEMM's packed weight panel.
const BAND_BYTES: usize = 384 * 1024;

impl Geometry {
    /// Rows of the column matrix: `cin·kh·kw`.
    pub fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output pixels per image: `ho·wo`.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.cout * self.p()
    }

    /// A 1×1 kernel, stride 1, no padding: the input image already is the column matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Output rows per band so that a band's columns take at most [`BAND_BYTES`].
    pub fn band_rows(&self) -> usize {
        let row_bytes = self.k() * self.wo * std::mem::size_of::<f32>();
        (BAND_BYTES / row_bytes.max(1)).clamp(1, self.ho.max(1))
    }

    /// The column buffer length a band needs.
    pub fn band_len(&self) -> usize {
        self.k() * self.band_rows() * self.wo
    }

    /// For tap offset `k` along an axis of `len` input pixels, the range of output positions
    /// `o` in `0..out` whose input `o·s + k − p` lies inside the image.
    fn valid(&self, k: usize, len: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        // o·s + k ≥ p  ⇔  o ≥ ceil((p − k) / s)
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        // o·s + k − p ≤ len − 1  ⇔  o ≤ (len − 1 + p − k) / s
        let hi = if len + p > k {
            ((len - 1 + p - k) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// Fills `cols` (`k × (oy1 − oy0)·wo`, row-major) with the columns of output rows `oy0..oy1`
/// of one image `x` (`[cin, h, w]`).
pub(crate) fn im2col_band(g: &Geometry, x: &[f32], oy0: usize, oy1: usize, cols: &mut [f32]) {
    let (wo, s, p) = (g.wo, g.stride, g.pad);
    let band = (oy1 - oy0) * wo;
    debug_assert_eq!(cols.len(), g.k() * band);
    let mut rows = cols.chunks_exact_mut(band);
    for ci in 0..g.cin {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = g.valid(ky, g.h, g.ho);
            for kx in 0..g.kw {
                let row = rows.next().expect("im2col: band has k rows");
                let (ox_lo, ox_hi) = g.valid(kx, g.w, wo);
                for (oy, dst) in (oy0..oy1).zip(row.chunks_exact_mut(wo)) {
                    if oy < oy_lo || oy >= oy_hi {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[(oy * s + ky - p) * g.w..][..g.w];
                    dst[..ox_lo].fill(0.0);
                    dst[ox_hi..].fill(0.0);
                    let ix0 = ox_lo * s + kx - p;
                    let inner = &mut dst[ox_lo..ox_hi];
                    if s == 1 {
                        inner.copy_from_slice(&src[ix0..ix0 + inner.len()]);
                    } else {
                        for (d, v) in inner.iter_mut().zip(src[ix0..].iter().step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_band`]: adds every entry of `cols` onto the pixel of `dx`
/// (`[cin, h, w]`) it was read from; padding entries are dropped.
pub(crate) fn col2im_band(g: &Geometry, cols: &[f32], oy0: usize, oy1: usize, dx: &mut [f32]) {
    let (wo, s, p) = (g.wo, g.stride, g.pad);
    let band = (oy1 - oy0) * wo;
    debug_assert_eq!(cols.len(), g.k() * band);
    let mut rows = cols.chunks_exact(band);
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = g.valid(ky, g.h, g.ho);
            for kx in 0..g.kw {
                let row = rows.next().expect("col2im: band has k rows");
                let (ox_lo, ox_hi) = g.valid(kx, g.w, wo);
                let (lo, hi) = (oy0.max(oy_lo), oy1.min(oy_hi));
                let ix0 = ox_lo * s + kx - p;
                for oy in lo..hi {
                    let src = &row[(oy - oy0) * wo + ox_lo..(oy - oy0) * wo + ox_hi];
                    let dst = &mut plane[(oy * s + ky - p) * g.w..][..g.w];
                    if s == 1 {
                        dst[ix0..ix0 + src.len()]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, v)| *d += v);
                    } else {
                        for (d, v) in dst[ix0..].iter_mut().step_by(s).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}
