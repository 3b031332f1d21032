//! The ack-log check shared by the CLI and crash tests: every frame the ack log names must be
//! present and valid in its match's log (the valid prefix that `snaplog::check_log` reads).

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use snapbench::snaplog::{self, LogState};

/// The `.snap` files of a data dir: `DIR/<run>/*.snap`.
pub fn logs_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for run in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(run.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|x| x == "snap") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// What an ack log and the logs of a data dir say together.
#[derive(Debug, Default)]
pub struct AckReport {
    /// Complete lines in the ack log.
    pub lines: usize,
    /// A last line without its newline (a process killed in the middle of the ack log write);
    /// it is not counted.
    pub partial_last_line: bool,
    /// Frames acknowledged: per match, its highest acknowledged seq + 1.
    pub frames_acked: u64,
    /// Acknowledged frames missing or invalid in their log (must be 0).
    pub frames_lost: u64,
    /// Up to 8 descriptions of losses: match, acknowledged seq, what the log holds.
    pub losses: Vec<String>,
    /// Logs per state: sealed, open, torn, damaged.
    pub states: [u64; 4],
    /// One line per log that is torn or damaged: file, state, offset and problem.
    pub problems: Vec<String>,
    /// Valid data frames in all logs (their valid prefixes).
    pub frames_on_disk: u64,
    /// Damaged logs whose damage is a hole of zero blocks after the valid prefix, with data
    /// after it (see [`LogOnDisk::hole`]), and one line per such log.
    pub holes: u64,
    pub hole_logs: Vec<String>,
}

/// Index of a state in [`AckReport::states`].
pub fn state_index(state: LogState) -> usize {
    match state {
        LogState::Sealed => 0,
        LogState::Open => 1,
        LogState::Torn => 2,
        LogState::Damaged => 3,
    }
}

/// One log of a data dir, checked.
pub struct LogOnDisk {
    pub path: PathBuf,
    /// Match id from the file name.
    pub id: u64,
    pub check: snaplog::LogCheck,
    /// For a damaged log: the first run of whole zero blocks after its valid prefix that is
    /// followed by non-zero bytes, `(start, end)` in bytes. A hole like that is what a crash
    /// leaves when a later write of the log reached the disk and an earlier one did not.
    pub hole: Option<(u64, u64)>,
}

/// The first run of whole zero blocks at or after `from` that has a non-zero byte after it.
fn hole_after(bytes: &[u8], from: u64) -> Option<(u64, u64)> {
    const B: usize = snaplog::BLOCK_BYTES;
    let zero = |k: usize| {
        bytes[k * B..((k + 1) * B).min(bytes.len())]
            .iter()
            .all(|&x| x == 0)
    };
    let blocks = bytes.len().div_ceil(B);
    let mut k = (from as usize).div_ceil(B);
    while k < blocks {
        if zero(k) {
            let start = k;
            while k < blocks && zero(k) {
                k += 1;
            }
            if k < blocks {
                return Some(((start * B) as u64, (k * B) as u64));
            }
            return None;
        }
        k += 1;
    }
    None
}

/// Every log under `data`, checked (the match id from its file name must match its header).
pub fn check_logs(data: &Path) -> Vec<LogOnDisk> {
    logs_under(data)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let id = snaplog::parse_log_file_name(&name).unwrap();
            let check = snaplog::check_log(&bytes, Some(id));
            let hole = match check.state {
                LogState::Damaged if check.match_id == Some(id) => {
                    hole_after(&bytes, check.valid_end_offset)
                }
                _ => None,
            };
            LogOnDisk {
                path,
                id,
                check,
                hole,
            }
        })
        .collect()
}

/// Reads the ack log (`<match_id> <seq>` lines: every frame of that match up to seq is durable)
/// and checks each acknowledged frame against the valid prefix of its log under `data`. Counts
/// instead of panicking, so that a crash test can report how many frames were lost.
pub fn ack_report(ack: &Path, data: &Path) -> AckReport {
    ack_report_prefix(ack, data, u64::MAX)
}

/// [`ack_report`] over the first `limit_bytes` of the ack log only (its length at some moment:
/// the lines written before it).
pub fn ack_report_prefix(ack: &Path, data: &Path, limit_bytes: u64) -> AckReport {
    let mut r = AckReport::default();
    let mut valid_frames: HashMap<u64, u64> = HashMap::new();
    let logs = check_logs(data);
    for LogOnDisk {
        path: p, id, check, ..
    } in &logs
    {
        let id = *id;
        r.states[state_index(check.state)] += 1;
        r.frames_on_disk += check.frames;
        if matches!(check.state, LogState::Torn | LogState::Damaged) {
            let (at, why) = check.problem.clone().unwrap_or((0, String::new()));
            r.problems.push(format!(
                "{}: {:?} at offset {at}: {why} ({} valid frames, valid to {})",
                p.display(),
                check.state,
                check.frames,
                check.valid_end_offset
            ));
        }
        // Frames 0..=last_seq are valid (seq, crc, match id) when the header is valid.
        let n = if check.match_id == Some(id) {
            check.last_seq.map_or(0, |s| s + 1)
        } else {
            0
        };
        valid_frames.insert(id, n);
    }
    let mut text = std::fs::read(ack).unwrap_or_default();
    text.truncate(usize::try_from(limit_bytes).unwrap_or(usize::MAX));
    let text = String::from_utf8(text).expect("the ack log is ASCII");
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    r.partial_last_line = complete.len() < text.len();
    let mut acked: HashMap<u64, u64> = HashMap::new();
    for line in complete.lines() {
        let mut it = line.split(' ');
        let id: u64 = it.next().unwrap().parse().unwrap();
        let seq: u64 = it.next().unwrap().parse().unwrap();
        assert!(it.next().is_none(), "ack log line {line:?}");
        let e = acked.entry(id).or_insert(seq);
        *e = (*e).max(seq);
        r.lines += 1;
    }
    for log in &logs {
        if let Some((start, end)) = log.hole {
            r.holes += 1;
            r.hole_logs.push(format!(
                "{}: {} valid frames (to offset {}), acknowledged {}, then zero blocks \
                 {start}..{end} and data after them; verify: {}",
                log.path.display(),
                log.check.frames,
                log.check.valid_end_offset,
                acked
                    .get(&log.id)
                    .map_or("none".to_string(), |s| format!("up to seq {s}")),
                log.check.problem.as_ref().map_or("", |p| p.1.as_str())
            ));
        }
    }
    let mut ids: Vec<_> = acked.into_iter().collect();
    ids.sort();
    for (id, seq) in ids {
        r.frames_acked += seq + 1;
        let have = valid_frames.get(&id).copied();
        let lost = (seq + 1).saturating_sub(have.unwrap_or(0));
        if lost > 0 {
            r.frames_lost += lost;
            if r.losses.len() < 8 {
                r.losses.push(match have {
                    None => format!("match {id:#x}: acked up to seq {seq}, no log file"),
                    Some(n) => {
                        format!("match {id:#x}: acked up to seq {seq}, log has {n} valid frames")
                    }
                });
            }
        }
    }
    r
}

/// After a clean run: every log is sealed, the ack log ends with a whole line, and every frame
/// it names is present and valid. Returns the number of ack lines.
pub fn check_ack_log(ack: &Path, data: &Path) -> usize {
    let r = ack_report(ack, data);
    assert_eq!(
        r.states[0] as usize,
        logs_under(data).len(),
        "logs not sealed (sealed, open, torn, damaged: {:?}): {:?}",
        r.states,
        r.problems
    );
    assert!(!r.partial_last_line, "the ack log ends in a partial line");
    assert_eq!(r.frames_lost, 0, "acknowledged frames lost: {:?}", r.losses);
    r.lines
}
