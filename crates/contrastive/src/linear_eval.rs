//! Linear evaluation, the standard measure of self-supervised features, as the report does it.
//!
//! The encoder is frozen in eval mode; the features of the labeled and test sets are computed
//! once (see [`crate::features`]); a single `Linear(F → classes)` is trained on the cached
//! labeled features with Adam (lr 1e-3), batch 128, for `E` epochs (the report: 30), with a
//! seeded shuffle per epoch, optionally with an L2 penalty on its weights
//! ([`LinearEvalConfig::l2`]). Each epoch reports the mean training loss (the cross-entropy,
//! without the penalty), the training accuracy
//! (of the predictions made while training, as the report's loop counts it) and the test
//! accuracy; the final report adds per-class test accuracy and the confusion matrix.
//! If the features separate the classes linearly, this probe finds it: the accuracy measures
//! the representation, not the classifier. Non-finite features or a non-finite classifier
//! loss are an [`EvalError`], never a NaN accuracy.
//!
//! [`fine_tune`] is the other protocol: the encoder is *not* frozen, and encoder and head are
//! trained together on (optionally augmented) labeled images.

use std::time::Instant;

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};
use simclr_data::{Augmenter, ImageSet, Loader, LoaderConfig, Normalize};
use simclr_nn::{Adam, AdamConfig, Linear, Module, Optimizer};
use simclr_tensor::{no_grad, Tensor};

use crate::error::EvalError;
use crate::features::{extract_features, features_of};

/// Settings of the linear probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearEvalConfig {
    /// Training epochs over the labeled features (the report: 30).
    pub epochs: usize,
    /// Mini-batch size (the report: 128).
    pub batch_size: usize,
    /// Adam learning rate (the report: 1e-3).
    pub lr: f32,
    /// Weight `λ` of an L2 penalty on the head's weights: the training objective is the
    /// cross-entropy plus `λ·‖W‖²` (the bias is not penalised), the regularised logistic
    /// regression of the SimCLR paper's linear protocol. 0 (the report's): none.
    #[serde(default)]
    pub l2: f32,
    /// Seeds the classifier's initialisation and the shuffles.
    pub seed: u64,
    /// Images per batch when computing features.
    pub feature_batch_size: usize,
    /// Standardise each feature (zero mean, unit variance over the labeled set, applied to
    /// both sets) before the head. An affine map of the features, so the probe stays linear;
    /// it only conditions the optimisation, which otherwise underfits in 30 epochs.
    pub standardize: bool,
}

impl Default for LinearEvalConfig {
    fn default() -> Self {
        LinearEvalConfig {
            epochs: 30,
            batch_size: 128,
            lr: 1e-3,
            l2: 0.0,
            seed: 0,
            feature_batch_size: 256,
            standardize: true,
        }
    }
}

/// One epoch of classifier training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierEpoch {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's batches.
    pub train_loss: f32,
    /// Fraction of training examples predicted correctly during the epoch.
    pub train_accuracy: f32,
    /// Fraction of the test set predicted correctly after the epoch.
    pub test_accuracy: f32,
    /// Wall time of the epoch (training and test evaluation).
    pub seconds: f64,
}

/// The result of a linear evaluation or a fine-tune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Per-epoch curves.
    pub epochs: Vec<ClassifierEpoch>,
    /// Final test accuracy (fraction).
    pub test_accuracy: f32,
    /// Test accuracy of each class (fraction; `None` for a class absent from the test set).
    pub per_class_accuracy: Vec<Option<f32>>,
    /// `confusion[true][predicted]` counts on the test set.
    pub confusion: Vec<Vec<usize>>,
    /// Feature dimension.
    pub feature_dim: usize,
    /// Time spent computing the frozen features (0 for a fine-tune).
    pub feature_seconds: f64,
    /// Time spent training the classifier (and evaluating it per epoch).
    pub train_seconds: f64,
}

/// Linear evaluation of a frozen `encoder`: features of `labeled` and `test` (normalised with
/// `norm`), then [`linear_eval_on_features`]. `on_epoch` sees each epoch as it ends. Leaves
/// the encoder in eval mode; its parameters are not touched.
pub fn linear_eval(
    encoder: &dyn Module,
    labeled: &ImageSet,
    test: &ImageSet,
    norm: &Normalize,
    cfg: &LinearEvalConfig,
    on_epoch: impl FnMut(&ClassifierEpoch),
) -> Result<EvalReport, EvalError> {
    let t = Instant::now();
    let train_x = extract_features(encoder, labeled, norm, cfg.feature_batch_size);
    let test_x = extract_features(encoder, test, norm, cfg.feature_batch_size);
    let feature_seconds = t.elapsed().as_secs_f64();
    let classes = labeled.num_classes().max(test.num_classes());
    let mut report = linear_eval_on_features(
        &train_x,
        &labeled.labels,
        &test_x,
        &test.labels,
        classes,
        cfg,
        on_epoch,
    )?;
    report.feature_seconds = feature_seconds;
    Ok(report)
}

/// Trains `Linear(F → classes)` on cached features `train_x: [N, F]` with `train_y`, and
/// evaluates it on `test_x`, `test_y` after every epoch (see the module docs).
pub fn linear_eval_on_features(
    train_x: &Tensor,
    train_y: &[u8],
    test_x: &Tensor,
    test_y: &[u8],
    classes: usize,
    cfg: &LinearEvalConfig,
    mut on_epoch: impl FnMut(&ClassifierEpoch),
) -> Result<EvalReport, EvalError> {
    assert!(
        train_x.ndim() == 2 && train_x.dim(0) == train_y.len(),
        "linear_eval: {} labels for features of shape {:?}",
        train_y.len(),
        train_x.shape()
    );
    assert!(
        test_x.ndim() == 2 && test_x.dim(0) == test_y.len() && test_x.dim(1) == train_x.dim(1),
        "linear_eval: test features {:?} with {} labels do not match train features {:?}",
        test_x.shape(),
        test_y.len(),
        train_x.shape()
    );
    check_finite(train_x, "labeled")?;
    check_finite(test_x, "test")?;
    let started = Instant::now();
    let (n, f) = (train_x.dim(0), train_x.dim(1));
    let standardized;
    let (train_x, test_x) = if cfg.standardize {
        standardized = standardize(train_x, test_x);
        (&standardized.0, &standardized.1)
    } else {
        (train_x, test_x)
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let classifier = Linear::new(f, classes, &mut rng);
    let mut opt = Adam::new(classifier.parameters(), AdamConfig::adam(cfg.lr));
    let x_all = train_x.data();
    let mut order: Vec<usize> = (0..n).collect();
    let mut epochs = Vec::with_capacity(cfg.epochs);
    let mut batch_x = Vec::with_capacity(cfg.batch_size * f);
    for epoch in 0..cfg.epochs {
        let t = Instant::now();
        order.shuffle(&mut StdRng::seed_from_u64(
            cfg.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        let (mut loss_sum, mut correct, mut batches) = (0.0f64, 0usize, 0usize);
        for (batch, idx) in order.chunks(cfg.batch_size.max(1)).enumerate() {
            batch_x.clear();
            for &i in idx {
                batch_x.extend_from_slice(&x_all[i * f..(i + 1) * f]);
            }
            let targets: Vec<usize> = idx.iter().map(|&i| train_y[i] as usize).collect();
            let x = Tensor::from_vec(batch_x.clone(), &[idx.len(), f]);
            opt.zero_grad();
            let logits = classifier.forward(&x);
            let loss = logits.cross_entropy(&targets);
            correct += argmax_rows(&logits.data(), classes)
                .zip(&targets)
                .filter(|(p, &t)| *p == t)
                .count();
            loss_sum += finite_loss(loss.item(), epoch, batch)? as f64;
            if cfg.l2 > 0.0 {
                // In the objective rather than as Adam's L2 weight decay, which would decay
                // the bias as well: the protocol penalises the weights only.
                let w = &classifier.weight;
                loss.add(&w.mul(w).sum().mul_scalar(cfg.l2)).backward();
            } else {
                loss.backward();
            }
            opt.step();
            batches += 1;
        }
        let (test_accuracy, _) = evaluate(&classifier, test_x, test_y, classes);
        let e = ClassifierEpoch {
            epoch,
            train_loss: (loss_sum / batches.max(1) as f64) as f32,
            train_accuracy: correct as f32 / n.max(1) as f32,
            test_accuracy,
            seconds: t.elapsed().as_secs_f64(),
        };
        on_epoch(&e);
        epochs.push(e);
    }
    drop(x_all);
    let (test_accuracy, confusion) = evaluate(&classifier, test_x, test_y, classes);
    Ok(EvalReport {
        epochs,
        test_accuracy,
        per_class_accuracy: per_class(&confusion),
        confusion,
        feature_dim: f,
        feature_seconds: 0.0,
        train_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The first non-finite value of the `[N, F]` features `x` as an error naming `set`.
fn check_finite(x: &Tensor, set: &'static str) -> Result<(), EvalError> {
    let f = x.dim(1).max(1);
    match x.data().iter().position(|v| !v.is_finite()) {
        Some(i) => Err(EvalError::NonFiniteFeatures {
            set,
            image: i / f,
            feature: i % f,
        }),
        None => Ok(()),
    }
}

/// `loss` if it is finite, else the error naming where it was seen.
fn finite_loss(loss: f32, epoch: usize, batch: usize) -> Result<f32, EvalError> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(EvalError::NonFiniteLoss { epoch, batch, loss })
    }
}

/// Both feature sets shifted and scaled by the per-feature mean and standard deviation of
/// `train_x` (a feature with no spread is only centred).
fn standardize(train_x: &Tensor, test_x: &Tensor) -> (Tensor, Tensor) {
    let (n, f) = (train_x.dim(0), train_x.dim(1));
    let x = train_x.data();
    let mut mean = vec![0.0f64; f];
    let mut sq = vec![0.0f64; f];
    for row in x.chunks(f) {
        for ((m, s), &v) in mean.iter_mut().zip(sq.iter_mut()).zip(row) {
            *m += v as f64;
            *s += v as f64 * v as f64;
        }
    }
    let count = n.max(1) as f64;
    let shift: Vec<f32> = mean.iter().map(|m| (m / count) as f32).collect();
    let scale: Vec<f32> = mean
        .iter()
        .zip(&sq)
        .map(|(m, s)| {
            let var = (s / count - (m / count).powi(2)).max(0.0);
            if var > 1e-12 {
                (1.0 / var.sqrt()) as f32
            } else {
                1.0
            }
        })
        .collect();
    let apply = |t: &Tensor| {
        let mut out = t.to_vec();
        for row in out.chunks_mut(f) {
            for ((v, m), s) in row.iter_mut().zip(&shift).zip(&scale) {
                *v = (*v - m) * s;
            }
        }
        Tensor::from_vec(out, t.shape())
    };
    drop(x);
    (apply(train_x), apply(test_x))
}

/// Settings of a fine-tune (encoder trained too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FineTuneConfig {
    /// Epochs over the labeled images (the loader sets the batch size).
    pub epochs: usize,
    /// Adam learning rate for encoder and head.
    pub lr: f32,
    /// Seeds the head's initialisation (the loader has its own seed).
    pub seed: u64,
}

/// Fine-tunes `encoder` (which must output `feature_dim` features) together with a new
/// `Linear(feature_dim → classes)` on the labeled images of `loader` (one view per image,
/// augmented or not by its augmenter), evaluating on `test` (normalised with `norm`, encoder
/// in eval mode) after every epoch. The encoder's weights change; it is left in eval mode.
pub fn fine_tune(
    encoder: &dyn Module,
    feature_dim: usize,
    loader: &Loader,
    test: &ImageSet,
    norm: &Normalize,
    cfg: &FineTuneConfig,
    mut on_epoch: impl FnMut(&ClassifierEpoch),
) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    let classes = loader.set().num_classes().max(test.num_classes());
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let head = Linear::new(feature_dim, classes, &mut rng);
    encoder.unfreeze();
    let mut params = encoder.parameters();
    params.extend(head.parameters());
    let mut opt = Adam::new(params, AdamConfig::adam(cfg.lr));
    let test_images = test.to_normalized(norm);
    let shape = test.shape();
    let mut epochs = Vec::with_capacity(cfg.epochs);
    let mut last_confusion = vec![vec![0; classes]; classes];
    for epoch in 0..cfg.epochs {
        let t = Instant::now();
        encoder.train();
        let (mut loss_sum, mut correct, mut seen, mut batches) = (0.0f64, 0usize, 0usize, 0usize);
        for (index, batch) in loader.epoch(epoch as u64).enumerate() {
            let targets: Vec<usize> = batch.labels.iter().map(|&l| l as usize).collect();
            let dims = batch.dims();
            let x = Tensor::from_vec(batch.data, &dims);
            opt.zero_grad();
            let logits = head.forward(&encoder.forward(&x));
            let loss = logits.cross_entropy(&targets);
            correct += argmax_rows(&logits.data(), classes)
                .zip(&targets)
                .filter(|(p, &t)| *p == t)
                .count();
            seen += targets.len();
            loss_sum += finite_loss(loss.item(), epoch, index)? as f64;
            loss.backward();
            opt.step();
            batches += 1;
        }
        let feats = features_of(encoder, &test_images, shape, 256);
        let (test_accuracy, confusion) = evaluate(&head, &feats, &test.labels, classes);
        last_confusion = confusion;
        let e = ClassifierEpoch {
            epoch,
            train_loss: (loss_sum / batches.max(1) as f64) as f32,
            train_accuracy: correct as f32 / seen.max(1) as f32,
            test_accuracy,
            seconds: t.elapsed().as_secs_f64(),
        };
        on_epoch(&e);
        epochs.push(e);
    }
    encoder.eval();
    let test_accuracy = epochs.last().map_or(f32::NAN, |e| e.test_accuracy);
    Ok(EvalReport {
        epochs,
        test_accuracy,
        per_class_accuracy: per_class(&last_confusion),
        confusion: last_confusion,
        feature_dim,
        feature_seconds: 0.0,
        train_seconds: started.elapsed().as_secs_f64(),
    })
}

/// A one-view loader for [`fine_tune`] over `labeled`, with `augmenter`'s view 0 pipeline.
pub fn fine_tune_loader(
    labeled: ImageSet,
    augmenter: Augmenter,
    batch_size: usize,
) -> simclr_data::Result<Loader> {
    Loader::new(labeled, augmenter, LoaderConfig::one_view(batch_size))
}

/// Index of the largest value of each row of a `[rows, cols]` array.
fn argmax_rows(x: &[f32], cols: usize) -> impl Iterator<Item = usize> + '_ {
    x.chunks_exact(cols).map(|row| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            })
            .0
    })
}

/// Accuracy and confusion matrix of `model` on features `x` with labels `y`.
fn evaluate(model: &dyn Module, x: &Tensor, y: &[u8], classes: usize) -> (f32, Vec<Vec<usize>>) {
    let logits = no_grad(|| model.forward(x));
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut correct = 0;
    for (p, &t) in argmax_rows(&logits.data(), classes).zip(y) {
        let t = t as usize;
        if t < classes {
            confusion[t][p] += 1;
        }
        correct += (p == t) as usize;
    }
    (correct as f32 / y.len().max(1) as f32, confusion)
}

/// Per-class accuracy from a confusion matrix (`None` where a class has no examples).
pub(crate) fn per_class(confusion: &[Vec<usize>]) -> Vec<Option<f32>> {
    confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: usize = row.iter().sum();
            (total > 0).then(|| row[c] as f32 / total as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_features_reach_full_accuracy() {
        // Three classes at the corners of a triangle, with a little spread.
        let mut rng = StdRng::seed_from_u64(1);
        let centres = [[3.0f32, 0.0], [-3.0, 2.0], [0.0, -3.0]];
        let make = |n: usize, rng: &mut StdRng| {
            let noise = Tensor::randn(&[n, 2], rng).to_vec();
            let y: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
            let x: Vec<f32> = (0..n * 2)
                .map(|k| centres[y[k / 2] as usize][k % 2] + 0.3 * noise[k])
                .collect();
            (Tensor::from_vec(x, &[n, 2]), y)
        };
        let (tx, ty) = make(300, &mut rng);
        let (vx, vy) = make(90, &mut rng);
        let cfg = LinearEvalConfig {
            epochs: 20,
            batch_size: 32,
            lr: 1e-2,
            ..LinearEvalConfig::default()
        };
        let mut seen = 0;
        let r = linear_eval_on_features(&tx, &ty, &vx, &vy, 3, &cfg, |_| seen += 1).unwrap();
        assert_eq!(seen, 20);
        assert_eq!(r.test_accuracy, 1.0, "{:?}", r.epochs.last());
        assert!(r.epochs[19].train_loss < r.epochs[0].train_loss);
        assert_eq!(r.confusion[1], vec![0, 30, 0]);
        assert_eq!(r.per_class_accuracy, vec![Some(1.0); 3]);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"confusion\""));
    }

    #[test]
    fn an_l2_penalty_stops_the_fit_short_of_zero_loss() {
        // Two classes of four points that a line separates: without a penalty the weights
        // grow as the cross-entropy falls towards 0; with one they stop where the penalty's
        // pull balances the loss's, so the final cross-entropy stays well above.
        let x = Tensor::from_vec(vec![1.0, 0.2, 0.9, -0.1, -1.0, 0.1, -0.8, -0.2], &[4, 2]);
        let y = vec![0u8, 0, 1, 1];
        let train = |l2| {
            let cfg = LinearEvalConfig {
                epochs: 300,
                batch_size: 4,
                lr: 5e-2,
                l2,
                standardize: false,
                ..LinearEvalConfig::default()
            };
            let r = linear_eval_on_features(&x, &y, &x, &y, 2, &cfg, |_| {}).unwrap();
            (r.epochs.last().unwrap().train_loss, r.test_accuracy)
        };
        let (free, penalised) = (train(0.0), train(0.1));
        assert_eq!((free.1, penalised.1), (1.0, 1.0));
        assert!(free.0 < 0.01, "{free:?}");
        assert!(penalised.0 > 0.1, "{penalised:?}");
    }

    #[test]
    fn non_finite_features_and_losses_are_errors_not_nan_accuracies() {
        let y = vec![0u8, 1, 0, 1];
        let x = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.1, 0.1, 1.0], &[4, 2]);
        let mut bad = x.to_vec();
        bad[5] = f32::NAN;
        let bad = Tensor::from_vec(bad, &[4, 2]);
        let cfg = LinearEvalConfig {
            epochs: 3,
            batch_size: 2,
            ..LinearEvalConfig::default()
        };
        let err = linear_eval_on_features(&x, &y, &bad, &y, 2, &cfg, |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                EvalError::NonFiniteFeatures {
                    set: "test",
                    image: 2,
                    feature: 1
                }
            ),
            "{err}"
        );
        // A rate so large that the head's weights overflow within a few steps.
        let cfg = LinearEvalConfig { lr: 1e38, ..cfg };
        let err = linear_eval_on_features(&x, &y, &x, &y, 2, &cfg, |_| {}).unwrap_err();
        assert!(matches!(err, EvalError::NonFiniteLoss { .. }), "{err}");
        assert!(err.to_string().contains("learning rate"), "{err}");
    }

    #[test]
    fn argmax_and_per_class() {
        let p: Vec<usize> = argmax_rows(&[0.1, 0.9, 0.0, 2.0, -1.0, 1.0], 3).collect();
        assert_eq!(p, vec![1, 0]);
        let pc = per_class(&[vec![3, 1], vec![0, 0]]);
        assert_eq!(pc, vec![Some(0.75), None]);
    }
}
