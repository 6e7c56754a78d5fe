//! Criterion bench of `Tensor::conv2d`: forward alone (under `no_grad`) and forward + backward,
//! 3×3 kernels with padding 1 and ResNet's 1×1 stride-2 shortcuts (no padding), at the layer
//! shapes of the MNIST encoder and ResNet-18:
//!
//! | name | input | conv |
//! |---|---|---|
//! | `1to32_28x28_b256` | [256, 1, 28, 28] | 1 → 32 (first layer: no input gradient) |
//! | `32to64_14x14_b256` | [256, 32, 14, 14] | 32 → 64 |
//! | `64to64_32x32_b128` | [128, 64, 32, 32] | 64 → 64 |
//! | `128to128_16x16_b128` | [128, 128, 16, 16] | 128 → 128 |
//! | `64to128_s2_32x32_b128` | [128, 64, 32, 32] | 64 → 128, stride 2 |
//! | `256to256_8x8_b128` | [128, 256, 8, 8] | 256 → 256 (ResNet-18 stage 3) |
//! | `512to512_4x4_b128` | [128, 512, 4, 4] | 512 → 512 (ResNet-18 stage 4) |
//! | `16to16_32x32_b256` | [256, 16, 32, 32] | 16 → 16 (width-16 ResNet-18, both views of a batch of 128) |
//! | `32to32_16x16_b256` | [256, 32, 16, 16] | its stage 2 |
//! | `32to32_32x32_b256` | [256, 32, 32, 32] | stage 1 of the width-32 ResNet-18 |
//! | `24to24_24x24_b256` | [256, 24, 24, 24] | stage 1 of `--preset cpu-hour`'s width-24 ResNet-10 at 24-pixel views |
//! | `3to16_32x32_b256` | [256, 3, 32, 32] | the width-16 stem at 32 pixels |
//! | `16to16_24x24_b256` | [256, 16, 24, 24] | the same at 24-pixel views: wide rows |
//! | `32to32_12x12_b256` | [256, 32, 12, 12] | stage 2 at 24-pixel views: wide rows, images grouped |
//! | `64to64_6x6_b256` | [256, 64, 6, 6] | stage 3 at 24-pixel views |
//! | `128to128_3x3_b256` | [256, 128, 3, 3] | stage 4 at 24-pixel views |
//! | `3to16_24x24_b256` | [256, 3, 24, 24] | the stem at 24-pixel views |
//! | `16to32_s2_24x24_b256` | [256, 16, 24, 24] | 16 → 32, stride 2, at 24-pixel views |
//! | `16to32_s2_32x32_b256` | [256, 16, 32, 32] | 16 → 32, stride 2: the width-16 ResNet-18's first downsampling |
//! | `16to32_1x1_s2_32x32_b256` | [256, 16, 32, 32] | its 1×1 stride-2 shortcut |
//! | `64to128_1x1_s2_32x32_b128` | [128, 64, 32, 32] | the width-64 ResNet-18's first 1×1 stride-2 shortcut |
//! | `48to48_12x12_b256` | [256, 48, 12, 12] | stage 2 of `--preset cpu-hour`'s ResNet-10 (width 24, 24-pixel views) |
//! | `96to96_6x6_b256` | [256, 96, 6, 6] | its stage 3 |
//! | `192to192_3x3_b256` | [256, 192, 3, 3] | its stage 4 |
//! | `24to48_s2_24x24_b256` | [256, 24, 24, 24] | its downsamplings: 24 → 48, stride 2 |
//! | `48to96_s2_12x12_b256` | [256, 48, 12, 12] | 48 → 96, stride 2 |
//! | `96to192_s2_6x6_b256` | [256, 96, 6, 6] | 96 → 192, stride 2 (3 × 3 outputs) |
//!
//! Every 3×3 stride-1 shape with more than one input channel runs each path in turn, back to
//! back (so that a shared machine's load hits them alike; compare the ratios, and repeat):
//! `forward_gemm` / `forward_backward_gemm` (im2col or gathered GEMM), `…_winograd2`
//! (Winograd F(2×2, 3×3)) and `…_winograd4` (F(4×4, 3×3)), forced with
//! `simclr_tensor::ops::conv2d::force_path`. `Geometry::winograd` (in `winograd.rs`) lists
//! the measured ratios and which shapes take Winograd by default: every 3×3 stride-1 shape
//! here with at least 16 channels in and out, F(4×4) from 12 pixels a side (1.3–2.2× the GEMM
//! path forward + backward; about a tie for 16 → 16 at 32²), F(2×2) below (1.3–1.9×), except
//! that without AVX-512 F(4×4) also takes 8 and 4 pixels a side (1.7–1.9×). The other
//! shapes (stride 2, the first layer, the 3-channel stem) run `forward` / `forward_backward`
//! as dispatched.
//!
//! Throughput is reported with `Throughput::Elements(flops)`, so criterion's "elem/s" reads as
//! FLOP/s. The forward counts `2·N·Cout·Ho·Wo·Cin·9` flops; forward + backward counts three
//! times that (the weight and input gradients are one GEMM each), or twice for the first layer,
//! as `../shared/ref/bench_kernels.py` does. Compare with the `gemm` bench's 1024³ rate.
//!
//! The backward starts from a fixed output gradient handed over by a one-line op (no loss
//! reduction is timed), like PyTorch's `y.backward(gy)`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, SeedableRng};
use simclr_tensor::ops::conv2d::{force_path, ConvPath, Tile};
use simclr_tensor::{no_grad, Tensor};

mod support;
use support::inject;

/// `(name, input shape, Cout, stride)`: 3×3 kernels with padding 1, or, for names with `1x1`,
/// a 1×1 kernel without padding.
const CONVS: &[(&str, [usize; 4], usize, usize)] = &[
    ("1to32_28x28_b256", [256, 1, 28, 28], 32, 1),
    ("32to64_14x14_b256", [256, 32, 14, 14], 64, 1),
    ("64to64_32x32_b128", [128, 64, 32, 32], 64, 1),
    ("128to128_16x16_b128", [128, 128, 16, 16], 128, 1),
    ("64to128_s2_32x32_b128", [128, 64, 32, 32], 128, 2),
    ("256to256_8x8_b128", [128, 256, 8, 8], 256, 1),
    ("512to512_4x4_b128", [128, 512, 4, 4], 512, 1),
    ("16to16_32x32_b256", [256, 16, 32, 32], 16, 1),
    ("32to32_16x16_b256", [256, 32, 16, 16], 32, 1),
    ("32to32_32x32_b256", [256, 32, 32, 32], 32, 1),
    ("24to24_24x24_b256", [256, 24, 24, 24], 24, 1),
    ("3to16_32x32_b256", [256, 3, 32, 32], 16, 1),
    ("16to16_24x24_b256", [256, 16, 24, 24], 16, 1),
    ("32to32_12x12_b256", [256, 32, 12, 12], 32, 1),
    ("64to64_6x6_b256", [256, 64, 6, 6], 64, 1),
    ("128to128_3x3_b256", [256, 128, 3, 3], 128, 1),
    ("3to16_24x24_b256", [256, 3, 24, 24], 16, 1),
    ("16to32_s2_24x24_b256", [256, 16, 24, 24], 32, 2),
    ("16to32_s2_32x32_b256", [256, 16, 32, 32], 32, 2),
    ("16to32_1x1_s2_32x32_b256", [256, 16, 32, 32], 32, 2),
    ("64to128_1x1_s2_32x32_b128", [128, 64, 32, 32], 128, 2),
    ("48to48_12x12_b256", [256, 48, 12, 12], 48, 1),
    ("96to96_6x6_b256", [256, 96, 6, 6], 96, 1),
    ("192to192_3x3_b256", [256, 192, 3, 3], 192, 1),
    ("24to48_s2_24x24_b256", [256, 24, 24, 24], 48, 2),
    ("48to96_s2_12x12_b256", [256, 48, 12, 12], 96, 2),
    ("96to192_s2_6x6_b256", [256, 96, 6, 6], 192, 2),
];

/// The paths a 3×3 stride-1 convolution can take, forced one after the other (suffix of the
/// benchmark's name, path).
const PATHS: &[(&str, ConvPath)] = &[
    ("_gemm", ConvPath::Gemm),
    ("_winograd2", ConvPath::Winograd(Tile::F2)),
    ("_winograd4", ConvPath::Winograd(Tile::F4)),
];

fn bench_conv(c: &mut Criterion) {
    // As in a training run: freed buffers stay in the heap, so each iteration's output and
    // gradients do not page-fault (otherwise the 1 → 32 layer times mostly the kernel zeroing
    // fresh pages).
    simclr_tensor::memory::reuse_freed_memory();
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("conv2d");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for &(name, xs, cout, stride) in CONVS {
        let cin = xs[1];
        let first_layer = cin == 1;
        let (k, pad) = if name.contains("1x1") { (1, 0) } else { (3, 1) };
        let x = Tensor::randn(&xs, &mut rng).set_requires_grad(!first_layer);
        let w = Tensor::randn(&[cout, cin, k, k], &mut rng)
            .mul_scalar((2.0 / (cin * k * k) as f32).sqrt())
            .set_requires_grad(true);
        let b = Tensor::zeros(&[cout]).set_requires_grad(true);
        // Both kinds keep `(size − 1)/stride + 1` pixels a side.
        let (ho, wo) = ((xs[2] - 1) / stride + 1, (xs[3] - 1) / stride + 1);
        let flops = 2 * xs[0] * cout * ho * wo * cin * k * k;
        let gy = Tensor::randn(&[xs[0], cout, ho, wo], &mut rng).to_vec();

        // Shapes Winograd applies to run each path in turn, back to back.
        let paths = if stride == 1 && k == 3 && !first_layer {
            PATHS
        } else {
            &[("", ConvPath::Auto)][..]
        };
        for &(suffix, path) in paths {
            force_path(path);
            group.throughput(Throughput::Elements(flops as u64));
            let id = BenchmarkId::new(format!("forward{suffix}"), name);
            group.bench_function(id, |bench| {
                bench.iter(|| no_grad(|| x.conv2d(&w, Some(&b), stride, pad)).numel())
            });
        }
        let passes = if first_layer { 2 } else { 3 };
        for &(suffix, path) in paths {
            force_path(path);
            group.throughput(Throughput::Elements((passes * flops) as u64));
            let id = BenchmarkId::new(format!("forward_backward{suffix}"), name);
            group.bench_function(id, |bench| {
                bench.iter_batched(
                    || gy.clone(),
                    |gy| {
                        for t in [&x, &w, &b] {
                            t.zero_grad();
                        }
                        let y = x.conv2d(&w, Some(&b), stride, pad);
                        inject(&y, gy).backward();
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        force_path(ConvPath::Auto);
    }
    group.finish();
}

criterion_group!(benches, bench_conv);
criterion_main!(benches);
