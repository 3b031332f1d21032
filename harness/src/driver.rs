//! The per-worker driver: what every worker shares (clock, window, ticks, stop flags, errors,
//! in [`common`]) and the DS open-loop worker, the thin I/O shell that runs the sans-I/O
//! [`LogWriter`](crate::writer::LogWriter) and the replay reads over any [`Recorder`].
//!
//! The worker maps the writer's [`WriterOp`]s and the read side's ops to engine ops (copying
//! staged bytes into the engine's pool buffers: no allocation per I/O), keeps one slab of
//! in-flight records by token and one back-pressure queue, and hands completions back.
//!
//! The worker is a [`LoopBody`]: [`LoopBody::step`] takes the due events, feeds the writer and
//! the reads and submits, never blocking and taking no completions; after the window it seals
//! every open log the same way, pass by pass. [`LoopBody::complete`] takes the completions,
//! waiting for them until the deadline the step gave. [`DsWorker::run`] hands the worker to
//! the engine's own loop ([`Recorder::run_loop`]): the plain blocking loop (one submit-and-wait
//! `reap` per pass, or a sleep when nothing is in flight) for most engines, a task in glommio's
//! executor, a poller of the `poll` reactor. Latencies are measured from each snapshot's
//! intended arrival time.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use snapbench_engines::{Caps, Completion, FileKind, Flow, LoopBody, MatchId, Op, Recorder};
use snapbench_workloads::ds::{DsEvent, DsParams, DsSchedule, SnapKind};
use snapbench_workloads::reads::ReadParams;

use crate::measure::{HistKind, SecondHists};
use crate::plan::RunPlan;
use crate::snaplog::{FrameKind, BLOCK_BYTES};
use crate::writer::{FinishedLog, LogWriter, WriterConfig, WriterEvent, WriterIo, WriterOp};

pub mod common;
mod prefill;
mod replay;

pub use crate::writer::MAX_KEYS_PER_MATCH;
pub use common::{
    describe_error, Clock, Tick, Ticker, WorkCosts, WorkerCtx, WorkerOutcome, INTERRUPTED,
    MAX_READ_ERROR_MSGS,
};
use common::{Backlog, Role, StallWatch, Stopwatch};
pub use prefill::{
    prefill, prefill_note, prefill_serves, scan_corpus, writes_prefill, Corpus, MIN_PREFILL_READS,
};
use replay::{ReadEnv, ReadIo, ReadOp, ReadSide};

// ------------------------------------------------------------------------------------------
// DS worker
// ------------------------------------------------------------------------------------------

/// What an in-flight engine op was, by token.
#[derive(Clone, Copy, Debug)]
enum OpRec {
    /// An op of the log writer, submitted at `submit_ns`.
    Writer {
        op: WriterOp,
        submit_ns: u64,
    },
    /// An op of the read side.
    Read(ReadOp),
    Free,
}

/// A measurement the recorder's code produced, recorded by the harness once the recorder's call
/// returns (so histogram records are charged to the harness, not the recorder).
#[derive(Clone, Copy, Debug)]
enum Measured {
    /// Every byte of a snapshot intended at `t_ns` was written by `done_ns`.
    Written {
        t_ns: u64,
        payload_bytes: u32,
        done_ns: u64,
    },
    /// A snapshot intended at `t_ns` was acknowledged at `done_ns`.
    Acked { t_ns: u64, done_ns: u64 },
    /// An engine write or sync submitted at `submit_ns` completed at `done_ns`.
    Io {
        kind: HistKind,
        submit_ns: u64,
        done_ns: u64,
        bytes: u64,
    },
}

/// Most schedule events one pass hands the writer before it takes completions.
const MAX_EVENTS_PER_PASS: usize = 256;

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

/// The engine side of a worker: the engine, the records of its ops in flight, and the queue
/// of ops it pushed back (bounded by what the writer and the reads keep in flight).
struct EngineIo<R: Recorder> {
    eng: R,
    caps: Caps,
    ops: Slab,
    backlog: Backlog<R::Buf>,
}

impl<R: Recorder> EngineIo<R> {
    /// Submit, or queue behind earlier back-pressured ops (keeps submission order).
    fn submit(&mut self, rec: OpRec, op: Op<R::Buf>) {
        let token = self.ops.insert(rec);
        self.backlog.submit(&mut self.eng, token, op);
    }

    fn resubmit_backlog(&mut self) {
        self.backlog.resubmit(&mut self.eng);
    }

    fn has_room(&self) -> bool {
        self.backlog.is_empty() && self.eng.in_flight() < self.caps.max_in_flight
    }
}

impl<R: Recorder> ReadIo<R::Buf> for EngineIo<R> {
    fn has_room(&self) -> bool {
        EngineIo::has_room(self)
    }
    fn alloc_buf(&mut self, len: usize) -> Option<R::Buf> {
        self.eng.alloc_buf(len)
    }
    fn release_buf(&mut self, buf: R::Buf) {
        self.eng.release_buf(buf);
    }
    fn submit(&mut self, rec: ReadOp, op: Op<R::Buf>) {
        EngineIo::submit(self, OpRec::Read(rec), op);
    }
}

/// The worker as the writer sees it during one call: engine ops out, events into counters.
struct WriterShell<'s, R: Recorder> {
    io: &'s mut EngineIo<R>,
    out: &'s mut WorkerOutcome,
    ticker: &'s mut Ticker,
    clock: Clock,
    lag_limit_ns: u64,
    /// The time completions are taken at (latencies of written / acknowledged snapshots).
    now: u64,
    /// When the last write went out (its flush lag is measured then).
    last_submit_ns: u64,
    /// For the read side, after the call: followed logs with more bytes, closed logs.
    published: &'s mut Vec<u32>,
    finished: &'s mut Vec<FinishedLog>,
    reads: bool,
    /// Charges time to harness, recorder and engine.
    sw: &'s mut Stopwatch,
    /// Written / acknowledged snapshots, for the harness to record after the call.
    measured: &'s mut Vec<Measured>,
    /// Work counters (bytes copied into engine buffers).
    work: &'s mut WorkCosts,
}

impl<R: Recorder> WriterIo for WriterShell<'_, R> {
    fn submit(&mut self, op: WriterOp, data: &[u8]) -> bool {
        if matches!(op, WriterOp::Write { .. }) && !self.io.has_room() {
            return false;
        }
        let Some(eop) = common::engine_op(&mut self.io.eng, op, data) else {
            return false;
        };
        if let WriterOp::Write { .. } = op {
            self.work.copy_bytes += data.len() as u64;
        }
        // The submit itself is the engine's; its clock reading is the write's submit time.
        let prev = self.sw.role();
        let at = self.sw.switch(Role::Other);
        let submit_ns = match op {
            WriterOp::Write { .. } | WriterOp::Sync { .. } => {
                let t = self.clock.ns_at(at);
                self.last_submit_ns = t;
                t
            }
            _ => 0,
        };
        self.io.submit(OpRec::Writer { op, submit_ns }, eop);
        self.sw.switch(prev);
        true
    }

    fn event(&mut self, ev: WriterEvent) {
        let now = self.now;
        match ev {
            WriterEvent::Written {
                t_ns,
                payload_bytes,
            } => self.measured.push(Measured::Written {
                t_ns,
                payload_bytes,
                done_ns: now,
            }),
            WriterEvent::Acked { t_ns, .. } => {
                self.measured.push(Measured::Acked { t_ns, done_ns: now })
            }
            WriterEvent::Flushed {
                oldest_t_ns,
                due_ns,
            } => {
                // A flush that goes out after its deadline (the engine pushed back, or its pool
                // ran dry) is lag behind schedule, like an event handled late.
                let at = self.last_submit_ns;
                if at > due_ns && self.clock.in_window(oldest_t_ns) {
                    let lag = at - due_ns;
                    self.out.stats.max_lag_ns = self.out.stats.max_lag_ns.max(lag);
                    self.ticker.lag(lag);
                    if lag > self.lag_limit_ns {
                        self.out.saturated = true;
                    }
                }
            }
            WriterEvent::Published { slot, .. } => self.published.push(slot),
            WriterEvent::Sealed { .. } => self.out.matches_sealed += 1,
            WriterEvent::Finished(f) => {
                if self.reads {
                    self.finished.push(f);
                }
            }
        }
    }
}

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Running the schedule.
    Running,
    /// The schedule is over (or the worker was told to stop): every open log is being sealed
    /// (end frame, final sync, close) and the reads are finishing; `until` bounds it.
    Sealing { until: Instant },
    /// Nothing left to do: `finish` drains the engine and reports.
    Done,
}

/// The DS worker: schedule → log writer → engine → completions → histograms.
pub struct DsWorker<'a, R: Recorder> {
    ctx: &'a WorkerCtx,
    io: EngineIo<R>,
    clock: Clock,
    sched: DsSchedule,
    writer: LogWriter,
    comps: Vec<Completion<R::Buf>>,
    lag_limit_ns: u64,
    ack_file: Option<File>,
    out: WorkerOutcome,
    ticker: Ticker,
    last_submit_ns: u64,
    published: Vec<u32>,
    finished: Vec<FinishedLog>,
    /// The read side (replays), when the run has one.
    rd: Option<ReadSide>,
    /// The fatal error of a failed step, reported by `finish`.
    failed: Option<String>,
    phase: Phase,
    /// A peer (another reactor of the run) asked this worker to stop.
    peer_stop: bool,
    /// No completion for `stall_s` while I/O is in flight fails the run.
    stall: StallWatch,
    /// The bounded drain after the window.
    drain: Duration,
    /// Intended time of the last schedule event handled (bounds what the writer holds).
    last_event_t_ns: u64,
    // -- issue 10: search --
    /// How long the last `reap` waited inside the engine, ns (not counted as busy).
    last_reap_wait_ns: u64,
    /// Thread CPU time and clock time (ns) at the first pass.
    cpu_mark: Option<(u64, u64)>,
    // -- issue 11: harness, recorder and engine cost apart --
    /// Charges the worker's time to harness, recorder and engine.
    sw: Stopwatch,
    /// Measurements the recorder's code produced, recorded by the harness after its call.
    measured: Vec<Measured>,
    /// The events of one pass, drawn from the generator before the writer takes them.
    due: Vec<DsEvent>,
    /// Wake-up coalescing bound, ns (`coalesce_us`).
    coalesce_ns: u64,
    /// Work counters of the harness and the shell (the writer keeps its own).
    work: WorkCosts,
}

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
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
        // Offered load from the schedule itself (a copy run to the window's end before the
        // start), not from the events the generator got round to.
        let offered = offered_in_window(sched.clone(), &clock);
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
            offered,
            busy_ns: Some(0),
            ..WorkerOutcome::default()
        };
        out.stats.read_errors = corpus.errors.len() as u64;
        out.stats.seconds = SecondHists::on();
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
        out.caps = Some(caps.clone());
        let writer = LogWriter::new(WriterConfig {
            align_bytes: align,
            max_write_bytes,
            segment_bytes: plan.writer.segment_bytes,
            flush_ns: (plan.writer.flush_ms * 1e6) as u64,
            prealloc_bytes: plan.writer.prealloc_bytes,
            pad_tail: plan.writer.pad_tail,
            durability: plan.writer.durability,
            ack_lines: ack_file.is_some(),
        });
        Ok(DsWorker {
            ctx,
            io: EngineIo {
                eng,
                caps,
                ops: Slab::new(qd * 2),
                backlog: Backlog::with_capacity(qd),
            },
            clock,
            sched,
            writer,
            comps: Vec::with_capacity(qd),
            lag_limit_ns: (plan.writer.lag_limit_ms * 1e6) as u64,
            ack_file,
            out,
            ticker: Ticker::default(),
            last_submit_ns: 0,
            published: Vec::with_capacity(16),
            finished: Vec::with_capacity(4),
            rd,
            failed: None,
            phase: Phase::Running,
            peer_stop: false,
            stall: StallWatch::new(plan.stall_s, clock.start.max(Instant::now())),
            drain: Duration::from_secs_f64(plan.drain_s),
            last_event_t_ns: 0,
            last_reap_wait_ns: 0,
            cpu_mark: None,
            sw: Stopwatch::new(),
            measured: Vec::with_capacity(1024),
            due: Vec::with_capacity(MAX_EVENTS_PER_PASS),
            coalesce_ns: (plan.writer.coalesce_us * 1e3) as u64,
            work: WorkCosts::default(),
        })
    }

    /// The writer and the shell it writes through, at time `now`.
    fn parts(&mut self, now: u64) -> (&mut LogWriter, WriterShell<'_, R>) {
        let reads = self.rd.is_some();
        (
            &mut self.writer,
            WriterShell {
                io: &mut self.io,
                out: &mut self.out,
                ticker: &mut self.ticker,
                clock: self.clock,
                lag_limit_ns: self.lag_limit_ns,
                now,
                last_submit_ns: self.last_submit_ns,
                published: &mut self.published,
                finished: &mut self.finished,
                reads,
                sw: &mut self.sw,
                measured: &mut self.measured,
                work: &mut self.work,
            },
        )
    }

    /// Record what the recorder's calls measured (the harness's work): write and ack latency
    /// from the intended time, throughput by completion time, engine I/O latency.
    fn record_measured(&mut self) {
        let clock = self.clock;
        let (out, ticker) = (&mut self.out, &mut self.ticker);
        for m in self.measured.drain(..) {
            match m {
                Measured::Written {
                    t_ns,
                    payload_bytes,
                    done_ns,
                } => {
                    if clock.in_window(t_ns) {
                        let lat = done_ns.saturating_sub(t_ns);
                        out.stats.record(HistKind::Lat, lat);
                        out.stats.ops += 1;
                        out.stats.bytes += u64::from(payload_bytes);
                        ticker.op(u64::from(payload_bytes), lat);
                    }
                    // Throughput counts what completed in the window, whenever it was intended.
                    if clock.in_window(done_ns) {
                        out.window_ops += 1;
                        out.window_bytes += u64::from(payload_bytes);
                    }
                }
                Measured::Acked { t_ns, done_ns } => {
                    if clock.in_window(t_ns) {
                        out.stats
                            .record(HistKind::Ack, done_ns.saturating_sub(t_ns));
                    }
                }
                Measured::Io {
                    kind,
                    submit_ns,
                    done_ns,
                    bytes,
                } => {
                    if clock.in_window(submit_ns) {
                        out.stats.record(kind, done_ns.saturating_sub(submit_ns));
                        if kind == HistKind::IoWrite {
                            out.stats.io_ops += 1;
                            out.stats.io_bytes += bytes;
                            ticker.io();
                        } else {
                            out.stats.io_syncs += 1;
                        }
                    }
                }
            }
        }
    }

    /// Run `f` on the writer with its shell.
    #[inline]
    fn with_writer(&mut self, now: u64, f: impl FnOnce(&mut LogWriter, &mut WriterShell<'_, R>)) {
        let (w, mut sh) = self.parts(now);
        f(w, &mut sh);
        let last = sh.last_submit_ns;
        self.last_submit_ns = last;
    }

    /// Run `f` on the read side (if any) with its environment, then let the writer act on what
    /// the reads did (a reader left a log: its close may be due).
    #[inline]
    fn with_reads(&mut self, f: impl FnOnce(&mut ReadSide, &mut ReadEnv<'_, R::Buf>)) {
        let Some(rd) = self.rd.as_mut() else { return };
        let engine = self.io.caps.name;
        let mut env = ReadEnv {
            logs: &mut self.writer,
            io: &mut self.io,
            out: &mut self.out,
            ticker: &mut self.ticker,
            clock: self.clock,
            dir: &self.ctx.dir,
            engine,
        };
        f(rd, &mut env);
    }

    /// Carry the writer's effects to the read side (published bytes, closed logs) and the read
    /// side's back to the writer (pins released), until nothing is left.
    fn settle(&mut self, now: u64) {
        loop {
            if !self.finished.is_empty() {
                let mut fin = std::mem::take(&mut self.finished);
                if let Some(rd) = self.rd.as_mut() {
                    for f in fin.drain(..) {
                        rd.log_finished(f);
                    }
                }
                fin.clear();
                self.finished = fin;
            }
            if !self.published.is_empty() {
                let mut pubs = std::mem::take(&mut self.published);
                self.with_reads(|rd, env| {
                    for &slot in &pubs {
                        rd.on_published(env, slot, now);
                    }
                });
                pubs.clear();
                if self.published.is_empty() {
                    self.published = pubs;
                }
            }
            if !self.writer.has_poked() {
                if self.finished.is_empty() && self.published.is_empty() {
                    return;
                }
                continue;
            }
            self.with_writer(now, |w, sh| w.advance_poked(sh));
        }
    }

    /// Run the schedule to its end, seal every open log, drain the engine: the engine runs
    /// this worker's passes in its own loop ([`Recorder::run_loop`]; the plain blocking loop
    /// unless the engine owns one), then [`finish`](DsWorker::finish) reports.
    pub fn run(mut self) -> WorkerOutcome {
        if let Err(e) = R::run_loop(&mut self) {
            // `complete` recorded the engine's failure; anything else the loop itself hit.
            let msg = format!("engine {}: {e}", self.io.caps.name);
            self.failed.get_or_insert(msg);
        }
        self.finish()
    }

    /// End of the run: seal what is still open (when the loop did not get to it), drain the
    /// engine, report.
    pub fn finish(mut self) -> WorkerOutcome {
        self.record_measured();
        let result = match self.failed.take() {
            Some(e) => Err(e),
            None if self.phase != Phase::Done => self.seal_blocking(),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.out.fatal.get_or_insert(e);
        }
        self.account_not_completed(self.clock.now_ns());
        let mut rest = Vec::new();
        // A stalled engine gets a short drain: it already failed to complete for `stall_s`.
        let drain_for = if self
            .out
            .fatal
            .as_deref()
            .is_some_and(|e| e.contains("no completion for"))
        {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(60)
        };
        if let Err(e) = self.io.eng.drain(&mut rest, Instant::now() + drain_for) {
            self.out.fatal.get_or_insert(format!("drain: {e}"));
        }
        for c in rest {
            if let Some(b) = c.buf {
                self.io.eng.release_buf(b);
            }
        }
        self.flush_ack_log();
        self.record_measured();
        self.ticker.send(self.ctx, &mut self.out.stats.seconds);
        self.out.interrupted = INTERRUPTED.load(Ordering::Relaxed);
        let w = self.writer.work();
        self.out.costs = Some(WorkCosts {
            harness_ns: self.sw.harness_ns,
            recorder_ns: self.sw.recorder_ns,
            snapshots_framed: w.frames,
            crc_bytes: w.crc_bytes,
            timers_fired: w.timers_fired,
            hist_records: self.out.stats.hist_records,
            ..self.work
        });
        self.out
    }

    /// Whether to stop early: the run's stop flag, a signal, or a peer's message.
    fn should_stop(&self) -> bool {
        self.peer_stop || self.ctx.should_stop()
    }

    /// One pass of the running schedule at `now` (ns on the run's clock): the due events, the
    /// reads, the writer's timers and retries, all submitted; no completions taken.
    fn run_pass(&mut self, now: u64) -> Flow {
        if self.should_stop() {
            return self.start_sealing(now);
        }
        if self.out.saturated {
            // Lag passed the limit: the run is saturated; stop early (what is left of the
            // window counts as not completed).
            self.out.stopped_early = now < self.clock.window_end_ns;
            return self.start_sealing(now);
        }
        self.ticker.roll(now, self.ctx, &mut self.out.stats.seconds);
        if !self.io.backlog.is_empty() {
            self.sw.switch(Role::Other);
            self.io.resubmit_backlog();
            self.sw.switch(Role::Harness);
        }
        // The generator's events that are due (bounded per pass so completions are not
        // starved), drawn first so the writer then takes them in one stretch.
        let mut due = std::mem::take(&mut self.due);
        while let Some(t) = self.sched.peek_t_ns() {
            if t > now || due.len() >= MAX_EVENTS_PER_PASS {
                break;
            }
            let ev = self.sched.next_event().expect("peeked");
            self.note_lag(t, now - t);
            due.push(ev);
        }
        let n = due.len();
        self.sw.switch(Role::Recorder);
        if let Some(last) = due.last() {
            let t = last.t_ns();
            for ev in due.drain(..) {
                // Timers fire in intended-time order with the events (a deadline at or before
                // a snapshot's time first), so what the writer does depends on the schedule,
                // not on how late or how full a pass was.
                let t = ev.t_ns();
                if self.writer.next_deadline_ns().is_some_and(|d| d <= t) {
                    self.with_writer(now, |w, sh| w.on_timers(t, sh));
                }
                self.on_event(ev, now);
            }
            self.last_event_t_ns = t;
            // The last event of the batch was handled (submitted, however long the engine
            // blocked inside `submit`) by now: its lag includes that time.
            let done = self.clock.ns_at(self.sw.switch(Role::Recorder));
            self.note_lag(t, done.saturating_sub(t));
        }
        self.due = due;
        if self.rd.is_some() {
            self.with_reads(|rd, env| rd.read_events(env, now));
            self.settle(now);
        }
        // Timers due inside the schedule's horizon only: past the window's end sealing flushes
        // and syncs every log, so which late deadlines a pass still fires would depend on
        // when the pass happened to run.
        let timers_until = now.min(self.clock.window_end_ns.saturating_sub(1));
        self.with_writer(now, |w, sh| {
            w.on_timers(timers_until, sh);
            w.retry(sh);
        });
        if self.rd.is_some() {
            self.with_reads(|rd, env| {
                rd.fire_timers(env, now);
                rd.retry_reads(env, now);
            });
            self.settle(now);
        }
        self.sw.switch(Role::Harness);
        // The drain's time past the window's end, within which a pass the bound cut short
        // may go on.
        let drain_end = self
            .clock
            .window_end_ns
            .saturating_add(self.drain.as_nanos() as u64);
        if n >= MAX_EVENTS_PER_PASS && now < drain_end {
            // More events are due: take what has completed, do not wait. This holds past the
            // window's end too (a coalesced wake-up at the end can find more due than one
            // pass takes), for at most the drain: a generator truly behind is stopped by the
            // lag limit, or by that.
            return Flow::Again;
        }
        if now >= self.clock.window_end_ns {
            // The window is over: the generator stops (a saturated one leaves events it did
            // not get round to; they count as not completed), sealing takes care of what is
            // still staged, within the bounded drain.
            return self.start_sealing(now);
        }
        // No separate flush: `complete` (reap) submits what is queued first.
        let wake = [
            self.sched.peek_t_ns(),
            self.writer.next_deadline_ns(),
            self.rd.as_ref().and_then(|rd| rd.next_due_ns()),
            self.rd.as_ref().and_then(|rd| rd.next_timer_ns()),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.clock.window_end_ns);
        // Coalesced wake-ups: the next pass is at least `coalesce_ns` after this one, so it
        // handles every event due by then; none waits more than that past its intended time
        // (latency is measured from it). At most 50 ms from this pass's time (no second clock
        // read).
        let wake = wake.max(now + self.coalesce_ns).min(now + 50_000_000);
        Flow::Wait(self.clock.instant(wake))
    }

    /// At the drain's end (`end_ns`): every snapshot intended in the window and not written is
    /// recorded in the write histogram at its lower bound (end − intended time) and counted as
    /// not completed, never dropped. Those the generator never handled have their exact
    /// intended times (from the rest of the schedule); those the writer still held were intended
    /// no later than the last event handled, which bounds them.
    fn account_not_completed(&mut self, end_ns: u64) {
        let stats = &mut self.out.stats;
        let mut unhandled = 0u64;
        while let Some(ev) = self.sched.next_event() {
            if let DsEvent::Snapshot { t_ns, .. } = ev {
                if t_ns >= self.clock.window_end_ns {
                    break;
                }
                if self.clock.in_window(t_ns) {
                    stats.record(HistKind::Lat, end_ns.saturating_sub(t_ns));
                    unhandled += 1;
                }
            }
        }
        let held = self
            .out
            .offered
            .saturating_sub(self.out.stats.ops)
            .saturating_sub(unhandled);
        let stats = &mut self.out.stats;
        for _ in 0..held {
            stats.record(HistKind::Lat, end_ns.saturating_sub(self.last_event_t_ns));
        }
        self.out.not_completed = unhandled + held;
    }

    /// Lag of an event intended at `t` handled `lag` late.
    #[inline]
    fn note_lag(&mut self, t: u64, lag: u64) {
        if self.clock.in_window(t) {
            self.out.stats.max_lag_ns = self.out.stats.max_lag_ns.max(lag);
            self.ticker.lag(lag);
            if lag > self.lag_limit_ns {
                self.out.saturated = true;
            }
        }
    }

    /// The schedule is over: seal every open log, stop the reads, and go on sealing.
    fn start_sealing(&mut self, now: u64) -> Flow {
        self.out.ran_window_ns = now
            .min(self.clock.window_end_ns)
            .saturating_sub(self.clock.window_start_ns);
        self.out.polls = self.io.caps.polls;
        if let Some((cpu0, t0)) = self.cpu_mark {
            // Up to now, which may be past the window's end when the worker fell behind.
            let wall = now.saturating_sub(t0);
            if wall > 0 {
                self.out.thread_cpu_util =
                    Some(thread_cpu_ns().saturating_sub(cpu0) as f64 / wall as f64);
            }
        }
        if let Some(t) = self.sched.peek_t_ns() {
            // The generator stops behind schedule: its first unhandled event (or the window's
            // start, for one that never reached the window) is at least this late.
            if t < self.clock.window_end_ns {
                let t = t.max(self.clock.window_start_ns);
                self.note_lag(t, now.saturating_sub(t));
            }
        }
        self.with_writer(now, |w, sh| {
            for slot in 0..crate::writer::LiveLogs::slots(w) {
                if w.state(slot).is_some() {
                    w.seal(slot, now, sh);
                }
            }
        });
        self.with_reads(|rd, env| rd.stop_reads(env, now));
        self.settle(now);
        self.phase = Phase::Sealing {
            until: Instant::now() + self.drain,
        };
        self.seal_pass(now)
    }

    /// One pass of sealing: retry what was pushed back, and say whether anything is left.
    fn seal_pass(&mut self, now: u64) -> Flow {
        let Phase::Sealing { until } = self.phase else {
            debug_assert!(false, "seal_pass outside sealing");
            return Flow::Done;
        };
        if self.writer.open_logs() == 0 && !self.rd.as_ref().is_some_and(|rd| rd.reads_busy()) {
            self.phase = Phase::Done;
            return Flow::Done;
        }
        if Instant::now() >= until {
            // The drain is over: what was not written is recorded as not completed (`finish`);
            // logs left open with nothing missing are a failure to seal.
            if self.sched.peek_t_ns().is_none() && self.out.stats.ops >= self.out.offered {
                self.failed.get_or_insert(format!(
                    "{} logs still not sealed ({} replay reads unfinished) {} s after the run ended",
                    self.writer.open_logs(),
                    self.rd.as_ref().map_or(0, |rd| rd.live_sessions()),
                    self.drain.as_secs_f64()
                ));
            }
            self.phase = Phase::Done;
            return Flow::Done;
        }
        if self.ctx.stop.load(Ordering::Relaxed) && self.out.stats.errors > self.ctx.plan.max_errors
        {
            // A failed run stops sealing; drain returns every buffer.
            self.phase = Phase::Done;
            return Flow::Done;
        }
        self.io.resubmit_backlog();
        self.with_writer(now, |w, sh| w.retry(sh));
        self.with_reads(|rd, env| rd.retry_reads(env, now));
        self.settle(now);
        if let Err(e) = self.io.eng.flush() {
            self.failed
                .get_or_insert(format!("engine {}: flush: {e}", self.io.caps.name));
            return Flow::Done;
        }
        let reads_waiting = self.rd.as_ref().is_some_and(|rd| rd.has_retries());
        if self.io.eng.in_flight() == 0
            && self.io.backlog.is_empty()
            && !self.writer.has_retries()
            && !reads_waiting
        {
            // Nothing can progress: every remaining log failed.
            self.with_writer(now, |w, sh| w.advance_all(sh));
            if self.io.eng.in_flight() == 0 && self.io.backlog.is_empty() {
                self.phase = Phase::Done;
                return Flow::Done;
            }
        }
        Flow::Wait(Instant::now() + Duration::from_millis(10))
    }

    /// Seal outside any engine loop (a caller that drove [`LoopBody::step`] itself and stopped
    /// before the worker said it was done).
    fn seal_blocking(&mut self) -> Result<(), String> {
        loop {
            let now = self.clock.now_ns();
            let flow = match self.phase {
                Phase::Running => self.start_sealing(now),
                Phase::Sealing { .. } => self.seal_pass(now),
                Phase::Done => Flow::Done,
            };
            match flow {
                Flow::Done => return self.failed.take().map_or(Ok(()), Err),
                Flow::Again => self.complete_at(Instant::now())?,
                Flow::Wait(d) => self.complete_at(d)?,
            }
        }
    }

    /// Take completions until `deadline` (or sleep until then when nothing is in flight on an
    /// engine that does not poll: a busy-polling engine spins in `reap` instead, its reactor
    /// never sleeps), then write the ack log's new lines and check the error budget.
    fn complete_at(&mut self, deadline: Instant) -> Result<(), String> {
        let t0 = self.sw.switch(Role::Harness);
        self.sw.counting =
            self.phase == Phase::Running && self.clock.in_window(self.clock.ns_at(t0));
        let waited_ns = if self.io.eng.in_flight() == 0 && !self.io.caps.polls {
            self.stall.check(t0, 0, 0);
            if deadline > t0 {
                // The sleep's wall time is not work; its CPU (the syscall, the timer, the
                // wake-up) is the harness's, from the thread's CPU clock.
                self.sw.switch(Role::Other);
                let cpu0 = thread_cpu_ns();
                std::thread::sleep(deadline - t0);
                let cpu1 = thread_cpu_ns();
                self.work.sleeps += 1;
                if self.sw.counting {
                    self.work.sleep_cpu_ns += cpu1.saturating_sub(cpu0);
                }
                self.sw.switch(Role::Harness);
            }
            t0.elapsed().as_nanos() as u64
        } else {
            self.sw.switch(Role::Other);
            self.reap(deadline)?;
            self.sw.switch(Role::Harness);
            self.last_reap_wait_ns
        };
        // Worker utilisation of a busy-polling engine: what this call did apart from waiting
        // is busy time (other engines use the thread's CPU time instead).
        if self.io.caps.polls {
            let busy = (t0.elapsed().as_nanos() as u64).saturating_sub(waited_ns);
            self.note_busy(t0, busy);
        }
        if !self.writer.ack_lines().is_empty() {
            self.sw.switch(Role::Recorder);
            self.flush_ack_log();
        }
        if self.phase == Phase::Running && self.out.stats.errors > self.ctx.plan.max_errors {
            self.ctx.stop.store(true, Ordering::Relaxed);
        }
        self.sw.switch(Role::Other);
        Ok(())
    }

    /// Worker utilisation: `busy_ns` of work that began at `t0` counts when the worker was
    /// running the schedule inside the window.
    #[inline]
    fn note_busy(&mut self, t0: Instant, busy_ns: u64) {
        if self.phase == Phase::Running && self.clock.in_window(self.clock.ns_at(t0)) {
            if let Some(b) = self.out.busy_ns.as_mut() {
                *b += busy_ns;
            }
        }
    }

    fn reap(&mut self, deadline: Instant) -> Result<(), String> {
        let mut comps = std::mem::take(&mut self.comps);
        let t0 = self.io.caps.polls.then(Instant::now);
        let reaped = self.io.eng.reap(&mut comps, deadline);
        // Completions are the recorder's to handle; this reading is their completion time.
        let at = self.sw.switch(Role::Recorder);
        self.last_reap_wait_ns =
            t0.map_or(0, |t| at.saturating_duration_since(t).as_nanos() as u64);
        reaped.map_err(|e| format!("engine {}: reap: {e}", self.io.caps.name))?;
        let stalled = self.stall.check(at, comps.len(), self.io.eng.in_flight());
        if let Some(msg) = stalled {
            self.comps = comps;
            return Err(format!("engine {}: {msg}", self.io.caps.name));
        }
        if !comps.is_empty() {
            let now = self.clock.ns_at(at);
            for c in comps.drain(..) {
                self.on_completion(c, now);
            }
        }
        self.comps = comps;
        if !self.measured.is_empty() {
            self.sw.switch(Role::Harness);
            self.record_measured();
        }
        Ok(())
    }

    // ---- events ----

    fn on_event(&mut self, ev: DsEvent, now: u64) {
        match ev {
            DsEvent::Start { match_id, t_ns } => {
                let created = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                self.out.matches_started += 1;
                self.with_writer(now, |w, sh| {
                    w.start(match_id, t_ns, created, sh);
                });
            }
            DsEvent::Snapshot {
                match_id,
                seq,
                t_ns,
                kind,
                payload_bytes,
            } => {
                if let Some(slot) = self.writer.slot_of(match_id) {
                    let kind = frame_kind(kind);
                    self.with_writer(now, |w, sh| {
                        w.append(slot, seq, t_ns, kind, payload_bytes, sh)
                    });
                }
            }
            DsEvent::End { match_id, t_ns } => {
                if let Some(slot) = self.writer.slot_of(match_id) {
                    self.with_writer(now, |w, sh| w.seal(slot, t_ns, sh));
                }
            }
        }
    }

    // ---- completions ----

    fn on_completion(&mut self, c: Completion<R::Buf>, now: u64) {
        let (op, submit_ns) = match self.io.ops.take(c.token) {
            OpRec::Read(rec) => {
                self.with_reads(|rd, env| rd.on_read_completion(env, rec, c, now));
                self.settle(now);
                return;
            }
            OpRec::Writer { op, submit_ns } => (op, submit_ns),
            OpRec::Free => {
                debug_assert!(false, "completion of a free token");
                return;
            }
        };
        if let Some(b) = c.buf {
            self.io.eng.release_buf(b);
        }
        let ok = match &c.res {
            Ok(n) => {
                self.record_io(op, submit_ns, *n as u64, now);
                true
            }
            Err(e) => {
                // Closing a log that already failed: its error was counted once.
                let counted =
                    matches!(op, WriterOp::Close { .. }) && self.out.first_error.is_some();
                if !counted {
                    let file = match op {
                        WriterOp::SyncDir { .. } => None,
                        _ => Some((MatchId(op.log().id), FileKind::Log)),
                    };
                    let msg = describe_error(
                        self.io.caps.name,
                        c.kind,
                        file,
                        op.offset(),
                        &self.ctx.dir,
                        e,
                    );
                    self.out.stats.errors += 1;
                    self.ticker.error();
                    self.out.first_error.get_or_insert(msg);
                }
                false
            }
        };
        self.with_writer(now, |w, sh| w.on_complete(op, ok, sh));
        self.settle(now);
    }

    /// The I/O histograms of a completed write or sync (recorded by the harness after the
    /// completions are handled).
    fn record_io(&mut self, op: WriterOp, submit_ns: u64, bytes: u64, now: u64) {
        let kind = match op {
            WriterOp::Write { .. } => HistKind::IoWrite,
            WriterOp::Sync { .. } => HistKind::IoSync,
            _ => return,
        };
        self.measured.push(Measured::Io {
            kind,
            submit_ns,
            done_ns: now,
            bytes,
        });
    }

    fn flush_ack_log(&mut self) {
        if self.writer.ack_lines().is_empty() {
            return;
        }
        if let Some(f) = self.ack_file.as_mut() {
            // One write per batch of whole lines (O_APPEND keeps workers' lines intact).
            if let Err(e) = f.write_all(self.writer.ack_lines()) {
                self.out.fatal.get_or_insert(format!("ack log: {e}"));
            }
        }
        self.writer.clear_ack_lines();
    }
}

/// The worker as the pass an engine's loop runs ([`Recorder::run_loop`]): `step` runs the
/// schedule, then seals, never blocking and taking no completions; `complete` takes them.
impl<R: Recorder> LoopBody for DsWorker<'_, R> {
    type R = R;

    fn engine(&mut self) -> &mut R {
        &mut self.io.eng
    }

    fn step(&mut self, now: Instant) -> Flow {
        // Own clock reading for the busy time and the cost split: an engine's loop may hand a
        // reading from before its own polling turns.
        let t_in = self.sw.switch(Role::Harness);
        let t0 = self.io.caps.polls.then_some(t_in);
        // The loop's clock reading, not a second one.
        let now = self.clock.ns_at(now);
        self.sw.counting = self.phase == Phase::Running && self.clock.in_window(now);
        let flow = self.step_phase(now, t0);
        self.sw.switch(Role::Other);
        flow
    }

    fn complete(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.complete_at(deadline).map_err(|e| {
            self.failed.get_or_insert(e.clone());
            std::io::Error::other(e)
        })
    }

    fn request_stop(&mut self) {
        self.peer_stop = true;
    }

    fn failed(&self) -> bool {
        self.failed.is_some() || self.out.stats.errors > self.ctx.plan.max_errors
    }
}

impl<R: Recorder> DsWorker<'_, R> {
    /// The pass of [`LoopBody::step`] for the worker's phase.
    fn step_phase(&mut self, now: u64, t0: Option<Instant>) -> Flow {
        match self.phase {
            Phase::Running => {
                self.work.passes += 1;
                if self.cpu_mark.is_none() {
                    // From the first pass: a worker stuck in a long pass when the window opens
                    // would otherwise mark late.
                    self.cpu_mark = Some((thread_cpu_ns(), now));
                }
                let flow = self.run_pass(now);
                // The pass is busy time of a busy-polling engine's worker (counted while the
                // schedule runs in the window).
                if let Some(t0) = t0 {
                    if self.phase == Phase::Running {
                        self.note_busy(t0, t0.elapsed().as_nanos() as u64);
                    }
                }
                flow
            }
            Phase::Sealing { .. } => self.seal_pass(now),
            Phase::Done => Flow::Done,
        }
    }
}

/// Snapshots the schedule intends in the window of `clock` (the schedule is consumed).
fn offered_in_window(mut sched: DsSchedule, clock: &Clock) -> u64 {
    let mut n = 0;
    while let Some(ev) = sched.next_event() {
        if let DsEvent::Snapshot { t_ns, .. } = ev {
            if t_ns >= clock.window_end_ns {
                break;
            }
            n += u64::from(clock.in_window(t_ns));
        }
    }
    n
}

/// The frame kind of a snapshot kind.
#[inline]
pub(crate) fn frame_kind(kind: SnapKind) -> FrameKind {
    match kind {
        SnapKind::Delta => FrameKind::Delta,
        SnapKind::Keyframe => FrameKind::Keyframe,
    }
}
