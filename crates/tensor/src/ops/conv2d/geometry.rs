//! The sizes of one convolution and what follows from them alone: the column matrix's shape,
//! how the batch is grouped or cut into bands to stay in L2, the zero-padded plane the kernels
//! read, and the adjoint convolution that computes the input gradient.

use rayon::prelude::*;

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

/// Target size of one band of columns: inside the 1 MiB L2 of the machines this was tuned on,
/// leaving room for the GEMM's packed panels.
const BAND_BYTES: usize = 512 * 1024;

/// Fewest output pixels per band: below this the GEMM re-packs the weight for too little work
/// (the GEMM packs `A` once per call), which costs more than an L2 miss on the columns.
const MIN_BAND_COLS: usize = 256;

/// Lanes of one block of the direct kernels (one AVX-512 register of f32); the padded plane
/// is widened so that a row's last block reads whole registers.
pub(crate) const LANES: usize = 16;

impl Geometry {
    /// Rows of the column matrix, `K = cin·kh·kw` (one per input channel and kernel tap).
    pub fn col_rows(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output pixels per image, `P = ho·wo` (the column matrix's columns).
    pub fn out_pixels(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.cout * self.out_pixels()
    }

    /// A 1×1 kernel, stride 1, no padding: the input image already is the column matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// One input channel and stride 1: `K = kh·kw` is too thin for a GEMM (each output would
    /// get a handful of multiply-adds per load and store of `C`), so direct loops run instead.
    pub fn is_direct(&self) -> bool {
        self.cin == 1 && self.stride == 1
    }

    /// Output rows per band: as many as fit in [`BAND_BYTES`] of columns, but at least
    /// [`MIN_BAND_COLS`] output pixels.
    pub fn band_rows(&self) -> usize {
        let row_bytes = self.col_rows() * self.wo * std::mem::size_of::<f32>();
        (BAND_BYTES / row_bytes.max(1))
            .max(MIN_BAND_COLS.div_ceil(self.wo.max(1)))
            .clamp(1, self.ho.max(1))
    }

    /// The column buffer length a band needs.
    pub fn band_len(&self) -> usize {
        self.col_rows() * self.band_rows() * self.wo
    }

    /// Images per group: an image with fewer than [`MIN_BAND_COLS`] output pixels shares one
    /// column matrix (`K × images·P`) with its neighbours in the batch, so one GEMM of width
    /// `images·P` packs the weight once for all of them (a 4×4 output alone would re-pack a
    /// `512 × 4608` weight for 16 columns) and the weight gradient sums over `images·P`
    /// pixels per GEMM. Grows to fill [`BAND_BYTES`] of columns; 1 for larger images, which
    /// are cut into bands of rows instead.
    pub fn group_images(&self) -> usize {
        let p = self.out_pixels().max(1);
        if p >= MIN_BAND_COLS || self.n <= 1 {
            return 1;
        }
        let by_bytes = BAND_BYTES / (self.col_rows() * p * std::mem::size_of::<f32>()).max(1);
        MIN_BAND_COLS.div_ceil(p).max(by_bytes).clamp(1, self.n)
    }

    /// Width of the zero-padded input plane: the padded image, for the direct kernels widened
    /// so the last block of [`LANES`] outputs in a row can read a full block for every tap.
    pub fn padded_w(&self) -> usize {
        if self.is_direct() {
            (self.w + 2 * self.pad).max(self.wo.div_ceil(LANES) * LANES + self.kw - 1)
        } else {
            self.w + 2 * self.pad
        }
    }

    /// Rows of the zero-padded input plane.
    fn padded_h(&self) -> usize {
        self.h + 2 * self.pad
    }

    /// Values of one zero-padded input plane ([`pad_plane`](super::layout::pad_plane)).
    pub fn padded_plane_len(&self) -> usize {
        self.padded_h() * self.padded_w()
    }

    /// Length of one zero-padded image: `cin` padded planes.
    pub fn padded_image_len(&self) -> usize {
        self.cin * self.padded_plane_len()
    }

    /// The convolution that computes this one's input gradient (stride 1): with the kernel
    /// flipped in both axes and its channel axes swapped ([`adjoint_weight`]),
    /// `dx = conv(dy, W', padding k − 1 − p)`, since
    /// `dx[ci, y, x] = Σ_{co, ky, kx} W[co, ci, ky, kx] · dy[co, y + p − ky, x + p − kx]`.
    /// Its input is `dy` (`[n, cout, ho, wo]`), its output `dx` (`[n, cin, h, w]`).
    pub fn adjoint(&self) -> Geometry {
        debug_assert!(self.stride == 1 && self.kh == self.kw && self.pad < self.kh);
        Geometry {
            cin: self.cout,
            h: self.ho,
            w: self.wo,
            cout: self.cin,
            pad: self.kh - 1 - self.pad,
            ho: self.h,
            wo: self.w,
            ..*self
        }
    }
}

/// The weight of the [`adjoint`](Geometry::adjoint) convolution, `[cin, cout, kh, kw]`:
/// `W'[ci, co, ky, kx] = W[co, ci, kh − 1 − ky, kw − 1 − kx]`.
pub(crate) fn adjoint_weight(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let kk = g.kh * g.kw;
    let mut wt = vec![0.0; w.len()];
    wt.par_chunks_mut(g.cout * kk)
        .enumerate()
        .for_each(|(ci, wt_ci)| {
            for (co, dst) in wt_ci.chunks_exact_mut(kk).enumerate() {
                let taps = &w[(co * g.cin + ci) * kk..][..kk];
                for (d, &v) in dst.iter_mut().zip(taps.iter().rev()) {
                    *d = v;
                }
            }
        });
    wt
}
