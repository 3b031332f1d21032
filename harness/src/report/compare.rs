//! `snapbench compare A B`: B against A, per engine variant, workload and load — throughput,
//! p99, CPU per snapshot and capacity — each called faster, slower or within noise by the
//! shared noise rule ([`crate::noise`]); capacity by the searches' brackets.

use std::fmt::Write as _;

use super::load::Folder;
use crate::noise::{self, Spread, Verdict};
use crate::results::{RunStatus, SummaryRow};
use crate::search::SearchRow;

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// More is better (throughput, capacity).
    Higher,
    /// Less is better (latency, CPU).
    Lower,
}

/// A metric compared.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Column header.
    pub name: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The value of one run.
    pub value: fn(&SummaryRow) -> Option<f64>,
}

/// The metrics compared run by run.
pub const METRICS: [Metric; 4] = [
    Metric {
        name: "ops/s",
        better: Better::Higher,
        value: |r| Some(r.ops_per_s),
    },
    Metric {
        name: "write p99",
        better: Better::Lower,
        value: |r| r.lat_p99_us,
    },
    Metric {
        name: "ack p99",
        better: Better::Lower,
        value: |r| r.ack_p99_us,
    },
    Metric {
        name: "CPU µs/snapshot",
        better: Better::Lower,
        value: |r| r.cpu_us_per_op,
    },
];

/// B against A on one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// B is better beyond noise.
    Faster,
    /// B is worse beyond noise.
    Slower,
    /// Within noise.
    WithinNoise,
    /// Too few repeats (or no values) for a verdict.
    Inconclusive,
}

impl Call {
    fn from_verdict(b_vs_a: Verdict, better: Better) -> Call {
        match (b_vs_a, better) {
            (Verdict::Higher, Better::Higher) | (Verdict::Lower, Better::Lower) => Call::Faster,
            (Verdict::Higher, Better::Lower) | (Verdict::Lower, Better::Higher) => Call::Slower,
            (Verdict::WithinNoise, _) => Call::WithinNoise,
            (Verdict::Inconclusive, _) => Call::Inconclusive,
        }
    }

    /// The word printed.
    pub fn word(&self) -> &'static str {
        match self {
            Call::Faster => "faster",
            Call::Slower => "slower",
            Call::WithinNoise => "within noise",
            Call::Inconclusive => "inconclusive",
        }
    }
}

/// One metric of one line.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The metric's name.
    pub metric: &'static str,
    /// A's spread.
    pub a: Option<Spread>,
    /// B's spread.
    pub b: Option<Spread>,
    /// B's median ÷ A's.
    pub ratio: Option<f64>,
    /// The call.
    pub call: Call,
    /// How much worse B is, percent (0 unless slower).
    pub regression_pct: f64,
}

/// One line of the comparison: a variant, workload and load on both sides.
#[derive(Clone, Debug)]
pub struct Line {
    /// Engine variant.
    pub variant: String,
    /// Workload.
    pub workload: String,
    /// Matches (DS), if any.
    pub matches: Option<u32>,
    /// Workers.
    pub workers: u32,
    /// The set member (empty for a lone folder).
    pub member: String,
    /// Runs on each side.
    pub n: (usize, usize),
    /// Of those, runs that did not end ok, on each side.
    pub not_ok: (usize, usize),
    /// The metrics.
    pub cells: Vec<Cell>,
}

/// The capacity of one variant on both sides (searches).
#[derive(Clone, Debug)]
pub struct CapacityLine {
    /// Engine variant.
    pub variant: String,
    /// Workload.
    pub workload: String,
    /// A's bracket.
    pub a: (Option<u32>, Option<u32>),
    /// B's bracket.
    pub b: (Option<u32>, Option<u32>),
    /// B's last_pass ÷ A's.
    pub ratio: Option<f64>,
    /// More capacity is faster; brackets that overlap are within the search's resolution.
    pub call: Call,
    /// How much less B carries, percent (0 unless slower).
    pub regression_pct: f64,
}

/// The whole comparison.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Lines on both sides.
    pub lines: Vec<Line>,
    /// Capacity lines (both sides searched the variant).
    pub capacity: Vec<CapacityLine>,
    /// Configurations only in A.
    pub only_a: Vec<String>,
    /// Configurations only in B.
    pub only_b: Vec<String>,
    /// Searches on both sides under different SLOs (not compared).
    pub not_comparable: Vec<String>,
}

/// What makes two runs comparable: the set member they come from (for sets), variant,
/// workload, matches, workers, and the rates and durability (as repeats.csv groups them).
#[derive(Clone, Debug, PartialEq)]
struct Key {
    member: String,
    variant: String,
    workload: String,
    matches: Option<u32>,
    workers: u32,
    rates: String,
}

fn key(member: &str, r: &SummaryRow) -> Key {
    Key {
        member: member.to_string(),
        variant: r.variant.clone(),
        workload: r.workload.clone(),
        matches: r.matches,
        workers: r.workers,
        rates: format!(
            "{}/{}/{}/{}/{}",
            r.tick_hz.map_or(String::new(), |v| v.to_string()),
            r.record_hz.map_or(String::new(), |v| v.to_string()),
            r.durability,
            r.tail,
            r.prealloc
        ),
    }
}

fn key_words(k: &Key) -> String {
    let at = k
        .matches
        .map_or(String::new(), |m| format!(" at {m} matches"));
    let member = if k.member.is_empty() {
        String::new()
    } else {
        format!(" [{}]", k.member)
    };
    format!(
        "{} on {}{at}, {} workers{member}",
        k.variant, k.workload, k.workers
    )
}

/// The member name of a folder of a side: empty for a lone folder, the folder's name in a set.
fn member(folders: &[Folder], f: &Folder) -> String {
    if folders.len() > 1 {
        f.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// Groups of runs by key, in order of first appearance. A search's step runs are left out:
/// the capacity lines compare searches.
fn groups(folders: &[Folder]) -> Vec<(Key, Vec<&SummaryRow>)> {
    let mut out: Vec<(Key, Vec<&SummaryRow>)> = Vec::new();
    for f in folders.iter().filter(|f| f.search.is_empty()) {
        let m = member(folders, f);
        for r in &f.rows {
            let k = key(&m, r);
            match out.iter_mut().find(|(g, _)| *g == k) {
                Some((_, v)) => v.push(r),
                None => out.push((k, vec![r])),
            }
        }
    }
    out
}

fn searches(folders: &[Folder]) -> Vec<&SearchRow> {
    folders
        .iter()
        .flat_map(|f| f.search.iter())
        .filter(|s| s.load == "matches" || s.load.is_empty())
        .collect()
}

fn cell(m: &Metric, a: &[&SummaryRow], b: &[&SummaryRow]) -> Cell {
    let spread = |rows: &[&SummaryRow]| {
        let v: Vec<f64> = rows.iter().filter_map(|r| (m.value)(r)).collect();
        Spread::of(&v)
    };
    let (sa, sb) = (spread(a), spread(b));
    let (call, ratio) = match (sa, sb) {
        (Some(x), Some(y)) => (
            Call::from_verdict(noise::compare(&y, &x), m.better),
            (x.median != 0.0).then(|| y.median / x.median),
        ),
        _ => (Call::Inconclusive, None),
    };
    let regression_pct = match (call.clone(), ratio) {
        (Call::Slower, Some(q)) => match m.better {
            Better::Higher => (1.0 - q) * 100.0,
            Better::Lower => (q - 1.0) * 100.0,
        },
        _ => 0.0,
    };
    Cell {
        metric: m.name,
        a: sa,
        b: sb,
        ratio,
        call,
        regression_pct,
    }
}

/// Compare B's folders against A's.
pub fn compare(a: &[Folder], b: &[Folder]) -> Comparison {
    let (ga, gb) = (groups(a), groups(b));
    let mut out = Comparison::default();
    for (k, ra) in &ga {
        match gb.iter().find(|(g, _)| g == k) {
            Some((_, rb)) => out.lines.push(Line {
                variant: k.variant.clone(),
                workload: k.workload.clone(),
                matches: k.matches,
                workers: k.workers,
                member: k.member.clone(),
                n: (ra.len(), rb.len()),
                not_ok: (
                    ra.iter().filter(|r| r.status != RunStatus::Ok).count(),
                    rb.iter().filter(|r| r.status != RunStatus::Ok).count(),
                ),
                cells: METRICS.iter().map(|m| cell(m, ra, rb)).collect(),
            }),
            None => out.only_a.push(key_words(k)),
        }
    }
    for (k, _) in &gb {
        if !ga.iter().any(|(g, _)| g == k) {
            out.only_b.push(key_words(k));
        }
    }
    let (sa, sb) = (searches(a), searches(b));
    for x in &sa {
        let Some(y) = sb
            .iter()
            .find(|y| y.variant == x.variant && y.workload == x.workload && y.workers == x.workers)
        else {
            continue;
        };
        if y.slo_p99_ms != x.slo_p99_ms || y.slo_on != x.slo_on {
            out.not_comparable.push(format!(
                "capacity of {} on {}: A searched {} p99 ≤ {} ms, B {} p99 ≤ {} ms",
                x.variant, x.workload, x.slo_on, x.slo_p99_ms, y.slo_on, y.slo_p99_ms
            ));
            continue;
        }
        let ratio = match (x.last_pass, y.last_pass) {
            (Some(p), Some(q)) if p > 0 => Some(f64::from(q) / f64::from(p)),
            _ => None,
        };
        // B carries more when it passed a load above A's first failing one, less when A did
        // above B's. One step (passing exactly the other's first fail) is within noise: a step
        // is the median of RUNS_PER_STEP runs, fewer than the noise rule's MIN_REPEATS.
        let more = matches!((y.last_pass, x.first_fail), (Some(q), Some(f)) if q > f);
        let less = matches!((x.last_pass, y.first_fail), (Some(p), Some(f)) if p > f);
        let call = if more {
            Call::Faster
        } else if less {
            Call::Slower
        } else {
            Call::WithinNoise
        };
        let regression_pct = match (&call, ratio) {
            (Call::Slower, Some(q)) => (1.0 - q) * 100.0,
            (Call::Slower, None) => 100.0,
            _ => 0.0,
        };
        out.capacity.push(CapacityLine {
            variant: x.variant.clone(),
            workload: x.workload.clone(),
            a: (x.last_pass, x.first_fail),
            b: (y.last_pass, y.first_fail),
            ratio,
            call,
            regression_pct,
        });
    }
    out
}

impl Comparison {
    /// The regressions of at least `pct` percent, in words.
    pub fn regressions(&self, pct: f64) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.lines {
            for c in &l.cells {
                if c.call == Call::Slower && c.regression_pct >= pct {
                    out.push(format!(
                        "{} on {}{}: {} {:.1} % worse",
                        l.variant,
                        l.workload,
                        l.matches
                            .map_or(String::new(), |m| format!(" at {m} matches")),
                        c.metric,
                        c.regression_pct
                    ));
                }
            }
        }
        for c in &self.capacity {
            if c.call == Call::Slower && c.regression_pct >= pct {
                out.push(format!(
                    "{} on {}: capacity {:.1} % less",
                    c.variant, c.workload, c.regression_pct
                ));
            }
        }
        out
    }

    /// Why a CI gate (`--fail-on-regression PCT`) must fail: regressions of at least `pct`
    /// percent, configurations A has and B lacks, figures with no verdict, and configurations
    /// whose B runs did not all end ok. Empty: the gate passes.
    pub fn gate_failures(&self, pct: f64) -> Vec<String> {
        let mut out = self.regressions(pct);
        for k in &self.only_a {
            out.push(format!("{k}: missing from B"));
        }
        for l in &self.lines {
            let at = l
                .matches
                .map_or(String::new(), |m| format!(" at {m} matches"));
            if l.not_ok.1 > l.not_ok.0 {
                out.push(format!(
                    "{} on {}{at}: {} of B's {} runs did not end ok",
                    l.variant, l.workload, l.not_ok.1, l.n.1
                ));
            }
            for c in l.cells.iter().filter(|c| c.call == Call::Inconclusive) {
                out.push(format!(
                    "{} on {}{at}: {} has no verdict (fewer than {} repeats with a value on a side)",
                    l.variant,
                    l.workload,
                    c.metric,
                    noise::MIN_REPEATS
                ));
            }
        }
        out
    }

    /// Whether every call is within noise (none faster, slower or inconclusive).
    pub fn all_within_noise(&self) -> bool {
        self.lines
            .iter()
            .flat_map(|l| l.cells.iter())
            .map(|c| &c.call)
            .chain(self.capacity.iter().map(|c| &c.call))
            .all(|c| *c == Call::WithinNoise)
    }
}

fn fmt_spread(s: Option<Spread>, scale: f64) -> String {
    match s {
        Some(s) => {
            let p = if s.median.abs() / scale >= 100.0 {
                0
            } else {
                2
            };
            format!(
                "{:.p$} ({:.p$}..{:.p$})",
                s.median / scale,
                s.min / scale,
                s.max / scale
            )
        }
        None => "-".into(),
    }
}

/// The comparison as text: one block per line, every metric with both sides' median
/// (min..max), the ratio and the call; then capacity, then what only one side has.
pub fn render(c: &Comparison, a_name: &str, b_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "B against A\n  A: {a_name}\n  B: {b_name}");
    let _ = writeln!(
        out,
        "Calls follow the noise rule: at least {} repeats a side, disjoint min..max ranges and medians at least {:.0} % apart; otherwise within noise (fewer repeats: inconclusive). Latencies in ms.",
        noise::MIN_REPEATS,
        noise::MIN_MEDIAN_GAP * 100.0
    );
    for l in &c.lines {
        let _ = writeln!(
            out,
            "\n{} on {}{} ({} workers; runs A {} / B {}{}){}",
            l.variant,
            l.workload,
            l.matches
                .map_or(String::new(), |m| format!(" at {m} matches")),
            l.workers,
            l.n.0,
            l.n.1,
            if l.not_ok != (0, 0) {
                format!("; not ok A {} / B {}", l.not_ok.0, l.not_ok.1)
            } else {
                String::new()
            },
            if l.member.is_empty() {
                String::new()
            } else {
                format!(" [{}]", l.member)
            }
        );
        for cell in &l.cells {
            let scale = if cell.metric.contains("p99") {
                1000.0
            } else {
                1.0
            };
            let word = match (&cell.call, cell.metric) {
                (Call::Faster, m) if m.starts_with("CPU") => "faster (less CPU)",
                (Call::Slower, m) if m.starts_with("CPU") => "slower (more CPU)",
                (c, _) => c.word(),
            };
            let _ = writeln!(
                out,
                "  {:<16} A {:<26} B {:<26} B/A {:<6} {word}",
                cell.metric,
                fmt_spread(cell.a, scale),
                fmt_spread(cell.b, scale),
                cell.ratio.map_or("-".into(), |q| format!("{q:.3}")),
            );
        }
    }
    if !c.capacity.is_empty() {
        let _ = writeln!(
            out,
            "\nCapacity (searches; brackets [last pass, first fail) in matches; more is faster, overlapping brackets are within the search's resolution)"
        );
        for k in &c.capacity {
            let _ = writeln!(
                out,
                "  {:<32} {:<14} A {:<16} B {:<16} B/A {:<6} {}",
                k.variant,
                k.workload,
                super::bracket(k.a.0, k.a.1),
                super::bracket(k.b.0, k.b.1),
                k.ratio.map_or("-".into(), |q| format!("{q:.3}")),
                k.call.word()
            );
        }
    }
    if !c.not_comparable.is_empty() {
        let _ = writeln!(out, "\nNot compared: {}", c.not_comparable.join("; "));
    }
    for (side, list) in [("A", &c.only_a), ("B", &c.only_b)] {
        if !list.is_empty() {
            let _ = writeln!(out, "\nOnly in {side}: {}", list.join("; "));
        }
    }
    let count = |w: Call| {
        c.lines
            .iter()
            .flat_map(|l| l.cells.iter())
            .map(|x| &x.call)
            .chain(c.capacity.iter().map(|x| &x.call))
            .filter(|x| **x == w)
            .count()
    };
    let _ = writeln!(
        out,
        "\nIn all: {} faster, {} slower, {} within noise, {} inconclusive.",
        count(Call::Faster),
        count(Call::Slower),
        count(Call::WithinNoise),
        count(Call::Inconclusive)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(variant: &str, p99_ms: &[f64], ops: f64) -> Vec<SummaryRow> {
        p99_ms
            .iter()
            .enumerate()
            .map(|(i, p)| SummaryRow {
                run_id: format!("{variant}-{i}"),
                variant: variant.into(),
                engine: variant.into(),
                workload: "fps-128tick".into(),
                workers: 1,
                matches: Some(256),
                ops_per_s: ops + i as f64,
                lat_p99_us: Some(p * 1000.0),
                ack_p99_us: Some(p * 1000.0),
                cpu_us_per_op: Some(3.0 + 0.01 * i as f64),
                ..SummaryRow::default()
            })
            .collect()
    }

    fn folder(rows: Vec<SummaryRow>, search: Vec<SearchRow>) -> Folder {
        Folder::from_rows(std::path::Path::new("x"), rows, search)
    }

    #[test]
    fn the_same_numbers_are_within_noise_and_a_known_difference_is_seen() {
        let a = folder(
            rows("uring", &[20.0, 21.0, 22.0, 21.5, 20.5], 32768.0),
            vec![],
        );
        let same = folder(
            rows("uring", &[20.8, 21.2, 22.4, 20.1, 21.9], 32768.0),
            vec![],
        );
        let c = compare(std::slice::from_ref(&a), &[same]);
        assert!(c.all_within_noise(), "{}", render(&c, "a", "b"));
        assert!(c.regressions(0.0).is_empty());
        // Flush deadlines twice as long: write p99 slower, beyond noise.
        let later = folder(
            rows("uring", &[40.0, 41.0, 42.0, 41.5, 40.5], 32768.0),
            vec![],
        );
        let c = compare(std::slice::from_ref(&a), &[later]);
        let p99 = &c.lines[0].cells[1];
        assert_eq!((p99.metric, p99.call.clone()), ("write p99", Call::Slower));
        assert!(
            (p99.regression_pct - 95.3).abs() < 0.5,
            "{}",
            p99.regression_pct
        );
        assert_eq!(c.regressions(50.0).len(), 2, "write and ack p99");
        assert!(c.regressions(99.0).is_empty());
        let text = render(&c, "a", "b");
        assert!(text.contains("slower"), "{text}");
        // Four repeats: no call.
        let few = folder(rows("uring", &[40.0, 41.0, 42.0, 41.5], 32768.0), vec![]);
        let c = compare(std::slice::from_ref(&a), &[few]);
        assert_eq!(c.lines[0].cells[1].call, Call::Inconclusive);
    }

    #[test]
    fn capacity_is_called_by_the_brackets() {
        let s = |last, first| SearchRow {
            variant: "aio".into(),
            workload: "fps-128tick".into(),
            workers: 1,
            load: "matches".into(),
            last_pass: last,
            first_fail: first,
            ..SearchRow::default()
        };
        let a = folder(vec![], vec![s(Some(1024), Some(2048))]);
        let more = folder(vec![], vec![s(Some(4096), Some(8192))]);
        let near = folder(vec![], vec![s(Some(1536), Some(2048))]);
        // One step above A's last pass (B passed exactly A's first fail): within noise.
        let step = folder(vec![], vec![s(Some(2048), Some(2176))]);
        let less = folder(vec![], vec![s(Some(256), Some(512))]);
        let call = |b: &Folder| {
            compare(std::slice::from_ref(&a), std::slice::from_ref(b)).capacity[0]
                .call
                .clone()
        };
        assert_eq!(call(&more), Call::Faster);
        assert_eq!(call(&near), Call::WithinNoise);
        assert_eq!(call(&step), Call::WithinNoise);
        assert_eq!(call(&less), Call::Slower);
        let c = compare(std::slice::from_ref(&a), &[less]);
        assert_eq!(c.regressions(40.0).len(), 1);
    }

    #[test]
    fn the_ci_gate_fails_on_what_it_cannot_vouch_for() {
        let a = folder(
            rows("uring", &[20.0, 21.0, 22.0, 21.5, 20.5], 100.0),
            vec![],
        );
        let same = folder(
            rows("uring", &[20.8, 21.2, 22.4, 20.1, 21.9], 100.0),
            vec![],
        );
        let c = compare(std::slice::from_ref(&a), std::slice::from_ref(&same));
        assert!(
            c.gate_failures(0.0).is_empty(),
            "{:?}",
            c.gate_failures(0.0)
        );
        // B lacks a configuration A has.
        let mut more = a.clone();
        more.rows.extend(rows("aio", &[1.0; 5], 1.0));
        let c = compare(std::slice::from_ref(&more), std::slice::from_ref(&same));
        assert!(c
            .gate_failures(50.0)
            .iter()
            .any(|f| f.contains("missing from B")));
        // Too few repeats in B: no verdict is a failure of the gate.
        let few = folder(rows("uring", &[20.0, 21.0, 22.0], 100.0), vec![]);
        let c = compare(std::slice::from_ref(&a), &[few]);
        assert!(c
            .gate_failures(50.0)
            .iter()
            .any(|f| f.contains("no verdict")));
        // B's runs failing where A's did not.
        let mut bad = same.clone();
        bad.rows[0].status = RunStatus::Failed;
        let c = compare(std::slice::from_ref(&a), &[bad]);
        assert!(c
            .gate_failures(50.0)
            .iter()
            .any(|f| f.contains("did not end ok")));
    }

    #[test]
    fn configurations_on_one_side_only_are_listed() {
        let a = folder(rows("uring", &[1.0; 5], 1.0), vec![]);
        let b = folder(rows("aio", &[1.0; 5], 1.0), vec![]);
        let c = compare(&[a], &[b]);
        assert!(c.lines.is_empty());
        assert_eq!(c.only_a.len(), 1);
        assert_eq!(c.only_b.len(), 1);
    }
}
