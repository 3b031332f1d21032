//! uring-specific tests: knob validation and refused combinations, IOPOLL detection, misaligned
//! O_DIRECT requests, and the invariants the `unsafe` code relies on (a buffer the kernel holds
//! is never handed out again; dropping with ops in flight waits for them).

use std::path::Path;
use std::time::{Duration, Instant};

use snapbench_engines::uring::{probe, UringFactory, UringKnobs};
use snapbench_engines::{
    Completion, EngineConfig, EngineSpec, FileKind, KnobError, MatchId, Op, Recorder,
    RecorderFactory,
};

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

fn far() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn knobs(text: &str) -> Result<UringKnobs, KnobError> {
    match EngineSpec::parse(&format!("uring:{text}"))? {
        EngineSpec::Uring(k) => Ok(k),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn knob_validation_and_refused_combinations() {
    let e = knobs("sqpoll=true,defer_taskrun=true,single_issuer=true").unwrap_err();
    assert!(matches!(e, KnobError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("cannot be combined"), "{e}");
    let e = knobs("defer_taskrun=true").unwrap_err();
    assert!(e.to_string().contains("single_issuer"), "{e}");
    assert!(knobs("entries=48")
        .unwrap_err()
        .to_string()
        .contains("power of two"));
    assert!(knobs("sqpoll_cpu=1")
        .unwrap_err()
        .to_string()
        .contains("sqpoll=true"));
    let e = knobs("fixed_buffer=true").unwrap_err();
    assert!(
        e.to_string().contains("did you mean `fixed_buffers`"),
        "{e}"
    );
    assert!(knobs("sqpoll_cpu=none").is_ok());
    let k = knobs("sqpoll=true,sqpoll_cpu=1,entries=64").unwrap();
    assert_eq!((k.sqpoll, k.sqpoll_cpu, k.entries), (true, Some(1), 64));
    let spec = EngineSpec::parse("uring:sqpoll=true,sqpoll_cpu=1").unwrap();
    assert_eq!(spec.variant(), "uring:sqpoll=true,sqpoll_cpu=1");
}

#[test]
fn iopoll_is_detected_not_run_into_a_wall() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let found = probe(dir.path());
    let iopoll = found
        .iter()
        .find(|p| p.what == "iopoll")
        .expect("iopoll probed");
    let spec = EngineSpec::parse("uring:iopoll=true").unwrap();
    let check = spec.check_supported(dir.path());
    if iopoll.supported {
        assert!(check.is_ok());
    } else {
        // This machine (virtio, no poll queues): unsupported, with the reason, refused up front.
        assert!(iopoll.detail.contains("poll queues"), "{}", iopoll.detail);
        let why = check.unwrap_err();
        assert!(why.contains("iopoll"), "{why}");
    }
}

fn wait_for<R: Recorder>(r: &mut R, n: usize) -> Vec<Completion<R::Buf>> {
    let mut out = Vec::new();
    let deadline = far();
    while out.len() < n {
        assert!(Instant::now() < deadline, "completions never came");
        r.reap(&mut out, deadline).unwrap();
    }
    out
}

fn created(dir: &Path, knobs: &str, qd: usize, bufs: usize) -> snapbench_engines::uring::Uring {
    let k = self::knobs(knobs).unwrap();
    let mut r = UringFactory(k).build(&config(dir, qd, bufs)).unwrap();
    r.submit(
        1,
        Op::Create {
            file: MatchId(1),
            kind: FileKind::Data,
            prealloc_bytes: 1 << 20,
        },
    )
    .ok()
    .unwrap();
    let c = wait_for(&mut r, 1);
    assert!(c[0].res.is_ok());
    r
}

#[test]
fn misaligned_direct_request_fails_in_its_completion() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut r = created(dir.path(), "", 8, 8);
    // Write the first block so the read below is a real O_DIRECT read (ext4 returns zeros for
    // unwritten extents without checking alignment).
    let mut b = r.alloc_buf(8192).unwrap();
    b.as_mut().fill(1);
    r.submit(
        2,
        Op::Write {
            file: MatchId(1),
            offset: 0,
            buf: b,
            dsync: false,
        },
    )
    .ok()
    .unwrap();
    let c = wait_for(&mut r, 1);
    assert_eq!(*c[0].res.as_ref().unwrap(), 8192);
    for (offset, len) in [(100u64, 4096usize), (0, 100)] {
        let buf = r.alloc_buf(len).unwrap();
        r.submit(
            3,
            Op::Read {
                file: MatchId(1),
                offset,
                buf,
            },
        )
        .ok()
        .unwrap();
        let c = wait_for(&mut r, 1);
        let err = c[0]
            .res
            .as_ref()
            .expect_err("misaligned O_DIRECT read succeeded");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
        assert!(c[0].buf.is_some(), "the buffer comes back with the error");
    }
    let buf = r.alloc_buf(100).unwrap();
    r.submit(
        4,
        Op::Write {
            file: MatchId(1),
            offset: 0,
            buf,
            dsync: true,
        },
    )
    .ok()
    .unwrap();
    let c = wait_for(&mut r, 1);
    assert_eq!(
        c[0].res.as_ref().unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
}

/// While the kernel holds every buffer, the pool hands out none; each comes back only with its
/// completion — for plain and registered buffers.
#[test]
fn buffers_in_flight_are_never_handed_out() {
    for k in ["", "fixed_buffers=true,fixed_files=true"] {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let mut r = created(dir.path(), k, 8, 4);
        let mut ptrs = Vec::new();
        for i in 0..4u64 {
            let buf = r.alloc_buf(4096).unwrap();
            ptrs.push(buf.as_ref().as_ptr() as usize);
            r.submit(
                10 + i,
                Op::Read {
                    file: MatchId(1),
                    offset: i * 4096,
                    buf,
                },
            )
            .ok()
            .unwrap();
        }
        assert!(
            r.alloc_buf(4096).is_none(),
            "{k}: a buffer the kernel holds was handed out"
        );
        let done = wait_for(&mut r, 4);
        for c in done {
            let b = c.buf.expect("buffer back");
            assert!(ptrs.contains(&(b.as_ref().as_ptr() as usize)));
            r.release_buf(b);
        }
        assert!(r.alloc_buf(4096).is_some());
    }
}

/// Dropping the engine with reads in flight waits for their completions before the buffers are
/// freed (run under the test's allocator: a use-after-free would corrupt the heap here).
#[test]
fn drop_with_ops_in_flight_waits_for_them() {
    for k in ["", "fixed_buffers=true", "sqpoll=true,sqpoll_idle_ms=10"] {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let mut r = created(dir.path(), k, 32, 32);
        for i in 0..32u64 {
            let buf = r.alloc_buf(65536).unwrap();
            r.submit(
                i,
                Op::Read {
                    file: MatchId(1),
                    offset: (i % 16) * 65536,
                    buf,
                },
            )
            .ok()
            .unwrap();
        }
        r.flush().unwrap();
        assert!(r.in_flight() > 0);
        drop(r);
        // The heap is intact: allocate and touch a lot of memory where the buffers were.
        let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 65536]).collect();
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|x| *x == i as u8)));
    }
}

/// Short transfers are completed: a read across end of file returns what is there, and a read
/// at end of file returns 0 — not an error, not a hang.
#[test]
fn reads_at_and_across_eof() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut r = created(dir.path(), "", 8, 8);
    let buf = r.alloc_buf(65536).unwrap();
    r.submit(
        5,
        Op::Read {
            file: MatchId(1),
            offset: (1 << 20) - 8192,
            buf,
        },
    )
    .ok()
    .unwrap();
    let c = wait_for(&mut r, 1);
    assert_eq!(*c[0].res.as_ref().unwrap(), 8192);
    let buf = r.alloc_buf(4096).unwrap();
    r.submit(
        6,
        Op::Read {
            file: MatchId(1),
            offset: 1 << 20,
            buf,
        },
    )
    .ok()
    .unwrap();
    let c = wait_for(&mut r, 1);
    assert_eq!(*c[0].res.as_ref().unwrap(), 0);
}

/// `attach_wq`: the second worker's ring attaches to the first one's io-wq.
#[test]
fn attach_wq_shares_the_first_ring() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let cfg = config(dir.path(), 8, 8);
    let f = UringFactory(knobs("attach_wq=true").unwrap());
    let a = f.build(&cfg).unwrap();
    assert!(cfg.shared.uring_wq_fd.lock().unwrap().is_some());
    let mut cfg2 = cfg.clone();
    cfg2.worker = 1;
    let b = f.build(&cfg2).unwrap();
    drop((a, b));
}
