#!/usr/bin/env python3
"""The table of bench/harness-cost.sh: null's CPU per snapshot by part, per build and load.

    bench/harness_cost_table.py OUT

OUT holds <build>/m<matches>-r<repeat>/summary.csv (one null run each). Prints, per build and
matches, the median [min..max] over the repeats of cpu_us_per_op and its harness, recorder and
engine parts (and the harness's sleeps), the write p99, and then the verdicts of the project's
noise rule (docs/benchmarks.md: at least 5 repeats a side; different only when the min..max
ranges are disjoint and the medians at least 3 % apart) between the builds' totals.
"""
import csv
import os
import re
import statistics
import sys

MIN_REPEATS = 5
MIN_MEDIAN_GAP = 0.03
PARTS = [
    ("cpu_us_per_op", "total µs"),
    ("harness_us_per_op", "harness µs"),
    ("harness_sleep_us_per_op", "of which sleeps µs"),
    ("recorder_us_per_op", "recorder µs"),
    ("engine_us_per_op", "engine µs"),
    ("lat_p99_us", "write p99 ms"),
]


def load(root):
    """{(build, matches): [row, ...]} of every run's summary.csv under root."""
    runs = {}
    for build in sorted(os.listdir(root)):
        bdir = os.path.join(root, build)
        if not os.path.isdir(bdir):
            continue
        for run in sorted(os.listdir(bdir)):
            m = re.fullmatch(r"m(\d+)-r(\d+)", run)
            path = os.path.join(bdir, run, "summary.csv")
            if not m or not os.path.exists(path):
                continue
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    runs.setdefault((build, int(m.group(1))), []).append(row)
    return runs


def values(rows, col):
    out = []
    for r in rows:
        v = r.get(col, "")
        if v in ("", None):
            continue
        x = float(v)
        out.append(x / 1000.0 if col == "lat_p99_us" else x)
    return out


def spread(xs):
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs), len(xs)


def fmt(s):
    if s is None:
        return "–"
    med, lo, hi, _ = s
    return f"{med:.3f} [{lo:.3f}..{hi:.3f}]"


def verdict(a, b):
    """How a compares with b under the noise rule."""
    if a is None or b is None or a[3] < MIN_REPEATS or b[3] < MIN_REPEATS:
        return "inconclusive (fewer than 5 repeats)"
    (ma, la, ha, _), (mb, lb, hb, _) = a, b
    disjoint = ha < lb or hb < la
    gap = abs(ma - mb) / min(ma, mb) if min(ma, mb) > 0 else 0.0
    if not disjoint or gap < MIN_MEDIAN_GAP:
        return "within noise"
    return f"{'lower' if ma < mb else 'higher'}: {ma:.3f} against {mb:.3f} ({ma / mb:.2f}×)"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = load(sys.argv[1])
    if not runs:
        sys.exit(f"no runs under {sys.argv[1]}")
    builds = sorted({b for b, _ in runs}, key=lambda b: (b != "before", b))
    loads = sorted({m for _, m in runs})
    print("| build | matches | runs (not ok) | " + " | ".join(h for _, h in PARTS) + " |")
    print("|---|---|---|" + "---|" * len(PARTS))
    for b in builds:
        for m in loads:
            rows = runs.get((b, m), [])
            bad = sum(1 for r in rows if r.get("status") != "ok")
            cells = [fmt(spread(values(rows, c))) for c, _ in PARTS]
            print(f"| {b} | {m} | {len(rows)} ({bad}) | " + " | ".join(cells) + " |")
    print()
    pairs = [("after", "before"), ("after", "after-coalesce0")]
    for a, b in pairs:
        if a not in builds or b not in builds:
            continue
        for m in loads:
            sa = spread(values(runs.get((a, m), []), "cpu_us_per_op"))
            sb = spread(values(runs.get((b, m), []), "cpu_us_per_op"))
            print(f"- {m} matches, total µs per snapshot: {a} vs {b}: {verdict(sa, sb)}")


if __name__ == "__main__":
    main()
