#!/usr/bin/env bash
# Lints on every target, warnings are errors.
set -euo pipefail
cargo clippy --workspace --all-targets --locked -- -D warnings
