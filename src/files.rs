//! Atomic file writes: a temporary file in the target's directory, then a rename,
//! so a reader (or a crash) never sees a half-written checkpoint or image; and NumPy arrays
//! written that way.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically, creating the parent directory if needed.
///
/// Errors: [`Error::Io`] naming `path` (or its directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    // Temporary files are created owner-only (0600); give the result the usual 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `values` as a float32 NumPy array (`.npy`, through the npyz crate) of `shape`,
/// atomically.
///
/// Errors: [`Error::Invalid`] if `values` does not fill `shape` or the encoder fails;
/// [`Error::Io`] naming `path`.
pub fn write_npy(path: &Path, values: &[f32], shape: &[usize]) -> Result<()> {
    use npyz::WriterBuilder;
    if shape.iter().product::<usize>() != values.len() {
        return Err(Error::Invalid(format!(
            "{}: {} values do not fill an array of shape {shape:?}",
            path.display(),
            values.len()
        )));
    }
    let bad = |e: std::io::Error| Error::Invalid(format!("encoding {}: {e}", path.display()));
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
        .writer(&mut bytes)
        .begin_nd()
        .map_err(bad)?;
    writer.extend(values.iter().copied()).map_err(bad)?;
    writer.finish().map_err(bad)?;
    write_atomic(path, &bytes)
}
