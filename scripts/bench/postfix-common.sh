# Shared by postfix-run.sh and postfix-ab.sh, which source it after
# setting HERE to their directory: paths, the milter process list, the
# exit trap and the waits for a milter to listen.
BIN=${BIN:-target/release/examples}
PF=$HERE/postfix.sh
SOCK=/tmp/ioc-milter-bench/ioc-milter.sock
MINIMAL_SOCK=/tmp/ioc-milter-bench/minimal.sock
PIDS=()
# Waits for the milters to exit, so the next script finds their ports free.
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }; done; "$PF" milter "" || true; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on 127.0.0.1:$1 after 60 s; check that the milter started" >&2; return 1
}

wait_socket() {
    for _ in $(seq 1 600); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "no socket at $1 after 60 s; check that the milter started" >&2; return 1
}
