#!/usr/bin/env bash
# Run the whole test suite, end-to-end tests included, against real peers
# (Postfix on 127.0.0.1:2525, OpenTAXII on 127.0.0.1:9000, medallion on
# 127.0.0.1:5000) started by scripts/test-peers.sh. Needs root for apt-get
# and Postfix:
#
#   sudo scripts/test.sh [CARGO TEST ARGS...]
#
# IOC_MILTER_CORPUS (optional) names the corpus directory whose mail/phish and
# mail/mime folders the phishing test reads; without it that test skips.
# The peers are stopped on exit, and the exit status is cargo's.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# postfix, postqueue and postsuper live in /usr/sbin, which a CI environment may
# leave out of PATH.
export PATH=$PATH:/usr/sbin:/sbin
cd "$REPO"

if [ "$(id -u)" != 0 ]; then
    echo "test.sh: must run as root (apt-get, Postfix); try: sudo $0" >&2
    exit 2
fi

export IOC_MILTER_PEERS_DIR=${IOC_MILTER_PEERS_DIR:-/tmp/ioc-milter-peers}
started=$(date +%s)

scripts/test-peers.sh install
trap 'scripts/test-peers.sh stop || true' EXIT
scripts/test-peers.sh start

export IOC_MILTER_E2E=1
export IOC_MILTER_POSTFIX_CONFIG_DIR=$IOC_MILTER_PEERS_DIR/postfix/etc
export IOC_MILTER_TAXII11_URL=http://127.0.0.1:9000
export IOC_MILTER_TAXII21_URL=http://127.0.0.1:5000/taxii2/
export IOC_MILTER_OPENTAXII_PYTHON=$IOC_MILTER_PEERS_DIR/venv/bin/python
export IOC_MILTER_BROWSER_PYTHON=$IOC_MILTER_PEERS_DIR/browser-venv/bin/python
if [ -n "${IOC_MILTER_CORPUS:-}" ]; then
    export IOC_MILTER_CORPUS
fi

status=0
cargo test --release --no-fail-fast "$@" || status=$?
echo "test.sh: cargo test exited with $status after $(( $(date +%s) - started )) s" >&2
exit "$status"
