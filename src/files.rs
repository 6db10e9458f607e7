//! Files: atomic writes (a temporary file in the target's directory, then a rename, so a
//! reader or a crash never sees a half-written checkpoint or image), appends that refuse to
//! follow a symbolic link, the check of an output path before the work that fills it, and
//! NumPy arrays written atomically.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Name prefix of every temporary file [`write_atomic`] creates. A killed process leaves
/// such a file behind; `deepgen train` removes them from its output directory at start
/// ([`remove_stray_temporaries`]).
pub const TEMP_PREFIX: &str = ".deepgen-tmp-";

/// The directory `path` is written into (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically, creating the parent directory if needed. The rename
/// replaces a symbolic link at `path` by the file; it never writes through it.
///
/// Errors: [`Error::Io`] naming `path` (or its directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
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

/// Opens `path` for reading and writing, creating it if absent (and emptying it if
/// `truncate`), or for appending if `append`; refuses to follow a symbolic link at `path`
/// (`O_NOFOLLOW` on Unix), so a link planted in an output directory cannot redirect the
/// write to a file elsewhere.
///
/// Errors: [`Error::Io`] naming `path`; for a link, one that says so.
pub fn open_no_follow(path: &Path, append: bool, truncate: bool) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).read(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(truncate);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).map_err(|e| {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            Error::io(
                path,
                std::io::Error::other("is a symbolic link; refusing to write through it"),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// Appends `line` and a newline to `path` in one write, creating the file if needed and
/// never through a symbolic link ([`open_no_follow`]).
///
/// Errors: [`Error::Io`] naming `path`.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = open_no_follow(path, true, false)?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    f.write_all(&bytes).map_err(|e| Error::io(path, e))
}

/// Removes the temporary files a killed writer left in `dir`: names starting with
/// [`TEMP_PREFIX`], and `.tmp` plus six letters or digits (the default names of the
/// `tempfile` crate, which deepgen used before the prefix). Links are removed, never
/// followed. Returns how many were removed.
///
/// Errors: [`Error::Io`] naming `dir` or the file.
pub fn remove_stray_temporaries(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let legacy = name.len() == 10
            && name.starts_with(".tmp")
            && name[4..].chars().all(|c| c.is_ascii_alphanumeric());
        if !(name.starts_with(TEMP_PREFIX) || legacy) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        if kind.is_file() || kind.is_symlink() {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Checks, before the work that fills it, that an output file can be written at `path`:
/// its extension is one of `extensions` (lower case, without the dot; none checked if
/// empty), `path` is not a directory, and its directory exists and accepts a new file (a
/// temporary one is created and removed). `flag` names the option in messages (`--out`).
///
/// Errors: [`Error::Invalid`] naming the flag, the path and what is wrong.
pub fn check_output_file(path: &Path, flag: &str, extensions: &[&str]) -> Result<()> {
    let bad = |reason: String| Error::Invalid(format!("{flag} {}: {reason}", path.display()));
    if !extensions.is_empty() {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if !extensions.contains(&ext.as_str()) {
            let list: Vec<String> = extensions.iter().map(|e| format!(".{e}")).collect();
            return Err(bad(format!(
                "unsupported file type {}; this command writes {}",
                if ext.is_empty() {
                    "(no extension)".to_string()
                } else {
                    format!(".{ext}")
                },
                list.join(" or ")
            )));
        }
    }
    if path.is_dir() {
        return Err(bad("is a directory; give a file name".into()));
    }
    let dir = parent_dir(path);
    if dir.exists() && !dir.is_dir() {
        return Err(bad(format!("{} is not a directory", dir.display())));
    }
    if !dir.is_dir() {
        return Err(bad(format!(
            "its directory {} does not exist",
            dir.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| bad(format!("cannot create a file in {}: {e}", dir.display())))
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
