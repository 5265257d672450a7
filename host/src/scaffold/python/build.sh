#!/usr/bin/env bash
# Builds build/{{crate}}.wasm with componentize-py (COMPONENTIZE_PY names it;
# default: componentize-py on the PATH).
set -euo pipefail
cd "$(dirname "$0")"
tool=${COMPONENTIZE_PY:-componentize-py}
if ! command -v "$tool" >/dev/null; then
    echo "error: componentize-py is not installed; install it with: pip install componentize-py=={{componentize_py}}" >&2
    exit 1
fi
mkdir -p build
"$tool" -d wit -w {{name}} componentize app -o build/{{crate}}.wasm
