//! Seeded image augmentations for contrastive learning.
//!
//! An augmentation works on an [`Image`]: `f32` CHW values in `[0, 1]` (a `u8` image is
//! loaded with [`Image::load_u8`], which divides by 255; [`Image::to_u8`] goes back).
//! Normalisation happens *after* augmentation, so "fill 0" in a rotation means black.
//!
//! The transforms, one family per file:
//! - [`geometry`]: [`RandomResizedCrop`] (scale and ratio ranges, bilinear), [`hflip`],
//!   [`Rotation`] (uniform angle, bilinear, fill 0);
//! - [`blur`]: [`GaussianBlur`] (odd kernel size, σ range, separable, reflect padding);
//! - [`color`]: [`ColorJitter`] (brightness, contrast, saturation, hue in random order, as
//!   torchvision) and [`grayscale`].
//!
//! [`Op`] names one transform, a [`Step`] gives it a probability, and a [`Pipeline`] runs
//! steps in order — the composition. [`Recipe`] builds the named pipelines of the report
//! and of the SimCLR paper; [`Augmenter`] applies a recipe's two pipelines to a batch in
//! parallel (rayon) and writes normalised `f32` views.
//!
//! **Reproducibility.** Every image gets its own random generator, seeded by
//! [`image_seed`]`(seed, epoch, index, view)`, where `index` is the image's position in the
//! dataset. The views are therefore the same whatever the batch size, the batch order and
//! the thread scheduling, and a run resumed at epoch `e` sees exactly the views it would have.
//!
//! **Speed.** Nothing allocates per pixel: each transform writes into a [`Scratch`] buffer
//! that is swapped with the image, interpolation tables and blur kernels are computed once
//! per image (not per pixel), and the buffers live as long as a rayon worker's batch share.

pub mod blur;
pub mod color;
pub mod geometry;
mod pipeline;
mod recipe;

pub use blur::GaussianBlur;
pub use color::{grayscale, ColorJitter};
pub use geometry::{hflip, RandomResizedCrop, Rotation};
pub use pipeline::{Augmenter, Op, Pipeline, Step};
pub use recipe::Recipe;

use rand::SeedableRng;

/// The random generator used for one image's augmentation.
pub type AugRng = rand::rngs::StdRng;

/// An image being augmented: `channels × height × width` `f32` values in `[0, 1]`, CHW.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    /// `channels * height * width` values, CHW.
    pub data: Vec<f32>,
    /// Channels (1 or 3).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl Image {
    /// An all-zero image.
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Image {
            data: vec![0.0; channels * height * width],
            channels,
            height,
            width,
        }
    }

    /// A new image from CHW bytes, scaled to `[0, 1]`.
    pub fn from_u8(src: &[u8], channels: usize, height: usize, width: usize) -> Self {
        let mut im = Image::default();
        im.load_u8(src, channels, height, width);
        im
    }

    /// Replaces the contents with CHW bytes scaled to `[0, 1]`, reusing the buffer.
    /// Uses `min(src.len(), c*h*w)` bytes; missing values are 0.
    pub fn load_u8(&mut self, src: &[u8], channels: usize, height: usize, width: usize) {
        self.set_shape(channels, height, width);
        for (d, &s) in self.data.iter_mut().zip(src) {
            *d = s as f32 * (1.0 / 255.0);
        }
    }

    /// The image as CHW bytes (values clamped to `[0, 1]`, then scaled and rounded).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }

    /// Pixels per channel.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Sets the shape, resizing (without shrinking capacity) and zero-filling the buffer.
    pub fn set_shape(&mut self, channels: usize, height: usize, width: usize) {
        self.channels = channels;
        self.height = height;
        self.width = width;
        self.data.clear();
        self.data.resize(channels * height * width, 0.0);
    }
}

/// Reusable buffers for the transforms (one per worker; never shared between threads).
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// The output image of the transform being run; swapped with the input afterwards.
    pub(crate) out: Image,
    /// Index tables (interpolation / padding).
    pub(crate) idx_a: Vec<usize>,
    /// Second index table.
    pub(crate) idx_b: Vec<usize>,
    /// Weight tables.
    pub(crate) w_a: Vec<f32>,
    /// Second weight table.
    pub(crate) w_b: Vec<f32>,
}

/// The seed of the generator for view `view` of dataset image `index` in epoch `epoch` of a
/// run seeded with `seed` (SplitMix64 mixing of the four numbers).
pub fn image_seed(seed: u64, epoch: u64, index: u64, view: u64) -> u64 {
    let mut h = splitmix(seed);
    for x in [epoch, index, view] {
        h = splitmix(h ^ splitmix(x.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    h
}

/// The generator for `(seed, epoch, index, view)`, see [`image_seed`].
pub fn image_rng(seed: u64, epoch: u64, index: u64, view: u64) -> AugRng {
    AugRng::seed_from_u64(image_seed(seed, epoch, index, view))
}

/// SplitMix64's output function: a bijective 64-bit mixer.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
