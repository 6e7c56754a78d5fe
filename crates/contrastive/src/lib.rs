//! # simclr-contrastive
//!
//! SimCLR on top of `simclr-tensor`, `simclr-nn` and `simclr-data`.
//!
//! - [`nt_xent`]: the contrastive loss, one fused op with an analytic backward.

pub mod nt_xent;

pub use nt_xent::{check_nt_xent_shape, nt_xent};
