//! CIFAR-10, binary version: six batch files in `<data-dir>/cifar-10-batches-bin/`.
//!
//! Each batch (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`, optionally gzipped
//! as `*.bin.gz`) is 10,000 records of 3,073 bytes: one label byte (0..9), then the 1,024
//! red, 1,024 green and 1,024 blue bytes of a 32×32 image, each plane row by row. That is
//! already CHW, so a record's last 3,072 bytes are copied as they are.
//!
//! There is no header, so the only structure to check is the record size (a file that is not
//! a whole number of records is truncated), the label range, and — in [`load`] — that every
//! batch holds exactly 10,000 records, so a file cut at a record boundary is not a silently
//! short dataset. Class names come from `batches.meta.txt` when present.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::{gz, ImageSet};

/// Directory name of CIFAR-10 inside the data dir.
pub const DIR: &str = "cifar-10-batches-bin";
/// Stems of the five training batches, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
];
/// Stem of the test batch.
pub const TEST_FILE: &str = "test_batch";
/// The class names file.
pub const META_FILE: &str = "batches.meta.txt";
/// Side of an image.
pub const SIDE: usize = 32;
/// Bytes of one image (3 × 32 × 32).
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
/// Bytes of one record (label + image).
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Records in each batch file.
pub const RECORDS_PER_BATCH: usize = 10_000;

/// The ten class names, used when `batches.meta.txt` is absent.
pub const DEFAULT_CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// A parsed batch: `labels.len()` images of 3×32×32 CHW bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// CHW pixels, images back to back.
    pub images: Vec<u8>,
    /// One label per image, in 0..=9.
    pub labels: Vec<u8>,
}

/// Parses one batch (gzipped or raw bytes). `file` names it in errors.
pub fn parse_batch(bytes: &[u8], file: &Path) -> Result<Batch> {
    let raw = gz::decode(bytes, file)?;
    let n = raw.len() / RECORD_BYTES;
    let rest = raw.len() % RECORD_BYTES;
    if rest != 0 {
        return Err(DataError::Truncated {
            file: file.to_path_buf(),
            field: "record",
            record: n as u64,
            offset: (n * RECORD_BYTES) as u64,
            needed: RECORD_BYTES as u64,
            available: rest as u64,
        });
    }
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in raw.chunks_exact(RECORD_BYTES).enumerate() {
        let label = rec[0];
        if label > 9 {
            return Err(DataError::LabelOutOfRange {
                file: file.to_path_buf(),
                field: "label",
                record: i as u64,
                offset: (i * RECORD_BYTES) as u64,
                label,
                max: 9,
            });
        }
        labels.push(label);
        images.extend_from_slice(&rec[1..]);
    }
    Ok(Batch { images, labels })
}

/// Parses `batches.meta.txt`: one class name per line, blank lines ignored. Needs exactly
/// ten names; anything else (including non-UTF-8) is an error naming the line.
pub fn parse_meta(bytes: &[u8], file: &Path) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|e| DataError::BadDimension {
        file: file.to_path_buf(),
        field: "class name",
        offset: e.valid_up_to() as u64,
        expected: "UTF-8 text".into(),
        found: bytes.get(e.valid_up_to()).copied().unwrap_or(0) as u64,
    })?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != 10 {
        return Err(DataError::BadDimension {
            file: file.to_path_buf(),
            field: "class names",
            offset: 0,
            expected: "10 non-empty lines".into(),
            found: names.len() as u64,
        });
    }
    Ok(names)
}

fn find(dir: &Path, stem: &str, missing: &mut Vec<String>) -> PathBuf {
    let names = [format!("{stem}.bin"), format!("{stem}.bin.gz")];
    gz::first_existing(dir, &names).unwrap_or_else(|| {
        missing.push(format!(
            "{} (or {stem}.bin.gz)",
            dir.join(&names[0]).display()
        ));
        PathBuf::new()
    })
}

/// Loads `(train, test)` from `cifar_dir` (the `cifar-10-batches-bin/` folder itself): the
/// five training batches concatenated in order, then the test batch. Batches are
/// decompressed in parallel.
pub fn load(cifar_dir: &Path) -> Result<(ImageSet, ImageSet)> {
    load_with(cifar_dir, RECORDS_PER_BATCH)
}

/// [`load`] with a different number of records per batch (for small generated test sets).
pub fn load_with(cifar_dir: &Path, records_per_batch: usize) -> Result<(ImageSet, ImageSet)> {
    let mut missing = Vec::new();
    let mut files: Vec<PathBuf> = TRAIN_FILES
        .iter()
        .map(|s| find(cifar_dir, s, &mut missing))
        .collect();
    files.push(find(cifar_dir, TEST_FILE, &mut missing));
    if !missing.is_empty() {
        return Err(DataError::Missing { files: missing });
    }
    let meta = cifar_dir.join(META_FILE);
    let class_names = if meta.is_file() {
        let bytes = std::fs::read(&meta).map_err(|source| DataError::Io {
            file: meta.clone(),
            source,
        })?;
        parse_meta(&bytes, &meta)?
    } else {
        DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    };
    let batches: Vec<Batch> = files
        .par_iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|source| DataError::Io {
                file: f.clone(),
                source,
            })?;
            let b = parse_batch(&bytes, f)?;
            if b.labels.len() != records_per_batch {
                return Err(DataError::RecordCount {
                    file: f.clone(),
                    found: b.labels.len() as u64,
                    expected: records_per_batch as u64,
                    bytes: (b.labels.len() * RECORD_BYTES) as u64,
                    record_size: RECORD_BYTES as u64,
                });
            }
            Ok(b)
        })
        .collect::<Result<_>>()?;
    let mut train_images = Vec::with_capacity(5 * records_per_batch * IMAGE_BYTES);
    let mut train_labels = Vec::with_capacity(5 * records_per_batch);
    let mut it = batches.into_iter();
    for b in it.by_ref().take(5) {
        train_images.extend_from_slice(&b.images);
        train_labels.extend_from_slice(&b.labels);
    }
    let test = it
        .next()
        .ok_or_else(|| DataError::Invalid("no test batch".into()))?;
    let set = |images, labels| ImageSet::new(images, labels, 3, SIDE, SIDE, class_names.clone());
    Ok((
        set(train_images, train_labels)?,
        set(test.images, test.labels)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn batch(labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            v.push(l);
            v.extend((0..IMAGE_BYTES).map(|p| ((p + i) % 256) as u8));
        }
        v
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn write_dir(dir: &Path, gzip: bool, per_batch: usize) {
        let mut names: Vec<&str> = TRAIN_FILES.to_vec();
        names.push(TEST_FILE);
        for (k, stem) in names.iter().enumerate() {
            let labels: Vec<u8> = (0..per_batch).map(|i| ((i + k) % 10) as u8).collect();
            let b = batch(&labels);
            if gzip {
                std::fs::write(dir.join(format!("{stem}.bin.gz")), gz(&b)).unwrap();
            } else {
                std::fs::write(dir.join(format!("{stem}.bin")), b).unwrap();
            }
        }
    }

    #[test]
    fn parses_records_in_chw_order() {
        let b = parse_batch(&batch(&[3, 7]), Path::new("b")).unwrap();
        assert_eq!(b.labels, vec![3, 7]);
        assert_eq!(b.images.len(), 2 * IMAGE_BYTES);
        assert_eq!(b.images[IMAGE_BYTES], 1);
        let z = parse_batch(&gz(&batch(&[3, 7])), Path::new("b.gz")).unwrap();
        assert_eq!(z, b);
    }

    #[test]
    fn truncated_record() {
        let mut b = batch(&[1, 2, 3]);
        b.truncate(2 * RECORD_BYTES + 100);
        match parse_batch(&b, Path::new("b")) {
            Err(DataError::Truncated {
                record,
                offset,
                available,
                ..
            }) => assert_eq!((record, offset, available), (2, 6146, 100)),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn label_out_of_range() {
        match parse_batch(&batch(&[1, 10]), Path::new("b")) {
            Err(DataError::LabelOutOfRange {
                record,
                offset,
                label,
                ..
            }) => assert_eq!((record, offset, label), (1, 3073, 10)),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn corrupt_gzip() {
        let mut z = gz(&batch(&[1, 2, 3]));
        let n = z.len();
        for b in &mut z[20..n.min(60)] {
            *b ^= 0x5a;
        }
        assert!(matches!(
            parse_batch(&z, Path::new("b.gz")),
            Err(DataError::Gzip { .. })
        ));
    }

    #[test]
    fn meta_file() {
        let names = parse_meta(
            b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
            Path::new("m"),
        )
        .unwrap();
        assert_eq!(names[9], "truck");
        assert!(parse_meta(b"a\nb\n", Path::new("m")).is_err());
        assert!(parse_meta(&[0xff, 0xfe], Path::new("m")).is_err());
    }

    #[test]
    fn loads_a_generated_dir() {
        for gzip in [false, true] {
            let t = tempfile::tempdir().unwrap();
            write_dir(t.path(), gzip, 4);
            let (train, test) = load_with(t.path(), 4).unwrap();
            assert_eq!((train.len(), test.len()), (20, 4));
            assert_eq!(train.shape(), [3, 32, 32]);
            assert_eq!(train.labels[4], 1); // first record of data_batch_2
            assert_eq!(test.class_names[0], "airplane");
            // The same files are a short dataset for the real loader.
            assert!(matches!(
                load(t.path()),
                Err(DataError::RecordCount {
                    found: 4,
                    expected: 10_000,
                    ..
                })
            ));
        }
    }

    #[test]
    fn missing_batches_are_listed() {
        let t = tempfile::tempdir().unwrap();
        write_dir(t.path(), false, 2);
        std::fs::remove_file(t.path().join("data_batch_3.bin")).unwrap();
        std::fs::remove_file(t.path().join("test_batch.bin")).unwrap();
        match load_with(t.path(), 2) {
            Err(DataError::Missing { files }) => {
                assert_eq!(files.len(), 2);
                assert!(files[0].contains("data_batch_3.bin"));
            }
            e => panic!("{e:?}"),
        }
    }
}
