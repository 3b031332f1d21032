//! CPU time and context switches of this process's threads, grouped by role from the thread's
//! name (/proc/self/task/*/stat and status). io_uring's io-wq workers and SQPOLL threads are
//! tasks of our process and appear there too.

use std::collections::BTreeMap;

/// What a thread does, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A benchmark worker (`sb-worker-*`).
    Worker,
    /// An engine's helper threads: the buffered pool (`sb-io-*`), tokio's runtime and blocking
    /// threads (`sb-tokio-*`, or tokio's default `tokio-runtime-*` names).
    Pool,
    /// io_uring io-wq workers (`iou-wrk-*`).
    IoWq,
    /// io_uring SQPOLL threads (`iou-sqp-*`).
    Sqpoll,
    /// Everything else (the main thread, libraries' threads).
    Other,
}

impl Role {
    /// The role of a thread named `comm`.
    pub fn of(comm: &str) -> Role {
        if comm.starts_with("sb-worker") {
            Role::Worker
        } else if comm.starts_with("sb-io-")
            || comm.starts_with("sb-tokio")
            || comm.starts_with("tokio-runtime")
        {
            Role::Pool
        } else if comm.starts_with("iou-wrk") {
            Role::IoWq
        } else if comm.starts_with("iou-sqp") {
            Role::Sqpoll
        } else {
            Role::Other
        }
    }
}

/// One thread's counters so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskCpu {
    /// Its role, from its name.
    pub role: Option<Role>,
    /// utime + stime, clock ticks.
    pub ticks: u64,
    /// Voluntary context switches.
    pub ctx_voluntary: u64,
    /// Involuntary context switches.
    pub ctx_involuntary: u64,
}

/// Every thread of this process at one instant, by thread id.
pub type Tasks = BTreeMap<u32, TaskCpu>;

/// CPU seconds and context switches by role over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct RoleCpu {
    /// Worker threads' CPU, s.
    pub worker_s: f64,
    /// Engine helper (pool, tokio) threads' CPU, s.
    pub pool_s: f64,
    /// io-wq workers' CPU, s.
    pub iowq_s: f64,
    /// SQPOLL threads' CPU, s.
    pub sqpoll_s: f64,
    /// Other threads' CPU, s.
    pub other_s: f64,
    /// Voluntary context switches of all threads.
    pub ctx_voluntary: u64,
    /// Involuntary context switches of all threads.
    pub ctx_involuntary: u64,
}

/// (name, utime + stime) from one /proc/PID/task/TID/stat line; the name may hold spaces and
/// parentheses, so the fields are counted after its last ')'.
pub fn parse_task_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// (voluntary, involuntary) context switches from a /proc/…/status text.
pub fn parse_ctx_switches(text: &str) -> (u64, u64) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// Reads every thread of this process now (threads that vanish while being read are skipped).
pub fn tasks() -> Tasks {
    let mut out = Tasks::new();
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Some((name, ticks)) = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_task_stat)
        else {
            continue;
        };
        let (vol, invol) = std::fs::read_to_string(e.path().join("status"))
            .map(|s| parse_ctx_switches(&s))
            .unwrap_or((0, 0));
        out.insert(
            tid,
            TaskCpu {
                role: Some(Role::of(&name)),
                ticks,
                ctx_voluntary: vol,
                ctx_involuntary: invol,
            },
        );
    }
    out
}

/// CPU by role between two readings: each thread alive at `later` counts what it used since
/// `earlier` (all of it when it was born in between). A thread that exited before `later` is
/// not counted; take `later` before the workers join.
pub fn role_cpu_between(earlier: &Tasks, later: &Tasks, ticks_per_s: f64) -> RoleCpu {
    let mut r = RoleCpu::default();
    for (tid, t) in later {
        let e = earlier.get(tid).copied().unwrap_or_default();
        let s = t.ticks.saturating_sub(e.ticks) as f64 / ticks_per_s;
        match t.role.unwrap_or(Role::Other) {
            Role::Worker => r.worker_s += s,
            Role::Pool => r.pool_s += s,
            Role::IoWq => r.iowq_s += s,
            Role::Sqpoll => r.sqpoll_s += s,
            Role::Other => r.other_s += s,
        }
        r.ctx_voluntary += t.ctx_voluntary.saturating_sub(e.ctx_voluntary);
        r.ctx_involuntary += t.ctx_involuntary.saturating_sub(e.ctx_involuntary);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_task_stat_with_odd_names() {
        let line =
            "4242 (sb-worker (0) x) S 1 1 1 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 99 0 0\n";
        let (name, ticks) = parse_task_stat(line).unwrap();
        assert_eq!(name, "sb-worker (0) x");
        assert_eq!(ticks, 325);
        assert!(parse_task_stat("12 (x) S 1 2").is_none());
    }

    #[test]
    fn parses_context_switches() {
        let s = "Name:\tx\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t4\n";
        assert_eq!(parse_ctx_switches(s), (17, 4));
        assert_eq!(parse_ctx_switches("Name:\tx\n"), (0, 0));
    }

    #[test]
    fn roles_and_deltas() {
        assert_eq!(Role::of("sb-worker-0"), Role::Worker);
        assert_eq!(Role::of("sb-io-0-3"), Role::Pool);
        assert_eq!(Role::of("sb-tokio-1"), Role::Pool);
        assert_eq!(Role::of("iou-wrk-4242"), Role::IoWq);
        assert_eq!(Role::of("iou-sqp-4242"), Role::Sqpoll);
        assert_eq!(Role::of("snapbench"), Role::Other);
        let t = |role, ticks, v, i| TaskCpu {
            role: Some(role),
            ticks,
            ctx_voluntary: v,
            ctx_involuntary: i,
        };
        let earlier: Tasks = [
            (1, t(Role::Worker, 100, 10, 1)),
            (2, t(Role::IoWq, 5, 0, 0)),
        ]
        .into_iter()
        .collect();
        // Thread 2 exited; thread 3 (SQPOLL) was born in the window.
        let later: Tasks = [
            (1, t(Role::Worker, 250, 30, 2)),
            (3, t(Role::Sqpoll, 50, 5, 5)),
        ]
        .into_iter()
        .collect();
        let r = role_cpu_between(&earlier, &later, 100.0);
        assert_eq!(r.worker_s, 1.5);
        assert_eq!(r.sqpoll_s, 0.5);
        assert_eq!(r.iowq_s, 0.0);
        assert_eq!((r.ctx_voluntary, r.ctx_involuntary), (25, 6));
    }

    #[test]
    fn this_process_has_threads_with_cpu() {
        let ts = tasks();
        assert!(!ts.is_empty());
        assert!(ts.values().all(|t| t.role.is_some()));
    }
}
