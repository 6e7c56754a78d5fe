//! The SimCLR pretraining loop.
//!
//! One step takes a two-view batch from the loader — `[2B, C, H, W]`, rows `i` and `i + B`
//! the two views of image `i` — and runs both views through encoder and head **as one batch**
//! (one forward, so BatchNorm sees all `2B` images, as in the SimCLR paper), computes
//! [`nt_xent`] on the `[2B, D]` projections, backpropagates, sets the learning rate the
//! schedule gives for this global step, and lets the optimizer update the weights. The loader
//! prepares the next batch on its own thread meanwhile.
//!
//! Everything a caller shows or stores — per-step loss, learning rate, images/s (source images,
//! each passing through the encoder twice), time spent waiting for data, per-epoch means, the
//! checkpoint written — is handed to a callback as a [`TrainEvent`] (serde-serialisable, one
//! JSON object per event for a `metrics.jsonl`); progress bars live in the caller.
//!
//! A callback may evaluate the model between epochs (e.g. [`crate::knn_eval`] on
//! `&*model.encoder` at each [`TrainEvent::Epoch`]): the loop puts it back in training mode at
//! the start of every epoch.
//!
//! At the end of every epoch, when a run directory is given, the model, the optimizer and the
//! run's position are saved (see [`crate::checkpoint`]); [`resume`] continues from there and
//! reproduces an unbroken run bit for bit. A NaN or infinite loss stops the run *before* that
//! step's update with [`PretrainError::NonFiniteLoss`] naming the step, and an update that
//! leaves a weight NaN or infinite stops it with [`PretrainError::NonFiniteWeights`] naming
//! the step and the parameter; either way no checkpoint is written from the bad weights and
//! the one of the last completed epoch stays as it was.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use simclr_data::Loader;
use simclr_nn::{Module, Optimizer, Schedule};
use simclr_tensor::Tensor;

use crate::checkpoint::{checkpoint_path, load_checkpoint, save_checkpoint, RunState};
use crate::error::PretrainError;
use crate::model::SimClr;
use crate::nt_xent::nt_xent;

/// How to pretrain.
#[derive(Clone, Debug)]
pub struct PretrainConfig {
    /// Total epochs of the run (a resumed run continues up to this many).
    pub epochs: usize,
    /// NT-Xent temperature τ (the report: 0.5).
    pub temperature: f32,
    /// Learning rate per global step (e.g. `Schedule::Constant(1e-3)` as the report, or
    /// `Schedule::warmup_cosine`). Build it for the whole run, so a resumed run sees the same.
    pub schedule: Schedule,
    /// Where `checkpoint.safetensors` is written after every epoch (none if `None`).
    pub run_dir: Option<PathBuf>,
    /// Stop each epoch after this many steps (quick runs and tests); `None` = whole epochs.
    pub max_steps_per_epoch: Option<usize>,
}

impl PretrainConfig {
    /// The report's settings: τ = 0.5, constant lr 1e-3, no checkpoints.
    pub fn report(epochs: usize) -> PretrainConfig {
        PretrainConfig {
            epochs,
            temperature: 0.5,
            schedule: Schedule::Constant(1e-3),
            run_dir: None,
            max_steps_per_epoch: None,
        }
    }
}

/// What one optimizer step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// Global step index (0-based; the schedule's position).
    pub step: usize,
    /// NT-Xent loss of the batch.
    pub loss: f32,
    /// Learning rate used.
    pub lr: f32,
    /// Source images in the batch (`B`; the encoder saw `2B` views).
    pub images: usize,
    /// Wall time of forward, backward and update.
    pub seconds: f64,
    /// Time spent waiting for the loader before this step.
    pub data_wait_seconds: f64,
    /// `images / (seconds + data_wait_seconds)`.
    pub images_per_s: f64,
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Steps taken.
    pub steps: usize,
    /// Mean loss over the epoch's steps.
    pub mean_loss: f32,
    /// Source images seen.
    pub images: usize,
    /// Wall time of the epoch (checkpoint excluded).
    pub seconds: f64,
    /// `images / seconds`.
    pub images_per_s: f64,
    /// The checkpoint written at its end, if any.
    pub checkpoint: Option<PathBuf>,
}

/// Progress of a pretraining run, reported to the caller's callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// The loop is about to run epochs `start_epoch..epochs`.
    Started {
        /// First epoch to run (non-zero when resumed).
        start_epoch: usize,
        /// Total epochs of the run.
        epochs: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Global step at the start.
        global_step: usize,
        /// Whether the run continues from a checkpoint.
        resumed: bool,
    },
    /// One optimizer step.
    Step(StepStats),
    /// One epoch (after its checkpoint was written).
    Epoch(EpochStats),
}

/// The outcome of [`pretrain`] / [`resume`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PretrainSummary {
    /// The epochs run by this call (not those before a resume).
    pub epochs: Vec<EpochStats>,
    /// Where the run stands now.
    pub state: RunState,
    /// Wall time of this call.
    pub seconds: f64,
}

/// Pretrains `model` from its current weights for `cfg.epochs` epochs of `loader` (which must
/// yield two-view batches), updating it with `optimizer` (built over `model.parameters()`).
pub fn pretrain(
    model: &SimClr,
    optimizer: &mut dyn Optimizer,
    loader: &Loader,
    cfg: &PretrainConfig,
    on_event: impl FnMut(&TrainEvent),
) -> Result<PretrainSummary, PretrainError> {
    let start = RunState {
        epochs_done: 0,
        global_step: 0,
        seed: loader.augmenter().seed,
        temperature: cfg.temperature,
        batch_size: loader.config().batch_size,
        last_epoch_loss: f32::NAN,
    };
    run(model, optimizer, loader, cfg, start, false, on_event)
}

/// Loads the checkpoint in `cfg.run_dir` into `model` and `optimizer` (built exactly as for
/// the original run) and continues the run up to `cfg.epochs`. The loader must have the
/// original seed and batch size, and `cfg` the original temperature and schedule.
pub fn resume(
    model: &SimClr,
    optimizer: &mut dyn Optimizer,
    loader: &Loader,
    cfg: &PretrainConfig,
    on_event: impl FnMut(&TrainEvent),
) -> Result<PretrainSummary, PretrainError> {
    let dir = cfg
        .run_dir
        .as_deref()
        .ok_or_else(|| PretrainError::NoCheckpoint {
            dir: PathBuf::from("<no run directory given>"),
        })?;
    let state = load_checkpoint(dir, model, optimizer)?;
    let mismatch = |reason: String| PretrainError::IncompatibleRun {
        path: checkpoint_path(dir),
        reason,
    };
    if state.seed != loader.augmenter().seed {
        return Err(mismatch(format!(
            "it was made with seed {}, the loader has seed {}",
            state.seed,
            loader.augmenter().seed
        )));
    }
    if state.batch_size != loader.config().batch_size {
        return Err(mismatch(format!(
            "it was made with batch size {}, the loader has {}",
            state.batch_size,
            loader.config().batch_size
        )));
    }
    if state.temperature != cfg.temperature {
        return Err(mismatch(format!(
            "it was made with temperature {}, the config has {}",
            state.temperature, cfg.temperature
        )));
    }
    run(model, optimizer, loader, cfg, state, true, on_event)
}

fn run(
    model: &SimClr,
    optimizer: &mut dyn Optimizer,
    loader: &Loader,
    cfg: &PretrainConfig,
    mut state: RunState,
    resumed: bool,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<PretrainSummary, PretrainError> {
    let started = Instant::now();
    let lcfg = loader.config();
    if lcfg.views != 2 {
        return Err(PretrainError::NoBatches(format!(
            "the loader makes {} view(s) per image, pretraining needs 2",
            lcfg.views
        )));
    }
    let steps_per_epoch = cfg
        .max_steps_per_epoch
        .map_or(loader.len(), |m| m.min(loader.len()));
    if steps_per_epoch == 0 || lcfg.batch_size < 2 {
        return Err(PretrainError::NoBatches(format!(
            "{} images with batch size {} give {} batch(es)",
            loader.set().len(),
            lcfg.batch_size,
            loader.len()
        )));
    }
    on_event(&TrainEvent::Started {
        start_epoch: state.epochs_done,
        epochs: cfg.epochs,
        steps_per_epoch,
        global_step: state.global_step,
        resumed,
    });
    let mut last_good = cfg
        .run_dir
        .as_deref()
        .map(checkpoint_path)
        .filter(|p| resumed && p.is_file());
    let mut epochs = Vec::new();
    for epoch in state.epochs_done..cfg.epochs {
        // Every epoch, since a callback may have evaluated the encoder (eval mode) in between.
        model.train();
        let epoch_start = Instant::now();
        let (mut loss_sum, mut images, mut steps) = (0.0f64, 0usize, 0usize);
        let mut wait = Instant::now();
        for (batch_idx, batch) in loader.epoch(epoch as u64).take(steps_per_epoch).enumerate() {
            let data_wait_seconds = wait.elapsed().as_secs_f64();
            let step_start = Instant::now();
            let b = batch.size;
            let dims = batch.dims();
            let x = Tensor::from_vec(batch.data, &dims);
            let lr = cfg.schedule.apply(optimizer, state.global_step);
            optimizer.zero_grad();
            let loss = nt_xent(&model.forward(&x), cfg.temperature);
            let value = loss.item();
            if !value.is_finite() {
                return Err(PretrainError::NonFiniteLoss {
                    step: state.global_step,
                    epoch,
                    batch: batch_idx,
                    loss: value,
                    last_good,
                });
            }
            loss.backward();
            optimizer.step();
            if let Some(parameter) = first_non_finite(model) {
                return Err(PretrainError::NonFiniteWeights {
                    step: state.global_step,
                    epoch,
                    batch: batch_idx,
                    parameter,
                    last_good,
                });
            }
            let seconds = step_start.elapsed().as_secs_f64();
            on_event(&TrainEvent::Step(StepStats {
                epoch,
                batch: batch_idx,
                batches: steps_per_epoch,
                step: state.global_step,
                loss: value,
                lr,
                images: b,
                seconds,
                data_wait_seconds,
                images_per_s: b as f64 / (seconds + data_wait_seconds).max(1e-12),
            }));
            state.global_step += 1;
            loss_sum += value as f64;
            images += b;
            steps += 1;
            wait = Instant::now();
        }
        let seconds = epoch_start.elapsed().as_secs_f64();
        state.epochs_done = epoch + 1;
        state.last_epoch_loss = (loss_sum / steps.max(1) as f64) as f32;
        let checkpoint = match cfg.run_dir.as_deref() {
            Some(dir) => Some(save_checkpoint(dir, model, optimizer, &state)?),
            None => None,
        };
        last_good = checkpoint.clone().or(last_good);
        let stats = EpochStats {
            epoch,
            steps,
            mean_loss: state.last_epoch_loss,
            images,
            seconds,
            images_per_s: images as f64 / seconds.max(1e-12),
            checkpoint,
        };
        on_event(&TrainEvent::Epoch(stats.clone()));
        epochs.push(stats);
    }
    Ok(PretrainSummary {
        epochs,
        state,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The name of the first parameter of `model` holding a NaN or an infinity, if any (one read
/// of every weight: a fraction of a percent of a step).
fn first_non_finite(model: &SimClr) -> Option<String> {
    model
        .named_parameters()
        .into_iter()
        .find(|(_, p)| !p.data().iter().all(|v| v.is_finite()))
        .map(|(name, _)| name)
}
