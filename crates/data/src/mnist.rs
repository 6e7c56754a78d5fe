//! MNIST: four IDX files, gzipped or raw, in `<data-dir>/mnist/`.
//!
//! | file | magic | dims |
//! |---|---|---|
//! | `train-images-idx3-ubyte[.gz]` | `0x803` | 60000 × 28 × 28 |
//! | `train-labels-idx1-ubyte[.gz]` | `0x801` | 60000 |
//! | `t10k-images-idx3-ubyte[.gz]` | `0x803` | 10000 × 28 × 28 |
//! | `t10k-labels-idx1-ubyte[.gz]` | `0x801` | 10000 |
//!
//! [`parse_images`], [`parse_labels`] and [`parse_pair`] work on bytes (gzipped or not), so
//! the fuzz targets and unit tests need no files; [`load`] finds the files and calls them.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::{gz, idx, ImageSet};

/// Directory name of MNIST inside the data dir.
pub const DIR: &str = "mnist";
/// File stems (without `.gz`) of train images, train labels, test images, test labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
/// Number of training images.
pub const TRAIN_LEN: usize = 60_000;
/// Number of test images.
pub const TEST_LEN: usize = 10_000;
/// Rows and columns of every MNIST image.
pub const SIDE: usize = 28;

/// Parsed MNIST images: count, rows, columns and the `count*rows*cols` pixel bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Row-major pixels, images back to back.
    pub pixels: Vec<u8>,
}

/// Parses an images IDX file (magic `0x803`), gzipped or raw. `file` names it in errors.
pub fn parse_images(bytes: &[u8], file: &Path) -> Result<Images> {
    let raw = gz::decode(bytes, file)?;
    let idx = idx::parse(&raw, idx::IMAGES_MAGIC, "image", file)?;
    for (d, name) in [(1usize, "rows"), (2, "columns")] {
        if idx.dims[d] == 0 {
            return Err(DataError::BadDimension {
                file: file.to_path_buf(),
                field: name,
                offset: 4 + 4 * d as u64,
                expected: "at least 1".into(),
                found: 0,
            });
        }
    }
    Ok(Images {
        count: idx.count(),
        rows: idx.dims[1] as usize,
        cols: idx.dims[2] as usize,
        pixels: idx.data.to_vec(),
    })
}

/// Parses a labels IDX file (magic `0x801`), gzipped or raw; every label must be in 0..=9.
pub fn parse_labels(bytes: &[u8], file: &Path) -> Result<Vec<u8>> {
    let raw = gz::decode(bytes, file)?;
    let idx = idx::parse(&raw, idx::LABELS_MAGIC, "label", file)?;
    if let Some((i, &label)) = idx.data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(DataError::LabelOutOfRange {
            file: file.to_path_buf(),
            field: "label",
            record: i as u64,
            offset: (idx.header_len + i) as u64,
            label,
            max: 9,
        });
    }
    Ok(idx.data.to_vec())
}

/// Parses an images file and its labels file into one [`ImageSet`], checking that the images
/// are MNIST's 28 × 28 (a header giving another shape of 784 pixels would scramble them) and
/// that both files hold the same number of records.
pub fn parse_pair(
    images: &[u8],
    images_file: &Path,
    labels: &[u8],
    labels_file: &Path,
) -> Result<ImageSet> {
    let im = parse_images(images, images_file)?;
    for (found, field, offset) in [(im.rows, "rows", 8), (im.cols, "columns", 12)] {
        if found != SIDE {
            return Err(DataError::BadDimension {
                file: images_file.to_path_buf(),
                field,
                offset,
                expected: format!("{SIDE} (MNIST images are {SIDE} × {SIDE})"),
                found: found as u64,
            });
        }
    }
    let lb = parse_labels(labels, labels_file)?;
    if im.count != lb.len() {
        return Err(DataError::LengthMismatch {
            images: images_file.to_path_buf(),
            n_images: im.count as u64,
            labels: labels_file.to_path_buf(),
            n_labels: lb.len() as u64,
        });
    }
    ImageSet::new(im.pixels, lb, 1, im.rows, im.cols, class_names())
}

/// The class names `"0"` .. `"9"`.
pub fn class_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Finds the four files in `mnist_dir` (each as `<stem>.gz` or `<stem>`), or lists the
/// missing ones.
pub fn find_files(mnist_dir: &Path) -> Result<[PathBuf; 4]> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for stem in FILES {
        let names = [format!("{stem}.gz"), stem.to_string()];
        match gz::first_existing(mnist_dir, &names) {
            Some(p) => found.push(p),
            None => missing.push(format!(
                "{} (or the uncompressed {stem})",
                mnist_dir.join(&names[0]).display()
            )),
        }
    }
    if !missing.is_empty() {
        return Err(DataError::Missing { files: missing });
    }
    found
        .try_into()
        .map_err(|_| DataError::Invalid("expected four MNIST files".into()))
}

/// Loads `(train, test)` from `mnist_dir` (the `mnist/` folder itself, e.g.
/// `resolve_data_dir(..).join("mnist")`). The four files are read in parallel.
pub fn load(mnist_dir: &Path) -> Result<(ImageSet, ImageSet)> {
    let files = find_files(mnist_dir)?;
    let load_pair = |i: usize, l: usize| -> Result<ImageSet> {
        let (im, lb) = rayon::join(|| read_raw(&files[i]), || read_raw(&files[l]));
        parse_pair(&im?, &files[i], &lb?, &files[l])
    };
    let (train, test) = rayon::join(|| load_pair(0, 1), || load_pair(2, 3));
    Ok((train?, test?))
}

fn read_raw(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| DataError::Io {
        file: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn images(n: u32) -> Vec<u8> {
        let px: Vec<u8> = (0..n * 4 * 4).map(|v| v as u8).collect();
        idx(0x803, &[n, 4, 4], &px)
    }

    /// `n` MNIST-shaped (28 × 28) images.
    fn mnist_images(n: u32) -> Vec<u8> {
        let px: Vec<u8> = (0..n * 784).map(|v| v as u8).collect();
        idx(0x803, &[n, 28, 28], &px)
    }

    fn labels(l: &[u8]) -> Vec<u8> {
        idx(0x801, &[l.len() as u32], l)
    }

    /// Writes the four files into a temp dir (gzipped if `gzip`).
    fn write_set(dir: &Path, files: [&[u8]; 4], gzip: bool) {
        for (stem, bytes) in FILES.iter().zip(files) {
            if gzip {
                std::fs::write(dir.join(format!("{stem}.gz")), gz(bytes)).unwrap();
            } else {
                std::fs::write(dir.join(stem), bytes).unwrap();
            }
        }
    }

    #[test]
    fn loads_gz_and_raw_files() {
        for gzip in [true, false] {
            let t = tempfile::tempdir().unwrap();
            write_set(
                t.path(),
                [
                    &mnist_images(3),
                    &labels(&[1, 2, 3]),
                    &mnist_images(2),
                    &labels(&[9, 0]),
                ],
                gzip,
            );
            let (train, test) = load(t.path()).unwrap();
            assert_eq!((train.len(), test.len()), (3, 2));
            assert_eq!(train.shape(), [1, 28, 28]);
            assert_eq!(test.labels, vec![9, 0]);
            assert_eq!(train.image(1).unwrap()[0], (784 % 256) as u8);
        }
    }

    #[test]
    fn wrong_magic() {
        let mut b = images(2);
        b[3] = 0x02;
        match parse_images(&b, Path::new("im")) {
            Err(DataError::BadMagic {
                found, offset: 0, ..
            }) => assert_eq!(found, 0x802),
            e => panic!("{e:?}"),
        }
        // A labels file given as images.
        assert!(matches!(
            parse_images(&labels(&[1]), Path::new("l")),
            Err(DataError::BadMagic { .. })
        ));
    }

    #[test]
    fn dimensions_disagree_with_file_size() {
        // Header says 3 images, the file has 2.5 of them: truncated record 2 at its offset.
        let mut b = images(3);
        b.truncate(16 + 2 * 16 + 8);
        match parse_images(&b, Path::new("im")) {
            Err(DataError::Truncated {
                field,
                record,
                offset,
                needed,
                available,
                ..
            }) => {
                assert_eq!(
                    (field, record, offset, needed, available),
                    ("image", 2, 48, 16, 8)
                );
            }
            e => panic!("{e:?}"),
        }
        // Header says 1 image, the file holds 3: trailing bytes.
        let mut b = images(3);
        b[7] = 1;
        match parse_images(&b, Path::new("im")) {
            Err(DataError::SizeMismatch {
                declared,
                actual,
                offset,
                ..
            }) => assert_eq!((declared, actual, offset), (16, 48, 16)),
            e => panic!("{e:?}"),
        }
        // Zero rows.
        let b = idx(0x803, &[1, 0, 4], &[]);
        assert!(matches!(
            parse_images(&b, Path::new("im")),
            Err(DataError::BadDimension {
                field: "rows",
                offset: 8,
                ..
            })
        ));
    }

    #[test]
    fn truncated_labels_and_header() {
        let mut l = labels(&[1, 2, 3]);
        l.pop();
        assert!(matches!(
            parse_labels(&l, Path::new("l")),
            Err(DataError::Truncated {
                field: "label",
                record: 2,
                offset: 10,
                ..
            })
        ));
        assert!(matches!(
            parse_images(&images(1)[..10], Path::new("im")),
            Err(DataError::Truncated {
                field: "dimensions",
                offset: 8,
                ..
            })
        ));
        assert!(matches!(
            parse_images(&[], Path::new("im")),
            Err(DataError::Truncated { field: "magic", .. })
        ));
    }

    #[test]
    fn label_out_of_range() {
        match parse_labels(&labels(&[1, 2, 10, 3]), Path::new("l")) {
            Err(DataError::LabelOutOfRange {
                record,
                offset,
                label,
                ..
            }) => assert_eq!((record, offset, label), (2, 10, 10)),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn images_and_labels_of_different_lengths() {
        let r = parse_pair(
            &mnist_images(3),
            Path::new("im"),
            &labels(&[1, 2]),
            Path::new("l"),
        );
        match r {
            Err(DataError::LengthMismatch {
                n_images, n_labels, ..
            }) => assert_eq!((n_images, n_labels), (3, 2)),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn images_of_another_shape_are_not_mnist() {
        // 784 pixels per image as 56 × 14 (a reshape would scramble them), and 28 × 4.
        let px = vec![0u8; 2 * 784];
        for (dims, field, offset) in [([2, 56, 14], "rows", 8), ([2, 28, 4], "columns", 12)] {
            let n = (dims[0] * dims[1] * dims[2]) as usize;
            let b = idx(0x803, &dims, &px[..n]);
            let err =
                parse_pair(&b, Path::new("im"), &labels(&[1, 2]), Path::new("l")).unwrap_err();
            assert!(err.to_string().contains("28 × 28"), "{err}");
            assert!(
                matches!(err, DataError::BadDimension { field: f, offset: o, .. }
                    if f == field && o == offset),
                "{err:?}"
            );
        }
    }

    #[test]
    fn corrupt_gzip_file() {
        let t = tempfile::tempdir().unwrap();
        write_set(
            t.path(),
            [
                &mnist_images(3),
                &labels(&[1, 2, 3]),
                &mnist_images(2),
                &labels(&[9, 0]),
            ],
            true,
        );
        let p = t.path().join("train-images-idx3-ubyte.gz");
        let mut z = std::fs::read(&p).unwrap();
        let n = z.len();
        z.truncate(n - 3);
        std::fs::write(&p, z).unwrap();
        match load(t.path()) {
            Err(DataError::Gzip { file, .. }) => assert_eq!(file, p),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn missing_files_are_listed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("train-images-idx3-ubyte.gz"), gz(&images(1))).unwrap();
        match load(t.path()) {
            Err(DataError::Missing { files }) => {
                assert_eq!(files.len(), 3);
                assert!(files[0].contains("train-labels-idx1-ubyte.gz"));
            }
            e => panic!("{e:?}"),
        }
    }
}
