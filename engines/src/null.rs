//! `null`: no I/O. Every op completes inside `submit` with the result a real engine would give
//! (a write or read transfers its whole buffer), so the harness's own cost — scheduling, clock
//! reads, histogram records — can be measured against fio's null engine.

use std::io;
use std::path::Path;
use std::time::Instant;

use crate::buf::AlignedBuf;
use crate::knobs::declare_knobs;
use crate::{
    Caps, Completion, Engine, EngineBase, EngineConfig, Op, ProbeResult, Recorder, RecorderFactory,
};

declare_knobs! {
    /// Knobs of the `null` engine (none).
    pub struct NullKnobs for "null" {}
}

impl Engine for NullKnobs {
    const SUMMARY: &'static str =
        "no I/O: completes at submit, through the same measurement path (fio's null peer)";
    type Factory = NullFactory;

    fn factory(&self) -> NullFactory {
        NullFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    fn uses(&self, what: &str) -> bool {
        what == "(engine)"
    }
    fn direct(&self) -> bool {
        false
    }
    fn page_cache_reads(&self) -> bool {
        false
    }
}

/// The `null` engine needs nothing: one supported `(engine)` row.
pub fn probe(_dir: &Path) -> Vec<ProbeResult> {
    vec![ProbeResult {
        what: "(engine)".into(),
        supported: true,
        detail: "no I/O; always available".into(),
    }]
}

/// Builds [`Null`] engines.
#[derive(Clone, Debug)]
pub struct NullFactory(pub NullKnobs);

impl RecorderFactory for NullFactory {
    type R = Null;
    fn build(&self, cfg: &EngineConfig) -> io::Result<Null> {
        Ok(Null::new(cfg))
    }
}

/// The `null` engine instance of one worker.
pub struct Null {
    base: EngineBase,
    ready: Vec<Completion<AlignedBuf>>,
}

impl Null {
    /// A null engine with the configured queue depth and buffer pool.
    pub fn new(cfg: &EngineConfig) -> Null {
        let caps = Caps {
            synchronous: true,
            stores_data: false,
            ..Caps::new("null", cfg)
        };
        Null {
            ready: Vec::with_capacity(caps.max_in_flight),
            base: EngineBase::new(caps),
        }
    }
}

impl Recorder for Null {
    type Buf = AlignedBuf;

    fn caps(&self) -> &Caps {
        self.base.caps()
    }

    fn alloc_buf(&mut self, len: usize) -> Option<AlignedBuf> {
        self.base.alloc(len)
    }

    fn release_buf(&mut self, buf: AlignedBuf) {
        self.base.release(buf);
    }

    #[inline]
    fn submit(&mut self, token: u64, op: Op<AlignedBuf>) -> Result<(), Op<AlignedBuf>> {
        let op = self.base.admit(self.ready.len(), op)?;
        let kind = op.kind();
        let (res, buf) = match op {
            Op::Write { buf, .. } | Op::Read { buf, .. } => (buf.len(), Some(buf)),
            _ => (0, None),
        };
        self.ready.push(Completion {
            token,
            kind,
            res: Ok(res),
            buf,
        });
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    #[inline]
    fn reap(
        &mut self,
        out: &mut Vec<Completion<AlignedBuf>>,
        _deadline: Instant,
    ) -> io::Result<usize> {
        let n = self.ready.len();
        out.append(&mut self.ready);
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.ready.len()
    }
}
