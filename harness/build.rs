//! Build script: embeds build facts read by `snapbench::machine::build_info`.
//!
//! Sets `SNAPBENCH_GIT_COMMIT` (short hash, `-dirty` when tracked files have changes, `unknown`
//! when git or the repository is unavailable) and `SNAPBENCH_RUSTC` (`rustc -V`, or `unknown`).
//! It never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");

    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    // The workspace root is the parent of harness/.
    let root = manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir);

    watch_git(&root);
    let commit = git_commit(&root).unwrap_or_else(|| "unknown".to_string());
    let rustc = rustc_version().unwrap_or_else(|| "unknown".to_string());

    println!("cargo:rustc-env=SNAPBENCH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SNAPBENCH_RUSTC={rustc}");
}

/// Ask cargo to rerun this script when HEAD, the index or the checked-out branch ref moves
/// (only for paths that exist, so a tree without .git does not rebuild every time).
fn watch_git(root: &Path) {
    let git_dir = root.join(".git");
    if !git_dir.is_dir() {
        return;
    }
    for name in ["HEAD", "index", "packed-refs"] {
        let p = git_dir.join(name);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    // An edit to a source file makes the tree dirty without touching .git: watch the sources
    // too, or a build after an edit keeps the clean commit of the last build-script run.
    for dir in [
        "harness/src",
        "engines/src",
        "workloads/src",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        let p = root.join(dir);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    // HEAD usually reads "ref: refs/heads/<branch>"; a commit moves that file, not HEAD.
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            let p = git_dir.join(r);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
}

/// Runs a command in `dir`; its trimmed stdout when it exits 0.
fn run(dir: &Path, program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git_commit(root: &Path) -> Option<String> {
    let hash = run(root, "git", &["rev-parse", "--short", "HEAD"])?;
    if hash.is_empty() || hash.contains(char::is_whitespace) {
        return None;
    }
    let dirty = match run(
        root,
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
    ) {
        Some(s) => !s.is_empty(),
        None => false,
    };
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

fn rustc_version() -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = Command::new(rustc).arg("-V").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v = String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace(['\n', '\r'], " ");
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}
