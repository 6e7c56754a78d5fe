//! The blocked GEMM behind [`gemm`](super::gemm): `C ← α·A·B + β·C` on one thread, in the
//! loop order of BLIS / GotoBLAS.
//!
//! ```text
//! for each block of NC columns of B and C
//!   for each block of KC steps of the reduction          (β applies to the first only)
//!     pack B[KC × NC] into strips of NR columns           (stays in L2)
//!     for each block of MC rows of A and C
//!       pack A[MC × KC] into strips of MR rows            (stays in L2)
//!       for each strip of A                               (16 KB: stays in L1)
//!         for each strip of B:  micro-kernel → one MR × NR tile of C
//! ```
//!
//! Packing copies each block once into the exact order the micro-kernel reads it (`kc` steps
//! of `MR` or `NR` consecutive values, zero-padded at the edges), so the kernel streams
//! contiguous memory whatever the strides of the operands: a transposed operand costs only a
//! differently ordered copy (16 × 16 blocks transposed in registers).
//!
//! A gathered `B` ([`Gathered`], a convolution's column matrix inside its zero-padded image)
//! is not packed at all: each strip of it is `NR` columns whose values for one step lie in
//! runs of 16, 8 or 4 in the source, so the micro-kernel loads them in place. Its transpose is
//! packed by 16 × 16 transposes of its rows.
//!
//! A product with at most two strips of `A` (or of `B`) reads the other operand in place
//! ([`THIN`]): each of its strips would be packed to be used once or twice, so the kernel
//! takes it where it lies, at its own strides, and only a partial strip at an edge (fewer than
//! `MR` rows or `NR` columns) is packed, zero-padded.
//!
//! A `B` that many products share (a Winograd layer's transformed filters, multiplied once per
//! block of tiles) is packed once, whole, by [`pack_all`] ([`Rhs::Packed`]), and its strips are
//! read where they lie.
//!
//! (A general implicit-im2col packer for any image width was tried first: with 14-pixel rows
//! cut into 16-wide strips the per-run bookkeeping cost more than the column buffer it saved.
//! Widths that fill whole strips need no bookkeeping; other widths still take im2col.)

use std::cell::RefCell;

use super::kernel::{self, transpose_block, transpose_rows, InPlace, Strip, Tile, BLOCK, MR, NR};
use super::{Gathered, MatRef, OutBlock, STRIP};
use crate::vector::as_uninit;

/// Reduction steps per block: an `MR × KC` strip of `A` is 16 KB, inside L1.
const KC: usize = 256;
/// Rows of `A` per block (`MC × KC`: 128 KB).
const MC: usize = 128;
/// Columns of `B` per block (`KC × NC`: 512 KB, inside the 1 MB L2 with `A`'s block).
const NC: usize = 512;

/// Products with at most this many columns (rows) read `A` (`B`) in place instead of packing
/// it: packing pays for its pass over the operand by reusing each packed strip for every strip
/// of the other operand, and with one or two of those (a Winograd layer's α² products at 16
/// to 32 channels, `K = Cin`, and its weight gradient's) the copy costs more than it saves.
/// Forward + backward of the width-16 ResNet's 16 → 16 Winograd layer: 1.09× (AMD EPYC Zen 3,
/// alternating, medians of 30); 64 was no better there and slower on 64 → 64.
const THIN: usize = 2 * NR;

/// Packs lanes `l0..l0 + lanes` × steps `k0..k0 + kc` of `x` (rows are lanes, columns are
/// reduction steps) into strips of `W` lanes: strip `s` holds, for each step, `W`
/// consecutive lane values, zero past the last lane.
fn pack_strips<const W: usize>(
    x: MatRef,
    l0: usize,
    lanes: usize,
    k0: usize,
    kc: usize,
    out: &mut [f32],
) {
    let (rs, cs) = (x.row_stride, x.col_stride);
    for (s, strip) in out[..lanes.div_ceil(W) * kc * W]
        .chunks_exact_mut(kc * W)
        .enumerate()
    {
        let first = l0 + s * W;
        let valid = (lanes - s * W).min(W);
        if rs == 1 {
            // The lanes of one step are contiguous: one short copy per step.
            for (k, dst) in strip.chunks_exact_mut(W).enumerate() {
                let at = first + (k0 + k) * cs;
                if valid == W {
                    <&mut [f32; W]>::try_from(dst)
                        .unwrap()
                        .copy_from_slice(&x.data[at..at + W]);
                } else {
                    dst[..valid].copy_from_slice(&x.data[at..at + valid]);
                    dst[valid..].fill(0.0);
                }
            }
            continue;
        }
        // Otherwise each lane runs along the steps (a transposed operand): whole 16 × 16
        // blocks are transposed in registers, the rest copied one value at a time.
        let mut done = 0;
        if cs == 1 && valid == W && W == BLOCK {
            done = kc - kc % BLOCK;
            for k in (0..done).step_by(BLOCK) {
                let at = first * rs + k0 + k;
                transpose_block(&x.data[at..], rs, as_uninit(&mut strip[k * W..]), W);
            }
        }
        if done < kc {
            for lane in 0..valid {
                let src = x.data[(first + lane) * rs + (k0 + done) * cs..]
                    .iter()
                    .step_by(cs);
                for (dst, &v) in strip[done * W + lane..].iter_mut().step_by(W).zip(src) {
                    *dst = v;
                }
            }
        }
        if valid < W {
            for dst in strip.chunks_exact_mut(W) {
                dst[valid..].fill(0.0);
            }
        }
    }
}

/// The right-hand operand `B` (`k × n`) of a product.
#[derive(Clone, Copy)]
pub(crate) enum Rhs<'a> {
    /// A strided matrix, packed block by block.
    Dense(MatRef<'a>),
    /// Read in place by the micro-kernel, one strip of [`NR`] columns per tile: no packing.
    Gathered(Gathered<'a>),
    /// The transpose of a gathered matrix (its rows are `B`'s columns), packed block by block
    /// with 16 × 16 transposes.
    GatheredT(Gathered<'a>),
    /// Packed beforehand by [`pack_all`] (`k × n`): its strips are read in place.
    Packed { data: &'a [f32], k: usize, n: usize },
}

impl Rhs<'_> {
    fn cols(&self) -> usize {
        match self {
            Rhs::Dense(b) => b.cols,
            Rhs::Gathered(g) => g.cols(),
            Rhs::GatheredT(g) => g.rows(),
            Rhs::Packed { n, .. } => *n,
        }
    }

    /// Packs rows `k0..k0 + kc` × columns `j0..j0 + nc` into strips of [`NR`] columns (a
    /// gathered `B` needs none).
    fn pack(&self, j0: usize, nc: usize, k0: usize, kc: usize, out: &mut [f32]) {
        match *self {
            Rhs::Dense(b) => pack_strips::<NR>(b.t(), j0, nc, k0, kc, out),
            Rhs::Gathered(_) | Rhs::Packed { .. } => {}
            Rhs::GatheredT(g) => pack_gathered_t(g, j0, nc, k0, kc, out),
        }
    }
}

/// Where [`pack_all`] puts the block of columns `j0..j0 + nc` × steps `k0..`: the column
/// blocks in order (each `k` steps of its strips, all but the last `NC` wide), the steps
/// inside one in blocks of [`KC`], as [`gemm_blocked`] visits them.
fn packed_offset(k: usize, j0: usize, nc: usize, k0: usize) -> usize {
    j0 * k + k0 * nc.div_ceil(NR) * NR
}

/// `B` (`k × n`) packed whole into the strips [`gemm_blocked`] reads, block by block in the
/// order it visits them: what it would pack on every call, done once for a `B` that many
/// products share ([`Rhs::Packed`]).
pub(crate) fn pack_all(b: MatRef) -> Vec<f32> {
    let (k, n) = (b.rows, b.cols);
    let mut out = vec![0.0; n.div_ceil(NR) * NR * k];
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            pack_strips::<NR>(
                b.t(),
                j0,
                nc,
                k0,
                kc,
                &mut out[packed_offset(k, j0, nc, k0)..],
            );
        }
    }
    out
}

/// [`pack_strips`] for the transpose of a gathered matrix `g`: lanes are rows `l0..l0 + lanes`
/// of `g`, steps are its columns `k0..k0 + kc`. Whole 16 × 16 blocks (16 rows, one strip of
/// columns) are transposed in registers, straight from the rows' addresses when a strip is one
/// run, else after copying its runs together; the rest is copied one value at a time.
fn pack_gathered_t(g: Gathered, l0: usize, lanes: usize, k0: usize, kc: usize, out: &mut [f32]) {
    const W: usize = NR;
    let mut block = [0.0f32; BLOCK * BLOCK];
    for (s, strip) in out[..lanes.div_ceil(W) * kc * W]
        .chunks_exact_mut(kc * W)
        .enumerate()
    {
        let first = l0 + s * W;
        let valid = (lanes - s * W).min(W);
        let mut done = 0;
        if valid == W && k0.is_multiple_of(STRIP) {
            done = kc - kc % STRIP;
            let rows = &g.row_offsets[first..first + W];
            for k in (0..done).step_by(STRIP) {
                let at = g.strip_offsets[(k0 + k) / STRIP];
                let dst = &mut strip[k * W..];
                if g.seg == STRIP {
                    let starts: [usize; BLOCK] = std::array::from_fn(|i| rows[i] + at);
                    transpose_rows(g.data, &starts, as_uninit(dst), W);
                    continue;
                }
                for (row, &r) in block.chunks_exact_mut(BLOCK).zip(rows) {
                    for (run, dst) in row.chunks_exact_mut(g.seg).enumerate() {
                        let src = r + at + run * g.seg_stride;
                        dst.copy_from_slice(&g.data[src..src + g.seg]);
                    }
                }
                transpose_block(&block, BLOCK, as_uninit(dst), W);
            }
        }
        for k in done..kc {
            let dst = &mut strip[k * W..(k + 1) * W];
            for (lane, d) in dst.iter_mut().enumerate() {
                *d = if lane < valid {
                    g.get(first + lane, k0 + k)
                } else {
                    0.0
                };
            }
        }
    }
}

thread_local! {
    /// This thread's packed blocks of `A` and `B`, kept between calls.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `C ← α·A·B + β·C` on the calling thread.
///
/// # Safety
/// Shapes and the extents of `A` and `B` must have been checked, and every element of `c` must
/// be valid for reads and writes, with nothing else accessing them during the call.
pub(crate) unsafe fn gemm_blocked(alpha: f32, a: MatRef, b: Rhs, beta: f32, c: OutBlock) {
    let (m, k, n) = (a.rows, a.cols, b.cols());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: the caller's contract.
        return unsafe { scale(beta, c) };
    }
    let (crs, ccs, c_ptr) = (c.row_stride, c.col_stride, c.ptr);
    let a_in_place = n <= THIN && !matches!(b, Rhs::Gathered(_));
    let b_in_place = match b {
        Rhs::Dense(d) if d.col_stride == 1 && m <= THIN => Some(d),
        _ => None,
    };
    PACKED.with(|bufs| {
        let (a_buf, b_buf) = &mut *bufs.borrow_mut();
        a_buf.resize(MC.div_ceil(MR) * MR * KC, 0.0);
        b_buf.resize(NC.div_ceil(NR) * NR * KC, 0.0);
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                let beta = if k0 == 0 { beta } else { 1.0 };
                // Strips `..b_full` of B are read in place, the rest packed.
                let b_full = if b_in_place.is_some() {
                    nc - nc % NR
                } else {
                    0
                };
                let b_block: &[f32] = match (b, b_in_place) {
                    (Rhs::Packed { data, k, .. }, _) => &data[packed_offset(k, j0, nc, k0)..],
                    (_, Some(d)) => {
                        if b_full < nc {
                            pack_strips::<NR>(d.t(), j0 + b_full, nc - b_full, k0, kc, b_buf);
                        }
                        b_buf
                    }
                    _ => {
                        b.pack(j0, nc, k0, kc, b_buf);
                        b_buf
                    }
                };
                for i0 in (0..m).step_by(MC) {
                    let mc = MC.min(m - i0);
                    let a_full = if a_in_place { mc - mc % MR } else { 0 };
                    if a_full < mc {
                        pack_strips::<MR>(a, i0 + a_full, mc - a_full, k0, kc, a_buf);
                    }
                    for ir in (0..mc).step_by(MR) {
                        let a_strip = if ir < a_full {
                            let at = (i0 + ir) * a.row_stride + k0 * a.col_stride;
                            Strip::InPlace(InPlace {
                                ptr: a.data[at..].as_ptr(),
                                step: a.col_stride,
                                lane: a.row_stride,
                            })
                        } else {
                            Strip::Packed(&a_buf[(ir - a_full) * kc..][..kc * MR])
                        };
                        for jr in (0..nc).step_by(NR) {
                            let (i, j) = (i0 + ir, j0 + jr);
                            let tile = Tile {
                                // SAFETY (of the offset): (i, j) is an element of C, valid
                                // by the caller's contract.
                                c: unsafe { c_ptr.add(i * crs + j * ccs) },
                                row_stride: crs,
                                col_stride: ccs,
                                rows: MR.min(m - i),
                                cols: NR.min(n - j),
                                alpha,
                                beta,
                            };
                            match b {
                                // SAFETY: the tile lies inside C, which is ours for the call;
                                // the caller checked that every strip of every row of the
                                // gathered B lies inside its buffer.
                                Rhs::Gathered(g) => unsafe {
                                    let Strip::Packed(a_strip) = a_strip else {
                                        unreachable!("a gathered B takes a packed A")
                                    };
                                    let strip = g.data.as_ptr().add(g.strip_offsets[j / NR]);
                                    kernel::tile_gathered(
                                        kc,
                                        a_strip,
                                        (strip, &g.row_offsets[k0..k0 + kc]),
                                        (g.seg, g.seg_stride),
                                        &tile,
                                    )
                                },
                                // SAFETY: the tile lies inside C, which is ours for the call;
                                // a strip in place is whole rows i..i + MR of A (columns
                                // j..j + NR of B) over steps k0..k0 + kc, inside the operand,
                                // whose extent the caller checked.
                                _ => unsafe {
                                    let b_strip = match b_in_place {
                                        Some(d) if jr < b_full => Strip::InPlace(InPlace {
                                            ptr: d.data[k0 * d.row_stride + j..].as_ptr(),
                                            step: d.row_stride,
                                            lane: 1,
                                        }),
                                        _ => {
                                            Strip::Packed(&b_block[(jr - b_full) * kc..][..kc * NR])
                                        }
                                    };
                                    kernel::tile(kc, a_strip, b_strip, &tile)
                                },
                            }
                        }
                    }
                }
            }
        }
    });
}

/// `C ← β·C` (an empty reduction); `β = 0` writes zeros without reading `C`.
///
/// # Safety
/// As [`gemm_blocked`]'s for `c`.
unsafe fn scale(beta: f32, c: OutBlock) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            // SAFETY: (i, j) is an element of C, valid by the caller's contract.
            let v = unsafe { &mut *c.ptr.add(i * c.row_stride + j * c.col_stride) };
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
    }
}
