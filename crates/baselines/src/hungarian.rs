//! The Hungarian (Kuhn–Munkres) algorithm: an optimal one-to-one assignment in O(n²·m).
//!
//! Cluster ids are arbitrary, so "accuracy" of a clustering is only defined after matching each
//! cluster to the class it stands for. Given the `clusters × classes` contingency table `C`, the
//! best one-to-one matching maximises `Σ C[i, σ(i)]`; that is an assignment problem, solved
//! exactly by the Hungarian algorithm.
//!
//! This is the shortest-augmenting-path formulation with potentials (Jonker–Volgenant style, as
//! taught in e-maxx / "Hungarian algorithm in O(n³)"):
//!
//! * keep dual potentials `u` (rows) and `v` (columns) with `cost[i][j] - u[i] - v[j] >= 0`;
//! * add rows one at a time; for each new row run a Dijkstra-like search over columns on the
//!   reduced costs, growing a tree of tight edges until a free column is reached;
//! * shift the potentials by the smallest reduced cost seen each step (keeps them feasible and
//!   makes one more edge tight), then flip the matching along the found path.
//!
//! Each of the `n` rows costs O(n·m), so O(n²·m) overall — trivial for a 10×10 table. A
//! rectangular table is handled by transposing so that rows ≤ columns; with more rows than
//! columns some rows stay unmatched (`None`). Ties are broken deterministically (lowest column
//! index first), and any optimum is valid.

use ndarray::{Array2, ArrayView2};

use crate::BaselineError;

/// An optimal assignment of rows to columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// For each row, the column it is matched to (`None` when there are more rows than columns
    /// and this row lost out).
    pub row_to_col: Vec<Option<usize>>,
    /// Sum of the matrix entries over the matched pairs.
    pub total: f64,
}

/// Finds the one-to-one row→column matching of maximum total weight (every row matched when
/// rows ≤ columns, every column matched otherwise).
///
/// Errors on a non-finite entry. An empty matrix gives an empty assignment.
pub fn max_weight_assignment(weight: ArrayView2<'_, f64>) -> Result<Assignment, BaselineError> {
    check_finite(weight)?;
    let negated = weight.mapv(|w| -w);
    let mut a = min_cost_assignment(negated.view())?;
    a.total = -a.total;
    // Avoid reporting "-0.0" for an all-zero table.
    if a.total == 0.0 {
        a.total = 0.0;
    }
    Ok(a)
}

/// Finds the one-to-one row→column matching of minimum total cost (every row matched when
/// rows ≤ columns, every column matched otherwise).
///
/// Errors on a non-finite entry. An empty matrix gives an empty assignment.
pub fn min_cost_assignment(cost: ArrayView2<'_, f64>) -> Result<Assignment, BaselineError> {
    check_finite(cost)?;
    let (rows, cols) = cost.dim();
    if rows == 0 || cols == 0 {
        return Ok(Assignment {
            row_to_col: vec![None; rows],
            total: 0.0,
        });
    }
    let row_to_col = if rows <= cols {
        solve_wide(cost)
    } else {
        // Solve the transpose (cols ≤ rows there), then invert the matching.
        let t = cost.t().to_owned();
        let col_to_row = solve_wide(t.view());
        let mut row_to_col = vec![None; rows];
        for (c, r) in col_to_row.iter().enumerate() {
            if let Some(r) = *r {
                row_to_col[r] = Some(c);
            }
        }
        row_to_col
    };
    let total = row_to_col
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| cost[[r, c]]))
        .sum();
    Ok(Assignment { row_to_col, total })
}

fn check_finite(m: ArrayView2<'_, f64>) -> Result<(), BaselineError> {
    match m.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, col), &value)) => Err(BaselineError::NonFinite {
            what: "assignment cost matrix".to_string(),
            row,
            col,
            value,
        }),
        None => Ok(()),
    }
}

/// Core solver for `n ≤ m`; every row gets a column.
///
/// Indices are 1-based inside, with column 0 a virtual "root" column that holds the row being
/// inserted; `p[j]` is the row matched to column `j` (0 = free) and `way[j]` the previous column
/// on the shortest path to `j`.
fn solve_wide(cost: ArrayView2<'_, f64>) -> Vec<Option<usize>> {
    let (n, m) = cost.dim();
    debug_assert!(n <= m);
    let a = |i: usize, j: usize| cost[[i - 1, j - 1]];

    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    let mut minv = vec![f64::INFINITY; m + 1];
    let mut used = vec![false; m + 1];

    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        minv.iter_mut().for_each(|x| *x = f64::INFINITY);
        used.iter_mut().for_each(|x| *x = false);
        // Dijkstra over columns on reduced costs until a free column is reached.
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = a(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            // Shift potentials: tree rows up, tree columns down, others' slack shrinks.
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        // Flip the matching along the augmenting path back to the root column.
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }

    let mut row_to_col = vec![None; n];
    for j in 1..=m {
        if p[j] != 0 {
            row_to_col[p[j] - 1] = Some(j - 1);
        }
    }
    row_to_col
}

/// Converts an integer count table into the `f64` weights the solver takes.
pub(crate) fn counts_to_weights(table: &Array2<u64>) -> Array2<f64> {
    table.mapv(|c| c as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// All permutations-based optimum for small square/rectangular matrices (rows ≤ cols).
    fn brute_force_max(w: &Array2<f64>) -> f64 {
        fn rec(w: &Array2<f64>, row: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            if row == w.nrows() {
                *best = best.max(acc);
                return;
            }
            for c in 0..w.ncols() {
                if !used[c] {
                    used[c] = true;
                    rec(w, row + 1, used, acc + w[[row, c]], best);
                    used[c] = false;
                }
            }
        }
        let mut best = f64::NEG_INFINITY;
        rec(w, 0, &mut vec![false; w.ncols()], 0.0, &mut best);
        best
    }

    fn assert_valid(a: &Assignment, rows: usize, cols: usize) {
        assert_eq!(a.row_to_col.len(), rows);
        let mut seen = vec![false; cols];
        for c in a.row_to_col.iter().flatten() {
            assert!(!seen[*c], "column {c} used twice");
            seen[*c] = true;
        }
        assert_eq!(a.row_to_col.iter().flatten().count(), rows.min(cols));
    }

    #[test]
    fn permutation_matrix_is_recovered() {
        // Row i's mass sits in column perm[i].
        let perm = [3usize, 0, 4, 1, 2];
        let mut w = Array2::<f64>::zeros((5, 5));
        for (r, &c) in perm.iter().enumerate() {
            w[[r, c]] = 100.0 + r as f64;
        }
        let a = max_weight_assignment(w.view()).unwrap();
        assert_eq!(
            a.row_to_col,
            perm.iter().map(|&c| Some(c)).collect::<Vec<_>>()
        );
        assert_eq!(a.total, 510.0);
    }

    #[test]
    fn classic_min_cost_example() {
        // Textbook 3×3 example: optimum 5 (0→1, 1→0, 2→2).
        let c = array![[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]];
        let a = min_cost_assignment(c.view()).unwrap();
        assert_eq!(a.total, 5.0);
        assert_eq!(a.row_to_col, vec![Some(1), Some(0), Some(2)]);
    }

    #[test]
    fn greedy_would_be_wrong() {
        // Greedy takes 9 at (0,0) and is left with 1 → 10; the optimum is 8 + 8 = 16.
        let w = array![[9.0, 8.0], [8.0, 1.0]];
        let a = max_weight_assignment(w.view()).unwrap();
        assert_eq!(a.total, 16.0);
        assert_eq!(a.row_to_col, vec![Some(1), Some(0)]);
    }

    #[test]
    fn ties_give_a_valid_optimum() {
        // Every permutation has the same weight.
        let w = Array2::<f64>::from_elem((4, 4), 7.0);
        let a = max_weight_assignment(w.view()).unwrap();
        assert_valid(&a, 4, 4);
        assert_eq!(a.total, 28.0);

        // Two optimal matchings of equal weight (0↔0,1↔1 and 0↔1,1↔0), plus a fixed row.
        let w = array![[5.0, 5.0, 0.0], [5.0, 5.0, 0.0], [0.0, 0.0, 3.0]];
        let a = max_weight_assignment(w.view()).unwrap();
        assert_valid(&a, 3, 3);
        assert_eq!(a.total, 13.0);
        assert_eq!(a.row_to_col[2], Some(2));

        // All-zero table: any matching, total 0.
        let a = max_weight_assignment(Array2::<f64>::zeros((3, 3)).view()).unwrap();
        assert_valid(&a, 3, 3);
        assert_eq!(a.total, 0.0);
    }

    #[test]
    fn rectangular_tables() {
        // More columns than rows: each row gets its best distinct column.
        let w = array![[1.0, 9.0, 2.0, 0.0], [8.0, 9.0, 0.0, 0.0]];
        let a = max_weight_assignment(w.view()).unwrap();
        assert_valid(&a, 2, 4);
        assert_eq!(a.total, 17.0);
        assert_eq!(a.row_to_col, vec![Some(1), Some(0)]);

        // More rows than columns: the transpose; one row stays unmatched.
        let wt = w.t().to_owned();
        let a = max_weight_assignment(wt.view()).unwrap();
        assert_valid(&a, 4, 2);
        assert_eq!(a.total, 17.0);
        assert_eq!(a.row_to_col, vec![Some(1), Some(0), None, None]);
    }

    #[test]
    fn matches_brute_force_on_pseudo_random_tables() {
        // Small LCG so the test needs no RNG crate; integer weights with many ties.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 7) as f64
        };
        for (rows, cols) in [(1, 1), (2, 3), (3, 3), (4, 6), (5, 5), (6, 6), (6, 7)] {
            for _ in 0..20 {
                let w = Array2::from_shape_fn((rows, cols), |_| next());
                let a = max_weight_assignment(w.view()).unwrap();
                assert_valid(&a, rows, cols);
                assert_eq!(a.total, brute_force_max(&w), "table {w:?}");
                // And the transposed problem has the same optimum.
                let at = max_weight_assignment(w.t()).unwrap();
                assert_valid(&at, cols, rows);
                assert_eq!(at.total, a.total);
            }
        }
    }

    #[test]
    fn empty_and_non_finite() {
        let a = max_weight_assignment(Array2::<f64>::zeros((0, 3)).view()).unwrap();
        assert!(a.row_to_col.is_empty());
        assert_eq!(a.total, 0.0);
        let w = array![[1.0, f64::NAN], [0.0, 1.0]];
        assert!(matches!(
            max_weight_assignment(w.view()),
            Err(BaselineError::NonFinite { row: 0, col: 1, .. })
        ));
    }
}
