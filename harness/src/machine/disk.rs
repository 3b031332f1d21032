//! Disks: /proc/diskstats counters, the block device under a path, and direct-I/O alignment.

use serde::Serialize;
use std::path::{Path, PathBuf};

use super::sysfs::read_sys_u64;

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
    /// Milliseconds the device had I/O in flight (io_ticks).
    pub io_ms: u64,
    /// Weighted milliseconds in queue (time_in_queue: each ms counted once per request in
    /// flight), so over an interval ÷ its wall time is the average queue depth.
    pub queue_ms: u64,
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
            queue_ms: self.queue_ms.saturating_sub(earlier.queue_ms),
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
            queue_ms: f(10),
        });
    }
    None
}

/// Average number of requests in the device's queue over `wall_s` (time_in_queue ÷ wall).
pub fn avg_queue_depth(delta: &DiskStats, wall_s: f64) -> Option<f64> {
    (wall_s > 0.0).then(|| delta.queue_ms as f64 / 1e3 / wall_s)
}

/// Device bytes written per payload byte (None without payload).
pub fn write_amp(delta: &DiskStats, payload_bytes: u64) -> Option<f64> {
    (payload_bytes > 0).then(|| delta.write_bytes as f64 / payload_bytes as f64)
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
pub(crate) fn stat_path(path: &Path) -> Option<rustix::fs::Stat> {
    rustix::fs::stat(path).ok()
}

/// (major, minor) of the device holding `path`; for a block device node, the device itself
/// (its st_rdev), as fio's `filename=/dev/…` addresses it.
pub(crate) fn dev_of(path: &Path) -> Option<(u32, u32)> {
    stat_path(path).map(|st| {
        let dev = if is_block_device(&st) {
            st.st_rdev
        } else {
            st.st_dev
        };
        (rustix::fs::major(dev), rustix::fs::minor(dev))
    })
}

fn is_block_device(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::BlockDevice
}

// -- issue 10: micro --
/// Whether `path` (symlinks followed) is a block device.
pub fn is_block_device_path(path: &Path) -> bool {
    stat_path(path).is_some_and(|st| is_block_device(&st))
}

/// Size of a regular file or a block device, bytes (a block device's by seeking to its end,
/// as its st_size is 0).
pub fn file_size_bytes(path: &Path) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let meta = std::fs::metadata(path)?;
    if is_block_device_path(path) {
        std::fs::File::open(path)?.seek(SeekFrom::End(0))
    } else {
        Ok(meta.len())
    }
}

/// The block device under `path` (st_dev → /sys/dev/block/MAJ:MIN). None for filesystems
/// without one (tmpfs, overlay, proc…) or when the path cannot be stat'ed.
pub fn block_dev_of(path: &Path) -> Option<BlockDev> {
    let (major, minor) = dev_of(path)?;
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
pub(crate) fn nearest_existing(path: &Path) -> PathBuf {
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

/// statx says files at `path` cannot be opened with O_DIRECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("O_DIRECT is not supported for {} (statx reports a direct-I/O offset alignment of 0)", path.display())]
pub struct NoDirectIo {
    /// The path examined (the nearest existing one).
    pub path: PathBuf,
}

/// (stx_dio_mem_align, stx_dio_offset_align) when the kernel fills STATX_DIOALIGN for `path`
/// (relative paths resolve against the working directory).
fn statx_dio(path: &Path) -> Option<(u32, u32)> {
    use rustix::fs::{AtFlags, StatxFlags, CWD};
    let stx =
        rustix::fs::statx(CWD, path, AtFlags::STATX_SYNC_AS_STAT, StatxFlags::DIOALIGN).ok()?;
    if stx.stx_mask & StatxFlags::DIOALIGN.bits() == 0 {
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
pub fn dio_align(path: &Path) -> Result<DioAlign, NoDirectIo> {
    let p = nearest_existing(path);
    // A block device node's statx describes the devtmpfs inode on older kernels: use the
    // device's logical block size.
    let statx = if is_block_device_path(&p) {
        None
    } else {
        statx_dio(&p)
    };
    if let Some((mem, off)) = statx {
        if off == 0 {
            return Err(NoDirectIo { path: p });
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::machine::scratch_dir;

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
                io_ms: 33,
                queue_ms: 44,
            }
        );
        assert!(parse_diskstats(text, "vd").is_none());
        let zero = DiskStats::default();
        assert_eq!(zero.delta(&d), DiskStats::default(), "delta saturates");
        assert_eq!(d.delta(&zero), d);
        // 44 ms in queue over 0.02 s: 2.2 requests on average; 81 920 device bytes for
        // 40 960 payload bytes: 2.0.
        assert!((avg_queue_depth(&d, 0.02).unwrap() - 2.2).abs() < 1e-9);
        assert_eq!(avg_queue_depth(&d, 0.0), None);
        assert_eq!(write_amp(&d, 40960), Some(2.0));
        assert_eq!(write_amp(&d, 0), None);
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
}
