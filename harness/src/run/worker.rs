//! One worker thread's life: build its engine on the pinned thread, lay out the micro file or
//! write (or adopt) the replay corpus, say it is ready, wait for the common start, run the
//! workload. Also the links that give every worker its own name for an adopted file.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::{EngineConfig, FactoryVisitor, Recorder, RecorderFactory};

use crate::driver::{self, Clock, Corpus, DsWorker, WorkerCtx, WorkerOutcome};
use crate::error::{RunError, WorkerOp};
use crate::micro;
use crate::plan::{corpus_logs, Workload};

/// Builds the engine on its worker and runs the workload there (the engine may be `!Send`).
pub struct WorkerVisitor {
    /// What the worker shares with the run.
    pub ctx: WorkerCtx,
    /// The engine's configuration for this worker.
    pub cfg: EngineConfig,
    /// Ready (engine built, files laid out) or why not.
    pub ready: Sender<Result<(), RunError>>,
    /// The common start, or None when the run is called off.
    pub start: Receiver<Option<Instant>>,
}

/// How long a failing worker waits for its engine to hand back every buffer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl WorkerVisitor {
    /// Report `err` as the reason this worker is not ready; the outcome carries it too.
    fn fail(&self, err: RunError) -> WorkerOutcome {
        let msg = err.to_string();
        let _ = self.ready.send(Err(err));
        WorkerOutcome {
            fatal: Some(msg),
            ..Default::default()
        }
    }
}

impl FactoryVisitor for WorkerVisitor {
    type Out = WorkerOutcome;
    fn visit<F: RecorderFactory + 'static>(self, factory: F) -> WorkerOutcome {
        let engine = self.ctx.plan.engine.variant();
        let mut eng = match factory.build(&self.cfg) {
            Ok(e) => e,
            Err(e) => {
                return self.fail(RunError::EngineStart {
                    engine,
                    detail: e.to_string(),
                })
            }
        };
        let plan = Arc::clone(&self.ctx.plan);
        if let Workload::Micro(p) = &plan.workload {
            if let Err(e) = micro::layout(&mut eng, p, &self.ctx) {
                let mut rest = Vec::new();
                let _ = eng.drain(&mut rest, Instant::now() + DRAIN_TIMEOUT);
                return self.fail(RunError::Worker {
                    engine,
                    op: WorkerOp::MicroLayout,
                    detail: e.to_string(),
                });
            }
        }
        // The finished matches readers start from: adopted from a corpus, or prefilled through
        // this engine, before the clock starts (not measured).
        let mut corpus = Corpus::empty();
        if let Workload::Ds { params, reads, .. } = &plan.workload {
            if reads.active(params) {
                if plan.corpus.is_some() {
                    corpus = driver::scan_corpus(&self.ctx);
                } else if driver::writes_prefill(&plan) {
                    // -- issue 10: prefill only when it serves --
                    match driver::prefill(&mut eng, &self.ctx, params, reads) {
                        Ok(c) => corpus = c,
                        Err(detail) => {
                            let mut rest = Vec::new();
                            let _ = eng.drain(&mut rest, Instant::now() + DRAIN_TIMEOUT);
                            return self.fail(RunError::Worker {
                                engine,
                                op: WorkerOp::Prefill,
                                detail,
                            });
                        }
                    }
                }
            }
        }
        let _ = self.ready.send(Ok(()));
        let Ok(Some(start)) = self.start.recv() else {
            return WorkerOutcome::default();
        };
        let clock = Clock::new(start, plan.warmup_s, plan.duration_s);
        match &plan.workload {
            Workload::Micro(p) => micro::run(eng, p, &self.ctx, clock),
            Workload::Ds { params, reads, .. } => {
                match DsWorker::new(&self.ctx, eng, params, reads, corpus, clock) {
                    Ok(w) => w.run(),
                    Err(e) => WorkerOutcome {
                        fatal: Some(e),
                        ..Default::default()
                    },
                }
            }
        }
    }
}

/// Make `link` point at `target` (made absolute when it can be).
fn link(target: &Path, link: &Path) -> Result<(), RunError> {
    let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    std::os::unix::fs::symlink(&target, link).map_err(|source| RunError::Link {
        link: link.to_path_buf(),
        target,
        source,
    })
}

/// Each worker opens the corpus logs through their own names in the run folder.
pub fn link_corpus(corpus: &Path, run_dir: &Path) -> Result<(), RunError> {
    let logs = corpus_logs(corpus).map_err(|source| RunError::Corpus {
        path: corpus.to_path_buf(),
        source,
    })?;
    for log in logs {
        let Some(name) = log.file_name() else {
            continue;
        };
        link(&log, &run_dir.join(name))?;
    }
    Ok(())
}

/// Every worker opens the given micro file through its own name in the run folder.
pub fn link_micro_file(file: &Path, run_dir: &Path, workers: u32) -> Result<(), RunError> {
    for w in 0..workers {
        let name =
            snapbench_engines::file_name(micro::micro_file(w), snapbench_engines::FileKind::Data);
        link(file, &run_dir.join(name))?;
    }
    Ok(())
}
