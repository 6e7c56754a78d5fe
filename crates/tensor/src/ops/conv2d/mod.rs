//! 2-D convolution (cross-correlation, as in PyTorch) with stride, zero padding and bias,
//! computed as GEMMs over the im2col matrix (written out, or read in place), by Winograd's
//! minimal filtering, or by direct loops: one path per shape (see *Paths* below).
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
//! ## Paths: which shapes take which kernels
//!
//! One convolution takes one path, chosen by [`Geometry::path`] from its shape alone; each
//! path is a file with the forward of one task's images and the backward of the batch:
//!
//! | path | shapes | why |
//! |---|---|---|
//! | [`direct`] | one input channel, stride 1 (a first layer) | `K = kh·kw` is too thin for a GEMM: loops with the weights in registers |
//! | [`winograd`] | 3×3, stride 1, padding 1, ≥ 16 channels in and out, ≥ 3 pixels a side ([`Geometry::winograd`]) | 2.25× (F(2×2)) or 4× (F(4×4)) fewer multiplications |
//! | [`gathered`] | other stride-1 shapes whose rows fill 16-pixel strips, or waste at most a quarter as wide rows ([`Geometry::gathers`]) | the GEMM reads the column matrix in place from the padded image: no im2col, no col2im |
//! | [`im2col`] | everything else: strided, 1×1, rows too short to gather (6 and 3 pixels wide, say) | the column matrix written out band by band (or per group of small images), then one GEMM |
//!
//! [`Tensor::conv2d_relu_max_pool2d`] ([`pooled`]) runs the same paths with a ReLU and a 2×2
//! max-pool fused after them.
//!
//! ## How it is scheduled
//!
//! - The batch is cut into tasks of a few images: one per group of small images that share a
//!   column matrix ([`Geometry::group_images`]) or a block of Winograd tiles, a single image
//!   for larger ones. One rayon task per such piece when there are enough of them to keep every
//!   thread busy; inside a task the GEMMs stay on the calling thread ([`gemm`] does not split
//!   inside rayon), so the two cores are never oversubscribed. With fewer pieces than threads
//!   they run in turn and each GEMM is split instead.
//! - The backward ([`over_image_tasks`]) accumulates the weight and bias gradients per worker
//!   (rayon `fold`) and sums them at the end (`reduce`); each task writes its own images'
//!   input gradient, and none is computed when the input does not need one (a first layer).
//! - The output and the input gradient are fresh buffers that no serial pass zeroes first:
//!   Winograd's output transform writes every value, and the GEMM paths zero each task's
//!   slice in the task, in parallel, just before they write it.
//! - Buffers are per thread ([`with_scratch`]) and kept between calls, so the loops allocate
//!   nothing.
//!
//! [`gemm`]: crate::gemm::gemm

mod direct;
mod gathered;
mod geometry;
mod im2col;
mod layout;
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
use crate::tensor::Tensor;
use crate::vector::{as_uninit, sum_map};
use geometry::Geometry;

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
    crate::profile::describe(|| {
        let stride = match g.stride {
            1 => String::new(),
            s => format!(", stride {s}"),
        };
        let pool = if codes.is_some() {
            ", ReLU and max-pool"
        } else {
            ""
        };
        format!(
            "{:?}, {}→{} {}×{}{stride} at {}×{}{pool}",
            g.path(),
            g.cin,
            g.cout,
            g.kh,
            g.kw,
            g.h,
            g.w
        )
    });
    let mut parents = vec![x, weight];
    parents.extend(bias);
    let (x_t, w_t, bias_given) = (x.clone(), weight.clone(), bias.is_some());
    Tensor::from_op(y, &shape, &parents, move |dy, needs| {
        let (x, w) = (x_t.data(), w_t.data());
        let dy = match &codes {
            Some(codes) => OutputGrad::Pooled { dy, codes },
            None => OutputGrad::Dense(dy),
        };
        let needs = Needs {
            x: needs[0],
            w: needs[1],
            b: needs.get(2).copied().unwrap_or(false),
        };
        let (dx, dw, db) = backward(&g, &x, &w, dy, needs);
        let mut grads = vec![dx, dw];
        if bias_given {
            grads.push(db);
        }
        grads
    })
}

/// Whether `tasks` pieces of the batch run as rayon tasks (enough of them to keep every
/// thread busy); otherwise they run in turn and each GEMM is split over the threads instead.
fn parallel_tasks(tasks: usize) -> bool {
    tasks >= rayon::current_num_threads() && tasks > 1
}

/// The kernels a convolution runs (see *Paths* in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Direct,
    Winograd(Tile),
    Gathered,
    Im2col,
}

impl Geometry {
    /// The path of this convolution: the first of the table in the module docs that applies.
    fn path(&self) -> Path {
        if self.is_direct() && !self.is_pointwise() {
            Path::Direct
        } else if let Some(tile) = self.winograd() {
            Path::Winograd(tile)
        } else if self.gathers() {
            Path::Gathered
        } else {
            Path::Im2col
        }
    }
}

/// A convolution's forward on its path, with what all of its tasks share (the column offsets
/// of a gathered group, Winograd's transformed filters).
enum Forward {
    Direct,
    Winograd(winograd::Filters),
    Gathered(gathered::ColumnOffsets),
    Im2col,
}

impl Forward {
    fn new(g: &Geometry, w: &[f32]) -> Forward {
        match g.path() {
            Path::Direct => Forward::Direct,
            Path::Winograd(tile) => Forward::Winograd(winograd::Filters::new(g, tile, w)),
            Path::Gathered => Forward::Gathered(g.column_offsets(g.group_images())),
            Path::Im2col => Forward::Im2col,
        }
    }

    /// Images per task.
    fn task_images(&self, g: &Geometry) -> usize {
        match self {
            Forward::Winograd(filters) => filters.task_images(),
            _ => g.group_images(),
        }
    }

    /// The forward of one task's images `x_t` (`[images, cin, h, w]`) into `y_t`, every value
    /// of which it overwrites.
    fn run(&self, g: &Geometry, x_t: &[f32], w: &[f32], bias: Option<&[f32]>, y_t: &mut [f32]) {
        match self {
            Forward::Direct => direct::forward_images(g, x_t, w, bias, y_t),
            Forward::Winograd(filters) => filters.forward_images(g, x_t, bias, as_uninit(y_t)),
            Forward::Gathered(cols) => gathered::forward_images(g, cols, x_t, w, bias, y_t),
            Forward::Im2col => im2col::forward_images(g, x_t, w, bias, y_t),
        }
    }

    /// [`run`](Self::run) into a fresh, uninitialised `y_t`. Winograd takes it as it is; the
    /// other paths' kernels write through `&mut [f32]`, so their slice is zeroed first, here,
    /// in the task (in parallel, and just before it is written).
    fn run_fresh(
        &self,
        g: &Geometry,
        x_t: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        y_t: &mut [MaybeUninit<f32>],
    ) {
        match self {
            Forward::Winograd(filters) => filters.forward_images(g, x_t, bias, y_t),
            _ => self.run(g, x_t, w, bias, zeroed(y_t)),
        }
    }
}

/// `y = conv2d(x, w) + b` for the whole batch, task by task ([`Forward`]); each task writes
/// its own images' slice of the fresh output whole.
fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let len = g.n * g.out_image();
    let mut y = Vec::with_capacity(len);
    if len > 0 {
        let fwd = Forward::new(g, w);
        let images = fwd.task_images(g);
        let run =
            |(y_t, x_t): (&mut [MaybeUninit<f32>], &[f32])| fwd.run_fresh(g, x_t, w, bias, y_t);
        let (y_len, x_len) = (images * g.out_image(), images * g.in_image());
        let out = &mut y.spare_capacity_mut()[..len];
        if parallel_tasks(g.n.div_ceil(images)) {
            out.par_chunks_mut(y_len)
                .zip(x.par_chunks(x_len))
                .for_each(run);
        } else {
            out.chunks_mut(y_len).zip(x.chunks(x_len)).for_each(run);
        }
    }
    // SAFETY: `len` values are allocated, and the tasks wrote every one of them: the chunks
    // cover `0..len`, and each task writes its chunk whole (`Forward::run_fresh`).
    unsafe { y.set_len(len) };
    y
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

/// A fresh buffer set to zeros, from then on an ordinary (initialised) slice.
fn zeroed(v: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    v.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written.
    unsafe { &mut *(v as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Which gradients a backward computes (those of the operands that need one).
#[derive(Clone, Copy, Debug)]
struct Needs {
    x: bool,
    w: bool,
    b: bool,
}

/// The gradients of the input, weight and bias, each `None` where not needed.
type Grads = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>);

/// Gradients of the input, weight and bias (each only if needed), on the convolution's path.
fn backward(g: &Geometry, x: &[f32], w: &[f32], dy: OutputGrad, needs: Needs) -> Grads {
    match g.path() {
        Path::Direct => direct::backward(g, x, w, dy, needs),
        Path::Winograd(tile) => winograd::backward(g, tile, x, w, dy, needs),
        Path::Gathered => gathered::backward(g, x, w, dy, needs),
        Path::Im2col => im2col::backward(g, x, w, dy, needs),
    }
}

/// One backward task: a few images' input `x` and output gradient `dy`, their slice of the
/// fresh input gradient `dx` (if needed; see [`FreshDx`]), and the worker's weight-gradient
/// accumulator `dw` (if needed) to add onto.
struct Task<'a, Dx: ?Sized = [f32]> {
    x: &'a [f32],
    dy: &'a [f32],
    dx: Option<&'a mut Dx>,
    dw: Option<&'a mut [f32]>,
}

/// How a path receives its tasks' slices of the freshly allocated input gradient: as zeros
/// (`[f32]`, for the GEMM paths, whose kernels take an initialised slice and whose col2im adds
/// into it) or as they are (`[MaybeUninit<f32>]`, for Winograd, whose output transform writes
/// every value).
trait FreshDx {
    fn from_fresh(v: &mut [MaybeUninit<f32>]) -> &mut Self;
}

impl FreshDx for [f32] {
    fn from_fresh(v: &mut [MaybeUninit<f32>]) -> &mut [f32] {
        zeroed(v)
    }
}

impl FreshDx for [MaybeUninit<f32>] {
    fn from_fresh(v: &mut [MaybeUninit<f32>]) -> &mut [MaybeUninit<f32>] {
        v
    }
}

/// Per-worker gradient accumulators of the weight (`Cout × K` on the GEMM paths, the
/// transformed `dU` on the Winograd path) and the bias.
struct Accum {
    dw: Vec<f32>,
    db: Vec<f32>,
}

impl Accum {
    fn merge(mut self, other: Accum) -> Accum {
        self.dw.iter_mut().zip(&other.dw).for_each(|(a, b)| *a += b);
        self.db.iter_mut().zip(&other.db).for_each(|(a, b)| *a += b);
        self
    }
}

/// The backward's schedule, shared by every path: the batch cut into tasks of `task_images`
/// images, each task's bias gradient summed here and `step` run on it for the rest (not at
/// all when only the bias needs a gradient); one task per rayon piece when there are enough
/// tasks to keep every thread busy, else in turn (each GEMM then splits instead). The weight
/// and bias gradients (`dw_len` values, `Cout`) are accumulated per worker (rayon `fold`) and
/// summed at the end (`reduce`); each task writes its own images' input gradient whole (its
/// slice zeroed first, in the task, where the path adds into it).
fn over_image_tasks<Dx: FreshDx + ?Sized>(
    g: &Geometry,
    x: &[f32],
    dy: OutputGrad,
    task_images: usize,
    dw_len: usize,
    needs: Needs,
    step: impl Fn(Task<Dx>) + Sync + Send,
) -> Grads {
    let tasks = g.n.div_ceil(task_images);
    let dx_len = g.n * g.in_image();
    let mut dx = needs.x.then(|| Vec::with_capacity(dx_len));
    let dx_parts: Vec<Option<&mut [MaybeUninit<f32>]>> = match dx.as_mut() {
        Some(d) => d.spare_capacity_mut()[..dx_len]
            .chunks_mut((task_images * g.in_image()).max(1))
            .map(Some)
            .collect(),
        None => (0..tasks).map(|_| None).collect(),
    };
    let new_acc = || Accum {
        dw: vec![0.0; if needs.w { dw_len } else { 0 }],
        db: vec![0.0; if needs.b { g.cout } else { 0 }],
    };
    let run = |mut acc: Accum, (t, dx): (usize, Option<&mut [MaybeUninit<f32>]>)| {
        let dx = dx.map(Dx::from_fresh);
        let (i0, i1) = (t * task_images, ((t + 1) * task_images).min(g.n));
        let x = &x[i0 * g.in_image()..i1 * g.in_image()];
        dy.of_images(g, i0, i1, |dy| {
            for dy_i in dy.chunks_exact(g.out_image()) {
                for (db, plane) in acc.db.iter_mut().zip(dy_i.chunks_exact(g.out_pixels())) {
                    *db += sum_map(plane, |v| v);
                }
            }
            if needs.w || dx.is_some() {
                let dw = needs.w.then_some(&mut acc.dw[..]);
                step(Task { x, dy, dx, dw });
            }
        });
        acc
    };
    let acc = if parallel_tasks(tasks) {
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
    if let Some(dx) = dx.as_mut() {
        // SAFETY: `dx_len` values are allocated, and the tasks wrote every one of them (each
        // part is one task's, the parts cover `0..dx_len`, and each task writes its part whole).
        unsafe { dx.set_len(dx_len) };
    }
    (dx, needs.w.then_some(acc.dw), needs.b.then_some(acc.db))
}
