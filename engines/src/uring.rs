//! `uring`: io_uring through the `io-uring` crate, O_DIRECT by default.
//!
//! Writes, reads and syncs (`IORING_OP_FSYNC` with DATASYNC; the directory sync too) go through
//! the ring; file creation, preallocation, close and unlink run synchronously in `submit` (they
//! are rare and not what the engine is measured on). Many SQEs are queued by `submit` and pushed
//! with one `io_uring_enter` per `flush`; `reap` walks the CQ without a syscall when completions
//! are there and waits with a timeout (EXT_ARG) only when idle. With SQPOLL the kernel thread
//! submits and `flush` enters only when the ring flags that the thread sleeps (the crate's
//! `submit` checks IORING_SQ_NEED_WAKEUP), and `cq_spin` makes `reap` spin on the CQ instead of
//! entering to wait (fio's wait with `sqthread_poll`); with TASKRUN_FLAG / DEFER_TASKRUN it enters with
//! GETEVENTS when task work is pending.
//!
//! Buffers are engine-owned aligned memory; with `fixed_buffers` they are registered once at
//! start and used with READ_FIXED / WRITE_FIXED. The kernel holds an op's buffer from submit
//! until its CQE: the buffer sits in the in-flight table meanwhile, and `Drop` waits for every
//! CQE before freeing anything.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

use crate::buf::AlignedBuf;
use crate::exec::{self, c_path, Job};
use crate::knobs::{declare_knobs, knob_in_use, KnobError};
use crate::placement::{describe, CpuMask, HelperCpus};
use crate::{
    file_name, Caps, Completion, Engine, EngineConfig, FastMap, Op, OpKind, ProbeResult, Recorder,
    RecorderFactory,
};

declare_knobs! {
    /// Parsed knobs of the `uring` engine.
    pub struct UringKnobs for "uring" {
        direct: bool = true, [bool],
            "O_DIRECT (false: buffered io_uring; the kernel punts writes to io-wq)";
        entries: u32 = 0, [0..=32768],
            "SQ entries (0 = the queue depth, rounded up to a power of two)";
        sqpoll: bool = false, [bool],
            "IORING_SETUP_SQPOLL: a kernel thread polls the SQ (its CPU counts in the results)";
        sqpoll_cpu: Option<u32> = none, [none | 0..=4095],
            "pin the SQPOLL thread to this CPU (IORING_SETUP_SQ_AFF)";
        sqpoll_idle_ms: u32 = 1000, [0..=600_000],
            "SQPOLL thread idle time before it sleeps, ms";
        cq_spin: bool = false, [bool],
            "wait for completions by spinning on the CQ in user space instead of entering the kernel (needs sqpoll; fio's sqthread_poll waits so; the worker's core stays busy)";
        iopoll: bool = false, [bool],
            "IORING_SETUP_IOPOLL: busy-poll completions (needs NVMe poll queues)";
        fixed_buffers: bool = false, [bool],
            "register the buffer pool; READ_FIXED / WRITE_FIXED";
        fixed_files: bool = false, [bool],
            "register files in a sparse table; SQEs use fixed file indexes";
        single_issuer: bool = false, [bool],
            "IORING_SETUP_SINGLE_ISSUER";
        defer_taskrun: bool = false, [bool],
            "IORING_SETUP_DEFER_TASKRUN (needs single_issuer; not with sqpoll)";
        coop_taskrun: bool = false, [bool],
            "IORING_SETUP_COOP_TASKRUN";
        taskrun_flag: bool = false, [bool],
            "IORING_SETUP_TASKRUN_FLAG: the ring flags pending task work";
        attach_wq: bool = false, [bool],
            "the rings of one run's workers share one io-wq (IORING_SETUP_ATTACH_WQ)";
        submit_all: bool = false, [bool],
            "IORING_SETUP_SUBMIT_ALL: keep submitting a batch past a failed SQE";
        no_sqarray: bool = false, [bool],
            "IORING_SETUP_NO_SQARRAY (Linux 6.6+)";
        iowq_cpus: HelperCpus = all, [choice],
            "where io-wq workers run (IORING_REGISTER_IOWQ_AFF): all = every CPU of the run; worker = the worker's CPU";
    }
    check = UringKnobs::check;
}

impl Engine for UringKnobs {
    const SUMMARY: &'static str = "io_uring (io-uring crate), O_DIRECT by default; batched submit, CQ reaped without a syscall";
    type Factory = UringFactory;

    fn factory(&self) -> UringFactory {
        UringFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    /// The engine itself, and every knob set to `true` or away from its default.
    fn uses(&self, what: &str) -> bool {
        what == "(engine)" || knob_in_use(KNOBS, &self.values(), what)
    }
    fn direct(&self) -> bool {
        self.direct
    }
    fn page_cache_reads(&self) -> bool {
        !self.direct
    }
}

impl UringKnobs {
    /// Refuses combinations the kernel rejects.
    fn check(&self) -> Result<(), KnobError> {
        let conflict = |reason: &str| {
            Err(KnobError::Conflict {
                engine: "uring",
                reason: reason.to_string(),
            })
        };
        if self.sqpoll && self.defer_taskrun {
            return conflict("sqpoll=true and defer_taskrun=true cannot be combined (the kernel answers EINVAL); drop one of them");
        }
        if self.defer_taskrun && !self.single_issuer {
            return conflict("defer_taskrun=true needs single_issuer=true (the kernel requires it); add single_issuer=true");
        }
        if self.sqpoll_cpu.is_some() && !self.sqpoll {
            return conflict("sqpoll_cpu needs sqpoll=true");
        }
        if self.cq_spin && !self.sqpoll {
            return conflict("cq_spin=true needs sqpoll=true (without the SQ thread, completions need this thread to enter the kernel); add sqpoll=true");
        }
        if self.entries != 0 && !self.entries.is_power_of_two() {
            return conflict("entries must be a power of two (or 0 for the queue depth)");
        }
        Ok(())
    }

    /// The ring builder for these knobs (`attach` = a ring fd whose io-wq to share).
    fn builder(&self, attach: Option<RawFd>) -> io_uring::Builder {
        let mut b = IoUring::builder();
        if self.sqpoll {
            b.setup_sqpoll(self.sqpoll_idle_ms);
            if let Some(cpu) = self.sqpoll_cpu {
                b.setup_sqpoll_cpu(cpu);
            }
        }
        if self.iopoll {
            b.setup_iopoll();
        }
        if self.single_issuer {
            b.setup_single_issuer();
        }
        if self.defer_taskrun {
            b.setup_defer_taskrun();
        }
        if self.coop_taskrun {
            b.setup_coop_taskrun();
        }
        if self.taskrun_flag {
            b.setup_taskrun_flag();
        }
        if self.submit_all {
            b.setup_submit_all();
        }
        if self.no_sqarray {
            b.setup_no_sqarray();
        }
        if let Some(fd) = attach {
            b.setup_attach_wq(fd);
        }
        b
    }
}

/// Build a small ring with one setup flag and report.
fn probe_flag(what: &str, knobs: &UringKnobs) -> ProbeResult {
    match knobs.builder(None).build(8) {
        Ok(_) => ProbeResult {
            what: what.into(),
            supported: true,
            detail: "ring setup accepted".into(),
        },
        Err(e) => ProbeResult {
            what: what.into(),
            supported: false,
            detail: format!("ring setup failed: {e}"),
        },
    }
}

/// Probe io_uring and every knob on this kernel and the filesystem of `dir`.
pub fn probe(dir: &Path) -> Vec<ProbeResult> {
    let base = crate::buffered::nearest_existing(dir);
    let mut out = Vec::new();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "absent".into());
    let ring = IoUring::new(8);
    out.push(match &ring {
        Ok(_) => ProbeResult {
            what: "(engine)".into(),
            supported: true,
            detail: format!("io_uring works (kernel.io_uring_disabled={disabled})"),
        },
        Err(e) => ProbeResult {
            what: "(engine)".into(),
            supported: false,
            detail: format!(
                "io_uring_setup failed: {e} (kernel.io_uring_disabled={disabled}); set it to 0 as root"
            ),
        },
    });
    let Ok(ring) = ring else { return out };
    let d = UringKnobs::default();
    // direct: an O_DIRECT write and read through the ring on the target filesystem.
    out.push(match io_roundtrip(&base, &d, true) {
        Ok(()) => ProbeResult {
            what: "direct".into(),
            supported: true,
            detail: format!(
                "O_DIRECT read/write through the ring work on {}",
                base.display()
            ),
        },
        Err(e) => ProbeResult {
            what: "direct".into(),
            supported: false,
            detail: format!(
                "O_DIRECT through the ring on {} failed: {e}",
                base.display()
            ),
        },
    });
    let flag = |name: &str, f: &dyn Fn(&mut UringKnobs)| {
        let mut k = d.clone();
        f(&mut k);
        probe_flag(name, &k)
    };
    out.push(flag("sqpoll", &|k| k.sqpoll = true));
    out.push(flag("sqpoll_cpu", &|k| {
        k.sqpoll = true;
        k.sqpoll_cpu = Some(0)
    }));
    out.push(ProbeResult {
        what: "sqpoll_idle_ms".into(),
        supported: true,
        detail: "taken with sqpoll".into(),
    });
    // IOPOLL: setup succeeds without poll queues, but every I/O then fails with EOPNOTSUPP.
    out.push({
        let mut k = d.clone();
        k.iopoll = true;
        match io_roundtrip(&base, &k, true) {
            Ok(()) => ProbeResult {
                what: "iopoll".into(),
                supported: true,
                detail: "polled O_DIRECT I/O completes".into(),
            },
            Err(e) => ProbeResult {
                what: "iopoll".into(),
                supported: false,
                detail: format!(
                    "a polled O_DIRECT read on {} failed: {e} — the device has no poll queues (NVMe poll_queues=0 or not NVMe)",
                    base.display()
                ),
            },
        }
    });
    out.push({
        let buf = AlignedBuf::new(4096, 4096);
        let iov = libc::iovec {
            iov_base: buf.as_ref().as_ptr() as *mut libc::c_void,
            iov_len: 4096,
        };
        // SAFETY: `buf` outlives the registration, which ends when `ring` is dropped below.
        let r = unsafe { ring.submitter().register_buffers(&[iov]) };
        let r = r.and_then(|_| ring.submitter().unregister_buffers());
        ProbeResult {
            what: "fixed_buffers".into(),
            supported: r.is_ok(),
            detail: match r {
                Ok(()) => format!("buffers register (RLIMIT_MEMLOCK {})", memlock_text()),
                Err(e) => format!(
                    "register_buffers failed: {e} (RLIMIT_MEMLOCK {})",
                    memlock_text()
                ),
            },
        }
    });
    out.push({
        let r = ring.submitter().register_files_sparse(8);
        ProbeResult {
            what: "fixed_files".into(),
            supported: r.is_ok(),
            detail: match r {
                Ok(()) => "sparse file table registers".into(),
                Err(e) => format!("register_files_sparse failed: {e}"),
            },
        }
    });
    out.push(flag("single_issuer", &|k| k.single_issuer = true));
    out.push(flag("defer_taskrun", &|k| {
        k.single_issuer = true;
        k.defer_taskrun = true
    }));
    out.push(flag("coop_taskrun", &|k| k.coop_taskrun = true));
    out.push(flag("taskrun_flag", &|k| {
        k.coop_taskrun = true;
        k.taskrun_flag = true
    }));
    out.push(match d.builder(Some(ring.as_raw_fd())).build(8) {
        Ok(_) => ProbeResult {
            what: "attach_wq".into(),
            supported: true,
            detail: "a second ring attaches to the first one's io-wq".into(),
        },
        Err(e) => ProbeResult {
            what: "attach_wq".into(),
            supported: false,
            detail: format!("ring setup with ATTACH_WQ failed: {e}"),
        },
    });
    out.push(flag("submit_all", &|k| k.submit_all = true));
    out.push(flag("no_sqarray", &|k| k.no_sqarray = true));
    out.push(ProbeResult {
        what: "entries".into(),
        supported: true,
        detail: "any power of two up to 32768".into(),
    });
    out
}

fn memlock_text() -> String {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return "unknown".into();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let lim = if r.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", r.rlim_cur / 1024)
    };
    if root {
        format!("{lim}; root is exempt")
    } else {
        lim
    }
}

/// Write and read back one block through a ring built from `knobs` on a temp file in `dir`.
fn io_roundtrip(dir: &Path, knobs: &UringKnobs, direct: bool) -> io::Result<()> {
    let path = dir.join(format!(".snapbench-uring-probe-{}", std::process::id()));
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(if direct { libc::O_DIRECT } else { 0 })
            .open(&path)?;
        let mut ring = knobs.builder(None).build(8)?;
        let mut buf = AlignedBuf::new(4096, 4096);
        buf.as_mut().fill(7);
        for (i, write) in [true, false].into_iter().enumerate() {
            let fd = types::Fd(f.as_raw_fd());
            let sqe = if write {
                opcode::Write::new(fd, buf.as_ref().as_ptr(), 4096).build()
            } else {
                opcode::Read::new(fd, buf.as_mut().as_mut_ptr(), 4096).build()
            }
            .user_data(i as u64);
            // SAFETY: `buf` lives until after the CQE is reaped below (submit_and_wait(1)).
            unsafe { ring.submission().push(&sqe) }
                .map_err(|_| io::Error::other("submission queue full"))?;
            ring.submit_and_wait(1)?;
            let mut cqe = ring.completion().next();
            for _ in 0..1000 {
                if cqe.is_some() {
                    break;
                }
                // IOPOLL completions appear only when the ring is polled.
                ring.submit_and_wait(1)?;
                cqe = ring.completion().next();
            }
            let cqe = cqe.ok_or_else(|| io::Error::other("no completion after 1000 polls"))?;
            if cqe.result() < 0 {
                return Err(io::Error::from_raw_os_error(-cqe.result()));
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// An engine buffer: aligned memory and, with fixed buffers, its registration index.
#[derive(Debug)]
pub struct UringBuf {
    buf: AlignedBuf,
    index: u16,
}

impl AsRef<[u8]> for UringBuf {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

impl AsMut<[u8]> for UringBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
}

/// Builds [`Uring`] engines.
#[derive(Clone, Debug)]
pub struct UringFactory(pub UringKnobs);

impl RecorderFactory for UringFactory {
    type R = Uring;
    fn build(&self, cfg: &EngineConfig) -> io::Result<Uring> {
        Uring::new(self.0.clone(), cfg)
    }
}

/// A file as SQEs address it.
#[derive(Clone, Copy, Debug)]
struct FileRef {
    fd: RawFd,
    fixed: Option<u32>,
    /// End of the furthest write submitted to the file (for [`WriteClass`]).
    write_hi: u64,
}

/// What a write covers relative to the writes before it on its file, put in bits 32..40 of the
/// SQE's user_data so the io_uring tracepoints (`io_uring_submit_req`,
/// `io_uring_queue_async_work`) can count io-wq punts per class (`bench/uring-punts.sh`); the
/// completion path reads only the low 32 bits (the slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteClass {
    /// Not a write.
    None = 0,
    /// Only bytes past every earlier write (fresh, preallocated blocks).
    Fresh = 1,
    /// Only bytes an earlier write covered (the rewritten tail block).
    Tail = 2,
    /// Starts inside earlier writes and runs on past them (tail block plus fresh blocks).
    TailAndFresh = 3,
}

impl WriteClass {
    /// The class of a write of `len` bytes at `offset`, where earlier writes reached `hi`.
    pub fn of(offset: u64, len: u64, hi: u64) -> WriteClass {
        if offset >= hi {
            WriteClass::Fresh
        } else if offset + len <= hi {
            WriteClass::Tail
        } else {
            WriteClass::TailAndFresh
        }
    }
}

/// An op the kernel holds (or that waits for a resubmission of its rest).
struct InFlight {
    token: u64,
    kind: OpKind,
    file: FileRef,
    offset: u64,
    /// Bytes already transferred (short transfers are completed by resubmitting the rest).
    done_bytes: usize,
    dsync: bool,
    buf: Option<UringBuf>,
    /// For the tracepoints (user_data bits 32..40).
    class: WriteClass,
}

/// The `uring` engine instance of one worker.
pub struct Uring {
    ring: IoUring,
    caps: Caps,
    knobs: UringKnobs,
    dir: PathBuf,
    dir_fd: OwnedFd,
    open_flags: i32,
    files: FastMap<FileRef>,
    fixed_free: Vec<u32>,
    free_bufs: Vec<UringBuf>,
    bufs_created: usize,
    align: usize,
    slots: Vec<Option<InFlight>>,
    free_slots: Vec<u32>,
    /// Ops in the kernel (SQEs pushed, CQE not yet seen).
    kernel_ops: usize,
    /// SQEs pushed since the last enter.
    unsubmitted: usize,
    /// Completions finished in `submit` or already taken from the CQ, not yet reaped.
    ready: Vec<Completion<UringBuf>>,
    /// How Create and Allocate give a log its blocks.
    prealloc: crate::Prealloc,
}

/// Places the ring's io-wq workers as `iowq_cpus` asks (IORING_REGISTER_IOWQ_AFF) and says
/// where they and the SQPOLL thread run. With `all`, a kernel that refuses the registration
/// (before Linux 5.14) leaves io-wq on the kernel's own mask, and the text says so; with
/// `worker` the refusal is an error, since the asked placement cannot be had.
fn place_iowq(ring: &IoUring, knobs: &UringKnobs) -> io::Result<String> {
    let mask = CpuMask::for_choice(knobs.iowq_cpus)
        .map_err(|e| io::Error::new(e.kind(), format!("uring: iowq_cpus: {e}")))?;
    let iowq = match ring.submitter().register_iowq_aff(&mask.0) {
        Ok(()) => format!("io-wq workers: {}", describe(knobs.iowq_cpus, &mask)),
        Err(e) if knobs.iowq_cpus == HelperCpus::All => {
            format!("io-wq workers: the kernel's mask (IORING_REGISTER_IOWQ_AFF refused: {e})")
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "uring: iowq_cpus=worker: IORING_REGISTER_IOWQ_AFF refused: {e} (needs Linux 5.14+); use iowq_cpus=all"
                ),
            ))
        }
    };
    Ok(if knobs.sqpoll {
        match knobs.sqpoll_cpu {
            Some(cpu) => format!("{iowq}; SQPOLL thread: CPU {cpu}"),
            None => format!("{iowq}; SQPOLL thread: the kernel's choice"),
        }
    } else {
        iowq
    })
}

impl Uring {
    /// Set up the ring, register buffers and files as the knobs ask.
    pub fn new(knobs: UringKnobs, cfg: &EngineConfig) -> io::Result<Uring> {
        let depth = cfg.queue_depth.max(1);
        let entries = if knobs.entries > 0 {
            knobs.entries
        } else {
            (depth as u32).next_power_of_two()
        };
        let ctx =
            |what: &str, e: io::Error| io::Error::new(e.kind(), format!("uring: {what}: {e}"));
        let ring = {
            let mut shared = cfg
                .shared
                .uring_wq_fd
                .lock()
                .map_err(|_| io::Error::other("uring: shared state poisoned"))?;
            let attach = if knobs.attach_wq {
                shared.as_ref().map(|fd| fd.as_raw_fd())
            } else {
                None
            };
            let ring = knobs
                .builder(attach)
                .build(entries)
                .map_err(|e| ctx("io_uring_setup", e))?;
            if knobs.attach_wq && shared.is_none() {
                // SAFETY: dup of a valid descriptor we own; the copy is owned by `shared`.
                let fd = unsafe { libc::fcntl(ring.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
                if fd >= 0 {
                    // SAFETY: `fd` was just returned by fcntl and is owned by nobody else.
                    *shared = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            ring
        };
        let helper_placement = place_iowq(&ring, &knobs)?;
        let dir_fd = std::fs::File::open(&cfg.dir)
            .map_err(|e| ctx(&format!("open directory {}", cfg.dir.display()), e))?
            .into();
        let align = if knobs.direct {
            cfg.dio_align_bytes.max(1)
        } else {
            1
        };
        let mut free_bufs = Vec::with_capacity(cfg.buf_count);
        let mut bufs_created = 0;
        if knobs.fixed_buffers {
            if cfg.buf_count > u16::MAX as usize {
                return Err(io::Error::other("uring: more than 65535 fixed buffers"));
            }
            for i in 0..cfg.buf_count {
                free_bufs.push(UringBuf {
                    // Registered buffers are page-aligned whatever the I/O alignment.
                    buf: AlignedBuf::new(
                        cfg.buf_bytes,
                        crate::buf::buffer_align_bytes(align).max(4096),
                    ),
                    index: i as u16,
                });
            }
            bufs_created = cfg.buf_count;
            let iovs: Vec<libc::iovec> = free_bufs
                .iter_mut()
                .map(|b| {
                    let cap = b.buf.capacity();
                    b.buf.set_len(cap);
                    libc::iovec {
                        iov_base: b.buf.as_mut().as_mut_ptr().cast(),
                        iov_len: cap,
                    }
                })
                .collect();
            // SAFETY: the buffers are owned by this engine for its whole life (they only move
            // between the free list and the in-flight table; their heap memory never moves or is
            // freed before the ring, which unregisters them, is dropped).
            unsafe { ring.submitter().register_buffers(&iovs) }.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "uring: registering {} buffers of {} bytes ({} KiB) failed: {e}; RLIMIT_MEMLOCK is {} — raise it (ulimit -l) or lower queue_depth / segment_bytes, or run without fixed_buffers",
                        cfg.buf_count,
                        cfg.buf_bytes,
                        cfg.buf_count * cfg.buf_bytes / 1024,
                        memlock_text()
                    ),
                )
            })?;
        }
        let mut fixed_free = Vec::new();
        if knobs.fixed_files {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the local struct.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
            let n = (r.rlim_cur.min(4096) as u32).max(64) - 32;
            ring.submitter()
                .register_files_sparse(n)
                .map_err(|e| ctx("register_files_sparse", e))?;
            fixed_free = (0..n).rev().collect();
        }
        Ok(Uring {
            caps: Caps {
                direct: knobs.direct,
                io_align_bytes: align,
                polls: knobs.iopoll,
                max_in_flight: depth.min(entries as usize * 2),
                helper_placement,
                ..Caps::new("uring", cfg)
            },
            ring,
            dir: cfg.dir.clone(),
            dir_fd,
            open_flags: if knobs.direct { libc::O_DIRECT } else { 0 },
            knobs,
            files: FastMap::default(),
            fixed_free,
            free_bufs,
            bufs_created,
            align: crate::buf::buffer_align_bytes(align),
            slots: Vec::with_capacity(depth),
            free_slots: Vec::with_capacity(depth),
            kernel_ops: 0,
            unsubmitted: 0,
            ready: Vec::with_capacity(depth),
            prealloc: cfg.shared.prealloc,
        })
    }

    fn buf_bytes(&self) -> usize {
        self.caps.buf_bytes
    }

    fn done_now(
        &mut self,
        token: u64,
        kind: OpKind,
        res: io::Result<usize>,
        buf: Option<UringBuf>,
    ) {
        self.ready.push(Completion {
            token,
            kind,
            res,
            buf,
        });
    }

    /// Build the SQE of an in-flight op (first submission, or the rest after a short transfer).
    fn sqe(&self, slot: u32, f: &InFlight) -> squeue::Entry {
        macro_rules! with_fd {
            ($file:expr, |$fd:ident| $e:expr) => {
                match $file.fixed {
                    Some(i) => {
                        let $fd = types::Fixed(i);
                        $e
                    }
                    None => {
                        let $fd = types::Fd($file.fd);
                        $e
                    }
                }
            };
        }
        let rw_flags = if f.dsync { libc::RWF_DSYNC } else { 0 };
        let entry = match f.kind {
            OpKind::Write | OpKind::Read => {
                let b = f.buf.as_ref().expect("read/write carry a buffer");
                let whole = b.buf.as_ref();
                // The rest of the transfer: pointer into the same registered buffer.
                let ptr = whole[f.done_bytes..].as_ptr();
                let len = (whole.len() - f.done_bytes) as u32;
                let off = f.offset + f.done_bytes as u64;
                let fixed = self.knobs.fixed_buffers;
                match (f.kind, fixed) {
                    (OpKind::Write, true) => {
                        with_fd!(f.file, |fd| opcode::WriteFixed::new(fd, ptr, len, b.index)
                            .offset(off)
                            .rw_flags(rw_flags)
                            .build())
                    }
                    (OpKind::Write, false) => {
                        with_fd!(f.file, |fd| opcode::Write::new(fd, ptr, len)
                            .offset(off)
                            .rw_flags(rw_flags)
                            .build())
                    }
                    (_, true) => with_fd!(f.file, |fd| opcode::ReadFixed::new(
                        fd,
                        ptr as *mut u8,
                        len,
                        b.index
                    )
                    .offset(off)
                    .build()),
                    (_, false) => with_fd!(f.file, |fd| opcode::Read::new(fd, ptr as *mut u8, len)
                        .offset(off)
                        .build()),
                }
            }
            OpKind::Sync => with_fd!(f.file, |fd| opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()),
            // The directory: a full fsync, through the ring.
            _ => opcode::Fsync::new(types::Fd(f.file.fd)).build(),
        };
        entry.user_data(u64::from(slot) | (u64::from(f.class as u8) << 32))
    }

    /// Push the SQE of `slot`; `false` when the SQ is full.
    fn push(&mut self, slot: u32) -> bool {
        let entry = {
            let f = self.slots[slot as usize].as_ref().expect("live slot");
            self.sqe(slot, f)
        };
        // SAFETY: every buffer the SQE points at is owned by the in-flight entry of `slot`,
        // which stays in `self.slots` until its CQE is reaped (and `Drop` waits for all CQEs),
        // so the memory outlives the kernel's use of it.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        if pushed {
            self.kernel_ops += 1;
            self.unsubmitted += 1;
        }
        pushed
    }

    fn take_slot(&mut self, f: InFlight) -> u32 {
        match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(f);
                s
            }
            None => {
                self.slots.push(Some(f));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn register_file(&mut self, file: u64, fd: RawFd) -> io::Result<()> {
        let fixed = if self.knobs.fixed_files {
            let Some(i) = self.fixed_free.pop() else {
                return Err(io::Error::other(
                    "uring: fixed file table full; run without fixed_files or with fewer matches per worker",
                ));
            };
            self.ring.submitter().register_files_update(i, &[fd])?;
            Some(i)
        } else {
            None
        };
        self.files.insert(
            file,
            FileRef {
                fd,
                fixed,
                write_hi: 0,
            },
        );
        Ok(())
    }

    fn unregister_file(&mut self, file: u64) -> Option<RawFd> {
        let f = self.files.remove(&file)?;
        if let Some(i) = f.fixed {
            let _ = self.ring.submitter().register_files_update(i, &[-1]);
            self.fixed_free.push(i);
        }
        Some(f.fd)
    }

    /// Open (or create) a file synchronously and register it.
    fn open_file(
        &mut self,
        token: u64,
        file: crate::MatchId,
        fk: crate::FileKind,
        flags: i32,
        prealloc_bytes: u64,
        kind: OpKind,
    ) -> io::Result<usize> {
        if self.files.contains_key(&file.0) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        let path = c_path(&self.dir.join(file_name(file, fk)))?;
        let d = exec::execute(
            token,
            Job::Open {
                file: file.0,
                path,
                flags: flags | self.open_flags,
                prealloc_bytes,
                prealloc: self.prealloc,
                kind,
            },
        );
        let (id, fd) = match (d.res, d.opened) {
            (Ok(_), Some(opened)) => opened,
            (Err(e), _) => return Err(e),
            (Ok(_), None) => return Err(io::Error::from_raw_os_error(libc::EIO)),
        };
        self.register_file(id, fd).inspect_err(|_| {
            // SAFETY: fd was just opened and is registered nowhere.
            unsafe { libc::close(fd) };
        })?;
        Ok(0)
    }

    /// Metadata ops, run synchronously.
    fn meta(&mut self, token: u64, op: Op<UringBuf>) {
        let kind = op.kind();
        let ebadf = || Err(io::Error::from_raw_os_error(libc::EBADF));
        let res: io::Result<usize> = match op {
            Op::Create {
                file,
                kind: fk,
                prealloc_bytes,
            } => self.open_file(
                token,
                file,
                fk,
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                prealloc_bytes,
                kind,
            ),
            Op::Open {
                file,
                kind: fk,
                writable,
            } => {
                let access = if writable {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                };
                self.open_file(token, file, fk, access, 0, kind)
            }
            Op::Allocate {
                file,
                offset,
                len_bytes,
            } => match self.files.get(&file.0) {
                Some(f) => {
                    exec::execute(
                        token,
                        Job::Allocate {
                            fd: f.fd,
                            offset,
                            len_bytes,
                            prealloc: self.prealloc,
                        },
                    )
                    .res
                }
                None => ebadf(),
            },
            Op::Close { file } => match self.unregister_file(file.0) {
                Some(fd) => exec::execute(token, Job::Close { fd }).res,
                None => ebadf(),
            },
            Op::Remove { file, kind: fk } => {
                let fd = self.unregister_file(file.0);
                match c_path(&self.dir.join(file_name(file, fk))) {
                    Ok(path) => exec::execute(token, Job::Remove { path, fd }).res,
                    Err(e) => Err(e),
                }
            }
            Op::Write { .. } | Op::Read { .. } | Op::Sync { .. } | Op::SyncDir => {
                unreachable!("data ops go through the ring")
            }
        };
        self.done_now(token, kind, res, None);
    }

    /// Handle one CQE: finish the op, or resubmit the rest of a short transfer.
    fn on_cqe(&mut self, slot: u32, res: i32) {
        self.kernel_ops -= 1;
        let f = self.slots[slot as usize]
            .as_mut()
            .expect("CQE for a live slot");
        if res == -libc::EAGAIN || res == -libc::EINTR {
            self.resubmit_or_park(slot);
            return;
        }
        if res < 0 {
            let f = self.slots[slot as usize].take().expect("live");
            self.free_slots.push(slot);
            self.done_now(
                f.token,
                f.kind,
                Err(io::Error::from_raw_os_error(-res)),
                f.buf,
            );
            return;
        }
        let n = res as usize;
        if matches!(f.kind, OpKind::Write | OpKind::Read) {
            let total = f.buf.as_ref().map_or(0, |b| b.buf.len());
            f.done_bytes += n;
            let eof = f.kind == OpKind::Read && n == 0;
            if f.done_bytes < total && !eof {
                if f.kind == OpKind::Write && n == 0 {
                    let f = self.slots[slot as usize].take().expect("live");
                    self.free_slots.push(slot);
                    self.done_now(
                        f.token,
                        f.kind,
                        Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "write returned 0 bytes",
                        )),
                        f.buf,
                    );
                    return;
                }
                self.resubmit_or_park(slot);
                return;
            }
            let f = self.slots[slot as usize].take().expect("live");
            self.free_slots.push(slot);
            self.done_now(f.token, f.kind, Ok(f.done_bytes), f.buf);
        } else {
            let f = self.slots[slot as usize].take().expect("live");
            self.free_slots.push(slot);
            self.done_now(f.token, f.kind, Ok(0), None);
        }
    }

    fn resubmit_or_park(&mut self, slot: u32) {
        if !self.push(slot) {
            // SQ full: make room (enter, or wait for the SQPOLL thread) and try once more.
            let _ = self.make_sq_room();
            if !self.push(slot) {
                let f = self.slots[slot as usize].take().expect("live");
                self.free_slots.push(slot);
                self.done_now(
                    f.token,
                    f.kind,
                    Err(io::Error::other(
                        "uring: no SQ room to resubmit the rest of a short transfer",
                    )),
                    f.buf,
                );
            }
        }
    }

    /// The SQ is full: submit what is queued, and with SQPOLL wait until the kernel thread has
    /// taken entries (IORING_ENTER_SQ_WAIT). With SQPOLL a full SQ is normal for a moment: the
    /// thread may post an op's CQE before it moves the SQ head past that op's SQE, so a
    /// completion can be reaped while its SQE still fills the ring. Entering without SQ_WAIT
    /// would not change that, and handing the op back then made the micro driver end a run
    /// with nothing in flight (issue 13's "stall").
    fn make_sq_room(&mut self) -> io::Result<()> {
        self.enter_submit()?;
        if self.knobs.sqpoll && self.ring.submission().is_full() {
            // Wakes the thread if it sleeps (the crate checks NEED_WAKEUP after a full fence).
            match self.ring.submit() {
                Ok(_) => self.unsubmitted = 0,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("uring: wake SQ thread: {e}"),
                    ))
                }
            }
            while self.ring.submission().is_full() {
                match self.ring.submitter().squeue_wait() {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("uring: wait for SQ room: {e}"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    fn enter_submit(&mut self) -> io::Result<()> {
        let pending_taskrun = self.ring.submission().taskrun();
        if self.unsubmitted == 0 && !pending_taskrun {
            return Ok(());
        }
        match self.ring.submit() {
            Ok(_) => {
                self.unsubmitted = 0;
                Ok(())
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    || e.raw_os_error() == Some(libc::EAGAIN) =>
            {
                Ok(())
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("uring: io_uring_enter: {e}"),
            )),
        }
    }

    /// Move every CQE there is into `ready`.
    fn drain_cq(&mut self) -> usize {
        let mut n = 0;
        loop {
            let next = self.ring.completion().next();
            let Some(cqe) = next else { break };
            self.on_cqe(cqe.user_data() as u32, cqe.result());
            n += 1;
        }
        n
    }

    /// Enter with GETEVENTS to run deferred task work / poll, without waiting.
    fn poll_kernel(&mut self) -> io::Result<()> {
        if self.knobs.defer_taskrun || self.knobs.iopoll || self.ring.submission().taskrun() {
            // SAFETY: enter without an argument pointer.
            let r = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(0, 0, io_uring_sys_getevents(), None)
            };
            if let Err(e) = r {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// IORING_ENTER_GETEVENTS.
const fn io_uring_sys_getevents() -> u32 {
    1
}

impl Recorder for Uring {
    type Buf = UringBuf;

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc_buf(&mut self, len: usize) -> Option<UringBuf> {
        if len > self.buf_bytes() {
            return None;
        }
        let mut b = match self.free_bufs.pop() {
            Some(b) => b,
            None if !self.knobs.fixed_buffers && self.bufs_created < self.caps.buf_count => {
                self.bufs_created += 1;
                UringBuf {
                    buf: AlignedBuf::new(self.caps.buf_bytes, self.align),
                    index: 0,
                }
            }
            None => return None,
        };
        b.buf.set_len(len);
        Some(b)
    }

    fn release_buf(&mut self, buf: UringBuf) {
        if buf.buf.capacity() == self.caps.buf_bytes {
            self.free_bufs.push(buf);
        }
    }

    fn submit(&mut self, token: u64, op: Op<UringBuf>) -> Result<(), Op<UringBuf>> {
        let op = self.caps.admit(self.in_flight(), op)?;
        let kind = op.kind();
        let (file, offset, buf, dsync) = match op {
            Op::Write {
                file,
                offset,
                buf,
                dsync,
            } => (Some(file), offset, Some(buf), dsync),
            Op::Read { file, offset, buf } => (Some(file), offset, Some(buf), false),
            Op::Sync { file } => (Some(file), 0, None, false),
            Op::SyncDir => (None, 0, None, false),
            other => {
                self.meta(token, other);
                return Ok(());
            }
        };
        if self.ring.submission().is_full() {
            // Make room (enter; with SQPOLL wait for the thread); if still full, hand it back.
            if self.make_sq_room().is_err() || self.ring.submission().is_full() {
                return Err(match (kind, buf) {
                    (OpKind::Write, Some(buf)) => Op::Write {
                        file: file.expect("write has a file"),
                        offset,
                        buf,
                        dsync,
                    },
                    (OpKind::Read, Some(buf)) => Op::Read {
                        file: file.expect("read has a file"),
                        offset,
                        buf,
                    },
                    (OpKind::Sync, _) => Op::Sync {
                        file: file.expect("sync has a file"),
                    },
                    _ => Op::SyncDir,
                });
            }
        }
        let mut class = WriteClass::None;
        let fref = match file {
            Some(f) => match self.files.get_mut(&f.0) {
                Some(r) => {
                    if let (OpKind::Write, Some(b)) = (kind, buf.as_ref()) {
                        let len = b.buf.len() as u64;
                        class = WriteClass::of(offset, len, r.write_hi);
                        // The SQ has room (checked above), so the write goes out now.
                        r.write_hi = r.write_hi.max(offset + len);
                    }
                    *r
                }
                None => {
                    self.done_now(
                        token,
                        kind,
                        Err(io::Error::from_raw_os_error(libc::EBADF)),
                        buf,
                    );
                    return Ok(());
                }
            },
            None => FileRef {
                fd: self.dir_fd.as_raw_fd(),
                fixed: None,
                write_hi: 0,
            },
        };
        let slot = self.take_slot(InFlight {
            token,
            kind,
            file: fref,
            offset,
            done_bytes: 0,
            dsync,
            buf,
            class,
        });
        let pushed = self.push(slot);
        debug_assert!(pushed, "SQ had room");
        if !pushed {
            let f = self.slots[slot as usize].take().expect("live");
            self.free_slots.push(slot);
            self.done_now(
                f.token,
                f.kind,
                Err(io::Error::other("uring: SQ full")),
                f.buf,
            );
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.enter_submit()
    }

    fn reap(
        &mut self,
        out: &mut Vec<Completion<UringBuf>>,
        deadline: Instant,
    ) -> io::Result<usize> {
        let before = out.len();
        self.drain_cq();
        if self.knobs.cq_spin && self.ready.is_empty() && self.kernel_ops > 0 {
            // fio's wait with sqthread_poll: the SQ thread submits and posts completions, so
            // walk the CQ until one is there (checking the clock every 64 turns).
            let mut turns = 0u32;
            while self.ready.is_empty() && self.kernel_ops > 0 {
                self.enter_submit()?;
                if self.drain_cq() > 0 {
                    break;
                }
                turns = turns.wrapping_add(1);
                if turns % 64 == 0 && Instant::now() >= deadline {
                    break;
                }
                std::hint::spin_loop();
            }
        } else if self.ready.is_empty() && self.kernel_ops > 0 && deadline > Instant::now() {
            // Submit what is queued and wait for a completion in one io_uring_enter (fio's
            // queue-then-getevents costs the same single syscall).
            while self.ready.is_empty() && self.kernel_ops > 0 {
                let now = Instant::now();
                if deadline <= now {
                    break;
                }
                let wait = deadline - now;
                let ts = types::Timespec::new()
                    .sec(wait.as_secs())
                    .nsec(wait.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                match self.ring.submitter().submit_with_args(1, &args) {
                    Ok(_) => self.unsubmitted = 0,
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                        ) =>
                    {
                        self.unsubmitted = 0
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("uring: wait: {e}"))),
                }
                self.drain_cq();
            }
        } else {
            // Not waiting: push anything queued, run pending task work, take what is there.
            self.enter_submit()?;
            if self.ready.is_empty() && self.kernel_ops > 0 {
                self.poll_kernel()?;
                self.drain_cq();
            }
        }
        if self.unsubmitted > 0 {
            self.enter_submit()?;
        }
        out.append(&mut self.ready);
        Ok(out.len() - before)
    }

    fn in_flight(&self) -> usize {
        self.kernel_ops + self.ready.len()
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The kernel may still write into buffers of ops in flight: wait for every CQE before
        // any buffer is freed.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut sink = Vec::new();
        while self.kernel_ops > 0 && Instant::now() < deadline {
            if self.reap(&mut sink, deadline).is_err() {
                break;
            }
            sink.clear();
        }
        if self.kernel_ops > 0 {
            // Never free memory the kernel may still use: leak the in-flight buffers.
            for f in self.slots.drain(..).flatten() {
                std::mem::forget(f.buf);
            }
        }
        let ids: Vec<u64> = self.files.keys().copied().collect();
        for id in ids {
            if let Some(fd) = self.unregister_file(id) {
                // SAFETY: descriptors this engine opened; no op is in flight any more.
                unsafe { libc::close(fd) };
            }
        }
    }
}
