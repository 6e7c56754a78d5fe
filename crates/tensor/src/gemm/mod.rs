//! The matrix product `C ← α·A·B + β·C` in f32 that every heavy kernel in the crate stands on.
//!
//! Matrices are described by [`MatRef`] / [`MatMut`]: a slice plus row and column strides, so a
//! transposed operand is the same data with its strides swapped ([`MatRef::t`]) and an output
//! block can be written straight into a larger tensor (e.g. one image's slice of an NCHW batch).
//!
//! Entry points: [`gemm`] (split over the threads when large) and [`gemm_serial`] (never split)
//! for dense operands, [`gemm_packed`] for a `B` packed once ([`PackedRhs`]) and shared by many
//! products; inside the crate, `gemm_gathered` and `gemm_gathered_t` multiply by a
//! matrix read in place from a zero-padded image (a convolution's columns, never written out)
//! or by its transpose. All check their operands and share one blocked kernel.
//!
//! Backends: the crate's own blocked GEMM (`blocked.rs`: the loops and the packing;
//! `kernel.rs`: a 16 × 16 AVX-512 micro-kernel chosen at run time, a portable one elsewhere)
//! by default, the system OpenBLAS with the `openblas` feature.
//!
//! Threads: [`gemm`] splits a large product into column (or row) blocks and runs them on
//! rayon; called from inside a rayon task (e.g. a conv that already runs one image per task) it
//! stays on the calling thread, so the two levels of parallelism never oversubscribe the cores.
//! [`gemm_serial`] never splits.

use std::mem::MaybeUninit;

#[cfg(not(feature = "openblas"))]
mod blocked;
#[cfg(not(feature = "openblas"))]
mod kernel;

/// Writes the transpose of a `B × B` block, `B` = 16 or 8: row `i` of the source is
/// `src[i·src_stride..][..B]`, row `j` of the result goes to `dst[j·dst_stride..][..B]`. With
/// the built-in GEMM, the packing's register shuffles (AVX-512 or AVX2); with OpenBLAS a loop.
pub(crate) fn transpose_block<const B: usize>(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    #[cfg(not(feature = "openblas"))]
    match B {
        16 => kernel::transpose_block(src, src_stride, dst, dst_stride),
        8 => kernel::transpose_block8(src, src_stride, dst, dst_stride),
        _ => unreachable!("transpose blocks are 16 or 8 wide"),
    }
    #[cfg(feature = "openblas")]
    for i in 0..B {
        for j in 0..B {
            dst[j * dst_stride + i].write(src[i * src_stride + j]);
        }
    }
}

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The elements; element (i, j) is `data[i * row_stride + j * col_stride]`.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy: the strides swap).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `start..start + rows`.
    fn row_block(self, start: usize, rows: usize) -> Self {
        MatRef {
            data: &self.data[start * self.row_stride..],
            rows,
            ..self
        }
    }

    fn check(&self, what: &str) {
        check_extent(
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
            what,
        );
    }
}

/// A mutable strided matrix view (the GEMM output).
#[derive(Debug)]
pub struct MatMut<'a> {
    /// The elements; element (i, j) is `data[i * row_stride + j * col_stride]`.
    pub data: &'a mut [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The raw view the product writes through (the borrow stays with `self`'s lifetime).
    fn out_block(&mut self) -> OutBlock {
        OutBlock {
            ptr: self.data.as_mut_ptr(),
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }
}

/// The part of `C` one serial product writes, as a raw pointer and strides.
///
/// A split product hands each task a block of `C`, and the column blocks of a row-major `C`
/// interleave in memory: as `&mut [f32]` they would overlap, and two live mutable slices over
/// the same memory are undefined behaviour even when their writes never meet. So the blocks
/// are raw views, made from the [`MatMut`] the caller lent (its unique borrow outlives the
/// product) and cut by [`split`] into blocks with no element in common.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutBlock {
    /// Element `(0, 0)`; element `(i, j)` is at `ptr + i·row_stride + j·col_stride`.
    pub ptr: *mut f32,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

// SAFETY: a block crosses threads only in `split`, which gives each task a block whose
// elements no other task reads or writes.
unsafe impl Send for OutBlock {}
// SAFETY: as above; a shared `OutBlock` is only copied, never written through by two tasks.
unsafe impl Sync for OutBlock {}

impl OutBlock {
    /// Columns (`along_cols`) or rows `first..first + len` of this block, cut at its edge.
    fn block(self, first: usize, len: usize, along_cols: bool) -> OutBlock {
        // `wrapping_add`: the offset of element (0, first) or (first, 0), inside C.
        if along_cols {
            OutBlock {
                ptr: self.ptr.wrapping_add(first * self.col_stride),
                cols: len.min(self.cols - first),
                ..self
            }
        } else {
            OutBlock {
                ptr: self.ptr.wrapping_add(first * self.row_stride),
                rows: len.min(self.rows - first),
                ..self
            }
        }
    }

    /// The transpose (the strides swap).
    #[cfg(feature = "openblas")]
    fn t(self) -> Self {
        OutBlock {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Columns of a [`Gathered`] matrix per strip: one micro-kernel tile wide.
pub(crate) const STRIP: usize = 16;

/// A matrix read in place from rows of one buffer, in strips of [`STRIP`] columns, each strip
/// of a row made of `STRIP / seg` runs of `seg` contiguous values, `seg_stride` apart:
/// element `(r, j)` is
/// `data[row_offsets[r] + strip_offsets[j / STRIP] + (j % STRIP / seg)·seg_stride + j % seg]`.
///
/// A convolution's im2col matrix over a zero-padded image is one: row `r = (ci, ky, kx)` starts
/// at `ci·plane + ky·wp + kx`, and a strip of 16 output pixels at its first pixel `oy·wp + ox`:
/// one run along an output row of 16 or more pixels, or 2 runs of 8 (4 of 4) across the
/// rows of an 8 (4) pixels wide output, `wp` apart. [`gemm_gathered`] reads it straight from
/// the image, so the column matrix is never written out; [`gemm_gathered_t`] multiplies by its
/// transpose.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gathered<'a> {
    /// The buffer every row is read from.
    pub data: &'a [f32],
    /// Where each row starts, before its strip's offset.
    pub row_offsets: &'a [usize],
    /// Where each strip of [`STRIP`] columns starts, added to its row's offset.
    pub strip_offsets: &'a [usize],
    /// Length of the contiguous runs of a strip: 16, 8 or 4.
    pub seg: usize,
    /// Distance between the runs of a strip (unused when `seg` is 16).
    pub seg_stride: usize,
}

impl Gathered<'_> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_offsets.len()
    }

    /// Number of columns: [`STRIP`] per strip.
    pub fn cols(&self) -> usize {
        STRIP * self.strip_offsets.len()
    }

    /// Where element `(r, j)` sits in `data`.
    fn index(&self, r: usize, j: usize) -> usize {
        let run = j % STRIP / self.seg;
        self.row_offsets[r] + self.strip_offsets[j / STRIP] + run * self.seg_stride + j % self.seg
    }

    /// Element `(r, j)`.
    pub fn get(&self, r: usize, j: usize) -> f32 {
        self.data[self.index(r, j)]
    }

    /// The 16 values of strip `s` of row `r`, in order.
    #[cfg(any(test, feature = "openblas"))]
    fn strip(&self, r: usize, s: usize) -> [f32; STRIP] {
        std::array::from_fn(|j| self.get(r, s * STRIP + j))
    }

    /// The matrix written out, row-major (the OpenBLAS backend multiplies this).
    #[cfg(any(test, feature = "openblas"))]
    fn to_dense(self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows() * self.cols());
        for r in 0..self.rows() {
            for s in 0..self.strip_offsets.len() {
                out.extend_from_slice(&self.strip(r, s));
            }
        }
        out
    }

    /// Checks the run length and that every run of every strip lies inside `data`, so the
    /// kernels may read them unchecked.
    fn check(&self) {
        assert!(
            matches!(self.seg, 4 | 8 | 16),
            "gemm: gathered runs of {} values (16, 8 or 4 are supported)",
            self.seg
        );
        let last = |o: &[usize]| o.iter().copied().max().unwrap_or(0);
        if self.rows() == 0 || self.cols() == 0 {
            return;
        }
        let runs = STRIP / self.seg;
        let end = last(self.row_offsets)
            + last(self.strip_offsets)
            + (runs - 1) * self.seg_stride
            + self.seg;
        assert!(
            end <= self.data.len(),
            "gemm: gathered matrix reads up to {end} values but its buffer holds only {}",
            self.data.len()
        );
    }
}

/// `C ← α·A·B + β·C` with `B` read in place ([`Gathered`]), split over rayon's threads (by
/// strips of `B`) like [`gemm`] when large and not already inside a rayon task.
///
/// Panics (naming the operand) if the shapes disagree or a view overruns its buffer.
pub(crate) fn gemm_gathered(alpha: f32, a: MatRef, b: Gathered, beta: f32, mut c: MatMut) {
    b.check();
    let (k, n) = (b.rows(), b.cols());
    check_product(&a, (k, n), &c);
    let c = c.out_block();
    if !worth_splitting(a.rows * n * k) {
        // SAFETY: `c` lies inside the buffer `c` borrowed mutably (checked above); the operands
        // were checked.
        return unsafe { gathered_unchecked(alpha, a, b, false, beta, c) };
    }
    let strips = b.strip_offsets.len();
    // SAFETY: as above; each task writes only its block of strips (columns) of C.
    unsafe {
        split(c, strips, STRIP, true, |start, size, c_blk| {
            let strip_offsets = &b.strip_offsets[start..start + size];
            let b_blk = Gathered { strip_offsets, ..b };
            gathered_unchecked(alpha, a, b_blk, false, beta, c_blk);
        })
    }
}

/// `C ← α·A·B + β·C`, or `α·A·Bᵀ + β·C` when `transposed`, with `B` gathered, on the calling
/// thread.
///
/// # Safety
/// The operands must have been checked (shapes, and `A` and `B` inside their buffers), and
/// `c` must be valid for reads and writes of all its elements, which nothing else accesses
/// during the call.
unsafe fn gathered_unchecked(
    alpha: f32,
    a: MatRef,
    b: Gathered,
    transposed: bool,
    beta: f32,
    c: OutBlock,
) {
    #[cfg(not(feature = "openblas"))]
    {
        let rhs = if transposed {
            blocked::Rhs::GatheredT(b)
        } else {
            blocked::Rhs::Gathered(b)
        };
        // SAFETY: the caller's contract.
        unsafe { blocked::gemm_blocked(alpha, a, rhs, beta, c) };
    }
    #[cfg(feature = "openblas")]
    {
        let dense = b.to_dense();
        let b = MatRef::new(&dense, b.rows(), b.cols());
        // SAFETY: the caller's contract.
        unsafe { gemm_unchecked(alpha, a, if transposed { b.t() } else { b }, beta, c) };
    }
}

/// `C ← α·A·Bᵀ + β·C` with `B` read in place ([`Gathered`]), split over rayon's threads (by
/// rows of `A`) like [`gemm`] when large and not already inside a rayon task.
///
/// Panics (naming the operand) if the shapes disagree or a view overruns its buffer.
pub(crate) fn gemm_gathered_t(alpha: f32, a: MatRef, b: Gathered, beta: f32, mut c: MatMut) {
    b.check();
    let (n, k) = (b.rows(), b.cols());
    check_product(&a, (k, n), &c);
    let c = c.out_block();
    if !worth_splitting(a.rows * n * k) {
        // SAFETY: `c` lies inside the buffer `c` borrowed mutably (checked above); the operands
        // were checked.
        return unsafe { gathered_unchecked(alpha, a, b, true, beta, c) };
    }
    // SAFETY: as above; each task writes only its block of rows of C.
    unsafe {
        split(c, a.rows, 1, false, |start, size, c_blk| {
            gathered_unchecked(alpha, a.row_block(start, size), b, true, beta, c_blk);
        })
    }
}

fn check_extent(len: usize, rows: usize, cols: usize, rs: usize, cs: usize, what: &str) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last < len,
        "gemm: {what} is {rows}×{cols} with strides ({rs}, {cs}) but its buffer holds only {len} values"
    );
}

/// Products smaller than this many multiply-adds run on one thread: below it, splitting costs
/// more than it gains.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// `C ← α·A·B + β·C`, split over rayon's threads when large and not already inside a rayon task.
///
/// Panics (naming the operand) if the shapes disagree or a view overruns its buffer.
pub fn gemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    check_shapes(&a, &b, &c);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let c = c.out_block();
    if !worth_splitting(m * n * k) {
        // SAFETY: `c` lies inside the buffer `c` borrowed mutably (checked above); the operands
        // were checked.
        return unsafe { gemm_unchecked(alpha, a, b, beta, c) };
    }
    // Split the larger output dimension into one block per thread; each block is an
    // independent GEMM on disjoint output elements.
    let split_cols = n >= m;
    let len = if split_cols { n } else { m };
    // SAFETY: as above; each task writes only its block of columns (rows) of C.
    unsafe {
        split(c, len, 1, split_cols, |start, size, c_blk| {
            if split_cols {
                let b_blk = MatRef {
                    data: &b.data[start * b.col_stride..],
                    cols: size,
                    ..b
                };
                gemm_unchecked(alpha, a, b_blk, beta, c_blk);
            } else {
                gemm_unchecked(alpha, a.row_block(start, size), b, beta, c_blk);
            }
        })
    }
}

/// Whether a product of `flops` multiply-adds should be split over rayon's threads: it is
/// large, there are threads, and the caller is not already a rayon task.
fn worth_splitting(flops: usize) -> bool {
    rayon::current_num_threads() >= 2
        && rayon::current_thread_index().is_none()
        && flops >= PARALLEL_MIN_FLOPS
}

/// Cuts the `len` units of `unit` columns (or rows) of `C` into one block per thread and runs
/// `f(first unit, units, block of C)` on each, in parallel.
///
/// # Safety
/// Every element of `c` must be valid for reads and writes, and nothing else may access them
/// until this returns; `f` must write only inside the block it is given.
unsafe fn split(
    c: OutBlock,
    len: usize,
    unit: usize,
    along_cols: bool,
    f: impl Fn(usize, usize, OutBlock) + Sync,
) {
    let block = len.div_ceil(rayon::current_num_threads()).max(1);
    let f = &f;
    rayon::scope(|s| {
        for start in (0..len).step_by(block) {
            let size = block.min(len - start);
            let c_blk = c.block(start * unit, size * unit, along_cols);
            // The blocks cover disjoint column (or row) ranges of C, so no two tasks touch the
            // same element (the caller's contract for `f`).
            s.spawn(move |_| f(start, size, c_blk));
        }
    });
}

/// `C ← α·A·B + β·C` on the calling thread only.
pub fn gemm_serial(alpha: f32, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    check_shapes(&a, &b, &c);
    // SAFETY: `c` lies inside the buffer `c` borrowed mutably (checked above); the operands
    // were checked.
    unsafe { gemm_unchecked(alpha, a, b, beta, c.out_block()) }
}

/// A right-hand side `B` (`k × n`) prepared once for many products by the same `B`
/// ([`gemm_packed`]): the built-in GEMM packs it whole into the strips its micro-kernel reads,
/// which every product then reads in place instead of packing `B` again (OpenBLAS keeps a
/// dense copy).
pub struct PackedRhs {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedRhs {
    /// `b` packed (or copied) once.
    pub fn new(b: MatRef) -> PackedRhs {
        b.check("B");
        #[cfg(not(feature = "openblas"))]
        let data = blocked::pack_all(b);
        #[cfg(feature = "openblas")]
        let data = (0..b.rows)
            .flat_map(|i| (0..b.cols).map(move |j| b.data[i * b.row_stride + j * b.col_stride]))
            .collect();
        PackedRhs {
            k: b.rows,
            n: b.cols,
            data,
        }
    }
}

/// `C ← α·A·B + β·C` with `B` packed beforehand, on the calling thread (the products that share
/// a `B` are many small ones, each already one task of a parallel loop).
///
/// Panics (naming the operand) if the shapes disagree or a view overruns its buffer.
pub fn gemm_packed(alpha: f32, a: MatRef, b: &PackedRhs, beta: f32, mut c: MatMut) {
    check_product(&a, (b.k, b.n), &c);
    let c = c.out_block();
    #[cfg(not(feature = "openblas"))]
    let rhs = blocked::Rhs::Packed {
        data: &b.data,
        k: b.k,
        n: b.n,
    };
    // SAFETY: `c` lies inside the buffer `c` borrowed mutably and `A` inside its own (checked
    // above); `B` was packed whole from a checked `k × n` view.
    #[cfg(not(feature = "openblas"))]
    unsafe {
        blocked::gemm_blocked(alpha, a, rhs, beta, c)
    };
    // SAFETY: as above; the dense copy is `k × n`.
    #[cfg(feature = "openblas")]
    unsafe {
        gemm_unchecked(alpha, a, MatRef::new(&b.data, b.k, b.n), beta, c)
    };
}

fn check_shapes(a: &MatRef, b: &MatRef, c: &MatMut) {
    check_product(a, (b.rows, b.cols), c);
    b.check("B");
}

/// Checks that `A` (`m × k`), a `B` of `b_dims` and `C` fit together and that `A` and `C` lie
/// inside their buffers.
fn check_product(a: &MatRef, (b_rows, b_cols): (usize, usize), c: &MatMut) {
    assert!(
        a.cols == b_rows && c.rows == a.rows && c.cols == b_cols,
        "gemm: cannot multiply A {}×{} by B {}×{} into C {}×{}",
        a.rows,
        a.cols,
        b_rows,
        b_cols,
        c.rows,
        c.cols
    );
    a.check("A");
    check_extent(
        c.data.len(),
        c.rows,
        c.cols,
        c.row_stride,
        c.col_stride,
        "C",
    );
}

/// `C ← α·A·B + β·C` on the calling thread.
///
/// # Safety
/// As [`gathered_unchecked`]: the operands checked, `c` valid and not accessed by anything
/// else during the call.
#[cfg(not(feature = "openblas"))]
unsafe fn gemm_unchecked(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: OutBlock) {
    // SAFETY: the caller's contract.
    unsafe { blocked::gemm_blocked(alpha, a, blocked::Rhs::Dense(b), beta, c) }
}

/// `C ← α·A·B + β·C` by the system's `cblas_sgemm`.
///
/// # Safety
/// As above.
#[cfg(feature = "openblas")]
unsafe fn gemm_unchecked(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: OutBlock) {
    use cblas_sys::{cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};
    extern crate blas_src;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    // CBLAS wants unit stride along one axis of each operand: copy the rare view that has none.
    fn as_blas(x: MatRef<'_>) -> (std::borrow::Cow<'_, [f32]>, CBLAS_TRANSPOSE, i32) {
        if x.col_stride == 1 {
            (
                x.data.into(),
                CBLAS_TRANSPOSE::CblasNoTrans,
                x.row_stride.max(x.cols.max(1)) as i32,
            )
        } else if x.row_stride == 1 {
            (
                x.data.into(),
                CBLAS_TRANSPOSE::CblasTrans,
                x.col_stride.max(x.rows.max(1)) as i32,
            )
        } else {
            let mut dense = Vec::with_capacity(x.rows * x.cols);
            for i in 0..x.rows {
                dense.extend((0..x.cols).map(|j| x.data[i * x.row_stride + j * x.col_stride]));
            }
            (
                dense.into(),
                CBLAS_TRANSPOSE::CblasNoTrans,
                x.cols.max(1) as i32,
            )
        }
    }
    let (a_buf, ta, lda) = as_blas(a);
    let (b_buf, tb, ldb) = as_blas(b);
    if c.col_stride != 1 {
        // Compute the transposed product Cᵀ = Bᵀ·Aᵀ, whose output has unit column stride.
        // SAFETY: the same elements, so the caller's contract holds.
        return unsafe { gemm_unchecked(alpha, b.t(), a.t(), beta, c.t()) };
    }
    // SAFETY: shapes and extents were checked by the caller; CBLAS reads A and B and writes
    // only the m×n block of C addressed by ldc, which the caller lent.
    unsafe {
        cblas_sgemm(
            CBLAS_LAYOUT::CblasRowMajor,
            ta,
            tb,
            m as i32,
            n as i32,
            k as i32,
            alpha,
            a_buf.as_ptr(),
            lda,
            b_buf.as_ptr(),
            ldb,
            beta,
            c.ptr,
            c.row_stride.max(n) as i32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    c[i * b.cols + j] += a.data[i * a.row_stride + p * a.col_stride]
                        * b.data[p * b.row_stride + j * b.col_stride];
                }
            }
        }
        c
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_naive_with_transposes_and_parallel_split() {
        for &(m, k, n) in &[(3, 4, 5), (1, 7, 1), (130, 70, 260), (300, 129, 90)] {
            let a = pseudo_random(m * k, 1);
            let b = pseudo_random(k * n, 2);
            let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
            let expect = naive(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            let mut c = vec![0.0; m * n];
            gemm(
                1.0,
                MatRef::new(&a, m, k),
                MatRef::new(&bt, n, k).t(),
                0.0,
                MatMut::new(&mut c, m, n),
            );
            for (x, y) in c.iter().zip(&expect) {
                assert!(
                    (x - y).abs() < 1e-4 * (1.0 + y.abs()),
                    "{m}x{k}x{n}: {x} vs {y}"
                );
            }
            // beta = 1 accumulates.
            gemm(
                1.0,
                MatRef::new(&a, m, k),
                MatRef::new(&b, k, n),
                1.0,
                MatMut::new(&mut c, m, n),
            );
            for (x, y) in c.iter().zip(&expect) {
                assert!((x - 2.0 * y).abs() < 1e-4 * (1.0 + y.abs()));
            }
        }
    }

    /// Every layout of A and B (plain or transposed), a C written through its transpose, sizes
    /// that cross the packing blocks (KC = 256, MC = 128, NC = 512) and the 16-wide tiles and
    /// transpose blocks at odd offsets, and β = 0 over a C full of NaN (which must not leak).
    #[test]
    fn blocked_gemm_covers_every_layout_and_edge() {
        for &(m, k, n) in &[
            (17, 300, 33),
            (130, 513, 47),
            (5, 16, 530),
            (16, 16, 16),
            (1, 1, 1),
            // Thin products read A or B in place, their partial strips packed.
            (40, 300, 20),
            (20, 70, 32),
        ] {
            let a = pseudo_random(m * k, 3);
            let b = pseudo_random(k * n, 4);
            let expect = naive(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            let at: Vec<f32> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
            let a_views = [MatRef::new(&a, m, k), MatRef::new(&at, k, m).t()];
            let b_views = [MatRef::new(&b, k, n), MatRef::new(&bt, n, k).t()];
            for (ai, &a_view) in a_views.iter().enumerate() {
                for (bi, &b_view) in b_views.iter().enumerate() {
                    for c_transposed in [false, true] {
                        let mut c = vec![f32::NAN; m * n];
                        let c_view = if c_transposed {
                            MatMut {
                                data: &mut c,
                                rows: m,
                                cols: n,
                                row_stride: 1,
                                col_stride: m,
                            }
                        } else {
                            MatMut::new(&mut c, m, n)
                        };
                        gemm_serial(2.0, a_view, b_view, 0.0, c_view);
                        for i in 0..m {
                            for j in 0..n {
                                let got = if c_transposed {
                                    c[j * m + i]
                                } else {
                                    c[i * n + j]
                                };
                                let want = 2.0 * expect[i * n + j];
                                assert!(
                                    (got - want).abs() < 1e-4 * (1.0 + want.abs()) * (k as f32).sqrt(),
                                    "{m}x{k}x{n} A#{ai} B#{bi} Cᵀ {c_transposed} ({i},{j}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A gathered `B` (rows at scattered, overlapping offsets, as an im2col matrix has them)
    /// gives the same product as its dense copy, times `A` and, transposed, for every block
    /// edge: `k` across KC = 256 and rows that are not a whole strip of lanes.
    #[test]
    fn gathered_operands_match_their_dense_copies() {
        let data = pseudo_random(5000, 9);
        for &(m, k, strips, seg) in &[
            (20, 27, 3, 16),
            (33, 300, 40, 16),
            (16, 16, 1, 16),
            (20, 27, 3, 8),
            (33, 300, 40, 8),
            (19, 35, 5, 4),
        ] {
            let rows: Vec<usize> = (0..k).map(|r| (r * 131) % 1700 + r % 3).collect();
            let strip_offsets: Vec<usize> = (0..strips).map(|s| (s * 71) % 2900).collect();
            let g = Gathered {
                data: &data,
                row_offsets: &rows,
                strip_offsets: &strip_offsets,
                seg,
                seg_stride: 29,
            };
            let n = g.cols();
            let dense = g.to_dense();
            assert_eq!(dense[(k - 1) * n + n - 1], g.get(k - 1, n - 1));
            // A · B, B gathered (k × n).
            let a = pseudo_random(m * k, 10);
            let a = MatRef::new(&a, m, k);
            let want = naive(a, MatRef::new(&dense, k, n));
            let mut c = vec![f32::NAN; m * n];
            gemm_gathered(1.0, a, g, 0.0, MatMut::new(&mut c, m, n));
            assert_close(&c, &want, k);
            // A · Bᵀ, B gathered (k × n): the reduction runs over the strips.
            let at = pseudo_random(m * n, 11);
            let at = MatRef::new(&at, m, n);
            let want = naive(at, MatRef::new(&dense, k, n).t());
            let mut c = vec![1.0; m * k];
            gemm_gathered_t(1.0, at, g, 1.0, MatMut::new(&mut c, m, k));
            let want: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
            assert_close(&c, &want, n);
        }
    }

    /// A `B` packed once gives the product of its view, strided or transposed, against
    /// several `A`s and with β ≠ 0, across the packing blocks (`k` past KC = 256, `n` past
    /// NC = 512, edges that are not whole strips).
    #[test]
    fn packed_rhs_matches_its_view() {
        for &(m, k, n) in &[(17, 300, 33), (40, 513, 530), (16, 16, 16), (3, 1, 1)] {
            let b = pseudo_random(2 * k * n, 12);
            // Every other row of a wider matrix, and the transpose of a dense one.
            let strided = MatRef {
                data: &b,
                rows: k,
                cols: n,
                row_stride: 2 * n,
                col_stride: 1,
            };
            let transposed = MatRef::new(&b[..k * n], n, k).t();
            for b_view in [strided, transposed] {
                let packed = PackedRhs::new(b_view);
                for seed in [13, 14] {
                    let a = pseudo_random(m * k, seed);
                    let a = MatRef::new(&a, m, k);
                    let want: Vec<f32> = naive(a, b_view).iter().map(|v| v + 0.5).collect();
                    let mut c = vec![1.0; m * n];
                    gemm_packed(1.0, a, &packed, 0.5, MatMut::new(&mut c, m, n));
                    assert_close(&c, &want, k);
                }
            }
        }
    }

    fn assert_close(got: &[f32], want: &[f32], k: usize) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < 1e-4 * (1.0 + w.abs()) * (k as f32).sqrt(),
                "[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "gathered matrix reads up to 36 values but its buffer holds only 35")]
    fn gathered_overrun_is_named() {
        let g = Gathered {
            data: &[0.0; 35],
            row_offsets: &[0, 20],
            strip_offsets: &[0],
            seg: 16,
            seg_stride: 0,
        };
        gemm_gathered(
            1.0,
            MatRef::new(&[0.0; 2], 1, 2),
            g,
            0.0,
            MatMut::new(&mut [0.0; 16], 1, 16),
        );
    }

    #[test]
    fn empty_reduction_scales_c() {
        let mut c = vec![3.0; 6];
        gemm(
            1.0,
            MatRef::new(&[], 2, 0),
            MatRef::new(&[], 0, 3),
            0.5,
            MatMut::new(&mut c, 2, 3),
        );
        assert_eq!(c, vec![1.5; 6]);
        gemm(
            1.0,
            MatRef::new(&[], 2, 0),
            MatRef::new(&[], 0, 3),
            0.0,
            MatMut::new(&mut c, 2, 3),
        );
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "gemm: cannot multiply A 2×3 by B 4×2")]
    fn shape_mismatch_is_named() {
        let mut c = vec![0.0; 4];
        gemm(
            1.0,
            MatRef::new(&[0.0; 6], 2, 3),
            MatRef::new(&[0.0; 8], 4, 2),
            0.0,
            MatMut::new(&mut c, 2, 2),
        );
    }
}
