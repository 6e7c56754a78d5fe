//! The error types of pretraining and of evaluation.

use std::path::PathBuf;

use simclr_nn::CheckpointError;

/// Why pretraining (or resuming it) stopped.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    /// The loss became NaN or infinite; nothing was updated at that step and the last
    /// checkpoint written (if any) is left as it was.
    #[error(
        "the loss is {loss} at step {step} (epoch {epoch}, batch {batch}); {}",
        match last_good { Some(p) => format!("the last good checkpoint is {}", p.display()),
                          None => "no checkpoint was written before it".to_string() }
    )]
    NonFiniteLoss {
        /// Global step index (0-based) of the bad loss.
        step: usize,
        /// Epoch (0-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The value.
        loss: f32,
        /// The last checkpoint written (at an epoch's end or inside one), untouched.
        last_good: Option<PathBuf>,
    },
    /// An update made a weight NaN or infinite (a learning rate far too large, say); the
    /// last checkpoint written (if any) is left as it was.
    #[error(
        "the update of step {step} (epoch {epoch}, batch {batch}) made \
         `{parameter}` non-finite, so the learning rate is probably too large; {}",
        match last_good { Some(p) => format!("the last good checkpoint is {}", p.display()),
                          None => "no checkpoint was written before it".to_string() }
    )]
    NonFiniteWeights {
        /// Global step index (0-based) of the update.
        step: usize,
        /// Epoch (0-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The first parameter with a non-finite value.
        parameter: String,
        /// The last checkpoint written (at an epoch's end or inside one), untouched.
        last_good: Option<PathBuf>,
    },
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `resume` found no checkpoint in the run directory.
    #[error("cannot resume: no checkpoint `{}` in {}", crate::checkpoint::CHECKPOINT_FILE, dir.display())]
    NoCheckpoint {
        /// The run directory.
        dir: PathBuf,
    },
    /// The checkpoint belongs to a different run (its metadata disagrees with this one).
    #[error("cannot resume from {}: {reason}", path.display())]
    IncompatibleRun {
        /// The checkpoint.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The run directory could not be created.
    #[error("cannot create the run directory {}: {source}", dir.display())]
    RunDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ranks of a data-parallel run cannot go on together (the message says why; rank 0's
    /// own error, if it had one, is what rank 0 returns).
    #[error("the ranks of the distributed run cannot go on: {0}")]
    Ranks(String),
    /// The loader yields no batch (fewer images than one batch), or a batch has one pair.
    #[error("pretraining needs at least one batch of 2 or more images per epoch; {0}")]
    NoBatches(String),
}

/// Why a linear evaluation or a fine-tune stopped: it would otherwise report a NaN accuracy.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The frozen encoder gave a NaN or infinite feature (damaged weights or inputs).
    #[error(
        "the {set} features hold a non-finite value (image {image}, feature {feature}); \
         the encoder's weights or its inputs are damaged"
    )]
    NonFiniteFeatures {
        /// `labeled` or `test`.
        set: &'static str,
        /// Row of the first non-finite value.
        image: usize,
        /// Column of the first non-finite value.
        feature: usize,
    },
    /// The classifier's loss became NaN or infinite.
    #[error(
        "the classifier's loss is {loss} in epoch {epoch}, batch {batch}; \
         its learning rate is probably too large"
    )]
    NonFiniteLoss {
        /// Epoch (0-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The value.
        loss: f32,
    },
}
