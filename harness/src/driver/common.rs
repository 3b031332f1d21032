//! What every worker shares: clock and window, per-second ticks, stop flags, outcome, errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::{file_name, Caps, FileKind, MatchId, Op, OpKind, Recorder};

use crate::measure::{LatHist, SecondHists, Stats, N_HISTS};
use crate::plan::RunPlan;
use crate::writer::WriterOp;

/// Set by SIGINT/SIGTERM handlers: workers stop, seal what they can and report.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Per-second progress of one worker, sent to the main thread.
#[derive(Debug)]
pub struct Tick {
    /// Worker index.
    pub worker: u32,
    /// Second since the run started (0 = first second of warm-up).
    pub second: u64,
    /// Snapshots written (DS) or I/Os completed (micro) in that second.
    pub ops: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Engine I/Os completed.
    pub io_ops: u64,
    /// Errors.
    pub errors: u64,
    /// Largest lag behind schedule, ns.
    pub max_lag_ns: u64,
    /// Latencies of that second (write latency for DS, I/O latency for micro).
    pub lat: LatHist,
    // -- issue 10: histograms --
    /// That second's samples of the window, by kind (the `.hlog` intervals).
    pub hists: [Option<LatHist>; N_HISTS],
}

/// What a worker reports at the end.
#[derive(Debug, Default)]
pub struct WorkerOutcome {
    /// Counters and histograms of the measured window.
    pub stats: Stats,
    /// Lag exceeded the limit at some point.
    pub saturated: bool,
    /// The run was interrupted by a signal.
    pub interrupted: bool,
    /// The first I/O error, with engine, operation, file and offset.
    pub first_error: Option<String>,
    /// A fatal problem of the worker itself (engine could not be built, drain failed …).
    pub fatal: Option<String>,
    /// Matches whose log was created.
    pub matches_started: u64,
    /// Matches whose log was sealed (end frame written and synced) and closed.
    pub matches_sealed: u64,
    /// Snapshots offered by the schedule in the measured window.
    pub offered: u64,
    /// The engine's declared capabilities.
    pub caps: Option<Caps>,
    /// Prefilled (or adopted corpus) matches this worker owns.
    pub prefill_matches: u64,
    /// Bytes of those logs (up to their end frames).
    pub prefill_bytes: u64,
    /// Seconds the prefill (or the corpus scan) took.
    pub prefill_s: f64,
    /// The first few read verification failures, each with file and offset.
    pub read_error_msgs: Vec<String>,
    // -- issue 10: bounded runs --
    /// Snapshots written within the window by completion time (what throughput counts).
    pub window_ops: u64,
    /// Their payload bytes.
    pub window_bytes: u64,
    /// Snapshots intended in the window but not written when the drain ended (each recorded
    /// in the write histogram at its lower bound, drain end − intended time).
    pub not_completed: u64,
    /// Lag passed the limit: the generator stopped before the window's end.
    pub stopped_early: bool,
    // -- issue 10: search --
    /// Time this DS worker spent working (in its pass, and taking completions apart from the
    /// engine's wait for them) while running the schedule inside the window, ns; None for micro.
    pub busy_ns: Option<u64>,
    /// Part of the window this DS worker ran the schedule for, ns (the whole window unless it
    /// stopped early).
    pub ran_window_ns: u64,
    /// The worker thread's own CPU time ÷ wall time from its first pass (warm-up included) to
    /// the end of its schedule (None for micro).
    pub thread_cpu_util: Option<f64>,
    /// The engine busy-polls (its waits spin): utilisation is the busy share, not thread CPU.
    pub polls: bool,
    // -- issue 11: harness, recorder and engine cost apart --
    /// Where a DS worker's time went while it ran the schedule in the window, and the work it
    /// did over the whole run; None for micro workers.
    pub costs: Option<WorkCosts>,
}

/// A DS worker's own time by role and its work counters (the cost split of docs/harness-cost.md).
///
/// Times are wall time of code that never blocks, taken with one clock read at each switch
/// between roles, and counted only while the worker runs the schedule inside the window; the
/// engine's share is what is left of the run's CPU. Counters cover the whole run (warm-up,
/// window and sealing), so two engines on one seeded schedule can be compared exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkCosts {
    /// The harness: generator, lag and histogram records, the pass's own bookkeeping, ns.
    pub harness_ns: u64,
    /// CPU the worker thread spent in the harness's own sleeps (nanosleep and the wake-up
    /// around it, from the thread's CPU clock), ns.
    pub sleep_cpu_ns: u64,
    /// The recorder: the log writer (framing, CRC, staging, timers, retries), the copy into
    /// engine buffers, completion bookkeeping, the ack log, the replay read side, ns.
    pub recorder_ns: u64,
    /// Snapshots framed (data frames staged by the writer).
    pub snapshots_framed: u64,
    /// Bytes the writer ran CRC32C over (frame headers and payloads, end frames included).
    pub crc_bytes: u64,
    /// Staged bytes copied into engine buffers for writes.
    pub copy_bytes: u64,
    /// Writer timers fired (flush deadlines and interval syncs of live logs).
    pub timers_fired: u64,
    /// Histogram samples recorded (each into the window's and its second's histogram).
    pub hist_records: u64,
    /// Times the worker slept in the harness (nothing in flight, waiting for the schedule).
    pub sleeps: u64,
    /// Passes over the schedule (a pass handles every event due at its time).
    pub passes: u64,
}

impl WorkCosts {
    /// Add another worker's.
    pub fn merge(&mut self, o: &WorkCosts) {
        self.harness_ns += o.harness_ns;
        self.sleep_cpu_ns += o.sleep_cpu_ns;
        self.recorder_ns += o.recorder_ns;
        self.snapshots_framed += o.snapshots_framed;
        self.crc_bytes += o.crc_bytes;
        self.copy_bytes += o.copy_bytes;
        self.timers_fired += o.timers_fired;
        self.hist_records += o.hist_records;
        self.sleeps += o.sleeps;
        self.passes += o.passes;
    }
}

/// Which part of the work a DS worker is in: its [`Stopwatch`] charges the time since the last
/// switch to the role it was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The harness's own work.
    Harness,
    /// The recorder's work.
    Recorder,
    /// Inside the engine, waiting, or the engine's own loop: not charged (the engine's share
    /// is the run's CPU minus the other two).
    Other,
}

/// Charges a DS worker's wall time to [`Role`]s with one clock read per switch.
#[derive(Debug)]
pub(crate) struct Stopwatch {
    role: Role,
    since: Instant,
    /// Charge time from the last switch on (the worker runs the schedule in the window).
    pub(crate) counting: bool,
    pub(crate) harness_ns: u64,
    pub(crate) recorder_ns: u64,
}

impl Stopwatch {
    /// A stopwatch in [`Role::Other`], not counting.
    pub(crate) fn new() -> Stopwatch {
        Stopwatch {
            role: Role::Other,
            since: Instant::now(),
            counting: false,
            harness_ns: 0,
            recorder_ns: 0,
        }
    }

    /// The role time is charged to now.
    #[inline]
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// Charge the time since the last switch to the role it was in (when counting) and go on
    /// in `role`; returns the clock reading taken.
    #[inline]
    pub(crate) fn switch(&mut self, role: Role) -> Instant {
        let now = Instant::now();
        if self.counting {
            let d = now.saturating_duration_since(self.since).as_nanos() as u64;
            match self.role {
                Role::Harness => self.harness_ns += d,
                Role::Recorder => self.recorder_ns += d,
                Role::Other => {}
            }
        }
        self.role = role;
        self.since = now;
        now
    }
}

impl WorkerOutcome {
    /// The share of its window the worker was doing work: its thread's CPU time ÷ wall time,
    /// or for an engine that busy-polls (whose thread is always on CPU) busy ÷ window run
    /// (its pass and its completion handling, not the engine's polling). None for micro
    /// workers and for a worker that ran no part of the window.
    pub fn worker_util(&self) -> Option<f64> {
        if !self.polls {
            if let Some(u) = self.thread_cpu_util {
                return Some(u.clamp(0.0, 1.0));
            }
        }
        let busy = self.busy_ns?;
        (self.ran_window_ns > 0).then(|| (busy as f64 / self.ran_window_ns as f64).clamp(0.0, 1.0))
    }
}

/// Most read verification failures a worker keeps the message of (all are counted).
pub const MAX_READ_ERROR_MSGS: usize = 10;

/// What every worker of a run shares.
pub struct WorkerCtx {
    /// The run.
    pub plan: Arc<RunPlan>,
    /// This worker.
    pub worker: u32,
    /// Directory of the run's files.
    pub dir: PathBuf,
    /// Set when any worker fails: everyone stops.
    pub stop: Arc<AtomicBool>,
    /// Per-second ticks to the main thread.
    pub ticks: SyncSender<Tick>,
}

impl WorkerCtx {
    /// Whether to stop early (another worker failed, or a signal arrived).
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed)
    }
}

/// Clock and window of a run, in ns since the common start instant.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The common start.
    pub start: Instant,
    /// Start of the measured window.
    pub window_start_ns: u64,
    /// End of the measured window.
    pub window_end_ns: u64,
}

impl Clock {
    /// Build from a start instant and the plan's warm-up and duration.
    pub fn new(start: Instant, warmup_s: f64, duration_s: f64) -> Clock {
        let w0 = (warmup_s * 1e9) as u64;
        Clock {
            start,
            window_start_ns: w0,
            window_end_ns: w0 + (duration_s * 1e9) as u64,
        }
    }

    /// Nanoseconds since start.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `at` as ns on this clock (0 before the start).
    pub fn ns_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// Whether a schedule time lies in the measured window.
    #[inline]
    pub fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.window_start_ns && t_ns < self.window_end_ns
    }

    /// The instant of a schedule time.
    pub fn instant(&self, t_ns: u64) -> Instant {
        self.start + Duration::from_nanos(t_ns)
    }
}

/// Per-second accumulation shared by both drivers.
#[derive(Default)]
pub struct Ticker {
    second: u64,
    ops: u64,
    bytes: u64,
    io_ops: u64,
    errors: u64,
    max_lag_ns: u64,
    lat: LatHist,
}

impl Ticker {
    /// Send the finished second(s) if `now_ns` has moved past them, with the second's
    /// histograms taken from `hists`.
    #[inline]
    pub fn roll(&mut self, now_ns: u64, ctx: &WorkerCtx, hists: &mut SecondHists) {
        let sec = now_ns / 1_000_000_000;
        if sec > self.second {
            self.send(ctx, hists);
            self.second = sec;
        }
    }

    /// Send what this second holds (also called once at the end).
    pub fn send(&mut self, ctx: &WorkerCtx, hists: &mut SecondHists) {
        let tick = Tick {
            worker: ctx.worker,
            second: self.second,
            ops: std::mem::take(&mut self.ops),
            bytes: std::mem::take(&mut self.bytes),
            io_ops: std::mem::take(&mut self.io_ops),
            errors: std::mem::take(&mut self.errors),
            max_lag_ns: std::mem::take(&mut self.max_lag_ns),
            lat: std::mem::take(&mut self.lat),
            hists: hists.take(),
        };
        // The main thread drains ticks continuously; if it is gone the run is ending anyway.
        let _ = ctx.ticks.send(tick);
    }

    /// Count one completed op (snapshot or I/O) with its latency.
    #[inline]
    pub fn op(&mut self, bytes: u64, lat_ns: u64) {
        self.ops += 1;
        self.bytes += bytes;
        self.lat.record_ns(lat_ns);
    }

    /// Count an engine I/O.
    #[inline]
    pub fn io(&mut self) {
        self.io_ops += 1;
    }

    /// Count an error.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Note lag.
    #[inline]
    pub fn lag(&mut self, lag_ns: u64) {
        self.max_lag_ns = self.max_lag_ns.max(lag_ns);
    }
}

/// Describe an I/O error with engine, operation, file and offset.
pub fn describe_error(
    engine: &str,
    kind: OpKind,
    file: Option<(MatchId, FileKind)>,
    offset: Option<u64>,
    dir: &Path,
    err: &std::io::Error,
) -> String {
    let file = match file {
        Some((id, k)) => dir.join(file_name(id, k)).display().to_string(),
        None => dir.display().to_string(),
    };
    match offset {
        Some(off) => format!(
            "engine {engine}: {} {file} at offset {off}: {err}",
            kind.name()
        ),
        None => format!("engine {engine}: {} {file}: {err}", kind.name()),
    }
}

/// The engine op for a writer op, with a write's staged bytes copied into a buffer from the
/// engine's pool (zero-padded to the write's length: no allocation per I/O). `None` when the
/// pool has no buffer for the write: the writer keeps it and retries.
pub(crate) fn engine_op<R: Recorder>(eng: &mut R, op: WriterOp, data: &[u8]) -> Option<Op<R::Buf>> {
    let file = MatchId(op.log().id);
    Some(match op {
        WriterOp::Write {
            offset,
            len_bytes,
            dsync,
            ..
        } => {
            let mut buf = eng.alloc_buf(len_bytes as usize)?;
            let b = buf.as_mut();
            b[..data.len()].copy_from_slice(data);
            b[data.len()..].fill(0);
            Op::Write {
                file,
                offset,
                buf,
                dsync,
            }
        }
        WriterOp::Create { prealloc_bytes, .. } => Op::Create {
            file,
            kind: FileKind::Log,
            prealloc_bytes,
        },
        WriterOp::SyncDir { .. } => Op::SyncDir,
        WriterOp::Allocate {
            offset, len_bytes, ..
        } => Op::Allocate {
            file,
            offset,
            len_bytes,
        },
        WriterOp::Sync { .. } => Op::Sync { file },
        WriterOp::Close { .. } => Op::Close { file },
    })
}

/// Ops an engine pushed back (`submit` handed them back), resubmitted in order before anything
/// newer, so back-pressure never reorders a worker's ops. Bounded by what its owner keeps in
/// flight.
pub(crate) struct Backlog<B>(std::collections::VecDeque<(u64, Op<B>)>);

impl<B> Backlog<B> {
    /// An empty queue with room for `n` ops.
    pub(crate) fn with_capacity(n: usize) -> Backlog<B> {
        Backlog(std::collections::VecDeque::with_capacity(n))
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Submit `op`, or queue it behind earlier pushed-back ops (keeps submission order).
    pub(crate) fn submit<R: Recorder<Buf = B>>(&mut self, eng: &mut R, token: u64, op: Op<B>) {
        if !self.0.is_empty() {
            self.0.push_back((token, op));
            return;
        }
        if let Err(op) = eng.submit(token, op) {
            self.0.push_back((token, op));
        }
    }

    /// Submit what waits, in order, until the engine pushes back again.
    pub(crate) fn resubmit<R: Recorder<Buf = B>>(&mut self, eng: &mut R) {
        while let Some((token, op)) = self.0.pop_front() {
            if let Err(op) = eng.submit(token, op) {
                self.0.push_front((token, op));
                break;
            }
        }
    }
}

/// Stall detection: no I/O completion for `limit` while I/O is in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StallWatch {
    limit: Duration,
    /// Last time something completed, or nothing was in flight.
    last_progress: Instant,
}

impl StallWatch {
    /// A watch with its clock starting at `now`.
    pub(crate) fn new(limit_s: f64, now: Instant) -> StallWatch {
        StallWatch {
            limit: Duration::from_secs_f64(limit_s),
            last_progress: now,
        }
    }

    /// Note a pass at `now` with `completed` completions taken and `in_flight` ops left;
    /// the failure message when nothing has completed for the limit while ops were in flight.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        completed: usize,
        in_flight: usize,
    ) -> Option<String> {
        if completed > 0 || in_flight == 0 {
            self.last_progress = now;
            return None;
        }
        (now.saturating_duration_since(self.last_progress) >= self.limit).then(|| {
            format!(
                "no completion for {} s; {in_flight} in flight",
                fmt_secs(self.limit.as_secs_f64())
            )
        })
    }
}

/// Seconds as the shortest plain number (`5`, `0.5`).
fn fmt_secs(s: f64) -> String {
    let t = format!("{s:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_fires_only_without_completions_while_in_flight() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(5.0, t0);
        assert_eq!(w.check(t0 + Duration::from_secs(4), 0, 3), None);
        // A completion resets the clock.
        assert_eq!(w.check(t0 + Duration::from_secs(4), 1, 3), None);
        assert_eq!(w.check(t0 + Duration::from_secs(8), 0, 3), None);
        assert_eq!(
            w.check(t0 + Duration::from_secs(9), 0, 3).as_deref(),
            Some("no completion for 5 s; 3 in flight")
        );
        // Nothing in flight is idle, not a stall.
        let mut w = StallWatch::new(0.5, t0);
        assert_eq!(w.check(t0 + Duration::from_secs(60), 0, 0), None);
        assert_eq!(
            w.check(t0 + Duration::from_secs(61), 0, 2).as_deref(),
            Some("no completion for 0.5 s; 2 in flight")
        );
    }

    #[test]
    fn worker_util_is_the_busy_share_of_the_window() {
        let mut o = WorkerOutcome::default();
        assert_eq!(o.worker_util(), None, "micro workers have none");
        o.busy_ns = Some(750);
        assert_eq!(o.worker_util(), None, "no window run");
        o.ran_window_ns = 1000;
        assert_eq!(o.worker_util(), Some(0.75));
        o.busy_ns = Some(2000);
        assert_eq!(o.worker_util(), Some(1.0), "clamped");
        // Thread CPU decides, unless the engine polls.
        o.thread_cpu_util = Some(0.4);
        assert_eq!(o.worker_util(), Some(0.4));
        o.polls = true;
        assert_eq!(o.worker_util(), Some(1.0));
    }
}
