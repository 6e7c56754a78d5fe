//! Clustering baselines for SimCLR: k-means and Gaussian mixtures, scored by cluster accuracy,
//! NMI and ARI.
//!
//! The lab report this project reproduces compares "SimCLR + a linear head" with unsupervised
//! clustering of MNIST pixels (k-means and a GMM, "below 70 %"). This crate is that comparison,
//! done properly and reusable on any features:
//!
//! * [`Features`] — a validated `f32` matrix (raw u8 pixels scaled to `[0, 1]`, or SimCLR
//!   embeddings) with optional labels;
//! * [`kmeans`] — linfa-clustering's k-means, k-means++ seeding, seeded restarts;
//! * [`gmm`] — PCA ([`pca`], linfa-reduction) then linfa-clustering's full-covariance GMM;
//! * [`metrics`] — accuracy under the optimal one-to-one cluster→class matching
//!   ([`matching`]), NMI and ARI;
//! * [`run_baselines`] — fit on one set (the images the encoder was pretrained on), evaluate on
//!   another (the test set), one serialisable [`ClusteringReport`] per method.
//!
//! Bad input (empty data, NaN/inf, mismatched labels, `k` > samples) is a [`BaselineError`],
//! never a panic. Everything is seeded and reproducible.
//!
//! ```
//! use simclr_baselines::{run_baselines, BaselineConfig, Features, Method};
//! // Two well-separated 2-D blobs, labelled 0 and 1.
//! let mut data = Vec::new();
//! let mut labels = Vec::new();
//! for i in 0..40 {
//!     let c = (i % 2) as f32 * 10.0;
//!     data.extend([c + (i as f32 * 0.37).sin(), c + (i as f32 * 0.71).cos()]);
//!     labels.push(i % 2);
//! }
//! let f = Features::from_slice(&data, 40, 2, Some(labels))?;
//! let cfg = BaselineConfig { k: 2, methods: vec![Method::KMeans], ..Default::default() };
//! let reports = run_baselines(&f, &f, &cfg)?;
//! assert_eq!(reports[0].accuracy, 1.0);
//! # Ok::<(), simclr_baselines::BaselineError>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod features;
pub mod gmm;
pub mod kmeans;
pub mod matching;
pub mod metrics;
pub mod pca;
pub mod run;

pub use error::BaselineError;
pub use features::Features;
pub use gmm::{GmmBaseline, GmmParams};
pub use kmeans::{KMeansBaseline, KMeansParams};
pub use metrics::{ari, cluster_accuracy, evaluate, nmi, Scores};
pub use run::{run_baselines, BaselineConfig, ClusteringReport, Method};

use ndarray::ArrayView2;

/// What k-means and the GMM both require before fitting (`method` names which in errors): a
/// finite, non-empty matrix with at least `k ≥ 1` rows, at least one restart and one
/// iteration, and a positive, finite tolerance.
pub(crate) fn check_fit(
    method: &str,
    x: ArrayView2<'_, f32>,
    (k, restarts, max_iterations): (usize, usize, u64),
    tolerance: impl Into<f64> + std::fmt::Display + Copy,
) -> Result<(), BaselineError> {
    check_matrix(&format!("{method} training data"), x)?;
    if k == 0 {
        return Err(BaselineError::Config("k must be at least 1".into()));
    }
    if k > x.nrows() {
        return Err(BaselineError::TooManyClusters {
            k,
            n_samples: x.nrows(),
        });
    }
    if restarts == 0 || max_iterations == 0 {
        return Err(BaselineError::Config(format!(
            "{method} restarts and max_iterations must be at least 1"
        )));
    }
    let tol: f64 = tolerance.into();
    if !(tol > 0.0 && tol.is_finite()) {
        return Err(BaselineError::Config(format!(
            "{method} tolerance must be positive, got {tolerance}"
        )));
    }
    Ok(())
}

/// Rejects an empty matrix or one with a NaN/infinite entry (inputs given as raw views rather
/// than through [`Features`]).
pub(crate) fn check_matrix(what: &str, x: ArrayView2<'_, f32>) -> Result<(), BaselineError> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(BaselineError::empty(what));
    }
    match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, col), &v)) => Err(BaselineError::NonFinite {
            what: what.to_string(),
            row,
            col,
            value: f64::from(v),
        }),
        None => Ok(()),
    }
}
