//! Short loops over slices that several kernels share, written so the compiler vectorises them.
//!
//! A plain `iter().sum()` of f32 must add in order, one element per add latency; the sums here
//! keep 16 independent partial sums (one AVX-512 register, two AVX2 ones) and add them at the
//! end, which changes the rounding but not the accuracy class. The pooling, batch norm and
//! convolution passes and the NT-Xent loss use them.

use std::mem::MaybeUninit;

/// `Σ f(x[i])`, with 16 independent partial sums so the compiler can vectorise it (a plain
/// `iter().sum()` of f32 must add in order, one element per add latency).
pub fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ f(x[i], y[i])` over two equally long slices, vectorised like [`sum_map`].
pub fn sum_map2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    assert_eq!(x.len(), y.len(), "sum_map2: slices of different lengths");
    let mut acc = [0.0f32; 16];
    let (cx, cy) = (x.chunks_exact(16), y.chunks_exact(16));
    let tail: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(&a, &b)| f(a, b))
        .sum();
    for (a16, b16) in cx.zip(cy) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a16).zip(b16) {
            *acc += f(a, b);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `⟨a, b⟩`, vectorised like [`sum_map2`].
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_map2(a, b, |x, y| x * y)
}

/// A buffer of initialised values viewed as writable-only: how an ordinary slice is passed to
/// the functions that also write into fresh, uninitialised buffers (like
/// [`transpose_strided`]), which then need not be zeroed first.
pub fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and every value written through
    // the view is an initialised `f32`, so the slice stays initialised.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `out = xᵀ` for a row-major `rows × cols` `x` ([`transpose_strided`]).
pub fn transpose(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    assert!(
        x.len() >= rows * cols && out.len() >= rows * cols,
        "transpose: {rows}×{cols} needs {} values, got {} in and {} out",
        rows * cols,
        x.len(),
        out.len()
    );
    transpose_strided(x, rows, cols, cols, as_uninit(out), rows);
}

/// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i < rows`, `j < cols`: whole 16 × 16
/// blocks with the CPU's vector shuffles ([`crate::gemm::transpose_block`]), so neither side
/// strides through memory one value per cache line, then 8 × 8 blocks along the edges (24
/// channels are a 16-block and an 8-block), the last few rows and columns value by value.
pub fn transpose_strided(
    src: &[f32],
    rows: usize,
    cols: usize,
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    /// Transposes the `B × B` blocks whose corners are rows `is` × columns `js` (step `B`).
    fn blocks<const B: usize>(
        src: &[f32],
        src_stride: usize,
        dst: &mut [MaybeUninit<f32>],
        dst_stride: usize,
        is: std::ops::Range<usize>,
        js: std::ops::Range<usize>,
    ) {
        for i0 in is.step_by(B) {
            for j0 in js.clone().step_by(B) {
                let (from, to) = (i0 * src_stride + j0, j0 * dst_stride + i0);
                crate::gemm::transpose_block::<B>(
                    &src[from..],
                    src_stride,
                    &mut dst[to..],
                    dst_stride,
                );
            }
        }
    }
    let (rows16, cols16) = (rows - rows % 16, cols - cols % 16);
    let (rows8, cols8) = (rows - rows % 8, cols - cols % 8);
    let (ss, ds) = (src_stride, dst_stride);
    blocks::<16>(src, ss, dst, ds, 0..rows16, 0..cols16);
    // The 8-wide strips right of and below the 16 × 16 blocks.
    blocks::<8>(src, ss, dst, ds, 0..rows8, cols16..cols8);
    blocks::<8>(src, ss, dst, ds, rows16..rows8, 0..cols16);
    let edge =
        |dst: &mut [MaybeUninit<f32>], is: std::ops::Range<usize>, js: std::ops::Range<usize>| {
            for i in is {
                for j in js.clone() {
                    dst[j * dst_stride + i].write(src[i * src_stride + j]);
                }
            }
        };
    edge(dst, 0..rows8, cols8..cols);
    edge(dst, rows8..rows, 0..cols);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_a_plain_loop() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let y: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let plain: f32 = x.iter().map(|v| v * v).sum();
        assert!((sum_map(&x, |v| v * v) - plain).abs() <= 1e-4 * plain.abs());
        let plain_dot: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &y) - plain_dot).abs() <= 1e-4 * plain_dot.abs().max(1.0));
        assert_eq!(sum_map(&[], |v| v), 0.0);
    }

    #[test]
    fn transpose_of_a_ragged_shape() {
        for (rows, cols) in [
            (19, 35),
            (32, 48),
            (5, 3),
            (16, 17),
            (24, 40),
            (40, 27),
            (8, 8),
        ] {
            let x: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut t = vec![0.0; rows * cols];
            transpose(&x, rows, cols, &mut t);
            for i in 0..rows {
                for k in 0..cols {
                    assert_eq!(t[k * rows + i], x[i * cols + k], "{rows}×{cols}");
                }
            }
        }
    }

    #[test]
    fn strided_transpose_leaves_the_gaps_alone() {
        // A 33 × 20 window of a 25-wide source, into rows 40 wide (20 of them).
        let (rows, cols, ss, ds) = (33, 20, 25, 40);
        let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
        let mut dst = vec![-1.0; cols * ds];
        transpose_strided(&src, rows, cols, ss, as_uninit(&mut dst), ds);
        for j in 0..cols {
            for i in 0..ds {
                let want = if i < rows { src[i * ss + j] } else { -1.0 };
                assert_eq!(dst[j * ds + i], want, "({j}, {i})");
            }
        }
    }
}
