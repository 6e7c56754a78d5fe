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
//! Three implementations share the packed layout, the fastest the CPU has chosen at run time
//! ([`Isa`]): AVX-512; AVX2 with FMA, whose 16 registers of 8 lanes hold a third of the tile,
//! so it runs the strip in three passes of 6, 6 and 4 rows (12 accumulators, two loads of
//! `B` and a broadcast each step); and plain Rust for every other target.
//!
//! A step's row of `B` comes from a packed strip (`NR` values per step) or, for a gathered
//! matrix ([`Gathered`](super::Gathered)), from its own offset in the source ([`Steps`]).

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Rows of a tile (values of `A` per reduction step).
pub(crate) const MR: usize = 16;
/// Columns of a tile (values of `B` per reduction step).
pub(crate) const NR: usize = 16;

/// The instruction sets the kernels are written for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

impl Isa {
    /// The best this CPU supports (detected once).
    pub fn detected() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    return Isa::Avx2Fma;
                }
            }
            Isa::Portable
        })
    }

    /// Every instruction set this CPU can run (the tests run each).
    #[cfg(test)]
    pub fn all_available() -> Vec<Isa> {
        let best = Isa::detected();
        [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
            .into_iter()
            .filter(|&isa| match best {
                Isa::Avx512 => true,
                Isa::Avx2Fma => isa != Isa::Avx512,
                Isa::Portable => isa == Isa::Portable,
            })
            .collect()
    }
}

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

impl Tile {
    /// A whole tile with unit column stride: rows can be written as vectors.
    fn is_full(&self) -> bool {
        self.rows == MR && self.cols == NR && self.col_stride == 1
    }
}

/// Where the kernel finds the `MR` values of `A` for each reduction step: value `i` of step `k`
/// at `start + k·step + i·lane`. A packed strip has them together (`step = MR`, `lane = 1`);
/// a strip read in place from its matrix ([`InPlace`]) has the matrix's strides.
trait Lanes: Copy {
    /// Value 0 of step 0.
    fn start(self) -> *const f32;

    /// The distance between two steps' values of one lane.
    fn step(self) -> usize;

    /// The distance between two lanes' values of one step.
    fn lane(self) -> usize;
}

/// A packed strip of `A`: step `k`'s `MR` values at `k·MR`.
#[derive(Clone, Copy)]
struct PackedLanes(*const f32);

impl Lanes for PackedLanes {
    #[inline(always)]
    fn start(self) -> *const f32 {
        self.0
    }

    #[inline(always)]
    fn step(self) -> usize {
        MR
    }

    #[inline(always)]
    fn lane(self) -> usize {
        1
    }
}

/// `MR` rows of `A` (or `NR` columns of `B`) read where they lie in their matrix: value `i` of
/// step `k` at `ptr + k·step + i·lane`. What packing would copy into a strip, for a product too
/// thin to pay for the copy ([`super::blocked`]).
#[derive(Clone, Copy)]
pub(crate) struct InPlace {
    pub ptr: *const f32,
    pub step: usize,
    pub lane: usize,
}

impl Lanes for InPlace {
    #[inline(always)]
    fn start(self) -> *const f32 {
        self.ptr
    }

    #[inline(always)]
    fn step(self) -> usize {
        self.step
    }

    #[inline(always)]
    fn lane(self) -> usize {
        self.lane
    }
}

/// A strip of `A` or `B` as the kernel takes it: packed, or read in place (for `B`, with
/// `lane = 1`: its `NR` values of a step are contiguous).
#[derive(Clone, Copy)]
pub(crate) enum Strip<'a> {
    Packed(&'a [f32]),
    InPlace(InPlace),
}

/// Where the kernel finds the `NR` values of `B` for each reduction step: `NR / SEG` runs of
/// `SEG` contiguous values, `seg_stride` apart, the first at `row(k)`.
trait Steps: Copy {
    /// Length of each contiguous run (16, 8 or 4).
    const SEG: usize;

    /// The start of step `k`'s first run.
    ///
    /// # Safety
    /// `k` must be below the strip's `kc`.
    unsafe fn row(self, k: usize) -> *const f32;

    /// The distance between the runs of one step.
    fn seg_stride(self) -> usize;

    /// Step `k`'s values, one at a time (the portable kernel).
    ///
    /// # Safety
    /// As [`row`](Self::row), and the runs must be readable.
    #[inline(always)]
    unsafe fn values(self, k: usize) -> [f32; NR] {
        // SAFETY: the caller's contract.
        let p = unsafe { self.row(k) };
        std::array::from_fn(|j| unsafe {
            *p.add(j / Self::SEG * self.seg_stride() + j % Self::SEG)
        })
    }
}

/// A packed strip of `B`: step `k` at `k·NR`, in one run.
#[derive(Clone, Copy)]
struct PackedSteps(*const f32);

impl Steps for PackedSteps {
    const SEG: usize = NR;

    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // SAFETY: the caller keeps `k < kc`; the strip holds `kc·NR` values.
        unsafe { self.0.add(k * NR) }
    }

    fn seg_stride(self) -> usize {
        NR
    }
}

/// A strip of `B` in place: step `k` at `ptr + k·step`, in one run (`lane` is 1).
impl Steps for InPlace {
    const SEG: usize = NR;

    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // SAFETY: the caller keeps `k < kc` and vouched that every step's run is readable.
        unsafe { self.ptr.add(k * self.step) }
    }

    fn seg_stride(self) -> usize {
        NR
    }
}

/// A gathered strip: step `k` at `offsets[k]`, in runs of `SEG`.
#[derive(Clone, Copy)]
struct Gather<'a, const SEG: usize> {
    base: *const f32,
    offsets: &'a [usize],
    seg_stride: usize,
}

impl<const SEG: usize> Steps for Gather<'_, SEG> {
    const SEG: usize = SEG;

    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // SAFETY: the caller keeps `k < kc ≤ offsets.len()`, and vouched that the runs are
        // readable at every offset.
        unsafe { self.base.add(*self.offsets.get_unchecked(k)) }
    }

    #[inline(always)]
    fn seg_stride(self) -> usize {
        self.seg_stride
    }
}

/// Runs the fastest kernel this CPU supports over `kc` steps of the strips `a` (`kc × MR`)
/// and `b` (`kc × NR`), each packed or read in place.
///
/// # Safety
/// `tile` must describe a writable region of `C` that no other thread touches meanwhile; a
/// strip read in place must have `kc` readable steps of `MR` (`NR`) values.
#[inline]
pub(crate) unsafe fn tile(kc: usize, a: Strip, b: Strip, tile: &Tile) {
    let isa = Isa::detected();
    let packed_a = |a: &[f32]| {
        assert!(a.len() >= kc * MR);
        PackedLanes(a.as_ptr())
    };
    let packed_b = |b: &[f32]| {
        assert!(b.len() >= kc * NR);
        PackedSteps(b.as_ptr())
    };
    let in_place_b = |b: InPlace| {
        assert_eq!(
            b.lane, 1,
            "a strip of B in place has its NR values together"
        );
        b
    };
    // SAFETY (of each arm): a packed strip holds `kc` steps (checked above); the caller's
    // contract covers the strips in place and `tile`.
    unsafe {
        match (a, b) {
            (Strip::Packed(a), Strip::Packed(b)) => run(isa, kc, packed_a(a), packed_b(b), tile),
            (Strip::Packed(a), Strip::InPlace(b)) => run(isa, kc, packed_a(a), in_place_b(b), tile),
            (Strip::InPlace(a), Strip::Packed(b)) => run(isa, kc, a, packed_b(b), tile),
            (Strip::InPlace(a), Strip::InPlace(b)) => run(isa, kc, a, in_place_b(b), tile),
        }
    }
}

/// [`tile`] with `B` read in place: step `k` of the strip is `NR / seg` runs of `seg` values
/// (16, 8 or 4), `seg_stride` apart, the first at `b + offsets[k]` (a gathered matrix,
/// [`Gathered`](super::Gathered)), so nothing is packed.
///
/// # Safety
/// As [`tile`]; and the runs must be readable for every `k < kc`.
#[inline]
pub(crate) unsafe fn tile_gathered(
    kc: usize,
    a: &[f32],
    (b, offsets): (*const f32, &[usize]),
    (seg, seg_stride): (usize, usize),
    tile: &Tile,
) {
    assert!(a.len() >= kc * MR && offsets.len() >= kc);
    let (isa, a) = (Isa::detected(), PackedLanes(a.as_ptr()));
    // SAFETY (of each arm): `isa` was detected on this CPU; the rest is the caller's contract.
    match seg {
        16 => unsafe {
            run(
                isa,
                kc,
                a,
                Gather::<16> {
                    base: b,
                    offsets,
                    seg_stride,
                },
                tile,
            )
        },
        8 => unsafe {
            run(
                isa,
                kc,
                a,
                Gather::<8> {
                    base: b,
                    offsets,
                    seg_stride,
                },
                tile,
            )
        },
        4 => unsafe {
            run(
                isa,
                kc,
                a,
                Gather::<4> {
                    base: b,
                    offsets,
                    seg_stride,
                },
                tile,
            )
        },
        _ => panic!("gemm: gathered runs of {seg} values (16, 8 or 4 are supported)"),
    }
}

/// The kernel for `isa`.
///
/// # Safety
/// The CPU must support `isa`; as [`tile`]; `a` and `b` must yield `MR` and `NR` readable
/// values for each of the `kc` steps.
#[inline(always)]
unsafe fn run<L: Lanes, S: Steps>(isa: Isa, kc: usize, a: L, b: S, tile: &Tile) {
    // SAFETY (of each arm): the caller's contract (the CPU supports `isa`, and the rest).
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::tile(kc, a, b, tile) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { avx2::tile(kc, a, b, tile) },
        _ => unsafe { store(&portable(kc, a, b), tile) },
    }
}

/// The plain-Rust kernel: the same rank-1 updates on an array of accumulators.
///
/// # Safety
/// `a` and `b` must yield `MR` and `NR` readable values for each of the `kc` steps.
unsafe fn portable<L: Lanes, S: Steps>(kc: usize, a: L, b: S) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for k in 0..kc {
        // SAFETY: the caller's contract.
        let bk = unsafe { b.values(k) };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: the caller's contract.
            let ai = unsafe { *a.start().add(k * a.step() + i * a.lane()) };
            for (c, bj) in row.iter_mut().zip(bk) {
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
/// Packing a transposed operand is a chain of these (in registers with AVX-512 or AVX2, several
/// values per shuffle, instead of one strided copy per value).
pub(crate) fn transpose_block(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    transpose_rows(
        src,
        &std::array::from_fn(|i| i * src_stride),
        dst,
        dst_stride,
    );
}

/// [`transpose_block`] for an `8 × 8` block: the 8-wide edges of a matrix transposed in 16 × 16
/// blocks ([`crate::vector::transpose_strided`] on 24 channels, or 24-pixel rows).
pub(crate) fn transpose_block8(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    assert!(7 * src_stride + 8 <= src.len() && 7 * dst_stride + 8 <= dst.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detected() != Isa::Portable {
        let rows = std::array::from_fn(|i| src[i * src_stride..].as_ptr());
        // SAFETY: the CPU has AVX2 (every CPU with AVX-512 has it too); every row and the
        // output were checked above.
        return unsafe { avx2::transpose8(rows, dst.as_mut_ptr().cast(), dst_stride) };
    }
    for i in 0..8 {
        for j in 0..8 {
            dst[j * dst_stride + i].write(src[i * src_stride + j]);
        }
    }
}

/// [`transpose_block`] with each source row wherever it is: row `i` is
/// `src[starts[i]..][..16]` (the rows of a gathered matrix).
pub(crate) fn transpose_rows(
    src: &[f32],
    starts: &[usize; BLOCK],
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    // SAFETY: `Isa::detected` is an instruction set this CPU runs.
    unsafe { transpose_with(Isa::detected(), src, starts, dst, dst_stride) }
}

/// [`transpose_rows`] with the given instruction set.
///
/// # Safety
/// The CPU must support `isa` ([`Isa::detected`] or one of [`Isa::all_available`]).
unsafe fn transpose_with(
    isa: Isa,
    src: &[f32],
    starts: &[usize; BLOCK],
    dst: &mut [MaybeUninit<f32>],
    ds: usize,
) {
    assert!(starts.iter().all(|&s| s + BLOCK <= src.len()) && dst.len() >= 15 * ds + BLOCK);
    #[cfg(target_arch = "x86_64")]
    {
        let rows = starts.map(|s| src[s..].as_ptr());
        let out = dst.as_mut_ptr().cast::<f32>();
        match isa {
            // SAFETY: the caller vouches that the CPU supports `isa`; every row and the output
            // were checked above.
            Isa::Avx512 => return unsafe { avx512::transpose16(rows, out, ds) },
            // SAFETY: as above.
            Isa::Avx2Fma => return unsafe { avx2::transpose16(rows, out, ds) },
            Isa::Portable => {}
        }
    }
    for (i, &s) in starts.iter().enumerate() {
        for j in 0..BLOCK {
            dst[j * ds + i].write(src[s + j]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{store, Lanes, Steps, Tile, MR, NR};
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F; `b` and `t` as in [`super::run`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<L: Lanes, S: Steps>(kc: usize, a: L, b: S, t: &Tile) {
        let mut acc = [_mm512_setzero_ps(); MR];
        // `A`'s values are read through a pointer that moves on by a step, not indexed by `k`:
        // see [`own_register`].
        let mut ak = a.start();
        for k in 0..kc {
            // SAFETY: `k < kc`: the step's runs are readable (the caller's contract).
            let bk = unsafe { load(b, k) };
            for (i, acc_i) in acc.iter_mut().enumerate() {
                // SAFETY: `ak` is step `k` of `a`, which has `MR` readable values for each of
                // its `kc` steps (the caller's contract).
                let ai = unsafe { *ak.add(i * a.lane()) };
                *acc_i = _mm512_fmadd_ps(_mm512_set1_ps(ai), bk, *acc_i);
            }
            ak = own_register(ak.wrapping_add(a.step()));
        }
        if t.is_full() {
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

    /// `p`, kept in a register of its own.
    ///
    /// Each of the loop's 16 FMAs takes its broadcast value of `A` straight from memory. Intel's
    /// cores split ("un-laminate") such an FMA into two µops at issue when its address has a
    /// base and an index register, and LLVM, left alone, addresses `A` and the packed `B` (both
    /// 64 bytes a step) as two bases plus one shared index. An empty `asm!` that may change
    /// the pointer makes LLVM keep it as it is, so each FMA reads `offset(ak)`: one µop. On an
    /// Intel Xeon (AVX-512) that took the kernel from 136 to 160 GFLOP/s on one core and a
    /// 1024³ GEMM from 115 to 135 (AMD's cores have no such split: no change there).
    #[inline(always)]
    fn own_register(p: *const f32) -> *const f32 {
        let mut addr = p.addr();
        // SAFETY: the assembly is empty: it reads and writes no memory and leaves `addr` as it
        // was.
        unsafe { asm!("/* {0} */", inout(reg) addr, options(nomem, nostack, preserves_flags)) };
        p.with_addr(addr)
    }

    /// Step `k`'s 16 values of `B` in one register, from one run or from two of 8 or four of 4.
    ///
    /// # Safety
    /// AVX-512F; the step's runs must be readable.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load<S: Steps>(b: S, k: usize) -> __m512 {
        let s = b.seg_stride();
        // SAFETY: the caller's contract.
        unsafe {
            let p = b.row(k);
            match S::SEG {
                16 => _mm512_loadu_ps(p),
                8 => {
                    let lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(p)));
                    let hi = _mm256_castps_pd(_mm256_loadu_ps(p.add(s)));
                    _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
                }
                _ => {
                    let v = _mm512_castps128_ps512(_mm_loadu_ps(p));
                    let v = _mm512_insertf32x4::<1>(v, _mm_loadu_ps(p.add(s)));
                    let v = _mm512_insertf32x4::<2>(v, _mm_loadu_ps(p.add(2 * s)));
                    _mm512_insertf32x4::<3>(v, _mm_loadu_ps(p.add(3 * s)))
                }
            }
        }
    }

    /// The 16 × 16 transpose of [`super::transpose_block`] in registers: 4 × 4 transposes
    /// inside each 128-bit lane (two rounds of unpacks), then a 4 × 4 transpose of the lanes
    /// across registers (two rounds of `shuffle_f32x4`).
    ///
    /// # Safety
    /// AVX-512F; 16 values readable at each of `rows` and 16 rows of 16 writable at `dst`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose16(rows: [*const f32; 16], dst: *mut f32, dst_stride: usize) {
        // SAFETY: the caller guarantees 16 readable values in each row.
        let r: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(rows[i]) });
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{store, Lanes, Steps, Tile, MR, NR};
    use std::arch::x86_64::*;

    /// The strip in three passes of [`rows`]: 6, 6 and 4 rows of the tile, each keeping its
    /// `R × 16` accumulators (two registers per row) in registers over all `kc` steps.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `b` and `t` as in [`super::run`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<L: Lanes, S: Steps>(kc: usize, a: L, b: S, t: &Tile) {
        let mut spill = [[0.0f32; NR]; MR];
        // SAFETY: the caller's contract, passed on.
        unsafe {
            rows::<6, L, S>(kc, a, 0, b, t, &mut spill);
            rows::<6, L, S>(kc, a, 6, b, t, &mut spill);
            rows::<4, L, S>(kc, a, 12, b, t, &mut spill);
            if !t.is_full() {
                store(&spill, t);
            }
        }
    }

    /// Rows `r0..r0 + R` of the tile: written to `C` if the tile is full, else to `spill`.
    ///
    /// # Safety
    /// As [`tile`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn rows<const R: usize, L: Lanes, S: Steps>(
        kc: usize,
        a: L,
        r0: usize,
        b: S,
        t: &Tile,
        spill: &mut [[f32; NR]; MR],
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut ak = a.start().wrapping_add(r0 * a.lane());
        for k in 0..kc {
            // SAFETY: `k < kc`: the step's runs are readable (the caller's contract).
            let (b0, b1) = unsafe { load(b, k) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: `ak` is lane `r0` of step `k` of `a`, which has `MR` readable values
                // for each of its `kc` steps (the caller's contract).
                let ar = _mm256_set1_ps(unsafe { *ak.add(r * a.lane()) });
                acc_r[0] = _mm256_fmadd_ps(ar, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(ar, b1, acc_r[1]);
            }
            ak = ak.wrapping_add(a.step());
        }
        if !t.is_full() {
            for (row, v) in spill[r0..r0 + R].iter_mut().zip(&acc) {
                // SAFETY: each row of `spill` holds 16 values.
                unsafe {
                    _mm256_storeu_ps(row.as_mut_ptr(), v[0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), v[1]);
                }
            }
            return;
        }
        let (alpha, beta) = (_mm256_set1_ps(t.alpha), _mm256_set1_ps(t.beta));
        for (r, v) in acc.iter().enumerate() {
            for (half, &v) in v.iter().enumerate() {
                // SAFETY: a full tile with unit column stride: the 8 values at column
                // 8·half of row r0 + r lie inside the caller's tile.
                unsafe {
                    let c = t.c.add((r0 + r) * t.row_stride + 8 * half);
                    let out = if t.beta == 0.0 {
                        _mm256_mul_ps(alpha, v)
                    } else {
                        _mm256_fmadd_ps(alpha, v, _mm256_mul_ps(beta, _mm256_loadu_ps(c)))
                    };
                    _mm256_storeu_ps(c, out);
                }
            }
        }
    }

    /// Step `k`'s 16 values of `B` in two registers, from one run or from two of 8 or four of 4.
    ///
    /// # Safety
    /// AVX2; the step's runs must be readable.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load<S: Steps>(b: S, k: usize) -> (__m256, __m256) {
        let s = b.seg_stride();
        // SAFETY: the caller's contract.
        unsafe {
            let p = b.row(k);
            match S::SEG {
                16 => (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))),
                8 => (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(s))),
                _ => (
                    _mm256_loadu2_m128(p.add(s), p),
                    _mm256_loadu2_m128(p.add(3 * s), p.add(2 * s)),
                ),
            }
        }
    }

    /// The 16 × 16 transpose as four 8 × 8 ones ([`transpose8`]).
    ///
    /// # Safety
    /// AVX2; 16 values readable at each of `rows` and 16 rows of 16 writable at `dst`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn transpose16(rows: [*const f32; 16], dst: *mut f32, dst_stride: usize) {
        for (bi, half) in rows.chunks_exact(8).enumerate() {
            for bj in 0..2 {
                let src: [*const f32; 8] = std::array::from_fn(|i| half[i].wrapping_add(8 * bj));
                // SAFETY: columns 8·bj.. of rows 8·bi.. go to rows 8·bj.., columns 8·bi..;
                // all inside the extents the caller vouched for.
                unsafe { transpose8(src, dst.add(8 * bj * dst_stride + 8 * bi), dst_stride) };
            }
        }
    }

    /// An 8 × 8 transpose in registers: pairs of rows interleaved, then pairs of pairs, then
    /// the 128-bit halves swapped across registers.
    ///
    /// # Safety
    /// AVX2; 8 values readable at each of `src` and 8 rows of 8 writable at `dst`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn transpose8(src: [*const f32; 8], dst: *mut f32, dst_stride: usize) {
        // SAFETY: the caller guarantees 8 readable values in each row.
        let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src[i]) });
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        // s[4g + c] holds column c (of each 128-bit half) of rows 4g..4g+4.
        let s: [__m256; 8] = std::array::from_fn(|i| {
            let (g, c) = (i / 4, i % 4);
            let (a, b) = (t[4 * g + c / 2], t[4 * g + 2 + c / 2]);
            if c % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(a, b)
            } else {
                _mm256_shuffle_ps::<0xEE>(a, b)
            }
        });
        for c in 0..4 {
            let lo = _mm256_permute2f128_ps::<0x20>(s[c], s[4 + c]);
            let hi = _mm256_permute2f128_ps::<0x31>(s[c], s[4 + c]);
            // SAFETY: the caller guarantees 8 writable rows of 8 values.
            unsafe {
                _mm256_storeu_ps(dst.add(c * dst_stride), lo);
                _mm256_storeu_ps(dst.add((4 + c) * dst_stride), hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::as_uninit;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// How the test reads `B`: packed, in place with steps 19 apart, or gathered with each step
    /// at its own scattered offset in runs of 16, 8 or 4.
    #[derive(Clone, Copy, Debug)]
    enum ReadB {
        Packed,
        InPlace,
        Gathered(usize),
    }

    /// Runs the `isa` kernel on a strip of `kc` steps (`A` packed or read in place from a
    /// row-major matrix; `B` as `read_b` says) into a `rows × cols` tile of a strided C full
    /// of ones, with α = 2 and the given β, and checks it against the naive sum.
    fn check_kernel(
        isa: Isa,
        a_in_place: bool,
        read_b: ReadB,
        beta: f32,
        rows: usize,
        cols: usize,
    ) {
        let kc = 37;
        // Value i of step k at a[k·a_step + i·a_lane].
        let (a_step, a_lane) = if a_in_place { (1, kc + 3) } else { (MR, 1) };
        let a = values(MR * (kc + 3), 1);
        let a_at = |k: usize, i: usize| a[k * a_step + i * a_lane];
        // Step k's runs start at offsets[k] in `source`, `ss` apart (in order when packed).
        let (offsets, ss, run_len): (Vec<usize>, usize, usize) = match read_b {
            ReadB::Gathered(seg) => ((0..kc).map(|k| (k * 53) % 600 + k % 5).collect(), 23, seg),
            ReadB::InPlace => ((0..kc).map(|k| k * 19).collect(), NR, NR),
            ReadB::Packed => ((0..kc).map(|k| k * NR).collect(), NR, NR),
        };
        let source = values(720, 2);
        let b_at = |k: usize, j: usize| source[offsets[k] + j / run_len * ss + j % run_len];
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
        let base = source.as_ptr();
        let offsets_ref = &offsets[..];
        let lanes = InPlace {
            ptr: a.as_ptr(),
            step: a_step,
            lane: a_lane,
        };
        // SAFETY: the tile lies inside `c` (checked by the indexing below); every run lies
        // below 600 + 5 + 3·23 + 16 < 720, every value of A below 16·40; `isa` is one this CPU
        // runs.
        unsafe {
            match read_b {
                ReadB::Packed => run(isa, kc, lanes, PackedSteps(base), &tile),
                ReadB::InPlace => {
                    let b = InPlace {
                        ptr: base,
                        step: 19,
                        lane: 1,
                    };
                    run(isa, kc, lanes, b, &tile)
                }
                ReadB::Gathered(16) => run(
                    isa,
                    kc,
                    lanes,
                    Gather::<16> {
                        base,
                        offsets: offsets_ref,
                        seg_stride: ss,
                    },
                    &tile,
                ),
                ReadB::Gathered(8) => run(
                    isa,
                    kc,
                    lanes,
                    Gather::<8> {
                        base,
                        offsets: offsets_ref,
                        seg_stride: ss,
                    },
                    &tile,
                ),
                ReadB::Gathered(_) => run(
                    isa,
                    kc,
                    lanes,
                    Gather::<4> {
                        base,
                        offsets: offsets_ref,
                        seg_stride: ss,
                    },
                    &tile,
                ),
            }
        }
        for i in 0..MR {
            for j in 0..row_stride {
                let got = c[i * row_stride + j];
                let want = if i < rows && j < cols {
                    let dot: f32 = (0..kc).map(|k| a_at(k, i) * b_at(k, j)).sum();
                    2.0 * dot + beta
                } else {
                    1.0 // outside the tile: untouched
                };
                assert!(
                    (got - want).abs() < 1e-4,
                    "{isa:?} A in place {a_in_place}, B {read_b:?} ({i}, {j}): {got} vs {want}"
                );
            }
        }
    }

    /// Every kernel this CPU runs (the portable one always), `A` packed and in place, `B`
    /// packed, in place and gathered in runs of 16, 8 and 4, on a full tile (vector stores) and
    /// an edge tile (through the spill), each β.
    #[test]
    fn every_kernel_matches_naive() {
        let reads_b = [
            ReadB::Packed,
            ReadB::InPlace,
            ReadB::Gathered(16),
            ReadB::Gathered(8),
            ReadB::Gathered(4),
        ];
        for isa in Isa::all_available() {
            for a_in_place in [false, true] {
                for read_b in reads_b {
                    for beta in [0.0, 1.0] {
                        for (rows, cols) in [(MR, NR), (MR - 3, NR - 5)] {
                            check_kernel(isa, a_in_place, read_b, beta, rows, cols);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_transpose_matches() {
        let src = values(400, 5);
        let starts: [usize; BLOCK] = std::array::from_fn(|i| (i * 37) % 300 + i);
        for isa in Isa::all_available() {
            let mut got = vec![0.0; 16 * 17];
            // SAFETY: `isa` is one of the instruction sets this CPU runs.
            unsafe { transpose_with(isa, &src, &starts, as_uninit(&mut got), 17) };
            for (i, &s) in starts.iter().enumerate() {
                for j in 0..BLOCK {
                    assert_eq!(got[j * 17 + i], src[s + j], "{isa:?} ({i}, {j})");
                }
            }
        }
        let mut strided = vec![0.0; 16 * 16];
        transpose_block(&src, 21, as_uninit(&mut strided), 16);
        assert_eq!(strided[3 * 16 + 5], src[5 * 21 + 3]);
        let mut eight = vec![0.0; 8 * 11];
        transpose_block8(&src, 13, as_uninit(&mut eight), 11);
        for i in 0..8 {
            for j in 0..8 {
                assert_eq!(eight[j * 11 + i], src[i * 13 + j], "8 × 8 ({i}, {j})");
            }
        }
    }
}
