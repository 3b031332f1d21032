//! Tests specific to the `aio` engine: knob errors, the completion-time error of a misaligned
//! O_DIRECT read, many writes in flight, user-space ring reaping, and drop with I/O in flight
//! destroying the context (misaligned writes, EOF reads and the rest of drop are generic
//! behaviours in `behaviour.rs`). Every test takes one lock, so the AIO-mapping check of the drop test sees only its
//! own context.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use snapbench_engines::aio::{self, Aio, AioFactory, AioKnobs};
use snapbench_engines::{
    file_name, Completion, EngineConfig, EngineSpec, FileKind, KnobError, MatchId, Op, OpKind,
    Recorder, RecorderFactory,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const M: MatchId = MatchId(0x5eed);

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

/// A directory on a disk filesystem (ext4 here): tmpfs ignores O_DIRECT alignment.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::temp_dir()).unwrap()
}

/// AIO and O_DIRECT work on this machine's ext4 (docs/machine.md): fail, naming why, where they do
/// not.
fn require_supported(variant: &str, dir: &Path) {
    if let Err(why) = EngineSpec::parse(variant).unwrap().check_supported(dir) {
        panic!("{variant} cannot run on {}: {why}", dir.display());
    }
}

fn build(knobs: AioKnobs, dir: &Path, qd: usize, bufs: usize) -> Aio {
    AioFactory(knobs)
        .build(&config(dir, qd, bufs))
        .expect("aio engine builds")
}

fn wait_one(r: &mut Aio, token: u64) -> Completion<snapbench_engines::AlignedBuf> {
    r.flush().unwrap();
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

fn create(r: &mut Aio, prealloc: u64) {
    r.submit(
        1,
        Op::Create {
            file: M,
            kind: FileKind::Log,
            prealloc_bytes: prealloc,
        },
    )
    .ok()
    .unwrap();
    let c = wait_one(r, 1);
    c.res.expect("create");
}

#[test]
fn knob_errors() {
    let e = EngineSpec::parse("aio:user_rep=true").unwrap_err();
    match &e {
        KnobError::UnknownKnob {
            engine, suggestion, ..
        } => {
            assert_eq!(*engine, "aio");
            assert_eq!(suggestion.as_deref(), Some("user_reap"));
        }
        other => panic!("expected UnknownKnob, got {other:?}"),
    }
    assert!(e.to_string().contains("did you mean `user_reap`"), "{e}");
    let e = EngineSpec::parse("aio:drect=false").unwrap_err();
    assert!(e.to_string().contains("did you mean `direct`"), "{e}");
    let e = EngineSpec::parse("aio:direct=maybe").unwrap_err();
    assert!(
        matches!(e, KnobError::BadValue { knob: "direct", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("true or false"), "{e}");
    assert!(matches!(
        EngineSpec::parse("aio:user_reap"),
        Err(KnobError::Malformed { .. })
    ));

    // Defaults and the canonical variant string.
    let spec = EngineSpec::parse("aio").unwrap();
    assert!(spec.direct());
    assert_eq!(spec.variant(), "aio");
    let spec = EngineSpec::parse("aio:user_reap=yes,direct=off").unwrap();
    assert_eq!(spec.variant(), "aio:direct=false,user_reap=true");
    let k = AioKnobs {
        direct: false,
        user_reap: true,
    };
    assert_eq!(
        k.values(),
        vec![("direct", "false".into()), ("user_reap", "true".into())]
    );
    assert!(aio::warnings(&AioKnobs::default()).is_empty());
    let w = aio::warnings(&k);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("synchronously"), "{w:?}");
}

#[test]
fn probe_reports_every_row() {
    let _g = serial();
    let dir = disk_dir();
    let rows = aio::probe(&dir.path().join("not/yet/created"));
    let names: Vec<&str> = rows.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(names, ["(engine)", "direct", "user_reap", "fdsync"]);
    for p in &rows {
        // Every row works on this machine's kernel and ext4 (docs/machine.md).
        assert!(p.supported, "{}: {}", p.what, p.detail);
    }
    // The probe leaves no file behind in the ancestor it used.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A misaligned O_DIRECT read is accepted by io_submit and fails at completion with EINVAL:
/// reported in the completion, not a panic and not success. (Misaligned writes, on every
/// O_DIRECT variant, are the generic `misaligned_requests` of `behaviour.rs`.)
#[test]
fn misaligned_direct_read_fails_in_completion() {
    let _g = serial();
    let dir = disk_dir();
    require_supported("aio", dir.path());
    let mut r = build(AioKnobs::default(), dir.path(), 8, 8);
    create(&mut r, 1 << 20);
    // Write real data first: ext4 serves O_DIRECT reads of unwritten (fallocated) or hole
    // extents by zero-filling, without any alignment check, so a misaligned read there
    // succeeds (seen on 6.18). On written blocks it fails with EINVAL.
    let mut buf = r.alloc_buf(8192).unwrap();
    buf.as_mut().fill(9);
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
    .unwrap();
    let c = wait_one(&mut r, 5);
    assert_eq!(*c.res.as_ref().unwrap(), 8192);
    r.release_buf(c.buf.unwrap());
    // An aligned length at an offset that is not a multiple of 512.
    let buf = r.alloc_buf(4096).unwrap();
    r.submit(
        3,
        Op::Read {
            file: M,
            offset: 100,
            buf,
        },
    )
    .ok()
    .unwrap();
    let c = wait_one(&mut r, 3);
    let e = c.res.expect_err("a read at offset 100 succeeded");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    r.release_buf(c.buf.unwrap());
    assert_eq!(r.in_flight(), 0);
}

fn many_writes_then_sync(knobs: AioKnobs) -> Aio {
    let dir = disk_dir();
    let qd = 32;
    let mut r = build(knobs, dir.path(), qd, 48);
    let total = 512u64;
    let bs = 16384usize;
    create(&mut r, total * bs as u64);
    let mut out = Vec::new();
    let mut next = 0u64;
    let mut done = 0u64;
    let mut max_in_flight = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while done < total {
        while next < total && r.in_flight() < qd {
            let Some(mut buf) = r.alloc_buf(bs) else {
                break;
            };
            for (i, b) in buf.as_mut().iter_mut().enumerate() {
                *b = (next as u8) ^ (i % 253) as u8;
            }
            let op = Op::Write {
                file: M,
                offset: next * bs as u64,
                buf,
                dsync: next % 50 == 0,
            };
            r.submit(100 + next, op).expect("room below qd");
            next += 1;
        }
        max_in_flight = max_in_flight.max(r.in_flight());
        r.flush().unwrap();
        // A past deadline sometimes (pure non-blocking harvest), a real one otherwise.
        let d = if next % 3 == 0 {
            Instant::now() - Duration::from_millis(1)
        } else {
            deadline
        };
        r.reap(&mut out, d).unwrap();
        assert!(Instant::now() < deadline, "writes never completed");
        for c in out.drain(..) {
            assert_eq!(c.kind, OpKind::Write);
            assert_eq!(*c.res.as_ref().unwrap(), bs, "token {}", c.token);
            r.release_buf(c.buf.unwrap());
            done += 1;
        }
    }
    assert!(max_in_flight > 1, "never more than one write in flight");
    r.submit(2, Op::Sync { file: M }).ok().unwrap();
    let c = wait_one(&mut r, 2);
    assert_eq!(c.kind, OpKind::Sync);
    assert_eq!(*c.res.as_ref().unwrap(), 0);
    // Read back through the engine, several reads in flight.
    let mut verified = 0u64;
    let mut next = 0u64;
    while verified < total {
        while next < total && r.in_flight() < qd {
            let Some(buf) = r.alloc_buf(bs) else { break };
            r.submit(
                10_000 + next,
                Op::Read {
                    file: M,
                    offset: next * bs as u64,
                    buf,
                },
            )
            .ok()
            .unwrap();
            next += 1;
        }
        r.flush().unwrap();
        r.reap(&mut out, deadline).unwrap();
        assert!(Instant::now() < deadline, "reads never completed");
        for c in out.drain(..) {
            let i = c.token - 10_000;
            assert_eq!(*c.res.as_ref().unwrap(), bs);
            let b = c.buf.unwrap();
            assert!(
                b.as_ref()
                    .iter()
                    .enumerate()
                    .all(|(j, x)| *x == (i as u8) ^ (j % 253) as u8),
                "block {i} read back differs"
            );
            r.release_buf(b);
            verified += 1;
        }
    }
    // And from outside the engine.
    let data = std::fs::read(dir.path().join(file_name(M, FileKind::Log))).unwrap();
    assert_eq!(data.len(), total as usize * bs);
    for i in 0..total as usize {
        assert!(
            data[i * bs..(i + 1) * bs]
                .iter()
                .enumerate()
                .all(|(j, x)| *x == (i as u8) ^ (j % 253) as u8),
            "block {i} on disk differs"
        );
    }
    let mut out = Vec::new();
    r.drain(&mut out, far()).unwrap();
    assert!(out.is_empty());
    assert_eq!(r.in_flight(), 0);
    r
}

#[test]
fn many_writes_in_flight_then_sync_read_back() {
    let _g = serial();
    let dir = disk_dir();
    require_supported("aio", dir.path());
    let r = many_writes_then_sync(AioKnobs::default());
    assert_eq!(r.user_reaped(), 0, "user_reap=false reaped from the ring");
    let r = many_writes_then_sync(AioKnobs {
        direct: false,
        user_reap: false,
    });
    drop(r);
}

/// With user_reap, completions already in the ring are taken without io_getevents.
#[test]
fn user_reap_reaps_without_syscall() {
    let _g = serial();
    let dir = disk_dir();
    require_supported("aio:user_reap=true", dir.path());
    let r = many_writes_then_sync(AioKnobs {
        direct: true,
        user_reap: true,
    });
    assert!(
        r.user_reaped() > 0,
        "no event was reaped from the user-space ring ({} io_getevents calls)",
        r.reap_syscalls()
    );
    drop(r);

    // Deterministic: submit, let the events land in the ring, then reap with a past deadline.
    let mut r = build(
        AioKnobs {
            direct: true,
            user_reap: true,
        },
        dir.path(),
        16,
        16,
    );
    create(&mut r, 1 << 20);
    for i in 0..16u64 {
        let mut buf = r.alloc_buf(4096).unwrap();
        buf.as_mut().fill(i as u8);
        r.submit(
            100 + i,
            Op::Write {
                file: M,
                offset: i * 4096,
                buf,
                dsync: false,
            },
        )
        .ok()
        .unwrap();
    }
    r.flush().unwrap();
    let syscalls = r.reap_syscalls();
    let before = r.user_reaped();
    let mut out = Vec::new();
    let deadline = far();
    while out.len() < 16 {
        assert!(Instant::now() < deadline, "writes never completed");
        std::thread::sleep(Duration::from_millis(2));
        r.reap(&mut out, Instant::now() - Duration::from_millis(1))
            .unwrap();
    }
    assert_eq!(r.user_reaped() - before, 16);
    assert_eq!(
        r.reap_syscalls(),
        syscalls,
        "a non-blocking user_reap reap made a syscall"
    );
    for c in out {
        assert_eq!(*c.res.as_ref().unwrap(), 4096);
        r.release_buf(c.buf.unwrap());
    }
    // A blocking reap with an empty ring falls back to io_getevents.
    r.submit(200, Op::Sync { file: M }).ok().unwrap();
    let c = wait_one(&mut r, 200);
    c.res.unwrap();
}

fn aio_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("[aio]"))
        .count()
}

/// Dropping the engine with reads in flight waits for them (the kernel keeps no buffer) and
/// destroys the context (its ring mapping is gone).
#[test]
fn drop_with_ops_in_flight() {
    let _g = serial();
    let dir = disk_dir();
    require_supported("aio", dir.path());
    let base = aio_mappings();
    let data: Vec<u8> = (0..32 * 65536).map(|i| (i % 241) as u8).collect();
    let f = std::fs::File::create(dir.path().join(file_name(M, FileKind::Data))).unwrap();
    std::io::Write::write_all(&mut &f, &data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    for user_reap in [false, true] {
        let knobs = AioKnobs {
            direct: true,
            user_reap,
        };
        let mut r = build(knobs.clone(), dir.path(), 32, 32);
        assert_eq!(aio_mappings(), base + 1, "the context maps one AIO ring");
        // Read written blocks (unwritten extents are zero-filled inside io_submit, which
        // would leave nothing in flight).
        r.submit(
            1,
            Op::Open {
                file: M,
                kind: FileKind::Data,
                writable: false,
            },
        )
        .ok()
        .unwrap();
        wait_one(&mut r, 1).res.expect("open");
        for i in 0..32u64 {
            let buf = r.alloc_buf(65536).unwrap();
            r.submit(
                10 + i,
                Op::Read {
                    file: M,
                    offset: i * 65536,
                    buf,
                },
            )
            .ok()
            .unwrap();
        }
        r.flush().unwrap();
        assert_eq!(r.in_flight(), 32);
        drop(r);
        assert_eq!(aio_mappings(), base, "io_destroy did not run");

        // Queued but never flushed: dropped without reaching the kernel.
        let mut r = build(knobs, dir.path(), 8, 8);
        create(&mut r, 1 << 20);
        let buf = r.alloc_buf(4096).unwrap();
        r.submit(
            3,
            Op::Write {
                file: M,
                offset: 0,
                buf,
                dsync: false,
            },
        )
        .ok()
        .unwrap();
        drop(r);
        assert_eq!(aio_mappings(), base);
    }
}

/// Ops on a file that is not open, and a sync of one, fail in their completions.
#[test]
fn unopened_file_fails_in_completion() {
    let _g = serial();
    let dir = disk_dir();
    let mut r = build(AioKnobs::default(), dir.path(), 4, 4);
    r.submit(9, Op::Sync { file: MatchId(1) }).ok().unwrap();
    let c = wait_one(&mut r, 9);
    assert_eq!(
        c.res.unwrap_err().raw_os_error(),
        Some(libc::EBADF),
        "sync of an unopened file"
    );
}
