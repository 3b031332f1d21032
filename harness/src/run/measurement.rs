//! Measurement: what one run's workers reported, merged, and what the machine did over the
//! measured window (process and system CPU, device counters). No formatting here: the summary
//! turns a [`Measurement`] into rows, notes and detail.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use snapbench_engines::Caps;

use crate::driver::{Tick, WorkCosts, WorkerOutcome, INTERRUPTED};
use crate::error::RunError;
use crate::machine;
use crate::measure::{Intervals, LatHist, SecondHists, Stats};
use crate::plan::RunPlan;
use crate::results::RunStatus;

/// Machine counters taken at one edge of the measured window.
#[derive(Clone, Default)]
pub struct Sample {
    /// Process CPU so far.
    pub cpu: machine::ProcCpu,
    /// System-wide CPU so far (None when /proc/stat is unreadable).
    pub sys: Option<machine::SysCpu>,
    /// Counters of the disk under `--dir` (None when it has none, e.g. tmpfs).
    pub disk: Option<machine::DiskStats>,
    /// When the sample was taken.
    pub at: Option<Instant>,
    // -- issue 10: what a run records --
    /// Every thread's CPU and context switches (for CPU by role).
    pub tasks: machine::threads::Tasks,
    /// Per-CPU counts of the disk's queue interrupts (None when not found).
    pub disk_irqs: Option<Vec<u64>>,
}

impl Sample {
    /// Take a sample now, with the counters of block device `disk` when given.
    pub fn take(disk: Option<&str>) -> Sample {
        Sample {
            cpu: machine::proc_cpu(),
            sys: machine::sys_cpu(),
            disk: disk.and_then(machine::disk_stats),
            at: Some(Instant::now()),
            tasks: machine::threads::tasks(),
            disk_irqs: disk.and_then(machine::irq::disk_irq_counts),
        }
    }
}

/// The workers' per-second ticks, merged by second (all workers of a second in one [`Tick`]).
#[derive(Default)]
pub struct Seconds {
    /// Second → (workers heard from, their sum).
    pub by_second: BTreeMap<u64, (u32, Tick)>,
    // -- issue 10: histograms --
    /// The seconds' interval histograms, compressed as each second completes.
    pub intervals: Intervals,
}

impl Seconds {
    /// Add one worker's tick; returns the second's merged ops once `workers` workers have
    /// reported it.
    pub fn add(&mut self, t: Tick, workers: u32) -> Option<u64> {
        let sec = t.second;
        let entry = self.by_second.entry(sec).or_insert_with(|| {
            (
                0,
                Tick {
                    worker: 0,
                    second: sec,
                    ops: 0,
                    bytes: 0,
                    io_ops: 0,
                    errors: 0,
                    max_lag_ns: 0,
                    lat: LatHist::new(),
                    hists: Default::default(),
                },
            )
        });
        entry.0 += 1;
        entry.1.ops += t.ops;
        entry.1.bytes += t.bytes;
        entry.1.io_ops += t.io_ops;
        entry.1.errors += t.errors;
        entry.1.max_lag_ns = entry.1.max_lag_ns.max(t.max_lag_ns);
        entry.1.lat.merge(&t.lat);
        SecondHists::merge_into(&mut entry.1.hists, &t.hists);
        if entry.0 == workers {
            // Every worker has reported this second: compress its histograms and free them.
            let hists = std::mem::take(&mut entry.1.hists);
            self.intervals.push(sec, &hists);
        }
        (entry.0 == workers).then_some(entry.1.ops)
    }

    /// Compress the seconds not every worker reported (the last ones) and hand over the
    /// per-second rows and the interval histograms.
    pub fn finish(mut self) -> (BTreeMap<u64, (u32, Tick)>, Intervals) {
        for (sec, (_, t)) in self.by_second.iter_mut() {
            if t.hists.iter().any(Option::is_some) {
                let hists = std::mem::take(&mut t.hists);
                self.intervals.push(*sec, &hists);
            }
        }
        self.intervals.sort();
        (self.by_second, self.intervals)
    }
}

/// Everything measured about one run.
pub struct Measurement {
    /// Counters and histograms of the window, all workers merged.
    pub stats: Stats,
    /// How the run ended.
    pub status: RunStatus,
    /// Lag exceeded the limit at some point.
    pub saturated: bool,
    /// The first problem: the run's own setup failure, else the first worker's fatal error or
    /// first I/O error (a tolerated I/O error is kept too, on an `ok` row).
    pub error: Option<RunError>,
    /// Measured window actually covered, s (the plan's duration unless cut short).
    pub duration_s: f64,
    /// Process user CPU over the window, s.
    pub cpu_user_s: f64,
    /// Process system CPU over the window, s.
    pub cpu_sys_s: f64,
    /// System-wide busy CPU over the window, s.
    pub sys_busy_s: Option<f64>,
    /// Device counters over the window.
    pub disk: Option<machine::DiskStats>,
    /// Logs created.
    pub matches_started: u64,
    /// Logs sealed and closed.
    pub matches_sealed: u64,
    /// Snapshots offered in the window.
    pub offered: u64,
    /// Prefilled (or adopted) matches.
    pub prefill_matches: u64,
    /// Their bytes.
    pub prefill_bytes: u64,
    /// Longest prefill, s.
    pub prefill_s: f64,
    /// The first few read verification failures, each with file and offset.
    pub read_error_msgs: Vec<String>,
    /// The engine's declared capabilities (from the first worker that built one).
    pub caps: Option<Caps>,
    /// io_uring io-wq worker threads alive when the run ended.
    pub io_wq_threads_at_end: usize,
    // -- issue 10: what a run records --
    /// System-wide CPU stolen by the hypervisor over the window, s.
    pub sys_steal_s: Option<f64>,
    /// CPU and context switches by thread role over the window (None when /proc/self/task
    /// could not be read).
    pub role_cpu: Option<machine::threads::RoleCpu>,
    /// Peak RSS of the run, bytes (None when VmHWM could not be reset).
    pub mem_peak_rss_bytes: Option<u64>,
    /// RSS when the run started, bytes.
    pub mem_start_rss_bytes: Option<u64>,
    /// CPUs that took the disk's interrupts in the window (None when unknown).
    pub disk_irq_cpus: Option<Vec<usize>>,
    // -- issue 10: bounded runs --
    /// Snapshots written within the window by completion time.
    pub window_ops: u64,
    /// Their payload bytes.
    pub window_bytes: u64,
    /// Snapshots intended in the window and not written when the drain ended.
    pub not_completed: u64,
    /// A worker stopped before the window's end because lag passed the limit.
    pub stopped_early: bool,
    // -- issue 10: placement (per-second CPU) --
    /// CPU of each second since the run started, as [`CpuSeconds`] sampled it.
    pub cpu_by_second: BTreeMap<u64, SecondCpu>,
    // -- issue 10: micro --
    /// What was done to the page cache before the window ([`machine::drop_before_window`]).
    pub page_cache_before_window: String,
    // -- issue 10: search --
    /// Busiest DS worker's utilisation (1 − waited ÷ window it ran); None for micro.
    pub worker_util: Option<f64>,
    // -- issue 11: harness, recorder and engine cost apart --
    /// The DS workers' time by role and work counters, merged; None for micro runs.
    pub costs: Option<WorkCosts>,
}

/// CPU over one second of a run, in cores (CPU seconds per wall second).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SecondCpu {
    /// This process (all threads, io-wq and SQPOLL threads included).
    pub cpu_cores: f64,
    /// The whole system, busy (steal excluded); None when /proc/stat is unreadable.
    pub sys_busy_cores: Option<f64>,
    /// The whole system, stolen by the hypervisor; None when /proc/stat is unreadable.
    pub sys_steal_cores: Option<f64>,
}

/// Samples process and system CPU once per second of a run, from the monitor (main) thread:
/// [`CpuSeconds::poll`] at each loop turn takes a sample when a second boundary (counted from
/// the run's start) has passed, and [`CpuSeconds::next_edge`] says when to wake for the next.
pub struct CpuSeconds {
    start: Instant,
    next: u64,
    last_at: Instant,
    last_cpu: machine::ProcCpu,
    last_sys: Option<machine::SysCpu>,
    /// The seconds sampled so far.
    pub by_second: BTreeMap<u64, SecondCpu>,
}

impl CpuSeconds {
    /// Starts sampling, with second 0 beginning at `start`; the first reading is taken now.
    pub fn new(start: Instant) -> CpuSeconds {
        CpuSeconds {
            start,
            next: 0,
            last_at: Instant::now(),
            last_cpu: machine::proc_cpu(),
            last_sys: machine::sys_cpu(),
            by_second: BTreeMap::new(),
        }
    }

    /// When second `next` ends (the next sample is due).
    pub fn next_edge(&self) -> Instant {
        self.start + std::time::Duration::from_secs(self.next + 1)
    }

    /// Takes a sample if the current second has ended, closing that second.
    pub fn poll(&mut self, now: Instant) {
        if now < self.next_edge() {
            return;
        }
        let cpu = machine::proc_cpu();
        let sys = machine::sys_cpu();
        let at = Instant::now();
        let wall_s = at.duration_since(self.last_at).as_secs_f64();
        let (sys_busy_cores, sys_steal_cores) = match (&self.last_sys, &sys) {
            (Some(a), Some(b)) if wall_s > 0.0 => (
                Some(machine::SysCpu::busy_between(a, b, wall_s) / wall_s),
                Some(machine::SysCpu::steal_between(a, b) / wall_s),
            ),
            _ => (None, None),
        };
        let used_s = (cpu.user_s - self.last_cpu.user_s) + (cpu.sys_s - self.last_cpu.sys_s);
        if wall_s > 0.0 {
            self.by_second.insert(
                self.next,
                SecondCpu {
                    cpu_cores: used_s.max(0.0) / wall_s,
                    sys_busy_cores,
                    sys_steal_cores,
                },
            );
        }
        // A monitor that woke late (more than a second) closes the seconds it missed as one.
        let elapsed = at.saturating_duration_since(self.start).as_secs();
        self.next = elapsed.max(self.next + 1);
        self.last_at = at;
        self.last_cpu = cpu;
        self.last_sys = sys;
    }
}

/// A run whose steal exceeds this share of its system CPU (busy + steal) is noisy.
pub const NOISY_STEAL_FRACTION: f64 = 0.05;

impl Measurement {
    /// Steal exceeded [`NOISY_STEAL_FRACTION`] of the window's system CPU (busy + steal).
    /// Adds the run's memory figures, read now against what `start` saw.
    pub fn with_memory(mut self, start: machine::memory::MemStart) -> Measurement {
        self.mem_peak_rss_bytes = start.peak_rss_bytes();
        self.mem_start_rss_bytes = start.rss_bytes;
        self
    }

    /// Records what was done to the page cache before the window.
    pub fn with_page_cache(mut self, before_window: String) -> Measurement {
        self.page_cache_before_window = before_window;
        self
    }

    /// Steal exceeded [`NOISY_STEAL_FRACTION`] of the window's system CPU (busy + steal).
    pub fn noisy(&self) -> bool {
        is_noisy(self.sys_busy_s, self.sys_steal_s)
    }
}

/// Steal exceeded [`NOISY_STEAL_FRACTION`] of busy + steal (false when either is unknown).
pub fn is_noisy(busy_s: Option<f64>, steal_s: Option<f64>) -> bool {
    match (busy_s, steal_s) {
        (Some(busy), Some(steal)) if busy + steal > 0.0 => {
            steal > NOISY_STEAL_FRACTION * (busy + steal)
        }
        _ => false,
    }
}

impl Measurement {
    /// Merge the workers' outcomes and the window's samples. `fatal` is the run's own setup
    /// failure, if any; the driver's messages are wrapped here, at its boundary.
    pub fn collect(
        plan: &RunPlan,
        outcomes: Vec<WorkerOutcome>,
        fatal: Option<RunError>,
        s0: Sample,
        s1: Sample,
    ) -> Measurement {
        let engine = plan.engine.variant();
        let mut stats = Stats::default();
        let mut saturated = false;
        let mut interrupted = INTERRUPTED.load(Ordering::Relaxed);
        let mut failed = fatal.is_some();
        let mut error = fatal;
        let (mut started, mut sealed, mut offered) = (0, 0, 0);
        let (mut window_ops, mut window_bytes, mut not_completed) = (0u64, 0u64, 0u64);
        let mut stopped_early = false;
        let mut worker_util: Option<f64> = None;
        let mut costs: Option<WorkCosts> = None;
        let (mut prefill_matches, mut prefill_bytes, mut prefill_s) = (0, 0, 0.0f64);
        let mut read_error_msgs: Vec<String> = Vec::new();
        let mut caps = None;
        for o in outcomes {
            if let Some(c) = &o.costs {
                costs.get_or_insert_with(WorkCosts::default).merge(c);
            }
            if let Some(u) = o.worker_util() {
                worker_util = Some(worker_util.map_or(u, |w| w.max(u)));
            }
            prefill_matches += o.prefill_matches;
            prefill_bytes += o.prefill_bytes;
            prefill_s = prefill_s.max(o.prefill_s);
            read_error_msgs.extend(o.read_error_msgs);
            stats.merge(&o.stats);
            saturated |= o.saturated;
            interrupted |= o.interrupted;
            started += o.matches_started;
            sealed += o.matches_sealed;
            offered += o.offered;
            window_ops += o.window_ops;
            window_bytes += o.window_bytes;
            not_completed += o.not_completed;
            stopped_early |= o.stopped_early;
            failed |= o.fatal.is_some();
            if error.is_none() {
                error = match (o.fatal, o.first_error) {
                    (Some(detail), _) => Some(RunError::Worker {
                        engine: engine.clone(),
                        op: crate::error::WorkerOp::Run,
                        detail,
                    }),
                    (None, Some(detail)) => Some(RunError::Io {
                        engine: engine.clone(),
                        detail,
                    }),
                    (None, None) => None,
                };
            }
            if caps.is_none() {
                caps = o.caps;
            }
        }
        failed |= stats.errors > plan.max_errors;
        // A replay that reads back wrong data is a verification failure: the run fails (exit 1).
        if stats.read_errors > 0 {
            failed = true;
            if error.is_none() {
                error = Some(RunError::ReadVerification {
                    count: stats.read_errors,
                    first: read_error_msgs.first().cloned().unwrap_or_default(),
                });
            }
        }
        let status = RunStatus::from_flags(failed, interrupted, saturated);
        // A complete run covers its whole window; a run cut short covers what was sampled of it.
        let sampled_s = match (s0.at, s1.at) {
            (Some(a), Some(b)) if b > a => b.duration_since(a).as_secs_f64().min(plan.duration_s),
            _ => 0.0,
        };
        let duration_s = if (failed || interrupted) && sampled_s > 0.0 {
            sampled_s
        } else {
            plan.duration_s
        };
        // System-wide busy CPU from precise idle time (the tick-sampled busy fields of
        // /proc/stat under-count work done in short bursts, such as a driver that sleeps between
        // events).
        let sys_busy_s = match (s0.sys, s1.sys, s0.at, s1.at) {
            (Some(a), Some(b), Some(t0), Some(t1)) if t1 > t0 => Some(
                machine::SysCpu::busy_between(&a, &b, t1.duration_since(t0).as_secs_f64()),
            ),
            _ => None,
        };
        let sys_steal_s = match (s0.sys, s1.sys) {
            (Some(a), Some(b)) => Some(machine::SysCpu::steal_between(&a, &b)),
            _ => None,
        };
        let role_cpu = (!s1.tasks.is_empty()).then(|| {
            machine::threads::role_cpu_between(&s0.tasks, &s1.tasks, machine::cpu::clk_tck())
        });
        let disk = match (s0.disk, s1.disk) {
            (Some(a), Some(b)) => Some(b.delta(&a)),
            _ => None,
        };
        Measurement {
            stats,
            status,
            saturated,
            error,
            duration_s,
            cpu_user_s: s1.cpu.user_s - s0.cpu.user_s,
            cpu_sys_s: s1.cpu.sys_s - s0.cpu.sys_s,
            sys_busy_s,
            disk,
            matches_started: started,
            matches_sealed: sealed,
            offered,
            prefill_matches,
            prefill_bytes,
            prefill_s,
            read_error_msgs,
            caps,
            io_wq_threads_at_end: machine::count_threads("iou-wrk"),
            sys_steal_s,
            role_cpu,
            mem_peak_rss_bytes: None,
            mem_start_rss_bytes: None,
            disk_irq_cpus: match (&s0.disk_irqs, &s1.disk_irqs) {
                (Some(a), Some(b)) => Some(machine::irq::cpus_between(a, b)),
                _ => None,
            },
            window_ops,
            window_bytes,
            not_completed,
            stopped_early,
            cpu_by_second: BTreeMap::new(),
            page_cache_before_window: "not dropped".to_string(),
            worker_util,
            costs,
        }
    }

    /// Adds the per-second CPU the monitor sampled.
    pub fn with_cpu_by_second(mut self, cpu: BTreeMap<u64, SecondCpu>) -> Measurement {
        self.cpu_by_second = cpu;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_samples_once_per_second_boundary() {
        let start = Instant::now();
        let mut c = CpuSeconds::new(start);
        c.poll(start);
        assert!(c.by_second.is_empty(), "no second has ended");
        // Busy for a while, then say a second has ended.
        let until = Instant::now() + std::time::Duration::from_millis(100);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        c.poll(start + std::time::Duration::from_secs(1));
        let s0 = c.by_second[&0];
        assert!(s0.cpu_cores > 0.05, "{s0:?}");
        if let Some(busy) = s0.sys_busy_cores {
            assert!(busy >= 0.0 && s0.sys_steal_cores.unwrap() >= 0.0, "{s0:?}");
        }
        assert_eq!(c.next_edge(), start + std::time::Duration::from_secs(2));
        c.poll(start + std::time::Duration::from_millis(1500));
        assert_eq!(c.by_second.len(), 1, "second 1 has not ended");
    }

    #[test]
    fn noisy_when_steal_passes_five_percent() {
        assert!(!is_noisy(Some(1.9), Some(0.1)), "5 % exactly is not over");
        assert!(is_noisy(Some(1.8), Some(0.2)));
        assert!(!is_noisy(Some(2.0), Some(0.0)));
        assert!(!is_noisy(None, Some(1.0)));
        assert!(!is_noisy(Some(0.0), Some(0.0)));
    }
}
