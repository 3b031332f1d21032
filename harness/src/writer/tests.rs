//! The writer without any engine: a fake shell that completes ops in random order, fails some,
//! pushes back on writes, fires timers and pins logs, and checks every ack against the bytes it
//! has itself seen written and synced.

use std::collections::HashMap;

use super::*;
use crate::snaplog::{check_log, frame_span_bytes, LogState as CheckState};

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the fake shell knows of one log, from the ops and completions alone.
#[derive(Default)]
struct Model {
    /// The file as the successful writes left it.
    file: Vec<u8>,
    /// Contiguous end of the successful writes (a write may start at or before it, never after).
    written: u64,
    /// End covered by completed syncs (of writes completed before each was submitted).
    durable: u64,
    dir_synced: bool,
    alloc_end: u64,
    write_in_flight: bool,
    /// End offset of each appended frame, by seq (the test's own framing).
    frame_ends: Vec<u64>,
    next_off: u64,
    /// An op of it failed.
    failed: bool,
    /// The test sealed it.
    sealed: bool,
    last_acked: Option<u64>,
    pins: u32,
    closed: bool,
    finished: bool,
}

struct InFlight {
    op: WriterOp,
    bytes: Vec<u8>,
    /// For a sync: the model's written end when it was submitted.
    covers: u64,
}

struct Fake {
    durability: Durability,
    in_flight: Vec<InFlight>,
    models: HashMap<u64, Model>,
    /// Refuse writes (no room or buffer).
    push_back: bool,
    /// The writer pads tail blocks (a write's data may end past the frames, on a block).
    pad_tail: bool,
    acks: u64,
}

impl Fake {
    /// A shell with nothing in flight, taking every op.
    fn new(durability: Durability) -> Fake {
        Fake {
            durability,
            in_flight: Vec::new(),
            models: HashMap::new(),
            push_back: false,
            pad_tail: false,
            acks: 0,
        }
    }
}

impl WriterIo for Fake {
    fn submit(&mut self, op: WriterOp, data: &[u8]) -> bool {
        let id = op.log().id;
        let others = self
            .in_flight
            .iter()
            .filter(|f| f.op.log().id == id)
            .count();
        let m = self.models.get_mut(&id).expect("known log");
        assert!(!m.closed, "{op:?} after the close");
        let mut covers = 0;
        let mut bytes = Vec::new();
        match op {
            WriterOp::Create { prealloc_bytes, .. } => m.alloc_end = prealloc_bytes,
            WriterOp::Write {
                offset,
                len_bytes,
                data_end,
                ..
            } => {
                if data_end > m.next_off {
                    // tail = pad: the flush committed its tail block's zeros; the next frame
                    // starts on the fresh block.
                    assert!(self.pad_tail, "data past the frames without tail = pad");
                    assert!(data_end % 4096 == 0 && data_end - m.next_off < 4096);
                    m.next_off = data_end;
                }
                if self.pad_tail {
                    assert!(
                        offset >= m.written,
                        "tail = pad: a write at {offset} touches written bytes (to {})",
                        m.written
                    );
                }
                if self.push_back {
                    return false;
                }
                assert!(!m.write_in_flight, "two writes of one log in flight");
                assert!(
                    offset <= m.written,
                    "a hole before {offset} (written {})",
                    m.written
                );
                assert!(
                    offset + len_bytes <= m.alloc_end,
                    "write past the allocation"
                );
                assert_eq!(data.len() as u64, data_end - offset);
                assert!(data_end <= offset + len_bytes);
                m.write_in_flight = true;
                bytes.extend_from_slice(data);
                bytes.resize(len_bytes as usize, 0);
            }
            WriterOp::Sync { covered, .. } => {
                assert!(covered <= m.written, "sync covers unreaped bytes");
                covers = m.written;
            }
            WriterOp::Close { .. } => {
                assert_eq!(others, 0, "close with ops in flight");
                assert_eq!(m.pins, 0, "close while a reader holds the file");
            }
            WriterOp::SyncDir { .. } | WriterOp::Allocate { .. } => {}
        }
        self.in_flight.push(InFlight { op, bytes, covers });
        true
    }

    fn event(&mut self, ev: WriterEvent) {
        match ev {
            WriterEvent::Acked { id, seq, .. } => {
                let m = &mut self.models.get_mut(&id).unwrap();
                let end = m.frame_ends[seq as usize];
                assert!(
                    end <= m.written,
                    "acked frame {seq} ending {end} not written"
                );
                assert!(m.last_acked.is_none_or(|a| a < seq), "acks out of order");
                if self.durability != Durability::None {
                    assert!(m.dir_synced, "acked before the directory sync");
                    assert!(
                        end <= m.durable,
                        "acked frame {seq} ending {end} beyond the synced {}",
                        m.durable
                    );
                }
                m.last_acked = Some(seq);
                self.acks += 1;
            }
            WriterEvent::Finished(f) => {
                let m = self.models.get_mut(&f.id).unwrap();
                assert!(!m.failed);
                assert_eq!(f.data_end, m.next_off);
                m.finished = true;
            }
            _ => {}
        }
    }
}

impl Fake {
    /// Complete the in-flight op at index `i`.
    fn complete(&mut self, w: &mut LogWriter, i: usize, ok: bool) {
        let f = self.in_flight.swap_remove(i);
        let m = self.models.get_mut(&f.op.log().id).unwrap();
        if !ok {
            m.failed = true;
        }
        match f.op {
            WriterOp::Write {
                offset,
                data_end,
                dsync,
                ..
            } => {
                m.write_in_flight = false;
                if ok {
                    let end = offset as usize + f.bytes.len();
                    if m.file.len() < end {
                        m.file.resize(end, 0);
                    }
                    m.file[offset as usize..end].copy_from_slice(&f.bytes);
                    m.written = m.written.max(data_end);
                    if dsync {
                        m.durable = m.durable.max(data_end);
                    }
                }
            }
            WriterOp::Sync { .. } if ok => m.durable = m.durable.max(f.covers),
            WriterOp::SyncDir { .. } if ok => m.dir_synced = true,
            WriterOp::Allocate { len_bytes, .. } if ok => m.alloc_end += len_bytes,
            WriterOp::Close { .. } => m.closed = true,
            _ => {}
        }
        w.on_complete(f.op, ok, self);
    }
}

/// Counts of one randomised run.
#[derive(Default)]
struct Counts {
    completions: u64,
    errors: u64,
    acks: u64,
    sealed_ok: u64,
}

fn run_one(seed: u64) -> Counts {
    let mut rng = Rng(seed);
    let durability = match rng.below(4) {
        0 => Durability::None,
        1 => Durability::Interval { ms: 3.0 },
        2 => Durability::Every,
        _ => Durability::Dsync,
    };
    let align = if rng.chance(50) { 4096 } else { 1 };
    let cfg = WriterConfig {
        align_bytes: align,
        max_write_bytes: [4096, 8192, 65536][rng.below(3) as usize],
        segment_bytes: [2048, 8192, 32768][rng.below(3) as usize],
        flush_ns: 2_000_000,
        prealloc_bytes: [4096, 16384, 1 << 20][rng.below(3) as usize],
        pad_tail: rng.chance(50),
        durability,
        ack_lines: true,
    };
    let error_pct = [0, 0, 1, 4][rng.below(4) as usize];
    let mut w = LogWriter::new(cfg);
    let mut io = Fake::new(durability);
    io.pad_tail = cfg.pad_tail && align > 1;
    let mut counts = Counts::default();
    let mut ids: Vec<u64> = Vec::new();
    let mut next_id = 1 + (seed % 1000) * 16;
    let mut seqs: HashMap<u64, u64> = HashMap::new();
    let mut now = 0u64;
    let steps = 200 + rng.below(400);
    for _ in 0..steps {
        now += rng.below(1_500_000);
        io.push_back = rng.chance(15);
        match rng.below(100) {
            0..=29 => {
                // A snapshot for a running match.
                let live: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|id| w.slot_of(*id).is_some() && !io.models[id].sealed)
                    .collect();
                if let Some(&id) = live.get(rng.below(live.len() as u64 + 1) as usize) {
                    let slot = w.slot_of(id).unwrap();
                    let kind = if rng.chance(10) {
                        FrameKind::Keyframe
                    } else {
                        FrameKind::Delta
                    };
                    let payload = 16 + rng.below(3000) as u32;
                    let accepted = !io.models[&id].failed;
                    if accepted {
                        let seq = seqs.entry(id).or_default();
                        let m = io.models.get_mut(&id).unwrap();
                        let end = m.next_off + frame_span_bytes(m.next_off, payload);
                        m.frame_ends.push(end);
                        m.next_off = end;
                        let s = *seq;
                        *seq += 1;
                        w.append(slot, s, now, kind, payload, &mut io);
                    } else {
                        // The writer ignores snapshots of a failed log.
                        w.append(slot, 0, now, kind, payload, &mut io);
                    }
                }
            }
            30..=33 if ids.len() < 10 => {
                let id = next_id;
                next_id += 1;
                ids.push(id);
                io.models.insert(
                    id,
                    Model {
                        next_off: BLOCK_BYTES as u64,
                        ..Model::default()
                    },
                );
                w.start(id, now, 42, &mut io);
            }
            34..=36 => {
                if let Some(&id) = ids.get(rng.below(ids.len() as u64 + 1) as usize) {
                    if let (Some(slot), false) = (w.slot_of(id), io.models[&id].sealed) {
                        seal_model(io.models.get_mut(&id).unwrap());
                        w.seal(slot, now, &mut io);
                    }
                }
            }
            37..=74 => {
                if !io.in_flight.is_empty() {
                    let i = rng.below(io.in_flight.len() as u64) as usize;
                    let ok = !rng.chance(error_pct);
                    counts.completions += 1;
                    counts.errors += u64::from(!ok);
                    io.complete(&mut w, i, ok);
                }
            }
            75..=82 => w.on_timers(now, &mut io),
            83..=88 => w.retry(&mut io),
            _ => {
                // A reader pins a running log, or one leaves.
                if let Some(&id) = ids.get(rng.below(ids.len() as u64 + 1) as usize) {
                    if let Some(slot) = w.slot_of(id) {
                        let m = io.models.get_mut(&id).unwrap();
                        if m.pins > 0 && rng.chance(60) {
                            m.pins -= 1;
                            w.unpin(slot, true);
                            w.advance_poked(&mut io);
                        } else if !m.closed
                            && w.state(slot) != Some(LogState::Closing { ok: true })
                            && !matches!(w.state(slot), Some(LogState::Closing { .. }))
                        {
                            m.pins += 1;
                            w.pin(slot, true);
                        }
                    }
                }
            }
        }
    }
    // The end of the run: readers leave, every log is sealed, everything completes.
    io.push_back = false;
    for &id in &ids {
        if let Some(slot) = w.slot_of(id) {
            let m = io.models.get_mut(&id).unwrap();
            while m.pins > 0 {
                m.pins -= 1;
                w.unpin(slot, true);
            }
            if !m.sealed {
                seal_model(m);
                w.seal(slot, now, &mut io);
            }
        }
    }
    w.advance_poked(&mut io);
    let mut turns = 0;
    while w.open_logs() > 0 {
        turns += 1;
        assert!(turns < 100_000, "seed {seed}: the writer does not finish");
        now += 500_000;
        w.on_timers(now, &mut io);
        w.retry(&mut io);
        if io.in_flight.is_empty() {
            w.advance_all(&mut io);
            assert!(
                !io.in_flight.is_empty() || w.open_logs() == 0,
                "seed {seed}: {} logs stuck with nothing in flight",
                w.open_logs()
            );
            continue;
        }
        let i = rng.below(io.in_flight.len() as u64) as usize;
        let ok = !rng.chance(error_pct);
        counts.completions += 1;
        counts.errors += u64::from(!ok);
        io.complete(&mut w, i, ok);
    }
    assert!(io.in_flight.is_empty());
    for (&id, m) in &io.models {
        if m.failed {
            assert!(!m.finished, "seed {seed}: failed log {id} finished");
            continue;
        }
        assert!(m.finished, "seed {seed}: log {id} not finished");
        assert!(
            m.dir_synced && m.durable >= m.next_off,
            "seed {seed}: seal not durable"
        );
        let check = check_log(&m.file, Some(id));
        assert_eq!(
            check.state,
            CheckState::Sealed,
            "seed {seed}: log {id}: {:?}",
            check.problem
        );
        assert_eq!(check.frames, m.frame_ends.len() as u64, "seed {seed}");
        // Every snapshot of a cleanly sealed log was acknowledged.
        assert_eq!(
            m.last_acked.map_or(0, |s| s + 1),
            m.frame_ends.len() as u64,
            "seed {seed}: log {id}"
        );
        counts.sealed_ok += 1;
    }
    counts.acks = io.acks;
    counts
}

fn seal_model(m: &mut Model) {
    m.sealed = true;
    if !m.failed {
        m.next_off += frame_span_bytes(m.next_off, END_PAYLOAD);
    }
}

const END_PAYLOAD: u32 = snaplog::END_PAYLOAD_BYTES;

/// The randomised interleaving test: many seeds, each a different interleaving of appends,
/// seals, completions in any order, errors, back-pressure, timers and readers.
#[test]
fn random_interleavings_never_ack_early_and_leave_valid_logs() {
    let seeds = 1000u64;
    let mut total = Counts::default();
    for seed in 0..seeds {
        let c = run_one(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
        total.completions += c.completions;
        total.errors += c.errors;
        total.acks += c.acks;
        total.sealed_ok += c.sealed_ok;
    }
    println!(
        "writer: ran {seeds} interleavings: {} completions ({} failed), {} acks, {} logs sealed and checked",
        total.completions, total.errors, total.acks, total.sealed_ok
    );
    assert!(total.sealed_ok > seeds, "too few logs got sealed");
    assert!(total.errors > 100, "too few errors were injected");
    assert!(total.acks > 10 * seeds, "too few acks");
}

/// A plain life: one log, aligned writes, the tail block rewritten, the ack line written.
#[test]
fn one_log_tail_block_is_rewritten_and_acked_after_sync() {
    let cfg = WriterConfig {
        align_bytes: 4096,
        max_write_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        flush_ns: 1_000_000,
        prealloc_bytes: 1 << 20,
        pad_tail: false,
        durability: Durability::Every,
        ack_lines: true,
    };
    let mut w = LogWriter::new(cfg);
    let mut io = Fake::new(cfg.durability);
    io.models.insert(
        7,
        Model {
            next_off: 4096,
            ..Model::default()
        },
    );
    let slot = w.start(7, 0, 1, &mut io);
    // Create, then the directory sync and the header write.
    io.complete(&mut w, 0, true);
    assert_eq!(io.in_flight.len(), 2);
    let m = io.models.get_mut(&7).unwrap();
    let end = m.next_off + frame_span_bytes(m.next_off, 100);
    m.frame_ends.push(end);
    m.next_off = end;
    w.append(slot, 0, 10, FrameKind::Delta, 100, &mut io);
    // The flush timer: nothing goes out while the header write is in flight.
    w.on_timers(2_000_000, &mut io);
    assert_eq!(io.in_flight.len(), 2);
    while !io.in_flight.is_empty() {
        io.complete(&mut w, 0, true);
    }
    assert_eq!(io.acks, 1);
    assert_eq!(w.ack_lines(), b"7 0\n");
    seal_model(io.models.get_mut(&7).unwrap());
    w.seal(slot, 3_000_000, &mut io);
    while !io.in_flight.is_empty() {
        io.complete(&mut w, 0, true);
    }
    // The tail block (from 4096) was rewritten with the end frame, zero-padded to 8192.
    let m = &io.models[&7];
    assert!(m.finished);
    assert_eq!(m.file.len(), 8192);
    assert_eq!(check_log(&m.file, Some(7)).state, CheckState::Sealed);
    assert_eq!(w.open_logs(), 0);
}

/// tail = pad: each flush zero-pads its tail block for good, the next frame starts on the next
/// block, no write touches a block an earlier one wrote, and the log verifies sealed (a reader
/// skips the zeros at each frame boundary).
#[test]
fn pad_tail_starts_each_flush_on_a_fresh_block() {
    let cfg = WriterConfig {
        align_bytes: 4096,
        max_write_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        flush_ns: 1_000_000,
        prealloc_bytes: 1 << 20,
        pad_tail: true,
        durability: Durability::Every,
        ack_lines: false,
    };
    let mut w = LogWriter::new(cfg);
    let mut io = Fake::new(cfg.durability);
    io.pad_tail = true;
    io.models.insert(
        7,
        Model {
            next_off: 4096,
            ..Model::default()
        },
    );
    let slot = w.start(7, 0, 1, &mut io);
    while !io.in_flight.is_empty() {
        io.complete(&mut w, 0, true);
    }
    let mut offsets = Vec::new();
    for seq in 0..3u64 {
        append_one(&mut io, &mut w, 7, seq, seq * 10_000_000, 100);
        w.on_timers((seq + 1) * 10_000_000 - 1, &mut io);
        while let Some(f) = io.in_flight.first() {
            if let WriterOp::Write { offset, .. } = f.op {
                offsets.push(offset);
            }
            io.complete(&mut w, 0, true);
        }
    }
    assert_eq!(offsets, [4096, 8192, 12288], "one fresh block per flush");
    seal_model(io.models.get_mut(&7).unwrap());
    w.seal(slot, 40_000_000, &mut io);
    while !io.in_flight.is_empty() {
        io.complete(&mut w, 0, true);
    }
    let m = &io.models[&7];
    assert!(m.finished);
    assert_eq!(
        m.file.len(),
        5 * 4096,
        "header, three frames' blocks, the end frame's"
    );
    let check = check_log(&m.file, Some(7));
    assert_eq!(check.state, CheckState::Sealed, "{check:?}");
    assert_eq!(check.frames, 3);
}

/// Stage one frame of `payload` bytes in the model of `id` and append it to the writer.
fn append_one(io: &mut Fake, w: &mut LogWriter, id: u64, seq: u64, t_ns: u64, payload: u32) {
    let m = io.models.get_mut(&id).unwrap();
    let end = m.next_off + frame_span_bytes(m.next_off, payload);
    m.frame_ends.push(end);
    m.next_off = end;
    let slot = w.slot_of(id).unwrap();
    w.append(slot, seq, t_ns, FrameKind::Delta, payload, io);
}

#[test]
fn flush_deadlines_out_of_order_still_fire_in_order() {
    let cfg = WriterConfig {
        align_bytes: 1,
        max_write_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        flush_ns: 1_000_000,
        prealloc_bytes: 1 << 20,
        pad_tail: false,
        durability: Durability::None,
        ack_lines: false,
    };
    let mut w = LogWriter::new(cfg);
    let mut io = Fake::new(cfg.durability);
    for id in [1, 2] {
        io.models.insert(
            id,
            Model {
                next_off: 4096,
                ..Model::default()
            },
        );
        w.start(id, 0, 1, &mut io);
    }
    while !io.in_flight.is_empty() {
        io.complete(&mut w, 0, true);
    }
    // Log 1's deadline (6 ms) goes to the in-order queue; log 2's snapshot is intended earlier
    // (as the prefill's logs are), so its deadline (2 ms) takes the heap.
    append_one(&mut io, &mut w, 1, 0, 5_000_000, 100);
    append_one(&mut io, &mut w, 2, 0, 1_000_000, 100);
    assert_eq!(w.next_deadline_ns(), Some(2_000_000));
    w.on_timers(3_000_000, &mut io);
    let ids = |io: &Fake| {
        io.in_flight
            .iter()
            .map(|f| f.op.log().id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&io), [2], "only log 2's flush was due");
    assert_eq!(w.next_deadline_ns(), Some(6_000_000));
    w.on_timers(6_000_000, &mut io);
    assert_eq!(ids(&io), [2, 1]);
    assert_eq!(w.next_deadline_ns(), None);
    let work = w.work();
    assert_eq!(work.timers_fired, 2);
    assert_eq!(work.frames, 2);
    assert_eq!(work.crc_bytes, 2 * (28 + 100));
}
