//! The im2col path: any convolution the other paths do not take (strided ones, 1×1 kernels,
//! images whose rows neither fill 16-pixel strips nor pay as wide rows, such as 6 or 3
//! pixels). The column matrix `cols` (`K × P`, see [`super`]) is written out, then
//! `Y = W · cols` is one GEMM; the backward is `dW += dY · colsᵀ` and `dcols = Wᵀ · dY`,
//! scattered back by col2im.
//!
//! - A larger image's `cols` is built one band of output rows at a time, sized to stay in L2
//!   ([`Geometry::band_rows`]); each worker thread keeps its buffer between calls.
//! - Small images are grouped ([`Geometry::group_images`]): the images of a group share one
//!   column matrix `K × images·P`, so one GEMM packs the weight once for the whole group and
//!   the weight gradient is one GEMM over `images·P` pixels rather than many thin ones. The
//!   group's output is computed into scratch and scattered to NCHW, bias added on the way.
//! - A 1×1 kernel with stride 1 and no padding skips im2col: the image is the column matrix.
//!   With a larger stride (ResNet's shortcuts) the column matrix is the image subsampled, read
//!   straight from every `s`-th row ([`Geometry::subsamples`]).
//!
//! ## im2col over a band of rows
//!
//! Row `r = (ci·kh + ky)·kw + kx` of the column matrix holds, for every output pixel
//! `(oy, ox)`, the input value under tap `(ky, kx)` of channel `ci`:
//! `cols[r][(oy − oy0)·Wo + ox] = x[ci, oy·s + ky − p, ox·s + kx − p]` (zero outside the
//! image). A band covers output rows `oy0..oy1`. [`col2im_band`] is the adjoint: it adds each
//! column entry back onto the input pixel it was copied from.

use std::cell::RefCell;

use super::geometry::Geometry;
use super::layout::{add_row, copy_row, gather_group, init_with_bias, pad_plane, scatter_group};
use super::{over_image_tasks, with_scratch, Grads, Needs, OutputGrad, Task};
use crate::gemm::{gemm, MatMut, MatRef};

/// The forward of one task's images `x_t` into `y_t`: one image band by band straight into
/// its output, several through one shared column matrix.
pub(super) fn forward_images(
    g: &Geometry,
    x_t: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y_t: &mut [f32],
) {
    let images = y_t.len() / g.out_image();
    let (k, p, cout) = (g.col_rows(), g.out_pixels(), g.cout);
    let w_mat = MatRef::new(w, cout, k);
    if images > 1 {
        let width = images * p;
        return with_scratch(k * width + cout * width, |scratch| {
            let (cols, out) = scratch.split_at_mut(k * width);
            for (i, x_i) in x_t.chunks_exact(g.in_image()).enumerate() {
                im2col_band(g, x_i, 0, g.ho, &mut cols[i * p..], width);
            }
            let out_mat = MatMut::new(out, cout, width);
            gemm(1.0, w_mat, MatRef::new(cols, k, width), 0.0, out_mat);
            scatter_group(g, out, p, g.wo, bias, y_t);
        });
    }
    // The bias initialises the output; the GEMM then accumulates onto it.
    let beta = init_with_bias(y_t, p, bias);
    if g.is_pointwise() {
        let x_mat = MatRef::new(x_t, g.cin, p);
        return gemm(1.0, w_mat, x_mat, beta, MatMut::new(y_t, cout, p));
    }
    let band_rows = g.band_rows();
    with_scratch(g.band_len(), |cols| {
        for oy0 in (0..g.ho).step_by(band_rows) {
            let oy1 = (oy0 + band_rows).min(g.ho);
            let band = (oy1 - oy0) * g.wo;
            let cols = &mut cols[..k * band];
            im2col_band(g, x_t, oy0, oy1, cols, band);
            let out = band_of(y_t, g, oy0, oy1);
            gemm(1.0, w_mat, MatRef::new(cols, k, band), beta, out);
        }
    });
}

/// The gradients of the input, weight and bias (each only if needed) for the whole batch.
pub(super) fn backward(g: &Geometry, x: &[f32], w: &[f32], dy: OutputGrad, needs: Needs) -> Grads {
    let dw_len = g.cout * g.col_rows();
    over_image_tasks(g, x, dy, g.group_images(), dw_len, needs, |task| {
        backward_images(g, w, task)
    })
}

/// One task's weight and input gradients. Several images gather their output gradient into
/// one `Cout × images·P` matrix `dY`; then `dW += dY·colsᵀ` and `dcols = Wᵀ·dY` are one GEMM
/// each over the group's column matrix (its buffer reused for `dcols` once `dW` is done), and
/// col2im scatters each image's columns back onto its input gradient. One image goes band by
/// band.
pub(super) fn backward_images(g: &Geometry, w: &[f32], task: Task) {
    let images = task.dy.len() / g.out_image();
    if images == 1 {
        return backward_image(g, w, task);
    }
    let Task { x, dy, dx, dw } = task;
    let (k, p, cout) = (g.col_rows(), g.out_pixels(), g.cout);
    let width = images * p;
    with_scratch(k * width + cout * width, |scratch| {
        let (cols, dy_mat) = scratch.split_at_mut(k * width);
        gather_group(g, dy, p, g.wo, dy_mat);
        let dy_mat = MatRef::new(dy_mat, cout, width);
        if let Some(dw) = dw {
            for (i, x_i) in x.chunks_exact(g.in_image()).enumerate() {
                im2col_band(g, x_i, 0, g.ho, &mut cols[i * p..], width);
            }
            let cols_t = MatRef::new(cols, k, width).t();
            gemm(1.0, dy_mat, cols_t, 1.0, MatMut::new(dw, cout, k));
        }
        if let Some(dx) = dx {
            let w_t = MatRef::new(w, cout, k).t();
            gemm(1.0, w_t, dy_mat, 0.0, MatMut::new(cols, k, width));
            for (i, dx_i) in dx.chunks_exact_mut(g.in_image()).enumerate() {
                col2im_band(g, &cols[i * p..], 0, g.ho, dx_i, width);
            }
        }
    });
}

/// One image's gradients: `dW += dY·colsᵀ`, `dx = col2im(Wᵀ·dY)`, band by band (for a 1×1
/// kernel, the image itself is `cols` and `Wᵀ·dY` is `dx`).
fn backward_image(g: &Geometry, w: &[f32], task: Task) {
    let Task {
        x,
        dy,
        mut dx,
        mut dw,
    } = task;
    let (k, p, cout) = (g.col_rows(), g.out_pixels(), g.cout);
    let w_t = MatRef::new(w, cout, k).t();
    if g.is_pointwise() {
        let dy_mat = MatRef::new(dy, cout, p);
        if let Some(dw) = dw {
            let x_t = MatRef::new(x, g.cin, p).t();
            gemm(1.0, dy_mat, x_t, 1.0, MatMut::new(dw, cout, k));
        }
        if let Some(dx) = dx {
            gemm(1.0, w_t, dy_mat, 0.0, MatMut::new(dx, g.cin, p));
        }
        return;
    }
    let (band_rows, band_len) = (g.band_rows(), g.band_len());
    with_scratch(2 * band_len, |scratch| {
        let (cols, dcols) = scratch.split_at_mut(band_len);
        for oy0 in (0..g.ho).step_by(band_rows) {
            let oy1 = (oy0 + band_rows).min(g.ho);
            let band = (oy1 - oy0) * g.wo;
            let dy_band = grad_band(dy, g, oy0, oy1);
            if let Some(dw) = dw.as_deref_mut() {
                let cols = &mut cols[..k * band];
                im2col_band(g, x, oy0, oy1, cols, band);
                let cols_t = MatRef::new(cols, k, band).t();
                gemm(1.0, dy_band, cols_t, 1.0, MatMut::new(dw, cout, k));
            }
            if let Some(dx) = dx.as_deref_mut() {
                let dcols = &mut dcols[..k * band];
                gemm(1.0, w_t, dy_band, 0.0, MatMut::new(dcols, k, band));
                col2im_band(g, dcols, oy0, oy1, dx, band);
            }
        }
    });
}

/// The `Cout × band` block of one image's output `[Cout, P]` for output rows `oy0..oy1`.
fn band_of<'a>(y_i: &'a mut [f32], g: &Geometry, oy0: usize, oy1: usize) -> MatMut<'a> {
    MatMut {
        data: &mut y_i[oy0 * g.wo..],
        rows: g.cout,
        cols: (oy1 - oy0) * g.wo,
        row_stride: g.out_pixels(),
        col_stride: 1,
    }
}

/// The same block of one image's output gradient, read-only.
fn grad_band<'a>(dy_i: &'a [f32], g: &Geometry, oy0: usize, oy1: usize) -> MatRef<'a> {
    MatRef {
        data: &dy_i[oy0 * g.wo..],
        rows: g.cout,
        cols: (oy1 - oy0) * g.wo,
        row_stride: g.out_pixels(),
        col_stride: 1,
    }
}

impl Geometry {
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

/// Fills the columns of output rows `oy0..oy1` of one image `x` (`[cin, h, w]`) into `cols`:
/// row `r` of the band is `cols[r·cols_stride..][..(oy1 − oy0)·wo]`. `cols_stride` is the band
/// width for a band of its own, or the width of a whole group when several images share one
/// matrix (`cols` then starts at this image's first column).
fn im2col_band(
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
    if g.subsamples() {
        return im2col_band_subsampled(g, x, oy0, oy1, cols, cols_stride);
    }
    im2col_band_strided(g, x, oy0, oy1, cols, cols_stride)
}

impl Geometry {
    /// A strided 1×1 kernel without padding (ResNet's shortcuts): its column matrix is the
    /// image subsampled, row `ci` holding `x[ci, oy·s, ox·s]`.
    fn subsamples(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad == 0
    }
}

/// [`im2col_band`] for a [subsampling](Geometry::subsamples) convolution: each output row is
/// every `s`-th value of every `s`-th input row. (The phase split of [`im2col_band_strided`]
/// would read all `s²` phases of every row to keep one.)
fn im2col_band_subsampled(
    g: &Geometry,
    x: &[f32],
    oy0: usize,
    oy1: usize,
    cols: &mut [f32],
    cols_stride: usize,
) {
    let s = g.stride;
    for (plane, row) in x.chunks_exact(g.h * g.w).zip(cols.chunks_mut(cols_stride)) {
        for (oy, dst) in (oy0..oy1).zip(row.chunks_exact_mut(g.wo)) {
            let src = plane[oy * s * g.w..][..g.w].iter().step_by(s);
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
        }
    }
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
        xp.resize(g.padded_plane_len(), 0.0);
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
fn col2im_band(
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
    if g.subsamples() && s > 1 {
        return col2im_band_subsampled(g, cols, oy0, oy1, dx, cols_stride);
    }
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

/// [`col2im_band`] for a [subsampling](Geometry::subsamples) convolution, the adjoint of
/// [`im2col_band_subsampled`]: each entry is added onto the one pixel it was read from.
fn col2im_band_subsampled(
    g: &Geometry,
    cols: &[f32],
    oy0: usize,
    oy1: usize,
    dx: &mut [f32],
    cols_stride: usize,
) {
    let s = g.stride;
    for (plane, row) in dx.chunks_exact_mut(g.h * g.w).zip(cols.chunks(cols_stride)) {
        for (oy, src) in (oy0..oy1).zip(row.chunks_exact(g.wo)) {
            let dst = plane[oy * s * g.w..][..g.w].iter_mut().step_by(s);
            dst.zip(src).for_each(|(d, &v)| *d += v);
        }
    }
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
