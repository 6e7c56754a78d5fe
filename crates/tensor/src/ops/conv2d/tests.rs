//! conv2d: every fast path against [`reference`] (the definition), gradchecks over strides,
//! paddings, kernel shapes and the special paths, values against PyTorch, shape errors.

use rand::{rngs::StdRng, SeedableRng};

use super::reference;
use crate::{gradcheck, Tensor};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// Gradchecks `conv2d` in all of its operands (with or without bias).
fn check(x: &[usize], w: &[usize], bias: bool, stride: usize, padding: usize) {
    let mut inputs = vec![rand(x, 1), rand(w, 2)];
    if bias {
        inputs.push(rand(&[w[0]], 3));
    }
    gradcheck(|t| t[0].conv2d(&t[1], t.get(2), stride, padding), &inputs)
        .unwrap_or_else(|e| panic!("x {x:?} w {w:?} bias {bias} s {stride} p {padding}: {e}"));
}

#[test]
fn gradcheck_stride1_padding1_bias() {
    check(&[2, 3, 5, 5], &[4, 3, 3, 3], true, 1, 1);
}

#[test]
fn gradcheck_stride2_padding0_no_bias() {
    check(&[3, 2, 7, 6], &[3, 2, 3, 3], false, 2, 0);
}

#[test]
fn gradcheck_stride2_padding1_rectangular_kernel() {
    check(&[2, 3, 6, 7], &[2, 3, 3, 2], true, 2, 1);
}

#[test]
fn gradcheck_single_image_runs_the_serial_path() {
    check(&[1, 2, 5, 4], &[3, 2, 3, 3], true, 1, 1);
}

#[test]
fn gradcheck_rows_of_whole_strips_read_in_place() {
    check(&[2, 2, 3, 16], &[3, 2, 3, 3], true, 1, 1);
    check(&[3, 2, 4, 4], &[3, 2, 3, 3], true, 1, 1);
}

#[test]
fn gradcheck_pointwise_1x1() {
    check(&[3, 4, 4, 5], &[3, 4, 1, 1], true, 1, 0);
}

#[test]
fn gradcheck_1x1_stride2_and_padded_1x1() {
    check(&[2, 3, 5, 5], &[4, 3, 1, 1], false, 2, 0);
    check(&[2, 3, 3, 3], &[2, 3, 1, 1], true, 1, 1);
}

#[test]
fn gradcheck_one_input_channel() {
    check(&[3, 1, 6, 6], &[4, 1, 3, 3], true, 1, 1);
    check(&[2, 1, 7, 7], &[2, 1, 3, 3], true, 2, 1);
}

#[test]
fn kernel_as_large_as_the_padded_input() {
    check(&[2, 2, 3, 3], &[2, 2, 5, 5], true, 1, 1);
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w} (tolerance {tol} abs/rel)"
        );
    }
}

/// Shapes whose column matrix spans several L2 bands (and a strided one with a partial last
/// band), and the direct single-channel kernels (rows of several 16-lane blocks with a short
/// last one, 5×5 taps, and the generic-kernel fallback), and small images that share one
/// column matrix per group (several groups, a short last one, stride 2, 1×1 stride 2), and
/// both Winograd tile sizes, agree with [`reference`] in the output and all three gradients.
#[test]
fn every_path_matches_the_reference() {
    use super::{force_path, winograd::wide_vectors, ConvPath, Path, Tile};
    // As dispatched, then with the GEMM paths forced (the shapes Winograd takes by default
    // then run on the gathered or im2col GEMM).
    for forced in [ConvPath::Auto, ConvPath::Gemm] {
        force_path(forced);
        let taken = paths_match_the_reference();
        force_path(ConvPath::Auto);
        let count = |path: Path| taken.iter().filter(|&&p| p == path).count();
        let counts = [
            count(Path::Direct),
            count(Path::Winograd(Tile::F4)),
            count(Path::Winograd(Tile::F2)),
            count(Path::Gathered),
            count(Path::Im2col),
        ];
        // Every path of the dispatch table ran: as dispatched, the three single-channel shapes
        // direct, the seven 3×3 stride-1 shapes with at least 16 channels in and out by
        // Winograd (F(4×4) from 12 pixels a side, and for the 8-pixel one without AVX-512),
        // the rest on the GEMM paths; forced, all but the direct ones on the GEMM paths.
        let want = match forced {
            ConvPath::Auto if wide_vectors() => [3, 5, 2, 13, 5],
            ConvPath::Auto => [3, 6, 1, 13, 5],
            _ => [3, 0, 0, 19, 6],
        };
        assert_eq!(counts, want, "{forced:?}: {taken:?}");
    }
}

/// Runs every shape below through `conv2d` and its backward against [`reference`]; the paths
/// they took.
fn paths_match_the_reference() -> Vec<super::Path> {
    let mut taken = Vec::new();
    for &(xs, ws, s, p) in &[
        ([2, 64, 12, 40], [8, 64, 3, 3], 1, 1),
        ([3, 48, 15, 33], [5, 48, 3, 3], 2, 1),
        ([2, 16, 9, 9], [6, 16, 1, 1], 1, 0),
        ([3, 1, 28, 28], [5, 1, 3, 3], 1, 1),
        ([2, 1, 9, 37], [3, 1, 5, 5], 1, 2),
        ([2, 1, 7, 8], [3, 1, 2, 3], 1, 0),
        ([40, 64, 4, 4], [8, 64, 3, 3], 1, 1),
        ([37, 96, 7, 6], [5, 96, 3, 3], 2, 1),
        ([21, 8, 6, 6], [4, 8, 1, 1], 2, 0),
        // One large image: the GEMM itself splits its columns over the threads.
        ([1, 32, 40, 40], [32, 32, 3, 3], 1, 1),
        // One group of small images: the GEMM splits its rows.
        ([5, 128, 4, 4], [128, 128, 3, 3], 1, 1),
        // Rows in whole 16-pixel strips: the column matrices (of the forward and of the
        // adjoint convolution behind the input gradient) are read in place from the padded
        // image; K = 27 leaves a partial strip of taps, 5×5 with padding 2 a wider border,
        // 3×3 with padding 0 a smaller output (wo = 16 from w = 18 does not gather).
        ([3, 24, 16, 32], [20, 24, 3, 3], 1, 1),
        ([2, 3, 16, 16], [5, 3, 3, 3], 1, 1),
        ([2, 4, 16, 16], [3, 4, 5, 5], 1, 2),
        ([2, 4, 18, 18], [3, 4, 3, 3], 1, 0),
        ([1, 6, 16, 16], [7, 6, 3, 3], 1, 1),
        // Groups of 8- and 4-pixel-wide images read in place, each strip two rows of 8 or four
        // of 4 (a short last group; 6 rows of 8 = 3 strips); 5 rows of 8 (40 pixels) do not
        // fill whole strips and take im2col.
        ([40, 16, 8, 8], [8, 16, 3, 3], 1, 1),
        ([37, 24, 4, 4], [6, 24, 3, 3], 1, 1),
        ([6, 8, 6, 8], [4, 8, 3, 3], 1, 1),
        ([5, 8, 5, 8], [4, 8, 3, 3], 1, 1),
        // Wide rows (WIDE below): 24 and 14 pixels, a group of 12-pixel images, a rectangle,
        // 5×5 taps; 40 pixels wide above too.
        ([2, 8, 24, 24], [6, 8, 3, 3], 1, 1),
        ([3, 32, 14, 14], [16, 32, 3, 3], 1, 1),
        ([9, 16, 12, 12], [8, 16, 3, 3], 1, 1),
        ([2, 5, 10, 24], [3, 5, 3, 3], 1, 1),
        ([1, 4, 20, 21], [3, 4, 5, 5], 1, 2),
        // Winograd (`Geometry::winograd`: 3×3, stride 1, padding 1, 16 channels or more):
        // F(4×4) from 12 pixels a side (a partial last tile row and column at 17×18, batch 1),
        // F(2×2) below (odd sizes: partial tiles).
        ([2, 64, 16, 16], [64, 64, 3, 3], 1, 1),
        ([1, 64, 17, 18], [72, 64, 3, 3], 1, 1),
        ([3, 64, 9, 11], [64, 64, 3, 3], 1, 1),
    ] {
        let (x, w, b) = (
            rand(&xs, 4).set_requires_grad(true),
            rand(&ws, 5).set_requires_grad(true),
            rand(&[ws[0]], 6).set_requires_grad(true),
        );
        let y = x.conv2d(&w, Some(&b), s, p);
        let dy = rand(y.shape(), 7);
        y.mul(&dy).sum().backward();
        let ny = reference::forward(&x, &w, Some(&b), s, p);
        let (ndx, ndw, ndb) = reference::backward(&x, &w, &dy.to_vec(), s, p);
        // F(4×4) Winograd rounds ~20× more than the GEMM paths (its module doc, *Accuracy*).
        let g = super::geometry(&xs, &ws, None, s, p);
        let tol = match g.winograd() {
            Some(super::Tile::F4) => 1e-3,
            _ => 1e-4,
        };
        taken.push(g.path());
        assert_close("y", &y.to_vec(), &ny, tol);
        assert_close("dx", &x.grad().unwrap().to_vec(), &ndx, tol);
        assert_close("dw", &w.grad().unwrap().to_vec(), &ndw, tol);
        assert_close("db", &b.grad().unwrap().to_vec(), &ndb, tol);
    }
    taken
}

#[test]
fn no_input_gradient_when_the_input_needs_none() {
    let x = rand(&[2, 1, 5, 5], 1);
    let w = rand(&[3, 1, 3, 3], 2).set_requires_grad(true);
    x.conv2d(&w, None, 1, 1).sum().backward();
    assert!(x.grad().is_none());
    assert_eq!(w.grad().unwrap().shape(), &[3, 1, 3, 3]);
}

#[test]
#[should_panic(
    expected = "conv2d: input [2, 3, 8, 8] has 3 channels but weight [4, 2, 3, 3] expects 2"
)]
fn channel_mismatch_names_both_shapes() {
    Tensor::zeros(&[2, 3, 8, 8]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, 1, 1);
}

#[test]
#[should_panic(expected = "conv2d: bias [3] must be [4] to match weight [4, 2, 3, 3]")]
fn bias_mismatch_is_named() {
    let b = Tensor::zeros(&[3]);
    Tensor::zeros(&[1, 2, 8, 8]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), Some(&b), 1, 1);
}

#[test]
#[should_panic(expected = "conv2d: input [2, 8, 8] must have 4 axes")]
fn three_axis_input_is_named() {
    Tensor::zeros(&[2, 8, 8]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, 1, 1);
}

#[test]
#[should_panic(
    expected = "conv2d: kernel 5×5 of weight [1, 1, 5, 5] does not fit input [1, 1, 3, 3] padded by 0"
)]
fn oversized_kernel_is_named() {
    Tensor::zeros(&[1, 1, 3, 3]).conv2d(&Tensor::zeros(&[1, 1, 5, 5]), None, 1, 0);
}

#[test]
#[should_panic(expected = "conv2d: stride must be at least 1")]
fn zero_stride_is_named() {
    Tensor::zeros(&[1, 1, 3, 3]).conv2d(&Tensor::zeros(&[1, 1, 1, 1]), None, 0, 0);
}

// ---------------------------------------------------------------------------------------------
// Values from PyTorch
//
// Inputs are rebuilt from `seq` on both sides; the expected values below were printed by this
// script (torch 2.15.0+cu132, CPU, float32):
//
// ```python
// import numpy as np, torch, torch.nn.functional as F
// def seq(n, a, b): return (torch.arange(n, dtype=torch.float64) * a + b).sin().float()
// def lit(name, t):  # shortest decimal that round-trips each f32
//     print(f"#[rustfmt::skip]\nconst {name}: &[f32] = &[{', '.join(str(v) for v in t.detach().numpy().flatten())}];")
// # (name, x shape, w shape, bias?, stride, padding)
// cases = [("S2P1", (2, 3, 5, 4), (2, 3, 3, 3), True, 2, 1),
//          ("RECT", (3, 2, 4, 5), (3, 2, 3, 2), False, 1, 0),
//          ("PW_S2", (2, 4, 5, 5), (3, 4, 1, 1), True, 2, 0),
//          ("CIN1", (2, 1, 6, 6), (4, 1, 3, 3), True, 1, 1)]
// for name, xs, ws, has_b, s, p in cases:
//     x = seq(torch.Size(xs).numel(), 0.7, 0.1).reshape(xs).requires_grad_()
//     w = (0.5 * seq(torch.Size(ws).numel(), 1.3, 0.2)).reshape(ws).requires_grad_()
//     b = (0.5 * seq(ws[0], 2.1, 0.3)).requires_grad_() if has_b else None
//     y = F.conv2d(x, w, b, stride=s, padding=p)
//     gy = seq(y.numel(), 0.9, 0.3).reshape(y.shape)
//     (y * gy).sum().backward()
//     lit(f"{name}_Y", y.detach()); lit(f"{name}_DX", x.grad); lit(f"{name}_DW", w.grad)
//     if has_b: lit(f"{name}_DB", b.grad)
// ```
//
// Compared at 1e-4 absolute + 1e-4 relative: the sums here have at most 36 terms of order one,
// so f32 rounding differences between the two implementations stay near 1e-6.

/// `sin(i·a + b)` for `i` in `0..n`, computed in f64 and rounded to f32 (as the script does).
fn seq(n: usize, a: f64, b: f64) -> Vec<f32> {
    (0..n).map(|i| ((i as f64) * a + b).sin() as f32).collect()
}

/// Rebuilds the script's inputs for one case, runs conv2d forward and backward and compares.
#[allow(clippy::too_many_arguments)]
fn against_torch(
    xs: [usize; 4],
    ws: [usize; 4],
    stride: usize,
    padding: usize,
    y_want: &[f32],
    dx_want: &[f32],
    dw_want: &[f32],
    db_want: Option<&[f32]>,
) {
    let numel = |s: &[usize]| s.iter().product::<usize>();
    let x = Tensor::from_vec(seq(numel(&xs), 0.7, 0.1), &xs).set_requires_grad(true);
    let w_vals = seq(numel(&ws), 1.3, 0.2).iter().map(|v| 0.5 * v).collect();
    let w = Tensor::from_vec(w_vals, &ws).set_requires_grad(true);
    let b = db_want.map(|_| {
        let vals = seq(ws[0], 2.1, 0.3).iter().map(|v| 0.5 * v).collect();
        Tensor::from_vec(vals, &[ws[0]]).set_requires_grad(true)
    });
    let y = x.conv2d(&w, b.as_ref(), stride, padding);
    let gy = Tensor::from_vec(seq(y.numel(), 0.9, 0.3), y.shape());
    y.mul(&gy).sum().backward();
    let tol = 1e-4;
    assert_close("y", &y.to_vec(), y_want, tol);
    assert_close("dx", &x.grad().unwrap().to_vec(), dx_want, tol);
    assert_close("dw", &w.grad().unwrap().to_vec(), dw_want, tol);
    if let (Some(b), Some(db_want)) = (b, db_want) {
        assert_close("db", &b.grad().unwrap().to_vec(), db_want, tol);
    }
}

#[test]
fn torch_stride2_padding1_bias() {
    against_torch(
        [2, 3, 5, 4],
        [2, 3, 3, 3],
        2,
        1,
        S2P1_Y,
        S2P1_DX,
        S2P1_DW,
        Some(S2P1_DB),
    );
}

#[test]
fn torch_rectangular_kernel_no_bias() {
    against_torch(
        [3, 2, 4, 5],
        [3, 2, 3, 2],
        1,
        0,
        RECT_Y,
        RECT_DX,
        RECT_DW,
        None,
    );
}

#[test]
fn torch_1x1_stride2() {
    against_torch(
        [2, 4, 5, 5],
        [3, 4, 1, 1],
        2,
        0,
        PW_S2_Y,
        PW_S2_DX,
        PW_S2_DW,
        Some(PW_S2_DB),
    );
}

#[test]
fn torch_one_input_channel() {
    against_torch(
        [2, 1, 6, 6],
        [4, 1, 3, 3],
        1,
        1,
        CIN1_Y,
        CIN1_DX,
        CIN1_DW,
        Some(CIN1_DB),
    );
}

#[rustfmt::skip]
const S2P1_Y: &[f32] = &[-0.42288703, 0.31433064, -1.6931493, 0.14297426, -0.6991237, 0.22514167, 0.30343935, -0.07925734, 1.9242156, 0.098621994, 1.6999558, 0.1861277, -0.8755117, 0.1705291, 0.4875099, 0.30095512, 1.2063698, 0.4221713, 1.8879424, 0.5437737, 1.1048849, 0.56605136, -0.27905923, 0.36633253];
#[rustfmt::skip]
const S2P1_DX: &[f32] = &[-0.20618987, 0.059324875, -0.30807242, 0.061124913, -0.08057029, -0.10467235, -0.18906847, -0.16703863, -0.17681189, 0.15924196, 0.088256344, -0.32130116, -0.15448336, -0.15961248, -0.0029883576, 0.120907724, 0.28653392, -0.13168512, 0.26796836, 0.084875695, -0.40273523, 0.010846686, -0.31301343, -0.21697024, 0.06565822, 0.068032816, -0.03034087, -0.22235417, 0.013590684, 0.015733838, 0.32990965, -0.07031259, -0.10337861, -0.24123245, -0.09818147, 0.05035957, 0.39655957, -0.017996222, 0.1631011, 0.24892056, -0.31542987, -0.045276344, -0.09734032, -0.34214318, 0.16561036, 0.19278796, 0.14977117, -0.120952874, 0.19441444, -0.13886361, 0.33904022, 0.2302328, 0.020588148, -0.15283005, -0.12417558, -0.055682417, 0.22708711, 0.10837656, -0.056720983, 0.23752442, 0.26535553, -0.18550654, 0.0414731, 0.2977727, 0.18970405, 0.20507017, 0.08302117, -0.051099464, -0.21379533, 0.0652547, -0.3072677, 0.0504766, -0.086490475, -0.110945046, -0.19054788, -0.16408004, -0.16820602, 0.1558545, 0.09815063, -0.3207095, 0.15674224, -0.020438537, -0.1998482, 0.16264312, 0.07634546, 0.21419789, 0.11173597, 0.043370966, -0.4051975, 0.011468865, -0.3039014, -0.22097716, 0.0625669, 0.0601992, -0.033951532, -0.22223395, 0.02738123, 0.015227035, 0.33794227, -0.062230162, -0.062344123, 0.15903471, -0.30031505, -0.08711854, -0.09082198, 0.0723574, 0.061698407, 0.10727324, -0.31101352, -0.050400347, -0.08634316, -0.33668458, 0.16752665, 0.18891458, 0.14657407, -0.12375576, 0.20367, -0.13613257, 0.33954972, 0.24010943];
#[rustfmt::skip]
const S2P1_DW: &[f32] = &[0.7448418, 1.2404668, 1.4504303, 0.7529255, 1.2468356, 0.3352803, -0.15794872, -0.32424408, -1.0771224, 0.95806205, 0.9410293, -0.0032891035, -0.50904703, -0.7803453, -1.4770819, -0.40543216, -1.3192767, -0.9154892, -0.4828363, -0.9831196, -1.4513297, -0.89213675, -1.4602401, -0.73922443, 0.047073282, -0.036544546, 0.8267594, 0.48169738, 0.7536646, 0.3273592, 0.821278, 0.55408853, -0.2689675, -0.662817, -1.1316692, -1.6403897, 0.45908564, -0.27994654, -0.7291365, -0.57552165, -0.9894824, -1.2051247, -0.9444684, -1.3462074, -0.4133922, -0.3561492, -0.8302229, -0.5267595, -0.9786684, -0.82468665, -0.060603395, 0.40452904, 0.7635158, 1.5273374];
#[rustfmt::skip]
const S2P1_DB: &[f32] = &[1.2415031, 0.88037616];
#[rustfmt::skip]
const RECT_Y: &[f32] = &[2.0505521, 1.00941, -0.50647354, -1.7841547, -1.6159053, -0.24910514, 1.2348529, 2.1380405, -1.9279065, -0.7946256, 0.7123802, 1.8843424, 1.4351782, 0.025300683, -1.3964761, -2.1614685, 1.7828108, 0.57058793, -0.9099913, -1.9625875, -1.2377388, 0.19879845, 1.5418377, 2.1597266, -2.208918, -1.5093027, -0.099839136, 1.3565805, 1.9704512, 0.839189, -0.68675655, -1.88971, 2.141733, 1.3200567, -0.122462705, -1.507386, -1.8324689, -0.61973673, 0.88446707, 1.9726923, -2.0496078, -1.1154385, 0.34333876, 1.6406385, 1.6731478, 0.39306766, -1.0718782, -2.032703, 2.2020826, 1.896318, 0.6986851, -0.82755023, -2.1776304, -1.3665117, 0.08729892, 1.5000516, -2.1953826, -1.7467629, -0.47661325, 1.017695, 2.0927122, 1.167824, -0.30631036, -1.6363821, 2.1631181, 1.5768673, 0.24899158, -1.195989, -1.9834251, -0.95553726, 0.52175486, 1.7536573];
#[rustfmt::skip]
const RECT_DX: &[f32] = &[-0.020483535, 0.14392747, 0.18173446, 0.08200849, -0.0613231, 0.05096481, -0.23659879, -0.3128515, -0.15234438, 0.10713757, -0.13575946, 0.07580717, 0.28266254, 0.27560452, -0.019776879, 0.082328945, -0.032653503, -0.15882179, -0.16479686, 0.0031117087, 0.099367745, 0.13933566, -0.012747453, -0.15518352, -0.0763561, -0.17562827, -0.25863665, 0.011368943, 0.2727707, 0.14530146, 0.11929108, 0.33656353, 0.15208535, -0.14748797, -0.17577, -0.060016483, -0.1892667, -0.08889935, 0.078745276, 0.10284574, 0.050663296, -0.088149555, -0.18307659, -0.13945495, 0.02454773, -0.10054799, 0.13804303, 0.30972597, 0.2470144, -0.04406298, 0.16168384, 0.044557307, -0.2126922, -0.30898046, -0.042363547, -0.09735689, -0.03723333, 0.11466873, 0.17979175, 0.030454483, -0.07918523, -0.17717099, -0.05988759, 0.10271753, 0.086210184, 0.14087008, 0.32288402, 0.11880951, -0.17517762, -0.15757374, -0.06487789, -0.33894706, -0.25839412, 0.017706227, 0.15338166, 0.0295244, 0.18896489, 0.14740653, -0.0057061114, -0.090043575, -0.07319003, 0.01905606, 0.15676382, 0.17583579, 0.015935667, 0.13494273, -0.018634966, -0.25981432, -0.30437136, -0.025667554, -0.16318479, -0.15819114, 0.110593304, 0.29568297, 0.09810467, 0.097678415, 0.10149581, -0.05319419, -0.16762793, -0.05942033, 0.047041263, 0.18824354, 0.1234762, -0.034735486, -0.083041675, -0.084832534, -0.33835763, -0.23104103, 0.051122863, 0.14604352, 0.0006644422, 0.29013038, 0.3256709, 0.114750154, -0.10782407, 0.005427537, -0.16011874, -0.18364704, -0.06819498, 0.06363973];
#[rustfmt::skip]
const RECT_DW: &[f32] = &[10.400944, 11.031459, -11.415153, -9.261272, 10.978649, 6.3141026, 6.1527133, -1.5110261, -2.376593, 5.394516, -1.7015603, -8.592434, 2.3654642, 9.161013, -6.2182903, -11.106109, 9.280853, 11.639766, 11.628248, 8.389479, -10.614757, -5.0186024, 8.252272, 1.0099285, -7.5228763, 0.11476955, 3.8493433, -4.251559, 0.3133894, 7.848031, 7.9954066, 11.718528, -10.538408, -11.500662, 11.742121, 9.821218];
#[rustfmt::skip]
const PW_S2_Y: &[f32] = &[-0.6975351, 0.39416194, 1.0768157, -0.22945242, 0.92499137, 0.78918016, 0.42429256, 1.0732712, 0.18584055, -0.10335156, -0.51301664, 0.48961622, -0.51200354, -0.10598746, 1.0366313, -0.5024197, 0.51943827, 1.2396512, -0.056779444, -1.5323465, -1.2754997, -0.9077827, -1.6817758, -0.47529268, -1.5525472, -1.2440108, 0.31828326, -0.081249565, 1.0005252, 0.6666538, 0.56958693, 1.0399705, 0.029226206, 1.0128022, 0.64027375, -0.5498597, -0.5508471, 0.03177032, 1.1223036, -0.43546116, 0.66480064, 1.2221063, 0.060486794, 1.1368492, 0.8866238, -1.0923833, -1.628226, -0.27248868, -1.6350992, -1.0745008, 0.45845747, -1.6135948, -0.23247895, 0.723185];
#[rustfmt::skip]
const PW_S2_DX: &[f32] = &[0.02756258, 0.0, 0.5024977, 0.0, 0.59715253, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2398943, 0.0, -0.29891118, 0.0, -0.61150664, 0.0, 0.0, 0.0, 0.0, 0.0, -0.46132603, 0.0, 0.037976913, 0.0, 0.5085397, 0.5403726, 0.0, 0.79684466, 0.0, 0.45028058, 0.0, 0.0, 0.0, 0.0, 0.0, -0.23704687, 0.0, -0.74498194, 0.0, -0.68912953, 0.0, 0.0, 0.0, 0.0, 0.0, -0.111757636, 0.0, 0.5501902, 0.0, 0.7957651, 0.2615355, 0.0, -0.07618763, 0.0, -0.35625347, 0.0, 0.0, 0.0, 0.0, 0.0, -0.3667138, 0.0, -0.09965242, 0.0, 0.24282391, 0.0, 0.0, 0.0, 0.0, 0.0, 0.40153596, 0.0, 0.25637358, 0.0, -0.082807206, -0.4004517, 0.0, -0.8376049, 0.0, -0.64087534, 0.0, 0.0, 0.0, 0.0, 0.0, 0.04085584, 0.0, 0.69166815, 0.0, 0.81903976, 0.0, 0.0, 0.0, 0.0, 0.0, 0.32657844, 0.0, -0.41303095, 0.0, -0.8400668, -0.43983564, 0.0, 0.06914368, 0.0, 0.5257964, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5845369, 0.0, 0.20091155, 0.0, -0.33475968, 0.0, 0.0, 0.0, 0.0, 0.0, -0.6170915, 0.0, -0.4324207, 0.0, 0.079497404, -0.07172805, 0.0, 0.57869893, 0.0, 0.7911781, 0.0, 0.0, 0.0, 0.0, 0.0, 0.40490943, 0.0, -0.2877866, 0.0, -0.7626915, 0.0, 0.0, 0.0, 0.0, 0.0, -0.66040665, 0.0, -0.058339242, 0.0, 0.58787817, 0.40146127, 0.0, 0.2404589, 0.0, -0.10251798, 0.0, 0.0, 0.0, 0.0, 0.0, -0.3679113, 0.0, -0.3548767, 0.0, -0.07327849, 0.0, 0.0, 0.0, 0.0, 0.0, 0.26377544, 0.0, 0.40120932, 0.0, 0.23501603, 0.2865089, 0.0, -0.450054, 0.0, -0.846025, 0.0, 0.0, 0.0, 0.0, 0.0, -0.60174114, 0.0, 0.09792841, 0.0, 0.7234877, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8015259, 0.0, 0.27298528, 0.0, -0.46214512];
#[rustfmt::skip]
const PW_S2_DW: &[f32] = &[-0.061897986, -0.22742185, -0.03791275, 0.21078235, -0.28087258, -0.52705556, 0.049558505, 0.5488058, 0.19870794, 0.4841444, 0.013773486, -0.47809926];
#[rustfmt::skip]
const PW_S2_DB: &[f32] = &[1.1121823, 2.758917, -2.4560184];
#[rustfmt::skip]
const CIN1_Y: &[f32] = &[0.6398225, -0.22714116, -0.92989427, -1.1258097, -0.7227453, 0.6435983, 0.4244337, 1.9363748, 1.9881804, 1.1744077, -0.12221362, -1.2385716, -1.0665019, -1.3682642, -0.23908506, 1.0720335, 1.9484519, 1.3885791, 1.0616968, -0.15435992, -1.3133502, -1.7851573, -1.3478833, 0.31744218, 0.4658875, 1.96002, 1.9672556, 1.1187541, -0.18642084, -1.2594357, -0.7366318, -0.99550086, -0.26069474, 0.66621417, 1.349286, 1.3032858, -0.10477701, -0.8982904, -0.9701371, -0.4268729, 0.4759968, 1.236127, 1.6619074, 2.0819335, 1.1115457, -0.22277868, -1.2934862, -0.9750006, -0.8798351, 0.24055797, 1.5174075, 2.239437, 2.067065, 0.59584796, 0.20740618, -1.3111892, -1.5927804, -0.9664216, 0.27330074, 1.3973752, 1.6830852, 2.0517077, 1.0509644, -0.28522348, -1.3284258, -0.95938826, -0.80483913, 0.07648265, 0.980607, 1.582377, 1.5987707, 0.6946735, -1.5539613, -1.7147503, -1.1050527, -0.20550549, 0.5608204, 0.17899185, 0.94962436, -0.018302709, -1.326947, -2.2413814, -2.3315327, -0.80267453, -0.8514865, 0.90140074, 1.4259877, 1.0500367, -0.04963696, -1.3952734, -1.5714982, -2.322315, -1.5280397, -0.24497724, 0.923428, 0.7139955, 0.9355996, -0.0810954, -1.3844867, -2.266606, -2.312579, -0.7615894, -1.0842223, 0.3161282, 0.75233716, 0.6048365, -0.057002127, -1.1819822, -0.78135514, -0.19609456, 0.6654281, 1.2872509, 1.3769209, 0.12224914, 0.69458616, -0.9790914, -1.7036506, -1.5536948, -0.5997507, 1.0619298, 0.9035432, 2.0534768, 1.4560685, 0.24710983, -1.0048071, -1.2764487, -1.116252, -0.5701091, 0.7402217, 1.7756763, 2.0492637, 0.6539337, 0.6552439, -1.0301946, -1.717594, -1.5239208, -0.5402624, 1.0995305, 0.52710944, 1.4595114, 1.1203619, 0.32755005, -0.54605234, -1.099021, 0.61187774, -0.3088057, -0.97433454, -1.1121246, -0.65737134, 0.7154475, 0.50698155, 1.9816154, 1.944273, 1.0620028, -0.25025016, -1.2787083, -1.0883265, -1.2842271, -0.11091818, 1.1840513, 1.9916369, 1.3257805, 1.0005484, -0.28200048, -1.3951132, -1.7825885, -1.2621906, 0.41915405, 0.5476694, 2.001137, 1.9192592, 1.0042175, -0.31362933, -1.296368, -0.7405079, -0.94430476, -0.1730919, 0.74902254, 1.388354, 1.2742703, -0.16101986, -0.9333143, -0.94258976, -0.34971005, 0.5664841, 1.2855548, 1.7027415, 2.0195441, 0.98957646, -0.34696388, -1.3614813, -0.942309, -0.8210032, 0.3716012, 1.619007, 2.2638087, 2.0027466, 0.5037962, 0.10888615, -1.3772907, -1.5704315, -0.86613333, 0.40436122, 1.4549422, 1.7208542, 1.9854784, 0.92745143, -0.40793002, -1.3926152, -0.9237822, -0.7645718, 0.16498704, 1.0577047, 1.6118078, 1.566693, 0.65105903, -1.5988619, -1.6784487, -1.0249333, -0.1192497, 0.612645, 0.17116117, 0.91996425, -0.1443491, -1.4410133, -2.2898204, -2.2915628, -0.7201958, -0.7534632, 0.9870898, 1.4294119, 0.969585, -0.17612648, -1.4516997, -1.6379521, -2.280289, -1.4173306, -0.11765358, 1.0074837, 0.68684405, 0.9027359, -0.20799229, -1.4964631, -2.310998, -2.2685082, -0.67854047, -1.0281924, 0.37956214, 0.7645908, 0.56014663, -0.13761705, -1.2094557, -0.7832672, -0.11405282, 0.7416508, 1.3218058, 1.3535564, 0.06267916, 0.6153368, -1.0799567, -1.7294192, -1.4922473, -0.47998708, 1.1360639, 0.97167027, 2.0334175, 1.3589038, 0.11853771, -1.1043171, -1.2574799, -1.1038027, -0.44957548, 0.86126244, 1.8402965, 2.0270717, 0.5612004, 0.57491, -1.1283213, -1.7391124, -1.4587106, -0.4189927, 1.1714888, 0.55941176, 1.4531664, 1.059135, 0.24023727, -0.6183864, -1.0909902];
#[rustfmt::skip]
const CIN1_DX: &[f32] = &[-2.8324952, -1.322393, 2.2359474, 4.1021667, 2.8639483, -0.90815514, -0.25526205, -2.9554615, -2.8113234, -0.53963166, 2.140442, 2.2841594, 1.4479543, -0.91476685, -2.9759543, -2.7849984, -0.48641163, 1.9265352, 2.093275, 1.7942692, -0.96631014, -2.995606, -2.7578857, 0.16135676, 1.2092195, 3.1923866, 1.7493335, -1.0175805, -3.01441, -1.7217109, -2.4930754, 0.1659623, 3.332905, 3.9775717, 1.6120911, -1.8306402, 1.6904465, -1.8596374, -4.037315, -3.159632, 0.10919708, 2.548296, 1.665629, 2.9578264, 0.86884886, -1.8776555, -3.2031884, -1.1597246, 0.07015747, 2.834, 2.9365926, 0.8168301, -1.921092, -2.3297467, -1.5765721, 0.63961303, 2.8588204, 2.9145286, 0.76458013, -1.7976226, -2.0714355, -2.0220845, 0.69235253, 2.8828306, 2.8916404, 0.04787053, 0.76479673, -3.0587301, -4.070987, -2.0024025, 1.5815605, 2.8235283];
#[rustfmt::skip]
const CIN1_DW: &[f32] = &[-0.4821045, -0.21521795, 0.068770885, 1.1880932, 1.102231, 0.06522298, 0.0045055375, -0.31484413, -0.3694895, -0.7154821, -0.65045816, -0.2000458, 0.3432461, 1.1969515, 0.97686994, 0.02423269, -0.30277035, -0.52251893, -0.31012797, -0.50501394, -0.29027575, -0.80802727, 0.223117, 1.0164361, 0.022325706, -0.020405352, -0.20907903, 0.37208676, 0.091270626, -0.12136771, -1.2379491, -0.9499006, 0.14859879, 0.00048847497, 0.2801767, 0.2910115];
#[rustfmt::skip]
const CIN1_DB: &[f32] = &[-0.62110466, 0.12783182, 0.762649, 0.716627];

/// The fused `conv2d_relu_max_pool2d` equals `conv2d` then `relu_max_pool2d(2, 2)` bit for bit,
/// values and all three gradients: a first layer (one input channel, direct kernels), grouped
/// small images, odd output sizes (a row and a column no window covers), stride 2, no bias, and
/// an input that needs no gradient, and rows of 16 pixels (the column matrix read in place).
#[test]
fn fused_conv_relu_pool_matches_the_separate_ops_bit_for_bit() {
    let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for &(xs, ws, s, p, with_bias, x_grad) in &[
        ([3, 1, 28, 28], [8, 1, 3, 3], 1, 1, true, false),
        ([6, 16, 14, 14], [12, 16, 3, 3], 1, 1, true, true),
        ([5, 8, 7, 9], [6, 8, 3, 3], 1, 1, false, true),
        ([2, 4, 11, 10], [5, 4, 3, 3], 2, 1, true, true),
        // Rows of 16 pixels: the column matrix is read in place.
        ([3, 8, 8, 16], [6, 8, 3, 3], 1, 1, true, true),
    ] {
        let run = |fused: bool| {
            let x = rand(&xs, 11).set_requires_grad(x_grad);
            let w = rand(&ws, 12).set_requires_grad(true);
            let b = rand(&[ws[0]], 13).set_requires_grad(true);
            let b_opt = with_bias.then_some(&b);
            let y = if fused {
                x.conv2d_relu_max_pool2d(&w, b_opt, s, p)
            } else {
                x.conv2d(&w, b_opt, s, p).relu_max_pool2d(2, 2)
            };
            let dy = rand(y.shape(), 14);
            y.mul(&dy).sum().backward();
            let grads = [x.grad(), w.grad(), with_bias.then(|| b.grad()).flatten()];
            (y, grads.map(|g| g.map(|g| bits(&g))))
        };
        let ((y_fused, g_fused), (y_sep, g_sep)) = (run(true), run(false));
        assert_eq!(y_fused.shape(), y_sep.shape(), "{xs:?} {ws:?}");
        assert_eq!(bits(&y_fused), bits(&y_sep), "values of {xs:?} {ws:?}");
        assert_eq!(g_fused, g_sep, "gradients of {xs:?} {ws:?}");
    }
}

#[test]
#[should_panic(expected = "fewer than the 2×2 pool window")]
fn fused_pool_needs_two_output_pixels() {
    let x = rand(&[1, 2, 3, 3], 1);
    let w = rand(&[2, 2, 3, 3], 2);
    x.conv2d_relu_max_pool2d(&w, None, 1, 0);
}

/// Shapes of `every_path_matches_the_reference` whose column matrices are read in place over wide
/// rows (and whose adjoint's are too), and some that are not worth it.
const WIDE: [([usize; 4], [usize; 4], usize); 7] = [
    ([2, 8, 24, 24], [6, 8, 3, 3], 1),
    ([3, 32, 14, 14], [16, 32, 3, 3], 1),
    ([9, 16, 12, 12], [8, 16, 3, 3], 1),
    ([2, 5, 10, 24], [3, 5, 3, 3], 1),
    ([1, 4, 20, 21], [3, 4, 5, 5], 2),
    ([2, 4, 18, 18], [3, 4, 3, 3], 0),
    ([1, 32, 40, 40], [32, 32, 3, 3], 1),
];

#[test]
fn wide_rows_are_gathered_where_they_waste_at_most_a_quarter() {
    for (x, w, p) in WIDE {
        let g = super::geometry(&x, &w, None, 1, p);
        assert!(g.gathers() && g.gathers_wide(), "{x:?} {w:?}");
        assert!(g.adjoint().gathers_wide());
        assert!(4 * g.gathered_out_pixels() <= 5 * g.out_pixels());
    }
    // 6- and 5-pixel rows would waste a third or more: im2col.
    for x in [[2, 8, 6, 6], [5, 8, 5, 8]] {
        assert!(!super::geometry(&x, &[4, 8, 3, 3], None, 1, 1).gathers());
    }
    // Whole strips: not wide.
    let g = super::geometry(&[2, 8, 16, 32], &[4, 8, 3, 3], None, 1, 1);
    assert!(g.gathers() && !g.gathers_wide());
}
