//! The evaluation entry points on a tiny synthetic image set whose class is where a bright
//! blob sits (left / right half): a frozen random encoder already separates that linearly,
//! fine-tuning changes the encoder and reports the same fields.

use rand::{rngs::StdRng, Rng, SeedableRng};
use simclr_contrastive::{
    extract_features, fine_tune, fine_tune_loader, knn_eval, linear_eval, FineTuneConfig,
    KnnConfig, LinearEvalConfig,
};
use simclr_data::{mnist, Augmenter, DatasetKind, ImageSet, Recipe};
use simclr_nn::{Flatten, Linear, Module, ReLU, Sequential};

fn blobs(n: usize, seed: u64) -> ImageSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = vec![0u8; n * 784];
    let mut labels = Vec::with_capacity(n);
    for img in images.chunks_mut(784) {
        let label: u8 = rng.gen_range(0..2);
        let cx = if label == 0 {
            rng.gen_range(4..10)
        } else {
            rng.gen_range(18..24)
        };
        let cy = rng.gen_range(4..24);
        for y in 0..28i32 {
            for x in 0..28i32 {
                if (y - cy).pow(2) + (x - cx).pow(2) < 12 {
                    img[(y * 28 + x) as usize] = 255;
                }
            }
        }
        labels.push(label);
    }
    ImageSet::new(images, labels, 1, 28, 28, mnist::class_names()).unwrap()
}

fn encoder(seed: u64) -> Sequential {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .add(Flatten)
        .add(Linear::new(784, 32, &mut rng))
        .add(ReLU)
}

#[test]
fn linear_probe_knn_and_fine_tune_on_separable_images() {
    let (train, test) = (blobs(200, 1), blobs(100, 2));
    let norm = DatasetKind::Mnist.normalize();
    let enc = encoder(3);
    let before: Vec<f32> = enc.parameters()[0].to_vec();

    let feats = extract_features(&enc, &test, &norm, 64);
    assert_eq!(feats.shape(), &[100, 32]);

    let cfg = LinearEvalConfig {
        epochs: 15,
        batch_size: 32,
        lr: 1e-2,
        ..LinearEvalConfig::default()
    };
    let mut curve = Vec::new();
    let report = linear_eval(&enc, &train, &test, &norm, &cfg, |e| {
        curve.push(e.test_accuracy)
    })
    .unwrap();
    assert_eq!(curve.len(), 15);
    assert!(report.test_accuracy > 0.9, "{report:?}");
    assert_eq!(report.confusion.len(), 10);
    assert_eq!(report.confusion.iter().flatten().sum::<usize>(), 100);
    assert_eq!(report.per_class_accuracy[5], None, "class 5 is absent");
    assert_eq!(
        enc.parameters()[0].to_vec(),
        before,
        "the probe must not train the encoder"
    );

    let knn = knn_eval(
        &enc,
        &train,
        &test,
        &norm,
        &KnnConfig {
            k: 20,
            ..KnnConfig::default()
        },
    );
    assert!(knn.accuracy > 0.9, "{knn:?}");

    let aug = Augmenter::new(Recipe::None, DatasetKind::Mnist, 0);
    let loader = fine_tune_loader(train.clone(), aug, 32).unwrap();
    let ft = FineTuneConfig {
        epochs: 3,
        lr: 1e-3,
        seed: 0,
    };
    let tuned = fine_tune(&enc, 32, &loader, &test, &norm, &ft, |_| {}).unwrap();
    assert_eq!(tuned.epochs.len(), 3);
    assert!(tuned.test_accuracy > 0.9, "{tuned:?}");
    assert_ne!(
        enc.parameters()[0].to_vec(),
        before,
        "fine-tuning trains the encoder"
    );
}
