#!/usr/bin/env bash
# Every engine of this build on the DS write workload at one fixed load: fps-128tick (256 matches,
# 128 Hz, 0.8 KB deltas), durability interval:1000, replay reads off (write side only), ROUNDS
# interleaved rounds (each round is one `snapbench run` over every variant in turn, so variant A
# and B alternate A B ... A B). Reports the median with min..max of: snapshots/s, p99 write
# latency (intended arrival -> written), p99 durable-ack latency (intended arrival -> covered by a
# completed fdatasync), process CPU s per million snapshots (user+sys, includes io-wq/SQPOLL
# kernel threads) and system-wide busy CPU s per million snapshots (adds writeback, jbd2, IRQs).
#
#   bench/engines-ds.sh [ROUNDS=5] [SECONDS=20] [DIR=./snapbench-data/engines-ds] [VARIANTS...]
#
# WORKLOAD=replay-heavy runs that preset with its read side on (prefill, one-shot replays and
# live-tail viewers; READS_PER_S=20 one-shot replays per second by default, so a short window
# has enough of them) and adds the replay columns: reads, time to first byte p99 and time to the
# whole replay p99, both from each read's intended time, and read errors.
#
# BINS="before=/path/to/old/snapbench after=target/release/snapbench" compares builds A/B: each
# round runs every binary in turn over every variant (interleaved: before, after, before, ...),
# and the table has one row per binary and variant ("before uring", "after uring"). Without BINS
# the script builds and runs this checkout's release binary.
#
# Needs python3 (to read summary.csv). Runs that saturate are marked with '!' in the table.
set -euo pipefail
rounds=${1:-5}
secs=${2:-20}
dir=${3:-./snapbench-data/engines-ds}
shift $(( $# < 3 ? $# : 3 ))
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  variants=(null buffered "buffered:direct=true,threads=4" uring aio glommio poll tokio)
fi
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is needed to read summary.csv" >&2; exit 2; }
labels=()
bins=()
if [ -n "${BINS:-}" ]; then
  for lb in $BINS; do
    label=${lb%%=*} b=${lb#*=}
    [ -x "$b" ] || { echo "BINS: $b (for '$label') is not an executable; give LABEL=PATH pairs" >&2; exit 2; }
    labels+=("$label"); bins+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")")
  done
else
  cargo build --release --quiet
  labels=("")
  bins=("$PWD/target/release/snapbench")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args=()
for v in "${variants[@]}"; do args+=(--engine "$v"); done

workload=${WORKLOAD:-fps-128tick}
if [ "$workload" = fps-128tick ]; then
  reads=(--reads-per-match 0)
  what="reads off"
else
  reads=(--reads-per-s "${READS_PER_S:-20}")
  what="reads on, ${READS_PER_S:-20} one-shot replays/s"
fi
for i in "${!bins[@]}"; do echo "snapbench ${labels[$i]:-}: $("${bins[$i]}" --version) (${bins[$i]})"; done
echo "rounds: $rounds x ${secs}s  workload: $workload, interval:1000, $what  dir: $dir"
for r in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    echo "round $r/$rounds ${labels[$i]:-}..." >&2
    "${bins[$i]}" run "${args[@]}" --workload "$workload" --durability interval:1000 "${reads[@]}" \
      --duration "$secs" --warmup 3 --seed "$r" --dir "$dir" --out "$work/r$r-$i" --force >/dev/null 2>&1 || true
  done
done
python3 - "$work" "$rounds" "$workload" "${labels[@]}" <<'PY'
import csv, statistics, sys, os
work, rounds, workload = sys.argv[1], int(sys.argv[2]), sys.argv[3]
labels = sys.argv[4:] or [""]
reads = workload != "fps-128tick"
rows = {}
order = []
for r in range(1, rounds + 1):
  for i, label in enumerate(labels):
    p = os.path.join(work, f"r{r}-{i}", "summary.csv")
    if not os.path.exists(p):
        print(f"round {r} {label}: no summary.csv", file=sys.stderr)
        continue
    for row in csv.DictReader(open(p)):
        v = (label + " " if label else "") + row["variant"]
        if v not in rows:
            rows[v] = []
            order.append((row["variant"], i, v))
        rows[v].append(row)
# one block per variant, its binaries side by side (first-seen variant order)
first = {}
for var, i, v in order:
    first.setdefault(var, len(first))
order = [v for var, i, v in sorted(order, key=lambda t: (first[t[0]], t[1]))]
def f(x):
    try:
        return float(x)
    except ValueError:
        return float("nan")
def col(rs, fn):
    xs = [fn(r) for r in rs if r["status"] in ("ok", "saturated")]
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    med = statistics.median(xs)
    return f"{med:,.0f} ({min(xs):,.0f}..{max(xs):,.0f})" if med >= 100 else f"{med:.2f} ({min(xs):.2f}..{max(xs):.2f})"
if reads:
    print(f"{'variant':40} | {'reads':16} | {'TTFB p99 ms':22} | {'full replay p99 ms':22} | {'tail p99 ms':20} | {'write p99 ms':20} | read errors | runs")
    for v in order:
        rs = rows[v]
        bad = sum(r["status"] not in ("ok", "saturated") for r in rs)
        sat = sum(r["status"] == "saturated" for r in rs)
        note = f"{len(rs) - bad}" + (f" ({sat}!)" if sat else "") + (f" {bad} failed" if bad else "")
        errs = sum(int(float(r.get("read_errors") or 0)) for r in rs)
        print(f"{v:40} | {col(rs, lambda r: f(r['reads'])):16} | {col(rs, lambda r: f(r['read_ttfb_p99_us']) / 1e3):22} | "
              f"{col(rs, lambda r: f(r['read_full_p99_us']) / 1e3):22} | {col(rs, lambda r: f(r['read_tail_p99_us']) / 1e3):20} | "
              f"{col(rs, lambda r: f(r['lat_p99_us']) / 1e3):20} | {errs:11} | {note}")
    sys.exit(0)
print(f"{'variant':40} | {'snapshots/s':24} | {'write p99 ms':20} | {'ack p99 ms':22} | {'proc CPU s/M':20} | {'sys CPU s/M':20} | runs")
for v in order:
    rs = rows[v]
    ops = lambda r: f(r["ops"])
    sat = sum(r["status"] == "saturated" for r in rs)
    bad = sum(r["status"] not in ("ok", "saturated") for r in rs)
    note = f"{len(rs) - bad}" + (f" ({sat}!)" if sat else "") + (f" {bad} failed" if bad else "")
    print(f"{v:40} | {col(rs, lambda r: f(r['ops_per_s'])):24} | "
          f"{col(rs, lambda r: f(r['lat_p99_us']) / 1e3):20} | {col(rs, lambda r: f(r['ack_p99_us']) / 1e3):22} | "
          f"{col(rs, lambda r: (f(r['cpu_user_s']) + f(r['cpu_sys_s'])) / ops(r) * 1e6):20} | "
          f"{col(rs, lambda r: f(r['sys_cpu_busy_s']) / ops(r) * 1e6):20} | {note}")
PY
