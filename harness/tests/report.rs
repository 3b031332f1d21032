//! `report`, `compare` and `recommend` on real (small) runs: the pages are written at the end of
//! a run, a repeated suite compares within noise, a known difference (flush deadlines twice as
//! long) is called slower, and bad input gets exit 2 with one line.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn snapbench() -> Command {
    Command::cargo_bin("snapbench").unwrap()
}

/// A small repeated suite: two variants, five interleaved repeats, at a light load.
fn run_small(tmp: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    snapbench()
        .args([
            "run",
            "--workload",
            "fps-128tick",
            "--matches",
            "16",
            "--duration",
            "0.6",
            "--warmup",
            "0.2",
            "--durability",
            "none",
            "--lag-limit-ms",
            "3600000",
            "--repeat",
            "5",
            "--engine",
            "null",
            "--engine",
            "uring:direct=false",
        ])
        .args(extra)
        .arg("--dir")
        .arg(tmp.join("data"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn a_run_ends_with_its_report_and_compare_sees_a_known_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_small(tmp.path(), "a", &[]);
    for f in ["report.md", "report.html"] {
        assert!(a.join(f).is_file(), "{f} written at the end of the run");
    }
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        md.contains("## Recommendation") && md.contains("## Summary"),
        "{md}"
    );
    let b = run_small(tmp.path(), "b", &[]);
    let c = run_small(tmp.path(), "c", &["--flush-ms", "40"]);

    // Write latency at this load is the wait for the flush deadline (20 ms, then 40 ms).
    let out = snapbench()
        .arg("compare")
        .arg(&a)
        .arg(&c)
        .assert()
        .success();
    let text = stdout(&out);
    let p99_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("write p99"))
        .collect();
    assert_eq!(p99_lines.len(), 2, "{text}");
    assert!(p99_lines.iter().all(|l| l.ends_with("slower")), "{text}");
    snapbench()
        .arg("compare")
        .arg(&a)
        .arg(&c)
        .args(["--fail-on-regression", "20"])
        .assert()
        .code(1);

    // The same suite again: latency is the same deadline wait, throughput the same schedule.
    let out = snapbench()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .assert()
        .success();
    let text = stdout(&out);
    for l in text
        .lines()
        .filter(|l| l.trim_start().starts_with("write p99") || l.trim_start().starts_with("ops/s"))
    {
        assert!(l.ends_with("within noise"), "{l}\n{text}");
    }

    // report redraws the pages of a folder; recommend answers from it.
    std::fs::remove_file(a.join("report.md")).unwrap();
    snapbench().arg("report").arg(&a).assert().success();
    assert!(a.join("report.md").is_file());
    let out = snapbench()
        .arg("recommend")
        .arg(&a)
        .args(["--slo-p99-ms", "50"])
        .assert()
        .success();
    let text = stdout(&out);
    assert!(
        text.contains("Run uring:direct=false."),
        "null is never recommended:\n{text}"
    );
    let out = snapbench()
        .arg("recommend")
        .arg(&a)
        .args(["--slo-p99-ms", "1"])
        .assert()
        .success();
    assert!(
        stdout(&out).contains("No engine meets the SLO"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "report".into(),
                tmp.path().join("nope").display().to_string(),
            ],
            "is not a folder",
        ),
        (
            vec!["report".into(), empty.display().to_string()],
            "holds no results",
        ),
        (
            vec!["recommend".into(), empty.display().to_string()],
            "--slo-p99-ms",
        ),
        (
            vec![
                "recommend".into(),
                empty.display().to_string(),
                "--slo-p99-ms".into(),
                "-5".into(),
            ],
            "not a positive number",
        ),
        (
            vec![
                "compare".into(),
                empty.display().to_string(),
                empty.display().to_string(),
                "--fail-on-regression".into(),
                "x".into(),
            ],
            "not a percentage",
        ),
        (
            vec!["compare".into(), empty.display().to_string()],
            "required",
        ),
    ];
    for (args, want) in cases {
        let out = snapbench().args(&args).assert().code(2);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written"
    );
}
