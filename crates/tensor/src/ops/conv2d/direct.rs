//! The direct path: a convolution of a single input channel with stride 1 (a network's first
//! layer, [`Path::Direct`](super::Path::Direct)). Its column matrix would have only
//! `K = kh·kw` rows, too thin for a GEMM (each output would get a handful of multiply-adds per
//! load and store of `C`), so the forward and the weight gradient are loops over a zero-padded
//! copy of the image ([`pad_plane`]): per output channel the weights stay in registers and each
//! block of [`LANES`] outputs is `kh·kw` fused multiply-adds; the weight gradient keeps one
//! vector accumulator per tap. The input gradient, rarely wanted of a first layer, goes
//! through im2col's col2im ([`im2col::backward_images`]).

use super::geometry::{Geometry, LANES};
use super::layout::pad_plane;
use super::{im2col, over_image_tasks, with_scratch, Grads, Needs, OutputGrad, Task};

/// The forward of one task's images `x_t` into `y_t`, image by image.
pub(super) fn forward_images(
    g: &Geometry,
    x_t: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y_t: &mut [f32],
) {
    with_scratch(g.padded_plane_len(), |xp| {
        for (y_i, x_i) in y_t
            .chunks_exact_mut(g.out_image())
            .zip(x_t.chunks_exact(g.in_image()))
        {
            pad_plane(g, x_i, xp);
            direct_forward(g, xp, w, bias, y_i);
        }
    });
}

/// The gradients of the input, weight and bias (each only if needed) for the whole batch.
pub(super) fn backward(g: &Geometry, x: &[f32], w: &[f32], dy: OutputGrad, needs: Needs) -> Grads {
    over_image_tasks(
        g,
        x,
        dy,
        g.group_images(),
        g.cout * g.col_rows(),
        needs,
        |task| {
            let Task { x, dy, dx, dw } = task;
            if let Some(dw) = dw {
                with_scratch(g.padded_plane_len(), |xp| {
                    for (x_i, dy_i) in x
                        .chunks_exact(g.in_image())
                        .zip(dy.chunks_exact(g.out_image()))
                    {
                        pad_plane(g, x_i, xp);
                        direct_weight_grad(g, xp, dy_i, dw);
                    }
                });
            }
            if dx.is_some() {
                im2col::backward_images(
                    g,
                    w,
                    Task {
                        x,
                        dy,
                        dx,
                        dw: None,
                    },
                );
            }
        },
    )
}

impl Geometry {
    /// Offset in the padded plane of every tap `(ky, kx)` from its output position.
    fn tap_offsets<const T: usize>(&self) -> [usize; T] {
        std::array::from_fn(|t| (t / self.kw) * self.padded_w() + t % self.kw)
    }
}

/// `a·b + c`, fused into one instruction when the build targets a CPU with FMA (and computed
/// as two roundings otherwise, rather than through a slow software `fma`).
#[inline(always)]
fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Direct forward of a single-channel, stride-1 convolution of one image:
/// `y[co, oy, ox] = b[co] + Σ_{ky,kx} w[co, ky, kx] · xp[oy + ky, ox + kx]`. 3×3 and 5×5
/// kernels take the register-blocked kernel.
fn direct_forward(g: &Geometry, xp: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    match g.kh * g.kw {
        9 if g.kh == 3 => direct_forward_taps::<9>(g, xp, w, bias, y),
        25 if g.kh == 5 => direct_forward_taps::<25>(g, xp, w, bias, y),
        _ => direct_forward_rows(g, xp, w, bias, y),
    }
}

/// The register-blocked forward: for each output channel its `T` weights sit in registers,
/// and each block of [`LANES`] outputs of a row is `T` multiply-adds of input vectors (read
/// from the padded plane, in L1) and one store; the channel's plane is written in order.
fn direct_forward_taps<const T: usize>(
    g: &Geometry,
    xp: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let (wo, p, wp) = (g.wo, g.out_pixels(), g.padded_w());
    let offsets = g.tap_offsets::<T>();
    for (co, (wc, yc)) in w.chunks_exact(T).zip(y.chunks_exact_mut(p)).enumerate() {
        let wc: &[f32; T] = wc.try_into().unwrap();
        let b = bias.map_or(0.0, |b| b[co]);
        for oy in 0..g.ho {
            for ox0 in (0..wo).step_by(LANES) {
                let base = oy * wp + ox0;
                let mut acc = [b; LANES];
                for t in 0..T {
                    let xv: &[f32; LANES] = xp[base + offsets[t]..][..LANES].try_into().unwrap();
                    for l in 0..LANES {
                        acc[l] = fmadd(wc[t], xv[l], acc[l]);
                    }
                }
                let at = oy * wo + ox0;
                if at + LANES <= p {
                    // A whole-register store. A short last block of a row spills into the
                    // following row, which is written after this one; a copy of only the
                    // valid values would call memcpy.
                    <&mut [f32; LANES]>::try_from(&mut yc[at..at + LANES])
                        .unwrap()
                        .copy_from_slice(&acc);
                } else {
                    for (o, a) in yc[at..].iter_mut().zip(acc) {
                        *o = a;
                    }
                }
            }
        }
    }
}

/// The plain forward for other kernel sizes: each tap is a multiply-add of a whole row.
fn direct_forward_rows(g: &Geometry, xp: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (kk, wo, wp) = (g.kh * g.kw, g.wo, g.padded_w());
    for (co, (wc, yc)) in w
        .chunks_exact(kk)
        .zip(y.chunks_exact_mut(g.out_pixels()))
        .enumerate()
    {
        yc.fill(bias.map_or(0.0, |b| b[co]));
        for (oy, out) in yc.chunks_exact_mut(wo).enumerate() {
            for ky in 0..g.kh {
                let row = &xp[(oy + ky) * wp..][..wp];
                for kx in 0..g.kw {
                    let wv = wc[ky * g.kw + kx];
                    for (o, &v) in out.iter_mut().zip(&row[kx..kx + wo]) {
                        *o += wv * v;
                    }
                }
            }
        }
    }
}

/// Direct weight gradient of a single-channel, stride-1 convolution of one image:
/// `dw[co, ky, kx] += Σ_{oy,ox} dy[co, oy, ox] · xp[oy + ky, ox + kx]`.
fn direct_weight_grad(g: &Geometry, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
    match g.kh * g.kw {
        9 if g.kh == 3 => direct_weight_grad_taps::<9>(g, xp, dy, dw),
        25 if g.kh == 5 => direct_weight_grad_taps::<25>(g, xp, dy, dw),
        _ => direct_weight_grad_rows(g, xp, dy, dw),
    }
}

/// The register-blocked weight gradient: for each output channel, `T` vector accumulators (one
/// per tap) run over the whole image, each block adding `dy`-block × input-block; the lanes
/// are summed once at the end. Lanes past the end of a row get a zero `dy`.
fn direct_weight_grad_taps<const T: usize>(g: &Geometry, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (wo, wp) = (g.wo, g.padded_w());
    let offsets = g.tap_offsets::<T>();
    // Lanes of each block of a row that lie inside the row (the last block may be short).
    let masks: Vec<[bool; LANES]> = (0..wo)
        .step_by(LANES)
        .map(|ox0| std::array::from_fn(|l| ox0 + l < wo))
        .collect();
    for (co, dwc) in dw.chunks_exact_mut(T).enumerate() {
        let mut acc = [[0.0f32; LANES]; T];
        for oy in 0..g.ho {
            for (ox0, mask) in (0..wo).step_by(LANES).zip(&masks) {
                let at = co * g.out_pixels() + oy * wo + ox0;
                // A whole-register load (reading past the row when the block is short), with
                // the lanes outside the row zeroed by a select, not a per-lane copy.
                let gv: [f32; LANES] = match dy.get(at..at + LANES) {
                    Some(raw) => {
                        let raw: &[f32; LANES] = raw.try_into().unwrap();
                        std::array::from_fn(|l| if mask[l] { raw[l] } else { 0.0 })
                    }
                    None => std::array::from_fn(|l| if mask[l] { dy[at + l] } else { 0.0 }),
                };
                let base = oy * wp + ox0;
                for t in 0..T {
                    let xv: &[f32; LANES] = xp[base + offsets[t]..][..LANES].try_into().unwrap();
                    for l in 0..LANES {
                        acc[t][l] = fmadd(gv[l], xv[l], acc[t][l]);
                    }
                }
            }
        }
        for (d, a) in dwc.iter_mut().zip(&acc) {
            *d += a.iter().sum::<f32>();
        }
    }
}

/// The plain weight gradient for other kernel sizes: one dot product per tap and row.
fn direct_weight_grad_rows(g: &Geometry, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (kk, wo, wp) = (g.kh * g.kw, g.wo, g.padded_w());
    for (dwc, dyc) in dw.chunks_exact_mut(kk).zip(dy.chunks_exact(g.out_pixels())) {
        for (oy, grow) in dyc.chunks_exact(wo).enumerate() {
            for ky in 0..g.kh {
                let row = &xp[(oy + ky) * wp..][..wp];
                for kx in 0..g.kw {
                    dwc[ky * g.kw + kx] +=
                        crate::vector::sum_map2(grow, &row[kx..kx + wo], |a, b| a * b);
                }
            }
        }
    }
}
