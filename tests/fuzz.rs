//! The fuzz targets of `fuzz/` under `cargo test`, without a fuzzer: every committed seed
//! and corpus input (fuzz/seeds/TARGET, fuzz/corpus/TARGET) is replayed through the target's
//! function (src/fuzz.rs), then a short seeded mutation pass (bit flips, byte changes,
//! insertions, deletions, splices and 32-bit "interesting" values, as libFuzzer's mutators)
//! runs from them. Every call must return (a panic fails the test) and stay within the
//! stated allocation bound, measured by a counting allocator: the peak of live heap bytes
//! during the call, on the calling thread.
//!
//! The bounds, the same as the libFuzzer runs state (fuzz/README.md):
//! - `checkpoint` and `train_state`: 16 times the input plus 8 MiB (the tensors' values copied
//!   once or twice, the safetensors header parsed once);
//! - `idx`: 2 x 1032 times the input plus 8 MiB: a gzip stream can inflate to 1032 times its
//!   size (deflate's limit, which the reader enforces against the declared size), read into a
//!   growing buffer; a raw file is read into a buffer of exactly its declared size;
//! - `idx_gz`, whose input is compressed first: 16 times the input plus 8 MiB plus 1 MiB per
//!   KiB of input (the inflated data is the input itself; the encoder's buffers).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

/// The system allocator, counting the live bytes and their peak per thread.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f(input)` and returns the peak of the bytes it had live at once.
fn peak_bytes(f: fn(&[u8]), input: &[u8]) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f(input);
    PEAK.with(Cell::get).saturating_sub(base)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file in fuzz/seeds/TARGET and fuzz/corpus/TARGET, sorted by path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    inputs_in(target, &["seeds", "corpus"])
}

/// Every file in fuzz/DIR/TARGET for each of `dirs`, sorted by path.
fn inputs_in(target: &str, dirs: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root().join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Values libFuzzer also tries in 32-bit fields: sizes at the edges of u32, i32 and f32.
const INTERESTING: [u32; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// One random mutation of `input` (with `other` for splices).
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let pos = |rng: &mut StdRng, v: &[u8]| rng.random_range(0..v.len().max(1));
    match rng.random_range(0..7) {
        0 if !v.is_empty() => {
            let i = pos(rng, &v);
            v[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !v.is_empty() => {
            let i = pos(rng, &v);
            v[i] = rng.random();
        }
        2 => {
            let i = rng.random_range(0..=v.len());
            let n = rng.random_range(1..16);
            for _ in 0..n {
                v.insert(i, rng.random());
            }
        }
        3 if !v.is_empty() => {
            let i = pos(rng, &v);
            let n = rng.random_range(1..=v.len() - i);
            v.drain(i..i + n);
        }
        4 if !other.is_empty() => {
            let cut = rng.random_range(0..=v.len());
            let from = rng.random_range(0..other.len());
            v.truncate(cut);
            v.extend_from_slice(&other[from..]);
        }
        5 if v.len() >= 4 => {
            let i = rng.random_range(0..=v.len() - 4);
            let x = INTERESTING[rng.random_range(0..INTERESTING.len())];
            let bytes = if rng.random() {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            };
            v[i..i + 4].copy_from_slice(&bytes);
        }
        _ => {
            let n = rng.random_range(0..=v.len());
            v.truncate(n);
        }
    }
    v
}

/// Replays the corpus of `target` through `f`, then `rounds` seeded mutations; checks the
/// allocation bound of each call. Returns the inputs run.
fn run(target: &str, f: fn(&[u8]), rounds: usize, bound: fn(usize) -> usize) -> usize {
    let corpus = inputs(target);
    assert!(
        !corpus.is_empty(),
        "no seeds in {}",
        root().join("seeds").join(target).display()
    );
    let check = |what: &dyn Fn() -> String, input: &[u8]| {
        let peak = peak_bytes(f, input);
        assert!(
            peak <= bound(input.len()),
            "{target}: {} ({} bytes) allocated {peak} bytes at once, over the bound {}",
            what(),
            input.len(),
            bound(input.len())
        );
    };
    for (path, bytes) in &corpus {
        check(&|| path.display().to_string(), bytes);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..rounds {
        let a = &corpus[rng.random_range(0..corpus.len())].1;
        let b = &corpus[rng.random_range(0..corpus.len())].1;
        let mut input = mutate(&mut rng, a, b);
        for _ in 0..rng.random_range(0..4) {
            input = mutate(&mut rng, &input, b);
        }
        check(&|| format!("mutation {round}"), &input);
    }
    corpus.len() + rounds
}

const MIB: usize = 1 << 20;

#[test]
fn idx_reader_survives_its_corpus_and_mutations() {
    let n = run("idx", deepgen::fuzz::idx, 3000, |len| {
        2 * 1032 * len + 8 * MIB
    });
    assert!(n > 3000);
}

#[test]
fn gzipped_idx_reader_survives_its_corpus_and_mutations() {
    run("idx_gz", deepgen::fuzz::idx_gz, 1000, |len| {
        16 * len + 8 * MIB + len.div_ceil(1024) * MIB
    });
}

#[test]
fn checkpoint_loader_survives_its_corpus_and_mutations() {
    run("checkpoint", deepgen::fuzz::checkpoint, 3000, |len| {
        16 * len + 8 * MIB
    });
}

#[test]
fn train_state_loader_survives_its_corpus_and_mutations() {
    run("train_state", deepgen::fuzz::train_state, 2000, |len| {
        16 * len + 8 * MIB
    });
}

/// The bound is real: a gzip stream whose header declares 1.2 GB is refused after its header
/// (the seed `bomb_declared.gz`), and the 4 MiB after a one-byte array (`bomb_trailing.gz`,
/// 4 KiB compressed) are counted (up to 1 MiB), not stored.
#[test]
fn gzip_bombs_are_refused_within_the_bound() {
    for name in ["bomb_declared.gz", "bomb_trailing.gz"] {
        let bytes = std::fs::read(Path::new(&root()).join("seeds/idx").join(name)).unwrap();
        let peak = peak_bytes(deepgen::fuzz::idx, &bytes);
        assert!(peak < 2 * MIB, "{name}: {peak} bytes");
        let err = match deepgen::data::read_idx_from(bytes.as_slice(), bytes.len() as u64) {
            Err(deepgen::data::IdxError::Format(e)) => e,
            other => panic!("{name}: {other:?}"),
        };
        assert!(
            err.contains("more than a gzip file") || err.contains("unexpected bytes"),
            "{name}: {err}"
        );
    }
}

/// The counter sees allocations: a 10 MiB buffer shows as at least that.
#[test]
fn the_allocation_counter_counts() {
    fn big(_: &[u8]) {
        std::hint::black_box(vec![1u8; 10 * MIB]);
    }
    assert!(peak_bytes(big, &[]) >= 10 * MIB);
    assert!(peak_bytes(|_| {}, &[]) < 1024);
}

/// Mutations are not all refused at the first byte: some of the seeds' reach the data (the
/// pass tests the readers' depths, not only their magic-number checks).
#[test]
fn mutations_reach_valid_inputs() {
    let corpus = inputs_in("idx", &["seeds"]);
    let mut rng = StdRng::seed_from_u64(1);
    let mut ok = 0;
    for _ in 0..500 {
        let a = &corpus[rng.random_range(0..corpus.len())].1;
        let m = mutate(&mut rng, a, a);
        ok += deepgen::data::read_idx_from(m.as_slice(), m.len() as u64).is_ok() as usize;
    }
    assert!(ok > 10, "only {ok} of 500 mutations were valid IDX arrays");
    let _ = rng.next_u32();
}
