#!/usr/bin/env bash
# Builds the followup agent with jco (JCO names it; default: the one
# `scripts/setup --js-guest` installs). keel grants no wasi:http, so it is
# left out.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)
JCO=${JCO:-$("$repo/scripts/setup" --js-guest --print)}
mkdir -p "$repo/target/wasm/js"
"$JCO" componentize app.js --wit wit --world-name followup -d http -d fetch-event -o "$repo/target/wasm/js/followup.wasm"
