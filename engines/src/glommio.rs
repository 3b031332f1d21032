//! `glommio`: glommio 0.9's `DmaFile` on a `LocalExecutor` owned by the worker thread.
//!
//! ## The bridge
//!
//! glommio runs futures only inside `LocalExecutor::run`, and its reactor submits and reaps
//! I/O only between task passes of that loop. The [`Recorder`] calls are plain functions, so:
//!
//! - `submit` of a write, read, sync or directory sync resolves the file and parks the op in a
//!   bounded vector (`max_in_flight` long, allocated once). Nothing reaches glommio yet.
//! - `reap` (and `flush`) enter `run` once: the future spawns one glommio task per parked op
//!   (each awaits its `DmaFile` call and pushes its [`Completion`] into a shared vector, waking
//!   the reap future), then waits for a completion or for a glommio `Timer` set to the
//!   deadline. Because it awaits something the reactor completes, the executor polls its rings
//!   and parks in `io_uring_enter` while idle (a future that only yields would spin without
//!   letting the reactor run; see MACHINE.md). A deadline in the past still costs one reactor
//!   pass (a 1 µs timer), so that parked ops are handed to the kernel and finished ones are
//!   collected, but it never sleeps for longer. `flush` is that one pass.
//! - Metadata ops (create, open, allocate, close, remove) run to completion inside `submit`,
//!   through glommio's own calls (`OpenOptions::dma_open`, `DmaFile::pre_allocate`,
//!   `DmaFile::close`, an unlink on glommio's blocking thread), as the `uring` and `aio`
//!   engines run theirs synchronously. A later op of the same file therefore never finds it
//!   missing.
//! - `drain` reaps until no task is left; `Drop` drains once more (30 s), closes every file
//!   through glommio, and if anything were still in flight it leaks the executor rather than
//!   free memory the kernel may still write.
//!
//! Cost per I/O, stated plainly: one glommio task (a heap allocation) per op, glommio's own
//! `Source` per I/O, one `Rc` per write (`write_rc_at`, so a short write can be completed from
//! the same bytes), and per `reap` one more task for the reap future plus its `Timer`. Every
//! `run` re-arms glommio's preemption timers and flushes its rings (a few `io_uring_enter`s).
//! The `submit_reap` bench measures this against the `null` and `uring` paths: on the
//! development VM, an O_DIRECT 4 KiB read at end of file (completed by the kernel inline, no
//! device I/O) took 22.5 µs per round trip through glommio against 1.6 µs through `uring`
//! (strace: 7 `io_uring_enter` per round trip against 1), and 1.9 against 0.64 µs per op in
//! batches of 32.
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
    file_name, Caps, Completion, Engine, EngineConfig, FastMap, Op, OpKind, ProbeResult, Recorder,
    RecorderFactory,
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
        "glommio 0.9 DmaFile on a LocalExecutor per worker (O_DIRECT); reap re-enters the executor";
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
    let (path, block) = write_warm_file(dir)?;
    let opened = ex.run(async {
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
    });
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

/// Completions pushed by the op tasks, and the waker of the reap future waiting for them.
#[derive(Default)]
struct Shared {
    done: RefCell<Vec<Completion<DmaBuffer>>>,
    waiter: Cell<Option<Waker>>,
    /// Op tasks spawned and not finished.
    running: Cell<usize>,
}

impl Shared {
    fn complete(&self, c: Completion<DmaBuffer>) {
        self.done.borrow_mut().push(c);
        self.running.set(self.running.get() - 1);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }
}

/// An op resolved at submit, waiting for the next `run` to become a glommio task.
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

/// Ready when a completion arrives (if `on_done`) or when the timer fires; the timer can only
/// fire through a reactor pass, which is what hands parked ops to the kernel.
struct WaitDone<'a> {
    shared: &'a Shared,
    timer: Timer,
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
        Pin::new(&mut this.timer).poll(cx).map(|_| ())
    }
}

/// Shortest wait: long enough that the first poll of the timer registers it, so that only a
/// reactor pass completes it.
const ONE_PASS: Duration = Duration::from_micros(1);

/// The `glommio` engine instance of one worker.
pub struct Glommio {
    caps: Caps,
    /// Always `Some` until `Drop`, which leaks it if a task may still hold kernel-owned memory.
    ex: Option<LocalExecutor>,
    shared: Rc<Shared>,
    /// Ops submitted and not yet handed to glommio (capacity `max_in_flight`).
    pending: Vec<(u64, Job)>,
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
                ..Caps::new("glommio", cfg)
            },
            ex: Some(ex),
            shared: Rc::new(Shared::default()),
            pending: Vec::with_capacity(queue_depth),
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

    fn path(&self, file: crate::MatchId, kind: crate::FileKind) -> PathBuf {
        self.dir.join(file_name(file, kind))
    }

    /// Warm glommio's poll-ring decision for the device `path` lives on, if this thread has
    /// not yet (a link may lead out of the engine's directory).
    fn ensure_warm(&mut self, path: &Path) -> io::Result<()> {
        let Ok(target) = std::fs::canonicalize(path) else {
            return Ok(()); // missing: the open itself reports it
        };
        let dev = std::fs::metadata(&target)?.dev();
        if self.warmed.contains(&dev) {
            return Ok(());
        }
        let parent = target.parent().unwrap_or(Path::new("/"));
        let ex = self.ex.as_ref().expect("executor lives until drop");
        let f = warm_device(ex, parent)?;
        ex.run(async move {
            let _ = f.close().await;
        });
        self.warmed.push(dev);
        Ok(())
    }

    /// Spawn a glommio task for every parked op. Call only inside `run`.
    fn spawn_pending(shared: &Rc<Shared>, pending: &mut Vec<(u64, Job)>, dir: &Arc<File>) {
        for (token, job) in pending.drain(..) {
            shared.running.set(shared.running.get() + 1);
            glommio::spawn_local(run_job(Rc::clone(shared), token, job, Arc::clone(dir))).detach();
        }
    }

    /// One `run`: hand parked ops to glommio, then wait until a completion arrives (when none
    /// was ready) or `deadline`; always at least one reactor pass.
    fn drive(&mut self, deadline: Instant) {
        let shared = Rc::clone(&self.shared);
        let pending = &mut self.pending;
        let dir = &self.dir_file;
        let ex = self.ex.as_ref().expect("executor lives until drop");
        ex.run(async {
            Self::spawn_pending(&shared, pending, dir);
            let ready = !shared.done.borrow().is_empty();
            let now = Instant::now();
            let wait = if ready || deadline <= now {
                ONE_PASS
            } else {
                (deadline - now).max(ONE_PASS)
            };
            WaitDone {
                shared: &shared,
                timer: Timer::new(wait),
                on_done: !ready,
            }
            .await;
            shared.waiter.take();
        });
    }

    /// Run a metadata op to completion inside `run` (after handing parked ops to glommio, so
    /// the order of submission is kept).
    fn metadata(&mut self, token: u64, op: Op<DmaBuffer>) {
        let kind = op.kind();
        let res = match op {
            Op::Create {
                file,
                kind: fk,
                prealloc_bytes,
            } => {
                let path = self.path(file, fk);
                let old = self.files.remove(&file.0);
                self.run_meta(async move {
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
                })
                .map(|f| (file.0, f))
            }
            Op::Open {
                file,
                kind: fk,
                writable,
            } => {
                let path = self.path(file, fk);
                match self.ensure_warm(&path) {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let old = self.files.remove(&file.0);
                        self.run_meta(async move {
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
                        })
                        .map(|f| (file.0, f))
                    }
                }
            }
            Op::Allocate {
                file,
                offset,
                len_bytes,
            } => match self.files.get(&file.0).cloned() {
                None => Err(io::Error::from_raw_os_error(libc::EBADF)),
                Some(f) => self
                    .run_meta(async move {
                        f.pre_allocate(offset + len_bytes, false)
                            .await
                            .map_err(to_io)?;
                        Ok(None)
                    })
                    .map(|_| (file.0, None)),
            },
            Op::Close { file } => match self.files.remove(&file.0) {
                None => Err(io::Error::from_raw_os_error(libc::EBADF)),
                Some(f) => self
                    .run_meta(async move {
                        close_file(f).await?;
                        Ok(None)
                    })
                    .map(|_| (file.0, None)),
            },
            Op::Remove { file, kind: fk } => {
                let path = self.path(file, fk);
                let open = self.files.remove(&file.0);
                self.run_meta(async move {
                    if let Some(f) = open {
                        let _ = close_file(f).await;
                    }
                    glommio::executor()
                        .spawn_blocking(move || std::fs::remove_file(path))
                        .await?;
                    Ok(None)
                })
                .map(|_| (file.0, None))
            }
            Op::Write { .. } | Op::Read { .. } | Op::Sync { .. } | Op::SyncDir => {
                unreachable!("I/O ops go through tasks")
            }
        };
        let res = match res {
            Ok((id, Some(f))) => {
                self.files.insert(id, Rc::new(f));
                Ok(0)
            }
            Ok(_) => Ok(0),
            Err(e) => Err(e),
        };
        self.shared.done.borrow_mut().push(Completion {
            token,
            kind,
            res,
            buf: None,
        });
    }

    fn run_meta<F>(&mut self, fut: F) -> io::Result<Option<DmaFile>>
    where
        F: Future<Output = io::Result<Option<DmaFile>>>,
    {
        let shared = Rc::clone(&self.shared);
        let pending = &mut self.pending;
        let dir = &self.dir_file;
        let ex = self.ex.as_ref().expect("executor lives until drop");
        ex.run(async {
            Self::spawn_pending(&shared, pending, dir);
            fut.await
        })
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

/// Read `buf.len()` bytes at `offset` (fewer only at end of file), copying glommio's buffers
/// into `buf`.
async fn read_full(file: &DmaFile, buf: &mut DmaBuffer, offset: u64) -> io::Result<usize> {
    let want = buf.len();
    let align = file.alignment();
    let mut got = 0usize;
    while got < want {
        let pos = offset + got as u64;
        let size = want - got;
        let r = if pos % align == 0 && size as u64 % align == 0 {
            file.read_at_aligned(pos, size).await
        } else {
            file.read_at(pos, size).await
        }
        .map_err(to_io)?;
        if r.is_empty() {
            break;
        }
        let n = r.len().min(size);
        buf.as_bytes_mut()[got..got + n].copy_from_slice(&r[..n]);
        got += n;
    }
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

    fn submit(&mut self, token: u64, op: Op<DmaBuffer>) -> Result<(), Op<DmaBuffer>> {
        let op = self.caps.admit(self.in_flight(), op)?;
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
                self.metadata(token, meta);
                return Ok(());
            }
        };
        match job {
            Ok(job) => self.pending.push((token, job)),
            // The file is not open: the op fails in its completion, its buffer handed back.
            Err(buf) => self.shared.done.borrow_mut().push(Completion {
                token,
                kind,
                res: Err(io::Error::from_raw_os_error(libc::EBADF)),
                buf,
            }),
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.drive(Instant::now());
        }
        Ok(())
    }

    fn reap(
        &mut self,
        out: &mut Vec<Completion<DmaBuffer>>,
        deadline: Instant,
    ) -> io::Result<usize> {
        let ready = !self.shared.done.borrow().is_empty();
        if !self.pending.is_empty() || (!ready && self.shared.running.get() > 0) {
            self.drive(deadline);
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
        self.pending.len() + self.shared.running.get() + self.shared.done.borrow().len()
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
        ex.run(async move {
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
    fn thread_affinity_is_read() {
        let cpus = thread_cpus().expect("affinity readable");
        assert!(!cpus.is_empty());
    }
}
