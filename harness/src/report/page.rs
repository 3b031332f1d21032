//! The front page of a results folder: `report.md` and `report.html` (the same Markdown
//! rendered by pulldown-cmark into one self-contained file, SVG plots inline, no network, no
//! JavaScript). Both are [`Exporter`]s; [`write`] draws the plots and writes the pages.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::load::{result_subfolders, virtual_disk, Folder, LoadError};
use super::plots::{self, Chart};
use super::recommend::{self, Ask};
use crate::error::ExportError;
use crate::results::{median_min_max, write_atomic, Exporter, RunResult, RunStatus, SummaryRow};
use crate::search::{Slo, SloOn};

/// The SLO a report's recommendation uses when the folder has no search of its own.
pub const DEFAULT_REPORT_SLO_P99_MS: f64 = 50.0;

/// One section of a report: one results folder with its plots.
pub struct Section {
    /// The folder.
    pub folder: Folder,
    /// Its charts.
    pub charts: Vec<Chart>,
    /// Charts that could not be drawn.
    pub plot_errors: Vec<String>,
    /// The folder's path relative to the report (empty for the report's own folder).
    pub rel: PathBuf,
}

/// A report: its sections (one for a results folder, one per sub-folder for a set).
pub struct Report {
    /// Where report.md and report.html go.
    pub path: PathBuf,
    /// The sections.
    pub sections: Vec<Section>,
}

/// `report.md`.
pub struct ReportMd<'a>(pub &'a Report);

/// `report.html`: report.md rendered, with the SVG plots inline.
pub struct ReportHtml<'a>(pub &'a Report);

impl Exporter for ReportMd<'_> {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("report.md")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        _runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        Ok(markdown(self.0).into_bytes())
    }
}

impl Exporter for ReportHtml<'_> {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("report.html")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        _runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        Ok(html(self.0, &markdown(self.0)).into_bytes())
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A folder could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A page could not be written.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// Read `path` (a results folder, or a set of them), draw the plots of every folder, and write
/// report.md and report.html into `path`. Returns the report written.
pub fn write(path: &Path) -> Result<Report, ReportError> {
    let subs = if crate::results::holds_results(path) {
        Vec::new()
    } else {
        result_subfolders(path)
    };
    let folders: Vec<(Folder, PathBuf)> = if subs.is_empty() {
        vec![(Folder::load(path)?, PathBuf::new())]
    } else {
        let mut v = Vec::new();
        for s in &subs {
            let rel = s.strip_prefix(path).unwrap_or(s).to_path_buf();
            v.push((Folder::load(s)?, rel));
        }
        v
    };
    let mut sections = Vec::new();
    for (folder, rel) in folders {
        let (charts, errs) = match plots::draw(&folder) {
            Ok(d) => (d.charts, d.errors),
            Err(e) => (Vec::new(), vec![e]),
        };
        sections.push(Section {
            folder,
            charts,
            plot_errors: errs.iter().map(|e| e.to_string()).collect(),
            rel,
        });
    }
    let report = Report {
        path: path.to_path_buf(),
        sections,
    };
    // A set's sub-folders get their own page too.
    if report.sections.len() > 1
        || report
            .sections
            .iter()
            .any(|s| !s.rel.as_os_str().is_empty())
    {
        for s in &report.sections {
            let one = Report {
                path: s.folder.path.clone(),
                sections: vec![Section {
                    folder: s.folder.clone(),
                    charts: s.charts.clone(),
                    plot_errors: s.plot_errors.clone(),
                    rel: PathBuf::new(),
                }],
            };
            export_pages(&one)?;
        }
    }
    export_pages(&report)?;
    Ok(report)
}

fn export_pages(r: &Report) -> Result<(), ExportError> {
    for e in [&ReportMd(r) as &dyn Exporter, &ReportHtml(r)] {
        let bytes = e.serialize(&serde_json::Value::Null, &[])?;
        let path = r.path.join(e.file_name(&[]));
        write_atomic(&path, &bytes).map_err(|source| ExportError::Write { path, source })?;
    }
    Ok(())
}

/// The ask a report's recommendation answers: the search's own SLO where a folder has one,
/// else write p99 ≤ [`DEFAULT_REPORT_SLO_P99_MS`].
pub fn report_ask(folders: &[&Folder]) -> Ask {
    let search = folders
        .iter()
        .map(|f| &f.meta["search"])
        .find(|s| s["slo_p99_ms"].is_number() && s["slo_on"].as_str() != Some("read"));
    let (p99_ms, on, ack) = match search {
        Some(s) => (
            s["slo_p99_ms"]
                .as_f64()
                .unwrap_or(DEFAULT_REPORT_SLO_P99_MS),
            if s["slo_on"].as_str() == Some("ack") {
                SloOn::Ack
            } else {
                SloOn::Write
            },
            s["slo_ack_p99_ms"].as_f64(),
        ),
        None => (DEFAULT_REPORT_SLO_P99_MS, SloOn::Write, None),
    };
    Ask {
        slo: Slo {
            p99_ms,
            ack_p99_ms: ack,
            on,
            write_p99_ms: None,
        },
        cpu_budget_cores: None,
    }
}

fn ms(us: Option<f64>) -> Option<f64> {
    us.map(|v| v / 1000.0)
}

/// `median (min..max)` of a column over a group of repeats (just the value for one run).
fn spread(rows: &[&SummaryRow], f: impl Fn(&SummaryRow) -> Option<f64>, prec: usize) -> String {
    let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
    spread_text(&v, prec)
}

/// `median (min..max)` of `v` (just the value for one, `-` for none).
fn spread_text(v: &[f64], prec: usize) -> String {
    match median_min_max(v) {
        None => "-".into(),
        Some((m, _, _)) if v.len() == 1 => format!("{m:.prec$}"),
        Some((m, lo, hi)) => format!("{m:.prec$} ({lo:.prec$}..{hi:.prec$})"),
    }
}

/// Whether a variant's writes complete in the page cache (buffered I/O).
fn page_cache(r: &SummaryRow) -> bool {
    let v = &r.variant;
    match r.engine.as_str() {
        "buffered" | "tokio" => !v.contains("direct=true"),
        "uring" | "aio" | "poll" => v.contains("direct=false"),
        _ => false,
    }
}

/// The warnings a reader must see before trusting the numbers.
pub fn warnings(f: &Folder) -> Vec<String> {
    let mut out = Vec::new();
    let searched = !f.search.is_empty();
    for st in [
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Saturated,
    ] {
        let hit: Vec<&SummaryRow> = f.rows.iter().filter(|r| r.status == st).collect();
        if hit.is_empty() {
            continue;
        }
        let mut ids: Vec<String> = hit
            .iter()
            .take(8)
            .map(|r| {
                if r.error.is_empty() {
                    format!("`{}`", r.run_id)
                } else {
                    format!("`{}` ({})", r.run_id, r.error)
                }
            })
            .collect();
        if hit.len() > 8 {
            ids.push(format!("and {} more (summary.csv)", hit.len() - 8));
        }
        let why = match st {
            RunStatus::Saturated if searched => {
                " — in a search, steps past an engine's knee saturate by design and count as failed steps"
            }
            RunStatus::Saturated => " — the engine fell behind the offered load; its latencies are lower bounds",
            _ => "",
        };
        out.push(format!(
            "{} of {} runs ended **{}**{why}: {}",
            hit.len(),
            f.rows.len(),
            st.as_str(),
            ids.join(", ")
        ));
    }
    let errs: Vec<&SummaryRow> = f
        .rows
        .iter()
        .filter(|r| r.errors > 0 && r.status == RunStatus::Ok)
        .collect();
    if !errs.is_empty() {
        out.push(format!(
            "{} runs counted I/O errors: {}",
            errs.len(),
            errs.iter()
                .map(|r| format!("`{}` ({})", r.run_id, r.errors))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let noisy: Vec<&str> = f
        .rows
        .iter()
        .filter(|r| r.noisy)
        .map(|r| r.run_id.as_str())
        .collect();
    if !noisy.is_empty() {
        out.push(format!(
            "{} run(s) lost more than 5 % of the CPU to the hypervisor (steal) and are marked noisy: {}",
            noisy.len(),
            noisy.join(", ")
        ));
    }
    let none: Vec<&SummaryRow> = f.rows.iter().filter(|r| r.durability == "none").collect();
    if none.iter().any(|r| page_cache(r))
        && none.iter().any(|r| !page_cache(r) && r.engine != "null")
    {
        out.push(
            "`durability none` compares buffered engines (a write completes in the page cache) with direct ones (it completes at the device): their write latencies measure different things".into(),
        );
    }
    if let Some(v) = virtual_disk(&f.meta) {
        out.push(format!("measured on {v}"));
    }
    if f.meta["quick"].as_bool() == Some(true) {
        out.push("`--quick`: short runs, noisier figures".into());
    }
    match f.meta["status"].as_str() {
        Some("ok") | None => {}
        Some(s) => out.push(format!(
            "the invocation ended `{s}`: these are the results gathered until then"
        )),
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn section_md(out: &mut String, s: &Section, level: &str, ask: &Ask) {
    let f = &s.folder;
    let m = &f.meta;
    let prefix = |p: &Path| s.rel.join(p).display().to_string();
    let _ = writeln!(out, "{level} What ran, and where\n");
    let _ = writeln!(out, "- **Measured on:** {}", f.caption());
    if let Some(argv) = m["argv"].as_array() {
        let words: Vec<&str> = argv.iter().filter_map(|a| a.as_str()).collect();
        let _ = writeln!(out, "- **Command:** `{}`", words.join(" "));
    } else if let Some(tool) = m["tool"].as_str() {
        let _ = writeln!(
            out,
            "- **Command:** `{tool}` ({} rounds of {} s, rows `{}`, {}, file `{}`)",
            m["rounds"],
            m["secs"],
            m["rows_filter"].as_str().unwrap_or("all"),
            m["fio_version"].as_str().unwrap_or("fio ?"),
            m["file"].as_str().unwrap_or("?")
        );
    }
    if m["suite"].is_string() {
        let _ = writeln!(
            out,
            "- **Suite:** {} · **started** {} · **ended** {} · **status** {}",
            m["suite"].as_str().unwrap_or("?"),
            m["start_utc"].as_str().unwrap_or("?"),
            m["end_utc"].as_str().unwrap_or("?"),
            m["status"].as_str().unwrap_or("?")
        );
    } else if let Some(start) = m["start_utc"].as_str() {
        let _ = writeln!(out, "- **Started:** {start}");
    }
    if m["build"].is_object() {
        let _ = writeln!(
            out,
            "- **Build:** snapbench {} ({}), {}",
            m["build"]["version"].as_str().unwrap_or("?"),
            m["build"]["git_commit"].as_str().unwrap_or("?"),
            m["build"]["rustc"].as_str().unwrap_or("?")
        );
    } else if let Some(v) = m["snapbench_version"].as_str() {
        let _ = writeln!(out, "- **Build:** {v}");
    }
    let mut durability: Vec<&str> = Vec::new();
    for r in &f.rows {
        if !r.durability.is_empty() && !durability.contains(&r.durability.as_str()) {
            durability.push(&r.durability);
        }
    }
    if !durability.is_empty() {
        let _ = writeln!(
            out,
            "- **Durability:** `{}` (ack latency is the time to durable under it: `interval:MS` group-commits every MS ms)",
            durability.join("`, `")
        );
    }
    let here = if s.rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        s.rel.display().to_string()
    };
    if f.rows.is_empty() {
        let _ = writeln!(
            out,
            "- **Files:** `{here}` (meta.json and the tables below)\n"
        );
    } else {
        let _ = writeln!(
            out,
            "- **Files:** `{here}` (meta.json has every option and the machine; summary.csv every run; hist/ the histograms)\n"
        );
    }
    let warns = warnings(f);
    if !warns.is_empty() || !s.plot_errors.is_empty() {
        let _ = writeln!(out, "{level} Warnings\n");
        for w in &warns {
            let _ = writeln!(out, "- ⚠ {w}");
        }
        for e in &s.plot_errors {
            let _ = writeln!(out, "- ⚠ plot not drawn: {e}");
        }
        let _ = writeln!(out);
    }
    if !f.search.is_empty() {
        let _ = writeln!(out, "{level} Capacity\n");
        let _ = writeln!(
            out,
            "The largest load each variant carried under the SLO: a bracket [last pass, first fail) from a search of interleaved steps, each judged on the median of its runs.\n"
        );
        let _ = writeln!(
            out,
            "| variant | workload | workers | SLO | capacity (matches) | cores at last pass | matches per busy core | CPU µs/snapshot | bottleneck |\n|---|---|---|---|---|---|---|---|---|"
        );
        let mut ranked: Vec<&crate::search::SearchRow> = f.search.iter().collect();
        ranked.sort_by_key(|r| std::cmp::Reverse(r.last_pass));
        for r in ranked {
            let slo = format!("{} p99 ≤ {} ms", r.slo_on, r.slo_p99_ms);
            let cap = super::bracket(r.last_pass, r.first_fail);
            let o = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {slo} | {cap} | {} | {} | {} | {} |",
                md_escape(&r.variant),
                r.workload,
                r.workers,
                o(r.cpu_cores, 2),
                o(r.matches_per_busy_core, 0),
                o(r.cpu_us_per_op, 2),
                md_escape(&if r.bottleneck_detail.is_empty() {
                    r.bottleneck.clone()
                } else {
                    format!("{}: {}", r.bottleneck, r.bottleneck_detail)
                })
            );
        }
        let _ = writeln!(out);
    }
    if !f.calibration.is_empty() {
        calibration_md(out, f, level);
    }
    if !f.rows.is_empty() {
        let _ = writeln!(out, "{level} Summary\n");
        let _ = writeln!(
            out,
            "One line per configuration; with repeats, median (min..max). Latency from each snapshot's intended time, in ms. CPU: process (worker, pool, io-wq and SQPOLL threads).\n"
        );
        let _ = writeln!(
            out,
            "| variant | workload | matches | runs | status | snapshots/s | write p99 (ms) | ack p99 (ms) | cores | CPU µs/snapshot | above null (µs) |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut configs: Vec<(&str, Vec<&SummaryRow>)> = Vec::new();
        for r in &f.rows {
            let id = if r.config_id.is_empty() {
                r.run_id.as_str()
            } else {
                r.config_id.as_str()
            };
            match configs.iter_mut().find(|(c, _)| *c == id) {
                Some((_, g)) => g.push(r),
                None => configs.push((id, vec![r])),
            }
        }
        for (_, g) in &configs {
            let r0 = g[0];
            let mut statuses: Vec<String> = Vec::new();
            for st in RunStatus::ALL {
                let n = g.iter().filter(|r| r.status == st).count();
                if n > 0 {
                    statuses.push(if g.len() == 1 {
                        st.as_str().to_string()
                    } else {
                        format!("{n} {}", st.as_str())
                    });
                }
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                md_escape(&r0.variant),
                r0.workload,
                r0.matches.map_or("-".into(), |m| m.to_string()),
                g.len(),
                statuses.join(", "),
                spread(g, |r| Some(r.ops_per_s), 0),
                spread(g, |r| ms(r.lat_p99_us), 2),
                spread(g, |r| ms(r.ack_p99_us), 2),
                spread(g, |r| r.cpu_cores, 2),
                spread(g, |r| r.cpu_us_per_op, 2),
                spread(g, |r| r.cpu_us_per_op_over_null, 2),
            );
        }
        let _ = writeln!(out);
    }
    if !s.charts.is_empty() {
        let _ = writeln!(out, "{level} Plots\n");
        for c in &s.charts {
            let _ = writeln!(
                out,
                "**{}**\n\n![{}]({})\n\n[SVG]({}) · settings in `{}`\n",
                c.title,
                c.title,
                prefix(&c.png),
                prefix(&c.svg),
                prefix(&c.png.with_extension("json"))
            );
        }
    }
    let _ = ask;
}

/// The calibration table: per row, snapbench against fio, median (min..max) over the rounds.
fn calibration_md(out: &mut String, f: &Folder, level: &str) {
    let _ = writeln!(out, "{level} Calibration against fio\n");
    let outside = f
        .calibration
        .iter()
        .any(|c| c.cpu_us_per_io_rusage.is_some());
    let _ = writeln!(
        out,
        "Both tools on the same fully written file, with the same flags and placement, rounds interleaved; median (min..max) over the rounds. A ratio is snapbench over fio, taken per round (round k against round k). CPU per I/O is {}. Target: on every row the ratio's range reaches 1.0 (IOPS ratio max ≥ 1, CPU ratio min ≤ 1); a row whose whole range misses is a gap.\n",
        if outside {
            "measured from outside for both (each child's whole-life rusage, every thread: SQPOLL, io-wq, pools)"
        } else {
            "each tool's own figure (fio's leaves out its SQPOLL thread)"
        }
    );
    let _ = writeln!(
        out,
        "| row | pattern | placement | snapbench IOPS | fio IOPS | IOPS ratio | snapbench p99 (µs) | fio p99 (µs) | snapbench CPU µs/IO | fio CPU µs/IO | CPU ratio | switches per I/O (snapbench / fio) | target |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for c in &f.calibration {
        if !keys.contains(&(c.row.as_str(), c.pattern.as_str())) {
            keys.push((&c.row, &c.pattern));
        }
    }
    for (row, pattern) in keys {
        let of = |tool: &str| -> Vec<&super::load::CalibrationRow> {
            f.calibration
                .iter()
                .filter(|c| c.row == row && c.pattern == pattern && c.tool == tool)
                .collect()
        };
        let (sb, fio) = (of("snapbench"), of("fio"));
        let vals = |side: &[&super::load::CalibrationRow],
                    v: fn(&super::load::CalibrationRow) -> f64| {
            side.iter().map(|c| v(c)).collect::<Vec<f64>>()
        };
        // Per-round ratios: round k of snapbench over round k of fio.
        let ratios = |v: fn(&super::load::CalibrationRow) -> f64| -> Vec<f64> {
            sb.iter()
                .filter_map(|a| {
                    let b = fio.iter().find(|b| b.round == a.round)?;
                    let (x, y) = (v(a), v(b));
                    (y > 0.0 && x.is_finite() && y.is_finite()).then_some(x / y)
                })
                .collect()
        };
        let iops_r = ratios(|c| c.iops);
        let cpu_r = ratios(|c| c.cpu_compared_us_per_io());
        let target = match (median_min_max(&iops_r), median_min_max(&cpu_r)) {
            (Some((_, _, ihi)), Some((_, clo, _))) => {
                let mut miss = Vec::new();
                if ihi < 1.0 {
                    miss.push("IOPS");
                }
                if clo > 1.0 {
                    miss.push("CPU");
                }
                if miss.is_empty() {
                    "reached".to_string()
                } else {
                    format!("**missed: {}** (whole range)", miss.join(", "))
                }
            }
            _ => "-".into(),
        };
        let placement = sb
            .iter()
            .chain(fio.iter())
            .map(|c| c.placement.as_str())
            .find(|p| !p.is_empty())
            .unwrap_or("-");
        let csw = |side: &[&super::load::CalibrationRow]| {
            let v: Vec<f64> = side.iter().filter_map(|c| c.csw_per_io).collect();
            median_min_max(&v).map_or("-".into(), |(m, _, _)| format!("{m:.2}"))
        };
        let _ = writeln!(
            out,
            "| {} | {pattern} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {target} |",
            md_escape(row),
            md_escape(placement),
            spread_text(&vals(&sb, |c| c.iops), 0),
            spread_text(&vals(&fio, |c| c.iops), 0),
            spread_text(&iops_r, 2),
            spread_text(&vals(&sb, |c| c.p99_us), 0),
            spread_text(&vals(&fio, |c| c.p99_us), 0),
            spread_text(&vals(&sb, |c| c.cpu_compared_us_per_io()), 2),
            spread_text(&vals(&fio, |c| c.cpu_compared_us_per_io()), 2),
            spread_text(&cpu_r, 2),
            csw(&sb),
            csw(&fio),
        );
    }
    let _ = writeln!(out);
}

/// report.md's text.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let folders: Vec<&Folder> = r.sections.iter().map(|s| &s.folder).collect();
    let title = folders
        .first()
        .and_then(|f| f.meta["suite"].as_str())
        .unwrap_or("results");
    let _ = writeln!(
        out,
        "# snapbench: {} — {}\n",
        r.path
            .file_name()
            .map_or_else(|| title.to_string(), |n| n.to_string_lossy().into_owned()),
        folders
            .iter()
            .filter_map(|f| f.meta["start_utc"].as_str())
            .min()
            .unwrap_or("")
    );
    let ask = report_ask(&folders);
    let owned: Vec<Folder> = folders.iter().map(|f| (*f).clone()).collect();
    let recs = recommend::recommend(&owned, &ask);
    let _ = writeln!(out, "## Recommendation\n");
    let _ = writeln!(
        out,
        "For another SLO or a CPU budget: `snapbench recommend {} --slo-p99-ms X [--slo-on ack] [--cpu-budget CORES]`.\n",
        r.path.display()
    );
    let _ = writeln!(
        out,
        "```text\n{}```\n",
        recommend::render(&recs, &owned, &ask)
    );
    let multi = r.sections.len() > 1 || r.sections.iter().any(|s| !s.rel.as_os_str().is_empty());
    for s in &r.sections {
        if multi {
            let _ = writeln!(out, "## {}\n", s.rel.display());
            section_md(&mut out, s, "###", &ask);
        } else {
            section_md(&mut out, s, "##", &ask);
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// report.html's text: `md` rendered, every `plot/*.png` image replaced by its SVG inline.
pub fn html(r: &Report, md: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES);
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, parser);
    // Inline the SVGs: <img src="…/plot/x.png" alt="…" /> → the SVG file's content.
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(i) = rest.find("<img src=\"") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 10..];
        let Some(q) = after.find('"') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let src = &after[..q];
        let end = after.find("/>").map_or(after.len(), |e| e + 2);
        let svg_path = r.path.join(src).with_extension("svg");
        match std::fs::read_to_string(&svg_path) {
            Ok(svg) if src.ends_with(".png") => {
                let start = svg.find("<svg").unwrap_or(0);
                out.push_str("<div class=\"plot\">");
                out.push_str(&svg[start..]);
                out.push_str("</div>");
            }
            _ => out.push_str(&rest[i..i + 10 + end]),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    let title = html_escape(
        md.lines()
            .next()
            .unwrap_or("snapbench report")
            .trim_start_matches("# "),
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\nbody{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}}\ntable{{border-collapse:collapse;font-size:0.88em;margin:1em 0}}th,td{{border:1px solid #ccc;padding:0.25em 0.5em;text-align:right}}th:first-child,td:first-child{{text-align:left}}th{{background:#f3f3f3}}\npre{{background:#f6f6f6;padding:1em;overflow-x:auto;white-space:pre-wrap}}code{{font-size:0.92em}}\n.plot svg{{max-width:100%;height:auto;border:1px solid #eee}}\n</style></head><body>\n{out}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                copy_dir(&p, &to.join(e.file_name()));
            } else {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn a_committed_search_folder_gets_both_pages() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261203T145523Z-capacity-quick/a-w1");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a-w1");
        copy_dir(&src, &dir);
        let r = write(&dir).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        for want in [
            "## Recommendation",
            "## Capacity",
            "## Summary",
            "## Warnings",
            "virtual disk",
            "Run ",
        ] {
            assert!(md.contains(want), "{want} missing:\n{md}");
        }
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<table>"));
        assert!(!html.contains("<script"), "no JavaScript");
        if !r.sections[0].charts.is_empty() {
            assert!(html.contains("<svg"), "plots inline");
            assert!(!html.contains(".png\""), "no external images");
        }
    }

    #[test]
    fn a_set_gets_one_section_per_folder_and_a_page_each() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261203T145523Z-capacity-quick");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("set");
        copy_dir(&src, &dir);
        let r = write(&dir).unwrap();
        assert_eq!(r.sections.len(), 2);
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("## a-w1") && md.contains("## a-w2"), "{md}");
        assert!(dir.join("a-w1/report.md").is_file());
        assert!(dir.join("a-w2/report.html").is_file());
    }

    /// Ratios are taken round by round, CPU from outside when recorded, and the target is
    /// reached when the ratio's range reaches 1.0.
    #[test]
    fn calibration_ratios_pair_rounds_and_the_target_needs_the_range_to_reach_one() {
        let cal = |row: &str, tool: &str, round: u32, iops: f64, own: f64, outside: Option<f64>| {
            super::super::load::CalibrationRow {
                row: row.into(),
                pattern: "randread 4k 1".into(),
                tool: tool.into(),
                round,
                iops,
                p99_us: 100.0,
                cpu_us_per_io: own,
                cpu_us_per_io_rusage: outside,
                csw_per_io: Some(1.5),
                placement: "both CPU 0".into(),
            }
        };
        let mut f = Folder::from_rows(Path::new("x"), Vec::new(), Vec::new());
        f.calibration = vec![
            // "close": round 2 is level, so the ranges reach 1.0.
            cal("close", "snapbench", 1, 90.0, 10.0, Some(12.0)),
            cal("close", "fio", 1, 100.0, 10.0, Some(10.0)),
            cal("close", "snapbench", 2, 200.0, 10.0, Some(10.0)),
            cal("close", "fio", 2, 200.0, 10.0, Some(10.0)),
            // "gap": below on IOPS in every round; fio's own CPU figure would hide the CPU
            // gap (5 µs), its outside figure (20 µs) shows none.
            cal("gap", "snapbench", 1, 50.0, 20.0, Some(20.0)),
            cal("gap", "fio", 1, 100.0, 5.0, Some(20.0)),
            cal("gap", "snapbench", 2, 60.0, 20.0, Some(20.0)),
            cal("gap", "fio", 2, 100.0, 5.0, Some(20.0)),
        ];
        let mut md = String::new();
        calibration_md(&mut md, &f, "##");
        let line = |row: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {row} |")))
                .unwrap_or_else(|| panic!("{row} missing:\n{md}"))
                .to_string()
        };
        let close = line("close");
        assert!(close.contains("| 0.95 (0.90..1.00) |"), "{close}");
        assert!(close.contains("| 1.10 (1.00..1.20) |"), "{close}");
        assert!(close.ends_with("| reached |"), "{close}");
        assert!(close.contains("| both CPU 0 |"), "{close}");
        assert!(close.contains("| 1.50 / 1.50 |"), "{close}");
        let gap = line("gap");
        assert!(gap.contains("| 0.55 (0.50..0.60) |"), "{gap}");
        assert!(gap.ends_with("| **missed: IOPS** (whole range) |"), "{gap}");
        assert!(md.contains("measured from outside for both"), "{md}");
    }

    #[test]
    fn durability_none_across_buffered_and_direct_is_a_warning() {
        let row = |engine: &str, variant: &str| SummaryRow {
            engine: engine.into(),
            variant: variant.into(),
            durability: "none".into(),
            ..SummaryRow::default()
        };
        let mut f = Folder::from_rows(
            Path::new("x"),
            vec![row("buffered", "buffered"), row("uring", "uring")],
            Vec::new(),
        );
        assert!(warnings(&f).iter().any(|w| w.contains("durability none")));
        f.rows[1] = row("uring", "uring:direct=false");
        assert!(!warnings(&f).iter().any(|w| w.contains("durability none")));
    }
}
