//! The output directory of a training run: one run per directory, enforced.
//!
//! [`RunDir::open`] is the first thing [`super::fit`] does:
//!
//! 1. creates the directory and takes an exclusive lock on `OUT/.deepgen.lock` (the
//!    operating system's advisory file lock, released when the process ends, even by
//!    SIGKILL): a second run on the same directory is refused with the first one's process
//!    id, command and age;
//! 2. removes the temporary files a killed run left ([`crate::files::remove_stray_temporaries`]);
//! 3. refuses a directory that holds another run (metrics.jsonl, model.safetensors or
//!    train_state.safetensors) unless told `--force` (delete it and start afresh) or
//!    `--resume` (continue it: the training state must be there);
//! 4. starts an empty metrics.jsonl (a fresh run).
//!
//! Every file of the run is written atomically (a temporary file renamed over the target,
//! which replaces a symbolic link rather than following it) or appended with `O_NOFOLLOW`
//! (metrics.jsonl, the lock): nothing is written through a link planted in the directory.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::files::{open_no_follow, remove_stray_temporaries, write_atomic};

/// `OUT/.deepgen.lock`: held (locked) by the run that uses the directory; it holds that
/// run's process id, start time and command line.
pub const LOCK_FILE: &str = ".deepgen.lock";
/// `OUT/metrics.jsonl`.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// `OUT/model.safetensors`.
pub const MODEL_FILE: &str = "model.safetensors";
/// `OUT/train_state.safetensors`: what `--resume` continues from.
pub const STATE_FILE: &str = "train_state.safetensors";

/// What the command asked of an output directory that may hold a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse a directory that holds a run.
    Refuse,
    /// Delete the run it holds and start afresh (`--force`).
    Replace,
    /// Continue the run it holds (`--resume`).
    Resume,
}

/// An output directory held by this process for one run; the lock goes when it drops.
pub struct RunDir {
    dir: PathBuf,
    _lock: std::fs::File,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who holds a lock, from the lock file's text `pid P\nstarted S\ncommand C\n`.
fn describe_holder(text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .unwrap_or("?")
    };
    let age = field("started ")
        .parse::<u64>()
        .map(|s| format!(", started {} s ago", now_seconds().saturating_sub(s)))
        .unwrap_or_default();
    format!("process {}{age}: `{}`", field("pid "), field("command "))
}

impl RunDir {
    /// Opens `dir` for a run, as the module documentation says.
    ///
    /// Errors: [`Error::OutDir`] if another run holds the lock (naming it), if the directory
    /// holds a run and `existing` is [`Existing::Refuse`] (naming the files and the flags),
    /// or if it has no training state to resume; [`Error::Io`] naming the file.
    pub fn open(dir: &Path, existing: Existing) -> Result<RunDir> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let out_dir = |reason: String| Error::OutDir {
            path: dir.to_path_buf(),
            reason,
        };
        let lock_path = dir.join(LOCK_FILE);
        let mut lock = open_no_follow(&lock_path, false, false)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = lock.read_to_string(&mut text);
                return Err(out_dir(format!(
                    "in use by another deepgen run ({}); wait for it to finish, or give this \
                     run another --out",
                    describe_holder(&text)
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let command: Vec<String> = std::env::args().collect();
        let info = format!(
            "pid {}\nstarted {}\ncommand {}\n",
            std::process::id(),
            now_seconds(),
            command.join(" ")
        );
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| lock.write_all(info.as_bytes()))
            .map_err(|e| Error::io(&lock_path, e))?;
        remove_stray_temporaries(dir)?;
        let run = RunDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        let present: Vec<&str> = [METRICS_FILE, MODEL_FILE, STATE_FILE]
            .into_iter()
            .filter(|f| std::fs::symlink_metadata(dir.join(f)).is_ok())
            .collect();
        match existing {
            Existing::Resume => {
                if !present.contains(&STATE_FILE) {
                    let why = if present.is_empty() {
                        "it holds no run".to_string()
                    } else {
                        format!(
                            "it holds {} but no {STATE_FILE} (a run that finished no epoch, or one \
                             written before --resume existed)",
                            present.join(", ")
                        )
                    };
                    return Err(out_dir(format!(
                        "nothing to resume: {why}; start a run with --force to replace it"
                    )));
                }
            }
            Existing::Replace => {
                for f in &present {
                    let p = dir.join(f);
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
            Existing::Refuse => {
                if !present.is_empty() {
                    return Err(out_dir(format!(
                        "already holds a training run ({}); refusing to overwrite it. Pass \
                         --resume to continue it, --force to replace it, or another --out",
                        present.join(", ")
                    )));
                }
            }
        }
        if existing != Existing::Resume {
            open_no_follow(&run.metrics_path(), false, true)?;
        }
        Ok(run)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `OUT/metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join(METRICS_FILE)
    }

    /// `OUT/model.safetensors`.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    /// `OUT/train_state.safetensors`.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Keeps the lines of metrics.jsonl of epochs up to `epochs` (a resumed run: a killed
    /// run may have appended the line of an epoch whose state it did not save, or half a
    /// line); rewrites the file atomically if any line goes.
    ///
    /// Errors: [`Error::Io`] naming the file.
    pub fn keep_metrics_up_to(&self, epochs: usize) -> Result<()> {
        let path = self.metrics_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("epoch").and_then(serde_json::Value::as_u64))
                    .is_some_and(|e| e as usize <= epochs)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        if out != text {
            write_atomic(&path, out.as_bytes())?;
        }
        Ok(())
    }
}
