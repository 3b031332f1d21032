#!/usr/bin/env bash
# The io-wq remedies of issue 13, compared on capacity: `snapbench search` (fps-128tick,
# interval:1000, write p99 <= 50 ms) for each O_DIRECT engine under each remedy, one results
# folder per (remedy, engine). Each folder's summary.csv holds every step's µs per snapshot,
# system-wide CPU and device bytes per payload byte (disk_write_amp); search.csv the bracket.
#
#   bench/tail-remedies.sh [OUT_ROOT] [extra search flags, e.g. --quick --workers 2]
#   ENGINES="uring aio poll glommio"  REMEDIES="rewrite pad"  (a remedy is a tail mode, or
#   tail:prealloc, e.g. rewrite:zeroed; the default grid is every DIO engine x rewrite, pad,
#   rewrite:zeroed)
# DIR=PATH puts the engines' files under PATH/data (bench/xfs.sh sets it to an XFS mount).
# Run it on an otherwise idle machine: each step's runs are CPU-bound.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-results/$(date -u +%Y%m%dT%H%M%SZ)-tail-remedies}
shift || true
engines=${ENGINES:-uring aio poll glommio}
remedies=${REMEDIES:-rewrite pad rewrite:zeroed}
cargo build --release -q
bin=target/release/snapbench
mkdir -p "$root"
for remedy in $remedies; do
  tail=${remedy%%:*}
  prealloc=fallocate
  [ "$remedy" = "$tail" ] || prealloc=${remedy#*:}
  for eng in $engines; do
    name="$remedy-$eng"; name=${name//:/-}
    echo "== $name $(date -u +%T)" >&2
    flags=(--tail "$tail")
    [ "$prealloc" = fallocate ] || flags+=(--prealloc "$prealloc")
    [ -z "${DIR:-}" ] || flags+=(--dir "$DIR/data")
    "$bin" search --workload fps-128tick --durability interval:1000 --slo-p99-ms 50 \
      --engine "$eng" "${flags[@]}" --out "$root/$name" "$@" > "$root/$name.log" 2>&1 \
      || echo "search $name exited $?" >&2
  done
done
python3 - "$root" <<'PY' | tee "$root/remedies.csv"
import csv, glob, os, sys
root = sys.argv[1]
print("remedy_engine,workers,bracket,matches_per_busy_core,cpu_us_per_snapshot,process_cores,system_cores,device_bytes_per_payload_byte")
for d in sorted(glob.glob(os.path.join(root, "*", "search.csv"))):
    name = os.path.basename(os.path.dirname(d))
    runs = list(csv.DictReader(open(os.path.join(os.path.dirname(d), "summary.csv"))))
    for r in csv.DictReader(open(d)):
        lo, hi = r["last_pass"], r["first_fail"]
        amp = sorted(float(x["disk_write_amp"]) for x in runs
                     if x.get("matches") == lo and x.get("disk_write_amp") not in (None, ""))
        f = lambda k: f"{float(r[k]):.2f}" if r.get(k) else "-"
        print(",".join([name, r["workers"], f"[{lo or '-'}, {hi or '-'})", f("matches_per_busy_core"),
                        f("cpu_us_per_op"), f("cpu_cores"), f("sys_cores"),
                        f"{amp[len(amp)//2]:.2f}" if amp else "-"]))
PY
