#!/usr/bin/env bash
# Added latency at a fixed rate, one run: the accept-all floor
# (127.0.0.1:8995) and ioc-milter with INDICATORS indicators
# (127.0.0.1:8994), each paced at RATE messages per second over CONNS
# connections for SECONDS seconds. Added latency = ioc-milter's percentile
# minus the floor's. JSON lines go to OUT.
#
#   scripts/bench/latency.sh DIR OUT [INDICATORS] [RATE] [SECONDS] [CONNS]
set -euo pipefail
DIR=${1:?give the message directory}
OUT=${2:?give the output file}
INDICATORS=${3:-1000000}
RATE=${4:-1000}
SECS=${5:-15}
CONNS=${6:-16}
BIN=${BIN:-target/release/examples}
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

"$BIN/accept_milter" inet:127.0.0.1:8995 600 2>/dev/null & PIDS+=($!)
"$BIN/bench_milter" --indicators "$INDICATORS" --max-seconds 600 2>/dev/null & PIDS+=($!)
wait_port 8995; wait_port 8994
for target in floor:8995 "ioc-$INDICATORS:8994" floor:8995 "ioc-$INDICATORS:8994"; do
    "$BIN/loadgen" --target "inet:127.0.0.1:${target##*:}" --dir "$DIR" --connections "$CONNS" \
        --rate "$RATE" --count $((RATE * SECS)) --seconds $((SECS + 5)) \
        --label "${target%%:*}-rate-$RATE" | split_lines
done
