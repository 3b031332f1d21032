#!/usr/bin/env python3
"""The fixed-load table of suites/tail.toml (issue 13): per engine and tail mode, the median
(min..max) over the repeats of write p99, CPU µs per snapshot, system-wide busy cores and device
bytes per payload byte.  Usage: bench/tail_table.py RESULTS_DIR [LABEL]"""
import csv
import json
import os
import sys


def med(xs):
    xs = sorted(xs)
    if not xs:
        return "-"
    m = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    return f"{m:.2f} ({xs[0]:.2f}..{xs[-1]:.2f})"


def main():
    d = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else ""
    fs = "?"
    try:
        fs = json.load(open(os.path.join(d, "meta.json")))["storage"]["fs"]["fs_type"]
    except Exception:
        pass
    rows = list(csv.DictReader(open(os.path.join(d, "summary.csv"))))
    # Folders from before summary.csv had a `tail` column: take it from meta.json's runs.
    try:
        by_id = {r["run_id"]: r.get("tail", "") for r in json.load(open(os.path.join(d, "meta.json")))["runs"]}
    except Exception:
        by_id = {}
    for r in rows:
        if not r.get("tail"):
            r["tail"] = by_id.get(r["run_id"], "")
    groups = {}
    for r in rows:
        groups.setdefault((r["variant"], r["tail"]), []).append(r)
    print(f"| fs | engine | tail | runs ok | write p99 ms | µs/snapshot | system cores | device B / payload B |{label}")
    print("|---|---|---|---|---|---|---|---|")
    for (v, t), rs in groups.items():
        f = lambda k, scale=1.0: [float(x[k]) * scale for x in rs if x.get(k) not in ("", None)]
        sysc = [float(x["sys_cpu_busy_s"]) / float(x["duration_s"]) for x in rs if x.get("sys_cpu_busy_s")]
        ok = sum(1 for x in rs if x["status"] == "ok")
        print(f"| {fs} | {v} | {t} | {ok}/{len(rs)} | {med(f('lat_p99_us', 1e-3))} | {med(f('cpu_us_per_op'))} | {med(sysc)} | {med(f('disk_write_amp'))} |")


main()
