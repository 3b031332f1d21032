//! uring-specific tests: knob validation and refused combinations, IOPOLL detection, misaligned
//! O_DIRECT reads reaching the kernel, the invariant the `unsafe` code relies on (a buffer the
//! kernel holds is never handed out again), and `attach_wq`. Dropping with ops in flight and
//! reads at EOF are generic behaviours (`behaviour.rs`, every uring variant).

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
    let e = knobs("cq_spin=true").unwrap_err();
    assert!(e.to_string().contains("needs sqpoll=true"), "{e}");
    assert!(knobs("sqpoll=true,cq_spin=true").unwrap().cq_spin);
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
    let _g = SQPOLL_RINGS.lock().unwrap_or_else(|p| p.into_inner());
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

/// uring hands a misaligned O_DIRECT read to the kernel as it is: EINVAL in its completion, with
/// the buffer back (the generic `misaligned_requests` of `behaviour.rs` also allows an engine
/// that realigns reads, and covers misaligned writes).
#[test]
fn misaligned_direct_reads_fail_with_einval() {
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

/// The tests that set up SQPOLL rings (the probe does too) run one at a time: the `attach_wq`
/// test tells rings apart by their SQ threads.
static SQPOLL_RINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One io_uring descriptor of this process: the ring's inode (a `dup` shares it) and its SQ
/// thread (`None` without SQPOLL), from its fdinfo.
#[derive(Debug)]
struct RingFd {
    fd: i32,
    ino: u64,
    sq_thread: Option<i32>,
}

fn ring_fds() -> Vec<RingFd> {
    let field = |info: &str, name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|t| t.to_string_lossy() == "anon_inode:[io_uring]")
        })
        .filter_map(|fd| {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            Some(RingFd {
                fd,
                ino: field(&info, "ino:")?.parse().ok()?,
                sq_thread: field(&info, "SqThread:")?
                    .parse()
                    .ok()
                    .filter(|p: &i32| *p > 0),
            })
        })
        .collect()
}

/// `attach_wq`: the first worker's ring is kept for the run, and the second worker's ring
/// attaches to it. Observable two ways: with `sqpoll`, the attached ring shares the first ring's
/// SQ thread (without `attach_wq` it gets its own); and the second ring really hands the kept
/// descriptor to the kernel (one that is not a ring makes its setup fail).
#[test]
fn attach_wq_shares_the_first_ring() {
    use std::os::fd::AsRawFd;
    let _g = SQPOLL_RINGS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    {
        let cfg = config(dir.path(), 8, 8);
        let f = UringFactory(knobs("attach_wq=true").unwrap());
        let a = f.build(&cfg).unwrap();
        assert!(cfg.shared.uring_wq_fd.lock().unwrap().is_some());
        let mut cfg2 = cfg.clone();
        cfg2.worker = 1;
        let b = f.build(&cfg2).unwrap();
        drop((a, b));
    }
    let new_ring = |before: &[u64]| {
        ring_fds()
            .into_iter()
            .find(|r| !before.contains(&r.ino))
            .expect("a new ring")
            .ino
    };
    for attach in [true, false] {
        let cfg = config(dir.path(), 8, 8);
        let k = format!("sqpoll=true,sqpoll_idle_ms=10,attach_wq={attach}");
        let f = UringFactory(knobs(&k).unwrap());
        let inos = || ring_fds().iter().map(|r| r.ino).collect::<Vec<_>>();
        let before = inos();
        let a = f.build(&cfg).unwrap();
        let first = new_ring(&before);
        let kept = cfg
            .shared
            .uring_wq_fd
            .lock()
            .unwrap()
            .as_ref()
            .map(|fd| fd.as_raw_fd());
        assert_eq!(
            kept.is_some(),
            attach,
            "{k}: the first ring is kept for the run"
        );
        let before = inos();
        let mut cfg2 = cfg.clone();
        cfg2.worker = 1;
        let b = f.build(&cfg2).unwrap();
        let second = new_ring(&before);
        // fdinfo names the SQ thread once it runs: let both start.
        std::thread::sleep(Duration::from_millis(50));
        let rings = ring_fds();
        let sq = |ino: u64| {
            rings
                .iter()
                .find(|r| r.ino == ino)
                .and_then(|r| r.sq_thread)
                .unwrap_or_else(|| panic!("{k}: no SQ thread for ring {ino}: {rings:?}"))
        };
        if let Some(fd) = kept {
            let kept_ino = rings.iter().find(|r| r.fd == fd).map(|r| r.ino);
            assert_eq!(
                kept_ino,
                Some(first),
                "{k}: the kept descriptor is the first ring"
            );
        }
        if attach {
            assert_eq!(
                sq(second),
                sq(first),
                "{k}: the second ring does not share the first one's SQ thread: {rings:?}"
            );
        } else {
            assert_ne!(
                sq(second),
                sq(first),
                "{k}: two rings share an SQ thread without attach_wq: {rings:?}"
            );
        }
        drop((a, b));
    }

    // A kept descriptor that is not a ring: the second worker's setup fails, so it does pass it.
    let cfg = config(dir.path(), 8, 8);
    let file = std::fs::File::open(dir.path()).unwrap();
    *cfg.shared.uring_wq_fd.lock().unwrap() = Some(file.into());
    let e = UringFactory(knobs("attach_wq=true").unwrap())
        .build(&cfg)
        .err()
        .expect("a ring attached to a directory's descriptor was set up");
    assert!(e.to_string().contains("io_uring_setup"), "{e}");
}
