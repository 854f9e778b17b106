#!/usr/bin/env bash
# An independent check of the demo against its own OpenAPI document: Schemathesis
# (pinned, in a virtual environment under target/) runs every check, including
# `ignored_auth` and the stateful phase (create → get / update / rotate / revoke through
# the document's response links), with a fixed seed and a bounded number of examples,
# against the demo binary built with --all-features, authenticated as acme's admin key.
# Any failure, a 5xx included, fails the script.
#
# Bounds (examples per operation, scenario steps) are in .ci/schemathesis.toml.
#
# Usage: .ci/schemathesis.sh   (SCHEMATHESIS_SEED=18 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

version="4.32.5"
seed="${SCHEMATHESIS_SEED:-18}"
venv="target/schemathesis-venv"
work="target/schemathesis"

if ! "$venv/bin/st" --version 2>/dev/null | grep -q "version $version\$"; then
    echo "installing Schemathesis $version into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

# The test binaries use the same demo binary: never build it without --all-features.
cargo build --all-features --example demo
rm -rf "$work"
mkdir -p "$work"

# The rate limit is raised past what the run sends: a 429 is documented, but a run
# that spends its requests on 429s tests nothing else.
target/debug/examples/demo --listen 127.0.0.1:0 --rate-limit 100000/s \
    >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
trap 'kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
    grep -q '^admin key for globex' "$work/demo.out" 2>/dev/null && break
    kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.err" >&2; exit 1; }
    sleep 0.1
done
base="$(sed -n 's/^listening on //p' "$work/demo.out")"
key="$(sed -n 's/^admin key for acme (shown once): //p' "$work/demo.out")"
if [ -z "$base" ] || [ -z "$key" ]; then
    echo "the demo did not print its address and admin key" >&2
    cat "$work/demo.out" "$work/demo.err" >&2
    exit 1
fi

# Run from the work directory: Schemathesis keeps its caches in the current one. No
# example database: the same seed then generates the same run.
config="$PWD/.ci/schemathesis.toml"
cd "$work"
started=$(date +%s)
status=0
"../../$venv/bin/st" --config-file "$config" run "$base/openapi.json" \
    --checks all \
    --phases "${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}" \
    --header "Authorization: Bearer $key" \
    --seed "$seed" \
    --generation-with-security-parameters false \
    --workers 1 \
    --request-timeout 15 \
    --report junit \
    --generation-database none \
    --report-dir . \
    --no-color || status=$?
echo "schemathesis: exit $status after $(( $(date +%s) - started )) s"
if ! kill -0 "$demo_pid" 2>/dev/null; then
    echo "the demo died during the run" >&2
    exit 1
fi

# What the key-lifecycle scenarios did, from the demo's own audit log: a key is only
# rotated, re-scoped or revoked through an id taken from a response (a random id is
# 404), so these count the stateful phase's create → update / rotate → revoke chains.
# Reading it also proves that the run's admin key still works: had the run revoked it,
# every request after that would have been a 401 that tests nothing.
audit="$(curl -s "$base/v1/audit_log" -H "Authorization: Bearer $key")"
if ! printf '%s' "$audit" | grep -q '"items"'; then
    echo "the admin key no longer works after the run: $audit" >&2
    exit 1
fi
lifecycle=""
# An update (PATCH) is a rename or a change of scopes, whichever the run generated:
# either counts as reaching it.
for action in created 'scopes_changed|renamed' rotated revoked; do
    count="$(printf '%s' "$audit" | { grep -Eo "\"action\":\"api_key\.($action)\"" || true; } | wc -l)"
    lifecycle="$lifecycle api_key.$action=$count"
    case "${SCHEMATHESIS_PHASES:-stateful}" in
        *stateful*)
            if [ "$count" -eq 0 ]; then
                echo "the run never reached api_key.$action" >&2
                status=1
            fi
            ;;
    esac
done
echo "key lifecycle through the API:$lifecycle"
exit "$status"
