#!/usr/bin/env bash
# The long run of tests/tests/outbox_kill.rs: a writer appending to an outbox on real
# files is killed with SIGKILL ROUNDS times at random moments (policies Os, Always and
# Batch in turn); after each kill every id it reported durable must be there, once,
# whole. CI runs 6 rounds; this runs as many as asked (default 300).
#
#   ROUNDS=1000 bench/outbox-kill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RINGWIRE_KILL_ROUNDS=${ROUNDS:-300} cargo test --release -p ringwire-tests --test outbox_kill -- --nocapture 2>&1 \
  | grep -E "^round|test result"
