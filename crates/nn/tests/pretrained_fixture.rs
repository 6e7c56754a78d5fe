//! `--pretrained` weights: a torchvision-named ResNet exported by
//! `scripts/export_torchvision_resnet.py` loads into our encoder and gives PyTorch's features.
//!
//! The fixtures in `tests/fixtures/` were written by (torch 2.15, torchvision 0.29, CPU)
//!
//! ```text
//! python scripts/export_torchvision_resnet.py fixture \
//!     --out crates/nn/tests/fixtures/resnet18_w8_cifar.safetensors
//! ```
//!
//! * `resnet18_w8_cifar.safetensors`: torchvision's `ResNet(BasicBlock, [2, 2, 2, 2])` with the
//!   CIFAR stem, base width 8 and no `fc`, seeded Kaiming-normal convolutions, random BatchNorm
//!   γ/β and running statistics from five train-mode passes; written the way the script exports
//!   ImageNet weights (every tensor f32 under its torchvision name, `num_batches_tracked`
//!   included).
//! * `resnet18_w8_cifar_io.safetensors`: `images` [4, 3, 32, 32] (`torch.randn`) and the model's
//!   eval-mode `features` [4, 64].
//!
//! So CI checks the whole `--pretrained` path — names, shapes, the f32 `num_batches_tracked`,
//! BatchNorm running statistics in eval mode — without PyTorch or the network.
//!
//! Tolerance: |ours − torch| ≤ 1e-4·|torch| per element (every feature is ≥ 0.049 in magnitude).

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::SeedableRng;
use simclr_nn::checkpoint::{self, Checkpoint, CheckpointError, KeyProblem, LoadOptions};
use simclr_nn::{Module, ResNet};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const WEIGHTS: &str = "resnet18_w8_cifar.safetensors";

#[test]
fn fixture_sizes_stay_small() {
    let total: u64 = [WEIGHTS, "resnet18_w8_cifar_io.safetensors"]
        .iter()
        .map(|f| std::fs::metadata(fixture(f)).unwrap().len())
        .sum();
    assert!(total < 2 << 20, "fixtures take {total} bytes");
}

#[test]
fn exported_narrow_resnet18_loads_completely_and_matches_pytorch_features() {
    let model = ResNet::resnet18(8, &mut StdRng::seed_from_u64(0));
    let report = checkpoint::load(
        fixture(WEIGHTS),
        &model,
        None,
        &LoadOptions::torchvision_resnet(),
    )
    .unwrap();
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    let mut loaded = report.loaded.clone();
    loaded.sort();
    let mut expected: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    expected.sort();
    assert_eq!(loaded, expected, "every tensor of the model is loaded");
    assert_eq!(
        Checkpoint::read(fixture(WEIGHTS)).unwrap().keys(),
        expected,
        "and the file holds nothing else"
    );
    assert_eq!(model.bn1.num_batches_tracked.item(), 5.0);

    let io = Checkpoint::read(fixture("resnet18_w8_cifar_io.safetensors")).unwrap();
    let images = io.tensor("images").unwrap();
    let torch = io.tensor("features").unwrap();
    assert_eq!(images.shape(), [4, 3, 32, 32]);
    model.eval();
    let ours = simclr_tensor::no_grad(|| model.forward(&images));
    assert_eq!(ours.shape(), torch.shape());

    let mut worst = 0.0f32;
    for (i, (x, y)) in ours.to_vec().iter().zip(torch.to_vec()).enumerate() {
        let rel = (x - y).abs() / y.abs();
        assert!(
            rel <= 1e-4,
            "feature {i}: ours {x}, PyTorch {y} (relative error {rel:e})"
        );
        worst = worst.max(rel);
    }
    eprintln!("max relative error vs PyTorch: {worst:e}");
}

#[test]
fn fixture_into_a_wider_or_deeper_resnet_fails_naming_tensors_and_shapes() {
    let model = ResNet::resnet18(16, &mut StdRng::seed_from_u64(1));
    let before: Vec<Vec<f32>> = model.state_dict().iter().map(|(_, t)| t.to_vec()).collect();
    let err = checkpoint::load(
        fixture(WEIGHTS),
        &model,
        None,
        &LoadOptions::torchvision_resnet(),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(
            "key `layer1.0.conv1.weight` has shape [8, 8, 3, 3], the model expects [16, 16, 3, 3]"
        ),
        "{message}"
    );
    assert!(message.contains(WEIGHTS), "{message}");
    let CheckpointError::Mismatch { problems, .. } = err else {
        panic!("expected a mismatch, got {err}");
    };
    assert!(problems.contains(&KeyProblem::Shape {
        key: "bn1.running_var".into(),
        expected: vec![16],
        found: vec![8],
    }));
    assert!(problems
        .iter()
        .all(|p| matches!(p, KeyProblem::Shape { .. })));
    let after: Vec<Vec<f32>> = model.state_dict().iter().map(|(_, t)| t.to_vec()).collect();
    assert!(after == before, "a failed load must not change the model");

    // ResNet-34 weights were expected: the missing blocks are named.
    let deeper = ResNet::resnet34(8, &mut StdRng::seed_from_u64(2));
    let message = checkpoint::load(
        fixture(WEIGHTS),
        &deeper,
        None,
        &LoadOptions::torchvision_resnet(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("missing key `layer1.2.conv1.weight`"),
        "{message}"
    );
}

/// Checks a real export: `SIMCLR_PRETRAINED=resnet18-imagenet.safetensors cargo test --release
/// -p simclr-nn --test pretrained_fixture -- --ignored`. Only the ImageNet 7×7 `conv1.weight`
/// and `fc.*` may be skipped; every other tensor of the width-64 encoder must load.
#[test]
#[ignore = "needs an exported ImageNet file in $SIMCLR_PRETRAINED"]
fn exported_imagenet_weights_load_skipping_only_stem_and_fc() {
    let Some(path) = std::env::var_os("SIMCLR_PRETRAINED") else {
        panic!("set SIMCLR_PRETRAINED to a file written by scripts/export_torchvision_resnet.py");
    };
    let keys = Checkpoint::read(&path).unwrap().keys();
    let mut rng = StdRng::seed_from_u64(0);
    let model = if keys.iter().any(|k| k.starts_with("layer1.2.")) {
        ResNet::resnet34(64, &mut rng)
    } else {
        ResNet::resnet18(64, &mut rng)
    };
    let report = checkpoint::load(&path, &model, None, &LoadOptions::torchvision_resnet()).unwrap();
    let mut skipped: Vec<&str> = report.skipped.iter().map(|(k, _)| k.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["conv1.weight", "fc.bias", "fc.weight"]);
    assert_eq!(report.loaded.len(), model.state_dict().len() - 1);
    eprintln!(
        "{}: loaded {} tensors, skipped {:?}",
        std::path::Path::new(&path).display(),
        report.loaded.len(),
        report.skipped
    );
}
