//! Before the window: the finished matches a run's readers start from — written by the prefill
//! through the run's own engine, or adopted from a folder an earlier run kept (`corpus`), whose
//! keyframe indexes are rebuilt by walking the logs. The prefill writes its logs through the
//! same sans-I/O [`LogWriter`] as the DS worker, with a blocking I/O shell of its own.

use std::path::Path;
use std::time::{Duration, Instant};

use snapbench_engines::{file_name, Completion, FastMap, FileKind, MatchId, Op, Recorder};
use snapbench_workloads::ds::{DsParams, MatchSnapshot, MatchSnapshots};
use snapbench_workloads::reads::{ReadParams, PREFILL_ID_BASE};

use super::common::Backlog;
use super::replay::CatEntry;
use super::WorkerCtx;
use crate::plan::Durability;
use crate::snaplog::{self, BLOCK_BYTES};
use crate::writer::{
    FinishedLog, LiveLogs, LogWriter, WriterConfig, WriterEvent, WriterIo, WriterOp,
};

/// The finished matches one worker starts with (prefilled or adopted), and what it cost.
#[derive(Default)]
pub struct Corpus {
    /// Matches.
    pub matches: u64,
    /// Their bytes, up to each end frame.
    pub bytes: u64,
    /// Seconds spent writing (or scanning) them.
    pub secs: f64,
    /// Logs of an adopted corpus that could not be indexed (file, offset, why): counted as read
    /// verification failures.
    pub errors: Vec<String>,
    pub(crate) entries: Vec<CatEntry>,
}

impl Corpus {
    /// No finished matches (the run does not read).
    pub fn empty() -> Corpus {
        Corpus::default()
    }
}

// -- issue 10: prefill only when it serves --
/// A run writes its prefill only when at least this many one-shot reads are expected over its
/// warm-up and window: fewer would read a handful of the logs, so the prefill (200 MiB at the
/// defaults) would cost far more than it measures.
pub const MIN_PREFILL_READS: f64 = 5.0;

/// One-shot reads expected over the run's warm-up and window (all workers), and whether that is
/// enough to write a prefill ([`MIN_PREFILL_READS`]). Live viewers follow running matches, so
/// they need no prefill.
pub fn prefill_serves(params: &DsParams, reads: &ReadParams, run_s: f64) -> (f64, bool) {
    let expected = reads.one_shot_reads_per_s(params) * run_s.max(0.0);
    (expected, expected >= MIN_PREFILL_READS)
}

/// Whether run `plan` writes its prefill: it reads, adopts no corpus, and either expects
/// enough reads ([`prefill_serves`]) or was given `prefill_matches`.
pub fn writes_prefill(plan: &crate::plan::RunPlan) -> bool {
    let crate::plan::Workload::Ds { params, reads, .. } = &plan.workload else {
        return false;
    };
    reads.active(params)
        && plan.corpus.is_none()
        && (plan.prefill_asked || prefill_serves(params, reads, plan.warmup_s + plan.duration_s).1)
}

/// The summary note saying why the prefill was written or skipped (None without a read side or
/// with an adopted corpus).
pub fn prefill_note(plan: &crate::plan::RunPlan) -> Option<String> {
    let crate::plan::Workload::Ds { params, reads, .. } = &plan.workload else {
        return None;
    };
    if !reads.active(params) || plan.corpus.is_some() {
        return None;
    }
    let run_s = plan.warmup_s + plan.duration_s;
    let rate = reads.one_shot_reads_per_s(params);
    let (expected, serves) = prefill_serves(params, reads, run_s);
    Some(if !serves && plan.prefill_asked {
        format!(
            "prefill written as asked (prefill_matches): only {expected:.1} one-shot reads expected in warm-up + window ({rate:.3}/s × {run_s} s)"
        )
    } else if serves {
        format!(
            "prefill written: {expected:.1} one-shot reads expected in warm-up + window ({rate:.3}/s × {run_s} s), at least {MIN_PREFILL_READS}"
        )
    } else {
        format!(
            "prefill skipped: {expected:.1} one-shot reads expected in warm-up + window ({rate:.3}/s × {run_s} s), under {MIN_PREFILL_READS}; reads find only matches finished during the run"
        )
    })
}

/// Largest write of the prefill, bytes.
const PREFILL_WRITE_BYTES: usize = 1 << 20;

/// Most bytes the prefill's open logs may hold staged together: it opens no more logs than
/// this allows (nor more than the engine's queue depth or buffer pool).
const PREFILL_STAGED_BYTES: u64 = 64 << 20;

/// What an engine op of the prefill was, by token.
#[derive(Clone, Copy, Debug)]
enum PrefillOp {
    /// An op of the log writer.
    Writer(WriterOp),
    /// The one directory sync after the last log.
    SyncDir,
}

/// The prefill's I/O shell over an engine nobody else is using yet: it maps the
/// [`LogWriter`]'s ops to engine ops (staged bytes copied into the engine's pool buffers),
/// queues what the engine pushes back, feeds completions back to the writer, and keeps the
/// logs the writer finished and the first error.
struct PrefillIo<'e, R: Recorder> {
    eng: &'e mut R,
    name: &'static str,
    max_in_flight: usize,
    /// Ops submitted or queued, by token.
    ops: FastMap<PrefillOp>,
    token: u64,
    /// Ops the engine pushed back, in submission order (bounded: every open log has at most
    /// one op out at a time, plus the directory sync).
    backlog: Backlog<R::Buf>,
    /// Logs sealed and closed cleanly.
    finished: Vec<FinishedLog>,
    /// The first error, naming the engine, operation, file and offset.
    error: Option<String>,
    /// The folder of the logs, for error messages.
    dir: &'e Path,
}

impl<R: Recorder> PrefillIo<'_, R> {
    /// Submit, or queue behind earlier back-pressured ops (keeps submission order).
    fn submit_op(&mut self, rec: PrefillOp, op: Op<R::Buf>) {
        self.token += 1;
        let token = self.token;
        self.ops.insert(token, rec);
        self.backlog.submit(self.eng, token, op);
    }

    fn resubmit_backlog(&mut self) {
        self.backlog.resubmit(self.eng);
    }

    /// Nothing submitted or queued is left.
    fn idle(&self) -> bool {
        self.eng.in_flight() == 0 && self.backlog.is_empty()
    }

    /// Take completions (waiting at most until `deadline` for one) and hand each back to the
    /// writer; an error is kept (the first) and the writer fails that log.
    fn reap(
        &mut self,
        writer: &mut LogWriter,
        comps: &mut Vec<Completion<R::Buf>>,
        deadline: Instant,
    ) -> Result<(), String> {
        let name = self.name;
        self.eng
            .reap(comps, deadline)
            .map_err(|e| format!("engine {name}: reap: {e}"))?;
        for c in comps.drain(..) {
            if let Some(b) = c.buf {
                self.eng.release_buf(b);
            }
            let Some(rec) = self.ops.remove(&c.token) else {
                debug_assert!(false, "completion of an unknown token {}", c.token);
                continue;
            };
            if let Err(e) = &c.res {
                let (file, offset) = match rec {
                    PrefillOp::Writer(op) => {
                        (Some((MatchId(op.log().id), FileKind::Log)), op.offset())
                    }
                    PrefillOp::SyncDir => (None, None),
                };
                let what = super::describe_error(name, c.kind, file, offset, self.dir, e);
                // The caller names the step ("prefill: ").
                self.error.get_or_insert(what);
            }
            if let PrefillOp::Writer(op) = rec {
                writer.on_complete(op, c.res.is_ok(), self);
            }
        }
        Ok(())
    }
}

impl<R: Recorder> WriterIo for PrefillIo<'_, R> {
    fn submit(&mut self, op: WriterOp, data: &[u8]) -> bool {
        if matches!(op, WriterOp::Write { .. })
            && (!self.backlog.is_empty() || self.eng.in_flight() >= self.max_in_flight)
        {
            return false;
        }
        let Some(eop) = super::common::engine_op(self.eng, op, data) else {
            return false;
        };
        self.submit_op(PrefillOp::Writer(op), eop);
        true
    }

    fn event(&mut self, ev: WriterEvent) {
        if let WriterEvent::Finished(f) = ev {
            self.finished.push(f);
        }
    }
}

/// Write this worker's share of the prefill through `eng`: `reads.prefill_matches` matches
/// (ids from [`PREFILL_ID_BASE`], split by owner), each generated by the DS model and cut after
/// the first snapshot that brings its log to `reads.prefill_match_bytes`, then sealed (end
/// frame, fdatasync, close), and one directory sync. The logs are written by the run's
/// [`LogWriter`], many at once (up to the engine's queue depth). Not measured. Their intended
/// finish time is 0 (before the window).
pub fn prefill<R: Recorder>(
    eng: &mut R,
    ctx: &WorkerCtx,
    params: &DsParams,
    reads: &ReadParams,
) -> Result<Corpus, String> {
    let started = Instant::now();
    let logs = write_logs(eng, ctx, params, reads)?;
    let mut corpus = Corpus::empty();
    for f in logs {
        corpus.matches += 1;
        corpus.bytes += f.data_end;
        corpus
            .entries
            .push(CatEntry::new(f.id, f.data_end, 0, f.last_t_ns, f.keys));
    }
    corpus.secs = started.elapsed().as_secs_f64();
    Ok(corpus)
}

/// The prefill's logs, written and sealed through a [`LogWriter`] over `eng`, in id order.
fn write_logs<R: Recorder>(
    eng: &mut R,
    ctx: &WorkerCtx,
    params: &DsParams,
    reads: &ReadParams,
) -> Result<Vec<FinishedLog>, String> {
    let plan = &ctx.plan;
    let caps = eng.caps().clone();
    let chunk = (caps.buf_bytes.min(PREFILL_WRITE_BYTES) / BLOCK_BYTES) * BLOCK_BYTES;
    if chunk == 0 {
        return Err(format!(
            "engine {}: buffers of {} bytes are too small for the prefill",
            caps.name, caps.buf_bytes
        ));
    }
    // Whole SNAPLOG1 blocks for O_DIRECT engines, as the DS worker writes them.
    let align = if caps.io_align_bytes > 1 {
        (caps.io_align_bytes as u64).max(BLOCK_BYTES as u64)
    } else {
        1
    };
    if align > BLOCK_BYTES as u64 {
        return Err(format!(
            "engine {} needs {align}-byte alignment, which does not divide the 4096-byte SNAPLOG1 block",
            caps.name
        ));
    }
    // Today's durability: nothing acknowledged durable; each log sealed by its final sync; the
    // directory synced once, after the last log (not after each create).
    let mut writer = LogWriter::new(WriterConfig {
        align_bytes: align,
        max_write_bytes: chunk as u64,
        segment_bytes: chunk as u64,
        flush_ns: 0,
        // Each log is created at its final size; growth, if ever, stays in whole blocks.
        prealloc_bytes: BLOCK_BYTES as u64,
        pad_tail: false,
        durability: Durability::None,
        ack_lines: false,
    })
    .sync_dir_after_create(false);
    // One write per log in flight: open enough logs to fill the queue, within the pool and a
    // bound on the bytes staged (each log is fed up to a window of two writes unwritten, and
    // may stage one snapshot more).
    let window_bytes = 2 * chunk as u64;
    let staged_per_log = window_bytes + chunk as u64;
    // An engine that completes every op inside `submit` gains nothing from more logs at once:
    // it writes them one after the other, as the logs of a single-threaded recorder.
    let max_open = if caps.synchronous {
        1
    } else {
        caps.max_in_flight
            .min(caps.buf_count)
            .min((PREFILL_STAGED_BYTES / staged_per_log) as usize)
            .max(1)
    };
    let mut io = PrefillIo {
        eng,
        name: caps.name,
        max_in_flight: caps.max_in_flight.max(1),
        ops: FastMap::default(),
        token: 0,
        backlog: Backlog::with_capacity(max_open + 1),
        finished: Vec::new(),
        error: None,
        dir: &ctx.dir,
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut ids = reads.prefill_ids(ctx.worker, plan.workers);
    let mut more = true;
    let mut started = 0usize;
    // The logs still taking snapshots, and spare snapshot lists (reused).
    let mut feeding: Vec<Feeding> = Vec::with_capacity(max_open);
    let mut spare: Vec<Vec<MatchSnapshot>> = Vec::with_capacity(max_open);
    let mut comps = Vec::with_capacity(caps.max_in_flight.max(1));
    loop {
        while more && io.error.is_none() && writer.open_logs() < max_open {
            let Some(id) = ids.next() else {
                more = false;
                break;
            };
            let spec = LogSpec {
                id,
                target_bytes: reads.prefill_match_bytes,
                created,
            };
            let snaps = spare.pop().unwrap_or_default();
            feeding.push(start_log(
                &mut writer,
                &mut io,
                params,
                plan.seed,
                spec,
                snaps,
            )?);
            started += 1;
        }
        // Top every log up to its window of unwritten bytes; seal those that have it all.
        feeding.retain_mut(|f| {
            if f.feed(&mut writer, &mut io, window_bytes) {
                return true;
            }
            spare.push(std::mem::take(&mut f.snaps));
            false
        });
        if writer.open_logs() == 0 {
            break;
        }
        io.resubmit_backlog();
        // Flush deadlines are moot here (each log is topped up to more than a write, and its
        // seal flushes the rest): fire them so that none is left queued.
        writer.on_timers(u64::MAX, &mut io);
        writer.retry(&mut io);
        if io.idle() {
            // Nothing out: whatever can still be closed is (logs that failed).
            writer.advance_all(&mut io);
            if io.idle() && writer.open_logs() > 0 {
                return Err(match io.error.take() {
                    Some(e) => e,
                    None => format!(
                        "engine {}: prefill: {} logs cannot progress (no {chunk}-byte buffer from the pool)",
                        caps.name,
                        writer.open_logs()
                    ),
                });
            }
        }
        io.reap(
            &mut writer,
            &mut comps,
            Instant::now() + Duration::from_millis(100),
        )?;
    }
    debug_assert!(feeding.is_empty(), "every log sealed");
    if io.error.is_none() && !io.finished.is_empty() {
        debug_assert_eq!(io.finished.len(), started, "every log finished");
        io.submit_op(PrefillOp::SyncDir, Op::SyncDir);
        while !io.idle() {
            io.resubmit_backlog();
            io.reap(
                &mut writer,
                &mut comps,
                Instant::now() + Duration::from_millis(100),
            )?;
        }
    }
    if let Some(e) = io.error.take() {
        return Err(e);
    }
    let mut logs = std::mem::take(&mut io.finished);
    logs.sort_unstable_by_key(|f| f.id);
    Ok(logs)
}

/// One prefilled log to start.
#[derive(Clone, Copy, Debug)]
struct LogSpec {
    id: u64,
    /// The log ends after the first snapshot that brings it to this size.
    target_bytes: u64,
    /// Creation time in its header, ns since the Unix epoch.
    created: u64,
}

/// A started log still taking its snapshots: fed a window at a time, so that the writer stages
/// a couple of writes of it, not the whole log.
struct Feeding {
    slot: u32,
    snaps: Vec<MatchSnapshot>,
    /// The next snapshot to append.
    next: usize,
    /// The file offset its last snapshot ends at (before the end frame).
    end_bytes: u64,
}

impl Feeding {
    /// Append snapshots while fewer than `window_bytes` of the log are unwritten; after the
    /// last one, seal it. Returns whether it still has snapshots to take.
    fn feed(&mut self, writer: &mut LogWriter, io: &mut dyn WriterIo, window_bytes: u64) -> bool {
        let Some(live) = writer.live(self.slot) else {
            debug_assert!(false, "a log is freed only after its seal");
            return false;
        };
        if !live.failed {
            // Completions come in only between feeds: the published end holds still here.
            let published_off = live.published_off;
            while let Some(s) = self.snaps.get(self.next).copied() {
                let end_off = writer.live(self.slot).map_or(u64::MAX, |l| l.end_off);
                if end_off - published_off >= window_bytes {
                    break;
                }
                writer.append(
                    self.slot,
                    s.seq,
                    s.t_ns,
                    super::frame_kind(s.kind),
                    s.payload_bytes,
                    io,
                );
                self.next += 1;
            }
            if self.next < self.snaps.len() {
                return true;
            }
            debug_assert_eq!(
                writer.live(self.slot).map(|l| l.end_off),
                Some(self.end_bytes),
                "the writer framed what was sized"
            );
        }
        // The end frame's time is the last snapshot's (0 for a log without any).
        let last_t_ns = self.snaps.last().map_or(0, |s| s.t_ns);
        writer.seal(self.slot, last_t_ns, io);
        false
    }
}

/// Start one prefilled log in `writer`: its snapshots from the DS model, up to the first that
/// brings the log to `target_bytes`, to be fed by [`Feeding::feed`]. The log is created at its
/// final size (the frames' spans, the end frame, zeros to the block's end), so the file is
/// allocated once.
fn start_log(
    writer: &mut LogWriter,
    io: &mut dyn WriterIo,
    params: &DsParams,
    seed: u64,
    spec: LogSpec,
    mut snaps: Vec<MatchSnapshot>,
) -> Result<Feeding, String> {
    snaps.clear();
    let mut end = BLOCK_BYTES as u64;
    for snap in MatchSnapshots::new(params, seed, spec.id)? {
        end += snaplog::frame_span_bytes(end, snap.payload_bytes);
        snaps.push(snap);
        if end >= spec.target_bytes {
            break;
        }
    }
    let data_end = end + snaplog::frame_span_bytes(end, snaplog::END_PAYLOAD_BYTES);
    let size_bytes = data_end.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64;
    let slot = writer.start_sized(spec.id, 0, spec.created, size_bytes, io);
    Ok(Feeding {
        slot,
        snaps,
        next: 0,
        end_bytes: end,
    })
}

/// Adopt the prefilled logs (ids from [`PREFILL_ID_BASE`]) this worker owns among the `.snap`
/// files of its run folder (linked there from the `corpus` folder), rebuilding each keyframe
/// index with [`snaplog::index_log`]. The files are read with plain reads, not through the
/// engine (this is the recorder's startup scan, not measured; it leaves them in the page
/// cache). A log that cannot be indexed is left out and reported with its file and offset.
pub fn scan_corpus(ctx: &WorkerCtx) -> Corpus {
    let started = Instant::now();
    let workers = u64::from(ctx.plan.workers.max(1));
    let mut ids: Vec<u64> = std::fs::read_dir(&ctx.dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| snaplog::parse_log_file_name(&e.file_name().to_string_lossy()))
                .filter(|id| *id >= PREFILL_ID_BASE && (id - 1) % workers == u64::from(ctx.worker))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    let mut corpus = Corpus::empty();
    for id in ids {
        let path = ctx.dir.join(file_name(MatchId(id), FileKind::Log));
        let shown = std::fs::read_link(&path).unwrap_or_else(|_| path.clone());
        let idx = std::fs::read(&path)
            .map_err(|e| format!("corpus {}: cannot read: {e}", shown.display()))
            .and_then(|b| {
                snaplog::index_log(&b, id).map_err(|e| {
                    format!(
                        "read verification: {} at offset {}: {} (corpus index)",
                        shown.display(),
                        e.offset,
                        e.why
                    )
                })
            });
        match idx {
            Ok(ix) => {
                corpus.matches += 1;
                corpus.bytes += ix.data_end;
                corpus.entries.push(CatEntry::new(
                    id,
                    ix.data_end,
                    0,
                    ix.last_t_ns,
                    ix.keyframes,
                ));
            }
            Err(e) => corpus.errors.push(e),
        }
    }
    corpus.secs = started.elapsed().as_secs_f64();
    corpus
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use snapbench_engines::buffered::{Buffered, BufferedKnobs};
    use snapbench_engines::{Caps, EngineConfig, OpKind};

    use super::*;
    use crate::plan::{expand, RawFields, RunPlan, Suite, Workload};
    use crate::snaplog::{check_log, index_log, LogState as CheckState};

    /// A one-run plan from a suite's text.
    fn plan_of(text: &str) -> RunPlan {
        let suite = Suite::parse(text, "t.toml").expect("suite parses");
        expand(&suite, &RawFields::new(), &[])
            .expect("suite expands")
            .remove(0)
    }

    fn ctx_of(plan: RunPlan, dir: &Path, worker: u32) -> WorkerCtx {
        let (ticks, _) = std::sync::mpsc::sync_channel(16);
        WorkerCtx {
            plan: Arc::new(plan),
            worker,
            dir: dir.to_path_buf(),
            stop: Arc::new(AtomicBool::new(false)),
            ticks,
        }
    }

    fn engine_config(dir: &Path, queue_depth: usize, buf_count: usize) -> EngineConfig {
        EngineConfig {
            dir: dir.to_path_buf(),
            worker: 0,
            workers: 1,
            queue_depth,
            buf_bytes: 64 * 1024,
            buf_count,
            dio_align_bytes: 4096,
            shared: Default::default(),
        }
    }

    fn ds_params(plan: &RunPlan) -> (DsParams, ReadParams) {
        match &plan.workload {
            Workload::Ds { params, reads, .. } => (params.clone(), reads.clone()),
            Workload::Micro(_) => panic!("a DS plan"),
        }
    }

    const SUITE: &str = "[[run]]\nengine = \"buffered\"\nworkers = 2\nprefill_matches = 7\n\
                         prefill_match_bytes = \"300k\"\nkeyframe_s = 0.5\n";

    /// Each worker's prefilled logs are its own ids, sealed, created at their final size, and
    /// indexed as a walk of the file indexes them; every log of the run is there once.
    #[test]
    fn prefilled_logs_verify_and_their_index_matches_the_files() {
        for threads in [0u32, 2] {
            let dir = tempfile::tempdir().unwrap();
            let plan = plan_of(SUITE);
            let (params, reads) = ds_params(&plan);
            let mut all = Vec::new();
            for worker in 0..2 {
                let ctx = ctx_of(plan.clone(), dir.path(), worker);
                let knobs = BufferedKnobs::parse(&format!("threads={threads}")).unwrap();
                // A shallow queue and a small pool: the shell waits for room and buffers.
                let mut eng = Buffered::new(knobs, &engine_config(dir.path(), 3, 2)).unwrap();
                let logs = write_logs(&mut eng, &ctx, &params, &reads).expect("prefill");
                assert_eq!(eng.in_flight(), 0, "threads={threads}");
                let ids: Vec<u64> = logs.iter().map(|f| f.id).collect();
                let owned: Vec<u64> = reads.prefill_ids(worker, 2).collect();
                assert_eq!(ids, owned, "threads={threads}: this worker's ids, in order");
                for f in &logs {
                    let path = dir.path().join(file_name(MatchId(f.id), FileKind::Log));
                    let bytes = std::fs::read(&path).unwrap();
                    let check = check_log(&bytes, Some(f.id));
                    assert_eq!(
                        check.state,
                        CheckState::Sealed,
                        "{}: {check:?}",
                        path.display()
                    );
                    assert_eq!(check.valid_end_offset, f.data_end);
                    assert!(f.data_end >= reads.prefill_match_bytes);
                    assert_eq!(
                        bytes.len() as u64,
                        f.data_end.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64,
                        "created at its final size"
                    );
                    let ix = index_log(&bytes, f.id).expect("indexes");
                    assert_eq!(ix.data_end, f.data_end);
                    assert_eq!(ix.keyframes, f.keys, "{}", path.display());
                    assert!(f.keys.len() >= 2, "keyframes every 0.5 s: {:?}", f.keys);
                    // The last snapshot (the end frame's time) is the one the log ends at.
                    assert_eq!(ix.last_t_ns, f.last_t_ns);
                }
                let corpus = prefill(&mut eng, &ctx, &params, &reads).expect("again");
                assert_eq!(corpus.matches, logs.len() as u64);
                assert_eq!(corpus.bytes, logs.iter().map(|f| f.data_end).sum::<u64>());
                all.extend(ids);
                let mut rest = Vec::new();
                eng.drain(&mut rest, Instant::now() + Duration::from_secs(10))
                    .unwrap();
            }
            all.sort_unstable();
            let every: Vec<u64> = (0..7).map(|k| PREFILL_ID_BASE + k).collect();
            assert_eq!(all, every, "threads={threads}");
        }
    }

    /// An engine whose write at one offset of one log fails with ENOSPC.
    struct FailWrite {
        inner: Buffered,
        file: MatchId,
        offset: u64,
        failed: Vec<Completion<<Buffered as Recorder>::Buf>>,
    }

    impl Recorder for FailWrite {
        type Buf = <Buffered as Recorder>::Buf;
        fn caps(&self) -> &Caps {
            self.inner.caps()
        }
        fn alloc_buf(&mut self, len: usize) -> Option<Self::Buf> {
            self.inner.alloc_buf(len)
        }
        fn release_buf(&mut self, buf: Self::Buf) {
            self.inner.release_buf(buf)
        }
        fn submit(&mut self, token: u64, op: Op<Self::Buf>) -> Result<(), Op<Self::Buf>> {
            match op {
                Op::Write {
                    file, offset, buf, ..
                } if file == self.file && offset == self.offset => {
                    self.failed.push(Completion {
                        token,
                        kind: OpKind::Write,
                        res: Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
                        buf: Some(buf),
                    });
                    Ok(())
                }
                op => self.inner.submit(token, op),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
        fn reap(
            &mut self,
            out: &mut Vec<Completion<Self::Buf>>,
            deadline: Instant,
        ) -> std::io::Result<usize> {
            let n = self.failed.len();
            out.append(&mut self.failed);
            let deadline = if n > 0 { Instant::now() } else { deadline };
            Ok(n + self.inner.reap(out, deadline)?)
        }
        fn in_flight(&self) -> usize {
            self.inner.in_flight() + self.failed.len()
        }
    }

    /// A failed write fails the prefill with the engine, operation, file and offset; every
    /// other log still drains and nothing is left in flight.
    #[test]
    fn a_failed_write_names_engine_operation_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_of(SUITE);
        let (params, reads) = ds_params(&plan);
        let ctx = ctx_of(plan, dir.path(), 0);
        let inner =
            Buffered::new(BufferedKnobs::default(), &engine_config(dir.path(), 8, 8)).unwrap();
        let file = MatchId(PREFILL_ID_BASE + 3); // worker 0 of 2 owns ids base+1, +3, +5
        let mut eng = FailWrite {
            inner,
            file,
            offset: 128 * 1024,
            failed: Vec::new(),
        };
        let e = write_logs(&mut eng, &ctx, &params, &reads).unwrap_err();
        let path = dir.path().join(file_name(file, FileKind::Log));
        assert_eq!(
            e,
            format!(
                "engine buffered: write {} at offset {}: {}",
                path.display(),
                128 * 1024,
                std::io::Error::from_raw_os_error(libc::ENOSPC)
            )
        );
        assert_eq!(eng.in_flight(), 0);
    }

    // -- issue 10: prefill only when it serves --
    #[test]
    fn prefill_only_when_enough_reads_are_expected() {
        // fps-128tick's defaults expect well under one read in 35 s: skipped, and said so.
        let p = plan_of("[[run]]\nengine = \"null\"\nworkload = \"fps-128tick\"\n");
        let Workload::Ds { params, reads, .. } = &p.workload else {
            panic!("a DS run")
        };
        assert!(reads.active(params));
        let (expected, serves) = prefill_serves(params, reads, p.warmup_s + p.duration_s);
        assert!(expected < MIN_PREFILL_READS && !serves, "{expected}");
        assert!(!writes_prefill(&p));
        let note = prefill_note(&p).unwrap();
        assert!(note.starts_with("prefill skipped: "), "{note}");
        assert!(
            note.contains(&format!("{expected:.1} one-shot reads")),
            "{note}"
        );
        // 20 reads/s over 35 s: written.
        let p =
            plan_of("[[run]]\nengine = \"null\"\nworkload = \"fps-128tick\"\nreads_per_s = 20\n");
        assert!(writes_prefill(&p));
        assert!(prefill_note(&p)
            .unwrap()
            .starts_with("prefill written: 700.0"));
        // Given prefill_matches: written as asked even with few reads.
        let p = plan_of(
            "[[run]]\nengine = \"null\"\nworkload = \"fps-128tick\"\nprefill_matches = 8\n",
        );
        assert!(writes_prefill(&p));
        assert!(prefill_note(&p)
            .unwrap()
            .starts_with("prefill written as asked"));
        // No read side: no prefill, no note.
        let p = plan_of(
            "[[run]]\nengine = \"null\"\nworkload = \"fps-128tick\"\nreads_per_match = 0\n",
        );
        assert!(!writes_prefill(&p) && prefill_note(&p).is_none());
    }
}
