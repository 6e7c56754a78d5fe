//! k-means and GMM on synthetic blobs, reproducibility, and bad-input errors.

use ndarray::{Array2, Axis};
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use simclr_baselines::{
    run_baselines, BaselineConfig, BaselineError, Features, GmmBaseline, GmmParams, KMeansBaseline,
    KMeansParams, Method,
};

/// `per_blob` points around each of `k` centres in `dim` dimensions; blob `c` is stretched
/// along its own axis (anisotropic, so a full covariance matters) and centred at `±spread` on
/// axis `c` (and at `spread` on axis `c + 1`) — far apart relative to the noise.
fn blobs(k: usize, per_blob: usize, dim: usize, spread: f32, seed: u64) -> Features {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array2::<f32>::random_using((k * per_blob, dim), StandardNormal, &mut rng);
    let mut labels = Vec::with_capacity(k * per_blob);
    for (i, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        let c = i % k;
        row[c % dim] *= 3.0;
        row[c % dim] += if c % 2 == 0 { spread } else { -spread };
        row[(c + 1) % dim] += spread;
        labels.push(c);
    }
    Features::new(x, Some(labels)).unwrap()
}

fn kmeans_params(k: usize) -> KMeansParams {
    let cfg = BaselineConfig {
        k,
        ..BaselineConfig::default()
    };
    simclr_baselines::run::kmeans_params(&cfg)
}

fn gmm_params(k: usize, pca_dim: Option<usize>) -> GmmParams {
    let cfg = BaselineConfig {
        k,
        pca_dim,
        ..BaselineConfig::default()
    };
    simclr_baselines::run::gmm_params(&cfg)
}

#[test]
fn kmeans_finds_well_separated_blobs() {
    let train = blobs(4, 150, 6, 40.0, 1);
    let test = blobs(4, 100, 6, 40.0, 2);
    let model = KMeansBaseline::fit(train.view(), &kmeans_params(4)).unwrap();
    assert_eq!(model.centroids().dim(), (4, 6));
    let pred = model.predict(test.view()).unwrap();
    let s = simclr_baselines::evaluate(&pred, test.labels().unwrap()).unwrap();
    assert_eq!(s.accuracy, 1.0);
    assert!((s.nmi - 1.0).abs() < 1e-12 && (s.ari - 1.0).abs() < 1e-12);
}

#[test]
fn gmm_finds_well_separated_blobs_with_and_without_pca() {
    let train = blobs(4, 150, 6, 40.0, 3);
    let test = blobs(4, 100, 6, 40.0, 4);
    for pca_dim in [None, Some(5), Some(50)] {
        let model = GmmBaseline::fit(train.view(), &gmm_params(4, pca_dim)).unwrap();
        let pred = model.predict(test.view()).unwrap();
        let acc = simclr_baselines::cluster_accuracy(&pred, test.labels().unwrap()).unwrap();
        assert_eq!(acc, 1.0, "pca_dim {pca_dim:?}");
        assert!(model.train_log_likelihood().is_finite());
        let expected_dim = pca_dim.map_or(6, |d| d.min(6));
        assert_eq!(model.projection().output_dim(), expected_dim);
        assert!((model.weights().sum() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn run_baselines_reports_both_methods_and_is_reproducible() {
    let train = blobs(3, 120, 8, 30.0, 5);
    let test = blobs(3, 60, 8, 30.0, 6);
    let cfg = BaselineConfig {
        k: 3,
        pca_dim: Some(4),
        seed: 11,
        ..BaselineConfig::default()
    };
    let a = run_baselines(&train, &test, &cfg).unwrap();
    let b = run_baselines(&train, &test, &cfg).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].method, Method::KMeans);
    assert_eq!(a[1].method, Method::Gmm);
    for (ra, rb) in a.iter().zip(&b) {
        assert_eq!(ra.accuracy, 1.0, "{}", ra.summary());
        assert_eq!(ra.train.unwrap().accuracy, 1.0);
        // Same seed → same model → same everything but the clock.
        assert_eq!((ra.accuracy, ra.nmi, ra.ari), (rb.accuracy, rb.nmi, rb.ari));
        assert_eq!(ra.inertia, rb.inertia);
        assert_eq!(ra.log_likelihood, rb.log_likelihood);
        assert!(ra.fit_seconds >= 0.0);
        // Serialises with serde and round-trips.
        let json = serde_json::to_string(ra).unwrap();
        let back: simclr_baselines::ClusteringReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.method, ra.method);
        assert_eq!(back.accuracy, ra.accuracy);
    }
    assert_eq!(a[1].fitted_dim, 4);
    assert!(a[1].pca_kept_variance.unwrap() > 0.5);
    assert!(a[0].inertia.is_some() && a[1].log_likelihood.is_some());
    assert!(serde_json::to_string(&a)
        .unwrap()
        .contains("\"method\":\"gmm\""));
}

#[test]
fn same_seed_same_centroids_different_seed_runs_too() {
    let x = blobs(5, 80, 4, 3.0, 7); // overlapping: the seed matters
    let p = kmeans_params(5);
    let m1 = KMeansBaseline::fit(x.view(), &p).unwrap();
    let m2 = KMeansBaseline::fit(x.view(), &p).unwrap();
    assert_eq!(m1.centroids(), m2.centroids());
    let m3 = KMeansBaseline::fit(x.view(), &KMeansParams { seed: 99, ..p }).unwrap();
    assert_eq!(m3.centroids().dim(), (5, 4));
}

#[test]
fn config_roundtrips_through_json_with_defaults() {
    let cfg: BaselineConfig = serde_json::from_str(r#"{"k": 7, "methods": ["gmm"]}"#).unwrap();
    assert_eq!(cfg.k, 7);
    assert_eq!(cfg.methods, vec![Method::Gmm]);
    assert_eq!(cfg.pca_dim, Some(50));
    let json = serde_json::to_string(&BaselineConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<BaselineConfig>(&json).unwrap(),
        BaselineConfig::default()
    );
}

#[test]
fn too_many_clusters_is_an_error() {
    let small = blobs(2, 3, 4, 10.0, 8); // 6 samples
    assert!(matches!(
        KMeansBaseline::fit(small.view(), &kmeans_params(7)),
        Err(BaselineError::TooManyClusters { k: 7, n_samples: 6 })
    ));
    assert!(matches!(
        GmmBaseline::fit(small.view(), &gmm_params(7, None)),
        Err(BaselineError::TooManyClusters { k: 7, n_samples: 6 })
    ));
    let cfg = BaselineConfig {
        k: 10,
        ..BaselineConfig::default()
    };
    let err = run_baselines(&small, &small, &cfg).unwrap_err();
    assert!(matches!(
        err,
        BaselineError::TooManyClusters {
            k: 10,
            n_samples: 6
        }
    ));
    assert!(err.to_string().contains("k = 10"), "{err}");
}

#[test]
fn nan_and_inf_in_data_are_errors() {
    let mut x = blobs(2, 10, 3, 10.0, 9).view().to_owned();
    x[[4, 2]] = f32::NAN;
    let err = Features::new(x.clone(), None).unwrap_err();
    assert!(
        matches!(err, BaselineError::NonFinite { row: 4, col: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("NaN"), "{err}");
    // Raw views straight into the models are checked too.
    assert!(matches!(
        KMeansBaseline::fit(x.view(), &kmeans_params(2)),
        Err(BaselineError::NonFinite { row: 4, col: 2, .. })
    ));
    x[[4, 2]] = f32::NEG_INFINITY;
    assert!(matches!(
        GmmBaseline::fit(x.view(), &gmm_params(2, None)),
        Err(BaselineError::NonFinite { row: 4, col: 2, .. })
    ));
    // And at predict time.
    let good = blobs(2, 10, 3, 10.0, 9);
    let m = KMeansBaseline::fit(good.view(), &kmeans_params(2)).unwrap();
    assert!(matches!(
        m.predict(x.view()),
        Err(BaselineError::NonFinite { .. })
    ));
}

#[test]
fn empty_mismatched_and_unlabelled_inputs_are_errors() {
    let empty = Array2::<f32>::zeros((0, 5));
    assert!(matches!(
        Features::new(empty.clone(), None),
        Err(BaselineError::Empty { .. })
    ));
    assert!(matches!(
        KMeansBaseline::fit(empty.view(), &kmeans_params(2)),
        Err(BaselineError::Empty { .. })
    ));
    let x = blobs(2, 10, 3, 10.0, 10);
    assert!(matches!(
        Features::new(x.view().to_owned(), Some(vec![0; 19])),
        Err(BaselineError::LabelLength {
            n_labels: 19,
            n_samples: 20,
            ..
        })
    ));
    // Test set without labels.
    let unlabelled = Features::new(x.view().to_owned(), None).unwrap();
    let cfg = BaselineConfig {
        k: 2,
        ..BaselineConfig::default()
    };
    assert!(matches!(
        run_baselines(&x, &unlabelled, &cfg),
        Err(BaselineError::MissingLabels { .. })
    ));
    // …but an unlabelled training set is fine.
    let r = run_baselines(&unlabelled, &x, &cfg).unwrap();
    assert!(r.iter().all(|r| r.train.is_none()));
    // Different feature dimensions.
    let other = blobs(2, 10, 4, 10.0, 11);
    assert!(matches!(
        run_baselines(&x, &other, &cfg),
        Err(BaselineError::FeatureMismatch { fitted: 3, got: 4 })
    ));
    let m = KMeansBaseline::fit(x.view(), &kmeans_params(2)).unwrap();
    assert!(matches!(
        m.predict(other.view()),
        Err(BaselineError::FeatureMismatch { .. })
    ));
    let g = GmmBaseline::fit(x.view(), &gmm_params(2, None)).unwrap();
    assert!(matches!(
        g.predict(other.view()),
        Err(BaselineError::FeatureMismatch { .. })
    ));
}

#[test]
fn bad_configuration_is_an_error() {
    let x = blobs(2, 10, 6, 10.0, 12);
    let bad = [
        BaselineConfig {
            k: 0,
            ..BaselineConfig::default()
        },
        BaselineConfig {
            k: 2,
            restarts: 0,
            ..BaselineConfig::default()
        },
        BaselineConfig {
            k: 2,
            gmm_restarts: 0,
            methods: vec![Method::Gmm],
            ..BaselineConfig::default()
        },
        BaselineConfig {
            k: 2,
            gmm_reg_covariance: -1.0,
            methods: vec![Method::Gmm],
            ..BaselineConfig::default()
        },
        BaselineConfig {
            k: 2,
            tolerance: f32::NAN,
            ..BaselineConfig::default()
        },
        BaselineConfig {
            k: 2,
            pca_dim: Some(0),
            methods: vec![Method::Gmm],
            ..BaselineConfig::default()
        },
        BaselineConfig {
            k: 2,
            methods: vec![],
            ..BaselineConfig::default()
        },
    ];
    for cfg in bad {
        let err = run_baselines(&x, &x, &cfg).unwrap_err();
        assert!(
            matches!(err, BaselineError::Config(_)),
            "{cfg:?} gave {err}"
        );
    }
    // PCA to more dimensions than samples allow.
    let few = blobs(2, 2, 6, 10.0, 13); // 4 samples, 6 features
    let err = GmmBaseline::fit(few.view(), &gmm_params(2, Some(5))).unwrap_err();
    assert!(matches!(err, BaselineError::Config(_)), "{err}");
}

#[test]
fn raw_u8_images_cluster() {
    // Two "images" types: dark left half vs dark right half, 4×4 pixels, with a little noise.
    let mut px = Vec::new();
    let mut labels = Vec::new();
    for i in 0..60u32 {
        let class = (i % 2) as u8;
        for p in 0..16u32 {
            let left = p % 4 < 2;
            let on = (class == 0) == left;
            let noise = ((i * 31 + p * 17) % 40) as u8;
            px.push(if on { 200 + noise / 4 } else { noise });
        }
        labels.push(class);
    }
    let f = Features::from_u8_images(&px, 60, 16, Some(&labels)).unwrap();
    assert!(f.view().iter().all(|&v| (0.0..=1.0).contains(&v)));
    let cfg = BaselineConfig {
        k: 2,
        pca_dim: Some(3),
        ..BaselineConfig::default()
    };
    for r in run_baselines(&f, &f, &cfg).unwrap() {
        assert_eq!(r.accuracy, 1.0, "{}", r.summary());
    }
}

#[test]
fn gmm_regularisation_follows_the_feature_scale() {
    // Unnormalised embeddings can be huge or tiny; the relative covariance regularisation keeps
    // the mixture well posed either way.
    let base = blobs(3, 100, 5, 40.0, 14);
    for scale in [1e-3f32, 1e3] {
        let x = Features::new(
            base.view().mapv(|v| v * scale),
            base.labels().map(|l| l.to_vec()),
        )
        .unwrap();
        let g = GmmBaseline::fit(x.view(), &gmm_params(3, Some(4))).unwrap();
        let acc =
            simclr_baselines::cluster_accuracy(&g.predict(x.view()).unwrap(), x.labels().unwrap())
                .unwrap();
        assert_eq!(acc, 1.0, "scale {scale}");
    }
}

#[test]
fn degenerate_data_never_panics() {
    // All samples identical: k-means has nothing to separate, the GMM may legitimately fail,
    // but both must answer with a Result.
    let x = Features::from_slice(&[0.5; 40], 20, 2, Some(vec![0; 20])).unwrap();
    let cfg = BaselineConfig {
        k: 3,
        ..BaselineConfig::default()
    };
    let k = KMeansBaseline::fit(x.view(), &simclr_baselines::run::kmeans_params(&cfg));
    assert!(k.is_ok());
    let g = GmmBaseline::fit(x.view(), &simclr_baselines::run::gmm_params(&cfg));
    if let Err(e) = g {
        assert!(!e.to_string().is_empty());
    }
}
