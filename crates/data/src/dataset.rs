//! [`ImageSet`]: a labelled set of small images as one flat `u8` array.
//!
//! Images are stored back to back, each in CHW order (all of channel 0, then channel 1, ...),
//! so image `i` is the slice `images[i*C*H*W .. (i+1)*C*H*W]`. This is the layout both
//! MNIST (C = 1) and CIFAR-10 (C = 3, planes R, G, B) already have on disk, and the NCHW
//! layout the training code wants, so no transposition ever happens.

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::normalize::Normalize;

/// A labelled image set: `N` images of `channels × height × width` bytes, plus `N` labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// `N*C*H*W` pixel bytes, CHW per image, images back to back.
    pub images: Vec<u8>,
    /// `N` labels, each in `0..class_names.len()`.
    pub labels: Vec<u8>,
    /// Channels per image (1 for MNIST, 3 for CIFAR-10).
    pub channels: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// Human-readable class names, indexed by label.
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// Builds a set, checking that the array lengths agree with the shape.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let per = channels * height * width;
        if per == 0 || images.len() != labels.len() * per {
            return Err(DataError::Invalid(format!(
                "{} pixel bytes do not make {} images of {channels}x{height}x{width}",
                images.len(),
                labels.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(DataError::Invalid(format!(
                "label {bad} but only {} classes",
                class_names.len()
            )));
        }
        Ok(ImageSet {
            images,
            labels,
            channels,
            height,
            width,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes (= values) per image: `C*H*W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `[C, H, W]` of one image.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Number of classes (`class_names.len()`).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The CHW bytes of image `i`, or `None` if `i >= len()`.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.image_len();
        self.images.get(i * n..(i + 1) * n)
    }

    /// How many images carry each label (a vector of length `num_classes()`).
    pub fn label_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(slot) = c.get_mut(l as usize) {
                *slot += 1;
            }
        }
        c
    }

    /// A copy of images `range` (e.g. a split's `pretrain` range).
    pub fn subset(&self, range: Range<usize>) -> Result<ImageSet> {
        if range.start > range.end || range.end > self.len() {
            return Err(DataError::Invalid(format!(
                "range {}..{} is outside a set of {} images",
                range.start,
                range.end,
                self.len()
            )));
        }
        let n = self.image_len();
        Ok(ImageSet {
            images: self.images[range.start * n..range.end * n].to_vec(),
            labels: self.labels[range.clone()].to_vec(),
            ..self.empty_like()
        })
    }

    /// A copy of the images at `indices`, in that order (repeats allowed).
    pub fn select(&self, indices: &[usize]) -> Result<ImageSet> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::Invalid(format!(
                "index {bad} is outside a set of {} images",
                self.len()
            )));
        }
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(&self.images[i * n..(i + 1) * n]);
        }
        Ok(ImageSet {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.empty_like()
        })
    }

    /// Appends the images of `other` (which must have the same shape).
    pub fn extend(&mut self, other: &ImageSet) -> Result<()> {
        if other.shape() != self.shape() {
            return Err(DataError::Invalid(format!(
                "cannot concatenate images of shape {:?} and {:?}",
                self.shape(),
                other.shape()
            )));
        }
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
        Ok(())
    }

    /// The whole set as `f32` `[N, C, H, W]`, scaled to `[0, 1]` and normalised with `norm`
    /// (no augmentation): the input for feature extraction and evaluation.
    pub fn to_normalized(&self, norm: &Normalize) -> Vec<f32> {
        let n = self.image_len();
        let mut out = vec![0.0f32; self.images.len()];
        if n == 0 {
            return out;
        }
        let hw = self.height * self.width;
        out.par_chunks_mut(n)
            .zip(self.images.par_chunks(n))
            .for_each(|(dst, src)| norm.apply_u8(src, dst, hw));
        out
    }

    fn empty_like(&self) -> ImageSet {
        ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        let images: Vec<u8> = (0..5 * 4).map(|v| v as u8).collect();
        ImageSet::new(
            images,
            vec![0, 1, 2, 1, 0],
            1,
            2,
            2,
            vec!["a".into(), "b".into(), "c".into()],
        )
        .unwrap()
    }

    #[test]
    fn subset_select_counts() {
        let s = tiny();
        assert_eq!(s.len(), 5);
        assert_eq!(s.label_counts(), vec![2, 2, 1]);
        let sub = s.subset(1..3).unwrap();
        assert_eq!(sub.labels, vec![1, 2]);
        assert_eq!(sub.images, (4..12).map(|v| v as u8).collect::<Vec<_>>());
        let sel = s.select(&[4, 0]).unwrap();
        assert_eq!(sel.labels, vec![0, 0]);
        assert_eq!(sel.image(0).unwrap(), &[16, 17, 18, 19]);
        assert!(s.subset(3..6).is_err());
        assert!(s.select(&[5]).is_err());
        assert!(s.image(5).is_none());
    }

    #[test]
    fn new_checks_shape_and_labels() {
        assert!(ImageSet::new(vec![0; 7], vec![0, 0], 1, 2, 2, vec!["a".into()]).is_err());
        assert!(ImageSet::new(vec![0; 8], vec![0, 1], 1, 2, 2, vec!["a".into()]).is_err());
    }
}
