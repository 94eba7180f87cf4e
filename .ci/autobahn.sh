#!/usr/bin/env bash
# The independent Autobahn WebSocket testsuite (groups 1-7, 9, 10), on both backends:
# fuzzingclient mode against `ringwire serve` with default settings (the server side),
# then fuzzingserver mode against engine/examples/autobahn_client.rs (the client side).
# Fails on any FAILED or NON-STRICT case (the three INFORMATIONAL ones, 7.1.6, 7.13.1,
# 7.13.2, are fine). Needs release builds (bench-smoke.sh builds the CLI) and PyPI
# (tests/autobahn/setup.sh). About 45-60 s per run, four runs; then groups 12 and 13
# (permessage-deflate) in part, four more runs of about 30-60 s.
set -euo pipefail
cargo build --release --locked -p ringwire-cli
cargo build --release --locked -p ringwire --example autobahn_client
bin="${CARGO_TARGET_DIR:-target}/release/ringwire"
client="${CARGO_TARGET_DIR:-target}/release/examples/autobahn_client"
for backend in io_uring epoll; do
    echo "--- autobahn on $backend"
    bash tests/autobahn/run.sh "$bin" "$backend"
done
for backend in io_uring epoll; do
    echo "--- autobahn client on $backend"
    AUTOBAHN_CLIENT="$client" bash tests/autobahn/run_client.sh "$backend"
done
# permessage-deflate (groups 12 and 13): every sub-group at its first seven message
# sizes (the full 216 cases take the Python suite ~25 min a run; docs/CONFORMANCE.md has
# that run), both sides, both compression modes, each mode on one backend.
out="${CARGO_TARGET_DIR:-target}"
deflate_cases=$(python3 -c "print(','.join(f'{g}.{i}' for g in ['12.1','12.2','12.3','12.4','12.5','13.1','13.2','13.3','13.4','13.5','13.6','13.7'] for i in range(1, 8)))")
echo "--- autobahn permessage-deflate, shared, io_uring"
AUTOBAHN_CASES="$deflate_cases" AUTOBAHN_SERVE_ARGS="--deflate" \
    AUTOBAHN_OUT="$out/autobahn/deflate-shared" bash tests/autobahn/run.sh "$bin" io_uring
echo "--- autobahn permessage-deflate, context takeover (window 12), epoll"
AUTOBAHN_CASES="$deflate_cases" AUTOBAHN_SERVE_ARGS="--deflate --deflate-takeover 12" \
    AUTOBAHN_OUT="$out/autobahn/deflate-takeover" bash tests/autobahn/run.sh "$bin" epoll
echo "--- autobahn client permessage-deflate, shared, io_uring"
RINGWIRE_DEFLATE=shared AUTOBAHN_CLIENT="$client" AUTOBAHN_CASES="$deflate_cases" \
    AUTOBAHN_OUT="$out/autobahn-client/deflate-shared" bash tests/autobahn/run_client.sh io_uring
echo "--- autobahn client permessage-deflate, context takeover, epoll"
RINGWIRE_DEFLATE=takeover AUTOBAHN_CLIENT="$client" AUTOBAHN_CASES="$deflate_cases" \
    AUTOBAHN_OUT="$out/autobahn-client/deflate-takeover" bash tests/autobahn/run_client.sh epoll
