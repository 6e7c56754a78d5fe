//! The IDX file format (MNIST's container), parsed from bytes.
//!
//! An IDX file is a big-endian header followed by raw data:
//!
//! ```text
//! byte 0..4    magic: 0x00 0x00 <type> <ndims>   (type 0x08 = unsigned byte)
//! byte 4..     ndims × u32 dimension sizes, the first one being the record count
//! byte 4+4n..  count × (product of the other dims) data bytes
//! ```
//!
//! MNIST images use magic `0x00000803` (N × 28 × 28), labels `0x00000801` (N). The parser
//! checks the magic, that the dimensions multiply without overflow, and that the data is
//! exactly as long as the header says: a short file is a truncated record (with its index
//! and offset), a long one a size mismatch.

use std::path::Path;

use crate::error::{DataError, Result};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (MNIST images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (MNIST labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// A parsed IDX file of unsigned bytes, borrowing its data from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx<'a> {
    /// Dimension sizes; `dims[0]` is the number of records.
    pub dims: Vec<u32>,
    /// Byte offset where the data starts (`4 + 4 * dims.len()`).
    pub header_len: usize,
    /// The data bytes, exactly `product(dims)` of them.
    pub data: &'a [u8],
}

impl Idx<'_> {
    /// Number of records (`dims[0]`).
    pub fn count(&self) -> usize {
        self.dims.first().copied().unwrap_or(0) as usize
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses an (already decompressed) IDX file whose magic must be `magic`.
/// `record_field` names a record in errors (`image`, `label`); `file` names the source.
pub fn parse<'a>(
    bytes: &'a [u8],
    magic: u32,
    record_field: &'static str,
    file: &Path,
) -> Result<Idx<'a>> {
    let truncated_header = |field, offset: usize, needed: usize| DataError::Truncated {
        file: file.to_path_buf(),
        field,
        record: 0,
        offset: offset as u64,
        needed: needed as u64,
        available: bytes.len().saturating_sub(offset) as u64,
    };
    let found = be_u32(bytes, 0).ok_or_else(|| truncated_header("magic", 0, 4))?;
    if found != magic {
        return Err(DataError::BadMagic {
            file: file.to_path_buf(),
            field: "magic",
            offset: 0,
            expected: magic,
            found,
        });
    }
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut dims = Vec::with_capacity(ndims);
    for d in 0..ndims {
        let at = 4 + 4 * d;
        dims.push(be_u32(bytes, at).ok_or_else(|| truncated_header("dimensions", at, 4))?);
    }
    // Bytes per record, checked for overflow (a fuzzed header can claim 2^32 × 2^32 × ...).
    let mut record_len: u64 = 1;
    for (d, &v) in dims.iter().enumerate().skip(1) {
        record_len = record_len
            .checked_mul(v as u64)
            .filter(|&r| r <= u32::MAX as u64)
            .ok_or_else(|| DataError::BadDimension {
                file: file.to_path_buf(),
                field: "dimensions",
                offset: (4 + 4 * d) as u64,
                expected: "a record of at most 4 GiB".into(),
                found: v as u64,
            })?;
    }
    let count = dims.first().copied().unwrap_or(0) as u64;
    let declared = count * record_len; // < 2^64: count < 2^32 and record_len < 2^32
    let actual = (bytes.len() - header_len) as u64;
    if actual < declared {
        // The first record that is not complete.
        let record = actual / record_len.max(1);
        let start = record * record_len;
        return Err(DataError::Truncated {
            file: file.to_path_buf(),
            field: record_field,
            record,
            offset: header_len as u64 + start,
            needed: record_len,
            available: actual - start,
        });
    }
    if actual > declared {
        return Err(DataError::SizeMismatch {
            file: file.to_path_buf(),
            field: "data",
            offset: header_len as u64,
            declared,
            actual,
        });
    }
    Ok(Idx {
        dims,
        header_len,
        data: &bytes[header_len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn parses_a_small_file() {
        let mut b = header(IMAGES_MAGIC, &[2, 2, 3]);
        b.extend(0..12u8);
        let idx = parse(&b, IMAGES_MAGIC, "image", Path::new("f")).unwrap();
        assert_eq!(idx.dims, vec![2, 2, 3]);
        assert_eq!(idx.count(), 2);
        assert_eq!(idx.data.len(), 12);
    }

    #[test]
    fn short_header_is_truncated() {
        let b = header(IMAGES_MAGIC, &[2, 2]);
        match parse(&b, IMAGES_MAGIC, "image", Path::new("f")) {
            Err(DataError::Truncated { field, offset, .. }) => {
                assert_eq!(field, "dimensions");
                assert_eq!(offset, 12);
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            parse(&[0, 0], IMAGES_MAGIC, "image", Path::new("f")),
            Err(DataError::Truncated { field: "magic", .. })
        ));
    }

    #[test]
    fn huge_dimensions_do_not_overflow() {
        let b = header(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX]);
        assert!(matches!(
            parse(&b, IMAGES_MAGIC, "image", Path::new("f")),
            Err(DataError::BadDimension { offset: 12, .. })
        ));
        let b = header(IMAGES_MAGIC, &[u32::MAX, 65536, 65535]);
        assert!(matches!(
            parse(&b, IMAGES_MAGIC, "image", Path::new("f")),
            Err(DataError::Truncated { record: 0, .. })
        ));
    }
}
