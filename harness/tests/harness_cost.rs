//! The cost split of DS runs (harness, recorder, engine) and the guard against gaming it: on
//! one seeded schedule every engine does the same per-snapshot work; only the I/O differs.

use std::collections::HashMap;
use std::path::Path;

use assert_cmd::Command;

fn snapbench() -> Command {
    Command::cargo_bin("snapbench").unwrap()
}

/// summary.csv rows as column → value maps.
fn rows(out: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(out.join("summary.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Run `snapbench run ARGS` (split at whitespace) on a temp dir with no lag limit; it must
/// succeed. Its summary.csv rows.
fn run_ok(args: &str) -> Vec<HashMap<String, String>> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    snapbench()
        .arg("run")
        .args(args.split_whitespace())
        .args(["--lag-limit-ms", "3600000"])
        .arg("--dir")
        .arg(tmp.path().join("data"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    rows(&out)
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|e| panic!("{col} = {:?}: {e}", row[col]))
}

/// Counters every engine must match exactly on the same schedule, whatever its alignment.
const SAME_WORK: [&str; 2] = ["snapshots_framed", "crc_bytes"];

#[test]
fn every_engine_does_the_same_work_on_one_seeded_schedule() {
    // A light load with keyframes, no durability waits and segments that never fill (every
    // flush is a deadline's, long after the log's previous write completed): what the writer
    // does depends on the schedule only. (Matches that end inside the window would let I/O
    // timing in: a flush deadline that falls while a log's close is in flight fires on a live
    // log for a real engine and on a freed one for null.)
    let rows = run_ok(
        "--workload fps-128tick --matches 24 --keyframe-s 0.5 --segment-bytes 1m \
         --durability none --flush-ms 50 --seed 11 --duration 1.5 --warmup 0.3 --engine \
         null --engine uring:direct=false --engine uring --engine buffered",
    );
    assert_eq!(rows.len(), 4);
    let null = &rows[0];
    assert_eq!(null["engine"], "null");
    assert!(num(null, "snapshots_framed") > 1000.0, "{null:?}");
    assert!(num(null, "crc_bytes") > num(null, "snapshots_framed") * 28.0);
    assert!(num(null, "timers_fired") > 0.0);
    assert!(num(null, "hist_records") >= num(null, "ops"));
    assert!(num(null, "copy_bytes") >= num(null, "bytes"));
    assert!(num(null, "passes") > 0.0);
    assert_eq!(num(null, "matches_sealed"), 24.0, "{null:?}");
    // Samples recorded for I/O (one per write, sync or read) follow the I/O; the rest are one
    // per snapshot written and one per snapshot acknowledged, and follow the schedule.
    let io_samples = |r: &HashMap<String, String>| {
        num(r, "io_write_samples") + num(r, "io_sync_samples") + num(r, "io_read_samples")
    };
    for r in &rows {
        let v = &r["variant"];
        assert_eq!(num(r, "io_write_samples"), num(r, "io_ops"), "{v}");
        assert_eq!(
            num(r, "hist_records"),
            num(r, "lat_samples") + num(r, "ack_samples") + io_samples(r),
            "{v}: every sample recorded is in a histogram"
        );
    }
    for r in &rows[1..] {
        let v = &r["variant"];
        assert_eq!(r["status"], "ok", "{v}: {}", r["error"]);
        for col in SAME_WORK {
            assert_eq!(r[col], null[col], "{v}: {col} differs from null's");
        }
        for col in ["lat_samples", "ack_samples"] {
            assert_eq!(r[col], null[col], "{v}: {col} differs from null's");
        }
        // Flush cycles follow I/O timing: each log's first cycle starts when its create
        // completes (staged frames ride with the header write), and a deadline that finds the
        // log's previous write still in flight (a loaded machine) flushes at its completion,
        // which moves the next cycle. Each cycle moved is one write and one deadline more or
        // less, so timers may differ by one per log plus the difference in writes.
        let writes = (num(r, "io_ops") - num(null, "io_ops")).abs();
        let timers = (num(r, "timers_fired") - num(null, "timers_fired")).abs();
        assert!(
            timers <= 24.0 + writes,
            "{v}: timers {} vs {} (writes {} vs {})",
            r["timers_fired"],
            null["timers_fired"],
            r["io_ops"],
            null["io_ops"]
        );
    }
    // Engines without alignment copy the same bytes, however the writes fall; O_DIRECT's
    // whole blocks copy more (the tail block is rewritten), never less.
    for r in [&rows[1], &rows[3]] {
        assert_eq!(r["copy_bytes"], null["copy_bytes"], "{}", r["variant"]);
    }
    assert!(
        num(&rows[2], "copy_bytes") > num(null, "copy_bytes"),
        "uring"
    );
}

#[test]
fn the_three_costs_add_up_to_the_runs_cpu() {
    let rows = run_ok(
        "--workload fps-128tick --matches 64 --duration 1 --warmup 0.2 --engine null \
         --engine uring:direct=false",
    );
    for r in &rows {
        let v = &r["variant"];
        let (h, rec, e) = (
            num(r, "harness_us_per_op"),
            num(r, "recorder_us_per_op"),
            num(r, "engine_us_per_op"),
        );
        let total = num(r, "cpu_us_per_op");
        assert!(h > 0.0 && rec > 0.0 && e >= 0.0, "{v}: {h} {rec} {e}");
        assert!(num(r, "harness_sleep_us_per_op") <= h, "{v}");
        if e > 0.0 {
            assert!(
                ((h + rec + e) - total).abs() <= 1e-6 * total.max(1.0),
                "{v}: {h} + {rec} + {e} != {total}"
            );
        }
    }
    // The null run of the same workload and load gives the other row its excess.
    assert_eq!(rows[0]["cpu_us_per_op_over_null"], "");
    let over = num(&rows[1], "cpu_us_per_op_over_null");
    let diff = num(&rows[1], "cpu_us_per_op") - num(&rows[0], "cpu_us_per_op");
    assert!((over - diff).abs() < 1e-9, "{over} vs {diff}");
}

#[test]
fn coalescing_out_of_range_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for bad in ["-1", "20000", "nan"] {
        snapbench()
            .args(["run", "--engine", "null", "--coalesce-us", bad])
            .arg("--dir")
            .arg(tmp.path().join("data"))
            .arg("--out")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicates::str::contains("coalesce_us"));
        assert!(!out.exists());
    }
}

#[test]
fn a_coalesced_pass_at_the_windows_end_handles_everything_due() {
    // 768 matches at 128 Hz with 10 ms wake-ups: about 980 snapshots are due at each pass, more
    // than one pass takes (256); the window's last pass finds more than that unless it falls
    // within 2.6 ms of the end, so four repeats miss it with a chance of 0.5 %.
    let rows = run_ok(
        "--engine null --workload fps-128tick --matches 768 --coalesce-us 10000 \
         --repeat 4 --duration 1 --warmup 0.3",
    );
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["status"], "ok", "{}", r["error"]);
        assert_eq!(r["not_completed"], "0", "{r:?}");
        assert_eq!(num(r, "ops"), num(r, "offered_ops"));
    }
}
