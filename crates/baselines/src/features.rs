//! A validated feature matrix with optional ground-truth labels.
//!
//! Clustering baselines take either raw images (u8 pixels, scaled here to `[0, 1]`) or any
//! `f32` feature matrix — for instance the embeddings a SimCLR encoder produces — so the same
//! code answers both "how well does k-means do on pixels?" and "how well does it do on learned
//! features?". A [`Features`] is checked once when it is built (non-empty, finite, labels of the
//! right length), which is what lets the algorithms downstream promise never to panic.

use ndarray::{Array2, ArrayView2};

use crate::BaselineError;

/// An `n_samples × n_features` matrix of finite `f32` values, row per sample, with optional
/// class labels (one per row).
#[derive(Debug, Clone)]
pub struct Features {
    x: Array2<f32>,
    labels: Option<Vec<usize>>,
}

impl Features {
    /// Wraps an owned matrix (rows = samples). Fails on an empty matrix, a NaN/infinite value or
    /// a label vector whose length is not `x.nrows()`.
    pub fn new(x: Array2<f32>, labels: Option<Vec<usize>>) -> Result<Self, BaselineError> {
        let what = "features";
        if x.nrows() == 0 {
            return Err(BaselineError::empty("feature matrix (no samples)"));
        }
        if x.ncols() == 0 {
            return Err(BaselineError::empty("feature matrix (no features)"));
        }
        if let Some(((row, col), &v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(BaselineError::NonFinite {
                what: what.to_string(),
                row,
                col,
                value: f64::from(v),
            });
        }
        if let Some(l) = &labels {
            if l.len() != x.nrows() {
                return Err(BaselineError::LabelLength {
                    what: what.to_string(),
                    n_labels: l.len(),
                    n_samples: x.nrows(),
                });
            }
        }
        Ok(Features { x, labels })
    }

    /// Copies a row-major buffer of `n_samples * n_features` values.
    pub fn from_slice(
        data: &[f32],
        n_samples: usize,
        n_features: usize,
        labels: Option<Vec<usize>>,
    ) -> Result<Self, BaselineError> {
        check_len("f32 features", data.len(), n_samples, n_features)?;
        let x = Array2::from_shape_vec((n_samples, n_features), data.to_vec())
            .map_err(|_| shape_error("f32 features", data.len(), n_samples, n_features))?;
        Features::new(x, labels)
    }

    /// Builds raw-pixel features from `n_images` u8 images of `pixels_per_image` bytes each
    /// (row-major, any channel layout), scaling every byte to `value / 255` in `[0, 1]`.
    /// `labels`, if given, are the class bytes (e.g. MNIST's 0..=9).
    pub fn from_u8_images(
        pixels: &[u8],
        n_images: usize,
        pixels_per_image: usize,
        labels: Option<&[u8]>,
    ) -> Result<Self, BaselineError> {
        check_len("u8 images", pixels.len(), n_images, pixels_per_image)?;
        let scaled: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        let x = Array2::from_shape_vec((n_images, pixels_per_image), scaled)
            .map_err(|_| shape_error("u8 images", pixels.len(), n_images, pixels_per_image))?;
        let labels = labels.map(|l| l.iter().map(|&c| usize::from(c)).collect());
        Features::new(x, labels)
    }

    /// The matrix, `n_samples × n_features`.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        self.x.view()
    }

    /// The class labels, if any.
    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref()
    }

    /// Number of samples (rows).
    pub fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    /// Number of features (columns).
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// The rows `start..end` (and their labels) as a new `Features`, e.g. the report's
    /// "train images 0..24,000" split.
    pub fn slice_rows(&self, start: usize, end: usize) -> Result<Self, BaselineError> {
        if start >= end || end > self.n_samples() {
            return Err(BaselineError::Config(format!(
                "row range {start}..{end} is empty or outside 0..{}",
                self.n_samples()
            )));
        }
        let x = self.x.slice(ndarray::s![start..end, ..]).to_owned();
        let labels = self.labels.as_ref().map(|l| l[start..end].to_vec());
        Ok(Features { x, labels })
    }
}

fn check_len(
    what: &str,
    len: usize,
    n_samples: usize,
    n_features: usize,
) -> Result<(), BaselineError> {
    if n_samples == 0 || n_features == 0 {
        return Err(BaselineError::empty(what));
    }
    match n_samples.checked_mul(n_features) {
        Some(expected) if expected == len => Ok(()),
        _ => Err(shape_error(what, len, n_samples, n_features)),
    }
}

fn shape_error(what: &str, len: usize, n_samples: usize, n_features: usize) -> BaselineError {
    BaselineError::Shape {
        what: what.to_string(),
        len,
        n_samples,
        n_features,
        expected: n_samples.saturating_mul(n_features),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_images_are_scaled_to_unit_interval() {
        let f = Features::from_u8_images(&[0, 255, 51, 102], 2, 2, Some(&[3, 7])).unwrap();
        assert_eq!(f.view()[[0, 0]], 0.0);
        assert_eq!(f.view()[[0, 1]], 1.0);
        assert!((f.view()[[1, 0]] - 0.2).abs() < 1e-7);
        assert_eq!(f.labels(), Some(&[3usize, 7][..]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            Features::from_slice(&[], 0, 3, None),
            Err(BaselineError::Empty { .. })
        ));
        assert!(matches!(
            Features::from_slice(&[1.0, 2.0, 3.0], 2, 2, None),
            Err(BaselineError::Shape { len: 3, .. })
        ));
        assert!(matches!(
            Features::from_slice(&[1.0, f32::NAN, 3.0, 4.0], 2, 2, None),
            Err(BaselineError::NonFinite { row: 0, col: 1, .. })
        ));
        assert!(matches!(
            Features::from_slice(&[1.0, 2.0, f32::INFINITY, 4.0], 2, 2, None),
            Err(BaselineError::NonFinite { row: 1, col: 0, .. })
        ));
        assert!(matches!(
            Features::from_slice(&[1.0, 2.0, 3.0, 4.0], 2, 2, Some(vec![0])),
            Err(BaselineError::LabelLength {
                n_labels: 1,
                n_samples: 2,
                ..
            })
        ));
        assert!(matches!(
            Features::from_u8_images(&[1, 2, 3], 1, 4, None),
            Err(BaselineError::Shape { .. })
        ));
    }

    #[test]
    fn slice_rows_keeps_labels() {
        let f = Features::from_u8_images(&[1, 2, 3, 4, 5, 6], 3, 2, Some(&[0, 1, 2])).unwrap();
        let s = f.slice_rows(1, 3).unwrap();
        assert_eq!(s.n_samples(), 2);
        assert_eq!(s.labels(), Some(&[1usize, 2][..]));
        assert!(f.slice_rows(2, 2).is_err());
        assert!(f.slice_rows(0, 4).is_err());
    }
}
