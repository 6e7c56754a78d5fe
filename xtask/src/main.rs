//! `cargo xtask`: the simclr experiment runner.
//!
//! Each command ties the crates together into something a person runs: the report's MNIST and
//! CIFAR-10 experiments (pretrain → frozen encoder → linear head → baselines → report), the
//! clustering baselines alone, the training-step benchmark, and a picture of the augmentations.
//! Errors end the program with one clear sentence, never a backtrace.

mod bench;
mod cli;
mod distributed;
mod experiment;
mod history;
mod plots;
mod progress;
mod report;
mod run_config;
mod run_dir;
mod settings;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use simclr_data::{augment_grid_png, resolve_data_dir};

use crate::cli::{CheckDistributedArgs, Cli, Command, ExperimentArgs};
use crate::distributed::{check_against_one_process, CheckModel, CheckOptimizer, Ranks};

fn main() -> ExitCode {
    let cli = Cli::parse();
    simclr_tensor::memory::reuse_freed_memory();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, outermost first, on one line without a backtrace. A cause whose
/// text its outer message already quotes (`file: cannot read: Permission denied` over
/// `Permission denied`) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

/// Sets the number of worker threads for every parallel kernel (rayon's global pool): at
/// least 1 and at most the machine's cores (more only slows every kernel down).
fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        if n == 0 || n > cores {
            anyhow::bail!("--threads must be between 1 and this machine's {cores} cores, got {n}");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot configure the thread pool")?;
    }
    Ok(())
}

/// Joins the run's ranks (just this process without `--distributed`) and sets the threads:
/// `--threads`, or the cores this machine's ranks share.
fn join(args: &ExperimentArgs) -> Result<Ranks> {
    let ranks = distributed::join(args.distributed)?;
    let shared = (ranks.on_this_machine > 1).then(|| ranks.default_threads());
    set_threads(args.threads.or(shared))?;
    Ok(ranks)
}

/// Runs `work` as one rank: an error on any rank of a distributed run is printed with the
/// rank's number and ends every rank (the others would wait for this one forever).
fn as_rank(ranks: &Ranks, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let result = work();
    if let Err(e) = &result {
        if ranks.group.ranks() > 1 {
            eprintln!("error on rank {}: {}", ranks.group.rank(), one_line(e));
            ranks.abort_others();
        }
    }
    result
}

/// `check-distributed`: both models, compared on rank 0 against one process.
fn check_distributed(ranks: &Ranks, args: &CheckDistributedArgs) -> Result<()> {
    for (model, optimizer) in [
        (CheckModel::MnistEncoder, CheckOptimizer::Sgd),
        (CheckModel::MnistEncoder, CheckOptimizer::Adam),
        (CheckModel::ResNet, CheckOptimizer::Sgd),
        (CheckModel::ResNet, CheckOptimizer::Adam),
    ] {
        let group = ranks.group.clone();
        let compared =
            check_against_one_process(group, model, optimizer, args.batch_size, args.steps)?;
        if let Some(c) = compared {
            println!(
                "{model:?} + {optimizer:?}: {} ranks against one process, {} steps of batch {}: losses \
                 within {:.1e}, weights within {:.1e}, ranks within {:.1e} of each other \
                 (relative)",
                ranks.group.ranks(),
                c.steps,
                args.batch_size,
                c.loss,
                c.weights,
                c.ranks_apart
            );
            let worst = c.worst(optimizer);
            anyhow::ensure!(
                worst <= args.tolerance,
                "{model:?} + {optimizer:?}: the distributed run is {worst:.1e} from one \
                 process, more than --tolerance {:.1e}",
                args.tolerance
            );
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mnist(args) => {
            let ranks = join(&args.common)?;
            as_rank(&ranks, || {
                experiment::run(&settings::Experiment::mnist(args)?, &ranks)
            })
        }
        Command::Cifar10(args) => {
            let ranks = join(&args.common)?;
            as_rank(&ranks, || {
                experiment::run(&settings::Experiment::cifar10(args)?, &ranks)
            })
        }
        Command::CheckDistributed(args) => {
            let ranks = distributed::join(true)?;
            set_threads(Some(ranks.default_threads()))?;
            as_rank(&ranks, || check_distributed(&ranks, &args))
        }
        Command::Baselines(args) => experiment::baselines_only(&args),
        Command::Bench(args) => {
            set_threads(args.threads)?;
            bench::run(&args)
        }
        Command::ShowAugment(args) => {
            let (kind, recipe) = (args.dataset, args.recipe);
            let dir = resolve_data_dir(args.data_dir.as_deref());
            // A picture of the augmentations: any images will do.
            let (train, _) = experiment::load_dataset(kind, &dir, true)?;
            augment_grid_png(&train, recipe, kind, args.pairs, args.seed, &args.out)
                .with_context(|| format!("cannot write {}", args.out.display()))?;
            println!(
                "wrote {} ({} pairs: original, view 1, view 2; recipe {})",
                args.out.display(),
                args.pairs,
                recipe.name()
            );
            Ok(())
        }
    }
}

/// Parses a dataset name.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_beyond_the_cores_are_refused_before_any_pool_is_built() {
        for n in [0, 1000, usize::MAX] {
            let err = set_threads(Some(n)).unwrap_err().to_string();
            assert!(err.contains("--threads must be between 1 and"), "{err}");
        }
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let data = simclr_data::DataError::Io {
            file: "data/mnist/x.gz".into(),
            source: denied,
        };
        let e = anyhow::Error::new(data).context("cannot load the dataset from data");
        let line = one_line(&e);
        assert_eq!(line.matches("permission denied").count(), 1, "{line}");
        assert!(line.starts_with("cannot load the dataset from data: data/mnist/x.gz"));
    }
}
