//! The host part of meta.json (kernel, CPU, memory, clocksource, io_uring and memlock limits,
//! user) and the build facts.

use serde_json::{json, Value};

use super::affinity::available_cpus;
use super::sysfs::{meminfo_bytes, opt, read_sys_i64, read_sys_str};

/// uname's (release, version, nodename).
fn uname_fields() -> Option<(String, String, String)> {
    let u = rustix::system::uname();
    let field = |f: &std::ffi::CStr| f.to_string_lossy().into_owned();
    Some((field(u.release()), field(u.version()), field(u.nodename())))
}

/// The CPU model line of /proc/cpuinfo.
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

/// Online CPUs (sysconf _SC_NPROCESSORS_ONLN).
fn online_cpus() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).ok().filter(|n| *n > 0)
}

/// RLIMIT_MEMLOCK: {`soft_bytes`, `hard_bytes`}, each a number or "unlimited".
fn rlimit_memlock() -> Value {
    let rl = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    let lim = |v: Option<u64>| match v {
        None => json!("unlimited"),
        Some(v) => json!(v),
    };
    json!({ "soft_bytes": lim(rl.current), "hard_bytes": lim(rl.maximum) })
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
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

/// Build facts embedded by build.rs: {`version` (CARGO_PKG_VERSION), `git_commit` (short hash,
/// "-dirty" when tracked files had changes, "unknown" without git), `rustc` (`rustc -V`)}.
pub fn build_info() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("SNAPBENCH_GIT_COMMIT").unwrap_or("unknown"),
        "rustc": option_env!("SNAPBENCH_RUSTC").unwrap_or("unknown"),
    })
}

/// `fio --version` of the fio found on PATH (`fio-3.33`), or None when there is none or it
/// does not answer.
pub fn fio_version() -> Option<String> {
    let out = std::process::Command::new("fio")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
