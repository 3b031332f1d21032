//! Tests specific to the `tokio` engine: knob parsing and refusals, the probe's io_uring line,
//! the blocking-pool bound, misaligned O_DIRECT writes failing in their completion, a reap past
//! its deadline not waiting, and drop with I/O in flight. (The shared behaviour suite runs every
//! flavor and bridge through `every_engine!`.)

use std::path::Path;
use std::time::{Duration, Instant};

use snapbench_engines::tokio_engine::{
    self, Bridge, Flavor, TokioEngine, TokioFactory, TokioKnobs,
};
use snapbench_engines::{
    file_name, Completion, EngineConfig, EngineSpec, FileKind, KnobError, MatchId, Op, OpKind,
    Recorder, RecorderFactory,
};

const M: MatchId = MatchId(0x70c10);

/// `worker` names the runtime's threads (`sb-tokio-<worker>`): tests that count threads use
/// their own number, since tests run in parallel in one process.
fn config(dir: &Path, worker: usize, queue_depth: usize) -> EngineConfig {
    EngineConfig {
        dir: dir.to_path_buf(),
        worker,
        workers: 1,
        queue_depth,
        buf_bytes: 64 * 1024,
        buf_count: queue_depth.max(8),
        dio_align_bytes: 4096,
        shared: Default::default(),
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn build(variant: &str, dir: &Path, worker: usize, qd: usize) -> TokioEngine {
    let EngineSpec::Tokio(k) = EngineSpec::parse(variant).expect("variant parses") else {
        panic!("{variant} is not a tokio variant");
    };
    TokioFactory(k)
        .build(&config(dir, worker, qd))
        .expect("tokio engine builds")
}

fn wait(r: &mut TokioEngine, n: usize) -> Vec<Completion<snapbench_engines::AlignedBuf>> {
    let mut out = Vec::new();
    let deadline = far();
    while out.len() < n {
        assert!(Instant::now() < deadline, "completions never came");
        r.reap(&mut out, deadline).unwrap();
    }
    out
}

fn create(r: &mut TokioEngine, prealloc_bytes: u64) {
    r.submit(
        1,
        Op::Create {
            file: M,
            kind: FileKind::Log,
            prealloc_bytes,
        },
    )
    .expect("room");
    let c = wait(r, 1);
    assert!(c[0].res.is_ok(), "create failed: {:?}", c[0].res);
}

/// Threads of this process whose name is `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn knobs_parse_and_refuse() {
    let spec = EngineSpec::parse("tokio:flavor=multi,workers=3,bridge=task").unwrap();
    assert_eq!(spec.variant(), "tokio:flavor=multi,workers=3,bridge=task");
    let EngineSpec::Tokio(k) = &spec else {
        panic!("not tokio")
    };
    assert_eq!(
        (k.flavor, k.workers, k.bridge),
        (Flavor::Multi, 3, Bridge::Task)
    );
    assert_eq!(EngineSpec::parse("tokio").unwrap().variant(), "tokio");
    assert_eq!(
        EngineSpec::parse("tokio").unwrap(),
        EngineSpec::Tokio(TokioKnobs::default())
    );
    // `workers` would be ignored by a current-thread runtime: refused, with what to do.
    let e = EngineSpec::parse("tokio:workers=4").unwrap_err();
    assert!(matches!(e, KnobError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("flavor=multi"), "{e}");
    let e = EngineSpec::parse("tokio:flavor=multithread").unwrap_err();
    assert!(e.to_string().contains("one of current, multi"), "{e}");
    let e = EngineSpec::parse("tokio:bridge=std").unwrap_err();
    assert!(e.to_string().contains("one of channel, task"), "{e}");
}

#[test]
fn probe_reports_io_uring_unsupported_without_failing_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let all = tokio_engine::probe(dir.path());
    let uring = all
        .iter()
        .find(|p| p.what == tokio_engine::IO_URING_WHAT)
        .expect("the probe says what became of io_uring");
    assert!(!uring.supported);
    assert!(uring.detail.contains("tokio_unstable"), "{}", uring.detail);
    assert!(all.iter().any(|p| p.what == "(engine)" && p.supported));
    for v in ["tokio", "tokio:flavor=multi", "tokio:bridge=task"] {
        EngineSpec::parse(v)
            .unwrap()
            .check_supported(dir.path())
            .unwrap_or_else(|e| panic!("{v}: {e}"));
    }
}

/// `max_blocking_threads` bounds tokio's pool: 16 writes in flight at once run on at most 2
/// threads; the default (the queue depth) lets more than 2 start.
#[test]
fn blocking_pool_is_bounded() {
    for (variant, worker, most) in [
        ("tokio:max_blocking_threads=2", 9001, Some(2)),
        ("tokio", 9002, None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut r = build(variant, dir.path(), worker, 16);
        create(&mut r, 1 << 20);
        let mut most_seen = 0;
        for round in 0..8u64 {
            for i in 0..16u64 {
                let mut b = r.alloc_buf(4096).unwrap();
                b.as_mut().fill(i as u8);
                let op = Op::Write {
                    file: M,
                    offset: i * 4096,
                    buf: b,
                    dsync: round % 2 == 1,
                };
                r.submit(100 + i, op).expect("room for 16");
            }
            for c in wait(&mut r, 16) {
                assert_eq!(*c.res.as_ref().unwrap(), 4096);
                r.release_buf(c.buf.unwrap());
            }
            most_seen = most_seen.max(threads_named(&format!("sb-tokio-{worker}")));
        }
        match most {
            Some(n) => assert!(
                (1..=n).contains(&most_seen),
                "{variant}: {most_seen} blocking threads"
            ),
            None => assert!(
                most_seen > 2,
                "{variant}: only {most_seen} blocking threads at QD 16"
            ),
        }
        let mut out = Vec::new();
        r.drain(&mut out, far()).unwrap();
    }
}

/// With O_DIRECT, a write whose length is not a multiple of the block size fails in its
/// completion (EINVAL from the kernel), never in submit, and the buffer comes back.
#[test]
fn misaligned_direct_write_fails_in_completion() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    if let Err(why) = EngineSpec::parse("tokio:direct=true")
        .unwrap()
        .check_supported(dir.path())
    {
        eprintln!("skipping: {why}");
        return;
    }
    let mut r = build("tokio:direct=true", dir.path(), 0, 4);
    assert!(r.caps().direct);
    assert_eq!(r.caps().io_align_bytes, 4096);
    create(&mut r, 1 << 20);
    let b = r.alloc_buf(100).unwrap();
    assert_eq!(
        b.as_ref().as_ptr() as usize % 4096,
        0,
        "buffers are aligned"
    );
    r.submit(
        2,
        Op::Write {
            file: M,
            offset: 0,
            buf: b,
            dsync: false,
        },
    )
    .expect("room");
    let c = wait(&mut r, 1).pop().unwrap();
    assert_eq!((c.token, c.kind), (2, OpKind::Write));
    let e = c
        .res
        .expect_err("a misaligned O_DIRECT write is never acknowledged");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    assert!(c.buf.is_some(), "the buffer comes back");
}

/// A reap whose deadline has passed returns at once, even with ops in flight.
#[test]
fn past_deadline_reap_does_not_wait() {
    for variant in ["tokio", "tokio:flavor=multi", "tokio:bridge=task"] {
        let dir = tempfile::tempdir().unwrap();
        let mut r = build(variant, dir.path(), 0, 8);
        create(&mut r, 4 << 20);
        for i in 0..8u64 {
            let b = r.alloc_buf(64 * 1024).unwrap();
            let op = Op::Write {
                file: M,
                offset: i * 65536,
                buf: b,
                dsync: true,
            };
            r.submit(i, op).expect("room");
        }
        let mut out = Vec::new();
        let t = Instant::now();
        for _ in 0..100 {
            r.reap(&mut out, Instant::now() - Duration::from_millis(1))
                .unwrap();
        }
        let per_reap = t.elapsed() / 100;
        assert!(
            per_reap < Duration::from_millis(5),
            "{variant}: a past-deadline reap took {per_reap:?}"
        );
        r.drain(&mut out, far()).unwrap();
        assert_eq!(out.len(), 8);
    }
}

/// Dropping the engine with writes in flight (the contract says drain first) neither panics nor
/// hangs: dropping the runtime waits for the blocking jobs already running and cancels those
/// that have not started (tokio's pool does not run a queued `spawn_blocking` job at shutdown;
/// with `bridge=task` on a current-thread runtime not even the tasks ran), so which of the
/// writes reached the file is not defined, only that the engine is gone afterwards.
#[test]
fn drop_with_io_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    for variant in ["tokio", "tokio:flavor=multi", "tokio:bridge=task"] {
        let mut r = build(variant, dir.path(), 0, 8);
        create(&mut r, 1 << 20);
        for i in 0..8u64 {
            let mut b = r.alloc_buf(4096).unwrap();
            b.as_mut().fill(0xa5);
            let op = Op::Write {
                file: M,
                offset: i * 4096,
                buf: b,
                dsync: false,
            };
            r.submit(i, op).expect("room");
        }
        drop(r);
        let data = std::fs::read(dir.path().join(file_name(M, FileKind::Log))).unwrap();
        assert_eq!(data.len(), 1 << 20);
    }
}
