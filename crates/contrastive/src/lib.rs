//! # simclr-contrastive
//!
//! SimCLR — contrastive self-supervised learning — on top of `simclr-tensor` (autodiff and
//! kernels), `simclr-nn` (layers, encoders, optimizers, checkpoints) and `simclr-data`
//! (datasets and the two-view loader). Read it in this order:
//!
//! 1. [`nt_xent`](mod@nt_xent): the contrastive loss — [`nt_xent::reference`] as the formula
//!    reads, then one fused op with an analytic backward.
//! 2. [`model`]: [`SimClr`] = encoder + projection head.
//! 3. [`pretrain`](mod@pretrain): the training loop, its [`TrainEvent`]s, and [`checkpoint`]s that make a
//!    run resumable bit for bit.
//! 4. [`distributed`]: the same loop as one rank of a data-parallel run — synced batch norm,
//!    the loss over every rank's projections, gradients summed.
//! 5. [`features`], [`linear_eval`](mod@linear_eval) and [`knn`]: how the learned features are judged — a
//!    linear probe on frozen features (the report's protocol), a kNN monitor, a fine-tune.
//!
//! ```no_run
//! use rand::{rngs::StdRng, SeedableRng};
//! use simclr_contrastive::{pretrain, linear_eval, LinearEvalConfig, PretrainConfig, SimClr};
//! use simclr_data::{Augmenter, DatasetKind, Loader, LoaderConfig, Recipe};
//! use simclr_nn::{Adam, AdamConfig, Module};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (train, test) = simclr_data::load_mnist("data".as_ref(), None)?;
//! let seed = 0;
//! let model = SimClr::mnist(&mut StdRng::seed_from_u64(seed));
//! let mut opt = Adam::new(model.parameters(), AdamConfig::adam(1e-3));
//! let aug = Augmenter::new(Recipe::Simclr, DatasetKind::Mnist, seed);
//! let loader = Loader::new(train.subset(0..24_000)?, aug, LoaderConfig::two_views(256))?;
//! pretrain(&model, &mut opt, &loader, &PretrainConfig::report(10), |event| {
//!     println!("{}", serde_json::to_string(event).unwrap())
//! })?;
//! let labeled = train.subset(24_000..30_000)?;
//! let norm = DatasetKind::Mnist.normalize();
//! let report = linear_eval(&*model.encoder, &labeled, &test, &norm,
//!                          &LinearEvalConfig::default(), |_| {})?;
//! println!("test accuracy {:.2} %", 100.0 * report.test_accuracy);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
pub mod distributed;
mod error;
pub mod features;
pub mod knn;
pub mod linear_eval;
pub mod model;
pub mod nt_xent;
pub mod pretrain;

pub use checkpoint::{
    load_checkpoint, load_checkpoint_of_rank0, read_run_state, save_checkpoint, EpochProgress,
    RunState,
};
pub use error::{EvalError, PretrainError};
pub use features::{extract_features, features_of};
pub use knn::{knn_accuracy, knn_eval, KnnConfig, KnnReport};
pub use linear_eval::{
    fine_tune, fine_tune_loader, linear_eval, linear_eval_on_features, ClassifierEpoch, EvalReport,
    FineTuneConfig, LinearEvalConfig,
};
pub use model::SimClr;
pub use nt_xent::{check_nt_xent_shape, nt_xent};
pub use pretrain::{
    pretrain, resume, EpochStats, MidEpochCheckpoint, PretrainConfig, PretrainSummary, StepStats,
    TrainEvent,
};
