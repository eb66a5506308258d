#!/usr/bin/env bash
# Soak run: the real daemon (`ioc-milter run`) judges N messages from
# examples/loadgen while its index is swapped every second. Each second
# the script rewrites the daemon's `text` feed file with the next of K
# generated lists and requests a poll through the control socket
# (`ioc-milter poll soak`), because a source's polling_interval is at least
# 60 s. Every S seconds it records the daemon's VmRSS, open file
# descriptors, messages judged and index swaps in a CSV.
#
# Usage:
#   scripts/soak.sh [options]
#
#   --messages N        messages to send (default 1000000, at most 1000000)
#   --connections C     milter connections (default 8)
#   --indicators I      indicators per list (default 60000)
#   --sets K            lists swapped in turn (default 3, 2 to 16)
#   --sample-seconds S  sampling period in seconds (default 5)
#   --csv FILE          also copy the samples to FILE
#   --summary FILE      also copy the summary JSON to FILE
#   --work DIR          working directory (default: new /tmp/ioc-milter-soak.XXXXXX)
#   --keep              keep the working directory after a passing run
#   --no-swaps          control run: the index stays at list 0 (no polls)
#   --no-build          skip `cargo build --release`
#
# Messages: the files under $IOC_MILTER_CORPUS/mail/phish when that
# directory exists, else 1,000 messages that loadgen generates. Every
# 100th message is a probe whose verdict depends on the list in use
# (reject, accept, quarantine for lists 0, 1, 2; see examples/soak_feed.rs).
# The milter and the metrics endpoint listen on two free loopback ports
# chosen at start. Needs python3 and curl.
#
# RSS growth compares two windows of samples: warm-up (10 to 20 % of the
# messages done) and end (the last 10 %, plus a sample right after the
# load). It compares them by their maximum and by their median, because
# each swap briefly keeps two lists and two indexes in memory. The fd counts "idle" are
# taken with no milter connection open: before the load, and after it with
# the swaps stopped.
#
# Exit status 0 when every target is met: all N messages got a verdict,
# the probe got each expected verdict, RSS grew less than 5 % from warm-up
# to end (maximum and median), and the idle fd count after the load is not above the one before
# it. 1 when a target is missed, 2 on a usage or setup error. The working
# directory is kept after a failing run.
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=1000000
CONNECTIONS=8
INDICATORS=60000
SETS=3
SAMPLE_SECONDS=5
CSV_COPY=
SUMMARY_COPY=
WORK=
KEEP=0
BUILD=1
SWAPS=1
# Bounds of the background loops: 4 h of swaps or samples at most.
MAX_LOOP_SECONDS=14400
LOADGEN_MAX_SECONDS=7200
POLL_TIMEOUT_SECONDS=120

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
die() { echo "soak: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --messages) MESSAGES=${2:?--messages needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --indicators) INDICATORS=${2:?--indicators needs a value}; shift 2 ;;
        --sets) SETS=${2:?--sets needs a value}; shift 2 ;;
        --sample-seconds) SAMPLE_SECONDS=${2:?--sample-seconds needs a value}; shift 2 ;;
        --csv) CSV_COPY=${2:?--csv needs a file}; shift 2 ;;
        --summary) SUMMARY_COPY=${2:?--summary needs a file}; shift 2 ;;
        --work) WORK=${2:?--work needs a directory}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-swaps) SWAPS=0; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage ;;
        *) echo "soak: unknown argument $1" >&2; usage ;;
    esac
done
for value in "$MESSAGES" "$CONNECTIONS" "$INDICATORS" "$SETS" "$SAMPLE_SECONDS"; do
    [[ "$value" =~ ^[0-9]+$ ]] || die "invalid number $value; see --help"
done
[ "$MESSAGES" -ge 1 ] && [ "$MESSAGES" -le 1000000 ] || die "--messages $MESSAGES is out of range; use 1 to 1000000"
[ "$SETS" -ge 2 ] && [ "$SETS" -le 16 ] || die "--sets $SETS is out of range; use 2 to 16"
[ "$SAMPLE_SECONDS" -ge 1 ] || die "--sample-seconds must be at least 1"
command -v python3 >/dev/null || die "python3 is missing; the summary needs it"
command -v curl >/dev/null || die "curl is missing; the sampler reads the daemon's metrics with it"

if [ "$BUILD" = 1 ]; then
    cargo build --release --bin ioc-milter --example loadgen --example soak_feed
fi
DAEMON=target/release/ioc-milter
EXAMPLES=target/release/examples
for binary in "$DAEMON" "$EXAMPLES/loadgen" "$EXAMPLES/soak_feed"; do
    [ -x "$binary" ] || die "$binary is missing; run without --no-build"
done

if [ -z "$WORK" ]; then
    WORK=$(mktemp -d /tmp/ioc-milter-soak.XXXXXX)
else
    mkdir -p "$WORK"
fi
WORK=$(cd "$WORK" && pwd)
CONFIG="$WORK/soak.toml"
FEED="$WORK/feed.txt"
STOP="$WORK/stop"
CSV="$WORK/samples.csv"
rm -f "$STOP"

DAEMON_PID=
SWAPPER_PID=
SAMPLER_PID=
LOADGEN_PID=
PASSED=0
cleanup() {
    touch "$STOP" 2>/dev/null || true
    for pid in "$LOADGEN_PID" "$SWAPPER_PID" "$SAMPLER_PID"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -n "$DAEMON_PID" ]; then
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ "$PASSED" = 1 ] && [ "$KEEP" = 0 ]; then
        rm -rf "$WORK"
    else
        echo "soak: working directory kept: $WORK" >&2
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
MILTER_PORT=$(free_port)
HTTP_PORT=$(free_port)
[ "$MILTER_PORT" != "$HTTP_PORT" ] || HTTP_PORT=$(free_port)

if [ -d "${IOC_MILTER_CORPUS:-}/mail/phish" ]; then
    MESSAGE_ARGS=(--dir "$IOC_MILTER_CORPUS/mail/phish")
    MESSAGE_SOURCE="$IOC_MILTER_CORPUS/mail/phish"
else
    MESSAGE_ARGS=(--generate 1000)
    MESSAGE_SOURCE="1000 generated messages"
fi

echo "soak: writing $SETS lists of $INDICATORS indicators to $WORK/lists" >&2
"$EXAMPLES/soak_feed" --out "$WORK/lists" --indicators "$INDICATORS" --sets "$SETS" > "$WORK/lists.json"
cp "$WORK/lists/set-0.txt" "$FEED"

cat > "$CONFIG" <<EOF
# Written by scripts/soak.sh; every path is inside $WORK.
[milter]
listen = "inet:127.0.0.1:$MILTER_PORT"

[http]
listen = "127.0.0.1:$HTTP_PORT"

[state]
directory = "state"

[match_log]
path = "matches.jsonl"

[policy]
default = "reject"
ip = "reject"
domain = "quarantine"
url = "reject"
hash = "reject"
email = "tag"
fallback = "accept"

[[source]]
name = "soak"
kind = "text"
path = "feed.txt"
polling_interval = "24h"
age = "365d"
EOF
mkdir -p "$WORK/state"

"$DAEMON" run --config "$CONFIG" > "$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
echo "soak: daemon $DAEMON_PID on inet:127.0.0.1:$MILTER_PORT, metrics on 127.0.0.1:$HTTP_PORT" >&2

metrics() { curl -sf --max-time 10 "http://127.0.0.1:$HTTP_PORT/metrics"; }
# Prints "MESSAGES SWAPS FALLBACKS MILTER_ERRORS" from the metrics text.
metric_values() {
    awk '/^ioc_milter_messages_total\{/ { messages += $2 }
         /^ioc_milter_index_swaps_total / { swaps = $2 }
         /^ioc_milter_fallbacks_total / { fallbacks = $2 }
         /^ioc_milter_milter_errors_total / { errors = $2 }
         END { printf "%d %d %d %d\n", messages, swaps, fallbacks, errors }'
}
fd_count() { find "/proc/$DAEMON_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status"; }

# The daemon is ready when the metrics respond, the control socket exists
# and the first poll has put the list into the index.
ready=0
for _ in $(seq 1 600); do
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; die "the daemon exited during start-up"; }
    if [ -S "$WORK/state/control.sock" ] && grep -q "index swapped in: [1-9]" "$WORK/daemon.log"; then
        ready=1
        break
    fi
    sleep 0.2
done
[ "$ready" = 1 ] || die "the daemon did not load its list within 120 s; see $WORK/daemon.log"
metrics > /dev/null || die "the metrics endpoint 127.0.0.1:$HTTP_PORT does not respond"

FD_IDLE_BEFORE=$(fd_count)
RSS_IDLE_BEFORE=$(rss_kib)
read -r _ SWAPS_BEFORE _ _ < <(metrics | metric_values)

# Rewrites the feed file with the next list (through a rename, so a poll
# never reads half a file) and requests a poll, once a second.
swapper() {
    local started=$EPOCHREALTIME due now wait i=0 k ok=0 failed=0
    due=${started/./}
    while [ ! -e "$STOP" ] && [ "$i" -lt "$MAX_LOOP_SECONDS" ]; do
        i=$((i + 1))
        k=$((i % SETS))
        cp "$WORK/lists/set-$k.txt" "$FEED.tmp"
        mv "$FEED.tmp" "$FEED"
        if timeout "$POLL_TIMEOUT_SECONDS" "$DAEMON" poll soak --config "$CONFIG" --json \
            >> "$WORK/polls.jsonl" 2>> "$WORK/polls.err"; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
        fi
        echo "$i $ok $failed" > "$WORK/swapper.count"
        due=$((due + 1000000))
        now=${EPOCHREALTIME/./}
        if [ "$now" -lt "$due" ]; then
            wait=$((due - now))
            sleep "$((wait / 1000000)).$(printf '%06d' $((wait % 1000000)))"
        else
            # Behind schedule: the next poll starts at once, without
            # catching up the missed seconds.
            due=$now
        fi
    done
}

# One CSV line per SAMPLE_SECONDS: fds are counted before the metrics
# request, so its own connection is not in the count.
sampler() {
    local started=$EPOCHREALTIME n=0 fds rss values load elapsed
    echo "seconds,messages,rss_kib,fds,swaps,fallbacks,load1" > "$CSV"
    while [ ! -e "$STOP" ] && [ "$n" -lt "$MAX_LOOP_SECONDS" ]; do
        n=$((n + 1))
        fds=$(fd_count)
        rss=$(rss_kib)
        values=$(metrics | metric_values) || values="0 0 0 0"
        read -r messages swaps fallbacks _ <<< "$values"
        load=$(cut -d' ' -f1 /proc/loadavg)
        elapsed=$(awk -v now="$EPOCHREALTIME" -v start="$started" 'BEGIN { printf "%.1f", now - start }')
        echo "$elapsed,$messages,$rss,$fds,$swaps,$fallbacks,$load" >> "$CSV"
        sleep "$SAMPLE_SECONDS"
    done
}

if [ "$SWAPS" = 1 ]; then
    swapper &
    SWAPPER_PID=$!
fi
sampler &
SAMPLER_PID=$!

echo "soak: $MESSAGES messages from $MESSAGE_SOURCE over $CONNECTIONS connections" >&2
STARTED=$EPOCHREALTIME
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
set +e
"$EXAMPLES/loadgen" --target "inet:127.0.0.1:$MILTER_PORT" "${MESSAGE_ARGS[@]}" \
    --connections "$CONNECTIONS" --count "$MESSAGES" --seconds "$LOADGEN_MAX_SECONDS" \
    --probe "$WORK/lists/probe.eml" --probe-every 100 --progress-seconds 30 --strict \
    --label soak > "$WORK/loadgen.out" 2> >(tee "$WORK/loadgen.err" >&2) &
LOADGEN_PID=$!
wait "$LOADGEN_PID"
LOADGEN_STATUS=$?
set -e
LOADGEN_PID=
ENDED=$EPOCHREALTIME
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
head -n 1 "$WORK/loadgen.out" >&2 || true

# The end sample: RSS with the swaps still running, as during the load.
FD_END=$(fd_count)
RSS_END=$(rss_kib)
touch "$STOP"
[ -n "$SWAPPER_PID" ] && wait "$SWAPPER_PID" 2>/dev/null || true
SWAPPER_PID=
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited during the run; see $WORK/daemon.log"
# Give closed milter connections time to be reaped by the daemon before
# the idle count (bounded poll for the count to settle).
for _ in $(seq 1 50); do
    [ "$(fd_count)" -le "$FD_IDLE_BEFORE" ] && break
    sleep 0.2
done
FD_IDLE_AFTER=$(fd_count)
RSS_IDLE_AFTER=$(rss_kib)
read -r DAEMON_MESSAGES SWAPS_AFTER FALLBACKS MILTER_ERRORS < <(metrics | metric_values)
SWAPS_LOGGED=$(grep -c "index swapped in" "$WORK/daemon.log" || true)
[ -f "$WORK/swapper.count" ] || echo "0 0 0" > "$WORK/swapper.count"
read -r POLLS_REQUESTED POLLS_OK POLLS_FAILED < "$WORK/swapper.count"

export WORK CSV MESSAGES CONNECTIONS INDICATORS SETS STARTED ENDED LOAD_BEFORE LOAD_AFTER \
    FD_IDLE_BEFORE FD_IDLE_AFTER FD_END RSS_IDLE_BEFORE RSS_IDLE_AFTER RSS_END \
    SWAPS_BEFORE SWAPS_AFTER SWAPS_LOGGED POLLS_REQUESTED POLLS_OK POLLS_FAILED \
    DAEMON_MESSAGES FALLBACKS MILTER_ERRORS LOADGEN_STATUS MESSAGE_SOURCE SWAPS
set +e
python3 - <<'PY'
import csv, json, os, sys

env = os.environ
work = env["WORK"]
lines = open(os.path.join(work, "loadgen.out")).read().splitlines()
loadgen = json.loads(lines[-1]) if lines else {}
lists = json.load(open(os.path.join(work, "lists.json")))
rows = [
    {k: float(v) for k, v in row.items()}
    for row in csv.DictReader(open(env["CSV"]))
]
requested = int(env["MESSAGES"])
rss_end_point = int(env["RSS_END"])


def window(low, high):
    """RSS samples with low <= messages done < high (fractions of the run)."""
    return [
        int(r["rss_kib"])
        for r in rows
        if low * requested <= r["messages"] < high * requested
    ]


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


# Each swap keeps the old and the new list and index for a moment,
# so single samples swing with the phase of the swap. The windows compare
# the maximum and the median of the samples instead.
warm = window(0.1, 0.2) or [int(r["rss_kib"]) for r in rows[1:2]] or [rss_end_point]
end = window(0.9, 1.01) + [rss_end_point]
rss_warm, rss_end = max(warm), max(end)
rss_max = max([int(r["rss_kib"]) for r in rows] + [rss_end_point])
growth = (rss_end - rss_warm) / rss_warm * 100
growth_median = (median(end) - median(warm)) / median(warm) * 100
after = [r for r in rows if r["messages"] >= 0.1 * requested]
slope = None
if len(after) >= 3:
    xs = [r["messages"] for r in after]
    ys = [r["rss_kib"] for r in after]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx > 0:
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 100000
fds = [int(r["fds"]) for r in rows]
growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else 0.0
duration = float(env["ENDED"]) - float(env["STARTED"])
swaps = int(env["SWAPS_AFTER"]) - int(env["SWAPS_BEFORE"])
# Without swaps the index keeps list 0, so only its verdict is expected.
swapping = env["SWAPS"] == "1"
expected = set(lists["probe_verdict_by_set"] if swapping else lists["probe_verdict_by_set"][:1])
probe = loadgen.get("probe", {})
summary = {
    "messages_requested": requested,
    "message_source": env["MESSAGE_SOURCE"],
    "connections": int(env["CONNECTIONS"]),
    "indicators_per_list": int(env["INDICATORS"]),
    "lists": int(env["SETS"]),
    "swapping": swapping,
    "messages": loadgen.get("messages"),
    "with_verdict": loadgen.get("with_verdict"),
    "no_verdict": loadgen.get("no_verdict"),
    "verdicts": loadgen.get("verdicts"),
    "probe_verdicts": probe,
    "setup_errors": loadgen.get("setup_errors"),
    "connection_errors": loadgen.get("connection_errors"),
    "protocol_errors": loadgen.get("protocol_errors"),
    "timeouts": loadgen.get("timeouts"),
    "daemon_messages_judged": int(env["DAEMON_MESSAGES"]),
    "daemon_fallbacks": int(env["FALLBACKS"]),
    "daemon_milter_errors": int(env["MILTER_ERRORS"]),
    "polls_requested": int(env["POLLS_REQUESTED"]),
    "polls_ok": int(env["POLLS_OK"]),
    "polls_failed": int(env["POLLS_FAILED"]),
    "swaps": swaps,
    "swaps_logged_total": int(env["SWAPS_LOGGED"]),
    "seconds": round(duration, 1),
    "swaps_per_second": round(swaps / duration, 2) if duration else None,
    "rate": loadgen.get("rate"),
    "p50_ms": loadgen.get("p50_ms"),
    "p99_ms": loadgen.get("p99_ms"),
    "rss_idle_before_kib": int(env["RSS_IDLE_BEFORE"]),
    "rss_warm_max_kib": rss_warm,
    "rss_warm_median_kib": median(warm),
    "rss_warm_samples": len(warm),
    "rss_end_max_kib": rss_end,
    "rss_end_median_kib": median(end),
    "rss_end_samples": len(end),
    "rss_end_point_kib": rss_end_point,
    "rss_max_kib": rss_max,
    "rss_idle_after_kib": int(env["RSS_IDLE_AFTER"]),
    "rss_growth_percent": round(growth, 2),
    "rss_growth_median_percent": round(growth_median, 2),
    "rss_slope_kib_per_100k_messages": round(slope, 1) if slope is not None else None,
    "fd_idle_before": int(env["FD_IDLE_BEFORE"]),
    "fd_first_sample": fds[0] if fds else None,
    "fd_max": max(fds + [int(env["FD_END"])]),
    "fd_end": int(env["FD_END"]),
    "fd_idle_after": int(env["FD_IDLE_AFTER"]),
    "samples": len(rows),
    "load_before": env["LOAD_BEFORE"],
    "load_after": env["LOAD_AFTER"],
    "load1_max": max([r["load1"] for r in rows], default=None),
}
checks = {
    "every message got a verdict": loadgen.get("with_verdict") == requested
    and loadgen.get("no_verdict") == 0
    and int(env["LOADGEN_STATUS"]) == 0,
    "the daemon judged every message": int(env["DAEMON_MESSAGES"]) == requested,
    "the probe got each expected verdict": all(probe.get(v, 0) > 0 for v in expected),
    "RSS grew less than 5 %": growth < 5.0 and growth_median < 5.0,
    "no fd leaked": int(env["FD_IDLE_AFTER"]) <= int(env["FD_IDLE_BEFORE"]),
    "every requested poll succeeded": int(env["POLLS_FAILED"]) == 0,
}
summary["checks"] = checks
summary["passed"] = all(checks.values())
with open(os.path.join(work, "summary.json"), "w") as out:
    json.dump(summary, out, indent=1)
    out.write("\n")
print(json.dumps(summary, indent=1))
for name, ok in checks.items():
    print(f"soak: {'met   ' if ok else 'MISSED'} {name}", file=sys.stderr)
sys.exit(0 if summary["passed"] else 1)
PY
STATUS=$?
set -e
[ -n "$CSV_COPY" ] && cp "$CSV" "$CSV_COPY"
[ -n "$SUMMARY_COPY" ] && cp "$WORK/summary.json" "$SUMMARY_COPY"
[ "$STATUS" = 0 ] && PASSED=1
exit "$STATUS"
