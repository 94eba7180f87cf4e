#!/usr/bin/env bash
# A/B of server builds (or settings) on one echo load, alternating so that both see the
# machine's mood alike: each round runs every server once, pinned to CPU 0, against
# `ringwire load echo` pinned to CPU 1, and prints server CPU per message with its
# kernel/user split (the user part is where an engine change shows; the kernel part
# dominates and is noisy) and the round trip's p50 and p99.
#
#   bench/ab-echo.sh "-c 100 --in-flight 16 -s 32" \
#       "/tmp/before/ringwire serve --workers 1 --listen 127.0.0.1:{PORT}" \
#       "target/release/ringwire serve --workers 1 --listen 127.0.0.1:{PORT}"
#
# {PORT} in a server command is replaced by a fresh port. ROUNDS (default 3), DURATION
# (s, default 3), LOAD (the `ringwire` binary that generates load: target/release/ringwire,
# built by `cargo build --release -p ringwire-cli`).
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS="$1"
shift
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-3}"
LOAD="${LOAD:-target/release/ringwire}"
port=19800
for round in $(seq "$ROUNDS"); do
    for server in "$@"; do
        port=$((port + 1))
        cmd=${server//\{PORT\}/$port}
        # shellcheck disable=SC2086
        taskset -c 0 $cmd >/dev/null 2>&1 &
        pid=$!
        sleep 0.5
        # shellcheck disable=SC2086
        out=$(taskset -c 1 "$LOAD" load echo --addr "127.0.0.1:$port" $ARGS -d "$DURATION" \
            --warmup 1 --server-pid "$pid" 2>&1 || true)
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        cpu=$(grep -oE '[0-9.]+ [un]s per message' <<<"$out" | head -1)
        split=$(grep 'server split' <<<"$out" | grep -oE '[0-9.]+ [un]s and [0-9.]+ [un]s' || true)
        rtt=$(grep 'round trip' <<<"$out" | grep -oE 'p50 [0-9.]+ [um]s +p99 [0-9.]+ [um]s' | tr -s ' ' || true)
        printf 'round %s  %-70s %s (kernel and user: %s) %s\n' "$round" "$cmd" "$cpu" "$split" "$rtt"
    done
done
