#!/usr/bin/env bash
# A private Postfix instance for benchmarks, apart from any other instance:
# SMTP on 127.0.0.1:2625, config, queue and Maildir under
# /tmp/ioc-milter-bench/pf, no SMTP client service (it cannot relay), and
# every recipient in test.example delivered to one Maildir. Root only.
#
#   scripts/bench/postfix.sh setup          # write config, set permissions
#   scripts/bench/postfix.sh start|stop
#   scripts/bench/postfix.sh milter SPEC    # set smtpd_milters ("" = none), reload
#   scripts/bench/postfix.sh send N SESSIONS [SIZE]
#       smtp-source N messages over SESSIONS sessions; prints msg/s and the
#       number of messages that reached the Maildir (N capped at 5000)
set -euo pipefail

ROOT=/tmp/ioc-milter-bench/pf
ETC=$ROOT/etc
PORT=2625

setup() {
    mkdir -p "$ETC" "$ROOT/spool" "$ROOT/data" "$ROOT/log" "$ROOT/mail"
    chown 65534:65534 "$ROOT/mail"
    cat > "$ETC/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $ROOT/spool
data_directory = $ROOT/data
maillog_file = $ROOT/log/maillog
maillog_file_prefixes = $ROOT/log
myhostname = bench.test.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_transport = discard:benchmark instance never relays
relay_transport = discard:benchmark instance never relays
virtual_mailbox_domains = test.example
virtual_mailbox_base = $ROOT/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_destination_concurrency_limit = 32
smtpd_milters =
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
milter_connect_timeout = 5s
milter_command_timeout = 15s
milter_content_timeout = 60s
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_connection_count_limit = 0
default_process_limit = 100
CF
    cat > "$ETC/master.cf" <<CF
127.0.0.1:$PORT inet n - n - - smtpd
pickup     unix n - n 60 1 pickup
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
virtual    unix - n n - - virtual
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
CF
    postfix -c "$ETC" set-permissions >/dev/null 2>&1 || true
    script -qec "postfix -c $ETC check" /dev/null
}

start() {
    postfix -c "$ETC" start >/dev/null 2>&1
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && { echo "postfix up on 127.0.0.1:$PORT"; return 0; }
        sleep 0.2
    done
    echo "postfix did not open 127.0.0.1:$PORT; see $ROOT/log/maillog" >&2
    return 1
}

stop() {
    postfix -c "$ETC" stop >/dev/null 2>&1 || true
    local pidfile=$ROOT/spool/pid/master.pid
    for _ in $(seq 1 50); do
        [ -f "$pidfile" ] && kill -0 "$(tr -d ' ' < "$pidfile")" 2>/dev/null || { echo "postfix stopped"; return 0; }
        sleep 0.2
    done
    echo "postfix master still running" >&2
    return 1
}

milter() {
    postconf -c "$ETC" -e "smtpd_milters = $1"
    postfix -c "$ETC" reload >/dev/null 2>&1
    sleep 1
}

count_mail() {
    if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi
}

send() {
    local n=$1 sessions=$2 size=${3:-2048}
    [ "$n" -le 5000 ] || n=5000
    local maildir=$ROOT/mail/Maildir/new
    local before after start end
    before=$(count_mail "$maildir")
    start=$(date +%s.%N)
    timeout 300 smtp-source -s "$sessions" -m "$n" -l "$size" \
        -f sender@src.example -t alice@test.example 127.0.0.1:$PORT
    end=$(date +%s.%N)
    # delivery runs after the SMTP sessions end; wait up to 30 s for it
    for _ in $(seq 1 150); do
        after=$(count_mail "$maildir")
        [ $((after - before)) -ge "$n" ] && break
        sleep 0.2
    done
    printf '%s sessions=%d msgs=%d seconds=%.3f rate=%.1f delivered=%d load1=%s\n' \
        "${LABEL:-run}" "$sessions" "$n" "$(echo "$end - $start" | bc)" \
        "$(echo "$n / ($end - $start)" | bc -l)" "$((after - before))" "$(cut -d' ' -f1 /proc/loadavg)"
}

case "${1:-}" in
    setup) setup ;;
    start) start ;;
    stop) stop ;;
    milter) milter "${2-}" ;;
    send) send "$2" "$3" "${4:-2048}" ;;
    *) echo "usage: $0 setup|start|stop|milter SPEC|send N SESSIONS [SIZE]" >&2; exit 2 ;;
esac
