#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ one after another, each for a fixed time, and
# prints per target: executions per second, total executions, corpus size and whether it
# crashed.
#
#   benches/fuzz.sh [seconds-per-target] [target...]
#
# The defaults are 600 seconds and every target (`cargo fuzz list`). Needs the nightly
# toolchain (`rustup toolchain install nightly`) and cargo-fuzz (`cargo install
# cargo-fuzz`); it says which is missing and stops.
#
# Environment:
#   SANITIZER   none (the default: the crate forbids unsafe code, and without ASan's
#               instrumentation each target runs several times faster) or address.
#   NICE        the niceness of the fuzzers (default 10), for a machine that is shared.
#
# Each target starts from its committed seeds, fuzz/corpus/<target>/, and from what
# earlier runs found, fuzz/grown/<target>/ (not committed), where new inputs are written.
# A crash, a hang (one input over 10 s) or more than 2 GiB of memory stops the target; the
# input is in fuzz/artifacts/<target>/ and the log in fuzz/logs/<target>.log. Replay
# one with `cargo +nightly fuzz run <target> <file>`. The same properties run on stable in
# `cargo test --test properties`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-600}"
shift $(( $# > 0 ? 1 : 0 ))
sanitizer="${SANITIZER:-none}"
niceness="${NICE:-10}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: benches/fuzz.sh [seconds-per-target] [target...]" >&2
    exit 2
fi
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "the fuzzers need the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "the fuzzers need cargo-fuzz: cargo install cargo-fuzz" >&2
    exit 1
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

export CARGO_INCREMENTAL=0
# Release with debug assertions and overflow checks, built once before the clocks start.
flags=(--sanitizer "$sanitizer" --debug-assertions)
nice -n "$niceness" cargo +nightly fuzz build "${flags[@]}"

printf '%s, %s s per target, sanitizer %s, %s\n' "$(date -u +%FT%TZ)" "$seconds" "$sanitizer" "$(uname -srm)"
printf '%-18s %8s %12s %14s %8s  %s\n' target seconds 'execs/s' 'total execs' corpus result
status=0
for target in "${targets[@]}"; do
    grown="grown/$target"
    log="logs/$target.log"
    mkdir -p "$grown" "artifacts/$target" logs
    started=$(date +%s)
    result=ok
    # -jobs=1 runs the fuzzer in one child process whose output goes to fuzz-0.log.
    if ! (cd logs && nice -n "$niceness" cargo +nightly fuzz run "${flags[@]}" \
        --fuzz-dir "$OLDPWD" "$target" "$OLDPWD/$grown" "$OLDPWD/corpus/$target" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OLDPWD/artifacts/$target/" \
        >/dev/null 2>&1); then
        result=CRASH
    fi
    elapsed=$(( $(date +%s) - started ))
    mv logs/fuzz-0.log "$log" 2>/dev/null || true
    if grep -qE '^==[0-9]+== ?ERROR|panicked at|deadly signal|Test unit written' "$log" 2>/dev/null; then
        result=CRASH
    fi
    stat() { grep -E "^stat::$1:" "$log" 2>/dev/null | tail -1 | awk '{print $2}'; }
    execs=$(stat number_of_executed_units)
    per_second=$(stat average_exec_per_sec)
    corpus=$(find "$grown" "corpus/$target" -type f | wc -l)
    if [ "$result" = CRASH ]; then
        status=1
        result="CRASH: $(ls -t "artifacts/$target" | head -1) (log fuzz/$log)"
    else
        result="no crash"
    fi
    printf '%-18s %8s %12s %14s %8s  %s\n' "$target" "$elapsed" "${per_second:-?}" "${execs:-?}" "$corpus" "$result"
done
exit "$status"
