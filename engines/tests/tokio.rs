//! Tests specific to the `tokio` engine: knob parsing and refusals, the probe's io_uring line,
//! the blocking-pool bound, and a reap past its deadline not waiting. (The shared behaviour suite
//! runs every flavor and bridge through `every_engine!`, misaligned O_DIRECT requests and drop
//! with I/O in flight included.)

use std::path::Path;
use std::time::{Duration, Instant};

use snapbench_engines::tokio_engine::{
    self, Bridge, Flavor, TokioEngine, TokioFactory, TokioKnobs,
};
use snapbench_engines::{
    Completion, EngineConfig, EngineSpec, FileKind, KnobError, MatchId, Op, Recorder,
    RecorderFactory,
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
