#!/usr/bin/env bash
# The capacity table: `snapbench search` for every engine variant of the default suite on
# fps-128tick with group commit every second (interval:1000), at --workers 2 (the cores of our
# VM) and 1, under SLO (a) write p99 <= 50 ms and (b) write p99 <= 50 ms and ack p99 <= 1500 ms.
# Each search writes its own results folder (summary.csv of every step's runs, search.csv).
#   bench/capacity.sh [OUT_ROOT] [extra search flags, e.g. --quick]
# Run it on an otherwise idle machine: each step's runs are CPU-bound.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-results/capacity-$(date -u +%Y%m%dT%H%M%SZ)}
shift || true
bin=target/release/snapbench
[ -x "$bin" ] || cargo build --release
mkdir -p "$root"
run() { # name workers slo-flags...
  local name=$1 workers=$2; shift 2
  echo "== $name (workers $workers) $(date -u +%T)" >&2
  "$bin" search --workload fps-128tick --durability interval:1000 --workers "$workers" \
    --out "$root/$name" "$@" || echo "search $name exited $?" >&2
}
run a-w2 2 --slo-p99-ms 50 "$@"
run a-w1 1 --slo-p99-ms 50 "$@"
run b-w2 2 --slo-p99-ms 50 --slo-ack-p99-ms 1500 "$@"
run b-w1 1 --slo-p99-ms 50 --slo-ack-p99-ms 1500 "$@"
for f in "$root"/*/search.csv; do echo "== $f"; cat "$f"; done
