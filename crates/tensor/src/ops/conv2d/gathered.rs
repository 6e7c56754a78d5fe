//! The gathered path: stride-1 convolutions whose column matrix the GEMM reads in place from
//! the zero-padded images, never written out ([`gemm_gathered`]).
//!
//! Row `(ci, ky, kx)` of the columns is the padded plane of channel `ci` shifted by `(ky, kx)`,
//! so a strip of 16 consecutive output pixels reads 16 consecutive padded pixels per tap when
//! the rows fill whole strips of 16 (widths that are multiples of 16, or 8- and 4-pixel-wide
//! images whose pixel count is a multiple of 16: ResNet's 3×3 convolutions at 32, 16, 8 and 4
//! pixels). Rows that do not (24- and 12-pixel images, MNIST's 14) are read over *wide* rows
//! ([`Geometry::gathers_wide`]): each output row is computed as wide as the padded input,
//! `w + 2p` columns of which the last `2p` are garbage, so that any 16 consecutive outputs
//! read 16 consecutive padded pixels per tap, across row ends. The garbage columns cost
//! `(w + 2p)/w` times the work (1.08 at 24 pixels, 1.22 at 12): worth it up to 5/4, beyond
//! which (6- and 3-pixel images) im2col is cheaper. They are dropped when the output is copied
//! to NCHW, and the output gradient is zero there, so they add nothing to the weight gradient.
//!
//! The weight gradient multiplies by the columns' transpose ([`gemm_gathered_t`]), and the
//! input gradient is the [adjoint](Geometry::adjoint) convolution `dx = conv(dy, W')` with the
//! kernel flipped and its channel axes swapped, read in place from the zero-padded `dy` the
//! same way, so it needs no col2im. Small images are grouped as on the im2col path
//! ([`Geometry::group_images`]): a group's padded images sit one after another and one GEMM
//! covers them all, into a scratch that is then scattered to NCHW.

use super::geometry::{adjoint_weight, Geometry};
use super::layout::{gather_group, init_with_bias, pad_images, scatter_group};
use super::{over_image_tasks, with_scratch, Grads, Needs, OutputGrad, Task};
use crate::gemm::{gemm_gathered, gemm_gathered_t, Gathered, MatMut, MatRef, STRIP};

/// The forward of one task's images `x_t` into `y_t`, with the column offsets `cols` of a
/// group: one image (in whole strips) straight into its output, several (or wide rows)
/// through a scratch scattered to NCHW.
pub(super) fn forward_images(
    g: &Geometry,
    cols: &ColumnOffsets,
    x_t: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y_t: &mut [f32],
) {
    let images = y_t.len() / g.out_image();
    let w_mat = MatRef::new(w, g.cout, g.col_rows());
    if images == 1 && !g.gathers_wide() {
        // The bias initialises the output; the GEMM then accumulates onto it.
        let beta = init_with_bias(y_t, g.out_pixels(), bias);
        return with_scratch(g.padded_image_len(), |xp| {
            pad_images(g, x_t, xp);
            let y = MatMut::new(y_t, g.cout, g.out_pixels());
            gemm_gathered(1.0, w_mat, cols.of(xp, 1), beta, y);
        });
    }
    let (gp, width) = (g.gathered_out_pixels(), images * g.gathered_out_pixels());
    let xp_len = images * g.padded_image_len() + g.gather_slack();
    with_scratch(xp_len + g.cout * width, |scratch| {
        let (xp, out) = scratch.split_at_mut(xp_len);
        pad_group(g, x_t, xp);
        let out_mat = MatMut::new(out, g.cout, width);
        gemm_gathered(1.0, w_mat, cols.of(xp, images), 0.0, out_mat);
        scatter_group(g, out, gp, g.gathered_pitch(), bias, y_t);
    });
}

/// The gradients of the input, weight and bias (each only if needed) for the whole batch.
pub(super) fn backward(g: &Geometry, x: &[f32], w: &[f32], dy: OutputGrad, needs: Needs) -> Grads {
    let images = g.group_images();
    let gathering = Gathering::new(g, w, images, needs.x);
    let dw_len = g.cout * g.col_rows();
    over_image_tasks(g, x, dy, images, dw_len, needs, |task| {
        backward_images(g, &gathering, task)
    })
}

/// What the backward reads in place: the forward's column matrix (for the weight gradient)
/// and the adjoint convolution's, with its weight (for the input gradient).
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

    /// The adjoint convolution's weight as a `cin × cout·kh·kw` matrix (built only when the
    /// input gradient is needed).
    fn adjoint_weight(&self) -> MatRef<'_> {
        let adj = &self.adjoint;
        MatRef::new(&self.adjoint_w, adj.cout, adj.col_rows())
    }
}

/// One task's weight and input gradients: `dW += dY·colsᵀ` and `dx = W'·cols'(dY)`, both
/// column matrices read in place from zero-padded copies (of the images, of `dY`). One image
/// in whole strips reads and writes NCHW directly; several (or wide rows) gather `dY` into a
/// `Cout × images·gp` scratch first and scatter `dx` from one after.
fn backward_images(g: &Geometry, gather: &Gathering, task: Task) {
    let Task { x, dy, dx, dw } = task;
    let images = dy.len() / g.out_image();
    let adj = &gather.adjoint;
    if images == 1 && !g.gathers_wide() {
        let dy_mat = MatRef::new(dy, g.cout, g.out_pixels());
        if let Some(dw) = dw {
            with_scratch(g.padded_image_len(), |xp| {
                pad_images(g, x, xp);
                let dw = MatMut::new(dw, g.cout, g.col_rows());
                gemm_gathered_t(1.0, dy_mat, gather.cols.of(xp, 1), 1.0, dw);
            });
        }
        if let Some(dx) = dx {
            with_scratch(adj.padded_image_len(), |dyp| {
                pad_images(adj, dy, dyp);
                let dx = MatMut::new(dx, adj.cout, adj.out_pixels());
                let w_adj = gather.adjoint_weight();
                gemm_gathered(1.0, w_adj, gather.adjoint_cols.of(dyp, 1), 0.0, dx);
            });
        }
        return;
    }
    let (gp, width) = (g.gathered_out_pixels(), images * g.gathered_out_pixels());
    let (dx_gp, dx_width) = (
        adj.gathered_out_pixels(),
        images * adj.gathered_out_pixels(),
    );
    // The padded images (of x, then of dY), dY gathered, and the adjoint's output.
    let pad_len = images * g.padded_image_len().max(adj.padded_image_len())
        + g.gather_slack().max(adj.gather_slack());
    let dx_len = if dx.is_some() { g.cin * dx_width } else { 0 };
    with_scratch(pad_len + g.cout * width + dx_len, |scratch| {
        let (padded, rest) = scratch.split_at_mut(pad_len);
        let (dy_mat, dx_mat) = rest.split_at_mut(g.cout * width);
        if let Some(dw) = dw {
            gather_group(g, dy, gp, g.gathered_pitch(), dy_mat);
            pad_group(g, x, padded);
            let dy_mat = MatRef::new(dy_mat, g.cout, width);
            let dw = MatMut::new(dw, g.cout, g.col_rows());
            gemm_gathered_t(1.0, dy_mat, gather.cols.of(padded, images), 1.0, dw);
        }
        if let Some(dx) = dx {
            pad_group(adj, dy, padded);
            let dx_out = MatMut::new(dx_mat, g.cin, dx_width);
            gemm_gathered(
                1.0,
                gather.adjoint_weight(),
                gather.adjoint_cols.of(padded, images),
                0.0,
                dx_out,
            );
            scatter_group(adj, dx_mat, dx_gp, adj.gathered_pitch(), None, dx);
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

    /// The offsets that read the column matrix (`K × images·gathered_out_pixels`) of a group of
    /// `images` zero-padded images ([`pad_images`]) in place: row `(ci, ky, kx)` at
    /// `ci·plane + ky·wp + kx`; a strip of 16 output pixels of image `i` from `(oy, ox)` at
    /// `i·padded_image_len + oy·wp + ox`, in runs along the row (or across `16 / wo` rows), or,
    /// [wide](Self::gathers_wide), strip `s` at `i·padded_image_len + 16·s`.
    pub fn column_offsets(&self, images: usize) -> ColumnOffsets {
        debug_assert!(self.gathers());
        let (plane, wp, image) = (
            self.padded_plane_len(),
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
pub(super) struct ColumnOffsets {
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
