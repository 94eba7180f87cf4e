#!/usr/bin/env bash
# Replays the committed fuzz seeds (fuzz/seeds/<target>/) through the fuzz targets'
# checks on stable Rust. (Running the fuzzers themselves needs nightly: see
# docs/CONFORMANCE.md.)
set -euo pipefail
cargo test -p ringwire-frame --locked --test fuzz_seeds
cargo test -p ringwire-tests --locked --test fuzz_seeds_outbox
cargo test -p ringwire-tests --locked --test fuzz_seeds_tls
