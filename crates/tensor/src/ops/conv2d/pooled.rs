//! A convolution followed by ReLU and a 2×2, stride-2 max-pool, as one op
//! ([`Tensor::conv2d_relu_max_pool2d`]): the `Conv2d, ReLU, MaxPool2d(2)` block of a small CNN.
//!
//! Run as separate ops, the block writes the whole convolution output for the batch (25 MB for
//! the MNIST encoder's first layer at batch 256), reads it back to pool it, and backwards
//! writes and reads a gradient of the same size. Fused, each task's images (a group of small
//! images, or one, on the convolution's path: [`Forward`]) are convolved into a per-thread
//! scratch that stays in L2 and pooled from there; only the pooled output (a quarter) and one byte of window code per
//! pooled value are kept. The backward rebuilds each group's output gradient from those in
//! the same scratch (`unpool`) and runs the convolution's backward on it.
//!
//! Values and gradients equal `conv2d(..).relu_max_pool2d(2, 2)` bit for bit: the same
//! convolution and pool kernels run, only where their data lives changes.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{geometry, parallel_tasks, record, Forward, OUTPUT_SCRATCH};
use crate::ops::pool::pool2x2_plane;
use crate::tensor::Tensor;

impl Tensor {
    /// `self.conv2d(weight, bias, stride, padding).relu_max_pool2d(2, 2)` as one op (see the
    /// module docs): `[N, Cin, H, W] → [N, Cout, Ho/2, Wo/2]`, where `Ho × Wo` is the
    /// convolution's output. Differentiable in all three operands.
    ///
    /// Panics, naming the shapes, where `conv2d` would, or if the convolution's output is
    /// smaller than the 2×2 window.
    pub fn conv2d_relu_max_pool2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Tensor {
        let g = geometry(
            self.shape(),
            weight.shape(),
            bias.map(|b| b.shape()),
            stride,
            padding,
        );
        assert!(
            g.ho >= 2 && g.wo >= 2,
            "conv2d_relu_max_pool2d: the convolution of input {:?} by weight {:?} gives {}×{} \
             pixels, fewer than the 2×2 pool window",
            self.shape(),
            weight.shape(),
            g.ho,
            g.wo
        );
        let (y, codes) = {
            let (x, w) = (self.data(), weight.data());
            let b = bias.map(|b| b.data());
            forward_pooled(&g, &x, &w, b.as_deref().map(Vec::as_slice))
        };
        let shape = [g.n, g.cout, g.ho / 2, g.wo / 2];
        record(g, y, shape, (self, weight, bias), Some(codes))
    }
}

/// The pooled output and the window codes of the whole batch, one task's images at a time
/// (as rayon tasks when there are enough of them).
fn forward_pooled(
    g: &super::geometry::Geometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> (Vec<f32>, Vec<u8>) {
    let pooled = (g.ho / 2) * (g.wo / 2);
    let len = g.n * g.cout * pooled;
    let (mut y, mut codes) = (Vec::with_capacity(len), Vec::with_capacity(len));
    let fwd = Forward::new(g, w);
    let task_images = fwd.task_images(g);
    type Chunk<'a> = (
        (&'a mut [MaybeUninit<f32>], &'a mut [MaybeUninit<u8>]),
        &'a [f32],
    );
    let run = |((y_g, codes_g), x_g): Chunk| {
        OUTPUT_SCRATCH.with(|s| {
            let mut conv = s.borrow_mut();
            conv.resize(x_g.len() / g.in_image() * g.out_image(), 0.0);
            fwd.run(g, x_g, w, bias, &mut conv);
            let outputs = y_g
                .chunks_exact_mut(pooled)
                .zip(codes_g.chunks_exact_mut(pooled));
            for (plane, (out, code)) in conv.chunks_exact(g.out_pixels()).zip(outputs) {
                pool2x2_plane::<true>(plane, g.wo, out, code);
            }
        })
    };
    {
        let (ys, cs) = (
            &mut y.spare_capacity_mut()[..len],
            &mut codes.spare_capacity_mut()[..len],
        );
        let (out_len, in_len) = (task_images * g.cout * pooled, task_images * g.in_image());
        if parallel_tasks(g.n.div_ceil(task_images)) {
            ys.par_chunks_mut(out_len)
                .zip(cs.par_chunks_mut(out_len))
                .zip(x.par_chunks(in_len))
                .for_each(run);
        } else {
            ys.chunks_mut(out_len)
                .zip(cs.chunks_mut(out_len))
                .zip(x.chunks(in_len))
                .for_each(run);
        }
    }
    // SAFETY: both capacities are `len`; the groups cover all `n` images, and for each image
    // `pool2x2_plane` wrote every pooled value and code of every one of its `cout` planes.
    unsafe {
        y.set_len(len);
        codes.set_len(len);
    }
    (y, codes)
}
