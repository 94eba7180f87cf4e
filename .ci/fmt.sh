#!/usr/bin/env bash
# Formatting: the workspace and the fuzz crate.
set -euo pipefail
cargo fmt --all -- --check
if [ -f fuzz/Cargo.toml ]; then
    (cd fuzz && cargo fmt --all -- --check)
fi
