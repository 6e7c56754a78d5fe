//! Test helpers: a tiny gzip'd IDX reader for MNIST and the `SIMCLR_DATA_DIR` skip/fail policy.
//!
//! The `data` crate owns the real parsers; this minimal copy keeps the baselines' tests free of
//! a dependency on it.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

/// One MNIST split: `n` images of `rows × cols` bytes, and their labels.
pub struct Mnist {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub pixels_per_image: usize,
}

fn read_gz(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .map_err(|e| format!("{}: gzip: {e}", path.display()))?;
    Ok(out)
}

fn be_u32(b: &[u8], at: usize, path: &Path) -> Result<usize, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or_else(|| format!("{}: truncated header at byte {at}", path.display()))
}

/// Reads an IDX image file (magic 0x00000803) and label file (magic 0x00000801).
pub fn read_idx_pair(images: &Path, labels: &Path) -> Result<Mnist, String> {
    let ib = read_gz(images)?;
    if be_u32(&ib, 0, images)? != 0x803 {
        return Err(format!("{}: bad magic", images.display()));
    }
    let n = be_u32(&ib, 4, images)?;
    let ppi = be_u32(&ib, 8, images)? * be_u32(&ib, 12, images)?;
    let body = ib
        .get(16..16 + n * ppi)
        .ok_or_else(|| format!("{}: {n} images declared, file too short", images.display()))?;
    let lb = read_gz(labels)?;
    if be_u32(&lb, 0, labels)? != 0x801 {
        return Err(format!("{}: bad magic", labels.display()));
    }
    let nl = be_u32(&lb, 4, labels)?;
    if nl != n {
        return Err(format!("{}: {nl} labels for {n} images", labels.display()));
    }
    let lbody = lb
        .get(8..8 + n)
        .ok_or_else(|| format!("{}: file too short", labels.display()))?;
    Ok(Mnist {
        images: body.to_vec(),
        labels: lbody.to_vec(),
        pixels_per_image: ppi,
    })
}

/// The MNIST directory from `SIMCLR_DATA_DIR`, or `None` (with a message) to skip.
///
/// With `CI=true` a missing variable or directory panics: CI must not pass by running nothing.
pub fn mnist_dir(test: &str) -> Option<PathBuf> {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    match std::env::var_os("SIMCLR_DATA_DIR") {
        None => {
            assert!(!ci, "{test}: CI=true but SIMCLR_DATA_DIR is not set");
            println!("SKIPPED {test}: SIMCLR_DATA_DIR is not set (real-data test not run)");
            None
        }
        Some(dir) => {
            let dir = PathBuf::from(dir).join("mnist");
            if !dir.is_dir() {
                assert!(!ci, "{test}: CI=true but {} is missing", dir.display());
                println!("SKIPPED {test}: {} does not exist", dir.display());
                return None;
            }
            Some(dir)
        }
    }
}

/// Loads (train, test) MNIST from `dir`, panicking with the reason when a file is unreadable.
pub fn load_mnist(dir: &Path) -> (Mnist, Mnist) {
    let train = read_idx_pair(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap_or_else(|e| panic!("cannot read MNIST train: {e}"));
    let test = read_idx_pair(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap_or_else(|e| panic!("cannot read MNIST test: {e}"));
    (train, test)
}
