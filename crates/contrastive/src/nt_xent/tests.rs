//! NT-Xent against [`reference`] (the same loss composed from generic tensor ops), against PyTorch, against
//! finite differences, and at its numerical edges.

use super::*;
use rand::{rngs::StdRng, SeedableRng};
use simclr_tensor::{gradcheck, no_grad};

fn loss_and_grad(f: impl Fn(&Tensor) -> Tensor, z: &Tensor) -> (f32, Vec<f32>) {
    let leaf = z.copy().set_requires_grad(true);
    let loss = f(&leaf);
    loss.backward();
    (loss.item(), leaf.grad().unwrap().to_vec())
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {k}: {x} vs {y}"
        );
    }
}

/// z[i, j] = sin(0.7 i + 1.3 j) + 0.05 i, computed in f64 then rounded, as in the PyTorch
/// snippet below.
fn sin_input(m: usize, d: usize) -> Tensor {
    let data = (0..m * d)
        .map(|k| {
            let (i, j) = ((k / d) as f64, (k % d) as f64);
            ((0.7 * i + 1.3 * j).sin() + 0.05 * i) as f32
        })
        .collect();
    Tensor::from_vec(data, &[m, d])
}

#[test]
fn equals_the_reference_forward_and_gradient() {
    let mut rng = StdRng::seed_from_u64(7);
    for &(m, d, t) in &[
        (4, 3, 0.5),
        (8, 16, 0.5),
        (32, 20, 0.2),
        (256, 128, 0.5),
        (64, 33, 0.07),
        (200, 24, 0.3),
        (40, 16, 0.02),
    ] {
        let z = Tensor::randn(&[m, d], &mut rng);
        let (l1, g1) = loss_and_grad(|z| nt_xent(z, t), &z);
        let (l2, g2) = loss_and_grad(|z| reference(z, t), &z);
        assert!(
            (l1 - l2).abs() < 1e-5 * (1.0 + l2.abs()),
            "{m}x{d}: {l1} vs {l2}"
        );
        assert_close(&g1, &g2, 1e-4, &format!("grad {m}x{d} τ={t}"));
    }
}

// Expected values from PyTorch 2.x (CPU, f32):
//
// ```python
// import torch, torch.nn.functional as F
// def nt_xent(z, t):
//     n2 = z.shape[0]; n = n2 // 2
//     zn = z / z.norm(dim=1, keepdim=True).clamp_min(1e-8)
//     sim = (zn @ zn.t()) / t
//     sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool), -float("inf"))
//     target = torch.cat([torch.arange(n, n2), torch.arange(0, n)])
//     return F.cross_entropy(sim, target)
// M, D = 6, 4
// i = torch.arange(M, dtype=torch.float64).view(M, 1)
// j = torch.arange(D, dtype=torch.float64).view(1, D)
// for t in (0.5, 0.1):
//     z = (torch.sin(0.7 * i + 1.3 * j) + 0.05 * i).float().requires_grad_()
//     loss = nt_xent(z, t); loss.backward()
//     print(t, f"{loss.item():.7f}")
//     print(", ".join(f"{v:.7f}" for v in z.grad.flatten().tolist()))
// ```
#[test]
#[allow(clippy::excessive_precision)] // the literals are PyTorch's printout
fn equals_pytorch() {
    let cases: [(f32, f32, [f32; 24]); 2] = [
        (
            0.5,
            3.1556778,
            [
                -0.1775753, -0.0310782, 0.1099089, 0.0388395, -0.2461968, 0.1069323, 0.2049065,
                -0.0958067, -0.1506439, 0.1607396, 0.1191814, -0.2144356, -0.0708124, -0.3158379,
                -0.0877301, 0.2793325, -0.3393919, -0.2076814, 0.1845114, 0.2626232, -0.1223029,
                -0.0421826, 0.0121839, -0.0388504,
            ],
        ),
        (
            0.1,
            12.4147329,
            [
                -1.1846662, -0.2081518, 0.7301812, 0.2556728, -1.4814831, 0.6652808, 1.2667756,
                -0.5581901, -0.7532310, 0.6979522, 0.4978439, -1.0603966, -0.4074382, -1.5541952,
                -0.4814193, 1.2392703, -2.2458632, -1.3546973, 1.3061874, 1.8385881, -0.6389520,
                -0.2822345, -0.0211206, -0.2381425,
            ],
        ),
    ];
    for (t, loss, grad) in cases {
        let (l, g) = loss_and_grad(|z| nt_xent(z, t), &sin_input(6, 4));
        assert!(
            (l - loss).abs() < 1e-5 * loss,
            "τ={t}: loss {l} vs PyTorch {loss}"
        );
        assert_close(&g, &grad, 2e-5, &format!("τ={t} gradient vs PyTorch"));
    }
}

#[test]
fn passes_gradcheck() {
    let mut rng = StdRng::seed_from_u64(3);
    for &t in &[0.5, 0.2] {
        let z = Tensor::randn(&[6, 5], &mut rng);
        gradcheck(|x| nt_xent(&x[0], t), &[z]).unwrap_or_else(|e| panic!("τ={t}: {e}"));
    }
}

#[test]
fn stable_at_low_temperature() {
    let mut rng = StdRng::seed_from_u64(11);
    let z = Tensor::randn(&[64, 16], &mut rng);
    let (l1, g1) = loss_and_grad(|z| nt_xent(z, 0.05), &z);
    let (l2, g2) = loss_and_grad(|z| reference(z, 0.05), &z);
    assert!(l1.is_finite() && g1.iter().all(|v| v.is_finite()));
    assert!((l1 - l2).abs() < 1e-4 * l2.abs(), "{l1} vs {l2}");
    assert_close(&g1, &g2, 1e-3, "τ=0.05 gradient");
    // Even a temperature that would overflow exp without the max shift stays finite.
    let (l, g) = loss_and_grad(|z| nt_xent(z, 0.005), &z);
    assert!(
        l.is_finite() && g.iter().all(|v| v.is_finite()),
        "τ=0.005: {l}"
    );
}

#[test]
fn identical_rows_give_log_m_minus_1_and_zero_gradient() {
    let m = 16;
    let row = [0.3f32, -1.2, 0.5, 2.0];
    let z = Tensor::from_vec(row.repeat(m), &[m, 4]);
    for &t in &[0.5, 0.05] {
        let (l, g) = loss_and_grad(|z| nt_xent(z, t), &z);
        let expect = ((m - 1) as f32).ln();
        assert!(
            (l - expect).abs() < 1e-4,
            "τ={t}: {l} vs ln(M−1) = {expect}"
        );
        assert!(g.iter().all(|v| v.abs() < 1e-4), "τ={t}: gradient {g:?}");
    }
    // All-zero rows: norms clamped, still finite.
    let (l, g) = loss_and_grad(|z| nt_xent(z, 0.5), &Tensor::zeros(&[4, 3]));
    assert!(l.is_finite() && g.iter().all(|v| v.is_finite()));
}

#[test]
fn no_grad_gives_same_value_without_graph() {
    let mut rng = StdRng::seed_from_u64(5);
    let z = Tensor::randn(&[40, 8], &mut rng).set_requires_grad(true);
    let with = nt_xent(&z, 0.5);
    let without = no_grad(|| nt_xent(&z, 0.5));
    assert_eq!(with.item(), without.item());
    assert!(!without.has_graph());
}

#[test]
fn fast_exp_is_accurate() {
    let mut worst = 0.0f32;
    for k in 0..=80_000 {
        let x = -80.0 + k as f32 * 1e-3;
        let (a, b) = (fast_exp(x), x.exp());
        worst = worst.max((a - b).abs() / b);
    }
    assert!(worst < 3e-7, "max relative error {worst}");
}

#[test]
#[should_panic(expected = "nt_xent: projections of shape [5, 8] have an odd number of rows")]
fn odd_batch_is_a_clear_error() {
    nt_xent(&Tensor::zeros(&[5, 8]), 0.5);
}

#[test]
#[should_panic(expected = "nt_xent: projections of shape [2, 8] hold N = 1 pair(s); need N ≥ 2")]
fn single_pair_is_a_clear_error() {
    nt_xent(&Tensor::zeros(&[2, 8]), 0.5);
}

#[test]
#[should_panic(expected = "nt_xent: temperature must be finite and positive")]
fn bad_temperature_is_a_clear_error() {
    nt_xent(&Tensor::zeros(&[4, 8]), 0.0);
}

#[test]
fn shape_check_without_panicking() {
    assert_eq!(check_nt_xent_shape(&[8, 3]), Ok((8, 3)));
    assert!(check_nt_xent_shape(&[8]).unwrap_err().contains("2-D"));
    assert!(check_nt_xent_shape(&[7, 3]).unwrap_err().contains("odd"));
}
