//! The report's experiment, end to end: data → SimCLR pretraining → frozen encoder + linear
//! head → clustering baselines → `results.json`, `report.md` and plots in the run directory.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::json;
use simclr_baselines::{run_baselines, BaselineConfig, ClusteringReport, Features, Method};
use simclr_contrastive::{
    extract_features, knn_accuracy, knn_eval, linear_eval_on_features, pretrain, read_run_state,
    resume, EvalReport, KnnConfig, LinearEvalConfig, PretrainConfig, RunState, SimClr, TrainEvent,
};
use simclr_data::{
    load_cifar10, load_mnist, resolve_data_dir, verify, DatasetKind, Downloader, ImageSet, Loader,
    LoaderConfig, Shard, Split,
};
use simclr_nn::checkpoint::{self, LoadOptions};
use simclr_nn::Module;
use simclr_tensor::Collective;

use crate::cli::BaselinesArgs;
use crate::distributed::{agree_on_config, Ranks};
use crate::history::History;
use crate::plots::{self, Series};
use crate::progress::Phase;
use crate::report::{self, Reference, Results};
use crate::run_config::RunConfig;
use crate::run_dir::{Claim, RunDir};
use crate::settings::{model_of, Experiment};

/// Loads a dataset from `dir`, downloading missing files from the public mirrors, and checks
/// the files' content against the published checksums: a difference is an error unless
/// `allow_modified` (then a warning).
pub fn load_dataset(
    kind: DatasetKind,
    dir: &Path,
    allow_modified: bool,
) -> Result<(ImageSet, ImageSet)> {
    let loaded = match kind {
        DatasetKind::Mnist => load_mnist(dir, Some(&Downloader::mnist())),
        DatasetKind::Cifar10 => load_cifar10(dir, Some(&Downloader::cifar10())),
    };
    let loaded =
        loaded.with_context(|| format!("cannot load the dataset from {}", dir.display()))?;
    let modified = verify::check_known_files(kind, &dir.join(kind.dir()))?;
    if !modified.is_empty() {
        let list: Vec<String> = modified.iter().map(|m| format!("  {m}")).collect();
        let list = list.join("\n");
        if !allow_modified {
            bail!(
                "these dataset files are not the published ones, so results would not be \
                 comparable (restore them, or pass --allow-modified-data to use them anyway):\n{list}"
            );
        }
        eprintln!("warning: using dataset files that are not the published ones:\n{list}");
    }
    Ok(loaded)
}

/// The first `limit` images of `set` (all of them without a limit).
fn capped(set: ImageSet, limit: Option<usize>) -> Result<ImageSet> {
    match limit {
        Some(n) if n < set.len() => Ok(set.subset(0..n)?),
        _ => Ok(set),
    }
}

/// Runs the whole experiment: loads and splits the data, claims the run directory (every check
/// that can refuse the command comes first), then the four phases below, in order. In a
/// distributed run, every rank pretrains on its shard of each batch, and rank 0 alone does
/// everything else (the run directory, the probe, the baselines, the report).
pub fn run(exp: &Experiment, ranks: &Ranks) -> Result<()> {
    let started = Instant::now();
    let a = &exp.args;
    let data_dir = resolve_data_dir(a.data_dir.as_deref());
    let (train, test) = load_dataset(exp.kind, &data_dir, a.allow_modified_data)?;
    let (pretrain_set, labeled) = exp
        .split
        .apply(&train)
        .context("the split does not fit the training set")?;
    let (pretrain_set, labeled, test) = (
        capped(pretrain_set, a.limit)?,
        capped(labeled, a.limit)?,
        capped(test, a.limit)?,
    );
    let sizes = [pretrain_set.len(), labeled.len(), test.len()];

    // Every check that can refuse the command comes before anything is written.
    let path = RunDir::path_for(a.resume.as_deref().or(a.out.as_deref()), exp.name());
    let config = exp.config();
    let group = &ranks.group;
    agree_on_config(&**group, &config)?;
    if !ranks.is_leader() {
        // Rank 0 reads and writes the run directory; the others only train, from rank 0's
        // weights (so they need no copy of `--pretrained`'s file either).
        let model = exp.initialised_model();
        pretrain_parts(exp, &model, &pretrain_set, &path, group, |_| {})?;
        return Ok(());
    }
    let claim = if a.resume.is_some() {
        if read_run_state(&path)?.is_none() {
            bail!(
                "--resume {}: there is no checkpoint to resume from",
                path.display()
            );
        }
        exp.check_same_run(&path, &config)?;
        Claim::Resume
    } else {
        Claim::New {
            overwrite: a.overwrite,
        }
    };
    let mut run = RunDir::open(path, claim)?;
    run.write_json(RunConfig::FILE, &config)?;
    println!(
        "{}: {} pretraining, {} labeled, {} test images; run directory {}",
        exp.name(),
        sizes[0],
        sizes[1],
        sizes[2],
        run.path.display()
    );
    if group.ranks() > 1 {
        println!(
            "distributed: {} ranks, {} of them on this machine, {} threads each",
            group.ranks(),
            ranks.on_this_machine,
            rayon::current_num_threads()
        );
    }

    let model = exp.build_model()?;
    let (state, history) = pretrain_phase(
        exp,
        &model,
        &mut run,
        &train,
        &pretrain_set,
        &labeled,
        group,
    )?;
    let probe = probe_phase(exp, &model, &mut run, &labeled, &test)?;
    let (baselines, baselines_seconds) = baselines_phase(exp, &pretrain_set, &test)?;
    let accuracy_of = |m: Method| baselines.iter().find(|r| r.method == m).map(|r| r.accuracy);
    let eval = &probe.eval;
    let last = eval.epochs.last();
    let results = Results {
        dataset: exp.name().into(),
        recipe: exp.recipe.name().into(),
        seed: exp.seed,
        encoder: exp.encoder_name(),
        test_accuracy: eval.test_accuracy as f64,
        train_accuracy: last.map_or(0.0, |e| e.train_accuracy as f64),
        knn_accuracy: probe.knn_accuracy,
        knn_monitor: history
            .knn_curve
            .iter()
            .map(|&(e, a)| (e as usize, a))
            .collect(),
        per_class_accuracy: eval
            .per_class_accuracy
            .iter()
            .map(|a| a.unwrap_or(0.0) as f64)
            .collect(),
        confusion: eval.confusion.clone(),
        final_pretrain_loss: state.last_epoch_loss as f64,
        pretrain_images_per_s: history.images_per_s(),
        pretrain_seconds: history.seconds(),
        classifier_seconds: probe.seconds,
        baselines_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        kmeans_accuracy: accuracy_of(Method::KMeans),
        gmm_accuracy: accuracy_of(Method::Gmm),
        baselines,
        sizes,
    };
    write_report(exp, &run, &results, history, eval, &train.class_names)
}

/// Phase 1, SimCLR pretraining of `model` on `pretrain_set` (small views first, if any, then
/// full-size ones), logged to the run directory with the kNN monitor; returns the final
/// progress and the history of the whole run (earlier processes of a resumed run included).
fn pretrain_phase(
    exp: &Experiment,
    model: &SimClr,
    run: &mut RunDir,
    train: &ImageSet,
    pretrain_set: &ImageSet,
    labeled: &ImageSet,
    group: &Rc<dyn Collective>,
) -> Result<(RunState, History)> {
    let a = &exp.args;
    let small_epochs = exp.small_view_epochs();
    let steps_per_epoch = pretrain_set.len() / exp.batch_size.min(pretrain_set.len());
    let run_dir = run.path.clone();
    let monitor = knn_monitor_sets(train, &exp.split, labeled, a.knn_monitor)?;
    let norm = exp.kind.normalize();
    let mut phase = Phase::start("pretrain", (exp.epochs * steps_per_epoch) as u64);
    // A resumed run's plots and times cover its earlier processes too.
    let mut history = History::replay(&run.file("metrics.jsonl"))?;
    // At most about 20 monitor points per run, and always the last epoch.
    let monitor_every = exp.epochs.div_ceil(20);
    let mut log_error = None;
    let on_event = |event: &TrainEvent| {
        let record = serde_json::to_value(event).unwrap_or_default();
        if let Err(e) = run.log(json!({ "phase": "pretrain", "data": record })) {
            log_error.get_or_insert(e);
        }
        history.record(event);
        match event {
            TrainEvent::Started {
                start_epoch,
                start_batch,
                steps_per_epoch,
                resumed,
                ..
            } => {
                if *start_epoch == small_epochs && small_epochs > 0 {
                    phase.println(&format!(
                        "epochs {}..{}: full-size views",
                        start_epoch + 1,
                        exp.epochs
                    ));
                } else if *resumed && *start_batch > 0 {
                    phase.println(&format!(
                        "resuming at epoch {}, batch {} of {steps_per_epoch}",
                        start_epoch + 1,
                        start_batch + 1
                    ));
                } else if *resumed {
                    phase.println(&format!("resuming at epoch {}", start_epoch + 1));
                }
                phase.update((start_epoch * steps_per_epoch + start_batch) as u64, "");
            }
            TrainEvent::Step(s) => {
                phase.update(
                    (s.step + 1) as u64,
                    &format!(
                        "epoch {} loss {:.4} {:.0} img/s",
                        s.epoch + 1,
                        s.loss,
                        s.images_per_s
                    ),
                );
            }
            TrainEvent::Epoch(e) => {
                let due = (e.epoch + 1) % monitor_every == 0 || e.epoch + 1 == exp.epochs;
                let knn = monitor.as_ref().filter(|_| due).map(|(bank, queries)| {
                    let started = Instant::now();
                    let r = knn_eval(&*model.encoder, bank, queries, &norm, &KnnConfig::default());
                    let seconds = started.elapsed().as_secs_f64();
                    let record = json!({ "epoch": e.epoch, "accuracy": r.accuracy,
                        "bank": bank.len(), "queries": queries.len(), "seconds": seconds });
                    if let Err(err) = run.log(json!({ "phase": "knn_monitor", "data": record })) {
                        log_error.get_or_insert(err);
                    }
                    history.record_knn(e.epoch, r.accuracy as f64, seconds);
                    format!(", kNN monitor {:.2} %", 100.0 * r.accuracy)
                });
                phase.println(&format!(
                    "epoch {:>3}: loss {:.4}, {:.0} images/s, {:.1} s{}",
                    e.epoch + 1,
                    e.mean_loss,
                    e.images_per_s,
                    e.seconds,
                    knn.unwrap_or_default()
                ));
            }
            // Recorded in metrics.jsonl only: every few minutes, not worth a line.
            TrainEvent::Checkpoint(_) => {}
        }
    };
    let state = pretrain_parts(exp, model, pretrain_set, &run_dir, group, on_event)?;
    if let Some(e) = log_error {
        return Err(e.context("cannot write metrics.jsonl"));
    }
    phase.finish(&format!(
        "{} epochs, final loss {:.4}",
        history.epochs.len(),
        state.last_epoch_loss
    ));
    Ok((state, history))
}

/// SimCLR pretraining of `model` on `pretrain_set` (each rank making its shard of every batch,
/// in a distributed run), small views first if any, then full-size ones — the second part continues the first
/// exactly as a resumed run would, from the checkpoint the first part ended on in `run_dir`;
/// returns the final progress.
fn pretrain_parts(
    exp: &Experiment,
    model: &SimClr,
    pretrain_set: &ImageSet,
    run_dir: &Path,
    group: &Rc<dyn Collective>,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<RunState> {
    let a = &exp.args;
    let mut optimizer = exp.optimizer(model.parameters());
    // One copy of the images, shared by the small-view and the full-size loaders.
    let images = std::sync::Arc::new(pretrain_set.clone());
    let shard = Shard {
        index: group.rank(),
        count: group.ranks(),
    };
    let loader_of = |small: bool| {
        let cfg = LoaderConfig {
            shard,
            ..LoaderConfig::two_views(exp.batch_size.min(pretrain_set.len()))
        };
        Loader::new(images.clone(), exp.augmenter(small), cfg)
            .with_context(|| format!("cannot split the batch over {} ranks", shard.count))
    };
    let loader = loader_of(false)?;
    let small_epochs = exp.small_view_epochs();
    let cfg = PretrainConfig {
        epochs: exp.epochs,
        temperature: exp.temperature,
        schedule: exp.schedule(loader.len()),
        run_dir: Some(run_dir.to_path_buf()),
        max_steps_per_epoch: None,
        checkpoint_every: Some(Duration::from_secs_f64(60.0 * a.checkpoint_minutes)),
        group: group.clone(),
    };
    let mut resuming = a.resume.is_some();
    let mut part = |loader: &Loader, cfg: &PretrainConfig, resuming: bool| {
        let run = if resuming { resume } else { pretrain };
        run(model, optimizer.as_mut(), loader, cfg, &mut on_event).context("pretraining stopped")
    };
    let mut last_part = None;
    if small_epochs > 0 {
        let small = PretrainConfig {
            epochs: small_epochs,
            ..cfg.clone()
        };
        last_part = Some(part(&loader_of(true)?, &small, resuming)?);
        resuming = true;
    }
    if small_epochs < exp.epochs {
        last_part = Some(part(&loader, &cfg, resuming)?);
    }
    Ok(last_part.expect("at least one epoch to run").state)
}

/// What phase 2 measured.
struct Probe {
    eval: EvalReport,
    knn_accuracy: Option<f64>,
    seconds: f64,
}

/// Phase 2: a linear head on the frozen encoder's features of `labeled`, scored on `test`
/// (and the kNN classifier on the same features with `--knn`).
fn probe_phase(
    exp: &Experiment,
    model: &SimClr,
    run: &mut RunDir,
    labeled: &ImageSet,
    test: &ImageSet,
) -> Result<Probe> {
    let a = &exp.args;
    let norm = exp.kind.normalize();
    let classifier_started = Instant::now();
    model.encoder.set_training(false);
    let labeled_x = extract_features(&*model.encoder, labeled, &norm, 512);
    let test_x = extract_features(&*model.encoder, test, &norm, 512);
    let eval_cfg = LinearEvalConfig {
        epochs: exp.classifier_epochs,
        batch_size: a.classifier_batch_size,
        lr: a.classifier_lr,
        l2: exp.classifier_l2,
        seed: exp.seed,
        feature_batch_size: 512,
        standardize: !a.raw_features,
    };
    let classes = labeled.class_names.len().max(10);
    let mut phase = Phase::start("classifier", exp.classifier_epochs as u64);
    let mut classifier_log = Vec::new();
    let eval = linear_eval_on_features(
        &labeled_x,
        &labeled.labels,
        &test_x,
        &test.labels,
        classes,
        &eval_cfg,
        |e| {
            classifier_log.push(json!({ "phase": "classifier", "data": e }));
            phase.update(
                (e.epoch + 1) as u64,
                &format!(
                    "loss {:.4} train {:.2} % test {:.2} %",
                    e.train_loss,
                    100.0 * e.train_accuracy,
                    100.0 * e.test_accuracy
                ),
            );
        },
    )?;
    let classifier_seconds = classifier_started.elapsed().as_secs_f64();
    phase.finish(&format!(
        "test accuracy {:.2} %",
        100.0 * eval.test_accuracy
    ));
    for record in classifier_log {
        run.log(record)?;
    }
    let knn_accuracy = a.knn.then(|| {
        let r = knn_accuracy(
            &labeled_x,
            &labeled.labels,
            &test_x,
            &test.labels,
            classes,
            &KnnConfig::default(),
        );
        println!("kNN (k = {}, cosine): {:.2} %", r.k, 100.0 * r.accuracy);
        r.accuracy as f64
    });

    Ok(Probe {
        eval,
        knn_accuracy,
        seconds: classifier_seconds,
    })
}

/// Phase 3 (unless `--no-baselines`): k-means and GMM on the raw pixels of the same split,
/// fitted on `pretrain_set` and scored on `test`; returns the reports and the seconds taken.
fn baselines_phase(
    exp: &Experiment,
    pretrain_set: &ImageSet,
    test: &ImageSet,
) -> Result<(Vec<ClusteringReport>, f64)> {
    if !exp.baselines {
        return Ok((Vec::new(), 0.0));
    }
    let started = Instant::now();
    println!(
        "baselines: k-means and GMM on raw pixels ({} fit, {} test)",
        pretrain_set.len(),
        test.len()
    );
    let config = BaselineConfig {
        seed: exp.seed,
        ..BaselineConfig::default()
    };
    let reports = cluster_pixels(pretrain_set, test, &config)?;
    for r in &reports {
        println!("  {}", r.summary());
    }
    Ok((reports, started.elapsed().as_secs_f64()))
}

/// Phase 4: what the run leaves behind — `results.json`, the plots and `report.md` — and the
/// summary table on the terminal.
fn write_report(
    exp: &Experiment,
    run: &RunDir,
    results: &Results,
    history: History,
    eval: &EvalReport,
    class_names: &[String],
) -> Result<()> {
    run.write_json("results.json", results)?;

    plots::line_chart(
        &run.file("pretrain_loss.png"),
        "SimCLR pretraining: NT-Xent loss",
        "epoch",
        "loss",
        &[
            Series {
                label: "per step",
                points: history.step_losses,
            },
            Series {
                label: "epoch mean",
                points: history.epoch_losses,
            },
        ],
    )?;
    if !history.knn_curve.is_empty() {
        plots::line_chart(
            &run.file("knn_monitor.png"),
            "kNN monitor (k = 200, cosine) on held-out training images",
            "epoch",
            "accuracy",
            &[Series {
                label: "kNN accuracy",
                points: history.knn_curve.clone(),
            }],
        )?;
    }
    let curve = |f: fn(&simclr_contrastive::ClassifierEpoch) -> f64| -> Vec<(f64, f64)> {
        eval.epochs
            .iter()
            .map(|e| ((e.epoch + 1) as f64, f(e)))
            .collect()
    };
    plots::line_chart(
        &run.file("classifier.png"),
        "Linear head on the frozen encoder",
        "epoch",
        "loss / accuracy",
        &[
            Series {
                label: "train loss",
                points: curve(|e| e.train_loss as f64),
            },
            Series {
                label: "train accuracy",
                points: curve(|e| e.train_accuracy as f64),
            },
            Series {
                label: "test accuracy",
                points: curve(|e| e.test_accuracy as f64),
            },
        ],
    )?;
    plots::confusion_matrix(
        &run.file("confusion.png"),
        "Test confusion matrix",
        &eval.confusion,
        class_names,
    )?;
    let reference = match exp.kind {
        DatasetKind::Mnist => Reference::mnist(),
        DatasetKind::Cifar10 => Reference::cifar10(),
    };
    let settings = serde_json::to_string_pretty(&exp.config())?;
    let md = report::markdown(results, &reference, &settings, class_names);
    run.write_text("report.md", &md)?;

    println!();
    print!("{}", report::summary_table(results, &reference));
    println!("report: {}", run.file("report.md").display());
    Ok(())
}

/// The kNN monitor's images: a bank of up to 5,000 labeled images and `queries` held-out
/// training images, outside both the pretraining and the labeled ranges (so neither the
/// encoder nor the bank has seen them, and the test set stays untouched until the end).
/// `None` when `queries` is 0 or the training set has no image left over.
fn knn_monitor_sets(
    train: &ImageSet,
    split: &Split,
    labeled: &ImageSet,
    queries: usize,
) -> Result<Option<(ImageSet, ImageSet)>> {
    const BANK: usize = 5_000;
    let held_out: Vec<usize> = (0..train.len())
        .filter(|i| !split.pretrain.contains(i) && !split.labeled.contains(i))
        .take(queries)
        .collect();
    if held_out.is_empty() || labeled.is_empty() {
        return Ok(None);
    }
    let bank = labeled.subset(0..labeled.len().min(BANK))?;
    Ok(Some((bank, train.select(&held_out)?)))
}

/// k-means and GMM on the raw pixels of `fit`, scored on `test`.
fn cluster_pixels(
    fit: &ImageSet,
    test: &ImageSet,
    cfg: &BaselineConfig,
) -> Result<Vec<simclr_baselines::ClusteringReport>> {
    let features =
        |s: &ImageSet| Features::from_u8_images(&s.images, s.len(), s.image_len(), Some(&s.labels));
    Ok(run_baselines(&features(fit)?, &features(test)?, cfg)?)
}

/// `cargo xtask baselines`: clustering alone, on pixels or on a run's encoder features.
pub fn baselines_only(args: &BaselinesArgs) -> Result<()> {
    let kind = args.dataset;
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    let (train, test) = load_dataset(kind, &data_dir, args.allow_modified_data)?;
    let fit_range = match &args.fit_range {
        Some(r) => simclr_data::parse_range(r).map_err(|e| anyhow::anyhow!("--fit-range: {e}"))?,
        None => Split::report(kind).pretrain,
    };
    let fit = capped(train.subset(fit_range)?, args.limit)?;
    let test = capped(test, args.limit)?;
    let cfg = BaselineConfig {
        seed: args.seed,
        pca_dim: Some(args.pca_dim),
        ..BaselineConfig::default()
    };
    let reports = match &args.encoder {
        None => {
            println!(
                "clustering raw pixels: {} fit, {} test images",
                fit.len(),
                test.len()
            );
            cluster_pixels(&fit, &test, &cfg)?
        }
        Some(run_dir) => {
            let model = encoder_of_run(run_dir, kind)?;
            let norm = kind.normalize();
            let as_features = |s: &ImageSet| -> Result<Features> {
                let x = extract_features(&*model.encoder, s, &norm, 512);
                let labels: Vec<usize> = s.labels.iter().map(|&l| l as usize).collect();
                let features = Features::from_slice(&x.data(), x.dim(0), x.dim(1), Some(labels))?;
                Ok(features)
            };
            println!(
                "clustering SimCLR features of {}: {} fit, {} test images",
                run_dir.display(),
                fit.len(),
                test.len()
            );
            run_baselines(&as_features(&fit)?, &as_features(&test)?, &cfg)?
        }
    };
    for r in &reports {
        println!("{}", r.summary());
    }
    Ok(())
}

/// Rebuilds the model of a finished run from its `config.json` and loads its checkpoint,
/// refusing a run whose encoder was trained on another dataset than `kind`'s images.
fn encoder_of_run(run_dir: &Path, kind: DatasetKind) -> Result<SimClr> {
    let Some(config) = RunConfig::load(run_dir)? else {
        bail!(
            "cannot read {}: the run's settings are missing",
            run_dir.join(RunConfig::FILE).display()
        );
    };
    if config.dataset != kind {
        let (trained_on, dataset) = (config.dataset.name(), kind.name());
        bail!(
            "{} holds an encoder trained on {trained_on}, which cannot embed {dataset} images \
             (cluster {trained_on} with it: `cargo xtask baselines {trained_on} --encoder …`)",
            run_dir.display()
        );
    }
    let widths = config.mnist_encoder_widths();
    let model = model_of(
        config.resnet.as_ref(),
        widths,
        &mut StdRng::seed_from_u64(0),
    );
    let path = simclr_contrastive::checkpoint::checkpoint_path(run_dir);
    let options = LoadOptions {
        skip_unexpected_prefixes: vec!["optimizer.".into()],
        ..LoadOptions::default()
    };
    checkpoint::load(&path, &model, None, &options)
        .with_context(|| format!("cannot load {}", path.display()))?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::run_config::tests::{CIFAR_CONFIG, MNIST_CONFIG};

    #[test]
    fn an_encoder_of_another_dataset_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("simclr-encoder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), MNIST_CONFIG).unwrap();
        let err = encoder_of_run(&dir, DatasetKind::Cifar10)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("trained on mnist"), "{err}");
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let err = encoder_of_run(&dir, DatasetKind::Mnist)
            .err()
            .expect("refused");
        assert!(
            format!("{err:#}").contains("missing field `dataset`"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_encoder_of_a_run_with_other_widths_loads_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = MNIST_CONFIG.replace(
            "\"limit\": null,",
            "\"limit\": null,\n  \"mnist_widths\": [8, 16],",
        );
        std::fs::write(dir.path().join(RunConfig::FILE), config).unwrap();
        let trained = SimClr::mnist_with_widths([8, 16], &mut StdRng::seed_from_u64(5));
        let path = simclr_contrastive::checkpoint::checkpoint_path(dir.path());
        checkpoint::save(&path, &trained, None, &Default::default()).unwrap();
        let loaded = encoder_of_run(dir.path(), DatasetKind::Mnist).unwrap();
        let weights = |m: &SimClr| {
            m.parameters()
                .iter()
                .map(|p| p.to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(weights(&loaded), weights(&trained));
    }

    #[test]
    fn an_unknown_encoder_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("simclr-arch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = CIFAR_CONFIG.replace("\"resnet10\"", "\"resnet50\"");
        std::fs::write(dir.join("config.json"), config).unwrap();
        let err = encoder_of_run(&dir, DatasetKind::Cifar10)
            .err()
            .expect("refused");
        let err = format!("{err:#}");
        assert!(
            err.contains("config.json") && err.contains("resnet50"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
