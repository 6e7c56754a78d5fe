//! Ops that move elements without changing them: reshape, transpose / permute, concat, slice.
//!
//! Each is a permutation (or selection) of positions, so its backward applies the inverse
//! movement to the gradient: reshape back, the inverse permutation, split, or scatter into zeros.

use crate::shape::{normalize_axis, numel, strides};
use crate::tensor::Tensor;

/// Copies `x` (shape `shape`) into the layout whose axis `i` is input axis `perm[i]`.
fn permute_data(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let in_strides = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut out = Vec::with_capacity(x.len());
    crate::shape::for_each_index(&out_shape, |_, src| out.push(x[src]), &src_strides);
    out
}

impl Tensor {
    /// The same elements with a new shape (same count). One axis may be given as `usize::MAX`
    /// to be inferred. Shares the buffer; backward reshapes the gradient back.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let mut shape = shape.to_vec();
        if let Some(pos) = shape.iter().position(|&d| d == usize::MAX) {
            let known: usize = shape.iter().filter(|&&d| d != usize::MAX).product();
            assert!(
                known > 0 && self.numel().is_multiple_of(known),
                "reshape: cannot infer an axis of {:?} from {:?}",
                shape,
                self.shape()
            );
            shape[pos] = self.numel() / known;
        }
        assert_eq!(
            numel(&shape),
            self.numel(),
            "reshape: cannot view shape {:?} ({} elements) as {:?}",
            self.shape(),
            self.numel(),
            shape
        );
        let out = Tensor::from_storage(self.0.data.clone(), shape);
        Tensor::record(out, &[self], |g, _| vec![Some(g.to_vec())])
    }

    /// Flattens every axis after the first: `[N, ...] → [N, rest]`.
    pub fn flatten(&self) -> Tensor {
        assert!(
            self.ndim() >= 1,
            "flatten: needs at least one axis, got a scalar"
        );
        let n = self.dim(0);
        self.reshape(&[n, self.numel() / n.max(1)])
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`. Backward applies the inverse
    /// permutation.
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let mut seen = vec![false; self.ndim()];
        assert!(
            perm.len() == self.ndim()
                && perm
                    .iter()
                    .all(|&p| p < self.ndim() && !std::mem::replace(&mut seen[p], true)),
            "permute: {perm:?} is not a permutation of the {} axes of shape {:?}",
            self.ndim(),
            self.shape()
        );
        let out_shape: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let out = permute_data(&self.data(), self.shape(), perm);
        let mut inverse = vec![0; perm.len()];
        perm.iter().enumerate().for_each(|(i, &p)| inverse[p] = i);
        let grad_shape = out_shape.clone();
        Tensor::from_op(out, &out_shape, &[self], move |g, _| {
            vec![Some(permute_data(g, &grad_shape, &inverse))]
        })
    }

    /// Swaps two axes (a copy, so the result stays contiguous).
    pub fn transpose(&self, a: isize, b: isize) -> Tensor {
        let (a, b) = (
            normalize_axis(a, self.ndim(), "transpose"),
            normalize_axis(b, self.ndim(), "transpose"),
        );
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Joins tensors along `axis`; all other axes must agree. Backward splits the gradient.
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Tensor {
        assert!(!tensors.is_empty(), "concat: no tensors given");
        let first = tensors[0].shape().to_vec();
        let axis = normalize_axis(axis, first.len(), "concat");
        for t in tensors {
            let ok = t.ndim() == first.len()
                && (0..first.len()).all(|i| i == axis || t.shape()[i] == first[i]);
            assert!(
                ok,
                "concat: shape {:?} does not match {:?} outside axis {axis}",
                t.shape(),
                first
            );
        }
        let outer: usize = first[..axis].iter().product();
        let inner: usize = first[axis + 1..].iter().product();
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[axis]).collect();
        let total: usize = sizes.iter().sum();
        let mut out = Vec::with_capacity(outer * total * inner);
        let datas: Vec<_> = tensors.iter().map(|t| t.data()).collect();
        for o in 0..outer {
            for (d, &s) in datas.iter().zip(&sizes) {
                out.extend_from_slice(&d[o * s * inner..(o + 1) * s * inner]);
            }
        }
        drop(datas);
        let mut shape = first;
        shape[axis] = total;
        Tensor::from_op(out, &shape, tensors, move |g, needs| {
            let mut grads: Vec<Vec<f32>> = sizes
                .iter()
                .map(|&s| Vec::with_capacity(outer * s * inner))
                .collect();
            let mut pos = 0;
            for _ in 0..outer {
                for (gr, &s) in grads.iter_mut().zip(&sizes) {
                    gr.extend_from_slice(&g[pos..pos + s * inner]);
                    pos += s * inner;
                }
            }
            grads
                .into_iter()
                .zip(needs)
                .map(|(g, &n)| n.then_some(g))
                .collect()
        })
    }

    /// Elements `start..end` along `axis` (a copy). Backward scatters the gradient into zeros.
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Tensor {
        let axis = normalize_axis(axis, self.ndim(), "slice");
        let n = self.shape()[axis];
        assert!(
            start <= end && end <= n,
            "slice: range {start}..{end} is out of bounds for axis {axis} of shape {:?}",
            self.shape()
        );
        let outer: usize = self.shape()[..axis].iter().product();
        let inner: usize = self.shape()[axis + 1..].iter().product();
        let len = end - start;
        let x = self.data();
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            out.extend_from_slice(&x[(o * n + start) * inner..(o * n + end) * inner]);
        }
        drop(x);
        let mut shape = self.shape().to_vec();
        shape[axis] = len;
        let in_numel = self.numel();
        Tensor::from_op(out, &shape, &[self], move |g, _| {
            let mut dx = vec![0.0; in_numel];
            for o in 0..outer {
                dx[(o * n + start) * inner..(o * n + end) * inner]
                    .copy_from_slice(&g[o * len * inner..(o + 1) * len * inner]);
            }
            vec![Some(dx)]
        })
    }
}
