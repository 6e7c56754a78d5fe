//! Criterion bench of training-mode batch norm fused with what follows it in a ResNet:
//! `batch_norm2d_relu` (after a block's first convolution) and `batch_norm2d_add_relu` (the
//! end of a residual block), forward + backward, at the first stage of ResNet-18 at widths 16
//! and 64 (both views of a batch of 128: 256 images; width 64 at batch 128 as in `conv`).
//! These passes are memory-bound: throughput is in values of the feature map per second, and
//! a narrow network spends more of its step here than a wide one (its convolutions' flops
//! shrink with the square of the width, these passes only with the width).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, SeedableRng};
use simclr_tensor::{BatchNormStats, Tensor};

mod support;
use support::inject;

/// `(name, feature map shape)`.
const SHAPES: &[(&str, [usize; 4])] = &[
    ("16x32x32_b256", [256, 16, 32, 32]),
    ("64x32x32_b128", [128, 64, 32, 32]),
];

fn bench_batch_norm(c: &mut Criterion) {
    // As in a training run: freed buffers stay in the heap, so steps do not page-fault.
    simclr_tensor::memory::reuse_freed_memory();
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("batch_norm2d");
    group.sample_size(20);
    for &(name, shape) in SHAPES {
        let channels = shape[1];
        let x = Tensor::randn(&shape, &mut rng).set_requires_grad(true);
        let residual = Tensor::randn(&shape, &mut rng).set_requires_grad(true);
        let gamma = Tensor::ones(&[channels]).set_requires_grad(true);
        let beta = Tensor::zeros(&[channels]).set_requires_grad(true);
        let (mean, var) = (Tensor::zeros(&[channels]), Tensor::ones(&[channels]));
        let gy = Tensor::randn(&shape, &mut rng).to_vec();
        let operands = [&x, &residual, &gamma, &beta];
        group.throughput(Throughput::Elements(x.numel() as u64));
        // The end of a block's first half, and of a residual block.
        let relu = || x.batch_norm2d_relu(&gamma, &beta, BatchNormStats::new(&mean, &var));
        let add_relu = || {
            let stats = BatchNormStats::new(&mean, &var);
            x.batch_norm2d_add_relu(&residual, &gamma, &beta, stats)
        };
        let ops: [(&str, &dyn Fn() -> Tensor); 2] = [("relu", &relu), ("add_relu", &add_relu)];
        for (op, forward) in ops {
            let id = BenchmarkId::new(format!("{op}_forward_backward"), name);
            group.bench_function(id, |b| {
                b.iter_batched(
                    || gy.clone(),
                    |gy| {
                        operands.iter().for_each(|t| t.zero_grad());
                        inject(&forward(), gy).backward();
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_batch_norm);
criterion_main!(benches);
