//! Throughput of making two augmented views with the `simclr` recipe:
//! a CIFAR-10 batch of 128 (3×32×32) and an MNIST batch of 256 (28×28), on synthetic
//! images (augmentation cost does not depend on content). Reported in images per second,
//! where one image = its two views.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use simclr_data::{Augmenter, DatasetKind, ImageSet, Recipe};

fn synthetic(n: usize, c: usize, side: usize) -> ImageSet {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let images = (0..n * c * side * side).map(|_| rng.gen()).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    let names = (0..10).map(|i| i.to_string()).collect();
    ImageSet::new(images, labels, c, side, side, names).expect("valid synthetic set")
}

fn two_views(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_views_simclr");
    for (name, kind, batch, ch, side) in [
        ("cifar10", DatasetKind::Cifar10, 128, 3, 32),
        ("mnist", DatasetKind::Mnist, 256, 1, 28),
    ] {
        let set = synthetic(batch * 4, ch, side);
        let aug = Augmenter::new(Recipe::Simclr, kind, 0);
        let idx: Vec<usize> = (0..batch).map(|i| i * 3 % set.len()).collect();
        let mut out = Vec::new();
        let mut epoch = 0u64;
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter(|| {
                epoch += 1;
                aug.views_into(&set, &idx, 2, epoch, &mut out)
                    .expect("valid batch");
                std::hint::black_box(&out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, two_views);
criterion_main!(benches);
