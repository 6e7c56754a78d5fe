//! Reading a dataset file that may or may not be gzipped.
//!
//! The files are recognised by content, not by name: a stream starting with the gzip magic
//! bytes `1f 8b` is decompressed, anything else is returned as is (IDX files start with
//! `00 00 08 0x`, CIFAR records with a label byte 0..9, so neither can be mistaken for gzip).
//! Decompression reads from an in-memory cursor so that, when the stream is corrupt, the
//! error can say how many compressed bytes had been consumed.

use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::error::{DataError, Result};

/// The two bytes every gzip stream starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decompressed sizes above this are refused (a guard against decompression bombs; the
/// largest real file, a CIFAR batch, is 30.7 MB).
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// True if `bytes` starts with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Returns `bytes` decompressed if it is a gzip stream, else `bytes` itself (borrowed).
/// `file` only names the source in errors.
pub fn decode<'a>(bytes: &'a [u8], file: &Path) -> Result<Cow<'a, [u8]>> {
    if !is_gzip(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    // The gzip trailer stores the uncompressed size mod 2^32: a good capacity hint.
    let hint = bytes
        .len()
        .checked_sub(4)
        .and_then(|i| bytes.get(i..))
        .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize)
        .unwrap_or(0)
        .min(bytes.len().saturating_mul(64))
        .min(MAX_DECOMPRESSED as usize);
    let mut out = Vec::with_capacity(hint);
    let mut dec = MultiGzDecoder::new(Cursor::new(bytes));
    let res = (&mut dec).take(MAX_DECOMPRESSED + 1).read_to_end(&mut out);
    let offset = dec.get_ref().position();
    match res {
        Err(e) => Err(DataError::Gzip {
            file: file.to_path_buf(),
            offset,
            reason: e.to_string(),
        }),
        Ok(_) if out.len() as u64 > MAX_DECOMPRESSED => Err(DataError::Gzip {
            file: file.to_path_buf(),
            offset,
            reason: format!("decompresses to more than {MAX_DECOMPRESSED} bytes"),
        }),
        Ok(_) => Ok(Cow::Owned(out)),
    }
}

/// Reads `path` from disk and decompresses it if it is gzipped.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    Ok(match decode(&bytes, path)? {
        Cow::Owned(v) => v,
        Cow::Borrowed(_) => bytes,
    })
}

/// The first of `candidates` that exists inside `dir`, if any.
pub fn first_existing(dir: &Path, candidates: &[String]) -> Option<std::path::PathBuf> {
    candidates.iter().map(|c| dir.join(c)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn raw_passes_through_and_gzip_is_decoded() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(&*decode(&data, Path::new("x")).unwrap(), &data[..]);
        assert_eq!(&*decode(&gz(&data), Path::new("x.gz")).unwrap(), &data[..]);
    }

    #[test]
    fn truncated_gzip_is_an_error_with_offset() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 253) as u8).collect();
        let z = gz(&data);
        let cut = &z[..z.len() / 2];
        match decode(cut, Path::new("cut.gz")) {
            Err(DataError::Gzip { file, offset, .. }) => {
                assert_eq!(file, Path::new("cut.gz"));
                assert!(offset <= cut.len() as u64);
            }
            other => panic!("expected Gzip error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 253) as u8).collect();
        let mut z = gz(&data);
        let n = z.len();
        // Break the CRC in the trailer: the stream decodes but fails verification.
        z[n - 6] ^= 0xff;
        assert!(matches!(
            decode(&z, Path::new("bad.gz")),
            Err(DataError::Gzip { .. })
        ));
        // Garbage right after a valid header.
        let mut g = gz(&data);
        for b in g.iter_mut().skip(10).take(40) {
            *b = 0xff;
        }
        assert!(matches!(
            decode(&g, Path::new("bad.gz")),
            Err(DataError::Gzip { .. })
        ));
    }
}
