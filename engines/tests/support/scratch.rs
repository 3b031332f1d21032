//! A small scratch ext4 on a loop device (root only), shared by the engine and harness fault
//! tests: mount, power-cut (the ext4 shutdown ioctl with `EXT4_GOING_FLAGS_NOLOGFLUSH`, which
//! docs/machine.md shows drops everything not yet synced), remount, undo on drop.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `EXT4_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`).
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
/// Shut down without flushing the journal: like pulling the plug.
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// A mounted scratch ext4 image; unmounted and detached on drop.
pub struct ScratchExt4 {
    _tmp: tempfile::TempDir,
    mnt: PathBuf,
    dev: String,
    opts: String,
}

/// Run a command that must succeed; its trimmed stdout.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl ScratchExt4 {
    /// A fresh `size_mib` ext4 mounted with `opts` (e.g. `commit=60`, so that only explicit
    /// syncs commit the journal and a power cut loses everything else).
    pub fn new(size_mib: u64, opts: &str) -> ScratchExt4 {
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let img = tmp.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        sh("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
        let dev = sh("losetup", &["-f", "--show", img.to_str().unwrap()]);
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let s = ScratchExt4 {
            _tmp: tmp,
            mnt,
            dev,
            opts: opts.to_string(),
        };
        s.mount();
        s
    }

    fn mount(&self) {
        let mut args = vec![self.dev.as_str(), self.mnt.to_str().unwrap()];
        if !self.opts.is_empty() {
            args.extend(["-o", self.opts.as_str()]);
        }
        sh("mount", &args);
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// Cut the power: every later I/O on this filesystem fails with EIO, and what was not
    /// synced is gone once it is mounted again.
    pub fn power_cut(&self) {
        let dir = std::fs::File::open(&self.mnt).unwrap();
        let flags: u32 = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: the kernel reads one u32 from `&flags`, which lives across the call; `dir` is
        // an open descriptor on the filesystem to shut down.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags) };
        assert_eq!(
            rc,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Unmount and mount again (after [`power_cut`](Self::power_cut): the journal replays
    /// what was committed). Every file of the filesystem must be closed.
    ///
    /// An umount that finds the filesystem busy is retried for up to 5 s: the kernel may drop
    /// the last reference to a just-closed file a moment after `close` returns (a deferred
    /// `fput`), and this suite runs its variants on parallel threads. A descriptor really left
    /// open still fails it, naming the mount.
    pub fn remount(&self) {
        let mnt = self.mnt.to_str().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let out = Command::new("umount").arg(mnt).output().expect("umount");
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                err.contains("busy") && std::time::Instant::now() < deadline,
                "umount {mnt}: {err} (open descriptors: {:?})",
                open_fds_under(&self.mnt)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.mount();
    }
}

impl Drop for ScratchExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// This process's open descriptors that point under `dir` (for a busy-umount message).
fn open_fds_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| p.starts_with(dir))
        .collect()
}
