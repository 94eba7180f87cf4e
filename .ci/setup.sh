#!/usr/bin/env bash
# Installs what a fresh machine lacks: rustfmt and clippy, and the Python protobuf
# package the codec's cross-check test uses.
set -euo pipefail
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || rustup component add rustfmt clippy
fi
cargo --version
rustc --version
if command -v python3 >/dev/null 2>&1; then
    if ! python3 -c 'import google.protobuf' >/dev/null 2>&1; then
        python3 -m pip install --quiet 'protobuf>=5' || echo "warning: could not install python protobuf; the codec cross-check will report itself skipped"
    fi
fi
