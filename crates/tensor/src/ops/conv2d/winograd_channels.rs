//! Winograd convolution with the *channels* as the vector lanes: the transforms of
//! [`super::winograd`] (the same matrices, `Bᵀ d B`, `G g Gᵀ`, `Aᵀ m A`) applied to whole
//! pixel vectors of `Cin` (or `Cout`) channels at a time.
//!
//! ## Why a second layout
//!
//! [`super::winograd`] keeps each channel plane as it is and vectorises its transforms along
//! the *tiles*: a row of `tw` tiles is one run of lanes. On small images that run is short
//! (7 tiles across a 14-pixel image for F(2×2), 4 for F(4×4)), the transforms fall back to
//! partial vectors and single lanes, and they cost as much as the 16 GEMMs they feed (a
//! profile of MNIST's 32 → 64 at 14²: 47 % transforms, 38 % GEMMs). Here each block of images
//! is first turned pixel-major (`[y][x][c]`, as oneDNN's `nhwc`): every pixel is then a run of
//! `C` contiguous channels, every input tile `α × α` such runs, and a 1-D transform is a few
//! whole-register additions per 16 channels, whatever the image size. The price is one
//! transpose into pixel-major before and one back after, each a single pass over the block's
//! input or output.
//!
//! ## Layout of one block of `T` tiles
//!
//! ```text
//! X  [images][rows + 2][tw·m + 2][Cin]    the block's padded input, pixel-major
//! V  [α²][T][Cin]     V[ξ,ν][t] = (Bᵀ d_t B)[ξ,ν]             (input transform)
//! M  [α²][T][Cout]    M[ξ,ν] = V[ξ,ν] · U[ξ,ν]ᵀ                (α² GEMMs, K = Cin)
//! Y  [images][rows][tw·m][Cout]           Y_t = Aᵀ M_t A       (output transform)
//! ```
//!
//! with `U[ξ,ν]` (`Cout × Cin`) the transformed filters, stored transposed (`Cin × Cout`) so the
//! GEMM reads both operands row by row. `Y` holds whole tiles; the transpose back to the
//! channel planes crops the partial ones and adds the bias.
//!
//! ## Backward
//!
//! As in [`super::winograd`]: the input gradient is the adjoint convolution (a forward of
//! `dY` with the flipped, channel-swapped kernel); the weight gradient is
//! `dU[ξ,ν] += dM[ξ,ν]ᵀ · V[ξ,ν]` (`Cout × Cin`, summed over tiles and the batch) with
//! `dM_t = A dY_t Aᵀ` from the pixel-major output gradient, and `dW = Gᵀ dU G` once at the end.
//! `V` is recomputed from the input rather than kept from the forward.

use super::geometry::{adjoint_weight, Geometry};
use super::winograd::{
    combine, filter_grad, matrices, rows, rows_mut, transform_filter, Block, Plan, Tile,
};
use super::{over_image_tasks, with_scratch, Grads, Needs, OutputGrad, Task};
use crate::gemm::{gemm, MatMut, MatRef};
use crate::vector::transpose_strided;

/// A convolution's transformed filters, each position's `U[ξ,ν]` transposed (`[α²][Cin][Cout]`),
/// and its plan: what every task of the forward shares.
pub(super) struct Filters {
    tile: Tile,
    plan: Plan,
    u_t: Vec<f32>,
}

impl Filters {
    pub fn new(g: &Geometry, tile: Tile, w: &[f32]) -> Filters {
        let (plan, u, alpha) = match tile {
            Tile::F2 => (Plan::new::<2, 4>(g), transform_filter::<2, 4>(g, w), 4),
            Tile::F4 => (Plan::new::<4, 6>(g), transform_filter::<4, 6>(g, w), 6),
        };
        let filters = g.cout * g.cin;
        let mut u_t = vec![0.0; alpha * alpha * filters];
        for (u_k, u_t_k) in u.chunks_exact(filters).zip(u_t.chunks_exact_mut(filters)) {
            crate::vector::transpose(u_k, g.cout, g.cin, u_t_k);
        }
        Filters { tile, plan, u_t }
    }

    /// Images per task.
    pub fn task_images(&self) -> usize {
        self.plan.task_images
    }

    /// The forward of one task's images `x_t` into `y_t` (both channel planes, as everywhere).
    pub fn forward_images(&self, g: &Geometry, x_t: &[f32], bias: Option<&[f32]>, y_t: &mut [f32]) {
        match self.tile {
            Tile::F2 => convolve_images::<2, 4>(g, &self.plan, x_t, &self.u_t, bias, y_t),
            Tile::F4 => convolve_images::<4, 6>(g, &self.plan, x_t, &self.u_t, bias, y_t),
        }
    }
}

/// The gradients of the input, weight and bias (each only if needed).
pub(super) fn backward(
    g: &Geometry,
    tile: Tile,
    x: &[f32],
    w: &[f32],
    dy: OutputGrad,
    needs: Needs,
) -> Grads {
    match tile {
        Tile::F2 => backward_with::<2, 4>(g, tile, x, w, dy, needs),
        Tile::F4 => backward_with::<4, 6>(g, tile, x, w, dy, needs),
    }
}

/// Where a block's tiles lie in the images, and the sizes of its pixel-major buffers.
struct Span {
    /// Tile rows of the block (of each of its images) and tiles across.
    band: usize,
    tw: usize,
    /// Input rows `iy0..iy1` the block's tiles read (clipped to the image).
    iy0: usize,
    iy1: usize,
    /// Output rows `oy0..oy1` its tiles cover (clipped to the image).
    oy0: usize,
    oy1: usize,
    /// Tiles `T` of the block.
    tiles: usize,
}

impl Span {
    fn of<const M: usize>(g: &Geometry, plan: &Plan, block: &Block) -> Span {
        let (band, tw) = (block.ty1 - block.ty0, plan.tw);
        Span {
            band,
            tw,
            iy0: (M * block.ty0).saturating_sub(g.pad),
            iy1: (M * block.ty1 + 2 - g.pad).min(g.h),
            oy0: M * block.ty0,
            oy1: (M * block.ty1).min(g.ho),
            tiles: block.images * band * tw,
        }
    }

    /// The pixels of each image's slice of the input (`X`) and of the output (`Y`).
    fn in_pixels(&self, g: &Geometry) -> usize {
        (self.iy1 - self.iy0) * g.w
    }

    fn out_pixels(&self, g: &Geometry) -> usize {
        (self.oy1 - self.oy0) * g.wo
    }

    /// Scratch for the largest block of `plan`: `X`, `V`, `M`, `Y` and one tile's
    /// intermediate rows and a run of zeros.
    fn scratch_len<const A: usize>(g: &Geometry, plan: &Plan) -> usize {
        let (images, band, m) = (plan.task_images, plan.band_rows, A - 2);
        let in_pixels = (m * band + 2).min(g.h) * g.w;
        let out_pixels = (m * band).min(g.ho) * g.wo;
        let tiles = images * band * plan.tw;
        images * (in_pixels * g.cin + out_pixels * g.cout)
            + A * A * tiles * (g.cin + g.cout)
            + (A + 1) * A * g.cin.max(g.cout)
    }
}

/// The forward of one task's images, block by block: pixel-major input, input transform, α²
/// GEMMs, output transform, channel planes again.
fn convolve_images<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    x_t: &[f32],
    u_t: &[f32],
    bias: Option<&[f32]>,
    y_t: &mut [f32],
) {
    let (cin, cout) = (g.cin, g.cout);
    for block in plan.blocks(x_t.len() / g.in_image()) {
        let span = Span::of::<M>(g, plan, &block);
        let tiles = span.tiles;
        with_scratch(Span::scratch_len::<A>(g, plan), |scratch| {
            let (xp, rest) = scratch.split_at_mut(block.images * span.in_pixels(g) * cin);
            let (v, rest) = rest.split_at_mut(A * A * tiles * cin);
            let (m, rest) = rest.split_at_mut(A * A * tiles * cout);
            let (yp, stage) = rest.split_at_mut(block.images * span.out_pixels(g) * cout);
            let (iys, w) = (span.iy0..span.iy1, g.w);
            to_pixels(
                x_t,
                g.in_image(),
                g.h * w,
                cin,
                &block,
                iys.start * w..iys.end * w,
                xp,
            );
            transform_input::<M, A>(g, &span, cin, xp, v, stage);
            for ((v_k, u_k), m_k) in v
                .chunks_exact(tiles * cin)
                .zip(u_t.chunks_exact(cin * cout))
                .zip(m.chunks_exact_mut(tiles * cout))
            {
                let (v_k, u_k) = (MatRef::new(v_k, tiles, cin), MatRef::new(u_k, cin, cout));
                gemm(1.0, v_k, u_k, 0.0, MatMut::new(m_k, tiles, cout));
            }
            transform_output::<M, A>(g, &span, m, bias, yp, stage);
            from_pixels(g, &span, &block, yp, y_t);
        });
    }
}

/// The pixels `pixels` (of each channel plane, `plane` long) of the block's images, which lie
/// `image` apart in `src`, pixel-major into `dst`: `[images][pixels][c]`.
fn to_pixels(
    src: &[f32],
    image: usize,
    plane: usize,
    c: usize,
    block: &Block,
    pixels: std::ops::Range<usize>,
    dst: &mut [f32],
) {
    let len = pixels.len();
    for (k, dst_k) in dst.chunks_exact_mut(len * c).take(block.images).enumerate() {
        let src_k = &src[(block.first + k) * image + pixels.start..];
        transpose_strided(src_k, c, len, plane, dst_k, c);
    }
}

/// The block's output `Y` (pixel-major, `[images][pixels][Cout]`) into its rows of the channel
/// planes of `y_t`.
fn from_pixels(g: &Geometry, span: &Span, block: &Block, yp: &[f32], y_t: &mut [f32]) {
    let len = span.out_pixels(g);
    for (k, yp_k) in yp.chunks_exact(len * g.cout).enumerate() {
        let y_k = &mut y_t[(block.first + k) * g.out_image() + span.oy0 * g.wo..];
        transpose_strided(yp_k, len, g.cout, g.cout, y_k, g.ho * g.wo);
    }
}

/// The `A` pixels `(y, x0..x0 + A)` of a pixel-major image slice `rows × w` of `c` channels,
/// `zeros` for those outside it.
#[inline(always)]
fn pixels_of<'a, const A: usize>(
    img: &'a [f32],
    (rows, w, c): (usize, usize, usize),
    y: isize,
    x0: isize,
    zeros: &'a [f32],
) -> [&'a [f32]; A] {
    std::array::from_fn(|j| {
        let x = x0 + j as isize;
        if (0..rows as isize).contains(&y) && (0..w as isize).contains(&x) {
            &img[(y as usize * w + x as usize) * c..][..c]
        } else {
            zeros
        }
    })
}

/// `V[ξ,ν][t] = (Bᵀ d_t B)[ξ,ν]` for every tile `t` of the block, from its pixel-major input
/// `xp` (the rows `span.iy0..iy1` of each image; pixels outside them are the zero padding);
/// `stage` holds one tile's α × α intermediate rows and a run of zeros.
fn transform_input<const M: usize, const A: usize>(
    g: &Geometry,
    span: &Span,
    c: usize,
    xp: &[f32],
    v: &mut [f32],
    stage: &mut [f32],
) {
    let bt = matrices::<M>().bt;
    let (tiles, height) = (span.tiles, span.iy1 - span.iy0);
    let (stage, zeros) = stage[..(A + 1) * A * c].split_at_mut(A * A * c);
    let zeros = &mut zeros[..c];
    zeros.fill(0.0);
    for (t, img) in (0..tiles).zip(
        xp.chunks_exact(height * g.w * c)
            .flat_map(|img| std::iter::repeat(img).take(span.band * span.tw)),
    ) {
        let (ty, tx) = ((t / span.tw) % span.band, t % span.tw);
        // Row r of the tile is input row m·ty + r − pad of the image (counted from iy0).
        let y0 = (M * ty) as isize + (span.oy0 as isize - g.pad as isize) - span.iy0 as isize;
        let x0 = (M * tx) as isize - g.pad as isize;
        // Along x: row r of the tile, stage[r][ν] = Σ_c Bᵀ[ν,c]·d[r][c].
        for r in 0..A {
            let ins = pixels_of::<A>(img, (height, g.w, c), y0 + r as isize, x0, zeros);
            combine::<A, A>(bt, ins, rows_mut::<A>(stage, r * A * c, c, c));
        }
        // Along y: V[ξ,ν][t] = Σ_r Bᵀ[ξ,r]·stage[r][ν].
        for nu in 0..A {
            let ins = rows::<A>(stage, nu * c, A * c, c);
            let outs = rows_mut::<A>(v, (nu * tiles + t) * c, A * tiles * c, c);
            combine::<A, A>(bt, ins, outs);
        }
    }
}

/// `Y_t = Aᵀ M_t A + b` for every tile `t` of the block, into the block's pixel-major output
/// `yp` (the rows `span.oy0..oy1` of each image), the pixels past the image dropped.
fn transform_output<const M: usize, const A: usize>(
    g: &Geometry,
    span: &Span,
    m: &[f32],
    bias: Option<&[f32]>,
    yp: &mut [f32],
    stage: &mut [f32],
) {
    let at = matrices::<M>().at;
    let (tiles, c) = (span.tiles, g.cout);
    let (height, per_image) = (span.oy1 - span.oy0, span.band * span.tw);
    let (stage, out) = stage[..(A + 1) * A * c].split_at_mut(M * A * c);
    for t in 0..tiles {
        let (k, ty, tx) = (t / per_image, (t / span.tw) % span.band, t % span.tw);
        let y_k = &mut yp[k * height * g.wo * c..][..height * g.wo * c];
        // Along y: stage[a][ν] = Σ_ξ Aᵀ[a,ξ]·M[ξ,ν][t].
        for nu in 0..A {
            let ins = rows::<A>(m, (nu * tiles + t) * c, A * tiles * c, c);
            combine::<A, M>(at, ins, rows_mut::<M>(stage, nu * c, A * c, c));
        }
        // Along x: output row a of the tile, Y[a][b] = Σ_ν Aᵀ[b,ν]·stage[a][ν] (+ bias), M
        // adjacent pixels of one row of Y.
        let x0 = M * tx;
        let cols = M.min(g.wo - x0);
        for a in 0..M.min(height - M * ty) {
            let ins = rows::<A>(stage, a * A * c, c, c);
            let first = ((M * ty + a) * g.wo + x0) * c;
            if cols == M {
                combine::<A, M>(at, ins, rows_mut::<M>(y_k, first, c, c));
            } else {
                combine::<A, M>(at, ins, rows_mut::<M>(out, 0, c, c));
                y_k[first..][..cols * c].copy_from_slice(&out[..cols * c]);
            }
            if let Some(b) = bias {
                for px in y_k[first..][..cols * c].chunks_exact_mut(c) {
                    px.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                }
            }
        }
    }
}

/// `dM_t = A dY_t Aᵀ` for every tile `t` of the block (zero where a tile overhangs the image),
/// from the block's output gradient `dy_t` (channel planes), made pixel-major in `dyp`.
fn transform_grad<const M: usize, const A: usize>(
    g: &Geometry,
    span: &Span,
    block: &Block,
    dy_t: &[f32],
    dyp: &mut [f32],
    dm: &mut [f32],
    stage: &mut [f32],
) {
    let a_mat = matrices::<M>().a;
    let (tiles, c, wo) = (span.tiles, g.cout, g.wo);
    let height = span.oy1 - span.oy0;
    let plane = g.ho * wo;
    to_pixels(
        dy_t,
        g.out_image(),
        plane,
        c,
        block,
        span.oy0 * wo..span.oy1 * wo,
        dyp,
    );
    let (stage, zeros) = stage[..(A + 1) * A * c].split_at_mut(A * A * c);
    let zeros = &mut zeros[..c];
    zeros.fill(0.0);
    let per_image = span.band * span.tw;
    for t in 0..tiles {
        let (k, ty, tx) = (t / per_image, (t / span.tw) % span.band, t % span.tw);
        let img = &dyp[k * height * wo * c..][..height * wo * c];
        // Along x: stage[a][ν] = Σ_b A[ν,b]·dY[a][b].
        for a in 0..M {
            let (y, x0) = ((M * ty + a) as isize, (M * tx) as isize);
            let ins = pixels_of::<M>(img, (height, wo, c), y, x0, zeros);
            combine::<M, A>(a_mat, ins, rows_mut::<A>(stage, a * A * c, c, c));
        }
        // Along y: dM[ξ,ν][t] = Σ_a A[ξ,a]·stage[a][ν].
        for nu in 0..A {
            let ins = rows::<M>(stage, nu * c, A * c, c);
            let outs = rows_mut::<A>(dm, (nu * tiles + t) * c, A * tiles * c, c);
            combine::<M, A>(a_mat, ins, outs);
        }
    }
}

/// [`backward`] for one tile size: per task, `dU += dMᵀ·V` block by block and the input
/// gradient as the adjoint convolution's forward; `dW = Gᵀ dU G` at the end.
fn backward_with<const M: usize, const A: usize>(
    g: &Geometry,
    tile: Tile,
    x: &[f32],
    w: &[f32],
    dy: OutputGrad,
    needs: Needs,
) -> Grads {
    let plan = Plan::new::<M, A>(g);
    let adj = g.adjoint();
    let adjoint = needs
        .x
        .then(|| Filters::new(&adj, tile, &adjoint_weight(g, w)));
    let du_len = A * A * g.cout * g.cin;
    let (dx, du, db) = over_image_tasks(g, x, dy, plan.task_images, du_len, needs, |task| {
        let Task { x, dy, dx, dw } = task;
        if let Some(du) = dw {
            weight_grad_images::<M, A>(g, &plan, x, dy, du);
        }
        if let (Some(dx), Some(adjoint)) = (dx, adjoint.as_ref()) {
            adjoint.forward_images(&adj, dy, None, dx);
        }
    });
    (dx, du.map(|du| filter_grad::<M, A>(g, &du)), db)
}

/// `dU[ξ,ν] += dM[ξ,ν]ᵀ · V[ξ,ν]` over one task's images, block by block.
fn weight_grad_images<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    x_t: &[f32],
    dy_t: &[f32],
    du: &mut [f32],
) {
    let (cin, cout) = (g.cin, g.cout);
    for block in plan.blocks(x_t.len() / g.in_image()) {
        let span = Span::of::<M>(g, plan, &block);
        let tiles = span.tiles;
        with_scratch(Span::scratch_len::<A>(g, plan), |scratch| {
            let (xp, rest) = scratch.split_at_mut(block.images * span.in_pixels(g) * cin);
            let (v, rest) = rest.split_at_mut(A * A * tiles * cin);
            let (dm, rest) = rest.split_at_mut(A * A * tiles * cout);
            let (dyp, stage) = rest.split_at_mut(block.images * span.out_pixels(g) * cout);
            let (iys, w) = (span.iy0..span.iy1, g.w);
            to_pixels(
                x_t,
                g.in_image(),
                g.h * w,
                cin,
                &block,
                iys.start * w..iys.end * w,
                xp,
            );
            transform_input::<M, A>(g, &span, cin, xp, v, stage);
            transform_grad::<M, A>(g, &span, &block, dy_t, dyp, dm, stage);
            for ((dm_k, v_k), du_k) in dm
                .chunks_exact(tiles * cout)
                .zip(v.chunks_exact(tiles * cin))
                .zip(du.chunks_exact_mut(cout * cin))
            {
                let dm_t = MatRef::new(dm_k, tiles, cout).t();
                let v_k = MatRef::new(v_k, tiles, cin);
                gemm(1.0, dm_t, v_k, 1.0, MatMut::new(du_k, cout, cin));
            }
        });
    }
}
