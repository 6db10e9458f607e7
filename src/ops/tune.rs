//! The autotuner: which numbered version of a kernel runs, chosen per adapter by measurement.
//!
//! On the first use of a kernel for a shape class (the exact problem: the layout and
//! `M x K x N` of a product, the geometry of a convolution), [`choose`] times every eligible
//! version on the call's own operands (each once, then the contenders within 1.5x of the best
//! once more if a call is short; GPU timestamps where the adapter has them, else host time around a blocking
//! submit) and keeps the fastest. Every version computes the same product (each is tested
//! against the same f64 reference), so the choice changes speed, not results beyond float
//! rounding. Choices are kept for the process and, off the browser, in a small JSON file in
//! the user's cache directory ([`cache_path`]: `$DEEPGEN_CACHE_DIR/tuning.json`, else
//! `<cache dir>/deepgen/tuning.json`, the cache dir from the `dirs` crate), keyed by adapter
//! and driver ([`adapter_key`]), so later runs start fast. `deepgen info` lists them.
//!
//! Cheap by construction: the default version is timed on the whole problem first; if that
//! call takes longer than [`BUDGET_S`], every candidate (the default again) is timed on the same
//! leading slice of the problem, sized to take about that long with the default (the first
//! rows of a product, the first images of a convolution's batch), so that first use costs a
//! few budgets per shape class and not a full call of every slow version. Kernels run while
//! timing (the matmuls inside the im2col path) are not tuned themselves: they take their cached
//! choice or their default.
//!
//! Products under [`MIN_TUNED_MACS`] multiply-adds are not timed (their time is launch
//! overhead): the kernel's default runs. In the browser (wasm32) nothing blocks and there is no
//! file system: no timing, no file; the default runs unless a choice was made in-process.
//!
//! Forcing: the environment variables `DEEPGEN_MATMUL` (`v1`..`v5`, `auto`) and `DEEPGEN_CONV`
//! (`implicit`, `im2col`, `auto`), and in code `Gpu::force_matmul_version` /
//! `Gpu::force_conv_algorithm` (so a test can run every version in one process).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Environment variable naming the directory of the tuning cache (default: the user's cache
/// directory, `deepgen/` under it).
pub const CACHE_DIR_ENV: &str = "DEEPGEN_CACHE_DIR";

/// File name of the tuning cache in its directory.
pub const CACHE_FILE: &str = "tuning.json";

/// Products (and convolutions) of fewer multiply-adds are not timed: the default runs.
pub const MIN_TUNED_MACS: f64 = 65_536.0;

/// Seconds a timed call of one candidate aims for: problems whose default takes longer are
/// timed on a leading slice of this cost.
pub const BUDGET_S: f64 = 0.05;

thread_local! {
    /// Set while candidates are being timed: kernels inside them are not tuned (no nesting).
    static TIMING: Cell<bool> = const { Cell::new(false) };
}

/// Tuning choices: adapter key ([`adapter_key`]) -> shape class -> chosen version's name.
pub type Choices = BTreeMap<String, BTreeMap<String, String>>;

/// The process's choices (every adapter), loaded from the cache file on first use.
static TABLE: Mutex<Option<Choices>> = Mutex::new(None);

/// The adapter key of one GPU context, made once (kept in [`Gpu::extension`]).
#[derive(Default)]
struct AdapterKey(std::cell::OnceCell<String>);

/// The key of an adapter and its driver in the cache: `name | backend | driver`.
pub fn adapter_key(gpu: &Gpu) -> String {
    gpu.extension::<AdapterKey>()
        .0
        .get_or_init(|| {
            let s = gpu.summary();
            format!("{} | {} | {}", s.name, s.backend, s.driver)
        })
        .clone()
}

/// Where the tuning cache lives: `$DEEPGEN_CACHE_DIR/tuning.json` if that is set, else
/// `<user cache dir>/deepgen/tuning.json` (`dirs::cache_dir`: `~/.cache` on Linux,
/// `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows); None where there is none
/// (always in the browser).
pub fn cache_path() -> Option<PathBuf> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join(CACHE_FILE));
        }
        dirs::cache_dir().map(|d| d.join("deepgen").join(CACHE_FILE))
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// Reads a tuning cache file; a missing file is an empty table.
///
/// Errors: [`Error::Io`] naming the file if it cannot be read; [`Error::Invalid`] naming it if
/// it is not a cache (JSON object of objects of strings).
pub fn read_cache(path: &Path) -> Result<Choices> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Choices::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a deepgen tuning cache ({e}); delete it to start afresh",
            path.display()
        ))
    })
}

/// Runs `f` on the process's table, loading it from the cache file first if need be (an
/// unreadable file counts as empty and is replaced on the next write).
fn with_table<R>(f: impl FnOnce(&mut Choices) -> R) -> R {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let table = guard.get_or_insert_with(|| {
        cache_path()
            .and_then(|p| read_cache(&p).ok())
            .unwrap_or_default()
    });
    f(table)
}

/// The choice recorded for `class` on the adapter `adapter`, if any.
pub fn cached_choice(adapter: &str, class: &str) -> Option<String> {
    with_table(|t| t.get(adapter).and_then(|m| m.get(class)).cloned())
}

/// The choices recorded for the adapter `adapter` (this process's and the cache file's).
pub fn cached_choices(adapter: &str) -> BTreeMap<String, String> {
    with_table(|t| t.get(adapter).cloned().unwrap_or_default())
}

/// Records `choice` for `class` unless another thread recorded one first, and returns the
/// recorded one (so every context of the process agrees). Off the browser the cache file is
/// rewritten atomically with the entry merged in; a file that cannot be written costs only the
/// speed of the next run (said once on stderr).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn record_choice(adapter: &str, class: &str, choice: &str) -> String {
    let recorded = with_table(|t| {
        t.entry(adapter.to_string())
            .or_default()
            .entry(class.to_string())
            .or_insert_with(|| choice.to_string())
            .clone()
    });
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(path) = cache_path() {
        let write = || -> Result<()> {
            let mut on_disk = read_cache(&path).unwrap_or_default();
            on_disk
                .entry(adapter.to_string())
                .or_default()
                .insert(class.to_string(), recorded.clone());
            let text = serde_json::to_string_pretty(&on_disk)
                .map_err(|e| Error::Invalid(format!("tuning cache: {e}")))?;
            crate::files::write_atomic(&path, text.as_bytes())
        };
        if let Err(e) = write() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("deepgen: tuning choices not saved: {e}"));
        }
    }
    recorded
}

/// The version of a kernel to run for shape class `class`: the cached choice if there is one
/// among `candidates`; else, off the browser, the fastest of `candidates` as measured by
/// `run(candidate, fraction)` (which records one call of the given version on the leading
/// `fraction` of the problem, at least its smallest slice; see the module doc), recorded for
/// later calls and runs; in the browser, or while another choice is being timed, `default`.
/// With one candidate or none, that one or `default`, untimed.
pub(crate) fn choose<T: Copy + PartialEq>(
    gpu: &Gpu,
    class: &str,
    candidates: &[T],
    name: impl Fn(T) -> &'static str,
    default: T,
    run: impl FnMut(T, f64) -> Result<()>,
) -> T {
    if candidates.len() <= 1 {
        return candidates.first().copied().unwrap_or(default);
    }
    let adapter = adapter_key(gpu);
    let by_name = |wanted: &str| candidates.iter().copied().find(|&c| name(c) == wanted);
    if let Some(found) = cached_choice(&adapter, class).and_then(|c| by_name(&c)) {
        return found;
    }
    if TIMING.with(Cell::get) {
        return default;
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = run;
        default
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        TIMING.with(|t| t.set(true));
        let best = fastest(gpu, candidates, default, run);
        TIMING.with(|t| t.set(false));
        let best = best.unwrap_or(default);
        let recorded = record_choice(&adapter, class, name(best));
        by_name(&recorded).unwrap_or(best)
    }
}

/// The candidate with the least measured time (None if every timing failed). The default (or
/// the first candidate) is timed on the whole problem; if it took over [`BUDGET_S`], every
/// candidate is timed on the fraction `BUDGET_S / that` of it instead. Then those within 1.5x
/// of the best are timed once more (only where a call took under [`RETIME_BELOW_S`]), keeping
/// each one's minimum.
#[cfg(not(target_arch = "wasm32"))]
fn fastest<T: Copy + PartialEq>(
    gpu: &Gpu,
    candidates: &[T],
    default: T,
    mut run: impl FnMut(T, f64) -> Result<()>,
) -> Option<T> {
    let first = candidates.iter().position(|&c| c == default).unwrap_or(0);
    let whole = seconds(gpu, || run(candidates[first], 1.0)).unwrap_or(f64::INFINITY);
    let fraction = if whole > BUDGET_S && whole.is_finite() {
        (BUDGET_S / whole).max(1e-4)
    } else {
        1.0
    };
    let mut times = vec![f64::INFINITY; candidates.len()];
    if fraction == 1.0 {
        times[first] = whole;
    }
    for pass in 0..2 {
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        for (i, &c) in candidates.iter().enumerate() {
            let skip = if pass == 0 {
                times[i].is_finite()
            } else {
                times[i] > 1.5 * best || times[i] >= RETIME_BELOW_S
            };
            if skip {
                continue;
            }
            if let Ok(s) = seconds(gpu, || run(c, fraction)) {
                times[i] = times[i].min(s);
            }
        }
    }
    let (i, t) = times.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?;
    t.is_finite().then(|| candidates[i])
}

/// Candidates whose first timed call took longer than this (seconds) are not timed again.
pub const RETIME_BELOW_S: f64 = 0.25;

/// Seconds the GPU spends on what `record` records, after all earlier work: GPU timestamps
/// where the adapter has them inside encoders, else host time around the submit and the wait.
#[cfg(not(target_arch = "wasm32"))]
pub fn seconds(gpu: &Gpu, record: impl FnOnce() -> Result<()>) -> Result<f64> {
    gpu.synchronize()?;
    if gpu.has_gpu_timer() {
        let start = std::time::Instant::now();
        return Ok(match gpu.gpu_seconds(record)? {
            Some(s) if s > 0.0 => s,
            _ => start.elapsed().as_secs_f64(),
        });
    }
    let start = std::time::Instant::now();
    record()?;
    gpu.synchronize()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Reads a forcing environment variable: None if unset, empty or `auto`; else `parse` of its
/// value, or None with a warning on stderr if `parse` rejects it (`expected` lists the values).
pub(crate) fn forced_by_env<T>(
    var: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let value = std::env::var(var).ok()?;
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("auto") {
        return None;
    }
    let parsed = parse(&value.to_ascii_lowercase());
    if parsed.is_none() {
        eprintln!("deepgen: ignoring {var}={value} (expected {expected})");
    }
    parsed
}
