#!/usr/bin/env bash
# What a server does per echoed message, from the kernel's own counters: system calls,
# context switches, io_uring submissions and completions (`perf stat` of tracepoints and
# software events over the server's pid, divided by the messages the load generator
# counted). Server on CPU 0, `ringwire load echo` on CPU 1.
#
#   bench/per-echo-counts.sh "target/release/ringwire serve --workers 1 --listen 127.0.0.1:{PORT}" \
#       "-c 1 --in-flight 1 -s 32"
#
# {PORT} in the server command is replaced by a fresh port. LOAD (default
# target/release/ringwire), DURATION (s, default 3). Needs perf with tracepoint access.
set -euo pipefail
cd "$(dirname "$0")/.."
CMD=$1
ARGS=$2
LOAD="${LOAD:-target/release/ringwire}"
DURATION="${DURATION:-3}"
port=$((22000 + RANDOM % 1000))
tmp=$(mktemp -d)
# shellcheck disable=SC2086
taskset -c 0 ${CMD//\{PORT\}/$port} >"$tmp/server.log" 2>&1 &
pid=$!
sleep 0.6
events=raw_syscalls:sys_enter,context-switches,io_uring:io_uring_submit_req,io_uring:io_uring_complete
perf stat -x, -e "$events" -p "$pid" -o "$tmp/perf.txt" &
perf_pid=$!
# shellcheck disable=SC2086
out=$(taskset -c 1 "$LOAD" load echo --addr "127.0.0.1:$port" $ARGS -d "$DURATION" --warmup 0 2>&1)
kill -INT "$perf_pid"
wait "$perf_pid" 2>/dev/null || true
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
n=$(grep -oE '[0-9,]+ echoed' <<<"$out" | tr -d , | grep -oE '^[0-9]+')
printf '%s messages:' "$n"
while IFS=, read -r value _ event _; do
    [[ $value =~ ^[0-9]+$ ]] || continue
    printf ' %s %.2f' "${event##*:}" "$(echo "$value / $n" | bc -l)"
done <"$tmp/perf.txt"
echo " (per message)"
rm -rf "$tmp"
