#!/usr/bin/env bash
# Runs the protocol-core criterion suite (decode, encode, masking, handshake) with a short
# measurement, pinned to one core when taskset is available, and prints the markdown
# table of docs/BENCHMARKS.md (also written to $CARGO_TARGET_DIR/criterion/frame-table.md).
#
#   bench/run-frame-benches.sh                 # everything, about 4-5 minutes
#   bench/run-frame-benches.sh decode_text     # a criterion filter
#   WARMUP=1 MEASURE=2 bench/run-frame-benches.sh
#
# Compare figures within one run only: ratios are what carry over between machines.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WARMUP="${WARMUP:-0.5}"
MEASURE="${MEASURE:-1.5}"
SAMPLES="${SAMPLES:-30}"

# Build first, unpinned (the build uses every core), then run the benches pinned.
cargo bench -p ringwire-bench --no-run

PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c 1 true 2>/dev/null; then
    PIN=(taskset -c 1)
fi

"${PIN[@]}" cargo bench -p ringwire-bench -- \
    --warm-up-time "$WARMUP" --measurement-time "$MEASURE" --sample-size "$SAMPLES" \
    --noplot "$@"

python3 bench/bench-table.py "$CARGO_TARGET_DIR/criterion" | tee "$CARGO_TARGET_DIR/criterion/frame-table.md"
