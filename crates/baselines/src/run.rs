//! The entry point the experiment runner calls: fit each method on one set, score it on another.
//!
//! [`run_baselines`] fits every method listed in [`BaselineConfig::methods`] on the training
//! features (e.g. the 24,000 MNIST images the SimCLR encoder was pretrained on, as raw pixels or
//! as encoder features), predicts clusters for the test features, and reports cluster accuracy,
//! NMI and ARI against the test labels together with the wall-clock fit time, as one
//! serialisable [`ClusteringReport`] per method.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::gmm::{GmmBaseline, GmmParams};
use crate::kmeans::{KMeansBaseline, KMeansParams};
use crate::metrics::{evaluate, Scores};
use crate::{BaselineError, Features};

/// A clustering method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// k-means on the features as given.
    KMeans,
    /// PCA to [`BaselineConfig::pca_dim`], then a full-covariance Gaussian mixture.
    Gmm,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::KMeans => "kmeans",
            Method::Gmm => "gmm",
        })
    }
}

/// Settings of a baseline run. [`Default`] gives the values used for the MNIST report (k = 10).
///
/// Why these defaults (measured on MNIST, 24,000 × 784 fit / 10,000 test, release, 2 cores
/// shared with other builds, seed 0):
///
/// * k-means: one k-means++ run lands anywhere between ≈ 47 % and ≈ 60 % test accuracy
///   depending on the seed, so 3 restarts (best inertia) — 55.4 %, ≈ 10 s. Convergence at
///   `tolerance` 1e-3 takes a few dozen to ~100 iterations; beyond 100 the inertia changes in
///   the 4th digit only.
/// * GMM: PCA to 50 dimensions (≈ 83 % of the pixel variance, ≈ 2–4 s), then linfa's EM,
///   whose k-means initialisation alone (10 restarts, fixed inside linfa) costs ≈ 8–11 s; EM
///   itself ≈ 0.3–0.5 s per iteration. One restart — 62.3 %, ≈ 25–35 s for the whole fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineConfig {
    /// Number of clusters (the number of classes for the accuracy to be meaningful).
    pub k: usize,
    /// Methods to run, in order.
    pub methods: Vec<Method>,
    /// Seed of every random choice; equal seeds give identical reports (times aside).
    pub seed: u64,
    /// k-means: independent k-means++ initialisations (best inertia kept).
    pub restarts: usize,
    /// k-means: iteration cap per restart.
    pub max_iterations: u64,
    /// k-means: stop when centroids move less than this (Frobenius norm).
    pub tolerance: f32,
    /// GMM: PCA dimension (`None` = no PCA; a value ≥ the feature dimension also skips it).
    pub pca_dim: Option<usize>,
    /// GMM: independent EM runs (best training log-likelihood kept).
    pub gmm_restarts: usize,
    /// GMM: EM iteration cap per run; reaching it without converging is an error in linfa.
    pub gmm_max_iterations: u64,
    /// GMM: EM stops when the mean log-likelihood changes less than this.
    pub gmm_tolerance: f64,
    /// GMM: covariance regularisation relative to the mean per-dimension variance.
    pub gmm_reg_covariance: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            k: 10,
            methods: vec![Method::KMeans, Method::Gmm],
            seed: 0,
            restarts: 3,
            max_iterations: 100,
            tolerance: 1e-3,
            pca_dim: Some(50),
            gmm_restarts: 1,
            gmm_max_iterations: 300,
            gmm_tolerance: 1e-3,
            gmm_reg_covariance: 1e-3,
        }
    }
}

/// Results of one method: quality on the test set, optionally on the training set, and timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusteringReport {
    /// Which method.
    pub method: Method,
    /// Test cluster accuracy (optimal one-to-one cluster→class matching), in `[0, 1]`.
    pub accuracy: f64,
    /// Test normalised mutual information.
    pub nmi: f64,
    /// Test adjusted Rand index.
    pub ari: f64,
    /// Wall-clock seconds to fit on the training set (for the GMM including the `f64`
    /// conversion and PCA).
    pub fit_seconds: f64,
    /// GMM only: the part of `fit_seconds` spent on conversion + PCA.
    pub pca_seconds: Option<f64>,
    /// Wall-clock seconds to predict the test set.
    pub predict_seconds: f64,
    /// The same scores on the training set, when it has labels.
    pub train: Option<Scores>,
    /// Number of clusters.
    pub k: usize,
    /// Training samples.
    pub n_train: usize,
    /// Test samples.
    pub n_test: usize,
    /// Input feature dimension.
    pub n_features: usize,
    /// Dimension the method clustered in (after PCA for the GMM).
    pub fitted_dim: usize,
    /// GMM only: fraction of the training variance kept by PCA.
    pub pca_kept_variance: Option<f64>,
    /// k-means only: mean squared distance of training samples to their centroid.
    pub inertia: Option<f64>,
    /// GMM only: mean training log-likelihood per sample (in the projected space).
    pub log_likelihood: Option<f64>,
    /// The seed used.
    pub seed: u64,
}

impl ClusteringReport {
    /// One human-readable line, e.g. for the runner's console output.
    pub fn summary(&self) -> String {
        format!(
            "{:<6} acc {:6.2} %  NMI {:.4}  ARI {:.4}  fit {:7.2} s  (k = {}, {} train × {}-d → {}-d, {} test)",
            self.method.to_string(),
            self.accuracy * 100.0,
            self.nmi,
            self.ari,
            self.fit_seconds,
            self.k,
            self.n_train,
            self.n_features,
            self.fitted_dim,
            self.n_test
        )
    }
}

/// Fits every method of `cfg.methods` on `train` and evaluates it on `test`.
///
/// * `train`: the features to fit on (labels optional; when present, training scores are
///   reported too);
/// * `test`: the features to evaluate on; must have labels and the same feature dimension;
/// * returns one [`ClusteringReport`] per method, in the order of `cfg.methods`.
///
/// Errors (never panics) when `test` has no labels, the dimensions differ, `cfg.k` exceeds the
/// number of training samples, a configuration value is out of range, or linfa fails.
///
/// ```no_run
/// use simclr_baselines::{run_baselines, BaselineConfig, Features};
/// # fn load() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) { unimplemented!() }
/// let (train_px, train_y, test_px, test_y) = load(); // MNIST, 28×28 = 784 bytes per image
/// let train = Features::from_u8_images(&train_px, train_y.len(), 784, Some(&train_y))?;
/// let test = Features::from_u8_images(&test_px, test_y.len(), 784, Some(&test_y))?;
/// for report in run_baselines(&train, &test, &BaselineConfig::default())? {
///     println!("{}", report.summary());
///     println!("{}", serde_json::to_string(&report).unwrap());
/// }
/// # Ok::<(), simclr_baselines::BaselineError>(())
/// ```
pub fn run_baselines(
    train: &Features,
    test: &Features,
    cfg: &BaselineConfig,
) -> Result<Vec<ClusteringReport>, BaselineError> {
    let test_labels = test.labels().ok_or_else(|| BaselineError::MissingLabels {
        what: "test set".into(),
    })?;
    if test.n_features() != train.n_features() {
        return Err(BaselineError::FeatureMismatch {
            fitted: train.n_features(),
            got: test.n_features(),
        });
    }
    if cfg.k > train.n_samples() {
        return Err(BaselineError::TooManyClusters {
            k: cfg.k,
            n_samples: train.n_samples(),
        });
    }
    if cfg.methods.is_empty() {
        return Err(BaselineError::Config("no methods to run".into()));
    }

    let mut reports = Vec::with_capacity(cfg.methods.len());
    for &method in &cfg.methods {
        let mut report = ClusteringReport {
            method,
            accuracy: 0.0,
            nmi: 0.0,
            ari: 0.0,
            fit_seconds: 0.0,
            pca_seconds: None,
            predict_seconds: 0.0,
            train: None,
            k: cfg.k,
            n_train: train.n_samples(),
            n_test: test.n_samples(),
            n_features: train.n_features(),
            fitted_dim: train.n_features(),
            pca_kept_variance: None,
            inertia: None,
            log_likelihood: None,
            seed: cfg.seed,
        };
        let (test_pred, train_pred) = match method {
            Method::KMeans => {
                let t = Instant::now();
                let model = KMeansBaseline::fit(train.view(), &kmeans_params(cfg))?;
                report.fit_seconds = t.elapsed().as_secs_f64();
                report.inertia = Some(model.inertia());
                let t = Instant::now();
                let test_pred = model.predict(test.view())?;
                report.predict_seconds = t.elapsed().as_secs_f64();
                let train_pred = match train.labels() {
                    Some(_) => Some(model.predict(train.view())?),
                    None => None,
                };
                (test_pred, train_pred)
            }
            Method::Gmm => {
                let t = Instant::now();
                let model = GmmBaseline::fit(train.view(), &gmm_params(cfg))?;
                report.fit_seconds = t.elapsed().as_secs_f64();
                report.pca_seconds = Some(model.pca_seconds());
                report.fitted_dim = model.projection().output_dim();
                report.pca_kept_variance = Some(model.projection().kept_variance());
                report.log_likelihood = Some(model.train_log_likelihood());
                let t = Instant::now();
                let test_pred = model.predict(test.view())?;
                report.predict_seconds = t.elapsed().as_secs_f64();
                let train_pred = match train.labels() {
                    Some(_) => Some(model.predict(train.view())?),
                    None => None,
                };
                (test_pred, train_pred)
            }
        };
        let s = evaluate(&test_pred, test_labels)?;
        report.accuracy = s.accuracy;
        report.nmi = s.nmi;
        report.ari = s.ari;
        if let (Some(pred), Some(labels)) = (train_pred, train.labels()) {
            report.train = Some(evaluate(&pred, labels)?);
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The k-means part of a [`BaselineConfig`].
pub fn kmeans_params(cfg: &BaselineConfig) -> KMeansParams {
    KMeansParams {
        k: cfg.k,
        restarts: cfg.restarts,
        max_iterations: cfg.max_iterations,
        tolerance: cfg.tolerance,
        seed: cfg.seed,
    }
}

/// The GMM part of a [`BaselineConfig`].
pub fn gmm_params(cfg: &BaselineConfig) -> GmmParams {
    GmmParams {
        k: cfg.k,
        pca_dim: cfg.pca_dim,
        restarts: cfg.gmm_restarts,
        max_iterations: cfg.gmm_max_iterations,
        tolerance: cfg.gmm_tolerance,
        reg_covariance: cfg.gmm_reg_covariance,
        seed: cfg.seed,
    }
}
