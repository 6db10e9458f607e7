//! The fuzz targets' logic, as plain functions: `fuzz/` (cargo-fuzz, libFuzzer) calls them on
//! generated inputs, and `tests/fuzz.rs` replays the committed corpus through them and runs a
//! short seeded mutation pass, so `cargo test` covers them without a fuzzer installed.
//!
//! Each takes arbitrary bytes and must return without panicking, hanging or allocating more
//! than a bound proportional to its input: the readers refuse what they cannot read.

use std::path::Path;

use crate::checkpoint;
use crate::data::read_idx_from;
use crate::models::MlpConfig;
use crate::train::TrainState;

/// The largest storage binding the checkpoint target checks tensors against (wgpu's default
/// limit, 128 MiB; adapters may allow more).
pub const FUZZ_MAX_BINDING_BYTES: u64 = 128 << 20;

/// The IDX reader on `data` as a file's contents: raw, or gzip when it starts with the gzip
/// magic bytes. Allocates at most `data.len()` bytes for a raw file's data and, for a gzip
/// stream, at most twice what it inflates to, which the reader bounds by 1032 times
/// `data.len()` (deflate's largest ratio).
pub fn idx(data: &[u8]) {
    let _ = read_idx_from(data, data.len() as u64);
}

/// The IDX reader on `data` compressed with gzip: lets the fuzzer reach the header and size
/// checks of the gzip path with valid streams (random bytes are rarely a valid gzip stream).
pub fn idx_gz(data: &[u8]) {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if e.write_all(data).is_err() {
        return;
    }
    if let Ok(gz) = e.finish() {
        let _ = read_idx_from(gz.as_slice(), gz.len() as u64);
    }
}

/// The checkpoint loader on `data` as a file's contents: the safetensors header, the
/// metadata, the tensors and their finiteness ([`checkpoint::load_bytes`]), then the checks
/// made before a model is built ([`checkpoint::Checkpoint::check_buildable`] against a
/// 128 MiB binding, and the MLP sizes). Needs no GPU. Allocates at most about twice
/// `data.len()` (the bytes' tensors copied to f32 vectors).
pub fn checkpoint(data: &[u8]) {
    let Ok(ckpt) = checkpoint::load_bytes(data, Path::new("fuzz-input.safetensors")) else {
        return;
    };
    if let Ok(kind) = ckpt.kind() {
        let _ = ckpt.expect_kind(kind);
        if ckpt.check_buildable(kind, FUZZ_MAX_BINDING_BYTES).is_ok() {
            let _ = MlpConfig::from_metadata(&ckpt.metadata, &ckpt.path);
        }
    }
}

/// The training-state loader (`--resume`) on `data` as a file's contents
/// ([`TrainState::load_bytes`]), then the model part as a checkpoint. Allocates at most about
/// three times `data.len()`.
pub fn train_state(data: &[u8]) {
    if let Ok(state) = TrainState::load_bytes(data, Path::new("fuzz-input.safetensors")) {
        let ckpt = state.model_checkpoint(Path::new("fuzz-input.safetensors"));
        let _ = ckpt.check_buildable(state.kind, FUZZ_MAX_BINDING_BYTES);
    }
}
