#!/usr/bin/env bash
# Draws the soak plot with gnuplot (apt: gnuplot-nox): the daemon's
# resident memory and open file descriptors against messages judged, from
# the CSV that scripts/soak.sh writes.
#
#   scripts/bench/plot-soak.sh [CSV] [PNG]
#   (defaults: docs/bench/soak.csv and docs/bench/soak.png)
set -euo pipefail
cd "$(dirname "$0")/../.."
CSV=${1:-docs/bench/soak.csv}
PNG=${2:-docs/bench/soak.png}
[ -f "$CSV" ] || { echo "plot-soak: $CSV not found; run scripts/soak.sh --csv $CSV first" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "plot-soak: gnuplot is missing; install gnuplot-nox" >&2; exit 2; }

gnuplot <<GP
set terminal pngcairo size 900,500
set output '$PNG'
set datafile separator ','
set title 'Soak: ioc-milter with an index swap every second (2 shared cores)'
set xlabel 'messages judged (thousands)'
set ylabel 'resident memory (MiB)'
set y2label 'open file descriptors'
set yrange [0:*]
set y2range [0:40]
set ytics nomirror
set y2tics
set key left bottom
set grid
plot '$CSV' using (\$2/1000):(\$3/1024) every ::1 with lines title 'VmRSS', \
     '$CSV' using (\$2/1000):4 every ::1 axes x1y2 with steps title 'open fds'
GP
ls -la "$PNG"
