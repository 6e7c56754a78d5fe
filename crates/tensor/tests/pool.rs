//! Pooling: gradchecks of max / average / global average pooling, max-pool values against
//! PyTorch, and shape errors.

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use simclr_tensor::{gradcheck, Tensor};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// Distinct values at least 0.05 apart in shuffled order, so no window has a near-tie that the
/// finite-difference step (0.01) could flip.
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
    v.shuffle(&mut StdRng::seed_from_u64(seed));
    Tensor::from_vec(v, shape)
}

#[test]
fn gradcheck_max_pool() {
    // Non-overlapping, overlapping (stride < kernel) and floor-mode (odd size) windows.
    for &(shape, k, s) in &[
        ([2, 3, 4, 4], 2, 2),
        ([2, 2, 7, 6], 3, 2),
        ([1, 2, 5, 5], 2, 2),
        ([2, 1, 5, 4], 2, 1),
    ] {
        gradcheck(|t| t[0].max_pool2d(k, s), &[distinct(&shape, 1)])
            .unwrap_or_else(|e| panic!("{shape:?} k{k} s{s}: {e}"));
    }
}

#[test]
fn gradcheck_avg_pool() {
    for &(shape, k, s) in &[
        ([2, 3, 4, 4], 2, 2),
        ([2, 2, 7, 6], 3, 2),
        ([1, 2, 5, 5], 2, 1),
    ] {
        gradcheck(|t| t[0].avg_pool2d(k, s), &[rand(&shape, 2)])
            .unwrap_or_else(|e| panic!("{shape:?} k{k} s{s}: {e}"));
    }
}

#[test]
fn gradcheck_global_avg_pool() {
    gradcheck(|t| t[0].global_avg_pool2d(), &[rand(&[3, 4, 3, 5], 3)]).unwrap();
}

#[test]
fn pools_compute_what_they_say() {
    let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    assert_eq!(x.max_pool2d(2, 2).to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
    assert_eq!(x.avg_pool2d(2, 2).to_vec(), vec![2.5, 4.5, 10.5, 12.5]);
    assert_eq!(x.global_avg_pool2d().to_vec(), vec![7.5]);
    assert_eq!(x.global_avg_pool2d().shape(), &[1, 1]);
}

#[test]
fn large_inputs_take_the_parallel_path_with_the_same_result() {
    // 2·64·16·16 = 32768 elements reach the parallel threshold; compare with per-plane runs.
    let x = distinct(&[2, 64, 16, 16], 4).set_requires_grad(true);
    let y = x.max_pool2d(2, 2);
    y.sum().backward();
    let grad = x.grad().unwrap().to_vec();
    assert_eq!(grad.iter().sum::<f32>(), y.numel() as f32);
    let small = Tensor::from_vec(x.to_vec()[..256].to_vec(), &[1, 1, 16, 16]);
    assert_eq!(small.max_pool2d(2, 2).to_vec(), y.to_vec()[..64].to_vec());
}

#[test]
#[should_panic(expected = "max_pool2d: kernel 3×3 is larger than input [1, 1, 2, 5]")]
fn oversized_window_is_named() {
    Tensor::zeros(&[1, 1, 2, 5]).max_pool2d(3, 1);
}

#[test]
#[should_panic(expected = "avg_pool2d: input [4, 4] must have 4 axes")]
fn two_axis_input_is_named() {
    Tensor::zeros(&[4, 4]).avg_pool2d(2, 2);
}

#[test]
#[should_panic(expected = "max_pool2d: kernel (2) and stride (0) must be at least 1")]
fn zero_stride_is_named() {
    Tensor::zeros(&[1, 1, 4, 4]).max_pool2d(2, 0);
}

// ---------------------------------------------------------------------------------------------
// max_pool2d values from PyTorch
//
// Inputs are rebuilt from `seq` on both sides; the expected values below were printed by this
// script (torch 2.15.0+cu132, CPU, float32):
//
// ```python
// import numpy as np, torch, torch.nn.functional as F
// def seq(n, a, b): return (torch.arange(n, dtype=torch.float64) * a + b).sin().float()
// def lit(name, t):  # shortest decimal that round-trips each f32
//     print(f"#[rustfmt::skip]\nconst {name}: &[f32] = &[{', '.join(str(v) for v in t.detach().numpy().flatten())}];")
// # (name, x shape, kernel, stride)
// for name, xs, k, s in [("K3S2", (2, 3, 7, 6), 3, 2), ("K2S2_ODD", (2, 2, 5, 5), 2, 2)]:
//     x = seq(torch.Size(xs).numel(), 0.7, 0.1).reshape(xs).requires_grad_()
//     y = F.max_pool2d(x, k, s)
//     gy = seq(y.numel(), 0.9, 0.3).reshape(y.shape)
//     (y * gy).sum().backward()
//     lit(f"{name}_Y", y.detach()); lit(f"{name}_DX", x.grad)
// ```
//
// Compared at 1e-6 absolute + 1e-6 relative: max-pool only copies and scatters values, so the
// results must agree to rounding of the inputs.

/// `sin(i·a + b)` for `i` in `0..n`, computed in f64 and rounded to f32 (as the script does).
fn seq(n: usize, a: f64, b: f64) -> Vec<f32> {
    (0..n).map(|i| ((i as f64) * a + b).sin() as f32).collect()
}

fn against_torch(xs: [usize; 4], k: usize, s: usize, y_want: &[f32], dx_want: &[f32]) {
    let x = Tensor::from_vec(seq(xs.iter().product(), 0.7, 0.1), &xs).set_requires_grad(true);
    let y = x.max_pool2d(k, s);
    let gy = Tensor::from_vec(seq(y.numel(), 0.9, 0.3), y.shape());
    y.mul(&gy).sum().backward();
    for (what, got, want) in [
        ("y", y.to_vec(), y_want),
        ("dx", x.grad().unwrap().to_vec(), dx_want),
    ] {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }
}

#[test]
fn torch_max_pool_overlapping_windows() {
    against_torch([2, 3, 7, 6], 3, 2, K3S2_Y, K3S2_DX);
}

#[test]
fn torch_max_pool_floor_mode() {
    against_torch([2, 2, 5, 5], 2, 2, K2S2_ODD_Y, K2S2_ODD_DX);
}

#[rustfmt::skip]
const K3S2_Y: &[f32] = &[0.997495, 0.997495, 0.99930936, 0.99930936, 0.99999374, 0.99999374, 0.9995473, 0.9995473, 0.9995473, 0.9995473, 0.99797046, 0.99797046, 0.9952652, 0.9952652, 0.9914344, 0.9914344, 0.9914344, 0.9914344, 0.98648244, 0.98648244, 0.980415, 0.980415, 0.9732388, 0.9732388, 0.96496207, 0.96496207, 0.96496207, 0.96496207, 0.9555941, 0.9555941, 0.9451456, 0.9451456, 0.944865, 0.9392255, 0.944865, 0.9502373];
#[rustfmt::skip]
const K3S2_DX: &[f32] = &[0.0, 0.0, 1.2275593, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0043293, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.6839308, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5534546, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.57542026, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.5311255, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.2246706, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.7044446, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.17899367, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.7857802, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.1308546, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.3133434, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9015933, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.9880316, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.2283406, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.37470028, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
#[rustfmt::skip]
const K2S2_ODD_Y: &[f32] = &[0.7173561, 0.997495, 0.9985433, 0.7984871, 0.7777942, 0.75157344, 0.17345215, 0.99999374, 0.9995473, 0.74511313, 0.9989001, 0.21598727, 0.7222674, 0.99675876, 0.82383674, 0.9952652];
#[rustfmt::skip]
const K2S2_ODD_DX: &[f32] = &[0.0, 0.29552022, 0.9320391, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.86320937, 0.14112, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.9961646, 0.0, -0.68776613, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.31154135, 0.0, -0.5506855, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.93799996, 0.8545989, 0.0, 0.0, 0.0, 0.0, 0.0, -0.6998747, 0.0, 0.124454424, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.9945526, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.53657293, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.32747445, 0.94369566, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
