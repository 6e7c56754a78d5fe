//! The report's experiment, end to end: data → SimCLR pretraining → frozen encoder + linear
//! head → clustering baselines → `results.json`, `report.md` and plots in the run directory.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::json;
use simclr_baselines::{run_baselines, BaselineConfig, Features, Method};
use simclr_contrastive::{
    extract_features, knn_accuracy, linear_eval_on_features, pretrain, read_run_state, resume,
    KnnConfig, LinearEvalConfig, PretrainConfig, SimClr, TrainEvent,
};
use simclr_data::{
    load_cifar10, load_mnist, resolve_data_dir, Augmenter, DatasetKind, Downloader, ImageSet,
    Loader, LoaderConfig, Recipe, Split,
};
use simclr_nn::checkpoint::{self, LoadOptions};
use simclr_nn::{Adam, AdamConfig, Lars, LarsConfig, Module, Optimizer, Schedule, Sgd, SgdConfig};

use crate::cli::{Arch, BaselinesArgs, CifarArgs, ExperimentArgs, MnistArgs, OptimizerKind};
use crate::plots::{self, Series};
use crate::progress::Phase;
use crate::report::{self, Reference, Results};
use crate::run_dir::{git_commit, RunDir};

/// Images per MNIST "chunk" in the report's splits.
const MNIST_CHUNK: usize = 6_000;

/// Everything that defines one run.
#[derive(Debug)]
pub struct Experiment {
    kind: DatasetKind,
    args: ExperimentArgs,
    recipe: Recipe,
    split: Split,
    /// CIFAR-10 only: depth, base width, initial weights.
    resnet: Option<(Arch, usize, Option<std::path::PathBuf>)>,
}

impl Experiment {
    /// The MNIST experiment from its command-line arguments.
    pub fn mnist(args: MnistArgs) -> Result<Experiment> {
        Experiment::new(DatasetKind::Mnist, args.common, None)
    }

    /// The CIFAR-10 experiment from its command-line arguments.
    pub fn cifar10(args: CifarArgs) -> Result<Experiment> {
        if args.width == 0 {
            bail!("--width must be at least 1");
        }
        Experiment::new(
            DatasetKind::Cifar10,
            args.common,
            Some((args.arch, args.width, args.pretrained)),
        )
    }

    fn new(
        kind: DatasetKind,
        args: ExperimentArgs,
        resnet: Option<(Arch, usize, Option<std::path::PathBuf>)>,
    ) -> Result<Experiment> {
        let recipe: Recipe = args
            .recipe
            .parse()
            .map_err(|e| anyhow::anyhow!("--recipe: {e}"))?;
        let report = Split::report(kind);
        let mut split = report.clone();
        if kind == DatasetKind::Mnist && args.labeled_chunks != 1 {
            if args.labeled_chunks == 0 {
                bail!("--labeled-chunks must be at least 1");
            }
            split.labeled =
                report.labeled.start..report.labeled.start + args.labeled_chunks * MNIST_CHUNK;
        }
        if let Some(r) = &args.pretrain_range {
            split.pretrain = simclr_data::parse_range(r)
                .map_err(|e| anyhow::anyhow!("--pretrain-range: {e}"))?;
        }
        if let Some(r) = &args.labeled_range {
            split.labeled =
                simclr_data::parse_range(r).map_err(|e| anyhow::anyhow!("--labeled-range: {e}"))?;
        }
        if args.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if args.temperature <= 0.0 || args.temperature.is_nan() {
            bail!("--temperature must be positive, got {}", args.temperature);
        }
        Ok(Experiment {
            kind,
            args,
            recipe,
            split,
            resnet,
        })
    }

    fn name(&self) -> &'static str {
        match self.kind {
            DatasetKind::Mnist => "mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    fn batch_size(&self) -> usize {
        self.args.batch_size.unwrap_or(match self.kind {
            DatasetKind::Mnist => 256,
            DatasetKind::Cifar10 => 128,
        })
    }

    fn encoder_name(&self) -> String {
        match &self.resnet {
            None => "MNIST CNN (Conv 1→32, Conv 32→64, Linear 3136→128)".into(),
            Some((arch, width, _)) => {
                format!("{arch:?} (CIFAR stem, base width {width})").to_lowercase()
            }
        }
    }

    fn build_model(&self) -> Result<SimClr> {
        let mut rng = StdRng::seed_from_u64(self.args.seed);
        let model = match &self.resnet {
            None => SimClr::mnist(&mut rng),
            Some((Arch::Resnet18, w, _)) => SimClr::resnet18(*w, &mut rng),
            Some((Arch::Resnet34, w, _)) => SimClr::resnet34(*w, &mut rng),
        };
        if let Some((_, _, Some(path))) = &self.resnet {
            let loaded = checkpoint::load(
                path,
                &*model.encoder,
                None,
                &LoadOptions::torchvision_resnet(),
            )
            .with_context(|| format!("cannot load the pretrained weights {}", path.display()))?;
            println!(
                "loaded {} tensors from {}",
                loaded.loaded.len(),
                path.display()
            );
            for (key, why) in &loaded.skipped {
                println!("  skipped {key}: {why}");
            }
        }
        Ok(model)
    }

    fn optimizer(&self, params: Vec<simclr_tensor::Tensor>) -> Box<dyn Optimizer> {
        let lr = self.args.lr;
        match self.args.optimizer {
            OptimizerKind::Adam => Box::new(Adam::new(params, AdamConfig::adam(lr))),
            OptimizerKind::Adamw => Box::new(Adam::new(params, AdamConfig::adamw(lr, 1e-4))),
            OptimizerKind::Sgd => Box::new(Sgd::new(
                params,
                SgdConfig::new(lr)
                    .momentum(0.9)
                    .nesterov(true)
                    .weight_decay(5e-4),
            )),
            OptimizerKind::Lars => Box::new(Lars::new(params, LarsConfig::simclr(lr))),
        }
    }

    /// Adam keeps the report's constant rate; SGD and LARS get SimCLR's warm-up + cosine.
    fn schedule(&self, steps_per_epoch: usize) -> Schedule {
        match self.args.optimizer {
            OptimizerKind::Adam | OptimizerKind::Adamw => Schedule::Constant(self.args.lr),
            OptimizerKind::Sgd | OptimizerKind::Lars => {
                let total = steps_per_epoch * self.args.epochs;
                Schedule::warmup_cosine(self.args.lr, (total / 10).max(1), total)
            }
        }
    }

    fn settings(&self) -> serde_json::Value {
        let a = &self.args;
        json!({
            "dataset": self.name(),
            "encoder": self.encoder_name(),
            "recipe": self.recipe.name(),
            "epochs": a.epochs,
            "batch_size": self.batch_size(),
            "temperature": a.temperature,
            "optimizer": format!("{:?}", a.optimizer).to_lowercase(),
            "lr": a.lr,
            "classifier_epochs": a.classifier_epochs,
            "classifier_batch_size": a.classifier_batch_size,
            "classifier_lr": a.classifier_lr,
            "pretrain_range": format!("{:?}", self.split.pretrain),
            "labeled_range": format!("{:?}", self.split.labeled),
            "limit": a.limit,
            "seed": a.seed,
            "threads": rayon::current_num_threads(),
            "baselines": !a.no_baselines,
            "knn": a.knn,
            "standardized_features": !a.raw_features,
            "resnet": self.resnet.as_ref().map(|(arch, w, p)| json!({
                "arch": format!("{arch:?}").to_lowercase(), "width": w,
                "pretrained": p.as_ref().map(|p| p.display().to_string()),
            })),
            "git_commit": git_commit(),
        })
    }
}

/// Loads a dataset from `dir`, downloading missing files from the public mirrors.
pub fn load_dataset(kind: DatasetKind, dir: &Path) -> Result<(ImageSet, ImageSet)> {
    let loaded = match kind {
        DatasetKind::Mnist => load_mnist(dir, Some(&Downloader::mnist())),
        DatasetKind::Cifar10 => load_cifar10(dir, Some(&Downloader::cifar10())),
    };
    loaded.with_context(|| format!("cannot load the dataset from {}", dir.display()))
}

/// The first `limit` images of `set` (all of them without a limit).
fn capped(set: ImageSet, limit: Option<usize>) -> Result<ImageSet> {
    match limit {
        Some(n) if n < set.len() => Ok(set.subset(0..n)?),
        _ => Ok(set),
    }
}

/// Runs the whole experiment.
pub fn run(exp: &Experiment) -> Result<()> {
    let started = Instant::now();
    let a = &exp.args;
    let data_dir = resolve_data_dir(a.data_dir.as_deref());
    let (train, test) = load_dataset(exp.kind, &data_dir)?;
    let (pretrain_set, labeled) = exp
        .split
        .apply(&train)
        .context("the split does not fit the training set")?;
    let (pretrain_set, labeled, test) = (
        capped(pretrain_set, a.limit)?,
        capped(labeled, a.limit)?,
        capped(test, a.limit)?,
    );
    let class_names = train.class_names.clone();
    let sizes = [pretrain_set.len(), labeled.len(), test.len()];

    let mut run = RunDir::open(a.resume.as_deref().or(a.out.as_deref()), exp.name())?;
    if a.resume.is_some() && read_run_state(&run.path)?.is_none() {
        bail!(
            "--resume {}: there is no checkpoint to resume from",
            run.path.display()
        );
    }
    run.write_json("config.json", &exp.settings())?;
    println!(
        "{}: {} pretraining, {} labeled, {} test images; run directory {}",
        exp.name(),
        sizes[0],
        sizes[1],
        sizes[2],
        run.path.display()
    );

    // 1. SimCLR pretraining.
    let model = exp.build_model()?;
    let mut optimizer = exp.optimizer(model.parameters());
    let loader = Loader::new(
        pretrain_set.clone(),
        Augmenter::new(exp.recipe, exp.kind, a.seed),
        LoaderConfig::two_views(exp.batch_size().min(pretrain_set.len())),
    )?;
    let cfg = PretrainConfig {
        epochs: a.epochs,
        temperature: a.temperature,
        schedule: exp.schedule(loader.len()),
        run_dir: Some(run.path.clone()),
        max_steps_per_epoch: None,
    };
    let mut phase = Phase::start("pretrain", (a.epochs * loader.len()) as u64);
    let mut step_losses: Vec<(f64, f64)> = Vec::new();
    let mut epoch_losses: Vec<(f64, f64)> = Vec::new();
    let mut log_error = None;
    let on_event = |event: &TrainEvent| {
        let record = serde_json::to_value(event).unwrap_or_default();
        if let Err(e) = run.log(json!({ "phase": "pretrain", "data": record })) {
            log_error.get_or_insert(e);
        }
        match event {
            TrainEvent::Started {
                start_epoch,
                steps_per_epoch,
                resumed,
                ..
            } => {
                if *resumed {
                    phase.println(&format!("resuming at epoch {}", start_epoch + 1));
                }
                phase.update((start_epoch * steps_per_epoch) as u64, "");
            }
            TrainEvent::Step(s) => {
                step_losses.push((s.step as f64 / s.batches as f64, s.loss as f64));
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
                // An epoch's mean belongs at its middle on the per-step axis.
                epoch_losses.push((e.epoch as f64 + 0.5, e.mean_loss as f64));
                phase.println(&format!(
                    "epoch {:>3}: loss {:.4}, {:.0} images/s, {:.1} s",
                    e.epoch + 1,
                    e.mean_loss,
                    e.images_per_s,
                    e.seconds
                ));
            }
        }
    };
    let summary = if a.resume.is_some() {
        resume(&model, optimizer.as_mut(), &loader, &cfg, on_event)
    } else {
        pretrain(&model, optimizer.as_mut(), &loader, &cfg, on_event)
    }
    .context("pretraining stopped")?;
    if let Some(e) = log_error {
        return Err(e.context("cannot write metrics.jsonl"));
    }
    let pretrain_seconds = summary.seconds;
    let images_per_s = {
        let (imgs, secs) = summary
            .epochs
            .iter()
            .fold((0usize, 0f64), |(i, s), e| (i + e.images, s + e.seconds));
        if secs > 0.0 {
            imgs as f64 / secs
        } else {
            0.0
        }
    };
    phase.finish(&format!(
        "{} epochs, final loss {:.4}",
        summary.epochs.len(),
        summary.state.last_epoch_loss
    ));

    // 2. Linear head on the frozen encoder.
    let classifier_started = Instant::now();
    let norm = exp.kind.normalize();
    model.encoder.set_training(false);
    let labeled_x = extract_features(&*model.encoder, &labeled, &norm, 512);
    let test_x = extract_features(&*model.encoder, &test, &norm, 512);
    let eval_cfg = LinearEvalConfig {
        epochs: a.classifier_epochs,
        batch_size: a.classifier_batch_size,
        lr: a.classifier_lr,
        seed: a.seed,
        feature_batch_size: 512,
        standardize: !a.raw_features,
    };
    let classes = class_names.len().max(10);
    let mut phase = Phase::start("classifier", a.classifier_epochs as u64);
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
    );
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

    // 3. Clustering baselines on raw pixels of the same split.
    let baselines_started = Instant::now();
    let baselines = if a.no_baselines {
        Vec::new()
    } else {
        println!(
            "baselines: k-means and GMM on raw pixels ({} fit, {} test)",
            pretrain_set.len(),
            test.len()
        );
        let reports = cluster_pixels(
            &pretrain_set,
            &test,
            &BaselineConfig {
                seed: a.seed,
                ..BaselineConfig::default()
            },
        )?;
        for r in &reports {
            println!("  {}", r.summary());
        }
        reports
    };
    let baselines_seconds = if a.no_baselines {
        0.0
    } else {
        baselines_started.elapsed().as_secs_f64()
    };
    let accuracy_of = |m: Method| baselines.iter().find(|r| r.method == m).map(|r| r.accuracy);

    // 4. What the run leaves behind.
    let last = eval.epochs.last();
    let results = Results {
        dataset: exp.name().into(),
        recipe: exp.recipe.name().into(),
        seed: a.seed,
        encoder: exp.encoder_name(),
        test_accuracy: eval.test_accuracy as f64,
        train_accuracy: last.map_or(0.0, |e| e.train_accuracy as f64),
        knn_accuracy,
        per_class_accuracy: eval
            .per_class_accuracy
            .iter()
            .map(|a| a.unwrap_or(0.0) as f64)
            .collect(),
        confusion: eval.confusion.clone(),
        final_pretrain_loss: summary.state.last_epoch_loss as f64,
        pretrain_images_per_s: images_per_s,
        pretrain_seconds,
        classifier_seconds,
        baselines_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        kmeans_accuracy: accuracy_of(Method::KMeans),
        gmm_accuracy: accuracy_of(Method::Gmm),
        baselines,
        sizes,
    };
    run.write_json("results.json", &results)?;

    plots::line_chart(
        &run.file("pretrain_loss.png"),
        "SimCLR pretraining: NT-Xent loss",
        "epoch",
        "loss",
        &[
            Series {
                label: "per step",
                points: step_losses,
            },
            Series {
                label: "epoch mean",
                points: epoch_losses,
            },
        ],
    )?;
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
        &class_names,
    )?;
    let reference = match exp.kind {
        DatasetKind::Mnist => Reference::mnist(),
        DatasetKind::Cifar10 => Reference::cifar10(),
    };
    let settings = serde_json::to_string_pretty(&exp.settings())?;
    let md = report::markdown(&results, &reference, &settings, &class_names);
    run.write_text("report.md", &md)?;

    println!();
    print!("{}", report::summary_table(&results, &reference));
    println!("report: {}", run.file("report.md").display());
    Ok(())
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
    let kind = crate::dataset_kind(&args.dataset)?;
    let (train, test) = load_dataset(kind, &resolve_data_dir(args.data_dir.as_deref()))?;
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
            let model = encoder_of_run(run_dir)?;
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

/// Rebuilds the model of a finished run from its `config.json` and loads its checkpoint.
fn encoder_of_run(run_dir: &Path) -> Result<SimClr> {
    let config_path = run_dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
    let mut rng = StdRng::seed_from_u64(0);
    let model = match config["resnet"]["arch"].as_str() {
        None => SimClr::mnist(&mut rng),
        Some(arch) => {
            let width = config["resnet"]["width"].as_u64().unwrap_or(64) as usize;
            if arch == "resnet34" {
                SimClr::resnet34(width, &mut rng)
            } else {
                SimClr::resnet18(width, &mut rng)
            }
        }
    };
    let path = simclr_contrastive::checkpoint::checkpoint_path(run_dir);
    let options = LoadOptions {
        skip_unexpected_prefixes: vec!["optimizer.".into()],
        ..LoadOptions::default()
    };
    checkpoint::load(&path, &model, None, &options)
        .with_context(|| format!("cannot load {}", path.display()))?;
    Ok(model)
}
