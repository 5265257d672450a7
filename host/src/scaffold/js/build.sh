#!/usr/bin/env bash
# Builds build/{{crate}}.wasm with jco (installed from package-lock.json by
# npm ci the first time). keel grants no wasi:http, so it is left out.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null; then
    echo "error: npm is not installed; install Node.js 20 and npm (apt-get install -y nodejs npm)" >&2
    exit 1
fi
[ -x node_modules/.bin/jco ] || npm ci --no-audit --no-fund --loglevel=error
mkdir -p build
node_modules/.bin/jco componentize app.js --wit wit --world-name {{name}} -d http -d fetch-event -o build/{{crate}}.wasm
