#!/usr/bin/env bash
# Milter throughput, one run: the accept-all floor (127.0.0.1:8995),
# ioc-milter with an empty index and with INDICATORS generated indicators
# (127.0.0.1:8994), and rspamd's milter (127.0.0.1:11332, when it is up;
# start it with rspamd.sh), each at 1, 4, 16 and 64 connections, on the
# messages under DIR. Each point runs at most SECONDS seconds or COUNT
# messages. JSON lines go to OUT.
#
#   scripts/bench/throughput.sh DIR OUT [INDICATORS] [SECONDS] [COUNT]
set -euo pipefail
DIR=${1:?give the message directory}
OUT=${2:?give the output file}
INDICATORS=${3:-1000000}
SECONDS_PER_POINT=${4:-8}
COUNT=${5:-40000}
BIN=${BIN:-target/release/examples}
CONNS=${CONNS:-"1 4 16 64"}
PIDS=()
# Waits for the servers to exit, so the next script finds their ports free.
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }; done; true; }
trap cleanup EXIT

# loadgen prints a line for people, then a JSON line: the first goes to
# stderr, the second to OUT.
split_lines() {
    local human json
    IFS= read -r human; IFS= read -r json
    echo "$human" >&2
    echo "$json" >> "$OUT"
}

wait_port() {
    for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on 127.0.0.1:$1 after 60 s; check that the milter started" >&2; return 1
}

point() { # label port conns
    "$BIN/loadgen" --target "inet:127.0.0.1:$2" --dir "$DIR" --connections "$3" \
        --count "$COUNT" --seconds "$SECONDS_PER_POINT" --label "$1" | split_lines
}

"$BIN/accept_milter" inet:127.0.0.1:8995 1800 2>/dev/null & PIDS+=($!)
"$BIN/bench_milter" --indicators 0 --max-seconds 1800 2>/dev/null & empty=$!; PIDS+=($empty)
wait_port 8995; wait_port 8994
rspamd_up=0; (exec 3<>/dev/tcp/127.0.0.1/11332) 2>/dev/null && rspamd_up=1

for c in $CONNS; do
    point floor 8995 "$c"
    point ioc-empty 8994 "$c"
done
kill "$empty"; wait "$empty" 2>/dev/null || true

"$BIN/bench_milter" --indicators "$INDICATORS" --max-seconds 1800 2>&1 & PIDS+=($!)
wait_port 8994
for c in $CONNS; do
    point floor 8995 "$c"
    point "ioc-$INDICATORS" 8994 "$c"
    [ "$rspamd_up" = 1 ] && point rspamd 11332 "$c"
done
