//! Fault tests on a scratch ext4 on a loop device (root only; `.ci/run` runs them with
//! `--ignored` as root): a run that hits ENOSPC fails with exit 1, names the operation, file
//! and error, and keeps the results of the runs before it.

use assert_cmd::Command;

#[path = "../../engines/tests/support/scratch.rs"]
mod scratch;
use scratch::ScratchExt4;

#[test]
#[ignore = "needs root"]
fn enospc_fails_the_run_and_keeps_earlier_results() {
    let fs = ScratchExt4::new(48, "");
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("results");
    let suite = out.parent().unwrap().join("suite.toml");
    // Run 1 (null) succeeds; run 2 (buffered) preallocates 8 MiB per log and runs out of space.
    std::fs::write(
        &suite,
        "name = \"enospc\"\n[defaults]\nduration = 2\nwarmup = 0.2\n[[run]]\nengine = [\"null\", \"buffered\"]\n",
    )
    .unwrap();
    let a = Command::cargo_bin("snapbench")
        .unwrap()
        .arg("run")
        .arg(&suite)
        .arg("--dir")
        .arg(fs.path().join("data"))
        .arg("--out")
        .arg(&out)
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    let mut rd = csv::Reader::from_path(out.join("summary.csv")).unwrap();
    let headers = rd.headers().unwrap().clone();
    let col = |r: &csv::StringRecord, name: &str| {
        r[headers.iter().position(|h| h == name).unwrap()].to_string()
    };
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(col(&rows[0], "status"), "ok");
    assert_eq!(col(&rows[1], "status"), "failed");
    let err = col(&rows[1], "error");
    assert!(err.contains("engine buffered"), "{err}");
    assert!(err.contains(".snap"), "error names the file: {err}");
    assert!(err.contains("No space left"), "{err}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    assert_eq!(
        meta["storage"]["block"]["name"]
            .as_str()
            .map(|n| n.starts_with("loop")),
        Some(true)
    );
}
