//! `snapbench recommend`: which engine to run, for an SLO and a CPU budget, from the results
//! of one folder (or a set of folders). The rule (docs/report.md; the notebook reproduces it):
//!
//! - **From a capacity search** where a folder has one (search.csv, load in matches): per
//!   variant, its step runs grouped by matches; a level passes when [`search::judge`] passes
//!   it under the asked SLO (every run ok, no errors, nothing left unwritten, median p99 within
//!   the limit) and, with a CPU budget, its median process cores are within the budget.
//!   `last_pass` is the largest level that passes with every lower level; `first_fail` the
//!   smallest that fails. Ranked by last_pass, then by CPU µs per snapshot there. The winner's
//!   lead is *beyond the search's resolution* when it passed a load above its runner-up's
//!   first failing load; capacities one step apart are close, and the one that needs less CPU
//!   per snapshot goes first.
//! - **Otherwise from fixed-load runs** (for the workloads no search covered, from the folders
//!   without a search): per workload, each configuration (its repeats) meets
//!   the SLO by the same test; ranked by matches carried, then by CPU µs per snapshot, the lead
//!   judged by the shared noise rule ([`crate::noise`]) on CPU per snapshot.
//!
//! `null` does no I/O and is never recommended.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::load::{device_words, virtual_disk, Folder};
use crate::noise::{self, Spread, Verdict};
use crate::results::SummaryRow;
use crate::search::{self, Slo, SloOn};

/// What `recommend` is asked.
#[derive(Clone, Debug)]
pub struct Ask {
    /// The SLO (write or ack p99).
    pub slo: Slo,
    /// The CPU budget, cores (process CPU at the load carried), if any.
    pub cpu_budget_cores: Option<f64>,
}

/// Where a ranking comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// A capacity search's steps.
    Search,
    /// Runs at the loads the suite gave.
    FixedLoad,
}

/// One engine variant's standing.
#[derive(Clone, Debug, Default)]
pub struct Candidate {
    /// Engine variant.
    pub variant: String,
    /// Worker threads.
    pub workers: u32,
    /// Largest load (matches) that met the SLO with every lower load tested.
    pub last_pass: Option<u32>,
    /// Smallest load tested that did not (None: none failed).
    pub first_fail: Option<u32>,
    /// Why the first failing load failed.
    pub fail_why: String,
    /// Median SLO latency (p99, ms) at last_pass.
    pub p99_ms: Option<f64>,
    /// Median process cores at last_pass.
    pub cpu_cores: Option<f64>,
    /// Median process CPU µs per snapshot at last_pass, with its spread.
    pub cpu_us_per_op: Option<Spread>,
    /// The search's bottleneck word and figures (search basis only).
    pub bottleneck: String,
    /// Repeats (runs) behind the last_pass figures.
    pub runs: usize,
}

/// The answer for one workload.
#[derive(Clone, Debug)]
pub struct Recommendation {
    /// The workload.
    pub workload: String,
    /// Where the ranking comes from.
    pub basis: Basis,
    /// Variants that met the SLO at some load, best first.
    pub ranked: Vec<Candidate>,
    /// Variants that met it at no load tested (with why).
    pub failed: Vec<Candidate>,
    /// The folder the numbers come from.
    pub source: String,
}

fn slo_latency_us(r: &SummaryRow, on: SloOn) -> Option<f64> {
    match on {
        SloOn::Ack => r.ack_p99_us,
        _ => r.lat_p99_us,
    }
}

/// Judge one group of runs under the ask (SLO, then the CPU budget).
fn passes(rows: &[&SummaryRow], ask: &Ask) -> (bool, String) {
    let v = search::judge(rows, &ask.slo);
    if !v.pass {
        return (false, v.why);
    }
    if let Some(budget) = ask.cpu_budget_cores {
        match search::median_of(rows, |r| r.cpu_cores) {
            Some(c) if c <= budget => {}
            Some(c) => return (false, format!("{c:.2} cores > budget {budget} cores")),
            None => return (false, "no CPU figure for the budget".into()),
        }
    }
    (true, v.why)
}

fn figures(c: &mut Candidate, rows: &[&SummaryRow], on: SloOn) {
    c.p99_ms = search::median_of(rows, |r| slo_latency_us(r, on)).map(|us| us / 1000.0);
    c.cpu_cores = search::median_of(rows, |r| r.cpu_cores);
    let per_op: Vec<f64> = rows.iter().filter_map(|r| r.cpu_us_per_op).collect();
    c.cpu_us_per_op = Spread::of(&per_op);
    c.runs = rows.len();
}

fn is_ds(r: &SummaryRow) -> bool {
    r.matches.is_some()
}

/// Rank the search steps of one folder.
fn from_search(f: &Folder, ask: &Ask) -> Vec<Recommendation> {
    let mut by_workload: BTreeMap<String, Recommendation> = BTreeMap::new();
    for s in f
        .search
        .iter()
        .filter(|s| s.load == "matches" || s.load.is_empty())
    {
        let rows: Vec<&SummaryRow> = f
            .rows
            .iter()
            .filter(|r| is_ds(r) && r.variant == s.variant && r.workload == s.workload)
            .filter(|r| r.workers == s.workers)
            .collect();
        let mut levels: BTreeMap<u32, Vec<&SummaryRow>> = BTreeMap::new();
        for r in rows {
            levels.entry(r.matches.unwrap_or(0)).or_default().push(r);
        }
        let mut c = Candidate {
            variant: s.variant.clone(),
            workers: s.workers,
            bottleneck: if s.bottleneck_detail.is_empty() {
                s.bottleneck.clone()
            } else {
                format!("{} ({})", s.bottleneck, s.bottleneck_detail)
            },
            ..Candidate::default()
        };
        for (m, group) in &levels {
            let (ok, why) = passes(group, ask);
            if ok {
                c.last_pass = Some(*m);
                figures(&mut c, group, ask.slo.on);
            } else {
                c.first_fail = Some(*m);
                c.fail_why = why;
                break;
            }
        }
        let rec = by_workload
            .entry(s.workload.clone())
            .or_insert_with(|| Recommendation {
                workload: s.workload.clone(),
                basis: Basis::Search,
                ranked: Vec::new(),
                failed: Vec::new(),
                source: f.path.display().to_string(),
            });
        if s.engine == "null" {
            continue;
        }
        if c.last_pass.is_some() {
            rec.ranked.push(c);
        } else {
            rec.failed.push(c);
        }
    }
    by_workload.into_values().collect()
}

/// Rank the fixed-load configurations of one folder.
fn from_runs(f: &Folder, ask: &Ask) -> Vec<Recommendation> {
    let mut configs: Vec<(String, Vec<&SummaryRow>)> = Vec::new();
    for r in f.rows.iter().filter(|r| is_ds(r) && r.engine != "null") {
        match configs.iter_mut().find(|(id, _)| *id == r.config_id) {
            Some((_, g)) => g.push(r),
            None => configs.push((r.config_id.clone(), vec![r])),
        }
    }
    let mut by_workload: BTreeMap<String, Recommendation> = BTreeMap::new();
    for (_, group) in configs {
        let first = group[0];
        let mut c = Candidate {
            variant: first.variant.clone(),
            workers: first.workers,
            ..Candidate::default()
        };
        let (ok, why) = passes(&group, ask);
        let m = first.matches.unwrap_or(0);
        figures(&mut c, &group, ask.slo.on);
        let rec = by_workload
            .entry(first.workload.clone())
            .or_insert_with(|| Recommendation {
                workload: first.workload.clone(),
                basis: Basis::FixedLoad,
                ranked: Vec::new(),
                failed: Vec::new(),
                source: f.path.display().to_string(),
            });
        if ok {
            c.last_pass = Some(m);
            rec.ranked.push(c);
        } else {
            c.first_fail = Some(m);
            c.fail_why = why;
            rec.failed.push(c);
        }
    }
    by_workload.into_values().collect()
}

fn rank(rec: &mut Recommendation) {
    let per_op = |c: &Candidate| c.cpu_us_per_op.map_or(f64::INFINITY, |s| s.median);
    rec.ranked.sort_by(|a, b| {
        b.last_pass
            .cmp(&a.last_pass)
            .then(per_op(a).total_cmp(&per_op(b)))
    });
    // One row per variant: a variant run at several loads keeps its best standing.
    keep_first_per_variant(&mut rec.ranked);
    // Capacities one search step apart are close (a step is the median of 3 runs, fewer than
    // the noise rule's 5): the one that needs less CPU per snapshot goes first.
    if rec.basis == Basis::Search && rec.ranked.len() >= 2 {
        let (a, b) = (&rec.ranked[0], &rec.ranked[1]);
        if a.last_pass.is_some() && a.last_pass == b.first_fail && per_op(b) < per_op(a) {
            rec.ranked.swap(0, 1);
        }
    }
    let passed: Vec<(String, u32)> = rec
        .ranked
        .iter()
        .map(|c| (c.variant.clone(), c.workers))
        .collect();
    rec.failed
        .retain(|c| !passed.contains(&(c.variant.clone(), c.workers)));
    keep_first_per_variant(&mut rec.failed);
}

/// Keep the first candidate of each (variant, workers).
fn keep_first_per_variant(list: &mut Vec<Candidate>) {
    let mut seen: Vec<(String, u32)> = Vec::new();
    list.retain(|c| {
        let key = (c.variant.clone(), c.workers);
        let fresh = !seen.contains(&key);
        if fresh {
            seen.push(key);
        }
        fresh
    });
}

/// Rankings for every workload in `folders`: from the capacity searches for the workloads they
/// cover, from the other folders' fixed-load runs for the rest.
pub fn recommend(folders: &[Folder], ask: &Ask) -> Vec<Recommendation> {
    let searched: Vec<&Folder> = folders
        .iter()
        .filter(|f| {
            f.search
                .iter()
                .any(|s| s.load == "matches" || s.load.is_empty())
        })
        .collect();
    let mut out: Vec<Recommendation> = searched.iter().flat_map(|f| from_search(f, ask)).collect();
    // Workloads no search covered: from the fixed-load runs of the folders without a search.
    let fixed: Vec<Recommendation> = folders
        .iter()
        .filter(|f| !searched.iter().any(|s| std::ptr::eq(*s, *f)))
        .flat_map(|f| from_runs(f, ask))
        .filter(|r| !out.iter().any(|s| s.workload == r.workload))
        .collect();
    out.extend(fixed);
    for r in &mut out {
        rank(r);
    }
    out
}

fn bracket(c: &Candidate) -> String {
    let b = super::bracket(c.last_pass, c.first_fail);
    if c.first_fail.is_none() && c.last_pass.is_some() {
        format!("{b} (no load tested above failed)")
    } else {
        b
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}"))
}

/// A sentence when the runner-up `b` needs less CPU per snapshot than the winner `a` (empty
/// otherwise): the trade a team lead weighs.
fn cheaper(a: &Candidate, b: &Candidate) -> String {
    match (a.cpu_us_per_op, b.cpu_us_per_op) {
        (Some(x), Some(y)) if y.median < x.median => format!(
            " {} needs less CPU: {:.2} µs per snapshot against {:.2} ({:.2} cores against {:.2} at its last pass).",
            b.variant,
            y.median,
            x.median,
            b.cpu_cores.unwrap_or(f64::NAN),
            a.cpu_cores.unwrap_or(f64::NAN)
        ),
        _ => String::new(),
    }
}

/// Whether the winner's lead over the runner-up holds, in words.
pub fn margin(rec: &Recommendation) -> Option<String> {
    let [a, b, ..] = rec.ranked.as_slice() else {
        return None;
    };
    Some(match rec.basis {
        Basis::Search => {
            let (ap, bp) = (a.last_pass.unwrap_or(0), b.last_pass.unwrap_or(0));
            let ratio = if bp > 0 {
                format!("{:.2}×", f64::from(ap) / f64::from(bp))
            } else {
                "more than".into()
            };
            match b.first_fail {
                Some(bf) if ap > bf => format!(
                    "{} carries {ratio} the matches of {}, beyond the search's resolution (at {bf} matches {} met the SLO and {} did not).{}",
                    a.variant, b.variant, a.variant, b.variant, cheaper(a, b)
                ),
                Some(bf) if ap == bf => format!(
                    "{} carries {ratio} the matches of {}, by one search step (at {bf} matches {} met the SLO and {} did not; a step is judged on the median of {} runs, fewer than the noise rule's {}): their capacities are close.{}",
                    a.variant,
                    b.variant,
                    a.variant,
                    b.variant,
                    search::RUNS_PER_STEP,
                    noise::MIN_REPEATS,
                    cheaper(a, b)
                ),
                _ if ap < bp => format!(
                    "{} carried one search step more than {} ({bp} against {ap} matches: at {} matches {} met the SLO and {} did not), but a step is judged on the median of {} runs, fewer than the noise rule's {}, so their capacities count as close; {} takes it on CPU: {} µs per snapshot against {} ({} cores against {} at their last pass).",
                    b.variant,
                    a.variant,
                    a.first_fail.unwrap_or(bp),
                    b.variant,
                    a.variant,
                    search::RUNS_PER_STEP,
                    noise::MIN_REPEATS,
                    a.variant,
                    opt(a.cpu_us_per_op.map(|s| s.median), 2),
                    opt(b.cpu_us_per_op.map(|s| s.median), 2),
                    opt(a.cpu_cores, 2),
                    opt(b.cpu_cores, 2)
                ),
                _ if ap == bp => format!(
                    "{} and {} carry the same load ({ap} matches) within the search's resolution; {} takes it on CPU per snapshot ({} vs {} µs), a difference the search does not repeat enough to call beyond noise.",
                    a.variant,
                    b.variant,
                    a.variant,
                    opt(a.cpu_us_per_op.map(|s| s.median), 2),
                    opt(b.cpu_us_per_op.map(|s| s.median), 2)
                ),
                _ => format!(
                    "{} carries {ratio} the matches of {}, within the search's resolution (their brackets overlap): the data cannot separate them.",
                    a.variant, b.variant
                ),
            }
        }
        Basis::FixedLoad => {
            let verdict = match (a.cpu_us_per_op, b.cpu_us_per_op) {
                (Some(x), Some(y)) => noise::compare(&x, &y),
                _ => Verdict::Inconclusive,
            };
            let why = match verdict {
                Verdict::Lower => "beyond noise".to_string(),
                Verdict::WithinNoise => "within noise: the data cannot separate them".into(),
                Verdict::Inconclusive => format!(
                    "inconclusive: the noise rule needs {} repeats a side",
                    noise::MIN_REPEATS
                ),
                Verdict::Higher => "beyond noise".into(),
            };
            if a.last_pass > b.last_pass {
                format!(
                    "{} met the SLO at {} matches, {} only at {} (no capacity search here: the largest load run, not a capacity).",
                    a.variant,
                    a.last_pass.unwrap_or(0),
                    b.variant,
                    b.last_pass.unwrap_or(0)
                )
            } else {
                format!(
                    "At {} matches both meet the SLO; {} uses {} µs CPU per snapshot against {}'s {} µs, {why}.",
                    a.last_pass.unwrap_or(0),
                    a.variant,
                    opt(a.cpu_us_per_op.map(|s| s.median), 2),
                    b.variant,
                    opt(b.cpu_us_per_op.map(|s| s.median), 2)
                )
            }
        }
    })
}

fn slo_words(ask: &Ask) -> String {
    let side = match ask.slo.on {
        SloOn::Ack => "durable-ack",
        _ => "write",
    };
    let mut s = format!("{side} p99 ≤ {} ms", ask.slo.p99_ms);
    if let Some(b) = ask.cpu_budget_cores {
        let _ = write!(s, " within {b} cores of CPU");
    }
    s
}

fn candidate_line(c: &Candidate, basis: Basis) -> String {
    let load = match basis {
        Basis::Search => format!("capacity {} matches", bracket(c)),
        Basis::FixedLoad => format!("met it at {} matches", c.last_pass.unwrap_or(0)),
    };
    let per_core = match (c.last_pass, c.cpu_cores) {
        (Some(m), Some(cores)) if cores > 0.0 => {
            format!(", {:.0} matches per busy core", f64::from(m) / cores)
        }
        _ => String::new(),
    };
    let mut line = format!(
        "{} (workers {}): {load}, p99 {} ms, {} cores{per_core}, {} µs CPU per snapshot",
        c.variant,
        c.workers,
        opt(c.p99_ms, 1),
        opt(c.cpu_cores, 2),
        opt(c.cpu_us_per_op.map(|s| s.median), 2),
    );
    if !c.bottleneck.is_empty() {
        let _ = write!(line, "; bottleneck: {}", c.bottleneck);
    }
    line
}

/// The recommendation as a few lines a team lead can paste into a design doc.
pub fn render(recs: &[Recommendation], folders: &[Folder], ask: &Ask) -> String {
    let mut out = String::new();
    // What the numbers were measured on: the first folder with runs (a calibration folder's
    // meta.json describes less).
    let described = folders
        .iter()
        .find(|f| !f.rows.is_empty())
        .or_else(|| folders.first());
    let meta = described.map(|f| &f.meta);
    if recs.is_empty() {
        let _ = writeln!(
            out,
            "No DS runs in these results: nothing to recommend from (run `snapbench run` or `snapbench search` first)."
        );
    }
    for rec in recs {
        let basis = match rec.basis {
            Basis::Search => "capacity search",
            Basis::FixedLoad => "runs at fixed loads",
        };
        let _ = writeln!(
            out,
            "Recommendation for {} at {} (from the {basis} in {}):",
            rec.workload,
            slo_words(ask),
            rec.source
        );
        match rec.ranked.as_slice() {
            [] if rec.failed.is_empty() => {
                let _ = writeln!(
                    out,
                    "  Only null ran here: it does no I/O and is never recommended. Run an engine."
                );
            }
            [] => {
                let _ = writeln!(
                    out,
                    "  No engine meets the SLO at any load tested. Where each failed:"
                );
                for c in &rec.failed {
                    let _ = writeln!(
                        out,
                        "    {} at {} matches: {}",
                        c.variant,
                        c.first_fail.unwrap_or(0),
                        c.fail_why
                    );
                }
            }
            ranked => {
                let _ = writeln!(out, "  Run {}.", ranked[0].variant);
                for (i, c) in ranked.iter().take(2).enumerate() {
                    let _ = writeln!(
                        out,
                        "  {}. {}",
                        if i == 0 { "best" } else { "runner-up" },
                        candidate_line(c, rec.basis)
                    );
                }
                match margin(rec) {
                    Some(m) => {
                        let _ = writeln!(out, "  {m}");
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "  It is the only engine variant that meets the SLO here."
                        );
                    }
                }
                if !rec.failed.is_empty() {
                    let names: Vec<String> = rec.failed.iter().map(|c| c.variant.clone()).collect();
                    let _ = writeln!(
                        out,
                        "  Not meeting the SLO at any load tested: {}.",
                        names.join(", ")
                    );
                }
            }
        }
    }
    if let Some(meta) = meta {
        let quick = folders
            .iter()
            .any(|f| f.meta["quick"].as_bool() == Some(true));
        let _ = writeln!(
            out,
            "Measured on {}{}.",
            described.map_or_else(|| device_words(meta), |f| f.caption()),
            if quick {
                " (with --quick: short runs, noisier)"
            } else {
                ""
            }
        );
        if let Some(v) = virtual_disk(meta) {
            let _ = writeln!(
                out,
                "Caution: {v}. Re-run on the production disk before deciding."
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::RunStatus;
    use crate::search::SearchRow;

    fn row(variant: &str, matches: u32, p99_ms: f64, cores: f64, per_op: f64) -> SummaryRow {
        SummaryRow {
            run_id: format!("{variant}-{matches}"),
            engine: variant.split(':').next().unwrap().to_string(),
            variant: variant.into(),
            workload: "fps-128tick".into(),
            workers: 1,
            status: RunStatus::Ok,
            matches: Some(matches),
            lat_p99_us: Some(p99_ms * 1000.0),
            ack_p99_us: Some(p99_ms * 1000.0 + 5.0),
            cpu_cores: Some(cores),
            cpu_us_per_op: Some(per_op),
            config_id: format!("{variant}-{matches}"),
            ..SummaryRow::default()
        }
    }

    fn search_row(variant: &str) -> SearchRow {
        SearchRow {
            engine: variant.split(':').next().unwrap().to_string(),
            variant: variant.into(),
            workload: "fps-128tick".into(),
            workers: 1,
            load: "matches".into(),
            bottleneck: "worker".into(),
            ..SearchRow::default()
        }
    }

    fn folder(rows: Vec<SummaryRow>, search: Vec<SearchRow>) -> Folder {
        Folder::from_rows(std::path::Path::new("r"), rows, search)
    }

    fn ask(p99_ms: f64, budget: Option<f64>) -> Ask {
        Ask {
            slo: Slo {
                p99_ms,
                ack_p99_ms: None,
                on: SloOn::Write,
                write_p99_ms: None,
            },
            cpu_budget_cores: budget,
        }
    }

    /// aio passes up to 2048 (fails 4096), uring up to 1024 (fails 2048), null everything.
    fn searched() -> Folder {
        let mut rows = Vec::new();
        for (v, levels) in [
            ("null", vec![(1024, 1.0), (2048, 1.0), (4096, 2.0)]),
            ("aio", vec![(1024, 10.0), (2048, 30.0), (4096, 90.0)]),
            ("uring", vec![(1024, 20.0), (2048, 70.0)]),
        ] {
            for (m, p99) in levels {
                for k in 0..3 {
                    let mut r = row(v, m, p99 + k as f64, f64::from(m) / 2048.0, 3.0);
                    r.run_id = format!("{v}-{m}-{k}");
                    rows.push(r);
                }
            }
        }
        folder(
            rows,
            vec![search_row("null"), search_row("aio"), search_row("uring")],
        )
    }

    #[test]
    fn the_search_ranks_by_capacity_and_never_recommends_null() {
        let recs = recommend(&[searched()], &ask(50.0, None));
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.basis, Basis::Search);
        let names: Vec<&str> = r.ranked.iter().map(|c| c.variant.as_str()).collect();
        assert_eq!(names, ["aio", "uring"]);
        assert_eq!(
            (r.ranked[0].last_pass, r.ranked[0].first_fail),
            (Some(2048), Some(4096))
        );
        assert_eq!(
            (r.ranked[1].last_pass, r.ranked[1].first_fail),
            (Some(1024), Some(2048))
        );
        let m = margin(r).unwrap();
        assert!(
            m.contains("2.00×") && m.contains("by one search step"),
            "{m}"
        );
        // A lead of more than one step is beyond the search's resolution; the runner-up's lower
        // CPU is said.
        let mut wide = r.clone();
        wide.ranked[0].last_pass = Some(4096);
        wide.ranked[1].cpu_us_per_op = Spread::of(&[1.0, 1.0, 1.0]);
        let m = margin(&wide).unwrap();
        assert!(
            m.contains("beyond the search's resolution") && m.contains("uring needs less CPU"),
            "{m}"
        );
        let text = render(&recs, &[searched()], &ask(50.0, None));
        assert!(text.contains("Run aio."), "{text}");
        // One step apart and the runner-up cheaper: the cheaper one goes first.
        let mut f = searched();
        for r in f.rows.iter_mut().filter(|r| r.variant == "uring") {
            r.cpu_us_per_op = Some(2.0);
        }
        let recs = recommend(std::slice::from_ref(&f), &ask(50.0, None));
        assert_eq!(recs[0].ranked[0].variant, "uring");
        let m = margin(&recs[0]).unwrap();
        assert!(
            m.contains("aio carried one search step more") && m.contains("uring takes it on CPU"),
            "{m}"
        );
    }

    #[test]
    fn a_tighter_slo_or_budget_moves_the_knee() {
        // 25 ms: aio's 2048 (30 ms) fails; both now pass only 1024: the lead is not decided.
        let recs = recommend(&[searched()], &ask(25.0, None));
        let r = &recs[0];
        assert_eq!(r.ranked[0].last_pass, Some(1024));
        assert_eq!(r.ranked[1].last_pass, Some(1024));
        assert!(margin(r).unwrap().contains("same load"));
        // A 0.6-core budget: 2048 matches needs 1 core, so aio stops at 1024 too.
        let recs = recommend(&[searched()], &ask(50.0, Some(0.6)));
        assert_eq!(recs[0].ranked[0].last_pass, Some(1024));
        // 5 ms: nobody passes; say so plainly.
        let recs = recommend(&[searched()], &ask(5.0, None));
        assert!(recs[0].ranked.is_empty());
        let text = render(&recs, &[searched()], &ask(5.0, None));
        assert!(text.contains("No engine meets the SLO"), "{text}");
    }

    #[test]
    fn a_set_answers_searched_workloads_from_the_search_and_the_rest_from_runs() {
        let mut runs = Vec::new();
        for workload in ["fps-128tick", "moba-30tick"] {
            for i in 0..5 {
                let mut r = row("uring", 256, 10.0, 0.3, 3.0);
                r.workload = workload.into();
                r.config_id = format!("uring-{workload}");
                r.repeat = i + 1;
                runs.push(r);
            }
        }
        let set = [folder(runs, Vec::new()), searched()];
        let recs = recommend(&set, &ask(50.0, None));
        let by: Vec<(&str, Basis)> = recs
            .iter()
            .map(|r| (r.workload.as_str(), r.basis))
            .collect();
        assert_eq!(
            by,
            [
                ("fps-128tick", Basis::Search),
                ("moba-30tick", Basis::FixedLoad)
            ]
        );
    }

    #[test]
    fn fixed_loads_rank_by_cpu_with_the_noise_rule() {
        let mut rows = Vec::new();
        for i in 0..5 {
            let mut a = row("aio", 256, 10.0, 0.3, 3.0 + 0.01 * f64::from(i));
            a.repeat = i + 1;
            let mut u = row("uring", 256, 12.0, 0.4, 4.0 + 0.01 * f64::from(i));
            u.repeat = i + 1;
            let mut b = row("buffered", 256, 80.0, 0.4, 2.0);
            b.repeat = i + 1;
            rows.extend([a, u, b]);
        }
        let f = folder(rows, Vec::new());
        let recs = recommend(std::slice::from_ref(&f), &ask(50.0, None));
        let r = &recs[0];
        assert_eq!(r.basis, Basis::FixedLoad);
        assert_eq!(r.ranked[0].variant, "aio");
        assert_eq!(r.failed[0].variant, "buffered");
        assert!(
            margin(r).unwrap().contains("beyond noise"),
            "{:?}",
            margin(r)
        );
        // Three repeats only: inconclusive.
        let few: Vec<SummaryRow> = f.rows.iter().take(9).cloned().collect();
        let recs = recommend(&[folder(few, Vec::new())], &ask(50.0, None));
        assert!(margin(&recs[0]).unwrap().contains("inconclusive"));
    }
}
