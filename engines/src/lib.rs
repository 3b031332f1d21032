//! # snapbench-engines: the I/O paths a replay recorder can take
//!
//! Every engine implements one trait, [`Recorder`], modelled on fio's engine hooks
//! (`queue` / `commit` / `getevents` / `event`): the harness [`submit`](Recorder::submit)s
//! operations tagged with a `u64` token, [`flush`](Recorder::flush)es them to the kernel,
//! and [`reap`](Recorder::reap)s completions into a vector it owns. The harness never tests an
//! engine's name: it branches on the engine's declared [`Caps`].
//!
//! Engines are chosen through a closed enum, [`EngineSpec`], parsed from a variant string
//! (`buffered:direct=true,threads=4`). An engine instance belongs to one worker thread and may
//! be `!Send`; a `Send` [`RecorderFactory`] builds it on that thread.
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
//!   and the kernel owns them from submit until the CQE returns them; `poll` sets `caps().polls`.
//! - `aio`: iocbs queued by `submit`, one `io_submit` per `flush`, `io_getevents` (or the
//!   user-space AIO ring) in `reap`.
//! - `glommio`: `Buf` is a `DmaBuffer`; a write consumes it (the completion returns `buf: None`),
//!   a read copies glommio's own buffer into the caller's; `reap` re-enters the executor until a
//!   completion or the deadline (it awaits the completions or a glommio timer, see MACHINE.md).
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
pub mod poll;
pub mod spsc;
pub mod tokio_engine;
pub mod uring;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use buf::{AlignedBuf, BufPool};
pub use exec::{FastMap, IdHasher};
pub use knobs::{KnobError, KnobKind, KnobSpec};

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

/// What an engine can do and needs; the harness branches on these, never on names.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Caps {
    /// Engine name (`null`, `buffered`, …), for messages only.
    pub name: &'static str,
    /// Files are opened with O_DIRECT: buffers, offsets and lengths must be aligned.
    pub direct: bool,
    /// Alignment (bytes) required of file offsets and I/O lengths; 1 when any is fine.
    pub io_align_bytes: usize,
    /// Every op completes inside `submit` (no overlap between I/Os of one worker).
    pub synchronous: bool,
    /// The engine busy-polls: `reap` never sleeps, and a worker costs one whole core.
    pub polls: bool,
    /// The engine would rather run the driver inside its own loop (glommio, `poll`).
    pub owns_loop: bool,
    /// Most ops in flight at once; `submit` hands back further ops (back-pressure).
    pub max_in_flight: usize,
    /// Largest buffer `alloc_buf` hands out.
    pub buf_bytes: usize,
    /// Number of buffers in the pool.
    pub buf_count: usize,
    /// Written bytes can be read back (false only for `null`, whose reads return the buffer
    /// untouched): the harness verifies read data only when this is set.
    pub stores_data: bool,
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

/// State shared by the engine instances of one run (the harness makes one per run).
#[derive(Debug, Default)]
pub struct RunShared {
    /// `uring:attach_wq=true`: a duplicate of the first ring's fd, whose io-wq later rings attach to.
    pub uring_wq_fd: std::sync::Mutex<Option<std::os::fd::OwnedFd>>,
    /// `poll`: the message rings between the run's reactors, built by the first reactor to
    /// start; each reactor takes its own ends once.
    pub poll_mesh: std::sync::Mutex<Option<poll::Mesh>>,
}

/// The I/O path of a replay recorder, as one worker thread sees it.
///
/// The contract, hook by hook (fio's `engines/skeleton_external.c` is the model):
///
/// - [`caps`](Recorder::caps): constant for the life of the instance.
/// - [`alloc_buf`](Recorder::alloc_buf): a buffer of exactly `len` bytes from the engine's
///   bounded pool (aligned, registered or DMA memory as the engine needs). `None` means the pool
///   is empty (back-pressure: reap completions and try again) or `len > caps().buf_bytes`. Its
///   contents are unspecified: the caller writes every byte it submits. Return buffers with
///   [`release_buf`](Recorder::release_buf); a dropped buffer is freed but its pool slot is lost.
/// - [`submit`](Recorder::submit): queue `op` tagged with `token`. May complete it at once
///   (synchronous engines); may need [`flush`](Recorder::flush) before the kernel sees it. A full
///   queue hands the op back in `Err` (back-pressure, not an error: reap and resubmit). Errors of
///   the operation itself arrive in its completion, never here.
/// - [`flush`](Recorder::flush): push everything queued to the kernel or device. An `Err` is a
///   failure of the engine itself (the ring is gone), not of one op.
/// - [`reap`](Recorder::reap): first push anything queued to the kernel (as `flush` would, so a
///   driver that reaps right away need not flush: io_uring then submits and waits in one
///   syscall), then append completions to `out` (never clearing it), waiting at most until
///   `deadline` for at least one when none is ready; a deadline in the past never waits.
///   Returns the number appended. A busy-polling engine never sleeps here. Completions may come
///   in any order.
/// - [`in_flight`](Recorder::in_flight): ops submitted whose completion has not been reaped.
/// - [`drain`](Recorder::drain): flush, then reap until nothing is in flight, appending the
///   completions to `out`; on return the kernel holds none of the engine's buffers. Errors with
///   `TimedOut` if `deadline` passes first. Called before drop, on error and on Ctrl-C.
///
/// Ordering: a `Sync` covers exactly the writes whose completions were reaped before it was
/// submitted; callers submit it only then, and the engine never reorders ops of one file in a way
/// that lets a sync be *reported* before a write it covers completed.
pub trait Recorder {
    /// The engine's buffer: plain, aligned, registered, or glommio's `DmaBuffer`.
    type Buf: AsRef<[u8]> + AsMut<[u8]>;
    /// What the engine can do and needs.
    fn caps(&self) -> &Caps;
    /// A buffer of exactly `len` bytes from the bounded pool; `None` when the pool is empty.
    fn alloc_buf(&mut self, len: usize) -> Option<Self::Buf>;
    /// Return a buffer to the pool.
    fn release_buf(&mut self, buf: Self::Buf);
    /// Queue an op; `Err(op)` hands it back when the queue is full.
    fn submit(&mut self, token: u64, op: Op<Self::Buf>) -> Result<(), Op<Self::Buf>>;
    /// Push queued ops to the kernel.
    fn flush(&mut self) -> io::Result<()>;
    /// Append completions to `out`, waiting until `deadline` for the first one.
    fn reap(
        &mut self,
        out: &mut Vec<Completion<Self::Buf>>,
        deadline: Instant,
    ) -> io::Result<usize>;
    /// Ops submitted and not yet reaped.
    fn in_flight(&self) -> usize;
    /// Complete everything in flight (appending completions to `out`) before `deadline`.
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

/// A parsed engine variant: the engine and its typed knobs (a closed enum, like ripgrep's
/// matcher choice).
#[derive(Clone, Debug, PartialEq)]
pub enum EngineSpec {
    /// The `null` engine.
    Null(null::NullKnobs),
    /// The `buffered` engine.
    Buffered(buffered::BufferedKnobs),
    /// The `uring` engine.
    Uring(uring::UringKnobs),
    /// The `aio` engine.
    Aio(aio::AioKnobs),
    /// The `poll` engine.
    Poll(poll::PollKnobs),
    /// The `tokio` engine.
    Tokio(tokio_engine::TokioKnobs),
    /// The `glommio` engine.
    Glommio(glommio::GlommioKnobs),
}

/// Static description of one engine, for `snapbench engines` and for parsing.
pub struct EngineInfo {
    /// Name used on the command line.
    pub name: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// Its knobs.
    pub knobs: &'static [KnobSpec],
}

/// Every engine of this build.
pub const ENGINES: &[EngineInfo] = &[
    EngineInfo {
        name: "null",
        summary: "no I/O: completes at submit, through the same measurement path (fio's null peer)",
        knobs: null::KNOBS,
    },
    EngineInfo {
        name: "buffered",
        summary: "pwrite/pread/fdatasync, blocking in the worker (or a bounded pool); page cache or O_DIRECT",
        knobs: buffered::KNOBS,
    },
    EngineInfo {
        name: "uring",
        summary: "io_uring (io-uring crate), O_DIRECT by default; batched submit, CQ reaped without a syscall",
        knobs: uring::KNOBS,
    },
    EngineInfo {
        name: "aio",
        summary: "Linux native AIO (libaio-equivalent, raw syscalls), O_DIRECT by default",
        knobs: aio::KNOBS,
    },
    EngineInfo {
        name: "poll",
        summary: "SPDK's execution model over io_uring (real SPDK needs NVMe bound to vfio + hugepages): each worker a pinned reactor that never sleeps, pollers, its own ring, message passing; one busy core per worker",
        knobs: poll::KNOBS,
    },
    EngineInfo {
        name: "tokio",
        summary: "tokio's blocking pool doing positioned I/O (what tokio::fs does inside); page cache by default",
        knobs: tokio_engine::KNOBS,
    },
    EngineInfo {
        name: "glommio",
        summary: "glommio 0.9 DmaFile on a LocalExecutor per worker (O_DIRECT); reap re-enters the executor",
        knobs: glommio::KNOBS,
    },
];

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
        let values = knobs::parse_knobs(info.name, info.knobs, knob_text)?;
        Ok(match info.name {
            "null" => EngineSpec::Null(null::NullKnobs::from_values(&values)?),
            "uring" => EngineSpec::Uring(uring::UringKnobs::from_values(&values)?),
            "aio" => EngineSpec::Aio(aio::AioKnobs::from_values(&values)?),
            "poll" => EngineSpec::Poll(poll::PollKnobs::from_values(&values)?),
            "tokio" => EngineSpec::Tokio(tokio_engine::TokioKnobs::from_values(&values)?),
            "glommio" => EngineSpec::Glommio(glommio::GlommioKnobs::from_values(&values)?),
            _ => EngineSpec::Buffered(buffered::BufferedKnobs::from_values(&values)?),
        })
    }

    /// The engine's name.
    pub fn name(&self) -> &'static str {
        match self {
            EngineSpec::Null(_) => "null",
            EngineSpec::Buffered(_) => "buffered",
            EngineSpec::Uring(_) => "uring",
            EngineSpec::Aio(_) => "aio",
            EngineSpec::Poll(_) => "poll",
            EngineSpec::Tokio(_) => "tokio",
            EngineSpec::Glommio(_) => "glommio",
        }
    }

    /// Canonical variant string: the name and every knob that differs from its default.
    pub fn variant(&self) -> String {
        let knobs = self.knob_values();
        let info = ENGINES.iter().find(|e| e.name == self.name());
        let changed: Vec<String> = knobs
            .iter()
            .filter(|(k, v)| {
                info.and_then(|i| i.knobs.iter().find(|s| s.name == *k))
                    .is_none_or(|s| s.default != v)
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if changed.is_empty() {
            self.name().to_string()
        } else {
            format!("{}:{}", self.name(), changed.join(","))
        }
    }

    /// Every knob with its effective value (defaults included), for results.
    pub fn knob_values(&self) -> Vec<(&'static str, String)> {
        match self {
            EngineSpec::Null(k) => k.values(),
            EngineSpec::Buffered(k) => k.values(),
            EngineSpec::Uring(k) => k.values(),
            EngineSpec::Aio(k) => k.values(),
            EngineSpec::Poll(k) => k.values(),
            EngineSpec::Tokio(k) => k.values(),
            EngineSpec::Glommio(k) => k.values(),
        }
    }

    /// Whether files are opened with O_DIRECT (sizes must then respect the target's alignment).
    pub fn direct(&self) -> bool {
        match self {
            EngineSpec::Null(_) => false,
            EngineSpec::Buffered(k) => k.direct,
            EngineSpec::Uring(k) => k.direct,
            EngineSpec::Aio(k) => k.direct,
            EngineSpec::Poll(k) => k.direct,
            EngineSpec::Tokio(k) => k.direct,
            EngineSpec::Glommio(_) => true,
        }
    }

    /// Warnings about a variant that runs but measures something other than it seems.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            EngineSpec::Aio(k) => aio::warnings(k),
            EngineSpec::Poll(k) => poll::warnings(k),
            _ => Vec::new(),
        }
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

    /// Probe the knobs this variant uses on `dir`.
    pub fn probe(&self, dir: &Path) -> Vec<ProbeResult> {
        match self {
            EngineSpec::Null(_) => Vec::new(),
            EngineSpec::Buffered(k) => buffered::probe(dir)
                .into_iter()
                .filter(|p| p.what != "direct" || k.direct)
                .collect(),
            EngineSpec::Uring(k) => {
                let used: std::collections::HashSet<&str> = k
                    .values()
                    .into_iter()
                    .zip(uring::KNOBS)
                    .filter(|((_, v), spec)| *v != spec.default)
                    .map(|((name, _), _)| name)
                    .chain(["(engine)"])
                    .chain(k.direct.then_some("direct"))
                    .collect();
                uring::probe(dir)
                    .into_iter()
                    .filter(|p| used.contains(p.what.as_str()))
                    .collect()
            }
            EngineSpec::Aio(k) => aio::probe(dir)
                .into_iter()
                .filter(|p| {
                    (p.what != "direct" || k.direct) && (p.what != "user_reap" || k.user_reap)
                })
                .collect(),
            EngineSpec::Poll(k) => poll::probe(dir)
                .into_iter()
                .filter(|p| k.uses(&p.what))
                .collect(),
            EngineSpec::Tokio(k) => tokio_engine::probe(dir)
                .into_iter()
                .filter(|p| {
                    (p.what != "direct" || k.direct) && p.what != tokio_engine::IO_URING_WHAT
                })
                .collect(),
            EngineSpec::Glommio(_) => glommio::probe(dir),
        }
    }

    /// Hand the engine's factory to `v`.
    pub fn visit<V: FactoryVisitor>(&self, v: V) -> V::Out {
        match self {
            EngineSpec::Null(k) => v.visit(null::NullFactory(k.clone())),
            EngineSpec::Buffered(k) => v.visit(buffered::BufferedFactory(k.clone())),
            EngineSpec::Uring(k) => v.visit(uring::UringFactory(k.clone())),
            EngineSpec::Aio(k) => v.visit(aio::AioFactory(k.clone())),
            EngineSpec::Poll(k) => v.visit(poll::PollFactory(k.clone())),
            EngineSpec::Tokio(k) => v.visit(tokio_engine::TokioFactory(k.clone())),
            EngineSpec::Glommio(k) => v.visit(glommio::GlommioFactory(k.clone())),
        }
    }
}

/// Probe every engine and knob of this build against `dir` (for `snapbench engines`).
pub fn probe_all(dir: &Path) -> Vec<(&'static EngineInfo, Vec<ProbeResult>)> {
    ENGINES
        .iter()
        .map(|info| {
            let found = match info.name {
                "null" => vec![ProbeResult {
                    what: "(engine)".into(),
                    supported: true,
                    detail: "no I/O; always available".into(),
                }],
                "uring" => uring::probe(dir),
                "aio" => aio::probe(dir),
                "poll" => poll::probe(dir),
                "tokio" => tokio_engine::probe(dir),
                "glommio" => glommio::probe(dir),
                _ => buffered::probe(dir),
            };
            (info, found)
        })
        .collect()
}
