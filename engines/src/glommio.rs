//! `glommio`: glommio 0.9's `DmaFile` on a `LocalExecutor` owned by the worker thread.
//!
//! ## The bridge
//!
//! glommio runs futures only inside `LocalExecutor::run`, and its reactor submits and reaps
//! I/O only between task passes of that loop. The engine reaches it two ways.
//!
//! **From outside** (the [`Recorder`] calls as plain functions, the driver's own loop):
//!
//! - `submit` of a write, read, sync or directory sync resolves the file and parks the op in a
//!   bounded vector (`max_in_flight` long, allocated once). Nothing reaches glommio yet.
//! - `reap` (and `flush`) enter `run` once: the future spawns one glommio task per parked op
//!   (each awaits its `DmaFile` call and pushes its [`Completion`] into a shared vector, waking
//!   the reap future), then waits for a completion or for a glommio `Timer` set to the
//!   deadline. Because it awaits something the reactor completes, the executor polls its rings
//!   and parks in `io_uring_enter` while idle (a future that only yields would spin without
//!   letting the reactor run; see docs/machine.md). A deadline in the past still costs one
//!   reactor pass (a 1 µs timer), so that parked ops are handed to the kernel and finished ones
//!   are collected, but it never sleeps for longer. `flush` is that one pass.
//! - Metadata ops (create, open, allocate, close, remove) run to completion inside `submit`,
//!   through glommio's own calls (`OpenOptions::dma_open`, `DmaFile::pre_allocate`,
//!   `DmaFile::close`, an unlink on glommio's blocking thread), as the `uring` and `aio`
//!   engines run theirs synchronously. A later op of the same file therefore never finds it
//!   missing.
//! - `drain` reaps until no task is left; `Drop` drains once more (30 s), closes every file
//!   through glommio, and if anything were still in flight it leaks the executor rather than
//!   free memory the kernel may still write.
//!
//! **From inside** ([`Recorder::run_loop`], for a worker written as a [`LoopBody`]): the engine
//! enters `run` once for the whole loop (the executor is an `Rc`, cloned before `run`, so the
//! body can hold the engine meanwhile) and calls the body from a task in it. Each pass is
//! `step`, then a wait, then `complete` with a deadline in the past:
//!
//! - While the loop runs (a mode flag), `submit` spawns each I/O op's task at once (glommio
//!   polls a new task right away, which queues its I/O in the ring); `flush` does nothing; `reap`
//!   never enters `run` and never waits, whatever its deadline: it moves the completions that
//!   are ready into `out` (the loop has awaited them already); `drain` hands over what is ready
//!   and fails with `WouldBlock` while ops are in flight, since nothing can wait there without
//!   returning to the executor.
//! - A metadata op, and every op submitted after it, is queued in order; when `step` returns,
//!   the loop task runs the queue, awaiting each metadata op (I/O in flight keeps going; the
//!   body does not step meanwhile, as a `submit` from outside blocks), so the order of
//!   submission, and "a later op of the same file never finds it missing", hold as outside.
//! - `Flow::Wait(d)` awaits "a completion is ready" or one glommio `Timer` (reset each pass,
//!   not allocated) until `d`, so the executor parks in `io_uring_enter` while idle.
//!   `Flow::Again`, a deadline already past, or completions already ready cost one reactor pass
//!   (the 1 µs timer). A plain yield (`yield_if_needed`, `yield_task_queue_now`) is not enough:
//!   glommio runs the yielding task again before its reactor, which then submits and reaps only
//!   when its preempt timer fires. Measured here, a body that only returned `Again` saw its
//!   4 KiB read complete after 5 passes (0.3 ms) with the timer, and after 136 075 and
//!   681 288 passes (0.2 and 0.3 s) with the two yields.
//! - An `Err` from `complete` ends the loop; the flag is cleared (also on unwinding) and the
//!   tasks still in flight are glommio's as after any `reap`, so the next `reap`, `drain` or
//!   `Drop` from outside collects them: nothing is lost, no task awaits anything dropped.
//!   Completions, errors and buffers are the same as through `reap` (write buffers consumed,
//!   reads copied once).
//!
//! Cost per I/O, stated plainly: one glommio task (a heap allocation) per op, glommio's own
//! `Source` per I/O, one `Rc` per write (`write_rc_at`, so a short write can be completed from
//! the same bytes); from outside, per `reap` one more task for the reap future plus its
//! `Timer`, and every `run` re-arms glommio's preemption timers and flushes its rings (a few
//! `io_uring_enter`s). [`Glommio::executor_runs`] counts the entries. The `submit_reap` bench
//! measures both paths against the `null` and `uring` paths, with O_DIRECT 4 KiB reads at end
//! of file (completed by the kernel inline, no device I/O). On the development VM, before
//! `run_loop` existed: 22.5 µs per round trip through glommio's `reap` against 1.6 µs through
//! `uring` (strace: 7 `io_uring_enter` per round trip against 1), and 1.9 against 0.64 µs per
//! op in batches of 32. Measured again on 2026-12-02 on a quiet VM (criterion,
//! `--warm-up-time 1 --measurement-time 3`, old and new bench binaries in turn, three rounds,
//! median and min..max; docs/benchmarks.md has the command), per round trip at QD1 and per
//! batch of 32:
//!
//! | path | QD1 | QD32 (batch) |
//! |---|---|---|
//! | old code, `reap` from outside | 7.31 µs (7.27..7.44) | 30.7 µs (30.5..31.1) |
//! | `reap` from outside | 7.30 µs (7.29..7.34) | 30.9 µs (30.8..30.9) |
//! | `run_loop` | 4.38 µs (4.33..4.42) | 27.2 µs (27.15..27.19) |
//! | `uring`, `reap` / `run_loop` | 0.49 / 0.47 µs | 6.28 / 6.22 µs |
//!
//! strace counts 7.0 `io_uring_enter` per QD1 round trip through `reap` and 4.0 through
//! `run_loop` (10 000 round trips each). At QD32 the loop saves little: the cost there is
//! glommio's task and `Source` per op, not the entry into `run`.
//!
//! Known glommio limit: glommio 0.9 keeps one eventfd open for every executor that ever ran
//! (its issue #448), so each engine instance and each probe leaves one descriptor behind.
//!
//! ## Buffers
//!
//! `Buf` is glommio's `DmaBuffer`, allocated at the exact length asked for from the
//! executor's I/O arena (`io_memory`, registered with io_uring when RLIMIT_MEMLOCK allows, so
//! writes go out as WRITE_FIXED). The pool is bounded by count (`caps().buf_count`), not by
//! slab: a write **consumes** its buffer (`Completion::buf` is `None`; the memory goes back to
//! the arena when the write completes and the slot is free again once the completion is
//! reaped). A read returns the caller's buffer filled, but glommio reads into a buffer of its
//! own (also from the arena): the engine **copies** each read once into the caller's buffer.
//! Every read is a `read_at_aligned` of the blocks that cover it, counted from the offset
//! asked for, so a read that ends at an end of file inside a block reports exactly the bytes
//! up to it (glommio 0.9's own `read_at` counts from the aligned-down start and reported bytes
//! past the end of file).
//! An arena too small for the pool falls back to glommio's aligned heap allocation, so the
//! default `io_memory_mib=0` sizes it to the pool.
//!
//! `dsync` writes are a write followed by `fdatasync` in the same task (glommio has no
//! RWF_DSYNC); the completion arrives after both. `Allocate` uses `DmaFile::pre_allocate`,
//! which allocates from offset 0: `fallocate(0, offset + len)` instead of
//! `fallocate(offset, len)` — the same blocks for the harness, which allocates from the end.
//! `SyncDir` is an `fsync` of the directory on glommio's blocking thread (glommio's
//! `Directory::sync` is an `fdatasync`, which does not promise the names are durable).
//!
//! ## glommio issue #605: the poll ring
//!
//! When glommio opens the first `DmaFile` of a device on a thread, it decides once, and caches
//! per thread and device, whether the device can use its polled (IOPOLL) ring: it reads block 0
//! of that file through the poll ring and takes success as support. A block that was never
//! written (a new, empty, sparse or fallocated file) is read without reaching the device, so a
//! device without poll queues (every disk we have) is judged pollable, and from then on every
//! read of every file of that device on that thread fails with EOPNOTSUPP.
//!
//! The engine therefore makes sure the first `DmaFile` glommio opens on each device is one
//! whose block 0 holds data on the device: on the worker thread, before anything else, it
//! writes one block to a scratch file in the target directory with O_DIRECT, `fdatasync`s it,
//! opens it through glommio (which now probes a real read and gets the right answer), reads the
//! block back through glommio to check it, and unlinks the name. Every log it creates or
//! opens later is then served by the non-polled ring, whatever its first block holds. A file
//! opened through a link to another device gets the same treatment first. Writing the SNAPLOG1
//! header before opening each file would not be enough: the answer is cached per device, so one
//! earlier file with an unwritten first block poisons all later ones (the tests show both).
//!
//! ## Placement
//!
//! The harness pins each worker thread before it builds its engine. The executor is built on
//! that thread with `Placement::Fenced` over the thread's current CPU affinity, so glommio binds
//! it to exactly the CPU the harness chose (a no-op `sched_setaffinity`) and puts its blocking
//! thread on the same CPU; an unpinned thread keeps its whole mask. A binding is what lets
//! glommio honour `spin_before_park_us`. If the affinity cannot be read, `Placement::Unbound`
//! is used and glommio ignores the spin setting.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::timer::Timer;
use glommio::{CpuSet, GlommioError, LocalExecutor, LocalExecutorBuilder, Placement};

use crate::buf::AlignedBuf;
use crate::knobs::declare_knobs;
use crate::{
    file_name, Caps, Completion, Engine, EngineConfig, FastMap, Flow, LoopBody, Op, OpKind,
    ProbeResult, Recorder, RecorderFactory,
};

declare_knobs! {
    /// Parsed knobs of the `glommio` engine (glommio's own executor settings).
    pub struct GlommioKnobs for "glommio" {
        io_memory_mib: u32 = 0, [0..=4096],
            "I/O arena in MiB (registered with io_uring when RLIMIT_MEMLOCK allows); 0 = sized to the buffer pool";
        ring_depth: u32 = 0, [0..=32768],
            "entries of each of glommio's rings; 0 = the queue depth, at least glommio's 128";
        spin_before_park_us: u32 = 0, [0..=1_000_000],
            "busy-poll this long before the executor sleeps (costs CPU; needs the pinned worker)";
    }
}

impl Engine for GlommioKnobs {
    const SUMMARY: &'static str =
        "glommio 0.9 DmaFile on a LocalExecutor per worker (O_DIRECT); reap re-enters the executor, run_loop runs inside it";
    type Factory = GlommioFactory;

    fn factory(&self) -> GlommioFactory {
        GlommioFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    fn uses(&self, _what: &str) -> bool {
        true
    }
    fn direct(&self) -> bool {
        true
    }
    fn page_cache_reads(&self) -> bool {
        false
    }
}

/// glommio's default I/O arena (10 MiB), the least the engine asks for.
const GLOMMIO_DEFAULT_IO_MEMORY_BYTES: usize = 10 << 20;
/// The most the automatic arena size grows to.
const AUTO_IO_MEMORY_MAX_BYTES: usize = 256 << 20;
/// glommio refuses to build an executor below this RLIMIT_MEMLOCK.
const GLOMMIO_MIN_MEMLOCK_BYTES: u64 = 512 * 1024;
/// Block written to warm glommio's per-device poll-ring decision (see the module doc).
const WARM_BLOCK_BYTES: usize = 4096;

/// Arena bytes for a pool of `buf_count` buffers of `buf_bytes` plus as many reads in flight:
/// glommio's arena is a buddy allocator (powers of two, 4 KiB leaves).
fn auto_io_memory_bytes(buf_bytes: usize, buf_count: usize, max_in_flight: usize) -> usize {
    let slot = buf_bytes.max(WARM_BLOCK_BYTES).next_power_of_two();
    slot.saturating_mul(buf_count + max_in_flight)
        .clamp(GLOMMIO_DEFAULT_IO_MEMORY_BYTES, AUTO_IO_MEMORY_MAX_BYTES)
        .next_power_of_two()
}

fn ring_depth(knobs: &GlommioKnobs, queue_depth: usize) -> usize {
    match knobs.ring_depth {
        0 => queue_depth.next_power_of_two().clamp(128, 4096),
        n => n as usize,
    }
}

/// A glommio error as an `io::Error`, keeping the OS error code where there is one.
fn to_io(e: GlommioError<()>) -> io::Error {
    match e {
        GlommioError::IoError(e) => e,
        GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::from(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Placement and limits, read from /proc (no unsafe needed)

/// CPUs the calling thread may run on (`Cpus_allowed_list` of /proc/thread-self/status).
fn thread_cpus() -> Option<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse().ok()?),
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// The executor's placement: fenced to the thread's current affinity (the harness's pin).
fn placement() -> (Placement, String) {
    let Some(cpus) = thread_cpus() else {
        return (
            Placement::Unbound,
            "unbound (thread affinity unreadable)".into(),
        );
    };
    match CpuSet::online() {
        Ok(online) => {
            let set = online.filter(|l| cpus.contains(&l.cpu));
            if set.is_empty() {
                (
                    Placement::Unbound,
                    "unbound (affinity outside glommio's topology)".into(),
                )
            } else {
                (Placement::Fenced(set), format!("fenced to CPUs {cpus:?}"))
            }
        }
        Err(e) => (
            Placement::Unbound,
            format!("unbound (topology unreadable: {e})"),
        ),
    }
}

/// RLIMIT_MEMLOCK soft limit in bytes (None = unlimited or unknown).
fn memlock_limit_bytes() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Warming glommio's per-device poll-ring decision (glommio #605)

/// Write one block with O_DIRECT to a scratch file in `dir` and `fdatasync` it, so that the
/// block is on the device. Returns the path and the bytes written.
fn write_warm_file(dir: &Path) -> io::Result<(PathBuf, AlignedBuf)> {
    let path = dir.join(format!(
        ".snapbench-glommio-warm-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut block = AlignedBuf::new(WARM_BLOCK_BYTES, WARM_BLOCK_BYTES);
    for (i, b) in block.as_mut().iter_mut().enumerate() {
        *b = (i % 251) as u8 ^ 0x5a;
    }
    let open = |direct: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(if direct { libc::O_DIRECT } else { 0 })
            .open(&path)
    };
    // A filesystem without O_DIRECT gets a buffered write; glommio serves such files without
    // the poll ring anyway.
    let f = match open(true) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(false),
        r => r,
    }?;
    let written = f
        .write_all_at(block.as_ref(), 0)
        .and_then(|()| f.sync_data());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok((path, block))
}

/// Make glommio's first `DmaFile` on the device of `dir` (on this thread) one with a written
/// block 0, and check that a read through glommio then works. Returns the open file (kept by
/// the engine as its handle on the I/O arena).
fn warm_device(ex: &LocalExecutor, dir: &Path) -> io::Result<DmaFile> {
    ex.run(warm_device_in(dir.to_path_buf()))
}

/// [`warm_device`] as a future, for a caller already inside the executor (an `Open` run by
/// [`Recorder::run_loop`]). The scratch file is written with plain blocking calls, as outside.
async fn warm_device_in(dir: PathBuf) -> io::Result<DmaFile> {
    let (path, block) = write_warm_file(&dir)?;
    let opened = async {
        let f = DmaFile::open(&path).await.map_err(to_io)?;
        let read = f.read_at_aligned(0, WARM_BLOCK_BYTES).await.map_err(to_io);
        match read {
            Ok(r) if &r[..] == block.as_ref() => Ok(f),
            Ok(r) => {
                let _ = f.close().await;
                Err(io::Error::other(format!(
                    "read back {} bytes that differ from the block written",
                    r.len()
                )))
            }
            Err(e) => {
                let _ = f.close().await;
                Err(e)
            }
        }
    }
    .await;
    let _ = std::fs::remove_file(&path);
    opened.map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            " (glommio chose its polled ring for this device although block 0 was written and \
             synced; see glommio issue #605)"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!(
                "glommio: DmaFile check on {} failed: {e}{hint}",
                dir.display()
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The engine

/// Builds [`Glommio`] engines.
#[derive(Clone, Debug)]
pub struct GlommioFactory(pub GlommioKnobs);

impl RecorderFactory for GlommioFactory {
    type R = Glommio;
    fn build(&self, cfg: &EngineConfig) -> io::Result<Glommio> {
        Glommio::new(self.0.clone(), cfg)
    }
}

/// Completions pushed by the op tasks, the waker of the future waiting for them, and the mode
/// the engine is in (shared with the tasks and with [`Recorder::run_loop`]'s guard).
#[derive(Default)]
struct Shared {
    done: RefCell<Vec<Completion<DmaBuffer>>>,
    waiter: Cell<Option<Waker>>,
    /// Op tasks spawned and not finished.
    running: Cell<usize>,
    /// Set while [`Recorder::run_loop`]'s task runs: the engine is inside the executor, so
    /// `submit` spawns at once and `reap`/`flush` never enter `run`.
    inside: Cell<bool>,
    /// Entries into `LocalExecutor::run` since the engine was built.
    runs: Cell<u64>,
}

impl Shared {
    fn complete(&self, c: Completion<DmaBuffer>) {
        self.done.borrow_mut().push(c);
        debug_assert!(
            self.running.get() > 0,
            "a task finished that was never counted"
        );
        self.running.set(self.running.get() - 1);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Enter `run` on `ex` (counted).
    fn run<T>(&self, ex: &LocalExecutor, fut: impl Future<Output = T>) -> T {
        debug_assert!(
            !self.inside.get(),
            "LocalExecutor::run entered from inside run_loop"
        );
        self.runs.set(self.runs.get() + 1);
        ex.run(fut)
    }
}

/// The mode flag of [`Recorder::run_loop`]: set while its task runs, cleared when the task
/// ends, returns an error or unwinds; also forgets the waker of the finished task.
struct Inside<'a>(&'a Shared);

impl<'a> Inside<'a> {
    fn enter(shared: &'a Shared) -> Inside<'a> {
        debug_assert!(!shared.inside.get(), "run_loop re-entered");
        shared.inside.set(true);
        Inside(shared)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.inside.set(false);
        self.0.waiter.take();
    }
}

/// An op resolved at submit, waiting for the next `run` to become a glommio task (or spawned
/// at once inside [`Recorder::run_loop`]).
enum Job {
    Write {
        file: Rc<DmaFile>,
        offset: u64,
        buf: DmaBuffer,
        dsync: bool,
    },
    Read {
        file: Rc<DmaFile>,
        offset: u64,
        buf: DmaBuffer,
    },
    Sync {
        file: Rc<DmaFile>,
    },
    SyncDir,
}

/// What a metadata op's future leaves for the engine to record.
struct MetaDone {
    /// The op's result: the file it opened (create, open), or nothing.
    res: io::Result<Option<DmaFile>>,
    /// The file that stays open under the op's id after all (an open whose warm-up failed).
    keep: Option<Rc<DmaFile>>,
    /// The device whose poll-ring decision the op warmed.
    warmed: Option<u64>,
}

impl MetaDone {
    fn of(res: io::Result<Option<DmaFile>>) -> MetaDone {
        MetaDone {
            res,
            keep: None,
            warmed: None,
        }
    }
}

/// A metadata op made ready to run: the future that performs it through glommio (it borrows
/// nothing of the engine, so the engine may be used while it runs) and what its completion
/// names.
struct MetaJob {
    token: u64,
    kind: OpKind,
    file: u64,
    fut: Pin<Box<dyn Future<Output = MetaDone>>>,
}

/// Ready when a completion arrives (if `on_done`) or when the timer fires; the timer can only
/// fire through a reactor pass, which is what hands parked ops to the kernel.
struct WaitDone<'a> {
    shared: &'a Shared,
    timer: &'a mut Timer,
    on_done: bool,
}

impl Future for WaitDone<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.on_done && !this.shared.done.borrow().is_empty() {
            return Poll::Ready(());
        }
        this.shared.waiter.set(Some(cx.waker().clone()));
        Pin::new(&mut *this.timer).poll(cx).map(|_| ())
    }
}

/// Shortest wait: long enough that the first poll of the timer registers it, so that only a
/// reactor pass completes it.
const ONE_PASS: Duration = Duration::from_micros(1);

/// The `glommio` engine instance of one worker.
pub struct Glommio {
    caps: Caps,
    /// Always `Some` until `Drop`, which leaks it if a task may still hold kernel-owned memory.
    /// An `Rc` so that [`Recorder::run_loop`] holds it while its body holds the engine.
    ex: Option<Rc<LocalExecutor>>,
    shared: Rc<Shared>,
    /// Ops submitted from outside and not yet handed to glommio (capacity `max_in_flight`).
    pending: Vec<(u64, Job)>,
    /// Inside [`Recorder::run_loop`]: a metadata op and every op submitted after it, in order,
    /// for the loop to run once `step` returns (bounded by `max_in_flight` through `admit`).
    serial: VecDeque<(u64, Op<DmaBuffer>)>,
    files: FastMap<Rc<DmaFile>>,
    dir: PathBuf,
    dir_file: Arc<File>,
    /// The warm-up file of the target's device, kept open: `alloc_dma_buffer` needs a file.
    arena: Option<DmaFile>,
    /// Devices (st_dev) whose poll-ring decision this thread has warmed.
    warmed: Vec<u64>,
    /// Buffers handed out and neither released nor consumed by a reaped write.
    bufs_out: usize,
    placement: String,
}

impl Glommio {
    /// Build the executor on the calling (worker) thread and open the engine on `cfg.dir`.
    pub fn new(knobs: GlommioKnobs, cfg: &EngineConfig) -> io::Result<Glommio> {
        let ctx =
            |what: &str, e: io::Error| io::Error::new(e.kind(), format!("glommio: {what}: {e}"));
        if cfg.shared.prealloc != crate::Prealloc::Fallocate {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "glommio: prealloc={} is not supported (glommio preallocates through its own API)",
                    cfg.shared.prealloc.name()
                ),
            ));
        }
        let queue_depth = cfg.queue_depth.max(1);
        let io_memory = match knobs.io_memory_mib {
            0 => auto_io_memory_bytes(cfg.buf_bytes, cfg.buf_count, queue_depth),
            mib => (mib as usize) << 20,
        };
        let (placement, placement_text) = placement();
        let mut b = LocalExecutorBuilder::new(placement)
            .name(&format!("sb-glommio-{}", cfg.worker))
            .io_memory(io_memory)
            .ring_depth(ring_depth(&knobs, queue_depth));
        if knobs.spin_before_park_us > 0 {
            b = b.spin_before_park(Duration::from_micros(u64::from(knobs.spin_before_park_us)));
        }
        let ex = b
            .make()
            .map_err(|e| ctx("cannot build the LocalExecutor", to_io(e)))?;
        let dir_file = File::open(&cfg.dir)
            .map_err(|e| ctx(&format!("open directory {}", cfg.dir.display()), e))?;
        let dev = dir_file.metadata()?.dev();
        let arena = warm_device(&ex, &cfg.dir)?;
        Ok(Glommio {
            caps: Caps {
                direct: true,
                io_align_bytes: cfg.dio_align_bytes.max(512),
                owns_loop: true,
                // -- issue 10: placement -- glommio puts its blocking thread with the executor.
                helper_placement: format!(
                    "glommio executor and its blocking thread: {placement_text}"
                ),
                ..Caps::new("glommio", cfg)
            },
            ex: Some(Rc::new(ex)),
            shared: Rc::new(Shared::default()),
            pending: Vec::with_capacity(queue_depth),
            serial: VecDeque::with_capacity(queue_depth),
            files: FastMap::default(),
            dir: cfg.dir.clone(),
            dir_file: Arc::new(dir_file),
            arena: Some(arena),
            warmed: vec![dev],
            bufs_out: 0,
            placement: placement_text,
        })
    }

    /// How the executor was placed (for messages and tests).
    pub fn placement(&self) -> &str {
        &self.placement
    }

    /// How many times the engine has entered `LocalExecutor::run` since it was built: once per
    /// `reap`, `flush` or metadata op driven from outside, once for a whole
    /// [`Recorder::run_loop`] (for tests and measurements).
    pub fn executor_runs(&self) -> u64 {
        self.shared.runs.get()
    }

    fn path(&self, file: crate::MatchId, kind: crate::FileKind) -> PathBuf {
        self.dir.join(file_name(file, kind))
    }

    /// The device `path` lives on, if this thread has not yet warmed glommio's poll-ring
    /// decision for it (a link may lead out of the engine's directory), and the directory to
    /// warm it from. `Ok(None)` when nothing is to do (or the file is missing: the open itself
    /// reports it).
    fn needs_warm(&self, path: &Path) -> io::Result<Option<(u64, PathBuf)>> {
        let Ok(target) = std::fs::canonicalize(path) else {
            return Ok(None);
        };
        let dev = std::fs::metadata(&target)?.dev();
        if self.warmed.contains(&dev) {
            return Ok(None);
        }
        let parent = target.parent().unwrap_or(Path::new("/")).to_path_buf();
        Ok(Some((dev, parent)))
    }

    /// Spawn a glommio task for every parked op. Call only inside `run`.
    fn spawn_pending(shared: &Rc<Shared>, pending: &mut Vec<(u64, Job)>, dir: &Arc<File>) {
        for (token, job) in pending.drain(..) {
            Self::spawn_job(shared, token, job, dir);
        }
    }

    /// Spawn the glommio task of one op (glommio polls it once at once, which queues its I/O
    /// in the ring for the next reactor pass). Call only inside `run`.
    fn spawn_job(shared: &Rc<Shared>, token: u64, job: Job, dir: &Arc<File>) {
        shared.running.set(shared.running.get() + 1);
        glommio::spawn_local(run_job(Rc::clone(shared), token, job, Arc::clone(dir))).detach();
    }

    /// One `run`: hand parked ops to glommio, then wait until a completion arrives (when none
    /// was ready) or `deadline`; always at least one reactor pass.
    fn drive(&mut self, deadline: Instant) {
        let shared = Rc::clone(&self.shared);
        let pending = &mut self.pending;
        let dir = &self.dir_file;
        let ex = self.ex.as_deref().expect("executor lives until drop");
        shared.run(ex, async {
            Self::spawn_pending(&shared, pending, dir);
            let ready = !shared.done.borrow().is_empty();
            let now = Instant::now();
            let wait = if ready || deadline <= now {
                ONE_PASS
            } else {
                (deadline - now).max(ONE_PASS)
            };
            let mut timer = Timer::new(wait);
            WaitDone {
                shared: &shared,
                timer: &mut timer,
                on_done: !ready,
            }
            .await;
            shared.waiter.take();
        });
    }

    /// Queue (outside: park; inside: spawn) an admitted op, or run it if it is a metadata op
    /// (outside only: inside, `submit` routes metadata ops to `serial`).
    fn submit_now(&mut self, token: u64, op: Op<DmaBuffer>) {
        let kind = op.kind();
        let job = match op {
            Op::Write {
                file,
                offset,
                buf,
                dsync,
            } => match self.files.get(&file.0) {
                Some(f) => Ok(Job::Write {
                    file: Rc::clone(f),
                    offset,
                    buf,
                    dsync,
                }),
                None => Err(Some(buf)),
            },
            Op::Read { file, offset, buf } => match self.files.get(&file.0) {
                Some(f) => Ok(Job::Read {
                    file: Rc::clone(f),
                    offset,
                    buf,
                }),
                None => Err(Some(buf)),
            },
            Op::Sync { file } => match self.files.get(&file.0) {
                Some(f) => Ok(Job::Sync { file: Rc::clone(f) }),
                None => Err(None),
            },
            Op::SyncDir => Ok(Job::SyncDir),
            meta => {
                debug_assert!(
                    !self.shared.inside.get(),
                    "metadata ops inside go to serial"
                );
                let job = self.prepare_meta(token, meta);
                let done = self.run_meta(job.fut);
                self.finish_meta(job.token, job.kind, job.file, done);
                return;
            }
        };
        match job {
            Ok(job) if self.shared.inside.get() => {
                Self::spawn_job(&self.shared, token, job, &self.dir_file)
            }
            Ok(job) => self.pending.push((token, job)),
            // The file is not open: the op fails in its completion, its buffer handed back.
            Err(buf) => self.shared.done.borrow_mut().push(Completion {
                token,
                kind,
                res: Err(io::Error::from_raw_os_error(libc::EBADF)),
                buf,
            }),
        }
    }

    /// Outside the loop: submit what a loop left in `serial` (only if it unwound mid-pass).
    fn release_serial(&mut self) {
        debug_assert!(!self.shared.inside.get());
        while let Some((token, op)) = self.serial.pop_front() {
            self.submit_now(token, op);
        }
    }

    /// Prepare a metadata op: take what it needs from the engine (the path, the file it
    /// replaces or closes) and build the future that performs it through glommio.
    fn prepare_meta(&mut self, token: u64, op: Op<DmaBuffer>) -> MetaJob {
        let kind = op.kind();
        let ebadf = || -> Pin<Box<dyn Future<Output = MetaDone>>> {
            Box::pin(async { MetaDone::of(Err(io::Error::from_raw_os_error(libc::EBADF))) })
        };
        let (file, fut): (u64, Pin<Box<dyn Future<Output = MetaDone>>>) = match op {
            Op::Create {
                file,
                kind: fk,
                prealloc_bytes,
            } => {
                let path = self.path(file, fk);
                let old = self.files.remove(&file.0);
                (
                    file.0,
                    Box::pin(async move {
                        MetaDone::of(
                            async {
                                if let Some(old) = old {
                                    close_file(old).await?;
                                }
                                let f = OpenOptions::new()
                                    .read(true)
                                    .write(true)
                                    .create(true)
                                    .truncate(true)
                                    .dma_open(&path)
                                    .await
                                    .map_err(to_io)?;
                                if prealloc_bytes > 0 {
                                    if let Err(e) = f.pre_allocate(prealloc_bytes, false).await {
                                        let _ = f.close().await;
                                        return Err(to_io(e));
                                    }
                                }
                                Ok(Some(f))
                            }
                            .await,
                        )
                    }),
                )
            }
            Op::Open {
                file,
                kind: fk,
                writable,
            } => {
                let path = self.path(file, fk);
                match self.needs_warm(&path) {
                    Err(e) => (file.0, Box::pin(async { MetaDone::of(Err(e)) })),
                    Ok(warm) => {
                        let old = self.files.remove(&file.0);
                        (
                            file.0,
                            Box::pin(async move {
                                let mut warmed = None;
                                if let Some((dev, parent)) = warm {
                                    match warm_device_in(parent).await {
                                        Ok(f) => {
                                            let _ = f.close().await;
                                            warmed = Some(dev);
                                        }
                                        // The open fails; the file open before stays open.
                                        Err(e) => {
                                            return MetaDone {
                                                res: Err(e),
                                                keep: old,
                                                warmed: None,
                                            }
                                        }
                                    }
                                }
                                let res = async {
                                    if let Some(old) = old {
                                        close_file(old).await?;
                                    }
                                    let f = OpenOptions::new()
                                        .read(true)
                                        .write(writable)
                                        .dma_open(&path)
                                        .await
                                        .map_err(to_io)?;
                                    Ok(Some(f))
                                }
                                .await;
                                MetaDone {
                                    res,
                                    keep: None,
                                    warmed,
                                }
                            }),
                        )
                    }
                }
            }
            Op::Allocate {
                file,
                offset,
                len_bytes,
            } => match self.files.get(&file.0).cloned() {
                None => (file.0, ebadf()),
                Some(f) => (
                    file.0,
                    Box::pin(async move {
                        MetaDone::of(
                            f.pre_allocate(offset + len_bytes, false)
                                .await
                                .map(|()| None)
                                .map_err(to_io),
                        )
                    }),
                ),
            },
            Op::Close { file } => match self.files.remove(&file.0) {
                None => (file.0, ebadf()),
                Some(f) => (
                    file.0,
                    Box::pin(async move { MetaDone::of(close_file(f).await.map(|()| None)) }),
                ),
            },
            Op::Remove { file, kind: fk } => {
                let path = self.path(file, fk);
                let open = self.files.remove(&file.0);
                (
                    file.0,
                    Box::pin(async move {
                        if let Some(f) = open {
                            let _ = close_file(f).await;
                        }
                        MetaDone::of(
                            glommio::executor()
                                .spawn_blocking(move || std::fs::remove_file(path))
                                .await
                                .map(|()| None),
                        )
                    }),
                )
            }
            Op::Write { .. } | Op::Read { .. } | Op::Sync { .. } | Op::SyncDir => {
                unreachable!("I/O ops go through tasks")
            }
        };
        MetaJob {
            token,
            kind,
            file,
            fut,
        }
    }

    /// Record what a metadata op did and park its completion for `reap`.
    fn finish_meta(&mut self, token: u64, kind: OpKind, file: u64, done: MetaDone) {
        if let Some(dev) = done.warmed {
            if !self.warmed.contains(&dev) {
                self.warmed.push(dev);
            }
        }
        if let Some(f) = done.keep {
            self.files.insert(file, f);
        }
        let res = match done.res {
            Ok(Some(f)) => {
                self.files.insert(file, Rc::new(f));
                Ok(0)
            }
            Ok(None) => Ok(0),
            Err(e) => Err(e),
        };
        self.shared.done.borrow_mut().push(Completion {
            token,
            kind,
            res,
            buf: None,
        });
    }

    /// Run a metadata op's future to completion inside `run` (after handing parked ops to
    /// glommio, so the order of submission is kept).
    fn run_meta(&mut self, fut: Pin<Box<dyn Future<Output = MetaDone>>>) -> MetaDone {
        let shared = Rc::clone(&self.shared);
        let pending = &mut self.pending;
        let dir = &self.dir_file;
        let ex = self.ex.as_deref().expect("executor lives until drop");
        shared.run(ex, async {
            Self::spawn_pending(&shared, pending, dir);
            fut.await
        })
    }

    /// Inside [`Recorder::run_loop`], after `step`: run the ops `submit` queued behind a
    /// metadata op, in order, awaiting each metadata op (I/O already in flight keeps going
    /// meanwhile; the body does not step, as a `submit` from outside blocks until it is done).
    async fn run_serial<B: LoopBody<R = Glommio>>(body: &mut B) {
        loop {
            let eng = body.engine();
            let Some((token, op)) = eng.serial.pop_front() else {
                return;
            };
            match op {
                op @ (Op::Write { .. } | Op::Read { .. } | Op::Sync { .. } | Op::SyncDir) => {
                    eng.submit_now(token, op)
                }
                meta => {
                    let job = eng.prepare_meta(token, meta);
                    let done = job.fut.await;
                    body.engine()
                        .finish_meta(job.token, job.kind, job.file, done);
                }
            }
        }
    }
}

/// Close a file through glommio; if an op still holds it (a caller broke the contract), drop
/// this reference and let glommio close the descriptor when the last one goes.
async fn close_file(f: Rc<DmaFile>) -> io::Result<()> {
    match Rc::try_unwrap(f) {
        Ok(f) => f.close().await.map_err(to_io),
        Err(_) => Ok(()),
    }
}

/// Write all of `buf` at `offset`, completing a short write from the same bytes.
async fn write_all(file: &DmaFile, buf: DmaBuffer, offset: u64) -> io::Result<usize> {
    let len = buf.len();
    let buf = Rc::new(buf);
    let mut done = file
        .write_rc_at(Rc::clone(&buf), offset)
        .await
        .map_err(to_io)?;
    while done < len {
        if done == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write returned 0 bytes",
            ));
        }
        let mut rest = file.alloc_dma_buffer(len - done);
        rest.as_bytes_mut().copy_from_slice(&buf.as_bytes()[done..]);
        let n = file
            .write_at(rest, offset + done as u64)
            .await
            .map_err(to_io)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write returned 0 bytes",
            ));
        }
        done += n;
    }
    Ok(done)
}

/// The span of whole blocks (`align` bytes) that covers `[pos, pos + size)`: its start, and
/// how far into it `pos` lies.
fn aligned_span(pos: u64, size: usize, align: u64) -> (u64, usize, usize) {
    let align = align.max(1);
    let start = pos - pos % align;
    let skip = (pos - start) as usize;
    let span = (skip + size).next_multiple_of(align as usize);
    (start, skip, span)
}

/// Read `buf.len()` bytes at `offset` (fewer only at end of file), copying glommio's buffers
/// into `buf`.
///
/// Every read goes through `read_at_aligned` over the whole blocks that cover what is left:
/// glommio 0.9's `read_at` counts the bytes the kernel returned from the aligned-down start,
/// not from the position asked for, so a read that ends at an end of file inside a block
/// reports up to `pos % alignment` bytes past it (a 16 KiB read of a 10 000-byte file at 512-byte
/// alignment: 10 000, then 272 more from the second read). Here the count is the kernel's,
/// less the bytes before `pos`, so it never passes the file's size.
async fn read_full(file: &DmaFile, buf: &mut DmaBuffer, offset: u64) -> io::Result<usize> {
    let want = buf.len();
    let mut got = 0usize;
    while got < want {
        let (start, skip, span) = aligned_span(offset + got as u64, want - got, file.alignment());
        let r = file.read_at_aligned(start, span).await.map_err(to_io)?;
        let n = r.len().saturating_sub(skip).min(want - got);
        if n == 0 {
            break;
        }
        buf.as_bytes_mut()[got..got + n].copy_from_slice(&r[skip..skip + n]);
        got += n;
    }
    debug_assert!(got <= want);
    Ok(got)
}

/// The body of one op's glommio task.
async fn run_job(shared: Rc<Shared>, token: u64, job: Job, dir: Arc<File>) {
    let c = match job {
        Job::Write {
            file,
            offset,
            buf,
            dsync,
        } => {
            let mut res = write_all(&file, buf, offset).await;
            if dsync && res.is_ok() {
                if let Err(e) = file.fdatasync().await {
                    res = Err(to_io(e));
                }
            }
            Completion {
                token,
                kind: OpKind::Write,
                res,
                buf: None,
            }
        }
        Job::Read {
            file,
            offset,
            mut buf,
        } => {
            let res = read_full(&file, &mut buf, offset).await;
            Completion {
                token,
                kind: OpKind::Read,
                res,
                buf: Some(buf),
            }
        }
        Job::Sync { file } => Completion {
            token,
            kind: OpKind::Sync,
            res: file.fdatasync().await.map(|()| 0).map_err(to_io),
            buf: None,
        },
        Job::SyncDir => Completion {
            token,
            kind: OpKind::SyncDir,
            res: glommio::executor()
                .spawn_blocking(move || dir.sync_all())
                .await
                .map(|()| 0),
            buf: None,
        },
    };
    shared.complete(c);
}

impl Recorder for Glommio {
    type Buf = DmaBuffer;

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc_buf(&mut self, len: usize) -> Option<DmaBuffer> {
        if len > self.caps.buf_bytes || self.bufs_out >= self.caps.buf_count {
            return None;
        }
        let arena = self.arena.as_ref()?;
        // glommio cannot allocate an empty buffer: take one byte and trim it.
        let mut b = arena.alloc_dma_buffer(len.max(1));
        b.trim_to_size(len);
        self.bufs_out += 1;
        Some(b)
    }

    fn release_buf(&mut self, buf: DmaBuffer) {
        drop(buf); // back to glommio's arena
        self.bufs_out = self.bufs_out.saturating_sub(1);
    }

    /// Outside [`run_loop`](Recorder::run_loop), I/O ops are parked for the next `run` and
    /// metadata ops run to completion here. Inside it, I/O ops become glommio tasks at once,
    /// and a metadata op (with every op submitted after it, in order) is queued for the loop,
    /// which runs it when `step` returns.
    fn submit(&mut self, token: u64, op: Op<DmaBuffer>) -> Result<(), Op<DmaBuffer>> {
        let op = self.caps.admit(self.in_flight(), op)?;
        let meta = !matches!(
            op,
            Op::Write { .. } | Op::Read { .. } | Op::Sync { .. } | Op::SyncDir
        );
        if self.shared.inside.get() && (meta || !self.serial.is_empty()) {
            self.serial.push_back((token, op));
        } else {
            self.submit_now(token, op);
        }
        Ok(())
    }

    /// Outside the loop: one reactor pass when ops are parked. Inside it: nothing to do (ops
    /// are glommio's already; the loop's next wait is the reactor pass that submits them).
    fn flush(&mut self) -> io::Result<()> {
        if self.shared.inside.get() {
            return Ok(());
        }
        self.release_serial();
        if !self.pending.is_empty() {
            self.drive(Instant::now());
        }
        Ok(())
    }

    /// Outside the loop: enters the executor until a completion or `deadline` (see the module
    /// doc). Inside [`run_loop`](Recorder::run_loop) it never enters `run` and never waits,
    /// whatever `deadline` says: it hands over the completions that are ready (the loop has
    /// already awaited them).
    fn reap(
        &mut self,
        out: &mut Vec<Completion<DmaBuffer>>,
        deadline: Instant,
    ) -> io::Result<usize> {
        if !self.shared.inside.get() {
            self.release_serial();
            let ready = !self.shared.done.borrow().is_empty();
            if !self.pending.is_empty() || (!ready && self.shared.running.get() > 0) {
                self.drive(deadline);
            }
        }
        let mut done = self.shared.done.borrow_mut();
        let n = done.len();
        for c in done.drain(..) {
            if c.kind == OpKind::Write && c.buf.is_none() {
                // The write consumed its buffer: its pool slot is free again.
                self.bufs_out = self.bufs_out.saturating_sub(1);
            }
            out.push(c);
        }
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
            + self.serial.len()
            + self.shared.running.get()
            + self.shared.done.borrow().len()
    }

    /// As the trait's `drain`; inside [`run_loop`](Recorder::run_loop), where nothing can wait
    /// without returning to the executor, it hands over what is ready and fails with
    /// `WouldBlock` if ops are still in flight (return [`Flow::Done`] and drain after the loop).
    fn drain(&mut self, out: &mut Vec<Completion<DmaBuffer>>, deadline: Instant) -> io::Result<()> {
        if self.shared.inside.get() {
            self.reap(out, deadline)?;
            return match self.in_flight() {
                0 => Ok(()),
                n => Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "glommio: drain inside run_loop: {n} ops still in flight; the loop awaits \
                         them (return Flow::Done, then drain)"
                    ),
                )),
            };
        }
        self.flush()?;
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "glommio: {} ops still in flight at the drain deadline",
                        self.in_flight()
                    ),
                ));
            }
            self.reap(out, deadline)?;
        }
        Ok(())
    }

    /// Enters the executor once and runs `body` from a task in it: `step`, then the ops it
    /// queued behind a metadata op, then a wait — for [`Flow::Wait`] until a completion is ready
    /// or a glommio `Timer` fires at the deadline; for [`Flow::Again`] (or a deadline already
    /// past, or completions already ready) one reactor pass (a 1 µs timer, which only the
    /// reactor can fire: a plain yield would run the task again without letting the reactor
    /// submit or reap) — then `complete` with a deadline in the past. An `Err` from `complete`
    /// ends the loop; ops still in flight stay glommio tasks, which the next `reap`, `drain`
    /// or `Drop` drives as usual.
    fn run_loop<B: LoopBody<R = Self>>(body: &mut B) -> io::Result<()> {
        let eng = body.engine();
        eng.release_serial();
        let ex = Rc::clone(eng.ex.as_ref().expect("executor lives until drop"));
        let shared = Rc::clone(&eng.shared);
        let res = shared.run(&ex, async {
            let _inside = Inside::enter(&shared);
            {
                // Ops parked from outside become tasks now.
                let eng = body.engine();
                Glommio::spawn_pending(&shared, &mut eng.pending, &eng.dir_file);
            }
            let mut timer = Timer::new(ONE_PASS);
            loop {
                let flow = body.step(Instant::now());
                Glommio::run_serial(body).await;
                let deadline = match flow {
                    Flow::Done => return Ok(()),
                    Flow::Again => None,
                    Flow::Wait(d) => Some(d),
                };
                let ready = !shared.done.borrow().is_empty();
                let now = Instant::now();
                // Nothing of ours in flight and nothing due before the deadline: no task of the
                // executor can make progress, so the thread sleeps without a reactor pass (the
                // same idle sleep the plain loop makes; a glommio timer costs a pass of its
                // reactor, several io_uring_enter calls, every time the worker idles).
                if let Some(d) = deadline {
                    if d > now && body.engine().in_flight() == 0 {
                        std::thread::sleep(d - now);
                        body.complete(Instant::now())?;
                        continue;
                    }
                }
                let (wait, on_done) = match deadline {
                    Some(d) if !ready && d > now => ((d - now).max(ONE_PASS), true),
                    _ => (ONE_PASS, false),
                };
                timer.reset(wait);
                WaitDone {
                    shared: &shared,
                    timer: &mut timer,
                    on_done,
                }
                .await;
                shared.waiter.take();
                body.complete(Instant::now())?;
            }
        });
        debug_assert!(!shared.inside.get());
        // Only an unwinding pass could leave queued ops; hand them to the outside path.
        body.engine().release_serial();
        res
    }
}

impl Drop for Glommio {
    fn drop(&mut self) {
        let mut rest = Vec::new();
        let drained = self
            .drain(&mut rest, Instant::now() + Duration::from_secs(30))
            .is_ok();
        drop(rest);
        if !drained {
            // A task still owns memory the kernel may write: leak the executor, the arena and
            // the files rather than free it under the kernel.
            std::mem::forget(std::mem::take(&mut self.files));
            std::mem::forget(self.arena.take());
            std::mem::forget(self.ex.take());
            return;
        }
        let files: Vec<Rc<DmaFile>> = self.files.drain().map(|(_, f)| f).collect();
        let arena = self.arena.take();
        let Some(ex) = self.ex.take() else { return };
        self.shared.run(&ex, async move {
            for f in files {
                let _ = close_file(f).await;
            }
            if let Some(a) = arena {
                let _ = a.close().await;
            }
        });
        // Nothing is in flight (drained above): the rings and the arena can go.
        drop(ex);
    }
}

// ---------------------------------------------------------------------------------------------
// Probe

/// Probe glommio on this kernel and the filesystem of `dir`: build an executor on a scratch
/// thread and write and read one block through `DmaFile` (the engine's own warm-up).
pub fn probe(dir: &Path) -> Vec<ProbeResult> {
    let base = crate::buffered::nearest_existing(dir);
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "absent".into());
    let memlock = memlock_limit_bytes();
    let root = is_root();
    let memlock_text = match memlock {
        None => "unlimited".to_string(),
        Some(b) => format!("{} KiB", b / 1024),
    };
    let base2 = base.clone();
    let run = std::thread::Builder::new()
        .name("sb-glommio-probe".into())
        .spawn(move || -> io::Result<()> {
            let ex = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(64 * 1024)
                .ring_depth(8)
                .make()
                .map_err(to_io)?;
            let f = warm_device(&ex, &base2)?;
            ex.run(async move {
                let _ = f.close().await;
            });
            Ok(())
        })
        .map_err(|e| io::Error::other(format!("cannot start a probe thread: {e}")))
        .and_then(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("the probe thread panicked")))
        });
    let poll_queues = poll_queues_text(&base);
    let engine = match run {
        Ok(()) => ProbeResult {
            what: "(engine)".into(),
            supported: true,
            detail: format!(
                "glommio 0.9 executor and DmaFile write/read work on {} (kernel.io_uring_disabled={disabled}); {poll_queues}",
                base.display()
            ),
        },
        Err(e) => {
            let advice = if memlock.is_some_and(|m| m < GLOMMIO_MIN_MEMLOCK_BYTES) {
                format!(
                    "; RLIMIT_MEMLOCK is {memlock_text} and glommio needs at least 512 KiB: raise it (ulimit -l)"
                )
            } else if disabled != "0" && disabled != "absent" {
                format!("; io_uring is restricted (kernel.io_uring_disabled={disabled}): set it to 0")
            } else {
                String::new()
            };
            ProbeResult {
                what: "(engine)".into(),
                supported: false,
                detail: format!("{e}{advice}"),
            }
        }
    };
    let default_arena = GLOMMIO_DEFAULT_IO_MEMORY_BYTES as u64;
    let registered = if root {
        format!("registered with io_uring (RLIMIT_MEMLOCK {memlock_text}; root is exempt)")
    } else {
        match memlock {
            None => "registered with io_uring (RLIMIT_MEMLOCK unlimited)".into(),
            Some(m) if m >= 3 * default_arena => format!(
                "registered with io_uring while 3 x io_memory fits RLIMIT_MEMLOCK ({memlock_text}; glommio registers it in each of its 3 rings)"
            ),
            Some(_) => format!(
                "RLIMIT_MEMLOCK {memlock_text} is below 3 x io_memory (glommio registers the arena in each of its 3 rings): registration fails and glommio falls back to unregistered buffers (plain WRITE, no WRITE_FIXED)"
            ),
        }
    };
    vec![
        engine,
        ProbeResult {
            what: "io_memory_mib".into(),
            supported: true,
            detail: format!("the I/O arena is {registered}"),
        },
        ProbeResult {
            what: "ring_depth".into(),
            supported: true,
            detail: "glommio's main, latency and poll rings".into(),
        },
        ProbeResult {
            what: "spin_before_park_us".into(),
            supported: true,
            detail: "glommio spins only when the executor is bound to CPUs; the engine fences it to the worker's affinity".into(),
        },
    ]
}

/// What the block device under `dir` says about poll queues (informational).
fn poll_queues_text(dir: &Path) -> String {
    let Ok(meta) = std::fs::metadata(dir) else {
        return "poll queues unknown".into();
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = format!("/sys/dev/block/{major}:{minor}");
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let io_poll =
        read(&format!("{sys}/queue/io_poll")).or_else(|| read(&format!("{sys}/../queue/io_poll")));
    match io_poll.as_deref() {
        Some("0") => "the device has no poll queues: glommio's poll ring cannot serve it, and the engine warms glommio's per-device decision with a written block (glommio #605)".into(),
        Some(v) => format!("device io_poll={v}"),
        None => "not a block device (tmpfs, overlay, …): glommio serves it without the poll ring".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_arena_fits_the_pool() {
        // DS defaults: 68 KiB buffers (128 KiB buddy slots), 256 of them, 256 in flight.
        assert_eq!(auto_io_memory_bytes(68 << 10, 256, 256), 64 << 20);
        assert_eq!(auto_io_memory_bytes(4096, 8, 8), 16 << 20);
        assert_eq!(auto_io_memory_bytes(16 << 20, 1024, 1024), 256 << 20);
    }

    #[test]
    fn ring_depth_from_queue_depth() {
        let k = GlommioKnobs::default();
        assert_eq!(ring_depth(&k, 1), 128);
        assert_eq!(ring_depth(&k, 300), 512);
        let k = GlommioKnobs {
            ring_depth: 64,
            ..Default::default()
        };
        assert_eq!(ring_depth(&k, 300), 64);
    }

    #[test]
    fn aligned_span_covers_the_request() {
        // The EOF case of the behaviour test: the rest of a 16 KiB read after 10 000 bytes.
        assert_eq!(aligned_span(10_000, 6384, 512), (9728, 272, 6656));
        assert_eq!(aligned_span(0, 16384, 512), (0, 0, 16384));
        assert_eq!(aligned_span(4096, 100, 4096), (4096, 0, 4096));
        assert_eq!(aligned_span(4097, 4096, 4096), (4096, 1, 8192));
        // No alignment (glommio off O_DIRECT): the request itself.
        assert_eq!(aligned_span(7, 9, 1), (7, 0, 9));
        assert_eq!(aligned_span(7, 9, 0), (7, 0, 9));
    }

    #[test]
    fn thread_affinity_is_read() {
        let cpus = thread_cpus().expect("affinity readable");
        assert!(!cpus.is_empty());
    }
}
