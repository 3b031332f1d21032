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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_caches_reports_reason() {
        match drop_caches() {
            Ok(()) => assert_eq!(euid(), 0, "drop_caches succeeded as non-root"),
            Err(e) => assert!(e.to_string().contains("drop_caches"), "{e}"),
        }
    }
}
