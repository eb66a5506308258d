#!/usr/bin/env bash
# Through a real Postfix, interleaved: ROUNDS rounds in which every setting
# runs right after the others at the same session count, so a change of
# machine load between points hits all settings alike. Settings: no milter,
# ioc-milter (INDICATORS indicators) over TCP and over a unix socket, and
# the minimal milter (accept_milter --minimal) over a unix socket. The
# benchmark Postfix must be running (postfix.sh setup && postfix.sh start).
# OUT gets one line per point with its round. The summary at the end
# divides each setting's rate by the no-milter rate of the same round.
# N1, N4 and N16 set the message count per point (default 1000, 2000,
# 3000; at most 5000).
#
#   scripts/bench/postfix-ab.sh OUT [INDICATORS] [ROUNDS]
set -euo pipefail
OUT=${1:?give the output file}
INDICATORS=${2:-1000000}
ROUNDS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=postfix-common.sh
. "$HERE/postfix-common.sh"

"$BIN/bench_milter" --indicators "$INDICATORS" --max-seconds 3600 2>/dev/null & PIDS+=($!)
"$BIN/bench_milter" --listen "unix:$SOCK" --indicators "$INDICATORS" --max-seconds 3600 2>/dev/null & PIDS+=($!)
"$BIN/accept_milter" --minimal "unix:$MINIMAL_SOCK" 3600 2>/dev/null & PIDS+=($!)
wait_port 8994
wait_socket "$SOCK"
wait_socket "$MINIMAL_SOCK"

for round in $(seq 1 "$ROUNDS"); do
    for sessions in 1 4 16; do
        case $sessions in 1) n=${N1:-1000} ;; 4) n=${N4:-2000} ;; *) n=${N16:-3000} ;; esac
        for point in none: ioc-tcp:inet:127.0.0.1:8994 "ioc-unix:unix:$SOCK" \
            "floor-minimal-unix:unix:$MINIMAL_SOCK"; do
            "$PF" milter "${point#*:}"
            LABEL="${point%%:*} round=$round" "$PF" send "$n" "$sessions" | tee -a "$OUT"
        done
    done
done

python3 - "$OUT" <<'PY'
import re, sys, statistics
rates = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) round=(\d+) sessions=(\d+) .* rate=([\d.]+)", line)
    if m:
        rates[(m.group(1), int(m.group(2)), int(m.group(3)))] = float(m.group(4))
labels = sorted({k[0] for k in rates} - {"none"})
for sessions in sorted({k[2] for k in rates}):
    for label in labels:
        ratios = [rates[(label, r, sessions)] / rates[("none", r, sessions)]
                  for (l, r, s) in rates if l == label and s == sessions and ("none", r, s) in rates]
        print(f"sessions={sessions} {label}: ratio to none per round "
              + " ".join(f"{x:.2f}" for x in ratios)
              + f", median {statistics.median(ratios):.2f}")
PY
