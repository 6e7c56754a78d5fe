//! The fully connected layer `y = x·Wᵀ + b`, with PyTorch's `[out, in]` weight layout.
//!
//! It is one fused autodiff op on the crate's GEMM rather than a transpose, a matmul and a
//! broadcast add, so no transposed copy of `W` is ever made:
//!
//! * forward: `Y[N, out] = X[N, in] · Wᵀ` (a transposed *view* of `W`), then `+ b` per row;
//! * backward: `dX = dY · W`, `dW = dYᵀ · X`, `db = Σ_rows dY`.
//!
//! Inputs with more than two axes are treated as `[…, in]` (leading axes flattened), as in
//! PyTorch.

use simclr_tensor::gemm::{gemm, MatMut, MatRef};
use simclr_tensor::Tensor;

use crate::init::{parameter, pytorch_default_uniform};
use crate::module::Module;

/// `y = x·Wᵀ + b` with `W: [out_features, in_features]` and optional `b: [out_features]`.
pub struct Linear {
    /// The weight, `[out_features, in_features]`.
    pub weight: Tensor,
    /// The bias, `[out_features]`, if the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer with a bias, initialised as `torch.nn.Linear` does (see [`crate::init`]).
    pub fn new(in_features: usize, out_features: usize, rng: &mut impl rand::Rng) -> Linear {
        Linear::with_bias(in_features, out_features, true, rng)
    }

    /// A linear layer with or without a bias, PyTorch-initialised.
    pub fn with_bias(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut impl rand::Rng,
    ) -> Linear {
        let weight = parameter(pytorch_default_uniform(
            &[out_features, in_features],
            in_features,
            rng,
        ));
        let bias =
            bias.then(|| parameter(pytorch_default_uniform(&[out_features], in_features, rng)));
        Linear { weight, bias }
    }

    /// A layer from given tensors (`weight: [out, in]`, `bias: [out]`), marked trainable.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Linear {
        assert_eq!(weight.ndim(), 2, "Linear: weight must be [out, in]");
        if let Some(b) = &bias {
            assert_eq!(b.shape(), &[weight.dim(0)], "Linear: bias must be [out]");
        }
        Linear {
            weight: parameter(weight),
            bias: bias.map(parameter),
        }
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.weight.dim(1)
    }

    /// Number of output features.
    pub fn out_features(&self) -> usize {
        self.weight.dim(0)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        linear(x, &self.weight, self.bias.as_ref())
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }
}

/// The differentiable op `x·Wᵀ + b` for `x: [..., in]`, `w: [out, in]`, `b: [out]`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let (out_f, in_f) = (w.dim(0), w.dim(1));
    assert!(
        x.ndim() >= 1 && x.shape()[x.ndim() - 1] == in_f,
        "linear: input of shape {:?} does not end in {in_f} features",
        x.shape()
    );
    let n = x.numel() / in_f;
    let mut out = vec![0.0f32; n * out_f];
    {
        let (xd, wd) = (x.data(), w.data());
        gemm(
            1.0,
            MatRef::new(&xd, n, in_f),
            MatRef::new(&wd, out_f, in_f).t(),
            0.0,
            MatMut::new(&mut out, n, out_f),
        );
    }
    if let Some(b) = b {
        let bd = b.data();
        for row in out.chunks_exact_mut(out_f) {
            row.iter_mut().zip(bd.iter()).for_each(|(y, &b)| *y += b);
        }
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("checked above") = out_f;
    let (xs, ws) = (x.clone(), w.clone());
    let mut parents = vec![x, w];
    if let Some(b) = b {
        parents.push(b);
    }
    let has_bias = b.is_some();
    Tensor::from_op(out, &shape, &parents, move |g, needs| {
        let dx = needs[0].then(|| {
            let mut dx = vec![0.0; n * in_f];
            gemm(
                1.0,
                MatRef::new(g, n, out_f),
                MatRef::new(&ws.data(), out_f, in_f),
                0.0,
                MatMut::new(&mut dx, n, in_f),
            );
            dx
        });
        let dw = needs[1].then(|| {
            let mut dw = vec![0.0; out_f * in_f];
            gemm(
                1.0,
                MatRef::new(g, n, out_f).t(),
                MatRef::new(&xs.data(), n, in_f),
                0.0,
                MatMut::new(&mut dw, out_f, in_f),
            );
            dw
        });
        let mut grads = vec![dx, dw];
        if has_bias {
            grads.push(needs[2].then(|| {
                let mut db = vec![0.0; out_f];
                for row in g.chunks_exact(out_f) {
                    db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
                }
                db
            }));
        }
        grads
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn linear_matches_matmul_and_passes_gradcheck() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let x = Tensor::randn(&[3, 4], &mut rng);
        let w = Tensor::randn(&[2, 4], &mut rng);
        let b = Tensor::randn(&[2], &mut rng);
        let y = linear(&x, &w, Some(&b));
        let reference = x.matmul(&w.transpose(0, 1)).add(&b);
        for (a, r) in y.to_vec().iter().zip(reference.to_vec()) {
            assert!((a - r).abs() < 1e-5);
        }
        simclr_tensor::gradcheck(|t| linear(&t[0], &t[1], Some(&t[2])), &[x, w, b]).unwrap();
    }
}
