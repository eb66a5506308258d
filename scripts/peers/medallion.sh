#!/usr/bin/env bash
# medallion.sh -- a loopback TAXII 2.1 server (OASIS medallion 3.0.0,
# memory backend) serving ioc-milter's own STIX 2.1 test indicators.
#
#   scripts/peers/medallion.sh install   # venv with medallion (no root)
#   scripts/peers/medallion.sh start     # write data + config, listen on 127.0.0.1:$MEDALLION_PORT
#   scripts/peers/medallion.sh url       # print the value for IOC_MILTER_TAXII21_URL
#   scripts/peers/medallion.sh stop      # stop the server started here, by pid
#
# Environment: MEDALLION_DIR (default /tmp/ioc-milter-medallion),
# MEDALLION_VENV (default $MEDALLION_DIR/venv), MEDALLION_PORT (default 5000).
# Users (HTTP basic): milter / milter-test-pass.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${MEDALLION_DIR:-/tmp/ioc-milter-medallion}
VENV=${MEDALLION_VENV:-$DIR/venv}
PORT=${MEDALLION_PORT:-5000}
PY=${PYTHON:-python3}
BASE="http://127.0.0.1:$PORT"

install() {
    mkdir -p "$DIR"
    [ -x "$VENV/bin/medallion" ] && return 0
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet medallion==3.0.0
}

start() {
    mkdir -p "$DIR"
    [ -x "$VENV/bin/medallion" ] || install
    if [ -f "$DIR/medallion.pid" ] && kill -0 "$(cat "$DIR/medallion.pid")" 2>/dev/null; then
        echo "medallion already running (pid $(cat "$DIR/medallion.pid"))"
        return 0
    fi
    "$VENV/bin/python" "$HERE/medallion/make_data.py" "$DIR" "$BASE"
    "$VENV/bin/medallion" --host 127.0.0.1 --port "$PORT" --log-level WARN "$DIR/config.json" \
        > "$DIR/server.log" 2>&1 &
    echo $! > "$DIR/medallion.pid"
    for _ in $(seq 1 50); do
        if curl -s -o /dev/null --max-time 2 "$BASE/taxii2/"; then
            echo "medallion listening on $BASE (pid $(cat "$DIR/medallion.pid"))"
            return 0
        fi
        sleep 0.2
    done
    echo "medallion did not start; see $DIR/server.log" >&2
    stop || true
    return 1
}

stop() {
    local pid
    pid=$(cat "$DIR/medallion.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$DIR/medallion.pid"
            echo "medallion stopped"
            return 0
        fi
        sleep 0.2
    done
    echo "medallion (pid $pid) is still running" >&2
    return 1
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    url) echo "$BASE/taxii2/" ;;
    *) echo "usage: $0 install|start|url|stop" >&2; exit 2 ;;
esac
