#!/usr/bin/env bash
# Builds the digest agent with componentize-py (COMPONENTIZE_PY names it;
# default: the one `scripts/setup --python-guest` installs).
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)
if [ -z "${COMPONENTIZE_PY:-}" ]; then
    "$repo/scripts/setup" --python-guest
    hash=$(sha256sum "$repo/scripts/guest-python.txt" | cut -c1-12)
    COMPONENTIZE_PY="${XDG_CACHE_HOME:-$HOME/.cache}/keel/componentize-py-$hash/bin/componentize-py"
fi
mkdir -p "$repo/target/wasm/python"
"$COMPONENTIZE_PY" -d wit -w digest componentize app -o "$repo/target/wasm/python/digest.wasm"
