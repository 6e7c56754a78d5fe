//! Geometric transforms: random resized crop, horizontal flip, rotation.
//!
//! All sample with bilinear interpolation, pixel centres at `i + 0.5` (PyTorch's
//! `align_corners=False`). The crop's interpolation is separable, so its row/column source
//! indices and weights are tabulated once per image; the rotation walks source coordinates
//! incrementally along each output row and treats samples outside the image as 0.

use rand::Rng;

use super::{Image, Scratch};

/// Crop a random region (area fraction `scale`, aspect ratio `ratio`) and resize it back.
///
/// Parameters follow torchvision's `RandomResizedCrop.get_params`: up to ten tries of an area
/// `U(scale) · H·W` and a log-uniform aspect ratio; if none fits, a central crop of the
/// clamped aspect ratio. The region is then resized to `size` (or the input size) bilinearly.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Output `(height, width)`; `None` keeps the input size.
    pub size: Option<(usize, usize)>,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f32, f32),
    /// Range of the crop's width / height.
    pub ratio: (f32, f32),
}

impl RandomResizedCrop {
    /// A crop with the given scale range, the usual ratio range (3/4, 4/3), same output size.
    pub fn new(scale: (f32, f32)) -> Self {
        RandomResizedCrop {
            size: None,
            scale,
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// Draws `(top, left, height, width)` of the crop for an `h × w` image.
    pub fn params<R: Rng + ?Sized>(
        &self,
        h: usize,
        w: usize,
        rng: &mut R,
    ) -> (usize, usize, usize, usize) {
        let area = (h * w) as f32;
        let (s0, s1) = ordered(self.scale);
        let (r0, r1) = ordered(self.ratio);
        let (r0, r1) = (r0.max(1e-6), r1.max(1e-6));
        let (l0, l1) = (r0.ln(), r1.ln());
        for _ in 0..10 {
            let target = area * uniform(rng, s0, s1);
            let aspect = uniform(rng, l0, l1).exp();
            let cw = (target * aspect).sqrt().round() as usize;
            let ch = (target / aspect).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = rng.gen_range(0..=h - ch);
                let left = rng.gen_range(0..=w - cw);
                return (top, left, ch, cw);
            }
        }
        // Fallback: the largest central crop with the ratio clamped into range.
        let in_ratio = w as f32 / h.max(1) as f32;
        let (ch, cw) = if in_ratio < r0 {
            (((w as f32 / r0).round() as usize).clamp(1, h.max(1)), w)
        } else if in_ratio > r1 {
            (h, ((h as f32 * r1).round() as usize).clamp(1, w.max(1)))
        } else {
            (h, w)
        };
        ((h - ch.min(h)) / 2, (w - cw.min(w)) / 2, ch, cw)
    }

    /// Crops and resizes `img` in place.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut Image, s: &mut Scratch, rng: &mut R) {
        if img.height == 0 || img.width == 0 {
            return;
        }
        let (top, left, ch, cw) = self.params(img.height, img.width, rng);
        let (oh, ow) = self.size.unwrap_or((img.height, img.width));
        resize_region(img, (top, left, ch, cw), (oh, ow), s);
    }
}

fn ordered((a, b): (f32, f32)) -> (f32, f32) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A uniform draw in `[a, b)` (or `a` if the range is empty or not finite).
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R, a: f32, b: f32) -> f32 {
    let u: f32 = rng.gen();
    let v = a + (b - a) * u;
    if v.is_finite() {
        v
    } else {
        a
    }
}

/// Source index pairs and weights for resampling `n_in` samples starting at `start` to
/// `n_out` samples (bilinear, `align_corners=False`, edges clamped).
fn tabulate(start: usize, n_in: usize, n_out: usize, idx: &mut Vec<usize>, w: &mut Vec<f32>) {
    idx.clear();
    w.clear();
    let step = n_in as f32 / n_out as f32;
    let max = (n_in - 1) as f32;
    for o in 0..n_out {
        let src = ((o as f32 + 0.5) * step - 0.5).clamp(0.0, max);
        let i0 = src.floor() as usize;
        let i1 = (i0 + 1).min(n_in - 1);
        idx.push(start + i0);
        idx.push(start + i1);
        w.push(src - i0 as f32);
    }
}

/// Resizes the region `(top, left, h, w)` of `img` to `out_h × out_w`, bilinearly.
pub fn resize_region(
    img: &mut Image,
    (top, left, h, w): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
    s: &mut Scratch,
) {
    let h = h.min(img.height.saturating_sub(top));
    let w = w.min(img.width.saturating_sub(left));
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        img.set_shape(img.channels, out_h, out_w);
        return;
    }
    tabulate(left, w, out_w, &mut s.idx_a, &mut s.w_a);
    tabulate(top, h, out_h, &mut s.idx_b, &mut s.w_b);
    let (iw, ihw) = (img.width, img.plane());
    s.out.set_shape(img.channels, out_h, out_w);
    let ohw = out_h * out_w;
    for (src, dst) in img
        .data
        .chunks_exact(ihw)
        .zip(s.out.data.chunks_exact_mut(ohw))
    {
        for (oy, drow) in dst.chunks_exact_mut(out_w).enumerate() {
            let (y0, y1, fy) = (s.idx_b[2 * oy], s.idx_b[2 * oy + 1], s.w_b[oy]);
            let r0 = &src[y0 * iw..(y0 + 1) * iw];
            let r1 = &src[y1 * iw..(y1 + 1) * iw];
            for (ox, d) in drow.iter_mut().enumerate() {
                let (x0, x1, fx) = (s.idx_a[2 * ox], s.idx_a[2 * ox + 1], s.w_a[ox]);
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
                *d = top + (bot - top) * fy;
            }
        }
    }
    std::mem::swap(img, &mut s.out);
}

/// Mirrors `img` left-right in place.
pub fn hflip(img: &mut Image) {
    if img.width == 0 {
        return;
    }
    for row in img.data.chunks_exact_mut(img.width) {
        row.reverse();
    }
}

/// Rotate by a uniform angle in `[-degrees, degrees]` about the image centre; bilinear,
/// samples outside the source are 0 (black).
#[derive(Clone, Debug, PartialEq)]
pub struct Rotation {
    /// Largest absolute angle, in degrees.
    pub degrees: f32,
}

impl Rotation {
    /// Draws an angle and rotates `img` in place.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut Image, s: &mut Scratch, rng: &mut R) {
        let d = self.degrees.abs();
        let angle = uniform(rng, -d, d);
        rotate(img, angle, s);
    }
}

/// Rotates `img` counter-clockwise by `degrees` about its centre (bilinear, fill 0).
pub fn rotate(img: &mut Image, degrees: f32, s: &mut Scratch) {
    let (h, w, c) = (img.height, img.width, img.channels);
    if h == 0 || w == 0 {
        return;
    }
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) * 0.5, (h as f32 - 1.0) * 0.5);
    let hw = h * w;
    s.out.set_shape(c, h, w);
    for y in 0..h {
        let dy = y as f32 - cy;
        // Source of output (x, y) = M · (x - cx, y - cy) + (cx, cy) with
        // M = [[cos, -sin], [sin, cos]]; with y pointing down, content above the centre lands
        // left of it, i.e. a positive angle turns the picture counter-clockwise.
        let mut sx = -cos * cx - sin * dy + cx;
        let mut sy = -sin * cx + cos * dy + cy;
        for x in 0..w {
            let (fx0, fy0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - fx0, sy - fy0);
            let (x0, y0) = (fx0 as isize, fy0 as isize);
            let o = y * w + x;
            let (wi, hi) = (w as isize, h as isize);
            let wts = [
                (1.0 - fx) * (1.0 - fy),
                fx * (1.0 - fy),
                (1.0 - fx) * fy,
                fx * fy,
            ];
            if x0 >= 0 && y0 >= 0 && x0 + 1 < wi && y0 + 1 < hi {
                // Interior: all four taps inside, no bounds checks per tap.
                let i = y0 as usize * w + x0 as usize;
                for ch in 0..c {
                    let p = &img.data[ch * hw..(ch + 1) * hw];
                    s.out.data[ch * hw + o] = wts[0] * p[i]
                        + wts[1] * p[i + 1]
                        + wts[2] * p[i + w]
                        + wts[3] * p[i + w + 1];
                }
            } else if x0 < -1 || y0 < -1 || x0 >= wi || y0 >= hi {
                // Entirely outside: fill 0 (already zero from `set_shape`).
            } else {
                // Border: taps outside the image contribute 0.
                let taps = [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)];
                for ch in 0..c {
                    let p = &img.data[ch * hw..(ch + 1) * hw];
                    let mut acc = 0.0;
                    for (&(tx, ty), &wt) in taps.iter().zip(&wts) {
                        if tx >= 0 && ty >= 0 && tx < wi && ty < hi {
                            acc += wt * p[ty as usize * w + tx as usize];
                        }
                    }
                    s.out.data[ch * hw + o] = acc;
                }
            }
            sx += cos;
            sy += sin;
        }
    }
    std::mem::swap(img, &mut s.out);
}
