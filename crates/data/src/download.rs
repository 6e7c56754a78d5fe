//! Downloading missing dataset files from public mirrors, verified by checksum.
//!
//! A file is fetched from the first mirror that works, streamed to a temporary file next to
//! its destination while its MD5 / SHA-256 is computed (with a progress bar on a terminal),
//! and renamed into place only if the checksum equals the published one. A mismatch deletes
//! the temporary file and names the file and the mirror; an HTTP error or a transfer that
//! stops short is reported as such; when no mirror can even be reached, the error lists
//! every missing file with where to put it and where to get it, for an offline machine.
//!
//! Mirrors are plain base URLs (`https://host/dir/`), so tests point a [`Downloader`] at a
//! server on 127.0.0.1.
//!
//! MNIST is four `.gz` files with the MD5s published next to them (the ones torchvision
//! checks). CIFAR-10 is one tarball, `cifar-10-binary.tar.gz` (MD5
//! `c32a1d4ab5d03f1284b67883e8d87530`), from which the six `.bin` files and
//! `batches.meta.txt` are extracted.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::error::{DataError, Result};
use crate::{cifar10, mnist};

/// MNIST mirrors, tried in order.
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// CIFAR-10 mirrors, tried in order.
pub const CIFAR10_MIRRORS: [&str; 1] = ["https://www.cs.toronto.edu/~kriz/"];

/// The published checksum of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// MD5, lowercase hex.
    Md5(String),
    /// SHA-256, lowercase hex.
    Sha256(String),
}

impl Checksum {
    fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    fn expected(&self) -> String {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h.to_ascii_lowercase(),
        }
    }
}

/// A file on the mirrors: its name (relative to a mirror's base URL, and the local file
/// name) and its published checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, e.g. `train-images-idx3-ubyte.gz`.
    pub name: String,
    /// Published checksum.
    pub checksum: Checksum,
}

impl RemoteFile {
    /// A file with an MD5 checksum.
    pub fn md5(name: &str, md5: &str) -> Self {
        RemoteFile {
            name: name.to_string(),
            checksum: Checksum::Md5(md5.to_string()),
        }
    }
}

/// The four MNIST files with their official MD5s.
pub fn mnist_files() -> Vec<RemoteFile> {
    vec![
        RemoteFile::md5(
            "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        RemoteFile::md5(
            "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        RemoteFile::md5(
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        RemoteFile::md5(
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ]
}

/// The CIFAR-10 binary tarball with its official MD5.
pub fn cifar10_tarball() -> RemoteFile {
    RemoteFile::md5("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")
}

/// Fetches files from a list of mirrors.
#[derive(Clone, Debug)]
pub struct Downloader {
    /// Base URLs, tried in order (a missing trailing `/` is added).
    pub mirrors: Vec<String>,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Connect and read timeout.
    pub timeout: Duration,
}

impl Downloader {
    /// A downloader over `mirrors`, with a progress bar and a 30 s timeout.
    pub fn new<S: AsRef<str>>(mirrors: &[S]) -> Self {
        Downloader {
            mirrors: mirrors.iter().map(|m| m.as_ref().to_string()).collect(),
            progress: true,
            timeout: Duration::from_secs(30),
        }
    }

    /// The official MNIST mirrors.
    pub fn mnist() -> Self {
        Downloader::new(&MNIST_MIRRORS)
    }

    /// The official CIFAR-10 mirror.
    pub fn cifar10() -> Self {
        Downloader::new(&CIFAR10_MIRRORS)
    }

    fn url(mirror: &str, name: &str) -> String {
        if mirror.ends_with('/') {
            format!("{mirror}{name}")
        } else {
            format!("{mirror}/{name}")
        }
    }

    /// Downloads `file` into `dest` (the full destination path), trying each mirror until
    /// one delivers the right bytes. If every mirror fails, returns the first real failure
    /// (HTTP status, broken transfer, checksum mismatch), or [`DataError::Offline`] if no
    /// mirror could be reached at all.
    pub fn fetch(&self, file: &RemoteFile, dest: &Path) -> Result<()> {
        let mut first_failure = None;
        let mut unreachable = None;
        for mirror in &self.mirrors {
            match self.fetch_from(mirror, file, dest) {
                Ok(()) => return Ok(()),
                Err(e @ DataError::Offline { .. }) => {
                    unreachable.get_or_insert(e);
                }
                Err(e) => {
                    if self.mirrors.len() > 1 {
                        eprintln!("warning: {e}");
                    }
                    first_failure.get_or_insert(e);
                }
            }
        }
        Err(first_failure
            .or(unreachable)
            .unwrap_or_else(|| DataError::Offline {
                reason: "no mirror configured".into(),
                instructions: vec![self.instruction(file, dest)],
            }))
    }

    /// One line of "put this file there" instructions.
    fn instruction(&self, file: &RemoteFile, dest: &Path) -> String {
        let urls: Vec<String> = self
            .mirrors
            .iter()
            .map(|m| Self::url(m, &file.name))
            .collect();
        format!(
            "{}  <- {}  ({} {})",
            dest.display(),
            if urls.is_empty() {
                "?".to_string()
            } else {
                urls.join(" or ")
            },
            file.checksum.algorithm(),
            file.checksum.expected()
        )
    }

    fn fetch_from(&self, mirror: &str, file: &RemoteFile, dest: &Path) -> Result<()> {
        let url = Self::url(mirror, &file.name);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(self.timeout)
            .timeout_read(self.timeout)
            .build();
        let resp = match agent.get(&url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(status, _)) => {
                return Err(DataError::Http {
                    file: file.name.clone(),
                    url,
                    status,
                })
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(DataError::Offline {
                    reason: format!("{url}: {t}"),
                    instructions: vec![self.instruction(file, dest)],
                })
            }
        };
        let expected_len: Option<u64> = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok());
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
            file: dir.to_path_buf(),
            source,
        })?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file.name))
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|source| DataError::Io {
                file: dir.to_path_buf(),
                source,
            })?;
        let bar = if self.progress {
            let b = indicatif::ProgressBar::new(expected_len.unwrap_or(0));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(file.name.clone());
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut hasher = Hasher::new(&file.checksum);
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut received = 0u64;
        let transfer_err = |received, reason: String| DataError::Transfer {
            file: file.name.clone(),
            url: url.clone(),
            received,
            expected: expected_len,
            reason,
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(transfer_err(received, e.to_string())),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(|source| DataError::Io {
                file: tmp.path().to_path_buf(),
                source,
            })?;
            received += n as u64;
            bar.set_position(received);
        }
        bar.finish_and_clear();
        if let Some(len) = expected_len {
            if received != len {
                return Err(transfer_err(
                    received,
                    "connection closed before the announced length".into(),
                ));
            }
        }
        let actual = hasher.finish();
        let expected = file.checksum.expected();
        if actual != expected {
            // Dropping `tmp` deletes the temporary file.
            return Err(DataError::Checksum {
                file: file.name.clone(),
                mirror: mirror.to_string(),
                algorithm: file.checksum.algorithm(),
                expected,
                actual,
            });
        }
        tmp.as_file().sync_all().map_err(|source| DataError::Io {
            file: tmp.path().to_path_buf(),
            source,
        })?;
        tmp.persist(dest).map_err(|e| DataError::Io {
            file: dest.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }
}

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(c: &Checksum) -> Self {
        match c {
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
        }
    }
    fn finish(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        hex(&bytes)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 of `bytes` as lowercase hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// Rewrites an `Offline` error so that its instructions list every file in `missing`.
fn offline_for_all(
    err: DataError,
    dl: &Downloader,
    missing: &[(RemoteFile, PathBuf)],
) -> DataError {
    match err {
        DataError::Offline { reason, .. } => DataError::Offline {
            reason,
            instructions: missing.iter().map(|(f, p)| dl.instruction(f, p)).collect(),
        },
        e => e,
    }
}

/// Downloads whichever of the four MNIST files is missing from `mnist_dir` (a file counts as
/// present as `.gz` or uncompressed).
pub fn ensure_mnist(mnist_dir: &Path, dl: &Downloader) -> Result<()> {
    ensure_mnist_files(mnist_dir, dl, &mnist_files())
}

/// [`ensure_mnist`] with explicit files and checksums (tests serve their own files).
pub fn ensure_mnist_files(mnist_dir: &Path, dl: &Downloader, files: &[RemoteFile]) -> Result<()> {
    let missing: Vec<(RemoteFile, PathBuf)> = files
        .iter()
        .filter(|f| {
            let raw = f.name.strip_suffix(".gz").unwrap_or(&f.name);
            !mnist_dir.join(&f.name).is_file() && !mnist_dir.join(raw).is_file()
        })
        .map(|f| (f.clone(), mnist_dir.join(&f.name)))
        .collect();
    for (f, dest) in &missing {
        dl.fetch(f, dest)
            .map_err(|e| offline_for_all(e, dl, &missing))?;
    }
    Ok(())
}

/// True if all six CIFAR-10 batches are in `cifar_dir` (as `.bin` or `.bin.gz`).
pub fn cifar10_present(cifar_dir: &Path) -> bool {
    cifar10::TRAIN_FILES
        .iter()
        .chain(std::iter::once(&cifar10::TEST_FILE))
        .all(|s| {
            cifar_dir.join(format!("{s}.bin")).is_file()
                || cifar_dir.join(format!("{s}.bin.gz")).is_file()
        })
}

/// Downloads and extracts the CIFAR-10 tarball into `cifar_dir` unless all batches are there.
pub fn ensure_cifar10(cifar_dir: &Path, dl: &Downloader) -> Result<()> {
    ensure_cifar10_from(cifar_dir, dl, &cifar10_tarball())
}

/// [`ensure_cifar10`] with an explicit tarball name and checksum (tests serve their own).
pub fn ensure_cifar10_from(cifar_dir: &Path, dl: &Downloader, tarball: &RemoteFile) -> Result<()> {
    if cifar10_present(cifar_dir) {
        return Ok(());
    }
    let parent = cifar_dir.parent().unwrap_or(Path::new("."));
    let tar_path = parent.join(&tarball.name);
    if !tar_path.is_file() {
        dl.fetch(tarball, &tar_path).map_err(|e| match e {
            DataError::Offline { reason, .. } => DataError::Offline {
                reason,
                instructions: vec![
                    dl.instruction(tarball, &tar_path),
                    format!(
                        "or extract {} so that {} holds data_batch_1..5.bin and test_batch.bin (gzipped .bin.gz also works)",
                        tarball.name,
                        cifar_dir.display()
                    ),
                ],
            },
            e => e,
        })?;
    }
    extract_cifar10(&tar_path, cifar_dir)?;
    std::fs::remove_file(&tar_path).map_err(|source| DataError::Io {
        file: tar_path.clone(),
        source,
    })?;
    Ok(())
}

/// Extracts the batches and `batches.meta.txt` of a CIFAR-10 binary tarball into
/// `cifar_dir`. Only the file-name part of each member is used (no path from the archive
/// is trusted); each file goes through a temporary file and a rename.
pub fn extract_cifar10(tar_gz: &Path, cifar_dir: &Path) -> Result<()> {
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| DataError::Io { file, source }
    };
    std::fs::create_dir_all(cifar_dir).map_err(io(cifar_dir))?;
    let f = File::open(tar_gz).map_err(io(tar_gz))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let wanted: Vec<String> = cifar10::TRAIN_FILES
        .iter()
        .chain(std::iter::once(&cifar10::TEST_FILE))
        .map(|s| format!("{s}.bin"))
        .chain(std::iter::once(cifar10::META_FILE.to_string()))
        .collect();
    let gz_err = |e: std::io::Error| DataError::Gzip {
        file: tar_gz.to_path_buf(),
        offset: 0,
        reason: e.to_string(),
    };
    for entry in archive.entries().map_err(gz_err)? {
        let mut entry = entry.map_err(gz_err)?;
        let name = match entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        {
            Some(n) => n.to_string_lossy().into_owned(),
            None => continue,
        };
        if !wanted.contains(&name) || !entry.header().entry_type().is_file() {
            continue;
        }
        let dest = cifar_dir.join(&name);
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".part")
            .tempfile_in(cifar_dir)
            .map_err(io(cifar_dir))?;
        std::io::copy(&mut entry, &mut tmp).map_err(gz_err)?;
        tmp.persist(&dest).map_err(|e| DataError::Io {
            file: dest.clone(),
            source: e.error,
        })?;
    }
    if !cifar10_present(cifar_dir) {
        return Err(DataError::Missing {
            files: vec![format!(
                "{} does not contain all of data_batch_1..5.bin and test_batch.bin",
                tar_gz.display()
            )],
        });
    }
    Ok(())
}

/// Makes sure MNIST is in `<data_dir>/mnist` (downloading what is missing if `dl` is given)
/// and loads it.
pub fn load_mnist(
    data_dir: &Path,
    dl: Option<&Downloader>,
) -> Result<(crate::ImageSet, crate::ImageSet)> {
    let dir = data_dir.join(mnist::DIR);
    if let Some(dl) = dl {
        ensure_mnist(&dir, dl)?;
    }
    mnist::load(&dir)
}

/// Makes sure CIFAR-10 is in `<data_dir>/cifar-10-batches-bin` (downloading the tarball if
/// `dl` is given and batches are missing) and loads it.
pub fn load_cifar10(
    data_dir: &Path,
    dl: Option<&Downloader>,
) -> Result<(crate::ImageSet, crate::ImageSet)> {
    let dir = data_dir.join(cifar10::DIR);
    if let Some(dl) = dl {
        ensure_cifar10(&dir, dl)?;
    }
    cifar10::load(&dir)
}
