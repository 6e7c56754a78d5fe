//! Pretraining on a tiny model and tiny synthetic data: a run stopped after an epoch, or killed
//! in the middle of one, resumes to the same weights — bit for bit — as an unbroken run, from
//! the last epoch's checkpoint or from one written inside the epoch; a NaN loss stops the run
//! naming the step and keeps the last good checkpoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use simclr_contrastive::{
    pretrain, read_run_state, resume, EpochStats, PretrainConfig, PretrainError, PretrainSummary,
    RunState, SimClr, TrainEvent,
};
use simclr_data::{mnist, Augmenter, DatasetKind, ImageSet, Loader, LoaderConfig, Recipe};
use simclr_nn::{Adam, AdamConfig, Flatten, Linear, Module, Optimizer, ProjectionHead, ReLU};
use simclr_nn::{Schedule, Sequential};

const SEED: u64 = 17;
const EPOCHS: usize = 3;

/// 48 random 28×28 "digits" (blobs of random intensity) with random labels.
fn tiny_set() -> ImageSet {
    let mut rng = StdRng::seed_from_u64(99);
    let n = 48;
    let mut images = vec![0u8; n * 784];
    for img in images.chunks_mut(784) {
        let (cy, cx) = (rng.gen_range(6..22), rng.gen_range(6..22));
        for y in 0..28 {
            for x in 0..28 {
                let d2 = (y as i32 - cy).pow(2) + (x as i32 - cx).pow(2);
                if d2 < 30 {
                    img[y * 28 + x] = rng.gen_range(128..=255);
                }
            }
        }
    }
    let labels = (0..n).map(|_| rng.gen_range(0..10)).collect();
    ImageSet::new(images, labels, 1, 28, 28, mnist::class_names()).unwrap()
}

/// Flatten → Linear(784→16) → ReLU, head 16→16→8, initialised from `init_seed`.
fn tiny_model(init_seed: u64) -> SimClr {
    let mut rng = StdRng::seed_from_u64(init_seed);
    let encoder = Sequential::new()
        .add(Flatten)
        .add(Linear::new(784, 16, &mut rng))
        .add(ReLU);
    SimClr::new(
        Box::new(encoder),
        16,
        ProjectionHead::new(16, 16, 8, &mut rng),
    )
}

fn loader(seed: u64) -> Loader {
    let aug = Augmenter::new(Recipe::Simclr, DatasetKind::Mnist, seed);
    Loader::new(tiny_set(), aug, LoaderConfig::two_views(12)).unwrap() // 4 steps per epoch
}

fn config(dir: &Path, epochs: usize) -> PretrainConfig {
    PretrainConfig {
        epochs,
        temperature: 0.5,
        // Warm-up then cosine over the whole 3-epoch run, so the schedule position matters.
        schedule: Schedule::warmup_cosine(3e-3, 3, EPOCHS * 4),
        run_dir: Some(dir.to_path_buf()),
        ..PretrainConfig::report(epochs)
    }
}

/// What one process of a run builds: the tiny model, initialised from a seed (a resumed run's
/// checkpoint overwrites it), and a fresh Adam over its parameters.
struct Trainer {
    model: SimClr,
    opt: Adam,
}

/// How a call of [`pretrain`] or [`resume`] ends.
type Outcome = Result<PretrainSummary, PretrainError>;

impl Trainer {
    fn new(init_seed: u64) -> Trainer {
        let model = tiny_model(init_seed);
        let opt = Adam::new(model.parameters(), AdamConfig::adam(3e-3));
        Trainer { model, opt }
    }

    /// [`pretrain`] on the tiny set augmented with `SEED`.
    fn pretrain(&mut self, cfg: &PretrainConfig, on_event: impl FnMut(&TrainEvent)) -> Outcome {
        pretrain(&self.model, &mut self.opt, &loader(SEED), cfg, on_event)
    }

    /// [`resume`] on the tiny set augmented with `SEED`.
    fn resume(&mut self, cfg: &PretrainConfig, on_event: impl FnMut(&TrainEvent)) -> Outcome {
        resume(&self.model, &mut self.opt, &loader(SEED), cfg, on_event)
    }

    /// Every value of the model and the optimizer, as bits.
    fn snapshot(&self) -> Vec<(String, Vec<u32>)> {
        let mut all = self.model.state_dict();
        all.extend(self.opt.state());
        all.into_iter()
            .map(|(n, t)| (n, t.to_vec().iter().map(|v| v.to_bits()).collect()))
            .collect()
    }
}

/// The bytes of the run checkpoint in `dir`.
fn checkpoint_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("checkpoint.safetensors")).unwrap()
}

/// The `(step, batch)` of each step reported in `events`.
fn steps(events: &[TrainEvent]) -> Vec<(usize, usize)> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step(s) => Some((s.step, s.batch)),
            _ => None,
        })
        .collect()
}

/// What an unbroken run leaves: its weights and optimizer state, its epochs' statistics and
/// its final checkpoint's bytes.
struct Unbroken {
    snapshot: Vec<(String, Vec<u32>)>,
    epochs: Vec<EpochStats>,
    checkpoint: Vec<u8>,
}

impl Unbroken {
    /// Asserts that `trainer` holds this run's weights and optimizer state, bit for bit;
    /// `resumed` says how it got there.
    fn assert_same_state(&self, trainer: &Trainer, resumed: &str) {
        let got = trainer.snapshot();
        assert_eq!(got.len(), self.snapshot.len(), "{resumed}");
        for ((name, a), (expected_name, b)) in got.iter().zip(&self.snapshot) {
            assert_eq!(name, expected_name, "{resumed}");
            assert!(
                a == b,
                "{resumed}: `{name}` differs from the unbroken run's"
            );
        }
    }
}

/// The whole `EPOCHS`-epoch run, unbroken, from the same seed as every other run here.
fn unbroken_run() -> Unbroken {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(SEED);
    let summary = trainer
        .pretrain(&config(dir.path(), EPOCHS), |_| {})
        .unwrap();
    assert_eq!(summary.epochs.len(), EPOCHS);
    assert_eq!(summary.state.global_step, EPOCHS * 4);
    Unbroken {
        snapshot: trainer.snapshot(),
        epochs: summary.epochs,
        checkpoint: checkpoint_bytes(dir.path()),
    }
}

/// A run of `cfg` from the start, killed when step `kill_at` is reported (so its last
/// checkpoint is at most the one after step `kill_at - 1`).
fn run_killed_at_step(cfg: &PretrainConfig, kill_at: usize) {
    let killed = catch_unwind(AssertUnwindSafe(|| {
        Trainer::new(SEED).pretrain(cfg, |e| {
            if matches!(e, TrainEvent::Step(s) if s.step == kill_at) {
                panic!("killed at step {kill_at}");
            }
        })
    }));
    assert!(killed.is_err(), "the run was not killed at step {kill_at}");
}

/// Asserts what a run stopped by `err` in `dir` left: a message that says `says` and names
/// the checkpoint kept, which is still the one of the end of epoch 0 (after step 4). Returns
/// that checkpoint's state.
fn assert_kept_epoch_0s_checkpoint(err: &PretrainError, says: &str, dir: &Path) -> RunState {
    let message = err.to_string();
    assert!(message.contains(says), "{message}");
    assert!(message.contains("checkpoint.safetensors"), "{message}");
    let state = read_run_state(dir).unwrap().unwrap();
    assert_eq!((state.epochs_done, state.global_step), (1, 4));
    state
}

#[test]
fn stopped_after_epoch_one_resumes_bit_identically() {
    let expected = unbroken_run();
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(SEED)
        .pretrain(&config(dir.path(), 1), |_| {})
        .unwrap();
    let state = read_run_state(dir.path()).unwrap().unwrap();
    assert_eq!(
        (state.epochs_done, state.global_step, state.seed),
        (1, 4, SEED)
    );

    // A fresh process: the model is rebuilt (here even from another init seed — the
    // checkpoint overwrites it), the optimizer is new.
    let mut trainer = Trainer::new(12345);
    let mut events = Vec::new();
    let summary = trainer
        .resume(&config(dir.path(), EPOCHS), |e| events.push(e.clone()))
        .unwrap();
    assert!(matches!(
        events[0],
        TrainEvent::Started {
            start_epoch: 1,
            global_step: 4,
            resumed: true,
            ..
        }
    ));
    assert_eq!(summary.epochs.len(), EPOCHS - 1);
    let remaining: Vec<(usize, usize)> = (4..12).map(|s| (s, s % 4)).collect();
    assert_eq!(steps(&events), remaining);
    expected.assert_same_state(&trainer, "resumed after epoch 1");
}

#[test]
fn killed_mid_epoch_resumes_bit_identically() {
    let expected = unbroken_run();
    let dir = tempfile::tempdir().unwrap();
    // Killed at step 9 (epoch 2, batch 1), with checkpoints at the ends of epochs only.
    run_killed_at_step(&config(dir.path(), EPOCHS), 9);
    assert_eq!(read_run_state(dir.path()).unwrap().unwrap().epochs_done, 2);

    let mut trainer = Trainer::new(SEED);
    trainer.resume(&config(dir.path(), EPOCHS), |_| {}).unwrap();
    expected.assert_same_state(&trainer, "killed at step 9");
}

#[test]
fn nan_loss_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(SEED);
    // The head's output bias: nothing (no ReLU) can hide a NaN placed there.
    let weight = trainer.model.parameters().last().unwrap().clone();
    let err = trainer
        .pretrain(&config(dir.path(), EPOCHS), |e| {
            // Corrupt a weight after step 5 (epoch 1, batch 1): step 6 sees a NaN loss.
            if let TrainEvent::Step(s) = e {
                if s.step == 5 {
                    weight.data_mut()[0] = f32::NAN;
                }
            }
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            PretrainError::NonFiniteLoss {
                step: 6,
                epoch: 1,
                batch: 2,
                ..
            }
        ),
        "{err}"
    );
    let state = assert_kept_epoch_0s_checkpoint(&err, "at step 6", dir.path());
    assert!(state.last_epoch_loss.is_finite());
}

#[test]
fn an_update_that_blows_the_weights_up_names_the_step_and_writes_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), EPOCHS);
    // A sane first epoch (a good checkpoint), then a rate that overflows every weight.
    cfg.schedule = Schedule::Then {
        steps: 4,
        first: Box::new(Schedule::Constant(1e-3)),
        second: Box::new(Schedule::Constant(f32::INFINITY)),
    };
    let err = Trainer::new(SEED).pretrain(&cfg, |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            PretrainError::NonFiniteWeights {
                step: 4,
                epoch: 1,
                batch: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_kept_epoch_0s_checkpoint(&err, "learning rate", dir.path());
}

#[test]
fn resume_refuses_another_seed_or_a_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(SEED);
    let err = trainer.resume(&config(dir.path(), 1), |_| {}).unwrap_err();
    assert!(matches!(err, PretrainError::NoCheckpoint { .. }), "{err}");
    trainer.pretrain(&config(dir.path(), 1), |_| {}).unwrap();
    // The run's data, augmented with another seed.
    let err = resume(
        &trainer.model,
        &mut trainer.opt,
        &loader(SEED + 1),
        &config(dir.path(), 2),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("seed 17"), "{err}");
}

#[test]
fn events_serialise_as_json_lines() {
    let mut cfg = PretrainConfig::report(1);
    cfg.max_steps_per_epoch = Some(2);
    let mut lines = Vec::new();
    let summary = Trainer::new(SEED)
        .pretrain(&cfg, |e| lines.push(serde_json::to_string(e).unwrap()))
        .unwrap();
    assert_eq!(lines.len(), 1 + 2 + 1, "{lines:?}");
    assert!(lines[1].starts_with("{\"event\":\"step\""), "{}", lines[1]);
    assert!(lines[3].contains("\"mean_loss\""), "{}", lines[3]);
    assert_eq!(summary.epochs[0].steps, 2);
    assert!(summary.epochs[0].mean_loss.is_finite());
}

#[test]
fn killed_after_any_step_resumes_from_the_checkpoint_inside_the_epoch_bit_identically() {
    let expected = unbroken_run();
    // Every step of the 3 × 4-step run but the first: the last checkpoint is inside an epoch
    // (after batch 0, 1 or 2) or at its end.
    for kill_at in 1..EPOCHS * 4 {
        let dir = tempfile::tempdir().unwrap();
        let every_step = PretrainConfig {
            checkpoint_every: Some(Duration::ZERO),
            ..config(dir.path(), EPOCHS)
        };
        run_killed_at_step(&every_step, kill_at);
        let state = read_run_state(dir.path()).unwrap().unwrap();
        let (epoch, batch) = (kill_at / 4, kill_at % 4);
        assert_eq!(
            (
                state.epochs_done,
                state.epoch_progress.batches,
                state.global_step
            ),
            (epoch, batch, kill_at),
            "the checkpoint before step {kill_at}"
        );
        assert_eq!(state.epoch_progress.images, 12 * batch);

        // A fresh process, checkpointing at the ends of epochs only: the interval changes
        // nothing that is computed.
        let mut trainer = Trainer::new(54321);
        let mut events = Vec::new();
        let summary = trainer
            .resume(&config(dir.path(), EPOCHS), |e| events.push(e.clone()))
            .unwrap();
        let TrainEvent::Started {
            start_epoch,
            start_batch,
            global_step,
            ..
        } = events[0]
        else {
            panic!("the first event is {:?}", events[0]);
        };
        assert_eq!(
            (start_epoch, start_batch, global_step),
            (epoch, batch, kill_at)
        );
        let remaining: Vec<(usize, usize)> = (kill_at..EPOCHS * 4).map(|s| (s, s % 4)).collect();
        assert_eq!(steps(&events), remaining, "resumed at step {kill_at}");
        expected.assert_same_state(&trainer, &format!("killed at step {kill_at}"));
        assert!(
            checkpoint_bytes(dir.path()) == expected.checkpoint,
            "killed at step {kill_at}: the final checkpoint differs from the unbroken run's"
        );
        // The epoch resumed inside reports the whole epoch, as the unbroken run did.
        let resumed_epoch = &summary.epochs[0];
        let unbroken_epoch = &expected.epochs[epoch];
        assert_eq!(
            (
                resumed_epoch.epoch,
                resumed_epoch.steps,
                resumed_epoch.images
            ),
            (epoch, 4, 48)
        );
        assert_eq!(
            resumed_epoch.mean_loss.to_bits(),
            unbroken_epoch.mean_loss.to_bits(),
            "the mean loss of epoch {epoch}, resumed after batch {batch}"
        );
        assert!(resumed_epoch.seconds > 0.0);
    }
}

#[test]
fn checkpoints_inside_epochs_are_written_when_the_interval_has_passed() {
    let events_with = |every: Option<Duration>| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PretrainConfig {
            checkpoint_every: every,
            ..config(dir.path(), 2)
        };
        let mut events = Vec::new();
        Trainer::new(SEED)
            .pretrain(&cfg, |e| events.push(e.clone()))
            .unwrap();
        // Ends at an epoch boundary, so the file reads as one of before mid-epoch checkpoints.
        let state = read_run_state(dir.path()).unwrap().unwrap();
        assert!(state.epoch_progress.is_epoch_start());
        events
    };
    let written = |events: &[TrainEvent]| -> Vec<(usize, usize, usize)> {
        events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Checkpoint(c) => Some((c.epoch, c.batches_done, c.global_step)),
                _ => None,
            })
            .collect()
    };
    // Zero: after every step but an epoch's last, whose checkpoint is the epoch's own.
    let every_step = events_with(Some(Duration::ZERO));
    assert_eq!(
        written(&every_step),
        vec![
            (0, 1, 1),
            (0, 2, 2),
            (0, 3, 3),
            (1, 1, 5),
            (1, 2, 6),
            (1, 3, 7)
        ]
    );
    let json = serde_json::to_string(&every_step[2]).unwrap();
    assert!(
        json.starts_with(r#"{"event":"checkpoint","epoch":0,"batches_done":1,"#),
        "{json}"
    );
    assert!(written(&events_with(Some(Duration::from_secs(3600)))).is_empty());
    assert!(written(&events_with(None)).is_empty());
}
