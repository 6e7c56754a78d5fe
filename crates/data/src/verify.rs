//! Are the local dataset files the published ones?
//!
//! The parsers catch every malformed file, but not a well-formed one whose content was changed
//! — a label switched to another digit still parses, trains and gives a plausible accuracy.
//! Each known file's *content* (after decompression, so `x.gz` and `x` are checked alike) has
//! a published MD5: [`check_known_files`] compares them and lists the files that differ.
//!
//! Hashing means reading and decompressing every file again (about a second for CIFAR-10), so
//! the MD5s found are cached in `<dataset dir>/.simclr-verified`, one line per file with its
//! size and modification time: a file is hashed again only when it changes. A directory that
//! cannot be written is simply checked every time.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::download::md5_hex;
use crate::error::Result;
use crate::{cifar10, gz, mnist, DatasetKind};

/// Name of the cache of verified MD5s inside a dataset directory.
pub const CACHE_FILE: &str = ".simclr-verified";

/// MD5 of the (decompressed) content of each MNIST file, in [`mnist::FILES`] order.
const MNIST_MD5: [&str; 4] = [
    "6bbc9ace898e44ae57da46a324031adb",
    "a25bea736e30d166cdddb491f175f624",
    "2646ac647ad5339dbf082846283269ea",
    "27ae3e4e09519cfbb04c329615203637",
];

/// MD5 of each CIFAR-10 `.bin` batch: `data_batch_1..5`, then `test_batch`.
const CIFAR10_MD5: [&str; 6] = [
    "5dd7e06a14cb22eb9f671a540d1b7c25",
    "5ea93a67294ea407fff1d09f752e9692",
    "942cd6a4bcdd0dd3c604fbe906cb4421",
    "ae636b3ba5c66a11e91e8cb52e771fcb",
    "53f37980c15c3d472c316c40844f3f0d",
    "803d5f7f4d78ea53de84dbe85f74fb6d",
];

/// A local file whose content is not the published one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modified {
    /// The file.
    pub file: PathBuf,
    /// The published MD5 of its content.
    pub expected: String,
    /// The MD5 of the local content.
    pub found: String,
}

impl std::fmt::Display for Modified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: content MD5 {}, the published file's is {}",
            self.file.display(),
            self.found,
            self.expected
        )
    }
}

/// The known files of `kind` present in `dataset_dir` (the `mnist/` or
/// `cifar-10-batches-bin/` folder) whose content differs from the published one. Missing
/// files are not listed (loading reports them).
pub fn check_known_files(kind: DatasetKind, dataset_dir: &Path) -> Result<Vec<Modified>> {
    let known: Vec<(PathBuf, &'static str)> = match kind {
        DatasetKind::Mnist => mnist::FILES
            .iter()
            .zip(MNIST_MD5)
            .filter_map(|(stem, md5)| {
                let names = [format!("{stem}.gz"), stem.to_string()];
                Some((gz::first_existing(dataset_dir, &names)?, md5))
            })
            .collect(),
        DatasetKind::Cifar10 => cifar10::TRAIN_FILES
            .iter()
            .chain([&cifar10::TEST_FILE])
            .zip(CIFAR10_MD5)
            .filter_map(|(stem, md5)| {
                let names = [format!("{stem}.bin"), format!("{stem}.bin.gz")];
                Some((gz::first_existing(dataset_dir, &names)?, md5))
            })
            .collect(),
    };
    check_files(&known, &dataset_dir.join(CACHE_FILE))
}

/// `files` (path, published content MD5) whose content MD5 differs, hashing only the files
/// the `cache` does not already know at their current size and modification time.
fn check_files(files: &[(PathBuf, &str)], cache: &Path) -> Result<Vec<Modified>> {
    let cached = std::fs::read_to_string(cache).unwrap_or_default();
    let mut lines = Vec::new();
    let mut modified = Vec::new();
    for (file, expected) in files {
        let stamp = stamp_of(file);
        let from_cache = cached.lines().find_map(|line| {
            let (key, md5) = line.rsplit_once('\t')?;
            (key == stamp).then(|| md5.to_string())
        });
        let found = match from_cache {
            Some(md5) => md5,
            None => md5_hex(&gz::read(file)?),
        };
        lines.push(format!("{stamp}\t{found}\n"));
        if found != *expected {
            modified.push(Modified {
                file: file.clone(),
                expected: expected.to_string(),
                found,
            });
        }
    }
    // Best effort: a read-only data directory is checked again next time.
    let tmp = cache.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, lines.concat()).is_ok() && std::fs::rename(&tmp, cache).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(modified)
}

/// A file's name, size and modification time, as one cache key.
fn stamp_of(file: &Path) -> String {
    let meta = std::fs::metadata(file).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    format!("{name}\t{size}\t{mtime}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_listed_and_verdicts_are_cached_by_size_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"labels 1 2 3").unwrap();
        std::fs::write(&b, b"labels 1 2 4").unwrap();
        let published = md5_hex(b"labels 1 2 3");
        let files = [
            (a.clone(), published.as_str()),
            (b.clone(), published.as_str()),
        ];
        let cache = dir.path().join(CACHE_FILE);

        let modified = check_files(&files, &cache).unwrap();
        assert_eq!(modified.len(), 1);
        assert_eq!(modified[0].file, b);
        assert_eq!(modified[0].found, md5_hex(b"labels 1 2 4"));
        assert!(modified[0].to_string().contains(&published));

        // The verdicts are cached: with the cache saying `b` is fine, it is not hashed again.
        let text = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(text.lines().count(), 2);
        std::fs::write(&cache, text.replace(&modified[0].found, &published)).unwrap();
        assert!(check_files(&files, &cache).unwrap().is_empty());
        // Changing the file (its size here) makes it hashed again.
        std::fs::write(&b, b"labels 1 2 44").unwrap();
        assert_eq!(check_files(&files, &cache).unwrap().len(), 1);
    }

    #[test]
    fn gzipped_and_raw_files_are_checked_by_content() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b"content").unwrap();
        let gz = dir.path().join("x.gz");
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        let published = md5_hex(b"content");
        let cache = dir.path().join(CACHE_FILE);
        assert!(check_files(&[(gz, &published)], &cache).unwrap().is_empty());
    }

    #[test]
    fn generated_files_under_the_known_names_are_not_the_published_ones() {
        let dir = tempfile::tempdir().unwrap();
        for stem in mnist::FILES {
            std::fs::write(dir.path().join(stem), b"not mnist").unwrap();
        }
        let modified = check_known_files(DatasetKind::Mnist, dir.path()).unwrap();
        assert_eq!(modified.len(), 4);
        assert!(check_known_files(DatasetKind::Cifar10, dir.path())
            .unwrap()
            .is_empty());
    }
}
