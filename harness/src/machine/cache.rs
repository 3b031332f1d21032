//! The page cache: its state for meta.json, and dropping it (`--drop-caches`, root only).

use serde_json::{json, Value};
use std::io;

use super::host::euid;
use super::sysfs::{meminfo_bytes, opt, read_sys_u64};

/// Cached, dirty and writeback bytes (/proc/meminfo) and the vm.dirty_* sysctls.
pub(crate) fn page_cache_json() -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let vm = |f: &str| opt(read_sys_u64(format!("/proc/sys/vm/{f}")));
    json!({
        "cached_bytes": opt(meminfo_bytes(&meminfo, "Cached")),
        "dirty_bytes": opt(meminfo_bytes(&meminfo, "Dirty")),
        "writeback_bytes": opt(meminfo_bytes(&meminfo, "Writeback")),
        "vm": {
            "dirty_ratio": vm("dirty_ratio"),
            "dirty_background_ratio": vm("dirty_background_ratio"),
            "dirty_bytes": vm("dirty_bytes"),
            "dirty_background_bytes": vm("dirty_background_bytes"),
            "dirty_expire_centisecs": vm("dirty_expire_centisecs"),
            "dirty_writeback_centisecs": vm("dirty_writeback_centisecs"),
        },
    })
}

/// Drops the page cache: sync, then write "3" to /proc/sys/vm/drop_caches. Err with the reason
/// (e.g. not root, or /proc/sys read-only in a container) when not permitted.
pub fn drop_caches() -> io::Result<()> {
    use std::io::Write;
    rustix::fs::sync();
    let uid = euid();
    let explain = |e: io::Error| {
        let hint = if uid != 0 { " (needs root)" } else { "" };
        io::Error::new(
            e.kind(),
            format!(
                "cannot drop the page cache via /proc/sys/vm/drop_caches as euid {uid}{hint}: {e}"
            ),
        )
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .map_err(explain)?;
    f.write_all(b"3\n").map_err(explain)
}

// -- issue 10: micro --
/// Writes back and drops the cached pages of one file (or block device): fsync, then
/// `POSIX_FADV_DONTNEED` over all of it, as fio invalidates a job's file before measuring.
/// Pages still dirty after the fsync would stay cached, hence the fsync first.
pub fn invalidate_file(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    f.sync_all()?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// What `--drop-caches` asks before each run's window, and what was done (the per-run
/// `page_cache.before_window` of summary.json).
pub fn drop_before_window(requested: bool, run_files: &std::path::Path) -> String {
    if !requested {
        return "not dropped".to_string();
    }
    if euid() == 0 {
        match drop_caches() {
            Ok(()) => return "dropped (drop_caches=3)".to_string(),
            Err(e) => {
                // Root in a container with /proc/sys read-only: fall back to the run's files.
                return match advise_folder(run_files) {
                    Ok(n) => format!("run files advised DONTNEED ({n} files; {e})"),
                    Err(e2) => format!("not dropped ({e}; {e2})"),
                };
            }
        }
    }
    match advise_folder(run_files) {
        Ok(n) => format!("run files advised DONTNEED (not root; {n} files)"),
        Err(e) => format!("not dropped (not root, and advising the run files failed: {e})"),
    }
}

/// [`invalidate_file`] on every file in `dir` (links followed); the number of files.
fn advise_folder(dir: &std::path::Path) -> io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_file() || std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
            invalidate_file(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `path` resident in the page cache (mincore over a shared read-only mapping).
    fn resident_pages(path: &std::path::Path) -> usize {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let page = rustix::param::page_size();
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: a fresh read-only shared mapping of `len` bytes of an open file; the kernel
        // owns it, mincore fills `vec` (one byte per page, sized above) and it is unmapped
        // before return. Nothing reads the mapped memory.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED, "mmap");
            let r = libc::mincore(addr, len, vec.as_mut_ptr());
            libc::munmap(addr, len);
            assert_eq!(r, 0, "mincore");
        }
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    #[test]
    fn invalidate_file_drops_a_files_pages() {
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        const TMPFS_MAGIC: u64 = 0x0102_1994;
        if rustix::fs::statfs(&path).is_ok_and(|s| s.f_type as u64 == TMPFS_MAGIC) {
            eprintln!("skipped: /var/tmp is a tmpfs, whose pages are the file itself");
            return;
        }
        // Just written (dirty, then clean after the fsync): cached.
        assert!(resident_pages(&path) > 0);
        invalidate_file(&path).unwrap();
        assert_eq!(
            resident_pages(&path),
            0,
            "pages left after fsync + DONTNEED"
        );
        let missing = tmp.path().join("missing");
        assert!(invalidate_file(&missing).is_err());
    }

    #[test]
    fn drop_before_window_states_what_was_done() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), b"x").unwrap();
        assert_eq!(drop_before_window(false, tmp.path()), "not dropped");
        let done = drop_before_window(true, tmp.path());
        if euid() == 0 {
            assert!(
                done.starts_with("dropped") || done.contains("DONTNEED"),
                "{done}"
            );
        } else {
            assert_eq!(done, "run files advised DONTNEED (not root; 1 files)");
        }
    }

    #[test]
    fn drop_caches_reports_reason() {
        match drop_caches() {
            Ok(()) => assert_eq!(euid(), 0, "drop_caches succeeded as non-root"),
            Err(e) => assert!(e.to_string().contains("drop_caches"), "{e}"),
        }
    }
}
