//! The harness's error types: [`BadInput`] (exit status 2, before any file is written) is kept
//! apart from [`RunError`] (a run that could not be set up or finish: its row is `failed`, exit
//! status 1) and [`ExportError`] (a results file that could not be written).
//!
//! Every message names what the user needs to find the problem: the engine variant, the
//! operation, the path and, where the driver reports one, the offset.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Bad input: exit status 2, one line naming the problem and the fix, before any file is written.
///
/// The message is the whole sentence shown after `error: `; there is one per check in the plan
/// stage, so it is carried as text rather than as one variant per check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The step of a worker's life an error happened in (shown as the message's prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerOp {
    /// Laying out the micro workload's data file (before the clock starts).
    MicroLayout,
    /// Writing the finished matches replay reads start from (before the clock starts).
    Prefill,
    /// The measured run itself (writer, reads, completions).
    Run,
}

impl WorkerOp {
    /// The prefix this step puts before the driver's own message (empty for the run itself,
    /// whose messages already say what was being done).
    pub fn prefix(self) -> &'static str {
        match self {
            WorkerOp::MicroLayout => "laying out the micro file: ",
            WorkerOp::Prefill => "prefill: ",
            WorkerOp::Run => "",
        }
    }
}

/// Why a run could not be set up or did not finish cleanly. It becomes the `error` column of a
/// `failed` row; the invocation then exits with status 1 after writing what was gathered.
#[derive(Debug, Error)]
pub enum RunError {
    /// `--dir` itself could not be created.
    #[error("cannot create --dir {}: {source}", path.display())]
    CreateDataDir {
        /// The data folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A results file could not be written (the runs before it are on disk).
    #[error("writing results: {0}")]
    Results(#[from] ExportError),
    /// The run folder under `--dir` could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateRunDir {
        /// The run folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A worker's name for a given file (`--file-path`, a corpus log) could not be linked.
    #[error("cannot link {} to {}: {source}", link.display(), target.display())]
    Link {
        /// The link in the run folder.
        link: PathBuf,
        /// The file it points at.
        target: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The corpus folder could not be listed.
    #[error("corpus {}: {source}", path.display())]
    Corpus {
        /// The `--corpus` folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A worker thread could not be spawned.
    #[error("cannot start worker thread: {source}")]
    Spawn {
        /// The OS error.
        source: io::Error,
    },
    /// The engine's factory could not build an instance on its worker.
    #[error("engine {engine}: cannot start: {detail}")]
    EngineStart {
        /// Engine variant.
        engine: String,
        /// The factory's error.
        detail: String,
    },
    /// A worker failed: `detail` is the driver's message, which names the engine, the
    /// operation, the file and the offset.
    #[error("{}{detail}", op.prefix())]
    Worker {
        /// Engine variant.
        engine: String,
        /// Which step failed.
        op: WorkerOp,
        /// The driver's message.
        detail: String,
    },
    /// The first I/O error of a run that tolerated none (or more than `--max-errors`); `detail`
    /// is the driver's message (engine, operation, file, offset).
    #[error("{detail}")]
    Io {
        /// Engine variant.
        engine: String,
        /// The driver's message.
        detail: String,
    },
    /// A worker ended before saying it was ready.
    #[error("a worker exited before it was ready")]
    WorkerGone,
    /// A worker thread panicked.
    #[error("a worker thread panicked")]
    WorkerPanicked,
    /// Replay reads returned data that failed verification.
    #[error("{count} replay read(s) failed verification; first: {first}")]
    ReadVerification {
        /// How many reads failed.
        count: u64,
        /// The first one's message (file and offset).
        first: String,
    },
}

/// A results file that could not be produced or written.
#[derive(Debug, Error)]
pub enum ExportError {
    /// CSV serialisation failed.
    #[error("{file}: {source}")]
    Csv {
        /// File being produced.
        file: String,
        /// The csv crate's error.
        source: csv::Error,
    },
    /// JSON serialisation failed.
    #[error("{file}: {source}")]
    Json {
        /// File being produced.
        file: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// Creating the folder or writing (or renaming) the file failed.
    #[error("{}: {source}", path.display())]
    Write {
        /// File or folder being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Laying out a micro workload's file failed (before the clock starts).
#[derive(Debug, Error)]
pub enum MicroError {
    /// An engine call (flush, reap) failed.
    #[error("engine {engine}: {op}: {source}")]
    Engine {
        /// Engine name.
        engine: &'static str,
        /// The call.
        op: &'static str,
        /// The engine's error.
        source: io::Error,
    },
    /// One op saw no completion in time.
    #[error("engine {engine}: no completion within {limit_s} s")]
    Stalled {
        /// Engine name.
        engine: &'static str,
        /// The limit, s.
        limit_s: u64,
    },
    /// An op completed with an error: the driver's description (engine, operation, file,
    /// offset).
    #[error("{0}")]
    Completion(String),
    /// A signal arrived while the file was being written.
    #[error("interrupted while laying out the file")]
    Interrupted,
    /// Writing the file took too long.
    #[error("laying out the file took more than {limit_s} s")]
    LayoutTimeout {
        /// The limit, s.
        limit_s: u64,
    },
    // -- issue 10: micro --
    /// The laid-out file could not be synced or its cached pages dropped before measuring.
    #[error("cannot sync and drop the cached pages of {} before measuring: {source}", path.display())]
    Invalidate {
        /// The file.
        path: std::path::PathBuf,
        /// The error of open, fsync or posix_fadvise.
        source: io::Error,
    },
}

/// A file-system step outside a run failed (listing a folder for `verify`, …).
#[derive(Debug, Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done: "read folder", "stat".
    pub op: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_wording() {
        let e = RunError::EngineStart {
            engine: "uring:sqpoll=true".into(),
            detail: "EPERM".into(),
        };
        assert_eq!(
            e.to_string(),
            "engine uring:sqpoll=true: cannot start: EPERM"
        );
        let e = RunError::Worker {
            engine: "null".into(),
            op: WorkerOp::Prefill,
            detail: "engine null: write m01.snap at offset 4096: boom".into(),
        };
        assert_eq!(
            e.to_string(),
            "prefill: engine null: write m01.snap at offset 4096: boom"
        );
        let e = RunError::Worker {
            engine: "null".into(),
            op: WorkerOp::MicroLayout,
            detail: "x".into(),
        };
        assert_eq!(e.to_string(), "laying out the micro file: x");
        let e = RunError::ReadVerification {
            count: 2,
            first: "f at offset 0".into(),
        };
        assert_eq!(
            e.to_string(),
            "2 replay read(s) failed verification; first: f at offset 0"
        );
        let e = RunError::CreateRunDir {
            path: "/x/01-null".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(
            e.to_string().starts_with("cannot create /x/01-null: "),
            "{e}"
        );
        assert_eq!(BadInput("no".into()).to_string(), "no");
    }
}
