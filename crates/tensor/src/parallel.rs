//! When a pass over memory is worth rayon's threads: one threshold, decided in one place.
//!
//! Waking the other threads and joining them costs microseconds, which a pass over a few
//! thousand values does not repay. So every elementwise or per-plane pass of the crates (the
//! elementwise ops, pooling, batch norm, the optimizers' updates) gives rayon's
//! `with_min_len` the [`min_items`] of its pieces: no task touches fewer than
//! [`MIN_TASK_VALUES`] values, so a small pass is one task, which rayon runs on the calling
//! thread without waking anyone, and a large one splits into as many tasks as the threads can
//! take.
//!
//! (The GEMM and the convolution decide by the work per thread instead: see `gemm::gemm` and
//! the scheduling notes of `ops::conv2d`.)

/// The fewest values one task of a parallel pass touches.
pub const MIN_TASK_VALUES: usize = 1 << 15;

/// The fewest items of `item_len` values each that one task takes (for `with_min_len`).
pub fn min_items(item_len: usize) -> usize {
    MIN_TASK_VALUES.div_ceil(item_len.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_touches_at_least_the_minimum() {
        assert_eq!(min_items(1), MIN_TASK_VALUES);
        assert_eq!(min_items(MIN_TASK_VALUES), 1);
        assert_eq!(min_items(10 * MIN_TASK_VALUES), 1);
        assert_eq!(min_items(0), MIN_TASK_VALUES);
        assert!(min_items(576) * 576 >= MIN_TASK_VALUES);
    }
}
