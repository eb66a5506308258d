#!/usr/bin/env bash
# Swap under load, one run: ioc-milter with INDICATORS indicators on
# 127.0.0.1:8994, first without swaps, then with a new index swapped in
# every second, each under the same load (CONNS connections, SECONDS
# seconds). JSON lines go to OUT.
#
#   scripts/bench/swap.sh DIR OUT [INDICATORS] [SECONDS] [CONNS]
set -euo pipefail
DIR=${1:?give the message directory}
OUT=${2:?give the output file}
INDICATORS=${3:-1000000}
SECS=${4:-20}
CONNS=${5:-16}
BIN=${BIN:-target/release/examples}
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && { wait "$PID" 2>/dev/null || true; }; true; }
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

for swap in 0 1; do
    "$BIN/bench_milter" --indicators "$INDICATORS" --swap-every "$swap" --max-seconds $((SECS + 120)) &
    PID=$!
    wait_port 8994
    "$BIN/loadgen" --target inet:127.0.0.1:8994 --dir "$DIR" --connections "$CONNS" \
        --count 1000000 --seconds "$SECS" --label "swap-every-$swap" | split_lines
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
