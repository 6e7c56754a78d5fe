//! Collective operations across the processes of a data-parallel run.
//!
//! Data-parallel training runs one copy of the model per *rank* (an MPI process, usually one
//! per machine), each on its own shard of every batch. The ranks meet at a few points of a
//! step, always all of them, in the same order:
//!
//! - batch norm sums its per-channel statistics over the ranks, so every rank normalises with
//!   the statistics of the whole batch (forward: `Σx`, `Σ(x − μ)²`; backward: `Σdy`,
//!   `Σdy·x̂`) — see [`crate::ops::batch_norm`];
//! - the contrastive loss gathers every rank's projections, so each rank's images are
//!   contrasted with the whole batch;
//! - the gradients are summed before the optimizer step, so every rank takes the same step;
//! - rank 0 broadcasts what only it has (the run's configuration, a checkpoint it read).
//!
//! [`Collective`] is that interface, four operations wide. This crate implements it for one
//! process ([`Solo`], where every operation is the identity) and for ranks that are threads
//! of one process ([`ThreadGroup`], for tests and for reading); the runner implements it on
//! MPI. Every operation is *collective*: all ranks call it, with buffers of the same length,
//! and each returns once all have; a rank that skips one deadlocks the others.
//!
//! Sums are reduced in rank order by [`ThreadGroup`], so every rank gets bit-identical
//! results; MPI's reductions give every rank the same result as well.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Barrier, Mutex};

/// The operations the ranks of a data-parallel run perform together (see the module docs).
pub trait Collective: fmt::Debug {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;

    /// How many ranks take part.
    fn ranks(&self) -> usize;

    /// Replaces `values` with their element-wise sum over the ranks.
    fn sum_f32(&self, values: &mut [f32]);

    /// Replaces `values` with their element-wise sum over the ranks.
    fn sum_f64(&self, values: &mut [f64]);

    /// Every rank's `local` (the same length on each), concatenated in rank order.
    fn gather_f32(&self, local: &[f32]) -> Vec<f32>;

    /// Replaces `bytes` on every rank with rank 0's (whose length the others need not know).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>);

    /// Replaces `values` on every rank with rank 0's (the same length on each).
    fn broadcast_f32(&self, values: &mut [f32]) {
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.broadcast_bytes(&mut bytes);
        assert_eq!(
            bytes.len(),
            4 * values.len(),
            "broadcast_f32: rank 0 sent {} values, rank {} expected {}",
            bytes.len() / 4,
            self.rank(),
            values.len()
        );
        for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}

/// A run of one process: rank 0 of 1, every operation leaves its input as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn ranks(&self) -> usize {
        1
    }

    fn sum_f32(&self, _: &mut [f32]) {}

    fn sum_f64(&self, _: &mut [f64]) {}

    fn gather_f32(&self, local: &[f32]) -> Vec<f32> {
        local.to_vec()
    }

    fn broadcast_bytes(&self, _: &mut Vec<u8>) {}
}

/// Ranks that are threads of one process: [`ThreadGroup::new`]`(r)` makes the `r` members,
/// one to move into each thread. Every operation is an exchange through shared slots between
/// two barriers: each rank puts its buffer in its slot, waits for all, reads every slot,
/// waits again (so no slot is overwritten while another rank still reads it).
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Exchange>,
}

struct Exchange {
    slots: Mutex<Vec<Option<Box<dyn Any + Send>>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// The `ranks` members of one group, rank `i` at index `i`.
    pub fn new(ranks: usize) -> Vec<ThreadGroup> {
        assert!(
            ranks >= 1,
            "ThreadGroup::new: a group needs at least one rank"
        );
        let shared = Arc::new(Exchange {
            slots: Mutex::new((0..ranks).map(|_| None).collect()),
            barrier: Barrier::new(ranks),
        });
        (0..ranks)
            .map(|rank| ThreadGroup {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    /// Every rank's `mine`, in rank order.
    fn exchange<T: Clone + Send + 'static>(&self, mine: Vec<T>) -> Vec<Vec<T>> {
        self.shared.slots.lock().unwrap()[self.rank] = Some(Box::new(mine));
        self.shared.barrier.wait();
        let all = self
            .shared
            .slots
            .lock()
            .unwrap()
            .iter()
            .map(|slot| {
                let any = slot.as_ref().expect("every rank filled its slot");
                let values = any.downcast_ref::<Vec<T>>();
                values.expect("every rank calls the same operation").clone()
            })
            .collect();
        self.shared.barrier.wait();
        all
    }

    fn sum<T: Copy + Send + std::ops::AddAssign + 'static>(&self, values: &mut [T]) {
        let all = self.exchange(values.to_vec());
        assert!(
            all.iter().all(|v| v.len() == values.len()),
            "ThreadGroup: ranks summed buffers of different lengths"
        );
        values.copy_from_slice(&all[0]);
        for other in &all[1..] {
            values.iter_mut().zip(other).for_each(|(v, &o)| *v += o);
        }
    }
}

impl fmt::Debug for ThreadGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadGroup(rank {} of {})", self.rank, self.ranks())
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.shared.slots.lock().unwrap().len()
    }

    fn sum_f32(&self, values: &mut [f32]) {
        self.sum(values);
    }

    fn sum_f64(&self, values: &mut [f64]) {
        self.sum(values);
    }

    fn gather_f32(&self, local: &[f32]) -> Vec<f32> {
        self.exchange(local.to_vec()).concat()
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        *bytes = self.exchange(std::mem::take(bytes)).swap_remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ranks_sum_gather_and_broadcast() {
        let handles: Vec<_> = ThreadGroup::new(3)
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let r = g.rank() as f32;
                    let mut s = vec![r, 10.0 * r];
                    g.sum_f32(&mut s);
                    let mut d = vec![r as f64; 1];
                    g.sum_f64(&mut d);
                    let gathered = g.gather_f32(&[r, r]);
                    let mut b = vec![g.rank() as u8; g.rank() + 1];
                    g.broadcast_bytes(&mut b);
                    let mut f = vec![r + 0.5; 2];
                    g.broadcast_f32(&mut f);
                    (s, d, gathered, b, f)
                })
            })
            .collect();
        for h in handles {
            let (s, d, gathered, b, f) = h.join().unwrap();
            assert_eq!(s, [3.0, 30.0]);
            assert_eq!(d, [3.0]);
            assert_eq!(gathered, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
            assert_eq!(b, [0u8]);
            assert_eq!(f, [0.5, 0.5]);
        }
    }

    #[test]
    fn solo_is_the_identity() {
        let mut v = vec![1.0f32, 2.0];
        Solo.sum_f32(&mut v);
        assert_eq!(v, [1.0, 2.0]);
        assert_eq!(Solo.gather_f32(&v), v);
        assert_eq!((Solo.rank(), Solo.ranks()), (0, 1));
    }
}
