#!/usr/bin/env bash
# Debian's rspamd as the side-by-side peer: milter (rspamd_proxy) on
# 127.0.0.1:11332, HTTP on 11333, controller on 11334, state under
# /tmp/ioc-milter-bench/rspamd. Root (rspamd drops to _rspamd).
#
#   scripts/bench/rspamd.sh setup MAPS_DIR   # config + maps (ip, domain, url,
#                                            # hash, email .map files)
#   scripts/bench/rspamd.sh start|stop
# RSPAMD_PROXY_COUNT sets the number of milter proxy processes (default 2,
# one per core).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=/tmp/ioc-milter-bench/rspamd
VARS=(--var="LOCAL_CONFDIR=$ROOT/etc" --var="DBDIR=$ROOT/db" --var="RUNDIR=$ROOT/run" --var="LOGDIR=$ROOT/log")

setup() {
    local maps=$1
    mkdir -p "$ROOT/etc/maps" "$ROOT/db" "$ROOT/run" "$ROOT/log"
    chown _rspamd:_rspamd "$ROOT/db" "$ROOT/run" "$ROOT/log"
    sed -e "s#@PROXY_COUNT@#${RSPAMD_PROXY_COUNT:-2}#" "$HERE/rspamd/rspamd.conf" > "$ROOT/etc/rspamd.conf"
    cp "$HERE/rspamd/init.lua" "$ROOT/etc/"
    for kind in ip domain url hash email; do
        cp "$maps/$kind.map" "$ROOT/etc/maps/$kind.map"
    done
    chmod -R a+rX "$ROOT/etc"
    rspamadm "${VARS[@]}" configtest -c "$ROOT/etc/rspamd.conf"
}

start() {
    rspamd -f -c "$ROOT/etc/rspamd.conf" -u _rspamd -g _rspamd "${VARS[@]}" \
        > "$ROOT/log/stdout.log" 2>&1 &
    echo $! > "$ROOT/main.pid"
    for _ in $(seq 1 300); do
        if (exec 3<>/dev/tcp/127.0.0.1/11332) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/11333) 2>/dev/null; then
            echo "rspamd up (pid $(cat "$ROOT/main.pid"))"
            return 0
        fi
        sleep 0.2
    done
    echo "rspamd did not start within 60 s; see $ROOT/log" >&2
    return 1
}

stop() {
    local pid
    pid=$(cat "$ROOT/main.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { echo "rspamd stopped"; rm -f "$ROOT/main.pid"; return 0; }
        sleep 0.2
    done
    echo "rspamd $pid still running" >&2
    return 1
}

case "${1:-}" in
    setup) setup "${2:?give the maps directory}" ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 setup MAPS_DIR|start|stop" >&2; exit 2 ;;
esac
