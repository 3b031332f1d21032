//! Stage two of `snapbench run` (ripgrep's HiArgs): with a validated [`Plan`], run each plan
//! entry on its pinned workers, sample CPU and the device at the window's edges, and hand each
//! run's results to the results folder as soon as it ends.
//!
//! One job per module: [`worker`] is one worker thread's life, [`measurement`] merges what the
//! workers and the machine report, [`summary`] turns that into rows, notes and detail; the
//! exporters in [`crate::results`] write them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::EngineConfig;

use crate::driver::{self, Tick, WorkerCtx, INTERRUPTED};
use crate::error::RunError;
use crate::machine;
use crate::micro;
use crate::plan::{Plan, RunPlan, Workload};
use crate::results::{ResultsDir, RunResult, RunStatus, SummaryRow};

pub mod measurement;
pub mod summary;
pub mod worker;

use measurement::{CpuSeconds, Measurement, Sample, Seconds};
use worker::WorkerVisitor;

/// How the whole invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every run finished (ok or saturated).
    Ok,
    /// At least one run failed (I/O error or worker failure).
    Failed,
    /// Interrupted by a signal.
    Interrupted,
}

impl Ending {
    /// The invocation's status as meta.json writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::Failed => "failed",
            Ending::Interrupted => "interrupted",
        }
    }
}

/// Progress reporting for a whole invocation.
pub trait Progress {
    /// A run begins.
    fn run_started(&mut self, run: &RunPlan, n: usize, of: usize);
    /// One more second of a run, with its ops so far.
    fn second(&mut self, second: u64, ops_per_s: f64);
    /// A run ended.
    fn run_finished(&mut self, row: &SummaryRow);
    // -- issue 10: placement (progress on long runs) --
    /// Every worker has reported a second: its completions, lag and the run's p99 so far.
    fn second_report(&mut self, _report: &SecondReport) {}
}

/// One finished second of a run, for status lines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SecondReport {
    /// Seconds since the run started, this one included.
    pub elapsed_s: u64,
    /// Snapshots (DS) or I/Os (micro) completed in that second, all workers.
    pub ops: u64,
    /// Largest lag behind schedule in that second, ms.
    pub max_lag_ms: f64,
    /// p99 latency of everything completed since the run started (warm-up included), µs.
    pub p99_so_far_us: Option<f64>,
}

impl SecondReport {
    /// A status line for a log, for stderr that is not a terminal: `[2/6] 02-uring: 40/45 s,
    /// 31966 ops/s, p99 so far 104.530 ms, lag 87.6 ms` (`-` for a p99 with no samples yet).
    pub fn status_line(&self, run_label: &str, run_len_s: u64) -> String {
        let p99 = match self.p99_so_far_us {
            Some(us) => format!("{:.3}", us / 1000.0),
            None => "-".to_string(),
        };
        format!(
            "{run_label}: {}/{run_len_s} s, {} ops/s, p99 so far {p99} ms, lag {:.1} ms",
            self.elapsed_s, self.ops, self.max_lag_ms
        )
    }
}

/// Run one plan entry; never returns an error for I/O problems (they become `failed` rows).
pub fn run_one(
    plan: Arc<RunPlan>,
    root: &Path,
    disk_name: Option<&str>,
    progress: &mut dyn Progress,
) -> RunResult {
    let run_dir = root.join(&plan.run_id);
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut fatal: Option<RunError> = None;
    if let Err(source) = std::fs::create_dir_all(&run_dir) {
        fatal = Some(RunError::CreateRunDir {
            path: run_dir.clone(),
            source,
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tick_tx, tick_rx) = mpsc::sync_channel::<Tick>(1024);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), RunError>>();
    let cpus = machine::available_cpus().max(1);
    let (buf_bytes, buf_count) = match &plan.workload {
        Workload::Micro(p) => (micro::micro_buf_bytes(p), (p.iodepth as usize).max(8)),
        Workload::Ds { .. } => (driver::ds_buf_bytes(&plan), plan.queue_depth as usize),
    };
    // -- issue 10: micro -- a given file's alignment, not --dir's.
    let dio_align = machine::dio_align(plan.micro_file.as_deref().unwrap_or(&run_dir))
        .map(|a| a.offset_align_bytes.max(a.mem_align_bytes) as usize)
        .unwrap_or(4096);
    if let (None, Some(f)) = (&fatal, &plan.micro_file) {
        fatal = worker::link_micro_file(f, &run_dir, plan.workers).err();
    }
    if let (None, Some(c)) = (&fatal, &plan.corpus) {
        fatal = worker::link_corpus(c, &run_dir).err();
    }
    let mem_start = machine::memory::MemStart::now();
    let shared = Arc::new(snapbench_engines::RunShared {
        prealloc: match &plan.workload {
            crate::plan::Workload::Ds { .. } => plan.writer.prealloc,
            crate::plan::Workload::Micro(_) => Default::default(),
        },
        ..Default::default()
    });
    let mut starts = Vec::new();
    let mut handles = Vec::new();
    if fatal.is_none() {
        for w in 0..plan.workers {
            let (start_tx, start_rx) = mpsc::channel();
            starts.push(start_tx);
            let ctx = WorkerCtx {
                plan: Arc::clone(&plan),
                worker: w,
                dir: run_dir.clone(),
                stop: Arc::clone(&stop),
                ticks: tick_tx.clone(),
            };
            let cfg = EngineConfig {
                dir: run_dir.clone(),
                worker: w as usize,
                workers: plan.workers as usize,
                queue_depth: plan.queue_depth as usize,
                buf_bytes,
                buf_count,
                dio_align_bytes: dio_align,
                shared: Arc::clone(&shared),
            };
            let ready = ready_tx.clone();
            let spec = plan.engine.clone();
            let h = std::thread::Builder::new()
                .name(format!("sb-worker-{w}"))
                .spawn(move || {
                    let _ = machine::pin_current_thread(w as usize % cpus);
                    spec.visit(WorkerVisitor {
                        ctx,
                        cfg,
                        ready,
                        start: start_rx,
                    })
                });
            match h {
                Ok(h) => handles.push(h),
                Err(source) => {
                    fatal = Some(RunError::Spawn { source });
                    break;
                }
            }
        }
    }
    drop(tick_tx);
    drop(ready_tx);
    // Wait until every worker is ready (engine built, micro file laid out).
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                fatal.get_or_insert(e);
            }
            Err(_) => {
                fatal.get_or_insert(RunError::WorkerGone);
            }
        }
    }
    // -- issue 10: micro -- after layout and prefill, so what the window reads is not cached.
    let page_cache = if fatal.is_none() {
        machine::drop_before_window(plan.drop_caches, &run_dir)
    } else {
        "not dropped".to_string()
    };
    let start = Instant::now() + Duration::from_millis(2);
    for s in &starts {
        let _ = s.send(if fatal.is_none() { Some(start) } else { None });
    }
    let window_start = start + Duration::from_secs_f64(plan.warmup_s);
    let window_end = window_start + Duration::from_secs_f64(plan.duration_s);
    let mut s0: Option<Sample> = None;
    let mut s1: Option<Sample> = None;
    let mut seconds = Seconds::default();
    let mut last_progress = 0u64;
    // -- issue 10: per-second CPU, sampled here on the monitor thread, never by a worker.
    let mut cpu_seconds = CpuSeconds::new(start);
    let mut lat_so_far = crate::measure::LatHist::new();
    if fatal.is_none() {
        loop {
            let now = Instant::now();
            if s0.is_none() && now >= window_start {
                s0 = Some(Sample::take(disk_name));
            }
            if s1.is_none() && now >= window_end {
                s1 = Some(Sample::take(disk_name));
            }
            let next_edge = if s0.is_none() {
                window_start
            } else if s1.is_none() {
                window_end
            } else {
                now + Duration::from_millis(200)
            };
            cpu_seconds.poll(now);
            let wait = next_edge
                .min(cpu_seconds.next_edge())
                .saturating_duration_since(now)
                .min(Duration::from_millis(200));
            match tick_rx.recv_timeout(wait) {
                Ok(t) => {
                    let sec = t.second;
                    if let Some(ops) = seconds.add(t, plan.workers) {
                        if sec >= last_progress {
                            last_progress = sec + 1;
                            progress.second(sec + 1, ops as f64);
                        }
                        if let Some((_, merged)) = seconds.by_second.get(&sec) {
                            lat_so_far.merge(&merged.lat);
                            progress.second_report(&SecondReport {
                                elapsed_s: sec + 1,
                                ops,
                                max_lag_ms: merged.max_lag_ns as f64 / 1e6,
                                p99_so_far_us: lat_so_far.quantile_us(0.99),
                            });
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if INTERRUPTED.load(Ordering::Relaxed) && s1.is_none() && s0.is_some() {
                s1 = Some(Sample::take(disk_name));
            }
        }
    }
    let mut outcomes = Vec::new();
    for h in handles {
        match h.join() {
            Ok(o) => outcomes.push(o),
            Err(_) => {
                fatal.get_or_insert(RunError::WorkerPanicked);
            }
        }
    }
    let end_sample = Sample::take(disk_name);
    let s0 = s0.unwrap_or_else(|| end_sample.clone());
    let s1 = s1.unwrap_or(end_sample);
    let measured = Measurement::collect(&plan, outcomes, fatal, s0, s1)
        .with_memory(mem_start)
        .with_cpu_by_second(cpu_seconds.by_second)
        .with_page_cache(page_cache);
    let (by_second, intervals) = seconds.finish();
    let result = summary::summarize(&plan, measured, by_second, intervals);
    if !plan.keep_files {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

/// Run every entry of a prepared plan, writing results after each; returns how it ended, or
/// why the data folder or the results could not be written.
pub fn execute(
    plan: &Plan,
    results: &mut ResultsDir,
    progress: &mut dyn Progress,
) -> Result<Ending, RunError> {
    std::fs::create_dir_all(&plan.global.dir).map_err(|source| RunError::CreateDataDir {
        path: plan.global.dir.clone(),
        source,
    })?;
    let disk = machine::block_dev_of(&plan.global.dir).map(|b| b.name);
    let mut ending = Ending::Ok;
    let n = plan.runs.len();
    for (i, run) in plan.runs.iter().enumerate() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            ending = Ending::Interrupted;
            break;
        }
        progress.run_started(run, i + 1, n);
        let result = run_one(
            Arc::new(run.clone()),
            &plan.global.dir,
            disk.as_deref(),
            progress,
        );
        progress.run_finished(&result.row);
        match result.row.status {
            RunStatus::Failed => ending = Ending::Failed,
            RunStatus::Interrupted => ending = Ending::Interrupted,
            RunStatus::Ok | RunStatus::Saturated => {}
        }
        results.push(result)?;
        if ending == Ending::Interrupted {
            break;
        }
    }
    Ok(ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_run_second_rate_p99_and_lag() {
        let r = SecondReport {
            elapsed_s: 40,
            ops: 31966,
            max_lag_ms: 87.64,
            p99_so_far_us: Some(104_530.0),
        };
        assert_eq!(
            r.status_line("[2/6] 02-uring", 45),
            "[2/6] 02-uring: 40/45 s, 31966 ops/s, p99 so far 104.530 ms, lag 87.6 ms"
        );
        let empty = SecondReport {
            p99_so_far_us: None,
            ..r
        };
        assert!(empty
            .status_line("[1/1] 01-null", 45)
            .contains("p99 so far - ms"));
    }
}
