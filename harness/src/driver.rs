//! The per-worker driver: what every worker shares (clock, window, ticks, stop flags, errors)
//! and the DS open-loop worker, which runs the shared log writer over any [`Recorder`].
//!
//! ## The log writer
//!
//! One writer does the recorder's work for every engine, so engines compete only on the I/O
//! path. Per match it keeps a staging buffer of framed snapshots (SNAPLOG1) starting at the file
//! offset `staged_off`, and flushes it with engine writes when `segment_bytes` are unflushed or
//! `flush_ms` after the oldest unflushed snapshot. Engines that need aligned I/O (O_DIRECT) get
//! whole blocks: the partial tail block stays in staging and is rewritten, zero-padded, by the
//! next flush. At most one write per log is in flight (a flush bigger than one write goes out
//! chunk by chunk as each completes), so a later write can never become durable before an
//! earlier one and a power cut leaves a log torn, never with a hole before valid frames. Logs are preallocated in
//! `prealloc_bytes` chunks (fallocate) before a write reaches past the allocated end.
//!
//! A snapshot is *written* when every byte up to its end has been written (writes complete out
//! of order; `written_off` is the contiguous prefix), and *durable* when a sync submitted after
//! that completed, and the directory sync after create, have completed. Latencies are measured
//! from the snapshot's intended arrival time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::{
    file_name, Caps, Completion, FastMap, FileKind, MatchId, Op, OpKind, Recorder,
};
use snapbench_workloads::ds::{DsEvent, DsParams, DsSchedule, SnapKind};
use snapbench_workloads::reads::ReadParams;

use crate::measure::{HistKind, LatHist, Stats};
use crate::plan::{Durability, RunPlan};
use crate::snaplog::{self, FrameKind, KeyEntry, BLOCK_BYTES};

mod prefill;
mod replay;

pub use prefill::{prefill, scan_corpus, Corpus};
use replay::ReadSide;

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
        self.start.elapsed().as_nanos() as u64
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
    /// Send the finished second(s) if `now_ns` has moved past them.
    #[inline]
    pub fn roll(&mut self, now_ns: u64, ctx: &WorkerCtx) {
        let sec = now_ns / 1_000_000_000;
        if sec > self.second {
            self.send(ctx);
            self.second = sec;
        }
    }

    /// Send what this second holds (also called once at the end).
    pub fn send(&mut self, ctx: &WorkerCtx) {
        let tick = Tick {
            worker: ctx.worker,
            second: self.second,
            ops: std::mem::take(&mut self.ops),
            bytes: std::mem::take(&mut self.bytes),
            io_ops: std::mem::take(&mut self.io_ops),
            errors: std::mem::take(&mut self.errors),
            max_lag_ns: std::mem::take(&mut self.max_lag_ns),
            lat: std::mem::take(&mut self.lat),
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

// ------------------------------------------------------------------------------------------
// DS worker
// ------------------------------------------------------------------------------------------

/// One snapshot waiting to be written / made durable.
#[derive(Clone, Copy, Debug)]
struct SnapRec {
    end_off: u64,
    seq: u64,
    t_ns: u64,
    payload_bytes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Creating,
    Open,
    Closing,
    Failed,
}

/// The writer's state of one match log.
struct MatchLog {
    id: u64,
    phase: Phase,
    /// Bytes of the file from `staged_off` to `next_off` not yet dropped (framed, maybe written).
    staging: Vec<u8>,
    staged_off: u64,
    next_off: u64,
    /// End of data already handed to writes.
    submitted_off: u64,
    written_off: u64,
    synced_off: u64,
    alloc_end: u64,
    /// Writes in flight, in offset order: (data end, completed).
    writes: VecDeque<(u64, bool)>,
    tail_busy: bool,
    alloc_busy: bool,
    sync_busy: bool,
    sync_wanted: bool,
    flush_wanted: bool,
    in_retry: bool,
    dir_synced: bool,
    /// The engine holds the file open (Create completed, Close not yet sent).
    opened: bool,
    sealing: bool,
    final_sync_done: bool,
    close_sent: bool,
    ops_in_flight: u32,
    /// Intended time of the oldest unflushed snapshot.
    oldest_unflushed_t: Option<u64>,
    pending: VecDeque<SnapRec>,
    /// Entries at the front of `pending` already written (not yet durable).
    n_written: usize,
    frames: u64,
    payload_sum: u64,
    last_t_ns: u64,
    /// Keyframe index (bounded: thinned to every other entry when full).
    keys: Vec<KeyEntry>,
    /// Index every `key_stride`-th keyframe (doubles at each thinning).
    key_stride: u64,
    /// Keyframes seen.
    key_count: u64,
    /// Replay reads using this log's open file (the writer closes it only when none is left).
    readers: u32,
    /// Of those, live viewers to notify when more bytes are written.
    followers: u32,
    /// Intended time of the match's end (the seal), ns.
    end_t_ns: u64,
    /// Sealed with its final sync (not failed): it joins the finished replays when closed.
    sealed_ok: bool,
}

/// Most keyframes indexed per match; beyond it the index keeps every other one.
pub const MAX_KEYS_PER_MATCH: usize = 1024;

/// Index the keyframe about to be appended at `m.next_off` (bounded: when the index is full,
/// every other entry is dropped and only every `key_stride`-th keyframe is indexed from then on).
fn index_keyframe(m: &mut MatchLog, seq: u64, t_ns: u64) {
    let k = m.key_count;
    m.key_count += 1;
    if k % m.key_stride != 0 {
        return;
    }
    if m.keys.len() == MAX_KEYS_PER_MATCH {
        let mut i = 0;
        m.keys.retain(|_| {
            i += 1;
            i % 2 == 1
        });
        m.key_stride *= 2;
        if k % m.key_stride != 0 {
            return;
        }
    }
    m.keys.push(KeyEntry {
        offset: m.next_off + snaplog::padding_bytes(m.next_off),
        seq,
        t_ns,
    });
}

/// What an in-flight op was, by token.
#[derive(Clone, Copy, Debug)]
enum OpRec {
    Create {
        slot: u32,
    },
    SyncDir {
        slot: u32,
    },
    Allocate {
        slot: u32,
        len: u64,
    },
    Write {
        slot: u32,
        offset: u64,
        data_end: u64,
        tail: bool,
        submit_ns: u64,
    },
    Sync {
        slot: u32,
        covered: u64,
        submit_ns: u64,
    },
    Close {
        slot: u32,
    },
    /// Opening a finished log for replay reads.
    ReadOpen {
        cat: u32,
    },
    /// A replay read I/O of session `sess`.
    Read {
        sess: u32,
        offset: u64,
        len: u32,
        submit_ns: u64,
    },
    /// Closing a finished log after its last reader.
    ReadClose {
        cat: u32,
    },
    Free,
}

impl OpRec {
    fn slot(&self) -> Option<u32> {
        match *self {
            OpRec::Create { slot }
            | OpRec::SyncDir { slot }
            | OpRec::Allocate { slot, .. }
            | OpRec::Write { slot, .. }
            | OpRec::Sync { slot, .. }
            | OpRec::Close { slot } => Some(slot),
            OpRec::ReadOpen { .. } | OpRec::Read { .. } | OpRec::ReadClose { .. } | OpRec::Free => {
                None
            }
        }
    }
}

/// A slab of in-flight op records addressed by token.
struct Slab {
    recs: Vec<OpRec>,
    free: Vec<u32>,
}

impl Slab {
    fn new(cap: usize) -> Slab {
        Slab {
            recs: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
        }
    }
    fn insert(&mut self, rec: OpRec) -> u64 {
        match self.free.pop() {
            Some(i) => {
                self.recs[i as usize] = rec;
                u64::from(i)
            }
            None => {
                self.recs.push(rec);
                (self.recs.len() - 1) as u64
            }
        }
    }
    fn take(&mut self, token: u64) -> OpRec {
        let rec = std::mem::replace(&mut self.recs[token as usize], OpRec::Free);
        self.free.push(token as u32);
        rec
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Flush,
    Sync,
    /// A paced read session is due (slot = session, id = its generation).
    Read,
    /// A live viewer looks again for a running match (id = its intended start time).
    Viewer,
}

/// The DS worker: schedule → log writer → engine → completions → histograms.
pub struct DsWorker<'a, R: Recorder> {
    ctx: &'a WorkerCtx,
    eng: R,
    caps: Caps,
    clock: Clock,
    sched: DsSchedule,
    matches: Vec<Option<MatchLog>>,
    free_slots: Vec<u32>,
    by_id: FastMap<u32>,
    ops: Slab,
    backlog: VecDeque<(u64, Op<R::Buf>)>,
    timers: BinaryHeap<Reverse<(u64, TimerKind, u32, u64)>>,
    retry: Vec<u32>,
    comps: Vec<Completion<R::Buf>>,
    align: u64,
    max_write_bytes: u64,
    segment_bytes: u64,
    flush_ns: u64,
    prealloc_bytes: u64,
    lag_limit_ns: u64,
    durability: Durability,
    ack_file: Option<File>,
    ack_buf: Vec<u8>,
    out: WorkerOutcome,
    ticker: Ticker,
    open_matches: usize,
    /// The read side (replays), when the run has one.
    rd: Option<ReadSide>,
}

/// Largest write of the DS writer: a segment plus its tail block.
pub fn ds_write_bytes(plan: &RunPlan) -> usize {
    plan.writer.segment_bytes as usize + BLOCK_BYTES
}

/// Buffer size a DS run asks the engine's pool for: the largest write, or the replay read size
/// when the run reads and that is larger.
pub fn ds_buf_bytes(plan: &RunPlan) -> usize {
    let reads = match &plan.workload {
        crate::plan::Workload::Ds { params, reads, .. } if reads.active(params) => {
            reads.read_bytes as usize
        }
        _ => 0,
    };
    ds_write_bytes(plan).max(reads)
}

/// Open the ack log for appending (whole lines are written with single `write` calls).
pub fn open_ack_log(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl<'a, R: Recorder> DsWorker<'a, R> {
    /// A worker over `eng`, with the schedule of `params` for this worker and, when `reads` is
    /// active, its replay reads over `corpus` (the finished matches it owns, from [`prefill`]
    /// or [`scan_corpus`]) and the matches it finishes.
    pub fn new(
        ctx: &'a WorkerCtx,
        eng: R,
        params: &DsParams,
        reads: &ReadParams,
        corpus: Corpus,
        clock: Clock,
    ) -> Result<DsWorker<'a, R>, String> {
        let plan = &ctx.plan;
        let caps = eng.caps().clone();
        // O_DIRECT writes cover whole 4 KiB SNAPLOG1 blocks even where the device accepts 512:
        // ext4 serialises a direct write smaller than its block size (exclusive inode lock,
        // completed inside io_submit), which would measure ext4's locking, not the engine.
        let align = if caps.io_align_bytes > 1 {
            (caps.io_align_bytes as u64).max(BLOCK_BYTES as u64)
        } else {
            1
        };
        if align > BLOCK_BYTES as u64 || BLOCK_BYTES as u64 % align != 0 {
            return Err(format!(
                "engine {} needs {align}-byte alignment, which does not divide the 4096-byte SNAPLOG1 block",
                caps.name
            ));
        }
        let sched = DsSchedule::try_new(
            params,
            plan.seed,
            ctx.worker,
            plan.workers,
            clock.window_end_ns,
        )?;
        let ack_file = match &plan.writer.ack_log {
            Some(p) => Some(open_ack_log(p).map_err(|e| format!("ack log {}: {e}", p.display()))?),
            None => None,
        };
        let qd = caps.max_in_flight;
        // The same writes whether or not the pool's buffers were enlarged for reads.
        let max_write_bytes = (caps.buf_bytes.min(ds_write_bytes(plan)) as u64 / align) * align;
        let mut out = WorkerOutcome {
            prefill_matches: corpus.matches,
            prefill_bytes: corpus.bytes,
            prefill_s: corpus.secs,
            ..WorkerOutcome::default()
        };
        out.stats.read_errors = corpus.errors.len() as u64;
        out.read_error_msgs = corpus.errors.clone();
        out.read_error_msgs.truncate(MAX_READ_ERROR_MSGS);
        let rd = reads.active(params).then(|| {
            ReadSide::new(
                reads,
                params,
                plan.seed,
                ctx.worker,
                plan.workers,
                &clock,
                caps.stores_data,
                corpus.entries,
            )
        });
        Ok(DsWorker {
            ctx,
            caps,
            eng,
            clock,
            sched,
            matches: Vec::new(),
            free_slots: Vec::new(),
            by_id: FastMap::default(),
            ops: Slab::new(qd * 2),
            backlog: VecDeque::with_capacity(qd),
            timers: BinaryHeap::new(),
            retry: Vec::new(),
            comps: Vec::with_capacity(qd),
            align,
            max_write_bytes,
            segment_bytes: plan.writer.segment_bytes,
            flush_ns: (plan.writer.flush_ms * 1e6) as u64,
            prealloc_bytes: plan.writer.prealloc_bytes,
            lag_limit_ns: (plan.writer.lag_limit_ms * 1e6) as u64,
            durability: plan.writer.durability,
            ack_file,
            ack_buf: Vec::with_capacity(4096),
            out,
            ticker: Ticker::default(),
            open_matches: 0,
            rd,
        })
    }

    fn log(&self, slot: u32) -> &MatchLog {
        self.matches[slot as usize].as_ref().expect("live slot")
    }

    fn log_mut(&mut self, slot: u32) -> &mut MatchLog {
        self.matches[slot as usize].as_mut().expect("live slot")
    }

    /// Submit, or queue behind earlier back-pressured ops (keeps submission order).
    fn submit(&mut self, rec: OpRec, op: Op<R::Buf>) {
        if let Some(slot) = rec.slot() {
            self.log_mut(slot).ops_in_flight += 1;
        }
        let token = self.ops.insert(rec);
        if !self.backlog.is_empty() {
            self.backlog.push_back((token, op));
            return;
        }
        if let Err(op) = self.eng.submit(token, op) {
            self.backlog.push_back((token, op));
        }
    }

    fn resubmit_backlog(&mut self) {
        while let Some((token, op)) = self.backlog.pop_front() {
            if let Err(op) = self.eng.submit(token, op) {
                self.backlog.push_front((token, op));
                break;
            }
        }
    }

    fn has_room(&self) -> bool {
        self.backlog.is_empty() && self.eng.in_flight() < self.caps.max_in_flight
    }

    /// Run the schedule to its end, seal every open log, drain the engine.
    pub fn run(mut self) -> WorkerOutcome {
        self.out.caps = Some(self.caps.clone());
        let result = self.main_loop().and_then(|()| self.seal_all());
        if let Err(e) = result {
            self.out.fatal.get_or_insert(e);
        }
        let mut rest = Vec::new();
        if let Err(e) = self
            .eng
            .drain(&mut rest, Instant::now() + Duration::from_secs(60))
        {
            self.out.fatal.get_or_insert(format!("drain: {e}"));
        }
        for c in rest {
            if let Some(b) = c.buf {
                self.eng.release_buf(b);
            }
        }
        self.flush_ack_log();
        self.ticker.send(self.ctx);
        self.out.interrupted = INTERRUPTED.load(Ordering::Relaxed);
        self.out
    }

    fn main_loop(&mut self) -> Result<(), String> {
        loop {
            if self.ctx.should_stop() {
                return Ok(());
            }
            let now = self.clock.now_ns();
            self.ticker.roll(now, self.ctx);
            self.resubmit_backlog();
            // Events that are due (bounded per turn so completions are not starved).
            let mut n = 0;
            while let Some(t) = self.sched.peek_t_ns() {
                if t > now || n >= 256 {
                    break;
                }
                let ev = self.sched.next_event().expect("peeked");
                let lag = now - t;
                if self.clock.in_window(t) {
                    self.out.stats.max_lag_ns = self.out.stats.max_lag_ns.max(lag);
                    self.ticker.lag(lag);
                    if lag > self.lag_limit_ns {
                        self.out.saturated = true;
                    }
                }
                self.on_event(ev);
                n += 1;
            }
            if self.rd.is_some() {
                self.read_events(now);
            }
            self.fire_timers(now);
            self.retry_flushes();
            self.retry_reads(now);
            // No separate flush: reap (below) submits what is queued first.
            let next_due = [
                self.sched.peek_t_ns(),
                self.timers.peek().map(|r| r.0 .0),
                self.rd.as_ref().and_then(|rd| rd.next_due_ns()),
            ]
            .into_iter()
            .flatten()
            .min();
            if self.sched.peek_t_ns().is_none() && now >= self.clock.window_end_ns {
                // The schedule is over; sealing takes care of what is still staged.
                return Ok(());
            }
            let wake = next_due.unwrap_or(self.clock.window_end_ns);
            if n >= 256 {
                // More events are due: take what has completed, do not wait.
                self.reap(Instant::now())?;
            } else if self.eng.in_flight() == 0 && !self.caps.polls {
                // A busy-polling engine spins in `reap` instead (its reactor never sleeps).
                let now = self.clock.now_ns();
                if wake > now {
                    std::thread::sleep(Duration::from_nanos((wake - now).min(50_000_000)));
                }
            } else {
                let deadline = self
                    .clock
                    .instant(wake)
                    .min(Instant::now() + Duration::from_millis(50));
                self.reap(deadline)?;
            }
            self.flush_ack_log();
            if self.out.stats.errors > self.ctx.plan.max_errors {
                self.ctx.stop.store(true, Ordering::Relaxed);
                return Ok(());
            }
        }
    }

    /// End of the run: seal every open log (end frame, final sync, close) and wait for it.
    fn seal_all(&mut self) -> Result<(), String> {
        let now = self.clock.now_ns();
        let slots: Vec<u32> = (0..self.matches.len() as u32)
            .filter(|s| self.matches[*s as usize].is_some())
            .collect();
        for slot in slots {
            self.seal(slot, now);
        }
        self.stop_reads(now);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.open_matches > 0 || self.reads_busy() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} logs still not sealed ({} replay reads unfinished) 120 s after the run ended",
                    self.open_matches,
                    self.rd.as_ref().map_or(0, |rd| rd.live_sessions())
                ));
            }
            if self.ctx.stop.load(Ordering::Relaxed)
                && self.out.stats.errors > self.ctx.plan.max_errors
            {
                // A failed run stops sealing; drain returns every buffer.
                return Ok(());
            }
            self.resubmit_backlog();
            self.retry_flushes();
            let now = self.clock.now_ns();
            self.retry_reads(now);
            self.eng
                .flush()
                .map_err(|e| format!("engine {}: flush: {e}", self.caps.name))?;
            let reads_waiting = self.rd.as_ref().is_some_and(|rd| rd.has_retries());
            if self.eng.in_flight() == 0
                && self.backlog.is_empty()
                && self.retry.is_empty()
                && !reads_waiting
            {
                // Nothing can progress: every remaining log failed.
                let stuck: Vec<u32> = (0..self.matches.len() as u32)
                    .filter(|s| self.matches[*s as usize].is_some())
                    .collect();
                for s in stuck {
                    self.advance(s);
                }
                if self.eng.in_flight() == 0 && self.backlog.is_empty() {
                    return Ok(());
                }
            }
            self.reap(Instant::now() + Duration::from_millis(10))?;
            self.flush_ack_log();
        }
        Ok(())
    }

    fn reap(&mut self, deadline: Instant) -> Result<(), String> {
        let mut comps = std::mem::take(&mut self.comps);
        self.eng
            .reap(&mut comps, deadline)
            .map_err(|e| format!("engine {}: reap: {e}", self.caps.name))?;
        if !comps.is_empty() {
            let now = self.clock.now_ns();
            for c in comps.drain(..) {
                self.on_completion(c, now);
            }
        }
        self.comps = comps;
        Ok(())
    }

    // ---- events ----

    fn on_event(&mut self, ev: DsEvent) {
        match ev {
            DsEvent::Start { match_id, t_ns } => self.start_match(match_id, t_ns),
            DsEvent::Snapshot {
                match_id,
                seq,
                t_ns,
                kind,
                payload_bytes,
            } => {
                if self.clock.in_window(t_ns) {
                    self.out.offered += 1;
                }
                if let Some(&slot) = self.by_id.get(&match_id) {
                    self.append(slot, seq, t_ns, kind, payload_bytes);
                }
            }
            DsEvent::End { match_id, t_ns } => {
                if let Some(&slot) = self.by_id.get(&match_id) {
                    self.seal(slot, t_ns);
                }
            }
        }
    }

    fn start_match(&mut self, id: u64, t_ns: u64) {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.matches.push(None);
                (self.matches.len() - 1) as u32
            }
        };
        let mut staging = Vec::with_capacity(self.segment_bytes as usize * 2 + BLOCK_BYTES);
        staging.resize(BLOCK_BYTES, 0);
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        snaplog::encode_file_header(id, created, &mut staging);
        self.matches[slot as usize] = Some(MatchLog {
            id,
            phase: Phase::Creating,
            staging,
            staged_off: 0,
            next_off: BLOCK_BYTES as u64,
            submitted_off: 0,
            written_off: 0,
            synced_off: 0,
            alloc_end: self.prealloc_bytes,
            writes: VecDeque::with_capacity(8),
            tail_busy: false,
            alloc_busy: false,
            sync_busy: false,
            sync_wanted: false,
            flush_wanted: true,
            in_retry: false,
            dir_synced: false,
            opened: false,
            sealing: false,
            final_sync_done: false,
            close_sent: false,
            ops_in_flight: 0,
            oldest_unflushed_t: None,
            pending: VecDeque::with_capacity(256),
            n_written: 0,
            frames: 0,
            payload_sum: 0,
            last_t_ns: t_ns,
            keys: Vec::with_capacity(8),
            key_stride: 1,
            key_count: 0,
            readers: 0,
            followers: 0,
            end_t_ns: 0,
            sealed_ok: false,
        });
        self.by_id.insert(id, slot);
        self.open_matches += 1;
        self.out.matches_started += 1;
        self.submit(
            OpRec::Create { slot },
            Op::Create {
                file: MatchId(id),
                kind: FileKind::Log,
                prealloc_bytes: self.prealloc_bytes,
            },
        );
        if let Durability::Interval { ms } = self.durability {
            self.timers.push(Reverse((
                t_ns + (ms * 1e6) as u64,
                TimerKind::Sync,
                slot,
                id,
            )));
        }
    }

    #[inline]
    fn append(&mut self, slot: u32, seq: u64, t_ns: u64, kind: SnapKind, payload_bytes: u32) {
        let flush_ns = self.flush_ns;
        let segment = self.segment_bytes;
        let m = self.log_mut(slot);
        if m.sealing || m.phase == Phase::Failed {
            return;
        }
        let fk = match kind {
            SnapKind::Delta => FrameKind::Delta,
            SnapKind::Keyframe => FrameKind::Keyframe,
        };
        let payload = snaplog::clamp_payload_bytes(payload_bytes);
        if fk == FrameKind::Keyframe {
            index_keyframe(m, seq, t_ns);
        }
        m.next_off =
            snaplog::append_frame(&mut m.staging, m.next_off, m.id, seq, t_ns, fk, payload);
        m.pending.push_back(SnapRec {
            end_off: m.next_off,
            seq,
            t_ns,
            payload_bytes: payload,
        });
        m.frames += 1;
        m.payload_sum += u64::from(payload);
        m.last_t_ns = t_ns;
        let due_now = m.next_off - m.submitted_off >= segment;
        let mut timer = None;
        if m.oldest_unflushed_t.is_none() {
            m.oldest_unflushed_t = Some(t_ns);
            timer = Some(Reverse((t_ns + flush_ns, TimerKind::Flush, slot, m.id)));
        }
        if let Some(t) = timer {
            self.timers.push(t);
        }
        if due_now {
            self.flush(slot);
        }
    }

    fn seal(&mut self, slot: u32, t_ns: u64) {
        let m = self.log_mut(slot);
        if m.sealing {
            return;
        }
        m.sealing = true;
        m.end_t_ns = t_ns.max(m.last_t_ns);
        if m.phase != Phase::Failed {
            m.next_off = snaplog::append_end_frame(
                &mut m.staging,
                m.next_off,
                m.frames,
                t_ns.max(m.last_t_ns),
                m.frames,
                m.payload_sum,
            );
            m.flush_wanted = true;
        }
        self.advance(slot);
    }

    fn fire_timers(&mut self, now: u64) {
        while let Some(&Reverse((t, kind, slot, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if matches!(kind, TimerKind::Read | TimerKind::Viewer) {
                self.on_read_timer(kind, slot, id, now);
                continue;
            }
            let alive = matches!(&self.matches.get(slot as usize), Some(Some(m)) if m.id == id);
            if !alive {
                continue;
            }
            match kind {
                TimerKind::Flush => {
                    let m = self.log(slot);
                    if m.oldest_unflushed_t
                        .is_some_and(|t0| t0 + self.flush_ns <= t)
                    {
                        self.flush(slot);
                    }
                }
                TimerKind::Sync => {
                    let Durability::Interval { ms } = self.durability else {
                        continue;
                    };
                    let m = self.log(slot);
                    if m.sealing || m.phase == Phase::Failed {
                        continue;
                    }
                    self.timers
                        .push(Reverse((t + (ms * 1e6) as u64, TimerKind::Sync, slot, id)));
                    self.request_sync(slot);
                }
                TimerKind::Read | TimerKind::Viewer => {}
            }
        }
    }

    fn retry_flushes(&mut self) {
        if self.retry.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.retry);
        for slot in &list {
            if let Some(m) = self.matches[*slot as usize].as_mut() {
                m.in_retry = false;
            }
        }
        for slot in &list {
            if self.matches[*slot as usize].is_some() {
                self.advance(*slot);
            }
        }
        let mut list = list;
        list.clear();
        if self.retry.is_empty() {
            self.retry = list;
        }
    }

    fn defer(&mut self, slot: u32) {
        let m = self.log_mut(slot);
        m.flush_wanted = true;
        if !m.in_retry {
            m.in_retry = true;
            self.retry.push(slot);
        }
    }

    /// Hand staged bytes to the engine as writes (whole aligned blocks for O_DIRECT engines).
    fn flush(&mut self, slot: u32) {
        let align = self.align;
        let max_write = self.max_write_bytes;
        {
            let m = self.log_mut(slot);
            if m.phase != Phase::Open {
                m.flush_wanted = true;
                return;
            }
            if m.next_off == m.submitted_off {
                m.flush_wanted = false;
                m.oldest_unflushed_t = None;
                return;
            }
            // One write per log in flight: a later write must never become durable before an
            // earlier one (dsync, or another log's sync committing the shared journal), or a
            // power cut leaves a hole followed by valid frames.
            if m.tail_busy || m.alloc_busy || !m.writes.is_empty() {
                m.flush_wanted = true;
                return;
            }
        }
        // `staging` holds the file's bytes from `base` to `next_off`; it is only trimmed
        // below, after `staged_off` has moved past the chunk written now.
        let (start, data_end, alloc_end, base) = {
            let m = self.log(slot);
            (
                m.staged_off,
                m.next_off,
                m.alloc_end,
                m.next_off - m.staging.len() as u64,
            )
        };
        let mut end = data_end.div_ceil(align) * align;
        if end - start > max_write {
            end = start + max_write;
        }
        let chunk_data_end = end.min(data_end);
        if end > alloc_end {
            let grow = (end - alloc_end).div_ceil(self.prealloc_bytes) * self.prealloc_bytes;
            let m = self.log_mut(slot);
            m.alloc_busy = true;
            m.flush_wanted = true;
            self.submit(
                OpRec::Allocate { slot, len: grow },
                Op::Allocate {
                    file: MatchId(self.log(slot).id),
                    offset: alloc_end,
                    len_bytes: grow,
                },
            );
            return;
        }
        if !self.has_room() {
            self.defer(slot);
            return;
        }
        let len = (end - start) as usize;
        let Some(mut buf) = self.eng.alloc_buf(len) else {
            self.defer(slot);
            return;
        };
        let id;
        {
            let m = self.log_mut(slot);
            id = m.id;
            let data_len = (chunk_data_end - start) as usize;
            let from = (start - base) as usize;
            let b = buf.as_mut();
            b[..data_len].copy_from_slice(&m.staging[from..from + data_len]);
            b[data_len..].fill(0);
            let tail = end > chunk_data_end;
            m.writes.push_back((chunk_data_end, false));
            m.submitted_off = chunk_data_end;
            if tail {
                m.tail_busy = true;
                m.staged_off = chunk_data_end / align * align;
            } else {
                m.staged_off = end;
            }
        }
        let submit_ns = self.clock.now_ns();
        self.note_flush_lag(slot, submit_ns);
        let dsync = self.durability == Durability::Dsync;
        self.submit(
            OpRec::Write {
                slot,
                offset: start,
                data_end: chunk_data_end,
                tail: end > chunk_data_end,
                submit_ns,
            },
            Op::Write {
                file: MatchId(id),
                offset: start,
                buf,
                dsync,
            },
        );
        // Drop what no later write needs (kept: the partial tail block, for its rewrite).
        let m = self.log_mut(slot);
        let drop_bytes = (m.staged_off - (m.next_off - m.staging.len() as u64)) as usize;
        m.staging.drain(..drop_bytes);
        if m.submitted_off == m.next_off {
            m.flush_wanted = false;
            m.oldest_unflushed_t = None;
        } else {
            // The rest goes out when this write completes (`advance`).
            m.flush_wanted = true;
        }
    }

    /// A flush that goes out after its deadline (the engine pushed back, or its pool ran dry)
    /// is lag behind schedule, like an event handled late.
    fn note_flush_lag(&mut self, slot: u32, now: u64) {
        let Some(t0) = self.log(slot).oldest_unflushed_t else {
            return;
        };
        let due = t0 + self.flush_ns;
        if now > due && self.clock.in_window(t0) {
            let lag = now - due;
            self.out.stats.max_lag_ns = self.out.stats.max_lag_ns.max(lag);
            self.ticker.lag(lag);
            if lag > self.lag_limit_ns {
                self.out.saturated = true;
            }
        }
    }

    fn request_sync(&mut self, slot: u32) {
        let m = self.log_mut(slot);
        if m.phase != Phase::Open {
            return;
        }
        if m.sync_busy {
            m.sync_wanted = true;
            return;
        }
        if m.written_off <= m.synced_off {
            return;
        }
        self.submit_sync(slot);
    }

    /// Submit a sync covering exactly the bytes written so far.
    fn submit_sync(&mut self, slot: u32) {
        let m = self.log_mut(slot);
        m.sync_busy = true;
        m.sync_wanted = false;
        let (covered, id) = (m.written_off, m.id);
        let submit_ns = self.clock.now_ns();
        self.submit(
            OpRec::Sync {
                slot,
                covered,
                submit_ns,
            },
            Op::Sync { file: MatchId(id) },
        );
    }

    /// Submit whatever is due for this log after a state change.
    fn advance(&mut self, slot: u32) {
        let m = self.log(slot);
        if m.phase == Phase::Open && m.flush_wanted && !m.in_retry {
            self.flush(slot);
        }
        let m = self.log(slot);
        if m.phase == Phase::Open && m.sync_wanted && !m.sync_busy {
            self.request_sync(slot);
        }
        let m = self.log(slot);
        let all_written = m.submitted_off == m.next_off && m.writes.is_empty();
        if m.sealing
            && m.phase == Phase::Open
            && all_written
            && m.dir_synced
            && !m.sync_busy
            && !m.final_sync_done
        {
            if m.synced_off >= m.next_off {
                self.log_mut(slot).final_sync_done = true;
            } else {
                // The final sync covers every byte of the sealed log, whatever the policy.
                self.submit_sync(slot);
            }
        }
        let m = self.log(slot);
        let closable = (m.phase == Phase::Open && m.final_sync_done)
            || (m.phase == Phase::Failed && m.sealing);
        // Replay readers share the writer's open file: it is closed after the last of them.
        if closable && !m.close_sent && m.ops_in_flight == 0 && m.readers == 0 {
            let (failed, opened, id) = (m.phase == Phase::Failed, m.opened, m.id);
            let m = self.log_mut(slot);
            m.close_sent = true;
            m.phase = Phase::Closing;
            m.sealed_ok = !failed;
            if !failed {
                self.out.matches_sealed += 1;
            }
            if opened {
                // A failed log still gets closed so its descriptor is not leaked.
                self.submit(OpRec::Close { slot }, Op::Close { file: MatchId(id) });
            } else {
                self.free_slot(slot);
            }
        }
    }

    fn free_slot(&mut self, slot: u32) {
        if let Some(m) = self.matches[slot as usize].take() {
            self.by_id.remove(&m.id);
            self.free_slots.push(slot);
            self.open_matches -= 1;
        }
    }

    fn fail(&mut self, slot: u32, msg: String) {
        self.out.stats.errors += 1;
        self.ticker.error();
        self.out.first_error.get_or_insert(msg);
        if let Some(m) = self.matches[slot as usize].as_mut() {
            if m.phase != Phase::Closing {
                m.phase = Phase::Failed;
            }
        }
    }

    // ---- completions ----

    fn on_completion(&mut self, c: Completion<R::Buf>, now: u64) {
        let rec = self.ops.take(c.token);
        if matches!(
            rec,
            OpRec::ReadOpen { .. } | OpRec::Read { .. } | OpRec::ReadClose { .. }
        ) {
            self.on_read_completion(rec, c, now);
            return;
        }
        if let Some(b) = c.buf {
            self.eng.release_buf(b);
        }
        let Some(slot) = rec.slot() else { return };
        if self.matches[slot as usize].is_none() {
            return;
        }
        self.log_mut(slot).ops_in_flight -= 1;
        let id = self.log(slot).id;
        if let (Err(_), OpRec::Close { .. }) = (&c.res, rec) {
            if self.log(slot).phase == Phase::Closing && self.out.first_error.is_some() {
                // Closing a log that already failed: its error was counted once.
                self.free_slot(slot);
                return;
            }
        }
        if let Err(e) = &c.res {
            let offset = match rec {
                OpRec::Write { offset, .. } => Some(offset),
                OpRec::Allocate { .. } => Some(self.log(slot).alloc_end),
                _ => None,
            };
            let file = if matches!(rec, OpRec::SyncDir { .. }) {
                None
            } else {
                Some((MatchId(id), FileKind::Log))
            };
            let msg = describe_error(self.caps.name, c.kind, file, offset, &self.ctx.dir, e);
            self.fail(slot, msg);
            if matches!(rec, OpRec::Close { .. }) {
                self.free_slot(slot);
            } else {
                self.advance(slot);
            }
            return;
        }
        match rec {
            OpRec::Create { slot } => {
                let m = self.log_mut(slot);
                m.opened = true;
                if m.phase == Phase::Creating {
                    m.phase = Phase::Open;
                }
                self.submit(OpRec::SyncDir { slot }, Op::SyncDir);
                self.flush(slot);
            }
            OpRec::SyncDir { slot } => {
                self.log_mut(slot).dir_synced = true;
                self.apply_durable(slot, now);
            }
            OpRec::Allocate { slot, len } => {
                let m = self.log_mut(slot);
                m.alloc_end += len;
                m.alloc_busy = false;
            }
            OpRec::Write {
                slot,
                tail,
                submit_ns,
                offset: _,
                data_end,
            } => {
                let in_window = self.clock.in_window(submit_ns);
                if in_window {
                    self.out
                        .stats
                        .hist(HistKind::IoWrite)
                        .record_ns(now - submit_ns);
                    self.out.stats.io_ops += 1;
                    self.out.stats.io_bytes += *c.res.as_ref().unwrap_or(&0) as u64;
                    self.ticker.io();
                }
                let m = self.log_mut(slot);
                // Data ends of in-flight writes strictly increase, so the end names the write.
                if let Some(w) = m.writes.iter_mut().find(|w| w.0 == data_end) {
                    w.1 = true;
                }
                if tail {
                    m.tail_busy = false;
                }
                let mut advanced = false;
                while let Some(&(end, true)) = m.writes.front() {
                    m.written_off = m.written_off.max(end);
                    m.writes.pop_front();
                    advanced = true;
                }
                if advanced {
                    self.on_written(slot, now);
                    if self.matches[slot as usize]
                        .as_ref()
                        .is_some_and(|m| m.followers > 0)
                    {
                        self.on_published(slot, now);
                    }
                }
            }
            OpRec::Sync {
                slot,
                covered,
                submit_ns,
            } => {
                if self.clock.in_window(submit_ns) {
                    self.out
                        .stats
                        .hist(HistKind::IoSync)
                        .record_ns(now - submit_ns);
                    self.out.stats.io_syncs += 1;
                }
                let m = self.log_mut(slot);
                m.sync_busy = false;
                m.synced_off = m.synced_off.max(covered);
                self.apply_durable(slot, now);
            }
            OpRec::Close { slot } => {
                self.log_finished(slot);
                self.free_slot(slot);
                return;
            }
            OpRec::ReadOpen { .. } | OpRec::Read { .. } | OpRec::ReadClose { .. } | OpRec::Free => {
            }
        }
        if self.matches[slot as usize].is_some() {
            self.advance(slot);
        }
    }

    /// Snapshots whose bytes are all written: record write latency; ack per the policy.
    fn on_written(&mut self, slot: u32, now: u64) {
        let clock = self.clock;
        let m = self.matches[slot as usize].as_mut().expect("live");
        while m.n_written < m.pending.len() {
            let rec = m.pending[m.n_written];
            if rec.end_off > m.written_off {
                break;
            }
            m.n_written += 1;
            if clock.in_window(rec.t_ns) {
                let lat = now.saturating_sub(rec.t_ns);
                self.out.stats.hists[HistKind::Lat as usize].record_ns(lat);
                self.out.stats.ops += 1;
                self.out.stats.bytes += u64::from(rec.payload_bytes);
                self.ticker.op(u64::from(rec.payload_bytes), lat);
            }
        }
        match self.durability {
            Durability::None => {
                // Acknowledged when written (not durable: nothing goes to the ack log).
                let m = self.matches[slot as usize].as_mut().expect("live");
                while m.n_written > 0 {
                    let rec = m.pending.pop_front().expect("counted");
                    m.n_written -= 1;
                    if clock.in_window(rec.t_ns) {
                        self.out.stats.hists[HistKind::Ack as usize]
                            .record_ns(now.saturating_sub(rec.t_ns));
                    }
                }
            }
            Durability::Dsync => {
                let m = self.log_mut(slot);
                m.synced_off = m.written_off;
                self.apply_durable(slot, now);
            }
            Durability::Every => self.request_sync(slot),
            Durability::Interval { .. } => {}
        }
    }

    /// Snapshots covered by a completed sync (and the directory sync): ack them.
    fn apply_durable(&mut self, slot: u32, now: u64) {
        if self.durability == Durability::None {
            return;
        }
        let clock = self.clock;
        let m = self.matches[slot as usize].as_mut().expect("live");
        if !m.dir_synced {
            return;
        }
        let durable = m.synced_off.min(m.written_off);
        let mut last = None;
        while m.n_written > 0 {
            let rec = m.pending[0];
            if rec.end_off > durable {
                break;
            }
            m.pending.pop_front();
            m.n_written -= 1;
            last = Some(rec.seq);
            if clock.in_window(rec.t_ns) {
                self.out.stats.hists[HistKind::Ack as usize]
                    .record_ns(now.saturating_sub(rec.t_ns));
            }
        }
        if let (Some(seq), true) = (last, self.ack_file.is_some()) {
            let id = m.id;
            let _ = writeln!(&mut self.ack_buf, "{id} {seq}");
        }
    }

    fn flush_ack_log(&mut self) {
        if self.ack_buf.is_empty() {
            return;
        }
        if let Some(f) = self.ack_file.as_mut() {
            // One write per batch of whole lines (O_APPEND keeps workers' lines intact).
            if let Err(e) = f.write_all(&self.ack_buf) {
                self.out.fatal.get_or_insert(format!("ack log: {e}"));
            }
        }
        self.ack_buf.clear();
    }
}
