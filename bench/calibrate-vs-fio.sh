#!/usr/bin/env bash
# Calibration of snapbench's kernel engines against fio, side by side on ONE fully written file:
# each pair (snapbench variant, fio engine) runs ROUNDS times interleaved (A B A B ...), and the
# table reports the median with min..max of IOPS, p99 latency (submit -> completion; fio's total
# `lat` with lat_percentiles=1) and CPU per I/O measured the same way for both from outside
# (each child's whole-life rusage, every thread included, over its I/Os; fio's own usr/sys
# figures leave out its SQPOLL thread; each tool's own figure stays in the CSV's cpu_us_per_io).
# Ratios are snapbench over fio round by round (round k against round k); the table gives their
# median (min..max). Target: on every row the range reaches 1.0 (IOPS ratio max >= 1, CPU ratio
# min <= 1); a row whose whole range misses is a gap. "sw" is context
# switches (voluntary + involuntary, every thread) per I/O, from the same rusage.
# Both submit each I/O as soon as its slot frees: fio's default iodepth_batch_submit=1 and
# snapbench's iodepth_batch (default 1). Batching every free slot into one submit call
# (snapbench --iodepth-batch 0) costs ~15 % IOPS at QD32 on this virtio disk.
#
#   bench/calibrate-vs-fio.sh [ROUNDS=5] [SECONDS=5] [DIR=./snapbench-data/calibrate] [ROWS=regex] [OUT]
#   OUT=path bench/calibrate-vs-fio.sh ...
#
# With an output folder (OUT in the environment or the 5th argument; relative to the directory
# the script is started from) it also writes OUT/calibration.csv (header
# row,pattern,tool,round,iops,p99_us,cpu_us_per_io,cpu_us_per_io_rusage,csw_per_io,placement:
# one line per tool per round per row, appended as each round ends) and OUT/meta.json (fio and snapbench versions, file, rounds,
# seconds, UTC date, uname -r, host, filesystem and disk of DIR), a folder `snapbench report`
# draws the calibration chart from (plot/calibration.*).
#
# Both sides run pinned to CPU 0 (snapbench pins its worker; fio gets --cpus_allowed=0), except
# the 32-thread psync row, where neither side's 32 I/O threads are pinned. With SQPOLL both put
# the kernel's SQ thread on CPU 1 (sqpoll_cpu=1 / --sqthread_poll_cpu=1): left to inherit CPU 0
# it busy-polls the submitter off its own core (fio then managed 125 IOPS here). fio's
# io_uring engine with sqthread_poll never enters the kernel to wait: it spins on the CQ ring;
# snapbench's row does the same (cq_spin=true). Each row's placement is in its table line.
set -euo pipefail
rounds=${1:-5}
secs=${2:-5}
dir=${3:-./snapbench-data/calibrate}
only=${4:-.}
out=${OUT:-${5:-}}
if [ -n "$out" ]; then
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
fi
cd "$(dirname "$0")/.."

if ! command -v fio >/dev/null; then
  echo "installing fio (apt-get)..." >&2
  (apt-get update -qq && apt-get install -y -qq fio) >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed to read fio's JSON" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/snapbench
mkdir -p "$dir"
file=$dir/calibrate.dat
size=1g
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -lt $((1 << 30)) ]; then
  echo "laying out $file ($size, written in full)..." >&2
  fio --name=layout --filename="$file" --size=$size --rw=write --bs=1m --direct=1 \
    --ioengine=psync --output-format=terse >/dev/null
fi

supported() { "$bin" engines --dir "$dir" | awk -v e="$1" '$1==e{f=1} f && /\[UNSUPPORTED\] \(engine\)/{bad=1} END{exit !(f && !bad)}'; }

# rows: label | snapbench variant | rw bs iodepth | fio args | placement and flags (both sides)
# The ring flags are fio's own, read with strace (io_uring_setup) from fio 3.33 on Linux 6.18:
# without SQPOLL it sets COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN (and CQSIZE = depth);
# with sqthread_poll it registers the file (fixed files) and drops those flags (EINVAL).
pin0="both on CPU 0"
tw="coop_taskrun+single_issuer+defer_taskrun"
rows=()
for pat in "randread 4k 1" "randread 4k 32" "randwrite 4k 32" "write 1m 8"; do
  rows+=("uring|uring:single_issuer=true,defer_taskrun=true,coop_taskrun=true|$pat|--ioengine=io_uring|$pin0; $tw")
  rows+=("uring fixed|uring:single_issuer=true,defer_taskrun=true,coop_taskrun=true,fixed_buffers=true|$pat|--ioengine=io_uring --fixedbufs|$pin0; $tw; registered buffers")
  rows+=("uring sqpoll|uring:sqpoll=true,sqpoll_cpu=1,cq_spin=true,fixed_files=true|$pat|--ioengine=io_uring --sqthread_poll=1 --sqthread_poll_cpu=1|$pin0, SQ thread on CPU 1; registered file; both spin on the CQ")
  if supported aio; then rows+=("aio|aio|$pat|--ioengine=libaio|$pin0"); fi
done
# The same SQPOLL ring waiting the way snapbench does by default (io_uring_enter GETEVENTS,
# asleep until the completion), against the same fio: what the CQ spin is worth at QD1.
rows+=("sqpoll enter|uring:sqpoll=true,sqpoll_cpu=1,fixed_files=true|randread 4k 1|--ioengine=io_uring --sqthread_poll=1 --sqthread_poll_cpu=1|$pin0, SQ thread on CPU 1; registered file; snapbench sleeps in io_uring_enter, fio spins")
# snapbench's default ring (no task-run flags) against fio's: what those flags are worth.
rows+=("uring default|uring|randread 4k 32|--ioengine=io_uring|$pin0; snapbench without fio's $tw")
rows+=("psync QD1|buffered:direct=true|randread 4k 1|--ioengine=psync|$pin0")
rows+=("psync x32|buffered:direct=true,threads=32|randread 4k 32|--ioengine=psync --numjobs=32|32 I/O threads unpinned (both; snapbench's worker on CPU 0 hands them the I/Os)")

# Run a command; its stdout, then one line "#RUSAGE <seconds> <switches>": the user+sys CPU and
# the context switches of the whole child process tree (every thread: SQPOLL, io-wq, pool,
# fio's forked jobs), from outside.
rusage() {
  python3 -c '
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(p.stdout.decode())
print(f"#RUSAGE {r.ru_utime + r.ru_stime} {r.ru_nvcsw + r.ru_nivcsw}")' "$@"
}

fio_json() { # rw bs qd args... -> "iops p99_us cpu_s ios life_cpu_s life_switches"
  local rw=$1 bs=$2 qd=$3; shift 3
  local pin="--cpus_allowed=0"
  case "$*" in *numjobs*) pin=""; qd=1 ;; esac
  rusage fio --name=cal --filename="$file" --size=$size --rw="$rw" --bs="$bs" --iodepth="$qd" --direct=1 \
    --time_based --runtime="$secs" --ramp_time=1 --lat_percentiles=1 --group_reporting=0 \
    $pin "$@" --output-format=json | python3 -c '
import json, sys
text = sys.stdin.read()
life, switches = text.rsplit("#RUSAGE ", 1)[1].split()
j = json.loads(text.rsplit("#RUSAGE ", 1)[0])
iops = ios = cpu = 0.0; p99 = []
for job in j["jobs"]:
    for d in ("read", "write"):
        s = job[d]
        if s["total_ios"]:
            iops += s["iops"]; ios += s["total_ios"]
            p99.append(s["lat_ns"]["percentile"]["99.000000"] / 1000)
    cpu += (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1000
print(iops, max(p99), cpu, ios, life, switches)'
}

sb_run() { # variant rw bs qd -> "iops p99_us cpu_s ios life_cpu_s life_switches"
  local out=$work/sb-$RANDOM
  local life
  life=$(rusage "$bin" run --engine "$1" --workload micro --rw "$2" --bs "$3" --iodepth "$4" --file-size $size \
    --file-path "$file" --duration "$secs" --warmup 1 --dir "$work/data" --out "$out" | sed -n 's/^#RUSAGE //p')
  python3 -c '
import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
print(r["ops_per_s"], r["lat_p99_us"], float(r["cpu_user_s"]) + float(r["cpu_sys_s"]), r["ops"], sys.argv[2])' "$out/summary.csv" "$life"
}

stats() { python3 -c '
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print(f"{statistics.median(v):.6g} {min(v):.6g} {max(v):.6g}")' "$@"; }

fio_version=$(fio --version)
sb_version=$("$bin" --version)
echo "fio: $fio_version  snapbench: $sb_version  file: $file  rounds: $rounds x ${secs}s"
if [ -n "$out" ]; then
  csv=$out/calibration.csv
  echo "row,pattern,tool,round,iops,p99_us,cpu_us_per_io,cpu_us_per_io_rusage,csw_per_io,placement" > "$csv"
  src=$(findmnt -no SOURCE -T "$dir" 2>/dev/null || true)
  disk=$(lsblk -no PKNAME "$src" 2>/dev/null | head -n1 || true)
  [ -n "$disk" ] || disk=$(basename "${src:-unknown}")
  python3 - "$out/meta.json" "$fio_version" "$sb_version" "$file" "$rounds" "$secs" "$only" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$(hostname)" "$(nproc)" \
    "$(findmnt -no FSTYPE -T "$dir" 2>/dev/null || stat -f -c %T "$dir" 2>/dev/null || echo unknown)" \
    "$disk" <<'PY'
import json, sys
(path, fio, sb, file, rounds, secs, only, date, kernel, host, cpus, fs, disk) = sys.argv[1:]
cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
meta = {
    "tool": "bench/calibrate-vs-fio.sh",
    "fio_version": fio, "snapbench_version": sb, "file": file,
    "rounds": int(rounds), "secs": float(secs), "rows_filter": only,
    "start_utc": date, "uname_r": kernel,
    # The keys `snapbench report` reads for its caption (as in a results folder's meta.json).
    "host": {"hostname": host, "kernel_release": kernel, "cpu_model": cpu, "available_cpus": int(cpus)},
    "storage": {"fs": {"fs_type": fs}, "block": {"disk": disk}},
}
with open(path, "w") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
PY
fi
csv_row() { # label pattern tool round iops p99_us cpu_us_per_io cpu_us_per_io_rusage csw_per_io placement
  [ -n "$out" ] || return 0
  printf '"%s","%s",%s,%s,%s,%s,%s,%s,%s,"%s"\n' "$@" >> "$csv"
}
# CPU per I/O from outside: the child's whole-life CPU over the I/Os of its warm-up (snapbench)
# or ramp (fio), both 1 s, and its measured window, at the window's rate. Both sides pay their
# start-up in it alike; every thread counts on both.
life_per_io() { python3 -c "print($1 / ($2 * ($secs + 1)) * 1e6)"; }
ratios() { # a1 a2 ... -- b1 b2 ... -> "median min max" of a_k / b_k
  python3 -c '
import statistics, sys
args = sys.argv[1:]; k = args.index("--")
r = [float(a) / float(b) for a, b in zip(args[:k], args[k + 1:]) if float(b) > 0]
print(f"{statistics.median(r):.6g} {min(r):.6g} {max(r):.6g}")' "$@"
}
printf '%-13s %-15s | %-22s %-22s %-16s | %7s %7s | %-18s %-18s %-16s | %5s %5s | %s\n' row pattern \
  "snapbench IOPS" "fio IOPS" "IOPS ratio" "sb p99" "fio p99" \
  "sb CPU us/IO" "fio CPU us/IO" "CPU ratio" "sb sw" "fio sw" "target (placement)"
for row in "${rows[@]}"; do
  IFS='|' read -r label variant pat fioargs placement <<< "$row"
  echo "$label $pat" | grep -Eq "$only" || continue
  read -r rw bs qd <<< "$pat"
  sb_i=(); sb_p=(); fi_i=(); fi_p=(); sb_r=(); fi_r=(); sb_w=(); fi_w=()
  for round in $(seq 1 "$rounds"); do
    read -r i p c n l w < <(sb_run "$variant" "$rw" "$bs" "$qd")
    sb_i+=("$i"); sb_p+=("$p"); sb_r+=("$(life_per_io "$l" "$i")"); sb_w+=("$(life_per_io "$w" "$i" | python3 -c 'print(float(input()) / 1e6)')")
    csv_row "$label" "$pat" snapbench "$round" "$i" "$p" "$(python3 -c "print($c / $n * 1e6)")" "${sb_r[-1]}" "${sb_w[-1]}" "$placement"
    # shellcheck disable=SC2086
    read -r i p c n l w < <(fio_json "$rw" "$bs" "$qd" $fioargs)
    fi_i+=("$i"); fi_p+=("$p"); fi_r+=("$(life_per_io "$l" "$i")"); fi_w+=("$(life_per_io "$w" "$i" | python3 -c 'print(float(input()) / 1e6)')")
    csv_row "$label" "$pat" fio "$round" "$i" "$p" "$(python3 -c "print($c / $n * 1e6)")" "${fi_r[-1]}" "${fi_w[-1]}" "$placement"
  done
  read -r si smin smax < <(stats "${sb_i[@]}")
  read -r fi fmin fmax < <(stats "${fi_i[@]}")
  read -r sp _ _ < <(stats "${sb_p[@]}")
  read -r fp _ _ < <(stats "${fi_p[@]}")
  read -r sr srmin srmax < <(stats "${sb_r[@]}")
  read -r fr frmin frmax < <(stats "${fi_r[@]}")
  read -r sw _ _ < <(stats "${sb_w[@]}")
  read -r fw _ _ < <(stats "${fi_w[@]}")
  read -r ir irmin irmax < <(ratios "${sb_i[@]}" -- "${fi_i[@]}")
  read -r cr crmin crmax < <(ratios "${sb_r[@]}" -- "${fi_r[@]}")
  target=$(python3 -c "
miss = [n for n, bad in (('IOPS', $irmax < 1), ('CPU', $crmin > 1)) if bad]
print('reached' if not miss else 'MISSED ' + '+'.join(miss))")
  printf '%-13s %-15s | %-22s %-22s %-16s | %7.0f %7.0f | %-18s %-18s %-16s | %5.2f %5.2f | %s (%s)\n' "$label" "$pat" \
    "$(printf '%.0f (%.0f..%.0f)' "$si" "$smin" "$smax")" \
    "$(printf '%.0f (%.0f..%.0f)' "$fi" "$fmin" "$fmax")" \
    "$(printf '%.2f (%.2f..%.2f)' "$ir" "$irmin" "$irmax")" "$sp" "$fp" \
    "$(printf '%.1f (%.1f..%.1f)' "$sr" "$srmin" "$srmax")" \
    "$(printf '%.1f (%.1f..%.1f)' "$fr" "$frmin" "$frmax")" \
    "$(printf '%.2f (%.2f..%.2f)' "$cr" "$crmin" "$crmax")" "$sw" "$fw" "$target" "$placement"
done
echo "CPU: each child's whole-life rusage (every thread) over its I/Os; ratios: snapbench/fio per round."
echo "target: on every row the ratio's range reaches 1.0 (IOPS ratio max >= 1, CPU ratio min <= 1)"
if [ -n "$out" ]; then echo "calibration: $out/calibration.csv, $out/meta.json" >&2; fi
