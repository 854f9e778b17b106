#!/usr/bin/env bash
# The request path's cost ledger, by part, from the callgrind dumps of
# `benches/e2e.sh callgrind` (OUT=<dir>): instructions per request of each part,
# inclusive (a part counts what it calls), on the demo's `GET /v1/ping`.
#
# Usage: benches/ledger.sh <OUT dir> [N]     (N: requests per phase, 2000 by default)
#
# Rows are functions of the release build that survive inlining; a part whose function
# is inlined into its caller shows as "(absent)". Each later addition (usage counting,
# the owner directory, idempotency) adds its row here, and is measured with the
# addition off and on by the phase totals that e2e.sh prints.
set -euo pipefail
dir=${1:?usage: benches/ledger.sh <OUT dir> [N]}
n=${2:-2000}
command -v callgrind_annotate >/dev/null || { echo "callgrind_annotate (valgrind) is required" >&2; exit 1; }

# part|function name as callgrind_annotate prints it (a unique substring)
rows=(
  "  extraction (headers)|tower_api_key::credentials::KeySources::read_head"
  "  verification, in all|tower_api_key::authenticate::authenticator::KeyVerifier<S>::start"
  "    parse and checksum|tower_api_key::key::KeyFormat::parse_bytes"
  "    digest (SHA-256)|tower_api_key::key::ParsedKey::digest"
  "    cache lookup|tower_api_key::store::cache::Inner<S>::fresh"
  "    expiry, grace, environment|tower_api_key::authenticate::authenticator::KeyVerifier<S>::verify"
  "  admission (principal, last used)|tower_api_key::authenticate::service::admit"
  "  scope guard and what it wraps|tower_api_key::require_scopes::RequireScopes<S> as tower_service::Service"
  "    rate limiter|tower_api_key::rate_limit::limits::Limits<L>::start"
  "      its bucket lookup (moka)|moka::sync::cache::Cache<K,V,S>::get_with_by_ref"
  "  response future|tower_api_key::pipeline::future::ResponseFuture<S,B,W> as core::future::future::Future>::poll"
)

for file in "$dir"/ping.callgrind.out "$dir"/ping-ratelimit.callgrind.out; do
  [ -f "$file" ] || continue
  echo "== $(basename "$file" .callgrind.out) (instructions per request, N=$n)"
  annotated=$(callgrind_annotate --inclusive=yes --threshold=100 "$file" 2>/dev/null)
  # The whole middleware: this route against /healthz sent the same header (the
  # phases' totals), whatever the compiler inlined.
  header=${file/ping/header}
  if [ -f "$header" ]; then
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
    base=$(awk '/^(summary|totals):/ { print $2; exit }' "$header")
    printf '%-38s %8.0f\n' "the middleware (ping - header)" "$(echo "($total - $base) / $n" | bc -l)"
  fi
  for row in "${rows[@]}"; do
    part=${row%%|*}
    fn=${row#*|}
    ir=$( (grep -F -- "$fn" <<<"$annotated" || true) | head -n 1 | awk '{ gsub(",", "", $1); print $1 }')
    if [ -n "$ir" ]; then
      printf '%-38s %8.0f\n' "$part" "$(echo "$ir / $n" | bc -l)"
    else
      printf '%-38s %8s\n' "$part" "(absent)"
    fi
  done
done
