//! The IDX format of MNIST (LeCun et al., <http://yann.lecun.com/exdb/mnist/>):
//! a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
//! one big-endian u32 per dimension, then the values in row-major order.
//! Files may be gzip-compressed (detected by content, not by name).
//!
//! Files are read as a stream, the header first: its dimensions are checked against what
//! the file can hold before any data is read, and then exactly the declared number of bytes
//! is read. A gzip stream is inflated as it is read, never whole, so a small file that
//! inflates to gigabytes (a "zip bomb") is refused after its header or after the declared
//! size, not after inflating it all.

use std::io::{BufRead, BufReader, Read};
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

/// The most a deflate stream inflates per compressed byte: its longest match (258 bytes)
/// costs at least 2 bits, so ~1032 to 1 (zlib's FAQ, "maximum compression factor"). A gzip
/// file whose header declares more data than this times its size is refused unread.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// Unexpected bytes after the data are counted up to this many (a bound on the work spent
/// on a stream that never ends).
const MAX_COUNTED_EXTRA: u64 = 1 << 20;

/// Why an IDX stream was refused.
#[derive(Debug)]
pub enum IdxError {
    /// The bytes are not a valid IDX array; the text says what is wrong.
    Format(String),
    /// The gzip stream is corrupt or truncated.
    Gzip(std::io::Error),
    /// Reading failed.
    Io(std::io::Error),
}

/// Where the bytes come from: what bounds the data they can hold.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// Raw IDX bytes, this many in all (header included).
    Raw(u64),
    /// A gzip stream of this many compressed bytes.
    Gzip(u64),
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Parses the header of an IDX stream: the dimensions, after checking the magic number and
/// the element type.
fn read_header(r: &mut impl Read, source: Source) -> std::result::Result<Vec<usize>, IdxError> {
    let io = |e: std::io::Error| match source {
        Source::Gzip(_) => IdxError::Gzip(e),
        Source::Raw(_) => IdxError::Io(e),
    };
    let mut magic = [0u8; 4];
    let got = read_full(r, &mut magic).map_err(io)?;
    if got < 4 {
        return Err(IdxError::Format(format!(
            "truncated: {got} bytes, too short for an IDX header"
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(IdxError::Format(format!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with two zero bytes \
             (is this an MNIST IDX file?)",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != TYPE_U8 {
        return Err(IdxError::Format(format!(
            "element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            magic[2]
        )));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err(IdxError::Format(
            "wrong magic number: zero dimensions".into(),
        ));
    }
    let header = 4 + 4 * ndims;
    let mut raw = vec![0u8; 4 * ndims];
    let got = read_full(r, &mut raw).map_err(io)?;
    if got < raw.len() {
        return Err(IdxError::Format(format!(
            "truncated: header of {ndims} dimensions needs {header} bytes, file has {}",
            4 + got
        )));
    }
    Ok(raw
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect())
}

/// Reads one IDX array from `r`: the header, the check of its declared size against what
/// `source` can hold, then exactly that many bytes.
fn read_array(mut r: impl Read, source: Source) -> std::result::Result<IdxArray, IdxError> {
    let dims = read_header(&mut r, source)?;
    let header = 4 + 4 * dims.len() as u64;
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| IdxError::Format(format!("dimensions {dims:?} overflow")))?;
    let io = |e: std::io::Error| match source {
        Source::Gzip(_) => IdxError::Gzip(e),
        Source::Raw(_) => IdxError::Io(e),
    };
    let mut data = Vec::new();
    match source {
        Source::Raw(len) => {
            let found = len.saturating_sub(header);
            if found < expected {
                return Err(IdxError::Format(format!(
                    "truncated: dimensions {dims:?} need {expected} bytes of data, found {found}"
                )));
            }
            if found > expected {
                return Err(IdxError::Format(format!(
                    "{} unexpected bytes after the data of dimensions {dims:?}",
                    found - expected
                )));
            }
            // The file holds exactly this many bytes: reserve them at once.
            data.reserve_exact(expected as usize);
        }
        Source::Gzip(len) => {
            let most = len.saturating_mul(MAX_DEFLATE_RATIO);
            if expected > most {
                return Err(IdxError::Format(format!(
                    "dimensions {dims:?} declare {expected} bytes of data, more than a gzip file \
                     of {len} bytes can inflate to (at most {MAX_DEFLATE_RATIO} times its size)"
                )));
            }
        }
    }
    // Grows with what the stream really holds, never past the declared size plus one byte.
    (&mut r)
        .take(expected + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    let found = data.len() as u64;
    if found < expected {
        return Err(IdxError::Format(format!(
            "truncated: dimensions {dims:?} need {expected} bytes of data, found {found}"
        )));
    }
    if found > expected {
        let more =
            std::io::copy(&mut r.take(MAX_COUNTED_EXTRA), &mut std::io::sink()).map_err(io)?;
        let extra = 1 + more;
        return Err(IdxError::Format(if more == MAX_COUNTED_EXTRA {
            format!(
                "more than {MAX_COUNTED_EXTRA} unexpected bytes after the data of dimensions {dims:?}"
            )
        } else {
            format!("{extra} unexpected bytes after the data of dimensions {dims:?}")
        }));
    }
    Ok(IdxArray { dims, data })
}

/// Reads an IDX array, gzip-compressed or raw (told apart by the gzip magic bytes
/// `1f 8b`), from `r`, which holds `len` bytes in all.
///
/// Errors: [`IdxError::Format`] saying what is wrong (magic number, element type,
/// truncation, a declared size the file cannot hold, extra bytes); [`IdxError::Gzip`] for a
/// corrupt gzip stream; [`IdxError::Io`] for a failed read.
pub fn read_idx_from(mut r: impl BufRead, len: u64) -> std::result::Result<IdxArray, IdxError> {
    let head = r.fill_buf().map_err(IdxError::Io)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        read_array(flate2::bufread::GzDecoder::new(r), Source::Gzip(len))
    } else {
        read_array(r, Source::Raw(len))
    }
}

/// Opens `path` as a regular file (a directory, a pipe or a device is refused before any
/// read: reading a pipe could block forever) and returns it with its length.
fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::data(path, "is a directory, not an IDX file"));
    }
    if !meta.is_file() {
        return Err(Error::data(
            path,
            "is not a regular file (a pipe, socket or device); an IDX file is expected",
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok((file, meta.len()))
}

/// The error of a failed read of `path`.
fn idx_error(path: &Path, e: IdxError) -> Error {
    match e {
        IdxError::Format(reason) => Error::data(path, reason),
        IdxError::Gzip(e) => Error::data(path, format!("corrupt gzip data: {e}")),
        IdxError::Io(e) => Error::io(path, e),
    }
}

/// Reads and validates an IDX file of unsigned bytes, gzip-compressed or raw, as a stream:
/// see the module documentation.
///
/// Errors: [`Error::Io`] if it cannot be read; [`Error::Data`] naming the file if it is not a
/// regular file, the gzip stream is corrupt, the magic number is wrong, the element type is
/// not u8, the declared size exceeds what the file can hold, or the data is truncated or
/// followed by extra bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let (file, len) = open_regular(path)?;
    read_idx_from(BufReader::new(file), len).map_err(|e| idx_error(path, e))
}

/// [`read_idx`] from the file's bytes, gzip-compressed or raw (the browser has no files);
/// `origin` names the source in errors.
///
/// Errors: as [`read_idx`].
pub fn read_idx_bytes(bytes: &[u8], origin: &Path) -> Result<IdxArray> {
    read_idx_from(bytes, bytes.len() as u64).map_err(|e| idx_error(origin, e))
}

/// Reads only the header of an IDX file (inflating just its first bytes if gzipped): its
/// dimensions. Lets a loader check the shapes of several files before reading any data.
///
/// Errors: as [`read_idx`] for the header.
pub fn read_idx_dims(path: &Path) -> Result<Vec<usize>> {
    let (file, len) = open_regular(path)?;
    let mut r = BufReader::new(file);
    let head = r.fill_buf().map_err(|e| Error::io(path, e))?;
    let dims = if head.starts_with(&[0x1f, 0x8b]) {
        read_header(&mut flate2::bufread::GzDecoder::new(r), Source::Gzip(len))
    } else {
        read_header(&mut r, Source::Raw(len))
    };
    dims.map_err(|e| idx_error(path, e))
}

/// Parses raw (not gzipped) IDX bytes; the error says what is wrong.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    read_array(bytes, Source::Raw(bytes.len() as u64)).map_err(|e| match e {
        IdxError::Format(s) => s,
        IdxError::Gzip(e) | IdxError::Io(e) => e.to_string(),
    })
}
