#!/usr/bin/env bash
# Builds the followup agent with jco (JCO names it; default: the one
# `scripts/setup --js-guest` installs). keel grants no wasi:http, so it is
# left out.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)
if [ -z "${JCO:-}" ]; then
    "$repo/scripts/setup" --js-guest
    hash=$(cat "$repo/scripts/guest-js/package.json" "$repo/scripts/guest-js/package-lock.json" | sha256sum | cut -c1-12)
    JCO="${XDG_CACHE_HOME:-$HOME/.cache}/keel/jco-$hash/node_modules/.bin/jco"
fi
mkdir -p "$repo/target/wasm/js"
"$JCO" componentize app.js --wit wit --world-name followup -d http -d fetch-event -o "$repo/target/wasm/js/followup.wasm"
