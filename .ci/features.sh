#!/usr/bin/env bash
# The engine's optional `aws-lc-rs` feature (TLS with AWS-LC and X25519MLKEM768): lints,
# the TLS unit tests, the wss:// tests on real sockets, and Chromium over wss:// (which
# must agree on X25519MLKEM768 with it), all with the feature on.
set -euo pipefail
cargo clippy -p ringwire --all-targets --features aws-lc-rs --locked -- -D warnings
cargo test -p ringwire --features aws-lc-rs --locked --lib tls
cargo test -p ringwire-tests --features ringwire/aws-lc-rs --locked \
    --test engine_tls --test fuzz_seeds_tls --test client_connect
cargo test -p ringwire-tests --features ringwire/aws-lc-rs --locked --test browser_client wss
