//! Fault tests on a scratch ext4 on a loop device (root only; `.ci/run` runs them with
//! `--ignored` as root): a run that hits ENOSPC fails with exit 1, names the operation, file
//! and error, and keeps the results of the runs before it.

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;

/// A small ext4 filesystem on a loop device, mounted on a temp dir; undone on drop.
struct ScratchExt4 {
    _tmp: tempfile::TempDir,
    mnt: PathBuf,
    dev: String,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Std::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl ScratchExt4 {
    fn new(size_mib: u64) -> ScratchExt4 {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        sh("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
        let dev = sh("losetup", &["-f", "--show", img.to_str().unwrap()]);
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        sh("mount", &[&dev, mnt.to_str().unwrap()]);
        ScratchExt4 {
            _tmp: tmp,
            mnt,
            dev,
        }
    }
    fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for ScratchExt4 {
    fn drop(&mut self) {
        let _ = Std::new("umount").arg(&self.mnt).status();
        let _ = Std::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
#[ignore = "needs root"]
fn enospc_fails_the_run_and_keeps_earlier_results() {
    let fs = ScratchExt4::new(48);
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
