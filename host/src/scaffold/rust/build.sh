#!/usr/bin/env bash
# Builds build/{{crate}}.wasm with cargo for wasm32-wasip2.
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
mkdir -p build
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" build/
