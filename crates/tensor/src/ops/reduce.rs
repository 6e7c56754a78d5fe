//! Reductions: sum and mean over all elements or over chosen axes.
//!
//! `y = Σ_{axes} x`: every input element contributes once to one output, so the backward
//! broadcasts `dy` back over the reduced axes (`dx = dy` broadcast); for the mean, `dx = dy/n`.

use crate::shape::{broadcast_to, normalize_axis, numel};
use crate::tensor::Tensor;

/// Sums axis `axis` of a row-major array viewed as `[outer, n, inner]`.
fn sum_axis(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out = vec![0.0; outer * inner];
    for o in 0..outer {
        let dst = &mut out[o * inner..(o + 1) * inner];
        for j in 0..n {
            let src = &x[(o * n + j) * inner..(o * n + j + 1) * inner];
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        }
    }
    out
}

impl Tensor {
    /// Sum of all elements, as a scalar tensor. Backward: `dx = dy` everywhere.
    pub fn sum(&self) -> Tensor {
        let total: f64 = self.data().iter().map(|&v| v as f64).sum();
        let n = self.numel();
        Tensor::from_op(vec![total as f32], &[], &[self], move |g, _| {
            vec![Some(vec![g[0]; n])]
        })
    }

    /// Mean of all elements, as a scalar tensor. Backward: `dx = dy/n`.
    pub fn mean(&self) -> Tensor {
        self.sum().mul_scalar(1.0 / self.numel().max(1) as f32)
    }

    /// Sum over `axes` (negative counts from the end); `keepdim` keeps them as size-1 axes.
    pub fn sum_axes(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let mut axes: Vec<usize> = axes
            .iter()
            .map(|&a| normalize_axis(a, self.ndim(), "sum_axes"))
            .collect();
        axes.sort_unstable();
        axes.dedup();
        let mut kept = self.shape().to_vec();
        let mut values = self.to_vec();
        for &ax in axes.iter().rev() {
            values = sum_axis(&values, &kept, ax);
            kept[ax] = 1;
        }
        let out_shape: Vec<usize> = if keepdim {
            kept.clone()
        } else {
            kept.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        };
        let in_shape = self.shape().to_vec();
        Tensor::from_op(values, &out_shape, &[self], move |g, _| {
            vec![Some(broadcast_to(g, &kept, &in_shape))]
        })
    }

    /// Mean over `axes`; `keepdim` keeps them as size-1 axes. Backward: `dx = dy/n` broadcast,
    /// with `n` the number of elements averaged.
    pub fn mean_axes(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let summed = self.sum_axes(axes, keepdim);
        let n = self.numel() / numel(summed.shape()).max(1);
        summed.mul_scalar(1.0 / n.max(1) as f32)
    }
}
