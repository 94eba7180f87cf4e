#!/usr/bin/env bash
# Benchmarks are not timed in CI; this only checks that they build and run one
# iteration each (criterion's test mode), and that the `ringwire` command the bench
# scripts run (target/release/ringwire, from the ringwire-cli crate) builds there and
# serves.
set -euo pipefail
cargo test --workspace --benches --locked
cargo build --release --locked -p ringwire-cli
bin="${CARGO_TARGET_DIR:-target}/release/ringwire"
"$bin" --version
"$bin" serve --listen 127.0.0.1:0 --workers 1 --duration 1
