//! The capacity search as a sans-I/O state machine: it says which load (`matches`) to try
//! next, takes the step's pass/fail verdict, and ends with a bracket [last pass, first fail].
//!
//! It grows exponentially from `start` (×`growth`, capped at `max`) until the first failing
//! step, then bisects between the last pass and the first fail until their gap is at most
//! `resolution` of the last pass (or 1). It ends early when `max` passes (capacity ≥ `max`) or
//! when `start` fails (no passing load found).

/// How a search grows and when it stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchConfig {
    /// First load tried.
    pub start: u32,
    /// Growth factor between steps before the first fail (> 1).
    pub growth: f64,
    /// Upper bound: a pass here ends the search (capacity ≥ max).
    pub max: u32,
    /// Bisection stops when first_fail − last_pass ≤ this share of last_pass (or ≤ 1).
    pub resolution: f64,
}

impl SearchConfig {
    /// Checks the configuration; the error is one line naming the problem and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.start < 1 {
            return Err("--start must be at least 1".into());
        }
        if !(self.growth.is_finite() && self.growth > 1.0) {
            return Err(format!(
                "--growth {} must be a number above 1 (e.g. 2)",
                self.growth
            ));
        }
        if self.max < self.start {
            return Err(format!(
                "--max {} is below --start {}; give a larger --max",
                self.max, self.start
            ));
        }
        if !(self.resolution.is_finite() && self.resolution >= 0.0) {
            return Err("the search resolution must be a non-negative number".into());
        }
        Ok(())
    }
}

/// How a search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Capacity lies in [last_pass, first_fail).
    Bracket {
        /// Largest load that passed.
        last_pass: u32,
        /// Smallest load that failed.
        first_fail: u32,
    },
    /// The upper bound passed: capacity ≥ `last_pass` (= max).
    AtLeastMax {
        /// The upper bound, which passed.
        last_pass: u32,
    },
    /// The start failed: capacity < `first_fail` (= start), nothing passed.
    StartFails {
        /// The start, which failed.
        first_fail: u32,
    },
}

impl Outcome {
    /// The last passing load, if any.
    pub fn last_pass(&self) -> Option<u32> {
        match *self {
            Outcome::Bracket { last_pass, .. } | Outcome::AtLeastMax { last_pass } => {
                Some(last_pass)
            }
            Outcome::StartFails { .. } => None,
        }
    }

    /// The first failing load, if any.
    pub fn first_fail(&self) -> Option<u32> {
        match *self {
            Outcome::Bracket { first_fail, .. } | Outcome::StartFails { first_fail } => {
                Some(first_fail)
            }
            Outcome::AtLeastMax { .. } => None,
        }
    }
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run a step at this load and [`Search::record`] its verdict.
    Try(u32),
    /// The search is over.
    Done(Outcome),
}

/// The search's state: the bracket so far.
#[derive(Clone, Debug)]
pub struct Search {
    cfg: SearchConfig,
    last_pass: Option<u32>,
    first_fail: Option<u32>,
    steps: u32,
}

impl Search {
    /// A search with a validated configuration.
    pub fn new(cfg: SearchConfig) -> Result<Search, String> {
        cfg.validate()?;
        Ok(Search {
            cfg,
            last_pass: None,
            first_fail: None,
            steps: 0,
        })
    }

    /// The largest load that passed so far.
    pub fn last_pass(&self) -> Option<u32> {
        self.last_pass
    }

    /// The smallest load that failed so far.
    pub fn first_fail(&self) -> Option<u32> {
        self.first_fail
    }

    /// Steps recorded so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The next load to try, or the outcome.
    pub fn next(&self) -> Next {
        let c = &self.cfg;
        match (self.last_pass, self.first_fail) {
            (None, None) => Next::Try(c.start),
            (None, Some(f)) => Next::Done(Outcome::StartFails { first_fail: f }),
            (Some(p), None) if p >= c.max => Next::Done(Outcome::AtLeastMax { last_pass: p }),
            (Some(p), None) => {
                let grown = (f64::from(p) * c.growth).ceil();
                let grown = if grown >= f64::from(c.max) {
                    c.max
                } else {
                    grown as u32
                };
                Next::Try(grown.max(p + 1).min(c.max))
            }
            (Some(p), Some(f)) => {
                debug_assert!(p < f, "last pass {p} below first fail {f}");
                let gap = f - p;
                if gap <= 1 || f64::from(gap) <= c.resolution * f64::from(p) {
                    Next::Done(Outcome::Bracket {
                        last_pass: p,
                        first_fail: f,
                    })
                } else {
                    Next::Try(p + gap / 2)
                }
            }
        }
    }

    /// Records the verdict of the step at `load` (the value [`next`](Search::next) gave).
    pub fn record(&mut self, load: u32, pass: bool) {
        debug_assert_eq!(
            self.next(),
            Next::Try(load),
            "recorded a load not asked for"
        );
        self.steps += 1;
        if pass {
            self.last_pass = Some(self.last_pass.map_or(load, |p| p.max(load)));
        } else {
            self.first_fail = Some(self.first_fail.map_or(load, |f| f.min(load)));
        }
        if let (Some(p), Some(f)) = (self.last_pass, self.first_fail) {
            debug_assert!(p < f, "non-monotone verdicts: {p} passed, {f} failed");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Judging a step, naming the bottleneck, the search.csv row
// ------------------------------------------------------------------------------------------

use crate::results::{median_min_max, RunStatus, SummaryRow};

/// Runs per search step: the step is judged on their median (3, never fewer).
pub const RUNS_PER_STEP: u32 = 3;

/// Worker utilisation at or above which the worker is named the bottleneck.
pub const WORKER_BOUND_UTIL: f64 = 0.90;

/// Which latency the main SLO (`--slo-p99-ms`) applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloOn {
    /// Write p99 (snapshot intended time to written), plus ack p99 when `--slo-ack-p99-ms`.
    Write,
    /// Ack p99 (snapshot intended time to durable).
    Ack,
    /// Replay reads' time-to-first-byte p99 (read intended time to its first byte: the
    /// viewer's wait before playback starts); the searched load is then `reads_per_s` at a
    /// fixed `matches`. Writes are judged on latency only with `--slo-write-p99-ms`.
    // -- issue 10: search --slo-on read --
    Read,
}

impl SloOn {
    /// The name as the flag takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SloOn::Write => "write",
            SloOn::Ack => "ack",
            SloOn::Read => "read",
        }
    }
}

/// The SLO a search step must meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slo {
    /// p99 limit of the latency `on` names, ms.
    pub p99_ms: f64,
    /// Ack p99 limit, ms, judged jointly with the main SLO (with [`SloOn::Write`] or
    /// [`SloOn::Read`]).
    pub ack_p99_ms: Option<f64>,
    /// What `p99_ms` applies to.
    pub on: SloOn,
    /// Write p99 limit, ms, judged jointly with the read SLO (only with [`SloOn::Read`]).
    // -- issue 10: search --slo-on read --
    pub write_p99_ms: Option<f64>,
}

impl Slo {
    /// The write p99 limit, ms, if writes have one.
    pub fn write_limit_ms(&self) -> Option<f64> {
        match self.on {
            SloOn::Write => Some(self.p99_ms),
            SloOn::Ack => None,
            SloOn::Read => self.write_p99_ms,
        }
    }

    /// The replay reads' time-to-first-byte p99 limit, ms, if reads have one.
    pub fn read_limit_ms(&self) -> Option<f64> {
        (self.on == SloOn::Read).then_some(self.p99_ms)
    }

    /// The name of the searched load: `matches`, or `reads_per_s` with [`SloOn::Read`].
    pub fn load_name(&self) -> &'static str {
        match self.on {
            SloOn::Write | SloOn::Ack => "matches",
            SloOn::Read => "reads_per_s",
        }
    }

    /// The ack p99 limit, ms, if acks have one.
    pub fn ack_limit_ms(&self) -> Option<f64> {
        match self.on {
            SloOn::Write | SloOn::Read => self.ack_p99_ms,
            SloOn::Ack => Some(self.p99_ms),
        }
    }
}

/// Median of the values `f` gives for `rows` (None where a row has none, or no row).
pub fn median_of(rows: &[&SummaryRow], f: impl Fn(&SummaryRow) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
    median_min_max(&v).map(|(m, _, _)| m)
}

/// A step's verdict with the figures behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepVerdict {
    /// Every SLO met, no run saturated, failed or with errors.
    pub pass: bool,
    /// Why, in a few words with the figures.
    pub why: String,
}

/// Judges one step's runs: every run ok (none saturated, failed or interrupted, no errors, no
/// snapshot left unwritten), and the median p99 of every limited latency within its SLO. Under
/// a read SLO every run must also have verified its reads, with no read failing verification,
/// none dropped, and at least one time-to-first-byte sample.
pub fn judge(rows: &[&SummaryRow], slo: &Slo) -> StepVerdict {
    let fail = |why: String| StepVerdict { pass: false, why };
    if rows.is_empty() {
        return fail("no runs".into());
    }
    if let Some(r) = rows.iter().find(|r| r.status != RunStatus::Ok) {
        return fail(format!("{} {}", r.run_id, r.status.as_str()));
    }
    if let Some(r) = rows.iter().find(|r| r.errors > 0 || r.not_completed > 0) {
        return fail(format!(
            "{}: {} errors, {} not completed",
            r.run_id, r.errors, r.not_completed
        ));
    }
    if slo.read_limit_ms().is_some() {
        for r in rows {
            if !r.reads_verified {
                return fail(format!(
                    "{}: reads not verified (the engine does not store data); a read SLO needs an engine that does",
                    r.run_id
                ));
            }
            if r.read_errors > 0 {
                return fail(format!(
                    "{}: {} reads failed verification",
                    r.run_id, r.read_errors
                ));
            }
            if r.reads_dropped > 0 {
                return fail(format!(
                    "{}: {} reads dropped (a worker's read queue was full)",
                    r.run_id, r.reads_dropped
                ));
            }
            if r.read_ttfb_samples == 0 {
                return fail(format!("{}: no read samples", r.run_id));
            }
        }
    }
    let mut parts = Vec::new();
    let mut pass = true;
    let limits = [
        (
            "read ttfb p99",
            slo.read_limit_ms(),
            median_of(rows, |r| r.read_ttfb_p99_us),
        ),
        (
            "p99",
            slo.write_limit_ms(),
            median_of(rows, |r| r.lat_p99_us),
        ),
        (
            "ack p99",
            slo.ack_limit_ms(),
            median_of(rows, |r| r.ack_p99_us),
        ),
    ];
    for (name, limit, got_us) in limits {
        let Some(limit) = limit else { continue };
        match got_us {
            Some(us) => {
                let ms = us / 1000.0;
                let ok = ms <= limit;
                pass &= ok;
                parts.push(format!(
                    "{name} {ms:.2} ms {} {limit} ms",
                    if ok { "<=" } else { ">" }
                ));
            }
            None => {
                pass = false;
                parts.push(format!("no {name} recorded"));
            }
        }
    }
    StepVerdict {
        pass,
        why: parts.join(", "),
    }
}

/// Device write throughput at or above this share of the measured ceiling names the device.
pub const DEVICE_BOUND_FRACTION: f64 = 0.80;

/// A run's device write bytes per second (None without device counters).
pub fn device_write_bytes_per_s(r: &SummaryRow) -> Option<f64> {
    r.disk_write_bytes
        .filter(|_| r.duration_s > 0.0)
        .map(|b| b as f64 / r.duration_s)
}

/// The bottleneck at the knee, one word and the figures behind it, from the runs of the
/// first failing step (or of the last pass when nothing failed). `device` is claimed only
/// against `ceiling_bytes_per_s`, the device's own write ceiling measured on the same folder;
/// without one it is never claimed.
pub fn bottleneck(
    rows: &[&SummaryRow],
    slo: &Slo,
    lag_limit_ms: f64,
    ceiling_bytes_per_s: Option<f64>,
) -> (&'static str, String) {
    let util = median_of(rows, |r| r.worker_util);
    let util_text = util.map_or("worker_util -".to_string(), |u| {
        format!("worker_util {u:.2}")
    });
    if util.is_some_and(|u| u >= WORKER_BOUND_UTIL) {
        return ("worker", util_text);
    }
    let dev = median_of(rows, device_write_bytes_per_s);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let device_text = match (dev, ceiling_bytes_per_s) {
        (Some(d), Some(c)) if c > 0.0 => {
            let text = format!(
                "device writes {:.1} MiB/s = {:.0} % of ceiling {:.1} MiB/s",
                mib(d),
                100.0 * d / c,
                mib(c)
            );
            if d >= DEVICE_BOUND_FRACTION * c {
                return ("device", format!("{text}; {util_text}"));
            }
            text
        }
        _ => "device ceiling not measured, device never claimed".to_string(),
    };
    let write_us = median_of(rows, |r| r.lat_p99_us);
    let ack_us = median_of(rows, |r| r.ack_p99_us);
    let write_meets = match (slo.write_limit_ms(), write_us) {
        (Some(l), Some(w)) => w / 1000.0 <= l,
        (None, _) => true,
        (Some(_), None) => false,
    };
    if let (Some(l), Some(a)) = (slo.ack_limit_ms(), ack_us) {
        if a / 1000.0 > l && write_meets {
            return (
                "sync",
                format!(
                    "ack p99 {:.2} ms > {l} ms while writes meet theirs; {util_text}",
                    a / 1000.0
                ),
            );
        }
    }
    let max_lag_ms = rows.iter().map(|r| r.max_lag_ms).fold(0.0, f64::max);
    if max_lag_ms > lag_limit_ms {
        return (
            "generator",
            format!("max lag {max_lag_ms:.1} ms > limit {lag_limit_ms} ms; {util_text}"),
        );
    }
    (
        "undetermined",
        format!("{util_text}; max lag {max_lag_ms:.1} ms; {device_text}"),
    )
}

/// One row of search.csv: one engine variant's capacity under the SLO.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SearchRow {
    /// Engine name.
    pub engine: String,
    /// Engine variant.
    pub variant: String,
    /// Workload name.
    pub workload: String,
    /// Worker threads.
    pub workers: u32,
    /// The main SLO, ms (on what `slo_on` names).
    pub slo_p99_ms: f64,
    /// The joint ack SLO, ms, if given.
    pub slo_ack_p99_ms: Option<f64>,
    /// `write`, `ack` or `read`.
    pub slo_on: String,
    /// Largest load (matches, or reads_per_s with `slo_on` read; see `load`) that passed;
    /// empty when the start failed.
    pub last_pass: Option<u32>,
    /// Smallest load that failed; empty when the upper bound passed (capacity ≥ last_pass).
    pub first_fail: Option<u32>,
    /// Median snapshots/s completed at last_pass.
    pub ops_per_s: Option<f64>,
    /// Median MiB/s at last_pass.
    pub mib_per_s: Option<f64>,
    /// Median process CPU cores at last_pass.
    pub cpu_cores: Option<f64>,
    /// Median system-wide busy cores at last_pass.
    pub sys_cores: Option<f64>,
    /// last_pass ÷ median process cores busy at last_pass.
    pub matches_per_busy_core: Option<f64>,
    /// Median process CPU µs per snapshot at last_pass.
    pub cpu_us_per_op: Option<f64>,
    /// `worker`, `device`, `sync`, `generator` or `undetermined`.
    pub bottleneck: String,
    /// The figures behind it.
    pub bottleneck_detail: String,
    /// Steps the search took.
    pub steps: u32,
    /// The search ran with `--quick` (shorter runs: noisier).
    pub quick: bool,
    // -- issue 10: search --slo-on read --
    /// What was searched, the unit of last_pass and first_fail: `matches` or `reads_per_s`.
    pub load: String,
    /// The joint write p99 SLO, ms, of a read search (`--slo-write-p99-ms`), if given.
    pub slo_write_p99_ms: Option<f64>,
    // -- issue 11: the cost split at last_pass (docs/harness-cost.md) --
    /// Median harness CPU µs per snapshot at last_pass.
    pub harness_us_per_op: Option<f64>,
    /// Median recorder CPU µs per snapshot at last_pass.
    pub recorder_us_per_op: Option<f64>,
    /// Median engine CPU µs per snapshot at last_pass.
    pub engine_us_per_op: Option<f64>,
}

/// Fills the last_pass figures of `row` from that step's runs; `matches` is the matches those
/// runs carried (last_pass itself, or the fixed matches of a read search).
pub fn fill_at_last_pass(row: &mut SearchRow, matches: u32, rows: &[&SummaryRow]) {
    row.ops_per_s = median_of(rows, |r| Some(r.ops_per_s));
    row.mib_per_s = median_of(rows, |r| Some(r.mib_per_s));
    row.cpu_cores = median_of(rows, |r| r.cpu_cores);
    row.sys_cores = median_of(rows, |r| {
        r.sys_cpu_busy_s
            .filter(|_| r.duration_s > 0.0)
            .map(|b| b / r.duration_s)
    });
    row.matches_per_busy_core = median_of(rows, |r| {
        r.cpu_cores
            .filter(|&c| c > 0.0)
            .map(|c| f64::from(matches) / c)
    });
    row.cpu_us_per_op = median_of(rows, |r| r.cpu_us_per_op);
    row.harness_us_per_op = median_of(rows, |r| r.harness_us_per_op);
    row.recorder_us_per_op = median_of(rows, |r| r.recorder_us_per_op);
    row.engine_us_per_op = median_of(rows, |r| r.engine_us_per_op);
}

/// search.csv's bytes, header included.
pub fn search_csv(rows: &[SearchRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    if rows.is_empty() {
        w.serialize(SearchRow::default())?;
        // Header only: drop the default row again.
        let bytes = w.into_inner().map_err(|e| e.into_error())?;
        let header_end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        return Ok(bytes[..header_end].to_vec());
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(start: u32, growth: f64, max: u32) -> SearchConfig {
        SearchConfig {
            start,
            growth,
            max,
            resolution: 0.05,
        }
    }

    /// Runs a search against a monotone threshold: loads ≤ `t` pass.
    fn run(c: SearchConfig, t: u32) -> (Outcome, u32, Vec<u32>) {
        let mut s = Search::new(c).unwrap();
        let mut tried = Vec::new();
        loop {
            match s.next() {
                Next::Try(n) => {
                    assert!(!tried.contains(&n), "tried {n} twice: {tried:?}");
                    assert!(n >= 1 && n <= c.max, "{n} outside 1..={}", c.max);
                    tried.push(n);
                    s.record(n, n <= t);
                }
                Next::Done(o) => return (o, s.steps(), tried),
            }
            assert!(tried.len() < 10_000, "does not end: {tried:?}");
        }
    }

    #[test]
    fn grows_then_bisects() {
        let (o, steps, tried) = run(cfg(100, 2.0, 100_000), 700);
        assert_eq!(&tried[..4], &[100, 200, 400, 800]);
        match o {
            Outcome::Bracket {
                last_pass,
                first_fail,
            } => {
                assert!(last_pass <= 700 && 700 < first_fail, "{o:?}");
                assert!(f64::from(first_fail - last_pass) <= 0.05 * f64::from(last_pass));
            }
            _ => panic!("{o:?}"),
        }
        assert_eq!(steps as usize, tried.len());
    }

    #[test]
    fn start_failing_and_max_passing_end_the_search() {
        assert_eq!(
            run(cfg(100, 2.0, 1000), 50).0,
            Outcome::StartFails { first_fail: 100 }
        );
        let (o, _, tried) = run(cfg(100, 2.0, 1000), 5000);
        assert_eq!(o, Outcome::AtLeastMax { last_pass: 1000 });
        assert_eq!(tried, [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn growth_always_moves_up_by_at_least_one() {
        let (o, _, tried) = run(cfg(1, 1.01, 5), 3);
        assert_eq!(tried, [1, 2, 3, 4]);
        assert_eq!(
            o,
            Outcome::Bracket {
                last_pass: 3,
                first_fail: 4
            }
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(Search::new(cfg(0, 2.0, 10)).is_err());
        assert!(Search::new(cfg(1, 1.0, 10)).is_err());
        assert!(Search::new(cfg(1, f64::NAN, 10)).is_err());
        assert!(Search::new(cfg(20, 2.0, 10)).is_err());
    }

    /// xorshift64*: a small seeded PRNG for the randomised test.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn the_bracket_always_contains_the_threshold() {
        let mut st = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let start = 1 + (rng(&mut st) % 500) as u32;
            let growth = 1.1 + (rng(&mut st) % 400) as f64 / 100.0;
            let max = start + (rng(&mut st) % 200_000) as u32;
            let c = SearchConfig {
                start,
                growth,
                max,
                resolution: (rng(&mut st) % 20) as f64 / 100.0,
            };
            let t = (rng(&mut st) % (2 * u64::from(max) + 2)) as u32;
            let (o, steps, _) = run(c, t);
            match o {
                Outcome::StartFails { first_fail } => {
                    assert!(t < start && first_fail == start, "{c:?} t={t} {o:?}")
                }
                Outcome::AtLeastMax { last_pass } => {
                    assert!(t >= max && last_pass == max, "{c:?} t={t} {o:?}")
                }
                Outcome::Bracket {
                    last_pass,
                    first_fail,
                } => {
                    assert!(last_pass <= t && t < first_fail, "{c:?} t={t} {o:?}");
                    let gap = f64::from(first_fail - last_pass);
                    assert!(
                        gap <= 1.0 || gap <= c.resolution * f64::from(last_pass),
                        "{c:?} {o:?}"
                    );
                }
            }
            // Growth steps (the +1 floor while the load is below 1/(growth − 1)), then at most
            // one bisection per bit of the gap.
            let grow =
                (f64::from(max) / f64::from(start)).ln() / growth.ln() + 1.0 / (growth - 1.0);
            assert!(
                f64::from(steps) <= grow + 2.0 + 33.0,
                "{c:?} t={t}: {steps} steps"
            );
        }
    }

    fn srow(p99_ms: f64, ack_ms: Option<f64>, util: f64) -> SummaryRow {
        SummaryRow {
            run_id: "01-x".into(),
            lat_p99_us: Some(p99_ms * 1000.0),
            ack_p99_us: ack_ms.map(|a| a * 1000.0),
            worker_util: Some(util),
            ..Default::default()
        }
    }

    const SLO: Slo = Slo {
        p99_ms: 50.0,
        ack_p99_ms: Some(1500.0),
        on: SloOn::Write,
        write_p99_ms: None,
    };

    #[test]
    fn a_step_passes_on_the_median_of_every_slo() {
        let rows = [
            srow(10.0, Some(100.0), 0.3),
            srow(90.0, Some(100.0), 0.3),
            srow(20.0, Some(100.0), 0.3),
        ];
        let refs: Vec<&SummaryRow> = rows.iter().collect();
        assert!(judge(&refs, &SLO).pass, "{:?}", judge(&refs, &SLO));
        let rows = [
            srow(10.0, Some(2000.0), 0.3),
            srow(10.0, Some(2000.0), 0.3),
            srow(10.0, Some(100.0), 0.3),
        ];
        let refs: Vec<&SummaryRow> = rows.iter().collect();
        let v = judge(&refs, &SLO);
        assert!(
            !v.pass && v.why.contains("ack p99 2000.00 ms > 1500 ms"),
            "{v:?}"
        );
        assert_eq!(bottleneck(&refs, &SLO, 1000.0, None).0, "sync");
        // A saturated run fails the step whatever its latency.
        let mut sat = srow(1.0, Some(1.0), 0.3);
        sat.status = RunStatus::Saturated;
        let good = srow(1.0, Some(1.0), 0.3);
        assert!(!judge(&[&good, &sat, &good], &SLO).pass);
        // No ack latency recorded under an ack SLO fails.
        let no_ack = srow(1.0, None, 0.3);
        assert!(!judge(&[&no_ack, &no_ack, &no_ack], &SLO).pass);
        let write_only = Slo {
            ack_p99_ms: None,
            ..SLO
        };
        assert!(judge(&[&no_ack, &no_ack, &no_ack], &write_only).pass);
    }

    #[test]
    fn a_read_step_is_judged_on_ttfb_and_verified_reads() {
        let read = Slo {
            p99_ms: 20.0,
            ack_p99_ms: None,
            on: SloOn::Read,
            write_p99_ms: Some(50.0),
        };
        let rrow = |ttfb_ms: f64, write_ms: f64| SummaryRow {
            read_ttfb_p99_us: Some(ttfb_ms * 1000.0),
            read_ttfb_samples: 100,
            reads_verified: true,
            ..srow(write_ms, None, 0.3)
        };
        let ok = rrow(10.0, 10.0);
        let v = judge(&[&ok, &ok, &ok], &read);
        assert!(v.pass, "{v:?}");
        assert!(v.why.contains("read ttfb p99 10.00 ms <= 20 ms"), "{v:?}");
        // Reads over their SLO, or writes over the joint write SLO, fail.
        let slow_read = rrow(30.0, 10.0);
        assert!(!judge(&[&slow_read, &slow_read, &ok], &read).pass);
        let slow_write = rrow(10.0, 80.0);
        let v = judge(&[&slow_write, &slow_write, &ok], &read);
        assert!(!v.pass && v.why.contains("p99 80.00 ms > 50 ms"), "{v:?}");
        // Without a write SLO, write latency is not judged.
        let reads_only = Slo {
            write_p99_ms: None,
            ..read
        };
        assert!(judge(&[&slow_write, &slow_write, &ok], &reads_only).pass);
        // Unverified reads, reads failing verification, or no read samples fail the step.
        let unverified = SummaryRow {
            reads_verified: false,
            ..ok.clone()
        };
        let v = judge(&[&ok, &unverified, &ok], &read);
        assert!(!v.pass && v.why.contains("not verified"), "{v:?}");
        let corrupt = SummaryRow {
            read_errors: 2,
            ..ok.clone()
        };
        let v = judge(&[&ok, &ok, &corrupt], &read);
        assert!(
            !v.pass && v.why.contains("2 reads failed verification"),
            "{v:?}"
        );
        let none = SummaryRow {
            read_ttfb_samples: 0,
            read_ttfb_p99_us: None,
            ..ok.clone()
        };
        let dropped = SummaryRow {
            reads_dropped: 3,
            ..ok.clone()
        };
        let v = judge(&[&ok, &dropped, &ok], &read);
        assert!(!v.pass && v.why.contains("3 reads dropped"), "{v:?}");
        let v = judge(&[&none, &ok, &ok], &read);
        assert!(!v.pass && v.why.contains("no read samples"), "{v:?}");
        // The write SLO never judges reads: a write search ignores ttfb.
        let write_only = Slo {
            ack_p99_ms: None,
            ..SLO
        };
        assert!(judge(&[&slow_read, &slow_read, &slow_read], &write_only).pass);
        assert_eq!(read.load_name(), "reads_per_s");
        assert_eq!(SLO.load_name(), "matches");
    }

    #[test]
    fn bottleneck_words() {
        let busy = srow(90.0, Some(100.0), 0.95);
        let (w, d) = bottleneck(&[&busy, &busy, &busy], &SLO, 1000.0, None);
        assert_eq!((w, d.as_str()), ("worker", "worker_util 0.95"));
        let mut lagging = srow(900.0, Some(100.0), 0.5);
        lagging.max_lag_ms = 1200.0;
        assert_eq!(bottleneck(&[&lagging], &SLO, 1000.0, None).0, "generator");
        let slow = srow(90.0, Some(100.0), 0.5);
        let (w, d) = bottleneck(&[&slow], &SLO, 1000.0, None);
        assert_eq!(w, "undetermined");
        assert!(d.contains("device never claimed"), "{d}");
        // 90 MiB/s written in a 1 s window against a 100 MiB/s ceiling: the device.
        let mut writing = srow(90.0, Some(100.0), 0.5);
        writing.duration_s = 1.0;
        writing.disk_write_bytes = Some(90 << 20);
        let ceiling = Some(f64::from(100u32 << 20));
        let (w, d) = bottleneck(&[&writing], &SLO, 1000.0, ceiling);
        assert_eq!(w, "device", "{d}");
        assert!(d.contains("90 % of ceiling 100.0 MiB/s"), "{d}");
        // Below 80 %: not the device.
        writing.disk_write_bytes = Some(70 << 20);
        let (w, d) = bottleneck(&[&writing], &SLO, 1000.0, ceiling);
        assert_eq!(w, "undetermined", "{d}");
        assert!(d.contains("70 % of ceiling"), "{d}");
    }

    #[test]
    fn last_pass_figures_and_csv() {
        let mut a = srow(1.0, None, 0.2);
        a.cpu_cores = Some(0.5);
        a.ops_per_s = 1000.0;
        a.sys_cpu_busy_s = Some(2.0);
        a.duration_s = 2.0;
        let mut row = SearchRow {
            variant: "null".into(),
            ..Default::default()
        };
        fill_at_last_pass(&mut row, 256, &[&a, &a, &a]);
        assert_eq!(row.matches_per_busy_core, Some(512.0));
        assert_eq!(row.sys_cores, Some(1.0));
        assert_eq!(row.ops_per_s, Some(1000.0));
        let text = String::from_utf8(search_csv(&[row]).unwrap()).unwrap();
        assert!(text.starts_with("engine,variant,workload,workers,slo_p99_ms,slo_ack_p99_ms,slo_on,last_pass,first_fail,ops_per_s,mib_per_s,cpu_cores,sys_cores,matches_per_busy_core,cpu_us_per_op,bottleneck,bottleneck_detail,steps,quick,load,slo_write_p99_ms,harness_us_per_op,recorder_us_per_op,engine_us_per_op\n"), "{text}");
        let empty = String::from_utf8(search_csv(&[]).unwrap()).unwrap();
        assert_eq!(empty.lines().count(), 1, "{empty}");
    }
}
