//! Gaussian mixture model with linfa-clustering, fitted by EM after a PCA projection.
//!
//! A GMM models the data as `p(x) = Σ_k w_k N(x | μ_k, Σ_k)` and clusters by the most likely
//! component. EM alternates the E-step (responsibilities `r_ik ∝ w_k N(x_i | μ_k, Σ_k)`) and the
//! M-step (weights, means and full covariances re-estimated from the responsibilities) until the
//! mean log-likelihood changes by less than `tolerance`. linfa initialises the responsibilities
//! from a k-means run (its own defaults: 10 k-means++ restarts, up to 300 iterations) on the
//! same, already projected, data.
//!
//! Steps of [`GmmBaseline::fit`]:
//!
//! 1. convert the `f32` features to `f64` once (linfa's PCA, and this GMM, work in `f64`);
//! 2. PCA to `pca_dim` components ([`crate::pca`]); linfa's GMM supports full covariances only,
//!    and 784 raw pixel dimensions would make them huge and singular;
//! 3. regularise: `reg = reg_covariance × (mean per-dimension variance of the projected data)` is
//!    added to every covariance diagonal, so covariances stay invertible whatever the features'
//!    scale (pixels in `[0, 1]` or unnormalised embeddings);
//! 4. run linfa's EM `restarts` times from different seeds and keep the model with the highest
//!    mean log-likelihood on the training data.
//!
//! Known linfa 0.8 behaviours this module works around:
//!
//! * its own `n_runs` does not re-initialise between runs (every run continues from the last
//!   one's state), so restarts are done here, each with a fresh seeded model, and `n_runs` is 1;
//! * it returns an error (not the last model) when EM hits `max_iterations` before converging,
//!   so the default cap is generous;
//! * its `predict` normalises with `ln Σ exp(·)` without the max-shift and panics (argmax of NaN)
//!   when a sample is far from every component; this module predicts — and scores the
//!   restarts — with its own numerically stable log-sum-exp from the fitted weights, means and
//!   precision matrices instead.
//!
//! Costs per EM iteration on MNIST (24,000 × 50, k = 10): the E-step multiplies the centred
//! data by each component's Cholesky factor (`n·d²·k` ≈ 600 M multiply-adds) and the M-step
//! forms each weighted covariance (another ≈ 600 M) — GEMMs through ndarray.

use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::{GaussianMixtureModel, GmmCovarType, GmmInitMethod};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::catch_panic;
use crate::pca::Projection;
use crate::BaselineError;

/// Hyper-parameters of [`GmmBaseline::fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct GmmParams {
    /// Number of mixture components (clusters).
    pub k: usize,
    /// PCA output dimension; `None`, or a value ≥ the input dimension, skips PCA.
    pub pca_dim: Option<usize>,
    /// Independent EM runs (each with its own k-means initialisation); the best log-likelihood
    /// wins.
    pub restarts: usize,
    /// EM iteration cap per run (linfa reports an error if it is reached without converging).
    pub max_iterations: u64,
    /// EM stops when the mean log-likelihood changes by less than this.
    pub tolerance: f64,
    /// Covariance regularisation relative to the mean per-dimension variance of the (projected)
    /// data; added to every covariance diagonal.
    pub reg_covariance: f64,
    /// Seed; equal seeds give identical results.
    pub seed: u64,
}

/// A fitted GMM together with the projection its inputs go through.
#[derive(Debug, Clone)]
pub struct GmmBaseline {
    projection: Projection,
    weights: Array1<f64>,
    means: Array2<f64>,
    /// Precision matrices `Σ_k⁻¹`, `k × d × d`.
    precisions: Vec<Array2<f64>>,
    /// `ln w_k − ½ ln det Σ_k − ½ d ln 2π` per component.
    log_norm: Array1<f64>,
    train_log_likelihood: f64,
    pca_seconds: f64,
}

impl GmmBaseline {
    /// Fits PCA + GMM on the rows of `x` (samples × features, finite values).
    ///
    /// Errors when `x` is empty, has a non-finite value or fewer rows than `k`, when a
    /// hyper-parameter is out of range, and when EM fails (a component lost all its samples, a
    /// covariance was not positive definite, or EM did not converge within `max_iterations`).
    pub fn fit(x: ArrayView2<'_, f32>, params: &GmmParams) -> Result<Self, BaselineError> {
        let iterations = (params.k, params.restarts, params.max_iterations);
        crate::check_fit("GMM", x, iterations, params.tolerance)?;
        if !(params.reg_covariance > 0.0 && params.reg_covariance.is_finite()) {
            return Err(BaselineError::Config(format!(
                "GMM reg_covariance must be positive, got {}",
                params.reg_covariance
            )));
        }

        let x64 = x.mapv(f64::from);
        let t0 = std::time::Instant::now();
        let projection = Projection::fit(x64.view(), params.pca_dim)?;
        let z = projection.apply(x64.view())?;
        drop(x64);
        let pca_seconds = t0.elapsed().as_secs_f64();

        let mean_var = z.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
        let reg = params.reg_covariance * if mean_var > 0.0 { mean_var } else { 1.0 };

        let mut best: Option<GmmBaseline> = None;
        for r in 0..params.restarts {
            let seed = mix_seed(params.seed, r as u64);
            let fitted = catch_panic("GMM fit", || {
                let model =
                    GaussianMixtureModel::params_with_rng(params.k, StdRng::seed_from_u64(seed))
                        .covariance_type(GmmCovarType::Full)
                        .init_method(GmmInitMethod::KMeans)
                        .n_runs(1)
                        .max_n_iterations(params.max_iterations)
                        .tolerance(params.tolerance)
                        .reg_covariance(reg)
                        .fit(&DatasetBase::from(z.view()))?;
                Ok(model)
            })?;
            let mut candidate = GmmBaseline::from_linfa(&fitted, projection.clone(), pca_seconds)?;
            let (_, ll) = candidate.assign(z.view());
            candidate.train_log_likelihood = ll;
            if best.as_ref().map_or(true, |b| ll > b.train_log_likelihood) {
                best = Some(candidate);
            }
        }
        best.ok_or_else(|| BaselineError::Config("GMM restarts must be at least 1".into()))
    }

    fn from_linfa(
        m: &GaussianMixtureModel<f64>,
        projection: Projection,
        pca_seconds: f64,
    ) -> Result<Self, BaselineError> {
        let d = m.means().ncols();
        let k = m.means().nrows();
        let mut log_norm = Array1::zeros(k);
        let mut precisions = Vec::with_capacity(k);
        for c in 0..k {
            let cov = m.covariances().index_axis(Axis(0), c);
            let log_det = log_det_spd(cov).ok_or_else(|| BaselineError::Internal {
                context: "GMM".into(),
                message: format!("covariance of component {c} is not positive definite"),
            })?;
            log_norm[c] = m.weights()[c].ln()
                - 0.5 * log_det
                - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
            precisions.push(m.precisions().index_axis(Axis(0), c).to_owned());
        }
        Ok(GmmBaseline {
            projection,
            weights: m.weights().clone(),
            means: m.means().clone(),
            precisions,
            log_norm,
            train_log_likelihood: f64::NEG_INFINITY,
            pca_seconds,
        })
    }

    /// Most likely component, and the mean log-likelihood, for already projected rows.
    ///
    /// `ln p(x) = logsumexp_k [ln w_k + ln N(x | μ_k, Σ_k)]` with the maximum subtracted before
    /// exponentiating, so far-away samples give a very negative number, never NaN.
    fn assign(&self, z: ArrayView2<'_, f64>) -> (Vec<usize>, f64) {
        let n = z.nrows();
        let k = self.means.nrows();
        let mut logp = Array2::<f64>::zeros((n, k));
        for c in 0..k {
            let diff = &z - &self.means.row(c);
            let pd = diff.dot(&self.precisions[c]);
            let maha = (&pd * &diff).sum_axis(Axis(1));
            logp.column_mut(c)
                .assign(&maha.mapv(|m| self.log_norm[c] - 0.5 * m));
        }
        let mut labels = Vec::with_capacity(n);
        let mut total = 0.0;
        for row in logp.rows() {
            let (arg, max) =
                row.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(ai, am), (i, &v)| {
                        if v > am {
                            (i, v)
                        } else {
                            (ai, am)
                        }
                    });
            let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f64>().ln();
            labels.push(arg);
            total += lse;
        }
        (labels, total / n.max(1) as f64)
    }

    /// Most likely component for every row of `x` (same feature space as at fit time).
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Vec<usize>, BaselineError> {
        crate::check_matrix("GMM input", x)?;
        let z = self.projection.apply(x.mapv(f64::from).view())?;
        Ok(self.assign(z.view()).0)
    }

    /// Mean log-likelihood per sample of `x` under the model (in the projected space).
    pub fn score(&self, x: ArrayView2<'_, f32>) -> Result<f64, BaselineError> {
        crate::check_matrix("GMM input", x)?;
        let z = self.projection.apply(x.mapv(f64::from).view())?;
        Ok(self.assign(z.view()).1)
    }

    /// Mixture weights `w_k`.
    pub fn weights(&self) -> &Array1<f64> {
        &self.weights
    }

    /// Component means in the projected space, `k × dim`.
    pub fn means(&self) -> &Array2<f64> {
        &self.means
    }

    /// Mean log-likelihood per training sample of the selected run.
    pub fn train_log_likelihood(&self) -> f64 {
        self.train_log_likelihood
    }

    /// The PCA (or identity) projection applied before the mixture.
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// Seconds spent on the `f64` conversion, PCA fit and projection of the training data.
    pub fn pca_seconds(&self) -> f64 {
        self.pca_seconds
    }
}

/// `ln det A` for a symmetric positive-definite `A` via Cholesky (`2 Σ ln L_ii`); `None` if `A`
/// is not positive definite.
fn log_det_spd(a: ArrayView2<'_, f64>) -> Option<f64> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    let mut log_det = 0.0;
    for j in 0..n {
        let mut d = a[[j, j]];
        for p in 0..j {
            d -= l[[j, p]] * l[[j, p]];
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let ljj = d.sqrt();
        l[[j, j]] = ljj;
        log_det += 2.0 * ljj.ln();
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for p in 0..j {
                s -= l[[i, p]] * l[[j, p]];
            }
            l[[i, j]] = s / ljj;
        }
    }
    Some(log_det)
}

/// Derives the seed of restart `r` from the user's seed (SplitMix64 finaliser), so restarts are
/// decorrelated but reproducible.
pub(crate) fn mix_seed(seed: u64, r: u64) -> u64 {
    let mut z = seed.wrapping_add(r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn log_det_of_known_matrices() {
        let a = array![[4.0, 2.0], [2.0, 3.0]]; // det = 8
        assert!((log_det_spd(a.view()).unwrap() - 8f64.ln()).abs() < 1e-12);
        let b = array![[1.0, 2.0], [2.0, 1.0]]; // indefinite
        assert!(log_det_spd(b.view()).is_none());
    }
}
