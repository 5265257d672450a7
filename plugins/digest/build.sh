#!/usr/bin/env bash
# Builds the digest agent with componentize-py (COMPONENTIZE_PY names it;
# default: the one `scripts/setup --python-guest` installs).
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)
COMPONENTIZE_PY=${COMPONENTIZE_PY:-$("$repo/scripts/setup" --python-guest --print)}
mkdir -p "$repo/target/wasm/python"
"$COMPONENTIZE_PY" -d wit -w digest componentize app -o "$repo/target/wasm/python/digest.wasm"
