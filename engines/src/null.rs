//! `null`: no I/O. Every op completes inside `submit` with the result a real engine would give
//! (a write or read transfers its whole buffer), so the harness's own cost — scheduling, clock
//! reads, histogram records — can be measured against fio's null engine.

use std::io;
use std::time::Instant;

use crate::buf::{AlignedBuf, BufPool};
use crate::knobs::{KnobError, KnobSpec, KnobValue};
use crate::{Caps, Completion, EngineConfig, Op, Recorder, RecorderFactory};

/// The `null` engine has no knobs.
pub const KNOBS: &[KnobSpec] = &[];

/// Knobs of the `null` engine (none).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NullKnobs;

impl NullKnobs {
    /// Build from parsed values.
    pub fn from_values(_: &[(&'static str, KnobValue)]) -> Result<Self, KnobError> {
        Ok(NullKnobs)
    }
    /// Every knob and its value (none).
    pub fn values(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
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
    caps: Caps,
    bufs: BufPool,
    ready: Vec<Completion<AlignedBuf>>,
}

impl Null {
    /// A null engine with the configured queue depth and buffer pool.
    pub fn new(cfg: &EngineConfig) -> Null {
        let depth = cfg.queue_depth.max(1);
        Null {
            caps: Caps {
                name: "null",
                direct: false,
                io_align_bytes: 1,
                synchronous: true,
                polls: false,
                owns_loop: false,
                max_in_flight: depth,
                buf_bytes: cfg.buf_bytes,
                buf_count: cfg.buf_count,
                stores_data: false,
            },
            bufs: BufPool::new(cfg.buf_count, cfg.buf_bytes, 64),
            ready: Vec::with_capacity(depth),
        }
    }
}

impl Recorder for Null {
    type Buf = AlignedBuf;

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc_buf(&mut self, len: usize) -> Option<AlignedBuf> {
        self.bufs.alloc(len)
    }

    fn release_buf(&mut self, buf: AlignedBuf) {
        self.bufs.release(buf);
    }

    #[inline]
    fn submit(&mut self, token: u64, op: Op<AlignedBuf>) -> Result<(), Op<AlignedBuf>> {
        if self.ready.len() >= self.caps.max_in_flight {
            return Err(op);
        }
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
