//! Blocking execution of ops with positioned syscalls, shared by the `buffered` engine's inline
//! mode and its thread pool (and by later blocking-pool engines).

use std::collections::HashMap;
use std::ffi::CString;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::buf::AlignedBuf;
use crate::{file_name, Completion, Op, OpKind, Prealloc};

/// A multiplicative hasher for `u64` ids (no SipHash cost per op).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A hash map keyed by `u64` ids with [`IdHasher`].
pub type FastMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Open files by id.
pub(crate) type FdTable = FastMap<RawFd>;

/// An op translated for a blocking executor: files resolved to descriptors, paths built.
pub(crate) enum Job {
    Open {
        file: u64,
        path: CString,
        flags: i32,
        prealloc_bytes: u64,
        prealloc: Prealloc,
        kind: OpKind,
    },
    Allocate {
        fd: RawFd,
        offset: u64,
        len_bytes: u64,
        prealloc: Prealloc,
    },
    Write {
        fd: RawFd,
        offset: u64,
        buf: AlignedBuf,
        dsync: bool,
    },
    Read {
        fd: RawFd,
        offset: u64,
        buf: AlignedBuf,
    },
    Sync {
        fd: RawFd,
        kind: OpKind,
    },
    Close {
        fd: RawFd,
    },
    Remove {
        path: CString,
        fd: Option<RawFd>,
    },
}

/// A finished job.
pub(crate) struct Done {
    pub token: u64,
    pub kind: OpKind,
    pub res: io::Result<usize>,
    pub buf: Option<AlignedBuf>,
    /// For Create/Open: the file id and its new descriptor.
    pub opened: Option<(u64, RawFd)>,
}

/// `path` as a C string (paths with NUL bytes are rejected).
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cvt(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

fn retry<F: FnMut() -> libc::ssize_t>(mut f: F) -> io::Result<usize> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            r => return r,
        }
    }
}

/// Write all of `data` at `offset`, completing short writes; `dsync` uses RWF_DSYNC.
pub(crate) fn write_all_at(fd: RawFd, data: &[u8], offset: u64, dsync: bool) -> io::Result<usize> {
    let mut done = 0usize;
    while done < data.len() {
        let rest = &data[done..];
        let off = (offset + done as u64) as libc::off_t;
        let n = retry(|| {
            if dsync {
                let iov = libc::iovec {
                    iov_base: rest.as_ptr() as *mut libc::c_void,
                    iov_len: rest.len(),
                };
                // SAFETY: `iov` points into `rest`, a live borrow of the caller's buffer that
                // outlives this blocking call; the kernel only reads from it during the call.
                unsafe { libc::pwritev2(fd, &iov, 1, off, libc::RWF_DSYNC) }
            } else {
                // SAFETY: `rest` is a live borrowed slice for the whole blocking call; the
                // kernel reads at most `rest.len()` bytes from it.
                unsafe { libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), off) }
            }
        })?;
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

/// Read into `data` at `offset` until it is full or end of file; returns the bytes read.
pub(crate) fn read_full_at(fd: RawFd, data: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0usize;
    while done < data.len() {
        let rest = &mut data[done..];
        let off = (offset + done as u64) as libc::off_t;
        // SAFETY: `rest` is a live exclusive borrow for the whole blocking call; the kernel
        // writes at most `rest.len()` bytes into it.
        let n = retry(|| unsafe { libc::pread(fd, rest.as_mut_ptr().cast(), rest.len(), off) })?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn check(ret: libc::c_int) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(0)
    }
}

/// `FALLOC_FL_WRITE_ZEROES` (Linux 6.17; not in every libc yet).
pub(crate) const FALLOC_FL_WRITE_ZEROES: libc::c_int = 0x80;

fn fallocate_mode(fd: RawFd, mode: libc::c_int, offset: u64, len_bytes: u64) -> io::Result<usize> {
    loop {
        // SAFETY: plain syscall on a descriptor; no memory is shared with the kernel.
        let r =
            unsafe { libc::fallocate(fd, mode, offset as libc::off_t, len_bytes as libc::off_t) };
        match check(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Give `[offset, offset + len_bytes)` of the file its blocks, as `how` says.
pub(crate) fn allocate(fd: RawFd, offset: u64, len_bytes: u64, how: Prealloc) -> io::Result<usize> {
    match how {
        Prealloc::Fallocate => fallocate_mode(fd, 0, offset, len_bytes),
        Prealloc::WriteZeroes => fallocate_mode(fd, FALLOC_FL_WRITE_ZEROES, offset, len_bytes)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("fallocate(FALLOC_FL_WRITE_ZEROES): {e} (needs Linux 6.17+ and a device that zeroes without writing; use prealloc=zeroed)"),
                )
            }),
        Prealloc::Zeroed => {
            fallocate_mode(fd, 0, offset, len_bytes)?;
            write_zeros_direct(fd, offset, len_bytes)
        }
    }
}

/// Try `how` on a 64 KiB file in `dir` (made and removed here): the error a run would meet.
pub fn probe_prealloc(dir: &Path, how: Prealloc) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".snapbench-prealloc-probe");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let r = allocate(f.as_raw_fd(), 0, 64 << 10, how).map(|_| ());
    drop(f);
    let _ = std::fs::remove_file(&path);
    r
}

/// Write zeros over the range through a second, O_DIRECT descriptor of the same file (the
/// engine's own may be buffered), so no page of it is left in the page cache.
fn write_zeros_direct(fd: RawFd, offset: u64, len_bytes: u64) -> io::Result<usize> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const CHUNK: usize = 1 << 20;
    const ALIGN: u64 = 4096;
    if offset % ALIGN != 0 || len_bytes % ALIGN != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prealloc=zeroed: range {offset}+{len_bytes} is not in whole 4 KiB blocks"),
        ));
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{fd}"))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("prealloc=zeroed: reopen with O_DIRECT: {e}"),
            )
        })?;
    // One zeroed buffer per preallocation (a rare op: one per prealloc_bytes of log).
    let zeros = AlignedBuf::new(CHUNK.min(len_bytes as usize).max(1), ALIGN as usize);
    let mut at = offset;
    let end = offset + len_bytes;
    while at < end {
        let n = (end - at).min(zeros.as_ref().len() as u64) as usize;
        f.write_all_at(&zeros.as_ref()[..n], at).map_err(|e| {
            io::Error::new(e.kind(), format!("prealloc=zeroed: write at {at}: {e}"))
        })?;
        at += n as u64;
    }
    Ok(0)
}

fn close(fd: RawFd) -> io::Result<usize> {
    // SAFETY: the descriptor was opened by this engine and is removed from its table before
    // the close, so nothing else uses it.
    check(unsafe { libc::close(fd) })
}

/// Run one job to completion on the calling thread.
pub(crate) fn execute(token: u64, job: Job) -> Done {
    let mut done = Done {
        token,
        kind: OpKind::Write,
        res: Ok(0),
        buf: None,
        opened: None,
    };
    match job {
        Job::Open {
            file,
            path,
            flags,
            prealloc_bytes,
            prealloc,
            kind,
        } => {
            done.kind = kind;
            // SAFETY: `path` is a NUL-terminated string alive for the call.
            let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
            if fd < 0 {
                done.res = Err(io::Error::last_os_error());
            } else if prealloc_bytes > 0 {
                match allocate(fd, 0, prealloc_bytes, prealloc) {
                    Ok(_) => done.opened = Some((file, fd)),
                    Err(e) => {
                        let _ = close(fd);
                        done.res = Err(e);
                    }
                }
            } else {
                done.opened = Some((file, fd));
            }
        }
        Job::Allocate {
            fd,
            offset,
            len_bytes,
            prealloc,
        } => {
            done.kind = OpKind::Allocate;
            done.res = allocate(fd, offset, len_bytes, prealloc);
        }
        Job::Write {
            fd,
            offset,
            buf,
            dsync,
        } => {
            done.kind = OpKind::Write;
            done.res = write_all_at(fd, buf.as_ref(), offset, dsync);
            done.buf = Some(buf);
        }
        Job::Read {
            fd,
            offset,
            mut buf,
        } => {
            done.kind = OpKind::Read;
            done.res = read_full_at(fd, buf.as_mut(), offset);
            done.buf = Some(buf);
        }
        Job::Sync { fd, kind } => {
            done.kind = kind;
            loop {
                // SAFETY: plain syscall on a descriptor this engine owns.
                let r = if kind == OpKind::SyncDir {
                    unsafe { libc::fsync(fd) }
                } else {
                    unsafe { libc::fdatasync(fd) }
                };
                match check(r) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => {
                        done.res = r;
                        break;
                    }
                }
            }
        }
        Job::Close { fd } => {
            done.kind = OpKind::Close;
            done.res = close(fd);
        }
        Job::Remove { path, fd } => {
            done.kind = OpKind::Remove;
            if let Some(fd) = fd {
                let _ = close(fd);
            }
            // SAFETY: `path` is a NUL-terminated string alive for the call.
            done.res = check(unsafe { libc::unlink(path.as_ptr()) });
        }
    }
    done
}

/// Where an engine's files live, for [`translate`].
pub(crate) struct Target<'a> {
    /// The engine's directory.
    pub dir: &'a Path,
    /// Its open descriptor (for SyncDir).
    pub dir_fd: RawFd,
    /// Extra open flags (O_DIRECT).
    pub open_flags: i32,
    /// How Create and Allocate give a log its blocks.
    pub prealloc: Prealloc,
}

/// A failed op, finished without reaching the kernel.
pub(crate) fn fail(token: u64, kind: OpKind, buf: Option<AlignedBuf>, errno: i32) -> Done {
    Done {
        token,
        kind,
        res: Err(io::Error::from_raw_os_error(errno)),
        buf,
        opened: None,
    }
}

/// Resolve files and paths of an op for a blocking executor; ops that cannot start (file not
/// open, already open, bad path) finish at once with their error.
pub(crate) fn translate(
    t: &Target<'_>,
    files: &mut FdTable,
    token: u64,
    op: Op<AlignedBuf>,
) -> Result<Job, Done> {
    let kind = op.kind();
    let fd_of = |files: &FdTable, id: u64| files.get(&id).copied();
    match op {
        Op::Create {
            file,
            kind: fk,
            prealloc_bytes,
        } => {
            if files.contains_key(&file.0) {
                return Err(fail(token, kind, None, libc::EBUSY));
            }
            let path = c_path(&t.dir.join(file_name(file, fk)))
                .map_err(|_| fail(token, kind, None, libc::EINVAL))?;
            Ok(Job::Open {
                file: file.0,
                path,
                flags: libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | t.open_flags,
                prealloc_bytes,
                prealloc: t.prealloc,
                kind,
            })
        }
        Op::Open {
            file,
            kind: fk,
            writable,
        } => {
            if files.contains_key(&file.0) {
                return Err(fail(token, kind, None, libc::EBUSY));
            }
            let path = c_path(&t.dir.join(file_name(file, fk)))
                .map_err(|_| fail(token, kind, None, libc::EINVAL))?;
            let access = if writable {
                libc::O_RDWR
            } else {
                libc::O_RDONLY
            };
            Ok(Job::Open {
                file: file.0,
                path,
                flags: access | t.open_flags,
                prealloc_bytes: 0,
                prealloc: t.prealloc,
                kind,
            })
        }
        Op::Allocate {
            file,
            offset,
            len_bytes,
        } => match fd_of(files, file.0) {
            Some(fd) => Ok(Job::Allocate {
                fd,
                offset,
                len_bytes,
                prealloc: t.prealloc,
            }),
            None => Err(fail(token, kind, None, libc::EBADF)),
        },
        Op::Write {
            file,
            offset,
            buf,
            dsync,
        } => match fd_of(files, file.0) {
            Some(fd) => Ok(Job::Write {
                fd,
                offset,
                buf,
                dsync,
            }),
            None => Err(fail(token, kind, Some(buf), libc::EBADF)),
        },
        Op::Read { file, offset, buf } => match fd_of(files, file.0) {
            Some(fd) => Ok(Job::Read { fd, offset, buf }),
            None => Err(fail(token, kind, Some(buf), libc::EBADF)),
        },
        Op::Sync { file } => match fd_of(files, file.0) {
            Some(fd) => Ok(Job::Sync { fd, kind }),
            None => Err(fail(token, kind, None, libc::EBADF)),
        },
        Op::SyncDir => Ok(Job::Sync { fd: t.dir_fd, kind }),
        Op::Close { file } => match files.remove(&file.0) {
            Some(fd) => Ok(Job::Close { fd }),
            None => Err(fail(token, kind, None, libc::EBADF)),
        },
        Op::Remove { file, kind: fk } => {
            let path = c_path(&t.dir.join(file_name(file, fk)))
                .map_err(|_| fail(token, kind, None, libc::EINVAL))?;
            Ok(Job::Remove {
                path,
                fd: files.remove(&file.0),
            })
        }
    }
}

/// Turn a finished job into a completion, recording a newly opened file.
pub(crate) fn finish(files: &mut FdTable, done: Done) -> Completion<AlignedBuf> {
    if let Some((file, fd)) = done.opened {
        files.insert(file, fd);
    }
    Completion {
        token: done.token,
        kind: done.kind,
        res: done.res,
        buf: done.buf,
    }
}
