//! Loader behaviour: coverage of an epoch, seeded shuffles, resumption, layouts, prefetch.

use simclr_data::{
    Augmenter, DatasetKind, ImageSet, Loader, LoaderConfig, Normalize, Recipe, Shard,
};

/// `n` 28×28 images whose pixels all equal the image index mod 256.
fn numbered(n: usize) -> ImageSet {
    let images = (0..n).flat_map(|i| [(i % 256) as u8; 784]).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    ImageSet::new(images, labels, 1, 28, 28, simclr_data::mnist::class_names()).unwrap()
}

fn loader(n: usize, seed: u64, cfg: LoaderConfig, recipe: Recipe) -> Loader {
    Loader::new(
        numbered(n),
        Augmenter::new(recipe, DatasetKind::Mnist, seed),
        cfg,
    )
    .unwrap()
}

#[test]
fn every_image_once_per_epoch() {
    let l = loader(1000, 1, LoaderConfig::one_view(64), Recipe::None);
    assert_eq!(l.len(), 16);
    let mut seen = vec![0; 1000];
    let mut batches = 0;
    for b in l.epoch(0) {
        assert!(b.size == 64 || (batches == 15 && b.size == 1000 - 15 * 64));
        for &i in &b.indices {
            seen[i] += 1;
        }
        batches += 1;
    }
    assert_eq!(batches, 16);
    assert!(seen.iter().all(|&c| c == 1));

    // drop_last: 15 full batches, 985 distinct images (two-view mode).
    let l = loader(1000, 1, LoaderConfig::two_views(64), Recipe::None);
    let mut seen = vec![0; 1000];
    let sizes: Vec<usize> = l
        .epoch(3)
        .map(|b| {
            b.indices.iter().for_each(|&i| seen[i] += 1);
            b.size
        })
        .collect();
    assert_eq!(sizes, vec![64; 15]);
    assert_eq!(seen.iter().filter(|&&c| c == 1).count(), 960);
    assert!(seen.iter().all(|&c| c <= 1));
}

#[test]
fn shuffle_is_seeded_per_epoch_and_resumable() {
    let a = loader(500, 7, LoaderConfig::one_view(50), Recipe::Simclr);
    let b = loader(500, 7, LoaderConfig::one_view(50), Recipe::Simclr);
    let c = loader(500, 8, LoaderConfig::one_view(50), Recipe::Simclr);
    assert_eq!(a.order(0), b.order(0));
    assert_ne!(a.order(0), a.order(1));
    assert_ne!(a.order(0), c.order(0));
    // A fresh loader asked for epoch 4 (a resumed run) yields exactly what the first would.
    let first: Vec<_> = a.epoch(4).collect();
    let resumed: Vec<_> = b.epoch(4).collect();
    assert_eq!(first, resumed);
    // The prefetching iterator yields the same batches as direct computation.
    assert_eq!(first[3], a.batch(4, 3).unwrap());
    assert!(a.batch(4, 10).is_none());
    // No shuffle: the set's order.
    let cfg = LoaderConfig {
        shuffle: false,
        ..LoaderConfig::one_view(50)
    };
    assert_eq!(
        loader(100, 1, cfg, Recipe::None).order(9),
        (0..100).collect::<Vec<_>>()
    );
}

#[test]
fn two_view_layout_pairs_rows_i_and_i_plus_b() {
    let l = loader(300, 3, LoaderConfig::two_views(32), Recipe::None);
    let b = l.epoch(0).next().unwrap();
    assert_eq!(b.dims(), [64, 1, 28, 28]);
    assert_eq!(b.data.len(), 64 * 784);
    let norm = Normalize::mnist();
    for i in 0..32 {
        let expect = ((b.indices[i] % 256) as f32 / 255.0 - norm.mean[0]) / norm.std[0];
        assert!((b.data[i * 784] - expect).abs() < 1e-5);
        assert!((b.data[(i + 32) * 784] - expect).abs() < 1e-5);
        assert_eq!(b.labels[i] as usize, b.indices[i] % 10);
    }
    // With an augmenting recipe the two halves differ but stay paired by image.
    let l = loader(300, 3, LoaderConfig::two_views(32), Recipe::Simclr);
    let b = l.batch(0, 0).unwrap();
    assert_ne!(&b.data[..784], &b.data[32 * 784..33 * 784]);
}

#[test]
fn dropping_an_epoch_early_stops_cleanly() {
    let l = loader(2000, 1, LoaderConfig::two_views(16), Recipe::Simclr);
    for epoch in 0..5 {
        let mut it = l.epoch(epoch);
        let _ = it.next();
        drop(it);
    }
}

#[test]
fn bad_configs_are_errors() {
    let aug = || Augmenter::new(Recipe::None, DatasetKind::Mnist, 0);
    assert!(Loader::new(numbered(10), aug(), LoaderConfig::one_view(0)).is_err());
    let cfg = LoaderConfig {
        views: 3,
        ..LoaderConfig::one_view(4)
    };
    assert!(Loader::new(numbered(10), aug(), cfg).is_err());
    assert!(Loader::new(numbered(0), aug(), LoaderConfig::one_view(4)).is_err());
    // Fewer images than a batch with drop_last: an empty epoch, not a hang.
    let l = Loader::new(numbered(3), aug(), LoaderConfig::two_views(4)).unwrap();
    assert!(l.is_empty());
    assert_eq!(l.epoch(0).count(), 0);
}

#[test]
fn the_shards_of_a_batch_are_its_parts_with_the_same_views() {
    let whole = loader(100, 3, LoaderConfig::two_views(12), Recipe::Simclr);
    let shard = |index| {
        let cfg = LoaderConfig {
            shard: Shard { index, count: 3 },
            ..LoaderConfig::two_views(12)
        };
        loader(100, 3, cfg, Recipe::Simclr)
    };
    let shards = [shard(0), shard(1), shard(2)];
    assert!(shards.iter().all(|s| s.len() == whole.len()));
    for (k, batch) in whole.epoch_from(2, 5).enumerate() {
        let parts: Vec<_> = shards.iter().map(|s| s.batch(2, 5 + k).unwrap()).collect();
        let image = batch.data.len() / 24;
        for (r, part) in parts.iter().enumerate() {
            assert_eq!((part.size, part.views), (4, 2));
            assert_eq!(part.indices, batch.indices[4 * r..4 * r + 4]);
            for view in 0..2 {
                let mine = &part.data[view * 4 * image..(view + 1) * 4 * image];
                let at = (view * 12 + 4 * r) * image;
                assert_eq!(
                    mine,
                    &batch.data[at..at + 4 * image],
                    "batch {k} rank {r} view {view}"
                );
            }
        }
    }
    let uneven = LoaderConfig {
        shard: Shard { index: 0, count: 5 },
        ..LoaderConfig::two_views(12)
    };
    let err = Loader::new(
        numbered(100),
        Augmenter::new(Recipe::None, DatasetKind::Mnist, 0),
        uneven,
    );
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("must split into 5 equal parts"));
}

#[test]
fn whole_set_normalised_matches_one_view_none() {
    let set = numbered(100);
    let all = set.to_normalized(&Normalize::mnist());
    let cfg = LoaderConfig {
        shuffle: false,
        ..LoaderConfig::one_view(100)
    };
    let l = Loader::new(
        set,
        Augmenter::new(Recipe::None, DatasetKind::Mnist, 0),
        cfg,
    )
    .unwrap();
    assert_eq!(l.batch(0, 0).unwrap().data, all);
}

#[test]
fn augment_grid_png_writes_a_picture() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("sub/grid.png");
    let set = numbered(50);
    simclr_data::augment_grid_png(&set, Recipe::Simclr, DatasetKind::Mnist, 6, 0, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // 4 cells per row, 2 rows; each cell is 3 images of 28·4 plus gutters.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (4 * (3 * 112 + 4 + 8), 2 * (112 + 8)));
    assert!(
        simclr_data::augment_grid_png(&set, Recipe::Simclr, DatasetKind::Mnist, 0, 0, &out)
            .is_err()
    );
}
