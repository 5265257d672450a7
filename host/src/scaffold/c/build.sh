#!/usr/bin/env bash
# Builds build/{{crate}}.wasm: the C bindings of wit/host.wit's `agent` world
# (wit-bindgen), the code compiled for WASI as a reactor (Debian's clang 14;
# CLANG names another), then a component with the WASI reactor adapter
# beside this script (wasm-tools). WIT_BINDGEN and WASM_TOOLS name the tools
# when they are not on the PATH.
set -euo pipefail
cd "$(dirname "$0")"
clang=${CLANG:-clang-14}
wit_bindgen=${WIT_BINDGEN:-wit-bindgen}
wasm_tools=${WASM_TOOLS:-wasm-tools}
need() {
    if ! command -v "$1" >/dev/null; then
        echo "error: $1 is not installed; install it with: $2" >&2
        exit 1
    fi
}
need "$clang" "apt-get install -y clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32"
need "$wit_bindgen" "cargo install --locked wit-bindgen-cli@{{wit_bindgen}}"
need "$wasm_tools" "cargo install --locked wasm-tools@{{wasm_tools}}"
rm -rf build/gen
mkdir -p build/gen
"$wit_bindgen" c wit --world agent --out-dir build/gen >/dev/null
"$clang" --target=wasm32-wasi -mexec-model=reactor -Os -Wall -Wextra -Werror -Wl,--strip-debug \
    -I build/gen -o build/core.wasm ./*.c build/gen/agent.c build/gen/agent_component_type.o
"$wasm_tools" component new build/core.wasm \
    --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm -o build/{{crate}}.wasm
