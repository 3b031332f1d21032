#!/usr/bin/env python3
"""Markdown capacity table from `snapbench search` results folders.

    bench/capacity_table.py FOLDER [FOLDER ...]

For each folder: its search.csv as a table (bracket [last_pass, first_fail], snapshots/s,
matches per busy core, µs per snapshot, bottleneck), ranked by matches per busy core. With
`--joint-ack-ms MS`, also the joint SLO (write p99 as searched AND median ack p99 <= MS) judged
on the very same step runs from summary.csv — the same pass rule as `search`, applied to the
steps that search ran, so its bracket may be wider than a search of its own would give.
Standard library only.
"""
import csv
import json
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def table(folder):
    rows = list(csv.DictReader(open(f"{folder}/search.csv", newline="")))
    rows.sort(key=lambda r: -num(r["matches_per_busy_core"]) if r["matches_per_busy_core"] else 0)
    # search.csv from before issue 11 has no cost split.
    split = bool(rows) and "harness_us_per_op" in rows[0]
    head = "| variant | bracket (matches) | snapshots/s | matches per busy core | µs per snapshot |"
    rule = "|---|---|---|---|---|"
    if split:
        head += " harness / recorder / engine µs |"
        rule += "---|"
    out = [head + " process cores | bottleneck |", rule + "---|---|"]
    for r in rows:
        fmt = lambda k, p=0: (f"{num(r[k]):.{p}f}" if r.get(k) else "–")
        cells = (f"| {r['variant']} | [{r['last_pass'] or '–'}, {r['first_fail'] or '–'}] | {fmt('ops_per_s')} | "
                 f"{fmt('matches_per_busy_core')} | {fmt('cpu_us_per_op', 1)} |")
        if split:
            cells += (f" {fmt('harness_us_per_op', 2)} / {fmt('recorder_us_per_op', 2)} / "
                      f"{fmt('engine_us_per_op', 2)} |")
        out.append(cells + f" {fmt('cpu_cores', 2)} | {r['bottleneck']} ({r['bottleneck_detail']}) |")
    return "\n".join(out)


def joint(folder, slo_ms, ack_ms):
    runs = list(csv.DictReader(open(f"{folder}/summary.csv", newline="")))
    steps = {}
    for r in runs:
        steps.setdefault((r["variant"], int(r["matches"])), []).append(r)
    out = [f"| variant | joint bracket (write p99 ≤ {slo_ms:g} ms, ack p99 ≤ {ack_ms:g} ms) | median ack p99 at last pass (ms) |",
           "|---|---|---|"]
    for v in dict.fromkeys(k[0] for k in steps):
        passes, fails, ack_at = [], [], {}
        for (var, n), rs in sorted(steps.items()):
            if var != v:
                continue
            clean = all(r["status"] == "ok" and num(r["errors"]) == 0 and num(r["not_completed"]) == 0 for r in rs)
            p99 = med([num(r["lat_p99_us"]) for r in rs]) / 1000
            ack = med([num(r["ack_p99_us"]) for r in rs]) / 1000
            ack_at[n] = ack
            (passes if clean and p99 <= slo_ms and ack <= ack_ms else fails).append(n)
        ff = min(fails) if fails else None
        lp = max([n for n in passes if ff is None or n < ff], default=None)
        out.append(f"| {v} | [{lp if lp is not None else '–'}, {ff if ff is not None else '–'}] | "
                   f"{ack_at[lp]:.0f} |" if lp is not None else f"| {v} | [–, {ff}] | – |")
    return "\n".join(out)


def where(folder):
    """", on FS (DISK)" from the folder's meta.json, or "" when it does not say."""
    try:
        meta = json.load(open(f"{folder}/meta.json"))
    except (OSError, ValueError):
        return ""
    storage = meta.get("storage") or {}
    fs = (storage.get("fs") or {}).get("fs_type")
    disk = (storage.get("block") or {}).get("disk")
    if not fs:
        return ""
    return f", on {fs}" + (f" ({disk})" if disk else "")


def main(argv):
    ack = None
    if "--joint-ack-ms" in argv:
        i = argv.index("--joint-ack-ms")
        ack = float(argv[i + 1])
        del argv[i:i + 2]
    if not argv:
        print("usage: capacity_table.py [--joint-ack-ms MS] FOLDER...", file=sys.stderr)
        return 2
    for f in argv:
        try:
            s = next(csv.DictReader(open(f"{f}/search.csv", newline="")))
        except (OSError, StopIteration) as e:
            print(f"error: {f}/search.csv: {e}; give a `snapbench search` results folder", file=sys.stderr)
            return 2
        print(f"\n### {f}: workers {s['workers']}{where(f)}, write p99 ≤ {s['slo_p99_ms']} ms"
              + (f", ack p99 ≤ {s['slo_ack_p99_ms']} ms" if s["slo_ack_p99_ms"] else "")
              + (" (--quick)" if s.get("quick") == "true" else "") + "\n")
        print(table(f))
        if ack is not None:
            print()
            print(joint(f, num(s["slo_p99_ms"]), ack))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
