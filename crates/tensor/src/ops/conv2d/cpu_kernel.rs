//! The CPU kernels behind [`Tensor::conv2d`](crate::Tensor::conv2d): the geometry of one
//! convolution, im2col / col2im over a band of output rows, and direct kernels (forward and
//! weight gradient) for a single input channel.
//!
//! ## im2col over a band of rows
//!
//! Row `r = (ci·kh + ky)·kw + kx` of the column matrix holds, for every output pixel
//! `(oy, ox)`, the input value under tap `(ky, kx)` of channel `ci`:
//! `cols[r][(oy − oy0)·Wo + ox] = x[ci, oy·s + ky − p, ox·s + kx − p]` (zero outside the
//! image). A band covers output rows `oy0..oy1`, so its `K × (oy1 − oy0)·Wo` columns fit in
//! L2 while the GEMM reads them. [`col2im_band`] is the adjoint: it adds each column entry back
//! onto the input pixel it was copied from.

use std::cell::RefCell;

use super::winograd::{forced_path, ConvPath, Tile};
use crate::gemm::{Gathered, STRIP};

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

    /// Output rows per band: as many as fit in [`BAND_BYTES`] of columns, but at least
    /// [`MIN_BAND_COLS`] output pixels.
    pub fn band_rows(&self) -> usize {
        let row_bytes = self.col_rows() * self.wo * std::mem::size_of::<f32>();
        (BAND_BYTES / row_bytes.max(1))
            .max(MIN_BAND_COLS.div_ceil(self.wo.max(1)))
            .clamp(1, self.ho.max(1))
    }

    /// One input channel and stride 1: `K = kh·kw` is too thin for a GEMM (each output would
    /// get a handful of multiply-adds per load and store of `C`), so direct loops run instead.
    pub fn is_direct(&self) -> bool {
        self.cin == 1 && self.stride == 1
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

    /// The column buffer length a band needs.
    pub fn band_len(&self) -> usize {
        self.col_rows() * self.band_rows() * self.wo
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

/// `f(d, s)` for each pair of a short row `dst` and its source `src` (4 to a few dozen values,
/// as im2col, col2im and the group gathers move them): whole 16-, 8- and 4-lane blocks of fixed
/// length, which compile to register moves and vector ops, then the rest one by one. A plain
/// loop over a dozen values spends more on its vector-loop set-up and scalar tail (or, for a
/// copy, on the `memmove` call LLVM turns it into) than on the values.
#[inline(always)]
fn zip_row(dst: &mut [f32], src: &[f32], f: impl Fn(&mut f32, f32) + Copy) {
    assert_eq!(dst.len(), src.len(), "zip_row: length mismatch");
    #[inline(always)]
    fn block<const N: usize>(d: &mut [f32], s: &[f32], f: impl Fn(&mut f32, f32)) {
        let d: &mut [f32; N] = d.try_into().unwrap();
        let s: &[f32; N] = s.try_into().unwrap();
        d.iter_mut().zip(s).for_each(|(d, &s)| f(d, s));
    }
    let (mut d, mut s) = (dst, src);
    while d.len() >= 16 {
        let (dh, dt) = d.split_at_mut(16);
        block::<16>(dh, &s[..16], f);
        (d, s) = (dt, &s[16..]);
    }
    if d.len() >= 8 {
        let (dh, dt) = d.split_at_mut(8);
        block::<8>(dh, &s[..8], f);
        (d, s) = (dt, &s[8..]);
    }
    if d.len() >= 4 {
        let (dh, dt) = d.split_at_mut(4);
        block::<4>(dh, &s[..4], f);
        (d, s) = (dt, &s[4..]);
    }
    for (d, &s) in d.iter_mut().zip(s).take(3) {
        f(d, s);
    }
}

/// `dst.copy_from_slice(src)` for short rows, without a `memmove` call ([`zip_row`]).
#[inline(always)]
pub(crate) fn copy_row(dst: &mut [f32], src: &[f32]) {
    zip_row(dst, src, |d, s| *d = s);
}

/// `dst += src` for short rows ([`zip_row`]).
#[inline(always)]
fn add_row(dst: &mut [f32], src: &[f32]) {
    zip_row(dst, src, |d, s| *d += s);
}

/// Fills the columns of output rows `oy0..oy1` of one image `x` (`[cin, h, w]`) into `cols`:
/// row `r` of the band is `cols[r·cols_stride..][..(oy1 − oy0)·wo]`. `cols_stride` is the band
/// width for a band of its own, or the width of a whole group when several images share one
/// matrix (`cols` then starts at this image's first column).
pub(crate) fn im2col_band(
    g: &Geometry,
    x: &[f32],
    oy0: usize,
    oy1: usize,
    cols: &mut [f32],
    cols_stride: usize,
) {
    let band = (oy1 - oy0) * g.wo;
    debug_assert!(cols_stride >= band && cols.len() >= (g.col_rows() - 1) * cols_stride + band);
    if g.stride == 1 {
        return im2col_band_stride1(g, x, oy0, oy1, cols, cols_stride);
    }
    im2col_band_strided(g, x, oy0, oy1, cols, cols_stride)
}

thread_local! {
    /// Per-thread zero-padded copy of one input plane (or of its rows' column phases) for
    /// [`im2col_band_stride1`] and [`im2col_band_strided`].
    static PADDED_PLANE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`im2col_band`] for stride 1: each channel is first copied into a zero-padded plane, so that
/// every row of the band is one plain copy of `wo` values (`xp[oy + ky][kx..kx + wo]`), with no
/// test for the border. On small images (14-pixel rows) the border tests and the zeroing of the
/// padding columns cost more than the copies themselves.
fn im2col_band_stride1(
    g: &Geometry,
    x: &[f32],
    oy0: usize,
    oy1: usize,
    cols: &mut [f32],
    cols_stride: usize,
) {
    let (wo, wp) = (g.wo, g.padded_w());
    let band = (oy1 - oy0) * wo;
    PADDED_PLANE.with(|xp| {
        let mut xp = xp.borrow_mut();
        xp.resize(g.direct_scratch_len(), 0.0);
        let mut rows = cols.chunks_mut(cols_stride);
        for plane in x.chunks_exact(g.h * g.w).take(g.cin) {
            pad_plane(g, plane, &mut xp);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = &mut rows.next().expect("cols holds K rows")[..band];
                    for (oy, dst) in (oy0..oy1).zip(row.chunks_exact_mut(wo)) {
                        copy_row(dst, &xp[(oy + ky) * wp + kx..][..wo]);
                    }
                }
            }
        }
    });
}

/// [`im2col_band`] for stride `s > 1`: the padded rows of each channel the band reads are split
/// into their `s` column phases (phase `b` of a row holds its padded columns `b, b + s, …`),
/// so that every row of the band is again one plain copy of `wo` values: the input under tap
/// `(ky, kx)` for outputs `ox..` is phase `kx mod s` of padded row `oy·s + ky`, from column
/// `ox + kx / s`. The strided reads happen once per input value (in [`split_phases`]) rather
/// than once per column entry (`kh·kw / s²` times as many).
fn im2col_band_strided(
    g: &Geometry,
    x: &[f32],
    oy0: usize,
    oy1: usize,
    cols: &mut [f32],
    cols_stride: usize,
) {
    let band = PhaseBand::new(g, oy0, oy1);
    let p = g.pad;
    band.with_buffers(|phases, row| {
        let mut rows = cols.chunks_mut(cols_stride);
        for plane in x.chunks_exact(g.h * g.w).take(g.cin) {
            for (r, dst) in (band.r0..band.r1).zip(phases.chunks_exact_mut(band.row_len())) {
                row.fill(0.0);
                if let Some(iy) = r.checked_sub(p).filter(|&iy| iy < g.h) {
                    copy_row(&mut row[p..p + g.w], &plane[iy * g.w..][..g.w]);
                }
                split_phases(row, g.stride, dst);
            }
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let dst = &mut rows.next().expect("cols holds K rows")[..band.len()];
                    for (oy, dst) in (oy0..oy1).zip(dst.chunks_exact_mut(g.wo)) {
                        copy_row(dst, &phases[band.tap(oy, ky, kx)..][..g.wo]);
                    }
                }
            }
        }
    });
}

/// The padded rows a band of output rows `oy0..oy1` of a strided convolution reads, each split
/// into its `s` column phases of `pw` values, as [`im2col_band_strided`] and its adjoint
/// [`col2im_band_strided`] lay them out: phase `b` of padded row `r` at `((r − r0)·s + b)·pw`.
struct PhaseBand {
    s: usize,
    pw: usize,
    r0: usize,
    r1: usize,
    cols: usize,
}

impl PhaseBand {
    fn new(g: &Geometry, oy0: usize, oy1: usize) -> PhaseBand {
        let s = g.stride;
        PhaseBand {
            s,
            pw: (g.w + 2 * g.pad).div_ceil(s),
            r0: oy0 * s,
            r1: (oy1 - 1) * s + g.kh,
            cols: (oy1 - oy0) * g.wo,
        }
    }

    /// Columns of the band (`(oy1 − oy0)·wo`).
    fn len(&self) -> usize {
        self.cols
    }

    /// Values of one padded row's phases together (`s·pw`).
    fn row_len(&self) -> usize {
        self.s * self.pw
    }

    /// Where the values under tap `(ky, kx)` for output row `oy` start: phase `kx mod s` of
    /// padded row `oy·s + ky`, from column `kx / s`.
    fn tap(&self, oy: usize, ky: usize, kx: usize) -> usize {
        ((oy * self.s + ky - self.r0) * self.s + kx % self.s) * self.pw + kx / self.s
    }

    /// Runs `f` on this thread's phase buffer for the band's rows and a one-row scratch.
    fn with_buffers<R>(&self, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
        PADDED_PLANE.with(|buf| {
            let mut buf = buf.borrow_mut();
            let phases = (self.r1 - self.r0) * self.row_len();
            buf.resize(phases + self.row_len(), 0.0);
            let (phases, row) = buf.split_at_mut(phases);
            f(phases, row)
        })
    }
}

/// Splits `row` (`s·pw` values) into its `s` column phases: `out[b·pw + j] = row[j·s + b]`.
fn split_phases(row: &[f32], s: usize, out: &mut [f32]) {
    let pw = out.len() / s;
    if s == 2 {
        let (even, odd) = out.split_at_mut(pw);
        for ((pair, e), o) in row.chunks_exact(2).zip(even).zip(odd) {
            (*e, *o) = (pair[0], pair[1]);
        }
        return;
    }
    for (j, chunk) in row.chunks_exact(s).enumerate().take(pw) {
        for (b, &v) in chunk.iter().enumerate() {
            out[b * pw + j] = v;
        }
    }
}

/// The adjoint of [`im2col_band`] (the same layout, row `r` at `cols[r·cols_stride..]`): adds
/// every entry onto the pixel of `dx` (`[cin, h, w]`) it was read from; padding entries are
/// dropped.
pub(crate) fn col2im_band(
    g: &Geometry,
    cols: &[f32],
    oy0: usize,
    oy1: usize,
    dx: &mut [f32],
    cols_stride: usize,
) {
    let (wo, s, p) = (g.wo, g.stride, g.pad);
    let band = (oy1 - oy0) * wo;
    debug_assert!(cols_stride >= band && cols.len() >= (g.col_rows() - 1) * cols_stride + band);
    if s > 1 {
        return col2im_band_strided(g, cols, oy0, oy1, dx, cols_stride);
    }
    let mut r = 0;
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = g.valid(ky, g.h, g.ho);
            for kx in 0..g.kw {
                let row = &cols[r * cols_stride..r * cols_stride + band];
                r += 1;
                let (ox_lo, ox_hi) = g.valid(kx, g.w, wo);
                let (lo, hi) = (oy0.max(oy_lo), oy1.min(oy_hi));
                let ix0 = ox_lo + kx - p;
                for oy in lo..hi {
                    let src = &row[(oy - oy0) * wo + ox_lo..(oy - oy0) * wo + ox_hi];
                    let dst = &mut plane[(oy + ky - p) * g.w..][..g.w];
                    add_row(&mut dst[ix0..ix0 + src.len()], src);
                }
            }
        }
    }
}

/// [`col2im_band`] for stride `s > 1`, the adjoint of [`im2col_band_strided`]: each column row
/// is added in one piece onto a column phase of the padded rows the band touches (zeroed
/// first), and the phases are then interleaved back ([`merge_phases`]) and added onto `dx`.
fn col2im_band_strided(
    g: &Geometry,
    cols: &[f32],
    oy0: usize,
    oy1: usize,
    dx: &mut [f32],
    cols_stride: usize,
) {
    let band = PhaseBand::new(g, oy0, oy1);
    let p = g.pad;
    band.with_buffers(|phases, row| {
        let mut rows = cols.chunks(cols_stride);
        for plane in dx.chunks_exact_mut(g.h * g.w).take(g.cin) {
            phases.fill(0.0);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let src = &rows.next().expect("cols holds K rows")[..band.len()];
                    for (oy, src) in (oy0..oy1).zip(src.chunks_exact(g.wo)) {
                        add_row(&mut phases[band.tap(oy, ky, kx)..][..g.wo], src);
                    }
                }
            }
            for (r, src) in (band.r0..band.r1).zip(phases.chunks_exact(band.row_len())) {
                if let Some(iy) = r.checked_sub(p).filter(|&iy| iy < g.h) {
                    merge_phases(src, g.stride, row);
                    add_row(&mut plane[iy * g.w..][..g.w], &row[p..p + g.w]);
                }
            }
        }
    });
}

/// The inverse of [`split_phases`]: `row[j·s + b] = phases[b·pw + j]`.
fn merge_phases(phases: &[f32], s: usize, row: &mut [f32]) {
    let pw = phases.len() / s;
    if s == 2 {
        let (even, odd) = phases.split_at(pw);
        for ((pair, &e), &o) in row.chunks_exact_mut(2).zip(even).zip(odd) {
            (pair[0], pair[1]) = (e, o);
        }
        return;
    }
    for (j, chunk) in row.chunks_exact_mut(s).enumerate().take(pw) {
        for (b, v) in chunk.iter_mut().enumerate() {
            *v = phases[b * pw + j];
        }
    }
}

/// Lanes of one output block of the direct kernels (one AVX-512 register of f32).
const LANES: usize = 16;

/// `a·b + c`, fused into one instruction when the build targets a CPU with FMA (and computed
/// as two roundings otherwise, rather than through a slow software `fma`).
#[inline(always)]
fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

impl Geometry {
    /// Width of the zero-padded input plane: the padded image, for the direct kernels widened
    /// so the last block of [`LANES`] outputs in a row can read a full block for every tap.
    fn padded_w(&self) -> usize {
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

    /// Scratch the direct kernels need: the padded plane.
    pub fn direct_scratch_len(&self) -> usize {
        self.padded_h() * self.padded_w()
    }

    /// Offset in the padded plane of every tap `(ky, kx)` from its output position.
    fn tap_offsets<const T: usize>(&self) -> [usize; T] {
        std::array::from_fn(|t| (t / self.kw) * self.padded_w() + t % self.kw)
    }
}

/// Copies a single-channel image `x` (`[h, w]`) into `xp` (`[padded_h, padded_w]`) with a zero
/// border, so every tap of the direct kernels reads whole blocks without bounds tests.
pub(crate) fn pad_plane(g: &Geometry, x: &[f32], xp: &mut [f32]) {
    let (p, wp) = (g.pad, g.padded_w());
    xp.fill(0.0);
    for (iy, row) in x.chunks_exact(g.w).enumerate() {
        copy_row(&mut xp[(iy + p) * wp + p..][..g.w], row);
    }
}

/// Copies every channel of the images `x` (`[images, cin, h, w]`) into its own zero-padded
/// plane of `xp` (`[images, cin, padded_h, padded_w]`, [`pad_plane`]).
pub(crate) fn pad_images(g: &Geometry, x: &[f32], xp: &mut [f32]) {
    let plane = g.direct_scratch_len();
    for (x_c, xp_c) in x.chunks_exact(g.h * g.w).zip(xp.chunks_exact_mut(plane)) {
        pad_plane(g, x_c, xp_c);
    }
}

/// Whether rows of `w` pixels (`h` of them) fill whole strips of 16 columns of a gathered
/// matrix: one run along a row of a multiple of 16 pixels, or runs of whole rows of 8 or 4
/// pixels, `16 / w` rows to a strip.
fn fills_strips(h: usize, w: usize) -> bool {
    w.is_multiple_of(STRIP) || (matches!(w, 4 | 8) && (h * w).is_multiple_of(STRIP))
}

impl Geometry {
    /// Whether the column matrix can be read in place from the zero-padded image
    /// ([`Gathered`](crate::gemm::Gathered)), for the forward and for the input gradient as
    /// the [`adjoint`](Self::adjoint) convolution: stride 1 with a square kernel, at least two
    /// input channels (one takes the direct kernels), padding at most `k − 1` (so the adjoint's
    /// is not negative), and either input and output images in whole strips of 16 pixels, or
    /// [wide](Self::gathers_wide) rows that waste at most a quarter of the columns.
    pub fn gathers(&self) -> bool {
        self.stride == 1
            && self.kh == self.kw
            && self.pad < self.kh
            && !self.is_pointwise()
            && !self.is_direct()
            && self.wide_columns_pay()
            && self.adjoint().wide_columns_pay()
    }

    /// Whether a gathered column matrix runs over *wide* output rows: when the rows do not
    /// fill whole strips of 16 pixels (24-pixel images, say), the output is computed as if it
    /// were as wide as the padded input (`padded_w` columns per row, the last `padded_w − wo`
    /// of them garbage, discarded), so that output pixel `oy·padded_w + ox` reads tap
    /// `(ky, kx)` at `(oy + ky)·padded_w + ox + kx` — one run of consecutive values for any
    /// 16 consecutive columns, across rows. The forward's garbage columns are never copied
    /// out, and the output gradient is zero there, so they add nothing to the weight gradient.
    pub fn gathers_wide(&self) -> bool {
        !(fills_strips(self.ho, self.wo) && fills_strips(self.h, self.w))
    }

    /// Wide columns cost `wide_out_pixels / p` times the work; worth it up to 5/4 (24- and 12-pixel
    /// images: 1.08 and 1.22), not beyond (6 pixels: 1.33, 3 pixels: 1.78).
    fn wide_columns_pay(&self) -> bool {
        !self.gathers_wide() || 4 * self.wide_out_pixels() <= 5 * self.out_pixels()
    }

    /// Columns of one image in a wide column matrix: `ho` rows of `padded_w`, in whole strips.
    fn wide_out_pixels(&self) -> usize {
        (self.ho * self.padded_w()).next_multiple_of(STRIP)
    }

    /// Columns of one image in the gathered column matrix: `ho·wo`, or [`Self::wide_out_pixels`].
    pub fn gathered_out_pixels(&self) -> usize {
        if self.gathers_wide() {
            self.wide_out_pixels()
        } else {
            self.out_pixels()
        }
    }

    /// Distance between the starts of two output rows among those columns.
    pub fn gathered_pitch(&self) -> usize {
        if self.gathers_wide() {
            self.padded_w()
        } else {
            self.wo
        }
    }

    /// Values a wide column matrix reads past the last padded image (its last strip runs on
    /// past the plane, into garbage columns): buffers hold this many zeros more.
    pub fn gather_slack(&self) -> usize {
        if self.gathers_wide() {
            STRIP + self.kw
        } else {
            0
        }
    }

    /// Length of one zero-padded image: `cin` padded planes.
    pub fn padded_image_len(&self) -> usize {
        self.cin * self.direct_scratch_len()
    }

    /// The Winograd tile size this convolution takes ([`super::winograd`]), if any: only 3×3
    /// kernels with stride 1 and padding 1 and more than one input channel (one takes the
    /// direct kernels) can, and of those only the shapes where it measures faster
    /// ([`Self::winograd_pays`]), unless the thread [forces](super::force_path) a path.
    pub fn winograd(&self) -> Option<Tile> {
        let fits =
            self.kh == 3 && self.kw == 3 && self.stride == 1 && self.pad == 1 && !self.is_direct();
        if !fits {
            return None;
        }
        match forced_path() {
            ConvPath::Auto => self.winograd_pays(),
            ConvPath::Gemm => None,
            ConvPath::Winograd(tile) => Some(tile),
        }
    }

    /// Where Winograd beats the GEMM path, forward + backward, as measured with
    /// `benches/conv.rs`: FLOP/s of forward + backward over the GEMM path's, in two or three
    /// runs of the bench on 2 cores shared with other jobs (each run alternates the paths
    /// back to back; the runs differ by up to ±30%, so only clear margins count):
    ///
    /// | shape (batch 128, or 256 at 24 px) | F(2×2) | F(4×4) | taken |
    /// |---|---|---|---|
    /// | 64 → 64 at 32² | 1.24, 1.15 | 1.77, 1.47 | F(4×4) |
    /// | 128 → 128 at 16² | 1.39, 1.31 | 1.78, 1.52 | F(4×4) |
    /// | 256 → 256 at 8² | 2.1, 1.24, 1.13 | 1.47, 1.30 | F(2×2) |
    /// | 512 → 512 at 4² | 0.97, 1.37, 1.21 | 1.03, 1.09 | F(2×2) |
    /// | 32 → 64 at 14² (MNIST) | 1.07, 0.96 | 1.08, 0.69 | GEMM |
    /// | 64 → 64 at 6² | 0.92 | 0.69 | GEMM |
    /// | 128 → 128 at 3² | 0.79 | 0.80 | GEMM |
    /// | 16 → 16 at 32² and 24², 32 → 32 at 12² | 0.69–0.91 | 0.65–1.09 | GEMM |
    ///
    /// So: at least 64 channels in and out (with fewer, the GEMMs' `K = Cin` is too thin to
    /// run fast, and the transforms, whose cost per tile does not shrink with the channels,
    /// eat the saving), images of at least 8 pixels a side, or 4 with 256 channels or more (on
    /// small images the 16 GEMMs re-pack each `Cout × Cin` transformed filter for few tiles and
    /// much of each input tile is padding, which only wide layers repay; 64 channels at 6² and
    /// 128 at 3² measured slower). F(4×4) from 16 pixels on; F(2×2) below, where F(4×4) is no
    /// faster (8²: within the noise) and rounds ~20× more ([`super::winograd`], *Accuracy*).
    fn winograd_pays(&self) -> Option<Tile> {
        let (channels, side) = (self.cin.min(self.cout), self.ho.min(self.wo));
        match side {
            16.. if channels >= 64 => Some(Tile::F4),
            8.. if channels >= 64 => Some(Tile::F2),
            4.. if channels >= 256 => Some(Tile::F2),
            _ => None,
        }
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

    /// The offsets that read the column matrix (`K × images·gathered_out_pixels`) of a group of
    /// `images` zero-padded images ([`pad_images`]) in place: row `(ci, ky, kx)` at
    /// `ci·plane + ky·wp + kx`; a strip of 16 output pixels of image `i` from `(oy, ox)` at
    /// `i·padded_image_len + oy·wp + ox`, in runs along the row (or across `16 / wo` rows), or,
    /// [wide](Self::gathers_wide), strip `s` at `i·padded_image_len + 16·s`.
    pub fn column_offsets(&self, images: usize) -> ColumnOffsets {
        debug_assert!(self.gathers());
        let (plane, wp, image) = (
            self.direct_scratch_len(),
            self.padded_w(),
            self.padded_image_len(),
        );
        let rows = (0..self.cin)
            .flat_map(|ci| (0..self.kh).map(move |ky| (ci, ky)))
            .flat_map(|(ci, ky)| (0..self.kw).map(move |kx| ci * plane + ky * wp + kx))
            .collect();
        let (seg, strips_of_image): (usize, Vec<usize>) = if self.gathers_wide() {
            (STRIP, (0..self.wide_out_pixels()).step_by(STRIP).collect())
        } else {
            let seg = self.wo.min(STRIP);
            let strips = (0..self.ho)
                .step_by(STRIP / seg)
                .flat_map(|oy| (0..self.wo).step_by(STRIP).map(move |ox| oy * wp + ox))
                .collect();
            (seg, strips)
        };
        let strips = (0..images)
            .flat_map(|i| strips_of_image.iter().map(move |&s| i * image + s))
            .collect();
        ColumnOffsets {
            rows,
            strips,
            strips_per_image: strips_of_image.len(),
            seg,
            seg_stride: wp,
        }
    }
}

/// Row and strip offsets of a convolution's column matrix in a group of zero-padded images
/// ([`Geometry::column_offsets`]).
pub(crate) struct ColumnOffsets {
    rows: Vec<usize>,
    strips: Vec<usize>,
    strips_per_image: usize,
    seg: usize,
    seg_stride: usize,
}

impl ColumnOffsets {
    /// The column matrix of the first `images` zero-padded images in `xp`.
    pub fn of<'a>(&'a self, xp: &'a [f32], images: usize) -> Gathered<'a> {
        Gathered {
            data: xp,
            row_offsets: &self.rows,
            strip_offsets: &self.strips[..images * self.strips_per_image],
            seg: self.seg,
            seg_stride: self.seg_stride,
        }
    }
}

/// The weight of the [`adjoint`](Geometry::adjoint) convolution, `[cin, cout, kh, kw]`:
/// `W'[ci, co, ky, kx] = W[co, ci, kh − 1 − ky, kw − 1 − kx]`.
pub(crate) fn adjoint_weight(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let kk = g.kh * g.kw;
    let mut wt = vec![0.0; w.len()];
    for (co, w_co) in w.chunks_exact(g.cin * kk).enumerate() {
        for (ci, taps) in w_co.chunks_exact(kk).enumerate() {
            let dst = &mut wt[(ci * g.cout + co) * kk..][..kk];
            for (d, &v) in dst.iter_mut().zip(taps.iter().rev()) {
                *d = v;
            }
        }
    }
    wt
}

/// Direct forward of a single-channel, stride-1 convolution of one image:
/// `y[co, oy, ox] = b[co] + Σ_{ky,kx} w[co, ky, kx] · xp[oy + ky, ox + kx]`. 3×3 and 5×5
/// kernels take the register-blocked kernel.
pub(crate) fn direct_forward(
    g: &Geometry,
    xp: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    match g.kh * g.kw {
        9 if g.kh == 3 => direct_forward_taps::<9>(g, xp, w, bias, y),
        25 if g.kh == 5 => direct_forward_taps::<25>(g, xp, w, bias, y),
        _ => direct_forward_rows(g, xp, w, bias, y),
    }
}

/// The register-blocked forward: for each output channel its `T` weights sit in registers,
/// and each block of [`LANES`] outputs of a row is `T` multiply-adds of input vectors (read
/// from the padded plane, in L1) and one store; the channel's plane is written in order.
fn direct_forward_taps<const T: usize>(
    g: &Geometry,
    xp: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let (wo, p, wp) = (g.wo, g.out_pixels(), g.padded_w());
    let offsets = g.tap_offsets::<T>();
    for (co, (wc, yc)) in w.chunks_exact(T).zip(y.chunks_exact_mut(p)).enumerate() {
        let wc: &[f32; T] = wc.try_into().unwrap();
        let b = bias.map_or(0.0, |b| b[co]);
        for oy in 0..g.ho {
            for ox0 in (0..wo).step_by(LANES) {
                let base = oy * wp + ox0;
                let mut acc = [b; LANES];
                for t in 0..T {
                    let xv: &[f32; LANES] = xp[base + offsets[t]..][..LANES].try_into().unwrap();
                    for l in 0..LANES {
                        acc[l] = fmadd(wc[t], xv[l], acc[l]);
                    }
                }
                let at = oy * wo + ox0;
                if at + LANES <= p {
                    // A whole-register store. A short last block of a row spills into the
                    // following row, which is written after this one; a copy of only the
                    // valid values would call memcpy.
                    <&mut [f32; LANES]>::try_from(&mut yc[at..at + LANES])
                        .unwrap()
                        .copy_from_slice(&acc);
                } else {
                    for (o, a) in yc[at..].iter_mut().zip(acc) {
                        *o = a;
                    }
                }
            }
        }
    }
}

/// The plain forward for other kernel sizes: each tap is a multiply-add of a whole row.
fn direct_forward_rows(g: &Geometry, xp: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (kk, wo, wp) = (g.kh * g.kw, g.wo, g.padded_w());
    for (co, (wc, yc)) in w
        .chunks_exact(kk)
        .zip(y.chunks_exact_mut(g.out_pixels()))
        .enumerate()
    {
        yc.fill(bias.map_or(0.0, |b| b[co]));
        for (oy, out) in yc.chunks_exact_mut(wo).enumerate() {
            for ky in 0..g.kh {
                let row = &xp[(oy + ky) * wp..][..wp];
                for kx in 0..g.kw {
                    let wv = wc[ky * g.kw + kx];
                    for (o, &v) in out.iter_mut().zip(&row[kx..kx + wo]) {
                        *o += wv * v;
                    }
                }
            }
        }
    }
}

/// Direct weight gradient of a single-channel, stride-1 convolution of one image:
/// `dw[co, ky, kx] += Σ_{oy,ox} dy[co, oy, ox] · xp[oy + ky, ox + kx]`.
pub(crate) fn direct_weight_grad(g: &Geometry, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
    match g.kh * g.kw {
        9 if g.kh == 3 => direct_weight_grad_taps::<9>(g, xp, dy, dw),
        25 if g.kh == 5 => direct_weight_grad_taps::<25>(g, xp, dy, dw),
        _ => direct_weight_grad_rows(g, xp, dy, dw),
    }
}

/// The register-blocked weight gradient: for each output channel, `T` vector accumulators (one
/// per tap) run over the whole image, each block adding `dy`-block × input-block; the lanes
/// are summed once at the end. Lanes past the end of a row get a zero `dy`.
fn direct_weight_grad_taps<const T: usize>(g: &Geometry, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (wo, wp) = (g.wo, g.padded_w());
    let offsets = g.tap_offsets::<T>();
    // Lanes of each block of a row that lie inside the row (the last block may be short).
    let masks: Vec<[bool; LANES]> = (0..wo)
        .step_by(LANES)
        .map(|ox0| std::array::from_fn(|l| ox0 + l < wo))
        .collect();
    for (co, dwc) in dw.chunks_exact_mut(T).enumerate() {
        let mut acc = [[0.0f32; LANES]; T];
        for oy in 0..g.ho {
            for (ox0, mask) in (0..wo).step_by(LANES).zip(&masks) {
                let at = co * g.out_pixels() + oy * wo + ox0;
                // A whole-register load (reading past the row when the block is short), with
                // the lanes outside the row zeroed by a select, not a per-lane copy.
                let gv: [f32; LANES] = match dy.get(at..at + LANES) {
                    Some(raw) => {
                        let raw: &[f32; LANES] = raw.try_into().unwrap();
                        std::array::from_fn(|l| if mask[l] { raw[l] } else { 0.0 })
                    }
                    None => std::array::from_fn(|l| if mask[l] { dy[at + l] } else { 0.0 }),
                };
                let base = oy * wp + ox0;
                for t in 0..T {
                    let xv: &[f32; LANES] = xp[base + offsets[t]..][..LANES].try_into().unwrap();
                    for l in 0..LANES {
                        acc[t][l] = fmadd(gv[l], xv[l], acc[t][l]);
                    }
                }
            }
        }
        for (d, a) in dwc.iter_mut().zip(&acc) {
            *d += a.iter().sum::<f32>();
        }
    }
}

/// The plain weight gradient for other kernel sizes: one dot product per tap and row.
fn direct_weight_grad_rows(g: &Geometry, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (kk, wo, wp) = (g.kh * g.kw, g.wo, g.padded_w());
    for (dwc, dyc) in dw.chunks_exact_mut(kk).zip(dy.chunks_exact(g.out_pixels())) {
        for (oy, grow) in dyc.chunks_exact(wo).enumerate() {
            for ky in 0..g.kh {
                let row = &xp[(oy + ky) * wp..][..wp];
                for kx in 0..g.kw {
                    dwc[ky * g.kw + kx] +=
                        crate::vector::sum_map2(grow, &row[kx..kx + wo], |a, b| a * b);
                }
            }
        }
    }
}
