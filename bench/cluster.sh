#!/usr/bin/env bash
# Fan-out across nodes: a local NATS server, NODES `ringwire serve --mode pubsub
# --cluster` processes (each its own process and fd limit), and `ringwire load fanout`
# with its subscribers spread round robin over the nodes (the publisher on the first),
# then the same subscribers on the first node alone, in the same run. Prints each load
# report's summary line (delivery p50/p99 to all subscribers).
#
#   N=15000 RATE=10 DURATION=10 bench/cluster.sh
#
# Cross-node publishes per second until a node saturates: SWEEP lists publish rates, each
# run with N subscribers round robin over the nodes (the publisher on the first, so every
# publish crosses NATS to the others), and prints what was delivered, the latency to all,
# and the bridges' counters:
#
#   N=30 SWEEP="1000 2000 5000 10000 20000" DURATION=5 bench/cluster.sh
#
# (with REMOTE=1 the publisher is alone on the first node, the subscribers on the others)
#
# The hop alone: REMOTE=1 puts every subscriber on the second node and the publisher
# alone on the first (`load fanout --remote-subscribers`), then the same subscribers and
# publisher on the first node alone: the same fan-out work in both runs, one crossing
# NATS (use NODES=2):
#
#   NODES=2 REMOTE=1 N=15000 RATE=10 DURATION=10 bench/cluster.sh
#
# Also the one-command local cluster: `DEMO=1 bench/cluster.sh` starts NATS and three
# nodes on 127.0.0.1:9101-9103 and waits (Ctrl-C stops everything); connect clients to
# any node, publish on one, receive on all.
#
# Needs: release builds (`cargo build --release -p ringwire-cli`), `nats-server` (Debian
# package; .ci/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/ringwire
NATS=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
NODES=${NODES:-3}
N=${N:-15000}
RATE=${RATE:-10}
DURATION=${DURATION:-10}
SIZE=${SIZE:-64}
NATS_PORT=${NATS_PORT:-14222}
BASE=${BASE:-9101}
WORKERS=${WORKERS:-1}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$NATS" -a 127.0.0.1 -p "$NATS_PORT" >/tmp/cluster-nats.log 2>&1 &
pids+=($!)
sleep 0.5
addrs=()
for i in $(seq 0 $((NODES - 1))); do
  port=$((BASE + i))
  "$BIN" serve --mode pubsub --workers "$WORKERS" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$((port + 100))" --max-connections 100000 \
    --cluster "nats://127.0.0.1:$NATS_PORT" >"/tmp/cluster-node$i.log" 2>&1 &
  pids+=($!)
  addrs+=(--addr "127.0.0.1:$port")
done
sleep 1
if [ "${DEMO:-0}" = 1 ]; then
  echo "NATS on 127.0.0.1:$NATS_PORT; nodes on ${addrs[*]//--addr /}"
  echo "try: $BIN connect ws://127.0.0.1:$BASE/  (SUB <topic>, PUB <topic> <text>) on two nodes"
  wait
fi
# The bridges' counters of every node, one line.
counters() {
  for i in $(seq 0 $((NODES - 1))); do
    curl -s "http://127.0.0.1:$((BASE + i + 100))/metrics" |
      awk -v n="$i" '/^ringwire_cluster_(published|received|dropped)_total/ {
        sub("ringwire_cluster_", ""); sub("_total", ""); printf "node%s %s=%s ", n, $1, $2 }'
  done
  echo
}
if [ -n "${SWEEP:-}" ]; then
  echo "== cross-node publishes: $N subscribers over $NODES nodes, publisher on the first ($(date -u +%FT%TZ))"
  for rate in $SWEEP; do
    echo "-- $rate publishes/s"
    "$BIN" load fanout "${addrs[@]}" ${REMOTE:+--remote-subscribers} -n "$N" --rate "$rate" \
      -d "$DURATION" -s "$SIZE" | grep -E "delivered|to all|incomplete|errors" || true
    counters
  done
  exit 0
fi
if [ "${REMOTE:-0}" = 1 ]; then
  echo "== $N subscribers on the other nodes, the publisher alone on the first ($(date -u +%FT%TZ))"
  "$BIN" load fanout "${addrs[@]}" --remote-subscribers -n "$N" --rate "$RATE" -d "$DURATION" -s "$SIZE" \
    --source-ips 2 | grep -E "fanout|delivered|to all|errors" || true
  counters
  echo "== the same $N subscribers and the publisher on the first node alone"
  "$BIN" load fanout "${addrs[@]:0:2}" -n "$N" --rate "$RATE" -d "$DURATION" -s "$SIZE" \
    --source-ips 2 | grep -E "fanout|delivered|to all|errors" || true
  exit 0
fi
echo "== $N subscribers over $NODES nodes, publisher on the first ($(date -u +%FT%TZ))"
"$BIN" load fanout "${addrs[@]}" -n "$N" --rate "$RATE" -d "$DURATION" -s "$SIZE" --source-ips 2 | grep -E "fanout|delivered|to all|errors" || true
echo "== the same $N subscribers on the first node alone"
"$BIN" load fanout "${addrs[@]:0:2}" -n "$N" --rate "$RATE" -d "$DURATION" -s "$SIZE" --source-ips 2 | grep -E "fanout|delivered|to all|errors" || true
