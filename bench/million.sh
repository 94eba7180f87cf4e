#!/usr/bin/env bash
# N idle WebSocket connections on one machine: `ringwire serve` and `ringwire load idle`
# (the engine's client side) in two processes over loopback, heartbeats on both sides,
# held for HOLD seconds. Prints the load report and, from samples of /proc every 5 s,
# each process's RSS, the kernel's memory (MemAvailable and Slab from /proc/meminfo) and
# both processes' CPU per second while the connections are held.
#
#   N=1000000 SOURCES=40 HOLD=60 bench/million.sh
#
# Needs: release builds (`cargo build --release -p ringwire-cli`), root for the sysctls
# below (a wider ephemeral port range, a conntrack table large enough if conntrack is
# loaded) and for a network namespace of its own: the kernel's established-connections
# hash has 262,144 buckets here (it is sized at boot from the memory), and with a
# million connections (two million sockets) its chains grow so long that picking an
# ephemeral port for each connect (`__inet_check_established`, probe after probe) takes
# most of the CPU. A new namespace gets `tcp_child_ehash_entries` buckets (EHASH,
# default 4M); NETNS=0 runs in the current one. Both processes use io_uring direct
# descriptors, so neither counts its sockets against RLIMIT_NOFILE.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NETNS:-1}" = 1 ] && [ -z "${IN_NETNS:-}" ]; then
  sysctl -qw net.ipv4.tcp_child_ehash_entries="${EHASH:-4194304}"
  exec env IN_NETNS=1 unshare -n "$0" "$@"
fi
if [ -n "${IN_NETNS:-}" ]; then
  ip link set lo up
  echo "network namespace of its own: $(sysctl net.ipv4.tcp_ehash_entries)"
fi
N=${N:-1000000}
SOURCES=${SOURCES:-40}
HOLD=${HOLD:-60}
THREADS=${THREADS:-2}
SERVER_WORKERS=${SERVER_WORKERS:-2}
PORT=${PORT:-19777}
OUT=${OUT:-/tmp/million}
BIN=target/release/ringwire
mkdir -p "$OUT"

sysctl -qw net.ipv4.ip_local_port_range="1024 65000" || echo "note: port range unchanged"
if [ -e /proc/sys/net/netfilter/nf_conntrack_max ]; then
  sysctl -qw net.netfilter.nf_conntrack_max=$((3 * N)) 2>/dev/null || echo "note: conntrack max unchanged (not settable here)"
fi

per_worker=$((N / SERVER_WORKERS + 1000))
$BIN serve --listen 127.0.0.1:$PORT --workers "$SERVER_WORKERS" --no-pin \
  --max-connections "$per_worker" --stats-every 0 >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; kill $SAMPLER 2>/dev/null || true' EXIT
sleep 1

meminfo() { awk '/^(MemAvailable|Slab|SUnreclaim):/ {printf "%s=%s ", $1, $2}' /proc/meminfo; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "before: $(meminfo) server_rss_kb=$(rss $SERVER)" | tee "$OUT/samples.log"
$BIN load idle --addr 127.0.0.1:$PORT -c "$N" --threads "$THREADS" --source-ips "$SOURCES" \
  --ping-interval 20 --hold "$HOLD" --settle 2 --server-pid "$SERVER" \
  --connect-timeout 900 --json >"$OUT/load.json" 2>"$OUT/load.txt" &
LOAD=$!
(
  while kill -0 $LOAD 2>/dev/null; do
    echo "t=$(date +%s) $(meminfo) server_rss_kb=$(rss $SERVER) load_rss_kb=$(rss $LOAD)" \
      "server_ticks=$(ticks $SERVER) load_ticks=$(ticks $LOAD)"
    sleep 5
  done
) >>"$OUT/samples.log" &
SAMPLER=$!
wait $LOAD || echo "load exited with $?"
wait $SAMPLER 2>/dev/null || true
echo "after: $(meminfo)" >>"$OUT/samples.log"
cat "$OUT/load.txt"
tail -n 30 "$OUT/samples.log"
