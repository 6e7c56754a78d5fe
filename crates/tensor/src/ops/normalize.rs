//! L2 normalisation along an axis: `y = x / max(‖x‖₂, ε)`.
//!
//! Backward (where `‖x‖ > ε`): `dx = (dy − y·⟨dy, y⟩) / ‖x‖`, the projection of `dy` onto the
//! tangent space of the sphere, scaled; where the norm was clamped, `dx = dy / ε`.

use crate::shape::normalize_axis;
use crate::tensor::Tensor;

impl Tensor {
    /// Divides each vector along `axis` by its Euclidean norm (at least `eps`), as
    /// `torch.nn.functional.normalize(x, dim=axis, eps=eps)`.
    pub fn l2_normalize(&self, axis: isize, eps: f32) -> Tensor {
        let axis = normalize_axis(axis, self.ndim(), "l2_normalize");
        let n = self.dim(axis);
        let inner: usize = self.shape()[axis + 1..].iter().product();
        let outer: usize = self.shape()[..axis].iter().product();
        let x = self.data();
        let mut norms = vec![0.0f32; outer * inner];
        for o in 0..outer {
            for j in 0..n {
                for i in 0..inner {
                    let v = x[(o * n + j) * inner + i];
                    norms[o * inner + i] += v * v;
                }
            }
        }
        norms.iter_mut().for_each(|s| *s = s.sqrt());
        // Vectors whose norm was clamped to ε are divided by the constant ε (gradient dy/ε).
        let clamped: Vec<bool> = norms.iter().map(|&n| n < eps).collect();
        norms.iter_mut().for_each(|n| *n = n.max(eps));
        let mut y = vec![0.0; x.len()];
        for o in 0..outer {
            for j in 0..n {
                for i in 0..inner {
                    let at = (o * n + j) * inner + i;
                    y[at] = x[at] / norms[o * inner + i];
                }
            }
        }
        drop(x);
        let out = Tensor::from_vec(y, self.shape());
        let y_saved = out.detach();
        Tensor::record(out, &[self], move |g, _| {
            let ys = y_saved.data();
            let mut dx = vec![0.0; g.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let norm = norms[o * inner + i];
                    let clamped = clamped[o * inner + i];
                    let mut dot = 0.0;
                    for j in 0..n {
                        let at = (o * n + j) * inner + i;
                        dot += g[at] * ys[at];
                    }
                    for j in 0..n {
                        let at = (o * n + j) * inner + i;
                        dx[at] = if clamped {
                            g[at] / norm
                        } else {
                            (g[at] - ys[at] * dot) / norm
                        };
                    }
                }
            }
            vec![Some(dx)]
        })
    }
}
