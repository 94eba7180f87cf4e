#!/usr/bin/env bash
# TCP segments per echoed message, both ends together (loopback counts the server's and
# the generator's alike): `nstat -n` before, `nstat -z` after an echo load, each counter
# over the messages echoed. Two data segments per echo (request, reply) with their ACKs
# piggybacked is the minimum; pure ACKs (`TcpExtTCPPureAcks`) are the waste.
#
#   bench/segments-per-echo.sh "target/release/ringwire serve --mode echo --workers 1 --listen 127.0.0.1:{PORT}" \
#       "-c 100 --in-flight 1 -s 20"
#
# Server on CPU 0, `ringwire load echo` on CPU 1 for DURATION s (default 3). Needs
# `nstat` (iproute2); nothing else may use the network meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD="${LOAD:-target/release/ringwire}"
DURATION="${DURATION:-3}"
port=$((23000 + RANDOM % 1000))
# shellcheck disable=SC2086
taskset -c 0 ${1//\{PORT\}/$port} >/dev/null 2>&1 &
pid=$!
sleep 0.5
nstat -n >/dev/null
# shellcheck disable=SC2086
out=$(taskset -c 1 "$LOAD" load echo --addr "127.0.0.1:$port" $2 -d "$DURATION" --warmup 0 2>&1 || true)
counters=$(nstat -z 2>/dev/null)
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
n=$(grep -oE 'messages +[0-9,]+' <<<"$out" | tr -dc 0-9)
[ -n "$n" ] && [ "$n" -gt 0 ] || { echo "no messages echoed" >&2; exit 1; }
awk -v n="$n" '$1 ~ /^(TcpOutSegs|TcpExtTCPPureAcks|TcpExtDelayedACKs|TcpRetransSegs)$/ {
    printf "%s %.3f  ", $1, $2 / n } END { printf "(per message, %d messages)\n", n }' <<<"$counters"
