//! Run checkpoints: what a pretraining run saves at the end of every epoch, and every few
//! minutes inside one, so that a run killed at any moment resumes where it stopped and ends
//! bit-identical to an unbroken one.
//!
//! A run is a deterministic function of its seed: the model's initial weights come from it,
//! and the loader's order and augmentations depend only on `(seed, epoch, image)` (see
//! `simclr_data::loader`), so there is no data-RNG state to store — only which epoch and
//! which batch of it come next. What changes during training, and is therefore saved, is:
//!
//! * the model's parameters and buffers (`encoder.*`, `head.*`);
//! * the optimizer's state (`optimizer.*`: moments, per-parameter step counts, current lr);
//! * in the safetensors metadata: the number of completed epochs, the global step (the
//!   position in the learning-rate schedule), the seed, the temperature, the batch size and
//!   the last epoch's mean loss;
//! * for a checkpoint written inside an epoch, the [`EpochProgress`]: the batches of the epoch
//!   already done and the partial sums of its statistics (loss sum, images, seconds), so the
//!   resumed epoch reports the same mean loss as an unbroken one.
//!
//! A checkpoint at an epoch boundary is written exactly as before mid-epoch checkpoints
//! existed ([`FORMAT`], no progress keys), so every checkpoint of an older run still loads and
//! its missing progress means "at an epoch boundary". One written inside an epoch is tagged
//! [`FORMAT_MID_EPOCH`] instead: a reader that does not know the progress keys refuses it
//! rather than redoing the epoch's first batches on weights that already learned from them.
//!
//! The file `checkpoint.safetensors` in the run directory is replaced atomically (temp file +
//! rename, by `simclr_nn::checkpoint`), so it always holds the last checkpoint written whole;
//! a crash mid-write leaves the previous one. Resuming checks that seed, temperature and batch size
//! match, since a different value would silently make a different run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use simclr_nn::checkpoint::{self as nn_ckpt, LoadOptions};
use simclr_nn::{CheckpointError, Module, Optimizer};
use simclr_tensor::{Collective, Solo};

use crate::error::PretrainError;

/// File name of the last checkpoint inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Format tag stored in the metadata of a checkpoint at an epoch boundary.
pub const FORMAT: &str = "simclr-pretrain-v1";
/// Format tag of a checkpoint written inside an epoch (v1 plus the [`EpochProgress`] keys).
pub const FORMAT_MID_EPOCH: &str = "simclr-pretrain-v2";

/// How far the epoch in progress (index [`RunState::epochs_done`]) had come when a checkpoint
/// was written inside it; all zero at an epoch boundary.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochProgress {
    /// Batches of the epoch done — also its optimizer steps: the resumed epoch starts at this
    /// batch.
    pub batches: usize,
    /// Sum of those batches' losses (the epoch's mean loss is this over its steps).
    pub loss_sum: f64,
    /// Source images of those batches.
    pub images: usize,
    /// Wall time spent on those batches (checkpoints excluded).
    pub seconds: f64,
}

impl EpochProgress {
    /// True at an epoch boundary (no batch of the epoch done yet).
    pub fn is_epoch_start(&self) -> bool {
        self.batches == 0
    }
}

/// Where a pretraining run stands, as recorded in its checkpoint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// Epochs fully completed (the next epoch to run has this index).
    pub epochs_done: usize,
    /// Optimizer steps taken (the next step's index in the learning-rate schedule).
    pub global_step: usize,
    /// The run's seed (the loader's augmenter seed).
    pub seed: u64,
    /// NT-Xent temperature.
    pub temperature: f32,
    /// Images per batch.
    pub batch_size: usize,
    /// Mean loss of the last completed epoch.
    pub last_epoch_loss: f32,
    /// Where inside epoch `epochs_done` the run stands (at its start unless the checkpoint
    /// was written inside it).
    #[serde(default)]
    pub epoch_progress: EpochProgress,
}

impl RunState {
    fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mid_epoch = !self.epoch_progress.is_epoch_start();
        let format = if mid_epoch { FORMAT_MID_EPOCH } else { FORMAT };
        m.insert("format".into(), format.into());
        m.insert("epochs_done".into(), self.epochs_done.to_string());
        m.insert("global_step".into(), self.global_step.to_string());
        m.insert("seed".into(), self.seed.to_string());
        // f32 prints as the shortest decimal that parses back to the same value.
        m.insert("temperature".into(), self.temperature.to_string());
        m.insert("batch_size".into(), self.batch_size.to_string());
        m.insert("last_epoch_loss".into(), self.last_epoch_loss.to_string());
        if mid_epoch {
            // f64 too prints as the shortest decimal that parses back to the same value, so
            // the resumed epoch's mean loss is the unbroken one's to the bit.
            let p = &self.epoch_progress;
            m.insert("epoch_batches_done".into(), p.batches.to_string());
            m.insert("epoch_loss_sum".into(), p.loss_sum.to_string());
            m.insert("epoch_images".into(), p.images.to_string());
            m.insert("epoch_seconds".into(), p.seconds.to_string());
        }
        m
    }

    fn from_metadata(path: &Path, m: &BTreeMap<String, String>) -> Result<RunState, PretrainError> {
        let bad = |reason: String| PretrainError::IncompatibleRun {
            path: path.to_path_buf(),
            reason,
        };
        let format = m.get("format").map(String::as_str);
        if format != Some(FORMAT) && format != Some(FORMAT_MID_EPOCH) {
            return Err(bad(format!(
                "not a pretraining checkpoint (metadata `format` is {format:?}, expected \
                 {FORMAT:?} or {FORMAT_MID_EPOCH:?})"
            )));
        }
        fn field<T: std::str::FromStr>(
            m: &BTreeMap<String, String>,
            key: &str,
        ) -> Result<T, String> {
            let v = m
                .get(key)
                .ok_or_else(|| format!("metadata lacks `{key}`"))?;
            v.parse()
                .map_err(|_| format!("metadata `{key}` = {v:?} does not parse"))
        }
        /// A progress field: absent in a checkpoint at an epoch boundary.
        fn progress<T: std::str::FromStr + Default>(
            m: &BTreeMap<String, String>,
            key: &str,
        ) -> Result<T, String> {
            if m.contains_key(key) {
                field(m, key)
            } else {
                Ok(T::default())
            }
        }
        let state = (|| {
            Ok::<_, String>(RunState {
                epochs_done: field(m, "epochs_done")?,
                global_step: field(m, "global_step")?,
                seed: field(m, "seed")?,
                temperature: field(m, "temperature")?,
                batch_size: field(m, "batch_size")?,
                last_epoch_loss: field(m, "last_epoch_loss")?,
                epoch_progress: EpochProgress {
                    batches: progress(m, "epoch_batches_done")?,
                    loss_sum: progress(m, "epoch_loss_sum")?,
                    images: progress(m, "epoch_images")?,
                    seconds: progress(m, "epoch_seconds")?,
                },
            })
        })();
        state.map_err(bad)
    }
}

/// The checkpoint path inside `run_dir`.
pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_FILE)
}

/// Writes model, optimizer and `state` to `run_dir/checkpoint.safetensors`, atomically;
/// returns the path.
pub fn save_checkpoint(
    run_dir: &Path,
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    state: &RunState,
) -> Result<PathBuf, PretrainError> {
    std::fs::create_dir_all(run_dir).map_err(|source| PretrainError::RunDir {
        dir: run_dir.to_path_buf(),
        source,
    })?;
    let path = checkpoint_path(run_dir);
    nn_ckpt::save(&path, model, Some(optimizer), &state.to_metadata())?;
    Ok(path)
}

/// Reads `run_dir/checkpoint.safetensors` and, if every key fits, loads it into `model` and
/// `optimizer`; returns the recorded [`RunState`]. Nothing is changed on error.
pub fn load_checkpoint(
    run_dir: &Path,
    model: &dyn Module,
    optimizer: &mut dyn Optimizer,
) -> Result<RunState, PretrainError> {
    load_checkpoint_of_rank0(run_dir, model, optimizer, &Solo)
}

/// [`load_checkpoint`] on every rank of `group`, from the file of rank 0 (which reads it and
/// broadcasts its bytes: the other ranks need no copy of the run directory). Every rank
/// returns the same result; the others' error when rank 0 cannot read it says so.
pub fn load_checkpoint_of_rank0(
    run_dir: &Path,
    model: &dyn Module,
    optimizer: &mut dyn Optimizer,
    group: &dyn Collective,
) -> Result<RunState, PretrainError> {
    let path = checkpoint_path(run_dir);
    let mut bytes = Vec::new();
    let mut read_error = None;
    if group.rank() == 0 {
        if !path.is_file() {
            read_error = Some(PretrainError::NoCheckpoint {
                dir: run_dir.to_path_buf(),
            });
        } else {
            match std::fs::read(&path) {
                Ok(read) => bytes = read,
                Err(source) => {
                    let path = path.clone();
                    read_error = Some(CheckpointError::Io { path, source }.into());
                }
            }
        }
    }
    group.broadcast_bytes(&mut bytes);
    if bytes.is_empty() {
        return Err(read_error.unwrap_or_else(|| {
            PretrainError::Ranks(format!("rank 0 could not read {}", path.display()))
        }));
    }
    let ckpt = nn_ckpt::Checkpoint::parse(path.clone(), &bytes)?;
    let state = RunState::from_metadata(&path, ckpt.metadata())?;
    ckpt.load_into(model, Some(optimizer), &LoadOptions::strict())?;
    Ok(state)
}

/// Reads only the [`RunState`] of the checkpoint in `run_dir`, if there is one.
pub fn read_run_state(run_dir: &Path) -> Result<Option<RunState>, PretrainError> {
    let path = checkpoint_path(run_dir);
    if !path.is_file() {
        return Ok(None);
    }
    let ckpt = nn_ckpt::Checkpoint::read(&path)?;
    RunState::from_metadata(&path, ckpt.metadata()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_epoch_boundary() -> RunState {
        RunState {
            epochs_done: 3,
            global_step: 300,
            seed: 7,
            temperature: 0.5,
            batch_size: 128,
            last_epoch_loss: 4.25,
            epoch_progress: EpochProgress::default(),
        }
    }

    fn read_back(m: &BTreeMap<String, String>) -> Result<RunState, PretrainError> {
        RunState::from_metadata(Path::new("checkpoint.safetensors"), m)
    }

    #[test]
    fn a_checkpoint_at_an_epoch_boundary_is_written_as_before_mid_epoch_ones() {
        let state = at_epoch_boundary();
        let m = state.to_metadata();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        let v1 = [
            "batch_size",
            "epochs_done",
            "format",
            "global_step",
            "last_epoch_loss",
            "seed",
            "temperature",
        ];
        assert_eq!(keys, v1);
        assert_eq!(m["format"], FORMAT);
        assert_eq!(read_back(&m).unwrap(), state);
    }

    #[test]
    fn a_checkpoint_inside_an_epoch_reads_back_to_the_bit() {
        let state = RunState {
            global_step: 317,
            epoch_progress: EpochProgress {
                batches: 17,
                loss_sum: 0.1 + 0.2 + 71.123_456_789_012_3,
                images: 17 * 128,
                seconds: 612.000_000_1,
            },
            ..at_epoch_boundary()
        };
        let m = state.to_metadata();
        assert_eq!(m["format"], FORMAT_MID_EPOCH);
        let read = read_back(&m).unwrap();
        assert_eq!(read, state);
        let (a, b) = (read.epoch_progress.loss_sum, state.epoch_progress.loss_sum);
        assert_eq!(a.to_bits(), b.to_bits());
    }

    #[test]
    fn another_format_or_a_malformed_progress_field_is_refused() {
        let mut m = at_epoch_boundary().to_metadata();
        m.insert("format".into(), "simclr-pretrain-v3".into());
        let err = read_back(&m).unwrap_err().to_string();
        assert!(err.contains("simclr-pretrain-v3"), "{err}");
        let mut m = at_epoch_boundary().to_metadata();
        m.insert("epoch_batches_done".into(), "seventeen".into());
        let err = read_back(&m).unwrap_err().to_string();
        assert!(err.contains("epoch_batches_done"), "{err}");
    }
}
