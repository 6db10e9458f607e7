#!/usr/bin/env bash
# Builds the page in web/www: the engine for wasm32-unknown-unknown (release), its JavaScript
# glue (wasm-bindgen, into web/www/pkg) and the bundled MNIST subset (web/www/data).
#   web/build.sh            build
#   web/build.sh --serve    build, then serve web/www on http://127.0.0.1:${PORT:-8000}/
# Needs: rustup target add wasm32-unknown-unknown; cargo install wasm-bindgen-cli --version X,
# X being the wasm-bindgen version in Cargo.lock (checked below). The wasm build has its own
# target directory (target/web) so that it can run while another cargo holds target/ (the
# browser test runs this script from inside `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null; then
    echo "web/build.sh: wasm-bindgen not found; run: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
have=$(wasm-bindgen --version | awk '{ print $2 }')
if [ "$have" != "$want" ]; then
    echo "web/build.sh: wasm-bindgen $have installed, Cargo.lock pins $want;" \
        "run: cargo install wasm-bindgen-cli --version $want --force" >&2
    exit 1
fi

target_dir=${DEEPGEN_WEB_TARGET_DIR:-target/web}
cargo build --release -p deepgen-web --target wasm32-unknown-unknown --target-dir "$target_dir"
wasm-bindgen --target web --no-typescript --out-dir web/www/pkg \
    "$target_dir/wasm32-unknown-unknown/release/deepgen_web.wasm"

# The bundled subset: MNIST's 10,000-image test split (1.6 MB of gzip, decompressed in Rust by
# the page), served beside it.
mkdir -p web/www/data
cp data/mnist/t10k-images-idx3-ubyte.gz data/mnist/t10k-labels-idx1-ubyte.gz web/www/data/
echo "web/build.sh: built web/www (wasm $(du -h web/www/pkg/deepgen_web_bg.wasm | cut -f1))"

if [ "${1:-}" = "--serve" ]; then
    port=${PORT:-8000}
    echo "serving http://127.0.0.1:$port/ (Ctrl-C stops)"
    exec python3 -m http.server --bind 127.0.0.1 --directory web/www "$port"
fi
