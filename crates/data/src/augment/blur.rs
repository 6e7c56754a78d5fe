//! Gaussian blur with a random σ.
//!
//! The kernel `k[i] ∝ exp(-(i - r)² / 2σ²)`, `i = 0..2r`, normalised to sum 1, is computed
//! once per image (σ is drawn per image) and applied separably: a horizontal pass into the
//! scratch image, then a vertical pass back. Borders are reflected (`dcb|abcd|cba`, the edge
//! not repeated, like torchvision's `reflect` padding) through a precomputed index table, so
//! the inner loops are branch-free multiply-adds over contiguous rows. Because the kernel sums to 1, a constant image stays constant.

use rand::Rng;

use super::geometry::uniform;
use super::{Image, Scratch};

/// Largest supported kernel size.
pub const MAX_KERNEL: usize = 31;

/// Blur with an odd `kernel` size and σ drawn uniformly from `sigma`.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianBlur {
    /// Kernel size (odd; even sizes are rounded up, clamped to [`MAX_KERNEL`]).
    pub kernel: usize,
    /// Range of σ, in pixels.
    pub sigma: (f32, f32),
}

impl GaussianBlur {
    /// Draws σ and blurs `img` in place.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut Image, s: &mut Scratch, rng: &mut R) {
        let (a, b) = self.sigma;
        let sigma = uniform(rng, a.min(b), a.max(b));
        blur(img, self.kernel, sigma, s);
    }
}

/// The normalised Gaussian kernel of size `k` (odd) and standard deviation `sigma`.
pub fn kernel(k: usize, sigma: f32) -> ([f32; MAX_KERNEL], usize) {
    let k = (k | 1).min(MAX_KERNEL);
    let r = (k / 2) as f32;
    let sigma = if sigma.is_finite() && sigma > 1e-6 {
        sigma
    } else {
        1e-6
    };
    let mut w = [0.0f32; MAX_KERNEL];
    let mut sum = 0.0;
    for (i, wi) in w.iter_mut().take(k).enumerate() {
        let d = i as f32 - r;
        *wi = (-d * d / (2.0 * sigma * sigma)).exp();
        sum += *wi;
    }
    for wi in w.iter_mut().take(k) {
        *wi /= sum;
    }
    (w, k)
}

/// Reflect-padding table: entry `j` is the source index of padded position `j - r`.
fn reflect_table(n: usize, r: usize, out: &mut Vec<usize>) {
    out.clear();
    for j in 0..n + 2 * r {
        let mut i = j as isize - r as isize;
        let last = n as isize - 1;
        // Reflect until inside (a kernel wider than the image reflects more than once).
        for _ in 0..8 {
            if i < 0 {
                i = -i;
            }
            if i > last {
                i = 2 * last - i;
            }
        }
        out.push(i.clamp(0, last.max(0)) as usize);
    }
}

/// Blurs `img` in place with a `k`-tap Gaussian of standard deviation `sigma`.
pub fn blur(img: &mut Image, k: usize, sigma: f32, s: &mut Scratch) {
    let (h, w, c) = (img.height, img.width, img.channels);
    if h == 0 || w == 0 {
        return;
    }
    let (kw, k) = kernel(k, sigma);
    let kw = &kw[..k];
    let r = k / 2;
    let hw = h * w;
    reflect_table(w, r, &mut s.idx_a);
    reflect_table(h, r, &mut s.idx_b);
    s.out.set_shape(c, h, w);
    // Horizontal pass: img -> s.out. Each row is first copied into a padded buffer
    // (`s.w_a`, through the reflect table) so the taps read contiguous memory.
    s.w_a.clear();
    s.w_a.resize(w + 2 * r, 0.0);
    for (src, dst) in img
        .data
        .chunks_exact(hw)
        .zip(s.out.data.chunks_exact_mut(hw))
    {
        for (srow, drow) in src.chunks_exact(w).zip(dst.chunks_exact_mut(w)) {
            for (p, &i) in s.w_a.iter_mut().zip(&s.idx_a) {
                *p = srow[i];
            }
            drow.fill(0.0);
            for (t, &wt) in kw.iter().enumerate() {
                for (d, &v) in drow.iter_mut().zip(&s.w_a[t..t + w]) {
                    *d += wt * v;
                }
            }
        }
    }
    // Vertical pass: s.out -> img, row by row so the inner loop runs along contiguous rows.
    for (src, dst) in s
        .out
        .data
        .chunks_exact(hw)
        .zip(img.data.chunks_exact_mut(hw))
    {
        for (y, drow) in dst.chunks_exact_mut(w).enumerate() {
            drow.fill(0.0);
            for (&sy, &wt) in s.idx_b[y..y + k].iter().zip(kw) {
                let srow = &src[sy * w..(sy + 1) * w];
                for (d, &v) in drow.iter_mut().zip(srow) {
                    *d += wt * v;
                }
            }
        }
    }
}
