#!/usr/bin/env bash
# Draws the BENCHMARKS.md plots with gnuplot (apt: gnuplot-nox) from the
# JSON lines the runs wrote:
#   docs/bench/throughput.jsonl  -> docs/bench/throughput.png
#   docs/bench/postfix.txt       -> docs/bench/postfix.png
#   docs/bench/index_scale.jsonl -> docs/bench/memory.png
set -euo pipefail
cd "$(dirname "$0")/../.."
D=docs/bench
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

python3 - "$D" "$T" <<'PY'
import json, sys, os, re
d, t = sys.argv[1], sys.argv[2]
# second pass of the run (after the empty-index pass) for floor, first for empty
series = {}
seen_floor = 0
for line in open(os.path.join(d, "throughput.jsonl")):
    r = json.loads(line)
    label = r["label"]
    if label == "floor":
        seen_floor += 1
        label = "floor-pass1" if seen_floor <= 4 else "floor"
    series.setdefault(label, []).append((r["connections"], r["rate"]))
for label, points in series.items():
    with open(os.path.join(t, f"tp-{label}.dat"), "w") as f:
        for c, rate in points:
            f.write(f"{c} {rate}\n")
if os.path.exists(os.path.join(d, "postfix.txt")):
    pf = {}
    for line in open(os.path.join(d, "postfix.txt")):
        m = re.match(r"(\S+) sessions=(\d+) .* rate=([\d.]+)", line)
        if m:
            label, sessions = m.group(1), int(m.group(2))
            # the run measures "none" first and last: plot both passes
            if sessions in pf.get(label, {}):
                label += "-again"
            pf.setdefault(label, {})[sessions] = float(m.group(3))
    for label, points in pf.items():
        with open(os.path.join(t, f"pf-{label}.dat"), "w") as f:
            for s in sorted(points):
                f.write(f"{s} {points[s]}\n")
# index_scale.jsonl is the snapshot that cloned every Indicator, and
# index_scale_compact.jsonl is the compact store.
for name, out in (("index_scale.jsonl", "mem.dat"), ("index_scale_compact.jsonl", "mem-compact.dat")):
    if os.path.exists(os.path.join(d, name)):
        with open(os.path.join(t, out), "w") as f:
            for line in open(os.path.join(d, name)):
                r = json.loads(line)
                f.write(f"{r['indicators']} {r['rss_mib']} {r['build_s']}\n")
PY

plots=""
for label in floor ioc-empty ioc-1000000 rspamd; do
    [ -f "$T/tp-$label.dat" ] && plots="$plots '$T/tp-$label.dat' using 1:2 with linespoints title '$label',"
done
gnuplot <<GP
set terminal pngcairo size 800,500
set output '$D/throughput.png'
set title 'Milter throughput on the phishing corpus (loadgen, 2 shared cores)'
set xlabel 'concurrent milter connections'
set ylabel 'messages per second'
set logscale x 2
set key left top
set grid
plot ${plots%,}
GP

if ls "$T"/pf-*.dat >/dev/null 2>&1; then
    plots=""
    for f in "$T"/pf-*.dat; do
        label=$(basename "$f" .dat); label=${label#pf-}
        plots="$plots '$f' using 1:2 with linespoints title '$label',"
    done
    gnuplot <<GP
set terminal pngcairo size 800,500
set output '$D/postfix.png'
set title 'smtp-source through Postfix 3.7 on loopback (2 KiB messages)'
set xlabel 'SMTP sessions'
set ylabel 'messages per second'
set logscale x 2
set key left top
set grid
plot ${plots%,}
GP
fi

if [ -f "$T/mem.dat" ]; then
    gnuplot <<GP
set terminal pngcairo size 800,500
set output '$D/memory.png'
set title 'ioc-milter index: resident memory and build time'
set xlabel 'indicators (millions)'
set ylabel 'resident memory (MiB)'
set y2label 'build time (s)'
set ytics nomirror
set y2tics
set key left top
set grid
plot '$T/mem.dat' using (\$1/1e6):2 with linespoints title 'resident memory, cloned indicators', \
     '$T/mem.dat' using (\$1/1e6):3 axes x1y2 with linespoints title 'build time, cloned indicators'$(
  [ -f "$T/mem-compact.dat" ] && printf '%s' ", '$T/mem-compact.dat' using (\$1/1e6):2 with linespoints title 'resident memory, compact store', '$T/mem-compact.dat' using (\$1/1e6):3 axes x1y2 with linespoints title 'build time, compact store'")
GP
fi
ls -la "$D"/*.png
