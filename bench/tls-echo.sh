#!/usr/bin/env bash
# Server CPU per echoed message over TLS (wss://), server CPU per handshake and memory
# per idle connection: ringwire's server against tokio-tungstenite + tokio-rustls and
# fastwebsockets + tokio-rustls (with the same crypto: ring, X25519, AES-128-GCM), in one run, on the same machine. Each server runs on
# CPU 0 (one thread), the generator (`ringwire load echo`, TLS without certificate
# checks) on CPU 1. A self-signed P-256 certificate is made for the run (openssl).
#
#   bash bench/tls-echo.sh            # DURATION=5 seconds per row
#   ROUNDS=3 IDLE=0 PLAIN=0 PEERS=fws bash bench/tls-echo.sh   # the servers alternated,
#                     # 3 rounds, echo rows only, fastwebsockets the only peer, no plain ws://
#   FEATURES=aws-lc-rs bash bench/tls-echo.sh   # every server and the generator built
#                     # with the engine's aws-lc-rs feature: AWS-LC for all, X25519MLKEM768
#                     # where both ends offer it
#
# Rows: 100 x 16 in flight x 32 B, 100 x 16 x 4 KiB, 100 x 1 x 20 B; then IDLE (10,000)
# connections opened and held: server CPU per TLS handshake + upgrade, RSS per connection.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
IDLE=${IDLE:-10000}
ROUNDS=${ROUNDS:-1}
PLAIN=${PLAIN:-1}
PEERS=${PEERS:-"tt fws"}
FEATURES=${FEATURES:-}
cargo build --release -q -p ringwire-cli -p ringwire-bench --bin ringwire --bin peer-tokio-tungstenite \
  --bin peer-fastwebsockets ${FEATURES:+--features ringwire/$FEATURES}
BIN=target/release
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost" 2>/dev/null

start() { # name command...: starts a server on CPU 0, waits for its pid line
  local name=$1; shift
  taskset -c 0 "$@" > "$DIR/$name.log" 2>&1 &
  for _ in $(seq 50); do grep -q '^pid ' "$DIR/$name.log" 2>/dev/null && break; sleep 0.1; done
  PID=$(grep '^pid ' "$DIR/$name.log" | awk '{print $2}')
}

row() { # url shape...
  local url=$1; shift
  taskset -c 1 $BIN/ringwire load echo --url "$url" --insecure --server-pid "$PID" \
    -d "$DURATION" --cpu 1 "$@" 2>&1 | grep -E "messages|round trip|server CPU|server split" | sed 's/^/    /'
}

idle() { # url
  taskset -c 1 $BIN/ringwire load idle --url "$1" --insecure --server-pid "$PID" -c "$IDLE" \
    --hold 1 --cpu 1 2>&1 | grep -E "opened|setup CPU|memory" | sed 's/^/    /'
}

shapes=("-c 100 --in-flight 16 -s 32" "-c 100 --in-flight 16 -s 4096" "-c 100 --in-flight 1 -s 20")

for round in $(seq "$ROUNDS"); do
[ "$ROUNDS" = 1 ] || echo "#### round $round"
echo "== ringwire serve --tls-cert (1 worker, io_uring)"
start ringwire $BIN/ringwire serve --listen 127.0.0.1:9443 -w 1 --tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"
for s in "${shapes[@]}"; do echo "  $s"; row wss://localhost:9443/ $s; done
[ "$IDLE" = 0 ] || { echo "  idle"; idle wss://localhost:9443/; }
kill "$PID"; wait "$PID" 2>/dev/null || true

if [[ " $PEERS " == *" tt "* ]]; then
echo "== peer-tokio-tungstenite --tls (tokio-rustls, current-thread runtime)"
PEER_TLS_CERT="$DIR/cert.pem" PEER_TLS_KEY="$DIR/key.pem" start tt $BIN/peer-tokio-tungstenite --listen 127.0.0.1:9444 --tls
for s in "${shapes[@]}"; do echo "  $s"; row wss://localhost:9444/ $s; done
[ "$IDLE" = 0 ] || { echo "  idle"; idle wss://localhost:9444/; }
kill "$PID"; wait "$PID" 2>/dev/null || true

fi

if [[ " $PEERS " == *" fws "* ]]; then
echo "== peer-fastwebsockets --tls --batch (hyper upgrade, tokio-rustls, current-thread runtime)"
PEER_TLS_CERT="$DIR/cert.pem" PEER_TLS_KEY="$DIR/key.pem" start fws $BIN/peer-fastwebsockets --listen 127.0.0.1:9446 --tls --batch
for s in "${shapes[@]}"; do echo "  $s"; row wss://localhost:9446/ $s; done
[ "$IDLE" = 0 ] || { echo "  idle"; idle wss://localhost:9446/; }
kill "$PID"; wait "$PID" 2>/dev/null || true
fi

done

[ "$PLAIN" = 0 ] && exit 0
echo "== ringwire serve, plain ws:// (for reference)"
start plain $BIN/ringwire serve --listen 127.0.0.1:9445 -w 1
for s in "${shapes[@]}"; do echo "  $s"; row ws://localhost:9445/ $s; done
