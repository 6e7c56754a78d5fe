//! PCA with linfa-reduction, used to bring features down to a dimension where a full-covariance
//! Gaussian mixture is affordable and well conditioned.
//!
//! A full covariance in `d` dimensions has `d(d+1)/2` parameters per component: 307,720 for raw
//! MNIST pixels (d = 784), most of them unidentifiable because many border pixels are always 0.
//! Projecting onto the top principal components (the directions of largest variance, found from
//! the centred data by a truncated SVD) keeps most of the signal in, say, 50 dimensions.
//!
//! linfa's PCA is implemented for `f64` only and computes the truncated SVD with LOBPCG (seeded
//! internally with 42, so it is deterministic): each LOBPCG iteration multiplies the centred
//! `n × d` matrix and its transpose with a `d × pca_dim` block. That is why this module converts
//! the `f32` features to `f64` — once per matrix — and why PCA is a visible part of the GMM's
//! fit time.

use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_reduction::Pca;
use ndarray::{Array2, ArrayView2};

use crate::BaselineError;

/// A fitted projection: either PCA to `dim` components or the identity (when the requested
/// dimension is not smaller than the input's).
#[derive(Debug, Clone)]
pub struct Projection {
    pca: Option<Pca<f64>>,
    n_features: usize,
    kept_variance: f64,
}

impl Projection {
    /// Fits PCA to `target_dim` components on `x` (`f64`, samples × features). With
    /// `target_dim == None` or `target_dim >= x.ncols()` the projection is the identity.
    ///
    /// Errors when `target_dim` is 0 or not smaller than the number of samples.
    pub fn fit(x: ArrayView2<'_, f64>, target_dim: Option<usize>) -> Result<Self, BaselineError> {
        let n_features = x.ncols();
        let dim = match target_dim {
            Some(d) if d < n_features => d,
            _ => {
                return Ok(Projection {
                    pca: None,
                    n_features,
                    kept_variance: 1.0,
                })
            }
        };
        if dim == 0 {
            return Err(BaselineError::Config("pca_dim must be at least 1".into()));
        }
        if dim >= x.nrows() {
            return Err(BaselineError::Config(format!(
                "pca_dim = {dim} needs more than {dim} samples, got {}",
                x.nrows()
            )));
        }
        let pca = crate::error::catch_panic("PCA fit", || {
            Ok(Pca::params(dim).fit(&DatasetBase::from(x))?)
        })?;
        // Share of the total variance on the kept components: Σσ² over the trace of XᵀX (both
        // of the centred data, so the 1/(n-1) factors cancel).
        let total: f64 = x.var_axis(ndarray::Axis(0), 0.0).sum() * x.nrows() as f64;
        let kept: f64 = pca.singular_values().iter().map(|s| s * s).sum();
        let kept_variance = if total > 0.0 {
            (kept / total).min(1.0)
        } else {
            1.0
        };
        Ok(Projection {
            pca: Some(pca),
            n_features,
            kept_variance,
        })
    }

    /// Projects the rows of `x` (the identity when no PCA was fitted).
    pub fn apply(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, BaselineError> {
        if x.ncols() != self.n_features {
            return Err(BaselineError::FeatureMismatch {
                fitted: self.n_features,
                got: x.ncols(),
            });
        }
        match &self.pca {
            None => Ok(x.to_owned()),
            Some(pca) => crate::error::catch_panic("PCA projection", || Ok(pca.predict(&x))),
        }
    }

    /// Output dimension.
    pub fn output_dim(&self) -> usize {
        self.pca
            .as_ref()
            .map_or(self.n_features, |p| p.components().nrows())
    }

    /// Fraction of the training data's total variance kept by the components (1 for the
    /// identity).
    pub fn kept_variance(&self) -> f64 {
        self.kept_variance
    }
}
