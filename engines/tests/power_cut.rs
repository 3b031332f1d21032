//! Sync ordering at the engine level, proven by a power cut (root only; `.ci/run` runs these with
//! `--ignored` as root).
//!
//! For every engine variant that stores data (`data_variants!` of the shared list), on a scratch
//! ext4 mounted with `commit=60` (so only explicit syncs commit its journal): writes that were reaped and then covered by a reaped `Sync`, and writes
//! made with `dsync`, must survive the ext4 shutdown ioctl with `EXT4_GOING_FLAGS_NOLOGFLUSH`
//! (docs/machine.md: a power cut). Writes never synced are the control: if every one of them survived
//! too, the cut proved nothing and the test fails. A `Sync` that did not reach the disk, or one
//! that overtook a write it covers, loses acknowledged blocks and fails the test.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use snapbench_engines::{
    file_name, Completion, EngineConfig, EngineSpec, FactoryVisitor, FileKind, MatchId, Op,
    Recorder, RecorderFactory,
};

#[path = "support/scratch.rs"]
mod scratch;
#[macro_use]
#[path = "support/variants.rs"]
mod variants;
use scratch::ScratchExt4;

const BLOCK_BYTES: usize = 4096;
/// Blocks acknowledged (by a `Sync` after their writes were reaped, or by `dsync` writes).
const ACKED_BLOCKS: u64 = 64;
/// Blocks written and never synced (the control).
const LOOSE_BLOCKS: u64 = 64;
const FILE: MatchId = MatchId(7);

/// The content of block `n`: its number, then bytes that differ per block and per position.
fn fill(n: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (n.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64 * 31) >> 3) as u8 | 1;
    }
    buf[..8].copy_from_slice(&n.to_le_bytes());
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// Reap until nothing is in flight; every completion must be a success. Buffers go back.
fn wait_all<R: Recorder>(r: &mut R, what: &str) {
    let mut out: Vec<Completion<R::Buf>> = Vec::new();
    r.drain(&mut out, far()).expect("drain");
    for c in out {
        if let Err(e) = &c.res {
            panic!("{} {what}: token {} failed: {e}", r.caps().name, c.token);
        }
        if let Some(b) = c.buf {
            r.release_buf(b);
        }
    }
}

/// Submit one op, reaping (and checking) completions while the engine pushes back.
fn submit<R: Recorder>(r: &mut R, token: u64, mut op: Op<R::Buf>) {
    let mut out: Vec<Completion<R::Buf>> = Vec::new();
    loop {
        match r.submit(token, op) {
            Ok(()) => break,
            Err(back) => {
                op = back;
                r.reap(&mut out, far()).expect("reap");
                for c in out.drain(..) {
                    if let Err(e) = &c.res {
                        panic!("{}: token {} failed: {e}", r.caps().name, c.token);
                    }
                    if let Some(b) = c.buf {
                        r.release_buf(b);
                    }
                }
            }
        }
    }
}

/// Write blocks `range` (up to the engine's queue depth in flight), then wait for them all.
fn write_blocks<R: Recorder>(r: &mut R, range: std::ops::Range<u64>, dsync: bool) {
    for n in range {
        let mut buf = loop {
            if let Some(b) = r.alloc_buf(BLOCK_BYTES) {
                break b;
            }
            // Pool empty: take completions back first.
            wait_all(r, "write");
        };
        fill(n, buf.as_mut());
        submit(
            r,
            n,
            Op::Write {
                file: FILE,
                offset: n * BLOCK_BYTES as u64,
                buf,
                dsync,
            },
        );
    }
    wait_all(r, "write");
}

/// How the acknowledged blocks are made durable. Each way gets its own filesystem and cut:
/// ext4's journal is global, so a commit made for one would cover for a missing other.
#[derive(Clone, Copy, Debug)]
enum Ack {
    /// Plain writes, all reaped, then one `Sync`.
    Sync,
    /// Writes with `dsync`.
    Dsync,
}

struct Scenario<'a>(&'a ScratchExt4, PathBuf, Ack);

impl FactoryVisitor for Scenario<'_> {
    type Out = ();
    fn visit<F: RecorderFactory + 'static>(self, factory: F) {
        let cfg = EngineConfig {
            dir: self.1.clone(),
            worker: 0,
            workers: 1,
            queue_depth: 8,
            buf_bytes: 64 * 1024,
            buf_count: 16,
            dio_align_bytes: 4096,
            shared: Default::default(),
        };
        let mut r = factory.build(&cfg).expect("engine builds");
        assert!(
            r.caps().stores_data,
            "{}: only data-storing variants can lose data in a power cut",
            r.caps().name
        );
        let total = ACKED_BLOCKS + LOOSE_BLOCKS;
        submit(
            &mut r,
            1,
            Op::Create {
                file: FILE,
                kind: FileKind::Data,
                prealloc_bytes: total * BLOCK_BYTES as u64,
            },
        );
        wait_all(&mut r, "create");
        submit(&mut r, 2, Op::SyncDir);
        wait_all(&mut r, "sync_dir");
        match self.2 {
            Ack::Sync => {
                // Acknowledged by a sync submitted only after every write it covers was reaped.
                write_blocks(&mut r, 0..ACKED_BLOCKS, false);
                submit(&mut r, 3, Op::Sync { file: FILE });
                wait_all(&mut r, "sync");
            }
            // Acknowledged by their own completion.
            Ack::Dsync => write_blocks(&mut r, 0..ACKED_BLOCKS, true),
        }
        // Never synced.
        write_blocks(&mut r, ACKED_BLOCKS..total, false);
        self.0.power_cut();
        // Everything after the cut fails with EIO; the engine only has to let go of the file.
        let mut out = Vec::new();
        let _ = r.submit(4, Op::Close { file: FILE });
        let _ = r.drain(&mut out, far());
        drop(out);
        drop(r);
    }
}

fn power_cut(variant: &str) {
    for ack in [Ack::Sync, Ack::Dsync] {
        power_cut_once(variant, ack);
    }
}

fn power_cut_once(variant: &str, ack: Ack) {
    let spec = EngineSpec::parse(variant).expect("variant parses");
    let fs = ScratchExt4::new(64, "commit=60");
    let dir = fs.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    // Make the directory itself durable before the engine starts.
    std::fs::File::open(&dir).unwrap().sync_all().unwrap();
    std::fs::File::open(fs.path()).unwrap().sync_all().unwrap();
    if let Err(why) = spec.check_supported(&dir) {
        panic!("{variant} is unsupported on a scratch ext4: {why}");
    }
    spec.visit(Scenario(&fs, dir.clone(), ack));
    fs.remount();
    let path: &Path = &dir.join(file_name(FILE, FileKind::Data));
    let f = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{variant}: the synced file is gone after the cut: {e}"));
    let mut want = vec![0u8; BLOCK_BYTES];
    let mut got = vec![0u8; BLOCK_BYTES];
    let intact = |n: u64, want: &mut [u8], got: &mut [u8]| {
        fill(n, want);
        got.fill(0);
        let _ = f.read_at(got, n * BLOCK_BYTES as u64);
        want == got
    };
    let acked = ACKED_BLOCKS;
    let lost: Vec<u64> = (0..acked)
        .filter(|n| !intact(*n, &mut want, &mut got))
        .collect();
    let loose_survived = (acked..acked + LOOSE_BLOCKS)
        .filter(|n| intact(*n, &mut want, &mut got))
        .count() as u64;
    eprintln!(
        "{variant} ({ack:?}): acknowledged {acked}, lost {}; unsynced survived {loose_survived}/{LOOSE_BLOCKS}",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{variant} ({ack:?}): {} acknowledged blocks lost in the power cut (first: {:?})",
        lost.len(),
        &lost[..lost.len().min(8)]
    );
    assert!(
        loose_survived < LOOSE_BLOCKS,
        "{variant} ({ack:?}): every unsynced block survived too, so the cut proved nothing"
    );
}

macro_rules! power_cut_every_engine {
    ($($name:ident => $variant:literal),* $(,)?) => {$(
        #[test]
        #[ignore = "needs root"]
        fn $name() { power_cut($variant) }
    )*};
}

// Every variant that stores data.
data_variants!(power_cut_every_engine);
