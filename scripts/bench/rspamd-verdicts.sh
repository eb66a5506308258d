#!/usr/bin/env bash
# Asks the benchmark rspamd (scripts/bench/rspamd.sh) for its verdict on
# each message of a directory. It writes one JSON line per message with the
# file name, the action, the URL hosts rspamd extracted and the symbols with
# their options (for multimap symbols, the map values that matched). The
# session is the one loadgen sends: client 127.0.0.1, HELO loadgen.example,
# sender sender@src.example, recipient alice@test.example. Compare the output with
# `target/release/examples/match_report DIR --hosts`.
#
#   scripts/bench/rspamd-verdicts.sh DIR OUT.jsonl [127.0.0.1:11333]
#
# Needs rspamc and jq. At most 100,000 messages, 20 s each.
set -euo pipefail

DIR=${1:?give the message directory}
OUT=${2:?give the output file}
SERVER=${3:-127.0.0.1:11333}
case "$SERVER" in
    127.0.0.1:* | localhost:*) ;;
    *) echo "invalid server $SERVER: give a loopback address such as 127.0.0.1:11333" >&2; exit 2 ;;
esac

: > "$OUT"
count=0
failed=0
while IFS= read -r -d '' file; do
    count=$((count + 1))
    if ! timeout 20 rspamc -h "$SERVER" --ip 127.0.0.1 --helo loadgen.example \
        --from sender@src.example --rcpt alice@test.example -j "$file" |
        jq -c --arg file "$(basename "$file")" \
            '{file: $file, action: .action,
              symbols: (.symbols | map_values(.options // [])),
              urls: (.urls // [])}' >> "$OUT"; then
        echo "rspamc failed on $file" >&2
        failed=$((failed + 1))
    fi
done < <(find "$DIR" -type f -print0 | sort -z | head -z -n 100000)
echo "$count messages, $failed failed, written to $OUT"
jq -r '.action' "$OUT" | sort | uniq -c
