//! `poll`-specific tests: knobs, the probe, a reactor that spins instead of sleeping, prompt
//! completions without interrupts (the TASKRUN flag), messages between reactor threads (order,
//! execution on the target, back-pressure), and pollers. (Drop with reads in flight is a generic
//! behaviour: `behaviour.rs`, every poll variant.)

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::poll::{probe, Msg, Poll, PollFactory, PollKnobs, PollerId, SendError};
use snapbench_engines::{
    Completion, EngineConfig, EngineSpec, FileKind, KnobError, MatchId, Op, Recorder,
    RecorderFactory, RunShared,
};

fn config(dir: &Path, worker: usize, workers: usize, shared: Arc<RunShared>) -> EngineConfig {
    EngineConfig {
        dir: dir.to_path_buf(),
        worker,
        workers,
        queue_depth: 8,
        buf_bytes: 64 * 1024,
        buf_count: 8,
        dio_align_bytes: 4096,
        shared,
    }
}

fn knobs(text: &str) -> Result<PollKnobs, KnobError> {
    match EngineSpec::parse(&format!("poll:{text}"))? {
        EngineSpec::Poll(k) => Ok(k),
        other => panic!("parsed as {other:?}"),
    }
}

fn reactor(dir: &Path, text: &str) -> Poll {
    PollFactory(knobs(text).unwrap())
        .build(&config(dir, 0, 1, Default::default()))
        .expect("reactor builds")
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn wait_one(r: &mut Poll) -> Completion<<Poll as Recorder>::Buf> {
    let mut out = Vec::new();
    let deadline = far();
    while out.is_empty() {
        assert!(Instant::now() < deadline, "no completion");
        r.reap(&mut out, deadline).unwrap();
    }
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

fn run_ok(r: &mut Poll, op: Op<<Poll as Recorder>::Buf>) -> Completion<<Poll as Recorder>::Buf> {
    r.submit(1, op).expect("room for one op");
    let c = wait_one(r);
    if let Err(e) = &c.res {
        panic!("{:?} failed: {e}", c.kind);
    }
    c
}

#[test]
fn knob_validation_and_defaults() {
    let d = knobs("").unwrap();
    assert!(d.direct && d.fixed_buffers && d.fixed_files && !d.sqpoll);
    assert_eq!(EngineSpec::parse("poll").unwrap().variant(), "poll");
    assert!(knobs("sqpoll_cpu=1")
        .unwrap_err()
        .to_string()
        .contains("sqpoll=true"));
    assert!(knobs("entries=48")
        .unwrap_err()
        .to_string()
        .contains("power of two"));
    let e = knobs("msg_ring_entries=3").unwrap_err();
    assert!(matches!(e, KnobError::Conflict { .. }), "{e}");
    let e = knobs("sqpol=true").unwrap_err();
    assert!(e.to_string().contains("did you mean `sqpoll`"), "{e}");
    let spec = EngineSpec::parse("poll:sqpoll=true,sqpoll_cpu=1,fixed_files=false").unwrap();
    assert_eq!(
        spec.variant(),
        "poll:sqpoll=true,sqpoll_cpu=1,fixed_files=false"
    );
    assert!(spec.direct());
    assert!(spec.warnings()[0].contains("two cores"));
    assert!(EngineSpec::parse("poll").unwrap().warnings().is_empty());
}

#[test]
fn probe_says_what_it_reproduces_and_reports_iopoll() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let found = probe(dir.path());
    let engine = found.iter().find(|p| p.what == "(engine)").unwrap();
    assert!(engine.supported, "{}", engine.detail);
    assert!(engine.detail.contains("vfio"), "{}", engine.detail);
    assert!(engine.detail.contains("TASKRUN_FLAG"), "{}", engine.detail);
    for what in ["direct", "sqpoll", "fixed_buffers", "fixed_files", "iopoll"] {
        assert!(found.iter().any(|p| p.what == what), "{what} not probed");
    }
    let iopoll = found.iter().find(|p| p.what == "iopoll").unwrap();
    assert!(
        iopoll.detail.contains("never enables IOPOLL"),
        "{}",
        iopoll.detail
    );
    if !iopoll.supported {
        // This machine (virtio, no poll queues).
        assert!(iopoll.detail.contains("poll queues"), "{}", iopoll.detail);
    }
    // IOPOLL is no knob of poll: an unsupported IOPOLL never refuses the engine.
    EngineSpec::parse("poll")
        .unwrap()
        .check_supported(dir.path())
        .unwrap();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the probe left files behind"
    );
}

#[test]
fn caps_declare_a_polling_engine() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let r = reactor(dir.path(), "");
    let c = r.caps();
    assert_eq!(c.name, "poll");
    assert!(c.polls && c.direct && !c.synchronous);
    assert_eq!((r.reactor(), r.reactors()), (0, 1));
}

/// With nothing in flight, `reap` spins (turn after turn) until its deadline instead of sleeping.
#[test]
fn idle_reap_spins_until_the_deadline() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut r = reactor(dir.path(), "");
    let mut out = Vec::new();
    let t = Instant::now();
    let before = r.stats().turns;
    assert_eq!(r.reap(&mut out, t + Duration::from_millis(20)).unwrap(), 0);
    assert!(t.elapsed() >= Duration::from_millis(20));
    let turns = r.stats().turns - before;
    // A sleeping reap would take a handful of turns; a spinning one takes many thousands.
    assert!(turns > 1000, "only {turns} turns in 20 ms");
    // A past deadline runs exactly one turn.
    let before = r.stats().turns;
    r.reap(&mut out, t).unwrap();
    assert_eq!(r.stats().turns - before, 1);
}

/// QD1 4 KiB O_DIRECT reads on a disk-backed file: completions arrive through the TASKRUN flag
/// without interrupts and without waiting for the 4 ms tick.
#[test]
fn qd1_reads_complete_promptly() {
    for variant in ["", "sqpoll=true,sqpoll_idle_ms=10"] {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let mut r = reactor(dir.path(), variant);
        let file = MatchId(7);
        let size: u64 = 4 << 20;
        run_ok(
            &mut r,
            Op::Create {
                file,
                kind: FileKind::Data,
                prealloc_bytes: size,
            },
        );
        for off in (0..size).step_by(64 * 1024) {
            let mut b = r.alloc_buf(64 * 1024).unwrap();
            b.as_mut().fill((off >> 16) as u8);
            let c = run_ok(
                &mut r,
                Op::Write {
                    file,
                    offset: off,
                    buf: b,
                    dsync: false,
                },
            );
            r.release_buf(c.buf.unwrap());
        }
        run_ok(&mut r, Op::Sync { file });
        let reads = 400u64;
        let mut lat = Vec::with_capacity(reads as usize);
        let turns0 = r.stats().turns;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..reads {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x % (size / 4096)) * 4096;
            let b = r.alloc_buf(4096).unwrap();
            let t = Instant::now();
            let c = run_ok(
                &mut r,
                Op::Read {
                    file,
                    offset: off,
                    buf: b,
                },
            );
            lat.push(t.elapsed());
            let b = c.buf.unwrap();
            assert!(b.as_ref().iter().all(|v| *v == (off >> 16) as u8));
            r.release_buf(b);
        }
        let turns = (r.stats().turns - turns0) / reads;
        lat.sort_unstable();
        let mean = lat.iter().sum::<Duration>() / reads as u32;
        eprintln!(
            "poll:{variant}: {reads} QD1 4 KiB reads on {}: mean {:?}, p50 {:?}, p99 {:?}, max {:?}, {turns} turns per read",
            std::env::temp_dir().display(),
            mean,
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
            lat[lat.len() - 1],
        );
        // Robust under a loaded machine: tied to the 4 ms tick, every read would take ≥ 3.9 ms.
        let fast = lat
            .iter()
            .filter(|l| **l < Duration::from_micros(3900))
            .count();
        assert!(
            fast > 0,
            "every read took ≥ 3.9 ms: completions wait for the tick"
        );
    }
}

thread_local! {
    static RAN: RefCell<Vec<(usize, usize, u64)>> = const { RefCell::new(Vec::new()) };
    static PONGS: Cell<u64> = const { Cell::new(0) };
    static POLLS: Cell<u64> = const { Cell::new(0) };
    static TICKS: Cell<u64> = const { Cell::new(0) };
    static ONCE: Cell<u64> = const { Cell::new(0) };
    static ONCE_ID: Cell<Option<PollerId>> = const { Cell::new(None) };
}

fn record(r: &mut Poll, from: usize, args: [u64; 3]) {
    assert_eq!(args[1], !args[0], "argument words arrive intact");
    RAN.with(|v| v.borrow_mut().push((r.reactor(), from, args[0])));
}

fn ping(r: &mut Poll, from: usize, args: [u64; 3]) {
    // Runs on the target reactor, which answers the sender.
    r.send_msg(
        from,
        Msg {
            func: pong,
            args: [args[0], r.reactor() as u64, 0],
        },
    )
    .expect("reply ring has room");
}

fn pong(r: &mut Poll, from: usize, args: [u64; 3]) {
    assert_eq!((r.reactor(), from, args[1]), (0, 1, 1));
    PONGS.with(|p| p.set(p.get() + 1));
}

/// Steps of the two-thread message test, published through one atomic (no barrier: a panicking
/// side must not leave the other blocked forever).
const BUILT: u32 = 1;
const FILLED: u32 = 2;
const PONGED: u32 = 3;

/// Wait until `step` reaches `want`, turning `r` meanwhile (a reactor never stops polling).
fn await_step(step: &AtomicU32, want: u32, r: &mut Poll) {
    let deadline = far();
    let mut out = Vec::new();
    while step.load(Ordering::Acquire) < want {
        assert!(
            Instant::now() < deadline,
            "the other reactor never reached step {want}"
        );
        r.reap(&mut out, Instant::now() - Duration::from_millis(1))
            .unwrap();
    }
}

/// Messages sent by reactor 0 run on reactor 1's thread, in the order sent; a full ring hands
/// the message back until the target drains it; replies come back the same way.
#[test]
fn messages_cross_reactors_in_order_with_back_pressure() {
    const N: u64 = 5000;
    const RING: usize = 4;
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let shared = Arc::new(RunShared::default());
    let k = knobs(&format!("msg_ring_entries={RING}")).unwrap();
    // Steps reached by the sender (reactor 0) and by the target (reactor 1).
    let sender_step = Arc::new(AtomicU32::new(0));
    let target_step = Arc::new(AtomicU32::new(0));
    let target = {
        let (k, dir, shared) = (k.clone(), dir.path().to_path_buf(), Arc::clone(&shared));
        let (sender_step, target_step) = (Arc::clone(&sender_step), Arc::clone(&target_step));
        std::thread::spawn(move || {
            let mut r = PollFactory(k).build(&config(&dir, 1, 2, shared)).unwrap();
            assert_eq!((r.reactor(), r.reactors()), (1, 2));
            target_step.store(BUILT, Ordering::Release);
            // Do not drain until the sender has filled the ring.
            let deadline = far();
            while sender_step.load(Ordering::Acquire) < FILLED {
                assert!(
                    Instant::now() < deadline,
                    "the sender never filled the ring"
                );
                std::thread::yield_now();
            }
            let mut out = Vec::new();
            while r.stats().msgs_run < N + 1 {
                assert!(Instant::now() < deadline, "messages never arrived");
                r.reap(&mut out, Instant::now() + Duration::from_millis(1))
                    .unwrap();
            }
            // Keep polling until the sender has its pong.
            await_step(&sender_step, PONGED, &mut r);
            (
                std::thread::current().id(),
                r.stats(),
                RAN.with(|v| v.take()),
            )
        })
    };
    let mut r = PollFactory(k)
        .build(&config(dir.path(), 0, 2, Arc::clone(&shared)))
        .unwrap();
    let deadline = far();
    while target_step.load(Ordering::Acquire) < BUILT {
        assert!(!target.is_finished(), "the target reactor failed to start");
        assert!(
            Instant::now() < deadline,
            "the target reactor never started"
        );
        std::thread::yield_now();
    }
    let msg = |i: u64| Msg {
        func: record,
        args: [i, !i, 0],
    };
    for i in 0..RING as u64 {
        r.send_msg(1, msg(i)).unwrap();
    }
    match r.send_msg(1, msg(RING as u64)) {
        Err(SendError::Full(m)) => assert_eq!(m.args[0], RING as u64, "the same message back"),
        other => panic!("a full ring accepted a message: {other:?}"),
    }
    assert!(matches!(
        r.send_msg(2, msg(0)),
        Err(SendError::NoSuchReactor(_))
    ));
    sender_step.store(FILLED, Ordering::Release);
    let mut out = Vec::new();
    let mut full = 0u64;
    let mut i = RING as u64;
    let mut send = |r: &mut Poll, m: Msg, full: &mut u64| loop {
        assert!(Instant::now() < deadline, "the target never drained");
        assert!(!target.is_finished(), "the target reactor stopped");
        match r.send_msg(1, m) {
            Ok(()) => return,
            Err(SendError::Full(_)) => {
                *full += 1;
                r.reap(&mut out, Instant::now() - Duration::from_millis(1))
                    .unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    };
    while i < N {
        send(&mut r, msg(i), &mut full);
        i += 1;
    }
    // One ping: the target answers; the pong runs here, on reactor 0.
    send(
        &mut r,
        Msg {
            func: ping,
            args: [N, 0, 0],
        },
        &mut full,
    );
    let mut out = Vec::new();
    while PONGS.with(|p| p.get()) == 0 {
        assert!(Instant::now() < deadline, "no pong");
        assert!(!target.is_finished(), "the target reactor stopped");
        r.reap(&mut out, Instant::now() + Duration::from_millis(1))
            .unwrap();
    }
    sender_step.store(PONGED, Ordering::Release);
    let (tid, stats, ran) = target.join().unwrap();
    assert_ne!(tid, std::thread::current().id());
    assert_eq!(
        ran.len() as u64,
        N,
        "every message ran once (the ping is not recorded)"
    );
    for (n, (on, from, seq)) in ran.iter().enumerate() {
        assert_eq!(
            (*on, *from, *seq),
            (1, 0, n as u64),
            "out of order or misplaced"
        );
    }
    assert_eq!(stats.msgs_run, N + 1);
    assert_eq!(stats.msgs_sent, 1, "the pong");
    assert_eq!(r.stats().msgs_sent, N + 1);
    eprintln!("{N} messages through a {RING}-slot ring: {full} sends handed back (back-pressure)");
    // Reactor 0 of this run exists: it cannot be built twice.
    let again = PollFactory(knobs("").unwrap()).build(&config(dir.path(), 0, 2, shared));
    assert!(again.unwrap_err().to_string().contains("built twice"));
}

#[test]
fn a_message_to_a_stopped_reactor_is_refused() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let shared = Arc::new(RunShared::default());
    let k = knobs("").unwrap();
    let mut r0 = PollFactory(k.clone())
        .build(&config(dir.path(), 0, 2, Arc::clone(&shared)))
        .unwrap();
    let r1 = PollFactory(k)
        .build(&config(dir.path(), 1, 2, Arc::clone(&shared)))
        .unwrap();
    let m = Msg {
        func: record,
        args: [0, !0, 0],
    };
    r0.send_msg(1, m).unwrap();
    drop(r1);
    assert!(matches!(r0.send_msg(1, m), Err(SendError::Disconnected(_))));
    // A reactor can message itself; it runs on a later turn.
    r0.send_msg(0, m).unwrap();
    let mut out = Vec::new();
    r0.reap(&mut out, Instant::now()).unwrap();
    assert_eq!(RAN.with(|v| v.take()), vec![(0, 0, 0)]);
}

fn count_poll(_: &mut Poll, _: u64) -> bool {
    POLLS.with(|p| p.set(p.get() + 1));
    false
}

fn tick(_: &mut Poll, _: u64) -> bool {
    TICKS.with(|p| p.set(p.get() + 1));
    true
}

fn once(r: &mut Poll, _: u64) -> bool {
    ONCE.with(|p| p.set(p.get() + 1));
    let id = ONCE_ID.with(|i| i.get()).expect("registered");
    assert!(r.unregister_poller(id), "unregister from inside the poller");
    true
}

#[test]
fn pollers_run_every_turn_or_on_their_period() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut r = reactor(dir.path(), "");
    let every = r.register_poller(count_poll, 0, Duration::ZERO);
    let id = r.register_poller(once, 0, Duration::ZERO);
    ONCE_ID.with(|i| i.set(Some(id)));
    let timed = r.register_poller(tick, 0, Duration::from_millis(5));
    let mut out = Vec::new();
    let t = Instant::now();
    let turns0 = r.stats().turns;
    r.reap(&mut out, t + Duration::from_millis(30)).unwrap();
    let turns = r.stats().turns - turns0;
    let elapsed_ms = t.elapsed().as_millis() as u64;
    assert_eq!(
        POLLS.with(|p| p.get()),
        turns,
        "a period-0 poller runs every turn"
    );
    assert_eq!(
        ONCE.with(|p| p.get()),
        1,
        "a poller that unregistered itself ran again"
    );
    let ticks = TICKS.with(|p| p.get());
    assert!(
        (1..=elapsed_ms / 5 + 1).contains(&ticks),
        "{ticks} runs of a 5 ms poller in {elapsed_ms} ms"
    );
    assert!(r.stats().busy_turns >= ticks);
    assert!(r.unregister_poller(every));
    assert!(!r.unregister_poller(every));
    assert!(r.unregister_poller(timed));
    r.reap(&mut out, Instant::now() + Duration::from_millis(2))
        .unwrap();
    assert_eq!(POLLS.with(|p| p.get()), turns, "an unregistered poller ran");
}
