//! `snapbench verify PATH [--recover]` on hand-made logs: one line per log that is not sealed or
//! open (file, state, offset, problem), a summary with the count of each state, and exit 0 clean,
//! 1 damaged (torn counts as damaged unless `--recover`), 2 bad path.

use std::path::Path;

use assert_cmd::Command;
use snapbench::snaplog::{
    append_end_frame, append_frame, encode_file_header, log_file_name, FrameKind, BLOCK_BYTES,
};

/// A log of match `id` with `frames` data frames of 300 bytes; sealed if asked; zero-filled to
/// `len` bytes (preallocation) if longer.
fn log_bytes(id: u64, frames: u64, sealed: bool, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_BYTES];
    encode_file_header(id, 1, &mut b);
    let mut off = BLOCK_BYTES as u64;
    for seq in 0..frames {
        off = append_frame(&mut b, off, id, seq, seq * 1000, FrameKind::Delta, 300);
    }
    if sealed {
        append_end_frame(&mut b, off, frames, frames * 1000, frames, frames * 300);
    }
    if b.len() < len {
        b.resize(len, 0);
    }
    b
}

fn write_log(dir: &Path, id: u64, bytes: &[u8]) -> String {
    let name = log_file_name(id);
    std::fs::write(dir.join(&name), bytes).unwrap();
    name
}

/// Run verify; (exit code, stdout lines).
fn verify(path: &Path, recover: bool) -> (i32, Vec<String>) {
    let mut cmd = Command::cargo_bin("snapbench").unwrap();
    cmd.arg("verify").arg(path);
    if recover {
        cmd.arg("--recover");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap(),
        stdout.lines().map(str::to_string).collect(),
    )
}

#[test]
fn clean_logs_pass_with_only_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("01-run").join("deeper");
    std::fs::create_dir_all(&run).unwrap();
    write_log(&run, 1, &log_bytes(1, 40, true, 256 << 10));
    write_log(tmp.path(), 2, &log_bytes(2, 40, false, 256 << 10));
    write_log(tmp.path(), 3, &log_bytes(3, 0, false, 64 << 10)); // header only: open
    std::fs::write(tmp.path().join("notes.txt"), b"not a log").unwrap();
    for recover in [false, true] {
        let (code, lines) = verify(tmp.path(), recover);
        assert_eq!(code, 0, "{lines:?}");
        assert_eq!(lines, ["3 logs: 1 sealed, 2 open, 0 torn, 0 damaged"]);
    }
    // One file given directly.
    let (code, lines) = verify(&run.join(log_file_name(1)), false);
    assert_eq!((code, lines.len()), (0, 1), "{lines:?}");
    // An empty folder holds no damaged log.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(
        verify(&empty, false),
        (
            0,
            vec!["0 logs: 0 sealed, 0 open, 0 torn, 0 damaged".to_string()]
        )
    );
}

#[test]
fn torn_logs_fail_unless_recover() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 1, &log_bytes(1, 20, true, 0));
    // The last frame cut short (a crash in the middle of its write), then preallocated zeros.
    let full = log_bytes(2, 20, false, 0);
    let mut torn = full[..full.len() - 100].to_vec();
    torn.resize(128 << 10, 0);
    let torn_name = write_log(tmp.path(), 2, &torn);
    // Created and preallocated, then a crash before the header was written.
    let zeros_name = write_log(tmp.path(), 3, &vec![0u8; 64 << 10]);
    let empty_name = write_log(tmp.path(), 4, &[]);

    let (code, lines) = verify(tmp.path(), false);
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let line = |name: &str| lines.iter().find(|l| l.contains(name)).cloned().unwrap();
    let last_frame_at = {
        let check = snapbench::snaplog::check_log(&torn, None);
        assert_eq!(check.frames, 19);
        check.valid_end_offset
    };
    let l = line(&torn_name);
    assert!(
        l.contains(&format!("torn at offset {last_frame_at}")) && l.contains("19 valid frames"),
        "{l}"
    );
    for name in [&zeros_name, &empty_name] {
        let l = line(name);
        assert!(l.contains("torn at offset 0: no file header"), "{l}");
    }
    assert_eq!(lines[3], "4 logs: 1 sealed, 0 open, 3 torn, 0 damaged");
    let (code, lines) = verify(tmp.path(), true);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 4, "torn logs are still listed: {lines:?}");
}

#[test]
fn damaged_logs_fail_even_with_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_log(d, 1, &log_bytes(1, 10, false, 0));
    // A hole of zeros after the valid prefix up to a block boundary, then the rest of the log
    // (a later write landed, an earlier one did not): damaged where the zeros end, mid-frame.
    let mut hole = log_bytes(5, 60, false, 0);
    let prefix_end = log_bytes(5, 10, false, 0).len();
    let hole_end = (prefix_end.div_ceil(BLOCK_BYTES) + 1) * BLOCK_BYTES;
    hole[prefix_end..hole_end].fill(0);
    let mut next_frame = None;
    snapbench::snaplog::for_each_frame(&log_bytes(5, 60, false, 0), u64::MAX, |f| {
        if f.offset >= hole_end as u64 && next_frame.is_none() {
            next_frame = Some(f.offset);
        }
    });
    let next_frame = next_frame.unwrap();
    assert_ne!(next_frame, hole_end as u64, "the hole ends mid-frame");
    let hole_name = write_log(d, 5, &hole);
    // Non-zero bytes after the end frame.
    let mut after_end = log_bytes(6, 10, true, 8192 * 2);
    let n = after_end.len();
    after_end[n - 1] = 7;
    let after_end_name = write_log(d, 6, &after_end);
    // End frame counts that disagree with the log.
    let mut counts = log_bytes(7, 10, false, 0);
    let off = counts.len() as u64;
    append_end_frame(&mut counts, off, 10, 0, 10, 2999);
    let counts_name = write_log(d, 7, &counts);
    // The header says match 8, the name says 9.
    let other_name = log_file_name(9);
    std::fs::write(d.join(&other_name), log_bytes(8, 3, true, 0)).unwrap();
    // A name that carries no match id.
    std::fs::write(d.join("copy.snap"), log_bytes(10, 3, true, 0)).unwrap();

    for recover in [false, true] {
        let (code, lines) = verify(d, recover);
        assert_eq!(code, 1, "{lines:?}");
        let line = |name: &str| lines.iter().find(|l| l.contains(name)).cloned().unwrap();
        let l = line(&hole_name);
        assert!(
            l.contains(&format!("damaged at offset {hole_end}"))
                && l.contains(&format!("an intact frame follows at {next_frame}"))
                && l.contains("(10 valid frames)"),
            "{l}"
        );
        let l = line(&after_end_name);
        assert!(
            l.contains(&format!("damaged at offset {}", n - 1))
                && l.contains("after the end frame"),
            "{l}"
        );
        let l = line(&counts_name);
        assert!(
            l.contains("damaged") && l.contains("end frame counts"),
            "{l}"
        );
        let l = line(&other_name);
        assert!(
            l.contains("damaged at offset 8") && l.contains("file name says 0000000000000009"),
            "{l}"
        );
        let l = line("copy.snap");
        assert!(
            l.contains("damaged") && l.contains("16 lowercase hex"),
            "{l}"
        );
        assert_eq!(
            lines.last().unwrap(),
            "6 logs: 0 sealed, 1 open, 0 torn, 5 damaged"
        );
    }
}

#[test]
fn bad_paths_exit_2_and_symlink_loops_end() {
    Command::cargo_bin("snapbench")
        .unwrap()
        .args(["verify", "/nonexistent/snapbench-data"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not a file or folder"));
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 1, &log_bytes(1, 5, true, 0));
    std::os::unix::fs::symlink(tmp.path(), tmp.path().join("loop")).unwrap();
    let (code, lines) = verify(tmp.path(), false);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines, ["1 logs: 1 sealed, 0 open, 0 torn, 0 damaged"]);
}
