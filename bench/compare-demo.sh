#!/usr/bin/env bash
# `snapbench compare`, shown on a known non-difference and a known difference:
# suites/compare.toml run twice (A, B: the compare must call everything within noise) and once
# with --flush-ms 40 instead of the default 20 (C: a write waits up to twice as long for its
# flush deadline, so write p99 must be called slower). About 3 minutes.
#
#   bench/compare-demo.sh [OUT_FOLDER (results/<UTC>-compare)] [DATA_DIR (./snapbench-data)]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/$(date -u +%Y%m%dT%H%M%SZ)-compare}
dir=${2:-./snapbench-data}
cargo build --release --quiet || exit 2
bin=$PWD/target/release/snapbench
mkdir -p "$out"
"$bin" run suites/compare.toml --dir "$dir" --out "$out/a" || exit 1
"$bin" run suites/compare.toml --dir "$dir" --out "$out/b" || exit 1
"$bin" run suites/compare.toml --flush-ms 40 --dir "$dir" --out "$out/c-flush40" || exit 1
"$bin" compare "$out/a" "$out/b" | tee "$out/compare-a-b.txt"
"$bin" compare "$out/a" "$out/c-flush40" | tee "$out/compare-a-c-flush40.txt"
