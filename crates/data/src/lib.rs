//! `simclr-data`: datasets for SimCLR as plain arrays.
//!
//! The path of the data, from disk to a training step:
//!
//! 1. **Where** — [`resolve_data_dir`]: `--data-dir`, else `$SIMCLR_DATA_DIR`, else `./data`,
//!    holding `mnist/` and `cifar-10-batches-bin/`.
//! 2. **Get** — [`download`]: missing files come from the public mirrors, checksum-verified;
//!    [`verify`]: local files are checked against the published content checksums.
//! 3. **Parse** — [`mnist`] (IDX) and [`cifar10`] (binary batches), gzipped or raw, into an
//!    [`ImageSet`] of `u8` CHW images; every malformed input is a typed [`DataError`] naming
//!    file, field and byte offset.
//! 4. **Split** — [`Split`]: the report's chunks as index ranges (`0..24000`, ...).
//! 5. **Augment** — [`augment`]: seeded crop / flip / rotation / blur / colour transforms and
//!    the named [`Recipe`]s.
//! 6. **Load** — [`Loader`]: shuffled batches of one or two normalised `f32` views
//!    (`[2B, C, H, W]`), made in parallel and prefetched on a background thread.
//!
//! This crate does not know about tensors: the training code wraps [`Batch::data`] itself.

pub mod augment;
pub mod cifar10;
mod dataset;
pub mod download;
mod error;
pub mod grid;
pub mod gz;
pub mod idx;
pub mod loader;
pub mod mnist;
mod normalize;
pub mod split;
pub mod verify;

pub use augment::{Augmenter, Pipeline, Recipe};
pub use dataset::ImageSet;
pub use download::{load_cifar10, load_mnist, Downloader};
pub use error::{DataError, Result};
pub use grid::augment_grid_png;
pub use loader::{Batch, Epoch, Loader, LoaderConfig, Shard};
pub use normalize::{DatasetKind, Normalize};
pub use split::{parse_range, Split};

use std::path::{Path, PathBuf};

/// Name of the environment variable that points at the data directory.
pub const DATA_DIR_ENV: &str = "SIMCLR_DATA_DIR";

/// The data directory: `cli` (a `--data-dir` flag) if given, else `$SIMCLR_DATA_DIR` if set
/// and non-empty, else `./data`.
pub fn resolve_data_dir(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(DATA_DIR_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("data"),
    }
}

/// **For tests.** The real-data directory for a test that needs the datasets, or `None` if
/// the test should skip.
///
/// - `SIMCLR_DATA_DIR` unset (or empty): prints `skipped: ...` and returns `None` — unless
///   `CI=true`, where it **panics** (fails the test), so CI cannot pass by running nothing.
/// - set to a directory that does not exist or cannot be listed: **panics** (a
///   misconfiguration, never a silent skip).
/// - otherwise returns the directory.
///
/// Call it first in a real-data test: `let Some(dir) = simclr_data::test_data_dir() else { return };`
pub fn test_data_dir() -> Option<PathBuf> {
    let ci = std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    match std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        None if ci => panic!(
            "CI=true but {DATA_DIR_ENV} is not set: real-data tests must run in CI (set it to the shared data dir)"
        ),
        None => {
            eprintln!(
                "skipped: real-data test needs {DATA_DIR_ENV} (e.g. {DATA_DIR_ENV}=../shared/data); it is not set"
            );
            None
        }
        Some(v) => {
            let dir = PathBuf::from(v);
            if let Err(e) = std::fs::read_dir(&dir) {
                panic!("{DATA_DIR_ENV}={} is not a readable directory: {e}", dir.display());
            }
            Some(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_data_dir_wins() {
        // (The environment fallbacks are not tested here: tests share one environment.)
        assert_eq!(
            resolve_data_dir(Some(Path::new("/x/y"))),
            PathBuf::from("/x/y")
        );
    }
}
