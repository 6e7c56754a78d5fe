//! Pretraining on a tiny model and tiny synthetic data: a run stopped after an epoch, or killed
//! in the middle of one, resumes to the same weights — bit for bit — as an unbroken run, from
//! the last epoch's checkpoint or from one written inside the epoch; a NaN loss stops the run
//! naming the step and keeps the last good checkpoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use simclr_contrastive::{
    pretrain, read_run_state, resume, EpochStats, PretrainConfig, PretrainError, SimClr, TrainEvent,
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
        max_steps_per_epoch: None,
        checkpoint_every: None,
    }
}

fn adam(model: &SimClr) -> Adam {
    Adam::new(model.parameters(), AdamConfig::adam(3e-3))
}

/// Every value of the model and the optimizer, as bits.
fn snapshot(model: &SimClr, opt: &Adam) -> Vec<(String, Vec<u32>)> {
    let mut all = model.state_dict();
    all.extend(opt.state());
    all.into_iter()
        .map(|(n, t)| (n, t.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn unbroken_run() -> Vec<(String, Vec<u32>)> {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    let summary = pretrain(
        &model,
        &mut opt,
        &loader(SEED),
        &config(dir.path(), EPOCHS),
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.epochs.len(), EPOCHS);
    assert_eq!(summary.state.global_step, EPOCHS * 4);
    snapshot(&model, &opt)
}

#[test]
fn stopped_after_epoch_one_resumes_bit_identically() {
    let expected = unbroken_run();
    let dir = tempfile::tempdir().unwrap();
    {
        let model = tiny_model(SEED);
        let mut opt = adam(&model);
        pretrain(
            &model,
            &mut opt,
            &loader(SEED),
            &config(dir.path(), 1),
            |_| {},
        )
        .unwrap();
    }
    let state = read_run_state(dir.path()).unwrap().unwrap();
    assert_eq!(
        (state.epochs_done, state.global_step, state.seed),
        (1, 4, SEED)
    );

    // A fresh process: the model is rebuilt (here even from another init seed — the
    // checkpoint overwrites it), the optimizer is new.
    let model = tiny_model(12345);
    let mut opt = adam(&model);
    let mut events = Vec::new();
    let summary = resume(
        &model,
        &mut opt,
        &loader(SEED),
        &config(dir.path(), EPOCHS),
        |e| events.push(e.clone()),
    )
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
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step(s) => Some(s.step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (4..12).collect::<Vec<_>>());
    let got = snapshot(&model, &opt);
    assert_eq!(got.len(), expected.len());
    for ((name, a), (_, b)) in got.iter().zip(&expected) {
        assert!(
            a == b,
            "`{name}` differs from the unbroken run after resuming"
        );
    }
}

#[test]
fn killed_mid_epoch_resumes_bit_identically() {
    let expected = unbroken_run();
    let dir = tempfile::tempdir().unwrap();
    let killed = catch_unwind(AssertUnwindSafe(|| {
        let model = tiny_model(SEED);
        let mut opt = adam(&model);
        pretrain(
            &model,
            &mut opt,
            &loader(SEED),
            &config(dir.path(), EPOCHS),
            |e| {
                if let TrainEvent::Step(s) = e {
                    if s.step == 9 {
                        panic!("killed at step 9 (epoch 2, batch 1)");
                    }
                }
            },
        )
    }));
    assert!(killed.is_err());
    assert_eq!(read_run_state(dir.path()).unwrap().unwrap().epochs_done, 2);

    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    resume(
        &model,
        &mut opt,
        &loader(SEED),
        &config(dir.path(), EPOCHS),
        |_| {},
    )
    .unwrap();
    assert!(
        snapshot(&model, &opt) == expected,
        "resumed weights differ from the unbroken run"
    );
}

#[test]
fn nan_loss_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    // The head's output bias: nothing (no ReLU) can hide a NaN placed there.
    let weight = model.parameters().last().unwrap().clone();
    let result = pretrain(
        &model,
        &mut opt,
        &loader(SEED),
        &config(dir.path(), EPOCHS),
        |e| {
            // Corrupt a weight after step 5 (epoch 1, batch 1): step 6 sees a NaN loss.
            if let TrainEvent::Step(s) = e {
                if s.step == 5 {
                    weight.data_mut()[0] = f32::NAN;
                }
            }
        },
    );
    let err = result.unwrap_err();
    let message = err.to_string();
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
        "{message}"
    );
    assert!(message.contains("at step 6"), "{message}");
    assert!(message.contains("checkpoint.safetensors"), "{message}");
    let state = read_run_state(dir.path()).unwrap().unwrap();
    assert_eq!((state.epochs_done, state.global_step), (1, 4));
    assert!(state.last_epoch_loss.is_finite());
}

#[test]
fn an_update_that_blows_the_weights_up_names_the_step_and_writes_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    let mut cfg = config(dir.path(), EPOCHS);
    // A sane first epoch (a good checkpoint), then a rate that overflows every weight.
    cfg.schedule = Schedule::Then {
        steps: 4,
        first: Box::new(Schedule::Constant(1e-3)),
        second: Box::new(Schedule::Constant(f32::INFINITY)),
    };
    let err = pretrain(&model, &mut opt, &loader(SEED), &cfg, |_| {}).unwrap_err();
    let message = err.to_string();
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
        "{message}"
    );
    assert!(message.contains("learning rate"), "{message}");
    assert!(message.contains("checkpoint.safetensors"), "{message}");
    let state = read_run_state(dir.path()).unwrap().unwrap();
    assert_eq!((state.epochs_done, state.global_step), (1, 4));
}

#[test]
fn resume_refuses_another_seed_or_a_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    let err = resume(
        &model,
        &mut opt,
        &loader(SEED),
        &config(dir.path(), 1),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, PretrainError::NoCheckpoint { .. }), "{err}");
    pretrain(
        &model,
        &mut opt,
        &loader(SEED),
        &config(dir.path(), 1),
        |_| {},
    )
    .unwrap();
    let err = resume(
        &model,
        &mut opt,
        &loader(SEED + 1),
        &config(dir.path(), 2),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("seed 17"), "{err}");
}

#[test]
fn events_serialise_as_json_lines() {
    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    let mut cfg = PretrainConfig::report(1);
    cfg.max_steps_per_epoch = Some(2);
    let mut lines = Vec::new();
    let summary = pretrain(&model, &mut opt, &loader(SEED), &cfg, |e| {
        lines.push(serde_json::to_string(e).unwrap())
    })
    .unwrap();
    assert_eq!(lines.len(), 1 + 2 + 1, "{lines:?}");
    assert!(lines[1].starts_with("{\"event\":\"step\""), "{}", lines[1]);
    assert!(lines[3].contains("\"mean_loss\""), "{}", lines[3]);
    assert_eq!(summary.epochs[0].steps, 2);
    assert!(summary.epochs[0].mean_loss.is_finite());
}

/// What an unbroken run leaves: its weights and optimizer state, its epochs' statistics and
/// its final checkpoint's bytes.
struct Unbroken {
    snapshot: Vec<(String, Vec<u32>)>,
    epochs: Vec<EpochStats>,
    checkpoint: Vec<u8>,
}

fn unbroken_run_with_its_checkpoint() -> Unbroken {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(SEED);
    let mut opt = adam(&model);
    let cfg = config(dir.path(), EPOCHS);
    let summary = pretrain(&model, &mut opt, &loader(SEED), &cfg, |_| {}).unwrap();
    Unbroken {
        snapshot: snapshot(&model, &opt),
        epochs: summary.epochs,
        checkpoint: std::fs::read(dir.path().join("checkpoint.safetensors")).unwrap(),
    }
}

/// A run checkpointing after every step, killed when step `kill_at` is reported (so its last
/// checkpoint is the one after step `kill_at - 1`).
fn run_killed_at_step(dir: &Path, kill_at: usize) {
    let killed = catch_unwind(AssertUnwindSafe(|| {
        let model = tiny_model(SEED);
        let mut opt = adam(&model);
        let cfg = PretrainConfig {
            checkpoint_every: Some(Duration::ZERO),
            ..config(dir, EPOCHS)
        };
        pretrain(&model, &mut opt, &loader(SEED), &cfg, |e| {
            if matches!(e, TrainEvent::Step(s) if s.step == kill_at) {
                panic!("killed at step {kill_at}");
            }
        })
    }));
    assert!(killed.is_err(), "the run was not killed at step {kill_at}");
}

#[test]
fn killed_after_any_step_resumes_from_the_checkpoint_inside_the_epoch_bit_identically() {
    let expected = unbroken_run_with_its_checkpoint();
    // Every step of the 3 × 4-step run but the first: the last checkpoint is inside an epoch
    // (after batch 0, 1 or 2) or at its end.
    for kill_at in 1..EPOCHS * 4 {
        let dir = tempfile::tempdir().unwrap();
        run_killed_at_step(dir.path(), kill_at);
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
        let model = tiny_model(54321);
        let mut opt = adam(&model);
        let mut events = Vec::new();
        let summary = resume(
            &model,
            &mut opt,
            &loader(SEED),
            &config(dir.path(), EPOCHS),
            |e| events.push(e.clone()),
        )
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
        let steps: Vec<(usize, usize)> = events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Step(s) => Some((s.step, s.batch)),
                _ => None,
            })
            .collect();
        let remaining: Vec<(usize, usize)> = (kill_at..EPOCHS * 4).map(|s| (s, s % 4)).collect();
        assert_eq!(steps, remaining, "resumed at step {kill_at}");
        assert!(
            snapshot(&model, &opt) == expected.snapshot,
            "killed at step {kill_at}: the resumed weights differ from the unbroken run's"
        );
        let checkpoint = std::fs::read(dir.path().join("checkpoint.safetensors")).unwrap();
        assert!(
            checkpoint == expected.checkpoint,
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
        let model = tiny_model(SEED);
        let mut opt = adam(&model);
        let cfg = PretrainConfig {
            checkpoint_every: every,
            ..config(dir.path(), 2)
        };
        let mut events = Vec::new();
        pretrain(&model, &mut opt, &loader(SEED), &cfg, |e| {
            events.push(e.clone())
        })
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
