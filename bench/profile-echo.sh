#!/usr/bin/env bash
# A CPU profile of a server under an echo load, for bench/perf-categories.py: the server
# on CPU 0, `ringwire load echo` on CPU 1, `perf record -C 0` for 4 s from 2 s into the
# run (the load runs 7 s after 1 s of warm-up). Writes OUT.data (the profile) and OUT.out
# (the generator's report, with the server's CPU per message).
#
#   bench/profile-echo.sh /tmp/prof/uring100 \
#       "target/release/ringwire serve --mode echo --workers 1 --listen 127.0.0.1:{PORT}" \
#       "-c 100 --in-flight 1 -s 20"
#   bench/profile-echo.sh /tmp/prof/floor100 floor "-n 100 --size 26 --reply-size 22 --rounds 30000"
#
# "floor" profiles `kernel-floor --echo` with those arguments instead (its measured side
# on CPU 0, its own client on CPU 1; it prints its CPU per message in OUT.out). LOAD (the
# `ringwire` binary that generates load) and FLOOR (the `kernel-floor` binary) default to
# target/release/. `-g` in PERF_FLAGS records call graphs. Needs perf.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
server=$2
args=$3
LOAD="${LOAD:-target/release/ringwire}"
FLOOR="${FLOOR:-target/release/kernel-floor}"
PERF_FLAGS="${PERF_FLAGS:-}"
record() {
    sleep "$1"
    # shellcheck disable=SC2086
    perf record -q -C 0 -F 4999 $PERF_FLAGS -o "$out.data" -- sleep 4 >/dev/null 2>&1
}
if [ "$server" = floor ]; then
    record 1 &
    rec=$!
    # shellcheck disable=SC2086
    "$FLOOR" --echo $args --cpu 0 --recv-cpu 1 --json >"$out.out" 2>&1
    wait "$rec"
else
    port=$((24000 + RANDOM % 1000))
    # shellcheck disable=SC2086
    taskset -c 0 ${server//\{PORT\}/$port} >/dev/null 2>&1 &
    pid=$!
    sleep 0.5
    record 2 &
    rec=$!
    # shellcheck disable=SC2086
    taskset -c 1 "$LOAD" load echo --addr "127.0.0.1:$port" $args -d 7 --warmup 1 \
        --server-pid "$pid" >"$out.out" 2>&1 || true
    wait "$rec"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
fi
grep -E 'server CPU|cpu_ns_per_message' "$out.out" || true
