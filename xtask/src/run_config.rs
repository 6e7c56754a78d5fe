//! `config.json`: the settings that define one run, as its run directory records them.
//!
//! A run writes its [`RunConfig`] when it starts; `--resume` reads it back to take the run's
//! own settings (and to refuse a flag that contradicts one of them), and
//! `baselines --encoder` reads it to rebuild the run's encoder. Every reader goes through
//! [`RunConfig::load`], so the file has one shape, checked in one place.
//!
//! Settings added after the first runs (`preset`, `schedule`, `crop_scale`, `view_size`,
//! `full_size_epochs`, `knn_monitor`, `standardized_features`, `checkpoint_minutes`,
//! `classifier_l2`) default to what the runner did before it recorded them, so older files
//! still load.

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use simclr_data::{DatasetKind, Recipe};
use simclr_nn::MnistEncoder;

use crate::cli::{OptimizerKind, Preset, ScheduleKind};
use crate::settings::ResNetSpec;

/// Everything that defines one run, as `config.json` records it, plus a few informational
/// fields (the encoder's description, the thread count, the commit).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct RunConfig {
    /// The dataset pretrained on (the encoder embeds only its images).
    #[serde(with = "by_name")]
    pub dataset: DatasetKind,
    /// Before presets, the runner's defaults were the `simclr` preset's.
    #[serde(default = "simclr_preset")]
    pub preset: Preset,
    /// Informational: the encoder in words (`resnet` is what rebuilds it).
    pub encoder: String,
    /// The augmentation recipe of the two views.
    #[serde(with = "by_name")]
    pub recipe: Recipe,
    /// Smallest area fraction of the random resized crop (`None`: the recipe's own).
    #[serde(default, serialize_with = "optional_decimal")]
    pub crop_scale: Option<f32>,
    /// Side of the pretraining views (`None`: the images' own).
    #[serde(default)]
    pub view_size: Option<usize>,
    /// Last epochs that see full-size views when `view_size` is set.
    #[serde(default)]
    pub full_size_epochs: usize,
    /// Pretraining epochs, small-view ones included.
    pub epochs: usize,
    /// Pretraining batch size (source images; each gives two views).
    pub batch_size: usize,
    /// NT-Xent temperature τ.
    #[serde(serialize_with = "decimal")]
    pub temperature: f32,
    pub optimizer: OptimizerKind,
    /// The pretraining learning rate (the peak under warm-up + cosine).
    #[serde(serialize_with = "decimal")]
    pub lr: f32,
    /// Before schedules, the rate was constant.
    #[serde(default = "constant_schedule")]
    pub schedule: ScheduleKind,
    /// The linear probe's epochs, batch size and learning rate.
    pub classifier_epochs: usize,
    pub classifier_batch_size: usize,
    #[serde(serialize_with = "decimal")]
    pub classifier_lr: f32,
    /// The probe's L2 penalty on its weights; written only when there is one.
    #[serde(default, serialize_with = "decimal", skip_serializing_if = "is_zero")]
    pub classifier_l2: f32,
    /// Train-set indices of the pretraining images, written `START..END`.
    #[serde(with = "index_range")]
    pub pretrain_range: Range<usize>,
    /// Train-set indices of the labeled images, written `START..END`.
    #[serde(with = "index_range")]
    pub labeled_range: Range<usize>,
    /// The cap on every subset (`--limit`).
    pub limit: Option<usize>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Informational: the worker threads of the process that wrote the file.
    pub threads: usize,
    /// Whether the k-means / GMM baselines run.
    pub baselines: bool,
    /// Whether the kNN classifier is scored on the frozen features.
    pub knn: bool,
    /// Held-out images of the kNN monitor (0: off, as before the monitor existed).
    #[serde(default)]
    pub knn_monitor: usize,
    /// Informational: the minutes between checkpoints inside epochs of the process that
    /// wrote the file (absent: at the ends of epochs only, as before the option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_minutes: Option<f64>,
    /// Whether the linear head sees standardised features (before the option: raw ones).
    #[serde(default)]
    pub standardized_features: bool,
    /// The MNIST CNN's two convolution widths (`None` for CIFAR-10, and in an MNIST run
    /// recorded before `--widths`, whose encoder had the report's: see
    /// [`RunConfig::mnist_encoder_widths`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnist_widths: Option<[usize; 2]>,
    /// CIFAR-10's encoder (`None`: the MNIST CNN).
    pub resnet: Option<ResNetSpec>,
    /// Informational: the commit of the code that wrote the file.
    pub git_commit: String,
}

/// A setting on which a resumed run contradicts the stored one, with both values as
/// `config.json` writes them.
#[derive(Debug, PartialEq)]
pub(crate) struct Contradiction {
    pub setting: &'static str,
    pub stored: serde_json::Value,
    pub given: serde_json::Value,
}

impl RunConfig {
    /// The file a run directory keeps its settings in.
    pub const FILE: &'static str = "config.json";

    /// The settings recorded in the run directory `dir` (`None` if it has no readable
    /// `config.json`); an error naming the file when it is not valid JSON or holds a
    /// setting this runner cannot read (an unknown encoder, a malformed range, …).
    pub fn load(dir: &Path) -> Result<Option<RunConfig>> {
        let path = dir.join(Self::FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let config = serde_json::from_str(&text)
            .with_context(|| format!("cannot read the run's settings from {}", path.display()))?;
        Ok(Some(config))
    }

    /// The first setting that defines what pretraining computes on which `given` (this
    /// command's settings) differs from `self` (the stored run's), if any.
    pub fn contradiction(&self, given: &RunConfig) -> Option<Contradiction> {
        let (setting, _) = self
            .run_defining_agreement(given)
            .into_iter()
            .find(|&(_, same)| !same)?;
        let value_of = |config: &RunConfig| {
            let all = serde_json::to_value(config).expect("a RunConfig always serializes");
            all[setting].clone()
        };
        Some(Contradiction {
            setting,
            stored: value_of(self),
            given: value_of(given),
        })
    }

    /// The channels of the MNIST encoder's two convolutions in this run (the report's if
    /// the file predates `--widths`; meaningless for a CIFAR-10 run).
    pub fn mnist_encoder_widths(&self) -> [usize; 2] {
        self.mnist_widths.unwrap_or(MnistEncoder::REPORT_WIDTHS)
    }

    /// Whether `self` and `given` agree on each setting a resumed run must keep, by its name
    /// in `config.json`. Epochs may grow under a constant rate (under `given`'s schedule);
    /// the probe, the baselines, the kNN options, the thread count and the checkpoint
    /// interval are free to change.
    fn run_defining_agreement(&self, given: &RunConfig) -> Vec<(&'static str, bool)> {
        let (a, b) = (self, given);
        let mut agreement = vec![
            ("dataset", a.dataset == b.dataset),
            ("preset", a.preset == b.preset),
            (
                "mnist_widths",
                a.mnist_encoder_widths() == b.mnist_encoder_widths(),
            ),
            ("encoder", a.encoder == b.encoder),
            ("recipe", a.recipe == b.recipe),
            ("crop_scale", a.crop_scale == b.crop_scale),
            ("view_size", a.view_size == b.view_size),
            ("full_size_epochs", a.full_size_epochs == b.full_size_epochs),
            ("batch_size", a.batch_size == b.batch_size),
            ("temperature", a.temperature == b.temperature),
            ("optimizer", a.optimizer == b.optimizer),
            ("lr", a.lr == b.lr),
            ("schedule", a.schedule == b.schedule),
            ("pretrain_range", a.pretrain_range == b.pretrain_range),
            ("limit", a.limit == b.limit),
            ("seed", a.seed == b.seed),
            ("resnet", a.resnet == b.resnet),
        ];
        if b.schedule != ScheduleKind::Constant {
            // The cosine's length is part of every step's learning rate.
            agreement.push(("epochs", a.epochs == b.epochs));
        }
        agreement
    }
}

/// The preset of a run recorded before presets: the runner's defaults were `simclr`'s.
fn simclr_preset() -> Preset {
    Preset::Simclr
}

/// The schedule of a run recorded before schedules: a constant rate.
fn constant_schedule() -> ScheduleKind {
    ScheduleKind::Constant
}

/// `x` as the decimal it was typed as (`0.001`, not the `0.0010000000474974513` of a plain
/// widening), so `config.json` reads as typed and reads back to the same `f32`.
fn as_typed(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Whether an optional penalty is off (then not written, as before it existed).
fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

/// Writes an `f32` setting as the decimal it was typed as.
fn decimal<S: Serializer>(x: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(as_typed(*x))
}

/// Writes an optional `f32` setting as the decimal it was typed as, or `null`.
fn optional_decimal<S: Serializer>(x: &Option<f32>, serializer: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => serializer.serialize_some(&as_typed(*x)),
        None => serializer.serialize_none(),
    }
}

/// A data-crate enum that `config.json` records by the name its `FromStr` parses.
trait Named: Sized + std::str::FromStr<Err: std::fmt::Display> {
    fn name(&self) -> &'static str;
}

impl Named for DatasetKind {
    fn name(&self) -> &'static str {
        DatasetKind::name(*self)
    }
}

impl Named for Recipe {
    fn name(&self) -> &'static str {
        Recipe::name(*self)
    }
}

/// Serde for a [`Named`] value: its name as a string.
mod by_name {
    use super::*;

    pub fn serialize<S: Serializer, T: Named>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Named>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for a train-set index range: the text `START..END` that `--pretrain-range` takes.
mod index_range {
    use super::*;

    pub fn serialize<S: Serializer>(
        range: &Range<usize>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{range:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Range<usize>, D::Error> {
        let text = String::deserialize(deserializer)?;
        simclr_data::parse_range(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;
    use crate::cli::Arch;

    /// `runs/s7/lr2/config.json`, as the runner wrote it before `RunConfig` (MNIST).
    pub(crate) const MNIST_CONFIG: &str = r#"{
  "baselines": false,
  "batch_size": 64,
  "classifier_batch_size": 128,
  "classifier_epochs": 100,
  "classifier_lr": 0.001,
  "crop_scale": 0.2,
  "dataset": "mnist",
  "encoder": "MNIST CNN (Conv 1→32, Conv 32→64, Linear 3136→128)",
  "epochs": 12,
  "full_size_epochs": 0,
  "git_commit": "b157bcbe3373",
  "knn": false,
  "knn_monitor": 1000,
  "labeled_range": "24000..30000",
  "limit": null,
  "lr": 0.002,
  "optimizer": "adam",
  "preset": "best",
  "pretrain_range": "0..24000",
  "recipe": "simclr",
  "resnet": null,
  "schedule": "constant",
  "seed": 0,
  "standardized_features": true,
  "temperature": 0.5,
  "threads": 2,
  "view_size": null
}"#;

    /// `runs/cpu-hour-r10-s0/config.json`, as the runner wrote it before `RunConfig`
    /// (CIFAR-10).
    pub(crate) const CIFAR_CONFIG: &str = r#"{
  "baselines": false,
  "batch_size": 64,
  "classifier_batch_size": 128,
  "classifier_epochs": 100,
  "classifier_lr": 0.001,
  "crop_scale": null,
  "dataset": "cifar10",
  "encoder": "resnet10 (cifar stem, base width 24)",
  "epochs": 30,
  "full_size_epochs": 0,
  "git_commit": "fa044a0c49cb",
  "knn": true,
  "knn_monitor": 1000,
  "labeled_range": "0..20000",
  "limit": null,
  "lr": 0.001,
  "optimizer": "adam",
  "preset": "cpu-hour",
  "pretrain_range": "0..40000",
  "recipe": "simclr",
  "resnet": {
    "arch": "resnet10",
    "pretrained": null,
    "width": 24
  },
  "schedule": "warmup-cosine",
  "seed": 0,
  "standardized_features": true,
  "temperature": 0.2,
  "threads": 2,
  "view_size": 24
}"#;

    /// The settings that a resumed run may change (with `epochs` under a constant rate).
    const FREE: [&str; 13] = [
        "epochs",
        "classifier_epochs",
        "classifier_batch_size",
        "classifier_lr",
        "classifier_l2",
        "labeled_range",
        "threads",
        "baselines",
        "knn",
        "knn_monitor",
        "checkpoint_minutes",
        "standardized_features",
        "git_commit",
    ];

    /// A run directory holding `text` as its `config.json`.
    fn run_dir_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RunConfig::FILE), text).unwrap();
        dir
    }

    fn parsed(text: &str) -> RunConfig {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn files_of_the_earlier_runner_load_with_their_values() {
        let mnist = RunConfig::load(run_dir_with(MNIST_CONFIG).path())
            .unwrap()
            .unwrap();
        assert_eq!(mnist.dataset, DatasetKind::Mnist);
        assert_eq!((mnist.preset, mnist.recipe), (Preset::Best, Recipe::Simclr));
        assert_eq!(
            (mnist.crop_scale, mnist.lr, mnist.temperature),
            (Some(0.2), 0.002, 0.5)
        );
        assert_eq!((mnist.epochs, mnist.batch_size, mnist.seed), (12, 64, 0));
        assert_eq!(
            (mnist.pretrain_range, mnist.labeled_range),
            (0..24_000, 24_000..30_000)
        );
        assert_eq!(
            (mnist.limit, mnist.view_size, mnist.resnet),
            (None, None, None)
        );
        let cifar = parsed(CIFAR_CONFIG);
        assert_eq!(cifar.dataset, DatasetKind::Cifar10);
        assert_eq!(cifar.schedule, ScheduleKind::WarmupCosine);
        assert_eq!(
            (cifar.view_size, cifar.optimizer),
            (Some(24), OptimizerKind::Adam)
        );
        let resnet = ResNetSpec {
            arch: Arch::Resnet10,
            width: 24,
            pretrained: None,
        };
        assert_eq!(cifar.resnet, Some(resnet));
    }

    #[test]
    fn a_loaded_file_is_written_back_as_it_was() {
        for text in [MNIST_CONFIG, CIFAR_CONFIG] {
            let written = serde_json::to_value(parsed(text)).unwrap();
            let original: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(written, original);
        }
    }

    #[test]
    fn floats_are_written_as_typed() {
        let text = serde_json::to_string(&parsed(MNIST_CONFIG)).unwrap();
        for typed in [
            r#""lr":0.002"#,
            r#""crop_scale":0.2"#,
            r#""classifier_lr":0.001"#,
        ] {
            assert!(text.contains(typed), "{typed} in {text}");
        }
    }

    #[test]
    fn settings_added_later_default_to_what_the_runner_did_before() {
        let mut old: serde_json::Value = serde_json::from_str(MNIST_CONFIG).unwrap();
        let later = [
            "preset",
            "schedule",
            "crop_scale",
            "view_size",
            "full_size_epochs",
            "knn_monitor",
            "standardized_features",
        ];
        for key in later {
            old.as_object_mut().unwrap().remove(key);
        }
        let config: RunConfig = serde_json::from_value(old).unwrap();
        assert_eq!(
            (config.preset, config.schedule),
            (Preset::Simclr, ScheduleKind::Constant)
        );
        assert_eq!((config.crop_scale, config.view_size), (None, None));
        assert_eq!((config.full_size_epochs, config.knn_monitor), (0, 0));
        assert!(!config.standardized_features);
        assert_eq!(config.classifier_l2, 0.0);
    }

    #[test]
    fn no_file_is_none_and_a_bad_one_is_an_error_naming_it_and_the_value() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(RunConfig::load(empty.path()).unwrap(), None);
        let unreadable = |text: &str| {
            let dir = run_dir_with(text);
            let err = RunConfig::load(dir.path()).unwrap_err();
            assert!(err.to_string().contains(RunConfig::FILE), "{err}");
            format!("{err:#}")
        };
        assert!(unreadable("{ not json").contains("key must be a string"));
        let with = |key: &str, value: serde_json::Value| {
            let mut config: serde_json::Value = serde_json::from_str(CIFAR_CONFIG).unwrap();
            config[key] = value;
            unreadable(&config.to_string())
        };
        let arch = serde_json::json!({ "arch": "resnet50", "width": 64, "pretrained": null });
        assert!(with("resnet", arch).contains("resnet50"));
        assert!(with("pretrain_range", "10..5".into()).contains("10..5"));
        assert!(with("dataset", "imagenet".into()).contains("imagenet"));
        assert!(with("optimizer", "rmsprop".into()).contains("rmsprop"));
    }

    #[test]
    fn every_setting_is_either_run_defining_or_free_to_change() {
        // Every key written, the optional ones included.
        let config = RunConfig {
            checkpoint_minutes: Some(10.0),
            mnist_widths: Some([32, 64]),
            classifier_l2: 1e-4,
            ..parsed(CIFAR_CONFIG)
        };
        let agreement = config.run_defining_agreement(&config);
        assert!(agreement.iter().all(|&(_, same)| same));
        let names: BTreeSet<&str> = agreement
            .iter()
            .map(|&(name, _)| name)
            .chain(FREE)
            .collect();
        let written = serde_json::to_value(&config).unwrap();
        let keys: BTreeSet<&str> = written
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, keys);
    }

    #[test]
    fn a_contradiction_names_the_setting_and_both_values() {
        let stored = parsed(CIFAR_CONFIG);
        let mut given = stored.clone();
        (given.classifier_epochs, given.threads, given.knn) = (7, 1, false);
        given.checkpoint_minutes = Some(0.5);
        given.labeled_range = 0..10_000;
        assert_eq!(stored.contradiction(&given), None);
        given.lr = 0.01;
        let c = stored.contradiction(&given).unwrap();
        assert_eq!(
            (c.setting, c.stored.to_string(), c.given.to_string()),
            ("lr", "0.001".into(), "0.01".into())
        );
        let mut given = stored.clone();
        given.resnet.as_mut().unwrap().pretrained = Some(PathBuf::from("w.safetensors"));
        assert_eq!(stored.contradiction(&given).unwrap().setting, "resnet");
    }

    #[test]
    fn epochs_may_change_only_under_a_constant_rate() {
        let stored = parsed(CIFAR_CONFIG);
        let longer = RunConfig {
            epochs: 40,
            ..stored.clone()
        };
        assert_eq!(stored.contradiction(&longer).unwrap().setting, "epochs");
        let constant = RunConfig {
            schedule: ScheduleKind::Constant,
            ..stored.clone()
        };
        let longer_constant = RunConfig {
            epochs: 40,
            ..constant.clone()
        };
        assert_eq!(constant.contradiction(&longer_constant), None);
    }
}
