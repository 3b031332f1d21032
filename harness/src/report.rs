//! From numbers to a decision: the plots, `report.md`/`report.html`, `compare` and `recommend`,
//! all drawn from a results folder as it lies on disk ([`load::Folder`]).
pub mod compare;
pub mod load;

/// A capacity bracket in words: `[last_pass, first_fail)`, `≥ last_pass` when no load tested
/// above failed, `< first_fail` when nothing passed.
pub fn bracket(last_pass: Option<u32>, first_fail: Option<u32>) -> String {
    match (last_pass, first_fail) {
        (Some(p), Some(f)) => format!("[{p}, {f})"),
        (Some(p), None) => format!("≥ {p}"),
        (None, Some(f)) => format!("< {f}"),
        (None, None) => "-".into(),
    }
}

pub mod page;
pub mod plots;
pub mod recommend;
