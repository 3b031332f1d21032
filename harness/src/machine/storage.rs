//! The storage part of meta.json: the filesystem and mount options of `--dir`, its block
//! device's queue settings, page-cache state and direct-I/O alignment.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use super::cache::page_cache_json;
use super::disk::{block_dev_of, dev_of, dio_align, nearest_existing, BlockDev};
use super::sysfs::{opt, read_sys_i64, read_sys_str, read_sys_u64};

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

/// Every line of /proc/self/mountinfo that parses.
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
    let s = rustix::fs::statvfs(path).ok()?;
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Some((
        s.f_bavail.saturating_mul(frsize),
        s.f_blocks.saturating_mul(frsize),
    ))
}

/// The `fs` part of the storage description.
fn fs_json(real: &Path) -> Value {
    let dev = dev_of(real);
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

/// The `block` part of the storage description.
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
        Err(e) => json!({ "error": e.to_string() }),
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::machine::scratch_dir;

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
}
