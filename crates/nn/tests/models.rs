//! Model-level behaviour: names and parameter counts of the report's MNIST encoder and head
//! (computed with torch, see the comments), seeded initialisation, a full training step of the
//! MNIST encoder and of ResNet-18 reducing the loss, freezing, and train / eval mode.

use rand::rngs::StdRng;
use rand::SeedableRng;
use simclr_nn::{
    Adam, AdamConfig, BatchNorm2d, Linear, MnistEncoder, Module, Optimizer, ProjectionHead, ResNet,
    Sequential,
};
use simclr_tensor::Tensor;

fn shapes(m: &dyn Module) -> Vec<(String, Vec<usize>)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect()
}

#[test]
fn mnist_encoder_and_head_have_torch_sequential_names_and_counts() {
    // python: m = nn.Sequential(nn.Conv2d(1,32,3,padding=1), nn.ReLU(), nn.MaxPool2d(2),
    //   nn.Conv2d(32,64,3,padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3136,128))
    // [(n, list(p.shape)) for n, p in m.named_parameters()]; sum(p.numel() ...) -> 420352
    let mut rng = StdRng::seed_from_u64(0);
    let enc = MnistEncoder::new(&mut rng);
    let expected: Vec<(String, Vec<usize>)> = [
        ("0.weight", vec![32, 1, 3, 3]),
        ("0.bias", vec![32]),
        ("3.weight", vec![64, 32, 3, 3]),
        ("3.bias", vec![64]),
        ("7.weight", vec![128, 3136]),
        ("7.bias", vec![128]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(shapes(&enc), expected);
    assert_eq!(enc.num_parameters(), 420_352);
    assert_eq!(enc.out_features(), 128);
    let y = enc.forward(&Tensor::zeros(&[3, 1, 28, 28]));
    assert_eq!(y.shape(), &[3, 128]);

    // python: h = nn.Sequential(nn.Linear(128,256), nn.ReLU(), nn.Linear(256,128)) -> 65920
    let head = ProjectionHead::new(128, 256, 128, &mut rng);
    let names: Vec<String> = head.named_parameters().into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(head.num_parameters(), 65_920);
    assert_eq!(head.out_features(), 128);
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let flat = |m: &dyn Module| -> Vec<u32> {
        m.state_dict()
            .iter()
            .flat_map(|(_, t)| t.to_vec())
            .map(f32::to_bits)
            .collect()
    };
    let a = ResNet::resnet18(8, &mut StdRng::seed_from_u64(42));
    let b = ResNet::resnet18(8, &mut StdRng::seed_from_u64(42));
    let c = ResNet::resnet18(8, &mut StdRng::seed_from_u64(43));
    assert_eq!(flat(&a), flat(&b));
    assert_ne!(flat(&a), flat(&c));
    let a = MnistEncoder::new(&mut StdRng::seed_from_u64(7));
    let b = MnistEncoder::new(&mut StdRng::seed_from_u64(7));
    assert_eq!(flat(&a), flat(&b));
}

#[test]
fn pytorch_default_init_bounds() {
    // nn.Linear(3136, 128): weight and bias in U(±1/√3136) = U(±1/56).
    let l = Linear::new(3136, 128, &mut StdRng::seed_from_u64(0));
    let bound = 1.0 / 56.0;
    let w = l.weight.to_vec();
    assert!(w.iter().all(|v| v.abs() <= bound));
    let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.99 * bound, "weights should fill the interval");
    assert!(l.bias.unwrap().to_vec().iter().all(|v| v.abs() <= bound));
    // ResNet convs: N(0, 2/fan_out); BN weight 1, bias 0.
    let r = ResNet::resnet18(64, &mut StdRng::seed_from_u64(0));
    let w = r.layers[3].named_parameters()[0].1.to_vec(); // layer4.0.conv1.weight
    let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
    let expected = 2.0 / (512.0 * 9.0);
    assert!((var / expected - 1.0).abs() < 0.02, "{var} vs {expected}");
    assert!(r.bn1.weight.to_vec().iter().all(|&v| v == 1.0));
    assert!(r.bn1.bias.to_vec().iter().all(|&v| v == 0.0));
}

/// Cross-entropy of `classifier(encoder(x))` on a fixed batch.
fn loss(encoder: &dyn Module, classifier: &Linear, x: &Tensor, y: &[usize]) -> Tensor {
    classifier.forward(&encoder.forward(x)).cross_entropy(y)
}

/// One Adam step over encoder + classifier; returns the losses before and after, and checks
/// that every parameter received a gradient.
fn one_step(
    encoder: &dyn Module,
    classifier: &Linear,
    x: &Tensor,
    y: &[usize],
    lr: f32,
) -> (f32, f32) {
    let mut params = encoder.parameters();
    params.extend(classifier.parameters());
    let mut opt = Adam::new(params, AdamConfig::adam(lr));
    opt.zero_grad();
    let before = loss(encoder, classifier, x, y);
    before.backward();
    for (name, p) in encoder.named_parameters() {
        let g = p.grad_ref();
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        assert!(g.iter().all(|v| v.is_finite()), "{name}");
        assert!(g.iter().any(|&v| v != 0.0), "{name} has a zero gradient");
    }
    opt.step();
    let after = simclr_tensor::no_grad(|| loss(encoder, classifier, x, y));
    (before.item(), after.item())
}

#[test]
fn mnist_encoder_training_step_reduces_the_loss() {
    let mut rng = StdRng::seed_from_u64(3);
    let enc = MnistEncoder::new(&mut rng);
    let clf = Linear::new(128, 10, &mut rng);
    let x = Tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..8).map(|i| i % 10).collect();
    let (before, after) = one_step(&enc, &clf, &x, &y, 1e-3);
    assert!(after < before, "loss {before} -> {after}");
}

#[test]
fn resnet18_training_step_reduces_the_loss() {
    let mut rng = StdRng::seed_from_u64(4);
    let enc = ResNet::resnet18(64, &mut rng);
    let clf = Linear::new(enc.out_features(), 10, &mut rng);
    let x = Tensor::randn(&[4, 3, 32, 32], &mut rng);
    let y = [0, 3, 5, 9];
    enc.train();
    let (before, after) = one_step(&enc, &clf, &x, &y, 1e-3);
    assert!(after < before, "loss {before} -> {after}");
    // Training mode updated the running statistics and counted the batches (2 forwards).
    assert_eq!(enc.bn1.num_batches_tracked.item(), 2.0);
    assert!(enc.bn1.running_mean.to_vec().iter().any(|&v| v != 0.0));
}

#[test]
fn frozen_encoder_gets_no_gradient_and_does_not_move() {
    let mut rng = StdRng::seed_from_u64(5);
    let enc = MnistEncoder::new(&mut rng);
    let clf = Linear::new(128, 10, &mut rng);
    enc.freeze();
    let before: Vec<Vec<f32>> = enc.parameters().iter().map(Tensor::to_vec).collect();
    let mut opt = Adam::new(clf.parameters(), AdamConfig::adam(1e-2));
    let x = Tensor::uniform(&[4, 1, 28, 28], 0.0, 1.0, &mut rng);
    loss(&enc, &clf, &x, &[1, 2, 3, 4]).backward();
    assert!(enc.parameters().iter().all(|p| p.grad_ref().is_none()));
    assert!(clf.weight.grad_ref().is_some());
    opt.step();
    let after: Vec<Vec<f32>> = enc.parameters().iter().map(Tensor::to_vec).collect();
    assert_eq!(before, after);
    enc.unfreeze();
    assert!(enc.parameters().iter().all(Tensor::requires_grad));
}

#[test]
fn eval_mode_reaches_every_batch_norm_and_uses_running_stats() {
    let mut rng = StdRng::seed_from_u64(6);
    let net = ResNet::resnet18(4, &mut rng);
    let x = Tensor::randn(&[2, 3, 16, 16], &mut rng);
    net.eval();
    let buffers_before: Vec<Vec<f32>> = net.named_buffers().iter().map(|b| b.1.to_vec()).collect();
    let y1 = net.forward(&x);
    let y2 = net.forward(&x.slice(0, 0, 1));
    // Eval: no running-stat updates, and each sample's output is independent of the batch.
    let after: Vec<Vec<f32>> = net.named_buffers().iter().map(|b| b.1.to_vec()).collect();
    assert_eq!(buffers_before, after);
    for (a, b) in y1.to_vec()[..32].iter().zip(y2.to_vec()) {
        assert!((a - b).abs() < 1e-5);
    }
    let bn = Sequential::new().add(BatchNorm2d::new(3));
    bn.eval();
    bn.train();
    assert_eq!(bn.named_buffers().len(), 3);
}
