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

use measurement::{Measurement, Sample, Seconds};
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
    let dio_align = machine::dio_align(&run_dir)
        .map(|a| a.offset_align_bytes.max(a.mem_align_bytes) as usize)
        .unwrap_or(4096);
    if let (None, Some(f)) = (&fatal, &plan.micro_file) {
        fatal = worker::link_micro_file(f, &run_dir, plan.workers).err();
    }
    if let (None, Some(c)) = (&fatal, &plan.corpus) {
        fatal = worker::link_corpus(c, &run_dir).err();
    }
    let mem_start = machine::memory::MemStart::now();
    let shared = Arc::new(snapbench_engines::RunShared::default());
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
            let wait = next_edge
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
    let measured = Measurement::collect(&plan, outcomes, fatal, s0, s1).with_memory(mem_start);
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
