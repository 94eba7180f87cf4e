#!/usr/bin/env bash
# Idle memory past one fixed-file table: GENERATORS x 19,900 idle connections with
# heartbeats (every PING_SECS, default 1) on one ringwire worker, which spreads them over several io_uring rings (a
# ring's fixed-file table is capped at RLIMIT_NOFILE, 20,000 here). Each load generator
# holds plain descriptors, so it too stays under RLIMIT_NOFILE: one generator process per
# 19,900 connections, all spread over eight 127.0.0.x source addresses. The server's RSS
# is read from /proc after each generator has opened its connections.
#
#   bench/run-idle-rings.sh                  # 2 generators: 39,800 connections, 2 rings
#   GENERATORS=6 PING_SECS=10 bench/run-idle-rings.sh   # 119,400 connections, 6 rings
#
# (With 1 s heartbeats 100,000 connections are 100,000 pings and pongs a second, more
# than one core handles while five generators share the other: then the worker falls
# behind and its receive buffers and queues grow with the backlog.)
#
# Server on CPU 0, generators on CPU 1. Wait a minute between runs: the previous run's
# client sockets sit in TIME_WAIT.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
PORT="${PORT:-19543}"
GENERATORS="${GENERATORS:-2}"
PING_SECS="${PING_SECS:-1}"
PER=19900
cargo build --release -p ringwire-cli
B="$CARGO_TARGET_DIR/release/ringwire"
OUT="$(mktemp -d)"

taskset -c 0 "$B" serve --workers 1 --listen "127.0.0.1:$PORT" --ping-interval "$PING_SECS" \
    --max-connections $(( GENERATORS * PER + 1000 )) >"$OUT/server.txt" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
empty=$(rss)
prev=$empty
gens=()
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; kernel $(uname -r);" \
    "$GENERATORS x $PER connections, heartbeat every $PING_SECS s"
echo "server RSS empty: $empty KiB"
for g in $(seq 1 "$GENERATORS"); do
    # Every generator holds until the last one has opened and 8 s of heartbeats passed.
    hold=$(( (GENERATORS - g) * 5 + 10 ))
    taskset -c 1 "$B" load idle --addr "127.0.0.1:$PORT" -c $PER --source-ips 8 --hold "$hold" \
        --settle 1 >"$OUT/gen-$g.txt" 2>&1 &
    gens+=($!)
    sleep 5
    now=$(rss)
    echo "after generator $g ($(( g * PER )) connections): RSS $now KiB," \
        "$(( (now - prev) * 1024 / PER )) B per connection for these $PER"
    prev=$now
done
sleep 4
last=$(rss)
total=$(( GENERATORS * PER ))
echo "after 8 s more of heartbeats: RSS $last KiB; all $total connections from empty:" \
    "$(( (last - empty) * 1024 / total )) B per connection"
wait "${gens[@]}"
kill "$PID"
wait "$PID" 2>/dev/null || true
grep -h "backend" "$OUT/server.txt" | head -1
tail -1 "$OUT/server.txt"
for g in $(seq 1 "$GENERATORS"); do
    echo "generator $g: $(grep -hE "opened|still open|errors" "$OUT/gen-$g.txt" | grep -v "hold " \
        | sed 's/  */ /g' | tr '\n' ';')"
done
