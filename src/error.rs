//! Typed errors of the library. The binary adds context with `anyhow`.
//!
//! Every variant names what went wrong and where: the op and the shapes for a
//! shape error, the file for a data or checkpoint error, the epoch and step for
//! a diverged loss.

use std::path::PathBuf;

/// Result alias used throughout deepgen.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter at all: wgpu found no Vulkan, Metal, DX12 or GL driver.
    #[error(
        "no GPU adapter found: wgpu needs a Vulkan, Metal or DX12 driver. \
         On CPU-only Linux install Mesa's software Vulkan driver: \
         `apt-get install mesa-vulkan-drivers` (Debian/Ubuntu) or `dnf install mesa-vulkan-drivers` (Fedora)"
    )]
    NoAdapter,

    /// `DEEPGEN_ADAPTER` was set but matched no adapter (name and backend).
    #[error(
        "no adapter matches {wanted:?} (from DEEPGEN_ADAPTER: every word must occur in the name \
         or the [backend]); adapters found: {available}"
    )]
    AdapterNotFound {
        /// The substring that was asked for.
        wanted: String,
        /// Names of the adapters that exist, comma separated.
        available: String,
    },

    /// The adapter refused to create a device.
    #[error("could not open a device on adapter {adapter:?}: {reason}")]
    Device {
        /// Adapter name.
        adapter: String,
        /// What wgpu said.
        reason: String,
    },

    /// Shapes that an op cannot combine; caught on the host before any dispatch.
    #[error("{op}: {detail}")]
    Shape {
        /// The op that refused the shapes, e.g. `matmul`.
        op: &'static str,
        /// The shapes involved and the rule they break.
        detail: String,
    },

    /// A request the engine cannot serve (buffer too large, backward of a non-scalar, ...).
    #[error("{0}")]
    Invalid(String),

    /// A GPU-side failure (mapping a buffer for readback, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A data file that is missing, truncated or malformed.
    #[error("{}: {reason}", path.display())]
    Data {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it, and where relevant how to fix it.
        reason: String,
    },

    /// A checkpoint that cannot be read, or one of another model.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An input/output error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that could not be read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A training loss or metric became NaN or infinite.
    #[error(
        "training diverged at epoch {epoch}, step {step}: {value} in {quantity}; stopped {}",
        match checkpoint {
            Some(p) => format!("without overwriting the last good checkpoint ({})", p.display()),
            None => "before any epoch finished, so no checkpoint was written".to_string(),
        }
    )]
    NonFiniteLoss {
        /// What was NaN or infinite: a shown loss (`loss`, `d_loss`) or metrics fields
        /// (`test_loss`, `test_kl_per_dim[3]`).
        quantity: String,
        /// The value that was read back (NaN or +-inf).
        value: f32,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch (the epoch's last for its means and evaluation).
        step: usize,
        /// The checkpoint of the run's last epoch whose every value was finite, if one was
        /// written.
        checkpoint: Option<PathBuf>,
    },

    /// An output directory that a run cannot use as asked: it holds another run, another
    /// run holds its lock, or it has nothing to resume.
    #[error("output directory {}: {reason}", path.display())]
    OutDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong, and what to pass instead.
        reason: String,
    },

    /// A training run stopped at a step boundary because it was asked to (Ctrl-C, SIGTERM).
    #[error("stopped at epoch {epoch}, step {step}, as asked; {}", match state {
        Some(p) => format!("its state is in {}: continue with the same command and --resume", p.display()),
        None => "this model cannot be resumed, so nothing was saved".to_string(),
    })]
    Interrupted {
        /// 1-based epoch in progress.
        epoch: usize,
        /// Steps of it done.
        step: usize,
        /// The training state written (to resume from), if the trainer supports resuming.
        state: Option<PathBuf>,
    },
}

impl Error {
    /// Shorthand for a [`Error::Shape`].
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    /// Shorthand for an [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Data`] on `path`.
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
