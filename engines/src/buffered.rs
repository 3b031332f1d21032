//! `buffered`: pwrite / pread / fdatasync, blocking in the worker thread — the page-cache path
//! most recorders start with. `direct=true` opens files with O_DIRECT (fio's `psync
//! --direct=1`); `threads=N` runs the blocking calls on a bounded pool of N threads so a
//! buffered recorder can have N I/Os in flight (fio's `--numjobs`, tokio's blocking pool).

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::buf::AlignedBuf;
use crate::exec::{self, c_path, Done, FdTable, Job};
use crate::knobs::declare_knobs;
use crate::placement::{describe, CpuMask, HelperCpus};
use crate::{
    Caps, Completion, Engine, EngineBase, EngineConfig, Op, OpKind, ProbeResult, Recorder,
    RecorderFactory,
};

declare_knobs! {
    /// Parsed knobs of the `buffered` engine.
    pub struct BufferedKnobs for "buffered" {
        direct: bool = false, [bool],
            "open files with O_DIRECT (aligned buffers; fio's psync --direct=1)";
        threads: u32 = 0, [0..=1024],
            "0 = block in the worker; N = a bounded pool of N threads doing the blocking calls";
        pool_cpus: HelperCpus = all, [choice],
            "where the pool threads run: all = every CPU of the run; worker = the worker's CPU";
    }
}

impl Engine for BufferedKnobs {
    const SUMMARY: &'static str = "pwrite/pread/fdatasync, blocking in the worker (or a bounded pool); page cache or O_DIRECT";
    type Factory = BufferedFactory;

    fn factory(&self) -> BufferedFactory {
        BufferedFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    fn uses(&self, what: &str) -> bool {
        what != "direct" || self.direct
    }
    fn direct(&self) -> bool {
        self.direct
    }
    fn page_cache_reads(&self) -> bool {
        !self.direct
    }
}

/// Probe O_DIRECT support on the filesystem of `dir` (or its nearest existing ancestor).
pub fn probe(dir: &Path) -> Vec<ProbeResult> {
    let mut out = vec![ProbeResult {
        what: "(engine)".into(),
        supported: true,
        detail: "pwrite/pread/fdatasync are always available".into(),
    }];
    let base = nearest_existing(dir);
    let path = base.join(format!(".snapbench-probe-{}", std::process::id()));
    let direct = (|| -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        let buf = AlignedBuf::new(4096, 4096);
        use std::os::fd::AsRawFd;
        let r = exec::write_all_at(f.as_raw_fd(), buf.as_ref(), 0, false);
        drop(f);
        let _ = std::fs::remove_file(&path);
        r.map(|_| ())
    })();
    out.push(match direct {
        Ok(()) => ProbeResult {
            what: "direct".into(),
            supported: true,
            detail: format!("O_DIRECT works on {}", base.display()),
        },
        Err(e) => ProbeResult {
            what: "direct".into(),
            supported: false,
            detail: format!(
                "O_DIRECT write on {} failed: {e}; use a filesystem that supports direct I/O (ext4, xfs)",
                base.display()
            ),
        },
    });
    out.push(ProbeResult {
        what: "threads".into(),
        supported: true,
        detail: "a bounded pool of std threads".into(),
    });
    out
}

/// The nearest existing ancestor of `path` (itself if it exists; `.` as a last resort).
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    loop {
        if p.exists() {
            return p;
        }
        if !p.pop() || p.as_os_str().is_empty() {
            return PathBuf::from(".");
        }
    }
}

/// Builds [`Buffered`] engines.
#[derive(Clone, Debug)]
pub struct BufferedFactory(pub BufferedKnobs);

impl RecorderFactory for BufferedFactory {
    type R = Buffered;
    fn build(&self, cfg: &EngineConfig) -> io::Result<Buffered> {
        Buffered::new(self.0.clone(), cfg)
    }
}

struct Pool {
    jobs: Option<SyncSender<(u64, Job)>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

/// The `buffered` engine instance of one worker.
pub struct Buffered {
    base: EngineBase,
    dir: PathBuf,
    dir_fd: RawFd,
    open_flags: i32,
    /// How Create and Allocate give a log its blocks.
    prealloc: crate::Prealloc,
    files: FdTable,
    /// Completions finished inside `submit` (inline mode, or immediate errors), not yet reaped.
    ready: Vec<Completion<AlignedBuf>>,
    pool: Option<Pool>,
    /// Ops handed to the pool and not yet reaped.
    pool_in_flight: usize,
}

impl Buffered {
    /// Open the engine on `cfg.dir`.
    pub fn new(knobs: BufferedKnobs, cfg: &EngineConfig) -> io::Result<Buffered> {
        let dir_c = c_path(&cfg.dir)?;
        // SAFETY: `dir_c` is a NUL-terminated path alive for the call.
        let dir_fd = unsafe {
            libc::open(
                dir_c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if dir_fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("buffered: open directory {}: {e}", cfg.dir.display()),
            ));
        }
        let align = if knobs.direct {
            cfg.dio_align_bytes.max(1)
        } else {
            1
        };
        let queue_depth = cfg.queue_depth.max(1);
        let mut placement = "none (I/O blocks in the worker thread)".to_string();
        let pool = if knobs.threads > 0 {
            let mask = CpuMask::for_choice(knobs.pool_cpus)
                .map_err(|e| io::Error::new(e.kind(), format!("buffered: pool_cpus: {e}")))?;
            mask.verify()
                .map_err(|e| io::Error::new(e.kind(), format!("buffered: pool_cpus: {e}")))?;
            placement = format!(
                "buffered pool, {} threads: {}",
                knobs.threads,
                describe(knobs.pool_cpus, &mask)
            );
            let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Job)>(queue_depth);
            let (done_tx, done_rx) = mpsc::sync_channel::<Done>(queue_depth);
            let job_rx = Arc::new(Mutex::new(job_rx));
            let mut threads = Vec::with_capacity(knobs.threads as usize);
            for i in 0..knobs.threads {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                let t = std::thread::Builder::new()
                    .name(format!("sb-io-{}-{i}", cfg.worker))
                    .spawn(move || {
                        // Checked by `verify` above; the thread has nowhere to report.
                        let _ = mask.apply_to_current_thread();
                        loop {
                            let next = match rx.lock() {
                                Ok(guard) => guard.recv(),
                                Err(_) => return,
                            };
                            let Ok((token, job)) = next else { return };
                            if tx.send(exec::execute(token, job)).is_err() {
                                return;
                            }
                        }
                    })?;
                threads.push(t);
            }
            Some(Pool {
                jobs: Some(job_tx),
                done: done_rx,
                threads,
            })
        } else {
            None
        };
        Ok(Buffered {
            base: EngineBase::new(Caps {
                direct: knobs.direct,
                io_align_bytes: align,
                synchronous: pool.is_none(),
                helper_placement: placement,
                ..Caps::new("buffered", cfg)
            }),
            dir: cfg.dir.clone(),
            dir_fd,
            open_flags: if knobs.direct { libc::O_DIRECT } else { 0 },
            prealloc: cfg.shared.prealloc,
            files: FdTable::default(),
            ready: Vec::with_capacity(queue_depth),
            pool,
            pool_in_flight: 0,
        })
    }

    /// Resolve files and paths; ops that cannot start (file not open) finish at once.
    fn translate(&mut self, token: u64, op: Op<AlignedBuf>) -> Result<Job, Done> {
        let ctx = exec::Target {
            dir: &self.dir,
            dir_fd: self.dir_fd,
            open_flags: self.open_flags,
            prealloc: self.prealloc,
        };
        exec::translate(&ctx, &mut self.files, token, op)
    }

    fn finish(&mut self, done: Done) -> Completion<AlignedBuf> {
        exec::finish(&mut self.files, done)
    }
}

impl Recorder for Buffered {
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
        let job = match self.translate(token, op) {
            Ok(job) => job,
            Err(done) => {
                let c = self.finish(done);
                self.ready.push(c);
                return Ok(());
            }
        };
        match &self.pool {
            None => {
                let done = exec::execute(token, job);
                let c = self.finish(done);
                self.ready.push(c);
            }
            Some(pool) => {
                let sent = pool.jobs.as_ref().map(|tx| tx.send((token, job)));
                match sent {
                    Some(Ok(())) => self.pool_in_flight += 1,
                    // The pool is gone (a thread panicked): fail the op, returning its buffer.
                    Some(Err(mpsc::SendError((token, job)))) => {
                        let buf = match job {
                            Job::Write { buf, .. } | Job::Read { buf, .. } => Some(buf),
                            _ => None,
                        };
                        let c = self.finish(exec::fail(token, OpKind::Write, buf, libc::EIO));
                        self.ready.push(c);
                    }
                    None => unreachable!("pool sender only taken in drop"),
                }
            }
        }
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
        if self.pool.is_none() {
            return Ok(n);
        }
        loop {
            let pool = self.pool.as_ref().expect("pool checked above");
            let now = Instant::now();
            let got = if n == 0 && self.pool_in_flight > 0 && deadline > now {
                match pool.done.recv_timeout(deadline - now) {
                    Ok(d) => Some(d),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(io::Error::other("buffered: I/O thread pool died"))
                    }
                }
            } else {
                match pool.done.try_recv() {
                    Ok(d) => Some(d),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        return Err(io::Error::other("buffered: I/O thread pool died"))
                    }
                }
            };
            let Some(done) = got else { break };
            self.pool_in_flight -= 1;
            let c = self.finish(done);
            out.push(c);
            n += 1;
        }
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.ready.len() + self.pool_in_flight
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        if let Some(mut pool) = self.pool.take() {
            pool.jobs.take();
            for t in pool.threads.drain(..) {
                let _ = t.join();
            }
        }
        for (_, fd) in self.files.drain() {
            // SAFETY: descriptors opened by this engine; the pool threads have exited.
            unsafe { libc::close(fd) };
        }
        // SAFETY: the directory descriptor was opened in `new` and is closed once.
        unsafe { libc::close(self.dir_fd) };
    }
}
