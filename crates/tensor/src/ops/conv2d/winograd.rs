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
//! ## Many channels: α² GEMMs, the channels as vector lanes
//!
//! A convolution layer sums over its input channels:
//! `Y[tile, co] = Σ_ci Aᵀ [ U[co, ci] ⊙ V[tile, ci] ] A` with `U = G g Gᵀ` (per filter) and
//! `V = Bᵀ d B` (per input tile). `Aᵀ · A` is linear, so the sum moves inside it, and then each
//! of the α×α = 16 (or 36) positions `(ξ, ν)` of the tile is a matrix product on its own:
//!
//! ```text
//! M[ξ,ν] = V[ξ,ν] · U[ξ,ν]ᵀ        (tiles × Cout) = (tiles × Cin) · (Cin × Cout)
//! Y[tile, co] = Aᵀ M[·,·][tile, co] A
//! ```
//!
//! So the layer is: transform every input tile (`V`, additions), α² GEMMs with `K = Cin`
//! (2.25× or 4× fewer flops than the single `Cout × 9·Cin` GEMM of im2col), transform every
//! output tile back (additions). The GEMMs run on the crate's blocked kernel.
//!
//! The transforms run on whole pixel vectors: each block of images is first made
//! pixel-major (`[y][x][c]`, oneDNN's `nhwc`), so every pixel is a run of `C` contiguous
//! channels, an input tile is α × α such runs, and a 1-D transform is a few whole-register
//! additions per 16 channels, whatever the image size. (Vectorising along the tiles instead,
//! with the channel planes as they are, leaves short runs on small images — 7 tiles across
//! a 14-pixel image for F(2×2), 4 for F(4×4) — and measured 1.2–1.9× slower forward +
//! backward on every shape of `benches/conv.rs`.) The price is a transpose into pixel-major
//! before and one back after, each one pass over the block's input or output on the 16 × 16
//! shuffle kernel ([`transpose_strided`]). One block of `T` tiles:
//!
//! ```text
//! X  [images][rows][W][Cin]       the block's input rows, pixel-major
//! V  [α²][T][Cin]     V[ξ,ν][t] = (Bᵀ d_t B)[ξ,ν]       (input transform; zero padding
//!                                                         read as a run of zeros)
//! M  [α²][T][Cout]    M[ξ,ν] = V[ξ,ν] · U[ξ,ν]ᵀ          (α² GEMMs, K = Cin)
//! Y  [images][rows][Wo][Cout]     Y_t = Aᵀ M_t A + b     (output transform, cropped)
//! ```
//!
//! with `U[ξ,ν]` (`Cout × Cin`) stored transposed (`Cin × Cout`), so the GEMM reads both
//! operands row by row.
//!
//! ## Backward
//!
//! - The input gradient of a 3×3 stride-1 convolution with padding 1 is the same kind of
//!   convolution of `dY`, with the kernel flipped in both axes and its channel axes swapped
//!   ([`Geometry::adjoint`], [`adjoint_weight`]): it reuses the forward.
//! - The weight gradient goes backwards through each step of the forward. `Y = Aᵀ M A` has the
//!   adjoint `dM = A dY Aᵀ` (each output tile's gradient, zero where the tile overhangs the
//!   image, spread over the α×α positions); the GEMM `M[ξ,ν] = V[ξ,ν]·U[ξ,ν]ᵀ` has
//!   `dU[ξ,ν] += dM[ξ,ν]ᵀ · V[ξ,ν]` (summed over tiles and the batch); and `U = G g Gᵀ` has
//!   `dW = Gᵀ dU G` (the adjoint of the filter transform), applied once at the end. `V` is
//!   recomputed from the input rather than kept from the forward.
//! - Where a block holds whole images (all but large images), the two gradients go block by
//!   block together, and the block's `dY`, made pixel-major once, serves both: the weight
//!   gradient's `dM` and, as the adjoint convolution's input, the input gradient (one layout
//!   pass over `dY` instead of two; 1–4 % of the layer's forward + backward).
//! - The bias gradient is the sum of `dY` per channel, as on the GEMM path.
//!
//! ## Scheduling
//!
//! As on the GEMM path ([`super`]): one rayon task per group of images, the weight gradient
//! accumulated per worker (rayon `fold`) and summed at the end (`reduce`). A task works through
//! *blocks* of tiles, a few whole images (small images) or a band of tile rows of one image,
//! sized so that the block's `V` and `M` stay near L2 ([`BLOCK_BYTES`]); they live in the
//! thread's scratch buffer, never for the whole batch (at batch 256 × 64 channels × 32² the
//! batch's `V` would be 256 MB). Tiles are numbered across the images of a block, so the GEMMs
//! run over all of them at once, however small the images.
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
use std::mem::MaybeUninit;

use super::geometry::{adjoint_weight, Geometry};
use super::{over_image_tasks, with_scratch, Grads, Needs, OutputGrad, Task};
use rayon::prelude::*;

use crate::gemm::{gemm, gemm_packed, MatMut, MatRef, PackedRhs};
use crate::vector::{as_uninit, transpose_strided};

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
fn forced_path() -> ConvPath {
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
            ConvPath::Winograd(tile) => Some(tile),
        }
    }

    /// Where Winograd beats the GEMM path, forward + backward, as measured with
    /// `benches/conv.rs` (one quiet run each, 2 threads, each shape running the paths back to
    /// back): FLOP/s of forward + backward over the GEMM path's, on an AMD EPYC Zen 4 with
    /// AVX-512 and on a Zen 3 with AVX2 + FMA only.
    ///
    /// | shape (batch 128, or 256 at 24 px and MNIST) | Zen 4 F(2×2) | Zen 4 F(4×4) | Zen 3 F(2×2) | Zen 3 F(4×4) |
    /// |---|---|---|---|---|
    /// | 64 → 64 at 32² | 1.38 | **1.90** | 1.45 | **1.69** |
    /// | 16 → 16 at 32² | 0.64 | **0.97** | 0.75 | **1.07** |
    /// | 16 → 16 at 24² | 0.84 | **1.34** | 0.87 | **1.23** |
    /// | 128 → 128 at 16² | 1.68 | **2.20** | 1.37 | **1.52** |
    /// | 32 → 64 at 14² (MNIST) | 1.37 | **1.55** | 1.21 | **1.32** |
    /// | 32 → 32 at 12² | 1.17 | **1.37** | 1.29 | **1.68** |
    /// | 256 → 256 at 8² | **1.65** | 1.40 | 1.76 | **1.89** |
    /// | 64 → 64 at 6² | **1.78** | 1.10 | **1.91** | 1.54 |
    /// | 512 → 512 at 4² | **1.37** | 0.76 | 1.49 | **1.66** |
    /// | 128 → 128 at 3² | **1.34** | 0.83 | **1.48** | 1.33 |
    ///
    /// So: at least 16 channels in and out (with fewer, the GEMMs' `K = Cin` is too thin to run
    /// fast; 16 channels at 32² is about a tie), F(4×4) from 12 pixels a side, F(2×2) from 3 to
    /// 11 (where F(4×4)'s 6 × 6 input tiles are mostly padding and its 36 GEMMs have few tiles
    /// each). Below 3 pixels, most of any tile is padding. One exception without AVX-512: there
    /// the α² GEMMs run at half the vector width, so F(4×4)'s 4× fewer multiplications (against
    /// F(2×2)'s 2.25×) outweigh its heavier transforms wherever its tiles cover the image
    /// exactly, at 4 and 8 pixels a side.
    fn winograd_pays(&self) -> Option<Tile> {
        let (channels, side) = (self.cin.min(self.cout), self.ho.min(self.wo));
        match side {
            _ if channels < 16 => None,
            12.. => Some(Tile::F4),
            4.. if side % 4 == 0 && !wide_vectors() => Some(Tile::F4),
            3.. => Some(Tile::F2),
            _ => None,
        }
    }
}

/// Whether the CPU has AVX-512 (16 f32 lanes per register), which [`Geometry::winograd_pays`]
/// weighs.
pub(super) fn wide_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Target size of one block's `V` and `M` together: within the 1 MiB of L2 per core that the
/// GEMM's packed panels share.
const BLOCK_BYTES: usize = 1 << 20;

/// Fewest tiles per block: below this the α² GEMMs re-pack their `U[ξ,ν]ᵀ` (`Cin × Cout`) for
/// too few rows. Wide layers take more ([`Plan::new`]): at least `Cin·Cout / (Cin + Cout)`
/// tiles, so that reading a block's filters (`α²·Cin·Cout` values, from L3 at 256 or 512
/// channels) costs no more than writing and reading its `V` and `M` (`α²·(Cin + Cout)` values
/// a tile): 256 tiles at 512 channels, where 64 made the 512 → 512 layer at 4 × 4 barely
/// faster than the GEMM path (1.06×, against 1.2× with 256, Intel Xeon).
const MIN_BLOCK_TILES: usize = 64;

/// Channels per chunk of the transforms' vector loops (one AVX-512 register of f32).
const LANES: usize = 16;

/// The transform matrices of one tile size, row-major: `bt` (`α×α`), `at` (`m×α`), `a` = `Aᵀ`
/// transposed (`α×m`, for the adjoint of the output transform), `g` (`α×3`, in f64: the filter
/// transforms run once per call, in f64, so `1/6` and `1/24` round only once).
struct Matrices {
    bt: &'static [f32],
    at: &'static [f32],
    a: &'static [f32],
    g: &'static [f64],
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
fn matrices<const M: usize>() -> &'static Matrices {
    match M {
        2 => &F2_MATRICES,
        4 => &F4_MATRICES,
        _ => unreachable!("Winograd tiles are 2×2 or 4×4"),
    }
}

/// A convolution's transformed filters, each position's `U[ξ,ν]ᵀ` (`Cin × Cout`) packed once
/// for the α² GEMMs of every block ([`PackedRhs`]), and its plan: what every task of the
/// forward shares.
pub(super) struct Filters {
    tile: Tile,
    plan: Plan,
    positions: Vec<PackedRhs>,
}

impl Filters {
    pub fn new(g: &Geometry, tile: Tile, w: &[f32]) -> Filters {
        let (plan, positions) = match tile {
            Tile::F2 => (Plan::new::<2, 4>(g), packed_filters::<2, 4>(g, w)),
            Tile::F4 => (Plan::new::<4, 6>(g), packed_filters::<4, 6>(g, w)),
        };
        Filters {
            tile,
            plan,
            positions,
        }
    }

    /// Images per task.
    pub fn task_images(&self) -> usize {
        self.plan.task_images
    }

    /// The forward of one task's images `x_t` into `y_t` (both channel planes, as everywhere).
    /// Every value of `y_t` is written, so it need not be initialised.
    pub fn forward_images(
        &self,
        g: &Geometry,
        x_t: &[f32],
        bias: Option<&[f32]>,
        y_t: &mut [MaybeUninit<f32>],
    ) {
        match self.tile {
            Tile::F2 => convolve_images::<2, 4>(g, &self.plan, x_t, &self.positions, bias, y_t),
            Tile::F4 => convolve_images::<4, 6>(g, &self.plan, x_t, &self.positions, bias, y_t),
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

/// How a convolution is cut into tasks and blocks of tiles (see *Scheduling* above).
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Tiles down and across one image: `ceil(ho / m)`, `ceil(wo / m)`.
    th: usize,
    tw: usize,
    /// Images per rayon task (and per block, unless images are cut into bands).
    task_images: usize,
    /// Tile rows per block (`th` unless an image is cut into bands).
    band_rows: usize,
}

/// A block of tiles: images `first..first + images` of a task, tile rows `ty0..ty1` of each.
#[derive(Clone, Copy, Debug)]
struct Block {
    first: usize,
    images: usize,
    ty0: usize,
    ty1: usize,
}

impl Plan {
    fn new<const M: usize, const A: usize>(g: &Geometry) -> Plan {
        let (th, tw) = (g.ho.div_ceil(M), g.wo.div_ceil(M));
        let bytes_per_tile = std::mem::size_of::<f32>() * A * A * (g.cin + g.cout);
        let target = (BLOCK_BYTES / bytes_per_tile)
            .max(MIN_BLOCK_TILES)
            .max(g.cin * g.cout / (g.cin + g.cout));
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
    fn blocks(&self, images: usize) -> Vec<Block> {
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
}

/// `N` disjoint slices of `len` values of `buf`, the first at `start`, the next `stride` apart.
fn rows_mut<const N: usize>(
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
fn rows<const N: usize>(buf: &[f32], start: usize, stride: usize, len: usize) -> [&[f32]; N] {
    std::array::from_fn(|i| &buf[start + i * stride..][..len])
}

/// `outs[o] = Σ_i coef[o·I + i] · ins[i]`, lane by lane (all slices of one length): one 1-D
/// transform applied to every channel of its pixels at once. `coef` is one of the constant
/// [`Matrices`], so after inlining the zero coefficients drop out and `±1` become additions.
/// Runs of 16, 8 and 4 lanes, then single lanes (channel counts that are not multiples of 16),
/// each loaded and stored in place.
#[inline(always)]
fn combine<const I: usize, const O: usize>(
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

/// `U[ξ,ν][co][ci] = (G g Gᵀ)[ξ,ν]` for every filter `g = w[co][ci]`, stored transposed for
/// the forward's GEMMs and grouped by input channel: `[cin][α²][cout]` (one input channel's
/// filters per rayon task).
fn transform_filter<const M: usize, const A: usize>(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let gm = matrices::<M>().g;
    let (cin, cout) = (g.cin, g.cout);
    let mut u = vec![0.0; A * A * cout * cin];
    u.par_chunks_mut(A * A * cout)
        .enumerate()
        .for_each(|(ci, u_ci)| {
            for co in 0..cout {
                let taps = &w[(co * cin + ci) * 9..][..9];
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
                        u_ci[(xi * A + nu) * cout + co] = v as f32;
                    }
                }
            }
        });
    u
}

/// The transformed filters of every position `k = ξ·α + ν`, `U[ξ,ν]ᵀ` (`Cin × Cout`, rows
/// `α²·Cout` apart in the [`transform_filter`] layout), each packed for the GEMMs.
fn packed_filters<const M: usize, const A: usize>(g: &Geometry, w: &[f32]) -> Vec<PackedRhs> {
    let u_t = transform_filter::<M, A>(g, w);
    (0..A * A)
        .into_par_iter()
        .map(|k| {
            PackedRhs::new(MatRef {
                data: &u_t[k * g.cout..],
                rows: g.cin,
                cols: g.cout,
                row_stride: A * A * g.cout,
                col_stride: 1,
            })
        })
        .collect()
}

/// The adjoint of [`transform_filter`]: `dW[co][ci] = Gᵀ dU[·,·][co][ci] G`, `[cout][cin][3][3]`,
/// from `dU` as the weight-gradient GEMMs leave it, `[α²][cout][cin]`.
fn filter_grad<const M: usize, const A: usize>(g: &Geometry, du: &[f32]) -> Vec<f32> {
    let gm = matrices::<M>().g;
    let filters = g.cout * g.cin;
    let mut dw = vec![0.0; 9 * filters];
    dw.par_chunks_mut(9 * g.cin)
        .enumerate()
        .for_each(|(co, dw_co)| {
            for (ci, taps) in dw_co.chunks_exact_mut(9).enumerate() {
                let f = co * g.cin + ci;
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
        });
    dw
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

    /// Image, tile row (within the band) and tile column of tile `t`.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        (
            t / (self.band * self.tw),
            (t / self.tw) % self.band,
            t % self.tw,
        )
    }

    /// The pixels of each image's slice of the input (`X`) and of the output (`Y`).
    fn in_pixels(&self, g: &Geometry) -> usize {
        (self.iy1 - self.iy0) * g.w
    }

    fn out_pixels(&self, g: &Geometry) -> usize {
        (self.oy1 - self.oy0) * g.wo
    }

    /// `X`: the block's input rows (of the task's images `x_t`), pixel-major.
    fn input_to_pixels(&self, g: &Geometry, block: &Block, x_t: &[f32], xp: &mut [f32]) {
        let (plane, rows) = (g.h * g.w, self.iy0 * g.w..self.iy1 * g.w);
        to_pixels(x_t, g.in_image(), plane, g.cin, block, rows, xp);
    }

    /// The block's rows of the output gradient (of the task's images `dy_t`), pixel-major.
    fn grad_to_pixels(&self, g: &Geometry, block: &Block, dy_t: &[f32], dyp: &mut [f32]) {
        let (plane, rows) = (g.ho * g.wo, self.oy0 * g.wo..self.oy1 * g.wo);
        to_pixels(dy_t, g.out_image(), plane, g.cout, block, rows, dyp);
    }

    /// The block's buffers in a thread's `scratch`.
    fn buffers<'s, const A: usize>(
        &self,
        g: &Geometry,
        block: &Block,
        scratch: &'s mut [f32],
    ) -> Buffers<'s> {
        let (xp, rest) = scratch.split_at_mut(block.images * self.in_pixels(g) * g.cin);
        let (v, rest) = rest.split_at_mut(A * A * self.tiles * g.cin);
        let (m, rest) = rest.split_at_mut(A * A * self.tiles * g.cout);
        let (yp, stage) = rest.split_at_mut(block.images * self.out_pixels(g) * g.cout);
        Buffers {
            xp,
            v,
            m,
            yp,
            stage,
        }
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

/// One block's buffers (in the thread's scratch): `X` (the pixel-major input), `V`, `M` (or
/// `dM`), `Y` (or the pixel-major `dY`), and the transforms' stage (one tile's intermediate
/// rows and a run of zeros).
struct Buffers<'s> {
    xp: &'s mut [f32],
    v: &'s mut [f32],
    m: &'s mut [f32],
    yp: &'s mut [f32],
    stage: &'s mut [f32],
}

/// Runs `f` on every block of one task's images `x_t`, with the block's input made pixel-major
/// in its buffers' `X` and transformed (`Bᵀ d B`) into their `V`.
fn with_input_transformed<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    x_t: &[f32],
    mut f: impl FnMut(&Block, &Span, Buffers),
) {
    for block in plan.blocks(x_t.len() / g.in_image()) {
        let span = Span::of::<M>(g, plan, &block);
        with_scratch(Span::scratch_len::<A>(g, plan), |scratch| {
            let b = span.buffers::<A>(g, &block, scratch);
            span.input_to_pixels(g, &block, x_t, b.xp);
            transform_input::<M, A>(g, &span, b.xp, b.v, b.stage);
            f(&block, &span, b);
        });
    }
}

/// The forward of one task's images, block by block: pixel-major input, input transform, α²
/// GEMMs, output transform, channel planes again.
fn convolve_images<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    x_t: &[f32],
    positions: &[PackedRhs],
    bias: Option<&[f32]>,
    y_t: &mut [MaybeUninit<f32>],
) {
    with_input_transformed::<M, A>(g, plan, x_t, |block, span, b| {
        let Buffers {
            v, m, yp, stage, ..
        } = b;
        convolve_transformed::<M, A>(g, (block, span), v, positions, bias, [m, yp, stage], y_t);
    });
}

/// The rest of one block's forward, from its transformed input `v`: α² GEMMs into `m`, output
/// transform into the pixel-major `yp`, channel planes of `y_t`.
fn convolve_transformed<const M: usize, const A: usize>(
    g: &Geometry,
    (block, span): (&Block, &Span),
    v: &[f32],
    positions: &[PackedRhs],
    bias: Option<&[f32]>,
    [m, yp, stage]: [&mut [f32]; 3],
    y_t: &mut [MaybeUninit<f32>],
) {
    let (tiles, cin, cout) = (span.tiles, g.cin, g.cout);
    for ((v_k, m_k), u_k) in v
        .chunks_exact(tiles * cin)
        .zip(m.chunks_exact_mut(tiles * cout))
        .zip(positions)
    {
        let v_k = MatRef::new(v_k, tiles, cin);
        gemm_packed(1.0, v_k, u_k, 0.0, MatMut::new(m_k, tiles, cout));
    }
    transform_output::<M, A>(g, span, m, bias, yp, stage);
    from_pixels(g, span, block, yp, y_t);
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
        transpose_strided(src_k, c, len, plane, as_uninit(dst_k), c);
    }
}

/// The block's output `Y` (pixel-major, `[images][pixels][Cout]`) into its rows of the channel
/// planes of `y_t`. The blocks of a task cover its images' rows, so together they write all of
/// `y_t`.
fn from_pixels(g: &Geometry, span: &Span, block: &Block, yp: &[f32], y_t: &mut [MaybeUninit<f32>]) {
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
    xp: &[f32],
    v: &mut [f32],
    stage: &mut [f32],
) {
    let bt = matrices::<M>().bt;
    let (tiles, height, c) = (span.tiles, span.iy1 - span.iy0, g.cin);
    let (stage, zeros) = stage[..(A + 1) * A * c].split_at_mut(A * A * c);
    let zeros = &mut zeros[..c];
    zeros.fill(0.0);
    for t in 0..tiles {
        let (k, ty, tx) = span.tile(t);
        let img = &xp[k * height * g.w * c..][..height * g.w * c];
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
    let height = span.oy1 - span.oy0;
    let (stage, out) = stage[..(A + 1) * A * c].split_at_mut(M * A * c);
    for t in 0..tiles {
        let (k, ty, tx) = span.tile(t);
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

/// `dM_t = A dY_t Aᵀ` for every tile `t` of the block, from its pixel-major output gradient
/// `dyp` (the rows `span.oy0..oy1` of each image; zero where a tile overhangs the image).
fn transform_grad<const M: usize, const A: usize>(
    g: &Geometry,
    span: &Span,
    dyp: &[f32],
    dm: &mut [f32],
    stage: &mut [f32],
) {
    let a_mat = matrices::<M>().a;
    let (tiles, c, wo) = (span.tiles, g.cout, g.wo);
    let height = span.oy1 - span.oy0;
    let (stage, zeros) = stage[..(A + 1) * A * c].split_at_mut(A * A * c);
    let zeros = &mut zeros[..c];
    zeros.fill(0.0);
    for t in 0..tiles {
        let (k, ty, tx) = span.tile(t);
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
    let whole_images = plan.band_rows == plan.th;
    let step = |task: Task<[MaybeUninit<f32>]>| {
        let Task { x, dy, dx, dw } = task;
        match (dw, dx, adjoint.as_ref()) {
            (Some(du), Some(dx), Some(adjoint)) if whole_images => {
                gradients_images::<M, A>(g, &plan, (x, dy), du, (&adj, adjoint), dx);
            }
            (du, dx, adjoint) => {
                if let Some(du) = du {
                    weight_grad_images::<M, A>(g, &plan, x, dy, du);
                }
                if let (Some(dx), Some(adjoint)) = (dx, adjoint) {
                    adjoint.forward_images(&adj, dy, None, dx);
                }
            }
        }
    };
    let (dx, du, db) = over_image_tasks(g, x, dy, plan.task_images, du_len, needs, step);
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
    with_input_transformed::<M, A>(g, plan, x_t, |block, span, b| {
        weight_grad_block::<M, A>(g, (block, span), dy_t, b.v, [b.m, b.yp, b.stage], du);
    });
}

/// One block's `dU += dMᵀ·V`, from its transformed input `v`: `dY` made pixel-major into
/// `dyp` (left there for the caller), `dM = A dY Aᵀ` into `dm`, α² GEMMs.
fn weight_grad_block<const M: usize, const A: usize>(
    g: &Geometry,
    (block, span): (&Block, &Span),
    dy_t: &[f32],
    v: &[f32],
    [dm, dyp, stage]: [&mut [f32]; 3],
    du: &mut [f32],
) {
    let (tiles, cin, cout) = (span.tiles, g.cin, g.cout);
    span.grad_to_pixels(g, block, dy_t, dyp);
    transform_grad::<M, A>(g, span, dyp, dm, stage);
    for ((dm_k, v_k), du_k) in dm
        .chunks_exact(tiles * cout)
        .zip(v.chunks_exact(tiles * cin))
        .zip(du.chunks_exact_mut(cout * cin))
    {
        let dm_t = MatRef::new(dm_k, tiles, cout).t();
        let v_k = MatRef::new(v_k, tiles, cin);
        gemm(1.0, dm_t, v_k, 1.0, MatMut::new(du_k, cout, cin));
    }
}

/// Both gradients of one task's images when its blocks are whole images, so that a block's
/// `dY` is also the whole input of the adjoint convolution's block: made pixel-major once for
/// the weight gradient ([`weight_grad_block`]), then transformed as that convolution's input,
/// into buffers the weight gradient is done with (its `V` where `dM` was, its products where
/// `V` was, its pixel-major output where `X` was).
fn gradients_images<const M: usize, const A: usize>(
    g: &Geometry,
    plan: &Plan,
    (x_t, dy_t): (&[f32], &[f32]),
    du: &mut [f32],
    (adj, adjoint): (&Geometry, &Filters),
    dx_t: &mut [MaybeUninit<f32>],
) {
    debug_assert!(plan.band_rows == plan.th && g.h == g.ho && g.w == g.wo);
    with_input_transformed::<M, A>(g, plan, x_t, |block, span, b| {
        let Buffers {
            xp,
            v,
            m,
            yp,
            stage,
        } = b;
        weight_grad_block::<M, A>(
            g,
            (block, span),
            dy_t,
            v,
            [&mut *m, &mut *yp, &mut *stage],
            du,
        );
        // The adjoint convolution of the block, from its input `dY` already in `yp`.
        let adj_span = Span::of::<M>(adj, plan, block);
        let dxp = &mut xp[..block.images * adj_span.out_pixels(adj) * adj.cout];
        transform_input::<M, A>(adj, &adj_span, yp, m, stage);
        let positions = &adjoint.positions;
        convolve_transformed::<M, A>(
            adj,
            (block, &adj_span),
            m,
            positions,
            None,
            [v, dxp, stage],
            dx_t,
        );
    });
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::super::{geometry, reference, OutputGrad};
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

    /// The Winograd forward of the whole batch as one task, into a buffer of NaNs: it must
    /// write every value (the convolution hands it uninitialised memory).
    fn forward(g: &Geometry, tile: Tile, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let mut y = vec![f32::NAN; g.n * g.out_image()];
        Filters::new(g, tile, w).forward_images(g, x, bias, as_uninit(&mut y));
        assert!(
            y.iter().all(|v| !v.is_nan()),
            "an output value left unwritten"
        );
        y
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
        for tile in [Tile::F2, Tile::F4] {
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
                let y = forward(&g, tile, &x.to_vec(), &w.to_vec(), Some(&b.to_vec()));
                let dy = rand(&[xs[0], cout, xs[2], xs[3]], seed + 3).to_vec();
                let (dx, dw, db) = backward(
                    &g,
                    tile,
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
                        "{tile:?} {xs:?} → {cout}: {name} off by {e:e}"
                    );
                    *worst = worst.max(e);
                }
            }
            println!(
                "{tile:?}: largest relative errors y {:.1e}, dx {:.1e}, dw {:.1e}, db {:.1e} \
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
