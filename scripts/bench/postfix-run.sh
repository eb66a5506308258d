#!/usr/bin/env bash
# Through a real Postfix, one run: smtp-source into the benchmark instance
# (postfix.sh, 127.0.0.1:2625, delivering to a Maildir) at 1, 4 and 16
# sessions, once per milter setting (the label of its points):
#   none                no milter, first and again last
#   ioc-before-tcp      only with BEFORE=path: an older bench_milter build
#                       over TCP, to show a fix
#   floor-tcp           accept_milter on 127.0.0.1:8995, on ioc-milter's
#                       server and session
#   floor-minimal       accept_milter --minimal on 127.0.0.1:8996, which
#                       requests that Postfix skip every step it may skip
#   floor-minimal-unix  the same on a unix socket
#   ioc-tcp, ioc-unix   ioc-milter (1M indicators) over TCP and over a
#                       unix socket
#   rspamd              rspamd's milter, when it is up
# OUT gets one line per point. After the points of each minimal floor it
# also gets the frames that milter received, by command, and its CPU
# time, as lines starting with "# LABEL:". N1, N4 and N16 set the message
# count per point (default 200, 800, 2000; at most 5000).
#
#   scripts/bench/postfix-run.sh OUT [INDICATORS]
set -euo pipefail
OUT=${1:?give the output file}
INDICATORS=${2:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=postfix-common.sh
. "$HERE/postfix-common.sh"

points() { # label milter-spec
    "$PF" milter "$2"
    LABEL=$1 "$PF" send "${N1:-200}" 1 | tee -a "$OUT"
    LABEL=$1 "$PF" send "${N4:-800}" 4 | tee -a "$OUT"
    LABEL=$1 "$PF" send "${N16:-2000}" 16 | tee -a "$OUT"
}

minimal_points() { # label milter-spec
    local frames pid
    frames=$(mktemp)
    "$BIN/accept_milter" --minimal "$2" 900 2>"$frames" & pid=$!; PIDS+=($pid)
    case $2 in
        unix:*) wait_socket "${2#unix:}" ;;
        *) wait_port "${2##*:}" ;;
    esac
    points "$1" "$2"
    # SIGTERM makes the minimal milter print its frame counts and exit
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sed "s/^/# $1: /" "$frames" | tee -a "$OUT"
    rm -f "$frames"
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
wait_socket "$SOCK"
"$BIN/accept_milter" inet:127.0.0.1:8995 900 2>/dev/null & PIDS+=($!)
wait_port 8995
points floor-tcp inet:127.0.0.1:8995
minimal_points floor-minimal inet:127.0.0.1:8996
minimal_points floor-minimal-unix "unix:$MINIMAL_SOCK"
points ioc-tcp inet:127.0.0.1:8994
points ioc-unix "unix:$SOCK"
if (exec 3<>/dev/tcp/127.0.0.1/11332) 2>/dev/null; then
    points rspamd inet:127.0.0.1:11332
fi
points none ""
