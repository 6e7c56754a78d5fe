//! The training loader: seeded shuffle, batches, augmented views, background prefetch.
//!
//! An epoch is a permutation of the set's indices drawn from `(seed, epoch)` alone, cut into
//! batches of `batch_size` (the last, shorter one dropped if `drop_last`). Each batch is
//! turned into `f32` views by an [`Augmenter`] — in parallel on rayon — on a background
//! thread that stays one batch ahead (a bounded channel of `prefetch` batches), so the
//! augmentation of batch `k + 1` overlaps the model's work on batch `k`.
//!
//! Everything depends only on `(seed, epoch, dataset index)`: the same seed gives the same
//! order and the same views, and a run stopped after epoch `e` resumes by asking for epoch
//! `e + 1` — no loader state to save. A run stopped inside an epoch resumes with
//! [`Loader::epoch_from`], which starts the epoch at a given batch without making the ones
//! before it (no view depends on another, so none has to be drawn to reach the next).
//!
//! A data-parallel run gives each rank a [`Shard`] of every batch: rank `r` of `R` makes only
//! images `r·B/R .. (r+1)·B/R` of each batch, from the same order and with the same views the
//! whole batch has — so the ranks together see exactly what one process would.
//!
//! ```no_run
//! # use simclr_data::*;
//! # fn main() -> Result<(), DataError> {
//! # let set = ImageSet::new(vec![0; 784], vec![0], 1, 28, 28, mnist::class_names())?;
//! let aug = Augmenter::new(Recipe::Simclr, DatasetKind::Mnist, 42);
//! let loader = Loader::new(set, aug, LoaderConfig::two_views(256))?;
//! for epoch in 0..10 {
//!     for batch in loader.epoch(epoch) {
//!         let [n, c, h, w] = batch.dims(); // n = 2B: rows i and i+B are a positive pair
//!         let _ = (batch.data, n, c, h, w);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::augment::{splitmix, Augmenter};
use crate::error::{DataError, Result};
use crate::ImageSet;

/// How the loader cuts and presents an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (`B`).
    pub batch_size: usize,
    /// Drop the last batch if it has fewer than `batch_size` images.
    pub drop_last: bool,
    /// Shuffle each epoch (else the set's order).
    pub shuffle: bool,
    /// Views per image: 2 for contrastive pretraining (`[2B, C, H, W]`), 1 for classification.
    pub views: usize,
    /// Batches computed ahead on the background thread (at least 1).
    pub prefetch: usize,
    /// The part of every batch this loader makes (a data-parallel rank's), or all of it.
    pub shard: Shard,
}

/// Part `index` of `count` equal parts of every batch: the `B/count` images from
/// `index·B/count` on. The batch size must divide into `count` parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which part (a rank), `0..count`.
    pub index: usize,
    /// How many parts (the ranks).
    pub count: usize,
}

impl Shard {
    /// The whole batch: part 0 of 1.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl LoaderConfig {
    /// Contrastive pretraining: two views, shuffled, last partial batch dropped.
    pub fn two_views(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            drop_last: true,
            shuffle: true,
            views: 2,
            prefetch: 1,
            shard: Shard::WHOLE,
        }
    }

    /// Classifier training: one view, shuffled, last partial batch kept.
    pub fn one_view(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            drop_last: false,
            shuffle: true,
            views: 1,
            prefetch: 1,
            shard: Shard::WHOLE,
        }
    }
}

/// One batch: `views · size` normalised images plus the labels of the `size` images.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `[views · size, C, H, W]` values; with two views rows `i` and `i + size` are the two
    /// views of the same image.
    pub data: Vec<f32>,
    /// The `size` labels (once, not per view).
    pub labels: Vec<u8>,
    /// The dataset indices of the `size` images.
    pub indices: Vec<usize>,
    /// Images in the batch (`B`).
    pub size: usize,
    /// Views per image (1 or 2).
    pub views: usize,
    /// `[C, H, W]` of one image.
    pub shape: [usize; 3],
}

impl Batch {
    /// `[views · size, C, H, W]`, the shape of `data`.
    pub fn dims(&self) -> [usize; 4] {
        [
            self.views * self.size,
            self.shape[0],
            self.shape[1],
            self.shape[2],
        ]
    }
}

/// A seeded, augmenting, prefetching batch loader over one [`ImageSet`].
#[derive(Clone, Debug)]
pub struct Loader {
    set: Arc<ImageSet>,
    aug: Arc<Augmenter>,
    cfg: LoaderConfig,
}

impl Loader {
    /// A loader over `set` (owned or shared) with views made by `aug` (whose seed also seeds
    /// the shuffle).
    pub fn new(set: impl Into<Arc<ImageSet>>, aug: Augmenter, cfg: LoaderConfig) -> Result<Self> {
        let set = set.into();
        if cfg.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        if !(1..=2).contains(&cfg.views) {
            return Err(DataError::Invalid(format!(
                "views must be 1 or 2, not {}",
                cfg.views
            )));
        }
        if set.is_empty() {
            return Err(DataError::Invalid("the loader's image set is empty".into()));
        }
        let Shard { index, count } = cfg.shard;
        if index >= count || !cfg.batch_size.is_multiple_of(count) {
            return Err(DataError::Invalid(format!(
                "shard {index} of {count}: the batch size {} must split into {count} equal \
                 parts, and the shard must be one of them",
                cfg.batch_size
            )));
        }
        aug.view_shape(set.shape())?;
        Ok(Loader {
            set,
            aug: Arc::new(aug),
            cfg,
        })
    }

    /// The image set.
    pub fn set(&self) -> &ImageSet {
        &self.set
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// The augmenter.
    pub fn augmenter(&self) -> &Augmenter {
        &self.aug
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.set.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// True if an epoch has no batch (fewer images than a batch with `drop_last`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The order in which epoch `epoch` visits the set (a function of seed and epoch only).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        epoch_order(self.set.len(), self.cfg.shuffle, self.aug.seed, epoch)
    }

    /// Batch `k` of epoch `epoch`, computed now on the calling thread (plus rayon), or `None`
    /// past the end. The background iterator [`Loader::epoch`] yields exactly these.
    pub fn batch(&self, epoch: u64, k: usize) -> Option<Batch> {
        let order = self.order(epoch);
        make_batch(&self.set, &self.aug, &self.cfg, &order, epoch, k)
    }

    /// The batches of epoch `epoch`, prepared on a background thread one step ahead.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first` on — the same batches as
    /// `self.epoch(epoch).skip(first)`, but the skipped ones are never made: a view depends
    /// only on `(seed, epoch, dataset index)`, not on the views made before it, so an epoch
    /// can start anywhere (a run resumed from a checkpoint written inside an epoch).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Epoch {
        let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
        let producer = self.clone();
        let len = self.len();
        let spawned = std::thread::Builder::new()
            .name(format!("simclr-loader-e{epoch}"))
            .spawn(move || {
                let order = producer.order(epoch);
                for k in first..len {
                    let Some(b) = make_batch(
                        &producer.set,
                        &producer.aug,
                        &producer.cfg,
                        &order,
                        epoch,
                        k,
                    ) else {
                        break;
                    };
                    if tx.send(b).is_err() {
                        break; // the consumer dropped the iterator
                    }
                }
            });
        let source = match spawned {
            Ok(handle) => Source::Thread {
                rx: Some(rx),
                handle: Some(handle),
            },
            // No thread available: compute the batches on demand instead.
            Err(_) => Source::Inline {
                loader: self.clone(),
                order: self.order(epoch),
                epoch,
                next: first,
            },
        };
        Epoch {
            source,
            remaining: len.saturating_sub(first),
        }
    }
}

/// The visiting order of an epoch: `0..n`, shuffled by a generator seeded from `(seed, epoch)`.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let s = splitmix(splitmix(seed ^ 0x5348_5546_464c_4521) ^ epoch);
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(s));
    }
    order
}

fn make_batch(
    set: &ImageSet,
    aug: &Augmenter,
    cfg: &LoaderConfig,
    order: &[usize],
    epoch: u64,
    k: usize,
) -> Option<Batch> {
    let start = k.checked_mul(cfg.batch_size)?;
    if start >= order.len() {
        return None;
    }
    let end = (start + cfg.batch_size).min(order.len());
    if cfg.drop_last && end - start < cfg.batch_size {
        return None;
    }
    let Shard { index, count } = cfg.shard;
    let n = end - start;
    let indices = order[start + index * n / count..start + (index + 1) * n / count].to_vec();
    let mut data = Vec::new();
    let shape = aug.fill_views(set, &indices, cfg.views, epoch, &mut data);
    Some(Batch {
        labels: indices.iter().map(|&i| set.labels[i]).collect(),
        size: indices.len(),
        indices,
        data,
        views: cfg.views,
        shape,
    })
}

/// The batches of one epoch, produced by a background thread (see [`Loader::epoch`]).
/// Dropping it early stops the thread.
#[derive(Debug)]
pub struct Epoch {
    source: Source,
    remaining: usize,
}

#[derive(Debug)]
enum Source {
    Thread {
        rx: Option<Receiver<Batch>>,
        handle: Option<JoinHandle<()>>,
    },
    Inline {
        loader: Loader,
        order: Vec<usize>,
        epoch: u64,
        next: usize,
    },
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let got = match &mut self.source {
            Source::Thread { rx, handle } => {
                let got = rx.as_ref().and_then(|r| r.recv().ok());
                if got.is_none() {
                    // The producer is gone: finished, or panicked — never end an epoch
                    // silently short.
                    *rx = None;
                    if let Some(h) = handle.take() {
                        if let Err(p) = h.join() {
                            std::panic::resume_unwind(p);
                        }
                    }
                }
                got
            }
            Source::Inline {
                loader,
                order,
                epoch,
                next,
            } => {
                let b = make_batch(&loader.set, &loader.aug, &loader.cfg, order, *epoch, *next);
                *next += 1;
                b
            }
        };
        if got.is_some() {
            self.remaining = self.remaining.saturating_sub(1);
        }
        got
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Source::Thread { rx, handle } = &mut self.source {
            *rx = None; // unblocks a producer waiting in `send`
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetKind, Recipe};

    /// `n` 28×28 images, image `i` filled with `i mod 256`.
    fn numbered(n: usize) -> ImageSet {
        let images = (0..n).flat_map(|i| [(i % 256) as u8; 784]).collect();
        let labels = (0..n).map(|i| (i % 10) as u8).collect();
        ImageSet::new(images, labels, 1, 28, 28, crate::mnist::class_names()).unwrap()
    }

    #[test]
    fn an_epoch_started_at_a_batch_yields_the_rest_of_the_whole_epoch() {
        let aug = Augmenter::new(Recipe::Simclr, DatasetKind::Mnist, 5);
        let loader = Loader::new(numbered(70), aug, LoaderConfig::two_views(16)).unwrap();
        let whole: Vec<Batch> = loader.epoch(3).collect();
        assert_eq!(whole.len(), 4);
        for first in 0..=5 {
            let rest = loader.epoch_from(3, first);
            assert_eq!(rest.size_hint().0, 4usize.saturating_sub(first));
            let rest: Vec<Batch> = rest.collect();
            assert!(rest[..] == whole[first.min(4)..], "epoch_from(3, {first})");
        }
    }
}
