//! Winograd convolution for 3×3 kernels with stride 1 (and padding 1): fewer multiplications
//! per output than the direct sum, at the price of a few additions before and after.
//!
//! ## 1-D: F(2, 3)
//!
//! Two outputs of a 3-tap filter `g` over four inputs `d` take six multiplications by the
//! definition:
//!
//! ```text
//! y₀ = d₀g₀ + d₁g₁ + d₂g₂
//! y₁ = d₁g₀ + d₂g₁ + d₃g₂
//! ```
//!
//! Winograd's minimal algorithm takes four:
//!
//! ```text
//! m₁ = (d₀ − d₂)·g₀              m₂ = (d₁ + d₂)·(g₀ + g₁ + g₂)/2
//! m₄ = (d₁ − d₃)·g₂              m₃ = (d₂ − d₁)·(g₀ − g₁ + g₂)/2
//! y₀ = m₁ + m₂ + m₃              y₁ = m₂ − m₃ − m₄
//! ```
//!
//! (expand `m₂ + m₃ = d₁g₁ + d₂g₀ + d₂g₂` and `m₂ − m₃ = d₁g₀ + d₁g₂ + d₂g₁` to check). It is
//! polynomial multiplication in disguise: the outputs are coefficients of the product of
//! `g(t) = g₀ + g₁t + g₂t²` with a polynomial of the data, a product of degree 3 is fixed by its
//! values at four points, and at the points `0, 1, −1, ∞` each value is one multiplication of a
//! value of `g` by a value of `d` (the Toom–Cook / Chinese-remainder construction). Written as
//! matrices, with `⊙` the elementwise product,
//!
//! ```text
//! y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]
//!
//!      ⎡1  0 −1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢ 1/2  1/2  1/2⎥    Aᵀ = ⎡1 1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢ 1/2 −1/2  1/2⎥         ⎣0 1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! `Bᵀ` transforms the data (additions only), `G` the filter (once per filter, not per
//! output), and `Aᵀ` turns the four products back into two outputs (additions only).
//!
//! ## 2-D: F(2×2, 3×3)
//!
//! Nesting the 1-D algorithm along both axes gives a 2×2 tile of outputs of a 3×3 filter `g`
//! from a 4×4 tile of inputs `d`:
//!
//! ```text
//! Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A          (2×2 from 4×4)
//! ```
//!
//! 16 multiplications instead of 2·2·9 = 36: 2.25× fewer. Neighbouring tiles overlap by two
//! pixels (the tile steps by 2, the input tile is 4 wide). An image whose output is not a
//! multiple of 2 is covered by partial tiles at its bottom and right edges: their inputs beyond
//! the image are zeros (like the padding), and the outputs beyond it are dropped.
//!
//! F(4×4, 3×3) is the same with 6×6 input tiles and the points `0, ±1, ±2, ∞` (Lavin & Gray,
//! 2016): 36 multiplications for 16 outputs instead of 144, 4× fewer, but its matrices hold
//! 4, 5, 8 and 1/24, so rounding errors grow (see *Accuracy* below):
//!
//! ```text
//!      ⎡4  0 −5  0  1  0⎤        ⎡ 1/4    0     0  ⎤
//!      ⎢0 −4 −4  1  1  0⎥        ⎢−1/6  −1/6  −1/6 ⎥         ⎡1 1  1 1  1 0⎤
//! Bᵀ = ⎢0  4 −4 −1  1  0⎥    G = ⎢−1/6   1/6  −1/6 ⎥    Aᵀ = ⎢0 1 −1 2 −2 0⎥
//!      ⎢0 −2 −1  2  1  0⎥        ⎢ 1/24  1/12  1/6 ⎥         ⎢0 1  1 4  4 0⎥
//!      ⎢0  2 −1 −2  1  0⎥        ⎢ 1/24 −1/12  1/6 ⎥         ⎣0 1 −1 8 −8 1⎦
//!      ⎣0  4  0 −5  0  1⎦        ⎣ 0      0     1  ⎦
//! ```
//!
//! ## Many channels: 16 GEMMs
//!
//! A convolution layer sums over its input channels:
//! `Y[co, tile] = Σ_ci Aᵀ [ U[co, ci] ⊙ V[ci, tile] ] A` with `U = G g Gᵀ` (per filter) and
//! `V = Bᵀ d B` (per input tile). `Aᵀ · A` is linear, so the sum moves inside it, and then each
//! of the α×α = 16 positions `(ξ, ν)` of the tile is a matrix product on its own:
//!
//! ```text
//! M[ξ,ν] = U[ξ,ν] · V[ξ,ν]        (Cout × tiles) = (Cout × Cin) · (Cin × tiles)
//! Y[co, tile] = Aᵀ M[·,·][co, tile] A
//! ```
//!
//! So the layer is: transform every input tile (`V`, additions), 16 GEMMs with `K = Cin`
//! (2.25× fewer flops than the single `Cout × 9·Cin` GEMM of im2col), transform every output
//! tile back (additions). The GEMMs run on the crate's blocked kernel; the transforms are
//! plain loops over `f32` slices along the tiles axis, which LLVM vectorises.
//!
//! ## Backward
//!
//! - The input gradient of a 3×3 stride-1 convolution with padding 1 is the same kind of
//!   convolution of `dY`, with the kernel flipped in both axes and its channel axes swapped
//!   ([`Geometry::adjoint`], [`adjoint_weight`]): it reuses the forward.
//! - The weight gradient goes backwards through each step of the forward. `Y = Aᵀ M A` has the
//!   adjoint `dM = A dY Aᵀ` (each output tile's gradient, zero where the tile overhangs the
//!   image, spread over the α×α positions); the GEMM `M[ξ,ν] = U[ξ,ν]·V[ξ,ν]` has
//!   `dU[ξ,ν] += dM[ξ,ν] · V[ξ,ν]ᵀ` (summed over tiles and the batch); and `U = G g Gᵀ` has
//!   `dW = Gᵀ dU G` (the adjoint of the filter transform), applied once at the end.
//! - The bias gradient is the sum of `dY` per channel, as on the GEMM path.
//!
//! ## Scheduling
//!
//! As on the GEMM path ([`super`]): one rayon task per group of images, the weight gradient
//! accumulated per worker (rayon `fold`) and summed at the end (`reduce`). A task works through
//! *blocks* of tiles, a few whole images (small images) or a band of tile rows of one image,
//! sized so that the block's transformed inputs `V` (`[16][Cin][tiles]`) and GEMM outputs `M`
//! (`[16][Cout][tiles]`) stay near L2 ([`BLOCK_BYTES`]); they live in the thread's scratch
//! buffer, never for the whole batch (at batch 256 × 64 channels × 32² the batch's `V` would
//! be 256 MB). Tiles are numbered across the images of a block, so the second transform stage
//! and the GEMMs run over all of them at once, however small the images.
//!
//! Each 2-D transform is two 1-D passes. For the input: along `x`, each padded input row is
//! split into its column phases (`row[m·j + p]` for phase `p`), so that column `c` of every tile
//! along the row is one contiguous slice (phase `c mod m`, from `c / m`), and `Bᵀ` combines
//! these slices; along `y`, `Bᵀ` combines the results of the tile's α rows, now contiguous over
//! all the block's tiles. The output and output-gradient transforms are the same two passes
//! in the other order.
//!
//! ## Accuracy
//!
//! Measured against the definition ([`super::reference`], sums in f64) on the shapes of
//! `tests::forward_and_gradients_match_the_reference` (inputs, weights and output gradients
//! uniform in `[−1, 1]`, 1 to 64 input channels), as the largest error over the largest value
//! of the output or gradient:
//!
//! | tile | output | input gradient | weight gradient |
//! |---|---|---|---|
//! | F(2×2, 3×3) | 3.8e-7 | 3.2e-7 | 5.5e-7 |
//! | F(4×4, 3×3) | 1.1e-5 | 6.3e-6 | 4.7e-6 |
//! | GEMM path, for comparison | 6.1e-7 | 4.4e-7 | 7.2e-7 |
//!
//! F(2×2) is as accurate as the GEMM path (its transforms add, subtract and halve, so they
//! round little). F(4×4) loses about 20× more, and its error grows with the number of channels summed (1.4e-6 at 3 channels,
//! 1.1e-5 at 64): the transformed tiles are up to ~100× larger than the pixels (Bᵀ's 4s and
//! 5s, twice), and the output transform cancels them back down with Aᵀ's 8s. Still far below
//! the noise of f32 training, but it is the reason to prefer F(2×2) where the two are equally
//! fast.

use std::cell::Cell;

use super::geometry::{adjoint_weight, Geometry};
use super::layout::copy_row;
use super::{over_image_tasks, with_scratch, Grads, Needs, OutputGrad, Task};
use crate::gemm::{gemm, MatMut, MatRef};

/// A Winograd tile size `F(m×m, 3×3)`: `m×m` outputs from `(m+2)×(m+2)` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 input tiles, 2.25× fewer multiplications.
    F2,
    /// F(4×4, 3×3): 6×6 input tiles, 4× fewer multiplications.
    F4,
}

/// Which path a 3×3, stride-1, padding-1 convolution takes on this thread (for benchmarks and
/// tests that compare them; [`force_path`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// As [`Geometry::winograd`] decides per shape.
    Auto,
    /// Always the im2col / gathered GEMM path.
    Gemm,
    /// Always Winograd with this tile size (where it applies: 3×3, stride 1, padding 1, more
    /// than one input channel).
    Winograd(Tile),
    /// Always Winograd with the channels as vector lanes ([`super::winograd_channels`]).
    WinogradChannels(Tile),
}

thread_local! {
    static FORCED: Cell<ConvPath> = const { Cell::new(ConvPath::Auto) };
}

/// Makes the convolutions started on this thread take `path` (their rayon tasks follow the
/// decision taken on the calling thread). For benchmarks and tests only.
#[doc(hidden)]
pub fn force_path(path: ConvPath) {
    FORCED.set(path);
}

/// The path [`force_path`] set on this thread.
pub(super) fn forced_path() -> ConvPath {
    FORCED.get()
}

impl Geometry {
    /// The Winograd tile size this convolution takes (this module), if any: only 3×3
    /// kernels with stride 1 and padding 1 and more than one input channel (one takes the
    /// direct kernels) can, and of those only the shapes where it measures faster
    /// ([`Self::winograd_pays`]), unless the thread [forces](force_path) a path.
    pub fn winograd(&self) -> Option<Tile> {
        let fits =
            self.kh == 3 && self.kw == 3 && self.stride == 1 && self.pad == 1 && !self.is_direct();
        if !fits {
            return None;
        }
        match forced_path() {
            ConvPath::Auto => self.winograd_pays(),
            ConvPath::Gemm => None,
            ConvPath::Winograd(tile) | ConvPath::WinogradChannels(tile) => Some(tile),
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
    /// faster (8²: within the noise) and rounds ~20× more (*Accuracy* above).
    fn winograd_pays(&self) -> Option<Tile> {
        let (channels, side) = (self.cin.min(self.cout), self.ho.min(self.wo));
        match side {
            16.. if channels >= 64 => Some(Tile::F4),
            8.. if channels >= 64 => Some(Tile::F2),
            4.. if channels >= 256 => Some(Tile::F2),
            _ => None,
        }
    }
}

/// Target size of one block's `V` and `M` together: within the 1 MiB of L2 per core that the
/// GEMM's packed panels share.
const BLOCK_BYTES: usize = 1 << 20;

/// Fewest tiles per block: below this the 16 GEMMs re-pack their `U[ξ,ν]` (`Cout × Cin`) for too
/// few columns.
const MIN_BLOCK_TILES: usize = 64;

/// Tiles per chunk of the transforms' vector loops (one AVX-512 register of f32); a block's
/// tile count is rounded up to a multiple of it, the extra tiles zero.
const LANES: usize = 16;

/// The transform matrices of one tile size, row-major: `bt` (`α×α`), `at` (`m×α`), `a` = `Aᵀ`
/// transposed (`α×m`, for the adjoint of the output transform), `g` (`α×3`, in f64: the filter
/// transforms run once per call, in f64, so `1/6` and `1/24` round only once).
pub(super) struct Matrices {
    pub bt: &'static [f32],
    pub at: &'static [f32],
    pub a: &'static [f32],
    pub g: &'static [f64],
}

#[rustfmt::skip]
const F2_MATRICES: Matrices = Matrices {
    bt: &[
        1.0,  0.0, -1.0,  0.0,
        0.0,  1.0,  1.0,  0.0,
        0.0, -1.0,  1.0,  0.0,
        0.0,  1.0,  0.0, -1.0,
    ],
    at: &[
        1.0, 1.0,  1.0,  0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
    a: &[
        1.0,  0.0,
        1.0,  1.0,
        1.0, -1.0,
        0.0, -1.0,
    ],
    g: &[
        1.0,  0.0, 0.0,
        0.5,  0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0,  0.0, 1.0,
    ],
};

#[rustfmt::skip]
const F4_MATRICES: Matrices = Matrices {
    bt: &[
        4.0,  0.0, -5.0,  0.0, 1.0, 0.0,
        0.0, -4.0, -4.0,  1.0, 1.0, 0.0,
        0.0,  4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0,  2.0, 1.0, 0.0,
        0.0,  2.0, -1.0, -2.0, 1.0, 0.0,
        0.0,  4.0,  0.0, -5.0, 0.0, 1.0,
    ],
    at: &[
        1.0, 1.0,  1.0, 1.0,  1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0,  1.0, 4.0,  4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
    a: &[
        1.0,  0.0, 0.0,  0.0,
        1.0,  1.0, 1.0,  1.0,
        1.0, -1.0, 1.0, -1.0,
        1.0,  2.0, 4.0,  8.0,
        1.0, -2.0, 4.0, -8.0,
        0.0,  0.0, 0.0,  1.0,
    ],
    g: &[
         1.0 / 4.0,   0.0,         0.0,
        -1.0 / 6.0,  -1.0 / 6.0,  -1.0 / 6.0,
        -1.0 / 6.0,   1.0 / 6.0,  -1.0 / 6.0,
         1.0 / 24.0,  1.0 / 12.0,  1.0 / 6.0,
         1.0 / 24.0, -1.0 / 12.0,  1.0 / 6.0,
         0.0,         0.0,         1.0,
    ],
};

/// The matrices of `F(M×M, 3×3)`; a constant once `M` is (so the transforms' zero and unit
/// coefficients fold away).
#[inline(always)]
pub(super) fn matrices<const M: usize>() -> &'static Matrices {
    match M {
        2 => &F2_MATRICES,
        4 => &F4_MATRICES,
        _ => unreachable!("Winograd tiles are 2×2 or 4×4"),
    }
}

/// A convolution's transformed filters `U = G g Gᵀ` and its plan: what every task of the
/// forward shares.
pub(super) struct Filters {
    tile: Tile,
    plan: Plan,
    u: Vec<f32>,
}

impl Filters {
    pub fn new(g: &Geometry, tile: Tile, w: &[f32]) -> Filters {
        let (plan, u) = match tile {
            Tile::F2 => (Plan::new::<2, 4>(g), transform_filter::<2, 4>(g, w)),
            Tile::F4 => (Plan::new::<4, 6>(g), transform_filter::<4, 6>(g, w)),
        };
        Filters { tile, plan, u }
    }

    /// Images per task.
    pub fn task_images(&self) -> usize {
        self.plan.task_images
    }

    /// The forward of one task's images `x_t` into `y_t`.
    pub fn forward_images(&self, g: &Geometry, x_t: &[f32], bias: Option<&[f32]>, y_t: &mut [f32]) {
        let (plan, u) = (&self.plan, &self.u);
        match self.tile {
            Tile::F2 => convolve_images::<2, 4>(g, plan, x_t, u, bias, y_t),
            Tile::F4 => convolve_images::<4, 6>(g, plan, x_t, u, bias, y_t),
        }
    }
}

/// The gradients of the input, weight and bias (each only if needed), by Winograd.
pub(super) fn backward(
    g: &Geometry,
    tile: Tile,
    x: &[f32],
    w: &[f32],
    dy: OutputGrad,
    needs: Needs,
) -> Grads {
    match tile {
        Tile::F2 => backward_with::<2, 4>(g, x, w, dy, needs),
        Tile::F4 => backward_with::<4, 6>(g, x, w, dy, needs),
    }
}

/// How a convolution is cut into tasks and blocks of tiles (see *Scheduling* above).
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// Tiles down and across one image: `ceil(ho / m)`, `ceil(wo / m)`.
    pub th: usize,
    pub tw: usize,
    /// Images per rayon task (and per block, unless images are cut into bands).
    pub task_images: usize,
    /// Tile rows per block (`th` unless an image is cut into bands).
    pub band_rows: usize,
}

/// A block of tiles: images `first..first + images` of a task, tile rows `ty0..ty1` of each.
#[derive(Clone, Copy, Debug)]
pub(super) struct Block {
    pub first: usize,
    pub images: usize,
    pub ty0: usize,
    pub ty1: usize,
}

impl Plan {
    pub fn new<const M: usize, const A: usize>(g: &Geometry) -> Plan {
        let (th, tw) = (g.ho.div_ceil(M), g.wo.div_ceil(M));
        let bytes_per_tile = std::mem::size_of::<f32>() * A * A * (g.cin + g.cout);
        let target = (BLOCK_BYTES / bytes_per_tile).max(MIN_BLOCK_TILES);
        let per_image = th * tw;
        if per_image >= target {
            Plan {
                th,
                tw,
                task_images: 1,
                band_rows: target.div_ceil(tw).min(th),
            }
        } else {
            Plan {
                th,
                tw,
                task_images: (target / per_image).clamp(1, g.n.max(1)),
                band_rows: th,
            }
        }
    }

    /// The blocks of a task of `images` images: bands of one image, or up to `task_images`
    /// whole images.
    pub fn blocks(&self, images: usize) -> Vec<Block> {
        if self.band_rows < self.th {
            let bands = (0..self.th).step_by(self.band_rows);
            (0..images)
                .flat_map(|first| {
                    bands.clone().map(move |ty0| Block {
                        first,
                        images: 1,
                        ty0,
                        ty1: (ty0 + self.band_rows).min(self.th),
                    })
                })
                .collect()
        } else {
            (0..images)
                .step_by(self.task_images)
                .map(|first| Block {
                    first,
                    images: self.task_images.min(images - first),
                    ty0: 0,
                    ty1: self.th,
                })
                .collect()
        }
    }

    /// Lanes of the largest block: its tiles rounded up to whole [`LANES`].
    fn max_lanes(&self) -> usize {
        (self.task_images * self.band_rows * self.tw).next_multiple_of(LANES)
    }

    /// Scratch one block needs: `V` (or the forward's input side) for `cin` channels, `M` for
    /// `cout`, and the transforms' buffers ([`Stage`]).
    fn scratch_len<const M: usize, const A: usize>(&self, cin: usize, cout: usize) -> usize {
        A * A * (cin + cout) * self.max_lanes() + Stage::len::<M, A>(self)
    }
}

impl Block {
    fn rows(&self) -> usize {
        self.ty1 - self.ty0
    }

    /// Tiles of the block.
    fn tiles(&self, plan: &Plan) -> usize {
        self.images * self.rows() * plan.tw
    }

    /// Tiles rounded up to whole [`LANES`]: the length of each row of `V` and `M`.
    fn lanes(&self, plan: &Plan) -> usize {
        self.tiles(plan).next_multiple_of(LANES)
    }

    /// Index of the first tile of row `ty` of image `k` (counted from the block's first).
    fn tile(&self, plan: &Plan, k: usize, ty: usize) -> usize {
        (k * self.rows() + ty - self.ty0) * plan.tw
    }

    /// `(k, ty, t0)` for every tile row of the block: image, tile row, first tile.
    fn tile_rows<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = (usize, usize, usize)> + 'a {
        (0..self.images)
            .flat_map(move |k| (self.ty0..self.ty1).map(move |ty| (k, ty, self.tile(plan, k, ty))))
    }
}

/// The transforms' working buffers: `lanes` holds α×α rows of a block's lanes between the two
/// 1-D passes; `row` one padded image row; `phases` its column phases.
struct Stage<'a> {
    lanes: &'a mut [f32],
    row: &'a mut [f32],
    phases: &'a mut [f32],
}

impl<'a> Stage<'a> {
    fn len<const M: usize, const A: usize>(plan: &Plan) -> usize {
        A * A * plan.max_lanes() + 2 * M * (plan.tw + 1)
    }

    fn new<const M: usize, const A: usize>(buf: &'a mut [f32], plan: &Plan) -> Stage<'a> {
        let (lanes, rest) = buf.split_at_mut(A * A * plan.max_lanes());
        let (row, phases) = rest.split_at_mut(M * (plan.tw + 1));
        Stage { lanes, row, phases }
    }
}

/// `N` disjoint slices of `len` values of `buf`, the first at `start`, the next `stride` apart.
pub(super) fn rows_mut<const N: usize>(
    buf: &mut [f32],
    start: usize,
    stride: usize,
    len: usize,
) -> [&mut [f32]; N] {
    let mut rest = &mut buf[start..];
    std::array::from_fn(|i| {
        let taken = std::mem::take(&mut rest);
        let (row, tail) = if i + 1 < N {
            taken.split_at_mut(stride)
        } else {
            taken.split_at_mut(len)
        };
        rest = tail;
        &mut row[..len]
    })
}

/// `N` slices of `len` values of `buf`, the first at `start`, the next `stride` apart.
pub(super) fn rows<const N: usize>(
    buf: &[f32],
    start: usize,
    stride: usize,
    len: usize,
) -> [&[f32]; N] {
    std::array::from_fn(|i| &buf[start + i * stride..][..len])
}

/// `outs[o] = Σ_i coef[o·I + i] · ins[i]`, lane by lane (all slices of one length): one 1-D
/// transform applied across many tiles at once. `coef` is one of the constant [`Matrices`],
/// so after inlining the zero coefficients drop out and `±1` become additions. Runs of 16, 8
/// and 4 lanes, then single lanes (short rows of 2 to 8 tiles are common), each loaded and
/// stored in place.
#[inline(always)]
pub(super) fn combine<const I: usize, const O: usize>(
    coef: &[f32],
    ins: [&[f32]; I],
    mut outs: [&mut [f32]; O],
) {
    let n = outs[0].len();
    debug_assert!(ins.iter().all(|s| s.len() == n) && outs.iter().all(|s| s.len() == n));
    let mut t = 0;
    while t + LANES <= n {
        combine_run::<I, O, LANES>(coef, &ins, &mut outs, t);
        t += LANES;
    }
    if t + 8 <= n {
        combine_run::<I, O, 8>(coef, &ins, &mut outs, t);
        t += 8;
    }
    if t + 4 <= n {
        combine_run::<I, O, 4>(coef, &ins, &mut outs, t);
        t += 4;
    }
    while t < n {
        combine_run::<I, O, 1>(coef, &ins, &mut outs, t);
        t += 1;
    }
}

/// [`combine`] over the `N` lanes from `t`.
#[inline(always)]
fn combine_run<const I: usize, const O: usize, const N: usize>(
    coef: &[f32],
    ins: &[&[f32]; I],
    outs: &mut [&mut [f32]; O],
    t: usize,
) {
    let x: [[f32; N]; I] = std::array::from_fn(|i| ins[i][t..t + N].try_into().expect("N values"));
    for (o, out) in outs.iter_mut().enumerate() {
        let y = lincomb(&coef[o * I..][..I], &x);
        out[t..t + N].copy_from_slice(&y);
    }
}

/// `Σ_i coef[i] · x[i]` over `N` lanes, skipping zero coefficients (starting from `−0`,
/// which adds exactly nothing).
#[inline(always)]
fn lincomb<const I: usize, const N: usize>(coef: &[f32], x: &[[f32; N]; I]) -> [f32; N] {
    let mut acc = [-0.0f32; N];
    for (&c, x) in coef.iter().zip(x) {
        if c != 0.0 {
            for (a, &v) in acc.iter_mut().zip(x) {
                *a += c * v;
            }
        }
    }
    acc
}

/// Splits `row` into its `M` column phases: `phases[p·len + j] = row[M·j + p]`, with
/// `len = row.len() / M`.
#[inline(always)]
fn deinterleave<const M: usize>(row: &[f32], phases: &mut [f32]) {
    let len = row.len() / M;
    for (j, chunk) in row.chunks_exact(M).enumerate() {
        for (p, &v) in chunk.iter().enumerate() {
            phases[p * len + j] = v;
        }
    }
}

/// Copies `src` into `row` from `pad` on, zeros around it, and splits it into its phases.
fn split_row<const M: usize>(src: &[f32], pad: usize, row: &mut [f32], phases: &mut [f32]) {
    let end = pad + src.len();
    row[..pad].fill(0.0);
    copy_row(&mut row[pad..end], src);
    row[end..].fill(0.0);
    deinterleave::<M>(row, &mut phases[..row.len()]);
}

/// `U[ξ,ν][co][ci] = (G g Gᵀ)[ξ,ν]` for every filter `g = w[co][ci]`: `[α²][cout][cin]`.
pub(super) fn transform_filter<const M: usize, const A: usize>(
    g: &Geometry,
    w: &[f32],
) -> Vec<f32> {
    let gm = matrices::<M>().g;
    let filters = g.cout * g.cin;
    let mut u = vec![0.0; A * A * filters];
    for (f, taps) in w.chunks_exact(9).enumerate() {
        // t = G g (α×3), then U = t Gᵀ.
        let t: [[f64; 3]; A] = std::array::from_fn(|xi| {
            std::array::from_fn(|j| {
                (0..3)
                    .map(|i| gm[xi * 3 + i] * taps[i * 3 + j] as f64)
                    .sum()
            })
        });
        for (xi, t) in t.iter().enumerate() {
            for nu in 0..A {
                let v: f64 = (0..3).map(|j| t[j] * gm[nu * 3 + j]).sum();
                u[(xi * A + nu) * filters + f] = v as f32;
            }
        }
    }
    u
}

/// The adjoint of [`transform_filter`]: `dW[co][ci] = Gᵀ dU[·,·][co][ci] G`, `[cout][cin][3][3]`.
pub(super) fn filter_grad<const M: usize, const A: usize>(g: &Geometry, du: &[f32]) -> Vec<f32> {
    let gm = matrices::<M>().g;
    let filters = g.cout * g.cin;
    let mut dw = vec![0.0; 9 * filters];
    for (f, taps) in dw.chunks_exact_mut(9).enumerate() {
        // t = dU G (α×3), then dW = Gᵀ t.
        let t: [[f64; 3]; A] = std::array::from_fn(|xi| {
            std::array::from_fn(|j| {
                (0..A)
                    .map(|nu| du[(xi * A + nu) * filters + f] as f64 * gm[nu * 3 + j])
                    .sum()
            })
        });
        for (i, row) in taps.chunks_exact_mut(3).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..A).map(|xi| gm[xi * 3 + i] * t[xi][j]).sum::<f64>() as f32;
            }
        }
    }
    dw
}

/// The forward of one task's images `x_t` into `y_t`, block by block: input transform, 16
/// GEMMs, output transform.
fn convolve_images<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    x_t: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    y_t: &mut [f32],
) {
    let (cin, cout) = (g.cin, g.cout);
    for block in plan.blocks(x_t.len() / g.in_image()) {
        let tp = block.lanes(plan);
        let images = block.first..block.first + block.images;
        let x_b = &x_t[images.start * g.in_image()..images.end * g.in_image()];
        let y_b = &mut y_t[images.start * g.out_image()..images.end * g.out_image()];
        with_scratch(plan.scratch_len::<M, A>(cin, cout), |scratch| {
            let (v, rest) = scratch.split_at_mut(A * A * cin * tp);
            let (m, rest) = rest.split_at_mut(A * A * cout * tp);
            let mut stage = Stage::new::<M, A>(rest, plan);
            transform_input::<M, A>(g, plan, &block, x_b, v, &mut stage);
            for ((u_k, v_k), m_k) in u
                .chunks_exact(cout * cin)
                .zip(v.chunks_exact(cin * tp))
                .zip(m.chunks_exact_mut(cout * tp))
            {
                let u_k = MatRef::new(u_k, cout, cin);
                gemm(
                    1.0,
                    u_k,
                    MatRef::new(v_k, cin, tp),
                    0.0,
                    MatMut::new(m_k, cout, tp),
                );
            }
            transform_output::<M, A>(g, plan, &block, m, bias, y_b, &mut stage);
        });
    }
}

/// `V[ξ,ν][ci][t] = (Bᵀ d B)[ξ,ν]` for every input tile `d` of the block (`[α²][cin][lanes]`,
/// the lanes past the block's tiles zero). `x_b` holds the block's images.
fn transform_input<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    block: &Block,
    x_b: &[f32],
    v: &mut [f32],
    stage: &mut Stage,
) {
    let bt = matrices::<M>().bt;
    let (tp, tw, plane) = (block.lanes(plan), plan.tw, g.h * g.w);
    let row = &mut stage.row[..M * (tw + 1)];
    let phases = &mut stage.phases[..M * (tw + 1)];
    // Rows (ν, r) of the first pass at (ν·α + r)·tp; the lanes past the tiles stay zero.
    let lanes = &mut stage.lanes[..A * A * tp];
    for r in lanes.chunks_exact_mut(tp) {
        r[block.tiles(plan)..].fill(0.0);
    }
    for ci in 0..g.cin {
        // Along x: row r of tile (ty, ·) is padded row m·ty + r; its α columns are phase
        // c mod m from c / m on.
        for (k, ty, t0) in block.tile_rows(plan) {
            let x_c = &x_b[k * g.in_image() + ci * plane..][..plane];
            for r in 0..A {
                let outs = rows_mut::<A>(lanes, r * tp + t0, A * tp, tw);
                match (M * ty + r).checked_sub(g.pad).filter(|&iy| iy < g.h) {
                    Some(iy) => {
                        split_row::<M>(&x_c[iy * g.w..][..g.w], g.pad, row, phases);
                        let ins =
                            std::array::from_fn(|c| &phases[(c % M) * (tw + 1) + c / M..][..tw]);
                        combine::<A, A>(bt, ins, outs);
                    }
                    None => outs.into_iter().for_each(|o| o.fill(0.0)),
                }
            }
        }
        // Along y, over every tile of the block at once: V[ξ,ν] = Σ_r Bᵀ[ξ,r]·(row r, ν).
        for nu in 0..A {
            let ins = rows::<A>(lanes, nu * A * tp, tp, tp);
            let outs = rows_mut::<A>(v, (nu * g.cin + ci) * tp, A * g.cin * tp, tp);
            combine::<A, A>(bt, ins, outs);
        }
    }
}

/// `y = Aᵀ M A (+ b)` for every output tile of the block, cropped to the image: `m` is
/// `[α²][cout][lanes]`, `y_b` the block's images (only its tile rows are written).
fn transform_output<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    block: &Block,
    m: &[f32],
    bias: Option<&[f32]>,
    y_b: &mut [f32],
    stage: &mut Stage,
) {
    let at = matrices::<M>().at;
    let (tp, tw, plane) = (block.lanes(plan), plan.tw, g.ho * g.wo);
    let phases = &mut stage.phases[..M * tw];
    let lanes = &mut stage.lanes[..M * A * tp];
    for co in 0..g.cout {
        // Along y, over every tile: (a, ν) = Σ_ξ Aᵀ[a,ξ]·M[ξ,ν], at (a·α + ν)·tp.
        for nu in 0..A {
            let ins = rows::<A>(m, (nu * g.cout + co) * tp, A * g.cout * tp, tp);
            combine::<A, M>(at, ins, rows_mut::<M>(lanes, nu * tp, A * tp, tp));
        }
        // Along x, one output row at a time: its M column phases, interleaved into the row.
        let b = bias.map_or(0.0, |b| b[co]);
        for (k, ty, t0) in block.tile_rows(plan) {
            for a in 0..M {
                let oy = M * ty + a;
                if oy >= g.ho {
                    break;
                }
                let ins = rows::<A>(lanes, a * A * tp + t0, tp, tw);
                combine::<A, M>(at, ins, rows_mut::<M>(phases, 0, tw, tw));
                let dst = &mut y_b[k * g.out_image() + co * plane + oy * g.wo..][..g.wo];
                for (j, chunk) in dst.chunks_mut(M).enumerate() {
                    for (p, d) in chunk.iter_mut().enumerate() {
                        *d = phases[p * tw + j] + b;
                    }
                }
            }
        }
    }
}

/// `dM = A dY Aᵀ` (the adjoint of [`transform_output`]) for every output tile of the block:
/// `[α²][cout][lanes]`, zero past the image and past the block's tiles. `dy_b` holds the
/// block's images' output gradient.
fn transform_grad<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    block: &Block,
    dy_b: &[f32],
    dm: &mut [f32],
    stage: &mut Stage,
) {
    let a_mat = matrices::<M>().a;
    let (tp, tw, plane) = (block.lanes(plan), plan.tw, g.ho * g.wo);
    let row = &mut stage.row[..M * tw];
    let phases = &mut stage.phases[..M * tw];
    // Rows (a, ν) of the first pass at (a·α + ν)·tp; the lanes past the tiles stay zero.
    let lanes = &mut stage.lanes[..M * A * tp];
    for r in lanes.chunks_exact_mut(tp) {
        r[block.tiles(plan)..].fill(0.0);
    }
    for co in 0..g.cout {
        // Along x: (a, ν) = Σ_b A[ν,b]·dY[a, b] over the phases of output row m·ty + a (zero
        // past the image).
        for (k, ty, t0) in block.tile_rows(plan) {
            for a in 0..M {
                let outs = rows_mut::<A>(lanes, a * A * tp + t0, tp, tw);
                let oy = M * ty + a;
                if oy >= g.ho {
                    outs.into_iter().for_each(|o| o.fill(0.0));
                    continue;
                }
                let src = &dy_b[k * g.out_image() + co * plane + oy * g.wo..][..g.wo];
                split_row::<M>(src, 0, row, phases);
                combine::<M, A>(a_mat, rows::<M>(phases, 0, tw, tw), outs);
            }
        }
        // Along y, over every tile: dM[ξ,ν] = Σ_a A[ξ,a]·(a, ν).
        for nu in 0..A {
            let ins = rows::<M>(lanes, nu * tp, A * tp, tp);
            let outs = rows_mut::<A>(dm, (nu * g.cout + co) * tp, A * g.cout * tp, tp);
            combine::<M, A>(a_mat, ins, outs);
        }
    }
}

/// [`backward`] for one tile size: per task, `dU += dM·Vᵀ` block by block and the input
/// gradient as the adjoint convolution's forward; `dW = Gᵀ dU G` at the end.
fn backward_with<const M: usize, const A: usize>(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: OutputGrad,
    needs: Needs,
) -> Grads {
    let plan = Plan::new::<M, A>(g);
    let adj = g.adjoint();
    let adj_plan = Plan::new::<M, A>(&adj);
    let u_adj = needs
        .x
        .then(|| transform_filter::<M, A>(&adj, &adjoint_weight(g, w)));
    let du_len = A * A * g.cout * g.cin;
    let (dx, du, db) = over_image_tasks(g, x, dy, plan.task_images, du_len, needs, |task| {
        let Task { x, dy, dx, dw } = task;
        if let Some(du) = dw {
            weight_grad_images::<M, A>(g, &plan, x, dy, du);
        }
        if let (Some(dx), Some(u_adj)) = (dx, u_adj.as_deref()) {
            convolve_images::<M, A>(&adj, &adj_plan, dy, u_adj, None, dx);
        }
    });
    (dx, du.map(|du| filter_grad::<M, A>(g, &du)), db)
}

/// `dU[ξ,ν] += dM[ξ,ν] · V[ξ,ν]ᵀ` over one task's images, block by block.
fn weight_grad_images<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    x_t: &[f32],
    dy_t: &[f32],
    du: &mut [f32],
) {
    let (cin, cout) = (g.cin, g.cout);
    for block in plan.blocks(x_t.len() / g.in_image()) {
        let tp = block.lanes(plan);
        let images = block.first..block.first + block.images;
        let x_b = &x_t[images.start * g.in_image()..images.end * g.in_image()];
        let dy_b = &dy_t[images.start * g.out_image()..images.end * g.out_image()];
        with_scratch(plan.scratch_len::<M, A>(cin, cout), |scratch| {
            let (v, rest) = scratch.split_at_mut(A * A * cin * tp);
            let (dm, rest) = rest.split_at_mut(A * A * cout * tp);
            let mut stage = Stage::new::<M, A>(rest, plan);
            transform_input::<M, A>(g, plan, &block, x_b, v, &mut stage);
            transform_grad::<M, A>(g, plan, &block, dy_b, dm, &mut stage);
            for ((dm_k, v_k), du_k) in dm
                .chunks_exact(cout * tp)
                .zip(v.chunks_exact(cin * tp))
                .zip(du.chunks_exact_mut(cout * cin))
            {
                let v_t = MatRef::new(v_k, cin, tp).t();
                let du_k = MatMut::new(du_k, cout, cin);
                gemm(1.0, MatRef::new(dm_k, cout, tp), v_t, 1.0, du_k);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::super::{geometry, reference, winograd_channels, OutputGrad};
    use super::*;
    use crate::{gradcheck, Tensor};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
    }

    /// The 1-D algorithm on its own, in f64: `Aᵀ[(G g) ⊙ (Bᵀ d)]` is the correlation
    /// `y[i] = Σ_k d[i + k]·g[k]` for random `d` and `g` (so a wrong entry in any of the three
    /// matrices fails here, whatever the rest of the module does).
    fn check_one_dimensional<const M: usize, const A: usize>() {
        let mats = matrices::<M>();
        let mut rng = StdRng::seed_from_u64(M as u64);
        for _ in 0..20 {
            let d: [f64; A] = std::array::from_fn(|_| rng.gen_range(-1.0..1.0));
            let g: [f64; 3] = std::array::from_fn(|_| rng.gen_range(-1.0..1.0));
            let gg: [f64; A] =
                std::array::from_fn(|xi| (0..3).map(|k| mats.g[xi * 3 + k] * g[k]).sum());
            let bd: [f64; A] =
                std::array::from_fn(|xi| (0..A).map(|r| mats.bt[xi * A + r] as f64 * d[r]).sum());
            for i in 0..M {
                let y: f64 = (0..A)
                    .map(|xi| mats.at[i * A + xi] as f64 * gg[xi] * bd[xi])
                    .sum();
                let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
                assert!(
                    (y - want).abs() < 1e-12,
                    "F({M},3) output {i}: {y} vs {want}"
                );
                for xi in 0..A {
                    assert_eq!(
                        mats.a[xi * M + i],
                        mats.at[i * A + xi],
                        "A is Aᵀ transposed"
                    );
                }
            }
        }
    }

    #[test]
    fn one_dimensional_transforms_compute_the_correlation() {
        check_one_dimensional::<2, 4>();
        check_one_dimensional::<4, 6>();
    }

    /// Both layouts (tiles or channels as the lanes) of both tile sizes.
    const LAYOUTS: [ConvPath; 4] = [
        ConvPath::Winograd(Tile::F2),
        ConvPath::Winograd(Tile::F4),
        ConvPath::WinogradChannels(Tile::F2),
        ConvPath::WinogradChannels(Tile::F4),
    ];

    fn tile_of(layout: ConvPath) -> Tile {
        match layout {
            ConvPath::Winograd(tile) | ConvPath::WinogradChannels(tile) => tile,
            ConvPath::Auto | ConvPath::Gemm => unreachable!("not a Winograd layout"),
        }
    }

    /// The Winograd forward of the whole batch as one task, in `layout`.
    fn forward(
        g: &Geometry,
        layout: ConvPath,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut y = vec![0.0; g.n * g.out_image()];
        match layout {
            ConvPath::Winograd(tile) => Filters::new(g, tile, w).forward_images(g, x, b, &mut y),
            ConvPath::WinogradChannels(tile) => {
                winograd_channels::Filters::new(g, tile, w).forward_images(g, x, b, &mut y)
            }
            ConvPath::Auto | ConvPath::Gemm => unreachable!("not a Winograd layout"),
        }
        y
    }

    /// The Winograd backward in `layout`.
    fn backward_in(
        layout: ConvPath,
        g: &Geometry,
        x: &[f32],
        w: &[f32],
        dy: OutputGrad,
        needs: Needs,
    ) -> Grads {
        match layout {
            ConvPath::Winograd(tile) => backward(g, tile, x, w, dy, needs),
            ConvPath::WinogradChannels(tile) => {
                winograd_channels::backward(g, tile, x, w, dy, needs)
            }
            ConvPath::Auto | ConvPath::Gemm => unreachable!("not a Winograd layout"),
        }
    }

    /// The largest error of `got` over the largest magnitude of `want`.
    fn max_rel_error(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f32::max);
        err / want
            .iter()
            .map(|w| w.abs())
            .fold(f32::MIN_POSITIVE, f32::max)
    }

    /// Largest relative errors allowed: about four times the largest measured on these shapes
    /// (5.5e-7 for F(2×2, 3×3), in the weight gradient; 1.1e-5 for F(4×4, 3×3), in the output
    /// of the 64-channel shape — F(4×4)'s error grows with the number of channels summed).
    fn bound(tile: Tile) -> f32 {
        match tile {
            Tile::F2 => 2e-6,
            Tile::F4 => 4e-5,
        }
    }

    /// `(x shape, cout)`: odd sizes, one input channel, one output channel, batch 1, sizes that
    /// are not multiples of either tile (partial tiles at the edges), 1- and 2-pixel images,
    /// many small images in one block (several blocks, a short last one), and images cut into
    /// bands of tile rows (40² with 128 channels in and out).
    const SHAPES: &[([usize; 4], usize)] = &[
        ([2, 3, 7, 9], 4),
        ([1, 1, 6, 6], 3),
        ([3, 5, 5, 11], 1),
        ([1, 8, 13, 10], 6),
        ([2, 4, 1, 1], 2),
        ([3, 6, 2, 3], 5),
        ([40, 16, 4, 4], 8),
        ([37, 12, 6, 6], 9),
        ([2, 64, 40, 40], 64),
        ([1, 32, 9, 17], 16),
    ];

    /// Forward, input, weight and bias gradients of [`forward`] / [`backward`] against
    /// [`reference`] for both tile sizes; prints the measured errors (`--nocapture`).
    #[test]
    fn forward_and_gradients_match_the_reference() {
        for layout in LAYOUTS {
            let tile = tile_of(layout);
            let (mut worst, mut gemm_worst) = ([0.0f32; 4], [0.0f32; 4]);
            for (seed, &(xs, cout)) in SHAPES.iter().enumerate() {
                let ws = [cout, xs[1], 3, 3];
                let seed = 10 * seed as u64;
                let (x, w, b) = (
                    rand(&xs, seed),
                    rand(&ws, seed + 1),
                    rand(&[cout], seed + 2),
                );
                let g = geometry(&xs, &ws, Some(&[cout]), 1, 1);
                let y = forward(&g, layout, &x.to_vec(), &w.to_vec(), Some(&b.to_vec()));
                let dy = rand(&[xs[0], cout, xs[2], xs[3]], seed + 3).to_vec();
                let (dx, dw, db) = backward_in(
                    layout,
                    &g,
                    &x.to_vec(),
                    &w.to_vec(),
                    OutputGrad::Dense(&dy),
                    Needs {
                        x: true,
                        w: true,
                        b: true,
                    },
                );
                let want_y = reference::forward(&x, &w, Some(&b), 1, 1);
                let (want_dx, want_dw, want_db) = reference::backward(&x, &w, &dy, 1, 1);
                let errs = [
                    max_rel_error(&y, &want_y),
                    max_rel_error(&dx.unwrap(), &want_dx),
                    max_rel_error(&dw.unwrap(), &want_dw),
                    max_rel_error(&db.unwrap(), &want_db),
                ];
                // The GEMM path's errors on the same shape, for comparison (printed only).
                force_path(ConvPath::Gemm);
                let (x, w, b) = (x.to_vec(), w.to_vec(), b.to_vec());
                let y = super::super::forward(&g, &x, &w, Some(&b));
                let dy = OutputGrad::Dense(&dy);
                let (dx, dw, _) = super::super::backward(
                    &g,
                    &x,
                    &w,
                    dy,
                    Needs {
                        x: true,
                        w: true,
                        b: false,
                    },
                );
                force_path(ConvPath::Auto);
                let gemm_errs = [
                    max_rel_error(&y, &want_y),
                    max_rel_error(&dx.unwrap(), &want_dx),
                    max_rel_error(&dw.unwrap(), &want_dw),
                ];
                for (worst, e) in gemm_worst.iter_mut().zip(gemm_errs) {
                    *worst = worst.max(e);
                }
                for (name, (&e, worst)) in ["y", "dx", "dw", "db"]
                    .iter()
                    .zip(errs.iter().zip(&mut worst))
                {
                    assert!(
                        e <= bound(tile),
                        "{layout:?} {xs:?} → {cout}: {name} off by {e:e}"
                    );
                    *worst = worst.max(e);
                }
            }
            println!(
                "{layout:?}: largest relative errors y {:.1e}, dx {:.1e}, dw {:.1e}, db {:.1e} \
                 (GEMM path: y {:.1e}, dx {:.1e}, dw {:.1e})",
                worst[0], worst[1], worst[2], worst[3], gemm_worst[0], gemm_worst[1], gemm_worst[2]
            );
        }
    }

    /// Only the gradients asked for are computed, and they do not depend on the others.
    #[test]
    fn gradients_are_computed_only_when_needed() {
        let (xs, ws) = ([3, 4, 6, 5], [5, 4, 3, 3]);
        let g = geometry(&xs, &ws, None, 1, 1);
        let (x, w) = (rand(&xs, 1).to_vec(), rand(&ws, 2).to_vec());
        let dy = rand(&[3, 5, 6, 5], 3).to_vec();
        let grads = |need_x, need_w, need_b| {
            let needs = Needs {
                x: need_x,
                w: need_w,
                b: need_b,
            };
            backward(&g, Tile::F2, &x, &w, OutputGrad::Dense(&dy), needs)
        };
        let (all, dx, dw) = (
            grads(true, true, true),
            grads(true, false, false),
            grads(false, true, false),
        );
        assert_eq!(
            (dx.1.is_none(), dx.2.is_none(), dw.0.is_none()),
            (true, true, true)
        );
        assert_eq!(dx.0, all.0);
        assert_eq!(dw.1, all.1);
    }

    /// Gradchecks `conv2d` through its public entry point with Winograd forced on this thread.
    #[test]
    fn gradcheck_through_conv2d() {
        for tile in [Tile::F2, Tile::F4] {
            force_path(ConvPath::Winograd(tile));
            for (xs, ws) in [([2, 3, 5, 5], [4, 3, 3, 3]), ([1, 2, 6, 7], [3, 2, 3, 3])] {
                let g = geometry(&xs, &ws, None, 1, 1);
                assert_eq!(g.winograd(), Some(tile), "the forced path applies");
                let inputs = vec![rand(&xs, 1), rand(&ws, 2), rand(&[ws[0]], 3)];
                gradcheck(|t| t[0].conv2d(&t[1], t.get(2), 1, 1), &inputs)
                    .unwrap_or_else(|e| panic!("{tile:?} {xs:?} {ws:?}: {e}"));
            }
            force_path(ConvPath::Auto);
        }
    }

    /// Forcing the GEMM path turns Winograd off, and the two paths agree through `conv2d`.
    #[test]
    fn forced_paths_agree_through_conv2d() {
        let (x, w) = (rand(&[4, 16, 12, 12], 1), rand(&[16, 16, 3, 3], 2));
        force_path(ConvPath::Gemm);
        assert_eq!(geometry(x.shape(), w.shape(), None, 1, 1).winograd(), None);
        let want = x.conv2d(&w, None, 1, 1).to_vec();
        for tile in [Tile::F2, Tile::F4] {
            force_path(ConvPath::Winograd(tile));
            let got = x.conv2d(&w, None, 1, 1).to_vec();
            assert!(max_rel_error(&got, &want) <= bound(tile), "{tile:?}");
        }
        force_path(ConvPath::Auto);
    }
}
