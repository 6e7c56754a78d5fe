//! Pretraining on a tiny model and tiny synthetic data: a run stopped after an epoch, or killed
//! in the middle of one, resumes to the same weights — bit for bit — as an unbroken run; a NaN
//! loss stops the run naming the step and keeps the last good checkpoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::{rngs::StdRng, Rng, SeedableRng};
use simclr_contrastive::{
    pretrain, read_run_state, resume, PretrainConfig, PretrainError, SimClr, TrainEvent,
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
