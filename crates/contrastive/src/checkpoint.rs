//! Run checkpoints: what a pretraining run saves at the end of every epoch so that a run
//! killed at any moment resumes where it stopped and ends bit-identical to an unbroken one.
//!
//! A run is a deterministic function of its seed: the model's initial weights come from it,
//! and the loader's order and augmentations depend only on `(seed, epoch, image)` (see
//! `simclr_data::loader`), so there is no data-RNG state to store — only which epoch comes
//! next. What changes during training, and is therefore saved, is:
//!
//! * the model's parameters and buffers (`encoder.*`, `head.*`);
//! * the optimizer's state (`optimizer.*`: moments, per-parameter step counts, current lr);
//! * in the safetensors metadata: the number of completed epochs, the global step (the
//!   position in the learning-rate schedule), the seed, the temperature, the batch size and
//!   the last epoch's mean loss.
//!
//! The file `checkpoint.safetensors` in the run directory is replaced atomically (temp file +
//! rename, by `simclr_nn::checkpoint`), so it always holds the last *completed* epoch; a crash
//! mid-write leaves the previous one. Resuming checks that seed, temperature and batch size
//! match, since a different value would silently make a different run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use simclr_nn::checkpoint::{self as nn_ckpt, LoadOptions};
use simclr_nn::{Module, Optimizer};

use crate::error::PretrainError;

/// File name of the last checkpoint inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Format tag stored in the metadata.
pub const FORMAT: &str = "simclr-pretrain-v1";

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
}

impl RunState {
    fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("format".into(), FORMAT.into());
        m.insert("epochs_done".into(), self.epochs_done.to_string());
        m.insert("global_step".into(), self.global_step.to_string());
        m.insert("seed".into(), self.seed.to_string());
        // f32 prints as the shortest decimal that parses back to the same value.
        m.insert("temperature".into(), self.temperature.to_string());
        m.insert("batch_size".into(), self.batch_size.to_string());
        m.insert("last_epoch_loss".into(), self.last_epoch_loss.to_string());
        m
    }

    fn from_metadata(path: &Path, m: &BTreeMap<String, String>) -> Result<RunState, PretrainError> {
        let bad = |reason: String| PretrainError::IncompatibleRun {
            path: path.to_path_buf(),
            reason,
        };
        if m.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a pretraining checkpoint (metadata `format` is {:?}, expected {FORMAT:?})",
                m.get("format")
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
        let state = (|| {
            Ok::<_, String>(RunState {
                epochs_done: field(m, "epochs_done")?,
                global_step: field(m, "global_step")?,
                seed: field(m, "seed")?,
                temperature: field(m, "temperature")?,
                batch_size: field(m, "batch_size")?,
                last_epoch_loss: field(m, "last_epoch_loss")?,
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
    let path = checkpoint_path(run_dir);
    if !path.is_file() {
        return Err(PretrainError::NoCheckpoint {
            dir: run_dir.to_path_buf(),
        });
    }
    let ckpt = nn_ckpt::Checkpoint::read(&path)?;
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
