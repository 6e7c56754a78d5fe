//! What one run is: the preset's defaults, the flags given on top, a resumed run's own
//! settings (its [`RunConfig`]), the checks that refuse a contradiction before anything is
//! written, and the parts built from the result (model, optimizer, schedule, augmenter).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};
use simclr_contrastive::SimClr;
use simclr_data::{Augmenter, DatasetKind, Recipe, Split};
use simclr_nn::checkpoint::{self, LoadOptions};
use simclr_nn::{
    Adam, AdamConfig, Lars, LarsConfig, MnistEncoder, Optimizer, Schedule, Sgd, SgdConfig,
};

use crate::cli::{Arch, CifarArgs, ExperimentArgs, MnistArgs, OptimizerKind, Preset, ScheduleKind};
use crate::run_config::{Contradiction, RunConfig};
use crate::run_dir::git_commit;

/// Images per MNIST "chunk" in the report's splits.
const MNIST_CHUNK: usize = 6_000;

/// The settings a preset gives to every option the user did not set.
#[derive(Clone, Debug)]
struct Defaults {
    epochs: usize,
    classifier_epochs: usize,
    /// The probe's L2 penalty on its weights.
    classifier_l2: f32,
    batch_size: usize,
    temperature: f32,
    optimizer: OptimizerKind,
    lr: f32,
    schedule: ScheduleKind,
    recipe: Recipe,
    crop_scale: Option<f32>,
    /// Side of the pretraining views (`None`: the images' own).
    view_size: Option<usize>,
    /// Last epochs that see full-size views when `view_size` is set.
    full_size_epochs: usize,
    /// CIFAR-10 only: the ResNet's depth and base width.
    arch: Arch,
    width: usize,
    /// MNIST only: the channels of the encoder's two convolutions.
    mnist_widths: [usize; 2],
    /// Whether the k-means / GMM baselines run (`--no-baselines` turns them off).
    baselines: bool,
}

impl Defaults {
    /// The defaults of `preset` for `kind`; an error for a preset of the other dataset.
    fn of(preset: Preset, kind: DatasetKind) -> Result<Defaults> {
        // The report's protocol; the other presets are written as changes to it.
        let report = Defaults {
            epochs: 10,
            classifier_epochs: 30,
            classifier_l2: 0.0,
            batch_size: match kind {
                DatasetKind::Mnist => 256,
                DatasetKind::Cifar10 => 128,
            },
            temperature: 0.5,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            schedule: ScheduleKind::Constant,
            recipe: Recipe::Report,
            crop_scale: None,
            view_size: None,
            full_size_epochs: 0,
            arch: Arch::Resnet18,
            width: 64,
            mnist_widths: MnistEncoder::REPORT_WIDTHS,
            baselines: true,
        };
        Ok(match (preset, kind) {
            (Preset::Report, _) => report,
            (Preset::Simclr, _) => Defaults {
                recipe: Recipe::Simclr,
                ..report
            },
            (Preset::Best, DatasetKind::Mnist) => Defaults {
                recipe: Recipe::Simclr,
                crop_scale: Some(0.2),
                batch_size: 64,
                epochs: 12,
                classifier_epochs: 300,
                classifier_l2: 1e-4,
                ..report
            },
            // docs/recipes.md tells how each choice was made.
            (Preset::CpuHour, DatasetKind::Cifar10) => Defaults {
                recipe: Recipe::Simclr,
                arch: Arch::Resnet10,
                width: 24,
                batch_size: 64,
                temperature: 0.2,
                schedule: ScheduleKind::WarmupCosine,
                epochs: 30,
                view_size: Some(24),
                full_size_epochs: 0,
                classifier_epochs: 100,
                baselines: false,
                ..report
            },
            (Preset::Best, DatasetKind::Cifar10) => {
                bail!("--preset best is MNIST's; CIFAR-10's budget preset is cpu-hour")
            }
            (Preset::CpuHour, DatasetKind::Mnist) => {
                bail!("--preset cpu-hour is CIFAR-10's; MNIST's is best")
            }
        })
    }
}

impl Defaults {
    /// The settings of the stored run `config`, in place of these defaults. Only a run
    /// without a ResNet keeps the preset's depth and width (a CIFAR-10 command refuses to
    /// resume such a run, by its dataset); an MNIST run recorded before `--widths` had the
    /// report's.
    fn overridden_by(self, config: &RunConfig) -> Defaults {
        let (arch, width) = config
            .resnet
            .as_ref()
            .map_or((self.arch, self.width), |r| (r.arch, r.width));
        Defaults {
            epochs: config.epochs,
            classifier_epochs: config.classifier_epochs,
            classifier_l2: config.classifier_l2,
            batch_size: config.batch_size,
            temperature: config.temperature,
            optimizer: config.optimizer,
            lr: config.lr,
            schedule: config.schedule,
            recipe: config.recipe,
            crop_scale: config.crop_scale,
            view_size: config.view_size,
            full_size_epochs: config.full_size_epochs,
            arch,
            width,
            mnist_widths: config.mnist_encoder_widths(),
            baselines: config.baselines,
        }
    }
}

/// Everything that defines one run: the preset's defaults with the flags given on top.
#[derive(Debug)]
pub struct Experiment {
    pub(crate) kind: DatasetKind,
    pub(crate) args: ExperimentArgs,
    pub(crate) preset: Preset,
    /// The settings of the run being resumed, as read once from its `config.json`.
    pub(crate) resumed_from: Option<RunConfig>,
    pub(crate) seed: u64,
    pub(crate) epochs: usize,
    pub(crate) classifier_epochs: usize,
    pub(crate) classifier_l2: f32,
    pub(crate) batch_size: usize,
    pub(crate) temperature: f32,
    pub(crate) optimizer: OptimizerKind,
    pub(crate) lr: f32,
    pub(crate) schedule: ScheduleKind,
    pub(crate) recipe: Recipe,
    pub(crate) crop_scale: Option<f32>,
    pub(crate) view_size: Option<usize>,
    pub(crate) full_size_epochs: usize,
    pub(crate) baselines: bool,
    pub(crate) split: Split,
    /// MNIST only: the channels of the encoder's two convolutions.
    pub(crate) mnist_widths: [usize; 2],
    /// CIFAR-10 only: the encoder.
    pub(crate) resnet: Option<ResNetSpec>,
}

/// The encoder flags of a command: MNIST's convolution widths or CIFAR-10's ResNet, each
/// `None` where the preset (or the resumed run) decides.
enum EncoderFlags {
    Mnist {
        widths: Option<[usize; 2]>,
    },
    ResNet {
        arch: Option<Arch>,
        width: Option<usize>,
        pretrained: Option<PathBuf>,
    },
}

/// A CIFAR-10 run's encoder: depth, base width and the weights it starts from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct ResNetSpec {
    pub arch: Arch,
    pub width: usize,
    /// torchvision weights to start from (`--pretrained`).
    pub pretrained: Option<PathBuf>,
}

impl ResNetSpec {
    /// The model, its weights drawn from `rng` (`pretrained` is loaded by the caller).
    pub fn model(&self, rng: &mut StdRng) -> SimClr {
        let encoder = self.arch.resnet(self.width, rng);
        SimClr::resnet(encoder, rng)
    }
}

/// The model of a run's encoder settings — `resnet`'s ResNet, else the MNIST CNN with
/// convolutions `mnist_widths` wide — its weights drawn from `rng`.
pub(crate) fn model_of(
    resnet: Option<&ResNetSpec>,
    mnist_widths: [usize; 2],
    rng: &mut StdRng,
) -> SimClr {
    match resnet {
        Some(r) => r.model(rng),
        None => SimClr::mnist_with_widths(mnist_widths, rng),
    }
}

impl Experiment {
    /// The MNIST experiment from its command-line arguments.
    pub fn mnist(args: MnistArgs) -> Result<Experiment> {
        let encoder = EncoderFlags::Mnist {
            widths: args.widths,
        };
        Experiment::new(DatasetKind::Mnist, args.common, encoder)
    }

    /// The CIFAR-10 experiment from its command-line arguments.
    pub fn cifar10(args: CifarArgs) -> Result<Experiment> {
        Experiment::new(
            DatasetKind::Cifar10,
            args.common,
            EncoderFlags::ResNet {
                arch: args.arch,
                width: args.width,
                pretrained: args.pretrained,
            },
        )
    }

    fn new(kind: DatasetKind, args: ExperimentArgs, encoder: EncoderFlags) -> Result<Experiment> {
        // A resumed run's own settings are the defaults; a flag that contradicts one of them
        // is refused later (`check_same_run`), before anything is written.
        let stored = match &args.resume {
            Some(dir) => RunConfig::load(dir)?,
            None => None,
        };
        let preset = args
            .preset
            .or(stored.as_ref().map(|c| c.preset))
            .unwrap_or(Preset::Simclr);
        let mut d = Defaults::of(preset, kind)?;
        let mut args = args;
        let seed = args.seed.or(stored.as_ref().map(|c| c.seed)).unwrap_or(0);
        if let Some(config) = &stored {
            d = d.overridden_by(config);
            args.limit = args.limit.or(config.limit);
        }
        let recipe = args.recipe.unwrap_or(d.recipe);
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
        } else if let Some(config) = &stored {
            split.pretrain = config.pretrain_range.clone();
        }
        if let Some(r) = &args.labeled_range {
            split.labeled =
                simclr_data::parse_range(r).map_err(|e| anyhow::anyhow!("--labeled-range: {e}"))?;
        }
        let epochs = args.epochs.unwrap_or(d.epochs);
        if epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if !(args.checkpoint_minutes.is_finite() && args.checkpoint_minutes >= 0.0) {
            bail!(
                "--checkpoint-minutes must be a finite number of minutes, 0 or more, got {}",
                args.checkpoint_minutes
            );
        }
        let temperature = args.temperature.unwrap_or(d.temperature);
        if !(temperature.is_finite() && temperature > 0.0) {
            bail!("--temperature must be positive and finite, got {temperature}");
        }
        let lr = args.lr.unwrap_or(d.lr);
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be positive and finite, got {lr}");
        }
        let classifier_l2 = args.classifier_l2.unwrap_or(d.classifier_l2);
        if !(classifier_l2.is_finite() && classifier_l2 >= 0.0) {
            bail!("--classifier-l2 must be 0 or positive and finite, got {classifier_l2}");
        }
        let crop_scale = args.crop_scale.or(d.crop_scale);
        if let Some(c) = crop_scale {
            if !(c > 0.0 && c <= 1.0) {
                bail!("--crop-scale must be in (0, 1], got {c}");
            }
        }
        let view_size = args.view_size.or(d.view_size);
        match (view_size, kind) {
            (Some(_), DatasetKind::Mnist) => {
                bail!("--view-size is for CIFAR-10's ResNets; the MNIST encoder needs 28×28")
            }
            (Some(s), _) if !(8..=256).contains(&s) => {
                bail!("--view-size must be between 8 and 256 pixels, got {s}")
            }
            _ => {}
        }
        let optimizer = args.optimizer.unwrap_or(d.optimizer);
        let schedule = args.schedule.unwrap_or(match args.optimizer {
            // An optimizer chosen on the command line brings its usual schedule.
            Some(OptimizerKind::Sgd | OptimizerKind::Lars) => ScheduleKind::WarmupCosine,
            Some(OptimizerKind::Adam | OptimizerKind::Adamw) => ScheduleKind::Constant,
            None => d.schedule,
        });
        let (mnist_widths, resnet) = match encoder {
            EncoderFlags::Mnist { widths } => {
                let widths = widths.unwrap_or(d.mnist_widths);
                if widths.contains(&0) {
                    bail!("--widths must be at least 1 channel each, got {widths:?}");
                }
                (widths, None)
            }
            EncoderFlags::ResNet {
                arch,
                width,
                pretrained,
            } => {
                let arch = arch.unwrap_or(d.arch);
                let width = width.unwrap_or(d.width);
                if width == 0 {
                    bail!("--width must be at least 1");
                }
                let batch = args.batch_size.unwrap_or(d.batch_size);
                check_fits_in_memory(arch, width, batch)?;
                let spec = ResNetSpec {
                    arch,
                    width,
                    pretrained,
                };
                (d.mnist_widths, Some(spec))
            }
        };
        Ok(Experiment {
            kind,
            preset,
            resumed_from: stored,
            seed,
            epochs,
            classifier_epochs: args.classifier_epochs.unwrap_or(d.classifier_epochs),
            classifier_l2,
            batch_size: args.batch_size.unwrap_or(d.batch_size),
            temperature,
            optimizer,
            lr,
            schedule,
            recipe,
            crop_scale,
            view_size,
            full_size_epochs: args.full_size_epochs.unwrap_or(d.full_size_epochs),
            baselines: d.baselines && !args.no_baselines,
            args,
            split,
            mnist_widths,
            resnet,
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub(crate) fn encoder_name(&self) -> String {
        match &self.resnet {
            None => {
                let [c1, c2] = self.mnist_widths;
                format!(
                    "MNIST CNN (Conv 1→{c1}, Conv {c1}→{c2}, Linear {}→128)",
                    c2 * 49
                )
            }
            Some(r) => format!("{:?} (CIFAR stem, base width {})", r.arch, r.width).to_lowercase(),
        }
    }

    /// The model to pretrain: the seeded initialisation, then `--pretrained`'s weights if given.
    pub(crate) fn build_model(&self) -> Result<SimClr> {
        let model = self.initialised_model();
        if let Some(path) = self.resnet.as_ref().and_then(|r| r.pretrained.as_ref()) {
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

    /// The model with its seeded random initialisation only (no `--pretrained` weights).
    pub(crate) fn initialised_model(&self) -> SimClr {
        let mut rng = StdRng::seed_from_u64(self.seed);
        model_of(self.resnet.as_ref(), self.mnist_widths, &mut rng)
    }

    pub(crate) fn optimizer(&self, params: Vec<simclr_tensor::Tensor>) -> Box<dyn Optimizer> {
        let lr = self.lr;
        match self.optimizer {
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

    /// The learning rate of every step of the run.
    pub(crate) fn schedule(&self, steps_per_epoch: usize) -> Schedule {
        match self.schedule {
            ScheduleKind::Constant => Schedule::Constant(self.lr),
            ScheduleKind::WarmupCosine => {
                let total = steps_per_epoch * self.epochs;
                Schedule::warmup_cosine(self.lr, (total / 10).max(1), total)
            }
        }
    }

    /// Epochs that see views of `view_size` before the full-size ones (0 without a view size).
    pub(crate) fn small_view_epochs(&self) -> usize {
        match self.view_size {
            Some(_) => self.epochs.saturating_sub(self.full_size_epochs),
            None => 0,
        }
    }

    /// The two-view augmenter of the run's recipe, with `--crop-scale` applied and, if
    /// `small`, `--view-size`.
    pub(crate) fn augmenter(&self, small: bool) -> Augmenter {
        let mut augmenter = Augmenter::new(self.recipe, self.kind, self.seed);
        if let Some(min) = self.crop_scale {
            augmenter = augmenter.with_crop_scale(min);
        }
        if let Some(size) = self.view_size.filter(|_| small) {
            augmenter = augmenter.with_view_size(size);
        }
        augmenter
    }

    /// Refuses `--resume` into `dir` when `config` (this run's) contradicts the stored one.
    pub(crate) fn check_same_run(&self, dir: &Path, config: &RunConfig) -> Result<()> {
        check_same_run(dir, self.resumed_from.as_ref(), config)
    }

    /// This run's settings, as `config.json` records them.
    pub(crate) fn config(&self) -> RunConfig {
        let a = &self.args;
        RunConfig {
            dataset: self.kind,
            preset: self.preset,
            encoder: self.encoder_name(),
            recipe: self.recipe,
            crop_scale: self.crop_scale,
            view_size: self.view_size,
            full_size_epochs: self.full_size_epochs,
            epochs: self.epochs,
            batch_size: self.batch_size,
            temperature: self.temperature,
            optimizer: self.optimizer,
            lr: self.lr,
            schedule: self.schedule,
            classifier_epochs: self.classifier_epochs,
            classifier_batch_size: a.classifier_batch_size,
            classifier_lr: a.classifier_lr,
            classifier_l2: self.classifier_l2,
            pretrain_range: self.split.pretrain.clone(),
            labeled_range: self.split.labeled.clone(),
            limit: a.limit,
            seed: self.seed,
            threads: rayon::current_num_threads(),
            baselines: self.baselines,
            knn: a.knn,
            knn_monitor: a.knn_monitor,
            checkpoint_minutes: Some(a.checkpoint_minutes),
            standardized_features: !a.raw_features,
            mnist_widths: (self.kind == DatasetKind::Mnist).then_some(self.mnist_widths),
            resnet: self.resnet.clone(),
            git_commit: git_commit(),
        }
    }
}

/// Refuses a ResNet whose training would not fit in this machine's memory, before anything
/// is allocated. The estimate scales two measurements of ResNet-18 at width 64, batch 128
/// (11.2 M parameters; 2.2 GiB peak): weights, gradients and Adam's two moments take 16 bytes
/// a parameter (∝ width²), the activations ≈ 1.6 GiB ∝ width × batch; ResNet-34 about twice.
fn check_fits_in_memory(arch: Arch, width: usize, batch: usize) -> Result<()> {
    let depth = arch.relative_cost();
    let scale = width as f64 / 64.0;
    let params = 11.2e6 * depth * scale * scale;
    let bytes = 16.0 * params + 1.6 * GIB * depth * scale * (batch as f64 / 128.0);
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map(|kib| kib * 1024.0);
    match total {
        Some(total) if bytes > total => bail!(
            "--width {width} with batch {batch}: training needs about {:.1} GiB \
             ({:.0} M parameters), more than this machine's {:.1} GiB",
            bytes / GIB,
            params / 1e6,
            total / GIB
        ),
        _ => Ok(()),
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Refuses to resume the run in `dir`, whose `config.json` holds `stored` (`None`: no such
/// file), with `given` settings that contradict it, naming the setting and both values.
fn check_same_run(dir: &Path, stored: Option<&RunConfig>, given: &RunConfig) -> Result<()> {
    let Some(stored) = stored else {
        bail!(
            "--resume {}: the run's settings ({}) are missing",
            dir.display(),
            RunConfig::FILE
        );
    };
    if let Some(Contradiction {
        setting,
        stored,
        given,
    }) = stored.contradiction(given)
    {
        bail!(
            "--resume {}: the run was made with {setting} = {stored}, this command asks for \
             {given}; leave the flag out to keep the run's value",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::run_config::tests::{CIFAR_CONFIG, MNIST_CONFIG};

    /// The experiment a command line describes.
    fn parse(line: &str) -> Result<Experiment> {
        let cli = Cli::try_parse_from(std::iter::once("xtask").chain(line.split_whitespace()))?;
        match cli.command {
            Command::Mnist(a) => Experiment::mnist(a),
            Command::Cifar10(a) => Experiment::cifar10(a),
            other => panic!("not an experiment: {other:?}"),
        }
    }

    #[test]
    fn report_preset_is_the_report_protocol() {
        let e = parse("cifar10 --preset report").unwrap();
        assert_eq!(e.recipe, Recipe::Report);
        assert_eq!((e.epochs, e.batch_size, e.classifier_epochs), (10, 128, 30));
        assert_eq!((e.temperature, e.lr), (0.5, 1e-3));
        assert_eq!(e.optimizer, OptimizerKind::Adam);
        assert_eq!(e.schedule, ScheduleKind::Constant);
        assert_eq!(
            e.resnet.as_ref().map(|r| (r.arch, r.width)),
            Some((Arch::Resnet18, 64))
        );
        let m = parse("mnist --preset report").unwrap();
        assert_eq!((m.recipe, m.batch_size), (Recipe::Report, 256));
        assert_eq!(m.classifier_l2, 0.0);
    }

    #[test]
    fn flags_override_the_preset() {
        let e = parse("cifar10 --preset cpu-hour").unwrap();
        let resnet = e.resnet.as_ref().map(|r| (r.arch, r.width));
        assert_eq!((resnet, e.batch_size), (Some((Arch::Resnet10, 24)), 64));
        let e = parse("cifar10 --preset cpu-hour --epochs 3 --width 8 --temperature 0.7").unwrap();
        assert_eq!(e.preset, Preset::CpuHour);
        assert_eq!((e.epochs, e.temperature), (3, 0.7));
        assert_eq!(
            e.resnet.as_ref().map(|r| (r.arch, r.width)),
            Some((Arch::Resnet10, 8))
        );
        let e = parse("cifar10 --preset cpu-hour --arch resnet18").unwrap();
        assert_eq!(
            e.resnet.as_ref().map(|r| (r.arch, r.width)),
            Some((Arch::Resnet18, 24))
        );
        let d = Defaults::of(Preset::CpuHour, DatasetKind::Cifar10).unwrap();
        assert_eq!(
            (e.batch_size, e.lr, e.recipe),
            (d.batch_size, d.lr, d.recipe)
        );
        let best = parse("mnist --preset best").unwrap();
        assert_eq!((best.classifier_epochs, best.classifier_l2), (300, 1e-4));
        let none = parse("mnist --preset best --classifier-l2 0").unwrap();
        assert_eq!(none.classifier_l2, 0.0);
    }

    #[test]
    fn the_mnist_encoder_widths_come_from_the_preset_or_the_flag() {
        let widths = |line: &str| parse(line).unwrap().config().mnist_widths;
        assert_eq!(widths("mnist"), Some([32, 64]));
        assert_eq!(widths("mnist --preset report"), Some([32, 64]));
        assert_eq!(widths("mnist --preset best"), Some([32, 64]));
        assert_eq!(widths("mnist --preset best --widths 16,48"), Some([16, 48]));
        assert_eq!(widths("cifar10"), None);
        let e = parse("mnist --preset best --widths 32,128").unwrap();
        assert_eq!(
            e.encoder_name(),
            "MNIST CNN (Conv 1→32, Conv 32→128, Linear 6272→128)"
        );
        let parameters: usize = e
            .initialised_model()
            .encoder
            .parameters()
            .iter()
            .map(|p| p.numel())
            .sum();
        assert_eq!(
            parameters,
            (9 + 1) * 32 + (32 * 9 + 1) * 128 + (6272 + 1) * 128
        );
    }

    #[test]
    fn an_optimizer_flag_brings_its_schedule_unless_one_is_given() {
        let e = parse("mnist --optimizer lars --lr 1.0").unwrap();
        assert_eq!(e.schedule, ScheduleKind::WarmupCosine);
        let e = parse("mnist --optimizer lars --schedule constant").unwrap();
        assert_eq!(e.schedule, ScheduleKind::Constant);
    }

    #[test]
    fn a_resumed_run_keeps_its_settings_and_refuses_contradictions() {
        let dir = std::env::temp_dir().join(format!("simclr-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = parse(&format!(
            "cifar10 --preset cpu-hour --seed 3 --limit 500 --temperature 0.3 --out {}",
            dir.display()
        ))
        .unwrap();
        let stored = serde_json::to_string(&first.config()).unwrap();
        std::fs::write(dir.join(RunConfig::FILE), stored).unwrap();
        // No flag: every setting comes back from config.json.
        let resumed = parse(&format!("cifar10 --resume {}", dir.display())).unwrap();
        assert_eq!(resumed.preset, Preset::CpuHour);
        assert_eq!((resumed.seed, resumed.temperature), (3, 0.3));
        assert_eq!(resumed.args.limit, Some(500));
        resumed.check_same_run(&dir, &resumed.config()).unwrap();
        // A contradicting flag is named with both values; the probe may change.
        let changed = parse(&format!("cifar10 --resume {} --lr 0.01", dir.display())).unwrap();
        let err = changed
            .check_same_run(&dir, &changed.config())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lr = 0.001") && err.contains("0.01"), "{err}");
        let probe = format!("cifar10 --resume {} --classifier-epochs 7", dir.display());
        let probe = parse(&probe).unwrap();
        probe.check_same_run(&dir, &probe.config()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_resumed_mnist_run_keeps_its_encoder_widths() {
        let dir = tempfile::tempdir().unwrap();
        let first = parse("mnist --preset best --widths 16,48").unwrap();
        let stored = serde_json::to_string(&first.config()).unwrap();
        std::fs::write(dir.path().join(RunConfig::FILE), stored).unwrap();
        let resume = format!("mnist --resume {}", dir.path().display());
        let resumed = parse(&resume).unwrap();
        assert_eq!(resumed.mnist_widths, [16, 48]);
        resumed
            .check_same_run(dir.path(), &resumed.config())
            .unwrap();
        let changed = parse(&format!("{resume} --widths 32,128")).unwrap();
        let err = changed
            .check_same_run(dir.path(), &changed.config())
            .unwrap_err()
            .to_string();
        assert!(err.contains("[16,48]") && err.contains("[32,128]"), "{err}");
    }

    #[test]
    fn a_config_reads_back_as_written() {
        for line in [
            "mnist",
            "mnist --preset best --lr 0.003 --temperature 0.07 --limit 900 --seed 5 --knn",
            "cifar10 --preset cpu-hour --crop-scale 0.35 --pretrain-range 0..1000 --raw-features",
            "cifar10 --arch resnet34 --width 8 --pretrained w.safetensors --optimizer lars",
        ] {
            let config = parse(line).unwrap().config();
            let text = serde_json::to_string_pretty(&config).unwrap();
            let read: RunConfig = serde_json::from_str(&text).unwrap();
            assert_eq!(read, config, "{line}");
        }
    }

    #[test]
    fn a_run_of_the_earlier_runner_resumes_with_its_own_settings() {
        for (command, text) in [("mnist", MNIST_CONFIG), ("cifar10 --knn", CIFAR_CONFIG)] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(RunConfig::FILE), text).unwrap();
            let line = format!("{command} --resume {}", dir.path().display());
            let resumed = parse(&line).unwrap();
            let config = resumed.config();
            resumed.check_same_run(dir.path(), &config).unwrap();
            // Only what describes the process that wrote the file differs.
            let stored: RunConfig = serde_json::from_str(text).unwrap();
            // An MNIST run from before `--widths` had the report's encoder, and now says so.
            let mnist_widths = (command == "mnist").then_some(MnistEncoder::REPORT_WIDTHS);
            let expected = RunConfig {
                mnist_widths,
                threads: config.threads,
                checkpoint_minutes: config.checkpoint_minutes,
                git_commit: config.git_commit.clone(),
                ..stored
            };
            assert_eq!(config, expected, "{command}");
        }
    }

    #[test]
    fn presets_of_the_other_dataset_and_bad_values_are_refused() {
        let err = |line: &str| parse(line).unwrap_err().to_string();
        assert!(err("mnist --preset cpu-hour").contains("CIFAR-10"));
        assert!(err("cifar10 --preset best").contains("MNIST"));
        assert!(err("mnist --temperature inf").contains("--temperature"));
        assert!(err("mnist --checkpoint-minutes=-1").contains("--checkpoint-minutes"));
        assert!(err("mnist --checkpoint-minutes inf").contains("--checkpoint-minutes"));
        assert!(err("mnist --temperature 0").contains("--temperature"));
        assert!(err("mnist --lr NaN").contains("--lr"));
        assert!(err("mnist --classifier-l2=-1e-4").contains("--classifier-l2"));
        assert!(err("mnist --crop-scale 1.5").contains("--crop-scale"));
        assert!(err("cifar10 --width 0").contains("--width"));
        assert!(err("cifar10 --width 100000").contains("GiB"));
        assert!(err("cifar10 --width 18446744073709551615").contains("GiB"));
        assert!(err("mnist --epochs 0").contains("--epochs"));
        assert!(err("mnist --view-size 24").contains("--view-size"));
        assert!(err("mnist --widths 0,64").contains("--widths"));
        assert!(err("mnist --widths 32").contains("two channel counts"));
        assert!(err("mnist --widths 32,64,128").contains("two channel counts"));
        assert!(err("cifar10 --view-size 4").contains("--view-size"));
    }
}
