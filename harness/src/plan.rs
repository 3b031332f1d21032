//! Stage one of `snapbench run` (ripgrep's LowArgs): the suite file and the command line are
//! parsed and validated into a [`Plan`] before anything touches the disk.
//!
//! One table, [`FIELDS`], drives everything: the suite's allowed fields, the CLI flags (a field
//! `lag_limit_ms` is the flag `--lag-limit-ms`), the help text, and typed parsing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use snapbench_engines::{knobs::nearest, EngineSpec};
use snapbench_workloads::ds::{Arrivals, DsParams, PRESETS};
use snapbench_workloads::micro::{MicroParams, Rw};
use snapbench_workloads::reads::{Pacing, ReadMix, ReadParams};

use crate::units::{parse_duration_s, parse_size};

pub use crate::error::BadInput;

mod target;
pub use target::{check_target, corpus_logs};

fn bad<T>(msg: impl Into<String>) -> Result<T, BadInput> {
    Err(BadInput(msg.into()))
}

/// How a field's value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Engine variants (a list in a suite; repeatable on the CLI).
    Engines,
    /// Free text.
    Text,
    /// Unsigned integer.
    Uint,
    /// Real number.
    Float,
    /// Size with units.
    Size,
    /// Duration with units (seconds).
    Duration,
    /// true/false.
    Bool,
}

/// Which workloads a field applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every run.
    All,
    /// DS workloads (the presets).
    Ds,
    /// `micro`.
    Micro,
}

/// One run field: a suite key and a CLI flag.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Suite key (`lag_limit_ms`); the flag is `--lag-limit-ms`.
    pub name: &'static str,
    /// Value syntax.
    pub kind: FieldKind,
    /// Where it applies.
    pub scope: Scope,
    /// Help text (with the default).
    pub help: &'static str,
}

const fn f(name: &'static str, kind: FieldKind, scope: Scope, help: &'static str) -> Field {
    Field {
        name,
        kind,
        scope,
        help,
    }
}

use FieldKind as K;
use Scope as S;

/// Every run field.
pub const FIELDS: &[Field] = &[
    f(
        "engine",
        K::Engines,
        S::All,
        "engine variant NAME or NAME:knob=value,… (repeatable; `a,b` lists bare engines)",
    ),
    f(
        "workload",
        K::Text,
        S::All,
        "fps-128tick (default), moba-30tick, battle-royale-100p, replay-heavy, or micro",
    ),
    f(
        "workers",
        K::Uint,
        S::All,
        "worker threads, each pinned with its own engine instance [1]",
    ),
    f(
        "duration",
        K::Duration,
        S::All,
        "measured window, seconds or 30s/2m [30]",
    ),
    f(
        "warmup",
        K::Duration,
        S::All,
        "excluded warm-up before the window [5]",
    ),
    f("seed", K::Uint, S::All, "seed of every generator [1]"),
    f(
        "queue_depth",
        K::Uint,
        S::All,
        "most I/Os in flight per worker for DS runs [256]",
    ),
    f(
        "max_errors",
        K::Uint,
        S::All,
        "I/O errors tolerated before the run fails [0]",
    ),
    f(
        "keep_files",
        K::Bool,
        S::All,
        "keep the run's files in --dir [false]",
    ),
    f(
        "durability",
        K::Text,
        S::Ds,
        "none | interval:MS | every | dsync [interval:1000]",
    ),
    f(
        "ack_log",
        K::Text,
        S::Ds,
        "append `<match_id> <seq>` lines when frames become durable",
    ),
    f(
        "lag_limit_ms",
        K::Float,
        S::Ds,
        "lag behind schedule that marks a run saturated [500]",
    ),
    f(
        "coalesce_us",
        K::Float,
        S::Ds,
        "longest a due snapshot waits so one wake-up handles several (0 = wake for each) [1000]",
    ),
    f(
        "stall",
        K::Duration,
        S::Ds,
        "no I/O completion for this long while I/O is in flight fails the run [5s]",
    ),
    f(
        "drain",
        K::Duration,
        S::Ds,
        "after the window, how long queued and in-flight work may finish [5s]",
    ),
    f(
        "segment_bytes",
        K::Size,
        S::Ds,
        "per-match segment buffer flushed when full [64KiB]",
    ),
    f(
        "flush_ms",
        K::Float,
        S::Ds,
        "flush a segment this long after its oldest snapshot [20]",
    ),
    f(
        "prealloc_bytes",
        K::Size,
        S::Ds,
        "preallocation chunk of each log (fallocate) [8MiB]",
    ),
    f(
        "prealloc",
        K::Text,
        S::Ds,
        "how logs get their blocks: fallocate (unwritten extents), zeroed (then zeros written once with O_DIRECT), or write_zeroes (FALLOC_FL_WRITE_ZEROES, Linux 6.17+) [fallocate]",
    ),
    f(
        "tail",
        K::Text,
        S::Ds,
        "O_DIRECT logs' partial tail block: pad (zeros; the next frame starts on a fresh block) or rewrite (by the next flush) [pad]",
    ),
    f("matches", K::Uint, S::Ds, "concurrent matches [preset]"),
    f("tick_hz", K::Float, S::Ds, "server tick rate [preset]"),
    f(
        "record_hz",
        K::Float,
        S::Ds,
        "snapshots per second sent to the recorder [= tick_hz]",
    ),
    f(
        "batch_s",
        K::Float,
        S::Ds,
        "DS-side batching in seconds (0 = every snapshot) [0]",
    ),
    f(
        "snapshot_bytes",
        K::Size,
        S::Ds,
        "mean delta snapshot payload [preset]",
    ),
    f(
        "snapshot_cv",
        K::Float,
        S::Ds,
        "coefficient of variation of snapshot sizes [preset]",
    ),
    f(
        "snapshot_min_bytes",
        K::Size,
        S::Ds,
        "smallest snapshot [64]",
    ),
    f(
        "snapshot_max_bytes",
        K::Size,
        S::Ds,
        "largest ordinary snapshot [64KiB]",
    ),
    f(
        "burst_fraction",
        K::Float,
        S::Ds,
        "fraction of snapshots that are bursts [0.02]",
    ),
    f(
        "burst_factor",
        K::Float,
        S::Ds,
        "size multiplier of a burst [8]",
    ),
    f(
        "keyframe_s",
        K::Float,
        S::Ds,
        "seconds between keyframes [preset]",
    ),
    f(
        "keyframe_bytes",
        K::Size,
        S::Ds,
        "keyframe payload [preset]",
    ),
    f(
        "match_minutes",
        K::Float,
        S::Ds,
        "mean match length [preset]",
    ),
    f(
        "match_minutes_sd",
        K::Float,
        S::Ds,
        "standard deviation of match length [preset]",
    ),
    f("match_minutes_min", K::Float, S::Ds, "shortest match [10]"),
    f("match_minutes_max", K::Float, S::Ds, "longest match [120]"),
    f("arrivals", K::Text, S::Ds, "poisson | herd [poisson]"),
    f(
        "time_scale",
        K::Float,
        S::Ds,
        "compress match lifetimes by this factor [1]",
    ),
    f(
        "shrink",
        K::Bool,
        S::Ds,
        "snapshot sizes shrink as players die (battle royale) [preset]",
    ),
    f(
        "reads_per_match",
        K::Float,
        S::Ds,
        "one-shot replay reads per finished match [0.1; replay-heavy 2]",
    ),
    f(
        "reads_per_s",
        K::Float,
        S::Ds,
        "one-shot replay reads per second over all workers, overriding reads_per_match",
    ),
    f(
        "read_mix",
        K::Text,
        S::Ds,
        "full/seek/live-tail shares in % [70/25/5; replay-heavy 60/30/10]",
    ),
    f("read_bytes", K::Size, S::Ds, "I/O size of replay reads [256KiB]"),
    f(
        "read_pacing",
        K::Text,
        S::Ds,
        "afap (as fast as possible) | 1x (playback speed) [afap]",
    ),
    f(
        "live_viewers",
        K::Uint,
        S::Ds,
        "viewers following running matches continuously [0; replay-heavy 20]",
    ),
    f(
        "prefill_matches",
        K::Uint,
        S::Ds,
        "finished matches written before the window when the run reads [200; --quick 32]",
    ),
    f(
        "prefill_match_bytes",
        K::Size,
        S::Ds,
        "each prefilled log ends at the first snapshot reaching this size [1MiB; --quick 256KiB]",
    ),
    f(
        "corpus",
        K::Text,
        S::Ds,
        "folder of prefilled logs kept by an earlier --keep-files run: read them instead of writing a prefill",
    ),
    f(
        "rw",
        K::Text,
        S::Micro,
        "read | write | randread | randwrite [randread]",
    ),
    f("bs", K::Size, S::Micro, "I/O size [4KiB]"),
    f(
        "iodepth",
        K::Uint,
        S::Micro,
        "I/Os in flight per worker [32]",
    ),
    f(
        "iodepth_batch",
        K::Uint,
        S::Micro,
        "I/Os per submit call, as fio's iodepth_batch_submit; 0 = all free slots at once [1]",
    ),
    f(
        "file_size",
        K::Size,
        S::Micro,
        "size of each worker's file [1GiB]",
    ),
    f(
        "file_path",
        K::Text,
        S::Micro,
        "an existing, fully written file to use instead of laying one out (shared by all workers; e.g. the file fio reads)",
    ),
    // -- issue 10: micro --
    f(
        "drop_caches",
        K::Bool,
        S::All,
        "before each window: sync and drop the page cache (root), else POSIX_FADV_DONTNEED on the run's files [false]",
    ),
    f(
        "random_map",
        K::Bool,
        S::Micro,
        "random patterns visit each block once per pass before any repeats, as fio's random map; false = fio's norandommap [true]",
    ),
];

/// A field value before typing: from TOML as is, from the CLI as text.
pub type RawFields = BTreeMap<&'static str, toml::Value>;

/// The embedded default suite.
pub const DEFAULT_SUITE: &str = include_str!("../suites/default.toml");

/// A parsed suite: its name and the raw fields of each `[[run]]` merged over `[defaults]`.
#[derive(Debug, Clone)]
pub struct Suite {
    /// `name` of the suite.
    pub name: String,
    /// `[defaults]`: apply to every run where they fit its workload (a DS-only default is
    /// ignored by a micro run, and the other way round).
    pub defaults: RawFields,
    /// One entry per `[[run]]`.
    pub runs: Vec<RawFields>,
    /// Whether this is the embedded default suite (unsupported variants are skipped, not fatal).
    pub embedded: bool,
    // -- issue 10: --repeat --
    /// Top-level `repeat = N`: run every run N times, interleaved (`--repeat` overrides it).
    pub repeat: Option<u32>,
}

fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

fn unknown_field(where_: &str, key: &str) -> BadInput {
    let names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
    let hint = match nearest(key, &names) {
        Some(n) => format!("did you mean `{n}`?"),
        None => "see `snapbench run --help` for the fields".to_string(),
    };
    BadInput(format!("{where_}: unknown field `{key}`; {hint}"))
}

fn table_fields(where_: &str, t: &toml::Table) -> Result<RawFields, BadInput> {
    let mut out = RawFields::new();
    for (k, v) in t {
        let f = field(k).ok_or_else(|| unknown_field(where_, k))?;
        out.insert(f.name, v.clone());
    }
    Ok(out)
}

impl Suite {
    /// Parse suite text (`origin` names it in messages).
    pub fn parse(text: &str, origin: &str) -> Result<Suite, BadInput> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let msg = e.message().trim().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            BadInput(format!("{origin}: not valid TOML{at}: {msg}"))
        })?;
        let mut name = origin.to_string();
        let mut defaults = RawFields::new();
        let mut runs = Vec::new();
        let mut repeat = None;
        for (k, v) in &doc {
            match (k.as_str(), v) {
                ("name", toml::Value::String(s)) => name = s.clone(),
                ("name", _) => return bad(format!("{origin}: `name` must be a string")),
                ("repeat", v) => {
                    repeat = Some(check_repeat(
                        v.as_integer(),
                        &format!("{origin}: `repeat`"),
                    )?)
                }
                ("defaults", toml::Value::Table(t)) => {
                    defaults = table_fields(&format!("{origin} [defaults]"), t)?
                }
                ("run", toml::Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let where_ = format!("{origin} [[run]] #{}", i + 1);
                        match item {
                            toml::Value::Table(t) => runs.push(table_fields(&where_, t)?),
                            _ => return bad(format!("{where_}: must be a table")),
                        }
                    }
                }
                (other, _) => {
                    let top = ["name", "repeat", "defaults", "run"];
                    let hint = nearest(other, &top)
                        .map(|n| format!("did you mean `{n}`?"))
                        .unwrap_or_else(|| {
                            "a suite has `name`, `[defaults]` and `[[run]]` tables".into()
                        });
                    return bad(format!("{origin}: unknown top-level key `{other}`; {hint}"));
                }
            }
        }
        if runs.is_empty() {
            return bad(format!(
                "{origin}: no [[run]] tables; add at least one, e.g. [[run]] engine = \"null\""
            ));
        }
        Ok(Suite {
            name,
            defaults,
            runs,
            embedded: false,
            repeat,
        })
    }

    /// The embedded default suite.
    pub fn embedded() -> Suite {
        let mut s = Suite::parse(DEFAULT_SUITE, "embedded default suite")
            .expect("the embedded suite parses (tested)");
        s.embedded = true;
        s
    }
}

/// The durability policy of a DS run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Durability {
    /// Ack = written; nothing synced before the seal.
    None,
    /// Each dirty log synced every `ms` milliseconds (group commit).
    Interval {
        /// Sync period of each log.
        ms: f64,
    },
    /// A sync after each flush's write completes.
    Every,
    /// Writes carry RWF_DSYNC: durable on completion.
    Dsync,
}

impl Durability {
    /// Parse `none`, `interval:MS`, `every`, `dsync`.
    pub fn parse(text: &str) -> Result<Durability, String> {
        match text.trim() {
            "none" => Ok(Durability::None),
            "every" => Ok(Durability::Every),
            "dsync" => Ok(Durability::Dsync),
            t => match t.strip_prefix("interval:").map(|ms| ms.trim().parse::<f64>()) {
                Some(Ok(ms)) if ms > 0.0 && ms.is_finite() => Ok(Durability::Interval { ms }),
                _ => Err(format!(
                    "unknown durability `{text}`: use none, interval:MS (e.g. interval:1000), every or dsync"
                )),
            },
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::None => f.write_str("none"),
            Durability::Interval { ms } => write!(f, "interval:{ms}"),
            Durability::Every => f.write_str("every"),
            Durability::Dsync => f.write_str("dsync"),
        }
    }
}

/// The workload of one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// The DS snapshot model (a preset with overrides).
    Ds {
        /// Preset name.
        preset: String,
        /// Effective parameters.
        params: DsParams,
        /// Effective parameters of the read side.
        reads: ReadParams,
    },
    /// A closed-loop micro pattern.
    Micro(MicroParams),
}

impl Workload {
    /// Name as shown in results (`fps-128tick`, `micro:randread`).
    pub fn name(&self) -> String {
        match self {
            Workload::Ds { preset, .. } => preset.clone(),
            Workload::Micro(p) => format!("micro:{}", p.rw),
        }
    }
}

impl WriterSettings {
    /// The `tail` field's word for these settings.
    pub fn tail_name(&self) -> &'static str {
        if self.pad_tail {
            "pad"
        } else {
            "rewrite"
        }
    }
}

/// DS writer settings.
#[derive(Clone, Debug, PartialEq)]
pub struct WriterSettings {
    /// Durability policy.
    pub durability: Durability,
    /// Segment buffer size per match.
    pub segment_bytes: u64,
    /// Flush deadline after the oldest unflushed snapshot, ms.
    pub flush_ms: f64,
    /// Preallocation chunk.
    pub prealloc_bytes: u64,
    /// O_DIRECT logs' partial tail block: padded for good instead of rewritten.
    pub pad_tail: bool,
    /// How logs get their blocks (the engines' Create and Allocate).
    pub prealloc: snapbench_engines::Prealloc,
    /// Ack log path.
    pub ack_log: Option<PathBuf>,
    /// Lag behind schedule that marks the run saturated, ms.
    pub lag_limit_ms: f64,
    /// Wake-up coalescing bound, µs: the driver wakes at most this long after a snapshot's
    /// intended time so that one wake-up handles every snapshot due by then (0 = one wake-up
    /// per due time). Latency is still measured from the intended time, so the delay shows.
    pub coalesce_us: f64,
}

/// One fully validated run.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// Position in the suite, from 1.
    pub index: usize,
    /// `NN-variant`, unique within the results folder.
    pub run_id: String,
    /// The engine and its knobs.
    pub engine: EngineSpec,
    /// What it runs.
    pub workload: Workload,
    /// Worker threads.
    pub workers: u32,
    /// Measured window, s.
    pub duration_s: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// Seed.
    pub seed: u64,
    /// I/Os in flight per worker.
    pub queue_depth: u32,
    /// Errors tolerated.
    pub max_errors: u64,
    /// Keep files after the run.
    pub keep_files: bool,
    /// DS writer settings (defaults for micro runs, unused there).
    pub writer: WriterSettings,
    /// Micro: an existing file to use instead of laying one out.
    pub micro_file: Option<PathBuf>,
    /// DS: a folder of prefilled logs from an earlier run, read instead of writing a prefill.
    pub corpus: Option<PathBuf>,
    // -- issue 10: a row says what it ran --
    /// Which repeat of its configuration this run is, from 1 (`--repeat`).
    pub repeat: u32,
    /// The swept `(field, value)` pairs of this run (empty when nothing is swept); they end its
    /// run id.
    pub swept: Vec<(&'static str, String)>,
    // -- issue 10: --repeat --
    /// How many times each run of the plan runs (`--repeat`, 1 without it).
    pub repeats: u32,
    /// Position of this run's configuration in the plan before repeats, from 1: runs that differ
    /// only in `repeat` share it.
    pub config: usize,
    // -- issue 10: bounded runs --
    /// No I/O completion for this long while I/O is in flight fails the run (`--stall`), s.
    pub stall_s: f64,
    /// After the window, how long queued and in-flight work may finish (`--drain`), s.
    pub drain_s: f64,
    // -- issue 10: micro --
    /// Before the window: sync and drop the page cache as root, else `POSIX_FADV_DONTNEED` on
    /// the run's files (`--drop-caches`).
    pub drop_caches: bool,
    // -- issue 10: prefill only when it serves --
    /// `prefill_matches` was given: the prefill is written even when few reads are expected.
    pub prefill_asked: bool,
}

impl RunPlan {
    /// Give the run its position in the plan (from 1) and the run id that goes with it:
    /// `NN-variant`, then each swept value (`-matches250`).
    pub fn set_index(&mut self, index: usize) {
        self.index = index;
        self.config = index;
        self.run_id = self.make_run_id();
    }

    /// The variant and swept values, file-name safe (`uring-matches250`).
    fn id_body(&self) -> String {
        let mut id = sanitize(&self.engine.variant());
        for (name, value) in &self.swept {
            id.push('-');
            id.push_str(&sanitize(&format!("{name}{value}")));
        }
        id
    }

    /// `NN-body`, and `-rK` when the plan repeats its runs.
    fn make_run_id(&self) -> String {
        let mut id = format!("{:02}-{}", self.index, self.id_body());
        if self.repeats > 1 {
            id.push_str(&format!("-r{}", self.repeat));
        }
        id
    }

    /// The configuration's id: the run id this run would have without `--repeat`
    /// (`CC-variant…`, CC its configuration's position); shared by its repeats.
    pub fn config_id(&self) -> String {
        format!("{:02}-{}", self.config, self.id_body())
    }

    /// Every option of this run, for meta.json and summary.json.
    pub fn options_json(&self) -> serde_json::Value {
        let knobs: serde_json::Map<String, serde_json::Value> = self
            .engine
            .knob_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        let workload = match &self.workload {
            Workload::Ds {
                preset,
                params,
                reads,
            } => serde_json::json!({
                "kind": "ds", "preset": preset, "params": params,
                "offered_snapshots_per_s": params.snapshots_per_s(),
                "reads": reads,
                "read_side_active": reads.active(params),
                "offered_reads_per_s": reads.one_shot_reads_per_s(params),
            }),
            Workload::Micro(p) => serde_json::json!({ "kind": "micro", "params": p }),
        };
        serde_json::json!({
            "run_id": self.run_id,
            "engine": self.engine.name(),
            "variant": self.engine.variant(),
            "knobs": knobs,
            "workload": workload,
            "workers": self.workers,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "seed": self.seed,
            "queue_depth": self.queue_depth,
            "max_errors": self.max_errors,
            "keep_files": self.keep_files,
            "durability": self.writer.durability.to_string(),
            "segment_bytes": self.writer.segment_bytes,
            "flush_ms": self.writer.flush_ms,
            "prealloc_bytes": self.writer.prealloc_bytes,
            "tail": self.writer.tail_name(),
            "prealloc": self.writer.prealloc.name(),
            "ack_log": self.writer.ack_log,
            "lag_limit_ms": self.writer.lag_limit_ms,
            "coalesce_us": self.writer.coalesce_us,
            "micro_file": self.micro_file,
            "corpus": self.corpus,
            "repeat": self.repeat,
            "stall_s": self.stall_s,
            "drain_s": self.drain_s,
            "drop_caches": self.drop_caches,
        })
    }
}

/// Default wake-up coalescing bound of DS workers, µs (see [`WriterSettings::coalesce_us`]).
pub const DEFAULT_COALESCE_US: f64 = 1000.0;
/// Largest accepted `coalesce_us` (10 ms: half a default flush deadline).
pub const MAX_COALESCE_US: f64 = 10_000.0;

/// Options of the whole invocation (not per run).
#[derive(Clone, Debug)]
pub struct Global {
    /// Where engines create files.
    pub dir: PathBuf,
    /// Results folder (None = results/<UTC>-<suite>).
    pub out: Option<PathBuf>,
    /// Overwrite a results folder that holds results.
    pub force: bool,
    /// Fit the suite in at most 60 seconds.
    pub quick: bool,
}

/// The validated plan: every run, in order.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Suite name.
    pub suite: String,
    /// Runs.
    pub runs: Vec<RunPlan>,
    /// Variants of the embedded suite skipped because this machine lacks them, with the reason.
    pub skipped: Vec<String>,
    /// The plan comes from the embedded default suite.
    pub embedded: bool,
    /// Invocation options.
    pub global: Global,
    // -- issue 10: a row says what it ran --
    /// The suite part of the default results folder (`results/<UTC>-<results_name>`): the suite
    /// file's stem, or `default` / `default-custom` for the embedded suite run unchanged /
    /// with overrides.
    pub results_name: String,
}

/// Total budget of `--quick`, seconds.
pub const QUICK_BUDGET_S: f64 = 60.0;

/// Most prefilled matches per run under `--quick`.
pub const QUICK_PREFILL_MATCHES: u32 = 32;

/// Largest prefilled log under `--quick`, bytes (256 KiB).
pub const QUICK_PREFILL_MATCH_BYTES: u64 = 256 << 10;

// ---- typed access to raw fields ----

fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn typed_err(name: &str, v: &toml::Value, why: &str) -> BadInput {
    BadInput(format!("field `{name}`: bad value {}: {why}", describe(v)))
}

fn get_text(m: &RawFields, name: &str) -> Result<Option<String>, BadInput> {
    match m.get(name) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(typed_err(name, v, "expected a string")),
    }
}

fn get_uint(m: &RawFields, name: &str) -> Result<Option<u64>, BadInput> {
    match m.get(name) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
        Some(v @ toml::Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| typed_err(name, v, "expected a non-negative integer")),
        Some(v) => Err(typed_err(name, v, "expected a non-negative integer")),
    }
}

fn get_float(m: &RawFields, name: &str) -> Result<Option<f64>, BadInput> {
    match m.get(name) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
        Some(toml::Value::Float(x)) if x.is_finite() => Ok(Some(*x)),
        Some(v @ toml::Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(typed_err(name, v, "expected a number")),
        },
        Some(v) => Err(typed_err(name, v, "expected a number")),
    }
}

fn get_size(m: &RawFields, name: &str) -> Result<Option<u64>, BadInput> {
    match m.get(name) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
        Some(v @ toml::Value::String(s)) => {
            parse_size(s).map(Some).map_err(|e| typed_err(name, v, &e))
        }
        Some(v) => Err(typed_err(name, v, "expected a size like 4096, 64k or 8MiB")),
    }
}

fn get_duration(m: &RawFields, name: &str) -> Result<Option<f64>, BadInput> {
    match m.get(name) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as f64)),
        Some(toml::Value::Float(x)) if *x >= 0.0 && x.is_finite() => Ok(Some(*x)),
        Some(v @ toml::Value::String(s)) => parse_duration_s(s)
            .map(Some)
            .map_err(|e| typed_err(name, v, &e)),
        Some(v) => Err(typed_err(
            name,
            v,
            "expected a duration like 30, 30s or 500ms",
        )),
    }
}

fn get_bool(m: &RawFields, name: &str) -> Result<Option<bool>, BadInput> {
    match m.get(name) {
        None => Ok(None),
        Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
        Some(v @ toml::Value::String(s)) => match s.as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(typed_err(name, v, "expected true or false")),
        },
        Some(v) => Err(typed_err(name, v, "expected true or false")),
    }
}

/// Engine variants of a run: a string or a list; a bare comma-separated list of names (no `:`)
/// is several engines.
fn get_engines(m: &RawFields) -> Result<Vec<String>, BadInput> {
    let items: Vec<String> = match m.get("engine") {
        None => {
            return bad("no engine given: add `engine = \"null\"` to the run or pass --engine NAME")
        }
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(typed_err(
                    "engine",
                    other,
                    "expected engine variant strings",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(typed_err(
                "engine",
                v,
                "expected a string or a list of strings",
            ))
        }
    };
    let mut out = Vec::new();
    for item in items {
        if item.contains(':') {
            out.push(item.trim().to_string());
        } else {
            out.extend(
                item.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
    }
    if out.is_empty() {
        return bad("field `engine`: empty; name at least one engine (see `snapbench engines`)");
    }
    Ok(out)
}

fn check_scope(m: &RawFields, micro: bool, workload: &str) -> Result<(), BadInput> {
    for name in m.keys() {
        let Some(fd) = field(name) else { continue };
        let wrong = match fd.scope {
            Scope::All => false,
            Scope::Ds => micro,
            Scope::Micro => !micro,
        };
        if wrong {
            return bad(format!(
                "field `{name}` does not apply to workload `{workload}`; it is a {} field",
                if micro { "DS" } else { "micro" }
            ));
        }
    }
    Ok(())
}

fn ds_params(preset: &str, m: &RawFields) -> Result<DsParams, BadInput> {
    let mut p = DsParams::preset(preset).ok_or_else(|| {
        let mut names: Vec<&str> = PRESETS.to_vec();
        names.push("micro");
        let hint = nearest(preset, &names)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        BadInput(format!(
            "unknown workload `{preset}`{hint}; workloads: {}",
            names.join(", ")
        ))
    })?;
    let tick_given = m.contains_key("tick_hz");
    macro_rules! set {
        ($getter:ident, $name:literal, $field:ident, $conv:expr) => {
            if let Some(v) = $getter(m, $name)? {
                p.$field = $conv(v);
            }
        };
    }
    set!(
        get_uint,
        "matches",
        matches,
        |v: u64| v.min(u32::MAX as u64) as u32
    );
    set!(get_float, "tick_hz", tick_hz, |v| v);
    if tick_given && !m.contains_key("record_hz") {
        p.record_hz = p.tick_hz;
    }
    set!(get_float, "record_hz", record_hz, |v| v);
    set!(get_float, "batch_s", batch_s, |v| v);
    set!(get_size, "snapshot_bytes", snapshot_bytes, |v: u64| v
        as f64);
    set!(get_float, "snapshot_cv", snapshot_cv, |v| v);
    set!(
        get_size,
        "snapshot_min_bytes",
        snapshot_min_bytes,
        |v: u64| v.min(u32::MAX as u64) as u32
    );
    set!(
        get_size,
        "snapshot_max_bytes",
        snapshot_max_bytes,
        |v: u64| v.min(u32::MAX as u64) as u32
    );
    set!(get_float, "burst_fraction", burst_fraction, |v| v);
    set!(get_float, "burst_factor", burst_factor, |v| v);
    set!(get_float, "keyframe_s", keyframe_s, |v| v);
    set!(
        get_size,
        "keyframe_bytes",
        keyframe_bytes,
        |v: u64| v.min(u32::MAX as u64) as u32
    );
    set!(get_float, "match_minutes", match_minutes, |v| v);
    set!(get_float, "match_minutes_sd", match_minutes_sd, |v| v);
    set!(get_float, "match_minutes_min", match_minutes_min, |v| v);
    set!(get_float, "match_minutes_max", match_minutes_max, |v| v);
    set!(get_float, "time_scale", time_scale, |v| v);
    set!(get_bool, "shrink", shrink, |v| v);
    if let Some(a) = get_text(m, "arrivals")? {
        p.arrivals = match a.as_str() {
            "poisson" => Arrivals::Poisson,
            "herd" => Arrivals::Herd,
            _ => {
                return bad(format!(
                    "field `arrivals`: unknown value `{a}`; use poisson or herd"
                ))
            }
        };
    }
    p.validate()
        .map_err(|e| BadInput(format!("workload `{preset}`: {e}")))?;
    Ok(p)
}

fn read_params(preset: &str, m: &RawFields) -> Result<ReadParams, BadInput> {
    let mut r = ReadParams::preset(preset).unwrap_or_default();
    if let Some(v) = get_float(m, "reads_per_match")? {
        r.reads_per_match = v;
    }
    if let Some(v) = get_float(m, "reads_per_s")? {
        r.reads_per_s = Some(v);
    }
    if let Some(t) = get_text(m, "read_mix")? {
        r.mix = ReadMix::parse(&t).map_err(|e| BadInput(format!("field `read_mix`: {e}")))?;
    }
    if let Some(v) = get_size(m, "read_bytes")? {
        r.read_bytes = v.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(t) = get_text(m, "read_pacing")? {
        r.pacing = t
            .parse::<Pacing>()
            .map_err(|e| BadInput(format!("field `read_pacing`: {e}")))?;
    }
    if let Some(v) = get_uint(m, "live_viewers")? {
        r.live_viewers = v.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(v) = get_uint(m, "prefill_matches")? {
        r.prefill_matches = v.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(v) = get_size(m, "prefill_match_bytes")? {
        r.prefill_match_bytes = v;
    }
    r.validate()
        .map_err(|e| BadInput(format!("workload `{preset}`: {e}")))?;
    Ok(r)
}

fn micro_params(m: &RawFields) -> Result<MicroParams, BadInput> {
    let mut p = MicroParams::default();
    if let Some(rw) = get_text(m, "rw")? {
        p.rw = rw
            .parse::<Rw>()
            .map_err(|e| BadInput(format!("field `rw`: {e}")))?;
    }
    if let Some(bs) = get_size(m, "bs")? {
        p.bs_bytes = u32::try_from(bs)
            .map_err(|_| BadInput(format!("field `bs`: {bs} is too large (at most 4GiB)")))?;
    }
    if let Some(d) = get_uint(m, "iodepth")? {
        p.iodepth = d.min(u32::MAX as u64) as u32;
    }
    if let Some(s) = get_size(m, "file_size")? {
        p.file_size_bytes = s;
    }
    if let Some(b) = get_uint(m, "iodepth_batch")? {
        p.iodepth_batch = b.min(u32::MAX as u64) as u32;
    }
    if let Some(b) = get_bool(m, "random_map")? {
        p.random_map = b;
    }
    p.validate()
        .map_err(|e| BadInput(format!("workload `micro`: {e}")))?;
    Ok(p)
}

/// Resolve one run's raw fields into a plan entry (no I/O).
pub fn resolve_run(index: usize, engine: EngineSpec, m: &RawFields) -> Result<RunPlan, BadInput> {
    let wl_name = get_text(m, "workload")?.unwrap_or_else(|| "fps-128tick".to_string());
    let micro = wl_name == "micro";
    check_scope(m, micro, &wl_name)?;
    let workload = if micro {
        Workload::Micro(micro_params(m)?)
    } else {
        Workload::Ds {
            params: ds_params(&wl_name, m)?,
            reads: read_params(&wl_name, m)?,
            preset: wl_name.clone(),
        }
    };
    let workers = get_uint(m, "workers")?.unwrap_or(1);
    if !(1..=1024).contains(&workers) {
        return bad(format!(
            "field `workers`: {workers} is out of range; use 1 to 1024"
        ));
    }
    let duration_s = get_duration(m, "duration")?.unwrap_or(30.0);
    if duration_s <= 0.0 {
        return bad("field `duration`: must be more than 0 seconds");
    }
    let warmup_s = get_duration(m, "warmup")?.unwrap_or(5.0);
    let queue_depth = match (&workload, get_uint(m, "queue_depth")?) {
        (Workload::Micro(p), None) => p.iodepth as u64,
        (Workload::Micro(p), Some(q)) if q != p.iodepth as u64 => {
            return bad("field `queue_depth` does not apply to micro runs; use `iodepth`")
        }
        (_, Some(q)) => q,
        (_, None) => 256,
    };
    if !(1..=65536).contains(&queue_depth) {
        return bad(format!(
            "field `queue_depth`: {queue_depth} is out of range; use 1 to 65536"
        ));
    }
    let durability = match get_text(m, "durability")? {
        None => Durability::Interval { ms: 1000.0 },
        Some(t) => {
            Durability::parse(&t).map_err(|e| BadInput(format!("field `durability`: {e}")))?
        }
    };
    let segment_bytes = get_size(m, "segment_bytes")?.unwrap_or(64 * 1024);
    if !(4096..=(64 << 20)).contains(&segment_bytes) || segment_bytes % 4096 != 0 {
        return bad(format!(
            "field `segment_bytes`: {segment_bytes} must be a multiple of 4KiB from 4KiB to 64MiB"
        ));
    }
    let flush_ms = get_float(m, "flush_ms")?.unwrap_or(20.0);
    if flush_ms.is_nan() || flush_ms <= 0.0 {
        return bad("field `flush_ms`: must be more than 0");
    }
    let prealloc_bytes = get_size(m, "prealloc_bytes")?.unwrap_or(8 << 20);
    if prealloc_bytes % 4096 != 0 || prealloc_bytes < segment_bytes {
        return bad(format!(
            "field `prealloc_bytes`: {prealloc_bytes} must be a multiple of 4KiB and at least segment_bytes ({segment_bytes})"
        ));
    }
    let pad_tail = match get_text(m, "tail")?.as_deref() {
        // Default `pad` (issue 13): no io_uring write goes to io-wq on ext4, and the device
        // writes about 30 % fewer bytes than with the tail block rewritten.
        Some("rewrite") => false,
        None | Some("pad") => true,
        Some(other) => {
            return bad(format!(
                "field `tail`: `{other}` is not a tail mode; use rewrite or pad"
            ))
        }
    };
    let prealloc = match get_text(m, "prealloc")? {
        None => snapbench_engines::Prealloc::Fallocate,
        Some(t) => match snapbench_engines::Prealloc::from_word(&t) {
            Some(p) => p,
            None => {
                return bad(format!(
                    "field `prealloc`: `{t}` is not a preallocation; use fallocate, zeroed or write_zeroes"
                ))
            }
        },
    };
    if prealloc != snapbench_engines::Prealloc::Fallocate && engine.name() == "glommio" {
        return bad(format!(
            "field `prealloc`: {} is not supported by glommio (it preallocates through its own API); use prealloc = \"fallocate\" for glommio",
            prealloc.name()
        ));
    }
    let lag_limit_ms = get_float(m, "lag_limit_ms")?.unwrap_or(500.0);
    if lag_limit_ms.is_nan() || lag_limit_ms <= 0.0 {
        return bad("field `lag_limit_ms`: must be more than 0");
    }
    let coalesce_us = get_float(m, "coalesce_us")?.unwrap_or(DEFAULT_COALESCE_US);
    if !(0.0..=MAX_COALESCE_US).contains(&coalesce_us) {
        return bad(format!(
            "field `coalesce_us`: {coalesce_us} is out of range; use 0 to {MAX_COALESCE_US} (µs; 0 wakes for every due time)"
        ));
    }
    let stall_s = get_duration(m, "stall")?.unwrap_or(5.0);
    if stall_s <= 0.0 {
        return bad("field `stall`: must be more than 0 (e.g. 5s)");
    }
    let drain_s = get_duration(m, "drain")?.unwrap_or(5.0);
    let variant = engine.variant();
    Ok(RunPlan {
        index,
        run_id: format!("{index:02}-{}", sanitize(&variant)),
        engine,
        workload,
        workers: workers as u32,
        duration_s,
        warmup_s,
        seed: get_uint(m, "seed")?.unwrap_or(1),
        queue_depth: queue_depth as u32,
        max_errors: get_uint(m, "max_errors")?.unwrap_or(0),
        keep_files: get_bool(m, "keep_files")?.unwrap_or(false),
        writer: WriterSettings {
            durability,
            segment_bytes,
            flush_ms,
            prealloc_bytes,
            pad_tail,
            prealloc,
            ack_log: get_text(m, "ack_log")?.map(PathBuf::from),
            lag_limit_ms,
            coalesce_us,
        },
        micro_file: get_text(m, "file_path")?.map(PathBuf::from),
        corpus: get_text(m, "corpus")?.map(PathBuf::from),
        repeat: 1,
        swept: Vec::new(),
        repeats: 1,
        config: index,
        stall_s,
        drain_s,
        drop_caches: get_bool(m, "drop_caches")?.unwrap_or(false),
        prefill_asked: m.contains_key("prefill_matches"),
    })
}

/// A variant as a file-name-safe string.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Expand a suite (with CLI overrides) into runs: one per engine variant of each `[[run]]`.
/// Parsing only: support on this machine is checked by [`crate::prepare`].
pub fn expand(
    suite: &Suite,
    cli: &RawFields,
    cli_engines: &[String],
) -> Result<Vec<RunPlan>, BadInput> {
    let mut runs = Vec::new();
    for raw in &suite.runs {
        let mut m = raw.clone();
        for (k, v) in cli {
            m.insert(k, v.clone());
        }
        let workload = m
            .get("workload")
            .or_else(|| suite.defaults.get("workload"))
            .and_then(|v| v.as_str())
            .unwrap_or("fps-128tick");
        let micro = workload == "micro";
        for (k, v) in &suite.defaults {
            let fits = match field(k).map(|f| f.scope) {
                Some(Scope::Ds) => !micro,
                Some(Scope::Micro) => micro,
                _ => true,
            };
            if fits {
                m.entry(k).or_insert_with(|| v.clone());
            }
        }
        if !cli_engines.is_empty() {
            m.insert(
                "engine",
                toml::Value::Array(
                    cli_engines
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                ),
            );
        }
        let engines = get_engines(&m)?;
        for point in sweep_points(&m)? {
            for variant in &engines {
                let spec = EngineSpec::parse(variant).map_err(|e| BadInput(e.to_string()))?;
                let mut run = resolve_run(runs.len() + 1, spec, &point.fields)?;
                run.swept = point.values.clone();
                run.set_index(runs.len() + 1);
                runs.push(run);
            }
        }
    }
    Ok(runs)
}

/// One point of a sweep: the run's fields with every list replaced by one of its values, and
/// the swept `(field, value)` pairs (empty when nothing is swept).
struct SweepPoint {
    fields: RawFields,
    values: Vec<(&'static str, String)>,
}

/// A value as it appears in a run id (strings without their quotes).
fn sweep_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

/// Expand every list in a numeric field into the cross product of its values (fields in name
/// order, the last varying fastest). A list in a non-numeric field, an empty list, or a list
/// holding a list or table is bad input naming the field.
fn sweep_points(m: &RawFields) -> Result<Vec<SweepPoint>, BadInput> {
    let mut points = vec![SweepPoint {
        fields: m.clone(),
        values: Vec::new(),
    }];
    for (name, value) in m {
        let toml::Value::Array(items) = value else {
            continue;
        };
        let Some(fd) = field(name) else { continue };
        match fd.kind {
            K::Engines => continue,
            K::Uint | K::Float | K::Size | K::Duration => {}
            K::Text | K::Bool => {
                return bad(format!(
                "field `{name}`: a list (sweep) is allowed only in numeric fields; give one value"
            ))
            }
        }
        if items.is_empty() {
            return bad(format!(
                "field `{name}`: empty list; give at least one value, e.g. {name} = [250, 500]"
            ));
        }
        for item in items {
            if !matches!(
                item,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::String(_)
            ) {
                return Err(typed_err(
                    name,
                    item,
                    "a sweep list holds plain values (numbers, or sizes/durations as strings)",
                ));
            }
        }
        let mut next = Vec::with_capacity(points.len() * items.len());
        for p in &points {
            for item in items {
                let mut fields = p.fields.clone();
                fields.insert(name, item.clone());
                let mut values = p.values.clone();
                values.push((*name, sweep_label(item)));
                next.push(SweepPoint { fields, values });
            }
        }
        points = next;
    }
    Ok(points)
}

/// Most repeats of `--repeat` / `repeat =`.
pub const MAX_REPEAT: u32 = 100;

/// Check a repeat count (`what` names where it came from): an integer from 1 to [`MAX_REPEAT`].
pub fn check_repeat(n: Option<i64>, what: &str) -> Result<u32, BadInput> {
    match n {
        Some(n) if (1..=i64::from(MAX_REPEAT)).contains(&n) => Ok(n as u32),
        _ => bad(format!(
            "{what}: must be an integer from 1 to {MAX_REPEAT} (how many times each run runs)"
        )),
    }
}

/// Run every run `n` times, interleaved (A B C A B C …): repeat K of every configuration
/// before repeat K + 1 of any, so slow drift of the machine spreads over all of them. Each run
/// keeps its configuration ([`RunPlan::config`]) and gets its repeat index and a run id ending
/// in `-rK`. `n` = 1 leaves the plan as it is.
pub fn apply_repeat(runs: &mut Vec<RunPlan>, n: u32) {
    if n <= 1 {
        return;
    }
    let configs = std::mem::take(runs);
    for repeat in 1..=n {
        for c in &configs {
            let mut r = c.clone();
            r.repeat = repeat;
            r.repeats = n;
            r.index = runs.len() + 1;
            r.run_id = r.make_run_id();
            runs.push(r);
        }
    }
}

/// Shrink durations so the whole suite fits in [`QUICK_BUDGET_S`] (setup and sealing included).
pub fn apply_quick(runs: &mut [RunPlan]) {
    let n = runs.len().max(1) as f64;
    let per_run = (QUICK_BUDGET_S / n).max(2.0);
    // About a third of each slot goes to setup, sealing and writing results.
    let window = (per_run * 0.6).clamp(1.0, 5.0);
    for r in runs {
        r.warmup_s = r.warmup_s.min(window * 0.2);
        r.duration_s = r.duration_s.min(window - r.warmup_s);
        match &mut r.workload {
            Workload::Micro(p) => p.file_size_bytes = p.file_size_bytes.min(256 << 20),
            Workload::Ds { reads, .. } => {
                reads.prefill_matches = reads.prefill_matches.min(QUICK_PREFILL_MATCHES);
                reads.prefill_match_bytes =
                    reads.prefill_match_bytes.min(QUICK_PREFILL_MATCH_BYTES);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_of(text: &str) -> Result<Vec<RunPlan>, BadInput> {
        let s = Suite::parse(text, "t.toml")?;
        expand(&s, &RawFields::new(), &[])
    }

    #[test]
    fn embedded_suite_parses_and_expands() {
        let s = Suite::embedded();
        let runs = expand(&s, &RawFields::new(), &[]).unwrap();
        assert!(runs.len() >= 2);
        assert!(runs.iter().all(|r| r.workload.name() == "fps-128tick"));
        assert_eq!(runs[0].engine.name(), "null");
    }

    #[test]
    fn engine_list_expands() {
        let runs =
            runs_of("[[run]]\nengine = [\"null\", \"buffered:direct=true\"]\nduration = \"2s\"")
                .unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].engine.variant(), "buffered:direct=true");
        assert_eq!(runs[1].run_id, "02-buffered_direct_true");
        assert_eq!(runs[0].duration_s, 2.0);
        let runs = runs_of("[[run]]\nengine = \"null,buffered\"").unwrap();
        assert_eq!(runs.len(), 2);
    }

    #[test]
    fn sweeps_expand_and_cross() {
        let runs = runs_of(
            "[[run]]\nengine = [\"null\", \"buffered\"]\nmatches = [250, 500, 750]\nduration = 2",
        )
        .unwrap();
        assert_eq!(runs.len(), 6);
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids[0], "01-null-matches250");
        assert_eq!(ids[1], "02-buffered-matches250");
        assert_eq!(ids[5], "06-buffered-matches750");
        let matches: Vec<u32> = runs
            .iter()
            .map(|r| match &r.workload {
                Workload::Ds { params, .. } => params.matches,
                Workload::Micro(_) => panic!("a DS run"),
            })
            .collect();
        assert_eq!(matches, [250, 250, 500, 500, 750, 750]);
        // Two swept fields cross; a default list sweeps too; sizes as strings.
        let runs = runs_of(
            "[defaults]\ntick_hz = [30, 60]\n[[run]]\nengine = \"null\"\nmatches = [10, 20]\nsegment_bytes = [\"64k\", \"128k\"]",
        )
        .unwrap();
        assert_eq!(runs.len(), 8);
        let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 8, "run ids are unique");
        assert!(
            runs[0].run_id.contains("segment_bytes64k"),
            "{}",
            runs[0].run_id
        );
        assert!(runs.iter().any(|r| matches!(&r.workload,
            Workload::Ds { params, .. } if params.matches == 20 && params.tick_hz == 60.0)));
        // No list: run ids unchanged.
        assert_eq!(
            runs_of("[[run]]\nengine = \"null\"").unwrap()[0].run_id,
            "01-null"
        );
    }

    #[test]
    fn repeats_interleave() {
        let mut runs =
            runs_of("repeat = 2\n[[run]]\nengine = [\"null\", \"buffered\"]\nmatches = [8, 16]")
                .unwrap();
        assert_eq!(runs.len(), 4);
        apply_repeat(&mut runs, 3);
        let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids.len(), 12);
        assert_eq!(ids[0], "01-null-matches8-r1");
        assert_eq!(ids[3], "04-buffered-matches16-r1");
        assert_eq!(ids[4], "05-null-matches8-r2");
        assert_eq!(ids[11], "12-buffered-matches16-r3");
        let configs: Vec<String> = runs.iter().map(|r| r.config_id()).collect();
        assert_eq!(configs[0], "01-null-matches8");
        assert_eq!(configs[4], configs[0]);
        assert_eq!(configs[8], configs[0]);
        assert_eq!(configs[11], "04-buffered-matches16");
        let reps: Vec<u32> = runs.iter().map(|r| r.repeat).collect();
        assert_eq!(reps, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        let mut once = runs_of("[[run]]\nengine = \"null\"").unwrap();
        apply_repeat(&mut once, 1);
        assert_eq!(once[0].run_id, "01-null");
        assert_eq!(once[0].config_id(), "01-null");
    }

    #[test]
    fn suite_repeat_is_checked() {
        let s = Suite::parse("repeat = 5\n[[run]]\nengine = \"null\"", "t").unwrap();
        assert_eq!(s.repeat, Some(5));
        for bad in ["0", "101", "\"5\"", "2.5"] {
            let e = Suite::parse(&format!("repeat = {bad}\n[[run]]\nengine = \"null\""), "t")
                .unwrap_err();
            assert!(
                e.0.contains("`repeat`: must be an integer from 1 to 100"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_sweeps_name_the_field() {
        let e = runs_of("[[run]]\nengine = \"null\"\nmatches = []").unwrap_err();
        assert!(e.0.contains("field `matches`: empty list"), "{e}");
        let e = runs_of("[[run]]\nengine = \"null\"\nmatches = [250, \"many\"]").unwrap_err();
        assert!(e.0.contains("field `matches`"), "{e}");
        let e = runs_of("[[run]]\nengine = \"null\"\nmatches = [250, [1]]").unwrap_err();
        assert!(e.0.contains("field `matches`"), "{e}");
        let e = runs_of("[[run]]\nengine = \"null\"\nmatches = [250, 2.5]").unwrap_err();
        assert!(e.0.contains("field `matches`"), "{e}");
        let e =
            runs_of("[[run]]\nengine = \"null\"\ndurability = [\"every\", \"none\"]").unwrap_err();
        assert!(e.0.contains("field `durability`: a list (sweep)"), "{e}");
    }

    #[test]
    fn unknown_field_names_nearest() {
        let e = runs_of("[[run]]\nengine = \"null\"\nduraton = 3").unwrap_err();
        assert!(
            e.0.contains("unknown field `duraton`; did you mean `duration`?"),
            "{e}"
        );
        let e = runs_of("[defaults]\nmatchs = 3\n[[run]]\nengine = \"null\"").unwrap_err();
        assert!(e.0.contains("`matches`"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = runs_of("[[run]]\nengine = \"null\"\nsegment_bytes = \"12 parsecs\"").unwrap_err();
        assert!(e.0.contains("segment_bytes"), "{e}");
        let e = runs_of("[[run]]\nengine = \"nul\"").unwrap_err();
        assert!(e.0.contains("did you mean `null`"), "{e}");
        let e = runs_of("[[run]]\nengine = \"null\"\nworkload = \"fps-64tick\"").unwrap_err();
        assert!(e.0.contains("unknown workload"), "{e}");
        let e =
            runs_of("[[run]]\nengine = \"null\"\nworkload = \"micro\"\nmatches = 3").unwrap_err();
        assert!(e.0.contains("does not apply"), "{e}");
        // A DS default does not stop a micro run.
        let r =
            runs_of("[defaults]\nmatches = 3\n[[run]]\nengine = \"null\"\nworkload = \"micro\"")
                .unwrap();
        assert_eq!(r[0].workload.name(), "micro:randread");
        let e = runs_of("[[run]]\nengine = \"null\"\ndurability = \"sometimes\"").unwrap_err();
        assert!(e.0.contains("durability"), "{e}");
        assert!(runs_of("this is not toml")
            .unwrap_err()
            .0
            .contains("not valid TOML"));
        assert!(runs_of("name = \"x\"")
            .unwrap_err()
            .0
            .contains("no [[run]]"));
    }

    #[test]
    fn cli_overrides_suite() {
        let s = Suite::parse("[[run]]\nengine = \"buffered\"\nduration = 9", "t").unwrap();
        let mut cli = RawFields::new();
        cli.insert("duration", toml::Value::String("3s".into()));
        let runs = expand(&s, &cli, &["null".to_string()]).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].engine.name(), "null");
        assert_eq!(runs[0].duration_s, 3.0);
    }

    #[test]
    fn durability_parses() {
        assert_eq!(
            Durability::parse("interval:250").unwrap(),
            Durability::Interval { ms: 250.0 }
        );
        assert_eq!(Durability::parse("dsync").unwrap(), Durability::Dsync);
        assert!(Durability::parse("interval:").is_err());
        assert!(Durability::parse("interval:-5").is_err());
    }

    #[test]
    fn quick_fits_budget() {
        let mut runs = expand(&Suite::embedded(), &RawFields::new(), &[]).unwrap();
        apply_quick(&mut runs);
        let total: f64 = runs.iter().map(|r| r.duration_s + r.warmup_s).sum();
        assert!(
            total <= QUICK_BUDGET_S * 0.6,
            "quick windows sum to {total}s"
        );
    }

    #[test]
    fn every_field_has_a_unique_name() {
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
    }

    #[test]
    fn read_side_fields_and_presets() {
        let runs = runs_of(
            "[[run]]\nengine = \"null\"\nworkload = \"replay-heavy\"\nread_bytes = \"64k\"\nread_pacing = \"1x\"\nprefill_matches = 10",
        )
        .unwrap();
        let Workload::Ds { reads, params, .. } = &runs[0].workload else {
            panic!("a DS run")
        };
        assert_eq!(reads.reads_per_match, 2.0);
        assert_eq!(reads.live_viewers, 20);
        assert_eq!(reads.mix.live_pct, 10.0);
        assert_eq!(reads.read_bytes, 64 << 10);
        assert_eq!(reads.pacing, Pacing::Playback);
        assert_eq!(reads.prefill_matches, 10);
        assert!(reads.active(params));
        let opts = runs[0].options_json();
        assert_eq!(opts["workload"]["reads"]["live_viewers"], 20);
        let e = runs_of("[[run]]\nengine = \"null\"\nread_mix = \"1/2/3\"").unwrap_err();
        assert!(e.0.contains("read_mix"), "{e}");
        let e = runs_of("[[run]]\nengine = \"null\"\nprefill_match_bytes = 12").unwrap_err();
        assert!(e.0.contains("prefill_match_bytes"), "{e}");
        let e = runs_of("[[run]]\nengine = \"null\"\nworkload = \"micro\"\nreads_per_s = 3")
            .unwrap_err();
        assert!(e.0.contains("does not apply"), "{e}");
    }

    #[test]
    fn quick_shrinks_the_prefill() {
        let mut runs = expand(&Suite::embedded(), &RawFields::new(), &[]).unwrap();
        let Workload::Ds { reads, .. } = &runs[0].workload else {
            panic!("a DS run")
        };
        assert_eq!(
            u64::from(reads.prefill_matches) * reads.prefill_match_bytes,
            200 << 20,
            "200 MiB by default"
        );
        apply_quick(&mut runs);
        for r in &runs {
            let Workload::Ds { reads, .. } = &r.workload else {
                panic!("a DS run")
            };
            assert_eq!(reads.prefill_matches, QUICK_PREFILL_MATCHES);
            assert_eq!(reads.prefill_match_bytes, QUICK_PREFILL_MATCH_BYTES);
        }
    }

    // -- issue 10: placement --
    #[test]
    fn helper_placement_knobs_parse_with_all_as_default() {
        let knob = |variant: &str, name: &str| {
            EngineSpec::parse(variant)
                .unwrap()
                .knob_values()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .unwrap()
        };
        assert_eq!(knob("buffered", "pool_cpus"), "all");
        assert_eq!(knob("buffered:pool_cpus=worker", "pool_cpus"), "worker");
        assert_eq!(knob("tokio", "pool_cpus"), "all");
        assert_eq!(knob("tokio:pool_cpus=worker", "pool_cpus"), "worker");
        assert_eq!(knob("uring", "iowq_cpus"), "all");
        assert_eq!(knob("uring:iowq_cpus=worker", "iowq_cpus"), "worker");
        for bad in [
            "buffered:pool_cpus=any",
            "tokio:pool_cpus=",
            "uring:iowq_cpus=1",
        ] {
            let e = EngineSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("all") && e.contains("worker"), "{bad}: {e}");
        }
    }
}
