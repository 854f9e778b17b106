#!/usr/bin/env bash
# The public API snapshot: `public-api.txt` lists every nameable public item and every
# public inherent method (from rustdoc's JSON, which needs the nightly toolchain), so the
# crate's surface changes only on purpose. Run by .ci/run; after a deliberate change,
# `bash .ci/public-api.sh --bless` rewrites the snapshot, and the diff is reviewed with
# the change.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "public API snapshot: SKIPPED, the nightly toolchain is not installed (rustdoc's JSON needs it)" >&2
    exit 0
fi
RUSTDOCFLAGS="-Z unstable-options --output-format json" \
    cargo +nightly doc --no-deps --all-features --lib --quiet
current=$(python3 .ci/public_api.py target/doc/tower_api_key.json)
if [ "${1:-}" = "--bless" ]; then
    printf '%s\n' "$current" > public-api.txt
    echo "public-api.txt rewritten: $(wc -l < public-api.txt) items"
    exit 0
fi
if ! diff -u public-api.txt <(printf '%s\n' "$current"); then
    echo "the public API changed (above: - removed, + added); if on purpose, run" >&2
    echo "  bash .ci/public-api.sh --bless   and commit public-api.txt with the change" >&2
    exit 1
fi
echo "public API snapshot: unchanged ($(wc -l < public-api.txt) items)"
