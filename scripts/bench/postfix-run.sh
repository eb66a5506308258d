#!/usr/bin/env bash
# Through a real Postfix, one run: smtp-source into the benchmark instance
# (postfix.sh, 127.0.0.1:2625, delivering to a Maildir) at 1, 4 and 16
# sessions, once per milter setting. The settings are no milter, the
# accept-all floor (accept_milter, 127.0.0.1:8995), the minimal floor that
# requests that Postfix skip every step it may skip (accept_milter
# --minimal, 127.0.0.1:8996), ioc-milter (1M indicators) over TCP and over
# a unix socket, rspamd's milter when it is up, and no milter again. OUT
# gets one line per point. After the floor-minimal points it also gets the
# frames that milter received, by command, as lines starting with
# "# floor-minimal:". BEFORE=path runs an older bench_milter build too
# (over TCP), to show a fix. N1, N4 and N16 set the message count per
# point (default 200, 800, 2000; at most 5000).
#
#   scripts/bench/postfix-run.sh OUT [INDICATORS]
set -euo pipefail
OUT=${1:?give the output file}
INDICATORS=${2:-1000000}
BIN=${BIN:-target/release/examples}
HERE=$(cd "$(dirname "$0")" && pwd)
PF=$HERE/postfix.sh
SOCK=/tmp/ioc-milter-bench/ioc-milter.sock
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; "$PF" milter "" || true; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on 127.0.0.1:$1 after 60 s; check that the milter started" >&2; return 1
}

points() { # label milter-spec
    "$PF" milter "$2"
    LABEL=$1 "$PF" send "${N1:-200}" 1 | tee -a "$OUT"
    LABEL=$1 "$PF" send "${N4:-800}" 4 | tee -a "$OUT"
    LABEL=$1 "$PF" send "${N16:-2000}" 16 | tee -a "$OUT"
}

points none ""
if [ -n "${BEFORE:-}" ]; then
    "$BEFORE" --indicators "$INDICATORS" --max-seconds 900 2>/dev/null & pid=$!; PIDS+=($pid)
    wait_port 8994
    points ioc-before-tcp inet:127.0.0.1:8994
    kill "$pid"; wait "$pid" 2>/dev/null || true
fi
"$BIN/bench_milter" --indicators "$INDICATORS" --max-seconds 900 2>/dev/null & PIDS+=($!)
"$BIN/bench_milter" --listen "unix:$SOCK" --indicators "$INDICATORS" --max-seconds 900 2>/dev/null & PIDS+=($!)
wait_port 8994
for _ in $(seq 1 600); do [ -S "$SOCK" ] && break; sleep 0.1; done
"$BIN/accept_milter" inet:127.0.0.1:8995 900 2>/dev/null & PIDS+=($!)
wait_port 8995
points floor-tcp inet:127.0.0.1:8995
FRAMES=$(mktemp)
"$BIN/accept_milter" --minimal inet:127.0.0.1:8996 900 2>"$FRAMES" & pid=$!; PIDS+=($pid)
wait_port 8996
points floor-minimal inet:127.0.0.1:8996
# SIGTERM makes the minimal milter print its frame counts and exit
kill "$pid"; wait "$pid" 2>/dev/null || true
sed 's/^/# floor-minimal: /' "$FRAMES" | tee -a "$OUT"
rm -f "$FRAMES"
points ioc-tcp inet:127.0.0.1:8994
points ioc-unix "unix:$SOCK"
if (exec 3<>/dev/tcp/127.0.0.1/11332) 2>/dev/null; then
    points rspamd inet:127.0.0.1:11332
fi
points none ""
