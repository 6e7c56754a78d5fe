//! Criterion bench of the NT-Xent loss (`simclr_contrastive::nt_xent`): forward alone and
//! forward + backward, at 2N = 256, 512, 1024 projections of D = 128, as in a SimCLR step.
//! Throughput is in projections (rows of z) per second; the GEMMs do 2·(2N)²·D flops forward
//! and as many again backward.
//!
//! PyTorch's matmul formulation (`../shared/ref/bench_kernels.py`, `ntxent_matmul_*`) takes
//! 1.48 ms forward + backward at 2N = 512, D = 128 on this machine with 2 threads.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, SeedableRng};
use simclr_contrastive::nt_xent;
use simclr_tensor::Tensor;

const D: usize = 128;
const TEMPERATURE: f32 = 0.5;

fn bench_loss(c: &mut Criterion) {
    // As in a training run: freed buffers stay in the heap, so steps do not page-fault.
    simclr_tensor::memory::reuse_freed_memory();
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("nt_xent");
    for &m in &[256usize, 512, 1024] {
        group.throughput(Throughput::Elements(m as u64));
        let z = Tensor::randn(&[m, D], &mut rng);
        group.bench_with_input(BenchmarkId::new("forward", m), &z, |b, z| {
            b.iter(|| nt_xent(z, TEMPERATURE).item())
        });
        let z = z.set_requires_grad(true);
        group.bench_with_input(BenchmarkId::new("forward_backward", m), &z, |b, z| {
            b.iter(|| {
                z.zero_grad();
                let loss = nt_xent(z, TEMPERATURE);
                loss.backward();
                loss.item()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_loss);
criterion_main!(benches);
