#!/usr/bin/env bash
# Builds the plugin, installs it into a fresh keel home, runs it twice with
# the same input and checks it kept exactly one note. KEEL names the keel
# binary (default: keel on the PATH).
set -euo pipefail
cd "$(dirname "$0")"
keel=${KEEL:-keel}
if ! command -v "$keel" >/dev/null; then
    echo "error: keel is not on the PATH; install it (cargo install --path host in keel's repository) or set KEEL=/path/to/keel" >&2
    exit 1
fi
./build.sh
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
"$keel" init --home "$home" >/dev/null
"$keel" plugin install . --home "$home" --yes >/dev/null
for attempt in 1 2; do
    ran=$("$keel" run {{name}} --home "$home" --input '{"title": "Hello", "text": "from the test"}' --json)
    if ! grep -q '"outcome": *"ok"' <<<"$ran"; then
        echo "FAIL: run $attempt did not end ok: $ran" >&2
        exit 1
    fi
done
notes=$("$keel" records list --home "$home" --json)
count=$(grep -o '"kind": *"core/note"' <<<"$notes" | wc -l)
if [ "$count" -ne 1 ]; then
    echo "FAIL: expected one core/note after two runs, found $count: $notes" >&2
    exit 1
fi
bad=$("$keel" run {{name}} --home "$home" --input '{"text": "no title"}' --json || true)
if ! grep -q '"error": *"invalid"' <<<"$bad"; then
    echo "FAIL: input without a title should be invalid: $bad" >&2
    exit 1
fi
"$keel" audit verify --home "$home" >/dev/null
echo "ok: {{name}} built, installed, ran twice and kept one note"
