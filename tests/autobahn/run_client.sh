#!/usr/bin/env bash
# Run the Autobahn WebSocket testsuite in fuzzingserver mode (the suite is the
# server) against ringwire's client: engine/examples/autobahn_client.rs, which
# asks the suite for its case count, runs every case one at a time by echoing
# what the suite sends, then has it write its reports.
#
#   tests/autobahn/run_client.sh [BACKEND]
#
#   BACKEND  io_uring | epoll | auto (default: auto, the engine's default);
#            passed to the client as RINGWIRE_BACKEND
#
# Environment (all optional):
#   AUTOBAHN_VENV     venv made by setup.sh   (default <repo>/target/autobahn-venv;
#                     setup.sh is run first, a no-op when it is up to date)
#   AUTOBAHN_OUT      report folder           (default <repo>/target/autobahn-client/<backend>)
#   AUTOBAHN_TIMEOUT  seconds for the client's whole run (default 600)
#   AUTOBAHN_CASES    comma-separated case patterns (default 1.*,...,7.*,9.*,10.*)
#   AUTOBAHN_CLIENT   a built autobahn_client to use instead of building one
#                     (default: cargo build --release -p ringwire --example autobahn_client)
#
# Prints one line per behavior with its count, then every case that is not
# OK. Exit status: 0 when no case is FAILED or NON-STRICT (INFORMATIONAL and
# UNIMPLEMENTED are fine), 1 when some are, 2 when the run itself broke (the
# suite did not start, the client failed or timed out, cases missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ $# -gt 1 ]]; then
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
backend="${1:-auto}"
case "$backend" in
    io_uring|io-uring|uring) backend=io_uring ;;
    epoll|auto) ;;
    *) echo "run_client.sh: unknown backend '$backend' (io_uring, epoll, auto)" >&2; exit 2 ;;
esac

venv="${AUTOBAHN_VENV:-$repo/target/autobahn-venv}"
out="${AUTOBAHN_OUT:-$repo/target/autobahn-client/$backend}"
[[ "$out" = /* ]] || out="$PWD/$out" # the suite writes its reports from elsewhere
limit="${AUTOBAHN_TIMEOUT:-600}"
cases="${AUTOBAHN_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}"
agent=ringwire-client

"$here/setup.sh" "$venv" >&2

client="${AUTOBAHN_CLIENT:-}"
if [[ -z "$client" ]]; then
    # a release build: group 9 moves 100+ MB
    (cd "$repo" && cargo build --release -q -p ringwire --example autobahn_client) >&2
    target="${CARGO_TARGET_DIR:-$repo/target}"
    [[ "$target" = /* ]] || target="$repo/$target"
    client="$target/release/examples/autobahn_client"
fi
[[ -x "$client" ]] || { echo "run_client.sh: $client is not an executable" >&2; exit 2; }

# clear the last run's output, but nothing that is not one
if [[ -d "$out" && -n "$(ls -A "$out")" && ! -f "$out/fuzzingserver.json" ]]; then
    echo "run_client.sh: $out is not empty and not an earlier run's output; not clearing it" >&2
    exit 2
fi
rm -rf "$out"
mkdir -p "$out/reports"

# shellcheck source=lib.sh
source "$here/lib.sh"
port="$(free_port "$venv/bin/python")"

"$venv/bin/python" - "$out" "$port" "$cases" <<'EOF'
import json, sys
out, port, cases = sys.argv[1], sys.argv[2], sys.argv[3]
spec = {
    "url": "ws://127.0.0.1:%s" % port,
    "outdir": out + "/reports",
    "cases": [c.strip() for c in cases.split(",") if c.strip()],
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
json.dump(spec, open(out + "/fuzzingserver.json", "w"), indent=2)
EOF

trap stop_bg EXIT

# --webport 0: no embedded HTTP server (it would take port 8080, and fails on Python 3).
(cd "$out" && exec "$venv/bin/wstest" -m fuzzingserver \
    -s fuzzingserver.json --webport 0) > "$out/wstest.log" 2>&1 &
bg_pid=$!
wait_listening "run_client.sh: the suite" "$port" 200 "$out/wstest.log"
echo "suite: wstest -m fuzzingserver on ws://127.0.0.1:$port"

backend_env=()
[[ "$backend" == auto ]] || backend_env=(RINGWIRE_BACKEND="$backend")
start=$(date +%s)
rc=0
env "${backend_env[@]}" timeout --kill-after=10 "$limit" "$client" "ws://127.0.0.1:$port" "$agent" \
    > "$out/client.log" 2>&1 || rc=$?
secs=$(( $(date +%s) - start ))
stop_bg
head -n 2 "$out/client.log" | sed 's/^/client: /'
tail -n 2 "$out/client.log" | sed 's/^/client: /'
if [[ "$backend" != auto ]] && ! head -n 1 "$out/client.log" | grep -q "$backend backend"; then
    echo "run_client.sh: warning: client's first line does not name backend $backend" >&2
fi
echo "client: exit $rc after ${secs}s; reports in $out/reports (index.html, index.json)"
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "run_client.sh: the client did not finish within AUTOBAHN_TIMEOUT=${limit}s" >&2
fi

"$venv/bin/python" "$here/verdict.py" run_client.sh "$out" "$rc" "$agent"
