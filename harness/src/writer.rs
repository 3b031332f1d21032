//! The SNAPLOG1 log writer as a sans-I/O state machine: snapshots, the clock and completions go
//! in; the ops to submit and the written / durable / acknowledged events come out. It never
//! touches an engine or a thread: the I/O shell (the DS worker, or the prefill) implements
//! [`WriterIo`], maps each [`WriterOp`] to an engine op and hands its completion back to
//! [`LogWriter::on_complete`].
//!
//! ## What it does
//!
//! Per match it keeps a staging buffer of framed snapshots (SNAPLOG1) starting at the file
//! offset `staged_off`, and flushes it when `segment_bytes` are unflushed or `flush_ns` after the
//! oldest unflushed snapshot. Engines that need aligned I/O (O_DIRECT) get whole blocks: the
//! partial tail block is zero-padded and either stays in staging to be rewritten by the next
//! flush, or (`pad_tail`) keeps its zeros and the next frame starts on a fresh block. At most
//! one write per log is in flight (a flush bigger than one write goes out chunk by chunk as each
//! completes), so a later write can never become durable before an earlier one and a power cut
//! leaves a log torn, never with a hole before valid frames. Logs are preallocated in
//! `prealloc_bytes` chunks before a write reaches past the allocated end.
//!
//! A snapshot is *written* when every byte up to its end has been written (`written_off`), and
//! *durable* when a sync submitted after that completed, and the directory sync after create,
//! have completed. It is *acknowledged* per the [`Durability`] policy: when written (`none`) or
//! when durable (the others; then an ack-log line `"<match id> <seq>"` names the last one of
//! each batch).
//!
//! ## One state per log
//!
//! [`LogState`] is the life of a log (creating, open, sealing, sealed, failed, closing); the
//! ops in flight are `Option`s (one write, one allocate, one sync). `debug_assert!`s hold the
//! invariants: offsets only grow, one write per log in flight, a sync covers only reaped writes,
//! nothing is acknowledged beyond `min(synced, written)`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write as _;

use snapbench_engines::FastMap;

use crate::plan::Durability;
use crate::snaplog::{self, FrameKind, KeyEntry, BLOCK_BYTES};

#[cfg(test)]
mod tests;

/// Most keyframes indexed per match; beyond it the index keeps every other one.
pub const MAX_KEYS_PER_MATCH: usize = 1024;

/// The writer's settings.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// Alignment of every write's offset and length (1 = none; O_DIRECT: 4096).
    pub align_bytes: u64,
    /// Largest write, bytes (a multiple of `align_bytes`).
    pub max_write_bytes: u64,
    /// Unflushed bytes that trigger a flush.
    pub segment_bytes: u64,
    /// Flush deadline after the oldest unflushed snapshot, ns.
    pub flush_ns: u64,
    /// Preallocation chunk, bytes.
    pub prealloc_bytes: u64,
    /// With `align_bytes > 1`: zero-pad a flush's partial tail block for good and start the
    /// next frame on a fresh block, instead of rewriting that block with the next flush. Every
    /// write then lands on blocks no earlier write touched: on ext4 a write that spans a written
    /// block and unwritten preallocated ones takes the inode lock exclusively, which io_uring's
    /// non-blocking attempt cannot, so it goes to io-wq (issue 13). Costs up to a block of zeros
    /// per flush on the device.
    pub pad_tail: bool,
    /// Durability policy.
    pub durability: Durability,
    /// Produce ack-log lines (see [`LogWriter::ack_lines`]).
    pub ack_lines: bool,
}

/// A log of the writer: its slot and match id (the id tells a reused slot apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRef {
    /// Slot in the writer.
    pub slot: u32,
    /// Match id.
    pub id: u64,
}

/// An op the writer asks the shell to submit; handed back in [`LogWriter::on_complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterOp {
    /// Create the log file, preallocating `prealloc_bytes`.
    Create {
        /// The log.
        log: LogRef,
        /// Bytes to preallocate.
        prealloc_bytes: u64,
    },
    /// Sync the directory (after the create).
    SyncDir {
        /// The log whose create it makes durable.
        log: LogRef,
    },
    /// Allocate `[offset, offset + len_bytes)`.
    Allocate {
        /// The log.
        log: LogRef,
        /// Start (the allocated end so far).
        offset: u64,
        /// Length.
        len_bytes: u64,
    },
    /// Write `len_bytes` at `offset`: the data bytes handed with it, then zero padding.
    Write {
        /// The log.
        log: LogRef,
        /// File offset.
        offset: u64,
        /// Bytes written (data and padding).
        len_bytes: u64,
        /// End of the data in it (the rest is padding of the tail block).
        data_end: u64,
        /// Durable on completion (RWF_DSYNC).
        dsync: bool,
    },
    /// `fdatasync`, covering the written (reaped) bytes up to `covered`.
    Sync {
        /// The log.
        log: LogRef,
        /// `written_off` when it was submitted.
        covered: u64,
    },
    /// Close the log.
    Close {
        /// The log.
        log: LogRef,
    },
}

impl WriterOp {
    /// The log it acts on.
    pub fn log(&self) -> LogRef {
        match *self {
            WriterOp::Create { log, .. }
            | WriterOp::SyncDir { log }
            | WriterOp::Allocate { log, .. }
            | WriterOp::Write { log, .. }
            | WriterOp::Sync { log, .. }
            | WriterOp::Close { log } => log,
        }
    }

    /// The file offset an error message names (writes and allocations).
    pub fn offset(&self) -> Option<u64> {
        match *self {
            WriterOp::Write { offset, .. } | WriterOp::Allocate { offset, .. } => Some(offset),
            _ => None,
        }
    }
}

/// A log sealed and closed cleanly: what replays need of it.
#[derive(Debug)]
pub struct FinishedLog {
    /// Match id.
    pub id: u64,
    /// File offset just after the end frame.
    pub data_end: u64,
    /// Intended time of the seal, ns.
    pub end_t_ns: u64,
    /// Time of the last data frame, ns.
    pub last_t_ns: u64,
    /// Keyframe index (at most [`MAX_KEYS_PER_MATCH`]).
    pub keys: Vec<KeyEntry>,
}

/// What the writer tells the shell.
#[derive(Debug)]
pub enum WriterEvent {
    /// Every byte of a snapshot has been written.
    Written {
        /// Its intended arrival time, ns.
        t_ns: u64,
        /// Its payload, bytes.
        payload_bytes: u32,
    },
    /// A snapshot is acknowledged (per the policy).
    Acked {
        /// Match id.
        id: u64,
        /// Its sequence number.
        seq: u64,
        /// Its intended arrival time, ns.
        t_ns: u64,
    },
    /// A flush went out; it was due at `due_ns` (for the flush lag).
    Flushed {
        /// Intended time of the oldest snapshot it carries, ns.
        oldest_t_ns: u64,
        /// When it was due, ns.
        due_ns: u64,
    },
    /// The published (written and reaped) end of a followed log grew.
    Published {
        /// Its slot.
        slot: u32,
        /// The new `written_off`.
        written_off: u64,
    },
    /// A log is sealed (end frame written, final sync done) and its close goes out now.
    Sealed {
        /// Match id.
        id: u64,
    },
    /// A sealed log was closed.
    Finished(FinishedLog),
}

/// The I/O shell as the writer sees it.
pub trait WriterIo {
    /// Submit `op`. For a write, `data` holds its first `data_end - offset` bytes (the shell
    /// zero-pads to `len_bytes`); return false when it cannot go out now (no room, no buffer):
    /// the writer keeps it due and tries again in [`LogWriter::retry`]. Every other op must be
    /// taken (queued behind back-pressure if need be); its return value is ignored.
    fn submit(&mut self, op: WriterOp, data: &[u8]) -> bool;
    /// Take an event.
    fn event(&mut self, ev: WriterEvent);
}

/// The life of one log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogState {
    /// Create in flight (`sealing`: the end frame is already staged).
    Creating {
        /// The match ended before the create completed.
        sealing: bool,
    },
    /// Created, taking snapshots.
    Open,
    /// End frame staged: flushing the rest, then the final sync.
    Sealing,
    /// Every byte written and synced: closed when no op or reader is left.
    Sealed,
    /// An op failed: nothing more is written; closed (if `opened`) once `sealing` and idle.
    Failed {
        /// The create had completed (the engine holds the file open).
        opened: bool,
        /// The match has ended (or the run).
        sealing: bool,
    },
    /// Close in flight (`ok`: sealed cleanly).
    Closing {
        /// Sealed without error.
        ok: bool,
    },
}

impl LogState {
    fn writable(self) -> bool {
        matches!(self, LogState::Open | LogState::Sealing)
    }
    fn sealing(self) -> bool {
        match self {
            LogState::Creating { sealing } | LogState::Failed { sealing, .. } => sealing,
            LogState::Open => false,
            LogState::Sealing | LogState::Sealed | LogState::Closing { .. } => true,
        }
    }
}

/// One snapshot waiting to be written / acknowledged.
#[derive(Clone, Copy, Debug)]
struct SnapRec {
    end_off: u64,
    seq: u64,
    t_ns: u64,
    payload_bytes: u32,
}

/// The write in flight of a log.
#[derive(Clone, Copy, Debug)]
struct InFlightWrite {
    data_end: u64,
}

/// The writer's state of one match log.
struct Log {
    id: u64,
    state: LogState,
    /// Bytes of the file from `next_off - staging.len()` to `next_off` (framed, maybe written).
    staging: Vec<u8>,
    /// Where the next write starts (the tail block's start while it is being rewritten).
    staged_off: u64,
    next_off: u64,
    /// End of data already handed to writes.
    submitted_off: u64,
    written_off: u64,
    synced_off: u64,
    alloc_end: u64,
    write: Option<InFlightWrite>,
    alloc: Option<u64>,
    /// The sync in flight and what it covers.
    sync: Option<u64>,
    /// A flush was asked for and has not gone out yet.
    flush_due: bool,
    /// A sync was asked for while one was in flight.
    sync_due: bool,
    dir_synced: bool,
    /// On the retry list (a write found no room or buffer).
    queued: bool,
    ops_in_flight: u32,
    /// Intended time of the oldest unflushed snapshot.
    oldest_unflushed_t: Option<u64>,
    pending: VecDeque<SnapRec>,
    /// Entries at the front of `pending` already written (not yet acknowledged).
    n_written: usize,
    frames: u64,
    payload_sum: u64,
    last_t_ns: u64,
    end_t_ns: u64,
    keys: Vec<KeyEntry>,
    key_stride: u64,
    key_count: u64,
    /// Replay reads using this log's open file (closed only when none is left).
    readers: u32,
    /// Of those, live viewers to tell when more bytes are published.
    followers: u32,
}

impl Log {
    /// The invariants between the offsets (checked after every change in debug builds).
    fn check(&self) {
        debug_assert!(self.synced_off <= self.written_off, "synced past written");
        debug_assert!(self.written_off <= self.submitted_off.max(self.written_off));
        debug_assert!(self.submitted_off <= self.next_off, "submitted past staged");
        debug_assert!(self.staged_off <= self.submitted_off.max(self.staged_off));
        debug_assert!(self.staging.len() as u64 <= self.next_off);
        debug_assert!(
            self.next_off - self.staging.len() as u64 <= self.staged_off,
            "staging dropped bytes a later write needs"
        );
        debug_assert!(self.write.is_none() || self.written_off < self.submitted_off);
        debug_assert!(self.sync.is_none_or(|c| c <= self.written_off));
        debug_assert!(self.n_written <= self.pending.len());
    }

    /// Index the keyframe about to be appended at `next_off` (bounded: when the index is full,
    /// every other entry is dropped and only every `key_stride`-th keyframe is indexed from
    /// then on).
    fn index_keyframe(&mut self, seq: u64, t_ns: u64) {
        let k = self.key_count;
        self.key_count += 1;
        if k % self.key_stride != 0 {
            return;
        }
        if self.keys.len() == MAX_KEYS_PER_MATCH {
            let mut i = 0;
            self.keys.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.key_stride *= 2;
            if k % self.key_stride != 0 {
                return;
            }
        }
        self.keys.push(KeyEntry {
            offset: self.next_off + snaplog::padding_bytes(self.next_off),
            seq,
            t_ns,
        });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Flush,
    Sync,
}

/// A running log as replay reads see it (see [`LiveLogs`]).
#[derive(Clone, Copy, Debug)]
pub struct LiveLog<'a> {
    /// Match id.
    pub id: u64,
    /// Published end: written and reaped (never staged bytes).
    pub published_off: u64,
    /// End of the data staged so far (after the seal: the end of the end frame).
    pub end_off: u64,
    /// Keyframe index.
    pub keys: &'a [KeyEntry],
    /// Open (created, not failed) and not ending.
    pub open: bool,
    /// The match has ended (end frame staged) or the log failed.
    pub sealing: bool,
    /// An op of the log failed.
    pub failed: bool,
}

/// The narrow view replay reads have of the running logs: published offset, keyframe index,
/// end, and pins that keep the file open.
pub trait LiveLogs {
    /// Number of slots (some empty).
    fn slots(&self) -> u32;
    /// The log in `slot`, if any.
    fn live(&self, slot: u32) -> Option<LiveLog<'_>>;
    /// A reader uses the log's open file (`follow`: a live viewer, told of new bytes).
    fn pin(&mut self, slot: u32, follow: bool);
    /// A reader is done with it (the writer may close the file now).
    fn unpin(&mut self, slot: u32, follow: bool);
}

/// What the writer did, counted over its life (the recorder's share of the work counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterWork {
    /// Data frames staged.
    pub frames: u64,
    /// Bytes CRC32C ran over: each frame's first 28 header bytes and its payload.
    pub crc_bytes: u64,
    /// Timers of live logs fired (flush deadlines, interval syncs).
    pub timers_fired: u64,
}

/// CRC-covered bytes of a frame with `payload_bytes` (header without its CRC field, payload).
const fn crc_span(payload_bytes: u32) -> u64 {
    (snaplog::FRAME_HEADER_BYTES - 4) as u64 + payload_bytes as u64
}

/// The log writer of one worker: every match log it writes.
pub struct LogWriter {
    work: WriterWork,
    cfg: WriterConfig,
    logs: Vec<Option<Log>>,
    free_slots: Vec<u32>,
    by_id: FastMap<u32>,
    timers: BinaryHeap<Reverse<(u64, TimerKind, u32, u64)>>,
    /// Flush deadlines pushed in nondecreasing order (`(deadline, slot, id)`): the DS worker
    /// appends in intended-time order, so its flush timers need no heap. One that would break
    /// the order (the prefill's logs) goes to `timers`.
    flush_fifo: VecDeque<(u64, u32, u64)>,
    retry: Vec<u32>,
    /// Slots to look at again (a reader left): see [`LogWriter::advance_poked`].
    poked: Vec<u32>,
    ack_buf: Vec<u8>,
    open_logs: usize,
    /// Sync the directory after each create (see [`LogWriter::sync_dir_after_create`]).
    sync_dir_after_create: bool,
}

impl LogWriter {
    /// A writer with no logs.
    pub fn new(cfg: WriterConfig) -> LogWriter {
        debug_assert!(cfg.align_bytes >= 1 && BLOCK_BYTES as u64 % cfg.align_bytes == 0);
        debug_assert!(cfg.max_write_bytes >= cfg.align_bytes);
        debug_assert!(cfg.max_write_bytes % cfg.align_bytes == 0);
        LogWriter {
            work: WriterWork::default(),
            cfg,
            logs: Vec::new(),
            free_slots: Vec::new(),
            by_id: FastMap::default(),
            timers: BinaryHeap::new(),
            flush_fifo: VecDeque::new(),
            retry: Vec::new(),
            poked: Vec::new(),
            ack_buf: Vec::with_capacity(4096),
            open_logs: 0,
            sync_dir_after_create: true,
        }
    }

    /// Whether the writer syncs the directory after each create (the default) before it counts
    /// a log's bytes durable. Off, a created log counts as in a synced directory at once: the
    /// shell syncs the directory itself before it relies on any of them (the prefill: once,
    /// after every log is closed). Only for [`Durability::None`], whose acknowledgements claim
    /// no durability; a log is still sealed by its final sync.
    pub fn sync_dir_after_create(mut self, on: bool) -> LogWriter {
        debug_assert!(
            on || self.cfg.durability == Durability::None,
            "acknowledged durable without the directory sync"
        );
        self.sync_dir_after_create = on;
        self
    }

    /// What the writer did so far.
    pub fn work(&self) -> WriterWork {
        self.work
    }

    /// The settings.
    pub fn config(&self) -> &WriterConfig {
        &self.cfg
    }

    /// Logs not yet closed and freed.
    pub fn open_logs(&self) -> usize {
        self.open_logs
    }

    /// The slot of match `id`, while its log is live.
    pub fn slot_of(&self, id: u64) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// The slots holding a log now.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.logs.len() as u32).filter(|s| self.logs[*s as usize].is_some())
    }

    /// The state of the log in `slot`.
    pub fn state(&self, slot: u32) -> Option<LogState> {
        self.logs.get(slot as usize)?.as_ref().map(|m| m.state)
    }

    /// Whether writes wait for room (the shell retries them with [`LogWriter::retry`]).
    pub fn has_retries(&self) -> bool {
        !self.retry.is_empty()
    }

    /// Whether a reader left a log since the last [`LogWriter::advance_poked`].
    pub fn has_poked(&self) -> bool {
        !self.poked.is_empty()
    }

    /// The earliest timer (flush or interval sync), ns.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.peek_timer().map(|((t, ..), _)| t)
    }

    /// The earliest timer of the heap and the flush FIFO (the heap's on a tie), and whether it
    /// is the FIFO's.
    fn peek_timer(&self) -> Option<((u64, TimerKind, u32, u64), bool)> {
        let heap = self.timers.peek().map(|r| r.0);
        let fifo = self
            .flush_fifo
            .front()
            .map(|&(t, slot, id)| (t, TimerKind::Flush, slot, id));
        match (heap, fifo) {
            (Some(h), Some(f)) if f.0 < h.0 => Some((f, true)),
            (Some(h), _) => Some((h, false)),
            (None, f) => f.map(|f| (f, true)),
        }
    }

    /// Ack-log lines produced so far (whole lines); the shell writes them and calls
    /// [`LogWriter::clear_ack_lines`].
    pub fn ack_lines(&self) -> &[u8] {
        &self.ack_buf
    }

    /// Forget the ack-log lines handed out.
    pub fn clear_ack_lines(&mut self) {
        self.ack_buf.clear();
    }

    fn log(&self, slot: u32) -> &Log {
        self.logs[slot as usize].as_ref().expect("live slot")
    }

    fn log_mut(&mut self, slot: u32) -> &mut Log {
        self.logs[slot as usize].as_mut().expect("live slot")
    }

    fn emit(&mut self, io: &mut dyn WriterIo, op: WriterOp) {
        let slot = op.log().slot;
        self.log_mut(slot).ops_in_flight += 1;
        io.submit(op, &[]);
    }

    /// Start the log of match `id` (intended start `t_ns`): its header block is staged and the
    /// create submitted, preallocating `prealloc_bytes` of the config. Returns its slot.
    pub fn start(
        &mut self,
        id: u64,
        t_ns: u64,
        created_unix_ns: u64,
        io: &mut dyn WriterIo,
    ) -> u32 {
        let prealloc_bytes = self.cfg.prealloc_bytes;
        self.start_sized(id, t_ns, created_unix_ns, prealloc_bytes, io)
    }

    /// [`LogWriter::start`] for a log whose size the shell knows: the create preallocates
    /// `prealloc_bytes` (the file's size until a write reaches past it; later growth is in
    /// chunks of the config's `prealloc_bytes`). The prefill passes each log's final size.
    pub fn start_sized(
        &mut self,
        id: u64,
        t_ns: u64,
        created_unix_ns: u64,
        prealloc_bytes: u64,
        io: &mut dyn WriterIo,
    ) -> u32 {
        debug_assert!(!self.by_id.contains_key(&id), "match {id} started twice");
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.logs.push(None);
                (self.logs.len() - 1) as u32
            }
        };
        let mut staging =
            Vec::with_capacity(self.cfg.segment_bytes.min(1 << 26) as usize * 2 + BLOCK_BYTES);
        staging.resize(BLOCK_BYTES, 0);
        snaplog::encode_file_header(id, created_unix_ns, &mut staging);
        self.logs[slot as usize] = Some(Log {
            id,
            state: LogState::Creating { sealing: false },
            staging,
            staged_off: 0,
            next_off: BLOCK_BYTES as u64,
            submitted_off: 0,
            written_off: 0,
            synced_off: 0,
            alloc_end: prealloc_bytes,
            write: None,
            alloc: None,
            sync: None,
            flush_due: true,
            sync_due: false,
            dir_synced: false,
            queued: false,
            ops_in_flight: 0,
            oldest_unflushed_t: None,
            pending: VecDeque::with_capacity(256),
            n_written: 0,
            frames: 0,
            payload_sum: 0,
            last_t_ns: t_ns,
            end_t_ns: 0,
            keys: Vec::with_capacity(8),
            key_stride: 1,
            key_count: 0,
            readers: 0,
            followers: 0,
        });
        self.by_id.insert(id, slot);
        self.open_logs += 1;
        let log = LogRef { slot, id };
        self.emit(
            io,
            WriterOp::Create {
                log,
                prealloc_bytes,
            },
        );
        if let Durability::Interval { ms } = self.cfg.durability {
            self.timers.push(Reverse((
                t_ns + (ms * 1e6) as u64,
                TimerKind::Sync,
                slot,
                id,
            )));
        }
        slot
    }

    /// Frame one snapshot into the log in `slot` (ignored once the log ends or failed).
    #[inline]
    pub fn append(
        &mut self,
        slot: u32,
        seq: u64,
        t_ns: u64,
        kind: FrameKind,
        payload_bytes: u32,
        io: &mut dyn WriterIo,
    ) {
        let (flush_ns, segment) = (self.cfg.flush_ns, self.cfg.segment_bytes);
        let m = self.logs[slot as usize].as_mut().expect("live slot");
        if m.state.sealing() || matches!(m.state, LogState::Failed { .. }) {
            return;
        }
        debug_assert!(kind != FrameKind::End, "the end frame is written by seal");
        let payload = snaplog::clamp_payload_bytes(payload_bytes);
        self.work.frames += 1;
        self.work.crc_bytes += crc_span(payload);
        if kind == FrameKind::Keyframe {
            m.index_keyframe(seq, t_ns);
        }
        let before = m.next_off;
        m.next_off =
            snaplog::append_frame(&mut m.staging, m.next_off, m.id, seq, t_ns, kind, payload);
        debug_assert!(m.next_off > before, "offsets only grow");
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
        if m.oldest_unflushed_t.is_none() {
            m.oldest_unflushed_t = Some(t_ns);
            let id = m.id;
            let due = t_ns + flush_ns;
            if self.flush_fifo.back().is_none_or(|b| b.0 <= due) {
                self.flush_fifo.push_back((due, slot, id));
            } else {
                self.timers.push(Reverse((due, TimerKind::Flush, slot, id)));
            }
        }
        if due_now {
            self.flush(slot, io);
        }
    }

    /// The match of `slot` ended at `t_ns` (or the run did): stage the end frame, flush, sync
    /// every byte, close.
    pub fn seal(&mut self, slot: u32, t_ns: u64, io: &mut dyn WriterIo) {
        let m = self.logs[slot as usize].as_mut().expect("live slot");
        if m.state.sealing() {
            return;
        }
        let end_t = t_ns.max(m.last_t_ns);
        m.end_t_ns = end_t;
        match m.state {
            LogState::Failed { opened, .. } => {
                m.state = LogState::Failed {
                    opened,
                    sealing: true,
                }
            }
            state => {
                self.work.crc_bytes += crc_span(snaplog::END_PAYLOAD_BYTES);
                m.next_off = snaplog::append_end_frame(
                    &mut m.staging,
                    m.next_off,
                    m.frames,
                    end_t,
                    m.frames,
                    m.payload_sum,
                );
                m.flush_due = true;
                m.state = match state {
                    LogState::Creating { .. } => LogState::Creating { sealing: true },
                    _ => LogState::Sealing,
                };
            }
        }
        self.advance(slot, io);
    }

    /// Fire the timers due at `now` (flush deadlines, interval syncs).
    pub fn on_timers(&mut self, now: u64, io: &mut dyn WriterIo) {
        while let Some(((t, kind, slot, id), from_fifo)) = self.peek_timer() {
            if t > now {
                break;
            }
            if from_fifo {
                self.flush_fifo.pop_front();
            } else {
                self.timers.pop();
            }
            let alive = matches!(self.logs.get(slot as usize), Some(Some(m)) if m.id == id);
            if !alive {
                continue;
            }
            self.work.timers_fired += 1;
            match kind {
                TimerKind::Flush => {
                    let m = self.log(slot);
                    if m.oldest_unflushed_t
                        .is_some_and(|t0| t0 + self.cfg.flush_ns <= t)
                    {
                        self.flush(slot, io);
                    }
                }
                TimerKind::Sync => {
                    let Durability::Interval { ms } = self.cfg.durability else {
                        continue;
                    };
                    let st = self.log(slot).state;
                    if st.sealing() || matches!(st, LogState::Failed { .. }) {
                        continue;
                    }
                    self.timers
                        .push(Reverse((t + (ms * 1e6) as u64, TimerKind::Sync, slot, id)));
                    self.request_sync(slot, io);
                }
            }
        }
    }

    /// Try again the writes that found no room or buffer.
    pub fn retry(&mut self, io: &mut dyn WriterIo) {
        if self.retry.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.retry);
        for slot in &list {
            if let Some(m) = self.logs[*slot as usize].as_mut() {
                m.queued = false;
            }
        }
        for slot in &list {
            if self.logs[*slot as usize].is_some() {
                self.advance(*slot, io);
            }
        }
        list.clear();
        if self.retry.is_empty() {
            self.retry = list;
        }
    }

    /// Look again at the logs a reader left (their close may be due now).
    pub fn advance_poked(&mut self, io: &mut dyn WriterIo) {
        while let Some(slot) = self.poked.pop() {
            if self.logs[slot as usize].is_some() {
                self.advance(slot, io);
            }
        }
    }

    /// Look again at every log (nothing is in flight: whatever can still be closed is).
    pub fn advance_all(&mut self, io: &mut dyn WriterIo) {
        for slot in 0..self.logs.len() as u32 {
            if self.logs[slot as usize].is_some() {
                self.advance(slot, io);
            }
        }
    }

    fn defer(&mut self, slot: u32) {
        let m = self.log_mut(slot);
        m.flush_due = true;
        if !m.queued {
            m.queued = true;
            self.retry.push(slot);
        }
    }

    /// Hand staged bytes to the shell as a write (whole aligned blocks for O_DIRECT engines).
    fn flush(&mut self, slot: u32, io: &mut dyn WriterIo) {
        let (align, max_write, flush_ns) = (
            self.cfg.align_bytes,
            self.cfg.max_write_bytes,
            self.cfg.flush_ns,
        );
        let dsync = self.cfg.durability == Durability::Dsync;
        let prealloc = self.cfg.prealloc_bytes;
        let pad_tail = self.cfg.pad_tail && align > 1;
        let m = self.log_mut(slot);
        if !m.state.writable() {
            m.flush_due = true;
            return;
        }
        if m.next_off == m.submitted_off {
            m.flush_due = false;
            m.oldest_unflushed_t = None;
            return;
        }
        // One write per log in flight: a later write must never become durable before an
        // earlier one (dsync, or another log's sync committing the shared journal), or a
        // power cut leaves a hole followed by valid frames.
        if m.write.is_some() || m.alloc.is_some() {
            m.flush_due = true;
            return;
        }
        // `staging` holds the file's bytes from `base` to `next_off`.
        let (start, data_end, alloc_end) = (m.staged_off, m.next_off, m.alloc_end);
        let base = m.next_off - m.staging.len() as u64;
        let mut end = data_end.div_ceil(align) * align;
        if end - start > max_write {
            end = start + max_write;
        }
        let chunk_data_end = end.min(data_end);
        let log = LogRef { slot, id: m.id };
        if end > alloc_end {
            let grow = (end - alloc_end).div_ceil(prealloc.max(1)) * prealloc.max(1);
            m.alloc = Some(grow);
            m.flush_due = true;
            self.emit(
                io,
                WriterOp::Allocate {
                    log,
                    offset: alloc_end,
                    len_bytes: grow,
                },
            );
            return;
        }
        let mut chunk_data_end = chunk_data_end;
        if pad_tail && end > data_end {
            // Commit the tail block's padding: the zeros become part of the log (a reader at a
            // frame boundary skips a zero word to the next block) and the next frame starts on
            // a fresh block, so no later write touches this block again.
            m.staging
                .resize(m.staging.len() + (end - data_end) as usize, 0);
            m.next_off = end;
            chunk_data_end = end;
        }
        let op = WriterOp::Write {
            log,
            offset: start,
            len_bytes: end - start,
            data_end: chunk_data_end,
            dsync,
        };
        let from = (start - base) as usize;
        let data = &m.staging[from..from + (chunk_data_end - start) as usize];
        if !io.submit(op, data) {
            self.defer(slot);
            return;
        }
        let m = self.log_mut(slot);
        m.ops_in_flight += 1;
        m.write = Some(InFlightWrite {
            data_end: chunk_data_end,
        });
        debug_assert!(chunk_data_end > m.submitted_off, "offsets only grow");
        m.submitted_off = chunk_data_end;
        let new_staged = if end > chunk_data_end {
            chunk_data_end / align * align
        } else {
            end
        };
        debug_assert!(new_staged >= m.staged_off, "offsets only grow");
        m.staged_off = new_staged;
        if let Some(t0) = m.oldest_unflushed_t {
            io.event(WriterEvent::Flushed {
                oldest_t_ns: t0,
                due_ns: t0 + flush_ns,
            });
        }
        // Drop what no later write needs (kept: the partial tail block, for its rewrite).
        let drop_bytes = (m.staged_off - base) as usize;
        m.staging.drain(..drop_bytes);
        if m.submitted_off == m.next_off {
            m.flush_due = false;
            m.oldest_unflushed_t = None;
        } else {
            // The rest goes out when this write completes (`advance`).
            m.flush_due = true;
        }
        m.check();
    }

    fn request_sync(&mut self, slot: u32, io: &mut dyn WriterIo) {
        let m = self.log_mut(slot);
        if !m.state.writable() {
            return;
        }
        if m.sync.is_some() {
            m.sync_due = true;
            return;
        }
        if m.written_off <= m.synced_off {
            return;
        }
        self.submit_sync(slot, io);
    }

    /// Submit a sync covering exactly the bytes written (and reaped) so far.
    fn submit_sync(&mut self, slot: u32, io: &mut dyn WriterIo) {
        let m = self.log_mut(slot);
        debug_assert!(m.sync.is_none(), "one sync per log in flight");
        let covered = m.written_off;
        m.sync = Some(covered);
        m.sync_due = false;
        let log = LogRef { slot, id: m.id };
        self.emit(io, WriterOp::Sync { log, covered });
    }

    /// Submit whatever is due for this log after a state change.
    fn advance(&mut self, slot: u32, io: &mut dyn WriterIo) {
        let m = self.log(slot);
        if m.state.writable() && m.flush_due && !m.queued {
            self.flush(slot, io);
        }
        let m = self.log(slot);
        if m.state.writable() && m.sync_due && m.sync.is_none() {
            self.request_sync(slot, io);
        }
        let m = self.log(slot);
        let all_written = m.submitted_off == m.next_off && m.write.is_none();
        if m.state == LogState::Sealing && all_written && m.dir_synced && m.sync.is_none() {
            if m.synced_off >= m.next_off {
                self.log_mut(slot).state = LogState::Sealed;
            } else {
                // The final sync covers every byte of the sealed log, whatever the policy.
                self.submit_sync(slot, io);
            }
        }
        let m = self.log(slot);
        let closable = match m.state {
            LogState::Sealed => Some(true),
            LogState::Failed {
                sealing: true,
                opened,
            } => Some(!opened),
            _ => None,
        };
        // Replay readers share the writer's open file: it is closed after the last of them.
        let Some(ok_or_unopened) = closable else {
            return;
        };
        if m.ops_in_flight != 0 || m.readers != 0 {
            return;
        }
        let log = LogRef { slot, id: m.id };
        if m.state == LogState::Sealed {
            self.log_mut(slot).state = LogState::Closing { ok: true };
            io.event(WriterEvent::Sealed { id: log.id });
            self.emit(io, WriterOp::Close { log });
        } else if ok_or_unopened {
            // Failed before the create completed: no file to close.
            self.free_slot(slot);
        } else {
            // A failed log still gets closed so its descriptor is not leaked.
            self.log_mut(slot).state = LogState::Closing { ok: false };
            self.emit(io, WriterOp::Close { log });
        }
    }

    fn free_slot(&mut self, slot: u32) -> Option<Log> {
        let m = self.logs[slot as usize].take()?;
        self.by_id.remove(&m.id);
        self.free_slots.push(slot);
        self.open_logs -= 1;
        Some(m)
    }

    fn fail(&mut self, slot: u32) {
        let m = self.log_mut(slot);
        m.state = match m.state {
            LogState::Creating { sealing } => LogState::Failed {
                opened: false,
                sealing,
            },
            LogState::Closing { ok } => LogState::Closing { ok },
            LogState::Failed { opened, sealing } => LogState::Failed { opened, sealing },
            st => LogState::Failed {
                opened: true,
                sealing: st.sealing(),
            },
        };
    }

    /// The op `op` completed (`ok`: without error; the shell reports the error).
    pub fn on_complete(&mut self, op: WriterOp, ok: bool, io: &mut dyn WriterIo) {
        let LogRef { slot, id } = op.log();
        match self.logs.get(slot as usize) {
            Some(Some(m)) if m.id == id => {}
            _ => {
                debug_assert!(false, "completion of {op:?} for a log that is gone");
                return;
            }
        }
        let m = self.log_mut(slot);
        debug_assert!(m.ops_in_flight > 0);
        m.ops_in_flight -= 1;
        if !ok {
            if let WriterOp::Close { .. } = op {
                self.free_slot(slot);
                return;
            }
            match op {
                WriterOp::Write { .. } => m.write = None,
                WriterOp::Sync { .. } => m.sync = None,
                WriterOp::Allocate { .. } => m.alloc = None,
                _ => {}
            }
            // A failed write stays unwritten: nothing at or after it is ever acknowledged.
            self.fail(slot);
            self.advance(slot, io);
            return;
        }
        match op {
            WriterOp::Create { .. } => {
                let m = self.log_mut(slot);
                m.state = match m.state {
                    LogState::Creating { sealing: false } => LogState::Open,
                    LogState::Creating { sealing: true } => LogState::Sealing,
                    st => st,
                };
                if self.sync_dir_after_create {
                    let log = LogRef { slot, id };
                    self.emit(io, WriterOp::SyncDir { log });
                } else {
                    // The shell syncs the directory itself (see `sync_dir_after_create`).
                    self.log_mut(slot).dir_synced = true;
                }
                self.flush(slot, io);
            }
            WriterOp::SyncDir { .. } => {
                self.log_mut(slot).dir_synced = true;
                self.apply_durable(slot, io);
            }
            WriterOp::Allocate { len_bytes, .. } => {
                let m = self.log_mut(slot);
                debug_assert_eq!(m.alloc, Some(len_bytes));
                m.alloc_end += len_bytes;
                m.alloc = None;
            }
            WriterOp::Write { data_end, .. } => {
                let m = self.log_mut(slot);
                debug_assert!(
                    m.write.is_some_and(|w| w.data_end == data_end),
                    "the one write in flight"
                );
                m.write = None;
                debug_assert!(data_end > m.written_off, "offsets only grow");
                m.written_off = data_end;
                self.on_written(slot, io);
                let m = self.log(slot);
                if m.followers > 0 {
                    io.event(WriterEvent::Published {
                        slot,
                        written_off: m.written_off,
                    });
                }
            }
            WriterOp::Sync { covered, .. } => {
                let m = self.log_mut(slot);
                debug_assert_eq!(m.sync, Some(covered));
                debug_assert!(covered <= m.written_off, "a sync covers only reaped writes");
                m.sync = None;
                m.synced_off = m.synced_off.max(covered);
                self.apply_durable(slot, io);
            }
            WriterOp::Close { .. } => {
                let m = self.free_slot(slot).expect("live");
                if m.state == (LogState::Closing { ok: true }) {
                    io.event(WriterEvent::Finished(FinishedLog {
                        id: m.id,
                        data_end: m.next_off,
                        end_t_ns: m.end_t_ns,
                        last_t_ns: m.last_t_ns,
                        keys: m.keys,
                    }));
                }
                return;
            }
        }
        if self.logs[slot as usize].is_some() {
            self.log(slot).check();
            self.advance(slot, io);
        }
    }

    /// Snapshots whose bytes are all written: tell the shell; acknowledge per the policy.
    fn on_written(&mut self, slot: u32, io: &mut dyn WriterIo) {
        let m = self.logs[slot as usize].as_mut().expect("live");
        while m.n_written < m.pending.len() {
            let rec = m.pending[m.n_written];
            if rec.end_off > m.written_off {
                break;
            }
            m.n_written += 1;
            io.event(WriterEvent::Written {
                t_ns: rec.t_ns,
                payload_bytes: rec.payload_bytes,
            });
        }
        match self.cfg.durability {
            Durability::None => {
                // Acknowledged when written (not durable: nothing goes to the ack log).
                let id = m.id;
                while m.n_written > 0 {
                    let rec = m.pending.pop_front().expect("counted");
                    m.n_written -= 1;
                    debug_assert!(rec.end_off <= m.written_off);
                    io.event(WriterEvent::Acked {
                        id,
                        seq: rec.seq,
                        t_ns: rec.t_ns,
                    });
                }
            }
            Durability::Dsync => {
                // Each write was durable on completion.
                m.synced_off = m.written_off;
                self.apply_durable(slot, io);
            }
            Durability::Every => self.request_sync(slot, io),
            Durability::Interval { .. } => {}
        }
    }

    /// Snapshots covered by a completed sync (and the directory sync): acknowledge them.
    fn apply_durable(&mut self, slot: u32, io: &mut dyn WriterIo) {
        if self.cfg.durability == Durability::None {
            return;
        }
        let m = self.logs[slot as usize].as_mut().expect("live");
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
            debug_assert!(rec.end_off <= m.synced_off && rec.end_off <= m.written_off);
            m.pending.pop_front();
            m.n_written -= 1;
            last = Some(rec.seq);
            io.event(WriterEvent::Acked {
                id: m.id,
                seq: rec.seq,
                t_ns: rec.t_ns,
            });
        }
        if let (Some(seq), true) = (last, self.cfg.ack_lines) {
            let _ = writeln!(&mut self.ack_buf, "{} {seq}", m.id);
        }
    }
}

impl LiveLogs for LogWriter {
    fn slots(&self) -> u32 {
        self.logs.len() as u32
    }

    fn live(&self, slot: u32) -> Option<LiveLog<'_>> {
        let m = self.logs.get(slot as usize)?.as_ref()?;
        Some(LiveLog {
            id: m.id,
            published_off: m.written_off,
            end_off: m.next_off,
            keys: &m.keys,
            open: m.state == LogState::Open,
            sealing: m.state.sealing(),
            failed: matches!(m.state, LogState::Failed { .. }),
        })
    }

    fn pin(&mut self, slot: u32, follow: bool) {
        let m = self.log_mut(slot);
        m.readers += 1;
        if follow {
            m.followers += 1;
        }
    }

    fn unpin(&mut self, slot: u32, follow: bool) {
        let Some(m) = self.logs.get_mut(slot as usize).and_then(|m| m.as_mut()) else {
            return;
        };
        debug_assert!(m.readers > 0 && (!follow || m.followers > 0));
        m.readers -= 1;
        if follow {
            m.followers -= 1;
        }
        self.poked.push(slot);
    }
}
