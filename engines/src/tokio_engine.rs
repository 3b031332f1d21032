//! `tokio`: the baseline of a typical Rust service — positioned I/O on tokio's blocking pool,
//! which is what `tokio::fs` does inside (`asyncify`: `spawn_blocking(f).await`).
//!
//! ## What one I/O costs: the bridge
//!
//! `submit` moves the op (and its buffer) into a job on the worker's runtime; the job's blocking
//! syscalls run on a thread of tokio's blocking pool. How the completion comes back is the
//! `bridge` knob, and both are paid in full:
//!
//! - `bridge=channel` (default): the job is `Runtime::spawn_blocking`; when its syscalls return
//!   it puts the completion into a bounded `tokio::sync::mpsc` channel (capacity = the queue
//!   depth, more than can be outstanding, so it never waits). `reap` takes what is there and,
//!   when nothing is, awaits the channel on the runtime: `Runtime::block_on` of
//!   `tokio::time::timeout_at(deadline, recv())`, so the worker sleeps in tokio's driver until a
//!   completion or the deadline. **One task allocation per I/O** (the blocking task's cell;
//!   `spawn_blocking` allocates it, a tokio service pays the same), one hand-off to a pool
//!   thread, one wake of the worker.
//! - `bridge=task`: the shape of `tokio::fs` (`asyncify`): each I/O is an async task spawned on
//!   the runtime that awaits `spawn_blocking(..)`'s `JoinHandle` and then sends the completion.
//!   **Two task allocations per I/O** and one more wake and poll: the blocking thread wakes the
//!   task, the task wakes the worker.
//!
//! No buffer is allocated per I/O: buffers come from the engine's bounded
//! [`BufPool`](crate::BufPool).
//!
//! Measured on the 2-core VM while parallel builds kept its load average at 11–15, so only
//! ratios inside one run mean anything (4 KiB page-cache reads at queue depth 64, process CPU
//! time per op, three rounds; `cargo bench --bench submit_reap` gives wall times). In batches of
//! 32: `bridge=channel` 6–14 µs per op, `bridge=task` 10–20 µs (current-thread) and 19–36 µs
//! (multi-thread), `buffered:threads=4` 2.4–2.9 µs. Most of tokio's extra cost over buffered's
//! pool is the pool's size: by default a burst of 32 ops starts (and wakes) up to 32 threads;
//! with `max_blocking_threads=4` tokio cost 2.5–3.5 µs, as `buffered:threads=4` does. A third
//! bridge, the job sending into a `std::sync::mpsc` channel that `reap` waits on with
//! `recv_timeout` (tokio reduced to a thread pool), cost the same as `channel` (7–8 µs against
//! 6–10 µs in that run), so the bridge that keeps tokio's own wait on the path was kept.
//! Wall time of one submit → reap round trip (`submit_reap`, medians of three runs at load 3–4;
//! one read / a batch of 32): `tokio` 29 / 373 µs, `flavor=multi` 30 / 332 µs, `bridge=task`
//! 43 / 489 µs, `max_blocking_threads=4` 33 / 92 µs, `buffered:threads=4` 37 / 86 µs. One read
//! is one cross-thread wake there and back, whatever the pool.
//!
//! The blocking job issues the same syscalls as `std::os::unix::fs::FileExt::write_all_at` /
//! `read_at` (`pwrite`/`pread`, short transfers completed, EINTR and EAGAIN retried) plus
//! `fdatasync`, `fallocate`, directory `fsync`, and `pwritev2(RWF_DSYNC)` for dsync writes. They
//! are shared with the `buffered` engine (`exec::execute`), so the two differ only in how the op
//! reaches a thread and how its completion comes back. `tokio::fs` itself is not used: it has no
//! positioned I/O, and its `File::write` completes before the data is written (it copies into an
//! internal buffer and writes in the background), which would acknowledge unwritten data.
//!
//! ## Runtimes
//!
//! Each harness worker builds its own runtime in the factory's `build`, on the worker thread
//! (share-nothing: one runtime per harness worker, not one per process):
//!
//! - `flavor=current` (default): a current-thread runtime. Its tasks and timers run only while
//!   the worker is inside `reap` (`block_on`). With `bridge=task`, a reap whose deadline has
//!   passed still runs the ready tasks once (`block_on(yield_now())`): it never waits but never
//!   misses a finished I/O either.
//! - `flavor=multi`: a multi-thread runtime with `workers` worker threads (default 2), as in a
//!   service on `#[tokio::main]`. With `bridge=task` the per-I/O tasks run on those workers, a
//!   cross-thread hop per I/O; with `bridge=channel` the workers only run tokio's timer driver
//!   (the worker's `block_on` parks its own thread), so it costs about what `current` does.
//! - `max_blocking_threads` bounds the runtime's blocking pool. The default, 0, means the
//!   worker's queue depth (at most 512, tokio's own default): every op the harness may have in
//!   flight gets a thread, as tokio's default of 512 gives a service at these depths, so no op
//!   queues behind another inside the pool. A smaller number models a tighter pool; ops then wait
//!   in tokio's queue and that wait is part of their latency. Threads start on demand and leave
//!   after tokio's 10 s keep-alive.
//!
//! `direct=true` opens files with O_DIRECT (buffers aligned by
//! [`buffer_align_bytes`](crate::buf::buffer_align_bytes)); the default is the page cache, as a
//! typical service runs.
//!
//! ## io_uring: not offered
//!
//! Checked against tokio 1.54.1 (the version in Cargo.lock when this engine was written):
//! tokio's io_uring file support exists only under `cfg_io_uring!` (`src/macros/cfg.rs`), which
//! requires `--cfg tokio_unstable` **and** the `io-uring`, `rt` and `fs` features on Linux
//! (tokio's `src/lib.rs`, "Unstable features"; its Cargo.toml only pulls the `io-uring` crate
//! under `cfg(all(tokio_unstable, target_os = "linux"))`). `tokio_unstable` is a rustc flag
//! (`RUSTFLAGS` or `.cargo/config.toml`), which a stable default build of snapbench does not
//! set, and its API "may break in 1.x releases". Even with it, io_uring covers `fs::read`,
//! `fs::write`, `OpenOptions::open`, `File` reads at the cursor, `rename` and `statx`; the
//! positioned `Op::read_at`/`Op::write_at` are `pub(crate)`, and there is no io_uring fdatasync
//! or fallocate. A recorder needs positioned writes and fdatasync, so io_uring cannot back this
//! engine; `snapbench engines` reports it as unsupported with this reason. Tracking issue:
//! tokio-rs/tokio#7266.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::runtime::Runtime;
use tokio::sync::mpsc::{self, error::TryRecvError};

use crate::buf::AlignedBuf;
use crate::exec::{self, Done, FdTable, Job};
use crate::knobs::{declare_knobs, default_text, knob_choice, KnobError};
use crate::placement::{describe, CpuMask, HelperCpus};
use crate::{
    Caps, Completion, Engine, EngineBase, EngineConfig, Op, ProbeResult, Recorder, RecorderFactory,
};

/// tokio's own default cap on its blocking pool (`Builder::max_blocking_threads`).
const TOKIO_DEFAULT_BLOCKING_THREADS: usize = 512;

declare_knobs! {
    /// Parsed knobs of the `tokio` engine.
    pub struct TokioKnobs for "tokio" {
        direct: bool = false, [bool],
            "open files with O_DIRECT (aligned buffers); default: the page cache, like a typical service";
        flavor: Flavor = current, [choice],
            "current = a current-thread runtime per worker, driven in reap; multi = a multi-thread runtime per worker";
        workers: u32 = 2, [1..=64],
            "worker threads of the multi-thread runtime (flavor=multi only)";
        bridge: Bridge = channel, [choice],
            "channel = the blocking job sends its completion to a channel reap awaits; task = a task per I/O awaits spawn_blocking (tokio::fs's shape)";
        max_blocking_threads: u32 = 0, [0..=4096],
            "tokio's blocking pool size; 0 = the worker's queue depth (at most 512, tokio's default)";
        pool_cpus: HelperCpus = all, [choice],
            "where the runtime's threads and blocking threads run: all = every CPU of the run; worker = the worker's CPU";
    }
    check = TokioKnobs::check;
}

knob_choice! {
    /// Which tokio runtime a worker builds.
    pub enum Flavor {
        /// `Builder::new_current_thread`: tasks run inside the worker's `reap`.
        #[default]
        Current = "current",
        /// `Builder::new_multi_thread`: tasks run on the runtime's own worker threads.
        Multi = "multi",
    }
}

knob_choice! {
    /// How a completion gets from tokio's blocking pool back to the worker.
    pub enum Bridge {
        /// The blocking job sends its completion into a bounded channel that `reap` awaits.
        #[default]
        Channel = "channel",
        /// An async task per I/O awaits `spawn_blocking`'s handle, then sends (tokio::fs's shape).
        Task = "task",
    }
}

impl Engine for TokioKnobs {
    const SUMMARY: &'static str = "tokio's blocking pool doing positioned I/O (what tokio::fs does inside); page cache by default";
    type Factory = TokioFactory;

    fn factory(&self) -> TokioFactory {
        TokioFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    fn uses(&self, what: &str) -> bool {
        (what != "direct" || self.direct) && what != IO_URING_WHAT
    }
    fn direct(&self) -> bool {
        self.direct
    }
    fn page_cache_reads(&self) -> bool {
        !self.direct
    }
}

impl TokioKnobs {
    /// `workers` other than its default without `flavor=multi` is refused (it would be
    /// silently ignored).
    fn check(&self) -> Result<(), KnobError> {
        let default_workers = default_text(KNOBS, "workers");
        if self.flavor == Flavor::Current && self.workers.to_string() != default_workers {
            return Err(KnobError::Conflict {
                engine: "tokio",
                reason: format!(
                    "workers={} applies only to the multi-thread runtime; add flavor=multi",
                    self.workers
                ),
            });
        }
        Ok(())
    }

    /// Blocking pool size for a worker with `queue_depth` ops in flight at most.
    pub fn blocking_threads(&self, queue_depth: usize) -> usize {
        match self.max_blocking_threads {
            0 => queue_depth.clamp(1, TOKIO_DEFAULT_BLOCKING_THREADS),
            n => n as usize,
        }
    }
}

/// What `snapbench engines` says about tokio's io_uring file support (never a knob here).
pub const IO_URING_REASON: &str = "tokio's io_uring file I/O needs `--cfg tokio_unstable` in \
RUSTFLAGS plus the io-uring and fs features (unstable API), which a stable default build does \
not set; even then it has no public positioned read/write, fdatasync or fallocate \
(checked on tokio 1.54.1; tokio-rs/tokio#7266)";

/// Probe the engine (a runtime builds and runs one blocking job) and O_DIRECT on `dir`; also
/// reports why tokio's io_uring file support is not offered.
pub fn probe(dir: &Path) -> Vec<ProbeResult> {
    let engine = (|| -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .max_blocking_threads(1)
            .build()?;
        rt.block_on(rt.spawn_blocking(|| ()))
            .map_err(io::Error::other)
    })();
    let mut out = vec![match engine {
        Ok(()) => ProbeResult {
            what: "(engine)".into(),
            supported: true,
            detail: "a tokio runtime runs spawn_blocking jobs (pwrite/pread/fdatasync)".into(),
        },
        Err(e) => ProbeResult {
            what: "(engine)".into(),
            supported: false,
            detail: format!("could not build a tokio runtime or run a blocking job: {e}"),
        },
    }];
    out.extend(
        crate::buffered::probe(dir)
            .into_iter()
            .filter(|p| p.what == "direct"),
    );
    out.push(ProbeResult {
        what: "flavor".into(),
        supported: true,
        detail: "current-thread and multi-thread runtimes (features rt, rt-multi-thread)".into(),
    });
    out.push(ProbeResult {
        what: IO_URING_WHAT.into(),
        supported: false,
        detail: IO_URING_REASON.into(),
    });
    out
}

/// The probe entry that reports tokio's io_uring support (informational; no knob uses it).
pub const IO_URING_WHAT: &str = "io_uring (not a knob)";

/// Builds [`TokioEngine`]s.
#[derive(Clone, Debug)]
pub struct TokioFactory(pub TokioKnobs);

impl RecorderFactory for TokioFactory {
    type R = TokioEngine;
    fn build(&self, cfg: &EngineConfig) -> io::Result<TokioEngine> {
        TokioEngine::new(self.0.clone(), cfg)
    }
}

/// The `tokio` engine instance of one worker: its own runtime, blocking pool and completion
/// channel.
pub struct TokioEngine {
    base: EngineBase,
    flavor: Flavor,
    bridge: Bridge,
    dir: PathBuf,
    /// The engine's directory, open for `SyncDir`.
    dir_file: File,
    open_flags: i32,
    /// How Create and Allocate give a log its blocks.
    prealloc: crate::Prealloc,
    files: FdTable,
    /// Completions finished inside `submit` (ops that could not start), not yet reaped.
    ready: Vec<Completion<AlignedBuf>>,
    /// Taken in `drop` so the runtime (and its blocking pool) shuts down before files close.
    rt: Option<Runtime>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    /// Ops handed to the runtime and not yet reaped.
    spawned: usize,
}

impl TokioEngine {
    /// Build the engine on `cfg.dir`, with its runtime, on the calling (worker) thread.
    pub fn new(knobs: TokioKnobs, cfg: &EngineConfig) -> io::Result<TokioEngine> {
        let dir_file = File::open(&cfg.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("tokio: open directory {}: {e}", cfg.dir.display()),
            )
        })?;
        let align = if knobs.direct {
            cfg.dio_align_bytes.max(1)
        } else {
            1
        };
        let queue_depth = cfg.queue_depth.max(1);
        let mut builder = match knobs.flavor {
            Flavor::Current => tokio::runtime::Builder::new_current_thread(),
            Flavor::Multi => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(knobs.workers.max(1) as usize);
                b
            }
        };
        let mask = CpuMask::for_choice(knobs.pool_cpus)
            .and_then(|m| m.verify().map(|()| m))
            .map_err(|e| io::Error::new(e.kind(), format!("tokio: pool_cpus: {e}")))?;
        let threads = match knobs.flavor {
            Flavor::Current => "tokio blocking threads (the runtime runs on the worker thread)",
            Flavor::Multi => "tokio runtime and blocking threads",
        };
        let placement = format!("{threads}: {}", describe(knobs.pool_cpus, &mask));
        let rt = builder
            // Checked by `verify` above; a starting thread has nowhere to report.
            .on_thread_start(move || {
                let _ = mask.apply_to_current_thread();
            })
            .enable_time()
            .max_blocking_threads(knobs.blocking_threads(queue_depth))
            .thread_name(format!("sb-tokio-{}", cfg.worker))
            .build()
            .map_err(|e| io::Error::new(e.kind(), format!("tokio: build runtime: {e}")))?;
        let (done_tx, done_rx) = mpsc::channel(queue_depth);
        Ok(TokioEngine {
            base: EngineBase::new(Caps {
                direct: knobs.direct,
                io_align_bytes: align,
                helper_placement: placement,
                ..Caps::new("tokio", cfg)
            }),
            flavor: knobs.flavor,
            bridge: knobs.bridge,
            dir: cfg.dir.clone(),
            dir_file,
            open_flags: if knobs.direct { libc::O_DIRECT } else { 0 },
            prealloc: cfg.shared.prealloc,
            files: FdTable::default(),
            ready: Vec::with_capacity(queue_depth),
            rt: Some(rt),
            done_tx,
            done_rx,
            spawned: 0,
        })
    }

    /// Move every completion already in the channel to `out`.
    fn take_ready(&mut self, out: &mut Vec<Completion<AlignedBuf>>) -> io::Result<usize> {
        let mut n = 0;
        loop {
            match self.done_rx.try_recv() {
                Ok(done) => {
                    self.spawned -= 1;
                    out.push(exec::finish(&mut self.files, done));
                    n += 1;
                }
                Err(TryRecvError::Empty) => return Ok(n),
                // Unreachable while `self.done_tx` lives; kept as an error, not a panic.
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("tokio: completion channel closed"))
                }
            }
        }
    }
}

impl Recorder for TokioEngine {
    type Buf = AlignedBuf;

    fn caps(&self) -> &Caps {
        self.base.caps()
    }

    fn alloc_buf(&mut self, len: usize) -> Option<AlignedBuf> {
        self.base.alloc(len)
    }

    fn release_buf(&mut self, buf: AlignedBuf) {
        self.base.release(buf);
    }

    fn submit(&mut self, token: u64, op: Op<AlignedBuf>) -> Result<(), Op<AlignedBuf>> {
        let op = self.base.admit(self.in_flight(), op)?;
        let kind = op.kind();
        let ctx = exec::Target {
            dir: &self.dir,
            dir_fd: self.dir_file.as_raw_fd(),
            open_flags: self.open_flags,
            prealloc: self.prealloc,
        };
        let job: Job = match exec::translate(&ctx, &mut self.files, token, op) {
            Ok(job) => job,
            Err(done) => {
                let c = exec::finish(&mut self.files, done);
                self.ready.push(c);
                return Ok(());
            }
        };
        let tx = self.done_tx.clone();
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        // The JoinHandles are dropped: the completion travels through the channel instead.
        match self.bridge {
            Bridge::Channel => drop(rt.spawn_blocking(move || {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    exec::execute(token, job)
                }))
                .unwrap_or_else(|_| failed(token, kind, "blocking job panicked"));
                // Capacity `max_in_flight` is more than can be outstanding, so this never
                // finds the channel full; it fails only when the engine is gone.
                let _ = tx.try_send(done);
            })),
            Bridge::Task => drop(rt.spawn(async move {
                let done =
                    match tokio::task::spawn_blocking(move || exec::execute(token, job)).await {
                        Ok(done) => done,
                        Err(e) => failed(token, kind, &e.to_string()),
                    };
                let _ = tx.send(done).await;
            })),
        }
        self.spawned += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reap(
        &mut self,
        out: &mut Vec<Completion<AlignedBuf>>,
        deadline: Instant,
    ) -> io::Result<usize> {
        let mut n = self.ready.len();
        out.append(&mut self.ready);
        if self.spawned == 0 {
            return Ok(n);
        }
        n += self.take_ready(out)?;
        if n > 0 {
            return Ok(n);
        }
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        if Instant::now() < deadline {
            let rx = &mut self.done_rx;
            let got =
                rt.block_on(async { tokio::time::timeout_at(deadline.into(), rx.recv()).await });
            match got {
                Ok(Some(done)) => {
                    self.spawned -= 1;
                    out.push(exec::finish(&mut self.files, done));
                    n += 1;
                }
                Ok(None) => return Err(io::Error::other("tokio: completion channel closed")),
                Err(_elapsed) => {}
            }
        } else if self.flavor == Flavor::Current && self.bridge == Bridge::Task {
            // Past the deadline: never wait, but run the tasks whose blocking jobs finished
            // (a current-thread runtime runs them only inside `block_on`).
            rt.block_on(tokio::task::yield_now());
        }
        n += self.take_ready(out)?;
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.ready.len() + self.spawned
    }
}

/// The completion of a job that panicked: the op failed, and its buffer went with the job.
fn failed(token: u64, kind: crate::OpKind, why: &str) -> Done {
    Done {
        token,
        kind,
        res: Err(io::Error::other(format!("tokio: {why}"))),
        buf: None,
        opened: None,
    }
}

impl Drop for TokioEngine {
    fn drop(&mut self) {
        // Dropping the runtime waits for the blocking jobs already running (tokio cannot
        // cancel them) and drops those not started, so no job uses a descriptor closed below.
        drop(self.rt.take());
        for (_, fd) in self.files.drain() {
            let _ = exec::execute(0, Job::Close { fd });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs::parse_knobs;

    fn knobs(text: &str) -> Result<TokioKnobs, KnobError> {
        TokioKnobs::from_values(&parse_knobs("tokio", KNOBS, text)?)
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(knobs("").unwrap(), TokioKnobs::default());
        let k =
            knobs("flavor=multi,workers=4,max_blocking_threads=8,direct=true,bridge=task").unwrap();
        assert_eq!(k.flavor, Flavor::Multi);
        assert_eq!(k.bridge, Bridge::Task);
        assert_eq!(k.workers, 4);
        assert!(k.direct);
        assert_eq!(k.blocking_threads(256), 8);
        assert_eq!(TokioKnobs::default().blocking_threads(256), 256);
        assert_eq!(TokioKnobs::default().blocking_threads(4096), 512);
    }

    #[test]
    fn workers_without_multi_is_refused() {
        let e = knobs("workers=4").unwrap_err().to_string();
        assert!(e.contains("flavor=multi"), "{e}");
        assert!(knobs("flavor=multi,workers=4").is_ok());
    }
}
