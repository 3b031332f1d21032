#!/usr/bin/env bash
# io-wq punts of uring writes by write class (issue 13), from the io_uring tracepoints.
#
# The uring engine puts each write's class in bits 32..40 of its SQE's user_data: 1 = fresh
# blocks only, 2 = the rewritten tail block only, 3 = tail block plus fresh blocks. This script
# records `io_uring:io_uring_submit_req` and `io_uring:io_uring_queue_async_work` with perf
# around one `snapbench run` per (engine, tail mode) and counts, per class, the writes
# submitted and the writes sent to io-wq, per million snapshots.
#
#   bench/uring-punts.sh [MATCHES (256)] [DURATION_S (5)]     OUT=DIR (default results/<UTC>-uring-punts)
#   ENGINES="uring poll" TAILS="rewrite pad" EXTRA="--prealloc-bytes 8MiB" to change the grid.
# Needs root and perf (tracepoints).
set -euo pipefail
cd "$(dirname "$0")/.."
matches=${1:-256}
duration=${2:-5}
engines=${ENGINES:-uring poll}
tails=${TAILS:-rewrite pad}
extra=${EXTRA:-}
command -v perf >/dev/null || { echo "uring-punts: needs perf (apt-get install linux-perf)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "uring-punts: needs root (io_uring tracepoints)" >&2; exit 2; }
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
cargo build --release -q
bin=$PWD/target/release/snapbench
out=${OUT:-results/$(date -u +%Y%m%dT%H%M%SZ)-uring-punts}
mkdir -p "$out"
tmp=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'rm -rf "$tmp"' EXIT
csv="$out/punts.csv"
echo "engine,tail,matches,snapshots,class,writes,punted,punted_per_million_snapshots,fsyncs,fsyncs_punted" > "$csv"
for eng in $engines; do
  for tail in $tails; do
    name="$eng-$tail"
    perf record -q -o "$tmp/$name.data" -e io_uring:io_uring_submit_req -e io_uring:io_uring_queue_async_work -- \
      "$bin" run --engine "$eng" --matches "$matches" --duration "$duration" --warmup 1 --reads-per-match 0 \
      --tail "$tail" $extra --dir "$tmp/data" --out "$out/runs/$name" > "$tmp/$name.log" 2>&1 \
      || { tail -3 "$tmp/$name.log"; echo "uring-punts: $name failed" >&2; exit 1; }
    snaps=$(python3 -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); print(sum(int(x['ops']) for x in r))" "$out/runs/$name/summary.csv")
    perf script -i "$tmp/$name.data" -F event,trace 2>/dev/null | python3 -c '
import re, sys
eng, tail, matches, snaps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sub = {}; punt = {}; fs = [0, 0]
pat = re.compile(r"user_data 0x([0-9a-f]+), opcode (\w+)")
for line in sys.stdin:
    m = pat.search(line)
    if not m:
        continue
    ud, op = int(m.group(1), 16), m.group(2)
    queued = "queue_async_work" in line
    if op == "FSYNC":
        fs[1 if queued else 0] += 1
        continue
    if op not in ("WRITE", "WRITE_FIXED"):
        continue
    c = (ud >> 32) & 0xff
    d = punt if queued else sub
    d[c] = d.get(c, 0) + 1
names = {1: "fresh", 2: "tail", 3: "tail+fresh"}
for c in (1, 2, 3):
    w, p = sub.get(c, 0), punt.get(c, 0)
    per = p * 1e6 / snaps if snaps else 0
    print(f"{eng},{tail},{matches},{snaps},{names[c]},{w},{p},{per:.0f},{fs[0]},{fs[1]}")
' "$eng" "$tail" "$matches" "$snaps" >> "$csv"
    rm -f "$tmp/$name.data"
  done
done
{
  echo "{"
  echo "  \"what\": \"io-wq punts of uring writes by write class (bench/uring-punts.sh)\","
  echo "  \"commit\": \"$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)\","
  echo "  \"kernel\": \"$(uname -r)\","
  echo "  \"filesystem\": \"$(findmnt -no FSTYPE -T "$tmp" || echo unknown)\","
  echo "  \"disk\": \"$(lsblk -dno NAME,MODEL,ROTA,TRAN "$(findmnt -no SOURCE -T "$tmp" | sed 's|/dev/||;s|[0-9]*$||')" 2>/dev/null | tr -s ' ' | head -1)\","
  echo "  \"matches\": $matches, \"duration_s\": $duration, \"engines\": \"$engines\", \"tails\": \"$tails\", \"extra\": \"$extra\","
  echo "  \"date\": \"$(date -u +%FT%TZ)\""
  echo "}"
} > "$out/meta.json"
column -s, -t "$csv"
echo "uring-punts: $csv"
