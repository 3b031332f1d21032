#!/usr/bin/env python3
"""Read a snapbench .hlog with HdrHistogram_py (pip package `hdrhistogram`), another
HdrHistogram implementation than the Rust crate that wrote it: merge every interval and print
one JSON line with the number of intervals, the merged total count and p50/p99/max in µs.

    python3 bench/hlog_readback.py results/<run>/hist/01-null-lat.hlog
"""
import json
import sys

try:
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogReader
except ImportError:
    sys.exit("hlog_readback.py: needs the `hdrhistogram` package (pip install hdrhistogram)")

# snapbench's histograms: 1 ns .. 1 h, 3 significant digits, values in ns.
LOWEST_NS, HIGHEST_NS, DIGITS = 1, 3_600_000_000_000, 3


def bad_input(msg):
    print(msg, file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) != 2:
        bad_input("usage: hlog_readback.py FILE.hlog")
    merged = HdrHistogram(LOWEST_NS, HIGHEST_NS, DIGITS)
    try:
        reader = HistogramLogReader(argv[1], HdrHistogram(LOWEST_NS, HIGHEST_NS, DIGITS))
    except OSError as e:
        bad_input(f"hlog_readback.py: {argv[1]}: {e.strerror}; give the path of an .hlog under a results folder's hist/")
    intervals = 0
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        merged.add(h)
        intervals += 1
    reader.close()
    count = merged.get_total_count()
    us = lambda ns: ns / 1000.0 if count else None
    print(json.dumps({
        "file": argv[1],
        "intervals": intervals,
        "total_count": count,
        "p50_us": us(merged.get_value_at_percentile(50)),
        "p99_us": us(merged.get_value_at_percentile(99)),
        "max_us": us(merged.get_max_value()),
    }))


if __name__ == "__main__":
    main(sys.argv)
