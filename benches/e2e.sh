#!/usr/bin/env bash
# End-to-end cost of authentication over real HTTP on loopback, side by side with the
# same handler without authentication: GET /healthz (no auth) against GET /v1/ping (the
# same handler and body behind ApiKeyLayer, the scope guard and the last-used buffer).
# The demo runs twice: with `--rate-limit off` (authentication and scope guard only,
# the route the targets describe) and with a rate limit so high that it never refuses
# (the limiter's cost on top).
#
# 1. Instructions per request (the primary figure): the release demo runs under
#    `valgrind --tool=callgrind`; N keep-alive requests go to each route, with
#    `callgrind_control -z` / `-d` around each phase. A third phase sends /healthz the
#    same `Authorization` header as /v1/ping: the difference to plain /healthz is what
#    hyper and axum spend on carrying the header, which any authentication pays.
# 2. Requests per second (secondary, noisy on shared machines): wrk, servers and load
#    generator pinned to different cores, the routes alternating for several rounds.
#
# 3. A flood of forged keys (`flood`, not part of `all`): the PostgreSQL-backed demo
#    behind a TCP proxy this script controls (benches/pgproxy.py; the shared server is
#    never stopped), `examples/flood.rs` sending distinct well-formed keys that were
#    never issued from FLOOD_THREADS (8) tasks for FLOOD_SECONDS (30) per phase while
#    one client uses a valid key. Store lookups are read from `pg_stat_user_tables`
#    (seq_scan + idx_scan of the keys table, which also counts the last-used writes and
#    a start's listings) and `pg_stat_user_indexes` (index scans of its primary key
#    that found nothing: lookups of ids the store does not hold, printed per 1,000
#    forged keys), reads of the tag secrets table likewise, RSS from /proc.
#    From one address (127.0.0.1), the valid key already used: the valid client alone;
#    a flood of untagged keys; the same with PostgreSQL cut off from 10 s to 20 s;
#    forged *tagged* keys (tagged under the attacker's own secret with the valid key's
#    secret id); then untagged keys with `--unknown-key-budget off`. Behind one trusted
#    proxy (`--trusted-proxies 1`, X-Forwarded-For; the valid client sends the flood's
#    first address, 10.0.0.1): the valid client alone; forged tagged keys rotating over
#    FLOOD_ADDRESSES (10,000) addresses; from one address, a valid key this instance
#    has never seen (made through the first instance) after 1 s of a tagged flood, and
#    another after 1 s of an untagged flood that spent the address's budget; forged
#    tagged keys from FLOOD_ADDRESSES addresses with the demo restarted (SIGTERM, then
#    the same flags, port and database) a third of the way in.
#    PG_URL (postgres://postgres@127.0.0.1:5432) names the server; a scratch database
#    is created and dropped.
#
# Usage: benches/e2e.sh [callgrind|wrk|all|flood|redis|usage]   (N=2000 ROUNDS=5 DURATION=5s by default;
#        flood: FLOOD_SECONDS=30 FLOOD_THREADS=8 FLOOD_ADDRESSES=10000, about 10 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
# Extra demo flags for the configuration being measured.
EXTRA=()
N=${N:-2000}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
OUT=${OUT:-target/e2e}
mkdir -p "$OUT"

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2" >&2
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
need curl curl
if [ "$MODE" != flood ]; then
    need valgrind valgrind
    need wrk wrk
    # BIN=path measures another build of the demo (a commit before a change, say).
    [ -n "${BIN:-}" ] || cargo build --release --features redis,utoipa --example demo --quiet
fi
BIN=${BIN:-target/release/examples/demo}

# The demo's rate limit for each configuration measured.
RATE_LIMITS=("off" "1000000000/s")

# Starts the demo with rate limit $1 (optionally under a wrapper command, the other
# arguments), sets BASE, KEY and PID.
start_demo() {
    local rate=$1
    shift
    local log="$OUT/demo.stdout"
    rm -f "$log"
    "$@" "$BIN" --listen 127.0.0.1:0 --rate-limit "$rate" "${EXTRA[@]}" >"$log" 2>"$OUT/demo.stderr" &
    PID=$!
    for _ in $(seq 1 600); do
        if grep -q '^admin key for globex' "$log" 2>/dev/null; then break; fi
        sleep 0.1
    done
    BASE=$(sed -n 's/^listening on //p' "$log")
    KEY=$(sed -n 's/^admin key for acme (shown once): //p' "$log")
    [ -n "$BASE" ] && [ -n "$KEY" ] || { echo "the demo did not start" >&2; cat "$OUT/demo.stderr" >&2; exit 1; }
}

stop_demo() {
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}

# N keep-alive GETs of one path over a single connection.
requests() {
    local path=$1 auth=${2:-}
    local config="$OUT/curl.conf"
    : >"$config"
    for _ in $(seq 1 "$N"); do printf 'url = "%s%s"\noutput = "/dev/null"\n' "$BASE" "$path" >>"$config"; done
    if [ -n "$auth" ]; then
        curl -s -H "Authorization: Bearer $auth" -K "$config"
    else
        curl -s -K "$config"
    fi
}

# Sum of instructions (Ir) in a callgrind dump.
instructions() {
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

callgrind() {
    local rate
    for rate in "${RATE_LIMITS[@]}"; do
        callgrind_config "$rate"
    done
}

# Measures one configuration; the last dump of each route stays in
# $OUT/<route>[-ratelimit].callgrind.out for callgrind_annotate.
callgrind_config() {
    local rate=$1 suffix=""
    [ "$rate" = off ] || suffix="-ratelimit"
    [ "${#EXTRA[@]}" -eq 0 ] || suffix="$suffix-$(echo "${EXTRA[*]}" | tr -c 'a-z0-9\n' '_' | cut -c1-40)"
    echo "== instructions per request (callgrind, N=$N, --rate-limit $rate ${EXTRA[*]})"
    start_demo "$rate" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p.out"
    # Warm up both routes (connection setup, first cache fill, lazy statics).
    N=50 requests /healthz
    N=50 requests /healthz "$KEY"
    N=50 requests /v1/ping "$KEY"
    local phase
    rm -f "$OUT/phases.txt"
    for phase in healthz header ping healthz header ping; do
        callgrind_control -z "$PID" >/dev/null 2>&1
        rm -f "$OUT"/callgrind.*.out.*
        case "$phase" in
            healthz) requests /healthz ;;
            header) requests /healthz "$KEY" ;;
            ping) requests /v1/ping "$KEY" ;;
        esac
        callgrind_control -d "$PID" >/dev/null 2>&1
        local dump
        dump=$(ls -t "$OUT"/callgrind."$PID".out.* | head -n 1)
        local ir
        ir=$(instructions "$dump")
        echo "$phase $ir" >>"$OUT/phases.txt"
        cp "$dump" "$OUT/$phase$suffix.callgrind.out"
        printf '%-8s %14s instructions  %10.0f per request\n' "$phase" "$ir" "$(echo "$ir / $N" | bc -l)"
    done
    stop_demo
    rm -f "$OUT"/callgrind."$PID".out*
    awk -v n="$N" '
        { sum[$1] += $2; count[$1]++ }
        END {
            h = sum["healthz"] / count["healthz"] / n
            a = sum["header"] / count["header"] / n
            p = sum["ping"] / count["ping"] / n
            printf "healthz  %.0f instructions/request\nheader   %.0f instructions/request (healthz sent the Authorization header)\nping     %.0f instructions/request\nauth     %.0f instructions/request (ping - healthz)\n", h, a, p, p - h
            printf "         of which %.0f carrying the header (header - healthz), %.0f the middleware (ping - header)\n", a - h, p - a
        }' "$OUT/phases.txt"
    rm -f "$OUT/phases.txt"
}

wrk_rounds() {
    echo "== requests per second (wrk, $ROUNDS rounds of $DURATION per route, servers on cpu 0, wrk on cpu 1)"
    # Both configurations run at once (an idle server costs nothing); the routes alternate.
    start_demo off taskset -c 0
    local base=$BASE key=$KEY pid=$PID
    start_demo 1000000000/s taskset -c 0
    local limited_base=$BASE limited_key=$KEY limited_pid=$PID
    local round healthz ping limited
    rps() { taskset -c 1 wrk -t1 -c16 -d"$DURATION" "$@" | awk '/Requests\/sec/ { print $2 }'; }
    for round in $(seq 1 "$ROUNDS"); do
        healthz=$(rps "$base/healthz")
        ping=$(rps -H "Authorization: Bearer $key" "$base/v1/ping")
        limited=$(rps -H "Authorization: Bearer $limited_key" "$limited_base/v1/ping")
        printf 'round %d  healthz %8.0f req/s  ping %8.0f req/s (%.3f)  ping with rate limit %8.0f req/s (%.3f)\n' \
            "$round" "$healthz" "$ping" "$(echo "$ping / $healthz" | bc -l)" \
            "$limited" "$(echo "$limited / $healthz" | bc -l)"
    done
    PID=$pid stop_demo
    PID=$limited_pid stop_demo
}

FLOOD_SECONDS=${FLOOD_SECONDS:-30}
FLOOD_THREADS=${FLOOD_THREADS:-8}
# Addresses the flood rotates over through X-Forwarded-For.
FLOOD_ADDRESSES=${FLOOD_ADDRESSES:-10000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Counters of the scratch database, once every backend has flushed them (an idle
# backend flushes within 10 s), as three numbers:
# - seq_scan + idx_scan of the keys table: every statement that reads it (lookups, the
#   last-used writes, the listings of a start);
# - idx_scan - idx_tup_read of its primary key: lookups by id that found no entry, that
#   is lookups of ids the store does not hold (what a forged key reaching the store
#   costs; every other scan of that unique index returns one entry);
# - seq_scan + idx_scan of the tag secrets table (reads of the secrets).
lookups() {
    sleep 11
    psql -w "$PG_URL/$FLOOD_DB" -tA -F ' ' -c "
        SELECT (SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables
                 WHERE relname = 'tower_api_key_keys'),
               (SELECT idx_scan - idx_tup_read FROM pg_stat_user_indexes
                 WHERE indexrelname = 'tower_api_key_keys_pkey'),
               (SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables
                 WHERE relname = 'tower_api_key_tag_secrets')"
}

# Starts the PostgreSQL-backed demo through the proxy with extra flags, on PG_LISTEN
# (127.0.0.1:0 unless set); sets BASE, PID and PG_DEMO_ARGS (the extra flags).
start_pg_demo() {
    local log="$OUT/flood-demo.stdout"
    PG_DEMO_ARGS=("$@")
    rm -f "$log"
    taskset -c 0 target/release/examples/demo --listen "${PG_LISTEN:-127.0.0.1:0}" --rate-limit off \
        --database "postgres://postgres@127.0.0.1:$PROXY_PORT/$FLOOD_DB" "$@" \
        >"$log" 2>"$OUT/flood-demo.stderr" &
    PID=$!
    for _ in $(seq 1 600); do
        if grep -q '^listening on' "$log" 2>/dev/null; then break; fi
        sleep 0.1
    done
    BASE=$(sed -n 's/^listening on //p' "$log")
    [ -n "$BASE" ] || { echo "the demo did not start" >&2; cat "$OUT/flood-demo.stderr" >&2; exit 1; }
    sleep 0.5
}

# One phase: THREADS flood tasks for FLOOD_SECONDS, with the valid key $KEY; COMMAND
# (`true` for nothing) runs alongside, and the arguments after it go to
# examples/flood.rs (--forged, --addresses, --valid-after). $KEY is used once before
# the phase, so that the instance holds it, unless FRESH=1.
flood_phase() {
    local name=$1 threads=$2 command=$3
    shift 3
    [ "${FRESH:-0}" = 1 ] || curl -s -o /dev/null -H "Authorization: Bearer $KEY" "$BASE/v1/ping"
    local before after before_rss after_rss result forged
    read -r -a before <<<"$(lookups)"
    before_rss=$(rss_mib "$PID")
    taskset -c 1 target/release/examples/flood "$BASE" "$KEY" "$FLOOD_SECONDS" "$threads" "$@" >"$OUT/flood-$name.txt" &
    local client=$!
    "$command"
    wait "$client"
    result=$(cat "$OUT/flood-$name.txt")
    after_rss=$(rss_mib "$PID")
    read -r -a after <<<"$(lookups)"
    local scans=$((after[0] - before[0])) unheld=$((after[1] - before[1])) tag_reads=$((after[2] - before[2]))
    forged=$(sed -n 's/.* forged_requests=\([0-9]*\) .*/\1/p' <<<"$result")
    printf '%-14s lookups=%d lookups_per_s=%.2f unheld_id_lookups=%d per_1000_forged=%s tag_secret_reads=%d rss_before_mib=%s rss_after_mib=%s %s\n' \
        "$name" "$scans" "$(echo "$scans / $FLOOD_SECONDS" | bc -l)" "$unheld" \
        "$([ "${forged:-0}" -gt 0 ] && printf '%.4f' "$(echo "$unheld * 1000 / $forged" | bc -l)" || echo -)" \
        "$tag_reads" "$before_rss" "$after_rss" "$result"
}

# PostgreSQL unreachable from 10 s to 20 s into the phase. A key never used so far is
# probed during and after it, from another loopback address (127.0.0.2): from the
# flood's own address an uncached key is 429 by design.
outage() {
    local probe=(curl -s --interface 127.0.0.2 -H "Authorization: Bearer $OTHER_KEY")
    sleep 10
    kill -USR1 "$PROXY_PID"
    sleep 2
    printf 'during the outage: unused key %s, Retry-After %s\n' \
        "$("${probe[@]}" -o /dev/null -w '%{http_code}' "$BASE/v1/ping")" \
        "$("${probe[@]}" -D - -o /dev/null "$BASE/v1/ping" | tr -d '\r' | sed -n 's/^retry-after: //Ip')"
    sleep 8
    kill -USR2 "$PROXY_PID"
    local t0 code
    t0=$(date +%s.%N)
    for _ in $(seq 1 400); do
        code=$("${probe[@]}" -o /dev/null -w '%{http_code}' "$BASE/v1/ping")
        [ "$code" = 200 ] && break
        sleep 0.05
    done
    printf 'after the outage: unused key %s, %.2f s after the database came back\n' "$code" "$(echo "$(date +%s.%N) - $t0" | bc -l)"
}

# A third of the way into the phase, the demo is stopped (SIGTERM, graceful) and
# started again at once with the same flags, on the same port and database.
restart() {
    sleep "$((FLOOD_SECONDS / 3))"
    local t0 stopped
    t0=$(date +%s.%N)
    stop_demo
    stopped=$(date +%s.%N)
    PG_LISTEN="127.0.0.1:${BASE##*:}" start_pg_demo "${PG_DEMO_ARGS[@]}"
    printf 'restart %d s into the phase: the old process exited after %.2f s, the new one listened %.2f s later (both on cpu 0 beside the flood)\n' \
        "$((FLOOD_SECONDS / 3))" "$(echo "$stopped - $t0" | bc -l)" "$(echo "$(date +%s.%N) - 0.5 - $stopped" | bc -l)"
}

# A key made through the instance at $BASE with the admin key $KEY (its answer's "key").
new_key() {
    curl -s -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"name\":\"$1\",\"scopes\":[\"session:read\"]}" "$BASE/v1/api_keys" |
        sed -n 's/.*"key":"\([^"]*\)".*/\1/p'
}

flood() {
    need psql postgresql-client
    need bc bc
    cargo build --release --features postgres,utoipa --example demo --example flood --quiet
    FLOOD_DB=tak_flood_$$
    psql -w "$PG_URL/postgres" -qc "CREATE DATABASE $FLOOD_DB"
    python3 benches/pgproxy.py 127.0.0.1 "${PG_URL##*:}" >"$OUT/pgproxy.out" &
    PROXY_PID=$!
    trap 'kill "$PID" "$PROXY_PID" 2>/dev/null; wait 2>/dev/null; psql -w "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $FLOOD_DB WITH (FORCE)"' EXIT
    for _ in $(seq 1 50); do grep -q '^port' "$OUT/pgproxy.out" && break; sleep 0.1; done
    PROXY_PORT=$(awk '/^port/ { print $2 }' "$OUT/pgproxy.out")

    echo "== flood (${FLOOD_SECONDS}s per phase, $FLOOD_THREADS flood tasks, one valid client, one address)"
    start_pg_demo
    KEY=$(sed -n 's/^admin key for acme (shown once): //p' "$OUT/flood-demo.stdout")
    OTHER_KEY=$(sed -n 's/^admin key for globex (shown once): //p' "$OUT/flood-demo.stdout")
    flood_phase baseline 0 true
    flood_phase flood "$FLOOD_THREADS" true
    flood_phase outage "$FLOOD_THREADS" outage
    flood_phase tagged "$FLOOD_THREADS" true --forged tagged
    # Made here and never used: the instance behind the proxy below has never seen them.
    local fresh fresh_untagged
    fresh=$(new_key "never seen, tagged flood")
    fresh_untagged=$(new_key "never seen, untagged flood")
    [ -n "$fresh" ] && [ -n "$fresh_untagged" ] || { echo "could not create the keys" >&2; exit 1; }
    stop_demo
    echo "== the same flood with --unknown-key-budget off (the lookup cap alone)"
    start_pg_demo --unknown-key-budget off
    flood_phase no-budget "$FLOOD_THREADS" true
    stop_demo
    echo "== behind one trusted proxy (--trusted-proxies 1): X-Forwarded-For names the client; the valid client sends the flood's first address (10.0.0.1)"
    start_pg_demo --trusted-proxies 1
    flood_phase xff-baseline 0 true --addresses 1
    flood_phase xff "$FLOOD_THREADS" true --forged tagged --addresses "$FLOOD_ADDRESSES"
    KEY=$fresh FRESH=1 flood_phase fresh "$FLOOD_THREADS" true --forged tagged --addresses 1 --valid-after 1
    KEY=$fresh_untagged FRESH=1 flood_phase fresh-untagged "$FLOOD_THREADS" true --addresses 1 --valid-after 1
    flood_phase restart "$FLOOD_THREADS" restart --forged tagged --addresses "$FLOOD_ADDRESSES"
    stop_demo
}

# The Redis rate limiter beside the in-process one: a private redis-server on
# REDIS_PORT (never the shared one), instructions per request for /v1/ping with each
# limiter and without one, then requests per second with three instances sharing it.
REDIS_PORT=${REDIS_PORT:-6391}

redis() {
    need redis-server redis-server
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$PWD/$OUT/redis.pid" >/dev/null
    local url="redis://127.0.0.1:$REDIS_PORT"
    echo "== /v1/ping with the Redis limiter (callgrind, N=$N): compare with the memory limiter and none above"
    RATE_LIMITS=("off" "1000000000/s")
    callgrind
    EXTRA=(--redis "$url")
    callgrind_config 1000000000/s
    EXTRA=(--redis "$url" --redis-local-first)
    callgrind_config 1000000000/s
    EXTRA=()
    three_instances "memory limiter" 1000000000/s
    three_instances "Redis, strict" 1000000000/s --redis "$url"
    three_instances "Redis, local-first" 1000000000/s --redis "$url" --redis-local-first
    kill "$(cat "$OUT/redis.pid")" 2>/dev/null || true
}

# Three demo instances (cpu 0) under one wrk each at once (cpu 1), for DURATION: the sum
# of their requests per second on /v1/ping.
three_instances() {
    local name=$1 rate=$2
    shift 2
    local bases=() keys=() pids=() i
    EXTRA=("$@")
    for i in 1 2 3; do
        start_demo "$rate" taskset -c 0
        bases+=("$BASE")
        keys+=("$KEY")
        pids+=("$PID")
    done
    EXTRA=()
    local loads=()
    for i in 0 1 2; do
        taskset -c 1 wrk -t1 -c8 -d"$DURATION" -H "Authorization: Bearer ${keys[$i]}" \
            "${bases[$i]}/v1/ping" >"$OUT/wrk.$i" &
        loads+=($!)
    done
    wait "${loads[@]}"
    local total
    total=$(awk '/Requests\/sec/ { sum += $2 } END { printf "%.0f", sum }' "$OUT"/wrk.0 "$OUT"/wrk.1 "$OUT"/wrk.2)
    printf 'three instances, %-20s %8s req/s in all\n' "$name:" "$total"
    for i in 0 1 2; do PID=${pids[$i]} stop_demo; done
}

# Usage per key off, then on (the demo's default): what counting costs per request.
usage_cost() {
    echo "== /v1/ping with usage per key off, then on (callgrind, N=$N)"
    EXTRA=(--usage off)
    callgrind_config off
    EXTRA=(--usage on)
    callgrind_config off
    EXTRA=()
}

case "$MODE" in
    callgrind) callgrind ;;
    usage) usage_cost ;;
    wrk) wrk_rounds ;;
    all) callgrind; wrk_rounds ;;
    flood) flood ;;
    redis) redis ;;
    *) echo "usage: $0 [callgrind|wrk|all|flood|redis|usage]" >&2; exit 2 ;;
esac
