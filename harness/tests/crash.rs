//! Crash safety of the log writer, end to end through the CLI: a DS run with `--ack-log` is
//! stopped at seeded random moments, then every frame the ack log names must be in its log and
//! valid, and `snapbench verify --recover` must pass the data dir.
//!
//! * **Process crash** (any user): SIGKILL. The page cache survives a killed process, so this
//!   proves the writer never acknowledges a frame before its write completed, and that what a
//!   killed writer leaves is sealed, open or torn, never damaged. It cannot catch
//!   a missing fdatasync.
//! * **Power cut** (root; `.ci/run` runs `--ignored` as root): the run writes to a scratch ext4
//!   mounted with `commit=60` (only explicit syncs commit its journal), the ack log lives on
//!   another filesystem, and the cut is the ext4 shutdown ioctl with `EXT4_GOING_FLAGS_NOLOGFLUSH`
//!   (docs/machine.md: what was not synced is gone after a remount). snapbench then gets EIO and must
//!   exit 1. A control run with `--durability none` must lose frames that were visible before the
//!   cut, or the cut proved nothing.
//!
//!   Only the ack lines written before the cut began are checked. Unlike a real power cut, the
//!   emulated one leaves the process running, and an fdatasync that was already inside ext4 when
//!   the journal was aborted can return 0 although its data is not durable. Measured with a
//!   stand-alone program (two threads appending to a fallocated file, a third looping on
//!   fdatasync, 40 cuts): every loss came from a sync that returned after the shutdown ioctl had
//!   started, none from one that returned before it. Late acks are counted and printed
//!   (`acked_after_cut_began`, `of_those_lost`), not judged.
//!
//! **Holes.** A crash must never leave zero blocks after a log's durable prefix followed by
//! valid frames (SNAPLOG1 calls that damaged). It happened when the writer had several writes of
//! one log in flight (a later one became durable first: seen after uring power cuts with 32 KiB
//! snapshots and 8 KiB segments); the writer now keeps one write per log in flight, and any
//! damaged log fails the test. Such logs are still printed (`crash-hole`) and counted (`holes=`)
//! to say what went wrong.
//!
//! Each test prints one `crash-table` line per policy (cuts, frames acknowledged, frames lost,
//! log states) and one `crash-log` line per torn or damaged log to stderr;
//! `cargo test --test crash -- --nocapture` shows them. For longer or different stress:
//! `SNAPBENCH_CRASH_SEED=N` (cut times and workload seeds), `SNAPBENCH_CRASH_CUTS=N` (cuts per
//! engine and policy), `SNAPBENCH_CRASH_ARGS="--snapshot-bytes 40k …"` (more `run` flags),
//! `SNAPBENCH_CRASH_KEEP=DIR` (copy the data dir, ack log and output of a failed cut there).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/acks.rs"]
mod acks;
#[path = "../../engines/tests/support/scratch.rs"]
mod scratch;
#[macro_use]
#[path = "../../engines/tests/support/variants.rs"]
mod variants;

use acks::{ack_report, ack_report_prefix, check_logs, AckReport};

/// The durability policies that acknowledge frames.
const POLICIES: [&str; 3] = ["every", "interval:50", "dsync"];
/// Cuts per engine and policy (`SNAPBENCH_CRASH_CUTS` overrides).
fn cuts() -> u32 {
    std::env::var("SNAPBENCH_CRASH_CUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// Extra `run` flags (`SNAPBENCH_CRASH_ARGS`, split on whitespace).
fn extra_args() -> Vec<String> {
    std::env::var("SNAPBENCH_CRASH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
/// Warm-up of each run, in seconds (the cut lands in the measured window after it).
const WARMUP_S: f64 = 0.2;
/// The cut lands this many seconds into the measured window, uniformly at random.
const CUT_AFTER_S: (f64, f64) = (0.3, 2.0);
/// How long snapbench may take to exit after a power cut before it counts as hung.
const EXIT_AFTER_CUT: Duration = Duration::from_secs(5);

/// splitmix64: the seeded source of cut times and workload seeds.
struct Rng(u64);

impl Rng {
    /// A generator for one engine and crash kind: the base seed (`SNAPBENCH_CRASH_SEED`, or a
    /// fixed default) mixed with the variant's name, so one engine's cuts do not depend on which
    /// other tests ran.
    fn for_test(variant: &str, kind: &str) -> (Rng, u64) {
        let base = std::env::var("SNAPBENCH_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_0005_u64);
        // FNV-1a of the names.
        let mut h = 0xcbf2_9ce4_8422_2325_u64;
        for b in variant.bytes().chain([0]).chain(kind.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (Rng(base ^ h), base)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    fn uniform(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One crash: where the run's files are and when to cut.
struct Cut<'a> {
    variant: &'a str,
    policy: &'a str,
    data: PathBuf,
    /// Ack log, results and the run's stdout/stderr live here (not on the data filesystem).
    side: PathBuf,
    workload_seed: u64,
    cut_after_s: f64,
    /// `--time-scale`: 300 makes matches start and end during the run (create, sync_dir, seal);
    /// 1 keeps the same matches open throughout (no sync at all under `--durability none`).
    time_scale: u32,
}

impl Cut<'_> {
    fn ack(&self) -> PathBuf {
        self.side.join("ack.log")
    }

    /// Start the run: a short DS run (like the CLI tests' `kept_run`) that would go on for much
    /// longer than any cut. Small preallocation chunks keep the logs small for the checks and
    /// make the writer grow its files (fallocate) during the run.
    fn spawn(&self) -> Child {
        let log = |name: &str| std::fs::File::create(self.side.join(name)).unwrap();
        Command::new(assert_cmd::cargo::cargo_bin("snapbench"))
            .args(["run", "--engine", self.variant, "--durability", self.policy])
            .args(["--duration", "30", "--warmup", &WARMUP_S.to_string()])
            .args(["--time-scale", &self.time_scale.to_string()])
            .args(["--matches", "32", "--workers", "2"])
            // No replay reads: their prefill would delay the window past the cut.
            .args(["--reads-per-match", "0"])
            .args(["--prealloc-bytes", "256k", "--keep-files"])
            // A slow variant on the loop device falls behind; it must keep writing until the
            // cut rather than stop early on lag.
            .args(["--lag-limit-ms", "3600000"])
            .args(["--seed", &self.workload_seed.to_string()])
            .args(extra_args())
            .arg("--ack-log")
            .arg(self.ack())
            .arg("--dir")
            .arg(&self.data)
            .arg("--out")
            .arg(self.side.join("out"))
            .stdin(Stdio::null())
            .stdout(log("run.stdout"))
            .stderr(log("run.stderr"))
            .spawn()
            .unwrap()
    }

    fn run_output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.side.join(name)).unwrap_or_default();
        format!(
            "stdout: {}\nstderr: {}",
            read("run.stdout"),
            read("run.stderr")
        )
    }

    /// Wait until the run has created its first log (the run started writing), then for the
    /// warm-up and the cut's moment in the measured window. Panics if the run ended first.
    fn wait_for_cut(&self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} {}: the run ended ({status}) before it wrote a log\n{}",
                    self.variant,
                    self.policy,
                    self.run_output()
                );
            }
            if has_log(&self.data) {
                break;
            }
            assert!(Instant::now() < deadline, "no log after 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_secs_f64(WARMUP_S + self.cut_after_s));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{} {}: the run ended ({status}) before the cut\n{}",
                self.variant,
                self.policy,
                self.run_output()
            );
        }
    }

    /// `snapbench verify --recover DATA`: exit code and stdout.
    fn verify(&self) -> (i32, String) {
        let out = Command::new(assert_cmd::cargo::cargo_bin("snapbench"))
            .args(["verify", "--recover"])
            .arg(&self.data)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }
}

/// Whether any `.snap` exists under `data/<run>/`.
fn has_log(data: &Path) -> bool {
    let Ok(runs) = std::fs::read_dir(data) else {
        return false;
    };
    runs.flatten().any(|run| {
        std::fs::read_dir(run.path()).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| f.path().extension().is_some_and(|x| x == "snap"))
        })
    })
}

/// Totals of one engine, policy and crash kind.
#[derive(Default)]
struct Tally {
    cuts: u32,
    frames_acked: u64,
    frames_lost: u64,
    states: [u64; 4],
    /// Controls only: frames visible (through the page cache) just before the cut, and how many
    /// of those were not valid after it.
    visible_before: u64,
    visible_lost: u64,
    /// Power cuts only: frames whose ack was written after the cut began (not checked), and how
    /// many of those were not there after it.
    late_acked: u64,
    late_lost: u64,
    /// Damaged logs with a hole past their valid prefix.
    holes: u64,
}

impl Tally {
    fn add(&mut self, r: &AckReport) {
        self.cuts += 1;
        self.frames_acked += r.frames_acked;
        self.frames_lost += r.frames_lost;
        self.holes += r.holes;
        for (t, s) in self.states.iter_mut().zip(r.states) {
            *t += s;
        }
    }

    fn print(&self, kind: &str, variant: &str, policy: &str) {
        let [sealed, open, torn, damaged] = self.states;
        let late = if kind == "power" {
            format!(
                " acked_after_cut_began={} of_those_lost={}",
                self.late_acked, self.late_lost
            )
        } else {
            String::new()
        };
        let control = if self.visible_before > 0 {
            format!(
                " visible_before_cut={} of_those_lost={}",
                self.visible_before, self.visible_lost
            )
        } else {
            String::new()
        };
        eprintln!(
            "crash-table {kind} {variant} {policy}: cuts={} acked={} lost={} \
             logs sealed={sealed} open={open} torn={torn} damaged={damaged} \
             (holes={}){late}{control}",
            self.cuts, self.frames_acked, self.frames_lost, self.holes
        );
    }
}

/// What one cut found that is wrong (collected, so every policy runs and prints its line).
fn judge(cut: &Cut, r: &AckReport, verify: &(i32, String), failures: &mut Vec<String>) {
    let what = format!(
        "{} {} (cut {:.3} s into the window, workload seed {})",
        cut.variant, cut.policy, cut.cut_after_s, cut.workload_seed
    );
    if r.frames_lost > 0 {
        failures.push(format!(
            "{what}: {} acknowledged frames lost: {:?}",
            r.frames_lost, r.losses
        ));
    }
    // A hole past the valid prefix means a later write became durable before an earlier one:
    // named here, and failed below like any other damaged log.
    for h in &r.hole_logs {
        eprintln!("crash-hole {what}: {h}");
    }
    if verify.0 != 0 {
        failures.push(format!(
            "{what}: verify --recover exited {}:\n{}",
            verify.0, verify.1
        ));
    }
    for p in &r.problems {
        eprintln!("crash-log {what}: {p}");
    }
    if let (true, Ok(keep)) = (
        r.frames_lost > 0 || verify.0 != 0,
        std::env::var("SNAPBENCH_CRASH_KEEP"),
    ) {
        let to = Path::new(&keep).join(format!(
            "{}-{}-{}",
            cut.variant.replace([':', ',', '='], "_"),
            cut.policy.replace(':', "_"),
            cut.workload_seed
        ));
        std::fs::create_dir_all(&to).unwrap();
        scratch::sh(
            "cp",
            &["-a", cut.data.to_str().unwrap(), to.to_str().unwrap()],
        );
        for f in ["ack.log", "run.stdout", "run.stderr"] {
            let _ = std::fs::copy(cut.side.join(f), to.join(f));
        }
        eprintln!("crash-keep {what}: files kept in {}", to.display());
    }
}

/// SIGKILL the run at seeded random moments; check the ack log and verify.
fn process_kill(variant: &str) {
    let (mut rng, base) = Rng::for_test(variant, "kill");
    eprintln!("crash kill {variant}: SNAPBENCH_CRASH_SEED={base}");
    let mut failures = Vec::new();
    for policy in POLICIES {
        let mut tally = Tally::default();
        for _ in 0..cuts() {
            let tmp = tempfile::tempdir().unwrap();
            let cut = Cut {
                variant,
                policy,
                data: tmp.path().join("data"),
                side: tmp.path().to_path_buf(),
                workload_seed: rng.next() % 1_000_000,
                cut_after_s: rng.uniform(CUT_AFTER_S),
                time_scale: 300,
            };
            let mut child = cut.spawn();
            cut.wait_for_cut(&mut child);
            child.kill().unwrap();
            child.wait().unwrap();
            let r = ack_report(&cut.ack(), &cut.data);
            let verify = cut.verify();
            judge(&cut, &r, &verify, &mut failures);
            if r.states[0] as usize == acks::logs_under(&cut.data).len() {
                failures.push(format!(
                    "{variant} {policy}: every log sealed: the kill did not land mid-run"
                ));
            }
            tally.add(&r);
        }
        tally.print("kill", variant, policy);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Valid data frames per log under `data` (what the page cache shows now).
fn frames_per_log(data: &Path) -> HashMap<u64, u64> {
    check_logs(data)
        .into_iter()
        .map(|l| (l.id, l.check.frames))
        .collect()
}

/// Power-cut the scratch filesystem under the run at seeded random moments; remount; check the
/// ack log and verify. The last round is the control (`--durability none`).
fn power_cut(variant: &str) {
    let (mut rng, base) = Rng::for_test(variant, "power");
    eprintln!("crash power {variant}: SNAPBENCH_CRASH_SEED={base}");
    let fs = scratch::ScratchExt4::new(512, "commit=60");
    let mut failures = Vec::new();
    let mut n = 0;
    for policy in POLICIES.into_iter().chain(["none"]) {
        let control = policy == "none";
        let mut tally = Tally::default();
        for _ in 0..(if control { 1 } else { cuts() }) {
            n += 1;
            let data = fs.path().join(format!("cut{n}"));
            std::fs::create_dir(&data).unwrap();
            std::fs::File::open(&data).unwrap().sync_all().unwrap();
            std::fs::File::open(fs.path()).unwrap().sync_all().unwrap();
            let side = tempfile::tempdir_in("/var/tmp").unwrap();
            let cut = Cut {
                variant,
                policy,
                data,
                side: side.path().to_path_buf(),
                workload_seed: rng.next() % 1_000_000,
                cut_after_s: rng.uniform(CUT_AFTER_S),
                // The control keeps its matches open, so that nothing syncs its logs: with
                // matches ending and starting, seals and directory syncs commit the journal and
                // O_DIRECT writes would mostly survive a cut even under `none`.
                time_scale: if control { 1 } else { 300 },
            };
            let mut child = cut.spawn();
            cut.wait_for_cut(&mut child);
            let before = if control {
                frames_per_log(&cut.data)
            } else {
                HashMap::new()
            };
            // Only acks written before the cut count: the emulated cut leaves the process running,
            // and an fdatasync already inside ext4 when the journal is aborted can still return 0
            // without its data being durable (see the module documentation). A real power cut
            // stops the process, so no ack could be written after it.
            let ack_len_at_cut = std::fs::metadata(cut.ack()).map_or(0, |m| m.len());
            fs.power_cut();
            let cut_at = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break Some(s);
                }
                if cut_at.elapsed() > EXIT_AFTER_CUT {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            match status.map(|s| s.code()) {
                Some(Some(1)) => {}
                Some(other) => failures.push(format!(
                    "{variant} {policy}: exit {other:?} after the power cut, expected 1\n{}",
                    cut.run_output()
                )),
                None => failures.push(format!(
                    "{variant} {policy}: still running {EXIT_AFTER_CUT:?} after the power cut\n{}",
                    cut.run_output()
                )),
            }
            fs.remount();
            let r = ack_report_prefix(&cut.ack(), &cut.data, ack_len_at_cut);
            let all = ack_report(&cut.ack(), &cut.data);
            tally.late_acked += all.frames_acked.saturating_sub(r.frames_acked);
            tally.late_lost += all.frames_lost.saturating_sub(r.frames_lost);
            let verify = cut.verify();
            if control {
                assert_eq!(r.frames_acked, 0, "--durability none acknowledged frames");
                let after = frames_per_log(&cut.data);
                for (id, n) in before {
                    tally.visible_before += n;
                    tally.visible_lost += n.saturating_sub(after.get(&id).copied().unwrap_or(0));
                }
            } else {
                judge(&cut, &r, &verify, &mut failures);
            }
            tally.add(&r);
            std::fs::remove_dir_all(&cut.data).unwrap();
        }
        tally.print("power", variant, policy);
        if control && tally.visible_lost == 0 {
            failures.push(format!(
                "{variant} control: none of the {} frames visible before the cut was lost: \
                 the cut proves nothing",
                tally.visible_before
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! crash_every_engine {
    ($($name:ident => $variant:literal),* $(,)?) => {$(
        mod $name {
            #[test]
            fn process_kill() {
                super::process_kill($variant)
            }
            #[test]
            #[ignore = "needs root"]
            fn power_cut() {
                super::power_cut($variant)
            }
        }
    )*};
}

// The crash-test variants of the shared list.
crash_variants!(crash_every_engine);
