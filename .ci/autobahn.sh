#!/usr/bin/env bash
# The independent Autobahn WebSocket testsuite (fuzzingclient, groups 1-7, 9, 10) against
# `ringwire serve` with default settings, on both backends. Fails on any FAILED or
# NON-STRICT case (the three INFORMATIONAL ones, 7.1.6, 7.13.1, 7.13.2, are fine). Needs
# the release binary (bench-smoke.sh builds it) and PyPI (tests/autobahn/setup.sh).
set -euo pipefail
cargo build --release --locked -p ringwire-cli
bin="${CARGO_TARGET_DIR:-target}/release/ringwire"
for backend in io_uring epoll; do
    echo "--- autobahn on $backend"
    bash tests/autobahn/run.sh "$bin" "$backend"
done
