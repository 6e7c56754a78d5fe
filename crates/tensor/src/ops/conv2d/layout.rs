//! Moving rows and planes between the layouts the paths use: short-row copies, zero-padded
//! input planes, and the rows of a group's output scratch (rows `pitch` apart) to and from
//! NCHW.

use super::geometry::Geometry;

/// `f(d, s)` for each pair of a short row `dst` and its source `src` (4 to a few dozen values,
/// as im2col, col2im and the group gathers move them): whole 16-, 8- and 4-lane blocks of fixed
/// length, which compile to register moves and vector ops, then the rest one by one. A plain
/// loop over a dozen values spends more on its vector-loop set-up and scalar tail than on the
/// values. (For a copy, LLVM still turns the loop of 16-value blocks into a `memmove` call;
/// writing the first two blocks out straight, so that rows up to 32 values copy inline, moved
/// that time into the callers and saved nothing on the ResNet-10 step of `--preset cpu-hour`.)
#[inline(always)]
fn zip_row(dst: &mut [f32], src: &[f32], f: impl Fn(&mut f32, f32) + Copy) {
    assert_eq!(dst.len(), src.len(), "zip_row: length mismatch");
    #[inline(always)]
    fn block<const N: usize>(d: &mut [f32], s: &[f32], f: impl Fn(&mut f32, f32)) {
        let d: &mut [f32; N] = d.try_into().unwrap();
        let s: &[f32; N] = s.try_into().unwrap();
        d.iter_mut().zip(s).for_each(|(d, &s)| f(d, s));
    }
    let (mut d, mut s) = (dst, src);
    while d.len() >= 16 {
        let (dh, dt) = d.split_at_mut(16);
        block::<16>(dh, &s[..16], f);
        (d, s) = (dt, &s[16..]);
    }
    if d.len() >= 8 {
        let (dh, dt) = d.split_at_mut(8);
        block::<8>(dh, &s[..8], f);
        (d, s) = (dt, &s[8..]);
    }
    if d.len() >= 4 {
        let (dh, dt) = d.split_at_mut(4);
        block::<4>(dh, &s[..4], f);
        (d, s) = (dt, &s[4..]);
    }
    for (d, &s) in d.iter_mut().zip(s).take(3) {
        f(d, s);
    }
}

/// `dst.copy_from_slice(src)` for short rows ([`zip_row`]: under 16 values, without a
/// `memmove` call).
#[inline(always)]
pub(crate) fn copy_row(dst: &mut [f32], src: &[f32]) {
    zip_row(dst, src, |d, s| *d = s);
}

/// `dst += src` for short rows ([`zip_row`]).
#[inline(always)]
pub(crate) fn add_row(dst: &mut [f32], src: &[f32]) {
    zip_row(dst, src, |d, s| *d += s);
}

/// Copies a single-channel image `x` (`[h, w]`) into `xp` (`[padded_h, padded_w]`) with a zero
/// border, so every tap of the direct kernels reads whole blocks without bounds tests.
pub(crate) fn pad_plane(g: &Geometry, x: &[f32], xp: &mut [f32]) {
    let (p, wp) = (g.pad, g.padded_w());
    xp.fill(0.0);
    for (iy, row) in x.chunks_exact(g.w).enumerate() {
        copy_row(&mut xp[(iy + p) * wp + p..][..g.w], row);
    }
}

/// Copies every channel of the images `x` (`[images, cin, h, w]`) into its own zero-padded
/// plane of `xp` (`[images, cin, padded_h, padded_w]`, [`pad_plane`]).
pub(crate) fn pad_images(g: &Geometry, x: &[f32], xp: &mut [f32]) {
    let plane = g.padded_plane_len();
    for (x_c, xp_c) in x.chunks_exact(g.h * g.w).zip(xp.chunks_exact_mut(plane)) {
        pad_plane(g, x_c, xp_c);
    }
}

/// Copies one channel's rows of `wo` pixels, which start `pitch` apart in `src` (a group's
/// output scratch), back to back into `dst`, adding `bias`.
fn narrow_rows(dst: &mut [f32], src: &[f32], wo: usize, pitch: usize, bias: Option<f32>) {
    let (row, pitch) = if pitch == wo {
        (dst.len(), dst.len()) // rows already back to back: one run
    } else {
        (wo, pitch)
    };
    for (d, s) in dst.chunks_exact_mut(row).zip(src.chunks(pitch)) {
        match bias {
            Some(bv) => d.iter_mut().zip(s).for_each(|(d, &v)| *d = v + bv),
            None => copy_row(d, &s[..row]),
        }
    }
}

/// The inverse of [`narrow_rows`] (without a bias): the rows of `wo` pixels of `src` placed
/// `pitch` apart in `dst`, the columns between them and after the last one zero.
fn widen_rows(dst: &mut [f32], src: &[f32], wo: usize, pitch: usize) {
    if pitch == wo && dst.len() == src.len() {
        return copy_row(dst, src);
    }
    dst.fill(0.0);
    for (d, s) in dst.chunks_mut(pitch).zip(src.chunks_exact(wo)) {
        copy_row(&mut d[..wo], s);
    }
}

/// Sets every output plane of one image `y_i` (`[cout, p]`) to its channel's bias, so a GEMM
/// can accumulate onto it; returns the GEMM's `β` (1 with a bias, 0 without: the output is
/// then overwritten).
pub(crate) fn init_with_bias(y_i: &mut [f32], p: usize, bias: Option<&[f32]>) -> f32 {
    match bias {
        Some(b) => {
            for (row, &bv) in y_i.chunks_exact_mut(p).zip(b) {
                row.fill(bv);
            }
            1.0
        }
        None => 0.0,
    }
}

/// Scatters a group's output scratch `out` (`Cout × images·gp`: image `i`'s columns from
/// `i·gp`, its rows of `wo` pixels `pitch` apart) to the NCHW images `y_g`, adding the bias.
pub(crate) fn scatter_group(
    g: &Geometry,
    out: &[f32],
    gp: usize,
    pitch: usize,
    bias: Option<&[f32]>,
    y_g: &mut [f32],
) {
    let width = y_g.len() / g.out_image() * gp;
    for (i, y_i) in y_g.chunks_exact_mut(g.out_image()).enumerate() {
        for (co, y_c) in y_i.chunks_exact_mut(g.out_pixels()).enumerate() {
            let src = &out[co * width + i * gp..][..gp];
            narrow_rows(y_c, src, g.wo, pitch, bias.map(|b| b[co]));
        }
    }
}

/// The adjoint of [`scatter_group`] without the bias: the NCHW output gradient `dy_g` laid
/// out as `Cout × images·gp`, zero between and after the rows.
pub(crate) fn gather_group(
    g: &Geometry,
    dy_g: &[f32],
    gp: usize,
    pitch: usize,
    dy_mat: &mut [f32],
) {
    let width = dy_g.len() / g.out_image() * gp;
    for (i, dy_i) in dy_g.chunks_exact(g.out_image()).enumerate() {
        for (co, src) in dy_i.chunks_exact(g.out_pixels()).enumerate() {
            widen_rows(&mut dy_mat[co * width + i * gp..][..gp], src, g.wo, pitch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{add_row, copy_row};

    /// Every row length, through several 16-value blocks and each tail (8, 4, then one by
    /// one), copies and adds each value once, in place.
    #[test]
    fn short_row_copies_and_adds_match_the_plain_loops() {
        for len in 0..=70 {
            let src: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            let mut dst = vec![-1.0; len];
            copy_row(&mut dst, &src);
            assert_eq!(dst, src, "copy_row, {len} values");
            add_row(&mut dst, &src);
            let doubled: Vec<f32> = src.iter().map(|v| 2.0 * v).collect();
            assert_eq!(dst, doubled, "add_row, {len} values");
        }
    }
}
