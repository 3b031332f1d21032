//! Results that describe themselves: `meta.json`, `summary.csv` / `summary.json`,
//! `timeseries.csv` and `hist/RUN-KIND.hgrm`, each rewritten atomically (temporary name, then
//! rename) after every run, so a later failure loses nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::ExportError;
use crate::measure::{HistKind, LatHist};

mod exporters;
pub use exporters::{
    write_atomic, Exporter, Hgrm, MetaJson, SummaryCsv, SummaryJson, TimeseriesCsv,
};

/// Version of the results layout.
pub const SCHEMA_VERSION: u32 = 1;

/// How one run ended: the `status` column of summary.csv (and key of summary.json).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The run covered its window and kept up with the offered load.
    #[default]
    Ok,
    /// Lag behind schedule exceeded `--lag-limit-ms`: the engine could not keep up.
    Saturated,
    /// An I/O error (beyond `--max-errors`), a worker failure or a replay read that failed
    /// verification; the invocation exits with status 1.
    Failed,
    /// Cut short by SIGINT or SIGTERM; what was gathered is kept.
    Interrupted,
}

impl RunStatus {
    /// Every status, in order of precedence (a failed run that was also interrupted is failed).
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Saturated,
        RunStatus::Ok,
    ];

    /// The status as written in results files.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Saturated => "saturated",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The status of a run from what happened in it (failure beats interruption beats
    /// saturation).
    pub fn from_flags(failed: bool, interrupted: bool, saturated: bool) -> RunStatus {
        if failed {
            RunStatus::Failed
        } else if interrupted {
            RunStatus::Interrupted
        } else if saturated {
            RunStatus::Saturated
        } else {
            RunStatus::Ok
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that table columns (`{:<12}`) line up as they did with strings.
        f.pad(self.as_str())
    }
}

/// One row of summary.csv: one run.
#[derive(Clone, Debug, Serialize, Default)]
pub struct SummaryRow {
    /// `NN-variant`.
    pub run_id: String,
    /// Engine name.
    pub engine: String,
    /// Engine variant with its non-default knobs.
    pub variant: String,
    /// Workload name.
    pub workload: String,
    /// Worker threads.
    pub workers: u32,
    /// Measured window actually covered, s.
    pub duration_s: f64,
    /// ok | saturated | failed | interrupted.
    pub status: RunStatus,
    /// Snapshots written (DS) / I/Os completed (micro) in the window.
    pub ops: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// I/O errors.
    pub errors: u64,
    /// ops / duration.
    pub ops_per_s: f64,
    /// bytes / duration in MiB/s.
    pub mib_per_s: f64,
    /// Write (DS) or I/O (micro) latency percentiles, µs.
    pub lat_p50_us: Option<f64>,
    /// 99th percentile.
    pub lat_p99_us: Option<f64>,
    /// 99.9th percentile.
    pub lat_p999_us: Option<f64>,
    /// Maximum.
    pub lat_max_us: Option<f64>,
    /// Durable-ack latency percentiles (DS), µs.
    pub ack_p50_us: Option<f64>,
    /// 99th percentile.
    pub ack_p99_us: Option<f64>,
    /// Maximum.
    pub ack_max_us: Option<f64>,
    /// Latency samples.
    pub lat_samples: u64,
    /// Process user CPU in the window (getrusage, all threads incl. kernel helpers), s.
    pub cpu_user_s: Option<f64>,
    /// Process system CPU in the window, s.
    pub cpu_sys_s: Option<f64>,
    /// System-wide busy CPU in the window (/proc/stat), s.
    pub sys_cpu_busy_s: Option<f64>,
    /// Engine-level I/Os (reads and writes) in the window.
    pub io_ops: u64,
    /// Their bytes (including O_DIRECT padding and tail rewrites).
    pub io_bytes: u64,
    /// Lag behind schedule exceeded the limit.
    pub saturated: bool,
    /// Offered snapshots in the window (DS).
    pub offered_ops: u64,
    /// Engine-level syncs in the window.
    pub io_syncs: u64,
    /// Engine write latency p99 (submit → completion), µs.
    pub io_write_p99_us: Option<f64>,
    /// Engine sync latency p99, µs.
    pub io_sync_p99_us: Option<f64>,
    /// Process CPU cores used on average: (user + sys) / duration.
    pub cpu_cores: Option<f64>,
    /// Process CPU µs per op.
    pub cpu_us_per_op: Option<f64>,
    /// Largest lag behind schedule, ms.
    pub max_lag_ms: f64,
    /// Device reads in the window (/proc/diskstats of the disk under --dir).
    pub disk_reads: Option<u64>,
    /// Device read bytes.
    pub disk_read_bytes: Option<u64>,
    /// Device writes.
    pub disk_writes: Option<u64>,
    /// Device write bytes.
    pub disk_write_bytes: Option<u64>,
    /// Durability policy (DS).
    pub durability: String,
    /// Seed.
    pub seed: u64,
    /// Logs created / sealed (DS).
    pub matches_started: u64,
    /// Logs sealed and closed.
    pub matches_sealed: u64,
    /// Replay reads completed whose intended time lies in the window (DS with a read side):
    /// one-shot reads and live viewers' catch-ups.
    pub reads: u64,
    /// Bytes those reads delivered (their ranges, without block padding).
    pub read_bytes: u64,
    /// Replay reads per second of the window.
    pub reads_per_s: f64,
    /// Time to first byte of replay reads, from their intended time, µs.
    pub read_ttfb_p50_us: Option<f64>,
    /// 99th percentile.
    pub read_ttfb_p99_us: Option<f64>,
    /// Time to the whole replay (live: to the edge published at the request), µs.
    pub read_full_p50_us: Option<f64>,
    /// 99th percentile.
    pub read_full_p99_us: Option<f64>,
    /// Maximum.
    pub read_full_max_us: Option<f64>,
    /// Engine read latency p99 (submit → completion), µs.
    pub io_read_p99_us: Option<f64>,
    /// Live viewers' follow-up reads in the window.
    pub tail_reads: u64,
    /// Live viewers: publish → read p99, µs.
    pub read_tail_p99_us: Option<f64>,
    /// Reads whose data failed verification (each named with file and offset in summary.json).
    pub read_errors: u64,
    /// Whether read data was verified (false for engines that do not store data, e.g. null).
    pub reads_verified: bool,
    /// Reads dropped because a worker's queue of waiting reads was full.
    pub reads_dropped: u64,
    /// Reads that found no match to read.
    pub reads_no_target: u64,
    /// Finished matches written before the window (prefill), or adopted from a corpus.
    pub prefill_matches: u64,
    /// Their bytes.
    pub prefill_bytes: u64,
    /// Seconds the prefill took (longest worker).
    pub prefill_s: f64,
    /// First error or fatal problem, if any.
    pub error: String,
    // -- issue 10: what a run records --
    /// System-wide CPU stolen by the hypervisor over the window, s (not in `sys_cpu_busy_s`).
    pub sys_cpu_steal_s: Option<f64>,
    /// Steal exceeded 5 % of the window's system CPU (busy + steal): compare with care.
    pub noisy: bool,
    /// CPU of the worker threads over the window, s.
    pub cpu_worker_s: Option<f64>,
    /// CPU of engine helper threads (buffered pool, tokio runtime/blocking), s.
    pub cpu_pool_s: Option<f64>,
    /// CPU of io_uring io-wq workers, s.
    pub cpu_iowq_s: Option<f64>,
    /// CPU of io_uring SQPOLL threads, s.
    pub cpu_sqpoll_s: Option<f64>,
    /// CPU of the other threads (main thread and the rest), s.
    pub cpu_other_s: Option<f64>,
    /// Voluntary context switches of the process's threads over the window.
    pub ctx_voluntary: Option<u64>,
    /// Involuntary context switches of the process's threads over the window.
    pub ctx_involuntary: Option<u64>,
    /// Peak RSS of the run (VmHWM after a reset at its start), bytes; None when the mark could
    /// not be reset.
    pub mem_peak_rss_bytes: Option<u64>,
    /// (peak RSS − RSS at the run's start) ÷ the workload's matches, bytes.
    pub mem_bytes_per_match: Option<f64>,
    /// Milliseconds the disk under `--dir` had I/O in flight over the window (io_ticks).
    pub disk_busy_ms: Option<u64>,
    /// Its average queue depth over the window (time_in_queue ÷ wall).
    pub disk_avg_queue_depth: Option<f64>,
    /// Device bytes written ÷ payload bytes (`bytes`): padding, rewrites, preallocation,
    /// journal, and any other writer on that disk.
    pub disk_write_amp: Option<f64>,
}

/// One per-second row of timeseries.csv.
#[derive(Clone, Debug, Serialize)]
pub struct TimeseriesRow {
    /// Run.
    pub run_id: String,
    /// Second since the run started.
    pub second: u64,
    /// warmup | measured | after.
    pub phase: &'static str,
    /// Ops in that second.
    pub ops: u64,
    /// MiB in that second.
    pub mib: f64,
    /// Engine I/Os.
    pub io_ops: u64,
    /// Errors.
    pub errors: u64,
    /// Latency percentiles of that second, µs.
    pub lat_p50_us: Option<f64>,
    /// p99.
    pub lat_p99_us: Option<f64>,
    /// max.
    pub lat_max_us: Option<f64>,
    /// Largest lag behind schedule, ms.
    pub max_lag_ms: f64,
}

/// Everything one finished run leaves behind.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The summary row.
    pub row: SummaryRow,
    /// Nested detail for summary.json (options, caps, latency summaries, notes).
    pub detail: serde_json::Value,
    /// Per-second rows.
    pub timeseries: Vec<TimeseriesRow>,
    /// Histograms by kind.
    pub hists: Vec<(HistKind, LatHist)>,
}

/// The results folder being written: every file is produced by an [`Exporter`] and written
/// atomically by [`ResultsDir::export`], after every run.
pub struct ResultsDir {
    /// Its path.
    pub path: PathBuf,
    /// meta.json content (updated as runs finish).
    pub meta: serde_json::Value,
    /// Runs so far.
    pub runs: Vec<RunResult>,
}

impl ResultsDir {
    /// Create the folder (and hist/) and write meta.json.
    pub fn create(path: PathBuf, meta: serde_json::Value) -> Result<ResultsDir, ExportError> {
        let hist = path.join("hist");
        std::fs::create_dir_all(&hist)
            .map_err(|source| ExportError::Write { path: hist, source })?;
        let r = ResultsDir {
            path,
            meta,
            runs: Vec::new(),
        };
        r.write_meta()?;
        Ok(r)
    }

    /// Serialise one file and write it atomically: the one place results reach the disk.
    pub fn export(&self, e: &dyn Exporter) -> Result<(), ExportError> {
        let bytes = e.serialize(&self.meta, &self.runs)?;
        let path = self.path.join(e.file_name(&self.runs));
        write_atomic(&path, &bytes).map_err(|source| ExportError::Write { path, source })
    }

    /// Rewrite meta.json.
    pub fn write_meta(&self) -> Result<(), ExportError> {
        self.export(&MetaJson)
    }

    /// Add a run and rewrite every results file: its histograms, then the tables.
    pub fn push(&mut self, run: RunResult) -> Result<(), ExportError> {
        let index = self.runs.len();
        let kinds: Vec<HistKind> = run
            .hists
            .iter()
            .filter(|(_, h)| h.count() > 0)
            .map(|(k, _)| *k)
            .collect();
        self.runs.push(run);
        for kind in kinds {
            self.export(&Hgrm { run: index, kind })?;
        }
        self.export(&SummaryCsv)?;
        self.export(&SummaryJson)?;
        self.export(&TimeseriesCsv)
    }
}

/// Whether `path` already holds results (meta.json or summary.csv).
pub fn holds_results(path: &Path) -> bool {
    path.join("meta.json").exists() || path.join("summary.csv").exists()
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ` (and the compact `YYYYMMDDTHHMMSSZ` form).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_from_unix(secs)
}

/// Format unix seconds as (ISO 8601, compact) UTC.
pub fn utc_from_unix(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(utc_from_unix(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(utc_from_unix(1_700_000_000).0, "2023-11-14T22:13:20Z");
        assert_eq!(utc_from_unix(951_782_400).1, "20000229T000000Z");
    }

    #[test]
    fn results_are_rewritten_after_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let mut r = ResultsDir::create(path.clone(), serde_json::json!({"x": 1})).unwrap();
        assert!(holds_results(&path));
        let mut h = LatHist::new();
        h.record_ns(5000);
        for i in 0..2 {
            r.push(RunResult {
                row: SummaryRow {
                    run_id: format!("0{i}-null"),
                    status: RunStatus::Ok,
                    ops: 10,
                    ..Default::default()
                },
                detail: serde_json::json!({}),
                timeseries: vec![],
                hists: vec![(HistKind::Lat, h.clone())],
            })
            .unwrap();
            let text = std::fs::read_to_string(path.join("summary.csv")).unwrap();
            assert_eq!(text.lines().count(), 2 + i, "header + one row per run");
        }
        let text = std::fs::read_to_string(path.join("summary.csv")).unwrap();
        let header = text.lines().next().unwrap();
        for col in [
            "run_id",
            "engine",
            "variant",
            "workload",
            "workers",
            "duration_s",
            "status",
            "ops",
            "bytes",
            "errors",
            "ops_per_s",
            "mib_per_s",
            "lat_p50_us",
            "lat_p99_us",
            "lat_p999_us",
            "lat_max_us",
            "ack_p50_us",
            "ack_p99_us",
            "ack_max_us",
            "lat_samples",
            "cpu_user_s",
            "cpu_sys_s",
            "sys_cpu_busy_s",
            "io_ops",
            "io_bytes",
            "saturated",
        ] {
            assert!(header.split(',').any(|c| c == col), "missing column {col}");
        }
        assert!(path.join("hist/01-null-lat.hgrm").exists());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.join("summary.json")).unwrap()).unwrap();
        assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    }
}
