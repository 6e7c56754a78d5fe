//! The one error type of the crate.
//!
//! Every way a clustering run can go wrong on bad input — no samples, a NaN pixel, a label
//! vector of the wrong length, more clusters than samples — is a variant here with the numbers
//! that explain it, so a caller never sees a panic from this crate. Failures inside linfa (an
//! empty mixture component, a covariance that is not positive definite, EM that did not
//! converge) are wrapped with their original message.

use thiserror::Error;

/// Everything that can go wrong while building features, clustering or scoring.
#[derive(Debug, Error)]
pub enum BaselineError {
    /// A data set, label vector or table with no entries.
    #[error("{what} is empty")]
    Empty {
        /// What was empty (e.g. "training features").
        what: String,
    },

    /// A flat buffer whose length does not match the dimensions it was given.
    #[error("{what}: buffer holds {len} values but {n_samples} × {n_features} = {expected} were expected")]
    Shape {
        /// What was being built.
        what: String,
        /// Length of the buffer.
        len: usize,
        /// Declared number of samples.
        n_samples: usize,
        /// Declared number of features per sample.
        n_features: usize,
        /// `n_samples * n_features` (saturating).
        expected: usize,
    },

    /// A NaN or infinite value in a feature matrix or a cost table.
    #[error("{what} contains a non-finite value ({value}) at row {row}, column {col}")]
    NonFinite {
        /// Which input.
        what: String,
        /// Row (sample) index.
        row: usize,
        /// Column (feature) index.
        col: usize,
        /// The offending value.
        value: f64,
    },

    /// A label vector whose length differs from the number of samples.
    #[error("{what}: {n_labels} labels for {n_samples} samples")]
    LabelLength {
        /// Which input.
        what: String,
        /// Number of labels given.
        n_labels: usize,
        /// Number of samples.
        n_samples: usize,
    },

    /// Evaluation needs ground-truth labels that were not provided.
    #[error("{what} has no labels, so clustering quality cannot be measured on it")]
    MissingLabels {
        /// Which input.
        what: String,
    },

    /// More clusters were requested than there are samples to fit on.
    #[error("k = {k} clusters requested but only {n_samples} samples to fit on")]
    TooManyClusters {
        /// Requested number of clusters.
        k: usize,
        /// Number of training samples.
        n_samples: usize,
    },

    /// Data to predict on has a different number of features than the data fitted on.
    #[error("model was fitted on {fitted} features but the data has {got}")]
    FeatureMismatch {
        /// Feature count seen at fit time.
        fitted: usize,
        /// Feature count of the new data.
        got: usize,
    },

    /// A configuration value out of its valid range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// linfa's k-means failed.
    #[error("k-means failed: {0}")]
    KMeans(#[from] linfa_clustering::KMeansError),

    /// linfa's Gaussian mixture failed (empty component, singular covariance, no convergence).
    #[error("Gaussian mixture failed: {0}")]
    Gmm(#[from] linfa_clustering::GmmError),

    /// linfa's PCA failed.
    #[error("PCA failed: {0}")]
    Pca(#[from] linfa_reduction::ReductionError),

    /// A library call panicked on input this crate did not anticipate; the panic was caught.
    #[error("internal failure in {context}: {message}")]
    Internal {
        /// Which step was running.
        context: String,
        /// The panic message.
        message: String,
    },
}

impl BaselineError {
    /// Shorthand for [`BaselineError::Empty`].
    pub(crate) fn empty(what: &str) -> Self {
        BaselineError::Empty {
            what: what.to_string(),
        }
    }
}

/// Runs `f`, turning a panic inside a dependency into [`BaselineError::Internal`].
///
/// linfa asserts on some inputs instead of returning errors; every such condition we know of is
/// checked before the call, and this is the last line of defence so the caller still gets a
/// `Result`.
pub(crate) fn catch_panic<T>(
    context: &str,
    f: impl FnOnce() -> Result<T, BaselineError>,
) -> Result<T, BaselineError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(BaselineError::Internal {
                context: context.to_string(),
                message,
            })
        }
    }
}
