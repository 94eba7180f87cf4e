#!/usr/bin/env bash
# The engine matrix of docs/BENCHMARKS.md ("Engine"): ringwire (`serve --workers 1`)
# and the comparison servers of bench/src/bin/peer-*.rs, each pinned to CPU 0, loaded by
# `ringwire load` pinned to CPU 1, one fresh server process per measurement.
#
#   bench/run-engine-matrix.sh                          # everything, about 5 minutes per repeat
#   DURATION=1 WARMUP=0.3 IDLE_CONNS=2000 FANOUT_SUBS=2000 bench/run-engine-matrix.sh   # smoke
#   SERVERS="ringwire fastwebsockets" SCENARIOS="c100x1x20 latency" bench/run-engine-matrix.sh
#   REPEAT=2 bench/run-engine-matrix.sh                 # every measurement twice (variation)
#   KEEP_RESULTS=1 SCENARIOS=idle-marginal bench/run-engine-matrix.sh   # add to the last run
#
# Environment: DURATION (measured s, default 5), WARMUP (s, 1), REPEAT (1), IDLE_CONNS
# (15000), IDLE_HOLD (s, 2), FANOUT_SUBS (15000), FANOUT_RATE (publishes/s, 2: one at a time),
# FANOUT_DURATION (s, 5), SERVERS, SCENARIOS (subsets of the lists below), PORT (first
# port, 19100), RESULTS (directory for the raw reports, default
# $CARGO_TARGET_DIR/engine-matrix; KEEP_RESULTS=1 adds to it instead of starting afresh;
# per measurement SERVER.SCENARIO.REPEAT.json is the report of `ringwire load --json`, from
# which bench/engine-table.py builds the tables, .txt the same report as text, .cmd the
# commands),
# IDLE_BASELINE (connections opened before the memory baseline of idle-marginal, 1000), WRITE_DOC (1: write the table into docs/BENCHMARKS.md;
# 0: only print it), SERVER_CPU / LOAD_CPU (0 / 1).
#
# Compare figures within one run only: the server CPU time per message (from the kernel's
# accounting of the server process over the measured window) is what decides; msg/s is
# bounded by the load generator's single core in most rows.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
REPEAT="${REPEAT:-1}"
IDLE_CONNS="${IDLE_CONNS:-15000}"
IDLE_HOLD="${IDLE_HOLD:-2}"
IDLE_BASELINE="${IDLE_BASELINE:-1000}"
FANOUT_SUBS="${FANOUT_SUBS:-15000}"
FANOUT_RATE="${FANOUT_RATE:-2}"
FANOUT_DURATION="${FANOUT_DURATION:-5}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
PORT="${PORT:-19100}"
RESULTS="${RESULTS:-$CARGO_TARGET_DIR/engine-matrix}"
WRITE_DOC="${WRITE_DOC:-1}"
KEEP_RESULTS="${KEEP_RESULTS:-0}"

# ringwire-busy-poll: ringwire with `--busy-poll-us 50` (an opt-in that trades CPU for
# latency), in the latency scenario only.
# ringwire-epoll: ringwire on its epoll backend (`--backend epoll`), the same defaults.
# floor: not a server but `kernel-floor --echo`, the kernel's own cost of the echo (a bare
# read and write per message, the same bytes), in the one-in-flight rows and the
# latency row only.
ALL_SERVERS="floor ringwire ringwire-epoll ringwire-busy-poll fastwebsockets fastwebsockets-batch tokio-websockets tokio-tungstenite monoio-frame tokio-uring-frame"
# name: connections in-flight size
ALL_SCENARIOS="c100x1x20 c1000x1x512 c100x16x32 c100x16x4k c500x1x16k latency idle idle-marginal fanout"
SERVERS="${SERVERS:-$ALL_SERVERS}"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"

cargo build --release -p ringwire-cli -p ringwire-bench --bins
BIN="$CARGO_TARGET_DIR/release"

[ "$KEEP_RESULTS" = 1 ] || rm -rf "$RESULTS"
mkdir -p "$RESULTS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version)"
    echo "fd limit: $(ulimit -n)"
    echo "durations: warmup ${WARMUP} s, measured ${DURATION} s, repeat ${REPEAT}"
} >"$RESULTS/machine.$(date +%s).txt"

server_cmd() { # name port mode
    local name=$1 addr="127.0.0.1:$2" mode=${3:-echo}
    case $name in
        ringwire) echo "$BIN/ringwire serve --mode $mode --workers 1 --listen $addr" ;;
        ringwire-epoll)
            echo "$BIN/ringwire serve --mode $mode --workers 1 --backend epoll --listen $addr" ;;
        ringwire-busy-poll)
            echo "$BIN/ringwire serve --mode $mode --workers 1 --busy-poll-us 50 --listen $addr" ;;
        fastwebsockets) echo "$BIN/peer-fastwebsockets --listen $addr" ;;
        fastwebsockets-batch) echo "$BIN/peer-fastwebsockets --batch --listen $addr" ;;
        *) echo "$BIN/peer-$name --listen $addr" ;;
    esac
}

load_args() { # scenario -> arguments of `ringwire load` after the address
    case $1 in
        c100x1x20) echo "echo -c 100 --in-flight 1 -s 20 -d $DURATION --warmup $WARMUP" ;;
        c1000x1x512) echo "echo -c 1000 --in-flight 1 -s 512 -d $DURATION --warmup $WARMUP" ;;
        c100x16x32) echo "echo -c 100 --in-flight 16 -s 32 -d $DURATION --warmup $WARMUP" ;;
        c100x16x4k) echo "echo -c 100 --in-flight 16 -s 4096 -d $DURATION --warmup $WARMUP" ;;
        # The large-message row, 500 x 16 KiB (one in flight: large messages, peers batch their
        # writes of a frame's header and payload).
        c500x1x16k) echo "echo -c 500 --in-flight 1 -s 16384 -d $DURATION --warmup $WARMUP" ;;
        latency) echo "echo -c 1 --in-flight 1 -s 32 -d $DURATION --warmup $WARMUP" ;;
        idle) echo "idle -c $IDLE_CONNS --hold $IDLE_HOLD --settle 1" ;;
        # The growth over the last connections only, after the server's fixed pools.
        idle-marginal) echo "idle -c $IDLE_CONNS --baseline $IDLE_BASELINE --hold $IDLE_HOLD --settle 1" ;;
        fanout) echo "fanout -n $FANOUT_SUBS --rate $FANOUT_RATE -d $FANOUT_DURATION -s 64" ;;
    esac
}

# The kernel-floor command of a scenario with one message in flight: its connections,
# the client frame (2-byte header, or 4 with a 16-bit length, plus the 4-byte mask) and
# the server frame of its payload, and enough rounds for about a second.
floor_args() {
    case $1 in
        c100x1x20) echo "-n 100 --size 26 --reply-size 22 --rounds 3000" ;;
        c1000x1x512) echo "-n 1000 --size 520 --reply-size 516 --rounds 300" ;;
        latency) echo "-n 1 --size 38 --reply-size 34 --rounds 20000" ;;
    esac
}

run_floor() { # scenario repeat
    local scenario=$1 rep=$2 args tag
    args=$(floor_args "$scenario")
    [ -n "$args" ] || return 0
    tag="floor.$scenario.$rep"
    local cmd="$BIN/kernel-floor --echo $args --cpu $SERVER_CPU --recv-cpu $LOAD_CPU --json"
    echo "== $tag: $cmd" >&2
    printf 'server: %s\nload: (its own client, on CPU %s)\n' "$cmd" "$LOAD_CPU" >"$RESULTS/$tag.cmd"
    $cmd >"$RESULTS/$tag.json" 2>"$RESULTS/$tag.txt" || echo "(kernel-floor exited with $?)" >>"$RESULTS/$tag.txt"
    sed 's/^/   /' "$RESULTS/$tag.json" >&2
    sleep 0.5
}

SERVER_PID=
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop_server EXIT

run_one() { # server scenario repeat
    local server=$1 scenario=$2 rep=$3 mode=echo
    [ "$scenario" = fanout ] && mode=pubsub
    PORT=$((PORT + 1))
    # Skip ports a kept run already used.
    while [ -e "$RESULTS/port.$PORT" ]; do PORT=$((PORT + 1)); done
    touch "$RESULTS/port.$PORT"
    local tag="$server.$scenario.$rep" cmd
    # A kept run's report of the same measurement must not stand in for this one.
    rm -f "$RESULTS/$tag.json"
    cmd=$(server_cmd "$server" "$PORT" "$mode")
    taskset -c "$SERVER_CPU" $cmd >"$RESULTS/$tag.server.log" 2>&1 &
    SERVER_PID=$!
    # Wait for its start-up line (printed once it listens), then for the port itself.
    for _ in $(seq 100); do
        grep -q '^pid ' "$RESULTS/$tag.server.log" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^pid ' "$RESULTS/$tag.server.log"; then
        echo "$server did not start:" >&2
        cat "$RESULTS/$tag.server.log" >&2
        stop_server
        echo "server did not start" >"$RESULTS/$tag.txt"
        return 0
    fi
    local lcmd
    lcmd="taskset -c $LOAD_CPU $BIN/ringwire load $(load_args "$scenario") --addr 127.0.0.1:$PORT --server-pid $SERVER_PID --json"
    echo "== $tag: $cmd" >&2
    echo "   $lcmd" >&2
    {
        echo "server: taskset -c $SERVER_CPU $cmd"
        echo "load: $lcmd"
    } >"$RESULTS/$tag.cmd"
    # --json: the JSON object on stdout; the text report (and any error) on stderr, with no
    # progress lines since stderr is not a terminal.
    $lcmd >"$RESULTS/$tag.json" 2>"$RESULTS/$tag.txt" || echo "(load exited with $?)" >>"$RESULTS/$tag.txt"
    sed 's/^/   /' "$RESULTS/$tag.txt" >&2
    stop_server
    sleep 0.5
}

for rep in $(seq "$REPEAT"); do
    for scenario in $SCENARIOS; do
        for server in $SERVERS; do
            # Peers have no pub/sub: fan-out runs against ringwire only.
            if [ "$scenario" = fanout ] && [ "$server" != ringwire ]; then continue; fi
            if [ "$server" = ringwire-busy-poll ] && [ "$scenario" != latency ]; then continue; fi
            if [ "$server" = ringwire-epoll ] && { [[ $scenario == idle* ]] || [ "$scenario" = fanout ]; }; then continue; fi
            if [ "$server" = floor ]; then
                run_floor "$scenario" "$rep"
                continue
            fi
            run_one "$server" "$scenario" "$rep"
        done
    done
done

args=("$RESULTS")
[ "$WRITE_DOC" = 1 ] && args+=(--doc docs/BENCHMARKS.md)
python3 bench/engine-table.py "${args[@]}" | tee "$RESULTS/table.md"
