//! Matrix product, 2-D and batched, on the crate's GEMM.
//!
//! `C = A·B` with `A: [m, k]`, `B: [k, n]`. Backward: `dA = dC·Bᵀ` and `dB = Aᵀ·dC`, two more
//! GEMMs with transposed views (no copies). Batched: `[b, m, k]·[b, k, n]`, or `[b, m, k]·[k, n]`
//! with one shared right operand (whose gradient sums over the batch).

use crate::gemm::{gemm, MatMut, MatRef};
use crate::tensor::Tensor;

impl Tensor {
    /// Matrix product: `[m,k]·[k,n] → [m,n]`, `[b,m,k]·[b,k,n] → [b,m,n]`, or
    /// `[b,m,k]·[k,n] → [b,m,n]`.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        let (a_shape, b_shape) = (self.shape().to_vec(), other.shape().to_vec());
        let mismatch =
            || -> ! { panic!("matmul: cannot multiply shapes {a_shape:?} and {b_shape:?}") };
        let (batch, m, k) = match a_shape.as_slice() {
            [m, k] => (None, *m, *k),
            [b, m, k] => (Some(*b), *m, *k),
            _ => mismatch(),
        };
        let (b_batched, n) = match (b_shape.as_slice(), batch) {
            (&[k2, n], _) if k2 == k => (false, n),
            (&[b2, k2, n], Some(b)) if b2 == b && k2 == k => (true, n),
            _ => mismatch(),
        };
        let nb = batch.unwrap_or(1);
        let mut out = vec![0.0; nb * m * n];
        {
            let (a, b) = (self.data(), other.data());
            for i in 0..nb {
                let bi = if b_batched {
                    &b[i * k * n..(i + 1) * k * n]
                } else {
                    &b[..]
                };
                gemm(
                    1.0,
                    MatRef::new(&a[i * m * k..(i + 1) * m * k], m, k),
                    MatRef::new(bi, k, n),
                    0.0,
                    MatMut::new(&mut out[i * m * n..(i + 1) * m * n], m, n),
                );
            }
        }
        let out_shape: Vec<usize> = batch.map_or(vec![m, n], |b| vec![b, m, n]);
        let (a_t, b_t) = (self.clone(), other.clone());
        Tensor::from_op(out, &out_shape, &[self, other], move |g, needs| {
            let (a, b) = (a_t.data(), b_t.data());
            let da = needs[0].then(|| {
                let mut da = vec![0.0; nb * m * k];
                for i in 0..nb {
                    let bi = if b_batched {
                        &b[i * k * n..(i + 1) * k * n]
                    } else {
                        &b[..]
                    };
                    gemm(
                        1.0,
                        MatRef::new(&g[i * m * n..(i + 1) * m * n], m, n),
                        MatRef::new(bi, k, n).t(),
                        0.0,
                        MatMut::new(&mut da[i * m * k..(i + 1) * m * k], m, k),
                    );
                }
                da
            });
            let db = needs[1].then(|| {
                let mut db = vec![0.0; if b_batched { nb * k * n } else { k * n }];
                for i in 0..nb {
                    let (dbi, beta) = if b_batched {
                        (&mut db[i * k * n..(i + 1) * k * n], 0.0)
                    } else {
                        (&mut db[..], if i == 0 { 0.0 } else { 1.0 })
                    };
                    gemm(
                        1.0,
                        MatRef::new(&a[i * m * k..(i + 1) * m * k], m, k).t(),
                        MatRef::new(&g[i * m * n..(i + 1) * m * n], m, n),
                        beta,
                        MatMut::new(dbi, k, n),
                    );
                }
                db
            });
            vec![da, db]
        })
    }
}
