//! Colour transforms: colour jitter and grayscale.
//!
//! Both follow torchvision on `[0, 1]` RGB images:
//! - brightness `f`: `x · f`;
//! - contrast `f`: `f · x + (1 - f) · mean(gray(x))`;
//! - saturation `f`: `f · x + (1 - f) · gray(x)` per pixel;
//! - hue `δ`: shift the HSV hue by `δ` turns;
//!
//! each clamped to `[0, 1]`, with factors drawn from `[max(0, 1 - b), 1 + b]` (and `δ` from
//! `[-h, h]`) and the four applied in a random order. `gray = 0.299 R + 0.587 G + 0.114 B`.
//! On a one-channel image saturation and hue do nothing (the image is its own gray).

use rand::seq::SliceRandom;
use rand::Rng;

use super::geometry::uniform;
use super::Image;

/// Random brightness, contrast, saturation and hue changes.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength `b`: factor in `[max(0, 1-b), 1+b]`.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength.
    pub saturation: f32,
    /// Hue strength `h ≤ 0.5`: shift in `[-h, h]` turns.
    pub hue: f32,
}

const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

impl ColorJitter {
    /// Draws the four factors and an order, and applies them to `img` in place.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut Image, rng: &mut R) {
        let mut order = [0u8, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut R, b: f32| uniform(rng, (1.0 - b).max(0.0), 1.0 + b);
        let fb = factor(rng, self.brightness);
        let fc = factor(rng, self.contrast);
        let fs = factor(rng, self.saturation);
        let h = self.hue.clamp(0.0, 0.5);
        let fh = uniform(rng, -h, h);
        for op in order {
            match op {
                0 if self.brightness > 0.0 => brightness(img, fb),
                1 if self.contrast > 0.0 => contrast(img, fc),
                2 if self.saturation > 0.0 => saturation(img, fs),
                3 if self.hue > 0.0 => hue(img, fh),
                _ => {}
            }
        }
    }
}

/// Multiplies every value by `f`, clamped to `[0, 1]`.
pub fn brightness(img: &mut Image, f: f32) {
    for v in &mut img.data {
        *v = (*v * f).clamp(0.0, 1.0);
    }
}

/// Blends every value with the image's mean gray level: `f · x + (1 - f) · mean`.
pub fn contrast(img: &mut Image, f: f32) {
    let hw = img.plane();
    if hw == 0 {
        return;
    }
    let mean = if img.channels == 3 {
        let (r, rest) = img.data.split_at(hw);
        let (g, b) = rest.split_at(hw);
        let s: f32 = r
            .iter()
            .zip(g)
            .zip(b)
            .map(|((r, g), b)| LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)
            .sum();
        s / hw as f32
    } else {
        img.data.iter().sum::<f32>() / img.data.len() as f32
    };
    let add = (1.0 - f) * mean;
    for v in &mut img.data {
        *v = (f * *v + add).clamp(0.0, 1.0);
    }
}

/// Blends every pixel with its own gray level: `f · x + (1 - f) · gray(x)` (RGB only).
pub fn saturation(img: &mut Image, f: f32) {
    let hw = img.plane();
    if img.channels != 3 || hw == 0 {
        return;
    }
    let (r, rest) = img.data.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let gray = (1.0 - f) * (LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b);
        *r = (f * *r + gray).clamp(0.0, 1.0);
        *g = (f * *g + gray).clamp(0.0, 1.0);
        *b = (f * *b + gray).clamp(0.0, 1.0);
    }
}

/// Rotates the hue of every pixel by `shift` turns (RGB only), through HSV.
pub fn hue(img: &mut Image, shift: f32) {
    let hw = img.plane();
    if img.channels != 3 || hw == 0 {
        return;
    }
    let (r, rest) = img.data.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (h, s, v) = rgb_to_hsv(*r, *g, *b);
        let h = (h + shift).rem_euclid(1.0);
        let (nr, ng, nb) = hsv_to_rgb(h, s, v);
        *r = nr.clamp(0.0, 1.0);
        *g = ng.clamp(0.0, 1.0);
        *b = nb.clamp(0.0, 1.0);
    }
}

/// RGB in `[0, 1]` to HSV with hue in turns `[0, 1)`.
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let s = if max > 0.0 { d / max } else { 0.0 };
    let h = if d <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, s, max)
}

/// HSV (hue in turns) to RGB.
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Replaces every RGB pixel by its gray level in all three channels (no-op on 1 channel).
pub fn grayscale(img: &mut Image) {
    let hw = img.plane();
    if img.channels != 3 || hw == 0 {
        return;
    }
    let (r, rest) = img.data.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let y = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
        *r = y;
        *g = y;
        *b = y;
    }
}
