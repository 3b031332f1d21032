#!/usr/bin/env bash
# The capacity table: `snapbench search` for every engine variant of the default suite on
# fps-128tick with group commit every second (interval:1000), at --workers 2 (the cores of our
# VM) and 1, under SLO (a) write p99 <= 50 ms and (b) write p99 <= 50 ms and ack p99 <= 1500 ms.
# Each search writes its own results folder (summary.csv of every step's runs, search.csv), and
# OUT_ROOT/capacity.md is `bench/capacity_table.py --joint-ack-ms 1500` over them (SLO (b) also
# judged on the very steps of each (a) search, with search's pass rule).
#   bench/capacity.sh [OUT_ROOT] [extra search flags, e.g. --quick]
# Environment:
#   TABLES   which searches, of a-w2 a-w1 b-w2 b-w1 (default: all four). With only a-*, SLO (b)
#            is the joint judgement of capacity.md.
#   ENGINES  space-separated engine variants instead of the default suite's (e.g. knob variants:
#            "tokio:flavor=multi glommio:spin_before_park_us=100").
#   DIR      where engines create their files (--dir; e.g. bench/xfs.sh sets it to an XFS mount).
#   BIN      the snapbench binary to run (default: target/release/snapbench, built first); e.g.
#            an earlier commit's build for a before/after pair in one session.
# Run it on an otherwise idle machine: each step's runs are CPU-bound.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-results/capacity-$(date -u +%Y%m%dT%H%M%SZ)}
shift || true
if [ -n "${BIN:-}" ]; then
  bin=$BIN
  [ -x "$bin" ] || { echo "capacity: BIN=$bin is not an executable; build it first" >&2; exit 2; }
else
  bin=target/release/snapbench
  cargo build --release --quiet
fi
mkdir -p "$root"
common=()
[ -n "${DIR:-}" ] && common+=(--dir "$DIR")
for e in ${ENGINES:-}; do common+=(--engine "$e"); done
run() { # name workers slo-flags...
  local name=$1 workers=$2; shift 2
  echo "== $name (workers $workers) $(date -u +%T)" >&2
  "$bin" search --workload fps-128tick --durability interval:1000 --workers "$workers" \
    --out "$root/$name" "${common[@]}" "$@" || echo "search $name exited $?" >&2
}
for t in ${TABLES:-a-w2 a-w1 b-w2 b-w1}; do
  case "$t" in
    a-w2) run a-w2 2 --slo-p99-ms 50 "$@" ;;
    a-w1) run a-w1 1 --slo-p99-ms 50 "$@" ;;
    b-w2) run b-w2 2 --slo-p99-ms 50 --slo-ack-p99-ms 1500 "$@" ;;
    b-w1) run b-w1 1 --slo-p99-ms 50 --slo-ack-p99-ms 1500 "$@" ;;
    *) echo "capacity: unknown table '$t' in TABLES (a-w2 a-w1 b-w2 b-w1)" >&2; exit 2 ;;
  esac
done
done_dirs=()
for t in ${TABLES:-a-w2 a-w1 b-w2 b-w1}; do
  [ -f "$root/$t/search.csv" ] && done_dirs+=("$root/$t")
done
if [ ${#done_dirs[@]} -gt 0 ]; then
  python3 bench/capacity_table.py --joint-ack-ms 1500 "${done_dirs[@]}" > "$root/capacity.md"
  cat "$root/capacity.md"
fi
