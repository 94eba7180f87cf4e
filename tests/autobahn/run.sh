#!/usr/bin/env bash
# Run the Autobahn WebSocket testsuite (fuzzingclient: the suite connects to
# our server) against `BINARY serve`, the echo server with default settings.
#
#   tests/autobahn/run.sh BINARY [BACKEND]
#
#   BINARY   the ringwire CLI (a release build: group 9 moves 100+ MB)
#   BACKEND  io_uring | epoll | auto (default: auto, the server's default)
#
# Environment (all optional):
#   AUTOBAHN_VENV     venv made by setup.sh   (default <repo>/target/autobahn-venv;
#                     setup.sh is run first, a no-op when it is up to date)
#   AUTOBAHN_OUT      report folder           (default <repo>/target/autobahn/<backend>)
#   AUTOBAHN_TIMEOUT  seconds for the whole suite run (default 600)
#   AUTOBAHN_CASES    comma-separated case patterns (default 1.*,...,7.*,9.*,10.*)
#   AUTOBAHN_SERVE_ARGS  more `serve` flags, split at spaces (e.g. --deflate for 12.*, 13.*)
#
# Prints one line per behavior with its count, then every case that is not
# OK. Exit status: 0 when no case is FAILED or NON-STRICT (INFORMATIONAL and
# UNIMPLEMENTED are fine), 1 when some are, 2 when the run itself broke
# (server did not start, wstest failed or timed out, cases missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ $# -lt 1 || $# -gt 2 ]]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
bin="$1"
backend="${2:-auto}"
[[ -x "$bin" ]] || { echo "run.sh: $bin is not an executable" >&2; exit 2; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
case "$backend" in
    io_uring|io-uring|uring) backend=io_uring ;;
    epoll|auto) ;;
    *) echo "run.sh: unknown backend '$backend' (io_uring, epoll, auto)" >&2; exit 2 ;;
esac

venv="${AUTOBAHN_VENV:-$repo/target/autobahn-venv}"
out="${AUTOBAHN_OUT:-$repo/target/autobahn/$backend}"
[[ "$out" = /* ]] || out="$PWD/$out" # the suite writes its reports from elsewhere
limit="${AUTOBAHN_TIMEOUT:-600}"
cases="${AUTOBAHN_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}"

"$here/setup.sh" "$venv" >&2

# clear the last run's output, but nothing that is not one
if [[ -d "$out" && -n "$(ls -A "$out")" && ! -f "$out/fuzzingclient.json" && ! -f "$out/server.log" ]]; then
    echo "run.sh: $out is not empty and not an earlier run's output; not clearing it" >&2
    exit 2
fi
rm -rf "$out"
mkdir -p "$out/reports"

# The CLI's flags, from its help (the binary is moving crates; stay tolerant).
help="$("$bin" serve --help 2>&1)" || { echo "run.sh: '$bin serve --help' failed" >&2; exit 2; }
listen_flag=--listen
grep -q -- '--listen' <<<"$help" || listen_flag=--addr
backend_args=()
if [[ "$backend" != auto ]]; then
    if grep -q -- '--backend' <<<"$help"; then
        backend_args=(--backend "${backend/_/-}")
    else
        export RINGWIRE_BACKEND="$backend"
    fi
fi

# shellcheck source=lib.sh
source "$here/lib.sh"
port="$(free_port "$venv/bin/python")"
trap stop_bg EXIT

read -r -a extra_args <<<"${AUTOBAHN_SERVE_ARGS:-}"
"$bin" serve "$listen_flag" "127.0.0.1:$port" "${backend_args[@]}" "${extra_args[@]}" > "$out/server.log" 2>&1 &
bg_pid=$!
wait_listening "run.sh: the server" "$port" 100 "$out/server.log"
echo "server: $bin serve $listen_flag 127.0.0.1:$port ${backend_args[*]} ${extra_args[*]} ${RINGWIRE_BACKEND:+(RINGWIRE_BACKEND=$RINGWIRE_BACKEND)}"

"$venv/bin/python" - "$out" "$port" "$cases" <<'EOF'
import json, sys
out, port, cases = sys.argv[1], sys.argv[2], sys.argv[3]
spec = {
    "outdir": out + "/reports",
    "servers": [{"agent": "ringwire", "url": "ws://127.0.0.1:%s" % port}],
    "cases": [c.strip() for c in cases.split(",") if c.strip()],
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
json.dump(spec, open(out + "/fuzzingclient.json", "w"), indent=2)
EOF

start=$(date +%s)
rc=0
(cd "$out" && timeout --kill-after=10 "$limit" "$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json > wstest.log 2>&1) || rc=$?
secs=$(( $(date +%s) - start ))
stop_bg
head -n 1 "$out/server.log" | sed 's/^/server: /'
tail -n 1 "$out/server.log" | sed 's/^/server: /'
if [[ "$backend" != auto ]] && ! head -n 1 "$out/server.log" | grep -qi "backend ${backend/_/.\\?}"; then
    echo "run.sh: warning: server's first log line does not name backend $backend" >&2
fi
echo "wstest: exit $rc after ${secs}s; reports in $out/reports (index.html, index.json)"
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "run.sh: wstest did not finish within AUTOBAHN_TIMEOUT=${limit}s" >&2
fi

"$venv/bin/python" "$here/verdict.py" run.sh "$out" "$rc"
