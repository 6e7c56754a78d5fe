//! The real datasets (from `SIMCLR_DATA_DIR`, e.g. `../shared/data`): the published content
//! checksums, counts, label counts from its MANIFEST, known first pixels, and the
//! normalisation constants. One test per
//! dataset, since each decompresses tens of megabytes. Without the variable they print
//! "skipped"; with `CI=true` a missing directory fails (see `simclr_data::test_data_dir`).

use simclr_data::{cifar10, mnist, verify, DatasetKind, Normalize, Split};

/// Mean and standard deviation of each channel of `set`, pixels scaled to [0, 1].
fn channel_stats(set: &simclr_data::ImageSet) -> Vec<(f64, f64)> {
    let hw = set.height * set.width;
    (0..set.channels)
        .map(|c| {
            let (mut s, mut s2, mut n) = (0u64, 0u64, 0u64);
            for img in set.images.chunks_exact(set.image_len()) {
                for &p in &img[c * hw..(c + 1) * hw] {
                    s += p as u64;
                    s2 += (p as u64) * (p as u64);
                }
                n += hw as u64;
            }
            let mean = s as f64 / n as f64 / 255.0;
            let var = s2 as f64 / n as f64 / 65025.0 - mean * mean;
            (mean, var.sqrt())
        })
        .collect()
}

#[test]
fn real_mnist() {
    let Some(dir) = simclr_data::test_data_dir() else {
        return;
    };
    let (train, test) = mnist::load(&dir.join(mnist::DIR)).expect("MNIST parses");
    let modified = verify::check_known_files(DatasetKind::Mnist, &dir.join(mnist::DIR)).unwrap();
    assert!(modified.is_empty(), "{modified:?}");
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.shape(), [1, 28, 28]);
    assert_eq!(
        train.label_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.label_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // The famous first training labels: 5, 0, 4, 1, 9.
    assert_eq!(&train.labels[..5], &[5, 0, 4, 1, 9]);
    let (m, s) = channel_stats(&train)[0];
    let n = Normalize::mnist();
    assert!((m - n.mean[0] as f64).abs() < 5e-4, "mean {m}");
    assert!((s - n.std[0] as f64).abs() < 5e-4, "std {s}");
    let (pre, lab) = Split::mnist_report().apply(&train).unwrap();
    assert_eq!((pre.len(), lab.len()), (24_000, 6_000));
}

#[test]
fn real_cifar10() {
    let Some(dir) = simclr_data::test_data_dir() else {
        return;
    };
    let (train, test) = cifar10::load(&dir.join(cifar10::DIR)).expect("CIFAR-10 parses");
    let modified =
        verify::check_known_files(DatasetKind::Cifar10, &dir.join(cifar10::DIR)).unwrap();
    assert!(modified.is_empty(), "{modified:?}");
    assert_eq!((train.len(), test.len()), (50_000, 10_000));
    assert_eq!(train.shape(), [3, 32, 32]);
    assert_eq!(train.label_counts(), vec![5000; 10]);
    assert_eq!(test.label_counts(), vec![1000; 10]);
    let per_batch: [[usize; 10]; 5] = [
        [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981],
        [984, 1007, 1010, 995, 1010, 988, 1008, 1026, 987, 985],
        [994, 1042, 965, 997, 990, 1029, 978, 1015, 961, 1029],
        [1003, 963, 1041, 976, 1004, 1021, 1004, 981, 1024, 983],
        [1014, 1014, 952, 1016, 997, 1025, 980, 977, 1003, 1022],
    ];
    for (k, expected) in per_batch.iter().enumerate() {
        let b = train.subset(k * 10_000..(k + 1) * 10_000).unwrap();
        assert_eq!(b.label_counts(), expected.to_vec(), "data_batch_{}", k + 1);
    }
    // train[0] is a frog whose R plane starts 59, 43, 50, 68 and G plane 62, 46, 48.
    assert_eq!(train.labels[0], 6);
    let img = train.image(0).unwrap();
    assert_eq!(&img[..4], &[59, 43, 50, 68]);
    assert_eq!(&img[1024..1027], &[62, 46, 48]);
    assert_eq!(train.class_names[6], "frog");
    let n = Normalize::cifar10();
    for (c, (m, s)) in channel_stats(&train).into_iter().enumerate() {
        assert!((m - n.mean[c] as f64).abs() < 5e-4, "channel {c} mean {m}");
        assert!((s - n.std[c] as f64).abs() < 5e-4, "channel {c} std {s}");
    }
    let (pre, lab) = Split::cifar_report().apply(&train).unwrap();
    assert_eq!((pre.len(), lab.len()), (40_000, 20_000));
}
