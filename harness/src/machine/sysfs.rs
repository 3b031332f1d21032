//! Small readers of /proc and /sys files shared by the other machine modules.

use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// Trimmed contents of a small text file; None when missing, unreadable or empty.
pub(crate) fn read_sys_str(path: impl AsRef<Path>) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

pub(crate) fn read_sys_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_sys_str(path)?.parse().ok()
}

pub(crate) fn read_sys_i64(path: impl AsRef<Path>) -> Option<i64> {
    read_sys_str(path)?.parse().ok()
}

/// A JSON value from an Option (None → null).
pub(crate) fn opt<T: Serialize>(v: Option<T>) -> Value {
    v.and_then(|x| serde_json::to_value(x).ok())
        .unwrap_or(Value::Null)
}

/// A /proc/meminfo field in bytes (the file reports kB).
pub(crate) fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
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
