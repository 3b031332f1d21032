#!/usr/bin/env bash
# A before/after capacity pair in one session: for each table of TABLES (default a-w2 a-w1),
# bench/capacity.sh runs it with the earlier build (BEFORE_BIN) and then with this checkout's,
# one right after the other, so both sides see the same machine (our VM's speed drifts by tens
# of percent between days: the CPU-only null row is the yardstick to check).
#   bench/capacity-before-after.sh BEFORE_BIN OUT_ROOT [extra search flags, e.g. --quick]
# Build the earlier commit apart, e.g.:
#   git worktree add /tmp/before 466aebe && (cd /tmp/before && \
#     CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p snapbench)
#   bench/capacity-before-after.sh /tmp/before-target/release/snapbench OUT --quick --start 256
# Writes OUT_ROOT/before/<table>/, OUT_ROOT/after/<table>/ and each side's capacity.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/capacity-before-after.sh BEFORE_BIN OUT_ROOT [search flags]" >&2; exit 2; }
before=$1 root=$2
shift 2
[ -x "$before" ] || { echo "capacity-before-after: $before is not an executable; build it first" >&2; exit 2; }
cargo build --release --quiet
for t in ${TABLES:-a-w2 a-w1}; do
  TABLES=$t BIN=$before bench/capacity.sh "$root/before" "$@"
  TABLES=$t BIN=target/release/snapbench bench/capacity.sh "$root/after" "$@"
done
for side in before after; do
  dirs=()
  for t in ${TABLES:-a-w2 a-w1}; do
    [ -f "$root/$side/$t/search.csv" ] && dirs+=("$root/$side/$t")
  done
  [ ${#dirs[@]} -gt 0 ] && python3 bench/capacity_table.py --joint-ack-ms 1500 "${dirs[@]}" > "$root/$side/capacity.md"
done
echo "capacity-before-after: $root/before/capacity.md and $root/after/capacity.md" >&2
