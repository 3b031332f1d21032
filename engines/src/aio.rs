//! `aio`: Linux native AIO (the libaio path), raw syscalls through `libc` — no AIO crate is
//! maintained, so the kernel ABI structs are defined here with the kernel's layout.
//!
//! `submit` fills an iocb in a preallocated slab (its buffer stays in the slab until its event
//! arrives), `flush` pushes every queued iocb in as few `io_submit` calls as possible, and `reap`
//! collects `io_event`s with `io_getevents` — or, with `user_reap=true`, straight from the AIO
//! completion ring mapped at the context address, without a syscall, as SPDK's aio bdev does.
//! Metadata ops (create, open, allocate, close, remove, sync_dir) run synchronously inside
//! `submit`; writes, reads and syncs (`IOCB_CMD_FDSYNC`) go through the kernel's AIO.
//!
//! Without O_DIRECT the kernel runs `io_submit` synchronously: the numbers then measure a
//! blocking `pwrite`, and [`warnings`] says so.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::buf::AlignedBuf;
use crate::buffered::nearest_existing;
use crate::exec::{self, c_path, FdTable};
use crate::knobs::declare_knobs;
use crate::{
    Caps, Completion, Engine, EngineBase, EngineConfig, Op, OpKind, ProbeResult, Recorder,
    RecorderFactory,
};

declare_knobs! {
    /// Parsed knobs of the `aio` engine.
    pub struct AioKnobs for "aio" {
        direct: bool = true, [bool],
            "open files with O_DIRECT (without it io_submit runs synchronously)";
        user_reap: bool = false, [bool],
            "reap completions from the AIO ring in user space, without a syscall (SPDK's aio bdev)";
    }
}

impl Engine for AioKnobs {
    const SUMMARY: &'static str =
        "Linux native AIO (libaio-equivalent, raw syscalls), O_DIRECT by default";
    type Factory = AioFactory;

    fn factory(&self) -> AioFactory {
        AioFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    fn uses(&self, what: &str) -> bool {
        (what != "direct" || self.direct) && (what != "user_reap" || self.user_reap)
    }
    fn direct(&self) -> bool {
        self.direct
    }
    fn page_cache_reads(&self) -> bool {
        !self.direct
    }
    fn warnings(&self) -> Vec<String> {
        warnings(self)
    }
}

/// Caveats of a variant that runs but measures something other than its name suggests.
pub fn warnings(k: &AioKnobs) -> Vec<String> {
    let mut w = Vec::new();
    if !k.direct {
        w.push(
            "aio:direct=false: without O_DIRECT the kernel runs io_submit synchronously; \
             the numbers measure a blocking pwrite"
                .to_string(),
        );
    }
    w
}

// ---------------------------------------------------------------------------------------------
// Kernel ABI (include/uapi/linux/aio_abi.h, fs/aio.c). libc has `iocb` for glibc targets only
// (with a private padding field) and no `io_event` or ring header, so all three are defined here.

/// `struct iocb` (64 bytes). Field order for little-endian targets (`aio_key`, then
/// `aio_rw_flags`); big-endian swaps those two.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Iocb {
    aio_data: u64,
    #[cfg(target_endian = "little")]
    aio_key: u32,
    #[cfg(target_endian = "little")]
    aio_rw_flags: i32,
    #[cfg(target_endian = "big")]
    aio_rw_flags: i32,
    #[cfg(target_endian = "big")]
    aio_key: u32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `struct io_event` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const _: () = assert!(std::mem::size_of::<Iocb>() == 64);
const _: () = assert!(std::mem::size_of::<IoEvent>() == 32);
const _: () = assert!(std::mem::offset_of!(Iocb, aio_lio_opcode) == 16);
const _: () = assert!(std::mem::offset_of!(Iocb, aio_fildes) == 20);
const _: () = assert!(std::mem::offset_of!(Iocb, aio_buf) == 24);
const _: () = assert!(std::mem::offset_of!(Iocb, aio_nbytes) == 32);
const _: () = assert!(std::mem::offset_of!(Iocb, aio_offset) == 40);
const _: () = assert!(std::mem::offset_of!(Iocb, aio_flags) == 56);
const _: () = assert!(std::mem::offset_of!(IoEvent, res) == 16);

const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;
const IOCB_CMD_FDSYNC: u16 = 3;

/// `struct aio_ring` header (fs/aio.c), 32 bytes, followed by `nr` io_events: byte offsets.
const RING_NR: usize = 4;
const RING_HEAD: usize = 8;
const RING_TAIL: usize = 12;
const RING_MAGIC: usize = 16;
const RING_INCOMPAT: usize = 24;
const RING_HEADER_LENGTH: usize = 28;
/// `AIO_RING_MAGIC`.
const AIO_RING_MAGIC: u32 = 0xa10a_10a1;

type AioContext = libc::c_ulong;

fn sys_ret(r: libc::c_long) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn io_setup(nr_events: u32) -> io::Result<AioContext> {
    let mut ctx: AioContext = 0;
    // SAFETY: `ctx` is a live local the kernel writes the context id into during the call; it
    // must be zero on entry, which it is.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_setup,
            nr_events as libc::c_long,
            &mut ctx as *mut AioContext,
        )
    };
    sys_ret(r).map(|_| ctx)
}

fn io_destroy(ctx: AioContext) -> io::Result<()> {
    // SAFETY: plain syscall on a context id; the kernel waits for in-flight requests and then
    // unmaps the ring, which nothing reads afterwards (the id is forgotten by every caller).
    sys_ret(unsafe { libc::syscall(libc::SYS_io_destroy, ctx) }).map(|_| ())
}

/// `io_submit(ctx, ptrs.len(), ptrs)`: the number of iocbs accepted, from the front.
fn io_submit(ctx: AioContext, ptrs: &mut [*mut Iocb]) -> io::Result<usize> {
    // SAFETY: `ptrs` is a live slice of pointers into the engine's iocb slab (or a probe's
    // local iocb), all valid for the call: the kernel copies each iocb during io_submit and
    // keeps none of them. The buffers they name are kept alive by their owners until the
    // matching io_event is reaped (see `Aio` and `probe_io`).
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_submit,
            ctx,
            ptrs.len() as libc::c_long,
            ptrs.as_mut_ptr(),
        )
    };
    sys_ret(r)
}

/// `io_getevents(ctx, min_nr, events.len(), events, timeout)`; `timeout` None blocks.
fn io_getevents(
    ctx: AioContext,
    min_nr: usize,
    events: &mut [IoEvent],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let mut ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_mut()
        .map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
    // SAFETY: `events` is a live exclusive slice the kernel writes at most `events.len()`
    // io_events into during the call; `ts_ptr` is null or points at the live local `ts`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            ctx,
            min_nr as libc::c_long,
            events.len() as libc::c_long,
            events.as_mut_ptr(),
            ts_ptr,
        )
    };
    sys_ret(r)
}

/// The AIO completion ring mapped at the context address (user-space reaping).
struct Ring {
    base: *mut u8,
}

impl Ring {
    /// The ring of `ctx`, if its header has the magic and no incompatible features.
    ///
    /// # Safety
    /// `ctx` must be a live AIO context of this process (its ring stays mapped until
    /// `io_destroy`), and the returned `Ring` must not be used after that.
    unsafe fn of(ctx: AioContext) -> Result<Ring, String> {
        let ring = Ring {
            base: ctx as usize as *mut u8,
        };
        let magic = ring.word(RING_MAGIC).load(Ordering::Acquire);
        if magic != AIO_RING_MAGIC {
            return Err(format!(
                "the AIO ring header at the context address has magic {magic:#x}, not {AIO_RING_MAGIC:#x}"
            ));
        }
        let incompat = ring.word(RING_INCOMPAT).load(Ordering::Acquire);
        if incompat != 0 {
            return Err(format!(
                "the AIO ring declares incompatible features {incompat:#x}"
            ));
        }
        let hl = ring.word(RING_HEADER_LENGTH).load(Ordering::Acquire) as usize;
        if hl < 32 || hl % std::mem::align_of::<IoEvent>() != 0 {
            return Err(format!("the AIO ring header length is {hl}"));
        }
        Ok(ring)
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `base` is the page-aligned ring mapping (alive while the context lives, see
        // `of`), `offset` is one of the 4-byte-aligned header fields inside its first page, and
        // the kernel accesses these words as plain u32 (head under its ring lock, which is only
        // taken inside io_getevents on this same thread).
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    /// Copy up to `out.len()` events from the ring and advance its head; the count copied.
    fn reap(&self, out: &mut [IoEvent]) -> usize {
        let nr = self.word(RING_NR).load(Ordering::Relaxed);
        let head = self.word(RING_HEAD).load(Ordering::Relaxed);
        // Acquire: the kernel fills an io_event, then publishes it by storing tail (after an
        // smp_wmb); reading tail with acquire makes those event bytes visible to the copies.
        let tail = self.word(RING_TAIL).load(Ordering::Acquire);
        if nr == 0 || head >= nr || tail >= nr || head == tail {
            return 0;
        }
        let avail = if tail > head {
            tail - head
        } else {
            nr - head + tail
        } as usize;
        let count = avail.min(out.len());
        let hl = self.word(RING_HEADER_LENGTH).load(Ordering::Relaxed) as usize;
        let events = self.base.wrapping_add(hl) as *const IoEvent;
        let mut h = head as usize;
        for slot in out.iter_mut().take(count) {
            // SAFETY: `h < nr`, and the mapping holds `nr` io_events after the header (the
            // kernel sized it so); the ring stays mapped while the context lives. The kernel
            // does not write an event between head and tail until head moves past it.
            *slot = unsafe { std::ptr::read_volatile(events.add(h)) };
            h += 1;
            if h == nr as usize {
                h = 0;
            }
        }
        // Release: the copies above complete before the kernel can see the slots as free.
        self.word(RING_HEAD).store(h as u32, Ordering::Release);
        count
    }
}

// ---------------------------------------------------------------------------------------------
// Probe

fn errno_advice(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => {
            let read = |p: &str| {
                std::fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into())
            };
            format!(
                "io_setup failed: {e}: the system-wide AIO event limit is used up (fs.aio-nr = {} \
                 of fs.aio-max-nr = {}); raise it, e.g. `sysctl -w fs.aio-max-nr=1048576`",
                read("/proc/sys/fs/aio-nr"),
                read("/proc/sys/fs/aio-max-nr")
            )
        }
        Some(libc::ENOSYS) => {
            format!("io_setup failed: {e}: this kernel was built without CONFIG_AIO")
        }
        Some(libc::EPERM) => format!(
            "io_setup failed: {e}: blocked by a seccomp filter or container policy; allow the \
             io_* syscalls"
        ),
        _ => format!("io_setup failed: {e}"),
    }
}

/// A context destroyed on drop (probes only).
struct ProbeCtx(AioContext);

impl Drop for ProbeCtx {
    fn drop(&mut self) {
        // io_destroy waits for any request still in flight, so the probe's buffers (dropped
        // after this) are never freed under the kernel.
        let _ = io_destroy(self.0);
    }
}

/// Submit one iocb and wait (at most 5 s) for its event; the event's `res`.
fn probe_io(ctx: &ProbeCtx, mut iocb: Iocb) -> io::Result<i64> {
    let mut ptrs = [&mut iocb as *mut Iocb];
    let n = io_submit(ctx.0, &mut ptrs)?;
    if n != 1 {
        return Err(io::Error::other("io_submit accepted nothing"));
    }
    let mut ev = [IoEvent::default()];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match io_getevents(ctx.0, 1, &mut ev, Some(left)) {
            Ok(1) => return Ok(ev[0].res),
            Ok(_) if left.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no AIO completion within 5 s",
                ))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn res_to_io(res: i64, what: &str) -> io::Result<i64> {
    if res < 0 {
        Err(io::Error::new(
            io::Error::from_raw_os_error((-res) as i32).kind(),
            format!(
                "{what} completed with {}",
                io::Error::from_raw_os_error((-res) as i32)
            ),
        ))
    } else {
        Ok(res)
    }
}

/// An open probe file, unlinked and closed on drop.
struct ProbeFile {
    fd: RawFd,
    path: PathBuf,
}

impl ProbeFile {
    fn open(base: &Path, tag: &str, extra_flags: i32) -> io::Result<ProbeFile> {
        let path = base.join(format!(
            ".snapbench-aio-probe-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let c = c_path(&path)?;
        // SAFETY: `c` is a NUL-terminated path alive for the call.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | extra_flags,
                0o600,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ProbeFile { fd, path })
    }
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        // SAFETY: the descriptor was opened in `open` and is closed once.
        unsafe { libc::close(self.fd) };
        let _ = std::fs::remove_file(&self.path);
    }
}

fn probe_direct(ctx: &ProbeCtx, base: &Path) -> io::Result<()> {
    let f = ProbeFile::open(base, "direct", libc::O_DIRECT)?;
    let mut wbuf = AlignedBuf::new(4096, 4096);
    for (i, b) in wbuf.as_mut().iter_mut().enumerate() {
        *b = (i % 251) as u8 ^ 0x5a;
    }
    let mut rbuf = AlignedBuf::new(4096, 4096);
    let w = Iocb {
        aio_lio_opcode: IOCB_CMD_PWRITE,
        aio_fildes: f.fd as u32,
        aio_buf: wbuf.as_ref().as_ptr() as u64,
        aio_nbytes: 4096,
        ..Iocb::default()
    };
    // `wbuf` and `rbuf` outlive `ctx`'s use here: probe_io waits for the event (or the probe
    // context's io_destroy, which waits for the request, runs before they are dropped).
    let n = res_to_io(probe_io(ctx, w)?, "an O_DIRECT AIO write")?;
    if n != 4096 {
        return Err(io::Error::other(format!(
            "an O_DIRECT AIO write of 4096 bytes wrote {n}"
        )));
    }
    let r = Iocb {
        aio_lio_opcode: IOCB_CMD_PREAD,
        aio_fildes: f.fd as u32,
        aio_buf: rbuf.as_mut().as_mut_ptr() as u64,
        aio_nbytes: 4096,
        ..Iocb::default()
    };
    let n = res_to_io(probe_io(ctx, r)?, "an O_DIRECT AIO read")?;
    if n != 4096 || rbuf.as_ref() != wbuf.as_ref() {
        return Err(io::Error::other(
            "an O_DIRECT AIO read did not return the bytes written",
        ));
    }
    Ok(())
}

fn probe_fdsync(ctx: &ProbeCtx, base: &Path) -> io::Result<()> {
    let f = ProbeFile::open(base, "fdsync", 0)?;
    let s = Iocb {
        aio_lio_opcode: IOCB_CMD_FDSYNC,
        aio_fildes: f.fd as u32,
        ..Iocb::default()
    };
    res_to_io(probe_io(ctx, s)?, "IOCB_CMD_FDSYNC").map(|_| ())
}

/// Probe AIO on this kernel and the filesystem of `dir` (or its nearest existing ancestor):
/// rows `(engine)`, `direct`, `user_reap`, `fdsync`.
pub fn probe(dir: &Path) -> Vec<ProbeResult> {
    let row = |what: &str, r: Result<String, String>| match r {
        Ok(detail) => ProbeResult {
            what: what.into(),
            supported: true,
            detail,
        },
        Err(detail) => ProbeResult {
            what: what.into(),
            supported: false,
            detail,
        },
    };
    let ctx = match io_setup(8) {
        Ok(c) => ProbeCtx(c),
        Err(e) => {
            let why = errno_advice(&e);
            return ["(engine)", "direct", "user_reap", "fdsync"]
                .iter()
                .map(|w| row(w, Err(why.clone())))
                .collect();
        }
    };
    let base = nearest_existing(dir);
    let mut out = vec![row(
        "(engine)",
        Ok("io_setup/io_submit/io_getevents through raw syscalls".into()),
    )];
    out.push(row(
        "direct",
        probe_direct(&ctx, &base)
            .map(|()| {
                format!(
                    "O_DIRECT write+read through AIO works on {}",
                    base.display()
                )
            })
            .map_err(|e| {
                format!(
                    "O_DIRECT AIO on {} failed: {e}; use a filesystem that supports direct I/O \
                     (ext4, xfs) or aio:direct=false",
                    base.display()
                )
            }),
    ));
    // SAFETY: `ctx` is a live context of this process; the Ring is dropped at the end of this
    // statement, before `ctx`'s io_destroy.
    let ring = unsafe { Ring::of(ctx.0) };
    out.push(row(
        "user_reap",
        ring.map(|_| {
            format!("the AIO ring header (magic {AIO_RING_MAGIC:#x}) is readable at the context address")
        }),
    ));
    out.push(row(
        "fdsync",
        probe_fdsync(&ctx, &base)
            .map(|()| format!("IOCB_CMD_FDSYNC is accepted on {}", base.display()))
            .map_err(|e| {
                format!(
                    "IOCB_CMD_FDSYNC on {} failed: {e}; this kernel or filesystem has no AIO \
                     fsync (Linux >= 4.18 needed)",
                    base.display()
                )
            }),
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// The engine

/// Builds [`Aio`] engines.
#[derive(Clone, Debug)]
pub struct AioFactory(pub AioKnobs);

impl RecorderFactory for AioFactory {
    type R = Aio;
    fn build(&self, cfg: &EngineConfig) -> io::Result<Aio> {
        Aio::new(self.0.clone(), cfg)
    }
}

/// Retries of one op after -EAGAIN / -EINTR completions before it fails.
const MAX_RETRIES: u32 = 1000;

/// One op in flight: everything needed to complete it or resubmit its rest.
#[derive(Debug)]
struct Slot {
    token: u64,
    kind: OpKind,
    /// The op's buffer: the kernel reads from / writes into its heap memory while the iocb is
    /// in flight, so it stays here (neither moved out nor dropped) until the event arrives.
    buf: Option<AlignedBuf>,
    fd: RawFd,
    offset: u64,
    /// Bytes transferred so far (short transfers are resubmitted from here).
    done: usize,
    dsync: bool,
    retries: u32,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            token: 0,
            kind: OpKind::Sync,
            buf: None,
            fd: -1,
            offset: 0,
            done: 0,
            dsync: false,
            retries: 0,
        }
    }
}

/// The `aio` engine instance of one worker.
pub struct Aio {
    base: EngineBase,
    ctx: AioContext,
    /// The user-space view of the completion ring (`user_reap`).
    ring: Option<Ring>,
    dir: PathBuf,
    dir_fd: RawFd,
    open_flags: i32,
    /// How Create and Allocate give a log its blocks.
    prealloc: crate::Prealloc,
    files: FdTable,
    /// Completions finished inside `submit` / `flush` (metadata ops, rejected iocbs).
    ready: Vec<Completion<AlignedBuf>>,
    /// The slab: one slot and one iocb per op in flight, indexed by `aio_data`.
    slots: Box<[Slot]>,
    iocbs: Box<[Iocb]>,
    free: Vec<u32>,
    /// Slots whose iocb is prepared but not yet accepted by io_submit, in order.
    pending: VecDeque<u32>,
    /// Scratch iocb pointer array for io_submit.
    ptrs: Vec<*mut Iocb>,
    /// Scratch event array for io_getevents / ring reaping.
    events: Box<[IoEvent]>,
    /// iocbs accepted by io_submit whose event has not been reaped.
    in_kernel: usize,
    user_reaped: u64,
    reap_syscalls: u64,
}

impl Aio {
    /// Open the engine on `cfg.dir`: one AIO context of `cfg.queue_depth` events.
    pub fn new(knobs: AioKnobs, cfg: &EngineConfig) -> io::Result<Aio> {
        let depth = cfg.queue_depth.max(1);
        let ctx = io_setup(depth as u32)
            .map_err(|e| io::Error::new(e.kind(), format!("aio: {}", errno_advice(&e))))?;
        let ring = if knobs.user_reap {
            // SAFETY: `ctx` was just created; the Ring lives in the engine, which calls
            // io_destroy only in Drop, after which the Ring is never used.
            match unsafe { Ring::of(ctx) } {
                Ok(r) => Some(r),
                Err(why) => {
                    let _ = io_destroy(ctx);
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("aio:user_reap=true: {why}"),
                    ));
                }
            }
        } else {
            None
        };
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
            let _ = io_destroy(ctx);
            return Err(io::Error::new(
                e.kind(),
                format!("aio: open directory {}: {e}", cfg.dir.display()),
            ));
        }
        let align = if knobs.direct {
            cfg.dio_align_bytes.max(1)
        } else {
            1
        };
        Ok(Aio {
            base: EngineBase::new(Caps {
                direct: knobs.direct,
                io_align_bytes: align,
                ..Caps::new("aio", cfg)
            }),
            ctx,
            ring,
            dir: cfg.dir.clone(),
            dir_fd,
            open_flags: if knobs.direct { libc::O_DIRECT } else { 0 },
            prealloc: cfg.shared.prealloc,
            files: FdTable::default(),
            ready: Vec::with_capacity(depth),
            slots: (0..depth).map(|_| Slot::empty()).collect(),
            iocbs: vec![Iocb::default(); depth].into_boxed_slice(),
            free: (0..depth as u32).rev().collect(),
            pending: VecDeque::with_capacity(depth),
            ptrs: Vec::with_capacity(depth),
            events: vec![IoEvent::default(); depth].into_boxed_slice(),
            in_kernel: 0,
            user_reaped: 0,
            reap_syscalls: 0,
        })
    }

    /// Events reaped from the user-space ring without a syscall (`user_reap=true`).
    pub fn user_reaped(&self) -> u64 {
        self.user_reaped
    }

    /// `io_getevents` calls made by `reap` (including the non-blocking ones).
    pub fn reap_syscalls(&self) -> u64 {
        self.reap_syscalls
    }

    fn fail(
        token: u64,
        kind: OpKind,
        buf: Option<AlignedBuf>,
        errno: i32,
    ) -> Completion<AlignedBuf> {
        Completion {
            token,
            kind,
            res: Err(io::Error::from_raw_os_error(errno)),
            buf,
        }
    }

    /// Fill slot `s`'s iocb for the rest of its op (from `done` on).
    fn prepare(&mut self, s: u32) {
        let slot = &mut self.slots[s as usize];
        let iocb = &mut self.iocbs[s as usize];
        *iocb = Iocb {
            aio_data: u64::from(s),
            aio_fildes: slot.fd as u32,
            ..Iocb::default()
        };
        match slot.kind {
            OpKind::Sync => iocb.aio_lio_opcode = IOCB_CMD_FDSYNC,
            OpKind::Write => {
                let buf = slot.buf.as_ref().expect("a write holds its buffer");
                let rest = &buf.as_ref()[slot.done..];
                iocb.aio_lio_opcode = IOCB_CMD_PWRITE;
                // The kernel reads `rest` after io_submit returns, until the event arrives:
                // the AlignedBuf stays in this slot until then, and its heap memory does not
                // move even if the AlignedBuf value were moved.
                iocb.aio_buf = rest.as_ptr() as u64;
                iocb.aio_nbytes = rest.len() as u64;
                iocb.aio_offset = (slot.offset + slot.done as u64) as i64;
                if slot.dsync {
                    iocb.aio_rw_flags = libc::RWF_DSYNC;
                }
            }
            OpKind::Read => {
                let buf = slot.buf.as_mut().expect("a read holds its buffer");
                let rest = &mut buf.as_mut()[slot.done..];
                iocb.aio_lio_opcode = IOCB_CMD_PREAD;
                // As for writes: the kernel writes into `rest` until the event arrives, and the
                // buffer stays in the slot (heap memory fixed) until then.
                iocb.aio_buf = rest.as_mut_ptr() as u64;
                iocb.aio_nbytes = rest.len() as u64;
                iocb.aio_offset = (slot.offset + slot.done as u64) as i64;
            }
            _ => unreachable!("only I/O ops use slots"),
        }
    }

    /// Complete slot `s` with `res`, freeing the slot (the kernel no longer holds its buffer).
    fn complete(&mut self, s: u32, res: io::Result<usize>) -> Completion<AlignedBuf> {
        let slot = &mut self.slots[s as usize];
        let c = Completion {
            token: slot.token,
            kind: slot.kind,
            res,
            buf: slot.buf.take(),
        };
        slot.fd = -1;
        self.free.push(s);
        c
    }

    /// Push every pending iocb to the kernel in as few io_submit calls as possible. EAGAIN
    /// (or ENOMEM) keeps the rest queued for the next flush; any other error fails the iocb it
    /// names (the first not accepted) through `ready` and goes on with the rest.
    fn push_pending(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            self.ptrs.clear();
            let base = self.iocbs.as_mut_ptr();
            for &s in &self.pending {
                // SAFETY: `s < iocbs.len()` (slot indices come from the slab), so the pointer
                // stays inside the boxed slice, which is never reallocated.
                self.ptrs.push(unsafe { base.add(s as usize) });
            }
            match io_submit(self.ctx, &mut self.ptrs) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.in_kernel += n;
                    self.pending.drain(..n);
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOMEM) => return Ok(()),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOSYS) => return Err(e),
                    Some(errno) => {
                        let s = self.pending.pop_front().expect("pending is not empty");
                        let c = self.complete(s, Err(io::Error::from_raw_os_error(errno)));
                        self.ready.push(c);
                    }
                    None => return Err(e),
                },
            }
        }
        Ok(())
    }

    /// Handle one io_event: a completion, or a resubmission of the op's rest.
    fn on_event(&mut self, ev: IoEvent, out: &mut Vec<Completion<AlignedBuf>>) -> usize {
        let s = ev.data as u32;
        if s as usize >= self.slots.len() {
            return 0; // not ours (cannot happen: every iocb carries its slot)
        }
        self.in_kernel -= 1;
        let res = ev.res;
        let align = self.base.caps().io_align_bytes as u64;
        let slot = &mut self.slots[s as usize];
        let transient = res == -i64::from(libc::EAGAIN) || res == -i64::from(libc::EINTR);
        if transient && slot.retries < MAX_RETRIES {
            slot.retries += 1;
            self.prepare(s);
            self.pending.push_back(s);
            return 0;
        }
        let result = if res < 0 {
            Err(io::Error::from_raw_os_error((-res) as i32))
        } else {
            let len = slot.buf.as_ref().map_or(0, |b| b.len());
            slot.done += res as usize;
            match slot.kind {
                OpKind::Sync => Ok(0),
                _ if slot.done >= len => Ok(len.min(slot.done)),
                OpKind::Write if res == 0 => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("aio: write returned 0 bytes after {} of {len}", slot.done),
                )),
                // EOF, or (O_DIRECT) a short read that stopped at an unaligned end of file.
                OpKind::Read if res == 0 || (slot.offset + slot.done as u64) % align != 0 => {
                    Ok(slot.done)
                }
                _ => {
                    // Short transfer: resubmit the rest.
                    self.prepare(s);
                    self.pending.push_back(s);
                    return 0;
                }
            }
        };
        let c = self.complete(s, result);
        out.push(c);
        1
    }

    /// Collect events: without a syscall from the user-space ring when it has some, else with
    /// io_getevents, waiting at most `wait` (None = do not wait). Completions go to `out`.
    fn harvest(
        &mut self,
        out: &mut Vec<Completion<AlignedBuf>>,
        wait: Option<Duration>,
    ) -> io::Result<usize> {
        if self.in_kernel == 0 {
            return Ok(0);
        }
        let mut events = std::mem::take(&mut self.events);
        let cap = events.len().min(self.in_kernel);
        let mut got = match &self.ring {
            Some(ring) => {
                let n = ring.reap(&mut events[..cap]);
                self.user_reaped += n as u64;
                n
            }
            None => 0,
        };
        let mut err = None;
        if got == 0 && (self.ring.is_none() || wait.is_some()) {
            self.reap_syscalls += 1;
            let (min_nr, timeout) = match wait {
                Some(d) => (1, d),
                None => (0, Duration::ZERO),
            };
            match io_getevents(self.ctx, min_nr, &mut events[..cap], Some(timeout)) {
                Ok(n) => got = n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => err = Some(e),
            }
        }
        let mut n = 0;
        for ev in &events[..got] {
            n += self.on_event(*ev, out);
        }
        self.events = events;
        if let Some(e) = err {
            return Err(e);
        }
        if !self.pending.is_empty() {
            self.push_pending()?;
        }
        Ok(n)
    }

    /// Wait (bounded) for every iocb the kernel holds, so no buffer is freed under it.
    fn wait_kernel(&mut self, limit: Duration) {
        let give_up = Instant::now() + limit;
        let mut events = std::mem::take(&mut self.events);
        while self.in_kernel > 0 && Instant::now() < give_up {
            let cap = events.len().min(self.in_kernel);
            match io_getevents(
                self.ctx,
                1,
                &mut events[..cap],
                Some(Duration::from_millis(100)),
            ) {
                Ok(n) => {
                    for ev in &events[..n] {
                        let s = ev.data as usize;
                        if s < self.slots.len() {
                            self.in_kernel -= 1;
                            // The kernel is done with this buffer: return it to the pool.
                            if let Some(b) = self.slots[s].buf.take() {
                                self.base.release(b);
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.events = events;
    }
}

impl Recorder for Aio {
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
        let (fd_file, buf, offset, dsync) = match op {
            Op::Write {
                file,
                offset,
                buf,
                dsync,
            } => (file, Some(buf), offset, dsync),
            Op::Read { file, offset, buf } => (file, Some(buf), offset, false),
            Op::Sync { file } => (file, None, 0, false),
            meta => {
                // Metadata ops run synchronously, through the executor `buffered` uses.
                let target = exec::Target {
                    dir: &self.dir,
                    dir_fd: self.dir_fd,
                    open_flags: self.open_flags,
                    prealloc: self.prealloc,
                };
                let done = match exec::translate(&target, &mut self.files, token, meta) {
                    Ok(job) => exec::execute(token, job),
                    Err(done) => done,
                };
                let c = exec::finish(&mut self.files, done);
                self.ready.push(c);
                return Ok(());
            }
        };
        let Some(&fd) = self.files.get(&fd_file.0) else {
            self.ready.push(Self::fail(token, kind, buf, libc::EBADF));
            return Ok(());
        };
        let s = self
            .free
            .pop()
            .expect("in_flight < max_in_flight leaves a free slot");
        let slot = &mut self.slots[s as usize];
        slot.token = token;
        slot.kind = kind;
        slot.buf = buf;
        slot.fd = fd;
        slot.offset = offset;
        slot.done = 0;
        slot.dsync = dsync;
        slot.retries = 0;
        self.prepare(s);
        self.pending.push_back(s);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push_pending()
    }

    fn reap(
        &mut self,
        out: &mut Vec<Completion<AlignedBuf>>,
        deadline: Instant,
    ) -> io::Result<usize> {
        // Queued work (ops not flushed yet, retries, iocbs refused with EAGAIN) goes first,
        // so a reap never waits for something the kernel has not been given.
        if !self.pending.is_empty() {
            self.push_pending()?;
        }
        let mut n = self.ready.len();
        out.append(&mut self.ready);
        n += self.harvest(out, None)?;
        while n == 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.in_kernel == 0 {
                if self.pending.is_empty() {
                    break;
                }
                // io_submit refused with EAGAIN and nothing is in flight to free room: back
                // off briefly (never past the deadline) and try again.
                std::thread::sleep((deadline - now).min(Duration::from_micros(100)));
                self.push_pending()?;
            } else {
                n += self.harvest(out, Some(deadline - now))?;
            }
            n += self.ready.len();
            out.append(&mut self.ready);
        }
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.ready.len() + (self.slots.len() - self.free.len())
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // Queued iocbs never reached the kernel; their buffers are simply dropped below.
        self.pending.clear();
        // Wait for what the kernel holds (io_cancel is not implemented for regular files, so
        // waiting is the only way), then io_destroy, which itself blocks until every request
        // of the context has completed.
        self.wait_kernel(Duration::from_secs(60));
        self.ring = None;
        let destroyed = io_destroy(self.ctx).is_ok();
        if !destroyed && self.in_kernel > 0 {
            // The kernel may still write into these buffers: leak them rather than free them.
            for slot in self.slots.iter_mut() {
                if let Some(b) = slot.buf.take() {
                    std::mem::forget(b);
                }
            }
        }
        for (_, fd) in self.files.drain() {
            // SAFETY: descriptors opened by this engine, closed once; the context is gone.
            unsafe { libc::close(fd) };
        }
        // SAFETY: the directory descriptor was opened in `new` and is closed once.
        unsafe { libc::close(self.dir_fd) };
    }
}
