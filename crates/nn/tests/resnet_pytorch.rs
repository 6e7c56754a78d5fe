//! ResNet-18 against torchvision.
//!
//! The reference data in `tests/data/` was written by `tests/pytorch/gen_resnet_reference.py`
//! (torch 2.x, torchvision 0.2x, CPU); see its docstring. Three checks:
//!
//! 1. Full-width ResNet-18 (CIFAR stem, no fc): every parameter, BN buffer and the input come
//!    from an integer formula both sides evaluate bit-identically, so only PyTorch's outputs
//!    (`[2, 512]`, eval and train mode) are committed.
//! 2. A width-4 ResNet-18 with torchvision's names and random weights, saved by
//!    `safetensors.torch.save_file` (int64 `num_batches_tracked` included), loads through our
//!    checkpoint reader and reproduces PyTorch's outputs.
//! 3. Names, shapes and parameter counts of ResNet-18 / ResNet-34 equal torchvision's.
//!
//! Tolerance: |ours − torch| ≤ 1e-4 + 1e-4·|torch| per element (f32 throughout; the
//! differences come from summation order in the convolutions' GEMMs).

use std::path::PathBuf;

use rand::SeedableRng;
use simclr_nn::checkpoint::{self, Checkpoint, LoadOptions};
use simclr_nn::{Module, ResNet};
use simclr_tensor::Tensor;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0x811C_9DC5;
    for b in name.bytes() {
        h = ((h ^ b as u64) * 0x0100_0193) % (1 << 32);
    }
    h
}

/// The generator's `formula_values`: `u_i = ((i·2654435761 + fnv1a(name)) mod 2³²) / 2³²`,
/// mapped per kind in f64 and rounded to f32.
fn formula(name: &str, shape: &[usize], kind: &str) -> Tensor {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product();
    let offset = fnv1a(name);
    let values = (0..n as u64)
        .map(|i| {
            let h = (i * 2_654_435_761 + offset) % (1 << 32);
            let u = h as f64 / 4_294_967_296.0;
            let v = match kind {
                "weight" => (2.0 * u - 1.0) * (6.0 / fan_in as f64).sqrt(),
                "bn_weight" | "running_var" => 0.5 + u,
                "bn_bias" | "running_mean" => 0.2 * (u - 0.5),
                "input" => 2.0 * u - 1.0,
                _ => unreachable!(),
            };
            v as f32
        })
        .collect();
    Tensor::from_vec(values, shape)
}

fn assert_close(what: &str, ours: &Tensor, torch: &Tensor) {
    assert_eq!(ours.shape(), torch.shape(), "{what}: shapes differ");
    let (a, b) = (ours.to_vec(), torch.to_vec());
    let mut worst = 0.0f32;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let err = (x - y).abs();
        worst = worst.max(err);
        assert!(
            err <= 1e-4 + 1e-4 * y.abs(),
            "{what}: element {i} is {x}, PyTorch gives {y}"
        );
    }
    eprintln!("{what}: max |ours - torch| = {worst:e}");
}

#[test]
fn full_resnet18_forward_matches_torchvision() {
    let model = ResNet::resnet18(64, &mut rand::rngs::StdRng::seed_from_u64(0));
    for (name, t) in model.state_dict() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let leaf = name.rsplit('.').next().unwrap();
        let kind = match (t.ndim(), leaf) {
            (4, _) => "weight",
            (_, "weight") => "bn_weight",
            (_, "bias") => "bn_bias",
            (_, other) => other,
        };
        let v = formula(&name, t.shape(), kind);
        t.data_mut().copy_from_slice(&v.data());
    }
    let x = formula("input", &[2, 3, 32, 32], "input");
    let reference = Checkpoint::read(data("resnet18_formula_out.safetensors")).unwrap();

    model.eval();
    let y = simclr_tensor::no_grad(|| model.forward(&x));
    assert_close("eval", &y, &reference.tensor("eval").unwrap());

    model.train();
    let y = simclr_tensor::no_grad(|| model.forward(&x));
    assert_close("train", &y, &reference.tensor("train").unwrap());
    assert_close(
        "bn1.running_mean",
        &model.bn1.running_mean,
        &reference.tensor("bn1.running_mean").unwrap(),
    );
    assert_close(
        "bn1.running_var",
        &model.bn1.running_var,
        &reference.tensor("bn1.running_var").unwrap(),
    );
}

#[test]
fn torch_written_narrow_resnet18_loads_and_matches() {
    let model = ResNet::resnet18(4, &mut rand::rngs::StdRng::seed_from_u64(1));
    let report = checkpoint::load(
        data("resnet18_w4.safetensors"),
        &model,
        None,
        &LoadOptions::strict(),
    )
    .unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.loaded.len(), model.state_dict().len());
    assert_eq!(model.bn1.num_batches_tracked.item(), 7.0);

    let io = Checkpoint::read(data("resnet18_w4_io.safetensors")).unwrap();
    let x = io.tensor("x").unwrap();
    model.eval();
    assert_close("w4 eval", &model.forward(&x), &io.tensor("eval").unwrap());
    model.train();
    assert_close("w4 train", &model.forward(&x), &io.tensor("train").unwrap());
}

/// `(kind, name, shape)` lines and the parameter count from a generated keys file.
fn torchvision_keys(file: &str) -> (usize, Vec<(String, String, Vec<usize>)>) {
    let text = std::fs::read_to_string(data(file)).unwrap();
    let mut count = 0;
    let mut entries = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("# parameters: ") {
            count = c.parse().unwrap();
        } else if !line.starts_with('#') {
            let (kind, rest) = line.split_once(' ').unwrap();
            let (name, shape) = rest.split_once(' ').unwrap();
            let shape = shape
                .trim_matches(['[', ']'])
                .split(", ")
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            entries.push((kind.to_string(), name.to_string(), shape));
        }
    }
    (count, entries)
}

fn check_names(model: &ResNet, file: &str) {
    let (count, entries) = torchvision_keys(file);
    let shaped = |v: Vec<(String, Tensor)>| -> Vec<(String, Vec<usize>)> {
        v.into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect()
    };
    let of_kind = |k: &str| -> Vec<(String, Vec<usize>)> {
        entries
            .iter()
            .filter(|e| e.0 == k)
            .map(|e| (e.1.clone(), e.2.clone()))
            .collect()
    };
    assert_eq!(shaped(model.named_parameters()), of_kind("param"), "{file}");
    assert_eq!(shaped(model.named_buffers()), of_kind("buffer"), "{file}");
    assert_eq!(model.num_parameters(), count, "{file}");
    assert_eq!(model.out_features(), 512);
}

#[test]
fn resnet18_names_shapes_and_count_match_torchvision() {
    let model = ResNet::resnet18(64, &mut rand::rngs::StdRng::seed_from_u64(0));
    check_names(&model, "resnet18_keys.txt");
    assert_eq!(model.num_parameters(), 11_168_832);
}

#[test]
fn resnet34_names_shapes_and_count_match_torchvision() {
    let model = ResNet::resnet34(64, &mut rand::rngs::StdRng::seed_from_u64(0));
    check_names(&model, "resnet34_keys.txt");
}

#[test]
fn imagenet_torchvision_state_dict_loads_skipping_fc_and_conv1() {
    // A torchvision-style file with ImageNet's 7×7 stem and a classifier: rewrite the torch
    // file with conv1.weight [4, 3, 7, 7] and fc.weight / fc.bias added.
    let src = Checkpoint::read(data("resnet18_w4.safetensors")).unwrap();
    let mut tensors: Vec<(String, Tensor)> = src
        .keys()
        .into_iter()
        .filter(|k| k != "conv1.weight")
        .map(|k| {
            let t = src.tensor(&k).unwrap();
            (k, t)
        })
        .collect();
    tensors.push(("conv1.weight".into(), Tensor::ones(&[4, 3, 7, 7])));
    tensors.push(("fc.weight".into(), Tensor::ones(&[1000, 32])));
    tensors.push(("fc.bias".into(), Tensor::zeros(&[1000])));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imagenet.safetensors");
    checkpoint::save_tensors(&path, &tensors, &Default::default()).unwrap();

    let model = ResNet::resnet18(4, &mut rand::rngs::StdRng::seed_from_u64(2));
    let conv1_before = model.conv1.weight.to_vec();
    // Strict loading names all three offending keys.
    let err = checkpoint::load(&path, &model, None, &LoadOptions::strict())
        .unwrap_err()
        .to_string();
    for key in ["conv1.weight", "fc.weight", "fc.bias"] {
        assert!(err.contains(key), "{err}");
    }
    assert_eq!(
        model.conv1.weight.to_vec(),
        conv1_before,
        "failed load changed the model"
    );

    let report = checkpoint::load(&path, &model, None, &LoadOptions::torchvision_resnet()).unwrap();
    let mut skipped: Vec<&str> = report.skipped.iter().map(|(k, _)| k.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["conv1.weight", "fc.bias", "fc.weight"]);
    assert_eq!(model.conv1.weight.to_vec(), conv1_before);
    let l = &model.state_dict()[3]; // layer1.0.conv1.weight
    assert_eq!(l.0, "layer1.0.conv1.weight");
    assert_eq!(
        l.1.to_vec(),
        src.tensor("layer1.0.conv1.weight").unwrap().to_vec()
    );
}
