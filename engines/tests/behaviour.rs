//! Recorder behaviour tests, run against every engine variant by one macro: a new engine gets
//! the whole suite by adding one line to the shared variant list
//! (`support/variants.rs`), which `every_engine!` at the bottom expands over.
//!
//! Behaviours that apply to some variants only decide from the variant's `caps()` (never its
//! name), and check the other side too: a misaligned request fails with O_DIRECT and succeeds
//! without; an EOF read is short on an engine that stores data and full on one that does not.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use snapbench_engines::{
    file_name, Completion, EngineConfig, EngineSpec, FactoryVisitor, FileKind, MatchId, Op, OpKind,
    Recorder, RecorderFactory,
};

#[macro_use]
#[path = "support/variants.rs"]
mod variants;

const QD: usize = 8;
const BUF_BYTES: usize = 64 * 1024;
const BUF_COUNT: usize = 16;
/// The direct-I/O alignment the tests configure (`EngineConfig::dio_align_bytes`).
const DIO_ALIGN_BYTES: usize = 4096;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        dir: dir.to_path_buf(),
        worker: 0,
        workers: 1,
        queue_depth: QD,
        buf_bytes: BUF_BYTES,
        buf_count: BUF_COUNT,
        dio_align_bytes: DIO_ALIGN_BYTES,
        shared: Default::default(),
    }
}

/// Behaviours that count the process's descriptors hold this for writing; every other test
/// holds it for reading, so that no engine opens or closes a descriptor while one counts.
static FD_COUNT: RwLock<()> = RwLock::new(());

/// One behaviour, generic over the engine.
trait Behaviour {
    /// Whether the test counts the process's descriptors (it then runs alone).
    const COUNTS_FDS: bool = false;
    fn run<R: Recorder>(r: &mut R, dir: &Path);
    /// The whole test: build one instance, run the behaviour, drain. Behaviours that need more
    /// than one instance override this.
    fn with_factory<F: RecorderFactory>(factory: F, dir: &Path) {
        let mut r = factory.build(&config(dir)).expect("engine builds");
        Self::run(&mut r, dir);
        let mut out = Vec::new();
        r.drain(&mut out, far()).expect("drain");
        assert_eq!(r.in_flight(), 0);
    }
}

struct Runner<B: Behaviour>(std::marker::PhantomData<B>, PathBuf);

impl<B: Behaviour> FactoryVisitor for Runner<B> {
    type Out = ();
    fn visit<F: RecorderFactory + 'static>(self, factory: F) {
        B::with_factory(factory, &self.1);
    }
}

/// A fresh directory on a disk filesystem (ext4 on `/` here), never tmpfs: tmpfs accepts
/// misaligned O_DIRECT requests, and glommio serves it without its poll ring.
fn disk_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in("/var/tmp").expect("a directory in /var/tmp");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let fs_type = mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_, mnt, ty) = (it.next()?, it.next()?, it.next()?);
            dir.path()
                .starts_with(mnt)
                .then(|| (mnt.len(), ty.to_string()))
        })
        .max()
        .map(|(_, ty)| ty);
    assert_ne!(
        fs_type.as_deref(),
        Some("tmpfs"),
        "/var/tmp is tmpfs: these tests need a disk filesystem"
    );
    dir
}

fn run_behaviour<B: Behaviour>(variant: &str) {
    let _guard = if B::COUNTS_FDS {
        (
            None,
            Some(FD_COUNT.write().unwrap_or_else(|p| p.into_inner())),
        )
    } else {
        (
            Some(FD_COUNT.read().unwrap_or_else(|p| p.into_inner())),
            None,
        )
    };
    let spec = EngineSpec::parse(variant).expect("variant parses");
    let dir = disk_dir();
    // Every variant runs on this machine (docs/machine.md): an unsupported one is a failure, not a
    // skip.
    if let Err(why) = spec.check_supported(dir.path()) {
        panic!("{variant} cannot run here: {why}");
    }
    spec.visit(Runner::<B>(
        std::marker::PhantomData,
        dir.path().to_path_buf(),
    ));
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Submit (reaping while back-pressured), flush, and wait for this token's completion; other
/// completions reaped meanwhile are returned through `others`.
fn submit_wait<R: Recorder>(
    r: &mut R,
    token: u64,
    mut op: Op<R::Buf>,
    others: &mut Vec<Completion<R::Buf>>,
) -> Completion<R::Buf> {
    let mut out = Vec::new();
    loop {
        match r.submit(token, op) {
            Ok(()) => break,
            Err(back) => {
                op = back;
                r.flush().unwrap();
                r.reap(&mut out, far()).unwrap();
                others.append(&mut out);
            }
        }
    }
    r.flush().unwrap();
    let deadline = far();
    loop {
        assert!(Instant::now() < deadline, "token {token} never completed");
        r.reap(&mut out, deadline).unwrap();
        if let Some(i) = out.iter().position(|c| c.token == token) {
            let c = out.swap_remove(i);
            others.append(&mut out);
            return c;
        }
    }
}

fn ok<R: Recorder>(r: &mut R, token: u64, op: Op<R::Buf>) -> Completion<R::Buf> {
    let mut others = Vec::new();
    let c = submit_wait(r, token, op, &mut others);
    assert!(others.is_empty(), "unexpected completions");
    if let Err(e) = &c.res {
        panic!("{} {:?} failed: {e}", r.caps().name, c.kind);
    }
    c
}

fn filled<R: Recorder>(r: &mut R, len: usize, seed: u8) -> R::Buf {
    let mut b = r.alloc_buf(len).expect("buffer");
    for (i, x) in b.as_mut().iter_mut().enumerate() {
        *x = seed.wrapping_add((i % 251) as u8);
    }
    b
}

const M: MatchId = MatchId(0xabc);

fn create<R: Recorder>(r: &mut R, prealloc: u64) {
    ok(
        r,
        1,
        Op::Create {
            file: M,
            kind: FileKind::Log,
            prealloc_bytes: prealloc,
        },
    );
}

/// Data written, synced and read back is the data written; the completion carries the token,
/// the kind, the full byte count and the buffer.
struct RoundTrip;
impl Behaviour for RoundTrip {
    fn run<R: Recorder>(r: &mut R, dir: &Path) {
        create(r, 1 << 20);
        for i in 0..4u64 {
            let buf = filled(r, 16384, i as u8);
            let c = ok(
                r,
                10 + i,
                Op::Write {
                    file: M,
                    offset: i * 16384,
                    buf,
                    dsync: i == 3,
                },
            );
            assert_eq!(c.token, 10 + i);
            assert_eq!(c.kind, OpKind::Write);
            assert_eq!(c.res.as_ref().unwrap(), &16384);
            if let Some(b) = c.buf {
                r.release_buf(b);
            }
        }
        assert_eq!(ok(r, 20, Op::Sync { file: M }).kind, OpKind::Sync);
        assert_eq!(ok(r, 21, Op::SyncDir).kind, OpKind::SyncDir);
        for i in 0..4u64 {
            let buf = r.alloc_buf(16384).unwrap();
            let c = ok(
                r,
                30 + i,
                Op::Read {
                    file: M,
                    offset: i * 16384,
                    buf,
                },
            );
            assert_eq!(c.kind, OpKind::Read);
            assert_eq!(*c.res.as_ref().unwrap(), 16384);
            let b = c.buf.expect("read returns its buffer");
            if r.caps().stores_data {
                let want = filled(r, 16384, i as u8);
                assert!(
                    b.as_ref() == want.as_ref(),
                    "read back differs at block {i}"
                );
                r.release_buf(want);
            }
            r.release_buf(b);
        }
        ok(r, 40, Op::Close { file: M });
        if r.caps().stores_data {
            let len = std::fs::metadata(dir.join(file_name(M, FileKind::Log)))
                .unwrap()
                .len();
            assert_eq!(len, 1 << 20, "create must preallocate (size = prealloc)");
        }
    }
}

/// The bytes `filled(_, len, seed)` puts in a buffer.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// Submit a read and wait for it; its completion, with the buffer it must hand back.
fn read_at<R: Recorder>(
    r: &mut R,
    token: u64,
    file: MatchId,
    offset: u64,
    len: usize,
) -> (Completion<R::Buf>, R::Buf) {
    let buf = r.alloc_buf(len).expect("buffer");
    let mut others = Vec::new();
    let mut c = submit_wait(r, token, Op::Read { file, offset, buf }, &mut others);
    assert!(others.is_empty(), "unexpected completions");
    assert_eq!((c.token, c.kind), (token, OpKind::Read));
    let b = c.buf.take().expect("a read hands its buffer back");
    (c, b)
}

/// Reads at and across the end of a preallocated file (EOF block-aligned). An engine that stores
/// data completes them short, not with an error and without hanging: the bytes up to EOF, 0 at
/// or past it. An engine that stores nothing (`null`) completes every read in full.
struct ReadsAtEof;
impl Behaviour for ReadsAtEof {
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        let stores = r.caps().stores_data;
        // Preallocated to 8 KiB: a 16 KiB read from 0 gets 8 KiB; at and past EOF, 0.
        create(r, 8192);
        for (token, offset, len, want) in [
            (2, 0, 16384, 8192),
            (3, 8192, 4096, 0),
            (4, 1 << 20, 4096, 0),
        ] {
            let (c, b) = read_at(r, token, M, offset, len);
            let n = *c.res.as_ref().unwrap();
            if stores {
                assert_eq!(n, want, "read of {len} at {offset} of an 8 KiB file");
            } else {
                assert_eq!(n, len, "an engine without data completes reads in full");
            }
            assert_eq!(b.as_ref().len(), len);
            r.release_buf(b);
        }
        // Preallocated to 1 MiB: a 64 KiB read across EOF gets the last 8 KiB.
        let big = MatchId(M.0 + 1);
        ok(
            r,
            5,
            Op::Create {
                file: big,
                kind: FileKind::Log,
                prealloc_bytes: 1 << 20,
            },
        );
        let (c, b) = read_at(r, 6, big, (1 << 20) - 8192, 65536);
        assert_eq!(*c.res.as_ref().unwrap(), if stores { 8192 } else { 65536 });
        r.release_buf(b);
        let (c, b) = read_at(r, 7, big, 1 << 20, 4096);
        assert_eq!(*c.res.as_ref().unwrap(), if stores { 0 } else { 4096 });
        r.release_buf(b);
    }
}

/// A read up to an end of file that is not block-aligned (10 000 bytes, written with std so
/// that no engine instance mixes access modes) returns exactly the bytes up to EOF on an
/// engine that stores data, then 0 past EOF; in full on one that does not.
struct ReadToUnalignedEof;
impl Behaviour for ReadToUnalignedEof {
    fn run<R: Recorder>(r: &mut R, dir: &Path) {
        let stores = r.caps().stores_data;
        // 10 000 bytes of 7s: EOF in the middle of a block.
        std::fs::write(dir.join(file_name(M, FileKind::Data)), vec![7u8; 10_000]).unwrap();
        ok(
            r,
            8,
            Op::Open {
                file: M,
                kind: FileKind::Data,
                writable: false,
            },
        );
        let (c, b) = read_at(r, 9, M, 0, 16384);
        if stores {
            assert_eq!(
                *c.res.as_ref().unwrap(),
                10_000,
                "a 16 KiB read of a 10 000-byte file"
            );
            assert!(b.as_ref()[..10_000].iter().all(|x| *x == 7), "bytes differ");
        } else {
            assert_eq!(*c.res.as_ref().unwrap(), 16384);
        }
        r.release_buf(b);
        let (c, b) = read_at(r, 10, M, 1 << 20, 4096);
        assert_eq!(*c.res.as_ref().unwrap(), if stores { 0 } else { 4096 });
        r.release_buf(b);
    }
}

/// Requests that break the O_DIRECT rules of `caps()` (`io_align_bytes`). With O_DIRECT, a
/// misaligned write (length or offset) fails in its completion with EINVAL — never in submit,
/// never acknowledged — and a misaligned read either fails the same way or (an engine that
/// realigns reads, as glommio's `read_at` does) returns the file's bytes; buffers come back
/// from failed reads, the file is unchanged and the engine keeps working. Without O_DIRECT
/// (`io_align_bytes` 1) the same requests succeed in full and land.
struct Misaligned;
impl Behaviour for Misaligned {
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        let caps = r.caps().clone();
        if caps.direct {
            assert_eq!(
                caps.io_align_bytes, DIO_ALIGN_BYTES,
                "the target's alignment"
            );
        } else {
            assert_eq!(caps.io_align_bytes, 1, "no O_DIRECT, no alignment");
        }
        create(r, 1 << 20);
        // Write the first blocks so the reads below are real O_DIRECT reads (ext4 returns zeros
        // for unwritten extents without checking alignment).
        let mut want = pattern(8192, 1);
        let buf = filled(r, 8192, 1);
        let c = ok(
            r,
            2,
            Op::Write {
                file: M,
                offset: 0,
                buf,
                dsync: false,
            },
        );
        assert_eq!(*c.res.as_ref().unwrap(), 8192);
        // An engine that hands written buffers back does so for failed writes too (glommio's
        // writes consume theirs).
        let returns_write_bufs = c.buf.is_some();
        if let Some(b) = c.buf {
            r.release_buf(b);
        }
        // Length 100 at an aligned offset; an aligned length at offset 100; both with dsync.
        for (i, (offset, len, dsync)) in
            [(0u64, 100usize, false), (100, 4096, true), (0, 100, true)]
                .into_iter()
                .enumerate()
        {
            let token = 10 + i as u64;
            let seed = 0x80 + i as u8;
            let buf = filled(r, len, seed);
            if caps.direct {
                assert_eq!(
                    buf.as_ref().as_ptr() as usize % 4096,
                    0,
                    "buffers are aligned: only the length or offset is misaligned"
                );
            }
            let mut others = Vec::new();
            let c = submit_wait(
                r,
                token,
                Op::Write {
                    file: M,
                    offset,
                    buf,
                    dsync,
                },
                &mut others,
            );
            assert!(others.is_empty(), "unexpected completions");
            assert_eq!((c.token, c.kind), (token, OpKind::Write));
            if caps.direct {
                let e = c
                    .res
                    .as_ref()
                    .expect_err("a misaligned O_DIRECT write was acknowledged");
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            } else {
                assert_eq!(*c.res.as_ref().unwrap(), len, "write of {len} at {offset}");
                let o = offset as usize;
                want[o..o + len].copy_from_slice(&pattern(len, seed));
            }
            assert_eq!(
                c.buf.is_some(),
                returns_write_bufs,
                "a failed write hands its buffer back as a successful one does"
            );
            if let Some(b) = c.buf {
                r.release_buf(b);
            }
        }
        for (i, (offset, len)) in [(100u64, 4096usize), (0, 100)].into_iter().enumerate() {
            let (c, b) = read_at(r, 20 + i as u64, M, offset, len);
            match &c.res {
                Err(e) => {
                    assert!(caps.direct, "a read of {len} at {offset} failed: {e}");
                    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
                }
                Ok(n) => {
                    assert_eq!(*n, len, "read of {len} at {offset}");
                    if caps.stores_data {
                        let o = offset as usize;
                        assert!(b.as_ref() == &want[o..o + len], "read at {offset} differs");
                    }
                }
            }
            r.release_buf(b);
        }
        assert_eq!(r.in_flight(), 0);
        // The engine still works, and the failed writes changed nothing.
        let (c, b) = read_at(r, 30, M, 0, 8192);
        assert_eq!(*c.res.as_ref().unwrap(), 8192);
        if caps.stores_data {
            assert!(
                b.as_ref() == &want[..],
                "the file is not what was acknowledged"
            );
        }
        r.release_buf(b);
    }
}

/// Submitting more than `max_in_flight` hands ops back instead of failing; every token
/// completes exactly once.
struct BackPressure;
impl Behaviour for BackPressure {
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        create(r, 1 << 20);
        let max = r.caps().max_in_flight;
        assert!(max >= 1);
        let mut accepted = 0u64;
        let mut handed_back = false;
        for t in 0..(max as u64 + 4) {
            match r.submit(100 + t, Op::Sync { file: M }) {
                Ok(()) => accepted += 1,
                Err(op) => {
                    assert_eq!(op.kind(), OpKind::Sync, "the same op comes back");
                    handed_back = true;
                    break;
                }
            }
        }
        assert!(handed_back, "queue of {max} never pushed back");
        assert_eq!(accepted, max as u64);
        let mut out = Vec::new();
        r.drain(&mut out, far()).unwrap();
        let mut tokens: Vec<u64> = out.iter().map(|c| c.token).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (100..100 + accepted).collect::<Vec<_>>());
        assert!(out.iter().all(|c| c.res.is_ok()));
    }
}

/// The buffer pool is bounded and reuses what is released.
struct BoundedPool;
impl Behaviour for BoundedPool {
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        let count = r.caps().buf_count;
        assert!(r.alloc_buf(r.caps().buf_bytes + 1).is_none());
        if r.caps().direct {
            // Page-aligned, as fio's: a 4 KiB buffer across two pages costs the block layer two
            // segments per I/O (measured here: 15 % fewer IOPS at QD32).
            let b = r.alloc_buf(4096).unwrap();
            assert_eq!(
                b.as_ref().as_ptr() as usize % 4096,
                0,
                "direct buffers are page-aligned"
            );
            r.release_buf(b);
        }
        let mut held: Vec<R::Buf> = (0..count).map(|_| r.alloc_buf(4096).unwrap()).collect();
        assert!(r.alloc_buf(4096).is_none(), "pool of {count} gave more");
        r.release_buf(held.pop().unwrap());
        let b = r.alloc_buf(100).expect("released buffer is reusable");
        assert_eq!(b.as_ref().len(), 100);
        held.push(b);
        for b in held {
            r.release_buf(b);
        }
    }
}

/// An op on a file that is not open fails in its completion (never in submit) on an engine
/// that stores data; `null` completes it.
struct ErrorsComplete;
impl Behaviour for ErrorsComplete {
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        let buf = filled(r, 4096, 1);
        let mut others = Vec::new();
        let c = submit_wait(
            r,
            7,
            Op::Write {
                file: MatchId(999),
                offset: 0,
                buf,
                dsync: false,
            },
            &mut others,
        );
        assert!(others.is_empty(), "unexpected completions");
        if r.caps().stores_data {
            assert!(c.res.is_err(), "write to an unopened file succeeded");
        } else {
            // An engine that stores nothing has no files to miss: the write completes in full.
            assert_eq!(*c.res.as_ref().unwrap(), 4096);
        }
        if let Some(b) = c.buf {
            r.release_buf(b);
        }
    }
}

/// Many writes in flight at once all complete, in any order, with their own tokens.
struct ManyInFlight;
impl Behaviour for ManyInFlight {
    fn run<R: Recorder>(r: &mut R, dir: &Path) {
        create(r, 1 << 20);
        let mut out = Vec::new();
        let mut next = 0u64;
        let mut done = 0u64;
        let total = 64u64;
        let deadline = far();
        while done < total {
            while next < total {
                let Some(buf) = r.alloc_buf(4096) else { break };
                let mut buf = buf;
                buf.as_mut().fill(next as u8);
                match r.submit(
                    1000 + next,
                    Op::Write {
                        file: M,
                        offset: next * 4096,
                        buf,
                        dsync: false,
                    },
                ) {
                    Ok(()) => next += 1,
                    Err(Op::Write { buf, .. }) => {
                        r.release_buf(buf);
                        break;
                    }
                    Err(_) => unreachable!(),
                }
            }
            r.flush().unwrap();
            r.reap(&mut out, deadline).unwrap();
            assert!(Instant::now() < deadline, "writes never completed");
            for c in out.drain(..) {
                assert!(c.token >= 1000 && c.token < 1000 + total);
                assert_eq!(*c.res.as_ref().unwrap(), 4096);
                if let Some(b) = c.buf {
                    r.release_buf(b);
                }
                done += 1;
            }
        }
        ok(r, 1, Op::Sync { file: M });
        if r.caps().stores_data {
            let data = std::fs::read(dir.join(file_name(M, FileKind::Log))).unwrap();
            for i in 0..total as usize {
                assert!(data[i * 4096..(i + 1) * 4096].iter().all(|b| *b == i as u8));
            }
        }
    }
}

/// Allocate extends the file; Remove unlinks it (closing it if open).
struct AllocateRemove;
impl Behaviour for AllocateRemove {
    fn run<R: Recorder>(r: &mut R, dir: &Path) {
        create(r, 0);
        ok(
            r,
            2,
            Op::Allocate {
                file: M,
                offset: 0,
                len_bytes: 3 << 20,
            },
        );
        let path = dir.join(file_name(M, FileKind::Log));
        if r.caps().stores_data {
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
        }
        ok(
            r,
            3,
            Op::Remove {
                file: M,
                kind: FileKind::Log,
            },
        );
        if r.caps().stores_data {
            assert!(!path.exists(), "remove left the file");
        }
        let mut others = Vec::new();
        let c = submit_wait(
            r,
            4,
            Op::Open {
                file: M,
                kind: FileKind::Log,
                writable: false,
            },
            &mut others,
        );
        if r.caps().stores_data {
            assert!(c.res.is_err(), "opened a removed file");
        }
    }
}

/// Descriptors of this process: (eventfds, all others), leaving out the one listing them.
fn fds() -> (usize, usize) {
    let mut eventfds = 0;
    let mut other = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        match std::fs::read_link(e.path()) {
            Ok(t) if t.to_string_lossy() == "anon_inode:[eventfd]" => eventfds += 1,
            Ok(t) if t.starts_with("/proc") => {}
            _ => other += 1,
        }
    }
    (eventfds, other)
}

/// Drop with I/O in flight (the contract says drain first; a worker that fails does not).
/// Reads of synced data and writes of new data are in flight at the drop. Afterwards: the
/// heap is intact (the buffers were not freed while the kernel wrote into them: allocate and
/// touch a lot of memory where they were), no descriptor is left open (files, rings, AIO
/// contexts; glommio 0.9 keeps one eventfd per executor, its issue #448, so one more eventfd per
/// instance is allowed), and a fresh instance on the same files reads the synced data intact and finds
/// each block written in flight either untouched or fully written — never torn, never written
/// after the engine was gone. An op queued and never flushed is dropped as cleanly.
struct DropInFlight;

/// Blocks of the drop test: `DROP_BLOCKS` synced ones, then as many written in flight.
const DROP_BLOCKS: u64 = 8;
const DROP_BLOCK_BYTES: usize = 64 * 1024;

impl Behaviour for DropInFlight {
    const COUNTS_FDS: bool = true;

    /// Write and sync the first blocks, then leave reads of them and writes after them in
    /// flight.
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        let bs = DROP_BLOCK_BYTES as u64;
        create(r, 2 * DROP_BLOCKS * bs);
        for i in 0..DROP_BLOCKS {
            let buf = filled(r, DROP_BLOCK_BYTES, i as u8);
            let c = ok(
                r,
                100 + i,
                Op::Write {
                    file: M,
                    offset: i * bs,
                    buf,
                    dsync: false,
                },
            );
            if let Some(b) = c.buf {
                r.release_buf(b);
            }
        }
        ok(r, 2, Op::Sync { file: M });
        let mut submitted = 0u64;
        for i in 0..2 * DROP_BLOCKS {
            let Some(buf) = r.alloc_buf(DROP_BLOCK_BYTES) else {
                break;
            };
            let block = i / 2;
            let op = if i % 2 == 0 {
                Op::Read {
                    file: M,
                    offset: block * bs,
                    buf,
                }
            } else {
                let mut buf = buf;
                buf.as_mut()
                    .copy_from_slice(&pattern(DROP_BLOCK_BYTES, 0x40 + block as u8));
                Op::Write {
                    file: M,
                    offset: (DROP_BLOCKS + block) * bs,
                    buf,
                    dsync: false,
                }
            };
            match r.submit(200 + i, op) {
                Ok(()) => submitted += 1,
                Err(Op::Read { buf, .. } | Op::Write { buf, .. }) => {
                    r.release_buf(buf);
                    break;
                }
                Err(_) => unreachable!(),
            }
        }
        r.flush().unwrap();
        assert!(submitted >= 1, "nothing was submitted");
        assert!(r.in_flight() > 0, "nothing in flight at the drop");
    }

    fn with_factory<F: RecorderFactory>(factory: F, dir: &Path) {
        // Build and drop once so that per-thread state (glommio's executor) exists before
        // counting.
        drop(factory.build(&config(dir)).expect("engine builds"));
        let (eventfds_before, before) = fds();
        let mut r = factory.build(&config(dir)).expect("engine builds");
        let stores = r.caps().stores_data;
        Self::run(&mut r, dir);
        drop(r);
        // The heap is intact.
        let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 65536]).collect();
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|x| *x == i as u8)));
        drop(v);
        // An op queued and never flushed.
        let mut r = factory.build(&config(dir)).expect("engine builds");
        let buf = filled(&mut r, 4096, 9);
        r.submit(
            3,
            Op::Write {
                file: MatchId(M.0 + 1),
                offset: 0,
                buf,
                dsync: false,
            },
        )
        .ok()
        .expect("room for one op");
        drop(r);
        let (eventfds, after) = fds();
        assert_eq!(
            after, before,
            "files, rings or contexts left open after the drop"
        );
        // Two instances were built since counting: one eventfd each may stay (glommio #448).
        assert!(
            eventfds <= eventfds_before + 2,
            "{eventfds} eventfds after the drop, {eventfds_before} before"
        );
        // A fresh instance on the same files.
        let mut r = factory
            .build(&config(dir))
            .expect("a fresh instance builds");
        ok(
            &mut r,
            1,
            Op::Open {
                file: M,
                kind: FileKind::Log,
                writable: false,
            },
        );
        let bs = DROP_BLOCK_BYTES as u64;
        let mut landed = 0;
        for i in 0..2 * DROP_BLOCKS {
            let (c, b) = read_at(&mut r, 10 + i, M, i * bs, DROP_BLOCK_BYTES);
            assert_eq!(*c.res.as_ref().unwrap(), DROP_BLOCK_BYTES, "block {i}");
            if stores {
                let got = b.as_ref();
                if i < DROP_BLOCKS {
                    assert!(
                        got == &pattern(DROP_BLOCK_BYTES, i as u8)[..],
                        "synced block {i} changed by the reads in flight at the drop"
                    );
                } else if got == &pattern(DROP_BLOCK_BYTES, 0x40 + (i - DROP_BLOCKS) as u8)[..] {
                    landed += 1;
                } else {
                    assert!(
                        got.iter().all(|x| *x == 0),
                        "block {i}, written in flight at the drop, is neither untouched nor \
                         written"
                    );
                }
            }
            r.release_buf(b);
        }
        if stores {
            let len = std::fs::metadata(dir.join(file_name(M, FileKind::Log)))
                .unwrap()
                .len();
            assert_eq!(len, 2 * DROP_BLOCKS * bs, "the file keeps its size");
            eprintln!(
                "{}: {landed} of the writes in flight at the drop landed",
                r.caps().name
            );
        }
        let mut out = Vec::new();
        r.drain(&mut out, far()).expect("drain");
        assert_eq!(r.in_flight(), 0);
    }
}

macro_rules! every_engine {
    ($($name:ident => $variant:literal),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test] fn round_trip() { run_behaviour::<RoundTrip>($variant) }
            #[test] fn short_read_at_eof() { run_behaviour::<ReadsAtEof>($variant) }
            #[test] fn read_to_unaligned_eof() { run_behaviour::<ReadToUnalignedEof>($variant) }
            #[test] fn misaligned_requests() { run_behaviour::<Misaligned>($variant) }
            #[test] fn drop_with_io_in_flight() { run_behaviour::<DropInFlight>($variant) }
            #[test] fn back_pressure() { run_behaviour::<BackPressure>($variant) }
            #[test] fn bounded_pool() { run_behaviour::<BoundedPool>($variant) }
            #[test] fn errors_complete() { run_behaviour::<ErrorsComplete>($variant) }
            #[test] fn many_in_flight() { run_behaviour::<ManyInFlight>($variant) }
            #[test] fn allocate_remove() { run_behaviour::<AllocateRemove>($variant) }
            #[test] fn past_deadline_reap() { run_behaviour::<PastDeadlineReap>($variant) }
        }
    )*};
}

all_variants!(every_engine);

/// What an engine's instance declares, built in `dir` on a thread of its own.
struct CapsOf(PathBuf);
impl FactoryVisitor for CapsOf {
    type Out = snapbench_engines::Caps;
    fn visit<F: RecorderFactory + 'static>(self, factory: F) -> snapbench_engines::Caps {
        std::thread::spawn(move || {
            let r = factory.build(&config(&self.0)).expect("engine builds");
            r.caps().clone()
        })
        .join()
        .expect("build thread")
    }
}

/// The shared list's groups and derived subsets agree with what the engines declare: the
/// `no_data` group is exactly the variants whose caps say they store no data, and the
/// O_DIRECT subset (from the spec) is exactly the variants whose caps say O_DIRECT. Every
/// variant appears once.
#[test]
fn groups_match_caps() {
    let _guard = FD_COUNT.read().unwrap_or_else(|p| p.into_inner());
    let direct = variants::direct(variants::ALL);
    for v in variants::ALL {
        assert_eq!(
            variants::ALL.iter().filter(|w| *w == v).count(),
            1,
            "{v} is listed twice"
        );
        let dir = disk_dir();
        let spec = EngineSpec::parse(v).unwrap();
        assert_eq!(spec.variant(), *v, "list variants in their canonical form");
        let caps = spec.visit(CapsOf(dir.path().to_path_buf()));
        assert_eq!(
            caps.stores_data,
            !variants::NO_DATA.contains(v),
            "{v}: stores_data says otherwise than its group"
        );
        assert_eq!(
            variants::DATA.contains(v),
            caps.stores_data,
            "{v}: DATA is the data-storing variants"
        );
        assert_eq!(caps.direct, direct.contains(v), "{v}: O_DIRECT subset");
    }
    assert_eq!(
        variants::DATA.len() + variants::NO_DATA.len(),
        variants::ALL.len()
    );
    assert_eq!(
        variants::one_per_engine_and_direct(variants::CRASH),
        [
            "buffered",
            "buffered:direct=true",
            "uring",
            "aio",
            "poll",
            "tokio",
            "glommio"
        ]
    );
}

/// A reap whose deadline has passed still returns completions that are ready (it only does not
/// wait for more).
struct PastDeadlineReap;
impl Behaviour for PastDeadlineReap {
    fn run<R: Recorder>(r: &mut R, _dir: &Path) {
        create(r, 1 << 20);
        let buf = filled(r, 4096, 3);
        r.submit(
            5,
            Op::Write {
                file: M,
                offset: 0,
                buf,
                dsync: false,
            },
        )
        .ok()
        .expect("room for one write");
        r.flush().unwrap();
        let mut out = Vec::new();
        let deadline = far();
        while out.is_empty() {
            assert!(
                Instant::now() < deadline,
                "a ready completion was never returned"
            );
            std::thread::sleep(Duration::from_millis(1));
            r.reap(&mut out, Instant::now() - Duration::from_millis(1))
                .unwrap();
        }
        assert_eq!(out[0].token, 5);
        for c in out {
            if let Some(b) = c.buf {
                r.release_buf(b);
            }
        }
    }
}
