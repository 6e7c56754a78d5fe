//! The best one-to-one matching of clusters to classes.
//!
//! Cluster ids are arbitrary, so the accuracy of a clustering is only defined after renaming
//! each cluster to the class it stands for. Given the `clusters × classes` contingency table
//! `C` (how many samples of each class each cluster holds), the best renaming maximises
//! `Σ C[i, σ(i)]` over one-to-one maps `σ`: an assignment problem, solved exactly by the
//! Kuhn–Munkres (Hungarian) algorithm — here the `pathfinding` crate's, on the integer counts,
//! so the total is exact. It wants no more rows than columns; a table with more clusters than
//! classes is solved transposed, and the clusters left over match no class.

use ndarray::Array2;
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// The matched cluster→class pairs of a contingency table that maximise the matched count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// For each row (cluster), the column (class) it is matched to; `None` for the rows left
    /// over when there are more rows than columns.
    pub row_to_col: Vec<Option<usize>>,
    /// The number of samples on matched pairs: `Σ C[i, row_to_col[i]]`.
    pub total: u64,
}

/// The matching of rows to columns of `table` with the largest total count (every row matched
/// when rows ≤ columns, every column otherwise). An empty table gives an empty matching.
pub fn best_matching(table: &Array2<u64>) -> Matching {
    let (rows, cols) = table.dim();
    if rows == 0 || cols == 0 {
        return Matching {
            row_to_col: vec![None; rows],
            total: 0,
        };
    }
    // Counts of a real dataset fit an i64 many times over.
    let weight = |r: usize, c: usize| i64::try_from(table[[r, c]]).unwrap_or(i64::MAX / 2);
    let mut row_to_col = vec![None; rows];
    if rows <= cols {
        let m = Matrix::from_fn(rows, cols, |(r, c)| weight(r, c));
        for (r, c) in kuhn_munkres(&m).1.into_iter().enumerate() {
            row_to_col[r] = Some(c);
        }
    } else {
        let m = Matrix::from_fn(cols, rows, |(c, r)| weight(r, c));
        for (c, r) in kuhn_munkres(&m).1.into_iter().enumerate() {
            row_to_col[r] = Some(c);
        }
    }
    let total = row_to_col
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| table[[r, c]]))
        .sum();
    Matching { row_to_col, total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The optimum over every one-to-one map, for small tables.
    fn brute_force(t: &Array2<u64>) -> u64 {
        fn rec(t: &Array2<u64>, row: usize, used: &mut Vec<bool>, acc: u64, best: &mut u64) {
            if row == t.nrows() {
                *best = (*best).max(acc);
                return;
            }
            let mut any = false;
            for c in 0..t.ncols() {
                if !used[c] {
                    any = true;
                    used[c] = true;
                    rec(t, row + 1, used, acc + t[[row, c]], best);
                    used[c] = false;
                }
            }
            if !any || t.nrows() > t.ncols() {
                rec(t, row + 1, used, acc, best); // this row left unmatched
            }
        }
        let mut best = 0;
        rec(t, 0, &mut vec![false; t.ncols()], 0, &mut best);
        best
    }

    fn assert_one_to_one(m: &Matching, rows: usize, cols: usize) {
        assert_eq!(m.row_to_col.len(), rows);
        let mut seen = vec![false; cols];
        for &c in m.row_to_col.iter().flatten() {
            assert!(!seen[c], "column {c} matched twice");
            seen[c] = true;
        }
        assert_eq!(m.row_to_col.iter().flatten().count(), rows.min(cols));
    }

    #[test]
    fn a_permuted_diagonal_is_recovered() {
        let perm = [3usize, 0, 4, 1, 2];
        let mut t = Array2::<u64>::zeros((5, 5));
        for (r, &c) in perm.iter().enumerate() {
            t[[r, c]] = 100 + r as u64;
        }
        let m = best_matching(&t);
        assert_eq!(m.row_to_col, perm.map(Some).to_vec());
        assert_eq!(m.total, 510);
    }

    #[test]
    fn greedy_would_be_wrong() {
        // Greedy takes 9 at (0, 0) and is left with 1: 10; the optimum is 8 + 8.
        let m = best_matching(&array![[9, 8], [8, 1]]);
        assert_eq!((m.total, m.row_to_col), (16, vec![Some(1), Some(0)]));
    }

    #[test]
    fn random_tables_of_every_shape_reach_the_optimum() {
        let mut rng = StdRng::seed_from_u64(3);
        for (rows, cols) in [(1, 1), (3, 3), (4, 6), (6, 4), (5, 5), (2, 7), (7, 2)] {
            for _ in 0..20 {
                let t = Array2::from_shape_fn((rows, cols), |_| rng.gen_range(0..50u64));
                let m = best_matching(&t);
                assert_one_to_one(&m, rows, cols);
                assert_eq!(m.total, brute_force(&t), "{t:?}");
            }
        }
    }

    #[test]
    fn an_empty_table_matches_nothing() {
        let m = best_matching(&Array2::<u64>::zeros((0, 3)));
        assert_eq!((m.total, m.row_to_col.len()), (0, 0));
        let m = best_matching(&Array2::<u64>::zeros((2, 0)));
        assert_eq!((m.total, m.row_to_col), (0, vec![None, None]));
    }
}
