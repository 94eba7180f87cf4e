#!/usr/bin/env bash
# Instructions per echoed message of a server build, under callgrind (no hardware
# counters needed, and far less noisy than time on a shared VM). The server runs under
# `valgrind --tool=callgrind` pinned to CPU 0 (epoll backend by default: callgrind follows
# its syscalls; the user code is the io_uring backend's less the ring), `ringwire load
# echo` on CPU 1; the figure is the program's total instructions over the messages the
# server counted (start-up included, so compare builds at the same load).
#
#   bench/callgrind-echo.sh BINARY "-c 100 --in-flight 16 -s 32" [extra serve args]
#
# LOAD: the load generator (default target/release/ringwire); DURATION (s, default 4);
# BACKEND (default epoll); OUT (the callgrind file, default a temporary one); PER_THREAD=1
# counts the busiest thread only (the worker's: `--separate-threads=yes`), without the
# start-up on the main thread, so builds compare at any load.
set -eu
cd "$(dirname "$0")/.."
BIN=$1
ARGS=$2
EXTRA=${3:-}
LOAD="${LOAD:-target/release/ringwire}"
DURATION="${DURATION:-4}"
BACKEND="${BACKEND:-epoll}"
OUT="${OUT:-$(mktemp /tmp/callgrind-echo.XXXXXX)}"
THREADS=()
[ "${PER_THREAD:-0}" = 1 ] && THREADS=(--separate-threads=yes)
BASE=$OUT
port=$((20000 + RANDOM % 5000))
# shellcheck disable=SC2086
taskset -c 0 valgrind --tool=callgrind "${THREADS[@]}" --callgrind-out-file="$OUT" "$BIN" serve --workers 1 \
    --backend "$BACKEND" --listen "127.0.0.1:$port" $EXTRA >"$OUT.serve" 2>&1 &
pid=$!
sleep 3 # valgrind starts slowly
# shellcheck disable=SC2086
taskset -c 1 "$LOAD" load echo --addr "127.0.0.1:$port" $ARGS -d "$DURATION" --warmup 1 \
    >"$OUT.load" 2>&1 || true
kill -INT "$pid" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    # Still running (a wait the signal did not end): dump the profile, then stop it.
    callgrind_control -d "$pid" >/dev/null 2>&1 || true
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
    OUT=$(ls "$OUT".[0-9]* 2>/dev/null | head -1)
fi
wait "$pid" 2>/dev/null || true
msgs=$(grep -oE '[0-9]+ messages in' "$BASE.serve" | grep -oE '^[0-9]+' | head -1)
instructions() {
    callgrind_annotate "$1" 2>/dev/null | grep 'PROGRAM TOTALS' | head -1 | grep -oE '^[0-9,]+' | tr -d ,
}
if [ ${#THREADS[@]} -gt 0 ]; then
    total=0
    for f in "$BASE"*-[0-9][0-9]; do
        t=$(instructions "$f")
        [ "${t:-0}" -gt "$total" ] && total=$t
    done
else
    total=$(instructions "$OUT")
fi
echo "$BIN [$ARGS $EXTRA]: $msgs messages, $total instructions, $((total / msgs)) per message ($OUT)"
