//! One error type for the whole crate.
//!
//! Every parser error names the **file**, the **field** being read and the **byte offset** at
//! which the problem was found, so a message such as
//! `data/mnist/train-labels-idx1-ubyte.gz: field `label` of record 17 at byte 25: value 12 is outside 0..=9`
//! is enough to open the file in a hex editor and look. Offsets are counted in the
//! *decompressed* stream for parse errors and in the *compressed* file for gzip errors.
//!
//! Nothing in this crate panics on bad input: every failure is one of these variants.

use std::path::PathBuf;

/// Everything that can go wrong while finding, downloading, parsing or augmenting data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read (missing, permissions, ...).
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file being read.
        file: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// The file starts like gzip but its stream is corrupt or cut short.
    #[error("{file}: corrupt gzip stream (failed after compressed byte {offset}): {reason}")]
    Gzip {
        /// The compressed file.
        file: PathBuf,
        /// How many compressed bytes had been consumed when decoding failed.
        offset: u64,
        /// What the decoder reported.
        reason: String,
    },

    /// The magic number at the start of an IDX file is not the expected one.
    #[error("{file}: field `{field}` at byte {offset}: wrong magic 0x{found:08x}, expected 0x{expected:08x}")]
    BadMagic {
        /// The file being parsed.
        file: PathBuf,
        /// Always `magic`.
        field: &'static str,
        /// Byte offset of the field (0 for IDX).
        offset: u64,
        /// The magic this parser expects.
        expected: u32,
        /// The magic found in the file.
        found: u32,
    },

    /// A header dimension has a value this dataset cannot have (e.g. 27 rows for MNIST).
    #[error("{file}: field `{field}` at byte {offset}: value {found}, expected {expected}")]
    BadDimension {
        /// The file being parsed.
        file: PathBuf,
        /// The header field, e.g. `rows`.
        field: &'static str,
        /// Byte offset of the field.
        offset: u64,
        /// What was expected, in words.
        expected: String,
        /// The value found.
        found: u64,
    },

    /// The header's dimensions promise fewer bytes than the file holds (trailing data).
    #[error("{file}: field `{field}` at byte {offset}: header declares {declared} data bytes but {actual} follow the header")]
    SizeMismatch {
        /// The file being parsed.
        file: PathBuf,
        /// The field whose byte count disagrees (`data`).
        field: &'static str,
        /// Byte offset where the data section starts.
        offset: u64,
        /// Bytes implied by the header.
        declared: u64,
        /// Bytes actually present.
        actual: u64,
    },

    /// The file ends in the middle of a header or record.
    #[error("{file}: truncated: field `{field}` of record {record} at byte {offset} needs {needed} bytes, only {available} left")]
    Truncated {
        /// The file being parsed.
        file: PathBuf,
        /// The field that is cut short (`header`, `image`, `label`, `record`).
        field: &'static str,
        /// Index of the first incomplete record (0 for a header).
        record: u64,
        /// Byte offset where the incomplete field starts.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes remaining in the file from `offset`.
        available: u64,
    },

    /// A label byte is not a class index.
    #[error("{file}: field `{field}` of record {record} at byte {offset}: value {label} is outside 0..={max}")]
    LabelOutOfRange {
        /// The file being parsed.
        file: PathBuf,
        /// Always `label`.
        field: &'static str,
        /// Record index.
        record: u64,
        /// Byte offset of the label byte.
        offset: u64,
        /// The bad value.
        label: u8,
        /// The largest valid label.
        max: u8,
    },

    /// An images file and its labels file hold different numbers of records.
    #[error(
        "{images}: {n_images} images, but {labels}: {n_labels} labels (field `count` at byte 4)"
    )]
    LengthMismatch {
        /// The images file.
        images: PathBuf,
        /// Records in the images file.
        n_images: u64,
        /// The labels file.
        labels: PathBuf,
        /// Records in the labels file.
        n_labels: u64,
    },

    /// A CIFAR-10 batch has a whole number of records, but not as many as a batch must have.
    #[error("{file}: {found} records ({bytes} bytes), expected {expected} records of {record_size} bytes")]
    RecordCount {
        /// The batch file.
        file: PathBuf,
        /// Records found.
        found: u64,
        /// Records expected.
        expected: u64,
        /// Bytes in the (decompressed) file.
        bytes: u64,
        /// Bytes per record.
        record_size: u64,
    },

    /// Files needed by a loader are absent (and were not downloaded).
    #[error("missing dataset files:\n{}", list_lines(.files))]
    Missing {
        /// The files that were looked for, one line each (with alternatives).
        files: Vec<String>,
    },

    /// A mirror answered with an HTTP error status (404, 500, ...).
    #[error("download of {file} from {url}: HTTP status {status}")]
    Http {
        /// The file being downloaded.
        file: String,
        /// The full URL.
        url: String,
        /// The status code.
        status: u16,
    },

    /// The transfer stopped before the announced length, or the connection broke mid-way.
    #[error("download of {file} from {url}: transfer broke off after {received} bytes{}: {reason}", expected_suffix(*.expected))]
    Transfer {
        /// The file being downloaded.
        file: String,
        /// The full URL.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced by `Content-Length`, if any.
        expected: Option<u64>,
        /// What went wrong.
        reason: String,
    },

    /// A downloaded file does not have the published checksum; the temp file was deleted.
    #[error("download of {file} from mirror {mirror}: {algorithm} checksum mismatch (expected {expected}, got {actual}); the temporary file was deleted")]
    Checksum {
        /// The file being downloaded.
        file: String,
        /// The mirror's base URL.
        mirror: String,
        /// `md5` or `sha256`.
        algorithm: &'static str,
        /// The published checksum (hex).
        expected: String,
        /// The checksum of the received bytes (hex).
        actual: String,
    },

    /// Files are missing and no mirror could be reached: says exactly which files to put where.
    #[error("{} not in the data directory, and downloading failed: no mirror could be reached \
             ({reason}).\nDownload by hand and put here:\n{}",
            if instructions.len() == 1 { "a dataset file is" } else { "dataset files are" },
            list_lines(.instructions))]
    Offline {
        /// The last connection error.
        reason: String,
        /// One line per file: destination path, URL(s) and checksum.
        instructions: Vec<String>,
    },

    /// A user-provided string (a split range, a recipe name, ...) does not parse.
    #[error("cannot parse {what} from {input:?}: {reason}")]
    Parse {
        /// What was being parsed (`range`, `recipe`, ...).
        what: &'static str,
        /// The string given.
        input: String,
        /// Why it is wrong.
        reason: String,
    },

    /// A request does not fit the data (index out of range, zero batch size, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// Writing an image (the augmentation grid) failed.
    #[error("{file}: cannot write image: {reason}")]
    ImageWrite {
        /// The output file.
        file: PathBuf,
        /// The encoder's message.
        reason: String,
    },
}

fn list_lines(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn expected_suffix(expected: Option<u64>) -> String {
    expected.map(|e| format!(" of {e}")).unwrap_or_default()
}

/// Shorthand for results of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
