//! Results that describe themselves: `meta.json`, `summary.csv` / `summary.json`,
//! `timeseries.csv` and `hist/RUN-KIND.hgrm`, each rewritten atomically (temporary name, then
//! rename) after every run, so a later failure loses nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ExportError;
use crate::measure::{HistKind, Intervals, LatHist};

mod exporters;
pub use exporters::{
    write_atomic, Exporter, Hgrm, Hlog, MetaJson, RepeatsCsv, SummaryCsv, SummaryJson,
    TimeseriesCsv,
};

/// Version of the results layout.
pub const SCHEMA_VERSION: u32 = 1;

/// How one run ended: the `status` column of summary.csv (and key of summary.json).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// One row of summary.csv: one run. (Read back by `snapbench report`: a column an older
/// folder lacks is left at its default.)
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(default)]
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
    // -- issue 10: a row says what it ran --
    /// Concurrent matches (DS; empty for micro runs).
    pub matches: Option<u32>,
    /// Server tick rate, Hz (DS).
    pub tick_hz: Option<f64>,
    /// Snapshots per second per match sent to the recorder, Hz (DS).
    pub record_hz: Option<f64>,
    /// Which repeat of its configuration this run is, from 1 (`--repeat`).
    pub repeat: u32,
    /// The configuration: the run id without its repeat (`01-uring-matches250`); rows that
    /// differ only in `repeat` share it.
    pub config_id: String,
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
    // -- issue 10: bounded runs --
    /// Snapshots/s the schedule intended in the window (micro: the I/Os completed, closed loop).
    pub offered_ops_per_s: f64,
    /// Snapshots intended in the window and not written when the bounded drain ended; each
    /// is in the latency histogram at its lower bound (drain end − intended time).
    pub not_completed: u64,
    /// Lag passed `--lag-limit-ms` and the run stopped before its window ended.
    pub stopped_early: bool,
    // -- issue 10: histograms --
    /// Samples behind the ack percentiles (`ack_*_us`): snapshots intended in the window and
    /// acknowledged.
    pub ack_samples: u64,
    /// Samples behind `io_write_p99_us`: engine writes submitted in the window and completed.
    pub io_write_samples: u64,
    /// Samples behind `io_sync_p99_us`.
    pub io_sync_samples: u64,
    /// Samples behind `io_read_p99_us`.
    pub io_read_samples: u64,
    /// Samples behind `read_ttfb_*_us`.
    pub read_ttfb_samples: u64,
    /// Samples behind `read_full_*_us`.
    pub read_full_samples: u64,
    /// Samples behind `read_tail_p99_us`.
    pub read_tail_samples: u64,
    // -- issue 10: search --
    /// Utilisation of the busiest DS worker: 1 − (time it waited for the schedule or for
    /// completions ÷ the window it ran); None for micro runs.
    pub worker_util: Option<f64>,
    // -- issue 11: harness, recorder and engine cost apart (docs/harness-cost.md) --
    /// CPU µs per snapshot of the harness: generator, lag and histogram records, its sleeps,
    /// and the main thread (what a real recorder would not do); None for micro runs.
    pub harness_us_per_op: Option<f64>,
    /// CPU µs per snapshot of the recorder: the log writer's framing, CRC, staging, timers,
    /// the copy into engine buffers, completion bookkeeping (what every recorder does).
    pub recorder_us_per_op: Option<f64>,
    /// The rest of `cpu_us_per_op`: the engine's submits, waits, reaps and helper threads.
    pub engine_us_per_op: Option<f64>,
    /// `cpu_us_per_op` minus the median of the null runs' of the same workload, matches,
    /// rates, durability and workers in this results folder (None without such a run).
    pub cpu_us_per_op_over_null: Option<f64>,
    /// Of `harness_us_per_op`, the CPU of the harness's sleeps (syscall, timer, wake-up).
    pub harness_sleep_us_per_op: Option<f64>,
    /// Data frames the writer staged over the whole run.
    pub snapshots_framed: Option<u64>,
    /// Bytes CRC32C ran over (frame headers and payloads).
    pub crc_bytes: Option<u64>,
    /// Staged bytes copied into engine buffers.
    pub copy_bytes: Option<u64>,
    /// Writer timers fired (flush deadlines, interval syncs).
    pub timers_fired: Option<u64>,
    /// Histogram samples recorded.
    pub hist_records: Option<u64>,
    /// Times a worker slept in the harness (nothing in flight).
    pub harness_sleeps: Option<u64>,
    /// Passes the workers made over their schedules (each handles every event due).
    pub passes: Option<u64>,
    /// O_DIRECT logs' tail block, `rewrite` or `pad` (DS; empty for micro).
    pub tail: String,
    /// How logs got their blocks: `fallocate`, `zeroed` or `write_zeroes` (DS; empty for micro).
    pub prealloc: String,
}

/// Fill `cpu_us_per_op_over_null` of every DS row that has a null run of the same workload,
/// matches, tick and record rates, durability and workers among `rows` (their median; null rows
/// themselves get none).
pub fn fill_over_null(rows: &mut [&mut SummaryRow]) {
    let same = |a: &SummaryRow, b: &SummaryRow| {
        a.workload == b.workload
            && a.matches == b.matches
            && a.tick_hz == b.tick_hz
            && a.record_hz == b.record_hz
            && a.durability == b.durability
            && a.workers == b.workers
    };
    let medians: Vec<Option<f64>> = rows
        .iter()
        .map(|r| {
            if r.engine == "null" || r.matches.is_none() {
                return None;
            }
            let nulls: Vec<f64> = rows
                .iter()
                .filter(|n| n.engine == "null" && n.status == RunStatus::Ok && same(n, r))
                .filter_map(|n| n.cpu_us_per_op)
                .collect();
            median_min_max(&nulls).map(|(m, _, _)| m)
        })
        .collect();
    for (r, null) in rows.iter_mut().zip(medians) {
        r.cpu_us_per_op_over_null = match (r.cpu_us_per_op, null) {
            (Some(c), Some(n)) => Some(c - n),
            _ => None,
        };
    }
}

/// Median, min and max of `values` (NaN ignored); the median of an even count is the mean of
/// the two middle values. None when no value is left.
pub fn median_min_max(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

/// One row of repeats.csv: one configuration over its repeats (`--repeat`).
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct RepeatRow {
    /// The configuration ([`SummaryRow::config_id`]).
    pub config_id: String,
    /// Engine variant.
    pub variant: String,
    /// Workload name.
    pub workload: String,
    /// Concurrent matches (DS).
    pub matches: Option<u32>,
    /// Tick rate, Hz (DS).
    pub tick_hz: Option<f64>,
    /// Record rate, Hz (DS).
    pub record_hz: Option<f64>,
    /// Durability policy (DS).
    pub durability: String,
    /// Worker threads.
    pub workers: u32,
    /// Runs of this configuration so far.
    pub n: u32,
    /// Of those, runs whose status is not `ok` (their figures are included).
    pub not_ok: u32,
    /// Completed ops per second: median over the repeats.
    pub ops_per_s_median: Option<f64>,
    /// Minimum.
    pub ops_per_s_min: Option<f64>,
    /// Maximum.
    pub ops_per_s_max: Option<f64>,
    /// Write latency p99, µs: median over the repeats.
    pub lat_p99_us_median: Option<f64>,
    /// Minimum.
    pub lat_p99_us_min: Option<f64>,
    /// Maximum.
    pub lat_p99_us_max: Option<f64>,
    /// Durable-ack latency p99, µs: median over the repeats.
    pub ack_p99_us_median: Option<f64>,
    /// Minimum.
    pub ack_p99_us_min: Option<f64>,
    /// Maximum.
    pub ack_p99_us_max: Option<f64>,
    /// Process CPU cores: median over the repeats.
    pub cpu_cores_median: Option<f64>,
    /// Minimum.
    pub cpu_cores_min: Option<f64>,
    /// Maximum.
    pub cpu_cores_max: Option<f64>,
    /// Process CPU µs per op: median over the repeats.
    pub cpu_us_per_op_median: Option<f64>,
    /// Minimum.
    pub cpu_us_per_op_min: Option<f64>,
    /// Maximum.
    pub cpu_us_per_op_max: Option<f64>,
}

/// One [`RepeatRow`] per configuration of `rows`, in order of first appearance.
pub fn repeat_rows(rows: &[&SummaryRow]) -> Vec<RepeatRow> {
    let mut configs: Vec<&str> = Vec::new();
    for r in rows {
        if !configs.contains(&r.config_id.as_str()) {
            configs.push(&r.config_id);
        }
    }
    configs
        .into_iter()
        .map(|c| {
            let group: Vec<&SummaryRow> =
                rows.iter().copied().filter(|r| r.config_id == c).collect();
            let first = group[0];
            let stat = |f: &dyn Fn(&SummaryRow) -> Option<f64>| {
                let v: Vec<f64> = group.iter().filter_map(|r| f(r)).collect();
                let m = median_min_max(&v);
                (m.map(|m| m.0), m.map(|m| m.1), m.map(|m| m.2))
            };
            let ops = stat(&|r| Some(r.ops_per_s));
            let lat = stat(&|r| r.lat_p99_us);
            let ack = stat(&|r| r.ack_p99_us);
            let cores = stat(&|r| r.cpu_cores);
            let per_op = stat(&|r| r.cpu_us_per_op);
            RepeatRow {
                config_id: c.to_string(),
                variant: first.variant.clone(),
                workload: first.workload.clone(),
                matches: first.matches,
                tick_hz: first.tick_hz,
                record_hz: first.record_hz,
                durability: first.durability.clone(),
                workers: first.workers,
                n: group.len() as u32,
                not_ok: group.iter().filter(|r| r.status != RunStatus::Ok).count() as u32,
                ops_per_s_median: ops.0,
                ops_per_s_min: ops.1,
                ops_per_s_max: ops.2,
                lat_p99_us_median: lat.0,
                lat_p99_us_min: lat.1,
                lat_p99_us_max: lat.2,
                ack_p99_us_median: ack.0,
                ack_p99_us_min: ack.1,
                ack_p99_us_max: ack.2,
                cpu_cores_median: cores.0,
                cpu_cores_min: cores.1,
                cpu_cores_max: cores.2,
                cpu_us_per_op_median: per_op.0,
                cpu_us_per_op_min: per_op.1,
                cpu_us_per_op_max: per_op.2,
            }
        })
        .collect()
}

/// Whether meta.json says the invocation repeats its runs (`"repeat"` above 1): then
/// repeats.csv and summary.json's `repeats` are written.
pub fn repeats_in(meta: &serde_json::Value) -> bool {
    meta["repeat"].as_u64().is_some_and(|n| n > 1)
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
    // -- issue 10: placement (per-second CPU) --
    /// Process CPU that second, cores (all threads; io-wq and SQPOLL included).
    pub cpu_cores: Option<f64>,
    /// System-wide busy CPU that second, cores (steal excluded).
    pub sys_cpu_busy_cores: Option<f64>,
    /// System-wide CPU stolen by the hypervisor that second, cores.
    pub sys_cpu_steal_cores: Option<f64>,
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
    // -- issue 10: histograms --
    /// The same samples second by second of the window, by kind (the `.hlog` files).
    pub intervals: Intervals,
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
        let mut rows: Vec<&mut SummaryRow> = self.runs.iter_mut().map(|r| &mut r.row).collect();
        fill_over_null(&mut rows);
        for kind in kinds {
            self.export(&Hgrm { run: index, kind })?;
            self.export(&Hlog { run: index, kind })?;
        }
        self.export(&SummaryCsv)?;
        self.export(&SummaryJson)?;
        if repeats_in(&self.meta) {
            self.export(&RepeatsCsv)?;
        }
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
    fn median_min_max_of_odd_even_and_empty() {
        assert_eq!(median_min_max(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(
            median_min_max(&[4.0, 1.0, 2.0, 10.0]),
            Some((3.0, 1.0, 10.0))
        );
        assert_eq!(median_min_max(&[7.0]), Some((7.0, 7.0, 7.0)));
        assert_eq!(median_min_max(&[]), None);
        assert_eq!(median_min_max(&[f64::NAN]), None);
    }

    #[test]
    fn repeat_rows_group_by_configuration() {
        let row = |c: &str, ops: f64, p99: Option<f64>, status| SummaryRow {
            config_id: c.into(),
            variant: c.into(),
            ops_per_s: ops,
            lat_p99_us: p99,
            status,
            ..Default::default()
        };
        let rows = [
            row("01-a", 10.0, Some(1.0), RunStatus::Ok),
            row("02-b", 100.0, None, RunStatus::Ok),
            row("01-a", 30.0, Some(5.0), RunStatus::Saturated),
            row("02-b", 200.0, None, RunStatus::Ok),
            row("01-a", 20.0, Some(2.0), RunStatus::Ok),
        ];
        let refs: Vec<&SummaryRow> = rows.iter().collect();
        let g = repeat_rows(&refs);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].config_id, "01-a");
        assert_eq!((g[0].n, g[0].not_ok), (3, 1));
        assert_eq!(
            (
                g[0].ops_per_s_median,
                g[0].ops_per_s_min,
                g[0].ops_per_s_max
            ),
            (Some(20.0), Some(10.0), Some(30.0))
        );
        assert_eq!(g[0].lat_p99_us_median, Some(2.0));
        assert_eq!(g[1].ops_per_s_median, Some(150.0));
        assert_eq!(g[1].lat_p99_us_median, None);
    }

    #[test]
    fn repeats_csv_is_written_from_the_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let mut r = ResultsDir::create(path.clone(), serde_json::json!({"repeat": 3})).unwrap();
        r.push(RunResult {
            row: SummaryRow {
                run_id: "01-null-r1".into(),
                config_id: "01-null".into(),
                ops_per_s: 5.0,
                ..Default::default()
            },
            detail: serde_json::json!({}),
            timeseries: vec![],
            hists: vec![],
            intervals: Intervals::default(),
        })
        .unwrap();
        let text = std::fs::read_to_string(path.join("repeats.csv")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines().nth(1).unwrap().starts_with("01-null,"),
            "{text}"
        );
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
                intervals: Intervals::default(),
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
        assert!(!path.join("repeats.csv").exists(), "no --repeat");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.join("summary.json")).unwrap()).unwrap();
        assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    }
}
