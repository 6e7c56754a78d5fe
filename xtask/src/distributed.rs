//! `--distributed`: one rank of a data-parallel run started by an MPI launcher
//! (`mpirun -np R xtask mnist --distributed`, or `srun` under Slurm).
//!
//! [`join`] turns the command line into the process's [`Collective`]: [`Solo`] without the
//! flag; with it, MPI's world communicator (this binary built with `--features mpi`) — or a
//! clear error when the feature is missing or no launcher started the process. How a step
//! runs across the ranks is `simclr_contrastive::distributed`; what this module adds is MPI
//! itself, how many threads each rank takes, and [`check_against_one_process`], the check CI
//! runs under `mpirun` (and the unit tests with ranks as threads).

use std::rc::Rc;

use anyhow::{bail, ensure, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use simclr_contrastive::{pretrain, PretrainConfig, SimClr, TrainEvent};
use simclr_data::{Augmenter, DatasetKind, ImageSet, Loader, LoaderConfig, Recipe, Shard};
use simclr_nn::{Adam, AdamConfig, Module, Optimizer, ResNet, Sgd, SgdConfig};
use simclr_tensor::{Collective, Solo};

/// This process's place in the run: its ranks, and how many of them share its machine.
pub struct Ranks {
    /// The collective of the run ([`Solo`] when not distributed).
    pub group: Rc<dyn Collective>,
    /// Ranks on this machine (this one included), which share its cores.
    pub on_this_machine: usize,
    #[cfg(feature = "mpi")]
    world: Option<Rc<mpi_group::MpiGroup>>,
}

impl Ranks {
    /// A run of one process.
    pub fn solo() -> Ranks {
        Ranks {
            group: Rc::new(Solo),
            on_this_machine: 1,
            #[cfg(feature = "mpi")]
            world: None,
        }
    }

    /// Whether this process writes the run directory and prints (rank 0).
    pub fn is_leader(&self) -> bool {
        self.group.rank() == 0
    }

    /// Ends every rank of the run after an error on this one (a rank that returned alone
    /// would leave the others waiting for it forever); a run of one process just returns.
    pub fn abort_others(&self) {
        #[cfg(feature = "mpi")]
        if let Some(world) = &self.world {
            world.abort();
        }
    }

    /// Worker threads per rank when `--threads` is not given: this machine's cores shared by
    /// its ranks (at least one each).
    pub fn default_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        (cores / self.on_this_machine).max(1)
    }
}

/// The environment variables by which the common launchers (Open MPI's `mpirun`, MPICH's
/// Hydra and PMIx-based ones, Slurm's `srun`) tell a process it is one of a job's ranks.
const LAUNCHER_VARIABLES: [&str; 5] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "SLURM_PROCID",
];

/// The ranks of this process: [`Ranks::solo`] unless `distributed`; then MPI's, or an error
/// that says what is missing.
pub fn join(distributed: bool) -> Result<Ranks> {
    if !distributed {
        return Ok(Ranks::solo());
    }
    if !LAUNCHER_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        bail!(
            "--distributed: this process was not started by an MPI launcher; start every rank \
             with one, e.g. `mpirun -np 2 target/release/xtask mnist --distributed`"
        );
    }
    connect()
}

#[cfg(not(feature = "mpi"))]
fn connect() -> Result<Ranks> {
    bail!(
        "--distributed needs the runner built with MPI: `cargo build --release -p xtask \
         --features mpi` (Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev), \
         then `mpirun -np R target/release/xtask … --distributed`"
    )
}

#[cfg(feature = "mpi")]
fn connect() -> Result<Ranks> {
    let world = Rc::new(mpi_group::MpiGroup::init()?);
    Ok(Ranks {
        on_this_machine: world.ranks_on_this_machine(),
        group: world.clone(),
        world: Some(world),
    })
}

/// Gives every rank rank 0's `config` (serialised), and fails on a rank whose own differs:
/// ranks started with different settings would compute different things in lockstep.
pub fn agree_on_config(group: &dyn Collective, config: &impl serde::Serialize) -> Result<()> {
    let mine = serde_json::to_vec(config)?;
    let mut leaders = mine.clone();
    group.broadcast_bytes(&mut leaders);
    if leaders != mine {
        bail!(
            "rank {}'s settings differ from rank 0's; start every rank with the same \
             command:\n  rank 0: {}\n  rank {}: {}",
            group.rank(),
            String::from_utf8_lossy(&leaders),
            group.rank(),
            String::from_utf8_lossy(&mine)
        );
    }
    Ok(())
}

/// The models [`check_against_one_process`] trains.
#[derive(Clone, Copy, Debug)]
pub enum CheckModel {
    /// The MNIST encoder: no batch norm.
    MnistEncoder,
    /// A width-4 ResNet-18 on 16-pixel images: batch norms synced over the ranks.
    ResNet,
}

/// The optimizers [`check_against_one_process`] trains with.
#[derive(Clone, Copy, Debug)]
pub enum CheckOptimizer {
    /// Adam at 1e-3, the report's. Its update `m/√v` has about the same size whatever the
    /// gradient's, so where a gradient is nearly zero (terms that cancel) the sums' rounding
    /// decides its sign: weights then differ by up to twice the learning rate, though every
    /// gradient agrees to f32 rounding. The losses are what compares.
    Adam,
    /// SGD with momentum 0.9 at 0.05: the update is proportional to the gradient, so the
    /// weights compare to f32 rounding too.
    Sgd,
}

/// How far the data-parallel run is from one process.
#[derive(Debug)]
pub struct Comparison {
    /// Largest relative difference of a step's loss.
    pub loss: f64,
    /// Largest relative difference of a weight tensor after the steps (max-norm of the
    /// difference over the max-norm of the one-process tensor), buffers included.
    pub weights: f64,
    /// Largest relative difference between rank 0's weight tensors and another rank's.
    pub ranks_apart: f64,
    /// Steps compared.
    pub steps: usize,
}

/// Trains `model` for `steps` steps of global batch `batch` on this rank's shard — the ranks
/// of `group` together — and, on rank 0, the same steps as one process with the whole batch;
/// rank 0 returns how far apart the losses and the weights are (the others `None`). Each rank
/// initialises its model from a seed of its own, so agreement also shows the start is rank
/// 0's.
pub fn check_against_one_process(
    group: Rc<dyn Collective>,
    model: CheckModel,
    optimizer: CheckOptimizer,
    batch: usize,
    steps: usize,
) -> Result<Option<Comparison>> {
    let (rank, ranks) = (group.rank(), group.ranks());
    let run = |group: Rc<dyn Collective>, seed: u64| -> Result<(Vec<f32>, SimClr)> {
        let (simclr, mut optimizer, loader) =
            check_run(model, optimizer, &group, batch, steps, seed)?;
        let pretrain_cfg = PretrainConfig {
            max_steps_per_epoch: Some(steps),
            group,
            ..PretrainConfig::report(1)
        };
        let mut losses = Vec::new();
        pretrain(&simclr, optimizer.as_mut(), &loader, &pretrain_cfg, |e| {
            if let TrainEvent::Step(s) = e {
                losses.push(s.loss);
            }
        })?;
        Ok((losses, simclr))
    };
    let (losses, distributed) = run(group.clone(), 100 + rank as u64)?;
    let weights_of =
        |m: &SimClr| -> Vec<Vec<f32>> { m.state_dict().iter().map(|(_, t)| t.to_vec()).collect() };
    let mine = weights_of(&distributed);
    let every_ranks = group.gather_f32(&mine.concat());
    if rank != 0 {
        return Ok(None);
    }
    ensure!(
        losses.len() == steps,
        "the run took {} steps, not {steps}",
        losses.len()
    );
    let (solo_losses, solo) = run(Rc::new(Solo), 100)?;
    let relative = |a: &[f32], b: &[f32]| {
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let scale = b.iter().fold(0f32, |m, y| m.max(y.abs()));
        diff as f64 / (scale as f64).max(1e-30)
    };
    // Rank 0's tensors against every other rank's, tensor by tensor.
    let len = every_ranks.len() / ranks;
    let mut ranks_apart = 0f64;
    for other in every_ranks.chunks_exact(len).skip(1) {
        let mut at = 0;
        for t in &mine {
            ranks_apart = ranks_apart.max(relative(&other[at..at + t.len()], t));
            at += t.len();
        }
    }
    let loss = losses
        .iter()
        .zip(&solo_losses)
        .map(|(a, b)| relative(&[*a], &[*b]))
        .fold(0.0, f64::max);
    let weights = mine
        .iter()
        .zip(weights_of(&solo))
        .map(|(a, b)| relative(a, &b))
        .fold(0.0, f64::max);
    Ok(Some(Comparison {
        loss,
        weights,
        ranks_apart,
        steps: losses.len(),
    }))
}

impl Comparison {
    /// The largest difference that must stay within f32 rounding: the losses', the ranks'
    /// from each other, and the weights' unless `optimizer` is Adam (see [`CheckOptimizer`]).
    pub fn worst(&self, optimizer: CheckOptimizer) -> f64 {
        let weights = match optimizer {
            CheckOptimizer::Adam => 0.0,
            CheckOptimizer::Sgd => self.weights,
        };
        self.loss.max(self.ranks_apart).max(weights)
    }
}

/// What one rank of a check trains: `model` initialised from `seed`, `optimizer` over it, and
/// a loader of the rank's shard of `steps` batches of `batch` noise images.
fn check_run(
    model: CheckModel,
    optimizer: CheckOptimizer,
    group: &Rc<dyn Collective>,
    batch: usize,
    steps: usize,
    seed: u64,
) -> Result<(SimClr, Box<dyn Optimizer>, Loader)> {
    let (kind, images) = match model {
        CheckModel::MnistEncoder => (DatasetKind::Mnist, noise_images(1, 28, steps * batch)?),
        CheckModel::ResNet => (DatasetKind::Cifar10, noise_images(3, 16, steps * batch)?),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let simclr = match model {
        CheckModel::MnistEncoder => SimClr::mnist(&mut rng),
        CheckModel::ResNet => SimClr::resnet(ResNet::resnet18(4, &mut rng), &mut rng),
    };
    let optimizer: Box<dyn Optimizer> = match optimizer {
        CheckOptimizer::Adam => Box::new(Adam::new(simclr.parameters(), AdamConfig::adam(1e-3))),
        CheckOptimizer::Sgd => Box::new(Sgd::new(
            simclr.parameters(),
            SgdConfig::new(0.05).momentum(0.9),
        )),
    };
    let shard = Shard {
        index: group.rank(),
        count: group.ranks(),
    };
    let cfg = LoaderConfig {
        shard,
        ..LoaderConfig::two_views(batch)
    };
    let augmenter = Augmenter::new(Recipe::Simclr, kind, 7);
    let loader = Loader::new(images, augmenter, cfg)?;
    Ok((simclr, optimizer, loader))
}

/// `n` images of uniform noise, `channels × side × side`.
fn noise_images(channels: usize, side: usize, n: usize) -> Result<ImageSet> {
    let mut rng = StdRng::seed_from_u64(5);
    let pixels = (0..n * channels * side * side).map(|_| rng.gen()).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    let names = simclr_data::mnist::class_names();
    Ok(ImageSet::new(pixels, labels, channels, side, side, names)?)
}

#[cfg(feature = "mpi")]
mod mpi_group {
    //! [`Collective`] on MPI's world communicator (rsmpi).

    use anyhow::{Context, Result};
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::environment::Universe;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::Threading;
    use simclr_tensor::Collective;

    /// MPI, initialised for the process's lifetime (finalised when dropped). Only the main
    /// thread calls it (`Threading::Funneled`): the collectives run between kernels, never
    /// inside rayon's workers.
    pub struct MpiGroup {
        world: SimpleCommunicator,
        _universe: Universe,
    }

    impl MpiGroup {
        pub fn init() -> Result<MpiGroup> {
            let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
                .context("MPI was already initialised")?;
            Ok(MpiGroup {
                world: universe.world(),
                _universe: universe,
            })
        }

        /// Ranks sharing this machine's memory (and cores).
        pub fn ranks_on_this_machine(&self) -> usize {
            self.world.split_shared(0).size() as usize
        }

        /// `MPI_Abort`: ends every rank of the job.
        pub fn abort(&self) -> ! {
            self.world.abort(1)
        }
    }

    impl std::fmt::Debug for MpiGroup {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "MPI rank {} of {}", self.rank(), self.ranks())
        }
    }

    impl Collective for MpiGroup {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn ranks(&self) -> usize {
            self.world.size() as usize
        }

        fn sum_f32(&self, values: &mut [f32]) {
            let mine = values.to_vec();
            self.world
                .all_reduce_into(&mine[..], values, SystemOperation::sum());
        }

        fn sum_f64(&self, values: &mut [f64]) {
            let mine = values.to_vec();
            self.world
                .all_reduce_into(&mine[..], values, SystemOperation::sum());
        }

        fn gather_f32(&self, local: &[f32]) -> Vec<f32> {
            let mut all = vec![0.0; local.len() * self.ranks()];
            self.world.all_gather_into(local, &mut all[..]);
            all
        }

        fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
            let root = self.world.process_at_rank(0);
            let mut len = bytes.len() as u64;
            root.broadcast_into(&mut len);
            bytes.resize(len as usize, 0);
            root.broadcast_into(&mut bytes[..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simclr_contrastive::resume;
    use simclr_tensor::ThreadGroup;

    /// Two ranks as threads of this process against one process, as CI's `mpirun` check does
    /// with MPI.
    fn two_thread_ranks(model: CheckModel, optimizer: CheckOptimizer) -> Comparison {
        let ranks: Vec<_> = ThreadGroup::new(2)
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    check_against_one_process(Rc::new(g), model, optimizer, 8, 3).unwrap()
                })
            })
            .collect();
        let mut results: Vec<_> = ranks.into_iter().map(|r| r.join().unwrap()).collect();
        assert!(results[1].is_none());
        let c = results.swap_remove(0).unwrap();
        assert_eq!(c.steps, 3);
        assert!(c.worst(optimizer) < 1e-5 && c.ranks_apart == 0.0, "{c:?}");
        c
    }

    #[test]
    fn two_ranks_train_the_mnist_encoder_as_one_process() {
        two_thread_ranks(CheckModel::MnistEncoder, CheckOptimizer::Sgd);
        two_thread_ranks(CheckModel::MnistEncoder, CheckOptimizer::Adam);
    }

    #[test]
    fn two_ranks_with_synced_batch_norm_train_a_resnet_as_one_process() {
        let c = two_thread_ranks(CheckModel::ResNet, CheckOptimizer::Sgd);
        assert!(c.weights < 1e-5, "{c:?}");
    }

    #[test]
    fn a_distributed_run_resumes_from_rank_0s_checkpoint_as_if_unbroken() {
        let dir = tempfile::tempdir().unwrap();
        // Every rank's final weights after `epochs` epochs of 2 steps, resumed or not; only
        // rank 0 is given the run directory (the others' path does not exist).
        let run = |epochs: usize, with_dir: bool, resumed: bool| -> Vec<Vec<f32>> {
            let ranks: Vec<_> = ThreadGroup::new(2)
                .into_iter()
                .map(|g| {
                    let run_dir = match g.rank() {
                        0 => dir.path().to_path_buf(),
                        _ => dir.path().join("not-on-this-machine"),
                    };
                    std::thread::spawn(move || {
                        let rank = g.rank() as u64;
                        let group: Rc<dyn Collective> = Rc::new(g);
                        let (model, mut opt, loader) =
                            check_run(CheckModel::ResNet, CheckOptimizer::Adam, &group, 8, 2, rank)
                                .unwrap();
                        let cfg = PretrainConfig {
                            run_dir: with_dir.then_some(run_dir),
                            max_steps_per_epoch: Some(2),
                            group,
                            ..PretrainConfig::report(epochs)
                        };
                        let go = if resumed { resume } else { pretrain };
                        go(&model, opt.as_mut(), &loader, &cfg, |_: &TrainEvent| {}).unwrap();
                        model
                            .state_dict()
                            .iter()
                            .flat_map(|(_, t)| t.to_vec())
                            .collect()
                    })
                })
                .collect();
            ranks.into_iter().map(|r| r.join().unwrap()).collect()
        };
        let unbroken = run(2, false, false);
        run(1, true, false);
        assert!(!dir.path().join("not-on-this-machine").exists());
        let resumed = run(2, true, true);
        assert_eq!(unbroken[0], unbroken[1]);
        assert_eq!(resumed, unbroken);
    }

    #[test]
    fn ranks_started_with_different_settings_are_refused() {
        let ranks: Vec<_> = ThreadGroup::new(2)
            .into_iter()
            .map(|g| std::thread::spawn(move || agree_on_config(&g, &[g.rank()]).is_ok()))
            .collect();
        let ok: Vec<bool> = ranks.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(ok, [true, false]);
    }

    #[test]
    fn distributed_without_a_launcher_says_how_to_start_it() {
        if LAUNCHER_VARIABLES
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            return; // this test itself runs under a launcher
        }
        let err = join(true).err().unwrap().to_string();
        assert!(err.contains("not started by an MPI launcher"), "{err}");
        assert!(join(false).unwrap().is_leader());
    }
}
