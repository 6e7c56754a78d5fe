//! External clustering metrics: cluster accuracy, NMI and ARI.
//!
//! All three compare a predicted partition with the ground-truth classes and are invariant to
//! renaming the clusters. They are computed from the contingency table
//! `n[i][j] = #{samples in cluster i with class j}` (row sums `a_i`, column sums `b_j`, total `N`):
//!
//! * **Cluster accuracy** — match clusters to classes one-to-one so that the matched counts are
//!   as large as possible (the Hungarian algorithm, [`crate::matching`]), then
//!   `acc = Σ matched n[i][σ(i)] / N`. With more clusters than classes the extra clusters count as
//!   errors (one-to-one, not many-to-one "purity").
//! * **NMI** (normalised mutual information, scikit-learn's default "arithmetic" normalisation):
//!   `MI = Σ n_ij/N · ln(N·n_ij / (a_i b_j))`, `H(U) = -Σ a_i/N ln(a_i/N)` (likewise `H(V)`),
//!   `NMI = MI / ((H(U) + H(V)) / 2)`; 1 for identical partitions, 0 for independent ones. When
//!   both sides are a single group it is 1 by convention (as in scikit-learn).
//! * **ARI** (adjusted Rand index, Hubert & Arabie): with `C(x) = x(x-1)/2`,
//!   `index = Σ C(n_ij)`, `expected = Σ C(a_i) Σ C(b_j) / C(N)`,
//!   `max = (Σ C(a_i) + Σ C(b_j)) / 2`, `ARI = (index - expected) / (max - expected)`;
//!   1 for identical partitions, ≈0 for random ones, negative when worse than chance. A zero
//!   denominator (both partitions trivial in the same way) gives 1, as in scikit-learn.
//!
//! Label values may be any `usize`; they are compacted to `0..n_distinct` first.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::matching::best_matching;
use crate::BaselineError;

/// Accuracy, NMI and ARI of one predicted partition against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Cluster accuracy under the optimal one-to-one cluster→class matching, in `[0, 1]`.
    pub accuracy: f64,
    /// Normalised mutual information (arithmetic normalisation), in `[0, 1]`.
    pub nmi: f64,
    /// Adjusted Rand index, at most 1.
    pub ari: f64,
}

/// A `clusters × classes` table of co-occurrence counts, with the original label values of its
/// rows and columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Contingency {
    /// `table[[i, j]]` = number of samples predicted in cluster `clusters[i]` whose class is
    /// `classes[j]`.
    pub table: Array2<u64>,
    /// The distinct predicted cluster ids, ascending (row order).
    pub clusters: Vec<usize>,
    /// The distinct class ids, ascending (column order).
    pub classes: Vec<usize>,
}

impl Contingency {
    /// Counts co-occurrences of `predicted` and `truth` (equal, non-zero lengths required).
    pub fn new(predicted: &[usize], truth: &[usize]) -> Result<Self, BaselineError> {
        if predicted.is_empty() {
            return Err(BaselineError::empty("predicted labels"));
        }
        if predicted.len() != truth.len() {
            return Err(BaselineError::LabelLength {
                what: "ground-truth labels vs predictions".to_string(),
                n_labels: truth.len(),
                n_samples: predicted.len(),
            });
        }
        let (clusters, p) = compact(predicted);
        let (classes, t) = compact(truth);
        let mut table = Array2::<u64>::zeros((clusters.len(), classes.len()));
        for (&i, &j) in p.iter().zip(&t) {
            table[[i, j]] += 1;
        }
        Ok(Contingency {
            table,
            clusters,
            classes,
        })
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.table.sum()
    }
}

/// Maps arbitrary label values to `0..n_distinct` (in ascending order of value).
fn compact(labels: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut distinct = labels.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let idx = labels
        .iter()
        .map(|l| distinct.binary_search(l).unwrap_or(0))
        .collect();
    (distinct, idx)
}

/// The optimal one-to-one mapping from cluster id to class id (clusters left over when there are
/// more clusters than classes map to `None`), as `(cluster, class)` pairs sorted by cluster.
pub fn cluster_to_class(
    predicted: &[usize],
    truth: &[usize],
) -> Result<Vec<(usize, Option<usize>)>, BaselineError> {
    let c = Contingency::new(predicted, truth)?;
    let a = best_matching(&c.table);
    Ok(c.clusters
        .iter()
        .zip(&a.row_to_col)
        .map(|(&cl, col)| (cl, col.map(|j| c.classes[j])))
        .collect())
}

/// Cluster accuracy: the fraction of samples whose cluster, after the best one-to-one renaming
/// of clusters to classes, equals their class.
pub fn cluster_accuracy(predicted: &[usize], truth: &[usize]) -> Result<f64, BaselineError> {
    let c = Contingency::new(predicted, truth)?;
    accuracy_from(&c)
}

fn accuracy_from(c: &Contingency) -> Result<f64, BaselineError> {
    Ok(best_matching(&c.table).total as f64 / c.total() as f64)
}

/// Normalised mutual information with arithmetic-mean normalisation (scikit-learn's default).
pub fn nmi(predicted: &[usize], truth: &[usize]) -> Result<f64, BaselineError> {
    Ok(nmi_from(&Contingency::new(predicted, truth)?))
}

fn entropy(counts: impl Iterator<Item = u64>, n: f64) -> f64 {
    counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

fn nmi_from(c: &Contingency) -> f64 {
    let (r, k) = c.table.dim();
    if r == 1 && k == 1 {
        // Both partitions are a single group: identical, by convention 1.
        return 1.0;
    }
    let n = c.total() as f64;
    let a: Vec<u64> = c.table.rows().into_iter().map(|row| row.sum()).collect();
    let b: Vec<u64> = c.table.columns().into_iter().map(|col| col.sum()).collect();
    let mut mi = 0.0;
    for ((i, j), &nij) in c.table.indexed_iter() {
        if nij > 0 {
            let nij = nij as f64;
            mi += nij / n * (n * nij / (a[i] as f64 * b[j] as f64)).ln();
        }
    }
    let hu = entropy(a.into_iter(), n);
    let hv = entropy(b.into_iter(), n);
    let denom = (hu + hv) / 2.0;
    if denom <= 0.0 || mi <= 0.0 {
        return 0.0;
    }
    (mi / denom).clamp(0.0, 1.0)
}

/// Adjusted Rand index (Hubert & Arabie 1985).
pub fn ari(predicted: &[usize], truth: &[usize]) -> Result<f64, BaselineError> {
    Ok(ari_from(&Contingency::new(predicted, truth)?))
}

fn comb2(x: u64) -> f64 {
    let x = x as f64;
    x * (x - 1.0) / 2.0
}

fn ari_from(c: &Contingency) -> f64 {
    let n = c.total();
    let index: f64 = c.table.iter().map(|&x| comb2(x)).sum();
    let sum_a: f64 = c.table.rows().into_iter().map(|r| comb2(r.sum())).sum();
    let sum_b: f64 = c
        .table
        .columns()
        .into_iter()
        .map(|col| comb2(col.sum()))
        .sum();
    let pairs = comb2(n);
    if pairs == 0.0 {
        return 1.0;
    }
    let expected = sum_a * sum_b / pairs;
    let max = (sum_a + sum_b) / 2.0;
    let denom = max - expected;
    if denom == 0.0 {
        // Both partitions are trivial in the same way (all-in-one or all singletons).
        return 1.0;
    }
    (index - expected) / denom
}

/// Accuracy, NMI and ARI of `predicted` against `truth` in one pass over the contingency table.
pub fn evaluate(predicted: &[usize], truth: &[usize]) -> Result<Scores, BaselineError> {
    let c = Contingency::new(predicted, truth)?;
    Ok(Scores {
        accuracy: accuracy_from(&c)?,
        nmi: nmi_from(&c),
        ari: ari_from(&c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn perfect_clustering_under_relabelling_is_perfect() {
        let truth: Vec<usize> = (0..1000).map(|i| (i * 7 + i / 3) % 10).collect();
        // Rename classes by an arbitrary permutation (and to large, sparse ids).
        let perm = [42usize, 3, 17, 9, 1000, 5, 6, 0, 8, 77];
        let pred: Vec<usize> = truth.iter().map(|&t| perm[t]).collect();
        let s = evaluate(&pred, &truth).unwrap();
        assert_eq!(s.accuracy, 1.0);
        assert!(close(s.nmi, 1.0));
        assert!(close(s.ari, 1.0));
        let map = cluster_to_class(&pred, &truth).unwrap();
        for (cluster, class) in map {
            assert_eq!(perm[class.unwrap()], cluster);
        }
    }

    #[test]
    fn accuracy_uses_one_to_one_matching() {
        // Two clusters both mostly class 0: only one of them may be called class 0.
        let truth = [0, 0, 0, 0, 1, 1];
        let pred = [0, 0, 1, 1, 1, 1];
        // Best: cluster 0 → class 0 (2 right), cluster 1 → class 1 (2 right) = 4/6.
        assert!(close(cluster_accuracy(&pred, &truth).unwrap(), 4.0 / 6.0));
        // More clusters than classes: extra clusters are errors.
        let pred = [0, 1, 2, 3, 4, 5];
        assert!(close(cluster_accuracy(&pred, &truth).unwrap(), 2.0 / 6.0));
    }

    /// Values as printed by scikit-learn's documentation / computed by hand from the formulas.
    #[test]
    fn ari_known_values() {
        // sklearn docs: adjusted_rand_score([0, 0, 1, 2], [0, 0, 1, 1]) = 0.57...  (= 4/7)
        assert!(close(ari(&[0, 0, 1, 2], &[0, 0, 1, 1]).unwrap(), 4.0 / 7.0));
        // sklearn docs: adjusted_rand_score([0, 0, 1, 1], [0, 1, 0, 1]) = -0.5
        assert!(close(ari(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap(), -0.5));
        // sklearn docs: adjusted_rand_score([0, 0, 0, 0], [0, 1, 2, 3]) = 0.0
        assert!(close(ari(&[0, 0, 0, 0], &[0, 1, 2, 3]).unwrap(), 0.0));
        // Symmetric, and 1 for a relabelled copy.
        assert!(close(ari(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap(), 4.0 / 7.0));
        assert!(close(ari(&[1, 1, 0, 0], &[0, 0, 1, 1]).unwrap(), 1.0));
        // Degenerate: both all-in-one → 1 (sklearn convention).
        assert!(close(ari(&[3, 3, 3], &[1, 1, 1]).unwrap(), 1.0));
    }

    #[test]
    fn nmi_known_values() {
        // H(true=[0,0,1,2]) = 1.5 ln 2, H(pred=[0,0,1,1]) = ln 2, MI = ln 2 (pred is a function
        // of true) → NMI = ln2 / (1.25 ln2) = 0.8; sklearn's normalized_mutual_info_score agrees.
        assert!(close(nmi(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap(), 0.8));
        // Independent partitions: MI = 0.
        assert!(close(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap(), 0.0));
        // One cluster against several classes: 0 (sklearn: 0.0).
        assert!(close(nmi(&[0, 0, 0, 0], &[0, 1, 2, 3]).unwrap(), 0.0));
        // Both single-group: 1 by convention.
        assert!(close(nmi(&[5, 5], &[2, 2]).unwrap(), 1.0));
        // A 3×2 case by hand: true = [0,0,0,1,1,1], pred = [0,0,1,1,2,2].
        // H(true) = ln2, H(pred) = ln3, MI = H(true) - H(true|pred) = ln2 - (1/3)·ln2 = (2/3)ln2.
        let expected = (2.0 / 3.0) * 2f64.ln() / ((2f64.ln() + 3f64.ln()) / 2.0);
        assert!(close(
            nmi(&[0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 1]).unwrap(),
            expected
        ));
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            evaluate(&[], &[]),
            Err(BaselineError::Empty { .. })
        ));
        assert!(matches!(
            evaluate(&[0, 1], &[0]),
            Err(BaselineError::LabelLength {
                n_labels: 1,
                n_samples: 2,
                ..
            })
        ));
    }

    #[test]
    fn contingency_counts() {
        let c = Contingency::new(&[5, 5, 9, 9, 9], &[1, 2, 2, 2, 1]).unwrap();
        assert_eq!(c.clusters, vec![5, 9]);
        assert_eq!(c.classes, vec![1, 2]);
        assert_eq!(c.table, ndarray::array![[1u64, 1], [1, 2]]);
        assert_eq!(c.total(), 5);
    }
}
