#!/usr/bin/env bash
# Runs one fuzz target with libFuzzer through cargo-fuzz on a stable compiler
# (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags), for SECONDS (default 1800),
# growing fuzz/corpus/TARGET from fuzz/seeds/TARGET. Limits: no single allocation over 256 MiB
# (-malloc_limit_mb) and no more than 2 GiB resident (-rss_limit_mb); an input that breaks
# either, panics, or runs over 10 s (-timeout) is a crash, saved in fuzz/artifacts/TARGET/.
#
#   cargo install cargo-fuzz            # once
#   fuzz/run.sh idx 1800                # or idx_gz, checkpoint
#
# Targets: idx (the IDX reader on file contents, raw or gzip), idx_gz (the same on
# gzip-compressed inputs), checkpoint (the checkpoint loader and the checks before a model is
# built), train_state (the training-state loader of --resume). Their code is src/fuzz.rs; tests/fuzz.rs replays the corpus under `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-1800}
case $target in
    checkpoint | train_state) max_len=131072 ;;
    *) max_len=65536 ;;
esac
mkdir -p "fuzz/corpus/$target"
RUSTC_BOOTSTRAP=1 exec cargo fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
    -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1
