#!/usr/bin/env bash
# Benchmarks are not timed in CI; this only checks that they build and run one
# iteration each (criterion's test mode).
set -euo pipefail
cargo test --workspace --benches --locked
