//! Real-data test: k-means on raw MNIST pixels of the report's split lands where published
//! figures do (≈ 50–60 % cluster accuracy).
//!
//! Needs `SIMCLR_DATA_DIR` (with `mnist/*.gz`); without it the test says it skipped, and with
//! `CI=true` a missing directory is a failure. Fit on train images 0..24,000, evaluate on the
//! 10,000 test images. Run it optimised: `cargo test --release -p simclr-baselines`.

mod common;

use simclr_baselines::{run_baselines, BaselineConfig, Features, Method};

#[test]
fn kmeans_on_raw_mnist_pixels_is_in_the_published_band() {
    let Some(dir) = common::mnist_dir("kmeans_on_raw_mnist_pixels_is_in_the_published_band") else {
        return;
    };
    let (train, test) = common::load_mnist(&dir);
    let ppi = train.pixels_per_image;
    assert_eq!(ppi, 784);
    let n_fit = 24_000;
    let train = Features::from_u8_images(
        &train.images[..n_fit * ppi],
        n_fit,
        ppi,
        Some(&train.labels[..n_fit]),
    )
    .unwrap();
    let test =
        Features::from_u8_images(&test.images, test.labels.len(), ppi, Some(&test.labels)).unwrap();
    assert_eq!(test.n_samples(), 10_000);

    let cfg = BaselineConfig {
        methods: vec![Method::KMeans],
        ..BaselineConfig::default()
    };
    let reports = run_baselines(&train, &test, &cfg).unwrap();
    let r = &reports[0];
    println!("{}", r.summary());
    println!("{}", serde_json::to_string(r).unwrap());
    assert!(
        (0.45..0.70).contains(&r.accuracy),
        "k-means raw-pixel test accuracy {} outside the published band",
        r.accuracy
    );
    assert!((0.35..0.65).contains(&r.nmi), "NMI {}", r.nmi);
    assert!((0.25..0.55).contains(&r.ari), "ARI {}", r.ari);
}
