//! Every differentiable op (and a few compositions) against central finite differences.

use rand::{rngs::StdRng, SeedableRng};
use simclr_tensor::{gradcheck, Tensor};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// Values away from zero (for ops with a kink or a pole there).
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    let t = rand(shape, seed);
    let v: Vec<f32> = t
        .to_vec()
        .iter()
        .map(|&x| if x >= 0.0 { x + 0.2 } else { x - 0.2 })
        .collect();
    Tensor::from_vec(v, shape)
}

fn positive(shape: &[usize], seed: u64) -> Tensor {
    let t = rand(shape, seed);
    Tensor::from_vec(t.to_vec().iter().map(|&x| x.abs() + 0.5).collect(), shape)
}

#[test]
fn broadcasting_arithmetic() {
    let (a, b) = (rand(&[2, 3, 4], 1), rand(&[3, 1], 2));
    gradcheck(|x| x[0].add(&x[1]), &[a.clone(), b.clone()]).unwrap();
    gradcheck(|x| x[0].sub(&x[1]), &[a.clone(), b.clone()]).unwrap();
    gradcheck(|x| x[0].mul(&x[1]), &[a.clone(), b.clone()]).unwrap();
    gradcheck(|x| x[0].div(&x[1]), &[a, away_from_zero(&[3, 1], 3)]).unwrap();
    gradcheck(
        |x| &(&x[0] * &x[1]) + &x[0],
        &[rand(&[4], 4), rand(&[4], 5)],
    )
    .unwrap();
}

#[test]
fn scalar_and_unary_ops() {
    let x = rand(&[3, 5], 6);
    gradcheck(|x| x[0].add_scalar(2.5), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].mul_scalar(-1.5), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].neg(), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].exp(), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].log(), &[positive(&[3, 5], 7)]).unwrap();
    gradcheck(|x| x[0].sqrt(), &[positive(&[3, 5], 8)]).unwrap();
    gradcheck(|x| x[0].pow(3.0), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].pow(-0.5), &[positive(&[3, 5], 9)]).unwrap();
    gradcheck(|x| x[0].relu(), &[away_from_zero(&[3, 5], 10)]).unwrap();
}

#[test]
fn reductions() {
    let x = rand(&[2, 3, 4], 11);
    gradcheck(|x| x[0].sum(), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].mean(), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].sum_axes(&[1], false), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].sum_axes(&[0, 2], true), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].mean_axes(&[-1], false), std::slice::from_ref(&x)).unwrap();
    let m = x.mean_axes(&[0, 2], false);
    assert_eq!(m.shape(), &[3]);
}

#[test]
fn movement_ops() {
    let x = rand(&[2, 3, 4], 12);
    gradcheck(
        |x| x[0].reshape(&[6, 4]).mul(&x[0].reshape(&[6, 4])),
        std::slice::from_ref(&x),
    )
    .unwrap();
    gradcheck(|x| x[0].flatten(), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].permute(&[2, 0, 1]), std::slice::from_ref(&x)).unwrap();
    gradcheck(|x| x[0].transpose(0, -1), std::slice::from_ref(&x)).unwrap();
    gradcheck(
        |x| Tensor::concat(&[&x[0], &x[1]], 1),
        &[x.clone(), rand(&[2, 2, 4], 13)],
    )
    .unwrap();
    gradcheck(|x| x[0].slice(2, 1, 3), std::slice::from_ref(&x)).unwrap();
    let p = x.permute(&[2, 0, 1]);
    assert_eq!(p.shape(), &[4, 2, 3]);
    assert_eq!(p.data()[1], x.data()[4]); // p[0,0,1] = x[0,1,0]
}

#[test]
fn matmul_2d_and_batched() {
    gradcheck(
        |x| x[0].matmul(&x[1]),
        &[rand(&[3, 4], 14), rand(&[4, 5], 15)],
    )
    .unwrap();
    gradcheck(
        |x| x[0].matmul(&x[1]),
        &[rand(&[2, 3, 4], 16), rand(&[2, 4, 5], 17)],
    )
    .unwrap();
    gradcheck(
        |x| x[0].matmul(&x[1]),
        &[rand(&[2, 3, 4], 18), rand(&[4, 5], 19)],
    )
    .unwrap();
    let c = Tensor::from_vec(vec![1., 2., 3., 4.], &[2, 2])
        .matmul(&Tensor::from_vec(vec![5., 6., 7., 8.], &[2, 2]));
    assert_eq!(c.to_vec(), vec![19., 22., 43., 50.]);
}

#[test]
fn normalisation_and_losses() {
    gradcheck(|x| x[0].l2_normalize(1, 1e-12), &[rand(&[3, 5], 20)]).unwrap();
    gradcheck(|x| x[0].l2_normalize(0, 1e-12), &[rand(&[4, 2], 21)]).unwrap();
    gradcheck(|x| x[0].log_softmax(), &[rand(&[3, 5], 22)]).unwrap();
    gradcheck(|x| x[0].cross_entropy(&[0, 4, 2]), &[rand(&[3, 5], 23)]).unwrap();
    // log_softmax stays finite for huge logits.
    let y = Tensor::from_vec(vec![1000.0, 0.0], &[1, 2]).log_softmax();
    assert!(y.to_vec().iter().all(|v| v.is_finite()));
}

#[test]
fn a_tensor_used_twice_accumulates() {
    let x = Tensor::from_vec(vec![2.0], &[1]).set_requires_grad(true);
    let y = x.mul(&x).add(&x).sum(); // x² + x → 2x + 1 = 5
    y.backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0]);
    // A second backward adds to the first.
    x.mul_scalar(3.0).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![8.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn no_grad_and_detach_record_nothing() {
    let x = Tensor::ones(&[2]).set_requires_grad(true);
    let y = simclr_tensor::no_grad(|| x.mul_scalar(2.0));
    assert!(!y.requires_grad() && !y.has_graph());
    let z = x.mul_scalar(2.0).detach();
    assert!(!z.requires_grad());
    assert!(simclr_tensor::is_grad_enabled());
}

#[test]
fn backward_frees_the_graph() {
    let x = Tensor::ones(&[3]).set_requires_grad(true);
    let h = x.exp();
    let loss = h.sum();
    assert!(h.has_graph());
    loss.backward();
    assert!(!h.has_graph() && !loss.has_graph());
}

#[test]
#[should_panic(expected = "add: shapes [2, 3] and [4] cannot be broadcast together")]
fn shape_mismatch_names_op_and_shapes() {
    Tensor::zeros(&[2, 3]).add(&Tensor::zeros(&[4]));
}

#[test]
#[should_panic(expected = "matmul: cannot multiply shapes [2, 3] and [4, 5]")]
fn matmul_mismatch_names_shapes() {
    Tensor::zeros(&[2, 3]).matmul(&Tensor::zeros(&[4, 5]));
}
