//! Tests specific to the `glommio` engine: glommio's poll-ring pitfall (issue #605) reproduced
//! without the engine's precaution and avoided with it, on a real disk; the placement on the
//! worker's pinned CPU; the consumed-buffer pool; errors in completions; knobs; deadlines; and
//! drop with I/O in flight.
//!
//! glommio caches its poll-ring decision per thread and device, so every test that opens a
//! `DmaFile` does so on a thread of its own, and the pitfall tests use a fresh thread for each
//! case.

use std::path::Path;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};
use snapbench_engines::glommio::{Glommio, GlommioFactory, GlommioKnobs};
use snapbench_engines::{
    file_name, Completion, EngineConfig, EngineSpec, FileKind, KnobError, MatchId, Op, OpKind,
    Recorder, RecorderFactory,
};

const M: MatchId = MatchId(0x605);

/// One test at a time: the drop test counts the process's descriptors.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
const B: usize = 4096;

/// A directory on the machine's disk (ext4 on virtio-blk here), never tmpfs: glommio serves
/// tmpfs without O_DIRECT and without the poll ring, which would prove nothing.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").unwrap()
}

fn on_disk(dir: &Path) -> bool {
    let fs = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = std::fs::canonicalize(dir).unwrap();
    let mount = fs
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_, mnt, ty) = (it.next()?, it.next()?, it.next()?);
            dir.starts_with(mnt).then(|| (mnt.len(), ty.to_string()))
        })
        .max();
    !matches!(mount, Some((_, ty)) if ty == "tmpfs")
}

/// glommio runs on this machine's disk (MACHINE.md): fail, naming why, where it does not.
fn require_supported(dir: &Path) {
    if let Err(why) = EngineSpec::parse("glommio").unwrap().check_supported(dir) {
        panic!("glommio cannot run on {}: {why}", dir.display());
    }
}

fn config(dir: &Path, queue_depth: usize, buf_count: usize) -> EngineConfig {
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

fn build(knobs: GlommioKnobs, dir: &Path, qd: usize, bufs: usize) -> Glommio {
    GlommioFactory(knobs)
        .build(&config(dir, qd, bufs))
        .expect("glommio engine builds")
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Submit, then reap until `token` completes; other completions are not expected.
fn one(
    r: &mut Glommio,
    token: u64,
    op: Op<glommio::io::DmaBuffer>,
) -> Completion<glommio::io::DmaBuffer> {
    r.submit(token, op).expect("room for one op");
    let deadline = far();
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "token {token} never completed");
        r.reap(&mut out, deadline).unwrap();
        if let Some(i) = out.iter().position(|c| c.token == token) {
            let c = out.swap_remove(i);
            assert!(out.is_empty(), "unexpected completions");
            return c;
        }
    }
}

fn ok(
    r: &mut Glommio,
    token: u64,
    op: Op<glommio::io::DmaBuffer>,
) -> Completion<glommio::io::DmaBuffer> {
    let c = one(r, token, op);
    if let Err(e) = &c.res {
        panic!("{:?} failed: {e}", c.kind);
    }
    c
}

/// Create the log `M` with 1 MiB preallocated (token `token`), which must succeed.
fn create_log(r: &mut Glommio, token: u64) {
    ok(
        r,
        token,
        Op::Create {
            file: M,
            kind: FileKind::Log,
            prealloc_bytes: 1 << 20,
        },
    );
}

/// A SNAPLOG1-like header block: magic, match id, then zeros.
fn header_block() -> Vec<u8> {
    let mut h = vec![0u8; B];
    h[..8].copy_from_slice(b"SNAPLOG1");
    h[8..16].copy_from_slice(&M.0.to_le_bytes());
    h
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 253) as u8))
        .collect()
}

fn write(
    r: &mut Glommio,
    token: u64,
    file: MatchId,
    offset: u64,
    data: &[u8],
) -> Completion<glommio::io::DmaBuffer> {
    let mut b = r.alloc_buf(data.len()).expect("buffer");
    b.as_mut().copy_from_slice(data);
    one(
        r,
        token,
        Op::Write {
            file,
            offset,
            buf: b,
            dsync: false,
        },
    )
}

fn read(r: &mut Glommio, token: u64, file: MatchId, offset: u64, len: usize) -> Vec<u8> {
    let b = r.alloc_buf(len).expect("buffer");
    let c = ok(
        r,
        token,
        Op::Read {
            file,
            offset,
            buf: b,
        },
    );
    let b = c.buf.expect("read hands its buffer back");
    let n = *c.res.as_ref().unwrap();
    let v = b.as_ref()[..n].to_vec();
    r.release_buf(b);
    v
}

/// glommio's error with its OS error code kept.
fn os_error(e: glommio::GlommioError<()>) -> std::io::Error {
    match e {
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        glommio::GlommioError::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

fn on_fresh_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("test thread")
}

/// What raw glommio does on a fresh thread when the first `DmaFile` it opens on the device is
/// a new, empty file: it probes its poll ring with a read that never reaches the device. On a
/// device without poll queues, reads then fail with EOPNOTSUPP — for that file and for every
/// later file of the device on that thread, even one whose first block was written and synced.
/// Returns None when the device serves polled reads (nothing to reproduce).
fn raw_glommio_new_file_first(
    dir: &Path,
) -> Option<(std::io::Result<usize>, std::io::Result<usize>)> {
    let fresh = dir.join("fresh.snap");
    let written = dir.join("written.snap");
    {
        // A second file whose block 0 is on the device, written before glommio sees it.
        use std::io::Write;
        let mut f = std::fs::File::create(&written).unwrap();
        f.write_all(&header_block()).unwrap();
        f.sync_all().unwrap();
    }
    on_fresh_thread(move || {
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .unwrap();
        ex.run(async move {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .dma_open(&fresh)
                .await
                .unwrap();
            let mut b = f.alloc_dma_buffer(B);
            b.as_bytes_mut().copy_from_slice(&header_block());
            // The header goes out first, as the harness does; it does not help: the decision
            // was taken at open.
            let _ = f.write_at(b, 0).await;
            let _ = f.fdatasync().await;
            let r1 = f
                .read_at_aligned(0, B)
                .await
                .map(|r| r.len())
                .map_err(os_error);
            let _ = f.close().await;
            if r1.is_ok() {
                return None;
            }
            let g = DmaFile::open(&written).await.unwrap();
            let r2 = g
                .read_at_aligned(0, B)
                .await
                .map(|r| r.len())
                .map_err(os_error);
            let _ = g.close().await;
            Some((r1, r2))
        })
    })
}

#[test]
fn pitfall_605_reproduced_without_the_precaution() {
    let _g = serial();
    let dir = disk_dir();
    assert!(on_disk(dir.path()), "{} is tmpfs", dir.path().display());
    // This machine's disk has no poll queues (MACHINE.md), so the pitfall must show; a device
    // with poll queues cannot reproduce it and fails here, saying so.
    let (fresh, written) = raw_glommio_new_file_first(dir.path()).expect(
        "polled reads work on this device (it has poll queues): glommio #605 cannot occur here",
    );
    let e = fresh.expect_err("read of the new file");
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
    // The decision is cached per thread and device: a file whose block 0 is on the device is
    // refused too. Writing each log's header before opening it would not be enough once one
    // file was opened empty.
    let e = written.expect_err("read of the written file on the poisoned thread");
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
}

/// With the engine's precaution, a brand-new log — fallocated, block 0 never written, the
/// first file of the device the worker thread opens — is read before and after its header and
/// data are written, all through glommio, without EOPNOTSUPP.
#[test]
fn precaution_new_log_reads_back() {
    let _g = serial();
    let dir = disk_dir();
    assert!(on_disk(dir.path()), "{} is tmpfs", dir.path().display());
    require_supported(dir.path());
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        let mut r = build(GlommioKnobs::default(), &path, 8, 8);
        create_log(&mut r, 1);
        // The fallocated, unwritten block 0 reads back as zeros.
        assert_eq!(read(&mut r, 2, M, 0, B), vec![0u8; B]);
        let c = write(&mut r, 3, M, 0, &header_block());
        assert_eq!(*c.res.as_ref().unwrap(), B);
        let body = pattern(64 * 1024, 7);
        let c = write(&mut r, 4, M, B as u64, &body);
        assert_eq!(*c.res.as_ref().unwrap(), body.len());
        ok(&mut r, 5, Op::Sync { file: M });
        assert_eq!(read(&mut r, 6, M, 0, B), header_block());
        assert_eq!(read(&mut r, 7, M, B as u64, body.len()), body);
        ok(&mut r, 8, Op::Close { file: M });

        // A second file that glommio first sees empty (created outside the engine, sparse).
        let other = MatchId(0x606);
        let p = path.join(file_name(other, FileKind::Data));
        std::fs::File::create(&p).unwrap().set_len(1 << 20).unwrap();
        ok(
            &mut r,
            9,
            Op::Open {
                file: other,
                kind: FileKind::Data,
                writable: true,
            },
        );
        assert_eq!(read(&mut r, 10, other, 0, B), vec![0u8; B]);
        let c = write(&mut r, 11, other, 0, &body[..B]);
        assert!(c.res.is_ok());
        assert_eq!(read(&mut r, 12, other, 0, B), body[..B].to_vec());
        let mut out = Vec::new();
        r.drain(&mut out, far()).unwrap();
    });
    // And the bytes are on disk as written (read with plain std I/O).
    let data = std::fs::read(dir.path().join(file_name(M, FileKind::Log))).unwrap();
    assert_eq!(&data[..B], &header_block()[..]);
    assert_eq!(&data[B..B + 64 * 1024], &pattern(64 * 1024, 7)[..]);
}

/// The engine's warm-up reaches a device the directory is not on: a file opened through a
/// link into tmpfs (/dev/shm) gets the device checked first. (tmpfs itself never uses the poll
/// ring; the point is that the link's target decides.)
#[test]
fn open_through_a_link_warms_the_target_device() {
    let _g = serial();
    let dir = disk_dir();
    require_supported(dir.path());
    assert!(
        Path::new("/dev/shm").is_dir(),
        "this test needs /dev/shm (tmpfs)"
    );
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let target = shm.path().join("target.dat");
    std::fs::write(&target, pattern(2 * B, 3)).unwrap();
    let link = dir.path().join(file_name(M, FileKind::Data));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        let mut r = build(GlommioKnobs::default(), &path, 4, 4);
        ok(
            &mut r,
            1,
            Op::Open {
                file: M,
                kind: FileKind::Data,
                writable: false,
            },
        );
        assert_eq!(
            read(&mut r, 2, M, B as u64, B),
            pattern(2 * B, 3)[B..].to_vec()
        );
    });
    assert!(
        std::fs::read_dir(shm.path()).unwrap().count() == 1,
        "the warm-up file in the link's directory was not removed"
    );
}

/// The executor is fenced to the CPU the harness pinned the worker to: glommio's bind leaves
/// the pin as it was.
#[test]
fn placement_keeps_the_workers_pin() {
    let _g = serial();
    let dir = disk_dir();
    require_supported(dir.path());
    let allowed = cpus_allowed();
    let cpu = *allowed.last().unwrap();
    let path = dir.path().to_path_buf();
    let (placement, after) = on_fresh_thread(move || {
        pin(cpu);
        let r = build(GlommioKnobs::default(), &path, 4, 4);
        (r.placement().to_string(), cpus_allowed())
    });
    assert_eq!(after, vec![cpu], "glommio changed the worker's affinity");
    assert_eq!(placement, format!("fenced to CPUs [{cpu}]"));
    // Unpinned: fenced to the whole mask, which stays as it was.
    let path = dir.path().to_path_buf();
    let (placement, after) = on_fresh_thread(move || {
        let r = build(GlommioKnobs::default(), &path, 4, 4);
        (r.placement().to_string(), cpus_allowed())
    });
    assert_eq!(after, allowed);
    assert!(placement.starts_with("fenced"), "{placement}");
}

fn cpus_allowed() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity writes into the local.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t and the size passed is its size; pid 0 = this thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0);
    // SAFETY: CPU_ISSET only reads the set filled above.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
        .collect()
}

fn pin(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE; the kernel reads the local set during the call.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "pin to CPU {cpu}");
}

/// A write consumes its buffer (the completion has none) and its pool slot comes back when
/// the completion is reaped; a read hands its buffer back filled.
#[test]
fn write_consumes_its_buffer_slot_returns_on_reap() {
    let _g = serial();
    let dir = disk_dir();
    require_supported(dir.path());
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        let mut r = build(GlommioKnobs::default(), &path, 4, 4);
        create_log(&mut r, 1);
        let bufs: Vec<_> = (0..4).map(|_| r.alloc_buf(B).expect("buffer")).collect();
        assert!(r.alloc_buf(B).is_none(), "pool of 4 gave a fifth");
        for (i, b) in bufs.into_iter().enumerate() {
            r.submit(
                10 + i as u64,
                Op::Write {
                    file: M,
                    offset: (i * B) as u64,
                    buf: b,
                    dsync: false,
                },
            )
            .expect("room");
        }
        assert!(
            r.alloc_buf(B).is_none(),
            "slots are free before the writes are reaped"
        );
        let mut out = Vec::new();
        r.drain(&mut out, far()).unwrap();
        assert_eq!(out.len(), 4);
        for c in &out {
            assert_eq!(c.kind, OpKind::Write);
            assert_eq!(*c.res.as_ref().unwrap(), B);
            assert!(c.buf.is_none(), "a write consumes its DmaBuffer");
        }
        let again: Vec<_> = (0..4).map(|_| r.alloc_buf(B).expect("slot back")).collect();
        for b in again {
            r.release_buf(b);
        }
    });
}

/// An error from the kernel arrives in the completion and the write is not reported as
/// written: a write to a file opened read-only fails with EBADF.
#[test]
fn kernel_error_in_completion() {
    let _g = serial();
    let dir = disk_dir();
    require_supported(dir.path());
    std::fs::write(dir.path().join(file_name(M, FileKind::Data)), pattern(B, 1)).unwrap();
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        let mut r = build(GlommioKnobs::default(), &path, 4, 4);
        ok(
            &mut r,
            1,
            Op::Open {
                file: M,
                kind: FileKind::Data,
                writable: false,
            },
        );
        let c = write(&mut r, 2, M, 0, &pattern(B, 9));
        let e = c.res.expect_err("write to a read-only file");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        assert_eq!(read(&mut r, 3, M, 0, B), pattern(B, 1), "reads still work");
        // An op on a file that is not open fails with EBADF and hands the buffer back.
        let b = r.alloc_buf(B).unwrap();
        let c = one(
            &mut r,
            4,
            Op::Read {
                file: MatchId(1),
                offset: 0,
                buf: b,
            },
        );
        assert_eq!(c.res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        r.release_buf(c.buf.expect("buffer back"));
    });
    assert_eq!(
        std::fs::read(dir.path().join(file_name(M, FileKind::Data))).unwrap(),
        pattern(B, 1),
        "the failed write changed the file"
    );
}

/// Knobs parse, show in the variant string and reach glommio; unknown knobs are refused.
#[test]
fn knobs() {
    let _g = serial();
    let spec = EngineSpec::parse("glommio").unwrap();
    assert!(spec.direct());
    assert_eq!(spec.variant(), "glommio");
    let spec =
        EngineSpec::parse("glommio:io_memory_mib=16,ring_depth=64,spin_before_park_us=50").unwrap();
    assert_eq!(
        spec.variant(),
        "glommio:io_memory_mib=16,ring_depth=64,spin_before_park_us=50"
    );
    let e = EngineSpec::parse("glommio:ring_dept=8").unwrap_err();
    assert!(
        matches!(&e, KnobError::UnknownKnob { suggestion: Some(s), .. } if s == "ring_depth"),
        "{e:?}"
    );
    assert!(matches!(
        EngineSpec::parse("glommio:io_memory_mib=5000"),
        Err(KnobError::BadValue { .. })
    ));

    let dir = disk_dir();
    require_supported(dir.path());
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        let knobs = GlommioKnobs {
            io_memory_mib: 16,
            ring_depth: 64,
            spin_before_park_us: 50,
        };
        let mut r = build(knobs, &path, 8, 8);
        create_log(&mut r, 1);
        let data = pattern(16 * 1024, 5);
        assert!(write(&mut r, 2, M, 0, &data).res.is_ok());
        assert_eq!(read(&mut r, 3, M, 0, data.len()), data);
    });
}

/// `snapbench engines` rows: the engine and every knob, with a reason.
#[test]
fn probe_reports_every_row() {
    let _g = serial();
    let dir = disk_dir();
    let rows = snapbench_engines::glommio::probe(dir.path());
    let names: Vec<&str> = rows.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(
        names,
        [
            "(engine)",
            "io_memory_mib",
            "ring_depth",
            "spin_before_park_us"
        ]
    );
    for p in &rows {
        assert!(!p.detail.is_empty());
    }
    if rows[0].supported {
        assert!(rows[0].detail.contains("DmaFile"), "{}", rows[0].detail);
    }
}

/// Deadlines: a reap waits for the first completion, not for the deadline; with nothing in
/// flight it returns at once; a past deadline never waits.
#[test]
fn reap_deadlines() {
    let _g = serial();
    let dir = disk_dir();
    require_supported(dir.path());
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        let mut r = build(GlommioKnobs::default(), &path, 8, 8);
        let mut out = Vec::new();
        let t = Instant::now();
        assert_eq!(
            r.reap(&mut out, Instant::now() + Duration::from_secs(5))
                .unwrap(),
            0
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "waited with nothing in flight"
        );
        create_log(&mut r, 1);
        let mut b = r.alloc_buf(B).unwrap();
        b.as_mut().fill(1);
        r.submit(
            2,
            Op::Write {
                file: M,
                offset: 0,
                buf: b,
                dsync: false,
            },
        )
        .ok()
        .unwrap();
        let t = Instant::now();
        while out.is_empty() {
            r.reap(&mut out, Instant::now() + Duration::from_secs(30))
                .unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "reap waited {:?} for a 4 KiB write",
            t.elapsed()
        );
        out.clear();
        // A past deadline: one reactor pass, no wait.
        for i in 0..100 {
            r.submit(10 + i, Op::Sync { file: M }).ok().unwrap();
            let t = Instant::now();
            r.reap(&mut out, Instant::now() - Duration::from_millis(1))
                .unwrap();
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "past-deadline reap waited"
            );
            r.drain(&mut out, far()).unwrap();
        }
        assert_eq!(out.len(), 100);
    });
}

/// Descriptors of this process other than eventfds, and eventfds.
fn fds() -> (usize, usize) {
    let mut other = 0;
    let mut eventfds = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        match std::fs::read_link(e.path()) {
            Ok(t) if t.to_string_lossy() == "anon_inode:[eventfd]" => eventfds += 1,
            Ok(t) if t.starts_with("/proc") => {} // the directory being listed
            _ => other += 1,
        }
    }
    (other, eventfds)
}

/// Dropping the engine with I/O in flight waits for it and closes every file and ring.
#[test]
fn drop_with_io_in_flight() {
    let _g = serial();
    let dir = disk_dir();
    require_supported(dir.path());
    let path = dir.path().to_path_buf();
    on_fresh_thread(move || {
        // Build once so glommio's per-thread state exists before counting.
        drop(build(GlommioKnobs::default(), &path, 32, 32));
        let (base, base_eventfds) = fds();
        let mut r = build(GlommioKnobs::default(), &path, 32, 32);
        ok(
            &mut r,
            1,
            Op::Create {
                file: M,
                kind: FileKind::Log,
                prealloc_bytes: 4 << 20,
            },
        );
        for i in 0..32u64 {
            let mut b = r.alloc_buf(64 * 1024).unwrap();
            b.as_mut().fill(i as u8);
            r.submit(
                100 + i,
                Op::Write {
                    file: M,
                    offset: i * 64 * 1024,
                    buf: b,
                    dsync: false,
                },
            )
            .ok()
            .unwrap();
        }
        r.flush().unwrap();
        assert!(r.in_flight() > 0);
        drop(r);
        let (after, eventfds) = fds();
        assert_eq!(after, base, "files or rings left open after drop");
        // glommio 0.9 keeps one eventfd per executor that ran (its issue #448).
        assert!(
            eventfds <= base_eventfds + 1,
            "{eventfds} eventfds, {base_eventfds} before"
        );
    });
    let data = std::fs::read(dir.path().join(file_name(M, FileKind::Log))).unwrap();
    for i in 0..32usize {
        assert!(
            data[i * 65536..(i + 1) * 65536]
                .iter()
                .all(|b| *b == i as u8),
            "write {i} in flight at drop did not land"
        );
    }
}
