#!/usr/bin/env bash
# Is the harness the bottleneck? snapbench's `null` engine against fio's null engine on the same
# pattern (randread, 4 KiB, iodepth 32, one job), five interleaved rounds (A B A B ...).
# Both keep per-op timestamps and latency records (fio: clat/slat on; snapbench: one histogram
# record per op). Prints each round, then the medians, the ratio, and snapbench's ns per op.
#
#   bench/null-vs-fio.sh [ROUNDS] [SECONDS]
set -euo pipefail
rounds=${1:-5}
secs=${2:-5}
cd "$(dirname "$0")/.."

if ! command -v fio >/dev/null; then
  echo "installing fio (apt-get)..." >&2
  (apt-get update -qq && apt-get install -y -qq fio) >/dev/null
fi
cargo build --release --quiet
bin=target/release/snapbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "fio: $(fio --version)   snapbench: $($bin --version)"
printf '%-6s %16s %16s %8s %12s %12s\n' round snapbench_ops_s fio_ops_s ratio sb_wall_ns sb_cpu_ns
for i in $(seq 1 "$rounds"); do
  $bin run --engine null --workload micro --rw randread --bs 4k --iodepth 32 --file-size 64m \
    --duration "$secs" --warmup 1 --dir "$work/data" --out "$work/r$i" >/dev/null 2>&1
  sb=$(awk -F, 'NR==1{for(i=1;i<=NF;i++) c[$i]=i} NR==2{print $c["ops_per_s"], $c["cpu_us_per_op"]}' "$work/r$i/summary.csv")
  sb_ops=${sb% *}; sb_cpu_us=${sb#* }
  # terse v3: field 8 is read IOPS.
  fio_ops=$(fio --name=null --ioengine=null --rw=randread --bs=4k --iodepth=32 --size=64m \
    --numjobs=1 --time_based --runtime="$secs" --ramp_time=1 --output-format=terse --terse-version=3 \
    | awk -F';' '{print $8}')
  ratio=$(awk -v a="$sb_ops" -v b="$fio_ops" 'BEGIN{printf "%.2f", a/b}')
  wall=$(awk -v a="$sb_ops" 'BEGIN{printf "%.1f", 1e9/a}')
  cpu=$(awk -v a="$sb_cpu_us" 'BEGIN{printf "%.1f", a*1000}')
  printf '%-6s %16.0f %16.0f %8s %12s %12s\n' "$i" "$sb_ops" "$fio_ops" "$ratio" "$wall" "$cpu"
  echo "$sb_ops $fio_ops $wall $cpu" >> "$work/rows"
done
sbm=$(awk '{print $1}' "$work/rows" | median)
fim=$(awk '{print $2}' "$work/rows" | median)
wm=$(awk '{print $3}' "$work/rows" | median)
cm=$(awk '{print $4}' "$work/rows" | median)
printf '%-6s %16.0f %16.0f %8s %12s %12s\n' median "$sbm" "$fim" \
  "$(awk -v a="$sbm" -v b="$fim" 'BEGIN{printf "%.2f", a/b}')" "$wm" "$cm"
echo "target: snapbench >= 2x fio's null engine rate"
