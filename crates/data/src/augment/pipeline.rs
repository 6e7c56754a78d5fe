//! Composition: [`Op`] → [`Step`] (with a probability) → [`Pipeline`] → [`Augmenter`].

use rand::Rng;
use rayon::prelude::*;

use super::{color, geometry, image_rng, ColorJitter, GaussianBlur, Image, RandomResizedCrop};
use super::{Recipe, Rotation, Scratch};
use crate::error::{DataError, Result};
use crate::normalize::{DatasetKind, Normalize};
use crate::ImageSet;

/// One transform.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Random resized crop.
    ResizedCrop(RandomResizedCrop),
    /// Horizontal flip.
    HFlip,
    /// Random rotation.
    Rotate(Rotation),
    /// Gaussian blur with random σ.
    Blur(GaussianBlur),
    /// Colour jitter.
    ColorJitter(ColorJitter),
    /// Grayscale (kept as 3 channels).
    Grayscale,
}

impl Op {
    /// Applies the transform (unconditionally) to `img`.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut Image, s: &mut Scratch, rng: &mut R) {
        match self {
            Op::ResizedCrop(c) => c.apply(img, s, rng),
            Op::HFlip => geometry::hflip(img),
            Op::Rotate(r) => r.apply(img, s, rng),
            Op::Blur(b) => b.apply(img, s, rng),
            Op::ColorJitter(j) => j.apply(img, rng),
            Op::Grayscale => color::grayscale(img),
        }
    }
}

/// A transform applied with probability `p`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Probability of applying `op` (≥ 1 always, ≤ 0 never).
    pub p: f32,
    /// The transform.
    pub op: Op,
}

/// Transforms applied in order, each with its own probability.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pipeline {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Pipeline {
    /// The identity (no step).
    pub fn identity() -> Self {
        Pipeline::default()
    }

    /// Appends `op` with probability `p` (builder style).
    pub fn then(mut self, p: f32, op: Op) -> Self {
        self.steps.push(Step { p, op });
        self
    }

    /// True if the pipeline does nothing.
    pub fn is_identity(&self) -> bool {
        self.steps.iter().all(|s| s.p <= 0.0)
    }

    /// Runs the steps on `img`. For each step one coin is drawn (only if `0 < p < 1`), then
    /// the step's own parameters if it applies.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut Image, s: &mut Scratch, rng: &mut R) {
        for step in &self.steps {
            let apply = if step.p >= 1.0 {
                true
            } else if step.p <= 0.0 {
                false
            } else {
                rng.gen::<f32>() < step.p
            };
            if apply {
                step.op.apply(img, s, rng);
            }
        }
    }

    /// The `[C, H, W]` this pipeline outputs for `[C, H, W]` input.
    pub fn output_shape(&self, shape: [usize; 3]) -> [usize; 3] {
        let mut out = shape;
        for s in &self.steps {
            if let Op::ResizedCrop(RandomResizedCrop {
                size: Some((h, w)), ..
            }) = &s.op
            {
                if s.p > 0.0 {
                    out = [out[0], *h, *w];
                }
            }
        }
        out
    }
}

/// Makes normalised augmented views of dataset images, reproducibly.
///
/// View `v` of image `index` in epoch `epoch` is `norm(pipelines[v](image))` with the random
/// generator [`image_rng`]`(seed, epoch, index, v)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Augmenter {
    /// The pipeline of view 0 and of view 1.
    pub pipelines: [Pipeline; 2],
    /// Normalisation applied after augmentation.
    pub norm: Normalize,
    /// The run's seed.
    pub seed: u64,
}

impl Augmenter {
    /// The augmenter of a named recipe for a dataset, with the dataset's normalisation.
    pub fn new(recipe: Recipe, kind: DatasetKind, seed: u64) -> Self {
        Augmenter {
            pipelines: recipe.pipelines(kind),
            norm: kind.normalize(),
            seed,
        }
    }

    /// The same augmenter with every random resized crop drawing its area from
    /// `min_scale..=1` of the image (SimCLR's CIFAR-10 recipe uses 0.08; short runs often
    /// learn faster from the milder 0.2).
    pub fn with_crop_scale(mut self, min_scale: f32) -> Self {
        for pipeline in &mut self.pipelines {
            for step in &mut pipeline.steps {
                if let Op::ResizedCrop(crop) = &mut step.op {
                    crop.scale.0 = min_scale;
                }
            }
        }
        self
    }

    /// The same augmenter with every random resized crop resizing to `size × size` pixels,
    /// so the views are smaller (or larger) than the images: pretraining on 24-pixel views of
    /// 32-pixel images costs about half the compute per image, and the frozen encoder is
    /// evaluated on the full images (a convolutional encoder with global pooling takes any
    /// size).
    pub fn with_view_size(mut self, size: usize) -> Self {
        for pipeline in &mut self.pipelines {
            for step in &mut pipeline.steps {
                if let Op::ResizedCrop(crop) = &mut step.op {
                    crop.size = Some((size, size));
                }
            }
        }
        self
    }

    /// The `[C, H, W]` of the views of `[C, H, W]` images: an error unless both pipelines
    /// give one shape for every draw (the views stack into one array), so a crop that resizes
    /// must apply always (p = 1), in both views.
    pub fn view_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        for p in &self.pipelines {
            let resizes = p.steps.iter().any(|s| {
                matches!(&s.op, Op::ResizedCrop(c) if c.size.is_some_and(|(h, w)| [h, w] != [shape[1], shape[2]]))
                    && s.p > 0.0
                    && s.p < 1.0
            });
            if resizes {
                return Err(DataError::Invalid(format!(
                    "a crop resizes {shape:?} images with a probability below 1, so views would \
                     differ in size"
                )));
            }
        }
        let [a, b] = [0, 1].map(|v| self.pipelines[v].output_shape(shape));
        if a != b {
            return Err(DataError::Invalid(format!(
                "the two views of {shape:?} images would be {a:?} and {b:?}; they must match"
            )));
        }
        Ok(a)
    }

    /// Writes view `view` (0 or 1) of the CHW byte image `src` (dataset index `index`) into
    /// `out`, normalised; `img` and `s` are reusable buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn view_into(
        &self,
        src: &[u8],
        shape: [usize; 3],
        view: usize,
        epoch: u64,
        index: usize,
        out: &mut [f32],
        img: &mut Image,
        s: &mut Scratch,
    ) {
        let [c, h, w] = shape;
        let pipe = &self.pipelines[view.min(1)];
        if pipe.is_identity() {
            self.norm.apply_u8(src, out, h * w);
            return;
        }
        img.load_u8(src, c, h, w);
        let mut rng = image_rng(self.seed, epoch, index as u64, view as u64);
        pipe.apply(img, s, &mut rng);
        let n = out.len().min(img.data.len());
        self.norm
            .apply_f32(&img.data[..n], &mut out[..n], img.plane());
    }

    /// Writes `views` (1 or 2) views of the images `indices` of `set` into `out`, laid out
    /// `[views·B, C, H, W]`: rows `0..B` are view 0 of each image, rows `B..2B` view 1, so
    /// rows `i` and `i + B` are a positive pair. Runs in parallel on rayon. `out` is resized.
    pub fn views_into(
        &self,
        set: &ImageSet,
        indices: &[usize],
        views: usize,
        epoch: u64,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        self.view_shape(set.shape())?;
        if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
            return Err(DataError::Invalid(format!(
                "index {bad} is outside a set of {} images",
                set.len()
            )));
        }
        self.fill_views(set, indices, views, epoch, out);
        Ok(())
    }

    /// [`Augmenter::views_into`] without the checks (the loader validates once up front);
    /// returns the views' `[C, H, W]`.
    pub(crate) fn fill_views(
        &self,
        set: &ImageSet,
        indices: &[usize],
        views: usize,
        epoch: u64,
        out: &mut Vec<f32>,
    ) -> [usize; 3] {
        let shape = set.shape();
        let n = set.image_len();
        let view_shape = self.view_shape(shape).unwrap_or(shape);
        let n_out: usize = view_shape.iter().product();
        let b = indices.len();
        out.clear();
        out.resize(views * b * n_out, 0.0);
        if n_out == 0 || b == 0 {
            return view_shape;
        }
        // Work item k = (view k / B, image k % B); chunks of 8 amortise the scratch set-up.
        out.par_chunks_mut(n_out)
            .enumerate()
            .with_min_len(8)
            .for_each_init(
                || (Image::default(), Scratch::default()),
                |(img, s), (k, dst)| {
                    let (view, i) = (k / b, k % b);
                    let index = indices[i];
                    let src = &set.images[index * n..(index + 1) * n];
                    self.view_into(src, shape, view, epoch, index, dst, img, s);
                },
            );
        view_shape
    }

    /// Two views of `indices` as one `[2B, C, H, W]` array (see [`Augmenter::views_into`]).
    pub fn two_views(&self, set: &ImageSet, indices: &[usize], epoch: u64) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.views_into(set, indices, 2, epoch, &mut out)?;
        Ok(out)
    }
}
