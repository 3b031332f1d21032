//! Benchmark of the log writer's hot path: framing typical snapshots into a reused segment buffer.
//!
//! Each iteration appends one frame with [`append_frame`] to a `Vec` that is cleared when it
//! reaches [`SEGMENT_BYTES`] (what the writer's per-match segment buffer does when it flushes), so
//! the measured cost is padding + header + payload fill + CRC-32C, with no allocation once the
//! buffer has grown. Throughput is reported in payload (snapshot) bytes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use snapbench::snaplog::{append_frame, FrameKind, BLOCK_BYTES};

/// Size of the segment buffer, in bytes (the writer's default `segment_bytes`, 64 KiB).
const SEGMENT_BYTES: usize = 64 << 10;

/// A segment buffer with the file offset its next byte lands at.
struct Segment {
    buf: Vec<u8>,
    offset: u64,
    seq: u64,
}

impl Segment {
    fn new(max_frame_bytes: usize) -> Segment {
        Segment {
            buf: Vec::with_capacity(SEGMENT_BYTES + max_frame_bytes + BLOCK_BYTES),
            offset: BLOCK_BYTES as u64,
            seq: 0,
        }
    }

    /// Appends one snapshot frame, "flushing" (clearing) the buffer first when it is full.
    #[inline]
    fn push(&mut self, kind: FrameKind, payload_bytes: u32) {
        if self.buf.len() >= SEGMENT_BYTES {
            self.buf.clear();
        }
        self.offset = append_frame(
            &mut self.buf,
            self.offset,
            0x0123_4567_89ab_cdef,
            self.seq,
            self.seq.wrapping_mul(7_812_500),
            kind,
            payload_bytes,
        );
        self.seq += 1;
    }
}

/// One round of the mixed benchmark: deltas of the two typical sizes (the last one of the last
/// round is replaced by a 48 KiB keyframe).
const MIX: [(FrameKind, u32); 4] = [
    (FrameKind::Delta, 800),
    (FrameKind::Delta, 1700),
    (FrameKind::Delta, 800),
    (FrameKind::Delta, 1700),
];

fn bench_append_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_frame");
    for (name, kind, payload_bytes) in [
        ("delta_800B", FrameKind::Delta, 800u32),
        ("delta_1700B", FrameKind::Delta, 1700),
        ("keyframe_48KiB", FrameKind::Keyframe, 48 << 10),
    ] {
        group.throughput(Throughput::Bytes(u64::from(payload_bytes)));
        group.bench_with_input(
            BenchmarkId::from_parameter(name),
            &payload_bytes,
            |b, &len| {
                let mut segment = Segment::new(len as usize + 64);
                b.iter(|| {
                    segment.push(kind, black_box(len));
                    black_box(segment.buf.len())
                });
            },
        );
    }

    // A tick-like mix: 63 deltas of alternating size, then one keyframe.
    let mix_payload_bytes: u64 =
        16 * MIX.iter().map(|&(_, len)| u64::from(len)).sum::<u64>() - 1700 + (48 << 10);
    group.throughput(Throughput::Bytes(mix_payload_bytes));
    group.bench_function("mix_63_deltas_1_keyframe", |b| {
        let mut segment = Segment::new((48 << 10) + 64);
        b.iter(|| {
            for round in 0..16 {
                for (i, &(kind, len)) in MIX.iter().enumerate() {
                    let (kind, len) = if round == 15 && i == 3 {
                        (FrameKind::Keyframe, 48 << 10)
                    } else {
                        (kind, len)
                    };
                    segment.push(kind, black_box(len));
                }
            }
            black_box(segment.buf.len())
        });
    });
    group.finish();
}

criterion_group!(benches, bench_append_frame);
criterion_main!(benches);
