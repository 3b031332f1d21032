//! The closed-loop micro driver (fio's classic patterns): `iodepth` I/Os of `bs` bytes kept in
//! flight on one file per worker, latency from submit to completion, so each engine compares
//! 1:1 with `fio --ioengine=<peer>`. Like fio, each I/O's submit time is read when it is
//! submitted and completions share the time of the reap that returned them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use snapbench_engines::{Completion, FileKind, MatchId, Op, OpKind, Recorder};
use snapbench_workloads::micro::{MicroOffsets, MicroParams};

use crate::driver::{describe_error, Clock, Ticker, WorkerCtx, WorkerOutcome, INTERRUPTED};
use crate::error::MicroError;
use crate::measure::{HistKind, SecondHists, Stats};

/// Size of the sequential writes that lay out the file before the measured run.
pub const LAYOUT_CHUNK_BYTES: usize = 1 << 20;

/// Buffer size a micro run asks the engine for.
pub fn micro_buf_bytes(p: &MicroParams) -> usize {
    (p.bs_bytes as usize).max(LAYOUT_CHUNK_BYTES.min(p.file_size_bytes as usize))
}

/// The file of worker `w`.
pub fn micro_file(worker: u32) -> MatchId {
    MatchId(u64::from(worker))
}

/// How long one setup op may take.
const WAIT_ONE_S: u64 = 60;

/// How long laying out a file may take.
const LAYOUT_S: u64 = 600;

/// An engine call failed: name the engine and the call.
fn engine_err<R: Recorder>(eng: &R, op: &'static str) -> impl FnOnce(std::io::Error) -> MicroError {
    let engine = eng.caps().name;
    move |source| MicroError::Engine { engine, op, source }
}

fn wait_one<R: Recorder>(eng: &mut R, out: &mut Vec<Completion<R::Buf>>) -> Result<(), MicroError> {
    let deadline = Instant::now() + Duration::from_secs(WAIT_ONE_S);
    while out.is_empty() {
        if Instant::now() >= deadline {
            return Err(MicroError::Stalled {
                engine: eng.caps().name,
                limit_s: WAIT_ONE_S,
            });
        }
        eng.flush().map_err(engine_err(eng, "flush"))?;
        eng.reap(out, deadline).map_err(engine_err(eng, "reap"))?;
    }
    Ok(())
}

fn one_op<R: Recorder>(eng: &mut R, op: Op<R::Buf>, ctx: &WorkerCtx) -> Result<(), MicroError> {
    let (kind, file) = (op.kind(), micro_file(ctx.worker));
    let mut op = op;
    let mut out = Vec::new();
    while let Err(back) = eng.submit(0, op) {
        op = back;
        wait_one(eng, &mut out)?;
        out.clear();
    }
    wait_one(eng, &mut out)?;
    for c in out {
        if let Err(e) = &c.res {
            return Err(MicroError::Completion(describe_error(
                eng.caps().name,
                kind,
                Some((file, FileKind::Data)),
                None,
                &ctx.dir,
                e,
            )));
        }
        if let Some(b) = c.buf {
            eng.release_buf(b);
        }
    }
    Ok(())
}

/// Create the worker's file and write it in full (fallocated blocks would read back zeros
/// without any I/O), then sync it and drop its cached pages (fio's `invalidate=1`, for
/// O_DIRECT engines too: a buffered layout leaves pages that direct reads would otherwise be
/// compared against). A given `--file-path` is opened, synced and invalidated the same way.
/// Not measured.
pub fn layout<R: Recorder>(
    eng: &mut R,
    p: &MicroParams,
    ctx: &WorkerCtx,
) -> Result<(), MicroError> {
    layout_file(eng, p, ctx)?;
    // -- issue 10: micro --
    if !eng.caps().stores_data {
        return Ok(()); // The null engine keeps no file.
    }
    let path = ctx.dir.join(snapbench_engines::file_name(
        micro_file(ctx.worker),
        FileKind::Data,
    ));
    crate::machine::invalidate_file(&path).map_err(|source| MicroError::Invalidate { path, source })
}

fn layout_file<R: Recorder>(
    eng: &mut R,
    p: &MicroParams,
    ctx: &WorkerCtx,
) -> Result<(), MicroError> {
    let file = micro_file(ctx.worker);
    if ctx.plan.micro_file.is_some() {
        // A given, fully written file (linked into the run folder under the worker's name).
        return one_op(
            eng,
            Op::Open {
                file,
                kind: FileKind::Data,
                writable: true,
            },
            ctx,
        );
    }
    one_op(
        eng,
        Op::Create {
            file,
            kind: FileKind::Data,
            prealloc_bytes: p.file_size_bytes,
        },
        ctx,
    )?;
    let chunk = micro_buf_bytes(p) as u64;
    let mut offset = 0u64;
    let mut next_token = 1u64;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(LAYOUT_S);
    while offset < p.file_size_bytes || eng.in_flight() > 0 {
        if ctx.should_stop() {
            return Err(MicroError::Interrupted);
        }
        while offset < p.file_size_bytes && eng.in_flight() < eng.caps().max_in_flight.min(8) {
            let len = chunk.min(p.file_size_bytes - offset) as usize;
            let Some(mut buf) = eng.alloc_buf(len) else {
                break;
            };
            buf.as_mut().fill(0x5a);
            match eng.submit(
                next_token,
                Op::Write {
                    file,
                    offset,
                    buf,
                    dsync: false,
                },
            ) {
                Ok(()) => {
                    next_token += 1;
                    offset += len as u64;
                }
                Err(Op::Write { buf, .. }) => {
                    eng.release_buf(buf);
                    break;
                }
                Err(_) => unreachable!("a write comes back as a write"),
            }
        }
        eng.flush().map_err(engine_err(eng, "flush"))?;
        eng.reap(&mut out, deadline)
            .map_err(engine_err(eng, "reap"))?;
        if Instant::now() >= deadline {
            return Err(MicroError::LayoutTimeout { limit_s: LAYOUT_S });
        }
        for c in out.drain(..) {
            if let Err(e) = &c.res {
                // Token t carried the chunk at (t - 1) * chunk.
                let at = c.token.saturating_sub(1).saturating_mul(chunk);
                return Err(MicroError::Completion(describe_error(
                    eng.caps().name,
                    OpKind::Write,
                    Some((file, FileKind::Data)),
                    Some(at),
                    &ctx.dir,
                    e,
                )));
            }
            if let Some(b) = c.buf {
                eng.release_buf(b);
            }
        }
    }
    one_op(eng, Op::Sync { file }, ctx)
}

/// Run the measured closed loop until the window ends, then drain.
pub fn run<R: Recorder>(
    mut eng: R,
    p: &MicroParams,
    ctx: &WorkerCtx,
    clock: Clock,
) -> WorkerOutcome {
    let mut outcome = WorkerOutcome {
        caps: Some(eng.caps().clone()),
        ..WorkerOutcome::default()
    };
    let file = micro_file(ctx.worker);
    let depth = (p.iodepth as usize).min(eng.caps().max_in_flight).max(1);
    let bs = p.bs_bytes as usize;
    let is_read = p.rw.is_read();
    let mut offsets = MicroOffsets::new(p, ctx.plan.seed, ctx.worker);
    // Token = slot; each slot remembers its submit time and offset.
    let mut submit_ns = vec![0u64; depth];
    let mut offset_of = vec![0u64; depth];
    let mut free: Vec<u32> = (0..depth as u32).rev().collect();
    let mut comps: Vec<Completion<R::Buf>> = Vec::with_capacity(depth);
    let mut ticker = Ticker::default();
    let end_ns = clock.window_end_ns;
    let mut stats = Stats {
        seconds: SecondHists::on(),
        ..Stats::default()
    };
    let batch = p.iodepth_batch as usize;
    let mut queued = 0usize;
    'run: loop {
        if ctx.should_stop() {
            break;
        }
        // Refill the queue.
        while let Some(slot) = free.pop() {
            let now = clock.now_ns();
            if now >= end_ns {
                free.push(slot);
                break;
            }
            let Some(buf) = eng.alloc_buf(bs) else {
                free.push(slot);
                break;
            };
            let offset = offsets.next_offset();
            let op = if is_read {
                Op::Read { file, offset, buf }
            } else {
                Op::Write {
                    file,
                    offset,
                    buf,
                    dsync: false,
                }
            };
            submit_ns[slot as usize] = now;
            offset_of[slot as usize] = offset;
            let submitted = eng.submit(u64::from(slot), op);
            if submitted.is_ok() && batch > 0 {
                queued += 1;
                if queued >= batch {
                    // fio's iodepth_batch_submit: this many I/Os per submit call.
                    queued = 0;
                    if let Err(e) = eng.flush() {
                        outcome.fatal = Some(format!("engine {}: submit: {e}", eng.caps().name));
                        break 'run;
                    }
                }
            }
            if let Err(op) = submitted {
                free.push(slot);
                if let Op::Read { buf, .. } | Op::Write { buf, .. } = op {
                    eng.release_buf(buf);
                }
                break;
            }
        }
        // No separate flush: reap submits what is queued (one syscall for io_uring).
        if eng.in_flight() == 0 {
            if clock.now_ns() < end_ns && !ctx.should_stop() {
                // The engine refused an op (no buffer, no queue room) with nothing of ours in
                // flight: nothing would ever free room, so the run cannot go on. Ending it
                // quietly reported a short run as `ok` (issue 13).
                outcome.fatal = Some(format!(
                    "engine {}: refused an I/O with none in flight (no buffer or queue room), {} ms before the window's end",
                    eng.caps().name,
                    (end_ns - clock.now_ns()) / 1_000_000
                ));
            }
            break;
        }
        let deadline = clock.instant(end_ns).max(Instant::now());
        if let Err(e) = eng.reap(&mut comps, deadline) {
            outcome.fatal = Some(format!("engine {}: reap: {e}", eng.caps().name));
            break;
        }
        let now = clock.now_ns();
        ticker.roll(now, ctx, &mut stats.seconds);
        for c in comps.drain(..) {
            let slot = c.token as usize;
            free.push(slot as u32);
            let t0 = submit_ns[slot];
            match &c.res {
                Ok(n) => {
                    if clock.in_window(t0) {
                        let lat = now - t0;
                        stats.record(HistKind::Lat, lat);
                        stats.ops += 1;
                        stats.bytes += *n as u64;
                        stats.io_ops += 1;
                        stats.io_bytes += *n as u64;
                        ticker.op(*n as u64, lat);
                        ticker.io();
                    }
                }
                Err(e) => {
                    stats.errors += 1;
                    ticker.error();
                    outcome.first_error.get_or_insert_with(|| {
                        describe_error(
                            eng.caps().name,
                            c.kind,
                            Some((file, FileKind::Data)),
                            Some(offset_of[slot]),
                            &ctx.dir,
                            e,
                        )
                    });
                }
            }
            if let Some(b) = c.buf {
                eng.release_buf(b);
            }
            if stats.errors > ctx.plan.max_errors {
                ctx.stop.store(true, Ordering::Relaxed);
                break 'run;
            }
        }
    }
    let mut rest = Vec::new();
    if let Err(e) = eng.drain(&mut rest, Instant::now() + Duration::from_secs(60)) {
        outcome.fatal.get_or_insert(format!("drain: {e}"));
    }
    for c in rest {
        if let Some(b) = c.buf {
            eng.release_buf(b);
        }
    }
    let mut close_out = Vec::new();
    if eng.submit(u64::MAX, Op::Close { file }).is_ok() {
        let _ = eng.drain(&mut close_out, Instant::now() + Duration::from_secs(10));
    }
    ticker.send(ctx, &mut stats.seconds);
    outcome.stats = stats;
    outcome.interrupted = INTERRUPTED.load(Ordering::Relaxed);
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use snapbench_engines::null::Null;
    use snapbench_engines::{AlignedBuf, Caps, EngineConfig};

    use super::*;
    use crate::plan::{expand, RawFields, Suite, Workload};

    /// The null engine, refusing every op after its first `take` (as an SQ that looks full
    /// with nothing of ours in flight did under SQPOLL).
    struct Refusing {
        inner: Null,
        take: u32,
    }

    impl Recorder for Refusing {
        type Buf = AlignedBuf;
        fn caps(&self) -> &Caps {
            self.inner.caps()
        }
        fn alloc_buf(&mut self, len: usize) -> Option<AlignedBuf> {
            self.inner.alloc_buf(len)
        }
        fn release_buf(&mut self, buf: AlignedBuf) {
            self.inner.release_buf(buf)
        }
        fn submit(&mut self, token: u64, op: Op<AlignedBuf>) -> Result<(), Op<AlignedBuf>> {
            if matches!(op, Op::Read { .. }) {
                if self.take == 0 {
                    return Err(op);
                }
                self.take -= 1;
            }
            self.inner.submit(token, op)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
        fn reap(
            &mut self,
            out: &mut Vec<Completion<AlignedBuf>>,
            deadline: Instant,
        ) -> std::io::Result<usize> {
            self.inner.reap(out, deadline)
        }
        fn in_flight(&self) -> usize {
            self.inner.in_flight()
        }
    }

    /// A run whose engine refuses an op with nothing in flight fails, naming the engine; it
    /// used to end at once, quietly, as `ok`.
    #[test]
    fn an_engine_that_refuses_with_nothing_in_flight_fails_the_run() {
        let suite = Suite::parse(
            "[[run]]\nengine = \"null\"\nworkload = \"micro\"\nrw = \"randread\"\niodepth = 1\n",
            "t.toml",
        )
        .unwrap();
        let plan = expand(&suite, &RawFields::new(), &[]).unwrap().remove(0);
        let Workload::Micro(p) = plan.workload.clone() else {
            panic!("a micro plan")
        };
        let dir = tempfile::tempdir().unwrap();
        let (ticks, _rx) = std::sync::mpsc::sync_channel(1024);
        let ctx = WorkerCtx {
            plan: Arc::new(plan),
            worker: 0,
            dir: dir.path().to_path_buf(),
            stop: Arc::new(AtomicBool::new(false)),
            ticks,
        };
        let cfg = EngineConfig {
            dir: dir.path().to_path_buf(),
            worker: 0,
            workers: 1,
            queue_depth: 1,
            buf_bytes: 64 * 1024,
            buf_count: 4,
            dio_align_bytes: 4096,
            shared: Default::default(),
        };
        for take in [0u32, 1000] {
            let eng = Refusing {
                inner: Null::new(&cfg),
                take,
            };
            let out = run(eng, &p, &ctx, Clock::new(Instant::now(), 0.0, 0.5));
            let fatal = out
                .fatal
                .unwrap_or_else(|| panic!("take {take}: not failed"));
            assert!(
                fatal.contains("engine null: refused an I/O with none in flight"),
                "{fatal}"
            );
            assert_eq!(out.stats.ops, u64::from(take), "what was done is kept");
        }
    }
}
