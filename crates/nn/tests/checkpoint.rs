//! Checkpoints: a model + optimizer round trip that resumes bit-identically, metadata, atomic
//! writes, and errors that name every offending key (missing, unexpected, wrong shape, wrong
//! dtype) without touching the model.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use safetensors::tensor::{Dtype, TensorView};
use simclr_nn::checkpoint::{self, Checkpoint, CheckpointError, KeyProblem, LoadOptions};
use simclr_nn::{Adam, AdamConfig, Linear, MnistEncoder, Module, Optimizer, ResNet, Sequential};
use simclr_tensor::Tensor;

fn train_step(model: &dyn Module, opt: &mut dyn Optimizer, x: &Tensor) {
    opt.zero_grad();
    let y = model.forward(x);
    y.mul(&y).mean().backward();
    opt.step();
}

fn values(model: &dyn Module) -> Vec<(String, Vec<f32>)> {
    model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec()))
        .collect()
}

#[test]
fn model_and_optimizer_round_trip_and_resume_identically() {
    let mut rng = StdRng::seed_from_u64(0);
    let model = ResNet::resnet18(4, &mut rng);
    let mut opt = Adam::new(model.parameters(), AdamConfig::adamw(1e-2, 0.05));
    let x = Tensor::randn(&[2, 3, 16, 16], &mut rng);
    train_step(&model, &mut opt, &x);
    opt.set_lr(3e-3);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let metadata: BTreeMap<String, String> = [
        ("epoch".to_string(), "3".to_string()),
        ("config".to_string(), r#"{"batch":128}"#.to_string()),
    ]
    .into();
    checkpoint::save(&path, &model, Some(&opt), &metadata).unwrap();
    // Atomic write: only the checkpoint is left in the directory.
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);

    let restored = ResNet::resnet18(4, &mut StdRng::seed_from_u64(99));
    let mut restored_opt = Adam::new(restored.parameters(), AdamConfig::adamw(1.0, 0.05));
    let report = checkpoint::load(
        &path,
        &restored,
        Some(&mut restored_opt),
        &LoadOptions::strict(),
    )
    .unwrap();
    assert_eq!(report.metadata, metadata);
    assert!(report.skipped.is_empty());
    assert_eq!(values(&restored), values(&model));
    assert_eq!(restored_opt.lr(), 3e-3);

    // One more step on both gives bit-identical models.
    train_step(&model, &mut opt, &x);
    train_step(&restored, &mut restored_opt, &x);
    assert_eq!(values(&restored), values(&model));

    // Loading the same file without an optimizer skips (and reports) the optimizer state.
    let other = ResNet::resnet18(4, &mut StdRng::seed_from_u64(5));
    let report = checkpoint::load(&path, &other, None, &LoadOptions::strict()).unwrap();
    assert!(report
        .skipped
        .iter()
        .all(|(k, _)| k.starts_with(checkpoint::OPTIMIZER_PREFIX)));
    assert!(!report.skipped.is_empty());

    // Overwriting an existing checkpoint works and reading it back sees the new metadata.
    let new_meta: BTreeMap<String, String> = [("epoch".to_string(), "4".to_string())].into();
    checkpoint::save(&path, &model, None, &new_meta).unwrap();
    assert_eq!(Checkpoint::read(&path).unwrap().metadata(), &new_meta);
}

fn mismatch_problems(err: CheckpointError) -> Vec<KeyProblem> {
    match err {
        CheckpointError::Mismatch { problems, .. } => problems,
        other => panic!("expected a mismatch, got {other}"),
    }
}

#[test]
fn bad_checkpoints_name_every_offending_key_and_change_nothing() {
    let mut rng = StdRng::seed_from_u64(1);
    let model = MnistEncoder::new(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");

    // Missing 3.bias, extra "extra.weight", 7.weight of the wrong shape.
    let mut tensors: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .filter(|(n, _)| n != "3.bias")
        .map(|(n, t)| {
            if n == "7.weight" {
                (n, Tensor::zeros(&[10, 3136]))
            } else {
                (n, t.copy())
            }
        })
        .collect();
    tensors.push(("extra.weight".into(), Tensor::zeros(&[2])));
    checkpoint::save_tensors(&path, &tensors, &BTreeMap::new()).unwrap();

    let fresh = MnistEncoder::new(&mut StdRng::seed_from_u64(2));
    let before = values(&fresh);
    let err = checkpoint::load(&path, &fresh, None, &LoadOptions::strict()).unwrap_err();
    let message = err.to_string();
    let mut problems = mismatch_problems(err);
    problems.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(
        problems,
        [
            KeyProblem::Missing("3.bias".into()),
            KeyProblem::Shape {
                key: "7.weight".into(),
                expected: vec![128, 3136],
                found: vec![10, 3136],
            },
            KeyProblem::Unexpected("extra.weight".into()),
        ]
    );
    for key in ["3.bias", "7.weight", "extra.weight"] {
        assert!(message.contains(key), "{message}");
    }
    assert_eq!(
        values(&fresh),
        before,
        "a failed load must not change the model"
    );

    // An optimizer whose state is absent from the file is reported by key too.
    let good = dir.path().join("good.safetensors");
    checkpoint::save(&good, &model, None, &BTreeMap::new()).unwrap();
    let mut opt = Adam::new(fresh.parameters(), AdamConfig::default());
    let problems = mismatch_problems(
        checkpoint::load(&good, &fresh, Some(&mut opt), &LoadOptions::strict()).unwrap_err(),
    );
    assert!(problems.contains(&KeyProblem::Missing("optimizer.0.exp_avg".into())));
}

#[test]
fn wrong_dtype_is_reported_by_key() {
    let model = Sequential::new().add(Linear::new(2, 1, &mut StdRng::seed_from_u64(0)));
    let f16 = [0u8; 4]; // two f16 zeros
    let f32_bias = 0.5f32.to_le_bytes();
    let views = vec![
        (
            "0.weight",
            TensorView::new(Dtype::F16, vec![1, 2], &f16).unwrap(),
        ),
        (
            "0.bias",
            TensorView::new(Dtype::F32, vec![1], &f32_bias).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(views, &None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f16.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let problems = mismatch_problems(
        checkpoint::load(&path, &model, None, &LoadOptions::strict()).unwrap_err(),
    );
    assert_eq!(
        problems,
        [KeyProblem::Dtype {
            key: "0.weight".into(),
            found: "F16".into()
        }]
    );
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let model = Sequential::new().add(Linear::new(2, 1, &mut StdRng::seed_from_u64(0)));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    assert!(matches!(
        checkpoint::load(&missing, &model, None, &LoadOptions::strict()),
        Err(CheckpointError::Io { .. })
    ));
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(
        &garbage,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ",
    )
    .unwrap();
    let err = checkpoint::load(&garbage, &model, None, &LoadOptions::strict()).unwrap_err();
    assert!(matches!(err, CheckpointError::Format { .. }), "{err}");
    assert!(err.to_string().contains("garbage.safetensors"));
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, b"\x01").unwrap();
    assert!(Checkpoint::read(&truncated).is_err());
    // Saving into a directory that does not exist is an I/O error naming the path.
    let err = checkpoint::save(
        dir.path().join("no/such/dir/x.safetensors"),
        &model,
        None,
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }));
    // Duplicate names are refused.
    let t = Tensor::zeros(&[1]);
    let err = checkpoint::save_tensors(
        dir.path().join("dup.safetensors"),
        &[("a".into(), t.clone()), ("a".into(), t)],
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("`a`"));
}

#[test]
fn equal_weights_and_metadata_give_byte_identical_files() {
    let model = ResNet::resnet18(2, &mut StdRng::seed_from_u64(0));
    // Enough keys that a hash map would order them differently between two saves.
    let metadata: BTreeMap<String, String> = (0..16)
        .map(|i| (format!("key{i}"), format!("value {i}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    checkpoint::save(&a, &model, None, &metadata).unwrap();
    checkpoint::save(&b, &model, None, &metadata).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // The file is plain safetensors to other readers: the crate's own parser takes it.
    let bytes = std::fs::read(&a).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), model.state_dict().len());
}

#[test]
fn damaged_tensor_bytes_are_refused_by_their_checksum() {
    let model = Sequential::new().add(Linear::new(4, 3, &mut StdRng::seed_from_u64(0)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    checkpoint::save(&path, &model, None, &BTreeMap::new()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Any one changed bit of the weights (the last bytes of the file) is caught.
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = checkpoint::load(&path, &model, None, &LoadOptions::strict()).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("ckpt.safetensors"), "{err}");
    // The checksum is the file's business, not the caller's metadata.
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(Checkpoint::read(&path).unwrap().metadata().is_empty());
}
