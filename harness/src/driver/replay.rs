//! The read side of the DS worker: replay reads through the same engine as the writes.
//!
//! A read goes to the worker that owns its match (`(match_id − 1) % workers`), and every
//! worker reads only the matches it owns, so there is no routing between threads: the owner's
//! engine instance serves both its writes and its reads, in one loop.
//!
//! * **Finished matches** (the catalog, in finish order): the prefill or adopted corpus, then
//!   every log this worker seals and closes. Each keeps its keyframe index. A read opens the
//!   file (read-only, shared by concurrent readers, closed after the last), reads its range in
//!   `read_bytes` I/Os, one in flight per read, and closes it.
//! * **Running matches**: a live tail reads through the writer's open file, up to the writer's
//!   published `written_off` (written and reaped, never staged bytes); the writer closes the
//!   file only after its last reader.
//! * **Ranges**: full = bytes 4096 to the end frame (one first I/O also carries the header);
//!   seek = the header block, then from the keyframe at or before the seek point to the first
//!   indexed keyframe at or after point + 10–120 s (or the end); live tail = the header block,
//!   then the latest published keyframe to the published end. I/Os are whole 4 KiB blocks
//!   (O_DIRECT alignment); bytes outside the range are not looked at.
//! * **Verification** (engines that store data): the header block's magic, crc and match id;
//!   then a [`FrameStream`] from the range's first frame, across I/O boundaries. A failure is a
//!   read error (counted, reported with file and offset) and ends that read.
//! * **Latency**, from the read's intended time: time to first byte (first I/O completed) and
//!   to the whole range; live viewers add the time from the writer publishing bytes to the
//!   viewer having read them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::Path;

use snapbench_engines::{file_name, Completion, FileKind, MatchId, Op, OpKind};
use snapbench_workloads::ds::DsParams;
use snapbench_workloads::reads::{Pacing, ReadEvent, ReadParams, ReadPattern, ReadSchedule};
use snapbench_workloads::seed;

use super::common::{describe_error, Clock, Ticker, WorkerOutcome, MAX_READ_ERROR_MSGS};
use crate::measure::HistKind;
use crate::snaplog::{self, FrameStream, KeyEntry, StreamStatus, BLOCK_BYTES};
use crate::writer::{FinishedLog, LiveLogs, MAX_KEYS_PER_MATCH};

/// Most one-shot reads in progress per worker; later ones wait in a queue (their latency still
/// counts from their intended time).
pub const MAX_READ_SESSIONS: usize = 32;

/// Most reads waiting per worker; beyond it a read is dropped and the run marked saturated.
pub const MAX_PENDING_READS: usize = 1024;

/// How soon a live viewer looks again when no match is running with published data, ns.
const VIEWER_RETRY_NS: u64 = 10_000_000;

const B: u64 = BLOCK_BYTES as u64;

/// An op of the read side, in its own token space: handed back with its completion.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReadOp {
    /// Opening finished log `cat` for reads.
    Open {
        /// Catalog index.
        cat: u32,
    },
    /// A read I/O of session `sess`.
    Read {
        /// Session.
        sess: u32,
        /// File offset.
        offset: u64,
        /// Bytes asked for.
        len: u32,
        /// Submitted at, ns.
        submit_ns: u64,
    },
    /// Closing finished log `cat` after its last reader.
    Close {
        /// Catalog index.
        cat: u32,
    },
}

/// What the read side needs of the I/O shell: room, buffers, submission.
pub(crate) trait ReadIo<B> {
    /// Room in the engine for one more op now.
    fn has_room(&self) -> bool;
    /// A buffer of `len` bytes from the engine's pool.
    fn alloc_buf(&mut self, len: usize) -> Option<B>;
    /// Give a buffer back.
    fn release_buf(&mut self, buf: B);
    /// Submit (or queue behind back-pressure) `op`, tagged `rec`.
    fn submit(&mut self, rec: ReadOp, op: Op<B>);
}

/// Everything a read-side call works with: the writer's logs through their narrow view, the
/// shell's I/O, the worker's counters.
pub(crate) struct ReadEnv<'a, B> {
    /// The running logs.
    pub(crate) logs: &'a mut dyn LiveLogs,
    /// Room, buffers, submission.
    pub(crate) io: &'a mut dyn ReadIo<B>,
    /// Counters and histograms.
    pub(crate) out: &'a mut WorkerOutcome,
    /// Per-second counters.
    pub(crate) ticker: &'a mut Ticker,
    /// The run's clock.
    pub(crate) clock: Clock,
    /// The run's folder.
    pub(crate) dir: &'a Path,
    /// Engine name, for messages.
    pub(crate) engine: &'static str,
}

/// Timers of the read side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ReadTimer {
    /// A paced read session is due (slot = session, id = its generation).
    Read,
    /// A live viewer looks again for a running match (id = its intended start time).
    Viewer,
}

/// Running matches a live read can follow: open, not ending, with a published keyframe.
fn live_eligible(logs: &dyn LiveLogs, slot: u32) -> bool {
    logs.live(slot).is_some_and(|m| {
        m.open && !m.sealing && m.keys.first().is_some_and(|k| k.offset < m.published_off)
    })
}

fn nth_live(logs: &dyn LiveLogs, k: usize) -> Option<u32> {
    (0..logs.slots()).filter(|&i| live_eligible(logs, i)).nth(k)
}

fn count_live(logs: &dyn LiveLogs) -> usize {
    (0..logs.slots())
        .filter(|&i| live_eligible(logs, i))
        .count()
}

/// A read of running match `slot`: the header block, then from its latest published keyframe
/// to its published end.
fn live_session(
    logs: &dyn LiveLogs,
    slot: u32,
    t0: u64,
    pattern: ReadPattern,
    gen: u64,
) -> Option<Sess> {
    let m = logs.live(slot)?;
    let k = m.keys.iter().rev().find(|k| k.offset < m.published_off)?;
    Some(Sess::new(
        gen,
        m.id,
        Target::Live(slot),
        pattern,
        t0,
        k.offset,
        k.seq,
        m.published_off,
    ))
}

/// Whether a finished log's file is open in the engine for readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FState {
    Closed,
    Opening,
    Open,
    Closing,
}

/// One finished match a worker can serve.
pub(crate) struct CatEntry {
    id: u64,
    /// File offset just after its end frame.
    data_end: u64,
    /// Intended time it finished, ns since the run started (0: before the run).
    finish_ns: u64,
    /// Time of its last frame, ns.
    last_t_ns: u64,
    keys: Vec<KeyEntry>,
    fstate: FState,
    /// Reads using (or waiting for) the open file.
    refs: u32,
}

impl CatEntry {
    /// An entry with its keyframe index (thinned to at most [`MAX_KEYS_PER_MATCH`]).
    pub(crate) fn new(
        id: u64,
        data_end: u64,
        finish_ns: u64,
        last_t_ns: u64,
        mut keys: Vec<KeyEntry>,
    ) -> CatEntry {
        while keys.len() > MAX_KEYS_PER_MATCH {
            let mut i = 0;
            keys.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        CatEntry {
            id,
            data_end,
            finish_ns,
            last_t_ns,
            keys,
            fstate: FState::Closed,
            refs: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A finished match (catalog index).
    Cat(u32),
    /// A running match (writer slot).
    Live(u32),
}

/// One read in progress.
struct Sess {
    gen: u64,
    id: u64,
    target: Target,
    pattern: ReadPattern,
    viewer: bool,
    /// Intended request time, ns.
    t0_ns: u64,
    header_done: bool,
    /// Next byte of the range to deliver.
    pos: u64,
    /// End of the range (a viewer's follows the published end).
    end: u64,
    /// `end` when the I/O in flight was issued: bytes published later are not in its buffer.
    issued_end: u64,
    /// The range of the request itself (for a viewer: the edge published when it joined); the
    /// read is complete, and its full latency taken, when this is reached.
    request_end: u64,
    stream: FrameStream,
    reading: bool,
    waiting_open: bool,
    in_retry: bool,
    first_done: bool,
    caught_up: bool,
    /// Oldest publication a caught-up viewer has not read yet, ns.
    publish_ns: Option<u64>,
    /// 1× pacing: when playback started (ns) and the first frame's time.
    play: Option<(u64, u64)>,
    next_need_ns: u64,
    /// Pacing was skipped at the end of the run: the full latency is not recorded.
    cut: bool,
    bytes: u64,
}

/// The read side of one DS worker.
pub(crate) struct ReadSide {
    sched: ReadSchedule,
    /// Finished matches, append-only (sessions and ops hold indices into it).
    cat: Vec<CatEntry>,
    /// Indices into `cat` in finish order (oldest first).
    by_finish: Vec<u32>,
    sess: Vec<Option<Sess>>,
    free: Vec<u32>,
    one_shot: usize,
    pending: VecDeque<ReadEvent>,
    retry: Vec<u32>,
    verify: bool,
    read_bytes: u64,
    pacing: Pacing,
    recent_window_ns: u64,
    viewers: u32,
    viewers_started: bool,
    viewer_start_ns: u64,
    viewer_pick: u64,
    stopping: bool,
    gen: u64,
    timers: BinaryHeap<Reverse<(u64, ReadTimer, u32, u64)>>,
}

impl ReadSide {
    /// The read side of `worker`, starting from the finished matches in `entries`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        reads: &ReadParams,
        params: &DsParams,
        seed_: u64,
        worker: u32,
        workers: u32,
        clock: &Clock,
        verify: bool,
        entries: Vec<CatEntry>,
    ) -> ReadSide {
        let viewers = reads.viewers_of(worker, workers);
        ReadSide {
            sched: ReadSchedule::new(
                reads,
                params,
                seed_,
                worker,
                workers,
                0,
                clock.window_end_ns,
            ),
            by_finish: {
                let mut order: Vec<u32> = (0..entries.len() as u32).collect();
                order.sort_by_key(|&i| entries[i as usize].finish_ns);
                order
            },
            cat: entries,
            sess: Vec::with_capacity(MAX_READ_SESSIONS + viewers as usize),
            free: Vec::with_capacity(MAX_READ_SESSIONS + viewers as usize),
            one_shot: 0,
            pending: VecDeque::with_capacity(64),
            retry: Vec::with_capacity(MAX_READ_SESSIONS + viewers as usize),
            verify,
            read_bytes: u64::from(reads.read_bytes),
            pacing: reads.pacing,
            recent_window_ns: ReadParams::recent_window_ns(params),
            viewers,
            viewers_started: viewers == 0,
            viewer_start_ns: clock.window_start_ns,
            viewer_pick: seed::splitmix64(seed_ ^ seed::STREAM_READS_BASE ^ u64::from(worker)),
            stopping: false,
            gen: 0,
            timers: BinaryHeap::new(),
        }
    }

    /// The next time the read side needs the loop: a read's intended time, or the viewers' start.
    pub(crate) fn next_due_ns(&self) -> Option<u64> {
        let viewers = (!self.viewers_started).then_some(self.viewer_start_ns);
        [self.sched.peek_t_ns(), viewers]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reads in progress.
    pub(crate) fn live_sessions(&self) -> usize {
        self.sess.iter().filter(|s| s.is_some()).count()
    }

    /// Reads waiting for engine room or a buffer.
    pub(crate) fn has_retries(&self) -> bool {
        !self.retry.is_empty()
    }

    fn s(&mut self, si: u32) -> &mut Sess {
        self.sess[si as usize].as_mut().expect("live session")
    }
}

impl ReadSide {
    /// Start the reads that are due, and the live viewers at the window's start.
    pub(crate) fn read_events<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, now: u64) {
        let mut n = 0;
        while n < 64 {
            let rd = &mut *self;
            match rd.sched.peek_t_ns() {
                Some(t) if t <= now => {}
                _ => break,
            }
            let ev = rd.sched.next_event().expect("peeked");
            n += 1;
            if rd.one_shot >= MAX_READ_SESSIONS {
                if rd.pending.len() >= MAX_PENDING_READS {
                    if env.clock.in_window(ev.t_ns) {
                        env.out.stats.reads_dropped += 1;
                        env.out.saturated = true;
                    }
                } else {
                    rd.pending.push_back(ev);
                }
                continue;
            }
            self.start_one_shot(env, ev, now);
        }
        let rd = &mut *self;
        if !rd.viewers_started && now >= rd.viewer_start_ns {
            rd.viewers_started = true;
            let t0 = rd.viewer_start_ns;
            for _ in 0..rd.viewers {
                self.start_viewer(env, t0, now);
            }
        }
    }

    fn new_session(&mut self, sess: Sess) -> u32 {
        let rd = &mut *self;
        match rd.free.pop() {
            Some(si) => {
                rd.sess[si as usize] = Some(sess);
                si
            }
            None => {
                rd.sess.push(Some(sess));
                (rd.sess.len() - 1) as u32
            }
        }
    }

    fn start_one_shot<B: AsRef<[u8]>>(
        &mut self,
        env: &mut ReadEnv<'_, B>,
        ev: ReadEvent,
        now: u64,
    ) {
        let in_window = env.clock.in_window(ev.t_ns);
        let gen = self.next_gen();
        let sess = match ev.pattern {
            ReadPattern::LiveTail => {
                let n = count_live(env.logs);
                match (n > 0)
                    .then(|| nth_live(env.logs, ev.pick_uniform(n)))
                    .flatten()
                {
                    Some(slot) => live_session(env.logs, slot, ev.t_ns, ReadPattern::LiveTail, gen),
                    None => None,
                }
            }
            ReadPattern::Full | ReadPattern::Seek => {
                let rd = &mut *self;
                let n = rd.by_finish.len();
                let since = ev.t_ns.saturating_sub(rd.recent_window_ns);
                let cat = &rd.cat;
                let n_recent = n - rd
                    .by_finish
                    .partition_point(|&i| cat[i as usize].finish_ns < since);
                ev.pick_finished(n_recent, n).map(|back| {
                    let ci = rd.by_finish[n - 1 - back] as usize;
                    let e = &rd.cat[ci];
                    let (start, seq, end) = if ev.pattern == ReadPattern::Full {
                        (B, 0, e.data_end)
                    } else {
                        seek_range(e, ev.seek_frac, ev.seek_len_ns)
                    };
                    Sess::new(
                        gen,
                        e.id,
                        Target::Cat(ci as u32),
                        ev.pattern,
                        ev.t_ns,
                        start,
                        seq,
                        end,
                    )
                })
            }
        };
        let Some(sess) = sess else {
            if in_window {
                env.out.stats.reads_no_target += 1;
            }
            self.start_pending(env, now);
            return;
        };
        self.one_shot += 1;
        let target = sess.target;
        let si = self.new_session(sess);
        match target {
            Target::Cat(ci) => {
                if self.acquire(env, ci) {
                    self.pump(env, si, now);
                } else {
                    self.s(si).waiting_open = true;
                }
            }
            Target::Live(slot) => {
                env.logs.pin(slot, false);
                self.pump(env, si, now);
            }
        }
    }

    fn next_gen(&mut self) -> u64 {
        let rd = &mut *self;
        rd.gen += 1;
        rd.gen
    }

    fn start_viewer<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, t0: u64, now: u64) {
        let n = count_live(env.logs);
        let rd = &mut *self;
        rd.viewer_pick = seed::splitmix64(rd.viewer_pick);
        let pick = ((u128::from(rd.viewer_pick) * n as u128) >> 64) as usize;
        let slot = if n > 0 {
            nth_live(env.logs, pick)
        } else {
            None
        };
        let gen = self.next_gen();
        let Some(mut sess) =
            slot.and_then(|s| live_session(env.logs, s, t0, ReadPattern::LiveTail, gen))
        else {
            // Nothing running with published data yet: look again soon (same intended time).
            self.timers
                .push(Reverse((now + VIEWER_RETRY_NS, ReadTimer::Viewer, 0, t0)));
            return;
        };
        sess.viewer = true;
        let slot = slot.expect("found");
        env.logs.pin(slot, true);
        let si = self.new_session(sess);
        self.pump(env, si, now);
    }

    /// Open the finished log `ci` for one more reader; true when it is open already.
    fn acquire<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, ci: u32) -> bool {
        let rd = &mut *self;
        let e = &mut rd.cat[ci as usize];
        e.refs += 1;
        match e.fstate {
            FState::Open => true,
            FState::Closed => {
                e.fstate = FState::Opening;
                let id = e.id;
                self.submit_open(env, ci, id);
                false
            }
            FState::Opening | FState::Closing => false,
        }
    }

    fn submit_open<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, ci: u32, id: u64) {
        env.io.submit(
            ReadOp::Open { cat: ci },
            Op::Open {
                file: MatchId(id),
                kind: FileKind::Log,
                writable: false,
            },
        );
    }

    fn release_cat<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, ci: u32) {
        let rd = &mut *self;
        let e = &mut rd.cat[ci as usize];
        e.refs -= 1;
        if e.refs == 0 && e.fstate == FState::Open {
            e.fstate = FState::Closing;
            let id = e.id;
            env.io
                .submit(ReadOp::Close { cat: ci }, Op::Close { file: MatchId(id) });
        }
    }

    /// Issue the session's next read I/O if it may: not already reading, the file open, data
    /// left in its range, its playback due (1× pacing), room in the engine and a buffer.
    fn pump<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, si: u32, now: u64) {
        let has_room = env.io.has_room();
        let rd = &mut *self;
        let (read_bytes, pacing, stopping) = (rd.read_bytes, rd.pacing, rd.stopping);
        let s = rd.s(si);
        if s.reading || s.waiting_open {
            return;
        }
        if s.header_done && s.pos >= s.end {
            self.range_reached(env, si, now);
            return;
        }
        if pacing == Pacing::Playback && s.header_done && s.next_need_ns > now {
            if stopping {
                s.cut = true;
            } else {
                let (t, gen) = (s.next_need_ns, s.gen);
                self.timers.push(Reverse((t, ReadTimer::Read, si, gen)));
                return;
            }
        }
        let end_block = s.end.div_ceil(B) * B;
        let (offset, len) = if !s.header_done {
            let len = if s.pattern == ReadPattern::Full && !s.viewer && s.pos == B {
                read_bytes.min(end_block)
            } else {
                B
            };
            (0, len)
        } else {
            let off = s.pos / B * B;
            (off, read_bytes.min(end_block - off))
        };
        let id = s.id;
        let buf = if has_room {
            env.io.alloc_buf(len as usize)
        } else {
            None
        };
        let Some(buf) = buf else {
            let s = self.s(si);
            if !s.in_retry {
                s.in_retry = true;
                self.retry.push(si);
            }
            return;
        };
        let s = self.s(si);
        s.reading = true;
        s.issued_end = s.end;
        let submit_ns = env.clock.now_ns();
        env.io.submit(
            ReadOp::Read {
                sess: si,
                offset,
                len: len as u32,
                submit_ns,
            },
            Op::Read {
                file: MatchId(id),
                offset,
                buf,
            },
        );
    }

    /// Sessions that found no room or buffer try again.
    pub(crate) fn retry_reads<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, now: u64) {
        let rd = &mut *self;
        if rd.retry.is_empty() {
            return;
        }
        let list = std::mem::take(&mut rd.retry);
        for &si in &list {
            if let Some(s) = self.sess[si as usize].as_mut() {
                s.in_retry = false;
            }
        }
        for &si in &list {
            if self.sess[si as usize].is_some() {
                self.pump(env, si, now);
            }
        }
        let rd = &mut *self;
        if rd.retry.is_empty() {
            let mut list = list;
            list.clear();
            rd.retry = list;
        }
    }

    /// The log's path for messages (the corpus file itself when the run links to one).
    fn path_of<B: AsRef<[u8]>>(&self, env: &mut ReadEnv<'_, B>, id: u64) -> String {
        let p = env.dir.join(file_name(MatchId(id), FileKind::Log));
        std::fs::read_link(&p).unwrap_or(p).display().to_string()
    }

    pub(crate) fn on_read_completion<B: AsRef<[u8]>>(
        &mut self,
        env: &mut ReadEnv<'_, B>,
        rec: ReadOp,
        c: Completion<B>,
        now: u64,
    ) {
        match rec {
            ReadOp::Open { cat } => {
                let id = self.cat[cat as usize].id;
                match &c.res {
                    Ok(_) => {
                        self.cat[cat as usize].fstate = FState::Open;
                        self.wake_openers(env, cat, now, true);
                    }
                    Err(e) => {
                        let msg = describe_error(
                            env.engine,
                            OpKind::Open,
                            Some((MatchId(id), FileKind::Log)),
                            None,
                            env.dir,
                            e,
                        );
                        self.io_error(env, msg);
                        self.cat[cat as usize].fstate = FState::Closed;
                        self.wake_openers(env, cat, now, false);
                    }
                }
            }
            ReadOp::Close { cat } => {
                if let Err(e) = &c.res {
                    let id = self.cat[cat as usize].id;
                    let msg = describe_error(
                        env.engine,
                        OpKind::Close,
                        Some((MatchId(id), FileKind::Log)),
                        None,
                        env.dir,
                        e,
                    );
                    self.io_error(env, msg);
                }
                let e = &mut self.cat[cat as usize];
                e.fstate = FState::Closed;
                if e.refs > 0 {
                    e.fstate = FState::Opening;
                    let id = e.id;
                    self.submit_open(env, cat, id);
                }
            }
            ReadOp::Read {
                sess,
                offset,
                len,
                submit_ns,
            } => self.on_read_io(env, sess, offset, len, submit_ns, c, now),
        }
    }

    fn io_error<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, msg: String) {
        env.out.stats.errors += 1;
        env.ticker.error();
        env.out.first_error.get_or_insert(msg);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_read_io<B: AsRef<[u8]>>(
        &mut self,
        env: &mut ReadEnv<'_, B>,
        si: u32,
        offset: u64,
        len: u32,
        submit_ns: u64,
        c: Completion<B>,
        now: u64,
    ) {
        let n = *c.res.as_ref().unwrap_or(&0) as u64;
        if env.clock.in_window(submit_ns) {
            env.out.stats.record(HistKind::IoRead, now - submit_ns);
            env.out.stats.io_ops += 1;
            env.out.stats.io_bytes += n;
        }
        self.s(si).reading = false;
        let id = self.s(si).id;
        if let Err(e) = &c.res {
            let msg = describe_error(
                env.engine,
                OpKind::Read,
                Some((MatchId(id), FileKind::Log)),
                Some(offset),
                env.dir,
                e,
            );
            self.io_error(env, msg);
            if let Some(b) = c.buf {
                env.io.release_buf(b);
            }
            self.end_session(env, si, now);
            return;
        }
        let stop_viewer = {
            let rd = &mut *self;
            rd.stopping && rd.s(si).viewer
        };
        let result = match (&c.buf, stop_viewer) {
            (Some(buf), false) => {
                let data = &buf.as_ref()[..(n as usize).min(buf.as_ref().len())];
                self.consume(env, si, offset, u64::from(len), data, now)
            }
            _ => Ok(()),
        };
        if let Some(b) = c.buf {
            env.io.release_buf(b);
        }
        if stop_viewer {
            self.end_session(env, si, now);
            return;
        }
        if let Err((at, why)) = result {
            let pattern = self.s(si).pattern.name();
            let msg = format!(
                "read verification: {} at offset {at}: {why} ({pattern} read of match {id:016x})",
                self.path_of(env, id)
            );
            env.out.stats.read_errors += 1;
            if env.out.read_error_msgs.len() < MAX_READ_ERROR_MSGS {
                env.out.read_error_msgs.push(msg);
            }
            self.end_session(env, si, now);
            return;
        }
        let clock = env.clock;
        let s = self.s(si);
        if !s.first_done {
            s.first_done = true;
            let t0 = s.t0_ns;
            if clock.in_window(t0) {
                env.out.stats.record(HistKind::ReadTtfb, now - t0);
            }
        }
        let s = self.s(si);
        if s.viewer && !s.caught_up && s.header_done && s.pos >= s.request_end {
            // Caught up with the edge published when the viewer joined: that read is complete.
            s.caught_up = true;
            let (t0, bytes) = (s.t0_ns, s.bytes);
            if clock.in_window(t0) {
                env.out.stats.record(HistKind::ReadFull, now - t0);
                env.out.stats.reads += 1;
                env.out.stats.read_bytes += bytes;
            }
            let s = self.s(si);
            if s.pos < s.end && s.publish_ns.is_none() {
                // More was published meanwhile: following starts now.
                s.publish_ns = Some(now);
            }
        }
        let s = self.s(si);
        if s.header_done && s.pos >= s.end {
            self.range_reached(env, si, now);
        } else {
            self.pump(env, si, now);
        }
    }

    /// Take what a read I/O of `[offset, offset + len)` returned: check the header block on
    /// the first, then deliver the bytes of the range to the verifier. `Err` is the problem:
    /// file offset and what is wrong.
    fn consume<B: AsRef<[u8]>>(
        &mut self,
        env: &mut ReadEnv<'_, B>,
        si: u32,
        offset: u64,
        len: u64,
        data: &[u8],
        now: u64,
    ) -> Result<(), (u64, String)> {
        let rd = &mut *self;
        let verify = rd.verify;
        let s = rd.sess[si as usize].as_mut().expect("live session");
        let n = data.len() as u64;
        // Only what was published when the I/O was issued is in it.
        let end = s.issued_end;
        // Every byte asked for below the end of the data must be there (a header read: its
        // whole block).
        let want = if s.header_done {
            (offset + len).min(end)
        } else {
            offset + len
        };
        if offset + n < want {
            return Err((
                offset + n,
                format!("read returned {n} of {len} bytes before the end of the data at {end}"),
            ));
        }
        if !s.header_done {
            if verify {
                snaplog::check_header_block(data, s.id).map_err(|e| (e.offset, e.why))?;
            }
            s.header_done = true;
        }
        // The range's bytes in this I/O (none for a header block read before a seek or tail).
        let (from, to) = (s.pos, (offset + n).min(end));
        if to <= from || from < offset {
            return Ok(());
        }
        let bytes = &data[(from - offset) as usize..(to - offset) as usize];
        if verify {
            let st = s.stream.feed(bytes).map_err(|e| (e.offset, e.why))?;
            if st == StreamStatus::Ended && to < s.end && !s.viewer {
                return Err((
                    s.stream.pos(),
                    format!("end frame before the end of the data at {}", s.end),
                ));
            }
            if let (Some(first), Some(last)) = (s.stream.first_frame(), s.stream.last_frame()) {
                let (w0, f0) = *s.play.get_or_insert((now, first.t_ns));
                s.next_need_ns = w0 + last.t_ns.saturating_sub(f0);
            }
        }
        s.pos = to;
        if s.caught_up {
            if env.clock.in_window(s.publish_ns.unwrap_or(now)) {
                env.out.stats.tail_read_bytes += to - from;
            }
        } else {
            s.bytes += to - from;
        }
        Ok(())
    }

    /// The session has read its whole range (so far, for a viewer).
    fn range_reached<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, si: u32, now: u64) {
        let clock = env.clock;
        let rd = &mut *self;
        let verify = rd.verify;
        let s = rd.sess[si as usize].as_mut().expect("live session");
        let path_id = s.id;
        // A finished range must end where a frame ends (full: after the end frame).
        let problem = if !verify || s.viewer {
            None
        } else if let (Target::Cat(_), ReadPattern::Full) = (s.target, s.pattern) {
            (!s.stream.ended()).then(|| {
                format!(
                    "offset {}: no end frame at the end of the log",
                    s.stream.pos()
                )
            })
        } else if matches!(s.target, Target::Cat(_)) {
            (!s.stream.at_boundary())
                .then(|| format!("offset {}: the range ends inside a frame", s.stream.pos()))
        } else {
            None
        };
        if let Some(p) = problem {
            let msg = format!(
                "read verification: {} at {p} ({} read of match {path_id:016x})",
                self.path_of(env, path_id),
                self.s(si).pattern.name()
            );
            env.out.stats.read_errors += 1;
            if env.out.read_error_msgs.len() < MAX_READ_ERROR_MSGS {
                env.out.read_error_msgs.push(msg);
            }
            self.end_session(env, si, now);
            return;
        }
        let s = self.s(si);
        if !s.viewer {
            // The whole replay (or, live, the edge published at the request) has been read.
            let (t0, bytes, cut) = (s.t0_ns, s.bytes, s.cut);
            if clock.in_window(t0) && !cut {
                env.out.stats.record(HistKind::ReadFull, now - t0);
                env.out.stats.reads += 1;
                env.out.stats.read_bytes += bytes;
            }
        } else if let Some(p) = s.publish_ns.take() {
            if clock.in_window(p) {
                env.out.stats.record(HistKind::ReadTail, now - p);
                env.out.stats.tail_reads += 1;
            }
        }
        let s = self.s(si);
        if !s.viewer {
            self.end_session(env, si, now);
            return;
        }
        // A viewer whose match is over (end frame read) moves on to another.
        let Target::Live(slot) = s.target else {
            return;
        };
        let (pos, stream_ended, id) = (s.pos, s.stream.ended(), s.id);
        let (over, failed) = env
            .logs
            .live(slot)
            .map_or((true, true), |m| (m.sealing && pos >= m.end_off, m.failed));
        if over && verify && !stream_ended && !failed {
            let msg = format!(
                "read verification: {} at offset {pos}: no end frame at the end of the sealed log (live_tail read of match {id:016x})",
                self.path_of(env, id)
            );
            env.out.stats.read_errors += 1;
            if env.out.read_error_msgs.len() < MAX_READ_ERROR_MSGS {
                env.out.read_error_msgs.push(msg);
            }
        }
        if over || failed {
            self.end_session(env, si, now);
        }
    }

    /// More bytes of running match `slot` were written: its viewers follow.
    pub(crate) fn on_published<B: AsRef<[u8]>>(
        &mut self,
        env: &mut ReadEnv<'_, B>,
        slot: u32,
        now: u64,
    ) {
        let Some(written) = env.logs.live(slot).map(|m| m.published_off) else {
            return;
        };
        // By index, without collecting: this runs on every write completion of a followed match.
        let n = self.sess.len() as u32;
        for si in 0..n {
            let Some(s) = self.sess[si as usize].as_mut() else {
                continue;
            };
            if !s.viewer || s.target != Target::Live(slot) {
                continue;
            }
            s.end = s.end.max(written);
            if s.caught_up && s.publish_ns.is_none() {
                s.publish_ns = Some(now);
            }
            if !s.reading {
                self.pump(env, si, now);
            }
        }
    }

    /// The open of corpus log `cat` completed: sessions waiting for it go on (`opened`) or end.
    fn wake_openers<B: AsRef<[u8]>>(
        &mut self,
        env: &mut ReadEnv<'_, B>,
        cat: u32,
        now: u64,
        opened: bool,
    ) {
        let n = self.sess.len() as u32;
        for si in 0..n {
            let Some(s) = self.sess[si as usize].as_mut() else {
                continue;
            };
            if s.target == Target::Cat(cat) && s.waiting_open {
                s.waiting_open = false;
                if opened {
                    self.pump(env, si, now);
                } else {
                    self.end_session(env, si, now);
                }
            }
        }
    }

    /// End a session: release its file, start what waits.
    fn end_session<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, si: u32, now: u64) {
        let rd = &mut *self;
        let Some(s) = rd.sess[si as usize].take() else {
            return;
        };
        rd.free.push(si);
        if !s.viewer {
            rd.one_shot -= 1;
        }
        match s.target {
            Target::Cat(ci) => self.release_cat(env, ci),
            Target::Live(slot) => {
                // The writer may close the file now (its shell looks again).
                env.logs.unpin(slot, s.viewer);
            }
        }
        if s.viewer {
            if !self.stopping {
                self.start_viewer(env, now, now);
            }
        } else {
            self.start_pending(env, now);
        }
    }

    fn start_pending<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, now: u64) {
        let rd = &mut *self;
        if rd.one_shot < MAX_READ_SESSIONS {
            if let Some(ev) = rd.pending.pop_front() {
                self.start_one_shot(env, ev, now);
            }
        }
    }

    /// The earliest read timer (a paced read, a viewer looking again), ns.
    pub(crate) fn next_timer_ns(&self) -> Option<u64> {
        self.timers.peek().map(|r| r.0 .0)
    }

    /// Fire the read timers due at `now`.
    pub(crate) fn fire_timers<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, now: u64) {
        while let Some(&Reverse((t, kind, si, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let live = |s: &Option<Sess>| s.as_ref().is_some_and(|s| s.gen == id);
            match kind {
                ReadTimer::Read if self.sess.get(si as usize).is_some_and(live) => {
                    self.pump(env, si, now)
                }
                ReadTimer::Viewer if !self.stopping => self.start_viewer(env, id, now),
                _ => {}
            }
        }
    }

    /// A sealed log was closed: it joins the finished replays.
    pub(crate) fn log_finished(&mut self, f: FinishedLog) {
        let e = CatEntry::new(f.id, f.data_end, f.end_t_ns, f.last_t_ns, f.keys);
        let rd = &mut *self;
        let cat = &rd.cat;
        let at = rd
            .by_finish
            .partition_point(|&i| cat[i as usize].finish_ns <= e.finish_ns);
        rd.by_finish.insert(at, rd.cat.len() as u32);
        rd.cat.push(e);
    }

    /// End of the window: no new reads; viewers stop; one-shot reads already requested finish.
    pub(crate) fn stop_reads<B: AsRef<[u8]>>(&mut self, env: &mut ReadEnv<'_, B>, now: u64) {
        let rd = &mut *self;
        rd.stopping = true;
        let idle_viewers: Vec<u32> = rd
            .sess
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.viewer && !s.reading))
            .map(|(i, _)| i as u32)
            .collect();
        for si in idle_viewers {
            self.end_session(env, si, now);
        }
        // Paced reads waiting for playback finish now (their full latency is not recorded).
        let n = self.sess.len() as u32;
        for si in 0..n {
            if self.sess[si as usize].is_some() {
                self.pump(env, si, now);
            }
        }
    }

    /// Whether reads are still in progress or waiting, or a finished log is still open.
    pub(crate) fn reads_busy(&self) -> bool {
        let rd = self;
        rd.sess.iter().any(|s| s.is_some())
            || !rd.pending.is_empty()
            || rd.cat.iter().any(|e| e.fstate != FState::Closed)
    }
}

impl Sess {
    #[allow(clippy::too_many_arguments)]
    fn new(
        gen: u64,
        id: u64,
        target: Target,
        pattern: ReadPattern,
        t0_ns: u64,
        start: u64,
        start_seq: u64,
        end: u64,
    ) -> Sess {
        Sess {
            gen,
            id,
            target,
            pattern,
            viewer: false,
            t0_ns,
            header_done: false,
            pos: start,
            end,
            issued_end: end,
            request_end: end,
            stream: FrameStream::new(id, start, start_seq),
            reading: false,
            waiting_open: false,
            in_retry: false,
            first_done: false,
            caught_up: false,
            publish_ns: None,
            play: None,
            next_need_ns: 0,
            cut: false,
            bytes: 0,
        }
    }
}

/// The byte range of a seek in finished log `e`: from the keyframe at or before the point
/// `frac` of the way through its recorded time, to the first indexed keyframe at or after
/// point + `len_ns` (or the end of the data). Returns (start offset, start seq, end offset).
fn seek_range(e: &CatEntry, frac: f64, len_ns: u64) -> (u64, u64, u64) {
    let Some(first) = e.keys.first() else {
        return (B, 0, e.data_end);
    };
    let span = e.last_t_ns.saturating_sub(first.t_ns);
    let point = first.t_ns + (frac * span as f64) as u64;
    let ki = e
        .keys
        .partition_point(|k| k.t_ns <= point)
        .saturating_sub(1);
    let k = e.keys[ki];
    let stop = point.saturating_add(len_ns);
    let end = e.keys[ki + 1..]
        .iter()
        .find(|k| k.t_ns >= stop)
        .map_or(e.data_end, |k| k.offset);
    (k.offset, k.seq, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_ranges_start_at_a_keyframe_and_cover_the_stretch() {
        let keys: Vec<KeyEntry> = (0..10)
            .map(|i| KeyEntry {
                offset: 4096 + i * 100_000,
                seq: i * 3840,
                t_ns: i * 60_000_000_000,
            })
            .collect();
        let e = CatEntry::new(7, 1_000_000, 0, 590_000_000_000, keys);
        // Point at 0.5 → 295 s: keyframe 4 (240 s); +30 s → 325 s: up to keyframe 6 (360 s).
        assert_eq!(
            seek_range(&e, 0.5, 30_000_000_000),
            (404_096, 4 * 3840, 604_096)
        );
        // Past the last keyframe: to the end of the data.
        assert_eq!(seek_range(&e, 0.99, 120_000_000_000).2, 1_000_000);
        assert_eq!(seek_range(&e, 0.0, 10_000_000_000).0, 4096);
        let bare = CatEntry::new(7, 5000, 0, 0, Vec::new());
        assert_eq!(seek_range(&bare, 0.3, 1), (4096, 0, 5000));
    }

    #[test]
    fn catalog_index_is_bounded() {
        let keys: Vec<KeyEntry> = (0..5000)
            .map(|i| KeyEntry {
                offset: i,
                seq: i,
                t_ns: i,
            })
            .collect();
        let e = CatEntry::new(1, 1, 0, 0, keys);
        assert!(e.keys.len() <= MAX_KEYS_PER_MATCH);
        assert_eq!(e.keys[0].seq, 0);
    }
}
