#!/usr/bin/env bash
# The independent Autobahn WebSocket testsuite (groups 1-7, 9, 10), on both backends:
# fuzzingclient mode against `ringwire serve` with default settings (the server side),
# then fuzzingserver mode against engine/examples/autobahn_client.rs (the client side).
# Fails on any FAILED or NON-STRICT case (the three INFORMATIONAL ones, 7.1.6, 7.13.1,
# 7.13.2, are fine). Needs release builds (bench-smoke.sh builds the CLI) and PyPI
# (tests/autobahn/setup.sh). About 45-60 s per run, four runs.
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
