//! The micro-kernel: one `MR × NR` tile of `C` from a packed strip of `A` and one of `B`.
//!
//! For every step `k` of the reduction the kernel reads `MR` values of `A` (one column of the
//! tile's rows) and `NR` values of `B` (one row of the tile's columns) and does the rank-1
//! update `acc[i][j] += a[i] · b[j]`. With `NR = 16` a row of `B` is one AVX-512 register and
//! each `a[i]` is broadcast once, so a step is 16 fused multiply-adds on 16 accumulator
//! registers fed by one load and 16 broadcasts: the FMA units, not memory, set the pace.
//! (16 × 16 leaves less padding at the edges than 8 × 32 for the conv shapes, e.g. 196-pixel
//! images, at the same speed.)
//!
//! The accumulators live in registers for the whole strip and touch `C` once at the end:
//! `C ← α·acc + β·C` (`C` is not read when `β = 0`, so it may hold garbage).
//!
//! Two implementations share the packed layout: AVX-512 intrinsics, chosen at run time when
//! the CPU has them, and a portable one in plain Rust for every other target.

/// Rows of a tile (values of `A` per reduction step).
pub(crate) const MR: usize = 16;
/// Columns of a tile (values of `B` per reduction step).
pub(crate) const NR: usize = 16;

/// Where one tile goes: `rows × cols` (at most `MR × NR`; fewer at the edges of `C`) with the
/// given strides, updated as `C ← α·acc + β·C`.
pub(crate) struct Tile {
    pub c: *mut f32,
    pub row_stride: usize,
    pub col_stride: usize,
    pub rows: usize,
    pub cols: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// Runs the fastest kernel this CPU supports over `kc` steps of the packed strips `a`
/// (`kc × MR`) and `b` (`kc × NR`).
///
/// # Safety
/// `tile` must describe a writable region of `C` that no other thread touches meanwhile.
#[inline]
pub(crate) unsafe fn tile(kc: usize, a: &[f32], b: &[f32], tile: &Tile) {
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F (checked above); the caller's contract covers `tile`.
        return unsafe { avx512::tile(kc, a, b, tile) };
    }
    let acc = portable(kc, a, b);
    // SAFETY: the caller's contract.
    unsafe { store(&acc, tile) }
}

/// The plain-Rust kernel: the same rank-1 updates on an array of accumulators.
fn portable(kc: usize, a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &ai) in acc.iter_mut().zip(ak) {
            for (c, &bj) in row.iter_mut().zip(bk) {
                *c += ai * bj;
            }
        }
    }
    acc
}

/// `C ← α·acc + β·C` for the tile's valid rows and columns, one value at a time (edge tiles,
/// strided `C`, and the portable kernel).
///
/// # Safety
/// As [`tile`].
unsafe fn store(acc: &[[f32; NR]; MR], t: &Tile) {
    for (i, row) in acc.iter().enumerate().take(t.rows) {
        for (j, &v) in row.iter().enumerate().take(t.cols) {
            // SAFETY: (i, j) lies inside the tile the caller vouched for.
            let c = unsafe { &mut *t.c.add(i * t.row_stride + j * t.col_stride) };
            *c = if t.beta == 0.0 {
                t.alpha * v
            } else {
                t.alpha * v + t.beta * *c
            };
        }
    }
}

/// Side of the blocks [`transpose_block`] turns.
pub(crate) const BLOCK: usize = 16;

/// Writes the transpose of a `16 × 16` block: row `i` of the source is
/// `src[i·src_stride..][..16]`, row `j` of the result goes to `dst[j·dst_stride..][..16]`.
/// Packing a transposed operand is a chain of these (in registers on AVX-512, 4 values per
/// shuffle, instead of one strided copy per value).
pub(crate) fn transpose_block(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    assert!(src.len() >= 15 * src_stride + BLOCK && dst.len() >= 15 * dst_stride + BLOCK);
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: AVX-512F is present and both extents were checked above.
        return unsafe {
            avx512::transpose16(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride)
        };
    }
    transpose_portable(src, src_stride, dst, dst_stride);
}

/// [`transpose_block`] one value at a time.
fn transpose_portable(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    for i in 0..BLOCK {
        for j in 0..BLOCK {
            dst[j * dst_stride + i] = src[i * src_stride + j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{store, Tile, MR, NR};
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub fn available() -> bool {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }

    /// # Safety
    /// The CPU must support AVX-512F; `t` as in [`super::tile`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile(kc: usize, a: &[f32], b: &[f32], t: &Tile) {
        let mut acc = [_mm512_setzero_ps(); MR];
        for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
            // SAFETY: `bk` holds NR = 16 values: one unaligned load.
            let bk = unsafe { _mm512_loadu_ps(bk.as_ptr()) };
            for (acc_i, &ai) in acc.iter_mut().zip(ak) {
                *acc_i = _mm512_fmadd_ps(_mm512_set1_ps(ai), bk, *acc_i);
            }
        }
        if t.rows == MR && t.cols == NR && t.col_stride == 1 {
            let (alpha, beta) = (_mm512_set1_ps(t.alpha), _mm512_set1_ps(t.beta));
            for (i, &v) in acc.iter().enumerate() {
                // SAFETY: a full tile with unit column stride: the 16 values of row i lie
                // inside the caller's tile.
                unsafe {
                    let c = t.c.add(i * t.row_stride);
                    let out = if t.beta == 0.0 {
                        _mm512_mul_ps(alpha, v)
                    } else {
                        _mm512_fmadd_ps(alpha, v, _mm512_mul_ps(beta, _mm512_loadu_ps(c)))
                    };
                    _mm512_storeu_ps(c, out);
                }
            }
            return;
        }
        let mut spill = [[0.0f32; NR]; MR];
        for (row, &v) in spill.iter_mut().zip(&acc) {
            // SAFETY: each row of `spill` holds 16 values.
            unsafe { _mm512_storeu_ps(row.as_mut_ptr(), v) };
        }
        // SAFETY: the caller's contract.
        unsafe { store(&spill, t) }
    }

    /// The 16 × 16 transpose of [`super::transpose_block`] in registers: 4 × 4 transposes
    /// inside each 128-bit lane (two rounds of unpacks), then a 4 × 4 transpose of the lanes
    /// across registers (two rounds of `shuffle_f32x4`).
    ///
    /// # Safety
    /// AVX-512F; 16 rows of 16 values readable at `src` and writable at `dst`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose16(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        // SAFETY: the caller guarantees 16 readable rows of 16 values.
        let r: [__m512; 16] =
            std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
        // Pairs of rows interleaved: t[2i], t[2i+1] = lo, hi of (r[2i], r[2i+1]).
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // Within each 128-bit lane, u[4g + c] holds column c of rows 4g..4g+4.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (g, c) = (i / 4, i % 4);
            let (a, b) = (
                _mm512_castps_pd(t[4 * g + c / 2]),
                _mm512_castps_pd(t[4 * g + 2 + c / 2]),
            );
            _mm512_castpd_ps(if c % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        // Output row 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
        for c in 0..4 {
            let (v0, v1, v2, v3) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
            let w0 = _mm512_shuffle_f32x4::<0x44>(v0, v1);
            let w1 = _mm512_shuffle_f32x4::<0xEE>(v0, v1);
            let w2 = _mm512_shuffle_f32x4::<0x44>(v2, v3);
            let w3 = _mm512_shuffle_f32x4::<0xEE>(v2, v3);
            let rows = [
                _mm512_shuffle_f32x4::<0x88>(w0, w2),
                _mm512_shuffle_f32x4::<0xDD>(w0, w2),
                _mm512_shuffle_f32x4::<0x88>(w1, w3),
                _mm512_shuffle_f32x4::<0xDD>(w1, w3),
            ];
            for (lane, row) in rows.into_iter().enumerate() {
                // SAFETY: the caller guarantees 16 writable rows of 16 values.
                unsafe { _mm512_storeu_ps(dst.add((4 * lane + c) * dst_stride), row) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Runs `kernel` on a strip of `kc` steps into a `rows × cols` tile of a strided C full of
    /// ones, with α = 2 and the given β, and checks it against the naive sum.
    fn check_kernel(
        kernel: impl Fn(usize, &[f32], &[f32], &Tile),
        beta: f32,
        rows: usize,
        cols: usize,
    ) {
        let kc = 37;
        let (a, b) = (values(kc * MR, 1), values(kc * NR, 2));
        let row_stride = NR + 4;
        let mut c = vec![1.0f32; MR * row_stride];
        let tile = Tile {
            c: c.as_mut_ptr(),
            row_stride,
            col_stride: 1,
            rows,
            cols,
            alpha: 2.0,
            beta,
        };
        kernel(kc, &a, &b, &tile);
        for i in 0..MR {
            for j in 0..row_stride {
                let got = c[i * row_stride + j];
                let want = if i < rows && j < cols {
                    let dot: f32 = (0..kc).map(|k| a[k * MR + i] * b[k * NR + j]).sum();
                    2.0 * dot + beta
                } else {
                    1.0 // outside the tile: untouched
                };
                assert!((got - want).abs() < 1e-4, "({i}, {j}): {got} vs {want}");
            }
        }
    }

    /// The portable kernel runs only on CPUs without AVX-512, so it is tested here directly.
    #[test]
    fn portable_kernel_matches_naive() {
        for (beta, rows, cols) in [(0.0, MR, NR), (1.0, MR - 3, NR - 5)] {
            // SAFETY: the tile lies inside `c` (checked by the indexing of `check_kernel`).
            let kernel =
                |kc, a: &[f32], b: &[f32], t: &Tile| unsafe { store(&portable(kc, a, b), t) };
            check_kernel(kernel, beta, rows, cols);
        }
    }

    #[test]
    fn dispatched_kernel_matches_naive() {
        // A full tile (the vector store) and an edge tile (through the spill), each β.
        for beta in [0.0, 1.0] {
            for (rows, cols) in [(MR, NR), (MR - 3, NR - 5)] {
                // SAFETY: as above.
                check_kernel(|kc, a, b, t| unsafe { tile(kc, a, b, t) }, beta, rows, cols);
            }
        }
    }

    #[test]
    fn both_transposes_match() {
        let (ss, ds) = (21, 19);
        let src = values(15 * ss + BLOCK, 3);
        let (mut fast, mut slow) = (vec![0.0; 15 * ds + BLOCK], vec![0.0; 15 * ds + BLOCK]);
        transpose_block(&src, ss, &mut fast, ds);
        transpose_portable(&src, ss, &mut slow, ds);
        assert_eq!(fast, slow);
        assert_eq!(slow[3 * ds + 5], src[5 * ss + 3]);
    }
}
