#!/usr/bin/env bash
# The harness's own cost: null's CPU per snapshot, split into harness, recorder and engine, at
# 256, 1024 and 4096 matches (fps-128tick, interval:1000, 1 worker), REPEATS interleaved
# repeats (default 5) of each configuration, medians with min..max, compared with the shared
# noise rule of docs/benchmarks.md.
#
#   bench/harness-cost.sh [OUT]                 # this build only
#   BEFORE=/path/to/old/snapbench bench/harness-cost.sh [OUT]
#
# With BEFORE, the older binary runs interleaved with this one (same seeds, same order each
# round); a binary whose summary.csv has no cost columns reports its total only. Each run also
# runs this build with --coalesce-us 0 (one wake-up per due time, as before coalescing), to show
# what coalescing alone buys. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/harness-cost-$(date -u +%Y%m%dT%H%M%SZ)}
repeats=${REPEATS:-5}
duration=${DURATION:-8}
warmup=${WARMUP:-2}
bin=target/release/snapbench
[ -x "$bin" ] || cargo build --release
data=${DATA:-$(mktemp -d /var/tmp/snapbench-harness-cost.XXXXXX)}
mkdir -p "$out"
declare -A bins=([after]="$bin" [after-coalesce0]="$bin")
order=(after after-coalesce0)
if [ -n "${BEFORE:-}" ]; then
  bins[before]=$BEFORE
  order=(before "${order[@]}")
fi
for r in $(seq 1 "$repeats"); do
  for m in 256 1024 4096; do
    for name in "${order[@]}"; do
      extra=()
      [ "$name" = after-coalesce0 ] && extra=(--coalesce-us 0)
      dest="$out/$name/m$m-r$r"
      echo "== round $r/$repeats: $name, $m matches $(date -u +%T)" >&2
      "${bins[$name]}" run --engine null --workload fps-128tick --matches "$m" \
        --durability interval:1000 --workers 1 --duration "$duration" --warmup "$warmup" \
        --seed "$r" "${extra[@]}" --dir "$data" --out "$dest" >/dev/null \
        || echo "run $dest exited $?" >&2
    done
  done
done
rm -rf "$data"
python3 bench/harness_cost_table.py "$out" | tee "$out/table.md"
