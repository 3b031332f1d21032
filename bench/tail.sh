#!/usr/bin/env bash
# suites/tail.toml (issue 13) on ext4 (the disk under the repository) and on XFS (a loop image on
# the same disk, bench/xfs.sh), then the fixed-load table of each (bench/tail_table.py).
#   bench/tail.sh [OUT_ROOT (results/<UTC>-tail)]      FSES="ext4 xfs" to choose
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-results/$(date -u +%Y%m%dT%H%M%SZ)-tail}
cargo build --release -q
bin=$PWD/target/release/snapbench
mkdir -p "$root"
root=$(cd "$root" && pwd)
for fs in ${FSES:-ext4 xfs}; do
  if [ "$fs" = ext4 ]; then
    "$bin" run suites/tail.toml --out "$root/ext4" --dir "${TMPDIR:-/var/tmp}/snapbench-tail"
  else
    FS=$fs bench/xfs.sh bash -c "'$bin' run suites/tail.toml --out '$root/$fs' --dir \"\$DIR/data\""
  fi
  bench/tail_table.py "$root/$fs" | tee "$root/$fs/table.md"
done
