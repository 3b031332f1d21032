#!/usr/bin/env bash
# The reference result set: suites/full.toml (every engine variant of the default suite on
# every DS preset, five interleaved repeats) and a capacity search on fps-128tick (write p99
# <= 50 ms, interval:1000 durability, --quick steps), into one folder, then the plots and the
# reports of both and of the set. About 40 minutes on a 2-core VM; run nothing else meanwhile.
#
#   bench/full.sh [OUT_FOLDER (results/<UTC>-full)] [DATA_DIR (./snapbench-data)]
#
# The fio calibration of the committed set is a separate step (results/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/$(date -u +%Y%m%dT%H%M%SZ)-full}
dir=${2:-./snapbench-data}
cargo build --release --quiet || exit 2
bin=$PWD/target/release/snapbench
mkdir -p "$out"
# The disk, as the kernel names it (NVMe or not): meta.json has the details of --dir's device.
lsblk -d -o NAME,MODEL,ROTA,TRAN > "$out/lsblk.txt" 2>&1 || true
status=0
"$bin" run suites/full.toml --dir "$dir" --out "$out/runs" || status=$?
"$bin" search --workload fps-128tick --durability interval:1000 --slo-p99-ms 50 --quick \
  --start 256 --max 16384 --dir "$dir" --out "$out/search" || status=$?
"$bin" report "$out" || status=$?
"$bin" recommend "$out" --slo-p99-ms 50 | tee "$out/recommend.txt"
exit "$status"
