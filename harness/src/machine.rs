//! Machine facts: process and system CPU time, block-device counters and settings, direct-I/O
//! alignment, host description for meta.json, build facts, thread pinning and page-cache control.
//!
//! Everything here reads /proc, /sys and a few libc calls. Nothing panics: a missing or
//! unparsable file yields `None` (or JSON `null`), never an error.

use serde::Serialize;
use serde_json::{json, Value};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// CPU time
// ---------------------------------------------------------------------------------------------

/// Process CPU time (getrusage RUSAGE_SELF: includes all threads, and io_uring SQPOLL / io-wq
/// kernel threads).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcCpu {
    /// User-mode CPU seconds of the whole process.
    pub user_s: f64,
    /// Kernel-mode CPU seconds of the whole process.
    pub sys_s: f64,
}

/// Reads this process's CPU time so far; zeros if getrusage fails (it does not on Linux).
pub fn proc_cpu() -> ProcCpu {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage that outlives the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return ProcCpu::default();
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    ProcCpu {
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
    }
}

/// System-wide CPU from the /proc/stat "cpu" line, in seconds (ticks / sysconf(_SC_CLK_TCK)).
///
/// `busy_s` = user+nice+system+irq+softirq+steal (not idle/iowait); `total_s` = those plus idle
/// and iowait. guest/guest_nice are left out of both: the kernel already counts them inside
/// user/nice, so adding them would count that time twice.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SysCpu {
    /// Seconds all CPUs spent doing work (any process, kernel threads, interrupts).
    pub busy_s: f64,
    /// Seconds all CPUs existed (busy + idle + iowait).
    pub total_s: f64,
    /// Seconds all CPUs were idle (idle + iowait). Unlike the busy fields, which the kernel
    /// samples at timer ticks (and so misses work done in short bursts between ticks), idle time
    /// is measured at idle entry and exit on NOHZ kernels: busy over an interval is best taken
    /// as `wall * cpus - delta(idle_s)` (see [`SysCpu::busy_between`]).
    pub idle_s: f64,
    /// CPUs counted (the `cpuN` lines).
    pub cpus: usize,
}

impl SysCpu {
    /// System-wide busy CPU seconds between two readings `wall_s` apart, from precise idle time
    /// (never negative).
    pub fn busy_between(earlier: &SysCpu, later: &SysCpu, wall_s: f64) -> f64 {
        let cpus = later.cpus.max(1) as f64;
        (wall_s * cpus - (later.idle_s - earlier.idle_s)).max(0.0)
    }
}

/// Clock ticks per second used by /proc/stat (100 when sysconf cannot tell).
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Reads system-wide CPU time from /proc/stat; None when it cannot be read or parsed.
pub fn sys_cpu() -> Option<SysCpu> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat(&text, clk_tck())
}

fn parse_proc_stat(text: &str, ticks_per_s: f64) -> Option<SysCpu> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|f| f.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let f = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = f(0) + f(1) + f(2) + f(5) + f(6) + f(7);
    let total = busy + f(3) + f(4);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(SysCpu {
        busy_s: busy as f64 / ticks_per_s,
        total_s: total as f64 / ticks_per_s,
        idle_s: (f(3) + f(4)) as f64 / ticks_per_s,
        cpus,
    })
}

// ---------------------------------------------------------------------------------------------
// Disk statistics and block devices
// ---------------------------------------------------------------------------------------------

/// /proc/diskstats counters of one device (cumulative since boot, or a delta of two readings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DiskStats {
    /// Reads completed.
    pub reads: u64,
    /// Bytes read (sectors read × 512).
    pub read_bytes: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes written (sectors written × 512).
    pub write_bytes: u64,
    /// Flush requests completed (0 on kernels that do not report them).
    pub flushes: u64,
    /// Milliseconds the device had I/O in flight.
    pub io_ms: u64,
}

impl DiskStats {
    /// `self - earlier`, field by field, saturating at 0 (a counter reset never goes negative).
    pub fn delta(&self, earlier: &DiskStats) -> DiskStats {
        DiskStats {
            reads: self.reads.saturating_sub(earlier.reads),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            writes: self.writes.saturating_sub(earlier.writes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            flushes: self.flushes.saturating_sub(earlier.flushes),
            io_ms: self.io_ms.saturating_sub(earlier.io_ms),
        }
    }
}

/// Counters of the device named `dev_name` (e.g. "vda") from /proc/diskstats; None if absent.
pub fn disk_stats(dev_name: &str) -> Option<DiskStats> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    parse_diskstats(&text, dev_name)
}

fn parse_diskstats(text: &str, dev_name: &str) -> Option<DiskStats> {
    /// /proc/diskstats always counts 512-byte sectors, whatever the device's block size.
    const SECTOR_BYTES: u64 = 512;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (_maj, _min, name) = (it.next(), it.next(), it.next());
        if name != Some(dev_name) {
            continue;
        }
        let v: Vec<u64> = it.map_while(|f| f.parse().ok()).collect();
        if v.len() < 10 {
            return None;
        }
        let f = |i: usize| v.get(i).copied().unwrap_or(0);
        return Some(DiskStats {
            reads: f(0),
            read_bytes: f(2).saturating_mul(SECTOR_BYTES),
            writes: f(4),
            write_bytes: f(6).saturating_mul(SECTOR_BYTES),
            flushes: f(15),
            io_ms: f(9),
        });
    }
    None
}

/// The block device under a path, and the whole disk whose `queue/` holds the settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockDev {
    /// Kernel name of the device holding the filesystem, e.g. "vda", "loop3", "nvme0n1p2".
    pub name: String,
    /// Whole-disk name: `name` itself, or the parent disk of a partition (e.g. "nvme0n1").
    pub disk: String,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
}

/// `stat` of `path` (following symlinks); None if it fails.
fn stat_path(path: &Path) -> Option<libc::stat> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string and `st` a writable stat, both alive for the call.
    let rc = unsafe { libc::stat(c.as_ptr(), &mut st) };
    if rc == 0 {
        Some(st)
    } else {
        None
    }
}

/// The block device under `path` (st_dev → /sys/dev/block/MAJ:MIN). None for filesystems
/// without one (tmpfs, overlay, proc…) or when the path cannot be stat'ed.
pub fn block_dev_of(path: &Path) -> Option<BlockDev> {
    let st = stat_path(path)?;
    let major = libc::major(st.st_dev);
    let minor = libc::minor(st.st_dev);
    block_dev_by_number(major, minor)
}

fn block_dev_by_number(major: u32, minor: u32) -> Option<BlockDev> {
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let real = std::fs::canonicalize(&link).ok()?;
    let name = real.file_name()?.to_str()?.to_string();
    // A partition's sysfs directory lives inside its disk's and has a `partition` file.
    let disk = if real.join("partition").exists() {
        real.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .unwrap_or_else(|| name.clone())
    } else {
        name.clone()
    };
    Some(BlockDev {
        name,
        disk,
        major,
        minor,
    })
}

// ---------------------------------------------------------------------------------------------
// Direct-I/O alignment
// ---------------------------------------------------------------------------------------------

/// Direct-I/O alignment for files under a path.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DioAlign {
    /// Required alignment of the user buffer's address, in bytes.
    pub mem_align_bytes: u32,
    /// Required alignment of file offsets and lengths, in bytes.
    pub offset_align_bytes: u32,
    /// Where the figures come from: "statx", "logical_block_size" or "assumed".
    pub source: &'static str,
}

/// `path` itself if it exists, else its nearest existing ancestor (made absolute first).
fn nearest_existing(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut p = abs.as_path();
    loop {
        if p.exists() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return PathBuf::from("/"),
        }
    }
}

/// (stx_dio_mem_align, stx_dio_offset_align) when the kernel fills STATX_DIOALIGN for `path`.
fn statx_dio(path: &Path) -> Option<(u32, u32)> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statx` is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated, `stx` is writable and sized for the kernel's statx; both
    // outlive the call. AT_FDCWD resolves relative paths against the working directory.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

/// Direct-I/O alignment for files under `path` (a directory or a file; a path that does not
/// exist is judged by its nearest existing ancestor).
///
/// statx STATX_DIOALIGN when the kernel fills it (filesystems such as ext4 fill it for regular
/// files only), else the block device's logical_block_size for both, else 4096 ("assumed").
/// Err when statx says O_DIRECT is unsupported there (offset alignment 0).
pub fn dio_align(path: &Path) -> Result<DioAlign, String> {
    let p = nearest_existing(path);
    if let Some((mem, off)) = statx_dio(&p) {
        if off == 0 {
            return Err(format!(
                "O_DIRECT is not supported for {} (statx reports a direct-I/O offset alignment of 0)",
                p.display()
            ));
        }
        return Ok(DioAlign {
            mem_align_bytes: mem.max(1),
            offset_align_bytes: off,
            source: "statx",
        });
    }
    let lbs = block_dev_of(&p)
        .and_then(|b| read_sys_u64(format!("/sys/block/{}/queue/logical_block_size", b.disk)))
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0);
    Ok(match lbs {
        Some(v) => DioAlign {
            mem_align_bytes: v,
            offset_align_bytes: v,
            source: "logical_block_size",
        },
        None => DioAlign {
            mem_align_bytes: 4096,
            offset_align_bytes: 4096,
            source: "assumed",
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Small readers
// ---------------------------------------------------------------------------------------------

/// Trimmed contents of a small text file; None when missing, unreadable or empty.
fn read_sys_str(path: impl AsRef<Path>) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

fn read_sys_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_sys_str(path)?.parse().ok()
}

fn read_sys_i64(path: impl AsRef<Path>) -> Option<i64> {
    read_sys_str(path)?.parse().ok()
}

/// A JSON value from an Option (None → null).
fn opt<T: Serialize>(v: Option<T>) -> Value {
    v.and_then(|x| serde_json::to_value(x).ok())
        .unwrap_or(Value::Null)
}

/// A /proc/meminfo field in bytes (the file reports kB).
fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        let mult = match it.next() {
            Some("kB") => 1024,
            _ => 1,
        };
        Some(n.saturating_mul(mult))
    })
}

// ---------------------------------------------------------------------------------------------
// Host description
// ---------------------------------------------------------------------------------------------

fn uname_fields() -> Option<(String, String, String)> {
    // SAFETY: an all-zero `utsname` is a valid value of this plain C struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a writable utsname that outlives the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((field(&u.release), field(&u.version), field(&u.nodename)))
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let k = k.trim();
        // x86: "model name"; arm64 and others may only have "Hardware" / "CPU part" / "cpu model".
        if k == "model name" || k == "cpu model" || k == "Hardware" {
            Some(v.trim().to_string())
        } else {
            None
        }
    })
}

fn online_cpus() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).ok().filter(|n| *n > 0)
}

fn rlimit_memlock() -> Value {
    // SAFETY: an all-zero `rlimit` is a valid value of this plain C struct.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 {
        return Value::Null;
    }
    let lim = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            json!("unlimited")
        } else {
            json!(v)
        }
    };
    json!({ "soft_bytes": lim(rl.rlim_cur), "hard_bytes": lim(rl.rlim_max) })
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The host part of meta.json.
///
/// Keys: `kernel` (uname release + version), `kernel_release`, `cpu_model`, `logical_cores`
/// (online CPUs), `available_cpus` (this process's affinity), `memory_bytes`, `clocksource`,
/// `io_uring_disabled`, `rlimit_memlock` {`soft_bytes`, `hard_bytes`: number or "unlimited"},
/// `euid`, `is_root`, `hostname`. Unknown facts are null.
pub fn describe_host() -> Value {
    let (release, version, nodename) = match uname_fields() {
        Some((r, v, n)) => (Some(r), Some(v), Some(n)),
        None => (None, None, None),
    };
    let kernel = match (&release, &version) {
        (Some(r), Some(v)) => Some(format!("{r} {v}")),
        _ => None,
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let hostname = read_sys_str("/proc/sys/kernel/hostname").or(nodename);
    let uid = euid();
    json!({
        "kernel": opt(kernel),
        "kernel_release": opt(release),
        "cpu_model": opt(cpu_model()),
        "logical_cores": opt(online_cpus()),
        "available_cpus": available_cpus(),
        "memory_bytes": opt(meminfo_bytes(&meminfo, "MemTotal")),
        "clocksource": opt(read_sys_str(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource"
        )),
        "io_uring_disabled": opt(read_sys_i64("/proc/sys/kernel/io_uring_disabled")),
        "rlimit_memlock": rlimit_memlock(),
        "euid": uid,
        "is_root": uid == 0,
        "hostname": opt(hostname),
    })
}

// ---------------------------------------------------------------------------------------------
// Storage description
// ---------------------------------------------------------------------------------------------

/// One parsed /proc/self/mountinfo line.
#[derive(Debug, Clone)]
struct MountInfo {
    major: u32,
    minor: u32,
    mount_point: PathBuf,
    mount_options: String,
    fs_type: String,
    source: String,
    super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            let (maj, min) = pre.get(2)?.split_once(':')?;
            Some(MountInfo {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                mount_point: PathBuf::from(unescape_mount(pre.get(4)?)),
                mount_options: pre.get(5)?.to_string(),
                fs_type: post.first()?.to_string(),
                source: post.get(1).map(|s| unescape_mount(s)).unwrap_or_default(),
                super_options: post.get(2).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// The mount holding `real` (a canonical path): the longest mount point that is a prefix of it,
/// preferring mounts whose device matches `dev`; among equals the last one (mounted on top).
fn find_mount(mounts: &[MountInfo], real: &Path, dev: Option<(u32, u32)>) -> Option<MountInfo> {
    let mut best: Option<(&MountInfo, (bool, usize))> = None;
    for m in mounts {
        if !real.starts_with(&m.mount_point) {
            continue;
        }
        let dev_match = dev
            .map(|(a, b)| a == m.major && b == m.minor)
            .unwrap_or(false);
        let key = (dev_match, m.mount_point.as_os_str().len());
        match best {
            Some((_, k)) if k > key => {}
            _ => best = Some((m, key)),
        }
    }
    best.map(|(m, _)| m.clone())
}

/// statvfs of `path`: (free bytes available to unprivileged users, total bytes).
fn statvfs_bytes(path: &Path) -> Option<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `s` writable; both outlive the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = if s.f_frsize > 0 {
        s.f_frsize as u64
    } else {
        s.f_bsize as u64
    };
    Some((
        (s.f_bavail as u64).saturating_mul(frsize),
        (s.f_blocks as u64).saturating_mul(frsize),
    ))
}

fn fs_json(real: &Path) -> Value {
    let dev = stat_path(real).map(|st| (libc::major(st.st_dev), libc::minor(st.st_dev)));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    let m = find_mount(&mounts, real, dev);
    let (free, total) = match statvfs_bytes(real) {
        Some((f, t)) => (Some(f), Some(t)),
        None => (None, None),
    };
    json!({
        "fs_type": opt(m.as_ref().map(|m| m.fs_type.clone())),
        "mount_point": opt(m.as_ref().map(|m| m.mount_point.display().to_string())),
        "mount_source": opt(m.as_ref().map(|m| m.source.clone())),
        "mount_options": opt(m.as_ref().map(|m| m.mount_options.clone())),
        "super_options": opt(m.as_ref().map(|m| m.super_options.clone())),
        "free_bytes": opt(free),
        "total_bytes": opt(total),
    })
}

/// The selected scheduler from a `queue/scheduler` line such as "none [mq-deadline] kyber".
fn selected_scheduler(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map(str::to_string)
        .unwrap_or_else(|| line.trim().to_string())
}

/// poll_queues of the disk's driver module, else of the nvme / virtio_blk modules:
/// (value, the sysfs file it came from).
fn poll_queues(disk: &str) -> Option<(u64, String)> {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(drv) = std::fs::canonicalize(format!("/sys/block/{disk}/device/driver")) {
        if let Some(n) = drv.file_name().and_then(|n| n.to_str()) {
            candidates.push(n.to_string());
        }
    }
    if let Ok(m) = std::fs::canonicalize(format!("/sys/block/{disk}/device/driver/module")) {
        if let Some(n) = m.file_name().and_then(|n| n.to_str()) {
            candidates.push(n.to_string());
        }
    }
    candidates.push("nvme".to_string());
    candidates.push("virtio_blk".to_string());
    candidates.into_iter().find_map(|module| {
        let p = format!("/sys/module/{module}/parameters/poll_queues");
        read_sys_u64(&p).map(|v| (v, p))
    })
}

fn block_json(b: &BlockDev) -> Value {
    let q = format!("/sys/block/{}/queue", b.disk);
    let d = format!("/sys/block/{}/device", b.disk);
    let qs = |f: &str| read_sys_str(format!("{q}/{f}"));
    let qu = |f: &str| read_sys_u64(format!("{q}/{f}"));
    let nr_hw_queues = std::fs::read_dir(format!("/sys/block/{}/mq", b.disk))
        .ok()
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<u64>().is_ok())
                })
                .count()
        });
    let (pq, pq_src) = match poll_queues(&b.disk) {
        Some((v, p)) => (Some(v), Some(p)),
        None => (None, None),
    };
    let size_bytes =
        read_sys_u64(format!("/sys/block/{}/size", b.disk)).map(|s| s.saturating_mul(512));
    json!({
        "name": b.name,
        "disk": b.disk,
        "major": b.major,
        "minor": b.minor,
        "model": opt(read_sys_str(format!("{d}/model"))),
        "vendor": opt(read_sys_str(format!("{d}/vendor"))),
        "driver": opt(std::fs::canonicalize(format!("{d}/driver")).ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))),
        "backing_file": opt(read_sys_str(format!("/sys/block/{}/loop/backing_file", b.disk))),
        "disk_size_bytes": opt(size_bytes),
        "scheduler": opt(qs("scheduler").map(|s| selected_scheduler(&s))),
        "nomerges": opt(qu("nomerges")),
        "nr_requests": opt(qu("nr_requests")),
        "wbt_lat_usec": opt(read_sys_i64(format!("{q}/wbt_lat_usec"))),
        "io_poll": opt(qu("io_poll")),
        "io_poll_delay": opt(read_sys_i64(format!("{q}/io_poll_delay"))),
        "poll_queues": opt(pq),
        "poll_queues_source": opt(pq_src),
        "rotational": opt(qu("rotational").map(|v| v != 0)),
        "write_cache": opt(qs("write_cache")),
        "fua": opt(qu("fua").map(|v| v != 0)),
        "logical_block_size_bytes": opt(qu("logical_block_size")),
        "physical_block_size_bytes": opt(qu("physical_block_size")),
        "max_sectors_kb": opt(qu("max_sectors_kb")),
        "read_ahead_kb": opt(qu("read_ahead_kb")),
        "nr_hw_queues": opt(nr_hw_queues),
    })
}

fn page_cache_json() -> Value {
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

/// The storage part of meta.json for `dir` (judged by its nearest existing ancestor when it
/// does not exist yet).
///
/// Keys: `dir` (as given), `real_path` (canonical path examined), `fs` {`fs_type`,
/// `mount_point`, `mount_source`, `mount_options`, `super_options`, `free_bytes`,
/// `total_bytes`}, `block` (null without a block device; else the [`BlockDev`] fields plus
/// model, vendor, driver, scheduler, nomerges, nr_requests, wbt_lat_usec, io_poll,
/// poll_queues (+ source file), rotational, write_cache, logical/physical_block_size_bytes,
/// max_sectors_kb, nr_hw_queues …), `page_cache` {`cached_bytes`, `dirty_bytes`,
/// `writeback_bytes`, `vm` {dirty_* sysctls}}, `dio_align` ([`DioAlign`] fields, or
/// {`error`}).
pub fn describe_storage(dir: &Path) -> Value {
    let existing = nearest_existing(dir);
    let real = std::fs::canonicalize(&existing).unwrap_or(existing);
    let block = block_dev_of(&real)
        .map(|b| block_json(&b))
        .unwrap_or(Value::Null);
    let dio = match dio_align(&real) {
        Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e }),
    };
    json!({
        "dir": dir.display().to_string(),
        "real_path": real.display().to_string(),
        "fs": fs_json(&real),
        "block": block,
        "page_cache": page_cache_json(),
        "dio_align": dio,
    })
}

// ---------------------------------------------------------------------------------------------
// Build facts
// ---------------------------------------------------------------------------------------------

/// Build facts embedded by build.rs: {`version` (CARGO_PKG_VERSION), `git_commit` (short hash,
/// "-dirty" when tracked files had changes, "unknown" without git), `rustc` (`rustc -V`)}.
pub fn build_info() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("SNAPBENCH_GIT_COMMIT").unwrap_or("unknown"),
        "rustc": option_env!("SNAPBENCH_RUSTC").unwrap_or("unknown"),
    })
}

// ---------------------------------------------------------------------------------------------
// Threads, CPUs, page cache
// ---------------------------------------------------------------------------------------------

/// Pins the calling thread to CPU `cpu` (sched_setaffinity); Err with the reason (a CPU beyond
/// the set size, or the kernel's refusal, e.g. a CPU outside the cgroup's cpuset).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot pin to CPU {cpu}: beyond the {max}-CPU affinity mask"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < bits in the set (checked above); `set` is a valid cpu_set_t; pid 0 is the
    // calling thread and the size passed is the size of `set`.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(
            e.kind(),
            format!("cannot pin thread to CPU {cpu}: {e}"),
        ))
    }
}

/// Number of CPUs this process may run on (sched_getaffinity count); at least 1.
pub fn available_cpus() -> usize {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t and the size passed is its size; pid 0 = this thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc == 0 {
        // SAFETY: `set` was filled by the kernel; CPU_COUNT only reads it.
        let n = unsafe { libc::CPU_COUNT(&set) };
        if n > 0 {
            return n as usize;
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Count of this process's threads whose name starts with `prefix` (/proc/self/task/*/comm),
/// e.g. "iou-wrk" for io-wq workers, "iou-sqp" for SQPOLL threads.
pub fn count_threads(prefix: &str) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|comm| comm.trim_end_matches('\n').starts_with(prefix))
        .count()
}

/// Drops the page cache: sync, then write "3" to /proc/sys/vm/drop_caches. Err with the reason
/// (e.g. not root, or /proc/sys read-only in a container) when not permitted.
pub fn drop_caches() -> io::Result<()> {
    use std::io::Write;
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
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

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A fresh scratch directory under `base`, removed by the caller.
    fn scratch_dir(base: &str, tag: &str) -> PathBuf {
        let p = PathBuf::from(base).join(format!(
            "snapbench-machine-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    #[test]
    fn proc_cpu_grows_with_busy_loop() {
        let before = proc_cpu();
        let start = Instant::now();
        let mut x: u64 = 1;
        while start.elapsed() < Duration::from_millis(50) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        let after = proc_cpu();
        let used = (after.user_s + after.sys_s) - (before.user_s + before.sys_s);
        assert!(used >= 0.02, "busy loop of 50 ms used only {used} s CPU");
        assert!(after.user_s >= before.user_s && after.sys_s >= before.sys_s);
    }

    #[test]
    fn sys_cpu_is_sane() {
        let s = sys_cpu().expect("/proc/stat readable");
        assert!(s.busy_s > 0.0 && s.total_s > 0.0, "{s:?}");
        assert!(s.busy_s <= s.total_s, "{s:?}");
    }

    #[test]
    fn parse_proc_stat_excludes_guest_and_idle() {
        let s =
            parse_proc_stat("cpu  100 10 50 1000 20 5 5 10 40 0\ncpu0 1 1 1 1\n", 100.0).unwrap();
        assert_eq!(s.busy_s, 1.8);
        assert_eq!(s.total_s, 12.0);
        assert_eq!(s.idle_s, 10.2);
        assert_eq!(s.cpus, 1);
        let later = SysCpu {
            idle_s: s.idle_s + 1.5,
            ..s
        };
        // 2 s of wall time on one CPU, 1.5 s of it idle: 0.5 s busy.
        assert!((SysCpu::busy_between(&s, &later, 2.0) - 0.5).abs() < 1e-9);
        assert!(parse_proc_stat("intr 1 2 3\n", 100.0).is_none());
    }

    #[test]
    fn diskstats_parse_and_delta() {
        let text = " 254       0 vda 10 1 80 5 20 2 160 9 0 33 44 0 0 0 0 7 3\n";
        let d = parse_diskstats(text, "vda").unwrap();
        assert_eq!(
            d,
            DiskStats {
                reads: 10,
                read_bytes: 40960,
                writes: 20,
                write_bytes: 81920,
                flushes: 7,
                io_ms: 33
            }
        );
        assert!(parse_diskstats(text, "vd").is_none());
        let zero = DiskStats::default();
        assert_eq!(zero.delta(&d), DiskStats::default(), "delta saturates");
        assert_eq!(d.delta(&zero), d);
    }

    #[test]
    fn root_block_device_and_stats() {
        let Some(b) = block_dev_of(Path::new("/")) else {
            let st = stat_path(Path::new("/")).map(|s| s.st_dev);
            eprintln!("root filesystem has no block device (st_dev {st:?}); skipping");
            return;
        };
        assert!(!b.name.is_empty() && !b.disk.is_empty(), "{b:?}");
        assert!(
            Path::new(&format!("/sys/block/{}/queue", b.disk)).is_dir(),
            "disk {} has no queue dir",
            b.disk
        );
        let s = disk_stats(&b.name).expect("diskstats of root device");
        assert!(s.reads > 0 || s.writes > 0, "{s:?}");
    }

    #[test]
    fn dio_align_of_temp_dir() {
        let dir = scratch_dir("/tmp", "dio");
        let a = dio_align(&dir).expect("dio_align");
        assert!(
            a.offset_align_bytes >= 512 && a.offset_align_bytes.is_power_of_two(),
            "{a:?}"
        );
        assert!(
            a.mem_align_bytes >= 1 && a.mem_align_bytes.is_power_of_two(),
            "{a:?}"
        );
        // A file inside it (statx fills DIOALIGN for regular files on ext4), and a path not
        // yet created (nearest ancestor).
        let f = dir.join("f");
        std::fs::write(&f, b"x").unwrap();
        let af = dio_align(&f).expect("dio_align file");
        assert!(
            af.offset_align_bytes >= 512 && af.offset_align_bytes.is_power_of_two(),
            "{af:?}"
        );
        let missing = dio_align(&dir.join("not/yet/there")).expect("dio_align missing");
        assert_eq!(missing, a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn host_description_has_keys() {
        let h = describe_host();
        for k in [
            "kernel",
            "cpu_model",
            "logical_cores",
            "memory_bytes",
            "clocksource",
            "io_uring_disabled",
            "rlimit_memlock",
            "euid",
            "is_root",
            "hostname",
        ] {
            assert!(h.get(k).is_some(), "describe_host lacks {k}: {h}");
        }
        assert!(h["kernel"].as_str().is_some_and(|s| !s.is_empty()), "{h}");
        assert!(h["logical_cores"].as_u64().is_some_and(|n| n >= 1), "{h}");
        assert!(
            h["memory_bytes"].as_u64().is_some_and(|n| n > 1 << 20),
            "{h}"
        );
        let rl = &h["rlimit_memlock"];
        assert!(
            rl["soft_bytes"].is_u64() || rl["soft_bytes"] == "unlimited",
            "{h}"
        );
    }

    #[test]
    fn storage_description_names_fs() {
        let dir = scratch_dir("/tmp", "storage");
        let s = describe_storage(&dir);
        let fs_type = s["fs"]["fs_type"].as_str().unwrap_or("");
        assert!(!fs_type.is_empty(), "{s}");
        assert!(
            s["fs"]["total_bytes"].as_u64().is_some_and(|n| n > 0),
            "{s}"
        );
        assert!(s["page_cache"]["cached_bytes"].is_u64(), "{s}");
        assert!(s["dio_align"]["offset_align_bytes"].is_u64(), "{s}");
        if block_dev_of(&dir).is_some() {
            assert!(s["block"]["scheduler"].is_string(), "{s}");
            assert!(s["block"]["logical_block_size_bytes"].is_u64(), "{s}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tmpfs_has_no_block_device() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            eprintln!("/dev/shm absent; skipping");
            return;
        }
        assert_eq!(block_dev_of(shm), None);
        let s = describe_storage(&shm.join("not-created-yet"));
        assert_eq!(s["fs"]["fs_type"], "tmpfs", "{s}");
        assert!(s["block"].is_null(), "{s}");
        assert!(
            s["dio_align"]["offset_align_bytes"].is_u64() || s["dio_align"]["error"].is_string(),
            "{s}"
        );
    }

    #[test]
    fn mountinfo_parsing_and_matching() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
                    25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=1k\n\
                    30 25 0:27 / /dev/shm rw,nosuid - tmpfs tmpfs rw,size=2k\n\
                    31 27 0:40 / /mnt/my\\040disk ro - xfs /dev/sdb1 ro\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[3].mount_point, PathBuf::from("/mnt/my disk"));
        let f = find_mount(&m, Path::new("/dev/shm/x"), None).unwrap();
        assert_eq!(f.mount_options, "rw,nosuid", "last of equal mounts wins");
        let f = find_mount(&m, Path::new("/dev/shm/x"), Some((0, 23))).unwrap();
        assert_eq!(f.super_options, "rw,size=1k", "device match wins");
        let f = find_mount(&m, Path::new("/dev/shmx"), None).unwrap();
        assert_eq!(f.fs_type, "ext4", "component-wise prefix");
        let f = find_mount(&m, Path::new("/mnt/my disk/a"), None).unwrap();
        assert_eq!(f.source, "/dev/sdb1");
        assert_eq!(
            selected_scheduler("none [mq-deadline] kyber"),
            "mq-deadline"
        );
        assert_eq!(selected_scheduler("none"), "none");
        assert_eq!(unescape_mount("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn build_info_fields() {
        let b = build_info();
        assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            b["git_commit"].as_str().is_some_and(|s| !s.is_empty()),
            "{b}"
        );
        assert!(
            b["rustc"]
                .as_str()
                .is_some_and(|s| s.starts_with("rustc") || s == "unknown"),
            "{b}"
        );
    }

    #[test]
    fn pinning_and_cpu_count() {
        assert!(available_cpus() >= 1);
        // Pin a spawned thread so the test harness thread keeps its affinity.
        let r = std::thread::spawn(|| {
            pin_current_thread(0)?;
            Ok::<usize, io::Error>(available_cpus())
        })
        .join()
        .expect("thread");
        assert_eq!(r.expect("pin to CPU 0"), 1);
        assert!(pin_current_thread(usize::MAX).is_err());
    }

    #[test]
    fn thread_counting() {
        assert_eq!(count_threads("nonexistent-prefix"), 0);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("sbtest-counted".into())
            .spawn(move || {
                let _ = ready_tx.send(());
                let _ = rx.recv();
            })
            .expect("spawn");
        ready_rx.recv().expect("thread started");
        let n = count_threads("sbtest-count");
        drop(tx);
        h.join().expect("join");
        assert!(n >= 1, "named thread not counted");
    }

    #[test]
    fn drop_caches_reports_reason() {
        match drop_caches() {
            Ok(()) => assert_eq!(euid(), 0, "drop_caches succeeded as non-root"),
            Err(e) => assert!(e.to_string().contains("drop_caches"), "{e}"),
        }
    }
}
