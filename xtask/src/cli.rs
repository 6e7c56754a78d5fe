//! The command line: one subcommand per experiment, every flag with its default in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use simclr_data::{DatasetKind, Recipe};
use simclr_nn::ResNet;

/// The simclr experiment runner.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The runner's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The report's MNIST experiment: SimCLR pretraining on chunks 0-3, a linear head on chunk 4
    /// with the encoder frozen, test accuracy on the 10,000 test images, k-means / GMM baselines,
    /// and a report with plots.
    Mnist(MnistArgs),
    /// The report's CIFAR-10 experiment with a ResNet encoder (batches 1-4 unlabeled, 1-2 labeled).
    Cifar10(CifarArgs),
    /// k-means and GMM clustering alone, on raw pixels or on a saved encoder's features.
    Baselines(BaselinesArgs),
    /// Images/s of one full SimCLR training step (two views, forward, NT-Xent, backward, optimizer).
    Bench(BenchArgs),
    /// Writes a PNG grid of augmented view pairs, to check a recipe by eye.
    ShowAugment(ShowAugmentArgs),
    /// Checks that the ranks of a data-parallel run train as one process with the whole batch
    /// (same loss every step, same weights after), for the MNIST encoder and a small ResNet
    /// with synced batch norm: `mpirun -np 2 target/release/xtask check-distributed`.
    CheckDistributed(CheckDistributedArgs),
}

/// Arguments of `check-distributed`.
#[derive(Args, Debug)]
pub struct CheckDistributedArgs {
    /// Global batch size (source images; divisible by the ranks).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Optimizer steps compared.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Largest relative difference of a loss or a weight tensor that passes.
    #[arg(long, default_value_t = 1e-5)]
    pub tolerance: f64,
}

/// The optimizer used for pretraining.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (the report's choice).
    Adam,
    /// AdamW with decoupled weight decay 1e-4.
    Adamw,
    /// SGD with Nesterov momentum 0.9 and weight decay 5e-4.
    Sgd,
    /// LARS (the SimCLR paper's), momentum 0.9, weight decay 1e-6.
    Lars,
}

/// How the pretraining learning rate moves over the run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The same rate throughout (the report's).
    Constant,
    /// Linear warm-up over the first 10 % of steps, then cosine decay to 0 (SimCLR's).
    WarmupCosine,
}

/// A named set of defaults for the run's settings; a flag given explicitly overrides it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The lab report's protocol: Adam 1e-3, τ 0.5, 10 epochs, the report's weak views
    /// (CIFAR-10: ResNet-18 width 64, batch 128; MNIST: batch 256).
    Report,
    /// The report's optimiser and schedule with the SimCLR paper's augmentations (both views
    /// strongly augmented).
    Simclr,
    /// MNIST: the best recipe found for the two-minute budget (see docs/recipes.md).
    Best,
    /// CIFAR-10: the best recipe found for one hour of a 2-core CPU (see docs/recipes.md).
    CpuHour,
}

/// Settings shared by the MNIST and CIFAR-10 experiments. Options without a fixed default take
/// theirs from `--preset`.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Defaults for every setting below that is not given [default: simclr].
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Pretraining epochs [default: from the preset].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs of the linear classifier on frozen features [default: from the preset].
    #[arg(long)]
    pub classifier_epochs: Option<usize>,
    /// Pretraining batch size (source images; each gives two views) [default: from the preset].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Classifier batch size.
    #[arg(long, default_value_t = 128)]
    pub classifier_batch_size: usize,
    /// NT-Xent temperature τ [default: from the preset].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Pretraining learning rate (the peak rate under warm-up + cosine) [default: from the preset].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Classifier learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    pub classifier_lr: f32,
    /// Weight λ of an L2 penalty on the classifier's weights (the objective adds λ·‖W‖², the
    /// SimCLR paper's linear protocol; 0: none, as the report) [default: from the preset].
    #[arg(long)]
    pub classifier_l2: Option<f32>,
    /// Pretraining optimizer [default: from the preset].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning-rate schedule [default: from the preset; warmup-cosine for SGD and LARS].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Augmentation recipe: `simclr` (both views augmented), `report` (view 1 = the image) or
    /// `none` [default: from the preset].
    #[arg(long)]
    pub recipe: Option<Recipe>,
    /// Smallest area fraction of the random resized crop, e.g. 0.2 [default: the recipe's].
    #[arg(long)]
    pub crop_scale: Option<f32>,
    /// CIFAR-10: pretrain on views of this many pixels square (the crop resizes to it; the
    /// frozen encoder still sees whole 32-pixel images) [default: from the preset, else 32].
    #[arg(long)]
    pub view_size: Option<usize>,
    /// With `--view-size`: the last N epochs see views of the images' own size, so the encoder
    /// and its BatchNorm statistics end at the size they are evaluated at (progressive
    /// resizing) [default: from the preset, else 0].
    #[arg(long)]
    pub full_size_epochs: Option<usize>,
    /// Train-set index range for pretraining, e.g. `0..24000` [default: the report's split].
    #[arg(long)]
    pub pretrain_range: Option<String>,
    /// Train-set index range of the labeled set, e.g. `24000..30000` [default: the report's split].
    #[arg(long)]
    pub labeled_range: Option<String>,
    /// Number of labeled chunks (the report also tried two); extends the default labeled range.
    #[arg(long, default_value_t = 1)]
    pub labeled_chunks: usize,
    /// Caps every subset (pretraining, labeled, test) at N images, for quick runs.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of every random choice (weights, shuffles, augmentations) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads [default: all cores; in a distributed run, the cores shared by the
    /// machine's ranks].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run as one rank of a data-parallel run started by an MPI launcher (`mpirun -np R
    /// target/release/xtask mnist --distributed`): each rank pretrains on its shard of every
    /// batch; rank 0 writes the run directory. Needs the runner built with `--features mpi`.
    #[arg(long)]
    pub distributed: bool,
    /// Where the datasets are [default: $SIMCLR_DATA_DIR, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use dataset files whose content differs from the published files' (a warning instead
    /// of an error).
    #[arg(long)]
    pub allow_modified_data: bool,
    /// Run directory [default: runs/<dataset>-<time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its settings are kept; a
    /// flag that contradicts them is refused).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Start over in a run directory that holds an earlier run (its log and checkpoint are
    /// removed; without this flag such a directory is refused).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Skip the k-means / GMM baselines.
    #[arg(long)]
    pub no_baselines: bool,
    /// Train the linear head on the raw features, as the report did, instead of standardised
    /// ones (zero mean, unit variance per feature; still a linear probe, it only converges
    /// faster).
    #[arg(long)]
    pub raw_features: bool,
    /// Also report kNN accuracy (k = 200, cosine) on the frozen features.
    #[arg(long)]
    pub knn: bool,
    /// After every pretraining epoch, kNN accuracy of this many held-out training images
    /// (outside the pretraining and labeled ranges) against up to 5,000 labeled images; 0 turns
    /// the monitor off.
    #[arg(long, default_value_t = 1000)]
    pub knn_monitor: usize,
    /// Also checkpoint inside pretraining epochs, after the first step that ends this many
    /// minutes after the last checkpoint (0: after every step), so a run stopped hard resumes
    /// from its last minutes of work rather than from the start of the epoch. The checkpoint
    /// at the end of every epoch is always written; the interval does not change the run's
    /// results, so `--resume` may give another.
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    pub checkpoint_minutes: f64,
}

/// `cargo xtask mnist`.
#[derive(Args, Debug)]
pub struct MnistArgs {
    #[command(flatten)]
    pub common: ExperimentArgs,
    /// Channels of the encoder's two convolutions, `C1,C2` [default: the report's, 32,64].
    #[arg(long, value_parser = parse_widths)]
    pub widths: Option<[usize; 2]>,
}

/// `C1,C2` as two channel counts.
fn parse_widths(s: &str) -> Result<[usize; 2], String> {
    let widths: Option<Vec<usize>> = s.split(',').map(|w| w.trim().parse().ok()).collect();
    match widths.as_deref() {
        Some(&[c1, c2]) => Ok([c1, c2]),
        _ => Err(format!(
            "expected two channel counts such as 32,128, got `{s}`"
        )),
    }
}

/// The ResNet depth of the CIFAR-10 encoder.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-10 (one block a stage: half ResNet-18's compute at the same width).
    Resnet10,
    /// ResNet-18 (512-d features at width 64).
    Resnet18,
    /// ResNet-34.
    Resnet34,
}

impl Arch {
    /// The encoder of this depth, with a CIFAR stem and base width `width`.
    pub fn resnet(self, width: usize, rng: &mut impl rand::Rng) -> ResNet {
        match self {
            Arch::Resnet10 => ResNet::resnet10(width, rng),
            Arch::Resnet18 => ResNet::resnet18(width, rng),
            Arch::Resnet34 => ResNet::resnet34(width, rng),
        }
    }

    /// Compute and activation memory per image relative to ResNet-18 at the same width.
    pub fn relative_cost(self) -> f64 {
        match self {
            Arch::Resnet10 => 0.55,
            Arch::Resnet18 => 1.0,
            Arch::Resnet34 => 1.9,
        }
    }
}

/// `cargo xtask cifar10`.
#[derive(Args, Debug)]
pub struct CifarArgs {
    #[command(flatten)]
    pub common: ExperimentArgs,
    /// Encoder architecture [default: from the preset, else resnet18].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Base width of the ResNet (64 = torchvision's; 16 or 32 make CIFAR practical on 2 cores)
    /// [default: from the preset].
    #[arg(long)]
    pub width: Option<usize>,
    /// Initial encoder weights: a safetensors file with torchvision state-dict names
    /// (`fc.*` and an ImageNet 7×7 `conv1` are skipped and reported).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
}

/// `cargo xtask baselines`.
#[derive(Args, Debug)]
pub struct BaselinesArgs {
    /// Dataset to cluster: mnist or cifar10.
    #[arg(long, default_value = "mnist")]
    pub dataset: DatasetKind,
    /// Cluster the features of this run's encoder checkpoint instead of raw pixels.
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Train-set range to fit on [default: the report's pretraining split].
    #[arg(long)]
    pub fit_range: Option<String>,
    /// Caps the fit and test sets at N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// PCA dimension before the GMM.
    #[arg(long, default_value_t = 50)]
    pub pca_dim: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the datasets are [default: $SIMCLR_DATA_DIR, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use dataset files whose content differs from the published files' (a warning instead
    /// of an error).
    #[arg(long)]
    pub allow_modified_data: bool,
}

/// `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Timed steps per model (after warm-up); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Which models: mnist, resnet18, resnet18-w32, resnet18-w16, resnet10-w24 (comma-separated).
    #[arg(long, default_value = "mnist,resnet18")]
    pub models: String,
    /// Print one JSON line per model instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Side of the ResNets' square input images.
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    /// Runs the models in turn this many times, each run in a fresh process, and reports each
    /// model's median over the rounds and its GFLOP/s against the first model's of the same
    /// round: a host whose speed drifts then slows the models alike.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Runs all the models in this one process instead, one timed step of each in turn
    /// (`--steps` turns, after each model's warm-up), and reports each model's median step and
    /// its GFLOP/s against the first model's step of the same turn: neighbours seconds apart,
    /// for a host whose speed drifts within a round. Peak memory is then the process's, all the
    /// models together.
    #[arg(long, conflicts_with_all = ["rounds", "profile"])]
    pub interleave: bool,
    /// Also print where the timed steps' time went, op by op: forward and backward wall time
    /// per step (one model, one round).
    #[arg(long, conflicts_with = "json")]
    pub profile: bool,
}

/// `cargo xtask show-augment`.
#[derive(Args, Debug)]
pub struct ShowAugmentArgs {
    /// Dataset: mnist or cifar10.
    #[arg(long, default_value = "mnist")]
    pub dataset: DatasetKind,
    /// Augmentation recipe: simclr, report or none.
    #[arg(long, default_value = "simclr")]
    pub recipe: Recipe,
    /// Number of image pairs.
    #[arg(long, default_value_t = 16)]
    pub pairs: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "augment.png")]
    pub out: PathBuf,
    /// Where the datasets are [default: $SIMCLR_DATA_DIR, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}
