//! `snapbench`: which I/O engine should a replay recorder use? Reads top to bottom: parse and
//! validate everything (exit 2 on bad input, before any file is written), then run, writing
//! results after every run, then print the comparison table.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::{Arg, ArgAction, ArgMatches, Command};

use snapbench::driver::INTERRUPTED;
use snapbench::error::FsError;
use snapbench::plan::{self, BadInput, FieldKind, Global, Plan, RawFields, Suite, FIELDS};
use snapbench::results::{utc_now, ResultsDir, SummaryRow};
use snapbench::run::{self, Ending, Progress};
use snapbench::{machine, report, search, snaplog};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::Relaxed);
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// The arguments `run` and `search` share: the suite, folders, and every suite field as a flag.
fn suite_command(name: &'static str, about: &'static str) -> Command {
    let mut run = Command::new(name)
        .about(about)
        .arg(
            Arg::new("suite")
                .value_name("SUITE.toml")
                .help("suite file"),
        )
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("PATH")
                .default_value("./snapbench-data")
                .help("where engines create their files"),
        )
        .arg(
            Arg::new("out")
                .long("out")
                .value_name("PATH")
                .help("results folder [results/<UTC>-<suite>]"),
        )
        .arg(
            Arg::new("force")
                .long("force")
                .action(ArgAction::SetTrue)
                .help("overwrite an --out folder that holds results"),
        )
        .arg(
            Arg::new("repeat")
                .long("repeat")
                .value_name("N")
                .allow_negative_numbers(true)
                .help("run each run N times, interleaved (A B C A B C …), 1 to 100 [suite's `repeat`, 1]"),
        )
        .arg(
            Arg::new("quick")
                .long("quick")
                .action(ArgAction::SetTrue)
                .help("the same suite in at most 60 seconds"),
        );
    for f in FIELDS {
        let flag = f.name.replace('_', "-");
        let mut arg = Arg::new(f.name).long(flag).help(f.help);
        arg = match f.kind {
            FieldKind::Engines => arg.action(ArgAction::Append).value_name("VARIANT"),
            FieldKind::Bool => arg
                .num_args(0..=1)
                .default_missing_value("true")
                .value_name("BOOL"),
            _ => arg.value_name("VALUE").allow_negative_numbers(true),
        };
        run = run.arg(arg);
    }
    run
}

fn cli() -> Command {
    let run = suite_command(
        "run",
        "Run a suite (the embedded default suite when no file is given)",
    );
    let search = suite_command(
        "search",
        "Find the largest matches (or reads_per_s with --slo-on read) each engine variant carries under a p99 SLO: bracket [last pass, first fail]",
    )
    .arg(
        Arg::new("slo_p99_ms")
            .long("slo-p99-ms")
            .value_name("MS")
            .help("p99 limit, ms, of the latency --slo-on names (required)"),
    )
    .arg(
        Arg::new("slo_ack_p99_ms")
            .long("slo-ack-p99-ms")
            .value_name("MS")
            .help("also require ack p99 (intended time to durable) at most this, ms (joint SLO)"),
    )
    .arg(
        Arg::new("slo_on")
            .long("slo-on")
            .value_name("SIDE")
            .value_parser(["write", "ack", "read"])
            .default_value("write")
            .help("what --slo-p99-ms limits: write p99, ack p99, or replay reads' time-to-first-byte p99 (read: searches reads_per_s at fixed matches)"),
    )
    // -- issue 10: search --slo-on read --
    .arg(
        Arg::new("slo_write_p99_ms")
            .long("slo-write-p99-ms")
            .value_name("MS")
            .help("with --slo-on read: also require write p99 at most this, ms (joint SLO)"),
    )
    .arg(
        Arg::new("start")
            .long("start")
            .value_name("N")
            .default_value("64")
            .help("first load tried (matches; reads_per_s with --slo-on read)"),
    )
    .arg(
        Arg::new("growth")
            .long("growth")
            .value_name("F")
            .default_value("2")
            .help("growth factor per step until the first fail, above 1"),
    )
    .arg(
        Arg::new("max")
            .long("max")
            .value_name("N")
            .default_value("16384")
            .help("upper bound of the load (matches; reads_per_s with --slo-on read): a pass there ends the search"),
    );
    Command::new("snapbench")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Replay-recorder I/O benchmark: engines side by side on the DS snapshot workload")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(run)
        .subcommand(search)
        .subcommand(
            Command::new("engines")
                .about("List engines, their knobs, and what this machine supports (probed)")
                .arg(
                    Arg::new("dir")
                        .long("dir")
                        .value_name("PATH")
                        .default_value("./snapbench-data")
                        .help("target to probe (its nearest existing folder)"),
                ),
        )
        .subcommand(
            Command::new("report")
                .about("Draw the plots and write report.md and report.html of a results folder (or a set of them)")
                .arg(
                    Arg::new("results")
                        .required(true)
                        .value_name("RESULTS")
                        .help("results folder, or a folder of results folders"),
                ),
        )
        .subcommand(
            Command::new("compare")
                .about("B against A: throughput, p99, CPU and capacity per variant, workload and load, each faster / slower / within noise by the noise rule")
                .arg(Arg::new("a").required(true).value_name("A").help("baseline results folder (or set)"))
                .arg(Arg::new("b").required(true).value_name("B").help("results folder (or set) compared with it"))
                .arg(
                    Arg::new("fail_on_regression")
                        .long("fail-on-regression")
                        .allow_negative_numbers(true)
                        .value_name("PCT")
                        .help("exit 1 when B is slower than A beyond noise by at least PCT percent on any figure"),
                ),
        )
        .subcommand(
            Command::new("recommend")
                .about("Which engine to run for a p99 SLO (and a CPU budget), from search results where the folder has them, else from the runs that met the SLO")
                .arg(Arg::new("results").required(true).value_name("RESULTS").help("results folder, or a folder of results folders"))
                .arg(
                    Arg::new("slo_p99_ms")
                        .long("slo-p99-ms")
                        .required(true)
                        .allow_negative_numbers(true)
                        .value_name("MS")
                        .help("p99 limit, ms, of the latency --slo-on names"),
                )
                .arg(
                    Arg::new("slo_on")
                        .long("slo-on")
                        .value_name("SIDE")
                        .value_parser(["write", "ack"])
                        .default_value("write")
                        .help("what --slo-p99-ms limits: write p99 or durable-ack p99"),
                )
                .arg(
                    Arg::new("cpu_budget")
                        .long("cpu-budget")
                        .allow_negative_numbers(true)
                        .value_name("CORES")
                        .help("most process CPU, cores, the engine may use at the load it carries"),
                ),
        )
        .subcommand(
            Command::new("verify")
                .about("Check SNAPLOG1 logs: exit 0 clean, 1 damaged, 2 bad path")
                .arg(Arg::new("path").required(true).value_name("PATH"))
                .arg(
                    Arg::new("recover")
                        .long("recover")
                        .action(ArgAction::SetTrue)
                        .help("count torn logs (a crash mid-write) as recoverable, not damaged"),
                ),
        )
}

fn main() -> ExitCode {
    let matches = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) if e.use_stderr() => {
            // One line: clap's problem, its tip if it has one, and where the help is.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("error: bad arguments").to_string();
            // "the following required arguments were not provided:" lists them on the lines
            // after it: keep them on the one line.
            if first.ends_with(':') {
                let named: Vec<&str> = text
                    .lines()
                    .skip(1)
                    .map(str::trim)
                    .take_while(|l| !l.is_empty() && !l.starts_with("Usage"))
                    .collect();
                if !named.is_empty() {
                    first = format!("{first} {}", named.join(" "));
                }
            }
            let tip = lines
                .find(|l| l.starts_with("tip:") && l.contains("similar"))
                .map(|t| format!("; {t}"))
                .unwrap_or_default();
            eprintln!("{first}{tip} (see `snapbench --help`)");
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match matches.subcommand() {
        Some(("run", m)) => cmd_run(m),
        Some(("search", m)) => cmd_search(m),
        Some(("engines", m)) => cmd_engines(m),
        Some(("verify", m)) => cmd_verify(m),
        Some(("report", m)) => cmd_report(m),
        Some(("compare", m)) => cmd_compare(m),
        Some(("recommend", m)) => cmd_recommend(m),
        _ => ExitCode::from(2),
    }
}

fn bad_input(e: &BadInput) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Stage one: parse and validate everything into a plan.
fn build_plan(m: &ArgMatches) -> Result<Plan, BadInput> {
    build_plan_with(m, None)
}

/// [`build_plan`], where `window` (measured s, warm-up s) replaces the suite's durations unless
/// the flags give them, and `--quick` does not shrink the plan (`search` sets its own).
fn build_plan_with(m: &ArgMatches, window: Option<(f64, f64)>) -> Result<Plan, BadInput> {
    let (suite, embedded) = match m.get_one::<String>("suite") {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                BadInput(format!(
                    "cannot read suite {path}: {e}; give a readable TOML file"
                ))
            })?;
            (Suite::parse(&text, path)?, false)
        }
        None => (Suite::embedded(), true),
    };
    let mut cli = RawFields::new();
    let mut engines = Vec::new();
    for f in FIELDS {
        if f.kind == FieldKind::Engines {
            if let Some(vs) = m.get_many::<String>(f.name) {
                engines.extend(vs.cloned());
            }
        } else if let Some(v) = m.get_one::<String>(f.name) {
            cli.insert(f.name, toml::Value::String(v.clone()));
        }
    }
    let overridden = !cli.is_empty() || !engines.is_empty() || m.contains_id("repeat");
    if let Some((duration_s, warmup_s)) = window {
        for (name, v) in [("duration", duration_s), ("warmup", warmup_s)] {
            if !cli.contains_key(name) {
                cli.insert(name, toml::Value::String(v.to_string()));
            }
        }
    }
    let mut runs = plan::expand(&suite, &cli, &engines)?;
    let repeat = match m.get_one::<String>("repeat") {
        Some(t) => plan::check_repeat(t.trim().parse().ok(), "--repeat")?,
        None => suite.repeat.unwrap_or(1),
    };
    let quick = m.get_flag("quick");
    let shrink = quick && window.is_none();
    let folder = results_name(
        m.get_one::<String>("suite").map(Path::new),
        overridden,
        quick,
    );
    if shrink {
        plan::apply_quick(&mut runs);
    }
    let mut plan = Plan {
        suite: suite.name.clone(),
        runs,
        skipped: Vec::new(),
        embedded: embedded && engines.is_empty(),
        global: Global {
            dir: PathBuf::from(m.get_one::<String>("dir").expect("has default")),
            out: m.get_one::<String>("out").map(PathBuf::from),
            force: m.get_flag("force"),
            quick,
        },
        results_name: folder,
    };
    plan::check_target(&mut plan)?;
    plan::apply_repeat(&mut plan.runs, repeat);
    if shrink {
        // Variants may have been dropped: spread the budget over what remains.
        plan::apply_quick(&mut plan.runs);
    }
    Ok(plan)
}

/// The suite part of the default results folder name: the suite file's stem; for the embedded
/// suite `default` when it runs unchanged, `default-custom` when flags override its fields or
/// engines; `-quick` appended under `--quick`. File-name safe.
fn results_name(suite_path: Option<&Path>, overridden: bool, quick: bool) -> String {
    let mut name = match suite_path {
        Some(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "suite".into()),
        None if overridden => "default-custom".into(),
        None => "default".into(),
    };
    if quick {
        name.push_str("-quick");
    }
    plan::sanitize(&name)
}

struct CliProgress {
    bar: indicatif::ProgressBar,
    tty: bool,
    base_s: u64,
    run_len_s: u64,
    // -- issue 10: placement (progress on long runs) --
    /// Seconds between status lines when stderr is not a terminal.
    status_every_s: u64,
    /// Elapsed second of the current run at which the next status line is due.
    next_status_s: u64,
    /// `[n/m] run_id` of the current run.
    run_label: String,
}

/// Seconds between status lines when stderr is not a terminal (a hidden
/// `SNAPBENCH_STATUS_EVERY_S` overrides it, for tests).
const STATUS_EVERY_S: u64 = 10;

impl CliProgress {
    fn new(total_s: u64) -> CliProgress {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let b = indicatif::ProgressBar::new(total_s);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {msg:32} [{bar:30}] {pos}/{len} s  eta {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let status_every_s = std::env::var("SNAPBENCH_STATUS_EVERY_S")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(STATUS_EVERY_S);
        CliProgress {
            bar,
            tty,
            base_s: 0,
            run_len_s: 0,
            status_every_s,
            next_status_s: status_every_s,
            run_label: String::new(),
        }
    }

    fn line(&self, text: &str) {
        if self.tty {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

impl Progress for CliProgress {
    fn run_started(&mut self, run: &plan::RunPlan, n: usize, of: usize) {
        self.run_len_s = (run.warmup_s + run.duration_s).ceil() as u64;
        self.run_label = format!("[{n}/{of}] {}", run.run_id);
        self.next_status_s = self.status_every_s;
        self.bar.set_message(self.run_label.clone());
        self.bar.set_position(self.base_s);
        self.line(&format!(
            "[{n}/{of}] {} on {}: {:.0} s warm-up + {:.0} s measured",
            run.engine.variant(),
            run.workload.name(),
            run.warmup_s,
            run.duration_s
        ));
    }

    fn second(&mut self, second: u64, _ops: f64) {
        self.bar
            .set_position(self.base_s + second.min(self.run_len_s));
    }

    fn second_report(&mut self, r: &run::SecondReport) {
        if self.tty || r.elapsed_s < self.next_status_s {
            return;
        }
        self.next_status_s = r.elapsed_s + self.status_every_s;
        self.line(&r.status_line(&self.run_label, self.run_len_s));
    }

    fn run_finished(&mut self, row: &SummaryRow) {
        self.base_s += self.run_len_s;
        self.bar.set_position(self.base_s);
        let mut text = format!(
            "      {} {}: {:.0} ops/s, p99 {} ms, ack p99 {} ms, {:.2} cores",
            row.run_id,
            row.status,
            row.ops_per_s,
            ms(row.lat_p99_us),
            ms(row.ack_p99_us),
            row.cpu_cores.unwrap_or(0.0)
        );
        if !row.error.is_empty() {
            text.push_str(&format!("\n      error: {}", row.error));
        }
        self.line(&text);
    }
}

fn ms(us: Option<f64>) -> String {
    match us {
        Some(v) => format!("{:.3}", v / 1000.0),
        None => "-".into(),
    }
}

fn print_table(rows: &[SummaryRow]) {
    print!("{}", table_text(rows));
}

fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Offered snapshots per second of a row, from its schedule's count in the window (DS only).
fn offered_per_s(r: &SummaryRow) -> Option<f64> {
    (r.offered_ops > 0 && r.duration_s > 0.0).then(|| r.offered_ops as f64 / r.duration_s)
}

/// The end-of-run table: the variant, the key parameters that differ between rows (so runs of
/// one engine at 250/500/750 matches do not look alike), then the figures, every latency header
/// with its unit. Offered load and max lag appear when some row fell behind its schedule.
fn table_text(rows: &[SummaryRow]) -> String {
    // (header, right-aligned, one cell per row)
    type Col = (&'static str, bool, Vec<String>);
    let cells = |f: &dyn Fn(&SummaryRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let mut cols: Vec<Col> = vec![("variant", false, cells(&|r| r.variant.clone()))];
    let keys: [Col; 9] = [
        ("workload", false, cells(&|r| r.workload.clone())),
        ("matches", true, cells(&|r| opt(r.matches))),
        ("tick_hz", true, cells(&|r| opt(r.tick_hz))),
        ("record_hz", true, cells(&|r| opt(r.record_hz))),
        (
            "durability",
            false,
            cells(&|r| {
                if r.durability.is_empty() {
                    "-".into()
                } else {
                    r.durability.clone()
                }
            }),
        ),
        ("workers", true, cells(&|r| r.workers.to_string())),
        ("tail", false, cells(&|r| r.tail.clone())),
        ("prealloc", false, cells(&|r| r.prealloc.clone())),
        ("repeat", true, cells(&|r| r.repeat.to_string())),
    ];
    for key in keys {
        if key.2.iter().any(|c| c != &key.2[0]) {
            cols.push(key);
        }
    }
    cols.push(("status", false, cells(&|r| r.status.to_string())));
    cols.push(("ops/s", true, cells(&|r| format!("{:.0}", r.ops_per_s))));
    // Rounded as shown: a row behind its schedule by at least 0.5 %.
    let behind = rows
        .iter()
        .any(|r| offered_per_s(r).is_some_and(|o| (o - r.ops_per_s).abs() > 0.005 * o.max(1.0)));
    if behind {
        cols.push((
            "offered/s",
            true,
            cells(&|r| opt(offered_per_s(r).map(|o| format!("{o:.0}")))),
        ));
    }
    cols.push(("MiB/s", true, cells(&|r| format!("{:.2}", r.mib_per_s))));
    cols.push(("p50 ms", true, cells(&|r| ms(r.lat_p50_us))));
    cols.push(("p99 ms", true, cells(&|r| ms(r.lat_p99_us))));
    cols.push(("p99.9 ms", true, cells(&|r| ms(r.lat_p999_us))));
    cols.push(("ack p99 ms", true, cells(&|r| ms(r.ack_p99_us))));
    if behind || rows.iter().any(|r| r.saturated) {
        cols.push((
            "max lag ms",
            true,
            cells(&|r| format!("{:.1}", r.max_lag_ms)),
        ));
    }
    cols.push((
        "cores",
        true,
        cells(&|r| format!("{:.2}", r.cpu_cores.unwrap_or(0.0))),
    ));
    cols.push((
        "cpu us/op",
        true,
        cells(&|r| opt(r.cpu_us_per_op.map(|v| format!("{v:.2}")))),
    ));
    if rows.iter().any(|r| r.harness_us_per_op.is_some()) {
        // The cost split of DS runs (docs/harness-cost.md): harness / recorder / engine.
        cols.push((
            "harness/rec/eng us",
            true,
            cells(&|r| match (
                r.harness_us_per_op,
                r.recorder_us_per_op,
                r.engine_us_per_op,
            ) {
                (Some(h), Some(c), Some(e)) => format!("{h:.2}/{c:.2}/{e:.2}"),
                _ => "-".to_string(),
            }),
        ));
    }
    let widths: Vec<usize> = cols
        .iter()
        .map(|(h, _, c)| {
            c.iter()
                .map(String::len)
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cell: &dyn Fn(usize) -> String| {
        let mut text = String::new();
        for (i, (_, right, _)) in cols.iter().enumerate() {
            let w = widths[i];
            let c = cell(i);
            if i > 0 {
                text.push_str("  ");
            }
            if *right {
                text.push_str(&format!("{c:>w$}"));
            } else {
                text.push_str(&format!("{c:<w$}"));
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&|i| cols[i].0.to_string());
    for row in 0..rows.len() {
        out.push_str(&line(&|i| cols[i].2[row].clone()));
    }
    out
}

/// Open files a DS run at `matches` may need: a file per log, plus slack for ack logs, reads
/// and the process's own.
fn files_needed(matches: u32) -> u64 {
    u64::from(matches) + 256
}

/// Raise the soft RLIMIT_NOFILE to `need` (up to the hard limit); refuse when the hard limit
/// is below it. `what` names the flag that asks for that many.
fn ensure_open_files(need: u64, what: &str) -> Result<(), BadInput> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    // None is unlimited.
    let (cur, hard) = (
        lim.current.unwrap_or(u64::MAX),
        lim.maximum.unwrap_or(u64::MAX),
    );
    if cur >= need {
        return Ok(());
    }
    if hard < need {
        return Err(BadInput(format!(
            "{what} needs about {need} open files but the hard limit RLIMIT_NOFILE is {hard}; \
             raise it (`ulimit -n {need}` as root, or limits.conf) or ask for less"
        )));
    }
    lim.current = Some(need);
    setrlimit(Resource::Nofile, lim).map_err(|e| {
        BadInput(format!(
            "{what} needs about {need} open files and RLIMIT_NOFILE could not be raised from \
             {cur}: {e}; run `ulimit -n {need}` first"
        ))
    })
}

/// The open files the plan's runs need (engines that store data hold a file per log; the null
/// engine holds none).
fn plan_files_needed(plan: &Plan) -> u64 {
    plan.runs
        .iter()
        .filter(|r| r.engine.name() != "null")
        .filter_map(|r| match &r.workload {
            plan::Workload::Ds { params, .. } => Some(files_needed(params.matches)),
            plan::Workload::Micro(_) => None,
        })
        .max()
        .unwrap_or(0)
}

fn cmd_run(m: &ArgMatches) -> ExitCode {
    let plan = match build_plan(m) {
        Ok(p) => p,
        Err(e) => return bad_input(&e),
    };
    if let Err(e) = ensure_open_files(plan_files_needed(&plan), "--matches") {
        return bad_input(&e);
    }
    for why in &plan.skipped {
        eprintln!("note: skipped: {why}");
    }
    let mut warned = std::collections::BTreeSet::new();
    for r in &plan.runs {
        for w in r.engine.warnings() {
            if warned.insert(w.clone()) {
                eprintln!("warning: {w}");
            }
        }
    }
    install_signal_handlers();
    let (start_iso, out) = match results_folder(&plan) {
        Ok(v) => v,
        Err(e) => return bad_input(&e),
    };
    let argv: Vec<String> = std::env::args().collect();
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut micro_files: Vec<&Path> = plan
        .runs
        .iter()
        .filter_map(|r| r.micro_file.as_deref())
        .collect();
    micro_files.sort();
    micro_files.dedup();
    let micro_file_storage: Vec<serde_json::Value> = micro_files
        .iter()
        .map(|f| machine::describe_storage(f))
        .collect();
    let mut meta = serde_json::json!({
        "schema_version": snapbench::results::SCHEMA_VERSION,
        "build": machine::build_info(),
        "argv": argv,
        "suite": plan.suite,
        "embedded_suite": plan.embedded,
        "quick": plan.global.quick,
        "repeat": plan.runs.first().map_or(1, |r| r.repeats),
        "dir": absolute(&plan.global.dir),
        "results_dir": absolute(&out),
        "suite_file": m.get_one::<String>("suite").map(|p| absolute(Path::new(p))),
        "cwd": std::env::current_dir().ok(),
        "skipped": plan.skipped,
        "runs": plan.runs.iter().map(|r| r.options_json()).collect::<Vec<_>>(),
        "seeds": plan.runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "host": machine::describe_host(),
        "storage": machine::describe_storage(&plan.global.dir),
        "fio_version": machine::fio_version(),
        // -- issue 10: micro -- the filesystem and device of each --file-path (not --dir's).
        "micro_file_storage": micro_file_storage,
        "page_cache_policy": page_cache_policy(&plan),
        "start_utc": start_iso,
        "end_utc": serde_json::Value::Null,
        "status": "running",
    });
    let mut results = match ResultsDir::create(out.clone(), meta.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot create results folder {e}");
            return ExitCode::from(1);
        }
    };
    let total_s: f64 = plan.runs.iter().map(|r| r.warmup_s + r.duration_s).sum();
    let mut progress = CliProgress::new(total_s.ceil() as u64);
    let ending = run::execute(&plan, &mut results, &mut progress);
    progress.bar.finish_and_clear();
    let ending = match ending {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            Ending::Failed
        }
    };
    meta["end_utc"] = serde_json::Value::String(utc_now().0);
    meta["status"] = serde_json::Value::String(ending.as_str().into());
    results.meta = meta;
    if let Err(e) = results.write_meta() {
        eprintln!("error: writing meta.json: {e}");
    }
    let rows: Vec<SummaryRow> = results.runs.iter().map(|r| r.row.clone()).collect();
    print_table(&rows);
    write_report(&out);
    println!("results: {}", out.display());
    match ending {
        Ending::Ok => ExitCode::SUCCESS,
        Ending::Failed => ExitCode::from(1),
        Ending::Interrupted => {
            let sig = SIGNAL.load(Ordering::Relaxed);
            ExitCode::from(if sig == libc::SIGTERM { 143 } else { 130 })
        }
    }
}

/// Measured and warm-up seconds of each `search` run, by default and under `--quick`.
const SEARCH_WINDOW_S: (f64, f64) = (20.0, 5.0);
const SEARCH_QUICK_WINDOW_S: (f64, f64) = (3.0, 1.0);

/// The largest reads_per_s a read search may try (the workload's own bound).
const MAX_SEARCH_READS_PER_S: u32 = 1_000_000;

/// A positive number from flag `name`, or the one-line problem.
fn positive_ms(m: &ArgMatches, name: &str, flag: &str) -> Result<Option<f64>, BadInput> {
    positive_number(m, name, flag, "a number of milliseconds such as 50")
}

/// `search`'s own flags, checked: the SLO and the search's bounds.
fn search_settings(m: &ArgMatches) -> Result<(search::Slo, search::SearchConfig), BadInput> {
    let on = match m.get_one::<String>("slo_on").map(String::as_str) {
        Some("ack") => search::SloOn::Ack,
        Some("read") => search::SloOn::Read,
        _ => search::SloOn::Write,
    };
    let write_p99_ms = positive_ms(m, "slo_write_p99_ms", "--slo-write-p99-ms")?;
    if on != search::SloOn::Read && write_p99_ms.is_some() {
        return Err(BadInput(format!(
            "--slo-write-p99-ms goes with --slo-on read; with --slo-on {}, drop it ({})",
            on.as_str(),
            if on == search::SloOn::Write {
                "--slo-p99-ms is the write limit"
            } else {
                "--slo-p99-ms is the ack limit"
            }
        )));
    }
    let p99_ms = positive_ms(m, "slo_p99_ms", "--slo-p99-ms")?
        .ok_or_else(|| BadInput("--slo-p99-ms is required (e.g. --slo-p99-ms 50)".into()))?;
    let ack_p99_ms = positive_ms(m, "slo_ack_p99_ms", "--slo-ack-p99-ms")?;
    if on == search::SloOn::Ack && ack_p99_ms.is_some() {
        return Err(BadInput(
            "--slo-ack-p99-ms goes with --slo-on write; with --slo-on ack, --slo-p99-ms is the ack limit"
                .into(),
        ));
    }
    if m.contains_id("repeat") {
        return Err(BadInput(format!(
            "search runs {} repeats per step itself; drop --repeat",
            search::RUNS_PER_STEP
        )));
    }
    if on == search::SloOn::Read {
        if m.contains_id("reads_per_s") {
            return Err(BadInput(
                "search --slo-on read chooses reads_per_s itself; drop --reads-per-s and give --start/--max".into(),
            ));
        }
    } else if m.contains_id("matches") {
        return Err(BadInput(
            "search chooses matches itself; drop --matches and give --start/--max".into(),
        ));
    }
    let unit = if on == search::SloOn::Read {
        "reads per second"
    } else {
        "matches"
    };
    let uint = |name: &str| -> Result<u32, BadInput> {
        let text = m.get_one::<String>(name).expect("has default");
        text.trim().parse::<u32>().map_err(|_| {
            BadInput(format!(
                "--{name} {text}: give a whole number of {unit}, at least 1"
            ))
        })
    };
    let growth_text = m.get_one::<String>("growth").expect("has default");
    let growth = growth_text.trim().parse::<f64>().map_err(|_| {
        BadInput(format!(
            "--growth {growth_text}: give a number above 1 (e.g. 2)"
        ))
    })?;
    let cfg = search::SearchConfig {
        start: uint("start")?,
        growth,
        max: uint("max")?,
        resolution: 0.05,
    };
    cfg.validate().map_err(BadInput)?;
    if on == search::SloOn::Read && cfg.max > MAX_SEARCH_READS_PER_S {
        return Err(BadInput(format!(
            "--max {}: with --slo-on read the load is reads_per_s, at most {MAX_SEARCH_READS_PER_S}; give a smaller --max",
            cfg.max
        )));
    }
    Ok((
        search::Slo {
            p99_ms,
            ack_p99_ms,
            on,
            write_p99_ms,
        },
        cfg,
    ))
}

/// Per-run lines of a search on stderr.
struct SearchProgress;

impl Progress for SearchProgress {
    fn run_started(&mut self, _run: &plan::RunPlan, _n: usize, _of: usize) {}

    fn second(&mut self, _second: u64, _ops: f64) {}

    fn run_finished(&mut self, row: &SummaryRow) {
        let reads = if row.reads > 0 || row.read_ttfb_p99_us.is_some() {
            format!(
                ", {:.0} reads/s, read ttfb p99 {} ms",
                row.reads_per_s,
                ms(row.read_ttfb_p99_us)
            )
        } else {
            String::new()
        };
        eprintln!(
            "      {} {}: {:.0} ops/s, p99 {} ms, ack p99 {} ms{reads}, worker_util {}",
            row.run_id,
            row.status,
            row.ops_per_s,
            ms(row.lat_p99_us),
            ms(row.ack_p99_us),
            opt(row.worker_util.map(|u| format!("{u:.2}")))
        );
        if !row.error.is_empty() {
            eprintln!("      error: {}", row.error);
        }
    }
}

/// One engine variant being searched.
struct Searching {
    base: plan::RunPlan,
    search: search::Search,
    /// Each step's rows, by load.
    steps: std::collections::BTreeMap<u32, Vec<SummaryRow>>,
    outcome: Option<search::Outcome>,
}

/// `snapbench search`: for each engine variant, the bracket [last pass, first fail] of matches
/// under the SLO, each step 3 interleaved runs judged on their median; every run's rows go
/// into the normal results files, the brackets into search.csv.
/// meta.json's `page_cache_policy`: what runs do to the page cache before measuring, and what no
/// guest can do (the host's cache of a virtual disk).
fn page_cache_policy(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "drop_caches": plan.runs.iter().any(|r| r.drop_caches),
        "micro_file_invalidated": plan.runs.iter().any(|r| matches!(r.workload, snapbench::plan::Workload::Micro(_))),
        "how": "micro runs fsync each laid-out (or given) file and advise POSIX_FADV_DONTNEED before measuring, O_DIRECT engines included; --drop-caches also syncs and drops the page cache before each window as root, else advises DONTNEED on the run's files; each run's summary.json page_cache says what was done",
        "note": snapbench::run::summary::HOST_CACHE_NOTE,
    })
}

/// The start time (ISO) and the results folder of `run` or `search`: `--out`, else
/// `results/<UTC>-<suite>`, refused when it already holds results and `--force` is not given.
fn results_folder(plan: &Plan) -> Result<(String, PathBuf), BadInput> {
    let (start_iso, start_compact) = utc_now();
    let out = plan.global.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{start_compact}-{}", plan.results_name))
    });
    if plan.global.out.is_none() && snapbench::results::holds_results(&out) && !plan.global.force {
        return Err(BadInput(format!(
            "{} already holds results; pass --out or --force",
            out.display()
        )));
    }
    Ok((start_iso, out))
}

fn cmd_search(m: &ArgMatches) -> ExitCode {
    let (slo, cfg) = match search_settings(m) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    let quick = m.get_flag("quick");
    let window = if quick {
        SEARCH_QUICK_WINDOW_S
    } else {
        SEARCH_WINDOW_S
    };
    let mut plan = match build_plan_with(m, Some(window)) {
        Ok(p) => p,
        Err(e) => return bad_input(&e),
    };
    for why in &plan.skipped {
        eprintln!("note: skipped: {why}");
    }
    if plan.runs.is_empty() {
        return bad_input(&BadInput(
            "no engine variant left to search; give --engine with a supported engine".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &plan.runs {
        if !matches!(r.workload, plan::Workload::Ds { .. }) {
            return bad_input(&BadInput(format!(
                "search needs a DS workload, not {}; give --workload fps-128tick or another preset",
                r.workload.name()
            )));
        }
        if !seen.insert(r.engine.variant()) {
            return bad_input(&BadInput(format!(
                "{} appears twice in the plan; search takes one value per field (no sweeps)",
                r.engine.variant()
            )));
        }
    }
    let reading = slo.on == search::SloOn::Read;
    if reading {
        if let Some(r) = plan.runs.iter().find(|r| r.engine.name() == "null") {
            return bad_input(&BadInput(format!(
                "--slo-on read needs an engine that stores data, to verify what reads return; {} does not: give another --engine",
                r.engine.variant()
            )));
        }
        // The load is reads_per_s: matches stay what the suite or flags give.
        for r in &plan.runs {
            let given = match &r.workload {
                plan::Workload::Ds { reads, .. } => reads.reads_per_s,
                plan::Workload::Micro(_) => None,
            };
            if let Some(v) = given {
                eprintln!(
                    "note: {}: the suite's reads_per_s {v} is replaced by the searched load",
                    r.engine.variant()
                );
            }
        }
        if let Err(e) = ensure_open_files(plan_files_needed(&plan), "--matches") {
            return bad_input(&e);
        }
    } else if plan.runs.iter().any(|r| r.engine.name() != "null") {
        if let Err(e) = ensure_open_files(files_needed(cfg.max), "--max") {
            return bad_input(&e);
        }
    }
    plan.results_name = format!("search-{}", plan.results_name);
    let (duration_s, warmup_s) = (plan.runs[0].duration_s, plan.runs[0].warmup_s);
    if quick {
        eprintln!(
            "note: --quick: each run {warmup_s} s warm-up + {duration_s} s measured (default {} + {} s), {} runs per step: brackets are noisier",
            SEARCH_WINDOW_S.1, SEARCH_WINDOW_S.0, search::RUNS_PER_STEP
        );
    }
    install_signal_handlers();
    let (start_iso, out) = match results_folder(&plan) {
        Ok(v) => v,
        Err(e) => return bad_input(&e),
    };
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut meta = serde_json::json!({
        "schema_version": snapbench::results::SCHEMA_VERSION,
        "build": machine::build_info(),
        "argv": std::env::args().collect::<Vec<_>>(),
        "suite": plan.suite,
        "embedded_suite": plan.embedded,
        "quick": quick,
        "search": {
            "slo_p99_ms": slo.p99_ms,
            "slo_ack_p99_ms": slo.ack_p99_ms,
            "slo_on": slo.on.as_str(),
            "slo_write_p99_ms": slo.write_p99_ms,
            "load": slo.load_name(),
            "start": cfg.start,
            "growth": cfg.growth,
            "max": cfg.max,
            "resolution": cfg.resolution,
            "runs_per_step": search::RUNS_PER_STEP,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "device_ceiling": serde_json::Value::Null,
        },
        "dir": absolute(&plan.global.dir),
        "results_dir": absolute(&out),
        "cwd": std::env::current_dir().ok(),
        "skipped": plan.skipped,
        "page_cache_policy": page_cache_policy(&plan),
        "runs": plan.runs.iter().map(|r| r.options_json()).collect::<Vec<_>>(),
        "host": machine::describe_host(),
        "storage": machine::describe_storage(&plan.global.dir),
        "fio_version": machine::fio_version(),
        "start_utc": start_iso,
        "end_utc": serde_json::Value::Null,
        "status": "running",
    });
    let mut results = match ResultsDir::create(out.clone(), meta.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot create results folder {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&plan.global.dir) {
        eprintln!(
            "error: cannot create data folder {}: {e}",
            plan.global.dir.display()
        );
        return ExitCode::from(1);
    }
    let disk = machine::block_dev_of(&plan.global.dir).map(|b| b.name);
    let mut vars: Vec<Searching> = plan
        .runs
        .iter()
        .map(|r| Searching {
            base: r.clone(),
            search: search::Search::new(cfg).expect("validated"),
            steps: Default::default(),
            outcome: None,
        })
        .collect();
    let mut progress = SearchProgress;
    // The device's own write ceiling on this folder, for the `device` bottleneck (not for a
    // search of the null engine alone, which writes nothing).
    let ceiling = if plan.runs.iter().any(|r| r.engine.name() != "null") {
        device_ceiling(&plan.global.dir, quick, disk.as_deref(), &mut progress)
    } else {
        serde_json::json!({"why_none": "only the null engine: nothing is written"})
    };
    let ceiling_bytes_per_s = ceiling["write_bytes_per_s"].as_f64();
    results.meta["search"]["device_ceiling"] = ceiling.clone();
    meta["search"]["device_ceiling"] = ceiling;
    // Configurations (a variant at a load) and runs, numbered from 1 in the order they run.
    let (mut configs, mut run_index) = (0usize, 0usize);
    let mut ending = Ending::Ok;
    'rounds: while vars.iter().any(|v| v.outcome.is_none()) {
        // This round's load for every variant still searching.
        let mut round = Vec::new();
        for (i, v) in vars.iter_mut().enumerate() {
            if v.outcome.is_some() {
                continue;
            }
            match v.search.next() {
                search::Next::Try(n) => {
                    configs += 1;
                    round.push((i, n, configs));
                }
                search::Next::Done(o) => v.outcome = Some(o),
            }
        }
        // Interleaved: repeat k of every variant before repeat k + 1 of any.
        for k in 1..=search::RUNS_PER_STEP {
            for &(i, n, config) in &round {
                if INTERRUPTED.load(Ordering::Relaxed) {
                    ending = Ending::Interrupted;
                    break 'rounds;
                }
                let mut r = vars[i].base.clone();
                if let plan::Workload::Ds { params, reads, .. } = &mut r.workload {
                    if reading {
                        reads.reads_per_s = Some(f64::from(n));
                    } else {
                        params.matches = n;
                    }
                }
                r.swept = vec![(slo.load_name(), n.to_string())];
                r.repeats = search::RUNS_PER_STEP;
                r.repeat = k;
                run_index += 1;
                r.set_index(run_index);
                r.config = config;
                let result = run::run_one(
                    std::sync::Arc::new(r),
                    &plan.global.dir,
                    disk.as_deref(),
                    &mut progress,
                );
                progress.run_finished(&result.row);
                if result.row.status == snapbench::results::RunStatus::Interrupted {
                    ending = Ending::Interrupted;
                }
                vars[i].steps.entry(n).or_default().push(result.row.clone());
                if let Err(e) = results.push(result) {
                    eprintln!("error: {e}");
                    ending = Ending::Failed;
                    break 'rounds;
                }
                if ending == Ending::Interrupted {
                    break 'rounds;
                }
            }
        }
        for &(i, n, _) in &round {
            let v = &mut vars[i];
            let rows: Vec<&SummaryRow> = v.steps[&n].iter().collect();
            let verdict = search::judge(&rows, &slo);
            v.search.record(n, verdict.pass);
            eprintln!(
                "search {}: step {}, {} {n}: {} ({}); bracket [{}, {}]",
                v.base.engine.variant(),
                v.search.steps(),
                slo.load_name(),
                if verdict.pass { "pass" } else { "fail" },
                verdict.why,
                opt(v.search.last_pass()),
                opt(v.search.first_fail())
            );
        }
    }
    let lag_limit_ms = plan.runs[0].writer.lag_limit_ms;
    let rows: Vec<search::SearchRow> = vars
        .iter()
        .map(|v| search_row(v, &slo, quick, lag_limit_ms, ceiling_bytes_per_s))
        .collect();
    let csv_path = out.join("search.csv");
    match search::search_csv(&rows) {
        Ok(bytes) => {
            if let Err(e) = snapbench::results::write_atomic(&csv_path, &bytes) {
                eprintln!("error: writing {}: {e}", csv_path.display());
                ending = Ending::Failed;
            }
        }
        Err(e) => {
            eprintln!("error: search.csv: {e}");
            ending = Ending::Failed;
        }
    }
    meta["end_utc"] = serde_json::Value::String(utc_now().0);
    meta["status"] = serde_json::Value::String(ending.as_str().into());
    results.meta = meta;
    if let Err(e) = results.write_meta() {
        eprintln!("error: writing meta.json: {e}");
    }
    print!("{}", search_table(&rows));
    write_report(&out);
    println!("results: {}", out.display());
    match ending {
        Ending::Ok => ExitCode::SUCCESS,
        Ending::Failed => ExitCode::from(1),
        Ending::Interrupted => {
            let sig = SIGNAL.load(Ordering::Relaxed);
            ExitCode::from(if sig == libc::SIGTERM { 143 } else { 130 })
        }
    }
}

/// Engines tried, in order, for the device ceiling: the first this folder supports runs.
const CEILING_ENGINES: [&str; 3] = ["uring", "aio", "buffered:direct=true,threads=8"];

/// The device's write ceiling under `dir`: a short micro run of 1 MiB sequential O_DIRECT
/// writes, 8 in flight, through the first engine of [`CEILING_ENGINES`] supported there,
/// measured by the device's own counters. Its figures (or why there are none) for meta.json;
/// `write_bytes_per_s` is the ceiling.
fn device_ceiling(
    dir: &Path,
    quick: bool,
    disk: Option<&str>,
    progress: &mut dyn Progress,
) -> serde_json::Value {
    let (duration, warmup) = if quick { (2, 0.5) } else { (3, 1.0) };
    let engines = CEILING_ENGINES
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "name = \"device-ceiling\"\n[[run]]\nengine = [{engines}]\nworkload = \"micro\"\n\
         rw = \"write\"\nbs = \"1m\"\niodepth = 8\nfile_size = \"256m\"\n\
         duration = \"{duration}s\"\nwarmup = \"{warmup}s\"\nworkers = 1\n"
    );
    let none = |why: String| serde_json::json!({ "why_none": why });
    let runs = match Suite::parse(&text, "device-ceiling")
        .and_then(|s| plan::expand(&s, &RawFields::new(), &[]))
    {
        Ok(r) => r,
        Err(e) => return none(format!("ceiling plan: {e}")),
    };
    let mut p = Plan {
        suite: "device-ceiling".into(),
        runs,
        skipped: Vec::new(),
        // Unsupported engines are skipped, not refused.
        embedded: true,
        global: Global {
            dir: dir.to_path_buf(),
            out: None,
            force: false,
            quick,
        },
        results_name: "device-ceiling".into(),
    };
    if let Err(e) = plan::check_target(&mut p) {
        return none(format!("no engine for the ceiling here: {e}"));
    }
    let Some(mut run) = p.runs.into_iter().next() else {
        return none("no engine for the ceiling here".into());
    };
    run.run_id = "device-ceiling".into();
    eprintln!(
        "search: device ceiling on {}: {} 1 MiB sequential writes, 8 in flight, {duration} s",
        dir.display(),
        run.engine.variant()
    );
    let result = run::run_one(std::sync::Arc::new(run), dir, disk, progress);
    let row = &result.row;
    let ok = row.status == snapbench::results::RunStatus::Ok;
    let bytes_per_s = search::device_write_bytes_per_s(row).filter(|&b| b > 0.0 && ok);
    let why_none = if !ok {
        Some(format!(
            "ceiling run {}: {}",
            row.status.as_str(),
            row.error
        ))
    } else if bytes_per_s.is_none() {
        Some("no device counters for this folder".to_string())
    } else {
        None
    };
    match (bytes_per_s, &why_none) {
        (Some(b), _) => eprintln!("search: device ceiling {:.1} MiB/s", b / 1048576.0),
        (None, Some(why)) => eprintln!("search: no device ceiling ({why}): device never claimed"),
        (None, None) => {}
    }
    serde_json::json!({
        "variant": row.variant,
        "status": row.status.as_str(),
        "duration_s": row.duration_s,
        "payload_mib_per_s": row.mib_per_s,
        "device_write_bytes": row.disk_write_bytes,
        "write_bytes_per_s": bytes_per_s,
        "why_none": why_none,
    })
}

/// search.csv's row of one variant: the bracket, the figures at last pass, the bottleneck at
/// the first fail (or at the last pass when nothing failed).
fn search_row(
    v: &Searching,
    slo: &search::Slo,
    quick: bool,
    lag_limit_ms: f64,
    ceiling_bytes_per_s: Option<f64>,
) -> search::SearchRow {
    let (last_pass, first_fail) = match v.outcome {
        Some(o) => (o.last_pass(), o.first_fail()),
        // Interrupted: the bracket so far.
        None => (v.search.last_pass(), v.search.first_fail()),
    };
    let workers = v.base.workers;
    let mut row = search::SearchRow {
        engine: v.base.engine.name().to_string(),
        variant: v.base.engine.variant(),
        workload: v.base.workload.name(),
        workers,
        slo_p99_ms: slo.p99_ms,
        slo_ack_p99_ms: slo.ack_p99_ms,
        slo_on: slo.on.as_str().into(),
        last_pass,
        first_fail,
        steps: v.search.steps(),
        quick,
        load: slo.load_name().into(),
        slo_write_p99_ms: slo.write_p99_ms,
        ..Default::default()
    };
    if let Some(p) = last_pass {
        let rows: Vec<&SummaryRow> = v
            .steps
            .get(&p)
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        // A read search keeps matches fixed: matches per busy core counts those.
        let matches = match (&v.base.workload, slo.on) {
            (plan::Workload::Ds { params, .. }, search::SloOn::Read) => params.matches,
            _ => p,
        };
        search::fill_at_last_pass(&mut row, matches, &rows);
    }
    let knee = first_fail.or(last_pass).and_then(|n| v.steps.get(&n));
    if let Some(knee) = knee {
        let rows: Vec<&SummaryRow> = knee.iter().collect();
        let (word, detail) = search::bottleneck(&rows, slo, lag_limit_ms, ceiling_bytes_per_s);
        row.bottleneck = word.into();
        row.bottleneck_detail = detail;
    }
    row
}

/// The end-of-search table: one line per variant, ranked by matches per busy core (so an
/// engine that offloads work to idle cores is not flattered); variants without a pass last.
fn search_table(rows: &[search::SearchRow]) -> String {
    let mut rows: Vec<&search::SearchRow> = rows.iter().collect();
    rows.sort_by(|a, b| {
        let key = |r: &search::SearchRow| r.matches_per_busy_core.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a))
    });
    let mut out = format!(
        "{:<32}  {:>20}  {:>10}  {:>12}  {:>9}  {:<12}  detail\n",
        "variant", "bracket [pass, fail]", "ops/s", "matches/core", "us/op", "bottleneck"
    );
    for r in rows {
        let bracket = match (r.last_pass, r.first_fail) {
            (Some(p), Some(f)) => format!("[{p}, {f}]"),
            (Some(p), None) => format!(">= {p} (max)"),
            (None, Some(f)) => format!("< {f} (start)"),
            (None, None) => "-".into(),
        };
        // A read search's bracket is in reads/s, not matches.
        let bracket = if r.load == "reads_per_s" {
            format!("{bracket} r/s")
        } else {
            bracket
        };
        out.push_str(&format!(
            "{:<32}  {:>20}  {:>10}  {:>12}  {:>9}  {:<12}  {}\n",
            r.variant,
            bracket,
            opt(r.ops_per_s.map(|v| format!("{v:.0}"))),
            opt(r.matches_per_busy_core.map(|v| format!("{v:.0}"))),
            opt(r.cpu_us_per_op.map(|v| format!("{v:.2}"))),
            r.bottleneck,
            r.bottleneck_detail
        ));
    }
    out
}

fn cmd_engines(m: &ArgMatches) -> ExitCode {
    let dir = PathBuf::from(m.get_one::<String>("dir").expect("has default"));
    let base = snapbench_engines::buffered::nearest_existing(&dir);
    println!("probed on {} ({})", base.display(), fs_type(&base));
    let probed = snapbench_engines::probe_all(&base);
    // One set of column widths for every engine, so the whole listing lines up.
    let knobs = || probed.iter().flat_map(|(info, _)| info.knobs.iter());
    let name_w = knobs().map(|k| k.name.len()).chain([4]).max().unwrap_or(4);
    let default_w = knobs()
        .map(|k| k.default.len())
        .chain([7])
        .max()
        .unwrap_or(7);
    let range_w = knobs()
        .map(|k| k.kind.range().len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let what_w = probed
        .iter()
        .flat_map(|(_, found)| found.iter().map(|p| p.what.len()))
        .max()
        .unwrap_or(0);
    for (info, found) in &probed {
        println!("\n{}  {}", info.name, info.summary);
        if info.knobs.is_empty() {
            println!("    (no knobs)");
        } else {
            println!(
                "    {:<name_w$}  {:<default_w$}  {:<range_w$}  help",
                "knob", "default", "range"
            );
            for k in info.knobs {
                println!(
                    "    {:<name_w$}  {:<default_w$}  {:<range_w$}  {}",
                    k.name,
                    k.default,
                    k.kind.range(),
                    k.help
                );
            }
        }
        for p in found {
            println!(
                "    {:<11}  {:<what_w$}  {}",
                if p.supported {
                    "supported"
                } else {
                    "UNSUPPORTED"
                },
                p.what,
                p.detail
            );
        }
    }
    ExitCode::SUCCESS
}

fn fs_type(path: &Path) -> String {
    machine::describe_storage(path)["fs"]["fs_type"]
        .as_str()
        .unwrap_or("unknown fs")
        .to_string()
}

/// Every `.snap` file under `dir` (recursively; symbolic links to folders are not followed),
/// sorted; the first folder that cannot be read is an error.
fn snap_files_under(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let read_folder = |source| FsError {
            op: "read folder",
            path: d.clone(),
            source,
        };
        let entries = std::fs::read_dir(&d).map_err(read_folder)?;
        for e in entries {
            let e = e.map_err(read_folder)?;
            let p = e.path();
            let is_dir = e
                .file_type()
                .map_err(|source| FsError {
                    op: "stat",
                    path: p.clone(),
                    source,
                })?
                .is_dir();
            if is_dir {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "snap") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `snapbench verify PATH [--recover]`: one line per log that is not sealed or open, then the
/// counts of each state. Exit 0 clean, 1 damaged (torn too, unless `--recover`), 2 bad path.
fn cmd_verify(m: &ArgMatches) -> ExitCode {
    let path = PathBuf::from(m.get_one::<String>("path").expect("required"));
    let recover = m.get_flag("recover");
    let files: Vec<PathBuf> = if path.is_dir() {
        match snap_files_under(&path) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else if path.is_file() {
        vec![path.clone()]
    } else {
        eprintln!(
            "error: {} is not a file or folder; give a .snap file or a folder of them",
            path.display()
        );
        return ExitCode::from(2);
    };
    let mut counts = [0u64; 4];
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(expected) = snaplog::parse_log_file_name(name) else {
            println!(
                "{}: damaged: the name is not m<match id as 16 lowercase hex digits>.snap, so the \
                 log's match id cannot be checked",
                f.display()
            );
            counts[3] += 1;
            continue;
        };
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                println!("{}: damaged: cannot read: {e}", f.display());
                counts[3] += 1;
                continue;
            }
        };
        let check = snaplog::check_log(&bytes, Some(expected));
        let idx = match check.state {
            snaplog::LogState::Sealed => 0,
            snaplog::LogState::Open => 1,
            snaplog::LogState::Torn => 2,
            snaplog::LogState::Damaged => 3,
        };
        counts[idx] += 1;
        if idx >= 2 {
            let (off, why) = check.problem.clone().unwrap_or((0, String::new()));
            println!(
                "{}: {} at offset {off}: {why} ({} valid frames)",
                f.display(),
                if idx == 2 { "torn" } else { "damaged" },
                check.frames
            );
        }
    }
    println!(
        "{} logs: {} sealed, {} open, {} torn, {} damaged",
        files.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
    if counts[3] > 0 || (counts[2] > 0 && !recover) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Draw the plots and the report of a folder just written (a failure is reported, and the
/// results stay).
fn write_report(out: &Path) {
    match report::page::write(out) {
        Ok(r) => {
            for s in &r.sections {
                for e in &s.plot_errors {
                    eprintln!("warning: {e}");
                }
            }
            println!("report: {}", out.join("report.html").display());
        }
        Err(e) => eprintln!("warning: report not written: {e}"),
    }
}

/// The results folders at `path`: the folder itself, or each results folder inside it.
fn load_results(path: &str) -> Result<Vec<report::load::Folder>, BadInput> {
    let p = Path::new(path);
    if !p.is_dir() {
        return Err(BadInput(format!(
            "{path} is not a folder; give a results folder written by `snapbench run` or `snapbench search`"
        )));
    }
    if snapbench::results::holds_results(p) {
        return report::load::Folder::load(p)
            .map(|f| vec![f])
            .map_err(|e| BadInput(e.to_string()));
    }
    let subs = report::load::result_subfolders(p);
    if subs.is_empty() {
        return Err(BadInput(format!(
            "{path} holds no results (no meta.json or summary.csv, here or one folder down); give a folder written by `snapbench run` or `snapbench search`"
        )));
    }
    subs.iter()
        .map(|s| report::load::Folder::load(s).map_err(|e| BadInput(e.to_string())))
        .collect()
}

fn positive_number(
    m: &ArgMatches,
    name: &str,
    flag: &str,
    what: &str,
) -> Result<Option<f64>, BadInput> {
    match m.get_one::<String>(name) {
        None => Ok(None),
        Some(t) => match t.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            _ => Err(BadInput(format!(
                "{flag} {t:?} is not a positive number; give {what}"
            ))),
        },
    }
}

fn cmd_report(m: &ArgMatches) -> ExitCode {
    let path = m.get_one::<String>("results").expect("required");
    if let Err(e) = load_results(path) {
        return bad_input(&e);
    }
    match report::page::write(Path::new(path)) {
        Ok(r) => {
            for s in &r.sections {
                for e in &s.plot_errors {
                    eprintln!("warning: {e}");
                }
                println!("{}: {} plots", s.folder.path.display(), s.charts.len());
            }
            println!("report: {}", Path::new(path).join("report.html").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn cmd_compare(m: &ArgMatches) -> ExitCode {
    let fail_pct = match m.get_one::<String>("fail_on_regression") {
        None => None,
        Some(t) => match t.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
            _ => {
                return bad_input(&BadInput(format!(
                "--fail-on-regression {t:?} is not a percentage of 0 or more; give one such as 5"
            )))
            }
        },
    };
    let (a_path, b_path) = (
        m.get_one::<String>("a").expect("required"),
        m.get_one::<String>("b").expect("required"),
    );
    let (a, b) = match (load_results(a_path), load_results(b_path)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad_input(&e),
    };
    let c = report::compare::compare(&a, &b);
    if c.lines.is_empty() && c.capacity.is_empty() {
        return bad_input(&BadInput(format!(
            "{a_path} and {b_path} share no engine variant, workload and load to compare; give two results of the same suite"
        )));
    }
    print!("{}", report::compare::render(&c, a_path, b_path));
    if let Some(pct) = fail_pct {
        let fails = c.gate_failures(pct);
        if !fails.is_empty() {
            eprintln!(
                "--fail-on-regression {pct}: {} problem(s): {}",
                fails.len(),
                fails.join("; ")
            );
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn cmd_recommend(m: &ArgMatches) -> ExitCode {
    let slo_ms = match positive_number(
        m,
        "slo_p99_ms",
        "--slo-p99-ms",
        "a number of milliseconds such as 50",
    ) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return bad_input(&BadInput(
                "--slo-p99-ms is required; give it in ms, e.g. --slo-p99-ms 50".into(),
            ))
        }
        Err(e) => return bad_input(&e),
    };
    let budget = match positive_number(
        m,
        "cpu_budget",
        "--cpu-budget",
        "a number of cores such as 2",
    ) {
        Ok(v) => v,
        Err(e) => return bad_input(&e),
    };
    let path = m.get_one::<String>("results").expect("required");
    let folders = match load_results(path) {
        Ok(f) => f,
        Err(e) => return bad_input(&e),
    };
    let ask = report::recommend::Ask {
        slo: search::Slo {
            p99_ms: slo_ms,
            ack_p99_ms: None,
            on: if m.get_one::<String>("slo_on").map(String::as_str) == Some("ack") {
                search::SloOn::Ack
            } else {
                search::SloOn::Write
            },
            write_p99_ms: None,
        },
        cpu_budget_cores: budget,
    };
    let recs = report::recommend::recommend(&folders, &ask);
    print!("{}", report::recommend::render(&recs, &folders, &ask));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, matches: Option<u32>) -> SummaryRow {
        SummaryRow {
            variant: variant.into(),
            workload: "fps-128tick".into(),
            matches,
            tick_hz: Some(128.0),
            durability: "interval:1000".into(),
            workers: 1,
            repeat: 1,
            ops_per_s: 1000.0,
            offered_ops: 2000,
            duration_s: 2.0,
            lat_p99_us: Some(2500.0),
            ..Default::default()
        }
    }

    #[test]
    fn search_table_ranks_by_matches_per_busy_core_and_shows_the_bracket() {
        let r = |v: &str, p: Option<u32>, f: Option<u32>, mpc: Option<f64>| search::SearchRow {
            variant: v.into(),
            last_pass: p,
            first_fail: f,
            matches_per_busy_core: mpc,
            ..Default::default()
        };
        let text = search_table(&[
            r("a", None, Some(64), None),
            r("b", Some(256), Some(272), Some(500.0)),
            r("c", Some(16384), None, Some(900.0)),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with('c') && lines[1].contains(">= 16384 (max)"),
            "{text}"
        );
        assert!(
            lines[2].starts_with('b') && lines[2].contains("[256, 272]"),
            "{text}"
        );
        assert!(
            lines[3].starts_with('a') && lines[3].contains("< 64 (start)"),
            "{text}"
        ); // A read search's bracket says it counts reads/s.
        let reads = search::SearchRow {
            load: "reads_per_s".into(),
            ..r("d", Some(48), Some(50), Some(160.0))
        };
        assert!(search_table(&[reads]).contains("[48, 50] r/s"));
        assert!(!text.contains("r/s"), "{text}");
    }

    #[test]
    fn results_folder_is_named_after_the_suite() {
        assert_eq!(results_name(None, false, false), "default");
        assert_eq!(results_name(None, true, false), "default-custom");
        assert_eq!(results_name(None, false, true), "default-quick");
        assert_eq!(
            results_name(Some(Path::new("bench/my suite.toml")), true, false),
            "my_suite"
        );
        assert_eq!(
            results_name(Some(Path::new("/x/sweep.toml")), false, true),
            "sweep-quick"
        );
    }

    #[test]
    fn table_shows_the_cost_split_of_ds_runs() {
        let plain = [row("uring", Some(250))];
        assert!(!table_text(&plain).contains("harness/rec/eng"));
        let mut split = row("uring", Some(250));
        split.harness_us_per_op = Some(0.25);
        split.recorder_us_per_op = Some(0.5);
        split.engine_us_per_op = Some(3.0);
        let text = table_text(&[split, row("null", Some(250))]);
        assert!(
            text.lines().next().unwrap().contains("harness/rec/eng us"),
            "{text}"
        );
        assert!(
            text.lines().nth(1).unwrap().contains("0.25/0.50/3.00"),
            "{text}"
        );
        assert!(
            text.lines().nth(2).unwrap().trim_end().ends_with('-'),
            "{text}"
        );
    }

    #[test]
    fn table_shows_the_key_columns_that_differ_and_units() {
        let rows = [row("uring", Some(250)), row("uring", Some(500))];
        let text = table_text(&rows);
        let header = text.lines().next().unwrap();
        assert!(header.contains("matches"), "{header}");
        for unit in ["p50 ms", "p99 ms", "p99.9 ms", "ack p99 ms", "cpu us/op"] {
            assert!(header.contains(unit), "{unit} in {header}");
        }
        for same in ["tick_hz", "durability", "workers", "repeat", "workload"] {
            assert!(
                !header.contains(same),
                "{same} is equal in every row: {header}"
            );
        }
        assert!(
            !header.contains("offered/s"),
            "ops/s equals offered: {header}"
        );
        assert!(text.lines().nth(1).unwrap().contains("250"));
        assert!(text.lines().nth(2).unwrap().contains("500"));
        assert!(text.lines().nth(1).unwrap().contains("2.500"));
        // One engine, one configuration: no key column at all.
        let header = table_text(&rows[..1]).lines().next().unwrap().to_string();
        assert!(!header.contains("matches"), "{header}");
        // A row behind its schedule: offered/s and max lag appear.
        let mut slow = row("buffered", Some(250));
        slow.ops_per_s = 400.0;
        slow.max_lag_ms = 812.5;
        let text = table_text(&[row("uring", Some(250)), slow]);
        let header = text.lines().next().unwrap();
        assert!(
            header.contains("offered/s") && header.contains("max lag ms"),
            "{header}"
        );
        assert!(text.lines().nth(2).unwrap().contains("812.5"));
    }
}
