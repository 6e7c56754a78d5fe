//! The SimCLR pretraining loop.
//!
//! One step takes a two-view batch from the loader — `[2B, C, H, W]`, rows `i` and `i + B`
//! the two views of image `i` — and runs both views through encoder and head **as one batch**
//! (one forward, so BatchNorm sees all `2B` images, as in the SimCLR paper), computes
//! [`nt_xent`](crate::nt_xent()) on the `[2B, D]` projections, backpropagates, sets the
//! learning rate the schedule gives for this global step, and lets the optimizer update the
//! weights. The loader prepares the next batch on its own thread meanwhile.
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
//! When a run directory is given, the model, the optimizer and the run's position are saved
//! (see [`crate::checkpoint`]) at the end of every epoch and — with
//! [`PretrainConfig::checkpoint_every`] — inside epochs too, after the first step that
//! completes once that much wall time has passed since the last checkpoint (reported as
//! [`TrainEvent::Checkpoint`]). A checkpoint inside an epoch also records the batches of the
//! epoch done and the partial sums of its statistics. [`resume`] continues from the last
//! checkpoint — at the next batch of the epoch in progress, the loader starting the epoch there
//! without making the batches before it ([`Loader::epoch_from`]) — and reproduces an unbroken
//! run bit for bit, however often and wherever it was checkpointed: saving reads the weights
//! and changes nothing. A run killed hard thus loses at most the interval's work.
//!
//! With [`PretrainConfig::group`] of several ranks the loop is one rank of a data-parallel
//! run (see [`crate::distributed`]): the loader makes this rank's shard of every batch, the
//! loss gathers every rank's projections, the gradients are summed over the ranks before the
//! update, a fresh run starts from rank 0's weights, a resumed one from rank 0's checkpoint,
//! and only rank 0 writes checkpoints. Every rank reports the same losses; the images counted
//! are the whole batch's.
//!
//! A NaN or infinite loss stops the run *before* that step's update with
//! [`PretrainError::NonFiniteLoss`] naming the step, and an update that leaves a weight NaN or
//! infinite stops it with [`PretrainError::NonFiniteWeights`] naming the step and the
//! parameter; either way no checkpoint is written from the bad weights and the last one
//! written stays as it was.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use simclr_data::{Batch, Loader, Shard};
use simclr_nn::{Module, Optimizer, Schedule};
use simclr_tensor::{Collective, Solo, Tensor};

use crate::checkpoint::{
    checkpoint_path, load_checkpoint_of_rank0, save_checkpoint, EpochProgress, RunState,
};
use crate::distributed::{broadcast_state, gathered_nt_xent, sum_gradients, SyncedBatchNorm};
use crate::error::PretrainError;
use crate::model::SimClr;

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
    /// With a `run_dir`, also checkpoint inside epochs: after the first step that ends at
    /// least this long after the last checkpoint (or the start of this call). `None`: at the
    /// ends of epochs only; `Some(Duration::ZERO)`: after every step. It does not change what
    /// the run computes, so a run may be resumed with another interval.
    pub checkpoint_every: Option<Duration>,
    /// The ranks of a data-parallel run this process is one of ([`Solo`]: a run of its own).
    /// The loader must make this rank's [`Shard`] of the global batch.
    pub group: Rc<dyn Collective>,
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
            checkpoint_every: None,
            group: Rc::new(Solo),
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
    /// Source images in the batch (`B`, over all ranks; the encoder saw `2B` views).
    pub images: usize,
    /// Wall time of forward, backward and update.
    pub seconds: f64,
    /// Time spent waiting for the loader before this step.
    pub data_wait_seconds: f64,
    /// Of `seconds`, the time spent summing the gradients over the ranks (0 in a run of one
    /// process; absent from logs written before distributed runs).
    #[serde(default)]
    pub all_reduce_seconds: f64,
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

/// A checkpoint written inside an epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MidEpochCheckpoint {
    /// Epoch (0-based) in progress.
    pub epoch: usize,
    /// Batches of that epoch done (a resume starts at this batch).
    pub batches_done: usize,
    /// Optimizer steps of the run done.
    pub global_step: usize,
    /// The file written.
    pub path: PathBuf,
    /// Wall time of the write (not counted in the epoch's time).
    pub seconds: f64,
}

/// Progress of a pretraining run, reported to the caller's callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// The loop is about to run epochs `start_epoch..epochs`, the first from batch
    /// `start_batch` on.
    Started {
        /// First epoch to run (non-zero when resumed).
        start_epoch: usize,
        /// First batch of `start_epoch` to run (non-zero when resumed from a checkpoint
        /// written inside that epoch; absent from logs written before such checkpoints).
        #[serde(default)]
        start_batch: usize,
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
    /// One epoch (after its checkpoint was written). The statistics of an epoch resumed
    /// inside cover the whole epoch: its batches before the checkpoint, as recorded there, and
    /// those after.
    Epoch(EpochStats),
    /// A checkpoint written inside an epoch, after the step of the same `global_step - 1`.
    /// Steps logged after it are redone if the run is killed before the next checkpoint.
    Checkpoint(MidEpochCheckpoint),
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

/// Pretrains `model` from its current weights (rank 0's, in a data-parallel run) for
/// `cfg.epochs` epochs of `loader` (which must yield two-view batches), updating it with
/// `optimizer` (built over `model.parameters()`).
pub fn pretrain(
    model: &SimClr,
    optimizer: &mut dyn Optimizer,
    loader: &Loader,
    cfg: &PretrainConfig,
    on_event: impl FnMut(&TrainEvent),
) -> Result<PretrainSummary, PretrainError> {
    broadcast_state(model, &*cfg.group);
    let start = RunState {
        epochs_done: 0,
        global_step: 0,
        seed: loader.augmenter().seed,
        temperature: cfg.temperature,
        batch_size: loader.config().batch_size,
        last_epoch_loss: f32::NAN,
        epoch_progress: EpochProgress::default(),
    };
    run(model, optimizer, loader, cfg, start, false, on_event)
}

/// Loads the checkpoint in `cfg.run_dir` into `model` and `optimizer` (built exactly as for
/// the original run) and continues the run up to `cfg.epochs`, from the batch after the
/// checkpoint (inside an epoch if it was written there). The loader must have the original
/// images, seed and batch size, and `cfg` the original temperature and schedule.
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
    let state = load_checkpoint_of_rank0(dir, model, optimizer, &*cfg.group)?;
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
    if state.epoch_progress.batches > loader.len() {
        return Err(mismatch(format!(
            "it was written after batch {} of an epoch, the loader has {} batches an epoch",
            state.epoch_progress.batches,
            loader.len()
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
    let steps_per_epoch = steps_per_epoch(loader, cfg)?;
    let ranks = cfg.group.ranks();
    let _synced = SyncedBatchNorm::new(model, &cfg.group);
    on_event(&TrainEvent::Started {
        start_epoch: state.epochs_done,
        start_batch: state.epoch_progress.batches.min(steps_per_epoch),
        epochs: cfg.epochs,
        steps_per_epoch,
        global_step: state.global_step,
        resumed,
    });
    let mut checkpoints = Checkpoints::new(cfg, resumed);
    let mut epochs = Vec::new();
    for epoch in state.epochs_done..cfg.epochs {
        // Every epoch, since a callback may have evaluated the encoder (eval mode) in between.
        model.train();
        // Where this epoch starts: its beginning, or where the checkpoint resumed from left it.
        let first = state.epoch_progress.batches.min(steps_per_epoch);
        let mut work_started = Instant::now();
        let mut wait = Instant::now();
        let batches = loader.epoch_from(epoch as u64, first);
        for (batch_idx, batch) in (first..steps_per_epoch).zip(batches) {
            let data_wait_seconds = wait.elapsed().as_secs_f64();
            let step_start = Instant::now();
            let images = batch.size * ranks;
            let at = Position {
                epoch,
                batch: batch_idx,
                step: state.global_step,
            };
            let (loss, lr, all_reduce_seconds) =
                train_step(model, optimizer, cfg, batch, at, &checkpoints.last_good)?;
            let seconds = step_start.elapsed().as_secs_f64();
            on_event(&TrainEvent::Step(StepStats {
                epoch,
                batch: batch_idx,
                batches: steps_per_epoch,
                step: state.global_step,
                loss,
                lr,
                images,
                seconds,
                data_wait_seconds,
                all_reduce_seconds,
                images_per_s: images as f64 / (seconds + data_wait_seconds).max(1e-12),
            }));
            state.global_step += 1;
            let progress = &mut state.epoch_progress;
            progress.batches += 1;
            progress.loss_sum += loss as f64;
            progress.images += images;
            if batch_idx + 1 < steps_per_epoch && checkpoints.due() {
                // The write is not the epoch's work: its time goes to the event, not the epoch.
                state.epoch_progress.seconds += work_started.elapsed().as_secs_f64();
                if let Some(written) = checkpoints.save_mid_epoch(model, optimizer, &state)? {
                    on_event(&TrainEvent::Checkpoint(written));
                }
                work_started = Instant::now();
            }
            wait = Instant::now();
        }
        let EpochProgress {
            batches: steps,
            loss_sum,
            images,
            seconds,
        } = std::mem::take(&mut state.epoch_progress);
        let seconds = seconds + work_started.elapsed().as_secs_f64();
        state.epochs_done = epoch + 1;
        state.last_epoch_loss = (loss_sum / steps.max(1) as f64) as f32;
        let checkpoint = checkpoints.save(model, optimizer, &state)?;
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

/// The steps of one epoch: the loader's batches, or fewer with `cfg.max_steps_per_epoch`; an
/// error if the loader cannot make two-view batches of at least two images.
fn steps_per_epoch(loader: &Loader, cfg: &PretrainConfig) -> Result<usize, PretrainError> {
    let lcfg = loader.config();
    let (rank, ranks) = (cfg.group.rank(), cfg.group.ranks());
    if lcfg.shard
        != (Shard {
            index: rank,
            count: ranks,
        })
    {
        return Err(PretrainError::Ranks(format!(
            "rank {rank} of {ranks} has a loader making shard {} of {}",
            lcfg.shard.index, lcfg.shard.count
        )));
    }
    if lcfg.views != 2 {
        return Err(PretrainError::NoBatches(format!(
            "the loader makes {} view(s) per image, pretraining needs 2",
            lcfg.views
        )));
    }
    let steps = cfg
        .max_steps_per_epoch
        .map_or(loader.len(), |m| m.min(loader.len()));
    if steps == 0 || lcfg.batch_size < 2 {
        return Err(PretrainError::NoBatches(format!(
            "{} images with batch size {} give {} batch(es)",
            loader.set().len(),
            lcfg.batch_size,
            loader.len()
        )));
    }
    Ok(steps)
}

/// Where a step stands in the run, for its error messages.
#[derive(Clone, Copy)]
struct Position {
    epoch: usize,
    batch: usize,
    step: usize,
}

/// One optimizer step on `batch` at the learning rate of step `at.step`; returns the batch's
/// loss, that rate and the seconds spent summing the gradients over the ranks. Stops before
/// the update on a non-finite loss and after it on non-finite weights, naming `last_good` as
/// the checkpoint to go back to.
fn train_step(
    model: &SimClr,
    optimizer: &mut dyn Optimizer,
    cfg: &PretrainConfig,
    batch: Batch,
    at: Position,
    last_good: &Option<PathBuf>,
) -> Result<(f32, f32, f64), PretrainError> {
    let dims = batch.dims();
    let x = Tensor::from_vec(batch.data, &dims);
    let lr = cfg.schedule.apply(optimizer, at.step);
    optimizer.zero_grad();
    let loss = gathered_nt_xent(&model.forward(&x), cfg.temperature, &*cfg.group);
    let value = loss.item();
    if !value.is_finite() {
        return Err(PretrainError::NonFiniteLoss {
            step: at.step,
            epoch: at.epoch,
            batch: at.batch,
            loss: value,
            last_good: last_good.clone(),
        });
    }
    loss.backward();
    let all_reduce = Instant::now();
    sum_gradients(&model.parameters(), &*cfg.group);
    let all_reduce_seconds = all_reduce.elapsed().as_secs_f64();
    optimizer.step();
    if let Some(parameter) = first_non_finite(model) {
        return Err(PretrainError::NonFiniteWeights {
            step: at.step,
            epoch: at.epoch,
            batch: at.batch,
            parameter,
            last_good: last_good.clone(),
        });
    }
    Ok((value, lr, all_reduce_seconds))
}

/// The run's checkpoints: where they go, when the next one inside an epoch is due, and the
/// last one written whole (the one an error sends the user back to).
struct Checkpoints<'a> {
    run_dir: Option<&'a Path>,
    every: Option<Duration>,
    last_written: Instant,
    last_good: Option<PathBuf>,
}

impl<'a> Checkpoints<'a> {
    /// The checkpoints of `cfg` (none but rank 0's in a data-parallel run); a resumed run
    /// starts from the one already in its directory.
    fn new(cfg: &'a PretrainConfig, resumed: bool) -> Checkpoints<'a> {
        let run_dir = cfg.run_dir.as_deref().filter(|_| cfg.group.rank() == 0);
        Checkpoints {
            run_dir,
            every: cfg.checkpoint_every,
            last_written: Instant::now(),
            last_good: run_dir
                .map(checkpoint_path)
                .filter(|p| resumed && p.is_file()),
        }
    }

    /// Whether a checkpoint inside the epoch is due now.
    fn due(&self) -> bool {
        self.run_dir.is_some() && self.every.is_some_and(|d| self.last_written.elapsed() >= d)
    }

    /// Writes `state` with the model and the optimizer, if the run has a directory; returns
    /// the file written.
    fn save(
        &mut self,
        model: &SimClr,
        optimizer: &dyn Optimizer,
        state: &RunState,
    ) -> Result<Option<PathBuf>, PretrainError> {
        let Some(dir) = self.run_dir else {
            return Ok(None);
        };
        let path = save_checkpoint(dir, model, optimizer, state)?;
        self.last_written = Instant::now();
        self.last_good = Some(path.clone());
        Ok(Some(path))
    }

    /// [`Checkpoints::save`] inside an epoch: `state` records the position in it.
    fn save_mid_epoch(
        &mut self,
        model: &SimClr,
        optimizer: &dyn Optimizer,
        state: &RunState,
    ) -> Result<Option<MidEpochCheckpoint>, PretrainError> {
        let started = Instant::now();
        let written = self.save(model, optimizer, state)?;
        Ok(written.map(|path| MidEpochCheckpoint {
            epoch: state.epochs_done,
            batches_done: state.epoch_progress.batches,
            global_step: state.global_step,
            path,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }
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
