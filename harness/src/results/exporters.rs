//! One [`Exporter`] per results file (hyperfine's shape): each turns the results gathered so far
//! into the bytes of its file; [`super::ResultsDir::export`] writes them atomically.
//!
//! Column names and order come from [`SummaryRow`] and [`TimeseriesRow`] as declared; keys of
//! the JSON files are sorted (serde_json's map), so files stay comparable from run to run.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    repeat_rows, repeats_in, RepeatRow, RunResult, SummaryRow, TimeseriesRow, SCHEMA_VERSION,
};
use crate::error::ExportError;
use crate::measure::{HistKind, Intervals};

/// Produces one results file from the invocation's meta.json content and its runs so far.
pub trait Exporter {
    /// The file's path inside the results folder (some names depend on the runs).
    fn file_name(&self, runs: &[RunResult]) -> PathBuf;
    /// The file's complete content.
    fn serialize(
        &self,
        meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError>;
}

/// `meta.json`: the invocation's description (options, host, storage, build, times, status).
pub struct MetaJson;

/// `summary.csv`: one row per run, columns as [`SummaryRow`] declares them.
pub struct SummaryCsv;

/// `summary.json`: `schema_version` and every run's row with its nested `detail`.
pub struct SummaryJson;

/// `timeseries.csv`: the per-second rows of every run, run after run.
pub struct TimeseriesCsv;

/// `repeats.csv` (`--repeat`): median, min and max per configuration over its repeats so far.
pub struct RepeatsCsv;

/// `hist/RUN-KIND.hgrm`: one run's HdrHistogram percentile distribution of one op kind.
pub struct Hgrm {
    /// Index of the run in the results.
    pub run: usize,
    /// Which histogram.
    pub kind: HistKind,
}

/// `hist/RUN-KIND.hlog`: one run's HdrHistogram interval log of one op kind — one interval per
/// second of the run that completed samples of the window (the window's seconds and the drain
/// after it), each a compressed V2 histogram (values in ns), timestamps in seconds from the
/// run's start.
pub struct Hlog {
    /// Index of the run in the results.
    pub run: usize,
    /// Which histogram.
    pub kind: HistKind,
}

fn json_bytes(file: &str, v: &impl Serialize) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec_pretty(v).map_err(|source| ExportError::Json {
        file: file.to_string(),
        source,
    })
}

fn csv_bytes<'a, T: Serialize + 'a>(
    file: &str,
    rows: impl IntoIterator<Item = &'a T>,
) -> Result<Vec<u8>, ExportError> {
    let err = |source: csv::Error| ExportError::Csv {
        file: file.to_string(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| err(csv::Error::from(e.into_error())))
}

impl Exporter for MetaJson {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("meta.json")
    }
    fn serialize(
        &self,
        meta: &serde_json::Value,
        _runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        json_bytes("meta.json", meta)
    }
}

impl Exporter for SummaryCsv {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("summary.csv")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        csv_bytes::<SummaryRow>("summary.csv", runs.iter().map(|r| &r.row))
    }
}

impl Exporter for SummaryJson {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("summary.json")
    }
    fn serialize(
        &self,
        meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        let mut json = Vec::with_capacity(runs.len());
        for r in runs {
            let mut v = serde_json::to_value(&r.row).map_err(|source| ExportError::Json {
                file: "summary.json".into(),
                source,
            })?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("detail".into(), r.detail.clone());
            }
            json.push(v);
        }
        let mut doc = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "runs": json,
        });
        if repeats_in(meta) {
            let rows: Vec<&SummaryRow> = runs.iter().map(|r| &r.row).collect();
            doc["repeats"] =
                serde_json::to_value(repeat_rows(&rows)).map_err(|source| ExportError::Json {
                    file: "summary.json".into(),
                    source,
                })?;
        }
        json_bytes("summary.json", &doc)
    }
}

impl Exporter for RepeatsCsv {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("repeats.csv")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        let rows: Vec<&SummaryRow> = runs.iter().map(|r| &r.row).collect();
        csv_bytes::<RepeatRow>("repeats.csv", repeat_rows(&rows).iter())
    }
}

impl Exporter for TimeseriesCsv {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("timeseries.csv")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        csv_bytes::<TimeseriesRow>(
            "timeseries.csv",
            runs.iter().flat_map(|r| r.timeseries.iter()),
        )
    }
}

impl Exporter for Hgrm {
    fn file_name(&self, runs: &[RunResult]) -> PathBuf {
        let run_id = runs.get(self.run).map_or("", |r| r.row.run_id.as_str());
        PathBuf::from("hist").join(format!("{run_id}-{}.hgrm", self.kind.name()))
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        let hist = runs
            .get(self.run)
            .and_then(|r| r.hists.iter().find(|(k, _)| *k == self.kind))
            .map(|(_, h)| h.percentile_distribution())
            .unwrap_or_default();
        Ok(hist.into_bytes())
    }
}

impl Exporter for Hlog {
    fn file_name(&self, runs: &[RunResult]) -> PathBuf {
        let run_id = runs.get(self.run).map_or("", |r| r.row.run_id.as_str());
        PathBuf::from("hist").join(format!("{run_id}-{}.hlog", self.kind.name()))
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
        use hdrhistogram::serialization::V2DeflateSerializer;
        use std::time::Duration;
        let file = self.file_name(runs);
        let err = |e: &dyn std::fmt::Display| ExportError::Write {
            path: file.clone(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut out = Vec::new();
        let Some(r) = runs.get(self.run) else {
            return Ok(out);
        };
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder.add_comment(&format!(
            "snapbench run {} kind {}: the window's samples by the second they completed in, values in ns, timestamps in s from the run's start (timeseries.csv's second)",
            r.row.run_id,
            self.kind.name()
        ));
        // What Java HdrHistogram's HistogramLogWriter writes before the intervals.
        builder.add_comment("[Histogram log format version 1.3]");
        let mut w = builder
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| err(&e))?;
        for (sec, bytes) in r.intervals.of(self.kind) {
            let h = Intervals::decode(bytes)
                .ok_or_else(|| err(&format!("second {sec}: undecodable histogram")))?;
            w.write_histogram(&h, Duration::from_secs(*sec), Duration::from_secs(1), None)
                .map_err(|e| err(&e))?;
        }
        drop(w);
        Ok(out)
    }
}

/// Write `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::LatHist;
    use crate::results::RunStatus;

    /// summary.csv's columns, in order, as notebooks and tests read them.
    const SUMMARY_COLUMNS: &str = "run_id,engine,variant,workload,workers,duration_s,status,ops,bytes,errors,ops_per_s,mib_per_s,lat_p50_us,lat_p99_us,lat_p999_us,lat_max_us,ack_p50_us,ack_p99_us,ack_max_us,lat_samples,cpu_user_s,cpu_sys_s,sys_cpu_busy_s,io_ops,io_bytes,saturated,offered_ops,io_syncs,io_write_p99_us,io_sync_p99_us,cpu_cores,cpu_us_per_op,max_lag_ms,disk_reads,disk_read_bytes,disk_writes,disk_write_bytes,durability,seed,matches_started,matches_sealed,reads,read_bytes,reads_per_s,read_ttfb_p50_us,read_ttfb_p99_us,read_full_p50_us,read_full_p99_us,read_full_max_us,io_read_p99_us,tail_reads,read_tail_p99_us,read_errors,reads_verified,reads_dropped,reads_no_target,prefill_matches,prefill_bytes,prefill_s,error,matches,tick_hz,record_hz,repeat,config_id,sys_cpu_steal_s,noisy,cpu_worker_s,cpu_pool_s,cpu_iowq_s,cpu_sqpoll_s,cpu_other_s,ctx_voluntary,ctx_involuntary,mem_peak_rss_bytes,mem_bytes_per_match,disk_busy_ms,disk_avg_queue_depth,disk_write_amp,offered_ops_per_s,not_completed,stopped_early,ack_samples,io_write_samples,io_sync_samples,io_read_samples,read_ttfb_samples,read_full_samples,read_tail_samples,worker_util,harness_us_per_op,recorder_us_per_op,engine_us_per_op,cpu_us_per_op_over_null,harness_sleep_us_per_op,snapshots_framed,crc_bytes,copy_bytes,timers_fired,hist_records,harness_sleeps,passes,tail,prealloc";

    /// timeseries.csv's columns, in order.
    const TIMESERIES_COLUMNS: &str =
        "run_id,second,phase,ops,mib,io_ops,errors,lat_p50_us,lat_p99_us,lat_max_us,max_lag_ms,\
         cpu_cores,sys_cpu_busy_cores,sys_cpu_steal_cores";

    fn run(id: &str, status: RunStatus, seconds: u64) -> RunResult {
        let mut h = LatHist::new();
        h.record_ns(5_000);
        h.record_ns(9_000);
        RunResult {
            row: SummaryRow {
                run_id: id.into(),
                engine: "null".into(),
                status,
                ops: 2,
                lat_p99_us: Some(9.0),
                error: if status == RunStatus::Failed {
                    "engine null: write m0000000000000001.snap at offset 4096: boom".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
            detail: serde_json::json!({"notes": ["n"]}),
            timeseries: (0..seconds)
                .map(|second| TimeseriesRow {
                    run_id: id.into(),
                    second,
                    phase: "measured",
                    ops: 1,
                    mib: 0.5,
                    io_ops: 1,
                    errors: 0,
                    lat_p50_us: Some(5.0),
                    lat_p99_us: None,
                    lat_max_us: Some(9.0),
                    max_lag_ms: 0.0,
                    cpu_cores: Some(0.25),
                    sys_cpu_busy_cores: Some(1.5),
                    sys_cpu_steal_cores: None,
                })
                .collect(),
            hists: vec![(HistKind::Lat, h), (HistKind::Ack, LatHist::new())],
            intervals: Intervals::default(),
        }
    }

    fn text(e: &dyn Exporter, runs: &[RunResult]) -> String {
        String::from_utf8(e.serialize(&serde_json::Value::Null, runs).unwrap()).unwrap()
    }

    #[test]
    fn run_status_strings() {
        let expect = ["failed", "interrupted", "saturated", "ok"];
        for (s, name) in RunStatus::ALL.into_iter().zip(expect) {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(
                format!("[{s:<12}]"),
                format!("[{name:<12}]"),
                "pads like a str"
            );
        }
        assert_eq!(RunStatus::default(), RunStatus::Ok);
        assert_eq!(
            RunStatus::from_flags(true, true, true),
            RunStatus::Failed,
            "failure wins"
        );
        assert_eq!(
            RunStatus::from_flags(false, true, true),
            RunStatus::Interrupted
        );
        assert_eq!(
            RunStatus::from_flags(false, false, true),
            RunStatus::Saturated
        );
        assert_eq!(RunStatus::from_flags(false, false, false), RunStatus::Ok);
    }

    #[test]
    fn summary_csv_keeps_its_columns_and_writes_status_strings() {
        let runs = [
            run("01-null", RunStatus::Ok, 0),
            run("02-null", RunStatus::Failed, 0),
            run("03-null", RunStatus::Saturated, 0),
            run("04-null", RunStatus::Interrupted, 0),
        ];
        let csv = text(&SummaryCsv, &runs);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(SUMMARY_COLUMNS));
        let mut rd = csv::Reader::from_reader(csv.as_bytes());
        let status = rd
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "status")
            .unwrap();
        let got: Vec<String> = rd
            .records()
            .map(|r| r.unwrap()[status].to_string())
            .collect();
        assert_eq!(got, ["ok", "failed", "saturated", "interrupted"]);
        assert!(csv.contains("at offset 4096: boom"), "{csv}");
        assert_eq!(SummaryCsv.file_name(&runs), PathBuf::from("summary.csv"));
    }

    #[test]
    fn summary_json_nests_detail_under_each_row() {
        let runs = [run("01-null", RunStatus::Ok, 0)];
        let v: serde_json::Value = serde_json::from_str(&text(&SummaryJson, &runs)).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        let r = &v["runs"][0];
        assert_eq!(r["status"], "ok");
        assert_eq!(r["run_id"], "01-null");
        assert_eq!(r["detail"]["notes"][0], "n");
        let keys: Vec<&str> = r
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "detail")
            .collect();
        let mut columns: Vec<&str> = SUMMARY_COLUMNS.split(',').collect();
        columns.sort_unstable();
        assert_eq!(keys, columns, "the row's keys are summary.csv's columns");
    }

    #[test]
    fn timeseries_csv_runs_after_runs() {
        let runs = [
            run("01-null", RunStatus::Ok, 2),
            run("02-null", RunStatus::Ok, 1),
        ];
        let csv = text(&TimeseriesCsv, &runs);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], TIMESERIES_COLUMNS);
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(
            lines[1].starts_with("01-null,0,measured,1,0.5,1,0,5.0,,9.0,"),
            "{csv}"
        );
        assert!(lines[3].starts_with("02-null,0,"), "{csv}");
        assert!(lines[1].ends_with(",0.25,1.5,"), "{csv}");
        assert_eq!(text(&TimeseriesCsv, &[]), "", "no rows, no header");
    }

    #[test]
    fn hgrm_names_the_run_and_kind() {
        let runs = [
            run("01-null", RunStatus::Ok, 0),
            run("02-x", RunStatus::Ok, 0),
        ];
        let e = Hgrm {
            run: 1,
            kind: HistKind::Lat,
        };
        assert_eq!(e.file_name(&runs), PathBuf::from("hist/02-x-lat.hgrm"));
        let body = text(&e, &runs);
        assert_eq!(body, runs[1].hists[0].1.percentile_distribution());
        assert!(body.contains("Value"), "{body}");
    }

    /// An `.hlog` read back with the crate's own reader: (start s, duration s, histogram).
    pub(crate) fn read_hlog(bytes: &[u8]) -> Vec<(f64, f64, hdrhistogram::Histogram<u64>)> {
        use base64::Engine as _;
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        use hdrhistogram::serialization::Deserializer;
        IntervalLogIterator::new(bytes)
            .filter_map(|e| match e.unwrap() {
                LogEntry::Interval(i) => Some(i),
                _ => None,
            })
            .map(|i| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(&mut std::io::Cursor::new(raw))
                    .unwrap();
                (
                    i.start_timestamp().as_secs_f64(),
                    i.duration().as_secs_f64(),
                    h,
                )
            })
            .collect()
    }

    #[test]
    fn hlog_has_one_interval_per_second_that_merge_to_the_run() {
        use crate::measure::{SecondHists, Stats};
        // Two workers over three seconds: each second's ticks merged, then compressed, as the
        // main thread does; second 3 recorded nothing.
        let mut all = Stats::default();
        let mut intervals = Intervals::default();
        for sec in [1u64, 2, 4] {
            let mut merged = Default::default();
            for worker in 0..2u64 {
                let mut w = Stats {
                    seconds: SecondHists::on(),
                    ..Default::default()
                };
                for i in 0..(100 * sec + worker) {
                    w.record(HistKind::Ack, 1_000 + i * 997 * sec);
                }
                all.merge(&w);
                SecondHists::merge_into(&mut merged, &w.seconds.take());
            }
            intervals.push(sec, &merged);
        }
        let mut r = run("01-null", RunStatus::Ok, 0);
        r.hists = vec![(HistKind::Ack, all.hists[HistKind::Ack as usize].clone())];
        r.intervals = intervals;
        let e = Hlog {
            run: 0,
            kind: HistKind::Ack,
        };
        let runs = [r];
        assert_eq!(e.file_name(&runs), PathBuf::from("hist/01-null-ack.hlog"));
        let bytes = e.serialize(&serde_json::Value::Null, &runs).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("#snapbench run 01-null kind ack"),
            "{text}"
        );
        let read = read_hlog(&bytes);
        let spans: Vec<(f64, f64)> = read.iter().map(|(s, d, _)| (*s, *d)).collect();
        assert_eq!(spans, [(1.0, 1.0), (2.0, 1.0), (4.0, 1.0)]);
        let counts: Vec<u64> = read.iter().map(|(_, _, h)| h.len()).collect();
        assert_eq!(counts, [201, 401, 801]);
        let mut merged = read[0].2.clone();
        for (_, _, h) in &read[1..] {
            merged.add(h).unwrap();
        }
        let whole = runs[0].hists[0].1.histogram();
        assert_eq!(merged.len(), whole.len());
        for q in [0.5, 0.99, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                whole.value_at_quantile(q),
                "q={q}"
            );
        }
        // Samples of a kind no second recorded: a valid log without intervals.
        let e = Hlog {
            run: 0,
            kind: HistKind::Lat,
        };
        let bytes = e.serialize(&serde_json::Value::Null, &runs).unwrap();
        assert!(read_hlog(&bytes).is_empty());
    }

    #[test]
    fn meta_json_is_the_value_pretty_printed() {
        let meta = serde_json::json!({"schema_version": 1, "status": "running"});
        let bytes = MetaJson.serialize(&meta, &[]).unwrap();
        assert_eq!(bytes, serde_json::to_vec_pretty(&meta).unwrap());
        assert_eq!(MetaJson.file_name(&[]), PathBuf::from("meta.json"));
    }

    #[test]
    fn atomic_write_leaves_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.csv");
        write_atomic(&path, b"a\n").unwrap();
        write_atomic(&path, b"b\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["summary.csv"]);
    }
}
