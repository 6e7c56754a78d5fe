//! k-nearest-neighbour accuracy on frozen features, the cheap monitor SimCLR codebases use
//! (Wu et al. 2018, "Instance discrimination"; the MoCo / SimCLR CIFAR repos).
//!
//! Features are L2-normalised, so the dot product is the cosine similarity. For each test
//! feature `q`, the `k` most similar training features `xⱼ` vote for their labels with
//! weight `exp(⟨q, xⱼ⟩ / τ)` (τ = 0.1 sharpens the votes towards the closest neighbours); the
//! class with the largest total wins. Similarities are computed by one GEMM per chunk of test
//! rows against all training rows; each row's top `k` is found by partial selection
//! (`select_nth_unstable`, linear time), rows in parallel.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use simclr_data::{ImageSet, Normalize};
use simclr_nn::Module;
use simclr_tensor::gemm::{gemm, MatMut, MatRef};
use simclr_tensor::Tensor;

use crate::features::extract_features;
use crate::linear_eval::per_class;

/// Settings of the kNN monitor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    /// Neighbours that vote (200 in SimCLR codebases; clamped to the training-set size).
    pub k: usize,
    /// Temperature of the vote weights `exp(sim / τ)`.
    pub temperature: f32,
    /// Test rows per similarity GEMM.
    pub chunk: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 200,
            temperature: 0.1,
            chunk: 512,
        }
    }
}

/// The result of a kNN evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnReport {
    /// Fraction of test examples classified correctly.
    pub accuracy: f32,
    /// Neighbours used.
    pub k: usize,
    /// Vote temperature.
    pub temperature: f32,
    /// Accuracy per class (`None` for a class absent from the test set).
    pub per_class_accuracy: Vec<Option<f32>>,
}

/// kNN accuracy of a frozen `encoder`: features of `train` (the memory bank) and `test`,
/// normalised with `norm`, then [`knn_accuracy`]. Leaves the encoder in eval mode.
pub fn knn_eval(
    encoder: &dyn Module,
    train: &ImageSet,
    test: &ImageSet,
    norm: &Normalize,
    cfg: &KnnConfig,
) -> KnnReport {
    let train_x = extract_features(encoder, train, norm, 256);
    let test_x = extract_features(encoder, test, norm, 256);
    let classes = train.num_classes().max(test.num_classes());
    knn_accuracy(&train_x, &train.labels, &test_x, &test.labels, classes, cfg)
}

/// kNN accuracy of features `test_x: [M, F]` against the labeled bank `train_x: [N, F]`.
pub fn knn_accuracy(
    train_x: &Tensor,
    train_y: &[u8],
    test_x: &Tensor,
    test_y: &[u8],
    classes: usize,
    cfg: &KnnConfig,
) -> KnnReport {
    assert!(
        train_x.ndim() == 2
            && test_x.ndim() == 2
            && train_x.dim(1) == test_x.dim(1)
            && train_x.dim(0) == train_y.len()
            && test_x.dim(0) == test_y.len(),
        "knn_accuracy: features {:?} / {:?} with {} / {} labels do not match",
        train_x.shape(),
        test_x.shape(),
        train_y.len(),
        test_y.len()
    );
    let (n, f) = (train_x.dim(0), train_x.dim(1));
    let m = test_x.dim(0);
    let k = cfg.k.clamp(1, n.max(1));
    let bank = normalized(&train_x.data(), f);
    let queries = normalized(&test_x.data(), f);
    let inv_t = 1.0 / cfg.temperature;
    let chunk = cfg.chunk.max(1);
    let mut predictions = vec![0usize; m];
    let mut sims = vec![0.0f32; chunk.min(m) * n];
    for (c, preds) in predictions.chunks_mut(chunk).enumerate() {
        let rows = preds.len();
        let q = &queries[c * chunk * f..(c * chunk + rows) * f];
        gemm(
            1.0,
            MatRef::new(q, rows, f),
            MatRef::new(&bank, n, f).t(),
            0.0,
            MatMut::new(&mut sims[..rows * n], rows, n),
        );
        preds
            .par_iter_mut()
            .zip(sims[..rows * n].par_chunks(n))
            .for_each_init(
                || (Vec::with_capacity(n), vec![0.0f32; classes]),
                |(pairs, votes), (pred, row)| {
                    pairs.clear();
                    pairs.extend(row.iter().copied().zip(0u32..));
                    if k < n {
                        pairs.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
                    }
                    votes.iter_mut().for_each(|v| *v = 0.0);
                    for &(s, j) in &pairs[..k] {
                        let label = train_y[j as usize] as usize;
                        if label < classes {
                            votes[label] += ((s - 1.0) * inv_t).exp();
                        }
                    }
                    *pred = votes
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                            if v > bv {
                                (i, v)
                            } else {
                                (bi, bv)
                            }
                        })
                        .0;
                },
            );
    }
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut correct = 0;
    for (&p, &t) in predictions.iter().zip(test_y) {
        let t = t as usize;
        if t < classes {
            confusion[t][p] += 1;
        }
        correct += (p == t) as usize;
    }
    KnnReport {
        accuracy: correct as f32 / m.max(1) as f32,
        k,
        temperature: cfg.temperature,
        per_class_accuracy: per_class(&confusion),
    }
}

/// Rows scaled to unit length (zero rows stay zero).
fn normalized(x: &[f32], f: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(f) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_follow_the_nearest_labeled_directions() {
        // Bank: class 0 near +x, class 1 near +y (several copies each, scaled: cosine ignores
        // length). Queries lean towards one axis.
        let bank = Tensor::from_vec(
            vec![1.0, 0.1, 2.0, -0.1, 3.0, 0.0, 0.1, 1.0, -0.1, 2.0, 0.0, 5.0],
            &[6, 2],
        );
        let bank_y = [0u8, 0, 0, 1, 1, 1];
        let q = Tensor::from_vec(vec![1.0, 0.3, 0.2, 1.0, -1.0, 5.0], &[3, 2]);
        let cfg = KnnConfig {
            k: 3,
            ..KnnConfig::default()
        };
        let r = knn_accuracy(&bank, &bank_y, &q, &[0, 1, 1], 2, &cfg);
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(r.k, 3);
        // With k larger than the bank, every neighbour votes; the weights still decide.
        let cfg = KnnConfig {
            k: 200,
            chunk: 2,
            ..KnnConfig::default()
        };
        let r = knn_accuracy(&bank, &bank_y, &q, &[0, 1, 1], 2, &cfg);
        assert_eq!((r.accuracy, r.k), (1.0, 6));
        assert_eq!(r.per_class_accuracy, vec![Some(1.0), Some(1.0)]);
    }
}
