#!/usr/bin/env bash
# Lints on every target, warnings are errors.
set -euo pipefail
cargo clippy --workspace --all-targets --locked -- -D warnings
# The engine without its optional features (no NATS bridge, no codecs) builds clean too.
cargo clippy -p ringwire --no-default-features --locked -- -D warnings
