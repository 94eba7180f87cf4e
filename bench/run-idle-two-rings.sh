#!/usr/bin/env bash
# Idle memory past one fixed-file table: 39,800 idle connections with 1 s heartbeats on one
# ringwire worker, which spreads them over two io_uring rings (a ring's fixed-file table
# is capped at RLIMIT_NOFILE, 20,000 here). Two load generators of 19,900 connections each
# (a generator holds plain descriptors, so it too stays under RLIMIT_NOFILE), spread over
# eight 127.0.0.x source addresses; the server's RSS is read from /proc at each step.
#
#   bench/run-idle-two-rings.sh        # server on CPU 0, generators on CPU 1
#
# Wait a minute between runs: the previous run's client sockets sit in TIME_WAIT.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
PORT="${PORT:-19543}"
cargo build --release -p ringwire
B="$CARGO_TARGET_DIR/release/ringwire"
OUT="$(mktemp -d)"

taskset -c 0 "$B" serve --workers 1 --listen "127.0.0.1:$PORT" --ping-secs 1 >"$OUT/server.txt" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
empty=$(rss)
taskset -c 1 "$B" load idle --addr "127.0.0.1:$PORT" -c 19900 --source-ips 8 --hold 20 --settle 1 \
    >"$OUT/gen-a.txt" 2>&1 &
A=$!
sleep 4
one=$(rss)
taskset -c 1 "$B" load idle --addr "127.0.0.1:$PORT" -c 19900 --source-ips 8 --hold 10 --settle 1 \
    >"$OUT/gen-b.txt" 2>&1 &
G=$!
sleep 9
two=$(rss)
wait "$A" "$G"
kill "$PID"
wait "$PID" 2>/dev/null || true
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; kernel $(uname -r)"
grep -h "backend" "$OUT/server.txt" | head -1
echo "server RSS: empty $empty KiB; 19,900 open $one KiB; 39,800 open, after 8 s of heartbeats, $two KiB"
echo "per connection: first 19,900 $(( (one - empty) * 1024 / 19900 )) B;" \
    "next 19,900 $(( (two - one) * 1024 / 19900 )) B; all 39,800 from empty $(( (two - empty) * 1024 / 39800 )) B"
tail -1 "$OUT/server.txt"
grep -hE "opened|still open|errors" "$OUT/gen-a.txt" "$OUT/gen-b.txt" | grep -v "hold "
