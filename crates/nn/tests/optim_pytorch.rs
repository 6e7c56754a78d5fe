//! Each optimizer against PyTorch: five steps on a small quadratic problem, compared with the
//! parameters `torch.optim` produces (LARS against a direct transcription of SimCLR's
//! `LARSOptimizer` in torch). The values below were printed by `tests/pytorch/optim_reference.py`
//! (torch 2.x, CPU, f32):
//!
//! ```python
//! w = torch.tensor([[0.5, -1.0, 2.0], [0.25, -0.75, 1.5]], requires_grad=True)
//! b = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
//! c = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.5, 0.8]]); d = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, -0.5]])
//! e = torch.tensor([0.7, 1.2, 0.4]); f = torch.tensor([-0.3, 0.2, 0.1])
//! loss = (c*w*w).sum() + (d*w).sum() + (e*b*b).sum() + (f*b).sum()
//! for _ in range(5): opt.zero_grad(); loss(w, b).backward(); opt.step()
//! "adam":          torch.optim.Adam(ps, lr=0.1)
//! "adam_l2":       torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
//! "adamw":         torch.optim.AdamW(ps, lr=0.1, weight_decay=0.1)
//! "sgd":           torch.optim.SGD(ps, lr=0.1)
//! "sgd_momentum":  torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)
//! "sgd_nesterov":  torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
//! "lars":          lr=0.1, momentum=0.9, wd=0.01, eta=0.001
//! "lars_nesterov": lr=0.5, momentum=0.9, wd=0.01, eta=0.001, nesterov
//! ```
//!
//! Tolerance: 1e-5 absolute (f32 rounding differs in the order of operations only).

use simclr_nn::{Adam, AdamConfig, Lars, LarsConfig, Optimizer, Sgd, SgdConfig};
use simclr_tensor::Tensor;

const ADAM: [f32; 9] = [
    0.0229588,
    -0.50601655,
    1.5028179,
    -0.12760393,
    -0.26839596,
    1.0061115,
    0.24667391,
    -0.0474805,
    -0.16087171,
];
const ADAM_L2: [f32; 9] = [
    0.25575316,
    -0.752185,
    1.7511582,
    0.019627713,
    -0.5048546,
    1.2521341,
    0.24634306,
    -0.02758374,
    0.05868057,
];
const ADAMW: [f32; 9] = [
    0.010027118,
    -0.46767953,
    1.4153873,
    -0.12679265,
    -0.24373615,
    0.9437808,
    0.24219273,
    -0.049016286,
    -0.16426028,
];
const SGD: [f32; 9] = [
    0.13022399,
    -0.508588,
    0.08635198,
    0.183476,
    -0.23697652,
    0.8091267,
    0.16052264,
    -0.112914465,
    0.15510964,
];
const SGD_MOMENTUM: [f32; 9] = [
    -0.34520826,
    0.17934354,
    -1.6779258,
    0.08702599,
    0.34307694,
    -0.1174279,
    0.24095923,
    -0.005275646,
    -0.050176416,
];
const SGD_NESTEROV: [f32; 9] = [
    -0.2786457,
    0.3307491,
    -0.4136307,
    0.050842658,
    0.080792606,
    -0.11603299,
    0.2466872,
    -0.03435197,
    -0.11128054,
];
const LARS: [f32; 9] = [
    0.49953437,
    -0.9994901,
    1.9964948,
    0.24993575,
    -0.74921745,
    1.499193,
    0.24852772,
    -0.0021769833,
    -0.06799838,
];
const LARS_NESTEROV: [f32; 9] = [
    0.49702093,
    -0.9967357,
    1.9775987,
    0.24958849,
    -0.7449955,
    1.4948357,
    0.20730767,
    -0.059711576,
    -0.19518271,
];

fn params() -> Vec<Tensor> {
    vec![
        Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.25, -0.75, 1.5], &[2, 3]).set_requires_grad(true),
        Tensor::from_vec(vec![0.1, -0.2, 0.3], &[3]).set_requires_grad(true),
    ]
}

fn loss(p: &[Tensor]) -> Tensor {
    let c = Tensor::from_vec(vec![1.0, 0.5, 2.0, 0.3, 1.5, 0.8], &[2, 3]);
    let d = Tensor::from_vec(vec![0.1, -0.2, 0.3, 0.0, 0.4, -0.5], &[2, 3]);
    let e = Tensor::from_vec(vec![0.7, 1.2, 0.4], &[3]);
    let f = Tensor::from_vec(vec![-0.3, 0.2, 0.1], &[3]);
    let (w, b) = (&p[0], &p[1]);
    c.mul(w)
        .mul(w)
        .sum()
        .add(&d.mul(w).sum())
        .add(&e.mul(b).mul(b).sum())
        .add(&f.mul(b).sum())
}

fn run(opt: &mut dyn Optimizer, steps: usize) {
    for _ in 0..steps {
        opt.zero_grad();
        loss(opt.params()).backward();
        opt.step();
    }
}

fn flat(p: &[Tensor]) -> Vec<f32> {
    p.iter().flat_map(|t| t.to_vec()).collect()
}

fn check(name: &str, make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>, expected: &[f32; 9]) {
    let mut opt = make(params());
    run(opt.as_mut(), 5);
    let got = flat(opt.params());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() < 1e-5,
            "{name}: element {i} is {g}, PyTorch gives {e}\n got {got:?}"
        );
    }
    // Resuming from a saved state after 2 steps gives the same result as 5 straight steps.
    let mut first = make(params());
    run(first.as_mut(), 2);
    let state = first.state();
    let resumed_params: Vec<Tensor> = first
        .params()
        .iter()
        .map(|p| p.copy().set_requires_grad(true))
        .collect();
    let mut resumed = make(resumed_params);
    resumed.load_state(&state).unwrap();
    run(resumed.as_mut(), 3);
    assert_eq!(flat(resumed.params()), got, "{name}: resume differs");
}

#[test]
fn adam_matches_pytorch() {
    check(
        "adam",
        |p| Box::new(Adam::new(p, AdamConfig::adam(0.1))),
        &ADAM,
    );
    let l2 = AdamConfig {
        lr: 0.05,
        betas: (0.8, 0.99),
        eps: 1e-6,
        weight_decay: 0.1,
        decoupled_weight_decay: false,
    };
    check("adam_l2", move |p| Box::new(Adam::new(p, l2)), &ADAM_L2);
}

#[test]
fn adamw_matches_pytorch() {
    check(
        "adamw",
        |p| Box::new(Adam::new(p, AdamConfig::adamw(0.1, 0.1))),
        &ADAMW,
    );
}

#[test]
fn sgd_matches_pytorch() {
    check("sgd", |p| Box::new(Sgd::new(p, SgdConfig::new(0.1))), &SGD);
    let momentum = SgdConfig {
        dampening: 0.1,
        ..SgdConfig::new(0.1).momentum(0.9).weight_decay(0.01)
    };
    check(
        "sgd_momentum",
        move |p| Box::new(Sgd::new(p, momentum)),
        &SGD_MOMENTUM,
    );
    let nesterov = SgdConfig::new(0.1)
        .momentum(0.9)
        .nesterov(true)
        .weight_decay(0.01);
    check(
        "sgd_nesterov",
        move |p| Box::new(Sgd::new(p, nesterov)),
        &SGD_NESTEROV,
    );
}

#[test]
fn lars_matches_simclr_reference() {
    let cfg = LarsConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
        eta: 0.001,
        nesterov: false,
        exclude_1d: true,
    };
    check("lars", move |p| Box::new(Lars::new(p, cfg)), &LARS);
    let nesterov = LarsConfig {
        lr: 0.5,
        nesterov: true,
        ..cfg
    };
    check(
        "lars_nesterov",
        move |p| Box::new(Lars::new(p, nesterov)),
        &LARS_NESTEROV,
    );
}

#[test]
fn large_tensors_take_the_parallel_path_with_the_same_result() {
    // 100k elements (above the parallel threshold) must update exactly like 100k separate
    // small ones would: compare against the serial path run chunk by chunk.
    let n = 100_000;
    let values: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    let big = Tensor::from_vec(values.clone(), &[n]).set_requires_grad(true);
    let small: Vec<Tensor> = values
        .chunks(1000)
        .map(|c| Tensor::from_vec(c.to_vec(), &[c.len()]).set_requires_grad(true))
        .collect();
    let mut a = Adam::new(vec![big.clone()], AdamConfig::adamw(0.01, 0.1));
    let mut b = Adam::new(small.clone(), AdamConfig::adamw(0.01, 0.1));
    for _ in 0..3 {
        a.zero_grad();
        b.zero_grad();
        big.mul(&big).sum().backward();
        for s in &small {
            s.mul(s).sum().backward();
        }
        a.step();
        b.step();
    }
    assert_eq!(big.to_vec(), flat(&small));
}

#[test]
fn parameters_without_gradients_are_skipped_and_state_errors_name_keys() {
    let p = params();
    let mut opt = Adam::new(p.clone(), AdamConfig::adam(0.1));
    let before = flat(&p);
    opt.step(); // no backward yet: nothing changes
    assert_eq!(flat(&p), before);
    let mut state = opt.state();
    state.retain(|(k, _)| k != "1.exp_avg");
    let err = opt.load_state(&state).unwrap_err().to_string();
    assert!(err.contains("1.exp_avg"), "{err}");
}
