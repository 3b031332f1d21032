//! CPU time: this process's user/system seconds (getrusage, which counts io_uring's SQPOLL and
//! io-wq kernel threads) and system-wide busy/idle seconds from /proc/stat.

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
/// `busy_s` = user+nice+system+irq+softirq (not idle/iowait, not steal); `steal_s` = time the
/// hypervisor ran something else while this VM wanted a CPU; `total_s` = busy + steal + idle +
/// iowait. guest/guest_nice are left out of both: the kernel already counts them inside
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
    /// Seconds stolen by the hypervisor (the steal column): neither busy nor idle for this VM.
    pub steal_s: f64,
}

impl SysCpu {
    /// System-wide busy CPU seconds between two readings `wall_s` apart, from precise idle time,
    /// steal excluded (never negative).
    pub fn busy_between(earlier: &SysCpu, later: &SysCpu, wall_s: f64) -> f64 {
        let cpus = later.cpus.max(1) as f64;
        (wall_s * cpus - (later.idle_s - earlier.idle_s) - SysCpu::steal_between(earlier, later))
            .max(0.0)
    }

    /// Seconds stolen by the hypervisor between two readings (never negative).
    pub fn steal_between(earlier: &SysCpu, later: &SysCpu) -> f64 {
        (later.steal_s - earlier.steal_s).max(0.0)
    }
}

/// Clock ticks per second used by /proc/stat (the kernel's AT_CLKTCK, as sysconf(_SC_CLK_TCK)
/// reports it; 100 when it cannot tell).
pub(crate) fn clk_tck() -> f64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        t => t as f64,
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
    let busy = f(0) + f(1) + f(2) + f(5) + f(6);
    let total = busy + f(7) + f(3) + f(4);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(SysCpu {
        busy_s: busy as f64 / ticks_per_s,
        total_s: total as f64 / ticks_per_s,
        idle_s: (f(3) + f(4)) as f64 / ticks_per_s,
        cpus,
        steal_s: f(7) as f64 / ticks_per_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
    fn parse_proc_stat_excludes_guest_idle_and_steal() {
        let s =
            parse_proc_stat("cpu  100 10 50 1000 20 5 5 10 40 0\ncpu0 1 1 1 1\n", 100.0).unwrap();
        assert!((s.busy_s - 1.7).abs() < 1e-9, "{s:?}");
        assert!((s.steal_s - 0.1).abs() < 1e-9, "{s:?}");
        assert_eq!(s.total_s, 12.0);
        assert_eq!(s.idle_s, 10.2);
        assert_eq!(s.cpus, 1);
        let stolen = SysCpu {
            idle_s: s.idle_s + 1.0,
            steal_s: s.steal_s + 0.25,
            ..s
        };
        // 2 s on one CPU: 1 s idle, 0.25 s stolen, 0.75 s busy.
        assert!((SysCpu::busy_between(&s, &stolen, 2.0) - 0.75).abs() < 1e-9);
        assert!((SysCpu::steal_between(&s, &stolen) - 0.25).abs() < 1e-9);
        let later = SysCpu {
            idle_s: s.idle_s + 1.5,
            ..s
        };
        // 2 s of wall time on one CPU, 1.5 s of it idle: 0.5 s busy.
        assert!((SysCpu::busy_between(&s, &later, 2.0) - 0.5).abs() < 1e-9);
        assert!(parse_proc_stat("intr 1 2 3\n", 100.0).is_none());
    }
}
