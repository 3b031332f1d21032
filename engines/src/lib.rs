//! # snapbench-engines: the I/O paths a replay recorder can take
//!
//! Every engine implements one trait, [`Recorder`], modelled on fio's engine hooks
//! (`queue` / `commit` / `getevents` / `event`): the harness [`submit`](Recorder::submit)s
//! operations tagged with a `u64` token, [`flush`](Recorder::flush)es them to the kernel,
//! and [`reap`](Recorder::reap)s completions into a vector it owns. The harness never tests an
//! engine's name: it branches on the engine's declared [`Caps`].
//!
//! Engines are chosen through a closed enum, [`EngineSpec`], parsed from a variant string
//! (`buffered:direct=true,threads=4`). Each engine is declared once: its knobs by one
//! `declare_knobs!` list in its file, the engine by an [`Engine`] impl on that knob struct
//! (name, summary, factory, probe, what a variant uses, plan-time capabilities), and one line
//! in this file's `engines!` list; parsing, variant strings, probing and `snapbench engines`
//! all derive from those ([`registry`]). An engine instance belongs to one worker thread and
//! may be `!Send`; a `Send` [`RecorderFactory`] builds it on that thread.
//!
//! ## How each engine of the design fits this trait
//!
//! - `null`, `buffered` (inline): synchronous — `submit` runs the operation and parks the
//!   completion in a bounded vector that `reap` hands over; `caps().synchronous` is set.
//! - `buffered:threads=N`, `tokio`: `submit` moves the op (and its owned buffer) to a blocking
//!   pool (through a bounded channel; tokio's `spawn_blocking`); `reap` waits on a bounded
//!   completion channel until the deadline.
//! - `uring`, `poll`: `submit` fills SQEs (back-pressure when the SQ or the fixed-buffer pool is
//!   full), `flush` is one `io_uring_enter`, `reap` walks the CQ; buffers are registered slots
//!   and the kernel owns them from submit until the CQE returns them; `poll` sets `caps().polls`
//!   and overrides [`Recorder::run_loop`]: its reactor runs the harness's worker as a poller.
//! - `aio`: iocbs queued by `submit`, one `io_submit` per `flush`, `io_getevents` (or the
//!   user-space AIO ring) in `reap`.
//! - `glommio`: `Buf` is a `DmaBuffer`; a write consumes it (the completion returns `buf: None`),
//!   a read copies glommio's own buffer into the caller's. Its [`Recorder::run_loop`] runs the
//!   harness's worker from a task inside its executor, awaiting completions or a glommio timer
//!   there; a `reap` called from outside re-enters the executor until a completion or the
//!   deadline (see the `glommio` module).
//!
//! The loop: [`Recorder::run_loop`] runs a [`LoopBody`] (the harness's worker) pass by pass —
//! `step` (due work, submits), then `complete` (take completions up to a deadline). The default
//! is the plain blocking loop; engines with a loop of their own run the body inside it.
//!
//! Syncs: a `Sync` covers exactly the writes that had completed before it was submitted. The
//! harness only submits a sync after the writes it must cover completed, so an engine that
//! reorders inside a batch (io_uring, AIO) never lets a sync overtake one of them.

#![warn(missing_docs)]

pub mod aio;
pub mod buf;
pub mod buffered;
mod exec;
pub mod glommio;
pub mod knobs;
pub mod null;
pub mod placement;
pub mod poll;
pub mod registry;
pub mod spsc;
pub mod tokio_engine;
pub mod uring;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use buf::{AlignedBuf, BufPool};
pub use exec::{probe_prealloc, FastMap, IdHasher};
pub use knobs::{KnobError, KnobKind, KnobSpec};
pub use registry::{Engine, EngineInfo};

/// Identifies one file the engine manages: a match log (`m<16 hex>.snap`) or a micro data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatchId(pub u64);

impl fmt::Display for MatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What kind of file a [`MatchId`] names, which decides its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A SNAPLOG1 match log: `m<match id as 16 lowercase hex digits>.snap`.
    Log,
    /// A raw data file for micro patterns: `m<16 hex>.dat`.
    Data,
}

/// The file name of `file` of `kind` inside the engine's directory.
pub fn file_name(file: MatchId, kind: FileKind) -> String {
    match kind {
        FileKind::Log => format!("m{:016x}.snap", file.0),
        FileKind::Data => format!("m{:016x}.dat", file.0),
    }
}

/// One operation on a match log. `B` is the engine's buffer type; an op owns its buffer from
/// submit until its completion hands it back.
#[derive(Debug)]
pub enum Op<B> {
    /// Create (truncate) the file for read and write and preallocate `prealloc_bytes` from
    /// offset 0 (`fallocate` without KEEP_SIZE, so the file's size becomes `prealloc_bytes`).
    Create {
        /// The file.
        file: MatchId,
        /// Log or data file.
        kind: FileKind,
        /// Bytes to preallocate (0 = none).
        prealloc_bytes: u64,
    },
    /// Open an existing file (read-only unless `writable`).
    Open {
        /// The file.
        file: MatchId,
        /// Log or data file.
        kind: FileKind,
        /// Open for writing too.
        writable: bool,
    },
    /// Allocate blocks for `[offset, offset + len_bytes)` (`fallocate` mode 0: extends the size).
    Allocate {
        /// The file (must be open).
        file: MatchId,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len_bytes: u64,
    },
    /// Write all of `buf` at `offset`. With `dsync`, the write is durable on completion
    /// (RWF_DSYNC / O_DSYNC semantics). Short transfers are completed by the engine.
    Write {
        /// The file (must be open).
        file: MatchId,
        /// File offset.
        offset: u64,
        /// The bytes; handed back in the completion (unless the engine consumes it).
        buf: B,
        /// Make the write durable on completion.
        dsync: bool,
    },
    /// Read `buf.len()` bytes at `offset`; the completion's result is the byte count read,
    /// shorter only at end of file.
    Read {
        /// The file (must be open).
        file: MatchId,
        /// File offset.
        offset: u64,
        /// Buffer to fill; handed back in the completion.
        buf: B,
    },
    /// `fdatasync`: covers exactly the writes that completed before this was submitted.
    Sync {
        /// The file (must be open).
        file: MatchId,
    },
    /// `fsync` of the engine's directory, making created and removed names durable.
    SyncDir,
    /// Close the file. No other op of this file may be in flight.
    Close {
        /// The file.
        file: MatchId,
    },
    /// Unlink the file (closing it first if it is open).
    Remove {
        /// The file.
        file: MatchId,
        /// Log or data file.
        kind: FileKind,
    },
}

/// The kind of an [`Op`], carried by its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Op::Create`].
    Create,
    /// [`Op::Open`].
    Open,
    /// [`Op::Allocate`].
    Allocate,
    /// [`Op::Write`].
    Write,
    /// [`Op::Read`].
    Read,
    /// [`Op::Sync`].
    Sync,
    /// [`Op::SyncDir`].
    SyncDir,
    /// [`Op::Close`].
    Close,
    /// [`Op::Remove`].
    Remove,
}

impl OpKind {
    /// Lowercase name, as used in error messages and results.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Open => "open",
            OpKind::Allocate => "allocate",
            OpKind::Write => "write",
            OpKind::Read => "read",
            OpKind::Sync => "sync",
            OpKind::SyncDir => "sync_dir",
            OpKind::Close => "close",
            OpKind::Remove => "remove",
        }
    }
}

impl<B> Op<B> {
    /// The kind of this op.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Create { .. } => OpKind::Create,
            Op::Open { .. } => OpKind::Open,
            Op::Allocate { .. } => OpKind::Allocate,
            Op::Write { .. } => OpKind::Write,
            Op::Read { .. } => OpKind::Read,
            Op::Sync { .. } => OpKind::Sync,
            Op::SyncDir => OpKind::SyncDir,
            Op::Close { .. } => OpKind::Close,
            Op::Remove { .. } => OpKind::Remove,
        }
    }
}

/// The result of one op.
#[derive(Debug)]
pub struct Completion<B> {
    /// The token the op was submitted with.
    pub token: u64,
    /// What the op was.
    pub kind: OpKind,
    /// Bytes transferred (reads and writes; the whole buffer for a write, never a short count),
    /// 0 for other ops, or the error. A failed write is never reported as written.
    pub res: io::Result<usize>,
    /// The op's buffer, handed back (None for ops without one, or when the engine consumed it).
    pub buf: Option<B>,
}

/// What an engine can do and needs; the harness branches on these, never on names. Constant for
/// the life of an instance. The whole struct is echoed in each run's `summary.json` (`caps`),
/// so results describe the I/O path that produced them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Caps {
    /// Engine name (`null`, `buffered`, …), for messages only.
    pub name: &'static str,
    /// Files are opened with O_DIRECT: buffers, offsets and lengths must be aligned. Plan-time
    /// code, which has no instance yet, asks [`EngineSpec::direct`], which says the same.
    pub direct: bool,
    /// Alignment (bytes) required of file offsets and I/O lengths; 1 when any is fine. The
    /// driver aligns its writes and its preallocation to it.
    pub io_align_bytes: usize,
    /// Every op completes inside `submit` (no overlap between I/Os of one worker): `null` and
    /// `buffered` without threads. Reported in results; queue depth buys such an engine nothing.
    pub synchronous: bool,
    /// The engine busy-polls: `reap` never sleeps, and a worker costs one whole core. The driver
    /// never sleeps between turns on such an engine.
    pub polls: bool,
    /// The engine has an event loop of its own (glommio's executor, the `poll` reactor) and
    /// overrides [`Recorder::run_loop`]: the harness's worker runs inside it, as a glommio task
    /// or a reactor poller. The driver needs no branch on it (`run_loop` is chosen by type);
    /// it is recorded with the results (`caps` in summary.json) so a reader knows which loop ran.
    pub owns_loop: bool,
    /// Most ops in flight at once; `submit` hands back further ops (back-pressure).
    pub max_in_flight: usize,
    /// Largest buffer `alloc_buf` hands out.
    pub buf_bytes: usize,
    /// Most buffers `alloc_buf` hands out at once (the pool's bound, from
    /// [`EngineConfig::buf_count`]).
    pub buf_count: usize,
    /// Written bytes can be read back (false only for `null`, whose reads return the buffer
    /// untouched): the harness verifies read data only when this is set.
    pub stores_data: bool,
    // -- issue 10: placement --
    /// Where the engine's helper threads run, in words (`buffered pool, 4 threads: all CPUs of
    /// the run (0-1)`); what the engine's `pool_cpus` / `iowq_cpus` knob chose.
    pub helper_placement: String,
}

impl Caps {
    /// The caps of an engine named `name` for `cfg` as most engines have them: no O_DIRECT, any
    /// alignment, asynchronous, sleeping in `reap`, the driver's loop, `cfg.queue_depth` ops in
    /// flight (at least 1), `cfg.buf_count` buffers of `cfg.buf_bytes`, data stored. An engine
    /// overrides what differs: `Caps { direct: true, ..Caps::new("uring", cfg) }`.
    pub fn new(name: &'static str, cfg: &EngineConfig) -> Caps {
        Caps {
            name,
            direct: false,
            io_align_bytes: 1,
            synchronous: false,
            polls: false,
            owns_loop: false,
            max_in_flight: cfg.queue_depth.max(1),
            buf_bytes: cfg.buf_bytes,
            buf_count: cfg.buf_count,
            stores_data: true,
            helper_placement: "none (no helper threads)".to_string(),
        }
    }

    /// Back-pressure, the first step of every `submit`: `Err(op)` hands the op back when
    /// `in_flight` ops already fill [`max_in_flight`](Caps::max_in_flight), else `Ok(op)`.
    #[inline]
    pub fn admit<B>(&self, in_flight: usize, op: Op<B>) -> Result<Op<B>, Op<B>> {
        if in_flight >= self.max_in_flight {
            Err(op)
        } else {
            Ok(op)
        }
    }
}

/// What the engines whose buffers are plain aligned memory (`null`, `buffered`, `aio`,
/// `tokio`) share: their [`Caps`] and a bounded [`BufPool`] sized from them. Such an engine
/// embeds one and forwards `caps`, `alloc_buf` and `release_buf` to it, and starts `submit`
/// with [`admit`](EngineBase::admit).
#[derive(Debug)]
pub struct EngineBase {
    caps: Caps,
    bufs: BufPool,
}

impl EngineBase {
    /// The caps and a pool of `caps.buf_count` buffers of `caps.buf_bytes`, aligned for
    /// `caps.io_align_bytes` ([`buf::buffer_align_bytes`]).
    pub fn new(caps: Caps) -> EngineBase {
        let bufs = BufPool::new(
            caps.buf_count,
            caps.buf_bytes,
            buf::buffer_align_bytes(caps.io_align_bytes),
        );
        EngineBase { caps, bufs }
    }

    /// The engine's caps.
    #[inline]
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// A buffer of `len_bytes` from the pool ([`Recorder::alloc_buf`]).
    #[inline]
    pub fn alloc(&mut self, len_bytes: usize) -> Option<AlignedBuf> {
        self.bufs.alloc(len_bytes)
    }

    /// Return a buffer to the pool ([`Recorder::release_buf`]).
    #[inline]
    pub fn release(&mut self, buf: AlignedBuf) {
        self.bufs.release(buf);
    }

    /// Back-pressure ([`Caps::admit`]).
    #[inline]
    pub fn admit<B>(&self, in_flight: usize, op: Op<B>) -> Result<Op<B>, Op<B>> {
        self.caps.admit(in_flight, op)
    }
}

/// Per-worker settings the harness gives a factory.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Directory the engine's files live in (exists; the harness created it).
    pub dir: PathBuf,
    /// Worker index (0-based).
    pub worker: usize,
    /// Workers in the run (every worker builds its own instance).
    pub workers: usize,
    /// Most ops in flight for this worker.
    pub queue_depth: usize,
    /// Largest buffer the harness will ask for.
    pub buf_bytes: usize,
    /// Buffers in the pool (bounds memory: `buf_bytes * buf_count`).
    pub buf_count: usize,
    /// Direct-I/O alignment of the target (STATX_DIOALIGN, else the logical block size).
    pub dio_align_bytes: usize,
    /// State shared by the engine instances of one run.
    pub shared: std::sync::Arc<RunShared>,
}

crate::knobs::knob_choice! {
    /// How a log gets its blocks ahead of the writes (a run setting every file-backed engine
    /// but glommio follows: `prealloc` in a suite, `--prealloc`).
    pub enum Prealloc {
        /// `fallocate` mode 0: unwritten extents, converted as writes land.
        #[default]
        Fallocate = "fallocate",
        /// `fallocate`, then zeros written once over the range with O_DIRECT, so every block is
        /// a written extent before the log's own writes (page-cache zeroing would leave cached
        /// pages behind); costs the range's bytes on the device once.
        Zeroed = "zeroed",
        /// `fallocate(FALLOC_FL_WRITE_ZEROES)` (Linux 6.17+, where the device can zero without
        /// writing): written, zeroed extents from the device.
        WriteZeroes = "write_zeroes",
    }
}

/// State shared by the engine instances of one run (the harness makes one per run).
#[derive(Debug, Default)]
pub struct RunShared {
    /// How logs are preallocated (Create and Allocate ops).
    pub prealloc: Prealloc,
    /// `uring:attach_wq=true`: a duplicate of the first ring's fd, whose io-wq later rings attach to.
    pub uring_wq_fd: std::sync::Mutex<Option<std::os::fd::OwnedFd>>,
    /// `poll`: the message rings between the run's reactors, built by the first reactor to
    /// start; each reactor takes its own ends once.
    pub poll_mesh: std::sync::Mutex<Option<poll::Mesh>>,
}

/// The I/O path of a replay recorder, as one worker thread sees it: fio's engine hooks
/// (`engines/skeleton_external.c`) as methods, each with its contract on it.
///
/// Ordering across hooks: a `Sync` covers exactly the writes whose completions were reaped
/// before it was submitted; callers submit it only then, and the engine never reorders ops of
/// one file in a way that lets a sync be *reported* before a write it covers completed.
pub trait Recorder {
    /// The engine's buffer: plain, aligned, registered, or glommio's `DmaBuffer`. An op owns its
    /// buffer from `submit` until its completion hands it back.
    type Buf: AsRef<[u8]> + AsMut<[u8]>;

    /// What the engine can do and needs; constant for the life of the instance.
    fn caps(&self) -> &Caps;

    /// A buffer of exactly `len` bytes from the engine's bounded pool (aligned, registered or
    /// DMA memory as the engine needs). `None` means the pool is empty (back-pressure: reap
    /// completions and try again) or `len > caps().buf_bytes`. Its contents are unspecified: the
    /// caller writes every byte it submits. Return buffers with
    /// [`release_buf`](Recorder::release_buf); a dropped buffer is freed but its pool slot is
    /// lost.
    fn alloc_buf(&mut self, len: usize) -> Option<Self::Buf>;

    /// Return a buffer (from `alloc_buf` or a completion) to the pool.
    fn release_buf(&mut self, buf: Self::Buf);

    /// Queue `op` tagged with `token`. May complete it at once (synchronous engines); may need
    /// [`flush`](Recorder::flush) before the kernel sees it. A full queue hands the op back in
    /// `Err` (back-pressure, not an error: reap and resubmit). Errors of the operation itself
    /// arrive in its completion, never here.
    fn submit(&mut self, token: u64, op: Op<Self::Buf>) -> Result<(), Op<Self::Buf>>;

    /// Push everything queued to the kernel or device. An `Err` is a failure of the engine
    /// itself (the ring is gone), not of one op.
    fn flush(&mut self) -> io::Result<()>;

    /// First push anything queued to the kernel (as `flush` would, so a driver that reaps right
    /// away need not flush: io_uring then submits and waits in one syscall), then append
    /// completions to `out` (never clearing it), waiting at most until `deadline` for at least
    /// one when none is ready; a deadline in the past never waits. Returns the number appended.
    /// A busy-polling engine never sleeps here. Completions may come in any order.
    fn reap(
        &mut self,
        out: &mut Vec<Completion<Self::Buf>>,
        deadline: Instant,
    ) -> io::Result<usize>;

    /// Ops submitted whose completion has not been reaped.
    fn in_flight(&self) -> usize;

    /// Flush, then reap until nothing is in flight, appending the completions to `out`; on
    /// return the kernel holds none of the engine's buffers. Errors with `TimedOut` if
    /// `deadline` passes first. Called before drop, on error and on Ctrl-C.
    fn drain(&mut self, out: &mut Vec<Completion<Self::Buf>>, deadline: Instant) -> io::Result<()> {
        self.flush()?;
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: {} ops still in flight at the drain deadline",
                        self.caps().name,
                        self.in_flight()
                    ),
                ));
            }
            self.reap(out, deadline)?;
        }
        Ok(())
    }

    /// Run `body` until it returns [`Flow::Done`] (or fails), in the engine's own loop.
    ///
    /// `body` owns this engine (reached through [`LoopBody::engine`]). Each pass is two calls:
    /// [`LoopBody::step`] does the work that is due (events, timers, submits) without taking
    /// completions, then [`LoopBody::complete`] takes the completions that are ready, waiting for
    /// them at most until the deadline it is given. What the loop does between the two is the
    /// engine's choice, which is the point of this hook:
    ///
    /// - The default (every engine whose loop is the caller's) is the plain blocking loop:
    ///   `complete(deadline)` blocks in `reap` (or sleeps when nothing is in flight), so one
    ///   pass costs what a hand-written `work; reap(deadline)` loop costs (for io_uring: one
    ///   `io_uring_enter` that submits and waits).
    /// - An engine that owns its loop overrides it and runs both calls from inside that loop,
    ///   waiting by its own means and then calling `complete` with a deadline in the past:
    ///   glommio from a task in its executor, awaiting its completions or a timer there instead
    ///   of a blocking `reap` that re-enters the executor; `poll` as a poller of its reactor,
    ///   with the body's deadline as a timed poller, turning (never sleeping) in between.
    ///
    /// An associated function rather than a method because the body owns the engine. An `Err`
    /// from `complete` ends the loop and is returned.
    fn run_loop<B: LoopBody<R = Self>>(body: &mut B) -> io::Result<()>
    where
        Self: Sized,
    {
        loop {
            match body.step(Instant::now()) {
                Flow::Done => return Ok(()),
                Flow::Again => body.complete(Instant::now())?,
                Flow::Wait(deadline) => body.complete(deadline)?,
            }
        }
    }
}

/// What one [`LoopBody::step`] asks of the loop that runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Take completions, waiting for the first one at most until the deadline; then step again.
    Wait(Instant),
    /// More work is due: take the completions that are ready without waiting, then step again.
    Again,
    /// Finished: the loop returns (without calling `complete`).
    Done,
}

/// Work run inside an engine's loop by [`Recorder::run_loop`]: the harness's worker.
pub trait LoopBody {
    /// The engine the body owns.
    type R: Recorder;
    /// The engine, for the loop's own use between calls (its executor, its reactor).
    fn engine(&mut self) -> &mut Self::R;
    /// Do the work that is due at `now` (events, timers, submits); never blocks and takes no
    /// completions (the loop calls [`complete`](LoopBody::complete) next).
    fn step(&mut self, now: Instant) -> Flow;
    /// Take the completions that are ready (`reap`), waiting for the first at most until
    /// `deadline` (a deadline in the past never waits; an engine that owns its loop waits by
    /// its own means first and passes one). An `Err` (the engine failed) ends the loop.
    fn complete(&mut self, deadline: Instant) -> io::Result<()>;
    /// A peer of the run (another worker's loop) asks this body to stop: its next `step`
    /// winds down as if the run's stop flag were set. Loops that carry messages between
    /// workers (the `poll` reactors) call it; the default loop never does.
    fn request_stop(&mut self) {}
    /// Whether the body has failed (an I/O error or an engine failure): a loop that carries
    /// messages between workers then tells its peers to stop.
    fn failed(&self) -> bool {
        false
    }
}

/// Builds one engine instance on the worker thread that will own it.
pub trait RecorderFactory: Send + Sync {
    /// The engine type built.
    type R: Recorder;
    /// Build the instance for one worker.
    fn build(&self, cfg: &EngineConfig) -> io::Result<Self::R>;
}

/// Receives the concrete factory of an [`EngineSpec`] (monomorphised per engine, so the driver
/// loop has no dynamic dispatch per op).
pub trait FactoryVisitor {
    /// What the visit returns.
    type Out;
    /// Called with the factory of the visited spec.
    fn visit<F: RecorderFactory + 'static>(self, factory: F) -> Self::Out;
}

/// Declares the engines of this build: one line per engine, `Variant(module::Knobs)`, in the
/// order `snapbench engines` lists them. Generates [`EngineSpec`] (one variant per engine),
/// `From<Knobs> for EngineSpec`, [`ENGINES`], and the two matches everything else goes through
/// (`as_dyn` and `visit`), each with one arm per engine and no fallback.
macro_rules! engines {
    ($( $variant:ident($knobs:ty), )+) => {
        /// A parsed engine variant: the engine and its typed knobs (a closed enum, like
        /// ripgrep's matcher choice). Built by [`EngineSpec::parse`] through the registry.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EngineSpec {
            $(
                #[doc = concat!("The engine declared by [`", stringify!($knobs), "`].")]
                $variant($knobs),
            )+
        }

        $(
            impl From<$knobs> for EngineSpec {
                fn from(knobs: $knobs) -> EngineSpec {
                    EngineSpec::$variant(knobs)
                }
            }
        )+

        /// Every engine of this build, in the order `snapbench engines` lists them.
        pub const ENGINES: &[EngineInfo] = &[ $( EngineInfo::of::<$knobs>(), )+ ];

        impl EngineSpec {
            /// The declaration of this variant's engine.
            fn as_dyn(&self) -> &dyn registry::DynEngine {
                match self {
                    $( EngineSpec::$variant(k) => k, )+
                }
            }

            /// Hand the engine's factory to `v`.
            pub fn visit<V: FactoryVisitor>(&self, v: V) -> V::Out {
                match self {
                    $( EngineSpec::$variant(k) => v.visit(Engine::factory(k)), )+
                }
            }
        }
    };
}

engines! {
    Null(null::NullKnobs),
    Buffered(buffered::BufferedKnobs),
    Uring(uring::UringKnobs),
    Aio(aio::AioKnobs),
    Poll(poll::PollKnobs),
    Tokio(tokio_engine::TokioKnobs),
    Glommio(glommio::GlommioKnobs),
}

/// Result of probing one engine or knob on this machine and target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProbeResult {
    /// Knob name, or `(engine)` for the engine itself.
    pub what: String,
    /// Whether it works here.
    pub supported: bool,
    /// What was found (the reason when unsupported).
    pub detail: String,
}

impl EngineSpec {
    /// Parse `NAME` or `NAME:knob=value,knob=value`.
    pub fn parse(variant: &str) -> Result<EngineSpec, KnobError> {
        let (name, knob_text) = match variant.split_once(':') {
            Some((n, k)) => (n.trim(), k),
            None => (variant.trim(), ""),
        };
        let info = ENGINES.iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = ENGINES.iter().map(|e| e.name).collect();
            KnobError::UnknownEngine {
                name: name.to_string(),
                suggestion: knobs::nearest(name, &names).map(str::to_string),
                valid: names.join(", "),
            }
        })?;
        (info.parse)(knob_text)
    }

    /// The engine's name.
    pub fn name(&self) -> &'static str {
        self.as_dyn().name()
    }

    /// Canonical variant string: the name and every knob that differs from its default.
    pub fn variant(&self) -> String {
        let e = self.as_dyn();
        let changed: Vec<String> = e
            .values()
            .iter()
            .filter(|(k, v)| {
                e.knobs()
                    .iter()
                    .find(|s| s.name == *k)
                    .is_none_or(|s| s.default != v)
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if changed.is_empty() {
            e.name().to_string()
        } else {
            format!("{}:{}", e.name(), changed.join(","))
        }
    }

    /// Every knob with its effective value (defaults included), for results.
    pub fn knob_values(&self) -> Vec<(&'static str, String)> {
        self.as_dyn().values()
    }

    /// Whether files are opened with O_DIRECT (sizes must then respect the target's alignment).
    pub fn direct(&self) -> bool {
        self.as_dyn().direct()
    }

    /// Whether reads may be served from the page cache (buffered I/O that stores data), so a
    /// read of data written moments ago measures memory rather than the device. Answered from
    /// the spec, before any engine is built.
    pub fn page_cache_reads(&self) -> bool {
        self.as_dyn().page_cache_reads()
    }

    /// Warnings about a variant that runs but measures something other than it seems.
    pub fn warnings(&self) -> Vec<String> {
        self.as_dyn().warnings()
    }

    /// Check that this variant can run on the target directory; `Err` says why not and what to do.
    pub fn check_supported(&self, dir: &Path) -> Result<(), String> {
        let failed: Vec<ProbeResult> = self
            .probe(dir)
            .into_iter()
            .filter(|p| !p.supported)
            .collect();
        match failed.first() {
            None => Ok(()),
            Some(p) => Err(format!(
                "engine variant `{}` is unsupported here: {}: {}",
                self.variant(),
                p.what,
                p.detail
            )),
        }
    }

    /// Probe the engine and the knobs this variant uses on `dir`.
    pub fn probe(&self, dir: &Path) -> Vec<ProbeResult> {
        let e = self.as_dyn();
        e.probe(dir)
            .into_iter()
            .filter(|p| e.uses(&p.what))
            .collect()
    }
}

/// Probe every engine and knob of this build against `dir` (for `snapbench engines`).
pub fn probe_all(dir: &Path) -> Vec<(&'static EngineInfo, Vec<ProbeResult>)> {
    ENGINES
        .iter()
        .map(|info| (info, (info.probe)(dir)))
        .collect()
}
