//! 2-D convolution (cross-correlation, as in PyTorch) with stride, zero padding and bias,
//! computed as im2col + GEMM (or a GEMM that reads the im2col matrix in place).
//!
//! [`reference`] is the same convolution as plain loops over the definition below, forward and
//! backward: read it first; every path here is tested against it.
//!
//! ## Forward
//!
//! For one image `x: [Cin, H, W]` and weight `W: [Cout, Cin, kh, kw]`, viewed as a
//! `Cout × K` matrix with `K = Cin·kh·kw`,
//!
//! ```text
//! y[co, oy, ox] = b[co] + Σ_{ci, ky, kx} W[co, ci, ky, kx] · x[ci, oy·s + ky − p, ox·s + kx − p]
//!             Y = W · cols          (Cout × P, P = Ho·Wo)
//! ```
//!
//! where `cols` (`K × P`) is the im2col matrix: column `(oy, ox)` lists the input values under
//! the kernel at that output position (zeros where it overhangs the padded border), and
//! `Ho = (H + 2p − kh)/s + 1` (floor), likewise `Wo`.
//!
//! ## Backward
//!
//! With `dY` the gradient of one image's output (`Cout × P`):
//!
//! ```text
//! dW += dY · colsᵀ              (Cout × K, summed over the batch)
//! db += Σ_P dY                  (per output channel)
//! dcols = Wᵀ · dY;  dx = col2im(dcols)
//! ```
//!
//! col2im is the adjoint of im2col: each entry of `dcols` is added back onto the input pixel it
//! was copied from. Both gradients are GEMMs, so the backward runs at GEMM speed like the
//! forward (rather than as a direct-loop transposed convolution).
//!
//! ## How it is scheduled
//!
//! - Small images are grouped ([`Geometry::group_images`]): `per_group` images whose outputs
//!   are each under 256 pixels share one column matrix `K × per_group·P`, so one GEMM packs the
//!   weight once for the whole group (ResNet's 4×4 stage would otherwise re-pack a
//!   512 × 4608 weight for every 16 columns), and the weight gradient is one GEMM over
//!   `per_group·P` pixels rather than `per_group` thin ones that each stream the whole
//!   `Cout × K` gradient through memory. The group's output is computed into scratch and
//!   scattered to NCHW (bias added on the way); its output gradient is gathered the same way
//!   for the backward.
//! - One rayon task per group (a single image for larger images); inside a task the GEMMs
//!   stay on the calling thread ([`gemm`] does not split inside rayon), so the two cores are
//!   never oversubscribed. With fewer groups than threads the groups run in turn and each
//!   GEMM is split instead.
//! - A larger image's `cols` is built one band of output rows at a time, sized to stay in L2
//!   ([`Geometry::band_rows`]); each worker thread keeps its buffer between calls.
//! - The weight gradient is accumulated per worker (rayon `fold`) and summed at the end
//!   (`reduce`); the input gradient of each image is written by its own task.
//! - When every row of the input and output fills whole strips of 16 pixels (widths that are
//!   multiples of 16, or 8- and 4-pixel-wide images whose pixel count is a multiple of 16) and
//!   the stride is 1 ([`Geometry::gathers`]: ResNet's 3×3 convolutions at 32, 16, 8 and 4
//!   pixels), no column matrix is written: each group of images is copied once into
//!   zero-padded planes and the GEMM reads the columns in place ([`gemm_gathered`]; row
//!   `(ci, ky, kx)` of the columns is the padded plane shifted by `(ky, kx)`). The weight
//!   gradient multiplies by their transpose ([`gemm_gathered_t`]), and the input gradient is
//!   the adjoint convolution `dx = conv(dy, W')` with the kernel flipped and its channel axes
//!   swapped, read in place from the zero-padded `dy` the same way, so it needs no col2im.
//! - Rows that do not fill whole strips (24- and 12-pixel images, MNIST's 14) are read in place
//!   too, over *wide* rows ([`Geometry::gathers_wide`]): each output row is computed as wide as
//!   the padded input, `w + 2p` columns of which the last `2p` are garbage, so that any 16
//!   consecutive outputs read 16 consecutive padded pixels per tap, across row ends. The
//!   garbage columns cost `(w + 2p)/w` times the work (1.08 at 24 pixels, 1.22 at 12): worth
//!   it up to 5/4, beyond which (6- and 3-pixel images) im2col is cheaper. They are dropped
//!   when the output is copied to NCHW, and the output gradient is zero there, so they add
//!   nothing to the weight gradient.
//! - A 1×1 kernel with stride 1 and no padding skips im2col: the image is the column matrix.
//! - With a single input channel and stride 1 (a network's first layer, `K = kh·kw` too thin
//!   for a GEMM) the forward and the weight gradient are direct loops over a zero-padded copy
//!   of the image: per output channel the weights stay in registers and each block of 16
//!   outputs is `kh·kw` fused multiply-adds; the weight gradient keeps one vector accumulator
//!   per tap.
//! - The input gradient is not computed when the input does not need one (the first layer).
//! - 3×3 kernels with stride 1 and padding 1, at the shapes where it measures faster
//!   ([`Geometry::winograd`]), take the [`winograd`] path instead: 16 (or 36) smaller GEMMs over
//!   transformed tiles, 2.25× (or 4×) fewer multiplications.

mod cpu_kernel;
mod pooled;
pub mod reference;
#[cfg(test)]
mod tests;
mod winograd;

#[doc(hidden)]
pub use winograd::{force_path, ConvPath, Tile};

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::pool::unpool2x2_plane;
use crate::gemm::{gemm, gemm_gathered, gemm_gathered_t, MatMut, MatRef};
use crate::tensor::Tensor;
use crate::vector::sum_map;
use cpu_kernel::{
    adjoint_weight, col2im_band, copy_row, direct_forward, direct_weight_grad, im2col_band,
    pad_images, pad_plane, ColumnOffsets, Geometry,
};

thread_local! {
    /// Per-thread band buffer(s), kept between calls so the conv allocates none in its loops.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, grown to at least `len` values (contents
/// unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// Checks the operands of a conv2d and derives its geometry, naming the op and the shapes
/// in every failure.
fn geometry(
    x: &[usize],
    w: &[usize],
    bias: Option<&[usize]>,
    stride: usize,
    pad: usize,
) -> Geometry {
    let &[n, cin, h, wd] = x else {
        panic!("conv2d: input {x:?} must have 4 axes [N, Cin, H, W]");
    };
    let &[cout, wcin, kh, kw] = w else {
        panic!("conv2d: weight {w:?} must have 4 axes [Cout, Cin, kh, kw]");
    };
    assert!(
        cin == wcin,
        "conv2d: input {x:?} has {cin} channels but weight {w:?} expects {wcin}"
    );
    if let Some(b) = bias {
        assert!(
            b == [cout],
            "conv2d: bias {b:?} must be [{cout}] to match weight {w:?}"
        );
    }
    assert!(stride >= 1, "conv2d: stride must be at least 1, got 0");
    assert!(
        kh >= 1 && kw >= 1 && cout >= 1 && cin >= 1,
        "conv2d: weight {w:?} has an empty axis"
    );
    assert!(
        h + 2 * pad >= kh && wd + 2 * pad >= kw,
        "conv2d: kernel {kh}×{kw} of weight {w:?} does not fit input {x:?} padded by {pad}"
    );
    Geometry {
        n,
        cin,
        h,
        w: wd,
        cout,
        kh,
        kw,
        stride,
        pad,
        ho: (h + 2 * pad - kh) / stride + 1,
        wo: (wd + 2 * pad - kw) / stride + 1,
    }
}

impl Tensor {
    /// 2-D convolution (cross-correlation) like `torch.nn.functional.conv2d`.
    ///
    /// `self`: `[N, Cin, H, W]`, `weight`: `[Cout, Cin, kh, kw]`, `bias`: `[Cout]`; zero padding
    /// of `padding` pixels on every side; output `[N, Cout, Ho, Wo]` with
    /// `Ho = (H + 2·padding − kh) / stride + 1`. Differentiable in all three operands.
    ///
    /// Panics with a message naming both shapes if they do not fit together.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Tensor {
        let g = geometry(
            self.shape(),
            weight.shape(),
            bias.map(|b| b.shape()),
            stride,
            padding,
        );
        let y = {
            let (x, w) = (self.data(), weight.data());
            let b = bias.map(|b| b.data());
            forward(&g, &x, &w, b.as_deref().map(Vec::as_slice))
        };
        record(g, y, [g.n, g.cout, g.ho, g.wo], (self, weight, bias), None)
    }
}

/// The op a convolution's output `y` (of `shape`) comes from, differentiable in `x`, `weight`
/// and `bias`. Its output gradient reaches [`backward`] as is, or, given the pool's window
/// `codes`, as the gradient of the fused 2×2 max-pool after it ([`OutputGrad::Pooled`]).
fn record(
    g: Geometry,
    y: Vec<f32>,
    shape: [usize; 4],
    (x, weight, bias): (&Tensor, &Tensor, Option<&Tensor>),
    codes: Option<Vec<u8>>,
) -> Tensor {
    let mut parents = vec![x, weight];
    parents.extend(bias);
    let (x_t, w_t) = (x.clone(), weight.clone());
    Tensor::from_op(y, &shape, &parents, move |dy, needs| {
        let (x, w) = (x_t.data(), w_t.data());
        let need_b = needs.get(2).copied().unwrap_or(false);
        let dy = match &codes {
            Some(codes) => OutputGrad::Pooled { dy, codes },
            None => OutputGrad::Dense(dy),
        };
        let (dx, dw, db) = backward(&g, &x, &w, dy, needs[0], needs[1], need_b);
        let mut grads = vec![dx, dw];
        if needs.len() > 2 {
            grads.push(db);
        }
        grads
    })
}

/// Whether to run one task per group of images (enough groups to keep every thread busy);
/// otherwise the groups run in turn and each GEMM is split over the threads instead.
fn per_group_tasks(groups: usize) -> bool {
    groups >= rayon::current_num_threads() && groups > 1
}

/// `Y = W · cols (+ b)` for the whole batch, one group of images ([`Geometry::group_images`])
/// at a time.
fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if let Some(tile) = g.winograd() {
        return winograd::forward(g, tile, x, w, bias);
    }
    let mut y = vec![0.0; g.n * g.out_image()];
    if g.n == 0 {
        return y;
    }
    let per_group = g.group_images();
    let cols = g.gathers().then(|| g.column_offsets(per_group));
    let run = |(y_g, x_g): (&mut [f32], &[f32])| forward_group(g, x_g, w, bias, cols.as_ref(), y_g);
    let (y_len, x_len) = (per_group * g.out_image(), per_group * g.in_image());
    if per_group_tasks(g.n.div_ceil(per_group)) {
        y.par_chunks_mut(y_len)
            .zip(x.par_chunks(x_len))
            .for_each(run);
    } else {
        y.chunks_mut(y_len).zip(x.chunks(x_len)).for_each(run);
    }
    y
}

/// The forward of a group of images `x_g` (`[per_group, cin, h, w]`) into `y_g`: one image goes
/// band by band straight into its output; several share one column matrix `K × per_group·P`
/// and one GEMM into a scratch `Cout × per_group·P`, which is then scattered to NCHW with the
/// bias added on the way. `cols` reads the column matrix in place when the geometry
/// [`gathers`](Geometry::gathers).
fn forward_group(
    g: &Geometry,
    x_g: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    cols: Option<&ColumnOffsets>,
    y_g: &mut [f32],
) {
    let per_group = y_g.len() / g.out_image();
    let wide = cols.is_some() && g.gathers_wide();
    if (per_group == 1 && !wide) || g.is_direct() {
        for (y_i, x_i) in y_g
            .chunks_exact_mut(g.out_image())
            .zip(x_g.chunks_exact(g.in_image()))
        {
            forward_image(g, x_i, w, bias, cols, y_i);
        }
        return;
    }
    let (k, p, cout) = (g.col_rows(), g.out_pixels(), g.cout);
    let (gp, pitch) = match cols {
        Some(_) => (g.gathered_out_pixels(), g.gathered_pitch()),
        None => (p, g.wo),
    };
    let width = per_group * gp;
    let cols_len = match cols {
        Some(_) => per_group * g.padded_image_len() + g.gather_slack(),
        None => k * width,
    };
    with_scratch(cols_len + cout * width, |scratch| {
        let (cols_buf, out) = scratch.split_at_mut(cols_len);
        let w_mat = MatRef::new(w, cout, k);
        let out_mat = MatMut::new(out, cout, width);
        match cols {
            Some(cols) => {
                pad_group(g, x_g, cols_buf);
                gemm_gathered(1.0, w_mat, cols.of(cols_buf, per_group), 0.0, out_mat);
            }
            None => {
                for (i, x_i) in x_g.chunks_exact(g.in_image()).enumerate() {
                    im2col_band(g, x_i, 0, g.ho, &mut cols_buf[i * p..], width);
                }
                gemm(1.0, w_mat, MatRef::new(cols_buf, k, width), 0.0, out_mat);
            }
        }
        for (i, y_i) in y_g.chunks_exact_mut(g.out_image()).enumerate() {
            for (co, y_c) in y_i.chunks_exact_mut(p).enumerate() {
                let src = &out[co * width + i * gp..][..gp];
                narrow_rows(y_c, src, g.wo, pitch, bias.map(|b| b[co]));
            }
        }
    });
}

/// Copies the images `x_g` into zero-padded planes at the start of `buf` ([`pad_images`])
/// and zeroes the rest of it (the slack a wide column matrix reads past them).
fn pad_group(g: &Geometry, x_g: &[f32], buf: &mut [f32]) {
    let used = x_g.len() / g.in_image() * g.padded_image_len();
    let (planes, slack) = buf.split_at_mut(used);
    pad_images(g, x_g, planes);
    slack.fill(0.0);
}

/// Copies one channel's rows of `wo` pixels, which start `pitch` apart in `src` (a gathered
/// output's columns, [`Geometry::gathered_pitch`]), back to back into `dst`, adding `bias`.
fn narrow_rows(dst: &mut [f32], src: &[f32], wo: usize, pitch: usize, bias: Option<f32>) {
    let (row, pitch) = if pitch == wo {
        (dst.len(), dst.len()) // rows already back to back: one run
    } else {
        (wo, pitch)
    };
    for (d, s) in dst.chunks_exact_mut(row).zip(src.chunks(pitch)) {
        match bias {
            Some(bv) => d.iter_mut().zip(s).for_each(|(d, &v)| *d = v + bv),
            None => copy_row(d, &s[..row]),
        }
    }
}

/// The inverse of [`narrow_rows`] (without a bias): the rows of `wo` pixels of `src` placed
/// `pitch` apart in `dst`, the columns between them and after the last one zero.
fn widen_rows(dst: &mut [f32], src: &[f32], wo: usize, pitch: usize) {
    if pitch == wo && dst.len() == src.len() {
        return copy_row(dst, src);
    }
    dst.fill(0.0);
    for (d, s) in dst.chunks_mut(pitch).zip(src.chunks_exact(wo)) {
        copy_row(&mut d[..wo], s);
    }
}

/// One image's forward: `y_i = W · cols(x_i) + b`, read in place from the zero-padded image
/// when `cols` is given, otherwise band by band.
fn forward_image(
    g: &Geometry,
    x_i: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    cols: Option<&ColumnOffsets>,
    y_i: &mut [f32],
) {
    let (k, p, wo) = (g.col_rows(), g.out_pixels(), g.wo);
    if g.is_direct() && !g.is_pointwise() {
        return with_scratch(g.direct_scratch_len(), |xp| {
            pad_plane(g, x_i, xp);
            direct_forward(g, xp, w, bias, y_i);
        });
    }
    // The bias initialises the output; the GEMM then accumulates onto it.
    let beta = match bias {
        Some(b) => {
            for (row, &bv) in y_i.chunks_exact_mut(p).zip(b) {
                row.fill(bv);
            }
            1.0
        }
        None => 0.0,
    };
    let w_mat = MatRef::new(w, g.cout, k);
    if g.is_pointwise() {
        let x_mat = MatRef::new(x_i, g.cin, p);
        return gemm(1.0, w_mat, x_mat, beta, MatMut::new(y_i, g.cout, p));
    }
    if let Some(cols) = cols {
        debug_assert!(
            !g.gathers_wide(),
            "wide columns go through forward_group's scratch"
        );
        return with_scratch(g.padded_image_len(), |xp| {
            pad_images(g, x_i, xp);
            gemm_gathered(
                1.0,
                w_mat,
                cols.of(xp, 1),
                beta,
                MatMut::new(y_i, g.cout, p),
            );
        });
    }
    let band_rows = g.band_rows();
    with_scratch(g.band_len(), |cols| {
        for oy0 in (0..g.ho).step_by(band_rows) {
            let oy1 = (oy0 + band_rows).min(g.ho);
            let band = (oy1 - oy0) * wo;
            let cols = &mut cols[..k * band];
            im2col_band(g, x_i, oy0, oy1, cols, band);
            gemm(
                1.0,
                w_mat,
                MatRef::new(cols, k, band),
                beta,
                out_band(y_i, g, oy0, oy1),
            );
        }
    });
}

/// The `Cout × band` block of one image's output `[Cout, P]` for output rows `oy0..oy1`.
fn out_band<'a>(y_i: &'a mut [f32], g: &Geometry, oy0: usize, oy1: usize) -> MatMut<'a> {
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

/// The gradient of the convolution's output, as the backward receives it.
#[derive(Clone, Copy)]
enum OutputGrad<'a> {
    /// `[n, cout, ho, wo]`, as is.
    Dense(&'a [f32]),
    /// Of a convolution followed by ReLU and a 2×2 max-pool ([`Tensor::conv2d_relu_max_pool2d`]):
    /// the pooled output's gradient `[n, cout, ho/2, wo/2]` and the pool's window codes. Each
    /// group's dense gradient is rebuilt from these in scratch.
    Pooled { dy: &'a [f32], codes: &'a [u8] },
}

thread_local! {
    /// Per-thread buffer for one group's whole convolution output, or its output gradient, in
    /// the fused conv + pool op (separate from [`SCRATCH`], which the group's convolution uses
    /// meanwhile).
    static OUTPUT_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl OutputGrad<'_> {
    /// Runs `f` on the dense output gradient of images `i0..i1`.
    fn of_images<R>(&self, g: &Geometry, i0: usize, i1: usize, f: impl FnOnce(&[f32]) -> R) -> R {
        let span = i0 * g.out_image()..i1 * g.out_image();
        match *self {
            OutputGrad::Dense(dy) => f(&dy[span]),
            OutputGrad::Pooled { dy, codes } => OUTPUT_SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                s.resize(span.len(), 0.0);
                let pooled = (g.ho / 2) * (g.wo / 2);
                let planes = (i0 * g.cout..i1 * g.cout).map(|p| p * pooled..(p + 1) * pooled);
                for (dense, plane) in s.chunks_exact_mut(g.out_pixels()).zip(planes) {
                    let dense = as_uninit(dense);
                    unpool2x2_plane(&dy[plane.clone()], &codes[plane], g.wo, dense);
                }
                f(&s)
            }),
        }
    }
}

/// A buffer of initialised values viewed as writable-only.
fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and every value written through
    // the view is an initialised `f32`, so the slice stays initialised.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Per-worker gradient accumulators of the weight (`Cout × K` on the GEMM path, the
/// transformed `dU` on the Winograd path) and the bias.
struct Accum {
    dw: Vec<f32>,
    db: Vec<f32>,
}

impl Accum {
    /// Zeroed accumulators of `dw_len` weight-gradient values (0 if `!need_w`) and, if
    /// `need_b`, one bias value per output channel.
    fn zeros(g: &Geometry, dw_len: usize, need_w: bool, need_b: bool) -> Accum {
        Accum {
            dw: vec![0.0; if need_w { dw_len } else { 0 }],
            db: vec![0.0; if need_b { g.cout } else { 0 }],
        }
    }

    fn merge(mut self, other: Accum) -> Accum {
        self.dw.iter_mut().zip(&other.dw).for_each(|(a, b)| *a += b);
        self.db.iter_mut().zip(&other.db).for_each(|(a, b)| *a += b);
        self
    }
}

type Grads = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>);

/// What the backward of a convolution that [`gathers`](Geometry::gathers) reads in place: the
/// forward's column matrix (for the weight gradient) and the adjoint convolution's, with its
/// weight (for the input gradient, `dx = conv(dy, W')`, with no col2im).
struct Gathering {
    cols: ColumnOffsets,
    adjoint: Geometry,
    adjoint_cols: ColumnOffsets,
    adjoint_w: Vec<f32>,
}

impl Gathering {
    /// For groups of up to `images` images.
    fn new(g: &Geometry, w: &[f32], images: usize, need_x: bool) -> Gathering {
        let adjoint = g.adjoint();
        Gathering {
            cols: g.column_offsets(images),
            adjoint,
            adjoint_cols: adjoint.column_offsets(images),
            adjoint_w: if need_x {
                adjoint_weight(g, w)
            } else {
                Vec::new()
            },
        }
    }
}

/// Gradients of the input, weight and bias (each only if needed) for the whole batch, one
/// group of images at a time; with enough groups they run as rayon tasks, each with its own
/// weight-gradient accumulator (at most two per thread), summed at the end.
fn backward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: OutputGrad,
    need_x: bool,
    need_w: bool,
    need_b: bool,
) -> Grads {
    if let Some(tile) = g.winograd() {
        return winograd::backward(g, tile, x, w, dy, need_x, need_w, need_b);
    }
    let per_group = g.group_images();
    let gathering = g.gathers().then(|| Gathering::new(g, w, per_group, need_x));
    let dw_len = g.cout * g.col_rows();
    let (dx, acc) = over_image_tasks(
        g,
        per_group,
        dw_len,
        (need_x, need_w, need_b),
        |acc, i0, i1, dx_g| {
            let x_g = &x[i0 * g.in_image()..i1 * g.in_image()];
            dy.of_images(g, i0, i1, |dy_g| {
                backward_group(g, x_g, w, gathering.as_ref(), dy_g, dx_g, acc, need_w)
            });
        },
    );
    (dx, need_w.then_some(acc.dw), need_b.then_some(acc.db))
}

/// The backward's schedule, shared by the GEMM and Winograd paths: the batch cut into tasks of
/// `task_images` images, `step(acc, i0, i1, dx)` run on each (images `i0..i1`, their slice of
/// the input gradient if `need_x`), one task per rayon piece when there are enough tasks to
/// keep every thread busy, else in turn (each GEMM then splits instead). The weight and bias
/// gradients (`dw_len` values, `Cout`) are accumulated per worker (rayon `fold`) and summed at
/// the end (`reduce`); each task writes its own images' input gradient.
fn over_image_tasks(
    g: &Geometry,
    task_images: usize,
    dw_len: usize,
    (need_x, need_w, need_b): (bool, bool, bool),
    step: impl Fn(&mut Accum, usize, usize, Option<&mut [f32]>) + Sync + Send,
) -> (Option<Vec<f32>>, Accum) {
    let tasks = g.n.div_ceil(task_images);
    let mut dx = need_x.then(|| vec![0.0; g.n * g.in_image()]);
    let dx_parts: Vec<Option<&mut [f32]>> = match dx.as_mut() {
        Some(d) => d
            .chunks_mut((task_images * g.in_image()).max(1))
            .map(Some)
            .collect(),
        None => (0..tasks).map(|_| None).collect(),
    };
    let new_acc = || Accum::zeros(g, dw_len, need_w, need_b);
    let run = |mut acc: Accum, (t, dx_t): (usize, Option<&mut [f32]>)| {
        let (i0, i1) = (t * task_images, ((t + 1) * task_images).min(g.n));
        step(&mut acc, i0, i1, dx_t);
        acc
    };
    let acc = if per_group_tasks(tasks) {
        // At most two pieces per thread (room to balance a noisy machine), so the zeroing and
        // summing of the accumulators (`Cout × K`, 9 MB for a 512 → 512 layer) stays small.
        let min_len = tasks.div_ceil(2 * rayon::current_num_threads()).max(1);
        dx_parts
            .into_par_iter()
            .enumerate()
            .with_min_len(min_len)
            .fold(new_acc, run)
            .reduce_with(Accum::merge)
    } else {
        Some(dx_parts.into_iter().enumerate().fold(new_acc(), run))
    }
    .unwrap_or_else(new_acc);
    (dx, acc)
}

/// A group's contribution. One image (or the direct kernels) goes band by band through
/// [`backward_image`]; several images gather their output gradient into one `Cout × per_group·P`
/// matrix `dY`, then `dW += dY·colsᵀ` and `dcols = Wᵀ·dY` are one GEMM each over the
/// group's shared column matrix (reused for `dcols` once `dW` is done), and col2im scatters
/// each image's columns back onto its input gradient.
#[allow(clippy::too_many_arguments)]
fn backward_group(
    g: &Geometry,
    x_g: &[f32],
    w: &[f32],
    gathering: Option<&Gathering>,
    dy_g: &[f32],
    dx_g: Option<&mut [f32]>,
    acc: &mut Accum,
    need_w: bool,
) {
    let per_group = dy_g.len() / g.out_image();
    let (k, p, cout) = (g.col_rows(), g.out_pixels(), g.cout);
    let wide = gathering.is_some() && g.gathers_wide();
    if (per_group == 1 && !wide) || g.is_direct() {
        let mut dx_parts = dx_g.map(|d| d.chunks_exact_mut(g.in_image()));
        for (x_i, dy_i) in x_g
            .chunks_exact(g.in_image())
            .zip(dy_g.chunks_exact(g.out_image()))
        {
            let dx_i = dx_parts.as_mut().and_then(|d| d.next());
            backward_image(g, x_i, w, gathering, dy_i, dx_i, acc, need_w);
        }
        return;
    }
    for dy_i in dy_g.chunks_exact(g.out_image()) {
        for (db, row) in acc.db.iter_mut().zip(dy_i.chunks_exact(p)) {
            *db += sum_map(row, |v| v);
        }
    }
    if !need_w && dx_g.is_none() {
        return;
    }
    let (gp, pitch) = match gathering {
        Some(_) => (g.gathered_out_pixels(), g.gathered_pitch()),
        None => (p, g.wo),
    };
    let width = per_group * gp;
    // The adjoint convolution's output (the input gradient): columns per image, row pitch.
    let in_plane = g.h * g.w;
    let (dx_gp, dx_pitch) = gathering.map_or((0, 0), |gather| {
        (
            gather.adjoint.gathered_out_pixels(),
            gather.adjoint.gathered_pitch(),
        )
    });
    let in_width = per_group * dx_gp;
    // The column matrix (or the padded images it is read from), dY, and, when the input
    // gradient is the adjoint convolution, its output before the scatter to NCHW.
    let (cols_len, dx_len) = match gathering {
        Some(gather) => (
            per_group * g.padded_image_len().max(gather.adjoint.padded_image_len())
                + g.gather_slack().max(gather.adjoint.gather_slack()),
            g.cin * in_width,
        ),
        None => (k * width, 0),
    };
    with_scratch(cols_len + cout * width + dx_len, |scratch| {
        let (cols, rest) = scratch.split_at_mut(cols_len);
        let (dy_mat, dx_mat) = rest.split_at_mut(cout * width);
        for (i, dy_i) in dy_g.chunks_exact(g.out_image()).enumerate() {
            for (co, src) in dy_i.chunks_exact(p).enumerate() {
                widen_rows(&mut dy_mat[co * width + i * gp..][..gp], src, g.wo, pitch);
            }
        }
        let dy_mat = MatRef::new(dy_mat, cout, width);
        let dw = MatMut::new(&mut acc.dw, cout, k);
        match (gathering, need_w) {
            (Some(gather), true) => {
                pad_group(g, x_g, cols);
                gemm_gathered_t(1.0, dy_mat, gather.cols.of(cols, per_group), 1.0, dw);
            }
            (None, true) => {
                for (i, x_i) in x_g.chunks_exact(g.in_image()).enumerate() {
                    im2col_band(g, x_i, 0, g.ho, &mut cols[i * p..], width);
                }
                gemm(1.0, dy_mat, MatRef::new(cols, k, width).t(), 1.0, dw);
            }
            (_, false) => {}
        }
        let Some(dx_g) = dx_g else { return };
        match gathering {
            Some(gather) => {
                let adj = &gather.adjoint;
                pad_group(adj, dy_g, cols);
                let w_adj = MatRef::new(&gather.adjoint_w, adj.cout, adj.col_rows());
                let dx = MatMut::new(dx_mat, g.cin, in_width);
                gemm_gathered(1.0, w_adj, gather.adjoint_cols.of(cols, per_group), 0.0, dx);
                for (i, dx_i) in dx_g.chunks_exact_mut(g.in_image()).enumerate() {
                    for (ci, dst) in dx_i.chunks_exact_mut(in_plane).enumerate() {
                        let src = &dx_mat[ci * in_width + i * dx_gp..][..dx_gp];
                        narrow_rows(dst, src, g.w, dx_pitch, None);
                    }
                }
            }
            None => {
                let w_t = MatRef::new(w, cout, k).t();
                gemm(1.0, w_t, dy_mat, 0.0, MatMut::new(cols, k, width));
                for (i, dx_i) in dx_g.chunks_exact_mut(g.in_image()).enumerate() {
                    col2im_band(g, &cols[i * p..], 0, g.ho, dx_i, width);
                }
            }
        }
    });
}

/// One image's contribution: `dW += dY·colsᵀ`, `db += Σ dY`, `dx_i = col2im(Wᵀ·dY)` (or,
/// given a [`Gathering`], `dx_i = W'·cols'(dY)`, both column matrices read in place).
#[allow(clippy::too_many_arguments)]
fn backward_image(
    g: &Geometry,
    x_i: &[f32],
    w: &[f32],
    gathering: Option<&Gathering>,
    dy_i: &[f32],
    dx_i: Option<&mut [f32]>,
    acc: &mut Accum,
    need_w: bool,
) {
    let (k, p) = (g.col_rows(), g.out_pixels());
    for (db, row) in acc.db.iter_mut().zip(dy_i.chunks_exact(p)) {
        *db += sum_map(row, |v| v);
    }
    if let Some(gather) = gathering {
        debug_assert!(
            !g.gathers_wide(),
            "wide columns go through backward_group's scratch"
        );
        let dy_mat = MatRef::new(dy_i, g.cout, p);
        if need_w {
            with_scratch(g.padded_image_len(), |xp| {
                pad_images(g, x_i, xp);
                let dw = MatMut::new(&mut acc.dw, g.cout, k);
                gemm_gathered_t(1.0, dy_mat, gather.cols.of(xp, 1), 1.0, dw);
            });
        }
        if let Some(dx_i) = dx_i {
            let adj = &gather.adjoint;
            with_scratch(adj.padded_image_len(), |dyp| {
                pad_images(adj, dy_i, dyp);
                let w_adj = MatRef::new(&gather.adjoint_w, adj.cout, adj.col_rows());
                let dx = MatMut::new(dx_i, adj.cout, adj.out_pixels());
                gemm_gathered(1.0, w_adj, gather.adjoint_cols.of(dyp, 1), 0.0, dx);
            });
        }
        return;
    }
    let w_mat = MatRef::new(w, g.cout, k);
    if g.is_pointwise() {
        let dy_mat = MatRef::new(dy_i, g.cout, p);
        if need_w {
            let x_mat = MatRef::new(x_i, g.cin, p);
            gemm(
                1.0,
                dy_mat,
                x_mat.t(),
                1.0,
                MatMut::new(&mut acc.dw, g.cout, k),
            );
        }
        if let Some(dx_i) = dx_i {
            gemm(1.0, w_mat.t(), dy_mat, 0.0, MatMut::new(dx_i, g.cin, p));
        }
        return;
    }
    let mut need_w = need_w;
    if need_w && g.is_direct() && !g.is_pointwise() {
        with_scratch(g.direct_scratch_len(), |xp| {
            pad_plane(g, x_i, xp);
            direct_weight_grad(g, xp, dy_i, &mut acc.dw);
        });
        need_w = false;
    }
    if !need_w && dx_i.is_none() {
        return;
    }
    let band_rows = g.band_rows();
    let band_len = g.band_len();
    let mut dx_i = dx_i;
    with_scratch(2 * band_len, |scratch| {
        let (cols, dcols) = scratch.split_at_mut(band_len);
        for oy0 in (0..g.ho).step_by(band_rows) {
            let oy1 = (oy0 + band_rows).min(g.ho);
            let band = (oy1 - oy0) * g.wo;
            let dy_band = grad_band(dy_i, g, oy0, oy1);
            if need_w {
                let cols = &mut cols[..k * band];
                im2col_band(g, x_i, oy0, oy1, cols, band);
                gemm(
                    1.0,
                    dy_band,
                    MatRef::new(cols, k, band).t(),
                    1.0,
                    MatMut::new(&mut acc.dw, g.cout, k),
                );
            }
            if let Some(dx_i) = dx_i.as_deref_mut() {
                let dcols = &mut dcols[..k * band];
                gemm(1.0, w_mat.t(), dy_band, 0.0, MatMut::new(dcols, k, band));
                col2im_band(g, dcols, oy0, oy1, dx_i, band);
            }
        }
    });
}
