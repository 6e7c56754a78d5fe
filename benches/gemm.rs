//! Criterion bench of the dense GEMM entry point, `simclr_tensor::gemm::gemm`
//! (`C ← A·B`, f32, split over rayon's threads when large), at the shapes the convolutions of
//! the `conv` bench hand it and at 1024³.
//!
//! Throughput is reported with `Throughput::Elements(flops)`, `flops = 2·m·k·n`, so criterion's
//! "elem/s" figure reads as FLOP/s (e.g. "245 Gelem/s" = 245 GFLOP/s). Run with
//! `RAYON_NUM_THREADS=2` to compare with PyTorch at `torch.set_num_threads(2)` (its sgemm 1024³
//! measured 206 GFLOP/s on this machine's 2 cores, whose AVX-512 FMA peak is about 234;
//! `../shared/ref/bench_kernels.py`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use simclr_tensor::gemm::{gemm, MatMut, MatRef};

/// `(name, m, k, n, layout)`: the square reference, then one image's products of each conv in
/// the `conv` bench: the forward `W · cols` (`m = Cout`, `k = Cin·9`, `n = Ho·Wo`), and for
/// 64 → 64 at 32×32 the two backward products, whose operands are transposed views:
/// `dW = dY · colsᵀ` and `dcols = Wᵀ · dY`.
const SHAPES: &[(&str, usize, usize, usize, Layout)] = &[
    ("square_1024", 1024, 1024, 1024, Layout::AB),
    ("conv_1to32_28x28", 32, 9, 784, Layout::AB),
    ("conv_32to64_14x14", 64, 288, 196, Layout::AB),
    ("conv_64to64_32x32", 64, 576, 1024, Layout::AB),
    ("conv_64to64_32x32_dW", 64, 1024, 576, Layout::ABt),
    ("conv_64to64_32x32_dcols", 576, 64, 1024, Layout::AtB),
    ("conv_128to128_16x16", 128, 1152, 256, Layout::AB),
    ("conv_64to128_s2_16x16", 128, 576, 256, Layout::AB),
];

/// Which operand is stored transposed (read through swapped strides).
#[derive(Clone, Copy)]
enum Layout {
    AB,
    ABt,
    AtB,
}

fn random(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn bench_gemm(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("gemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(name, m, k, n, layout) in SHAPES {
        let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |bench| {
            bench.iter(|| {
                let (a, b) = match layout {
                    Layout::AB => (MatRef::new(&a, m, k), MatRef::new(&b, k, n)),
                    Layout::ABt => (MatRef::new(&a, m, k), MatRef::new(&b, n, k).t()),
                    Layout::AtB => (MatRef::new(&a, k, m).t(), MatRef::new(&b, k, n)),
                };
                gemm(1.0, a, b, 0.0, MatMut::new(&mut out, m, n));
                out[0]
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_gemm);
criterion_main!(benches);
