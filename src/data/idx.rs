//! The IDX format of MNIST (LeCun et al., <http://yann.lecun.com/exdb/mnist/>):
//! a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
//! one big-endian u32 per dimension, then the values in row-major order.
//! Files may be gzip-compressed (detected by content, not by name).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// An unsigned-byte IDX array: dimensions and raw values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first: (N, 28, 28) for images, (N,) for labels.
    pub dims: Vec<usize>,
    /// The values, row-major; `data.len()` equals the product of `dims`.
    pub data: Vec<u8>,
}

/// Type code of unsigned bytes, the only element type MNIST uses.
const TYPE_U8: u8 = 0x08;

/// Reads and validates an IDX file of unsigned bytes, gzip-compressed or raw.
///
/// Errors: [`Error::Io`] if it cannot be read; [`Error::Data`] naming the file if the
/// gzip stream is corrupt, the magic number is wrong, the element type is not u8,
/// or the data is truncated or followed by extra bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|reason| Error::data(path, reason))
}

/// Parses IDX bytes (already decompressed); the error says what is wrong.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "truncated: {} bytes, too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with two zero bytes \
             (is this an MNIST IDX file?)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != TYPE_U8 {
        return Err(format!(
            "element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err("wrong magic number: zero dimensions".into());
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!(
            "truncated: header of {ndims} dimensions needs {header} bytes, file has {}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let found = bytes.len() - header;
    if found < expected {
        return Err(format!(
            "truncated: dimensions {dims:?} need {expected} bytes of data, found {found}"
        ));
    }
    if found > expected {
        return Err(format!(
            "{} unexpected bytes after the data of dimensions {dims:?}",
            found - expected
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}
