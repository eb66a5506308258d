#!/usr/bin/env bash
# Install, start and stop the real peers that the end-to-end tests talk to:
#
#   Postfix  private instance on 127.0.0.1:2525, milter hook inet:127.0.0.1:8894,
#            every recipient in test.example delivered to one Maildir
#   OpenTAXII  TAXII 1.1 server on 127.0.0.1:9000 shaped like AlienVault OTX
#            (/taxii/discovery, /taxii/collections, /taxii/poll, /taxii/inbox,
#            collection user_AlienVault, username otx-api-key-0001, any password)
#   medallion  TAXII 2.1 server on 127.0.0.1:5000 (scripts/peers/medallion.sh)
#
# Usage: scripts/test-peers.sh install|start|stop|status
#
# `install` and `start` need root (apt-get, Postfix's master). `install` also
# adds miltertest, which the milter protocol test uses when present. Everything the
# peers write lives under $IOC_MILTER_PEERS_DIR (default /tmp/ioc-milter-peers).
# Every server listens on 127.0.0.1 only, and Postfix has no smtp client
# service, so no mail can leave the machine.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# postfix, postqueue and postsuper live in /usr/sbin, which a CI environment may
# leave out of PATH.
export PATH=$PATH:/usr/sbin:/sbin
PEERS_DIR=${IOC_MILTER_PEERS_DIR:-/tmp/ioc-milter-peers}
VENV=$PEERS_DIR/venv
BROWSER_VENV=$PEERS_DIR/browser-venv
PF_DIR=$PEERS_DIR/postfix
PF_CONF=$PF_DIR/etc
TAXII_DIR=$PEERS_DIR/opentaxii
SMTP_PORT=2525
MILTER=inet:127.0.0.1:8894
TAXII_PORT=9000
PYTHON=${IOC_MILTER_PYTHON:-python3}

log() { printf 'test-peers: %s\n' "$*" >&2; }

medallion() { MEDALLION_DIR=$PEERS_DIR/medallion "$REPO/scripts/peers/medallion.sh" "$@"; }

# Waits (at most 10 s) until something accepts TCP connections on 127.0.0.1:$1.
wait_for_port() {
    local port=$1 _
    for _ in $(seq 1 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Waits (at most 10 s) until process $1 has exited.
wait_for_exit() {
    local pid=$1 _
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    return 1
}

install_packages() {
    # miltertest (OpenDKIM) drives the milter protocol test in tests/milter_miltertest.rs.
    # chromium and chromedriver run the status page test in a real browser.
    if command -v postfix >/dev/null && command -v swaks >/dev/null && command -v miltertest >/dev/null \
        && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        log "postfix, swaks, miltertest and chromium already installed"
    else
        log "installing postfix, swaks, miltertest, chromium and chromedriver with apt-get"
        apt-get update -qq
        # "No configuration" leaves /etc/postfix/main.cf absent, so the system
        # instance can never start by accident.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postfix swaks miltertest chromium chromium-driver >/dev/null
    fi

    if [ -x "$VENV/bin/gunicorn" ] && [ -x "$VENV/bin/opentaxii-sync-data" ]; then
        log "OpenTAXII venv already present in $VENV"
    else
        log "installing OpenTAXII into $VENV"
        mkdir -p "$PEERS_DIR"
        # Debian's own python3 has no ensurepip until python3-venv is installed.
        if ! "$PYTHON" -c "import ensurepip" >/dev/null 2>&1; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        fi
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            opentaxii==0.9.3 gunicorn==27.0.1
    fi

    if [ -x "$BROWSER_VENV/bin/python" ] && "$BROWSER_VENV/bin/python" -c "import selenium" 2>/dev/null; then
        log "Selenium venv already present in $BROWSER_VENV"
    else
        log "installing Selenium into $BROWSER_VENV"
        mkdir -p "$PEERS_DIR"
        "$PYTHON" -m venv "$BROWSER_VENV"
        "$BROWSER_VENV/bin/pip" install --quiet --disable-pip-version-check selenium==4.51.0
    fi
}

write_postfix_config() {
    mkdir -p "$PF_CONF" "$PF_DIR/spool" "$PF_DIR/data" "$PF_DIR/mail" "$PF_DIR/log"
    # virtual(8) delivers as nobody:nogroup; data_directory belongs to the mail owner.
    chown nobody:nogroup "$PF_DIR/mail"
    chown postfix:postfix "$PF_DIR/data"

    cat >"$PF_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF_DIR/spool
data_directory = $PF_DIR/data
# postlogd writes here; the path must start with one of maillog_file_prefixes
maillog_file = $PF_DIR/log/maillog
maillog_file_prefixes = $PF_DIR/log
myhostname = mx.test.example
mydomain = test.example
myorigin = \$mydomain
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
relay_domains =
smtpd_relay_restrictions = reject_unauth_destination
# master.cf has no smtp service: anything not for test.example is discarded
default_transport = discard:the test instance never relays
relay_transport = discard:the test instance never relays
smtp_dns_support_level = disabled
biff = no
# lets swaks --xclient-addr present a documentation address as the client IP
smtpd_authorized_xclient_hosts = 127.0.0.0/8
virtual_mailbox_domains = test.example
virtual_mailbox_base = $PF_DIR/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtpd_milters = $MILTER
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 15s
milter_content_timeout = 60s
EOF

    # chroot is off everywhere ("n"): a chroot would need copies of /etc files
    # inside the private queue directory.
    cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n  -  n  60    1  pickup
cleanup   unix  n  -  n  -     0  cleanup
qmgr      unix  n  -  n  300   1  qmgr
rewrite   unix  -  -  n  -     -  trivial-rewrite
bounce    unix  -  -  n  -     0  bounce
defer     unix  -  -  n  -     0  bounce
trace     unix  -  -  n  -     0  bounce
verify    unix  -  -  n  -     1  verify
flush     unix  n  -  n  1000? 0  flush
proxymap  unix  -  -  n  -     -  proxymap
showq     unix  n  -  n  -     -  showq
error     unix  -  -  n  -     -  error
retry     unix  -  -  n  -     -  error
discard   unix  -  -  n  -     -  discard
virtual   unix  -  n  n  -     -  virtual
anvil     unix  -  -  n  -     1  anvil
scache    unix  -  -  n  -     1  scache
postlog   unix-dgram n - n -   1  postlogd
EOF

    postfix -c "$PF_CONF" set-permissions >/dev/null 2>&1 || true
    # Postfix reports errors only to syslog when stdout is not a terminal, so
    # run the check under script(1) to see its message.
    if ! postfix -c "$PF_CONF" check >/dev/null 2>&1; then
        log "postfix check failed for $PF_CONF:"
        script -qec "postfix -c $PF_CONF check" /dev/null >&2 || true
        return 1
    fi
}

start_postfix() {
    if postfix -c "$PF_CONF" status >/dev/null 2>&1; then
        log "postfix already running ($PF_CONF)"
        return 0
    fi
    write_postfix_config
    if ! postfix -c "$PF_CONF" start >/dev/null 2>&1; then
        log "postfix failed to start:"
        script -qec "postfix -c $PF_CONF start" /dev/null >&2 || true
        return 1
    fi
    if ! wait_for_port "$SMTP_PORT"; then
        log "postfix is not listening on 127.0.0.1:$SMTP_PORT; see $PF_DIR/log/maillog"
        return 1
    fi
    log "postfix listening on 127.0.0.1:$SMTP_PORT (config $PF_CONF)"
}

stop_postfix() {
    [ -f "$PF_CONF/main.cf" ] || return 0
    postfix -c "$PF_CONF" status >/dev/null 2>&1 || return 0
    local pid
    pid=$(head -n 1 "$PF_DIR/spool/pid/master.pid" 2>/dev/null | tr -d ' ')
    postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
    # `postfix stop` returns before the master process exits.
    if [ -n "$pid" ] && ! wait_for_exit "$pid"; then
        log "postfix master $pid still running after stop"
        return 1
    fi
    log "postfix stopped"
}

write_opentaxii_config() {
    mkdir -p "$TAXII_DIR"
    rm -f "$TAXII_DIR/auth.db" "$TAXII_DIR/data.db"

    cat >"$TAXII_DIR/opentaxii.yml" <<EOF
domain: "127.0.0.1:$TAXII_PORT"
support_basic_auth: yes
auth_api:
  # known username, any password, as AlienVault OTX treats its API key
  class: otx_auth.UsernameOnlyAuth
  parameters:
    db_connection: sqlite:///$TAXII_DIR/auth.db
    create_tables: yes
    secret: ioc-milter-end-to-end-tests-only-not-a-real-secret
    token_ttl_secs: 3600
taxii1:
  save_raw_inbox_messages: no
  count_blocks_in_poll_responses: yes
  persistence_api:
    class: opentaxii.persistence.sqldb.SQLDatabaseAPI
    parameters:
      db_connection: sqlite:///$TAXII_DIR/data.db
      create_tables: yes
logging:
  opentaxii: warning
  root: warning
EOF

    # Services allow anonymous requests unless each one requires authentication.
    cat >"$TAXII_DIR/data.yml" <<EOF
services:
  - id: discovery
    type: discovery
    address: /taxii/discovery
    description: discovery
    advertised_services: [discovery, collections, poll, inbox]
    authentication_required: yes
    protocol_bindings: [urn:taxii.mitre.org:protocol:http:1.0]
  - id: collections
    type: collection_management
    address: /taxii/collections
    description: collection management
    authentication_required: yes
    protocol_bindings: [urn:taxii.mitre.org:protocol:http:1.0]
  - id: poll
    type: poll
    address: /taxii/poll
    description: poll
    subscription_required: no
    # two content blocks per response, so three packages need a Poll_Fulfillment
    max_result_size: 2
    max_result_count: 1000
    authentication_required: yes
    protocol_bindings: [urn:taxii.mitre.org:protocol:http:1.0]
  - id: inbox
    type: inbox
    address: /taxii/inbox
    description: inbox
    destination_collection_required: yes
    accept_all_content: yes
    authentication_required: yes
    protocol_bindings: [urn:taxii.mitre.org:protocol:http:1.0]
collections:
  - name: user_AlienVault
    description: OTX-like test feed
    type: DATA_FEED
    available: true
    accept_all_content: true
    service_ids: [collections, poll, inbox]
accounts:
  - username: otx-api-key-0001
    password: unused
    is_admin: yes
    permissions:
      user_AlienVault: modify
EOF

    OPENTAXII_CONFIG=$TAXII_DIR/opentaxii.yml PYTHONPATH=$REPO/tests/tools \
        "$VENV/bin/opentaxii-sync-data" "$TAXII_DIR/data.yml" >"$TAXII_DIR/sync.log" 2>&1 || {
        log "opentaxii-sync-data failed; see $TAXII_DIR/sync.log"
        return 1
    }
}

# Loads the fixture packages with Timestamp_Labels 20, 10 and 2 days before
# now, so that all three are inside a 30-day poll window.
load_fixtures() {
    local fixtures=$REPO/tests/fixtures/stix1
    OPENTAXII_CONFIG=$TAXII_DIR/opentaxii.yml PYTHONPATH=$REPO/tests/tools \
        "$VENV/bin/python" "$REPO/tests/tools/opentaxii_load.py" user_AlienVault \
        "$fixtures/pulse1-stix12.xml@20" \
        "$fixtures/pulse2-stix12.xml@10" \
        "$fixtures/pulse3-stix111.xml@2" >&2
}

start_opentaxii() {
    local pid_file=$TAXII_DIR/gunicorn.pid
    if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        log "opentaxii already running (pid $(cat "$pid_file"))"
        return 0
    fi
    write_opentaxii_config
    load_fixtures
    # One worker keeps the sqlite database single-writer. --no-control-socket:
    # gunicorn 27 otherwise creates ~/.gunicorn/gunicorn.ctl.
    OPENTAXII_CONFIG=$TAXII_DIR/opentaxii.yml PYTHONPATH=$REPO/tests/tools \
        "$VENV/bin/gunicorn" opentaxii.http:app --config python:opentaxii.http \
        --bind "127.0.0.1:$TAXII_PORT" --workers 1 --no-control-socket \
        --pid "$pid_file" >"$TAXII_DIR/server.log" 2>&1 </dev/null &
    if ! wait_for_port "$TAXII_PORT"; then
        log "opentaxii is not listening on 127.0.0.1:$TAXII_PORT; see $TAXII_DIR/server.log"
        return 1
    fi
    log "opentaxii listening on 127.0.0.1:$TAXII_PORT (pid $(cat "$pid_file" 2>/dev/null))"
}

stop_opentaxii() {
    local pid_file=$TAXII_DIR/gunicorn.pid pid
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        if ! wait_for_exit "$pid"; then
            log "opentaxii (gunicorn $pid) still running after SIGTERM"
            return 1
        fi
    fi
    rm -f "$pid_file"
    log "opentaxii stopped"
}

show_status() {
    local rc=0
    if [ -f "$PF_CONF/main.cf" ] && postfix -c "$PF_CONF" status >/dev/null 2>&1; then
        echo "postfix: running (config $PF_CONF, 127.0.0.1:$SMTP_PORT)"
    else
        echo "postfix: stopped"
        rc=1
    fi
    local pid_file=$TAXII_DIR/gunicorn.pid
    if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "opentaxii: running (pid $(cat "$pid_file"), 127.0.0.1:$TAXII_PORT)"
    else
        echo "opentaxii: stopped"
        rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    install)
        install_packages
        medallion install
        ;;
    start)
        start_opentaxii
        start_postfix
        medallion start
        ;;
    stop)
        rc=0
        stop_postfix || rc=1
        stop_opentaxii || rc=1
        medallion stop || rc=1
        exit "$rc"
        ;;
    status) show_status ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 2
        ;;
esac
