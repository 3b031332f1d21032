//! Comparison plots (plotters) of one results folder: one file per chart kind under
//! `<folder>/plot/` (criterion's layout), each as PNG and SVG, with the settings that drew it
//! beside it as `plot/<kind>.json`.
//!
//! | file stem | drawn when | what |
//! |---|---|---|
//! | `latency-write`, `latency-ack`, `latency-read` | runs have `hist/RUN-lat`, `-ack`, `-read_ttfb` `.hgrm` files | percentile spectrum (HdrHistogram style: x the nines from 50 to 99.999, y ms on a log scale), the median over repeats with a min–max band |
//! | `capacity` | search.csv has rows whose load is `matches` and whose SLO is on write or ack | p99 of the SLO's side per offered matches (log2), median with min–max whiskers, the SLO line and each variant's knee (`last_pass`) |
//! | `cpu` | runs carry `cpu_us_per_op` or `sys_cpu_busy_s` | CPU µs per snapshot per variant: process, system-wide, and above `null` where a null run exists (median, min–max whiskers); in a search folder at each variant's knee |
//! | `timeseries-ops`, `timeseries-p99` | timeseries.csv has rows (`-p99` only with latency values) | per-second ops/s and p99 (log) per run, warm-up and drain shaded; over 12 runs, repeats of one configuration are drawn as a median with a min–max band |
//! | `calibration` | calibration.csv (`bench/calibrate-vs-fio.sh`) has rows | IOPS, p99 and CPU per I/O of snapbench and fio per row (median over rounds, min–max whiskers) |
//!
//! With several workloads in a folder every chart but calibration is drawn once per workload,
//! the workload's name appended to the stem (`latency-write-fps-128tick`). A latency or
//! time-series chart with more than 12 series (a search's steps) is drawn as small multiples,
//! one panel per variant on shared axes. A chart without data is not drawn. Each variant keeps
//! one colour across all the charts of a folder, given from [`Folder::variants`] order out of
//! [`PALETTE`]; several configurations of one variant in one chart (a search's steps) are
//! shades of it. Stale files of charts that no longer have data are not removed.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (`harness/assets/fonts/`, licence
//! beside it) through plotters' `ab_glyph` backend, so plots render on a machine without fonts.
//! Odd data never panics: NaN values are skipped, values ≤ 0 on a log axis are clamped to its
//! floor (the settings JSON says how many), a chart without points is not drawn, and a failing
//! chart is reported in [`Drawn::errors`] without stopping the others.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Map, Value};

use super::load::{CalibrationRow, Folder, SecondRow};
use crate::results::{median_min_max, write_atomic, RunStatus, SummaryRow};
use crate::search::SearchRow;

/// One chart drawn into a folder's `plot/`.
#[derive(Clone, Debug)]
pub struct Chart {
    /// File stem under `plot/` (`latency-write`, `capacity`, …).
    pub kind: String,
    /// Its title.
    pub title: String,
    /// The PNG, relative to the results folder.
    pub png: PathBuf,
    /// The SVG, relative to the results folder.
    pub svg: PathBuf,
    /// The settings that drew it (`plot/<kind>.json`), relative to the results folder.
    pub settings: PathBuf,
}

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot {kind}: {message}")]
pub struct PlotError {
    /// The chart (its file stem, or the chart family when its data could not be prepared).
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// What [`draw`] drew, and what it could not.
#[derive(Debug, Default)]
pub struct Drawn {
    /// The charts written, in drawing order.
    pub charts: Vec<Chart>,
    /// The charts that failed (each failure stopped only its own chart).
    pub errors: Vec<PlotError>,
}

/// Width of a chart, pixels (wider when its legend needs more than one column).
pub const WIDTH: u32 = 1200;
/// Height of a chart, pixels (taller when a bar chart has many rows).
pub const HEIGHT: u32 = 700;
/// The font family the charts name (registered with plotters under this name and under
/// `sans-serif`; SVG viewers fall back to their sans-serif).
pub const FONT_FAMILY: &str = "DejaVu Sans, sans-serif";
/// The variant colours, in the order [`Folder::variants`] gives them out: Tableau 10
/// (matplotlib's tab10) and six darker extras; they repeat after 16 variants.
pub const PALETTE: [&str; 16] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#7b4173", "#e7ba52", "#843c39",
];
/// The percentile range of the latency spectra, percent.
pub const PERCENTILE_RANGE: (f64, f64) = (50.0, 99.999);
/// Above this many runs a time-series chart draws each configuration's repeats as one median
/// line with a min–max band instead of one line per run.
pub const MAX_SINGLE_RUNS: usize = 12;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// Floor of log latency axes, ms: values at or below zero are drawn there.
const LOG_FLOOR_MS: f64 = 0.001;
/// Step of the latency spectra's percentile grid, in nines (−log10(1 − p)).
const NINES_STEP: f64 = 0.02;
const ROW_H: i32 = 18;
const LEGEND_FONT: f64 = 12.0;

/// Register the bundled DejaVu Sans with plotters (once per process; later calls return the
/// first call's outcome).
pub fn register_font() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for name in [FONT_FAMILY, "sans-serif", "DejaVu Sans"] {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                plotters::style::register_font(name, style, FONT)
                    .map_err(|_| "the bundled DejaVuSans.ttf does not parse".to_string())?;
            }
        }
        Ok(())
    })
    .clone()
    .map_err(|message| PlotError {
        kind: "font".into(),
        message,
    })
}

/// Draw every chart `folder` has data for into `folder.path/plot/`. Returns the charts drawn;
/// charts that failed are left out (use [`draw`] to get their errors too). Err only when
/// `plot/` cannot be created or the font cannot be loaded.
pub fn draw_all(folder: &Folder) -> Result<Vec<Chart>, PlotError> {
    draw(folder).map(|d| d.charts)
}

/// Draw every chart `folder` has data for into `folder.path/plot/`: the charts drawn and the
/// ones that failed (a failure stops only its own chart). Err only when `plot/` cannot be
/// created or the font cannot be loaded. Nothing is created when no chart has data.
pub fn draw(folder: &Folder) -> Result<Drawn, PlotError> {
    register_font()?;
    let ctx = Ctx::new(folder);
    type Build = fn(&Folder, &Ctx) -> Vec<Figure>;
    let families: [(&str, Build); 5] = [
        ("latency", latency_figures),
        ("capacity", capacity_figures),
        ("cpu", cpu_figures),
        ("timeseries", timeseries_figures),
        ("calibration", calibration_figures),
    ];
    let mut out = Drawn::default();
    let mut figures = Vec::new();
    for (family, build) in families {
        match catch_unwind(AssertUnwindSafe(|| build(folder, &ctx))) {
            Ok(f) => figures.extend(f),
            Err(p) => out.errors.push(PlotError {
                kind: family.into(),
                message: format!("preparing the data panicked: {}", panic_text(&p)),
            }),
        }
    }
    if figures.is_empty() {
        return Ok(out);
    }
    let dir = folder.path.join("plot");
    std::fs::create_dir_all(&dir).map_err(|e| PlotError {
        kind: "plot".into(),
        message: format!("cannot create {}: {e}", dir.display()),
    })?;
    for fig in &figures {
        match catch_unwind(AssertUnwindSafe(|| write_chart(&dir, &ctx, fig))) {
            Ok(Ok(c)) => out.charts.push(c),
            Ok(Err(e)) => out.errors.push(e),
            Err(p) => out.errors.push(PlotError {
                kind: fig.kind.clone(),
                message: format!("drawing panicked: {}", panic_text(&p)),
            }),
        }
    }
    Ok(out)
}

/// Each variant of `folder` with its colour (`#rrggbb`), in [`Folder::variants`] order: the
/// colours every chart of the folder uses.
pub fn variant_colours(folder: &Folder) -> Vec<(String, String)> {
    Palette::new(folder)
        .map
        .iter()
        .map(|(v, c)| (v.clone(), hex(*c)))
        .collect()
}

/// The rows of an `.hgrm` percentile distribution: (percentile as a fraction 0..=1, value µs),
/// sorted by percentile; header, footer and unparsable lines are skipped.
pub fn read_hgrm(text: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let v: f64 = it.next()?.parse().ok()?;
            let p: f64 = it.next()?.parse().ok()?;
            (v.is_finite() && p.is_finite() && (0.0..=1.0).contains(&p)).then_some((p, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The value at `fraction` (0..=1) of a distribution from [`read_hgrm`], as HdrHistogram
/// defines it: the value of the first row whose percentile reaches it (the last row's beyond).
pub fn value_at_percentile(dist: &[(f64, f64)], fraction: f64) -> Option<f64> {
    dist.iter()
        .find(|(p, _)| *p >= fraction - 1e-12)
        .or(dist.last())
        .map(|(_, v)| *v)
}

// ---------------------------------------------------------------------------------------------
// Colours, folder context

struct Palette {
    map: Vec<(String, RGBColor)>,
}

impl Palette {
    fn new(folder: &Folder) -> Palette {
        let map = folder
            .variants()
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, parse_hex(PALETTE[i % PALETTE.len()])))
            .collect();
        Palette { map }
    }
    fn get(&self, variant: &str) -> RGBColor {
        self.map
            .iter()
            .find(|(v, _)| v == variant)
            .map_or(RGBColor(90, 90, 90), |(_, c)| *c)
    }
    fn index(&self, variant: &str) -> usize {
        self.map
            .iter()
            .position(|(v, _)| v == variant)
            .unwrap_or(usize::MAX)
    }
    fn json(&self) -> Value {
        let m: Map<String, Value> = self
            .map
            .iter()
            .map(|(v, c)| (v.clone(), Value::String(hex(*c))))
            .collect();
        Value::Object(m)
    }
}

fn parse_hex(h: &str) -> RGBColor {
    let n = u32::from_str_radix(h.trim_start_matches('#'), 16).unwrap_or(0x505050);
    RGBColor((n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn mix(c: RGBColor, with: RGBColor, t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let m = |a: u8, b: u8| (f64::from(a) * (1.0 - t) + f64::from(b) * t).round() as u8;
    RGBColor(m(c.0, with.0), m(c.1, with.1), m(c.2, with.2))
}

/// Shade `rank` of `n` configurations of one variant: dark to light around its colour.
fn shade(base: RGBColor, rank: usize, n: usize) -> RGBColor {
    if n <= 1 {
        return base;
    }
    let f = rank as f64 / (n - 1) as f64;
    if f < 0.5 {
        mix(base, BLACK, (0.5 - f) * 0.7)
    } else {
        mix(base, WHITE, (f - 0.5) * 0.9)
    }
}

struct Ctx<'a> {
    pal: Palette,
    caption: String,
    workloads: Vec<(String, Vec<&'a SummaryRow>)>,
    search_folder: bool,
}

impl<'a> Ctx<'a> {
    fn new(folder: &'a Folder) -> Ctx<'a> {
        let mut workloads: Vec<(String, Vec<&SummaryRow>)> = Vec::new();
        for r in &folder.rows {
            match workloads.iter_mut().find(|(w, _)| *w == r.workload) {
                Some((_, v)) => v.push(r),
                None => workloads.push((r.workload.clone(), vec![r])),
            }
        }
        Ctx {
            pal: Palette::new(folder),
            caption: folder.caption(),
            workloads,
            search_folder: !folder.search.is_empty(),
        }
    }
    /// The file stem of a chart of `workload`: `base`, or `base-workload` with several.
    fn stem(&self, base: &str, workload: &str) -> String {
        if self.workloads.len() > 1 {
            format!("{base}-{}", sanitize(workload))
        } else {
            base.to_string()
        }
    }
}

fn sanitize(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

fn wl_name(w: &str) -> &str {
    if w.is_empty() {
        "(no workload)"
    } else {
        w
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

// ---------------------------------------------------------------------------------------------
// Grouping runs into series

/// Parameters that tell configurations of one variant apart in labels.
const PARAMS: [&str; 7] = [
    "matches",
    "tick_hz",
    "record_hz",
    "workers",
    "durability",
    "tail",
    "prealloc",
];

fn param(r: &SummaryRow, name: &str) -> String {
    match name {
        "matches" => r.matches.map_or(String::new(), |m| m.to_string()),
        "tick_hz" => r.tick_hz.map_or(String::new(), fmt_num),
        "record_hz" => r.record_hz.map_or(String::new(), fmt_num),
        "workers" => r.workers.to_string(),
        "durability" => r.durability.clone(),
        "tail" => r.tail.clone(),
        "prealloc" => r.prealloc.clone(),
        _ => String::new(),
    }
}

fn param_order(r: &SummaryRow) -> (u32, u64, u64, u32, String) {
    (
        r.matches.unwrap_or(0),
        r.tick_hz.unwrap_or(0.0).max(0.0).to_bits(),
        r.record_hz.unwrap_or(0.0).max(0.0).to_bits(),
        r.workers,
        r.durability.clone(),
    )
}

/// One series of a chart: runs of one variant and configuration.
struct Group<'a> {
    variant: String,
    /// What tells it from the variant's other series (`matches=2048`, or a run id).
    suffix: String,
    rows: Vec<&'a SummaryRow>,
    colour: RGBColor,
}

impl Group<'_> {
    fn label(&self) -> String {
        if self.suffix.is_empty() {
            self.variant.clone()
        } else {
            format!("{} {}", self.variant, self.suffix)
        }
    }
    fn run_ids(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.run_id.clone()).collect()
    }
    fn statuses(&self) -> Vec<&'static str> {
        self.rows.iter().map(|r| r.status.as_str()).collect()
    }
    /// `, 2 saturated, 1 interrupted` for runs that did not end ok.
    fn status_note(&self) -> String {
        let mut s = String::new();
        for st in [
            RunStatus::Saturated,
            RunStatus::Interrupted,
            RunStatus::Failed,
        ] {
            let n = self.rows.iter().filter(|r| r.status == st).count();
            if n > 0 {
                if self.rows.len() == 1 {
                    s.push_str(&format!(", {}", st.as_str()));
                } else {
                    s.push_str(&format!(", {n} {}", st.as_str()));
                }
            }
        }
        s
    }
    fn json(&self) -> Value {
        json!({
            "label": self.label(),
            "variant": self.variant,
            "colour": hex(self.colour),
            "runs": self.run_ids(),
            "statuses": self.statuses(),
        })
    }
}

/// Parameters (of [`PARAMS`]) whose values differ between the rows of each variant.
fn differing<'r>(rows: &[&'r SummaryRow]) -> BTreeMap<&'r str, Vec<&'static str>> {
    let mut out: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    for r in rows {
        out.entry(r.variant.as_str()).or_default();
    }
    for (v, params) in out.iter_mut() {
        for p in PARAMS {
            let mut vals = rows.iter().filter(|r| r.variant == *v).map(|r| param(r, p));
            let first = vals.next().unwrap_or_default();
            if vals.any(|x| x != first) {
                params.push(p);
            }
        }
    }
    out
}

fn suffix_of(r: &SummaryRow, params: &[&str]) -> String {
    params
        .iter()
        .map(|p| format!("{p}={}", param(r, p)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rows grouped into series: by variant and configuration (repeats together), or one series
/// per run with `per_run`; ordered by variant colour order, then configuration; shaded.
fn group_rows<'a>(rows: &[&'a SummaryRow], pal: &Palette, per_run: bool) -> Vec<Group<'a>> {
    let diff = differing(rows);
    let mut groups: Vec<Group<'a>> = Vec::new();
    for r in rows {
        let params = diff.get(r.variant.as_str()).cloned().unwrap_or_default();
        let suffix = suffix_of(r, &params);
        let suffix = if per_run {
            if suffix.is_empty() {
                r.run_id.clone()
            } else {
                format!("{suffix} ({})", r.run_id)
            }
        } else {
            suffix
        };
        match groups
            .iter_mut()
            .find(|g| g.variant == r.variant && g.suffix == suffix)
        {
            Some(g) => g.rows.push(r),
            None => groups.push(Group {
                variant: r.variant.clone(),
                suffix,
                rows: vec![r],
                colour: pal.get(&r.variant),
            }),
        }
    }
    groups.sort_by(|a, b| {
        (
            pal.index(&a.variant),
            param_order(a.rows[0]),
            a.rows[0].repeat,
        )
            .cmp(&(
                pal.index(&b.variant),
                param_order(b.rows[0]),
                b.rows[0].repeat,
            ))
    });
    shade_groups(&mut groups, pal);
    groups
}

fn shade_groups(groups: &mut [Group], pal: &Palette) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for g in groups.iter() {
        *counts.entry(g.variant.clone()).or_default() += 1;
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for g in groups.iter_mut() {
        let rank = seen.entry(g.variant.clone()).or_default();
        g.colour = shade(pal.get(&g.variant), *rank, counts[&g.variant]);
        *rank += 1;
    }
}

/// Legend entries for `groups`: one per series; a variant with several series gets a header
/// and its series indented under it.
fn group_legend(
    groups: &[Group],
    pal: &Palette,
    tail: impl Fn(&Group) -> String,
    swatch: impl Fn(&Group) -> Swatch,
) -> Vec<LegendEntry> {
    let mut out = Vec::new();
    let mut headed: Vec<&str> = Vec::new();
    for g in groups {
        let multi = groups.iter().filter(|o| o.variant == g.variant).count() > 1;
        if multi && !headed.contains(&g.variant.as_str()) {
            headed.push(&g.variant);
            out.push(LegendEntry::new(
                g.variant.clone(),
                pal.get(&g.variant),
                Swatch::Bar,
            ));
        }
        let label = if multi {
            format!("{}{}", g.suffix, tail(g))
        } else {
            format!("{}{}", g.label(), tail(g))
        };
        let mut e = LegendEntry::new(label, g.colour, swatch(g));
        e.indent = multi;
        out.push(e);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The figure model: data-space marks on panels, drawn by `render` into any backend

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Linear,
    Log10,
    Log2,
    /// Percent on the "nines" axis: x = −log10(1 − p/100).
    Nines,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log10 => "log10",
            Scale::Log2 => "log2",
            Scale::Nines => "nines: -log10(1 - percentile/100)",
        }
    }
    fn t(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log10 => v.max(1e-12).log10(),
            Scale::Log2 => v.max(1e-12).log2(),
            Scale::Nines => -(1.0 - v / 100.0).max(1e-12).log10(),
        }
    }
}

struct Axis {
    label: String,
    scale: Scale,
    lo: f64,
    hi: f64,
    /// Labelled ticks, data units.
    ticks: Vec<(f64, String)>,
    /// Unlabelled light grid lines, data units.
    minor: Vec<f64>,
    /// Category names (top to bottom) when the axis is categorical; positions n−1−i.
    categories: Vec<String>,
    /// Pixels for the tick labels (None: computed).
    label_area: Option<u32>,
}

impl Axis {
    fn linear(label: &str, lo: f64, hi: f64) -> Axis {
        let (lo, hi) = sane_range(lo, hi, false);
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            lo,
            hi,
            ticks: linear_ticks(lo, hi),
            minor: Vec::new(),
            categories: Vec::new(),
            label_area: None,
        }
    }
    fn log10(label: &str, lo: f64, hi: f64) -> Axis {
        let (lo, hi) = sane_range(lo, hi, true);
        let (ticks, minor) = log10_ticks(lo, hi);
        Axis {
            label: label.into(),
            scale: Scale::Log10,
            lo,
            hi,
            ticks,
            minor,
            categories: Vec::new(),
            label_area: None,
        }
    }
    fn log2(label: &str, lo: f64, hi: f64, data: &[f64]) -> Axis {
        let (lo, hi) = sane_range(lo, hi, true);
        Axis {
            label: label.into(),
            scale: Scale::Log2,
            lo,
            hi,
            ticks: log2_ticks(lo, hi, data),
            minor: Vec::new(),
            categories: Vec::new(),
            label_area: None,
        }
    }
    fn nines(label: &str) -> Axis {
        let ticks = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .iter()
            .map(|&p| (p, p.to_string()))
            .collect();
        let minor = [75.0, 95.0, 99.5, 99.95, 99.995].to_vec();
        Axis {
            label: label.into(),
            scale: Scale::Nines,
            lo: PERCENTILE_RANGE.0,
            hi: PERCENTILE_RANGE.1,
            ticks,
            minor,
            categories: Vec::new(),
            label_area: None,
        }
    }
    fn categories(names: Vec<String>) -> Axis {
        let n = names.len();
        Axis {
            label: String::new(),
            scale: Scale::Linear,
            lo: -0.5,
            hi: n as f64 - 0.5,
            ticks: names
                .iter()
                .enumerate()
                .map(|(i, s)| ((n - 1 - i) as f64, s.clone()))
                .collect(),
            minor: Vec::new(),
            categories: names,
            label_area: None,
        }
    }
    /// Position of category `i` (top to bottom).
    fn cat_pos(&self, i: usize) -> f64 {
        (self.categories.len().saturating_sub(1 + i)) as f64
    }
    fn tr(&self) -> (f64, f64) {
        let (a, b) = (self.scale.t(self.lo), self.scale.t(self.hi));
        if b > a && a.is_finite() && b.is_finite() {
            (a, b)
        } else {
            (0.0, 1.0)
        }
    }
    /// Transformed and clamped into the axis.
    fn ct(&self, v: f64) -> f64 {
        let (a, b) = self.tr();
        let t = self.scale.t(v);
        if t.is_nan() {
            a
        } else {
            t.clamp(a, b)
        }
    }
    fn json(&self) -> Value {
        let mut m = json!({
            "label": self.label,
            "scale": if self.categories.is_empty() { self.scale.name() } else { "categories" },
            "range": [self.lo, self.hi],
            "ticks": self.ticks.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
        });
        if !self.categories.is_empty() {
            m["categories"] = json!(self.categories);
        }
        m
    }
}

fn sane_range(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (lo, hi);
    if log {
        if !(lo.is_finite() && lo > 0.0) {
            lo = LOG_FLOOR_MS;
        }
        if !(hi.is_finite() && hi > lo) {
            hi = lo * 10.0;
        }
    } else {
        if !lo.is_finite() {
            lo = 0.0;
        }
        if !(hi.is_finite() && hi > lo) {
            hi = lo + 1.0;
        }
    }
    (lo, hi)
}

fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let raw = (hi - lo) / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = mag
        * if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 2.5 {
            2.5
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
    let mut out = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 && out.len() < 40 {
        let v0 = if v.abs() < step * 1e-9 { 0.0 } else { v };
        out.push((v0, fmt_num(v0)));
        v += step;
    }
    out
}

fn log10_ticks(lo: f64, hi: f64) -> (Vec<(f64, String)>, Vec<f64>) {
    let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let decades = d1 - d0;
    let every = if decades > 8 { 2 } else { 1 };
    let pick = |mantissas: &[u32]| {
        let mut ticks = Vec::new();
        let mut minor = Vec::new();
        for d in d0..=d1 {
            for m in 1..10u32 {
                let v = f64::from(m) * 10f64.powi(d);
                if v < lo * (1.0 - 1e-9) || v > hi * (1.0 + 1e-9) {
                    continue;
                }
                if mantissas.contains(&m) && (d - d0) % every == 0 {
                    ticks.push((v, fmt_num(v)));
                } else {
                    minor.push(v);
                }
            }
        }
        (ticks, minor)
    };
    let (mut ticks, mut minor) = pick(if decades <= 2 { &[1, 2, 5] } else { &[1] });
    if ticks.len() < 4 {
        (ticks, minor) = pick(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
    if ticks.len() < 2 {
        ticks = vec![(lo, fmt_num(lo)), (hi, fmt_num(hi))];
    }
    (ticks, minor)
}

fn log2_ticks(lo: f64, hi: f64, data: &[f64]) -> Vec<(f64, String)> {
    let mut ticks: Vec<(f64, String)> = (lo.log2().ceil() as i32..=hi.log2().floor() as i32)
        .take(40)
        .map(|k| {
            let v = 2f64.powi(k);
            (v, fmt_int_or_num(v))
        })
        .collect();
    if ticks.len() < 3 {
        let mut d: Vec<f64> = data.iter().copied().filter(|v| *v > 0.0).collect();
        d.sort_by(f64::total_cmp);
        d.dedup();
        if d.len() <= 12 {
            ticks = d.iter().map(|&v| (v, fmt_int_or_num(v))).collect();
        }
    }
    ticks
}

fn fmt_int_or_num(v: f64) -> String {
    if v >= 1.0 && v.fract() == 0.0 && v < 1e12 {
        format!("{}", v as u64)
    } else {
        fmt_num(v)
    }
}

/// A number in few characters: `750k`, `1.5M`, `250`, `2.5`, `0.05`.
fn fmt_num(v: f64) -> String {
    fn trim(s: String) -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 12) as usize;
        trim(format!("{v:.digits$}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Circle,
    Diamond,
    Cross,
}

enum Mark {
    /// A shaded stretch of x over the whole height.
    Span {
        x0: f64,
        x1: f64,
        colour: RGBColor,
        alpha: f64,
    },
    /// A filled band between lo and hi along x; NaN breaks it.
    Band {
        pts: Vec<(f64, f64, f64)>,
        colour: RGBColor,
        alpha: f64,
    },
    /// A filled rectangle.
    Bar {
        x0: f64,
        x1: f64,
        y0: f64,
        y1: f64,
        colour: RGBColor,
    },
    /// A polyline; NaN y breaks it.
    Line {
        pts: Vec<(f64, f64)>,
        colour: RGBColor,
        width: u32,
    },
    /// Min–max whisker with caps, at x (vertical) or at y (horizontal).
    Whisker {
        at: f64,
        lo: f64,
        hi: f64,
        colour: RGBColor,
        vertical: bool,
    },
    Marker {
        x: f64,
        y: f64,
        shape: Shape,
        colour: RGBColor,
        size: i32,
    },
    /// A dashed horizontal line over the whole width, labelled at its left end.
    HLine {
        y: f64,
        colour: RGBColor,
        label: String,
    },
    /// Text left-aligned, vertically centred, `dx` pixels right of (x, y).
    Text {
        x: f64,
        y: f64,
        dx: i32,
        text: String,
        colour: RGBColor,
    },
}

impl Mark {
    fn layer(&self) -> u8 {
        match self {
            Mark::Span { .. } => 0,
            Mark::Band { .. } => 1,
            Mark::Bar { .. } => 2,
            Mark::Line { .. } => 3,
            Mark::Whisker { .. } => 4,
            Mark::Marker { .. } => 5,
            Mark::HLine { .. } => 6,
            Mark::Text { .. } => 7,
        }
    }
}

struct Panel {
    title: Option<String>,
    x: Axis,
    y: Axis,
    marks: Vec<Mark>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Swatch {
    Line,
    LineBand,
    Bar,
    Marker(Shape),
    Span(f64),
    DashedLine,
}

struct LegendEntry {
    label: String,
    colour: RGBColor,
    swatch: Swatch,
    indent: bool,
}

impl LegendEntry {
    fn new(label: String, colour: RGBColor, swatch: Swatch) -> LegendEntry {
        LegendEntry {
            label,
            colour,
            swatch,
            indent: false,
        }
    }
}

struct Figure {
    kind: String,
    title: String,
    subtitle: String,
    panels: Vec<Panel>,
    cols: usize,
    legend: Vec<LegendEntry>,
    /// Files read, relative to the results folder.
    sources: Vec<String>,
    notes: Vec<String>,
    series: Vec<Value>,
    extra: Map<String, Value>,
    /// Minimum height, pixels.
    height: u32,
}

impl Figure {
    fn new(kind: String, title: String, subtitle: String) -> Figure {
        Figure {
            kind,
            title,
            subtitle,
            panels: Vec::new(),
            cols: 1,
            legend: Vec::new(),
            sources: Vec::new(),
            notes: Vec::new(),
            series: Vec::new(),
            extra: Map::new(),
            height: HEIGHT,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT_FAMILY, size).into_font()).color(&BLACK)
}

fn text_w(s: &str, size: f64) -> i32 {
    (FONT_FAMILY, size)
        .into_font()
        .box_size(s)
        .map_or((s.chars().count() as f64 * size * 0.6) as i32, |(w, _)| {
            w as i32
        })
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

struct Layout {
    w: u32,
    h: u32,
    title_h: i32,
    caption: Vec<String>,
    caption_h: i32,
    legend_w: i32,
    /// Entry indices per legend column, and each column's width.
    columns: Vec<(Vec<usize>, i32)>,
}

fn layout(fig: &Figure, caption: &str) -> Layout {
    let h = fig.height.max(HEIGHT);
    let title_h = if fig.subtitle.is_empty() { 40 } else { 62 };
    let mut lines = vec![caption.to_string()];
    if text_w(caption, 12.0) > WIDTH as i32 - 28 {
        // Split at the "; " nearest the middle.
        let mid = caption.len() / 2;
        if let Some((i, _)) = caption
            .match_indices("; ")
            .min_by_key(|(i, _)| i.abs_diff(mid))
        {
            lines = vec![caption[..i + 1].to_string(), caption[i + 2..].to_string()];
        }
    }
    let caption_h = 10 + 16 * lines.len() as i32;
    let per_col = ((h as i32 - title_h - caption_h - 24) / ROW_H).max(4) as usize;
    // Fill columns top to bottom; a header (an entry followed by indented ones) never ends
    // a column.
    let mut chunks: Vec<Vec<usize>> = vec![Vec::new()];
    for i in 0..fig.legend.len() {
        let header = !fig.legend[i].indent && fig.legend.get(i + 1).is_some_and(|n| n.indent);
        let cur = chunks.last().map_or(0, Vec::len);
        if cur >= per_col || (header && cur + 1 >= per_col && cur > 0) {
            chunks.push(Vec::new());
        }
        if let Some(c) = chunks.last_mut() {
            c.push(i);
        }
    }
    chunks.retain(|c| !c.is_empty());
    let mut columns = Vec::new();
    for chunk in &chunks {
        let w = chunk
            .iter()
            .map(|&i| {
                let e = &fig.legend[i];
                (if e.indent { 14 } else { 0 }) + 34 + text_w(&shorten(&e.label, 64), LEGEND_FONT)
            })
            .max()
            .unwrap_or(0)
            + 12;
        columns.push((chunk.to_vec(), w));
    }
    let legend_w = if columns.is_empty() {
        16
    } else {
        columns.iter().map(|c| c.1).sum::<i32>() + 14
    };
    let w = (WIDTH as i32).max(780 + legend_w) as u32;
    Layout {
        w,
        h,
        title_h,
        caption: lines,
        caption_h,
        legend_w,
        columns,
    }
}

fn render<DB: DrawingBackend>(
    fig: &Figure,
    lay: &Layout,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let (w, h) = (lay.w as i32, lay.h as i32);
    root.draw_text(
        &fig.title,
        &TextStyle::from((FONT_FAMILY, 20.0, FontStyle::Bold).into_font()).color(&BLACK),
        (14, 10),
    )
    .map_err(s)?;
    if !fig.subtitle.is_empty() {
        root.draw_text(
            &fig.subtitle,
            &font(13.0).color(&RGBColor(70, 70, 70)),
            (14, 38),
        )
        .map_err(s)?;
    }
    let plot_h = h - lay.title_h - lay.caption_h;
    let plots = root.clone().shrink(
        (0, lay.title_h),
        ((w - lay.legend_w).max(100), plot_h.max(100)),
    );
    let rows = fig.panels.len().div_ceil(fig.cols.max(1)).max(1);
    let areas = plots.split_evenly((rows, fig.cols.max(1)));
    for (p, area) in fig.panels.iter().zip(areas.iter()) {
        draw_panel(root, area, p)?;
    }
    // Legend, right of the plots.
    let mut x = w - lay.legend_w + 6;
    for (col, cw) in &lay.columns {
        let mut y = lay.title_h + 18;
        for &i in col {
            let e = &fig.legend[i];
            let x0 = x + if e.indent { 14 } else { 0 };
            draw_swatch(root, (x0, y), e)?;
            root.draw(&Text::new(
                shorten(&e.label, 64),
                (x0 + 32, y),
                font(LEGEND_FONT).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(s)?;
            y += ROW_H;
        }
        x += cw;
    }
    // Caption.
    let cy = h - lay.caption_h;
    root.draw(&PathElement::new(
        vec![(10, cy + 2), (w - 10, cy + 2)],
        RGBColor(200, 200, 200),
    ))
    .map_err(s)?;
    for (i, line) in lay.caption.iter().enumerate() {
        root.draw_text(
            line,
            &font(12.0).color(&RGBColor(60, 60, 60)),
            (14, cy + 7 + 16 * i as i32),
        )
        .map_err(s)?;
    }
    Ok(())
}

fn draw_swatch<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    e: &LegendEntry,
) -> Result<(), String> {
    let c = e.colour;
    match e.swatch {
        Swatch::Line => root
            .draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                c.stroke_width(2),
            ))
            .map_err(s),
        Swatch::DashedLine => root
            .draw(&DashedPathElement::new(
                vec![(x, y), (x + 26, y)],
                6,
                4,
                c.stroke_width(2),
            ))
            .map_err(s),
        Swatch::LineBand => {
            root.draw(&Rectangle::new(
                [(x, y - 6), (x + 26, y + 6)],
                c.mix(0.22).filled(),
            ))
            .map_err(s)?;
            root.draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                c.stroke_width(2),
            ))
            .map_err(s)
        }
        Swatch::Bar => root
            .draw(&Rectangle::new([(x, y - 6), (x + 26, y + 6)], c.filled()))
            .map_err(s),
        Swatch::Span(alpha) => {
            root.draw(&Rectangle::new(
                [(x, y - 7), (x + 26, y + 7)],
                c.mix(alpha).filled(),
            ))
            .map_err(s)?;
            root.draw(&Rectangle::new(
                [(x, y - 7), (x + 26, y + 7)],
                RGBColor(190, 190, 190),
            ))
            .map_err(s)
        }
        Swatch::Marker(shape) => {
            if shape != Shape::Diamond && shape != Shape::Cross {
                root.draw(&PathElement::new(
                    vec![(x, y), (x + 26, y)],
                    c.stroke_width(2),
                ))
                .map_err(s)?;
            }
            draw_marker(root, (x + 13, y), shape, c, 5)
        }
    }
}

fn draw_marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    shape: Shape,
    c: RGBColor,
    r: i32,
) -> Result<(), String> {
    match shape {
        Shape::Circle => {
            root.draw(&Circle::new((x, y), r, c.filled())).map_err(s)?;
            root.draw(&Circle::new((x, y), r, WHITE.stroke_width(1)))
                .map_err(s)
        }
        Shape::Diamond => {
            let pts = vec![(x, y - r), (x + r, y), (x, y + r), (x - r, y)];
            root.draw(&Polygon::new(pts.clone(), c.filled()))
                .map_err(s)?;
            let mut closed = pts;
            closed.push((x, y - r));
            root.draw(&PathElement::new(closed, BLACK.stroke_width(1)))
                .map_err(s)
        }
        Shape::Cross => {
            root.draw(&PathElement::new(
                vec![(x - r, y - r), (x + r, y + r)],
                c.stroke_width(2),
            ))
            .map_err(s)?;
            root.draw(&PathElement::new(
                vec![(x - r, y + r), (x + r, y - r)],
                c.stroke_width(2),
            ))
            .map_err(s)
        }
    }
}

/// A linear axis over transformed values with our own ticks (bold: labelled grid lines,
/// light: unlabelled ones).
struct KeyAxis {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for KeyAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span.is_nan() || span <= 0.0 || !v.is_finite() {
            return (limit.0 + limit.1) / 2;
        }
        let f = ((v - self.lo) / span).clamp(-1.0, 2.0);
        limit.0 + (f64::from(limit.1 - limit.0) * f + 1e-3).floor() as i32
    }
    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

fn tick_label(axis: &Axis, tv: f64) -> String {
    axis.ticks
        .iter()
        .find(|(v, _)| (axis.scale.t(*v) - tv).abs() < 1e-9 * (1.0 + tv.abs()))
        .map(|(_, l)| l.clone())
        .unwrap_or_default()
}

fn key_points(axis: &Axis) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = axis.tr();
    let inside = |t: &f64| *t >= a - 1e-9 && *t <= b + 1e-9;
    (
        axis.ticks
            .iter()
            .map(|(v, _)| axis.scale.t(*v))
            .filter(inside)
            .collect(),
        axis.minor
            .iter()
            .map(|v| axis.scale.t(*v))
            .filter(inside)
            .collect(),
    )
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
) -> Result<(), String> {
    let (x0, x1) = p.x.tr();
    let (y0, y1) = p.y.tr();
    let (xk, xl) = key_points(&p.x);
    let (yk, yl) = key_points(&p.y);
    let y_area = p.y.label_area.unwrap_or_else(|| {
        let widest =
            p.y.ticks
                .iter()
                .map(|(_, l)| text_w(l, 12.0))
                .max()
                .unwrap_or(20);
        (widest + if p.y.label.is_empty() { 14 } else { 36 }).max(40) as u32
    });
    let mut b = ChartBuilder::on(area);
    b.margin_top(if p.title.is_some() { 4 } else { 12 })
        .margin_right(18)
        .margin_left(8)
        .margin_bottom(4)
        .x_label_area_size(48)
        .y_label_area_size(y_area);
    if let Some(t) = &p.title {
        b.caption(t, font(14.0));
    }
    let mut chart = b
        .build_cartesian_2d(
            KeyAxis {
                lo: x0,
                hi: x1,
                bold: xk,
                light: xl,
            },
            KeyAxis {
                lo: y0,
                hi: y1,
                bold: yk,
                light: yl,
            },
        )
        .map_err(s)?;
    let xf = |v: &f64| tick_label(&p.x, *v);
    let yf = |v: &f64| tick_label(&p.y, *v);
    {
        let mut mesh = chart.configure_mesh();
        mesh.label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(RGBColor(222, 222, 222))
            .light_line_style(RGBColor(242, 242, 242))
            .x_label_formatter(&xf)
            .y_label_formatter(&yf);
        if !p.x.label.is_empty() {
            mesh.x_desc(p.x.label.clone());
        }
        if !p.y.label.is_empty() {
            mesh.y_desc(p.y.label.clone());
        }
        mesh.draw().map_err(s)?;
    }
    let pa = chart.plotting_area();
    let px = |x: f64, y: f64| pa.map_coordinate(&(p.x.ct(x), p.y.ct(y)));
    let (top, bottom) = (p.y.hi, p.y.lo);
    let (left, right) = (p.x.lo, p.x.hi);
    let mut marks: Vec<&Mark> = p.marks.iter().collect();
    marks.sort_by_key(|m| m.layer());
    for m in marks {
        match m {
            Mark::Span {
                x0,
                x1,
                colour,
                alpha,
            } => {
                root.draw(&Rectangle::new(
                    [px(*x0, top), px(*x1, bottom)],
                    colour.mix(*alpha).filled(),
                ))
                .map_err(s)?;
            }
            Mark::Band { pts, colour, alpha } => {
                for seg in pts
                    .split(|(x, lo, hi)| !(x.is_finite() && lo.is_finite() && hi.is_finite()))
                    .filter(|seg| !seg.is_empty())
                {
                    let mut poly: Vec<(i32, i32)> =
                        seg.iter().map(|(x, _, hi)| px(*x, *hi)).collect();
                    poly.extend(seg.iter().rev().map(|(x, lo, _)| px(*x, *lo)));
                    root.draw(&Polygon::new(poly, colour.mix(*alpha).filled()))
                        .map_err(s)?;
                }
            }
            Mark::Bar {
                x0,
                x1,
                y0,
                y1,
                colour,
            } => {
                root.draw(&Rectangle::new(
                    [px(*x0, *y1), px(*x1, *y0)],
                    colour.filled(),
                ))
                .map_err(s)?;
            }
            Mark::Line { pts, colour, width } => {
                for seg in pts
                    .split(|(x, y)| !(x.is_finite() && y.is_finite()))
                    .filter(|seg| !seg.is_empty())
                {
                    let v: Vec<(i32, i32)> = seg.iter().map(|(x, y)| px(*x, *y)).collect();
                    if v.len() == 1 {
                        root.draw(&Circle::new(v[0], 2, colour.filled()))
                            .map_err(s)?;
                    } else {
                        root.draw(&PathElement::new(v, colour.stroke_width(*width)))
                            .map_err(s)?;
                    }
                }
            }
            Mark::Whisker {
                at,
                lo,
                hi,
                colour,
                vertical,
            } => {
                if !(at.is_finite() && lo.is_finite() && hi.is_finite()) {
                    continue;
                }
                let (a, b) = if *vertical {
                    (px(*at, *lo), px(*at, *hi))
                } else {
                    (px(*lo, *at), px(*hi, *at))
                };
                let style = colour.stroke_width(1);
                root.draw(&PathElement::new(vec![a, b], style)).map_err(s)?;
                for c in [a, b] {
                    let cap = if *vertical {
                        vec![(c.0 - 4, c.1), (c.0 + 4, c.1)]
                    } else {
                        vec![(c.0, c.1 - 4), (c.0, c.1 + 4)]
                    };
                    root.draw(&PathElement::new(cap, style)).map_err(s)?;
                }
            }
            Mark::Marker {
                x,
                y,
                shape,
                colour,
                size,
            } => {
                if x.is_finite() && y.is_finite() {
                    draw_marker(root, px(*x, *y), *shape, *colour, *size)?;
                }
            }
            Mark::HLine { y, colour, label } => {
                if !y.is_finite() {
                    continue;
                }
                let (a, b) = (px(left, *y), px(right, *y));
                root.draw(&DashedPathElement::new(
                    vec![a, b],
                    8,
                    5,
                    colour.stroke_width(2),
                ))
                .map_err(s)?;
                if !label.is_empty() {
                    // At the right end, above the line, on a white box so curves under it
                    // do not hide it (the legend names it too).
                    let tw = text_w(label, 12.0);
                    let (tx, ty) = (b.0 - 8 - tw, a.1 - 4);
                    root.draw(&Rectangle::new(
                        [(tx - 3, ty - 15), (tx + tw + 3, ty + 1)],
                        WHITE.mix(0.85).filled(),
                    ))
                    .map_err(s)?;
                    root.draw(&Text::new(
                        label.clone(),
                        (tx, ty),
                        font(12.0)
                            .color(colour)
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    ))
                    .map_err(s)?;
                }
            }
            Mark::Text {
                x,
                y,
                dx,
                text,
                colour,
            } => {
                if !(x.is_finite() && y.is_finite()) {
                    continue;
                }
                let (a, b) = px(*x, *y);
                root.draw(&Text::new(
                    text.clone(),
                    (a + dx, b),
                    font(11.0)
                        .color(colour)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(s)?;
            }
        }
    }
    Ok(())
}

fn write_chart(dir: &Path, ctx: &Ctx, fig: &Figure) -> Result<Chart, PlotError> {
    let err = |m: String| PlotError {
        kind: fig.kind.clone(),
        message: m,
    };
    let lay = layout(fig, &ctx.caption);
    let png = dir.join(format!("{}.png", fig.kind));
    let tmp = dir.join(format!(".{}.tmp{}.png", fig.kind, std::process::id()));
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, (lay.w, lay.h)).into_drawing_area();
        render(fig, &lay, &root)?;
        root.present().map_err(s)
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(format!("PNG {}: {e}", png.display())));
    }
    std::fs::rename(&tmp, &png).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(format!("cannot write {}: {e}", png.display()))
    })?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (lay.w, lay.h)).into_drawing_area();
        render(fig, &lay, &root).map_err(|e| err(format!("SVG: {e}")))?;
        root.present().map_err(|e| err(format!("SVG: {e}")))?;
    }
    let svg_path = dir.join(format!("{}.svg", fig.kind));
    write_atomic(&svg_path, svg.as_bytes())
        .map_err(|e| err(format!("cannot write {}: {e}", svg_path.display())))?;
    let rel = |ext: &str| PathBuf::from("plot").join(format!("{}.{ext}", fig.kind));
    let mut settings = json!({
        "kind": fig.kind,
        "title": fig.title,
        "subtitle": fig.subtitle,
        "caption": ctx.caption,
        "png": rel("png"),
        "svg": rel("svg"),
        "size_px": [lay.w, lay.h],
        "font": "DejaVu Sans (bundled: harness/assets/fonts/DejaVuSans.ttf)",
        "generator": format!("snapbench {} with plotters 0.3", env!("CARGO_PKG_VERSION")),
        "sources": fig.sources,
        "panels": fig.panels.iter().map(|p| json!({
            "title": p.title,
            "x": p.x.json(),
            "y": p.y.json(),
        })).collect::<Vec<_>>(),
        "colours": ctx.pal.json(),
        "legend": fig.legend.iter().map(|e| e.label.clone()).collect::<Vec<_>>(),
        "series": fig.series,
        "notes": fig.notes,
    });
    if let Value::Object(m) = &mut settings {
        for (k, v) in &fig.extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let json_path = dir.join(format!("{}.json", fig.kind));
    let bytes = serde_json::to_vec_pretty(&settings).map_err(|e| err(e.to_string()))?;
    write_atomic(&json_path, &bytes)
        .map_err(|e| err(format!("cannot write {}: {e}", json_path.display())))?;
    Ok(Chart {
        kind: fig.kind.clone(),
        title: fig.title.clone(),
        png: rel("png"),
        svg: rel("svg"),
        settings: rel("json"),
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers over values

/// Median, min and max.
type Mmm = (f64, f64, f64);

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn us_to_ms(v: f64) -> f64 {
    v / 1000.0
}

/// Positive min and max of `vals` (for a log axis).
fn pos_extent(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    vals.filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

fn extent(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    vals.filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

/// A log axis's range padded around (lo, hi).
fn log_pad((lo, hi): (f64, f64)) -> (f64, f64) {
    if hi / lo < 1.5 {
        (lo / 1.6, hi * 1.6)
    } else {
        (lo / 1.25, hi * 1.25)
    }
}

/// Clamp a value for a log axis: NaN stays (a gap), ≤ 0 becomes the floor (counted).
fn log_clamp(v: f64, clamped: &mut usize) -> f64 {
    if v.is_finite() && v <= 0.0 {
        *clamped += 1;
        LOG_FLOOR_MS
    } else {
        v
    }
}

fn clamp_note(n: usize, what: &str) -> Option<String> {
    (n > 0).then(|| {
        format!("{n} {what} at or below 0 drawn at the log axis floor ({LOG_FLOOR_MS} ms)")
    })
}

/// Put `marks` (each tagged with its variant, or None for every panel) on the figure: one
/// panel, or with more than [`MAX_SINGLE_RUNS`] series of several variants one panel per
/// variant (small multiples on shared axes), so that a search's many steps stay readable.
fn assemble(
    fig: &mut Figure,
    marks: Vec<(Option<String>, Mark)>,
    x: impl Fn() -> Axis,
    y: impl Fn() -> Axis,
) {
    let mut variants: Vec<String> = Vec::new();
    for v in marks.iter().filter_map(|(v, _)| v.as_ref()) {
        if !variants.contains(v) {
            variants.push(v.clone());
        }
    }
    if fig.series.len() <= MAX_SINGLE_RUNS || variants.len() < 2 {
        fig.panels.push(Panel {
            title: None,
            x: x(),
            y: y(),
            marks: marks.into_iter().map(|(_, m)| m).collect(),
        });
        return;
    }
    let mut panels: Vec<Panel> = variants
        .iter()
        .map(|v| Panel {
            title: Some(v.clone()),
            x: x(),
            y: y(),
            marks: Vec::new(),
        })
        .collect();
    for (v, m) in marks {
        match v {
            Some(v) => {
                if let Some(i) = variants.iter().position(|o| *o == v) {
                    panels[i].marks.push(m);
                }
            }
            // Marks for every panel are the phase shadings.
            None => {
                if let Mark::Span {
                    x0,
                    x1,
                    colour,
                    alpha,
                } = m
                {
                    for p in panels.iter_mut() {
                        p.marks.push(Mark::Span {
                            x0,
                            x1,
                            colour,
                            alpha,
                        });
                    }
                }
            }
        }
    }
    fig.cols = (panels.len() as f64).sqrt().ceil() as usize;
    fig.height = fig.height.max(if panels.len() > 4 { 1000 } else { 800 });
    fig.extra.insert(
        "panels_by".into(),
        json!("variant (small multiples, shared axes)"),
    );
    fig.panels = panels;
}

// ---------------------------------------------------------------------------------------------
// 1. Latency percentile spectra

const LAT_KINDS: [(&str, &str, &str, &str); 3] = [
    ("latency-write", "lat", "Write", "write latency (ms)"),
    ("latency-ack", "ack", "Ack", "ack latency (ms)"),
    (
        "latency-read",
        "read_ttfb",
        "Read (time to first byte)",
        "read time to first byte (ms)",
    ),
];

fn nines_grid() -> Vec<f64> {
    let (a, b) = (
        Scale::Nines.t(PERCENTILE_RANGE.0),
        Scale::Nines.t(PERCENTILE_RANGE.1),
    );
    let n = ((b - a) / NINES_STEP).ceil() as usize;
    (0..=n)
        .map(|i| {
            let x = (a + i as f64 * NINES_STEP).min(b);
            100.0 * (1.0 - 10f64.powf(-x))
        })
        .collect()
}

fn latency_figures(folder: &Folder, ctx: &Ctx) -> Vec<Figure> {
    let mut out = Vec::new();
    let grid = nines_grid();
    for (base, kind, side, ylabel) in LAT_KINDS {
        for (wl, rows) in &ctx.workloads {
            let with: Vec<&SummaryRow> = rows
                .iter()
                .copied()
                .filter(|r| {
                    folder
                        .hists
                        .iter()
                        .any(|h| h.run_id == r.run_id && h.kind == kind)
                })
                .collect();
            if with.is_empty() {
                continue;
            }
            let groups = group_rows(&with, &ctx.pal, false);
            let mut fig = Figure::new(
                ctx.stem(base, wl),
                format!("{side} latency percentile spectrum — {}", wl_name(wl)),
                format!(
                    "HdrHistogram percentile distribution (hist/RUN-{kind}.hgrm) per variant; line: median over repeats, band: min–max across repeats"
                ),
            );
            let mut marks = Vec::new();
            let mut drawn: Vec<(usize, usize)> = Vec::new();
            let mut clamped = 0usize;
            let mut all = Vec::new();
            for (gi, g) in groups.iter().enumerate() {
                let mut curves: Vec<Vec<f64>> = Vec::new();
                let mut runs = Vec::new();
                for r in &g.rows {
                    let Some(h) = folder
                        .hists
                        .iter()
                        .find(|h| h.run_id == r.run_id && h.kind == kind)
                    else {
                        continue;
                    };
                    let rel = h
                        .path
                        .strip_prefix(&folder.path)
                        .unwrap_or(&h.path)
                        .display()
                        .to_string();
                    let dist = match std::fs::read_to_string(&h.path) {
                        Ok(t) => read_hgrm(&t),
                        Err(e) => {
                            fig.notes.push(format!("{rel}: cannot read: {e}"));
                            continue;
                        }
                    };
                    if dist.is_empty() {
                        fig.notes
                            .push(format!("{rel}: no percentile rows; left out"));
                        continue;
                    }
                    fig.sources.push(rel);
                    runs.push(r.run_id.clone());
                    curves.push(
                        grid.iter()
                            .map(|p| {
                                value_at_percentile(&dist, p / 100.0)
                                    .map_or(f64::NAN, |v| log_clamp(us_to_ms(v), &mut clamped))
                            })
                            .collect(),
                    );
                }
                if curves.is_empty() {
                    continue;
                }
                let stats: Vec<Option<(f64, f64, f64)>> = (0..grid.len())
                    .map(|i| median_min_max(&curves.iter().map(|c| c[i]).collect::<Vec<_>>()))
                    .collect();
                all.extend(stats.iter().flatten().flat_map(|(m, a, b)| [*m, *a, *b]));
                if curves.len() > 1 {
                    marks.push((
                        Some(g.variant.clone()),
                        Mark::Band {
                            pts: grid
                                .iter()
                                .zip(&stats)
                                .map(|(p, st)| {
                                    st.map_or((*p, f64::NAN, f64::NAN), |(_, a, b)| (*p, a, b))
                                })
                                .collect(),
                            colour: g.colour,
                            alpha: 0.18,
                        },
                    ));
                }
                marks.push((
                    Some(g.variant.clone()),
                    Mark::Line {
                        pts: grid
                            .iter()
                            .zip(&stats)
                            .map(|(p, st)| (*p, st.map_or(f64::NAN, |s| s.0)))
                            .collect(),
                        colour: g.colour,
                        width: 2,
                    },
                ));
                let p = |q: f64| {
                    let i = grid.iter().position(|x| *x >= q - 1e-9).unwrap_or(0);
                    stats[i].map(|s| s.0)
                };
                let mut sj = g.json();
                sj["runs"] = json!(runs);
                sj["repeats"] = json!(curves.len());
                sj["median_ms_at"] =
                    json!({"50": p(50.0), "99": p(99.0), "99.9": p(99.9), "99.99": p(99.99)});
                fig.series.push(sj);
                drawn.push((gi, curves.len()));
            }
            let Some(ext) = pos_extent(all.into_iter()) else {
                continue;
            };
            let kept: Vec<Group> = drawn
                .iter()
                .map(|&(gi, _)| Group {
                    variant: groups[gi].variant.clone(),
                    suffix: groups[gi].suffix.clone(),
                    rows: groups[gi].rows.clone(),
                    colour: groups[gi].colour,
                })
                .collect();
            let n_of = |g: &Group| {
                drawn
                    .iter()
                    .find(|(gi, _)| groups[*gi].label() == g.label())
                    .map_or(0, |d| d.1)
            };
            fig.legend = group_legend(
                &kept,
                &ctx.pal,
                |g| {
                    let n = n_of(g);
                    if n > 1 {
                        format!(" — {n} repeats{}", g.status_note())
                    } else {
                        format!(" — {}{}", g.rows[0].run_id, g.status_note())
                    }
                },
                |g| {
                    if n_of(g) > 1 {
                        Swatch::LineBand
                    } else {
                        Swatch::Line
                    }
                },
            );
            let (lo, hi) = log_pad(ext);
            assemble(
                &mut fig,
                marks,
                || Axis::nines("percentile (%)"),
                || Axis::log10(ylabel, lo, hi),
            );
            fig.sources.insert(0, "summary.csv".into());
            fig.notes.extend(clamp_note(clamped, "latency values"));
            fig.notes.push(
                "past 1/(1-percentile) > a run's samples the curve is that run's maximum".into(),
            );
            fig.extra.insert(
                "percentile_range".into(),
                json!([PERCENTILE_RANGE.0, PERCENTILE_RANGE.1]),
            );
            fig.extra.insert(
                "percentile_grid".into(),
                json!({"step_nines": NINES_STEP, "points": grid.len(),
                       "interpolation": "HdrHistogram step: the value at p is the first .hgrm row whose percentile reaches p",
                       "band": "min–max across repeats at each grid percentile", "line": "median across repeats"}),
            );
            fig.extra.insert("hist_kind".into(), json!(kind));
            fig.extra.insert("workload".into(), json!(wl));
            fig.extra.insert("log_floor_ms".into(), json!(LOG_FLOOR_MS));
            out.push(fig);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 2. Capacity

type Metric = fn(&SummaryRow) -> Option<f64>;

fn slo_metric(slo_on: &str) -> Option<(Metric, &'static str, &'static str)> {
    match slo_on {
        "write" | "" => Some((|r| r.lat_p99_us, "write", "lat_p99_us")),
        "ack" => Some((|r| r.ack_p99_us, "ack", "ack_p99_us")),
        _ => None,
    }
}

fn capacity_figures(folder: &Folder, ctx: &Ctx) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for s in &folder.search {
        if !workloads.contains(&s.workload.as_str()) {
            workloads.push(&s.workload);
        }
    }
    let multi = workloads.len() > 1 || ctx.workloads.len() > 1;
    for wl in workloads {
        let mut fig = Figure::new(
            if multi {
                format!("capacity-{}", sanitize(wl))
            } else {
                "capacity".into()
            },
            String::new(),
            "p99 per step, median over repeats with min–max whiskers; ◆ knee: the last load that passed (search.csv last_pass); × a step with a saturated, interrupted or failed run".into(),
        );
        let mut searches: Vec<&SearchRow> = Vec::new();
        for s in folder.search.iter().filter(|s| s.workload == wl) {
            if !(s.load == "matches" || s.load.is_empty()) {
                fig.notes.push(format!(
                    "{}: load {} not drawn (capacity is drawn against matches)",
                    s.variant, s.load
                ));
            } else if slo_metric(&s.slo_on).is_none() {
                fig.notes.push(format!(
                    "{}: SLO on {} not drawn (only write and ack SLOs)",
                    s.variant, s.slo_on
                ));
            } else {
                searches.push(s);
            }
        }
        searches.sort_by_key(|s| ctx.pal.index(&s.variant));
        let Some(first) = searches.first() else {
            continue;
        };
        let (_, side, column) =
            slo_metric(&first.slo_on).unwrap_or((|r| r.lat_p99_us, "write", "lat_p99_us"));
        if searches
            .iter()
            .any(|s| slo_metric(&s.slo_on).map(|m| m.1) != Some(side))
        {
            fig.notes.push("variants were searched on different SLO sides; each is drawn on its own side's p99".into());
        }
        let mut marks = Vec::new();
        let mut xs: Vec<f64> = Vec::new();
        let mut ys: Vec<f64> = Vec::new();
        let mut clamped = 0usize;
        let mut legend = Vec::new();
        for s in &searches {
            let Some((metric, _, _)) = slo_metric(&s.slo_on) else {
                continue;
            };
            let colour = ctx.pal.get(&s.variant);
            let mut steps: BTreeMap<u32, (Vec<f64>, Vec<String>, bool)> = BTreeMap::new();
            for r in folder
                .rows
                .iter()
                .filter(|r| r.variant == s.variant && r.workload == wl)
            {
                let (Some(m), Some(v)) = (r.matches, finite(metric(r))) else {
                    continue;
                };
                let e = steps.entry(m).or_default();
                e.0.push(log_clamp(us_to_ms(v), &mut clamped));
                e.1.push(r.run_id.clone());
                e.2 |= r.status != RunStatus::Ok;
            }
            let pts: Vec<(f64, Mmm, usize, bool)> = steps
                .iter()
                .filter_map(|(m, (v, _, bad))| {
                    median_min_max(v).map(|st| (f64::from(*m), st, v.len(), *bad))
                })
                .collect();
            for (x, (med, lo, hi), n, bad) in &pts {
                xs.push(*x);
                ys.extend([*med, *lo, *hi]);
                if *n > 1 && hi > lo {
                    marks.push(Mark::Whisker {
                        at: *x,
                        lo: *lo,
                        hi: *hi,
                        colour,
                        vertical: true,
                    });
                }
                marks.push(Mark::Marker {
                    x: *x,
                    y: *med,
                    shape: Shape::Circle,
                    colour,
                    size: 4,
                });
                if *bad {
                    marks.push(Mark::Marker {
                        x: *x,
                        y: *med,
                        shape: Shape::Cross,
                        colour: BLACK,
                        size: 4,
                    });
                }
            }
            marks.push(Mark::Line {
                pts: pts.iter().map(|(x, st, _, _)| (*x, st.0)).collect(),
                colour,
                width: 2,
            });
            let knee_y = s.last_pass.and_then(|lp| {
                pts.iter()
                    .find(|p| p.0 == f64::from(lp))
                    .map(|p| p.1 .0)
                    .or(Some(s.slo_p99_ms))
            });
            if let (Some(lp), Some(y)) = (s.last_pass, knee_y) {
                xs.push(f64::from(lp));
                marks.push(Mark::Marker {
                    x: f64::from(lp),
                    y,
                    shape: Shape::Diamond,
                    colour,
                    size: 8,
                });
            }
            let knee = match (s.last_pass, s.first_fail) {
                (Some(lp), Some(ff)) => format!("knee {lp}, fails at {ff}"),
                (Some(lp), None) => format!("knee ≥ {lp} (upper bound passed)"),
                (None, Some(ff)) => format!("no step passed (fails at {ff})"),
                (None, None) => "no step passed".into(),
            };
            let label = if pts.is_empty() {
                format!("{} — {knee}; no step runs in summary.csv", s.variant)
            } else {
                format!("{} — {knee}", s.variant)
            };
            legend.push(LegendEntry::new(
                label,
                colour,
                Swatch::Marker(Shape::Circle),
            ));
            fig.series.push(json!({
                "variant": s.variant,
                "colour": hex(colour),
                "slo_on": s.slo_on,
                "slo_p99_ms": s.slo_p99_ms,
                "last_pass": s.last_pass,
                "first_fail": s.first_fail,
                "knee_p99_ms": knee_y,
                "steps": steps.iter().map(|(m, (v, runs, bad))| json!({
                    "matches": m, "p99_ms": median_min_max(v).map(|(a, b, c)| [a, b, c]),
                    "runs": runs, "any_not_ok": bad,
                })).collect::<Vec<_>>(),
            }));
        }
        let mut slos: Vec<f64> = searches
            .iter()
            .map(|s| s.slo_p99_ms)
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        slos.sort_by(f64::total_cmp);
        slos.dedup();
        for slo in &slos {
            ys.push(*slo);
            let label = format!("SLO p99 ≤ {} ms", fmt_num(*slo));
            marks.push(Mark::HLine {
                y: *slo,
                colour: RGBColor(30, 30, 30),
                label: label.clone(),
            });
            legend.push(LegendEntry::new(
                label,
                RGBColor(30, 30, 30),
                Swatch::DashedLine,
            ));
        }
        legend.push(LegendEntry::new(
            "knee (last_pass)".into(),
            RGBColor(120, 120, 120),
            Swatch::Marker(Shape::Diamond),
        ));
        legend.push(LegendEntry::new(
            "step with a run not ok".into(),
            BLACK,
            Swatch::Marker(Shape::Cross),
        ));
        let (Some(xe), Some(ye)) = (pos_extent(xs.iter().copied()), pos_extent(ys.into_iter()))
        else {
            continue;
        };
        if fig
            .series
            .iter()
            .all(|s| s["steps"].as_array().is_none_or(|a| a.is_empty()))
        {
            continue;
        }
        let slo_txt = slos
            .iter()
            .map(|v| format!("{} ms", fmt_num(*v)))
            .collect::<Vec<_>>()
            .join(", ");
        fig.title = format!(
            "Capacity — {} (search: {side} p99 ≤ {slo_txt})",
            wl_name(wl)
        );
        let (ylo, yhi) = log_pad(ye);
        fig.panels.push(Panel {
            title: None,
            x: Axis::log2("offered load (matches)", xe.0 / 1.25, xe.1 * 1.25, &xs),
            y: Axis::log10(&format!("p99 {side} latency (ms)"), ylo, yhi),
            marks,
        });
        fig.legend = legend;
        fig.sources = vec!["search.csv".into(), "summary.csv".into()];
        fig.notes.extend(clamp_note(clamped, "p99 values"));
        fig.extra.insert("workload".into(), json!(wl));
        fig.extra.insert("metric".into(), json!(column));
        fig.extra.insert("slo_p99_ms".into(), json!(slos));
        out.push(fig);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 3. CPU per snapshot

const CPU_METRICS: [(&str, &str); 3] = [
    ("process", "process CPU (getrusage, all threads)"),
    ("system", "system-wide busy CPU ÷ snapshots"),
    ("over_null", "above the null engine"),
];

fn cpu_values(r: &SummaryRow) -> [Option<f64>; 3] {
    [
        finite(r.cpu_us_per_op),
        finite(r.sys_cpu_busy_s)
            .filter(|_| r.ops > 0)
            .map(|b| b / r.ops as f64 * 1e6),
        finite(r.cpu_us_per_op_over_null),
    ]
}

fn metric_colour(base: RGBColor, m: usize) -> RGBColor {
    match m {
        0 => base,
        1 => mix(base, WHITE, 0.5),
        _ => mix(base, BLACK, 0.4),
    }
}

fn cpu_figures(folder: &Folder, ctx: &Ctx) -> Vec<Figure> {
    let mut out = Vec::new();
    for (wl, rows) in &ctx.workloads {
        let rows: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| cpu_values(r).iter().any(Option::is_some))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut notes = Vec::new();
        // A search's steps: each variant at its knee (or its first step without one).
        let groups: Vec<Group> = if ctx.search_folder {
            let mut variants: Vec<&str> = Vec::new();
            for r in &rows {
                if !variants.contains(&r.variant.as_str()) {
                    variants.push(&r.variant);
                }
            }
            variants.sort_by_key(|v| ctx.pal.index(v));
            variants
                .into_iter()
                .filter_map(|v| {
                    let mine: Vec<&SummaryRow> =
                        rows.iter().copied().filter(|r| r.variant == v).collect();
                    let knee = folder
                        .search
                        .iter()
                        .find(|s| s.variant == v && s.workload == *wl)
                        .and_then(|s| s.last_pass);
                    let at_knee: Vec<&SummaryRow> = mine
                        .iter()
                        .copied()
                        .filter(|r| knee.is_some() && r.matches == knee)
                        .collect();
                    let (sel, suffix) = if !at_knee.is_empty() {
                        (at_knee, format!("@ {} matches (knee)", knee.unwrap_or(0)))
                    } else {
                        let m0 = mine.iter().filter_map(|r| r.matches).min();
                        let sel: Vec<&SummaryRow> =
                            mine.iter().copied().filter(|r| r.matches == m0).collect();
                        let m0 = m0.map_or("?".into(), |m| m.to_string());
                        (sel, format!("@ {m0} matches (first step; no knee)"))
                    };
                    (!sel.is_empty()).then(|| Group {
                        variant: v.to_string(),
                        suffix,
                        rows: sel,
                        colour: ctx.pal.get(v),
                    })
                })
                .collect()
        } else {
            group_rows(&rows, &ctx.pal, false)
        };
        if ctx.search_folder {
            notes.push("search folder: each variant's runs at its knee (search.csv last_pass), or at its first step when none passed".to_string());
        }
        let present: Vec<usize> = (0..3)
            .filter(|&m| {
                groups
                    .iter()
                    .any(|g| g.rows.iter().any(|r| cpu_values(r)[m].is_some()))
            })
            .collect();
        if groups.is_empty() || present.is_empty() {
            continue;
        }
        let names: Vec<String> = groups.iter().map(|g| shorten(&g.label(), 60)).collect();
        let cat = Axis::categories(names);
        let mut marks = Vec::new();
        let mut vals = vec![0.0];
        let th = 0.8 / present.len() as f64;
        let mut series: Vec<Value> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let pos = cat.cat_pos(i);
            let mut sj = g.json();
            for (j, &m) in present.iter().enumerate() {
                let v: Vec<f64> = g.rows.iter().filter_map(|r| cpu_values(r)[m]).collect();
                let Some((med, lo, hi)) = median_min_max(&v) else {
                    continue;
                };
                vals.extend([med, lo, hi]);
                let y1 = pos + 0.4 - j as f64 * th - th * 0.06;
                let y0 = pos + 0.4 - (j + 1) as f64 * th + th * 0.06;
                let c = metric_colour(ctx.pal.get(&g.variant), m);
                marks.push(Mark::Bar {
                    x0: 0.0,
                    x1: med,
                    y0,
                    y1,
                    colour: c,
                });
                let yc = (y0 + y1) / 2.0;
                if v.len() > 1 && hi > lo {
                    marks.push(Mark::Whisker {
                        at: yc,
                        lo,
                        hi,
                        colour: BLACK,
                        vertical: false,
                    });
                }
                marks.push(Mark::Text {
                    x: hi.max(med).max(0.0),
                    y: yc,
                    dx: 6,
                    text: fmt_num(med),
                    colour: RGBColor(40, 40, 40),
                });
                sj[CPU_METRICS[m].0] = json!({"median": med, "min": lo, "max": hi, "n": v.len()});
            }
            sj["runs"] = json!(g.run_ids());
            series.push(sj);
        }
        let Some((lo, hi)) = extent(vals.into_iter()) else {
            continue;
        };
        let span = (hi - lo).max(1e-9);
        let mut fig = Figure::new(
            ctx.stem("cpu", wl),
            format!("CPU per snapshot — {}", wl_name(wl)),
            "median over repeats, whiskers min–max; system = sys_cpu_busy_s ÷ ops (whole machine); above null = process CPU minus the null engine's median".into(),
        );
        fig.height = HEIGHT.max(150 + (groups.len() * present.len() * 22) as u32);
        let mut cat = cat;
        cat.label_area = None;
        fig.panels.push(Panel {
            title: None,
            x: Axis::linear(
                "CPU per snapshot (µs)",
                if lo < 0.0 { lo - span * 0.05 } else { 0.0 },
                hi + span * 0.12,
            ),
            y: cat,
            marks,
        });
        let grey = RGBColor(110, 110, 110);
        let mut legend: Vec<LegendEntry> = present
            .iter()
            .map(|&m| {
                let shade = ["full colour", "light", "dark"][m];
                LegendEntry::new(
                    format!("{} ({shade})", CPU_METRICS[m].1),
                    metric_colour(grey, m),
                    Swatch::Bar,
                )
            })
            .collect();
        legend.extend(groups.iter().map(|g| {
            LegendEntry::new(
                format!(
                    "{} — {} run{}{}",
                    g.label(),
                    g.rows.len(),
                    if g.rows.len() == 1 { "" } else { "s" },
                    g.status_note()
                ),
                ctx.pal.get(&g.variant),
                Swatch::Bar,
            )
        }));
        fig.legend = legend;
        fig.series = series;
        fig.sources = vec!["summary.csv".into()];
        if ctx.search_folder {
            fig.sources.push("search.csv".into());
        }
        fig.notes = notes;
        fig.extra.insert("workload".into(), json!(wl));
        fig.extra.insert(
            "metrics".into(),
            json!({"process": "cpu_us_per_op", "system": "sys_cpu_busy_s / ops * 1e6", "over_null": "cpu_us_per_op_over_null"}),
        );
        out.push(fig);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4. Per-second time series

/// Per-second (median, min, max) over the runs of a series, at the middle of each second (a
/// row of second `s` covers s..s+1). Warm-up seconds are left as a gap: their samples are not
/// recorded, so their figures would be zeros that never happened.
fn per_second(
    runs: &[&Vec<&SecondRow>],
    value: impl Fn(&SecondRow) -> Option<f64>,
) -> Vec<(f64, Option<Mmm>)> {
    let mut by: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for s in run.iter() {
            let e = by.entry(s.second).or_default();
            if s.phase == "warmup" {
                continue;
            }
            if let Some(v) = finite(value(s)) {
                e.push(v);
            }
        }
    }
    by.into_iter()
        .map(|(sec, v)| (sec as f64 + 0.5, median_min_max(&v)))
        .collect()
}

/// The x stretch of a phase over all runs: from its first second's start to its last
/// second's end.
fn phase_span(secs: &BTreeMap<&str, Vec<&SecondRow>>, phase: &str) -> Option<(f64, f64)> {
    extent(
        secs.values()
            .flatten()
            .filter(|s| s.phase == phase)
            .map(|s| s.second as f64),
    )
    .map(|(a, b)| (a, b + 1.0))
}

fn timeseries_figures(folder: &Folder, ctx: &Ctx) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut by_run: BTreeMap<&str, Vec<&SecondRow>> = BTreeMap::new();
    for s in &folder.seconds {
        by_run.entry(s.run_id.as_str()).or_default().push(s);
    }
    for v in by_run.values_mut() {
        v.sort_by_key(|s| s.second);
    }
    let orphans: Vec<&str> = by_run
        .keys()
        .copied()
        .filter(|id| !folder.rows.iter().any(|r| r.run_id == *id))
        .collect();
    for (wl, rows) in &ctx.workloads {
        let with: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| by_run.contains_key(r.run_id.as_str()))
            .collect();
        if with.is_empty() {
            continue;
        }
        let banded = with.len() > MAX_SINGLE_RUNS;
        let groups = group_rows(&with, &ctx.pal, !banded);
        let secs: BTreeMap<&str, Vec<&SecondRow>> = with
            .iter()
            .filter_map(|r| {
                by_run
                    .get(r.run_id.as_str())
                    .map(|v| (r.run_id.as_str(), v.clone()))
            })
            .collect();
        let warm = phase_span(&secs, "warmup");
        let after = phase_span(&secs, "after");
        let max_s = secs
            .values()
            .flatten()
            .map(|s| s.second as f64 + 1.0)
            .fold(0.0, f64::max);
        let mode = if banded {
            format!("{} runs (over {MAX_SINGLE_RUNS}): each configuration's repeats as a median line with a min–max band", with.len())
        } else {
            "one line per run".to_string()
        };
        type Pick = fn(&SecondRow) -> Option<f64>;
        let panels: [(&str, &str, &str, Pick, bool); 2] = [
            (
                "timeseries-ops",
                "Throughput per second",
                "snapshots per second (ops/s)",
                |s| Some(s.ops as f64),
                false,
            ),
            (
                "timeseries-p99",
                "p99 write latency per second",
                "p99 write latency (ms)",
                |s| s.lat_p99_us.map(us_to_ms),
                true,
            ),
        ];
        for (base, what, ylabel, pick, log) in panels {
            let mut fig = Figure::new(
                ctx.stem(base, wl),
                format!("{what} — {}", wl_name(wl)),
                format!("{mode}; × where a saturated, interrupted or failed run ends; shaded: warm-up and the drain after the window"),
            );
            let mut marks = Vec::new();
            let mut vals = Vec::new();
            let mut clamped = 0usize;
            for g in &groups {
                let runs: Vec<&Vec<&SecondRow>> = g
                    .rows
                    .iter()
                    .filter_map(|r| secs.get(r.run_id.as_str()))
                    .collect();
                let stats = per_second(&runs, pick);
                let fix = |v: f64, c: &mut usize| if log { log_clamp(v, c) } else { v };
                let stats: Vec<(f64, Option<Mmm>)> = stats
                    .into_iter()
                    .map(|(x, st)| {
                        (
                            x,
                            st.map(|(m, a, b)| {
                                (
                                    fix(m, &mut clamped),
                                    fix(a, &mut clamped),
                                    fix(b, &mut clamped),
                                )
                            }),
                        )
                    })
                    .collect();
                vals.extend(
                    stats
                        .iter()
                        .filter_map(|s| s.1)
                        .flat_map(|(m, a, b)| [m, a, b]),
                );
                if runs.len() > 1 {
                    marks.push((
                        Some(g.variant.clone()),
                        Mark::Band {
                            pts: stats
                                .iter()
                                .map(|(x, st)| {
                                    st.map_or((*x, f64::NAN, f64::NAN), |(_, a, b)| (*x, a, b))
                                })
                                .collect(),
                            colour: g.colour,
                            alpha: 0.16,
                        },
                    ));
                }
                marks.push((
                    Some(g.variant.clone()),
                    Mark::Line {
                        pts: stats
                            .iter()
                            .map(|(x, st)| (*x, st.map_or(f64::NAN, |s| s.0)))
                            .collect(),
                        colour: g.colour,
                        width: if banded { 1 } else { 2 },
                    },
                ));
                // Where a run that did not end ok ends.
                for r in g.rows.iter().filter(|r| r.status != RunStatus::Ok) {
                    let last = secs.get(r.run_id.as_str()).and_then(|v| {
                        v.iter()
                            .rev()
                            .find_map(|s| pick(s).map(|y| (s.second as f64 + 0.5, y)))
                    });
                    if let Some((x, y)) = last {
                        let y = if log { log_clamp(y, &mut clamped) } else { y };
                        vals.push(y);
                        marks.push((
                            Some(g.variant.clone()),
                            Mark::Marker {
                                x,
                                y,
                                shape: Shape::Cross,
                                colour: g.colour,
                                size: 5,
                            },
                        ));
                    }
                }
                fig.series.push(g.json());
            }
            let ext = if log {
                pos_extent(vals.into_iter())
            } else {
                extent(vals.into_iter())
            };
            let Some(ext) = ext else {
                continue;
            };
            for (span, colour, alpha, label) in [
                (
                    warm,
                    RGBColor(150, 150, 150),
                    0.18,
                    "warm-up (not measured)",
                ),
                (
                    after,
                    RGBColor(120, 150, 200),
                    0.14,
                    "after the window (drain)",
                ),
            ] {
                if let Some((x0, x1)) = span {
                    marks.push((
                        None,
                        Mark::Span {
                            x0,
                            x1,
                            colour,
                            alpha,
                        },
                    ));
                    fig.legend
                        .push(LegendEntry::new(label.into(), colour, Swatch::Span(alpha)));
                }
            }
            let tail = |g: &Group| {
                if banded {
                    format!(" ×{}{}", g.rows.len(), g.status_note())
                } else {
                    g.status_note()
                }
            };
            fig.legend
                .extend(group_legend(&groups, &ctx.pal, tail, |g| {
                    if g.rows.len() > 1 {
                        Swatch::LineBand
                    } else {
                        Swatch::Line
                    }
                }));
            let y = || {
                if log {
                    let (lo, hi) = log_pad(ext);
                    Axis::log10(ylabel, lo, hi)
                } else {
                    Axis::linear(ylabel, ext.0.min(0.0), ext.1 * 1.08)
                }
            };
            let x = || Axis::linear("second of run (s)", 0.0, max_s.max(1.0));
            assemble(&mut fig, marks, x, y);
            fig.sources = vec!["timeseries.csv".into(), "summary.csv".into()];
            fig.notes.extend(clamp_note(clamped, "p99 values"));
            if !orphans.is_empty() {
                fig.notes.push(format!(
                    "{} run(s) in timeseries.csv without a summary row left out: {}",
                    orphans.len(),
                    orphans.join(", ")
                ));
            }
            fig.extra.insert("workload".into(), json!(wl));
            fig.extra
                .insert("mode".into(), json!(if banded { "band" } else { "runs" }));
            fig.extra.insert(
                "runs".into(),
                json!(with
                    .iter()
                    .map(|r| json!({"run_id": r.run_id, "status": r.status.as_str()}))
                    .collect::<Vec<_>>()),
            );
            fig.extra
                .insert("warmup_s".into(), json!(warm.map(|w| [w.0, w.1])));
            out.push(fig);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 5. Calibration against fio

const TOOL_COLOURS: [(&str, &str); 2] = [("snapbench", "#1f77b4"), ("fio", "#ff7f0e")];

fn calibration_figures(folder: &Folder, _ctx: &Ctx) -> Vec<Figure> {
    let cal: &[CalibrationRow] = &folder.calibration;
    if cal.is_empty() {
        return Vec::new();
    }
    let mut rows: Vec<(&str, &str)> = Vec::new();
    let mut tools: Vec<&str> = Vec::new();
    for c in cal {
        if !rows.iter().any(|r| r.0 == c.row && r.1 == c.pattern) {
            rows.push((&c.row, &c.pattern));
        }
        if !tools.contains(&c.tool.as_str()) {
            tools.push(&c.tool);
        }
    }
    tools.sort_by_key(|t| TOOL_COLOURS.iter().position(|(n, _)| n == t).unwrap_or(9));
    let tool_colour = |t: &str| {
        TOOL_COLOURS
            .iter()
            .find(|(n, _)| *n == t)
            .map_or(RGBColor(120, 120, 120), |(_, h)| parse_hex(h))
    };
    let names: Vec<String> = rows
        .iter()
        .map(|(r, p)| {
            if p.is_empty() {
                r.to_string()
            } else {
                format!("{r} · {p}")
            }
        })
        .collect();
    let label_w = names.iter().map(|n| text_w(n, 12.0)).max().unwrap_or(40) + 16;
    type Pick = fn(&CalibrationRow) -> f64;
    let metrics: [(&str, &str, Pick); 3] = [
        ("IOPS", "I/Os per second", |c| c.iops),
        (
            "p99 latency",
            "p99 latency, submit to completion (µs)",
            |c| c.p99_us,
        ),
        ("CPU per I/O", "CPU per I/O (µs)", |c| {
            c.cpu_compared_us_per_io()
        }),
    ];
    let mut fig = Figure::new(
        "calibration".into(),
        "snapbench vs fio calibration — micro patterns on one file".into(),
        "median over rounds (rounds interleave the tools), whiskers min–max".into(),
    );
    let mut series = Vec::new();
    for (mi, (title, xlabel, pick)) in metrics.iter().enumerate() {
        let mut cat = Axis::categories(names.clone());
        if mi > 0 {
            for t in cat.ticks.iter_mut() {
                t.1.clear();
            }
            cat.label_area = Some(12);
        } else {
            cat.label_area = Some(label_w as u32);
        }
        let mut marks = Vec::new();
        let mut vals = vec![0.0];
        let th = 0.8 / tools.len() as f64;
        for (i, (row, pat)) in rows.iter().enumerate() {
            let pos = cat.cat_pos(i);
            for (j, tool) in tools.iter().enumerate() {
                let v: Vec<f64> = cal
                    .iter()
                    .filter(|c| c.row == *row && c.pattern == *pat && c.tool == *tool)
                    .map(pick)
                    .filter(|v| v.is_finite())
                    .collect();
                let Some((med, lo, hi)) = median_min_max(&v) else {
                    continue;
                };
                vals.extend([med, lo, hi]);
                let y1 = pos + 0.4 - j as f64 * th - th * 0.06;
                let y0 = pos + 0.4 - (j + 1) as f64 * th + th * 0.06;
                marks.push(Mark::Bar {
                    x0: 0.0,
                    x1: med,
                    y0,
                    y1,
                    colour: tool_colour(tool),
                });
                let yc = (y0 + y1) / 2.0;
                if v.len() > 1 && hi > lo {
                    marks.push(Mark::Whisker {
                        at: yc,
                        lo,
                        hi,
                        colour: BLACK,
                        vertical: false,
                    });
                }
                marks.push(Mark::Text {
                    x: hi.max(med).max(0.0),
                    y: yc,
                    dx: 4,
                    text: fmt_num(med),
                    colour: RGBColor(40, 40, 40),
                });
                series.push(
                    json!({"row": row, "pattern": pat, "tool": tool, "metric": title,
                    "median": med, "min": lo, "max": hi, "rounds": v.len()}),
                );
            }
        }
        let (lo, hi) = extent(vals.into_iter()).unwrap_or((0.0, 1.0));
        let span = (hi - lo).max(1e-9);
        fig.panels.push(Panel {
            title: Some(title.to_string()),
            x: Axis::linear(xlabel, lo.min(0.0), hi + span * 0.18),
            y: cat,
            marks,
        });
    }
    fig.cols = 3;
    fig.height = HEIGHT.max(170 + (rows.len() * tools.len() * 18) as u32);
    fig.legend = tools
        .iter()
        .map(|t| LegendEntry::new(t.to_string(), tool_colour(t), Swatch::Bar))
        .collect();
    fig.series = series;
    fig.sources = vec!["calibration.csv".into()];
    if !folder.meta.is_null() {
        fig.sources.push("meta.json".into());
    }
    fig.extra.insert(
        "tool_colours".into(),
        json!(tools
            .iter()
            .map(|t| (t.to_string(), hex(tool_colour(t))))
            .collect::<BTreeMap<_, _>>()),
    );
    for k in ["fio_version", "snapbench_version", "file", "rounds", "secs"] {
        if !folder.meta[k].is_null() {
            fig.extra.insert(k.into(), folder.meta[k].clone());
        }
    }
    vec![fig]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::LatHist;

    const META: &str = r#"{"host": {"hostname": "testhost", "cpu_model": "Test CPU", "available_cpus": 2, "kernel_release": "6.1.0-test"}, "storage": {"fs": {"fs_type": "ext4"}, "block": {"disk": "vda", "driver": "virtio_blk", "vendor": "0x1af4"}}, "start_utc": "2026-12-03T10:00:00Z"}"#;

    struct Run {
        id: String,
        variant: &'static str,
        matches: u32,
        repeat: u32,
        status: RunStatus,
        /// Base latency, µs (0: every sample is 0).
        lat_us: u64,
        seconds: u64,
    }

    fn summary_row(r: &Run) -> SummaryRow {
        let engine = r.variant.split(':').next().unwrap_or("").to_string();
        let f = r.lat_us as f64;
        let over = (engine != "null").then_some(f / 1000.0);
        SummaryRow {
            run_id: r.id.clone(),
            engine,
            variant: r.variant.into(),
            workload: "fps-128tick".into(),
            workers: 1,
            duration_s: 5.0,
            status: r.status,
            ops: 100_000,
            ops_per_s: 20_000.0,
            lat_p99_us: Some(f * 1.5 * f64::from(r.matches) / 256.0),
            ack_p99_us: Some(f * 40.0),
            cpu_us_per_op: Some(5.0 + f / 1000.0 + f64::from(r.repeat)),
            sys_cpu_busy_s: Some(0.8 + f64::from(r.repeat) * 0.1),
            cpu_us_per_op_over_null: over,
            matches: Some(r.matches),
            repeat: r.repeat,
            config_id: format!("{}-m{}", r.variant, r.matches),
            durability: "interval:1000".into(),
            ..Default::default()
        }
    }

    fn hgrm(base_us: u64, spread: u64) -> String {
        let mut h = LatHist::new();
        for i in 0..5000u64 {
            h.record_ns((base_us + (i * i) % (spread + 1)) * 1000);
        }
        h.percentile_distribution()
    }

    /// A results folder in `dir` from `runs` (hist/*.hgrm for `hist_kinds`), with a search.csv
    /// when `search` is given and a calibration.csv when `calibration`.
    fn write_folder(
        dir: &Path,
        runs: &[Run],
        hist_kinds: &[&str],
        search: &[SearchRow],
        calibration: bool,
    ) -> Folder {
        std::fs::create_dir_all(dir.join("hist")).unwrap();
        std::fs::write(dir.join("meta.json"), META).unwrap();
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in runs {
            w.serialize(summary_row(r)).unwrap();
        }
        std::fs::write(dir.join("summary.csv"), w.into_inner().unwrap()).unwrap();
        let mut ts = String::from("run_id,second,phase,ops,mib,io_ops,errors,lat_p50_us,lat_p99_us,lat_max_us,max_lag_ms,cpu_cores,sys_cpu_busy_cores,sys_cpu_steal_cores\n");
        for r in runs {
            for s in 0..r.seconds {
                let phase = if s == 0 {
                    "warmup"
                } else if s + 1 == r.seconds && r.status == RunStatus::Ok {
                    "after"
                } else {
                    "measured"
                };
                let p99 = if s == 0 {
                    String::new()
                } else {
                    format!("{}", r.lat_us as f64 * (1.0 + s as f64 / 10.0))
                };
                ts.push_str(&format!(
                    "{},{s},{phase},{},1.0,10,0,1.0,{p99},2.0,0.0,0.5,0.6,0.0\n",
                    r.id,
                    20_000 + s * 100 + u64::from(r.repeat) * 10
                ));
            }
            for k in hist_kinds {
                std::fs::write(
                    dir.join("hist").join(format!("{}-{k}.hgrm", r.id)),
                    hgrm(r.lat_us, r.lat_us / 2 + u64::from(r.repeat) * 50),
                )
                .unwrap();
            }
        }
        std::fs::write(dir.join("timeseries.csv"), ts).unwrap();
        if !search.is_empty() {
            std::fs::write(
                dir.join("search.csv"),
                crate::search::search_csv(search).unwrap(),
            )
            .unwrap();
        }
        if calibration {
            let mut c = String::from("row,pattern,tool,round,iops,p99_us,cpu_us_per_io\n");
            for (row, pat) in [("uring", "randread 4k 32"), ("psync QD1", "randread 4k 1")] {
                for round in 1..=3 {
                    for (tool, k) in [("snapbench", 1.05), ("fio", 1.0)] {
                        // Quoted as bench/calibrate-vs-fio.sh writes them.
                        c.push_str(&format!(
                            "\"{row}\",\"{pat}\",{tool},{round},{},{},{}\n",
                            50_000.0 * k + f64::from(round) * 300.0,
                            120.0 / k,
                            3.0 / k + f64::from(round) * 0.1
                        ));
                    }
                }
            }
            std::fs::write(dir.join("calibration.csv"), c).unwrap();
        }
        Folder::load(dir).unwrap()
    }

    fn run_set() -> Vec<Run> {
        let mut runs = Vec::new();
        let mut n = 0;
        for repeat in 1..=2 {
            for (variant, lat) in [("null", 20_000), ("uring", 21_000), ("aio", 25_000)] {
                n += 1;
                let saturated = variant == "aio" && repeat == 2;
                runs.push(Run {
                    id: format!("{n:02}-{variant}-r{repeat}"),
                    variant,
                    matches: 256,
                    repeat,
                    status: if saturated {
                        RunStatus::Saturated
                    } else {
                        RunStatus::Ok
                    },
                    lat_us: lat,
                    seconds: if saturated { 3 } else { 7 },
                });
            }
        }
        runs
    }

    /// The text of every `<text>` element of an SVG.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    fn json_of(dir: &Path, kind: &str) -> Value {
        let text = std::fs::read_to_string(dir.join("plot").join(format!("{kind}.json")))
            .unwrap_or_else(|e| panic!("{kind}.json: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn svg_of(dir: &Path, kind: &str) -> String {
        std::fs::read_to_string(dir.join("plot").join(format!("{kind}.svg"))).unwrap()
    }

    #[test]
    fn a_run_folder_gets_every_chart_it_has_data_for() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        let folder = write_folder(&dir, &run_set(), &["lat", "ack"], &[], true);
        let drawn = draw(&folder).unwrap();
        assert!(drawn.errors.is_empty(), "{:?}", drawn.errors);
        let kinds: Vec<&str> = drawn.charts.iter().map(|c| c.kind.as_str()).collect();
        let want = [
            "latency-write",
            "latency-ack",
            "cpu",
            "timeseries-ops",
            "timeseries-p99",
            "calibration",
        ];
        assert_eq!(kinds, want);
        for k in want {
            let png = std::fs::read(dir.join("plot").join(format!("{k}.png"))).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{k}.png is a PNG");
            assert!(png.len() > 15_000, "{k}.png: {} bytes", png.len());
            let svg = svg_of(&dir, k);
            assert!(svg.len() > 5_000, "{k}.svg: {} bytes", svg.len());
            assert!(svg.contains("testhost"), "{k}: the caption is drawn");
            assert!(
                svg.contains("ext4"),
                "{k}: the caption names the filesystem"
            );
            let j = json_of(&dir, k);
            assert_eq!(j["kind"], k);
            assert!(
                svg.contains(j["title"].as_str().unwrap()),
                "{k}: title in the SVG"
            );
        }
        // A chart without data is not drawn.
        for k in ["latency-read", "capacity"] {
            assert!(!dir.join("plot").join(format!("{k}.png")).exists(), "{k}");
            assert!(!dir.join("plot").join(format!("{k}.svg")).exists(), "{k}");
        }
        let lat = svg_of(&dir, "latency-write");
        assert!(lat.contains("Write latency percentile spectrum — fps-128tick"));
        assert!(lat.contains("write latency (ms)") && lat.contains("percentile (%)"));
        let texts = svg_texts(&lat);
        for tick in ["50", "90", "99", "99.9", "99.99", "99.999"] {
            assert!(
                texts.iter().any(|t| t == tick),
                "nines tick {tick}: {texts:?}"
            );
        }
        assert!(svg_of(&dir, "cpu").contains("CPU per snapshot (µs)"));
        assert!(svg_of(&dir, "timeseries-p99").contains("p99 write latency (ms)"));
        // Repeats are a band: two repeats per variant.
        let lj = json_of(&dir, "latency-write");
        assert_eq!(lj["percentile_range"], json!([50.0, 99.999]));
        assert!(lj["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["repeats"] == 2));
        // One colour per variant, the same in every chart.
        let colours = json_of(&dir, "latency-write")["colours"].clone();
        assert_eq!(colours["null"], PALETTE[0]);
        assert_eq!(colours["uring"], PALETTE[1]);
        assert_eq!(colours["aio"], PALETTE[2]);
        for k in want {
            assert_eq!(json_of(&dir, k)["colours"], colours, "{k}");
        }
        let cpu = json_of(&dir, "cpu");
        for s in cpu["series"].as_array().unwrap() {
            let v = s["variant"].as_str().unwrap();
            assert_eq!(s["colour"], colours[v], "cpu colour of {v}");
        }
        // The saturated run stays in the time series.
        let ts = json_of(&dir, "timeseries-ops");
        assert_eq!(ts["mode"], "runs");
        assert!(ts["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == "06-aio-r2" && r["status"] == "saturated"));
        assert!(ts["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["runs"] == json!(["06-aio-r2"])));
        let tsvg = svg_of(&dir, "timeseries-ops");
        assert!(tsvg.contains("06-aio-r2") && tsvg.contains("saturated"));
        assert!(tsvg.contains("warm-up"));
        // Calibration: both tools, every row.
        let cal = json_of(&dir, "calibration");
        assert_eq!(cal["series"].as_array().unwrap().len(), 2 * 2 * 3);
        assert!(svg_of(&dir, "calibration").contains("psync QD1 · randread 4k 1"));
        // draw_all returns the same charts.
        assert_eq!(draw_all(&folder).unwrap().len(), want.len());
    }

    #[test]
    fn a_search_folder_gets_a_capacity_chart_and_bands() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut runs = Vec::new();
        let mut n = 0;
        for matches in [256, 512, 1024] {
            for repeat in 1..=3 {
                for (variant, lat) in [("null", 20_000), ("uring", 24_000)] {
                    n += 1;
                    let saturated = variant == "uring" && matches == 1024 && repeat == 2;
                    runs.push(Run {
                        id: format!("{n:02}-{variant}-matches{matches}-r{repeat}"),
                        variant,
                        matches,
                        repeat,
                        status: if saturated {
                            RunStatus::Saturated
                        } else {
                            RunStatus::Ok
                        },
                        lat_us: lat,
                        seconds: if saturated { 2 } else { 4 },
                    });
                }
            }
        }
        let search = |variant: &str, lp: Option<u32>, ff: Option<u32>| SearchRow {
            engine: variant.into(),
            variant: variant.into(),
            workload: "fps-128tick".into(),
            workers: 1,
            slo_p99_ms: 50.0,
            slo_on: "write".into(),
            last_pass: lp,
            first_fail: ff,
            load: "matches".into(),
            ..Default::default()
        };
        let folder = write_folder(
            &dir,
            &runs,
            &[],
            &[
                search("null", Some(1024), None),
                search("uring", Some(512), Some(1024)),
            ],
            false,
        );
        let drawn = draw(&folder).unwrap();
        assert!(drawn.errors.is_empty(), "{:?}", drawn.errors);
        let kinds: Vec<&str> = drawn.charts.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["capacity", "cpu", "timeseries-ops", "timeseries-p99"]
        );
        let svg = svg_of(&dir, "capacity");
        assert!(svg.contains("SLO p99 ≤ 50 ms"), "SLO line labelled");
        assert!(svg.contains("offered load (matches)"));
        assert!(svg.contains("p99 write latency (ms)"));
        let cap = json_of(&dir, "capacity");
        let uring = cap["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["variant"] == "uring")
            .unwrap();
        assert_eq!(uring["last_pass"], 512);
        assert_eq!(uring["steps"].as_array().unwrap().len(), 3);
        assert!(uring["knee_p99_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(cap["panels"][0]["x"]["scale"], "log2");
        // The CPU bars are at each variant's knee.
        let cpu = json_of(&dir, "cpu");
        assert!(cpu["legend"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .starts_with("uring @ 512 matches (knee)")));
        // 18 runs: repeats drawn as bands, the saturated run kept.
        let ts = json_of(&dir, "timeseries-ops");
        assert_eq!(ts["mode"], "band");
        assert_eq!(ts["series"].as_array().unwrap().len(), 6);
        assert!(svg_of(&dir, "timeseries-ops").contains("matches=1024 ×3, 1 saturated"));
    }

    #[test]
    fn odd_data_draws_without_panicking() {
        let tmp = tempfile::tempdir().unwrap();
        // Only meta.json: nothing to draw, nothing created.
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(empty.join("meta.json"), "{}").unwrap();
        let drawn = draw(&Folder::load(&empty).unwrap()).unwrap();
        assert!(drawn.charts.is_empty() && drawn.errors.is_empty());
        assert!(!empty.join("plot").exists());
        // One run of zero latency, a NaN, one second, an empty histogram file.
        let dir = tmp.path().join("odd");
        let runs = [Run {
            id: "01-null".into(),
            variant: "null",
            matches: 1,
            repeat: 1,
            status: RunStatus::Interrupted,
            lat_us: 0,
            seconds: 2,
        }];
        let mut folder = write_folder(&dir, &runs, &["lat"], &[], false);
        std::fs::write(
            dir.join("hist/01-null-lat.hgrm"),
            "       Value     Percentile TotalCount 1/(1-Percentile)\n\n       0.000 0.000000000000          1           1.00\n       0.000 0.500000000000          1           2.00\n       3.000 1.000000000000          2\n#[Mean    =        1.500, StdDeviation   =        1.500]\n",
        )
        .unwrap();
        std::fs::write(dir.join("hist/01-null-ack.hgrm"), "garbage\n").unwrap();
        folder = Folder::load(&folder.path).unwrap();
        folder.rows[0].cpu_us_per_op = Some(f64::NAN);
        folder.rows[0].sys_cpu_busy_s = Some(f64::INFINITY);
        let drawn = draw(&folder).unwrap();
        assert!(drawn.errors.is_empty(), "{:?}", drawn.errors);
        let kinds: Vec<&str> = drawn.charts.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["latency-write", "timeseries-ops", "timeseries-p99"]);
        let lat = json_of(&dir, "latency-write");
        assert!(
            lat["notes"].to_string().contains("at or below 0"),
            "{}",
            lat["notes"]
        );
        // The unreadable histogram is not an ack chart.
        assert!(!dir.join("plot/latency-ack.png").exists());
    }

    #[test]
    fn the_bundled_font_renders_text() {
        register_font().unwrap();
        let (w, h) = (200u32, 40u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.draw_text("p99 µs ≤ 50", &font(20.0), (4, 4)).unwrap();
            root.present().unwrap();
        }
        let dark = buf.chunks(3).filter(|p| p[0] < 128).count();
        assert!(dark > 100, "{dark} dark pixels");
        assert!(text_w("write latency (ms)", 12.0) > 60);
    }

    #[test]
    fn hgrm_rows_read_back_with_hdrhistogram_percentiles() {
        let mut h = LatHist::new();
        for us in 1..=1000u64 {
            h.record_ns(us * 1000);
        }
        let d = read_hgrm(&h.percentile_distribution());
        assert!(d.len() > 20);
        let p50 = value_at_percentile(&d, 0.5).unwrap();
        let p99 = value_at_percentile(&d, 0.99).unwrap();
        assert!((p50 - 500.0).abs() < 5.0, "{p50}");
        assert!((p99 - 990.0).abs() < 10.0, "{p99}");
        assert_eq!(value_at_percentile(&d, 1.0), d.last().map(|x| x.1));
        assert_eq!(value_at_percentile(&[], 0.5), None);
        assert!((Scale::Nines.t(99.9) - 3.0).abs() < 1e-9);
        assert!((Scale::Nines.t(50.0) - 2f64.log10()).abs() < 1e-9);
        let grid = nines_grid();
        assert!((grid[0] - 50.0).abs() < 1e-9);
        assert!((grid[grid.len() - 1] - 99.999).abs() < 1e-9);
    }

    #[test]
    fn numbers_and_ticks_are_short() {
        assert_eq!(fmt_num(763_065.0), "763.1k");
        assert_eq!(fmt_num(1_500_000.0), "1.5M");
        assert_eq!(fmt_num(250.0), "250");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(99.999), "100");
        let (t, _) = log10_ticks(15.0, 400.0);
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(labels, ["20", "50", "100", "200"]);
        let (t, _) = log10_ticks(19.9, 47.0);
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(labels, ["20", "30", "40"]);
        let t = log2_ticks(200.0, 3000.0, &[]);
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(labels, ["256", "512", "1024", "2048"]);
    }

    #[test]
    fn the_committed_capacity_folder_draws() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261203T145523Z-capacity-quick/a-w1");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a-w1");
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&src).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
            }
        }
        let folder = Folder::load(&dir).unwrap();
        let drawn = draw(&folder).unwrap();
        assert!(drawn.errors.is_empty(), "{:?}", drawn.errors);
        let kinds: Vec<&str> = drawn.charts.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["capacity", "cpu", "timeseries-ops", "timeseries-p99"]
        );
        assert!(dir.join("plot/capacity.png").is_file() && dir.join("plot/capacity.svg").is_file());
        let cap = json_of(&dir, "capacity");
        let knee = |v: &str| {
            cap["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["variant"] == v)
                .map(|s| s["last_pass"].clone())
        };
        assert_eq!(knee("uring"), Some(json!(1344)));
        assert_eq!(knee("buffered"), Some(Value::Null));
        assert!(svg_of(&dir, "capacity").contains("SLO p99 ≤ 50 ms"));
        let ts = json_of(&dir, "timeseries-p99");
        assert_eq!(ts["mode"], "band");
        assert!(ts["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == "79-uring-matches2048-r1" && r["status"] == "saturated"));
        assert!(ts["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["runs"].to_string().contains("79-uring-matches2048-r1")));
    }
}
