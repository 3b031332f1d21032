//! Stage two of `snapbench run` (ripgrep's HiArgs): with a validated [`Plan`], create the
//! results folder, run each plan entry on its pinned workers, measure CPU and the device over
//! the window, and write results after every run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::{EngineConfig, FactoryVisitor, Recorder, RecorderFactory};

use crate::driver::{self, Clock, Corpus, DsWorker, Tick, WorkerCtx, WorkerOutcome, INTERRUPTED};
use crate::machine;
use crate::measure::{HistKind, LatHist, Stats, HIST_KINDS};
use crate::micro;
use crate::plan::{BadInput, Plan, RunPlan, Workload};
use crate::results::{ResultsDir, RunResult, SummaryRow, TimeseriesRow};

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

/// Check what needs the file system (no writes): --dir is usable, engines are supported there,
/// O_DIRECT sizes fit its alignment, --out is free. Drops variants of the embedded suite that
/// this machine lacks (with a note) and fails for any other unsupported variant.
pub fn prepare(plan: &mut Plan) -> Result<(), BadInput> {
    let dir = &plan.global.dir;
    if dir.exists() && !dir.is_dir() {
        return Err(BadInput(format!(
            "--dir {} is not a directory; point --dir at a directory (it is created if missing)",
            dir.display()
        )));
    }
    let base = snapbench_engines::buffered::nearest_existing(dir);
    if !base.is_dir() {
        return Err(BadInput(format!(
            "--dir {}: its nearest existing ancestor {} is not a directory",
            dir.display(),
            base.display()
        )));
    }
    // SAFETY: access() only reads the NUL-terminated path.
    let writable = std::ffi::CString::new(base.as_os_str().as_encoded_bytes())
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0)
        .unwrap_or(false);
    if !writable {
        return Err(BadInput(format!(
            "--dir {}: {} is not writable; choose a directory you can write to",
            dir.display(),
            base.display()
        )));
    }
    let mut kept = Vec::new();
    for run in plan.runs.drain(..) {
        match run.engine.check_supported(&base) {
            Ok(()) => kept.push(run),
            Err(why) if plan.embedded => plan.skipped.push(why),
            Err(why) => return Err(BadInput(why)),
        }
    }
    if kept.is_empty() {
        return Err(BadInput(format!(
            "no engine variant of the suite can run here: {}",
            plan.skipped.join("; ")
        )));
    }
    for (i, r) in kept.iter_mut().enumerate() {
        r.index = i + 1;
        r.run_id = format!(
            "{:02}-{}",
            i + 1,
            crate::plan::sanitize(&r.engine.variant())
        );
    }
    plan.runs = kept;
    if plan.runs.iter().any(|r| r.engine.direct()) {
        let align = machine::dio_align(&base).map_err(|e| {
            BadInput(format!(
                "--dir {}: direct I/O is not possible there: {e}",
                dir.display()
            ))
        })?;
        let need = u64::from(align.offset_align_bytes.max(align.mem_align_bytes)).max(1);
        for r in plan.runs.iter().filter(|r| r.engine.direct()) {
            if let Workload::Micro(p) = &r.workload {
                if u64::from(p.bs_bytes) % need != 0 || p.file_size_bytes % need != 0 {
                    return Err(BadInput(format!(
                        "run {}: bs {} (and file_size) must be a multiple of {need} bytes with direct=true on {} ({}); use e.g. bs = 4k",
                        r.run_id, p.bs_bytes, base.display(), align.source
                    )));
                }
            }
            if need > crate::snaplog::BLOCK_BYTES as u64 {
                return Err(BadInput(format!(
                    "run {}: direct I/O alignment {need} exceeds the 4096-byte SNAPLOG1 block on {}",
                    r.run_id,
                    base.display()
                )));
            }
        }
    }
    if let Some(out) = &plan.global.out {
        if out.exists() && !out.is_dir() {
            return Err(BadInput(format!(
                "--out {} is a file; give a folder",
                out.display()
            )));
        }
        if crate::results::holds_results(out) && !plan.global.force {
            return Err(BadInput(format!(
                "--out {} already holds results; pass --force to overwrite or choose another folder",
                out.display()
            )));
        }
    }
    for r in &plan.runs {
        if let (Some(f), Workload::Micro(p)) = (&r.micro_file, &r.workload) {
            let meta = std::fs::metadata(f).map_err(|e| {
                BadInput(format!(
                    "--file-path {}: {e}; give an existing, fully written file",
                    f.display()
                ))
            })?;
            if !meta.is_file() || meta.len() < p.file_size_bytes {
                return Err(BadInput(format!(
                    "--file-path {}: must be a regular file of at least file_size ({} bytes); it has {} bytes — lower --file-size or lay out a bigger file",
                    f.display(),
                    p.file_size_bytes,
                    meta.len()
                )));
            }
        }
        if let Some(c) = &r.corpus {
            let active =
                matches!(&r.workload, Workload::Ds { params, reads, .. } if reads.active(params));
            if !active {
                return Err(BadInput(format!(
                    "--corpus {}: run {} has no read side (reads_per_match, reads_per_s and live_viewers are 0)",
                    c.display(),
                    r.run_id
                )));
            }
            let n = corpus_logs(c).map(|v| v.len()).map_err(|e| {
                BadInput(format!(
                    "--corpus {}: {e}; give the run folder of an earlier run kept with --keep-files",
                    c.display()
                ))
            })?;
            if n == 0 {
                return Err(BadInput(format!(
                    "--corpus {}: holds no prefilled logs (m01…….snap); give the run folder of an earlier run that read, kept with --keep-files",
                    c.display()
                )));
            }
            let canon = std::fs::canonicalize(c).unwrap_or_else(|_| c.clone());
            let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            if plan_run_dirs(&root, &plan.runs).any(|d| canon.starts_with(d)) {
                return Err(BadInput(format!(
                    "--corpus {} lies in a run folder this invocation clears first; copy it elsewhere or use another --dir",
                    c.display()
                )));
            }
        }
        if let Some(p) = &r.writer.ack_log {
            let parent = p
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(BadInput(format!(
                    "--ack-log {}: folder {} does not exist",
                    p.display(),
                    parent.display()
                )));
            }
        }
    }
    Ok(())
}

fn plan_run_dirs<'a>(
    root: &'a Path,
    runs: &'a [RunPlan],
) -> impl Iterator<Item = std::path::PathBuf> + 'a {
    runs.iter().map(move |r| root.join(&r.run_id))
}

struct WorkerVisitor {
    ctx: WorkerCtx,
    cfg: EngineConfig,
    ready: mpsc::Sender<Result<(), String>>,
    start: Receiver<Option<Instant>>,
}

impl FactoryVisitor for WorkerVisitor {
    type Out = WorkerOutcome;
    fn visit<F: RecorderFactory + 'static>(self, factory: F) -> WorkerOutcome {
        let fail = |msg: String, ready: &mpsc::Sender<Result<(), String>>| {
            let _ = ready.send(Err(msg.clone()));
            WorkerOutcome {
                fatal: Some(msg),
                ..Default::default()
            }
        };
        let mut eng = match factory.build(&self.cfg) {
            Ok(e) => e,
            Err(e) => {
                return fail(
                    format!(
                        "engine {}: cannot start: {e}",
                        self.ctx.plan.engine.variant()
                    ),
                    &self.ready,
                )
            }
        };
        let plan = Arc::clone(&self.ctx.plan);
        if let Workload::Micro(p) = &plan.workload {
            if let Err(e) = micro::layout(&mut eng, p, &self.ctx) {
                let mut rest = Vec::new();
                let _ = eng.drain(&mut rest, Instant::now() + Duration::from_secs(30));
                return fail(format!("laying out the micro file: {e}"), &self.ready);
            }
        }
        // The finished matches readers start from: adopted from a corpus, or prefilled through
        // this engine, before the clock starts (not measured).
        let mut corpus = Corpus::empty();
        if let Workload::Ds { params, reads, .. } = &plan.workload {
            if reads.active(params) {
                if plan.corpus.is_some() {
                    corpus = driver::scan_corpus(&self.ctx);
                } else {
                    match driver::prefill(&mut eng, &self.ctx, params, reads) {
                        Ok(c) => corpus = c,
                        Err(e) => {
                            let mut rest = Vec::new();
                            let _ = eng.drain(&mut rest, Instant::now() + Duration::from_secs(30));
                            return fail(format!("prefill: {e}"), &self.ready);
                        }
                    }
                }
            }
        }
        let _ = self.ready.send(Ok(()));
        let Ok(Some(start)) = self.start.recv() else {
            return WorkerOutcome::default();
        };
        let clock = Clock::new(start, plan.warmup_s, plan.duration_s);
        match &plan.workload {
            Workload::Micro(p) => micro::run(eng, p, &self.ctx, clock),
            Workload::Ds { params, reads, .. } => {
                match DsWorker::new(&self.ctx, eng, params, reads, corpus, clock) {
                    Ok(w) => w.run(),
                    Err(e) => WorkerOutcome {
                        fatal: Some(e),
                        ..Default::default()
                    },
                }
            }
        }
    }
}

/// The prefilled logs (ids from `PREFILL_ID_BASE`) of a corpus folder.
pub fn corpus_logs(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| {
            crate::snaplog::parse_log_file_name(&e.file_name().to_string_lossy())
                .is_some_and(|id| id >= snapbench_workloads::reads::PREFILL_ID_BASE)
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

fn link_corpus(corpus: &Path, run_dir: &Path) -> Result<(), String> {
    let logs = corpus_logs(corpus).map_err(|e| format!("corpus {}: {e}", corpus.display()))?;
    for log in logs {
        let target = std::fs::canonicalize(&log).unwrap_or(log.clone());
        let link = run_dir.join(log.file_name().expect("a file"));
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            format!(
                "cannot link {} to {}: {e}",
                link.display(),
                target.display()
            )
        })?;
    }
    Ok(())
}

/// Samples taken at the window's edges.
#[derive(Clone, Copy, Default)]
struct Sample {
    cpu: machine::ProcCpu,
    sys: Option<machine::SysCpu>,
    disk: Option<machine::DiskStats>,
    at: Option<Instant>,
}

fn sample(disk: Option<&str>) -> Sample {
    Sample {
        cpu: machine::proc_cpu(),
        sys: machine::sys_cpu(),
        disk: disk.and_then(machine::disk_stats),
        at: Some(Instant::now()),
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
    let mut fatal: Option<String> = None;
    if let Err(e) = std::fs::create_dir_all(&run_dir) {
        fatal = Some(format!("cannot create {}: {e}", run_dir.display()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tick_tx, tick_rx) = mpsc::sync_channel::<Tick>(1024);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let cpus = machine::available_cpus().max(1);
    let (buf_bytes, buf_count) = match &plan.workload {
        Workload::Micro(p) => (micro::micro_buf_bytes(p), (p.iodepth as usize).max(8)),
        Workload::Ds { .. } => (driver::ds_buf_bytes(&plan), plan.queue_depth as usize),
    };
    let dio_align = machine::dio_align(&run_dir)
        .map(|a| a.offset_align_bytes.max(a.mem_align_bytes) as usize)
        .unwrap_or(4096);
    if let (None, Some(f)) = (&fatal, &plan.micro_file) {
        // Every worker opens the given file through its own name in the run folder.
        for w in 0..plan.workers {
            let link = run_dir.join(snapbench_engines::file_name(
                micro::micro_file(w),
                snapbench_engines::FileKind::Data,
            ));
            let target = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
            if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
                fatal = Some(format!(
                    "cannot link {} to {}: {e}",
                    link.display(),
                    target.display()
                ));
            }
        }
    }
    if let (None, Some(c)) = (&fatal, &plan.corpus) {
        // Each worker opens the corpus logs through their own names in the run folder.
        if let Err(e) = link_corpus(c, &run_dir) {
            fatal = Some(e);
        }
    }
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
                Err(e) => {
                    fatal = Some(format!("cannot start worker thread: {e}"));
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
                fatal.get_or_insert("a worker exited before it was ready".into());
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
    let mut seconds: BTreeMap<u64, (u32, Tick)> = BTreeMap::new();
    let mut last_progress = 0u64;
    if fatal.is_none() {
        loop {
            let now = Instant::now();
            if s0.is_none() && now >= window_start {
                s0 = Some(sample(disk_name));
            }
            if s1.is_none() && now >= window_end {
                s1 = Some(sample(disk_name));
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
                    let entry = seconds.entry(sec).or_insert_with(|| {
                        (
                            0,
                            Tick {
                                worker: 0,
                                second: sec,
                                ops: 0,
                                bytes: 0,
                                io_ops: 0,
                                errors: 0,
                                max_lag_ns: 0,
                                lat: LatHist::new(),
                            },
                        )
                    });
                    entry.0 += 1;
                    entry.1.ops += t.ops;
                    entry.1.bytes += t.bytes;
                    entry.1.io_ops += t.io_ops;
                    entry.1.errors += t.errors;
                    entry.1.max_lag_ns = entry.1.max_lag_ns.max(t.max_lag_ns);
                    entry.1.lat.merge(&t.lat);
                    if entry.0 == plan.workers && sec >= last_progress {
                        last_progress = sec + 1;
                        progress.second(sec + 1, entry.1.ops as f64);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if INTERRUPTED.load(Ordering::Relaxed) && s1.is_none() && s0.is_some() {
                s1 = Some(sample(disk_name));
            }
        }
    }
    let mut outcomes = Vec::new();
    for h in handles {
        match h.join() {
            Ok(o) => outcomes.push(o),
            Err(_) => {
                fatal.get_or_insert("a worker thread panicked".into());
            }
        }
    }
    let end_sample = sample(disk_name);
    let s0 = s0.unwrap_or(end_sample);
    let s1 = s1.unwrap_or(end_sample);
    let result = summarize(&plan, outcomes, fatal, s0, s1, seconds);
    if !plan.keep_files {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

fn summarize(
    plan: &RunPlan,
    outcomes: Vec<WorkerOutcome>,
    fatal: Option<String>,
    s0: Sample,
    s1: Sample,
    seconds: BTreeMap<u64, (u32, Tick)>,
) -> RunResult {
    let mut stats = Stats::default();
    let mut saturated = false;
    let mut interrupted = INTERRUPTED.load(Ordering::Relaxed);
    let mut error = fatal.clone();
    let mut failed = fatal.is_some();
    let (mut started, mut sealed, mut offered) = (0, 0, 0);
    let (mut prefill_matches, mut prefill_bytes, mut prefill_s) = (0, 0, 0.0f64);
    let mut read_error_msgs: Vec<String> = Vec::new();
    let mut caps = None;
    for o in &outcomes {
        prefill_matches += o.prefill_matches;
        prefill_bytes += o.prefill_bytes;
        prefill_s = prefill_s.max(o.prefill_s);
        read_error_msgs.extend(o.read_error_msgs.iter().cloned());
        stats.merge(&o.stats);
        saturated |= o.saturated;
        interrupted |= o.interrupted;
        started += o.matches_started;
        sealed += o.matches_sealed;
        offered += o.offered;
        if let Some(e) = o.fatal.as_ref().or(o.first_error.as_ref()) {
            error.get_or_insert(e.clone());
        }
        failed |= o.fatal.is_some();
        if caps.is_none() {
            caps = o.caps.clone();
        }
    }
    failed |= stats.errors > plan.max_errors;
    // A replay that reads back wrong data is a verification failure: the run fails (exit 1).
    if stats.read_errors > 0 {
        failed = true;
        if error.is_none() {
            error = Some(format!(
                "{} replay read(s) failed verification; first: {}",
                stats.read_errors,
                read_error_msgs.first().map_or("", String::as_str)
            ));
        }
    }
    let status = if failed {
        "failed"
    } else if interrupted {
        "interrupted"
    } else if saturated {
        "saturated"
    } else {
        "ok"
    };
    // A complete run covers its whole window; a run cut short covers what was sampled of it.
    let sampled_s = match (s0.at, s1.at) {
        (Some(a), Some(b)) if b > a => b.duration_since(a).as_secs_f64().min(plan.duration_s),
        _ => 0.0,
    };
    let duration_s = if (failed || interrupted) && sampled_s > 0.0 {
        sampled_s
    } else {
        plan.duration_s
    };
    let cpu_user = s1.cpu.user_s - s0.cpu.user_s;
    let cpu_sys = s1.cpu.sys_s - s0.cpu.sys_s;
    // System-wide busy CPU from precise idle time (the tick-sampled busy fields of /proc/stat
    // under-count work done in short bursts, such as a driver that sleeps between events).
    let sys_busy =
        match (s0.sys, s1.sys, s0.at, s1.at) {
            (Some(a), Some(b), Some(t0), Some(t1)) if t1 > t0 => Some(
                machine::SysCpu::busy_between(&a, &b, t1.duration_since(t0).as_secs_f64()),
            ),
            _ => None,
        };
    let disk = match (s0.disk, s1.disk) {
        (Some(a), Some(b)) => Some(b.delta(&a)),
        _ => None,
    };
    let lat = stats.hists[HistKind::Lat as usize].summary();
    let ack = stats.hists[HistKind::Ack as usize].summary();
    let is_ds = matches!(plan.workload, Workload::Ds { .. });
    let reads_active =
        matches!(&plan.workload, Workload::Ds { params, reads, .. } if reads.active(params));
    let verified = reads_active && caps.as_ref().is_some_and(|c| c.stores_data);
    let ttfb = stats.hists[HistKind::ReadTtfb as usize].summary();
    let full = stats.hists[HistKind::ReadFull as usize].summary();
    let row = SummaryRow {
        run_id: plan.run_id.clone(),
        engine: plan.engine.name().to_string(),
        variant: plan.engine.variant(),
        workload: plan.workload.name(),
        workers: plan.workers,
        duration_s,
        status: status.to_string(),
        ops: stats.ops,
        bytes: stats.bytes,
        errors: stats.errors,
        ops_per_s: stats.ops as f64 / duration_s,
        mib_per_s: stats.bytes as f64 / duration_s / (1u64 << 20) as f64,
        lat_p50_us: lat.p50_us,
        lat_p99_us: lat.p99_us,
        lat_p999_us: lat.p999_us,
        lat_max_us: lat.max_us,
        ack_p50_us: ack.p50_us,
        ack_p99_us: ack.p99_us,
        ack_max_us: ack.max_us,
        lat_samples: lat.samples,
        cpu_user_s: Some(cpu_user),
        cpu_sys_s: Some(cpu_sys),
        sys_cpu_busy_s: sys_busy,
        io_ops: stats.io_ops,
        io_bytes: stats.io_bytes,
        saturated,
        offered_ops: offered,
        io_syncs: stats.io_syncs,
        io_write_p99_us: stats.hists[HistKind::IoWrite as usize].quantile_us(0.99),
        io_sync_p99_us: stats.hists[HistKind::IoSync as usize].quantile_us(0.99),
        cpu_cores: Some((cpu_user + cpu_sys) / duration_s),
        cpu_us_per_op: (stats.ops > 0).then(|| (cpu_user + cpu_sys) * 1e6 / stats.ops as f64),
        max_lag_ms: stats.max_lag_ns as f64 / 1e6,
        disk_reads: disk.map(|d| d.reads),
        disk_read_bytes: disk.map(|d| d.read_bytes),
        disk_writes: disk.map(|d| d.writes),
        disk_write_bytes: disk.map(|d| d.write_bytes),
        durability: if is_ds {
            plan.writer.durability.to_string()
        } else {
            String::new()
        },
        seed: plan.seed,
        matches_started: started,
        matches_sealed: sealed,
        reads: stats.reads,
        read_bytes: stats.read_bytes,
        reads_per_s: stats.reads as f64 / duration_s,
        read_ttfb_p50_us: ttfb.p50_us,
        read_ttfb_p99_us: ttfb.p99_us,
        read_full_p50_us: full.p50_us,
        read_full_p99_us: full.p99_us,
        read_full_max_us: full.max_us,
        io_read_p99_us: stats.hists[HistKind::IoRead as usize].quantile_us(0.99),
        tail_reads: stats.tail_reads,
        read_tail_p99_us: stats.hists[HistKind::ReadTail as usize].quantile_us(0.99),
        read_errors: stats.read_errors,
        reads_verified: verified,
        reads_dropped: stats.reads_dropped,
        reads_no_target: stats.reads_no_target,
        prefill_matches,
        prefill_bytes,
        prefill_s,
        error: error.clone().unwrap_or_default(),
    };
    let timeseries = seconds
        .into_iter()
        .map(|(sec, (_, t))| {
            let t0 = sec as f64;
            let phase = if t0 < plan.warmup_s {
                "warmup"
            } else if t0 < plan.warmup_s + plan.duration_s {
                "measured"
            } else {
                "after"
            };
            TimeseriesRow {
                run_id: plan.run_id.clone(),
                second: sec,
                phase,
                ops: t.ops,
                mib: t.bytes as f64 / (1u64 << 20) as f64,
                io_ops: t.io_ops,
                errors: t.errors,
                lat_p50_us: t.lat.quantile_us(0.5),
                lat_p99_us: t.lat.quantile_us(0.99),
                lat_max_us: t.lat.max_us(),
                max_lag_ms: t.max_lag_ns as f64 / 1e6,
            }
        })
        .collect();
    let mut notes = Vec::new();
    if is_ds && plan.writer.durability == crate::plan::Durability::None {
        notes.push("durability none: acks are not durable; not comparable between buffered and direct engines".to_string());
    }
    if saturated {
        notes.push(format!(
            "saturated: lag behind schedule reached {:.1} ms (limit {} ms); the engine could not keep up with the offered load",
            stats.max_lag_ns as f64 / 1e6,
            plan.writer.lag_limit_ms
        ));
    }
    if reads_active && !verified {
        notes.push(format!(
            "replay reads not verified: engine {} does not store data (its reads return the buffer untouched)",
            plan.engine.name()
        ));
    }
    if stats.reads_dropped > 0 {
        notes.push(format!(
            "{} replay reads dropped: a worker's queue of waiting reads was full",
            stats.reads_dropped
        ));
    }
    if reads_active && plan.engine.page_cache_reads() {
        notes.push("page cache: the prefill was written just before the window, so buffered reads of it are mostly served from memory".to_string());
    }
    let detail = serde_json::json!({
        "options": plan.options_json(),
        "reads": {
            "active": reads_active,
            "verified": verified,
            "read_errors": read_error_msgs,
            "prefill": {
                "matches": prefill_matches,
                "bytes": prefill_bytes,
                "seconds": prefill_s,
                "from_corpus": plan.corpus,
            },
            "ttfb_us": ttfb,
            "full_us": full,
            "tail_us": stats.hists[HistKind::ReadTail as usize].summary(),
            "io_read_us": stats.hists[HistKind::IoRead as usize].summary(),
            "tail_read_bytes": stats.tail_read_bytes,
        },
        "caps": caps,
        "latency_us": {
            "lat": lat,
            "ack": ack,
            "io_write": stats.hists[HistKind::IoWrite as usize].summary(),
            "io_sync": stats.hists[HistKind::IoSync as usize].summary(),
        },
        "disk": disk,
        "notes": notes,
        "io_wq_threads_at_end": machine::count_threads("iou-wrk"),
    });
    RunResult {
        row,
        detail,
        timeseries,
        hists: HIST_KINDS
            .iter()
            .map(|k| (*k, stats.hists[*k as usize].clone()))
            .collect(),
    }
}

/// Run every entry of a prepared plan, writing results after each; returns how it ended.
pub fn execute(
    plan: &Plan,
    results: &mut ResultsDir,
    progress: &mut dyn Progress,
) -> Result<Ending, std::io::Error> {
    std::fs::create_dir_all(&plan.global.dir)?;
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
        match result.row.status.as_str() {
            "failed" => ending = Ending::Failed,
            "interrupted" => ending = Ending::Interrupted,
            _ => {}
        }
        results.push(result)?;
        if ending == Ending::Interrupted {
            break;
        }
    }
    Ok(ending)
}
