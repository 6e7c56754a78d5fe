//! Criterion bench of one whole SimCLR training step, as pretraining runs it per batch: `B`
//! source images → `2B` views as one batch → encoder → projection head → NT-Xent (τ = 0.5) →
//! backward → Adam step (lr 1e-3).
//!
//! | name | encoder | head | views |
//! |---|---|---|---|
//! | `mnist_b256` | the report's MNIST CNN (→ 128) | 128 → 256 → 128 | [512, 1, 28, 28] |
//! | `resnet18_b128` | ResNet-18, CIFAR stem (→ 512) | 512 → 256 → 128 | [256, 3, 32, 32] |
//!
//! Inputs are fixed random tensors, so only the model's compute is timed (the loader prepares
//! batches on its own thread and has its own bench). Throughput is in **source images** per
//! second (each passes through the encoder twice, as two views), the unit of `cargo xtask
//! bench` and of PyTorch's `../shared/ref/simclr_ref.py --time-only`. The weights keep training
//! from iteration to iteration, which changes nothing in the work a step does.
//!
//! A ResNet-18 step takes seconds, so that group takes ten samples over a short measurement
//! time; criterion warns it cannot fit them in the time and runs them anyway.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::StdRng, SeedableRng};
use simclr_contrastive::{nt_xent, SimClr};
use simclr_nn::{Adam, AdamConfig, Module, Optimizer};
use simclr_tensor::Tensor;

/// NT-Xent temperature of the reference runs.
const TEMPERATURE: f32 = 0.5;

/// A model, its optimizer and a fixed two-view batch.
struct Step {
    model: SimClr,
    optimizer: Adam,
    views: Tensor,
}

impl Step {
    fn new(model: SimClr, batch: usize, image: [usize; 3], rng: &mut StdRng) -> Step {
        let optimizer = Adam::new(model.parameters(), AdamConfig::adam(1e-3));
        let views = Tensor::randn(&[2 * batch, image[0], image[1], image[2]], rng);
        Step {
            model,
            optimizer,
            views,
        }
    }

    /// One training step; returns the loss.
    fn run(&mut self) -> f32 {
        self.optimizer.zero_grad();
        let loss = nt_xent(&self.model.forward(&self.views), TEMPERATURE);
        loss.backward();
        self.optimizer.step();
        loss.item()
    }
}

fn bench_step(c: &mut Criterion) {
    // As in a training run: freed buffers stay in the heap, so steps do not page-fault.
    simclr_tensor::memory::reuse_freed_memory();
    let mut rng = StdRng::seed_from_u64(0);

    let batch = 256;
    let mut step = Step::new(SimClr::mnist(&mut rng), batch, [1, 28, 28], &mut rng);
    let mut group = c.benchmark_group("step");
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("mnist_b256", |b| b.iter(|| step.run()));
    group.finish();
    drop(step);

    let batch = 128;
    let mut step = Step::new(SimClr::resnet18(64, &mut rng), batch, [3, 32, 32], &mut rng);
    let mut group = c.benchmark_group("step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(batch as u64));
    group.bench_function("resnet18_b128", |b| b.iter(|| step.run()));
    group.finish();
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
