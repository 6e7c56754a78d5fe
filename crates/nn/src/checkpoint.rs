//! Checkpoints in the safetensors format, keyed by PyTorch state-dict names.
//!
//! A checkpoint file holds, as f32 tensors:
//!
//! * the model's parameters and buffers under their state-dict names (`layer1.0.conv1.weight`,
//!   `bn1.running_mean`, …) — so a torchvision state dict saved with
//!   `safetensors.torch.save_file` loads directly into our ResNet, and our files load in
//!   PyTorch;
//! * optionally the optimizer's state under `optimizer.` (`optimizer.lr`,
//!   `optimizer.3.exp_avg`, …);
//! * a small string→string metadata map in the safetensors header (epoch, seed, serialised
//!   config, …).
//!
//! Files are byte-deterministic (tensors sorted by name, metadata by key) and carry the CRC-32
//! of their tensor bytes, which loading verifies: damaged weights are an error, not a silent
//! resume. Writes are atomic: the bytes go to a temporary file in the destination's directory, which is
//! synced and then renamed over the destination, so a crash leaves either the old file or the
//! new one, never a torn one.
//!
//! Loading first checks everything — missing keys, unexpected keys, wrong shapes, wrong dtypes
//! — and returns a [`CheckpointError::Mismatch`] listing every problem by key, changing nothing;
//! only a clean check copies the values into the model (and optimizer). [`LoadOptions`] can
//! tolerate the differences between a torchvision ImageNet ResNet and our CIFAR encoder: the
//! classifier `fc.*` and the 7×7 `conv1.weight` are skipped and reported in the [`LoadReport`].
//! PyTorch stores BatchNorm's `num_batches_tracked` as int64; that one key may be I64.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};
use simclr_tensor::Tensor;

use crate::module::Module;
use crate::optim::Optimizer;

/// Prefix of the optimizer-state keys in a checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// One reason a checkpoint does not fit the model, naming the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// The model (or optimizer) needs this key and the file lacks it.
    Missing(String),
    /// The file has this key and nothing in the model (or optimizer) takes it.
    Unexpected(String),
    /// The key's shape in the file differs from the model's.
    Shape {
        /// The key.
        key: String,
        /// The shape the model has.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The key's dtype is not F32 (nor I64 for `num_batches_tracked`).
    Dtype {
        /// The key.
        key: String,
        /// The dtype in the file.
        found: String,
    },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Missing(k) => write!(f, "missing key `{k}`"),
            KeyProblem::Unexpected(k) => write!(f, "unexpected key `{k}`"),
            KeyProblem::Shape {
                key,
                expected,
                found,
            } => write!(
                f,
                "key `{key}` has shape {found:?}, the model expects {expected:?}"
            ),
            KeyProblem::Dtype { key, found } => {
                write!(f, "key `{key}` has dtype {found}, expected F32")
            }
        }
    }
}

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors (or cannot be encoded as such).
    #[error("{}: invalid safetensors data: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tensor bytes do not match the checksum the file was written with.
    #[error("{}: the tensor bytes are damaged (CRC-32 {found}, written as {expected})", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The checksum in the file's metadata.
        expected: String,
        /// The checksum of the bytes read.
        found: String,
    },
    /// Two tensors to save share a name.
    #[error("{}: duplicate tensor name `{key}`", path.display())]
    DuplicateKey {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        key: String,
    },
    /// The file does not fit the model / optimizer; every offending key is listed.
    #[error("{}: checkpoint does not match ({} problems):\n  {}", path.display(), problems.len(),
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<KeyProblem>,
    },
    /// A requested tensor is not in the file.
    #[error("{}: no tensor named `{key}`", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
        /// The requested name.
        key: String,
    },
}

/// What a load may tolerate beyond an exact match.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// File keys starting with one of these prefixes that the model does not have are skipped
    /// (and reported) instead of being errors, e.g. `"fc."` for a torchvision classifier.
    pub skip_unexpected_prefixes: Vec<String>,
    /// These keys are skipped (and reported), keeping the model's current values, when their
    /// shape differs from the model's — e.g. `"conv1.weight"` of an ImageNet stem.
    pub skip_shape_mismatch: Vec<String>,
}

impl LoadOptions {
    /// Exact match required (the default).
    pub fn strict() -> LoadOptions {
        LoadOptions::default()
    }

    /// For a torchvision ResNet state dict loaded into our CIFAR-stem, fc-less ResNet: skips
    /// `fc.*` and a `conv1.weight` of another shape (ImageNet's 7×7 stem), reporting both.
    pub fn torchvision_resnet() -> LoadOptions {
        LoadOptions {
            skip_unexpected_prefixes: vec!["fc.".to_string()],
            skip_shape_mismatch: vec!["conv1.weight".to_string()],
        }
    }
}

/// What a successful load did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Keys whose values were copied into the model or optimizer.
    pub loaded: Vec<String>,
    /// Keys in the file that were not used, each with the reason.
    pub skipped: Vec<(String, String)>,
    /// The file's metadata.
    pub metadata: BTreeMap<String, String>,
}

/// One stored tensor: its dtype, shape and raw little-endian bytes.
#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Entry {
    /// The values as f32 if the dtype allows it for this key.
    fn to_f32(&self, key: &str) -> Result<Vec<f32>, KeyProblem> {
        match self.dtype {
            Dtype::F32 => Ok(self
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            Dtype::I64 if key.ends_with("num_batches_tracked") => Ok(self
                .bytes
                .chunks_exact(8)
                .map(|b| {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect()),
            other => Err(KeyProblem::Dtype {
                key: key.to_string(),
                found: format!("{other:?}"),
            }),
        }
    }
}

/// A safetensors file read into memory: named tensors plus metadata.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Reads and validates a safetensors file.
    pub fn read(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        Checkpoint::parse(path, &bytes)
    }

    /// Validates the bytes of a safetensors file read from `path` elsewhere (by another rank
    /// of a data-parallel run; `path` names it in errors).
    pub fn parse(path: PathBuf, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let format_err = |e: safetensors::SafeTensorError| CheckpointError::Format {
            path: path.clone(),
            message: e.to_string(),
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format_err)?;
        let st = SafeTensors::deserialize(bytes).map_err(format_err)?;
        let entries = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let entry = Entry {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                };
                (name, entry)
            })
            .collect();
        let mut metadata: BTreeMap<String, String> = meta
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        if let Some(expected) = metadata.remove(CHECKSUM_KEY) {
            // `deserialize` has checked the header length and that the offsets cover the rest.
            let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
            let found = format!("{:08x}", crc32fast::hash(&bytes[8 + header_len..]));
            if found != expected {
                return Err(CheckpointError::Corrupt {
                    path,
                    expected,
                    found,
                });
            }
        }
        Ok(Checkpoint {
            path,
            entries,
            metadata,
        })
    }

    /// The file's string metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The names of all stored tensors, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The stored tensor `key` as an f32 tensor (I64 is accepted for `num_batches_tracked`).
    pub fn tensor(&self, key: &str) -> Result<Tensor, CheckpointError> {
        let entry = self
            .entries
            .get(key)
            .ok_or_else(|| CheckpointError::NotFound {
                path: self.path.clone(),
                key: key.to_string(),
            })?;
        let values = entry.to_f32(key).map_err(|p| self.mismatch(vec![p]))?;
        Ok(Tensor::from_vec(values, &entry.shape))
    }

    fn mismatch(&self, problems: Vec<KeyProblem>) -> CheckpointError {
        CheckpointError::Mismatch {
            path: self.path.clone(),
            problems,
        }
    }

    /// Copies the stored values into `model` (and `optimizer`, from the `optimizer.` keys),
    /// after checking that every key fits; see the module docs. Optimizer keys are ignored
    /// when no optimizer is given.
    pub fn load_into(
        &self,
        model: &dyn Module,
        optimizer: Option<&mut dyn Optimizer>,
        options: &LoadOptions,
    ) -> Result<LoadReport, CheckpointError> {
        let mut problems = Vec::new();
        let mut report = LoadReport {
            metadata: self.metadata.clone(),
            ..LoadReport::default()
        };
        // (file key, destination tensor, values) for every value to copy.
        let mut model_copies: Vec<(String, Tensor, Vec<f32>)> = Vec::new();
        let mut used: std::collections::HashSet<&str> = std::collections::HashSet::new();

        for (key, dest) in model.state_dict() {
            let Some(entry) = self.entries.get(&key) else {
                problems.push(KeyProblem::Missing(key));
                continue;
            };
            used.insert(self.entries.get_key_value(&key).expect("present").0);
            if entry.shape != dest.shape() {
                if options.skip_shape_mismatch.contains(&key) {
                    report.skipped.push((
                        key.clone(),
                        format!(
                            "shape {:?} differs from the model's {:?}; kept the model's values",
                            entry.shape,
                            dest.shape()
                        ),
                    ));
                } else {
                    problems.push(KeyProblem::Shape {
                        key,
                        expected: dest.shape().to_vec(),
                        found: entry.shape.clone(),
                    });
                }
                continue;
            }
            match entry.to_f32(&key) {
                Ok(values) => model_copies.push((key, dest, values)),
                Err(p) => problems.push(p),
            }
        }

        // The optimizer's expected state, by full key.
        let mut optim_values: Vec<(String, Tensor)> = Vec::new();
        if let Some(opt) = optimizer.as_ref() {
            for (name, template) in opt.state() {
                let key = format!("{OPTIMIZER_PREFIX}{name}");
                let Some(entry) = self.entries.get(&key) else {
                    problems.push(KeyProblem::Missing(key));
                    continue;
                };
                used.insert(self.entries.get_key_value(&key).expect("present").0);
                if entry.shape != template.shape() {
                    problems.push(KeyProblem::Shape {
                        key,
                        expected: template.shape().to_vec(),
                        found: entry.shape.clone(),
                    });
                    continue;
                }
                match entry.to_f32(&key) {
                    Ok(values) => optim_values.push((name, Tensor::from_vec(values, &entry.shape))),
                    Err(p) => problems.push(p),
                }
            }
        }

        for key in self.entries.keys() {
            if used.contains(key.as_str()) {
                continue;
            }
            if key.starts_with(OPTIMIZER_PREFIX) && optimizer.is_none() {
                report
                    .skipped
                    .push((key.clone(), "optimizer state (no optimizer given)".into()));
            } else if options
                .skip_unexpected_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_str()))
            {
                report.skipped.push((
                    key.clone(),
                    "not part of the model (skipped by option)".into(),
                ));
            } else {
                problems.push(KeyProblem::Unexpected(key.clone()));
            }
        }

        if !problems.is_empty() {
            return Err(self.mismatch(problems));
        }
        for (key, dest, values) in model_copies {
            dest.data_mut().copy_from_slice(&values);
            report.loaded.push(key);
        }
        if let Some(opt) = optimizer {
            opt.load_state(&optim_values).map_err(|e| {
                self.mismatch(vec![KeyProblem::Missing(format!(
                    "{OPTIMIZER_PREFIX}: {e}"
                ))])
            })?;
            report.loaded.extend(
                optim_values
                    .into_iter()
                    .map(|(n, _)| format!("{OPTIMIZER_PREFIX}{n}")),
            );
        }
        Ok(report)
    }
}

/// The metadata key holding the CRC-32 of a file's tensor bytes: [`save_tensors`] writes it and
/// [`Checkpoint::read`] verifies it when present (files from elsewhere lack it).
pub const CHECKSUM_KEY: &str = "simclr.crc32";

/// Writes named f32 tensors and metadata to `path` atomically (temp file + rename).
///
/// The encoding is safetensors' — an 8-byte little-endian header length, the JSON header padded
/// with spaces to a multiple of 8, then the tensors' bytes in the header's order — written here
/// rather than by `safetensors::serialize`, whose metadata passes through a `HashMap` and comes
/// out in another order every run. Tensors are sorted by name and the metadata by key, so equal
/// weights and metadata give byte-identical files. The CRC-32 of the tensor bytes is added to
/// the metadata under [`CHECKSUM_KEY`].
pub fn save_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let mut sorted: BTreeMap<&str, &Tensor> = BTreeMap::new();
    for (name, t) in tensors {
        if sorted.insert(name.as_str(), t).is_some() {
            return Err(CheckpointError::DuplicateKey {
                path: path.to_path_buf(),
                key: name.clone(),
            });
        }
    }
    let mut data = Vec::new();
    let mut header = serde_json::Map::new();
    for (name, t) in &sorted {
        let begin = data.len();
        data.extend(t.data().iter().flat_map(|v| v.to_le_bytes()));
        let entry = serde_json::json!({
            "dtype": "F32",
            "shape": t.shape(),
            "data_offsets": [begin, data.len()],
        });
        header.insert(name.to_string(), entry);
    }
    let mut metadata = metadata.clone();
    metadata.insert(
        CHECKSUM_KEY.to_string(),
        format!("{:08x}", crc32fast::hash(&data)),
    );
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut header = serde_json::to_vec(&header).expect("a JSON map of strings and numbers");
    header.resize(header.len().next_multiple_of(8), b' ');

    let mut bytes = Vec::with_capacity(8 + header.len() + data.len());
    bytes.extend((header.len() as u64).to_le_bytes());
    bytes.extend(header);
    bytes.extend(data);
    write_atomic(path, &bytes)
}

/// Saves `model`'s parameters and buffers, `optimizer`'s state (under `optimizer.`) and
/// `metadata` to `path`, atomically.
pub fn save(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: Option<&dyn Optimizer>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let mut tensors = model.state_dict();
    if let Some(opt) = optimizer {
        tensors.extend(
            opt.state()
                .into_iter()
                .map(|(n, t)| (format!("{OPTIMIZER_PREFIX}{n}"), t)),
        );
    }
    save_tensors(path, &tensors, metadata)
}

/// Reads `path` and loads it into `model` (and `optimizer`); see [`Checkpoint::load_into`].
pub fn load(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: Option<&mut dyn Optimizer>,
    options: &LoadOptions,
) -> Result<LoadReport, CheckpointError> {
    Checkpoint::read(path)?.load_into(model, optimizer, options)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself (best effort: not every platform can open a directory).
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}
