# What run.sh and run_client.sh share: sourced, not run.
#
#   bg_pid=""; trap 'stop_bg' EXIT      # the one background process of a script
#   free_port PYTHON                     # prints a free loopback port
#   wait_listening NAME PORT TRIES LOG   # after starting $bg_pid: waits for PORT, or
#                                        # prints LOG and exits 2

bg_pid=""

# Stops the background process: TERM, up to 5 s, then KILL.
stop_bg() {
    if [[ -n "$bg_pid" ]] && kill -0 "$bg_pid" 2>/dev/null; then
        kill -TERM "$bg_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$bg_pid" 2>/dev/null || true
        wait "$bg_pid" 2>/dev/null || true
    fi
    bg_pid=""
}

free_port() {
    "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:PORT accepts a connection (TRIES x 0.1 s) while $bg_pid lives.
wait_listening() {
    local name=$1 port=$2 tries=$3 log=$4 up=""
    for _ in $(seq "$tries"); do
        kill -0 "$bg_pid" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    if [[ -z "$up" ]]; then
        echo "$name: nothing listens on 127.0.0.1:$port; the log:" >&2
        cat "$log" >&2
        exit 2
    fi
}
