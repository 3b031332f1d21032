//! `poll`: SPDK's execution model, reproduced over io_uring.
//!
//! Real SPDK drives NVMe from user space: the device is bound to vfio, its queues and DMA memory
//! (hugepages) are mapped into the process, and each core polls its own queue pair. None of that
//! exists on our machines (virtio-blk, no vfio, no NVMe), so this engine keeps SPDK's *execution
//! model* and lets io_uring stand in for the user-space driver. The parts, by their SPDK names:
//!
//! - **reactor** — one per worker: the worker thread, pinned to its core by the harness, running
//!   a loop that never sleeps: [`Recorder::run_loop`], which runs reactor *turns* for as long as
//!   the worker runs, and never blocks in the kernel. A reactor therefore costs one whole core
//!   whether it has work or not, and the results show it (process CPU ≈ one core per worker);
//!   `caps().polls` tells the driver never to sleep on it. [`Poll::reap`] runs the same turns
//!   for a caller that keeps its own loop (the harness's prefill, any blocking wait, `drain`):
//!   turns until at least one completion is ready or the deadline passes.
//! - **spdk_thread** — the logical thread that owns pollers, a message queue and I/O channels;
//!   SPDK may put several on one reactor, here each reactor runs exactly one: the [`Poll`]
//!   instance. It is `!Send` and only ever used on the thread that built it.
//! - **poller** — a function the reactor runs every turn (`spdk_poller_register` with period 0)
//!   or every `period` (a timed poller). Each turn runs, in order: the *I/O completion poller*
//!   (push queued SQEs, walk the CQ — SPDK's `bdev_nvme_poll` reaping its qpair), the *message
//!   poller* (drain the inbound message rings, `msg_queue_run_batch`), the registered pollers
//!   whose time has come ([`Poll::register_poller`]), and, inside `run_loop`, the *worker*.
//! - **the worker is a poller** — the harness's worker (a [`LoopBody`]) is the reactor's last
//!   poller, run by `run_loop`. It is due when the I/O poller found completions, when its timed
//!   poller fires (the deadline of its last [`Flow::Wait`]: the writer's next flush timer, the
//!   next snapshot, the next read — every timer of the worker folds into that one deadline),
//!   at once after [`Flow::Again`], or when a message or poller calls [`Poll::wake`] (a stop
//!   request does). When due it runs `complete` (with a deadline in the past: the turn already
//!   polled the CQ, so `complete`'s `reap` only hands over what the turn found) and then `step`.
//!   A turn in which it is not due costs the I/O poller's check (no syscall unless SQEs are
//!   queued or the kernel flagged completion work), one look at each inbound ring, one clock
//!   read for the timed poller, and no allocation. [`ReactorStats`] counts turns, idle turns,
//!   worker steps and messages.
//! - **io_channel** — the per-thread I/O context (SPDK: one NVMe qpair per thread): one io_uring
//!   ring per reactor with a registered (fixed) file table and registered buffers, shared with no
//!   other reactor, no lock on it. It is the `uring` engine's instance, built with the reactor's
//!   ring flags: `SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG` by default. COOP_TASKRUN sends no
//!   interrupt when an I/O completes; the kernel only sets `IORING_SQ_TASKRUN` in the SQ flags,
//!   the I/O poller sees it on its next turn and enters with `GETEVENTS` to run the completion
//!   work — the one syscall a completion costs (without the flag check, COOP_TASKRUN alone
//!   would leave completions until the next 4 ms tick). With `sqpoll=true` the ring is
//!   `SQPOLL | SINGLE_ISSUER` instead: a kernel thread submits and completes, the reactor makes no
//!   syscall while that thread is awake (the kernel forbids the taskrun flags with SQPOLL), and
//!   that thread spins on a second core. IOPOLL (SPDK's true completion polling) needs NVMe poll queues: the probe
//!   reports whether the device has them and the engine never enables it.
//! - **spdk_thread_send_msg** — [`Poll::send_msg`]: a function pointer and three argument words
//!   ([`Msg`]) put on a bounded single-producer single-consumer ring ([`crate::spsc`]) to the
//!   target reactor, whose message poller runs it there, in the order sent. SPDK's per-thread
//!   queue is one multi-producer ring; here each ordered pair of reactors has its own SPSC ring
//!   (a mesh of n² rings, built once per run through [`crate::RunShared`]), so sending is one
//!   release store — no lock, no CAS, no allocation. A full ring hands the message back
//!   (back-pressure), as `spdk_thread_send_msg` fails with `-ENOMEM`.
//!
//! ## What crosses reactors
//!
//! The harness's workers share nothing on the I/O path: each owns the matches
//! `(match_id − 1) % workers == worker`, writes and seals their logs, and serves their replay
//! reads itself (no read is routed to another worker), and the end-of-run seal is each worker
//! sealing its own logs when the shared clock says the run is over. So in a run exactly one kind
//! of message crosses reactors: the **stop request**. When a worker's body ends because it
//! failed (it says so through [`LoopBody::failed`] after a step), or when its `complete`
//! returns an error (the engine failed), `run_loop` calls [`Poll::broadcast_stop`]. The stop goes through `send_msg` to every other reactor of the
//! run; each one records it ([`Poll::stop_requested`], [`Poll::stop_sender`]), wakes its
//! worker and hands it the request before its next step ([`LoopBody::request_stop`]): the
//! worker then seals and ends as it would for the harness's shared stop flag. A full
//! ring does not lose it: the stop stays pending ([`Poll::stops_pending`]) and every later turn
//! retries it; a reactor leaving `run_loop` with a stop pending keeps retrying for up to
//! [`STOP_GRACE`] (draining its own inbound rings meanwhile, so two reactors stopping each other
//! cannot wedge), after which its own later turns (`reap`, `drain`) still retry. A reactor that
//! is gone (dropped) needs no stop and is skipped.
//!
//! ## What is not modelled
//!
//! No user-space NVMe driver, DMA memory or hugepages (io_uring stands in); no IOPOLL (see
//! above); one spdk_thread per reactor (no thread scheduling between reactors, no moving a
//! thread to another core); SPDK's reactor *events* (`spdk_event_call`) are not separate (a
//! message does that job); no bdev layer or per-device io_channel table (one ring per reactor
//! is the only channel); no interrupt mode (a reactor never sleeps); no messages for the seal or
//! for reads, since the harness has no such crossings (above); the shared stop flag of the
//! harness still exists beside the stop message and stops every engine's workers.

use std::io;
use std::marker::PhantomData;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::knobs::{declare_knobs, KnobError};
use crate::spsc::{self, Consumer, Producer};
use crate::uring::{self, Uring, UringBuf, UringKnobs};
use crate::{
    Caps, Completion, Engine, EngineConfig, Flow, LoopBody, Op, ProbeResult, Recorder,
    RecorderFactory,
};

/// Messages a reactor's message poller takes from one inbound ring per turn (SPDK's
/// `SPDK_MSG_BATCH_SIZE`), so a busy sender cannot starve the I/O poller.
pub const MSG_BATCH: usize = 8;

/// How long a reactor leaving [`Recorder::run_loop`] keeps retrying stop requests that found a
/// full ring, before it returns and leaves them to its later turns.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

declare_knobs! {
    /// Parsed knobs of the `poll` engine.
    pub struct PollKnobs for "poll" {
        direct: bool = true, [bool],
            "O_DIRECT (false: buffered; the kernel punts writes to io-wq)";
        entries: u32 = 0, [0..=32768],
            "SQ entries of each reactor's ring (0 = the queue depth, rounded up to a power of two)";
        sqpoll: bool = false, [bool],
            "SQPOLL ring: a kernel thread submits and completes, spinning on another core (on 2 cores it takes the other one)";
        sqpoll_cpu: Option<u32> = none, [none | 0..=4095],
            "pin the SQPOLL thread to this CPU (IORING_SETUP_SQ_AFF)";
        sqpoll_idle_ms: u32 = 1000, [0..=600_000],
            "SQPOLL thread idle time before it sleeps, ms";
        fixed_buffers: bool = true, [bool],
            "register the buffer pool with the ring (READ_FIXED / WRITE_FIXED)";
        fixed_files: bool = true, [bool],
            "register files in the ring's fixed file table";
        msg_ring_entries: usize = 256, [1..=65536],
            "slots of each reactor-to-reactor message ring (a power of two)";
    }
    check = PollKnobs::check;
}

impl Engine for PollKnobs {
    const SUMMARY: &'static str = "SPDK's execution model over io_uring (real SPDK needs NVMe bound to vfio + hugepages): each worker a pinned reactor that never sleeps, pollers, its own ring, message passing; one busy core per worker";
    type Factory = PollFactory;

    fn factory(&self) -> PollFactory {
        PollFactory(self.clone())
    }
    fn probe(dir: &Path) -> Vec<ProbeResult> {
        probe(dir)
    }
    /// The rows of [`probe`] this variant relies on.
    fn uses(&self, what: &str) -> bool {
        // `iopoll` and the SPDK prerequisites are reported, never used.
        what == "(engine)"
            || (what == "direct" && self.direct)
            || (what == "sqpoll" && self.sqpoll)
            || (what == "sqpoll_cpu" && self.sqpoll_cpu.is_some())
            || (what == "fixed_buffers" && self.fixed_buffers)
            || (what == "fixed_files" && self.fixed_files)
    }
    fn direct(&self) -> bool {
        self.direct
    }
    fn page_cache_reads(&self) -> bool {
        !self.direct
    }
    fn warnings(&self) -> Vec<String> {
        warnings(self)
    }
}

impl PollKnobs {
    /// Refuses combinations that cannot work.
    fn check(&self) -> Result<(), KnobError> {
        let conflict = |reason: &str| {
            Err(KnobError::Conflict {
                engine: "poll",
                reason: reason.to_string(),
            })
        };
        if self.sqpoll_cpu.is_some() && !self.sqpoll {
            return conflict("sqpoll_cpu needs sqpoll=true");
        }
        if self.entries != 0 && !self.entries.is_power_of_two() {
            return conflict("entries must be a power of two (or 0 for the queue depth)");
        }
        if !self.msg_ring_entries.is_power_of_two() {
            return conflict("msg_ring_entries must be a power of two");
        }
        Ok(())
    }

    /// The ring flags of a reactor's I/O channel, as `uring` knobs.
    fn channel(&self) -> UringKnobs {
        UringKnobs {
            direct: self.direct,
            entries: self.entries,
            sqpoll: self.sqpoll,
            sqpoll_cpu: self.sqpoll_cpu,
            sqpoll_idle_ms: self.sqpoll_idle_ms,
            // The reactor polls its rings itself and never waits in the channel's reap.
            cq_spin: false,
            iopoll: false,
            fixed_buffers: self.fixed_buffers,
            fixed_files: self.fixed_files,
            // Only the reactor's thread submits (with SQPOLL: only the SQ thread).
            single_issuer: true,
            defer_taskrun: false,
            // No interrupt per completion: the kernel flags pending completion work in the SQ
            // flags and the I/O poller enters when it sees the flag. The kernel refuses both
            // flags with SQPOLL, whose thread runs that work itself.
            coop_taskrun: !self.sqpoll,
            taskrun_flag: !self.sqpoll,
            attach_wq: false,
            submit_all: false,
            no_sqarray: false,
            // -- issue 10: placement -- a reactor's ring punts little to io-wq (O_DIRECT).
            iowq_cpus: crate::placement::HelperCpus::All,
        }
    }

    /// The ring flags, as text for messages.
    fn ring_flags(&self) -> &'static str {
        if self.sqpoll {
            "SQPOLL|SINGLE_ISSUER"
        } else {
            "SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG"
        }
    }
}

/// The CPU for a reactor's SQPOLL thread when `sqpoll_cpu` is not given: one the process may
/// use that is not the reactor's own (the calling thread's pin), taken in turn by reactor index.
/// Left to the kernel, the thread shared the reactor's CPU, where the reactor spins: about 125
/// IOPS at queue depth 1 (issue 13). With no such CPU the combination is refused.
/// An unpinned reactor on a machine of several CPUs leaves the choice to the kernel (`None`).
fn sq_cpu_off_reactor(worker: usize) -> io::Result<Option<u32>> {
    use crate::placement::CpuMask;
    let own = CpuMask::of_current_thread()?.cpus();
    let all = CpuMask::of_process()?.cpus();
    let others: Vec<usize> = all.iter().copied().filter(|c| !own.contains(c)).collect();
    if others.is_empty() && all.len() > 1 {
        return Ok(None);
    }
    if others.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "poll: sqpoll=true: the reactor spins on CPU {} and this process has no other CPU \
                 for its SQPOLL thread (it would starve there); pin workers to fewer CPUs, set \
                 sqpoll_cpu=N, or drop sqpoll",
                crate::placement::cpu_list(&own)
            ),
        ));
    }
    Ok(Some(others[worker % others.len()] as u32))
}

/// Caveats of a variant that runs but costs more than it seems.
pub fn warnings(k: &PollKnobs) -> Vec<String> {
    let mut w = Vec::new();
    if k.sqpoll {
        w.push(
            "poll:sqpoll=true: each reactor's SQPOLL kernel thread spins as well, so a worker can \
             cost two cores; with as many workers as cores they compete with the reactors"
                .to_string(),
        );
    }
    w
}

// ---------------------------------------------------------------------------------------------
// Messages and the mesh of message rings.

/// The function a message runs on its target reactor: `func(reactor, sender, args)`, where
/// `sender` is the sending reactor's index (SPDK: `spdk_msg_fn` and its `ctx`).
pub type MsgFn = fn(&mut Poll, usize, [u64; 3]);

/// A message for another reactor (or this one): a function and three argument words, copied
/// through the ring (no allocation per message).
#[derive(Clone, Copy, Debug)]
pub struct Msg {
    /// Run on the target reactor.
    pub func: MsgFn,
    /// Its arguments (match id, offset, token, … as the sender chooses).
    pub args: [u64; 3],
}

/// Why [`Poll::send_msg`] handed a message back.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum SendError {
    /// The ring to that reactor is full: run turns (it drains as the target catches up) and
    /// send again.
    #[error("poll: the message ring to that reactor is full (back-pressure)")]
    Full(Msg),
    /// The target reactor is gone (dropped); nothing will run the message.
    #[error("poll: the target reactor has stopped")]
    Disconnected(Msg),
    /// No reactor of that index in this run.
    #[error("poll: no such reactor")]
    NoSuchReactor(Msg),
}

impl SendError {
    /// The message handed back.
    pub fn into_msg(self) -> Msg {
        match self {
            SendError::Full(m) | SendError::Disconnected(m) | SendError::NoSuchReactor(m) => m,
        }
    }
}

/// One reactor's ends of the mesh: `outbound[j]` sends to reactor `j`, `inbound[i]` receives
/// from reactor `i` (a reactor has a ring to itself too, as SPDK lets a thread message itself).
#[derive(Debug)]
struct Ends {
    outbound: Vec<Producer<Msg>>,
    inbound: Vec<Consumer<Msg>>,
}

/// The message rings of one run: one bounded SPSC ring per ordered pair of reactors. Built once,
/// by the first reactor of the run to start, under [`crate::RunShared::poll_mesh`]'s lock; each
/// reactor then takes its own ends and never touches the lock again.
#[derive(Debug)]
pub struct Mesh {
    ends: Vec<Option<Ends>>,
}

impl Mesh {
    /// Rings for `reactors` reactors, `ring_entries` slots each (a power of two).
    pub fn new(reactors: usize, ring_entries: usize) -> Mesh {
        let mut outbound: Vec<Vec<Producer<Msg>>> = (0..reactors).map(|_| Vec::new()).collect();
        let mut inbound: Vec<Vec<Option<Consumer<Msg>>>> = (0..reactors)
            .map(|_| (0..reactors).map(|_| None).collect())
            .collect();
        for (from, out) in outbound.iter_mut().enumerate() {
            for to_inbound in inbound.iter_mut() {
                let (p, c) = spsc::channel(ring_entries);
                out.push(p);
                to_inbound[from] = Some(c);
            }
        }
        Mesh {
            ends: outbound
                .into_iter()
                .zip(inbound)
                .map(|(outbound, inbound)| {
                    Some(Ends {
                        outbound,
                        inbound: inbound.into_iter().map(|c| c.expect("built")).collect(),
                    })
                })
                .collect(),
        }
    }

    /// Reactors the mesh connects.
    pub fn reactors(&self) -> usize {
        self.ends.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Pollers.

/// A registered poller: `func(reactor, arg)`, returning whether it did work (SPDK's
/// `SPDK_POLLER_BUSY` / `SPDK_POLLER_IDLE`, counted in [`ReactorStats::busy_turns`]).
pub type PollerFn = fn(&mut Poll, u64) -> bool;

/// Names a registered poller, for [`Poll::unregister_poller`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollerId(u64);

struct Poller {
    id: u64,
    func: PollerFn,
    arg: u64,
    /// Zero: every turn.
    period: Duration,
    next_due: Instant,
    live: bool,
}

/// What a reactor has done (SPDK's reactor and thread statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReactorStats {
    /// Reactor turns run.
    pub turns: u64,
    /// Turns in which some poller did work (completions reaped, messages run, a busy poller,
    /// a stop sent, the worker run).
    pub busy_turns: u64,
    /// Turns in which no poller did work (`turns == busy_turns + idle_turns`).
    pub idle_turns: u64,
    /// Calls of the worker's [`LoopBody::step`] by [`Recorder::run_loop`].
    pub body_steps: u64,
    /// Messages sent by this reactor.
    pub msgs_sent: u64,
    /// Messages this reactor ran.
    pub msgs_run: u64,
    /// Registered-poller calls.
    pub poller_runs: u64,
    /// Stop requests sent to other reactors (also counted in `msgs_sent`).
    pub stops_sent: u64,
    /// Stop requests received (also counted in `msgs_run`).
    pub stops_received: u64,
}

// ---------------------------------------------------------------------------------------------
// The reactor.

/// Builds [`Poll`] reactors.
#[derive(Clone, Debug)]
pub struct PollFactory(pub PollKnobs);

impl RecorderFactory for PollFactory {
    type R = Poll;
    fn build(&self, cfg: &EngineConfig) -> io::Result<Poll> {
        Poll::new(self.0.clone(), cfg)
    }
}

/// One reactor: its I/O channel, its ends of the message mesh and its pollers. Lives and dies
/// on the worker thread that built it (`!Send`: the ring is SINGLE_ISSUER).
pub struct Poll {
    /// The I/O channel: this reactor's own ring, files and registered buffers.
    chan: Uring,
    caps: Caps,
    knobs: PollKnobs,
    me: usize,
    outbound: Vec<Producer<Msg>>,
    inbound: Vec<Consumer<Msg>>,
    pollers: Vec<Poller>,
    next_poller_id: u64,
    dead_pollers: usize,
    stats: ReactorStats,
    /// An instant in the past: the I/O poller's deadline (it never waits).
    epoch: Instant,
    /// Completions the I/O poller took during `run_loop`'s turns, until the worker's
    /// `complete` takes them through `reap` (at most `caps.max_in_flight`: reserved at build).
    staged: Vec<Completion<UringBuf>>,
    /// Set by `run_loop` around the worker's `complete`: its first `reap` hands over `staged`
    /// without a turn of its own (the loop's turn has just polled the CQ).
    handover: bool,
    /// An error of the I/O poller during `run_loop`'s turns; the next `reap` returns it.
    failed: Option<io::Error>,
    /// The worker is due on the next turn of `run_loop` ([`Poll::wake`]).
    wake: bool,
    /// The reactor whose stop request arrived first.
    stop_from: Option<usize>,
    /// `broadcast_stop` has been called (a second call sends nothing more).
    stop_broadcast: bool,
    /// `stop_pending[j]`: a stop request for reactor `j` found its ring full and is retried.
    stop_pending: Vec<bool>,
    /// How many of `stop_pending` are set.
    stops_pending: usize,
    _one_thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poll")
            .field("reactor", &self.me)
            .field("reactors", &self.outbound.len())
            .field("knobs", &self.knobs)
            .field("stats", &self.stats)
            .field("staged", &self.staged.len())
            .field("stop_from", &self.stop_from)
            .field("stops_pending", &self.stops_pending)
            .finish_non_exhaustive()
    }
}

impl Poll {
    /// Build reactor `cfg.worker` of `cfg.workers`: its I/O channel, and its ends of the run's
    /// message mesh (the first reactor to start builds the mesh).
    pub fn new(knobs: PollKnobs, cfg: &EngineConfig) -> io::Result<Poll> {
        let epoch = Instant::now();
        let mut channel = knobs.channel();
        if knobs.sqpoll && knobs.sqpoll_cpu.is_none() {
            channel.sqpoll_cpu = sq_cpu_off_reactor(cfg.worker)?;
        }
        let chan = Uring::new(channel, cfg).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "poll: reactor {}: I/O channel ({}): {e}",
                    cfg.worker,
                    knobs.ring_flags()
                ),
            )
        })?;
        let ends = {
            let mut mesh = cfg
                .shared
                .poll_mesh
                .lock()
                .map_err(|_| io::Error::other("poll: shared state poisoned"))?;
            let mesh = mesh.get_or_insert_with(|| {
                Mesh::new(cfg.workers.max(cfg.worker + 1), knobs.msg_ring_entries)
            });
            mesh.ends
                .get_mut(cfg.worker)
                .and_then(Option::take)
                .ok_or_else(|| {
                    io::Error::other(format!(
                        "poll: reactor {} does not fit this run's message mesh of {} reactors, or was built twice",
                        cfg.worker,
                        mesh.reactors()
                    ))
                })?
        };
        let mut caps = chan.caps().clone();
        caps.name = "poll";
        caps.polls = true;
        caps.owns_loop = true;
        let reactors = ends.outbound.len();
        Ok(Poll {
            staged: Vec::with_capacity(caps.max_in_flight),
            chan,
            caps,
            knobs,
            me: cfg.worker,
            outbound: ends.outbound,
            inbound: ends.inbound,
            pollers: Vec::new(),
            next_poller_id: 0,
            dead_pollers: 0,
            stats: ReactorStats::default(),
            epoch,
            handover: false,
            failed: None,
            wake: false,
            stop_from: None,
            stop_broadcast: false,
            stop_pending: vec![false; reactors],
            stops_pending: 0,
            _one_thread: PhantomData,
        })
    }

    /// This reactor's index in the run (the worker index).
    pub fn reactor(&self) -> usize {
        self.me
    }

    /// Reactors in the run (every one can be messaged, this one included).
    pub fn reactors(&self) -> usize {
        self.outbound.len()
    }

    /// What this reactor has done so far.
    pub fn stats(&self) -> ReactorStats {
        self.stats
    }

    /// `spdk_thread_send_msg`: run `msg.func(target, self.reactor(), msg.args)` on reactor `to`
    /// during one of its next turns. Messages from one reactor to another run in the order sent.
    /// Never blocks and never allocates; a full ring hands the message back
    /// ([`SendError::Full`]): run turns (e.g. `reap` with a past deadline) and send again.
    pub fn send_msg(&mut self, to: usize, msg: Msg) -> Result<(), SendError> {
        let Some(ring) = self.outbound.get_mut(to) else {
            return Err(SendError::NoSuchReactor(msg));
        };
        if ring.is_disconnected() {
            return Err(SendError::Disconnected(msg));
        }
        match ring.push(msg) {
            Ok(()) => {
                self.stats.msgs_sent += 1;
                Ok(())
            }
            Err(m) => Err(SendError::Full(m)),
        }
    }

    /// `spdk_poller_register`: run `func(self, arg)` every turn (`period` zero) or at most once
    /// per `period`. It runs inside `reap`, after the I/O and message pollers.
    pub fn register_poller(&mut self, func: PollerFn, arg: u64, period: Duration) -> PollerId {
        let id = self.next_poller_id;
        self.next_poller_id += 1;
        self.pollers.push(Poller {
            id,
            func,
            arg,
            period,
            next_due: Instant::now() + period,
            live: true,
        });
        PollerId(id)
    }

    /// `spdk_poller_unregister`: the poller runs no more (it may be called from a poller or a
    /// message). Returns whether it was registered.
    pub fn unregister_poller(&mut self, id: PollerId) -> bool {
        match self.pollers.iter_mut().find(|p| p.id == id.0 && p.live) {
            Some(p) => {
                p.live = false;
                self.dead_pollers += 1;
                true
            }
            None => false,
        }
    }

    /// Make the worker run on the next turn of [`Recorder::run_loop`] (its `complete`, then its
    /// `step`), whatever its deadline: for a message or a poller that changed what the worker
    /// must do (a stop request calls it). Called outside `run_loop`, it makes the worker due
    /// on the first turn of the next `run_loop`.
    pub fn wake(&mut self) {
        self.wake = true;
    }

    /// Whether another reactor of the run asked this one to stop ([`Poll::broadcast_stop`]).
    /// The worker checks it in its step, next to the harness's own stop flag, and ends.
    pub fn stop_requested(&self) -> bool {
        self.stop_from.is_some()
    }

    /// The reactor whose stop request arrived first, if any (for the worker's message).
    pub fn stop_sender(&self) -> Option<usize> {
        self.stop_from
    }

    /// Ask every other reactor of the run to stop: one stop message to each through
    /// [`send_msg`](Poll::send_msg). The worker calls it when it ends because it failed;
    /// `run_loop` calls it when the worker's `complete` fails. A ring that is full keeps its
    /// stop pending, retried on every later turn; a reactor that is gone is skipped. Calling it
    /// again sends nothing more. Returns the stops still pending ([`Poll::stops_pending`]).
    pub fn broadcast_stop(&mut self) -> usize {
        if !self.stop_broadcast {
            self.stop_broadcast = true;
            for to in 0..self.stop_pending.len() {
                if to != self.me {
                    self.stop_pending[to] = true;
                    self.stops_pending += 1;
                }
            }
        }
        self.retry_stops();
        self.stops_pending
    }

    /// Stop requests not yet delivered (their ring was full).
    pub fn stops_pending(&self) -> usize {
        self.stops_pending
    }

    /// Send the pending stop requests that fit now. Returns whether one went out.
    fn retry_stops(&mut self) -> bool {
        let mut sent = false;
        for to in 0..self.stop_pending.len() {
            if !self.stop_pending[to] {
                continue;
            }
            let msg = Msg {
                func: on_stop,
                args: [0; 3],
            };
            let delivered = match self.send_msg(to, msg) {
                Ok(()) => {
                    self.stats.stops_sent += 1;
                    sent = true;
                    true
                }
                // Nothing left to stop there.
                Err(SendError::Disconnected(_) | SendError::NoSuchReactor(_)) => true,
                Err(SendError::Full(_)) => false,
            };
            if delivered {
                self.stop_pending[to] = false;
                self.stops_pending -= 1;
            }
        }
        debug_assert_eq!(
            self.stops_pending,
            self.stop_pending.iter().filter(|p| **p).count(),
            "pending stop count out of step"
        );
        sent
    }

    /// On the way out of `run_loop`: keep retrying pending stops for up to [`STOP_GRACE`],
    /// running this reactor's message poller meanwhile (a peer doing the same needs its ring
    /// to us drained). What is still pending after that waits for later turns.
    fn settle_stops(&mut self) {
        if self.stops_pending == 0 {
            return;
        }
        let deadline = Instant::now() + STOP_GRACE;
        while self.stops_pending > 0 && Instant::now() < deadline {
            self.retry_stops();
            self.run_messages();
            std::hint::spin_loop();
        }
    }

    /// One reactor turn: the I/O completion poller, the message poller, then registered
    /// pollers and pending stops. Completions go to `out`. Returns whether any poller did work.
    fn turn(&mut self, out: &mut Vec<Completion<UringBuf>>) -> io::Result<bool> {
        let now = (!self.pollers.is_empty()).then(Instant::now);
        let io = self.io_poller(out);
        let busy = match io {
            Ok(reaped) => self.other_pollers(now) | reaped,
            // A failed ring ends the turn; it still counts.
            Err(_) => true,
        };
        self.count_turn(busy);
        io.map(|_| busy)
    }

    /// The I/O completion poller: push queued SQEs, take CQEs into `out`; enters the kernel only
    /// when SQEs are queued or the ring flags pending completion work (never to wait). Returns
    /// whether it took any.
    #[inline]
    fn io_poller(&mut self, out: &mut Vec<Completion<UringBuf>>) -> io::Result<bool> {
        self.chan.reap(out, self.epoch).map(|n| n > 0)
    }

    /// The message poller, the registered pollers (`now`: when they run, `Some` if there are
    /// any) and pending stops. Returns whether any did work.
    #[inline]
    fn other_pollers(&mut self, now: Option<Instant>) -> bool {
        let mut busy = self.run_messages();
        if let Some(now) = now {
            busy |= self.run_pollers(now);
        }
        if self.stops_pending > 0 {
            busy |= self.retry_stops();
        }
        busy
    }

    /// Account one turn.
    #[inline]
    fn count_turn(&mut self, busy: bool) {
        self.stats.turns += 1;
        if busy {
            self.stats.busy_turns += 1;
        } else {
            self.stats.idle_turns += 1;
        }
        debug_assert_eq!(
            self.stats.turns,
            self.stats.busy_turns + self.stats.idle_turns,
            "every turn is busy or idle"
        );
    }

    /// Message poller: a batch from each inbound ring. Returns whether it ran any.
    fn run_messages(&mut self) -> bool {
        let mut ran = false;
        for from in 0..self.inbound.len() {
            for _ in 0..MSG_BATCH {
                let Some(m) = self.inbound[from].pop() else {
                    break;
                };
                self.stats.msgs_run += 1;
                ran = true;
                (m.func)(self, from, m.args);
            }
        }
        ran
    }

    fn run_pollers(&mut self, now: Instant) -> bool {
        let mut busy = false;
        // Pollers registered meanwhile start next turn; unregistered ones are swept after.
        for i in 0..self.pollers.len() {
            let p = &self.pollers[i];
            if !p.live || (!p.period.is_zero() && now < p.next_due) {
                continue;
            }
            let (id, func, arg) = (p.id, p.func, p.arg);
            self.stats.poller_runs += 1;
            busy |= func(self, arg);
            if let Some(p) = self.pollers.get_mut(i).filter(|p| p.id == id) {
                if !p.period.is_zero() {
                    p.next_due = now + p.period;
                }
            }
        }
        if self.dead_pollers > 0 {
            self.pollers.retain(|p| p.live);
            self.dead_pollers = 0;
        }
        busy
    }

    /// One turn of `run_loop`: as [`turn`](Poll::turn), with the I/O poller's completions kept
    /// in `staged` for the worker and its error kept for the worker's next `reap`. Returns
    /// whether any poller did work (the caller counts the turn) and the clock the registered
    /// pollers ran at (`None` when there are none: the clock was not read).
    #[inline]
    fn loop_turn(&mut self) -> (bool, Option<Instant>) {
        let mut busy = false;
        if self.failed.is_none() {
            // `take` leaves an empty Vec (no allocation); the capacity comes back with it.
            let mut staged = std::mem::take(&mut self.staged);
            match self.io_poller(&mut staged) {
                Ok(reaped) => busy = reaped,
                Err(e) => {
                    self.failed = Some(io::Error::new(
                        e.kind(),
                        format!("poll: reactor {}: I/O poller: {e}", self.me),
                    ));
                    busy = true;
                }
            }
            self.staged = staged;
            debug_assert!(
                self.staged.len() <= self.caps.max_in_flight,
                "more completions staged than ops in flight"
            );
        }
        let now = (!self.pollers.is_empty()).then(Instant::now);
        (busy | self.other_pollers(now), now)
    }

    /// Run the worker's step (counted).
    #[inline]
    /// Run the worker's `step`: first hand it a stop another reactor sent
    /// ([`LoopBody::request_stop`]), and after it, when the worker has failed
    /// ([`LoopBody::failed`]), send the stop to every other reactor (once).
    fn step_body<B: LoopBody<R = Poll>>(body: &mut B) -> Flow {
        let r = body.engine();
        r.stats.body_steps += 1;
        if r.stop_requested() {
            body.request_stop();
        }
        let flow = body.step(Instant::now());
        if body.failed() {
            body.engine().broadcast_stop();
        }
        flow
    }
}

/// A stop request from reactor `from` ([`Poll::broadcast_stop`]).
fn on_stop(r: &mut Poll, from: usize, _: [u64; 3]) {
    r.stats.stops_received += 1;
    r.stop_from.get_or_insert(from);
    r.wake();
}

impl Recorder for Poll {
    type Buf = UringBuf;

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc_buf(&mut self, len: usize) -> Option<UringBuf> {
        self.chan.alloc_buf(len)
    }

    fn release_buf(&mut self, buf: UringBuf) {
        self.chan.release_buf(buf)
    }

    fn submit(&mut self, token: u64, op: Op<UringBuf>) -> Result<(), Op<UringBuf>> {
        self.chan.submit(token, op)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.chan.flush()
    }

    /// The reactor loop for a caller with a loop of its own: turns until at least one
    /// completion is in `out` or `deadline` has passed (at least one turn, so a past deadline
    /// still takes what is ready). Never sleeps and never waits in the kernel, with or without
    /// ops in flight: messages and pollers keep running while it spins. Completions a turn of
    /// `run_loop` took and the worker has not taken yet come first, without a turn (after a
    /// flush); the first call inside the worker's `complete` hands over what the loop's turn
    /// found and runs no turn of its own. An error of the I/O poller during `run_loop` is
    /// returned by the next call.
    fn reap(
        &mut self,
        out: &mut Vec<Completion<UringBuf>>,
        deadline: Instant,
    ) -> io::Result<usize> {
        let handover = std::mem::take(&mut self.handover);
        if !self.staged.is_empty() {
            if !handover {
                self.chan.flush()?;
            }
            let n = self.staged.len();
            out.append(&mut self.staged);
            return Ok(n);
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if handover {
            return Ok(0);
        }
        let before = out.len();
        loop {
            self.turn(out)?;
            if out.len() > before || Instant::now() >= deadline {
                return Ok(out.len() - before);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.chan.in_flight() + self.staged.len()
    }

    /// The reactor loop with the worker as its last poller (see the module doc): `step` once,
    /// then turn after turn — I/O poller (completions kept for the worker), message poller,
    /// registered pollers, pending stops — and when the worker is due (completions found, its
    /// `Flow::Wait` deadline passed, `Flow::Again`, or [`Poll::wake`]) run its `complete` with
    /// a deadline in the past (its `reap` hands over what the turn found) and then its `step`. Never sleeps. Returns when `step` says [`Flow::Done`]; an `Err`
    /// from `complete` ends the loop, sends a stop to every other reactor
    /// ([`Poll::broadcast_stop`]) and is returned. Either way, stops that found a full ring
    /// are retried for up to [`STOP_GRACE`] before it returns.
    fn run_loop<B: LoopBody<R = Self>>(body: &mut B) -> io::Result<()> {
        debug_assert!(
            !body.engine().handover,
            "run_loop inside the worker's complete"
        );
        let mut flow = Poll::step_body(body);
        loop {
            let due = match flow {
                Flow::Done => {
                    body.engine().settle_stops();
                    return Ok(());
                }
                Flow::Again => None,
                Flow::Wait(deadline) => Some(deadline),
            };
            // Turn until the worker is due. The clock is read only for its timer, and only when
            // nothing else made it due (once per turn the pollers ran with, if any).
            let r = body.engine();
            loop {
                let (busy, now) = r.loop_turn();
                let ready = !r.staged.is_empty() || r.failed.is_some() || r.wake;
                let run = ready || due.is_none_or(|d| now.unwrap_or_else(Instant::now) >= d);
                r.count_turn(busy || run);
                if run {
                    r.wake = false;
                    break;
                }
            }
            // A deadline in the past: the turn has polled the CQ; `reap` hands over what it found.
            r.handover = true;
            let epoch = r.epoch;
            let done = body.complete(epoch);
            let r = body.engine();
            r.handover = false;
            if let Err(e) = done {
                r.broadcast_stop();
                r.settle_stops();
                return Err(e);
            }
            flow = Poll::step_body(body);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Probe.

/// Probe the `poll` engine on this kernel and the filesystem of `dir`: io_uring, the reactor's
/// ring, a write and read through a real reactor, and what real SPDK would need.
pub fn probe(dir: &Path) -> Vec<ProbeResult> {
    let base = crate::buffered::nearest_existing(dir);
    let u = uring::probe(&base);
    let row = |what: &str| u.iter().find(|p| p.what == what).cloned();
    let mut out = Vec::new();
    let engine = row("(engine)").expect("uring probes itself");
    if !engine.supported {
        out.push(engine);
        return out;
    }
    let direct_ok = row("direct").is_some_and(|p| p.supported);
    let k = PollKnobs {
        direct: direct_ok,
        ..PollKnobs::default()
    };
    out.push(match reactor_roundtrip(&base, &k) {
        Ok(us) => ProbeResult {
            what: "(engine)".into(),
            supported: true,
            detail: format!(
                "SPDK's model (pinned reactors that never sleep, pollers, per-reactor io_uring \
                 channel, message passing) reproduced over io_uring; real SPDK needs an NVMe \
                 device bound to vfio and hugepages ({}). Ring {}: a 4 KiB {}write and read \
                 through a spinning reactor took {us} µs. Each worker busy-polls one whole core.",
                spdk_prereqs(),
                k.ring_flags(),
                if direct_ok { "O_DIRECT " } else { "" },
            ),
        },
        Err(e) => ProbeResult {
            what: "(engine)".into(),
            supported: false,
            detail: format!(
                "a reactor with ring {} failed a 4 KiB write and read on {}: {e}",
                k.ring_flags(),
                base.display()
            ),
        },
    });
    out.extend(row("direct"));
    for (what, knobs) in [
        (
            "sqpoll",
            PollKnobs {
                sqpoll: true,
                ..PollKnobs::default()
            },
        ),
        (
            "sqpoll_cpu",
            PollKnobs {
                sqpoll: true,
                sqpoll_cpu: Some(0),
                ..PollKnobs::default()
            },
        ),
    ] {
        let mut b: io_uring::Builder = io_uring::IoUring::builder();
        b.setup_sqpoll(knobs.sqpoll_idle_ms).setup_single_issuer();
        if let Some(cpu) = knobs.sqpoll_cpu {
            b.setup_sqpoll_cpu(cpu);
        }
        out.push(match b.build(8) {
            Ok(_) => ProbeResult {
                what: what.into(),
                supported: true,
                detail: format!("ring {} accepted", knobs.ring_flags()),
            },
            Err(e) => ProbeResult {
                what: what.into(),
                supported: false,
                detail: format!("ring {} refused: {e}", knobs.ring_flags()),
            },
        });
    }
    out.push(ProbeResult {
        what: "sqpoll_idle_ms".into(),
        supported: true,
        detail: "taken with sqpoll".into(),
    });
    out.extend(row("fixed_buffers"));
    out.extend(row("fixed_files"));
    out.push(ProbeResult {
        what: "entries".into(),
        supported: true,
        detail: "any power of two up to 32768".into(),
    });
    out.push(ProbeResult {
        what: "msg_ring_entries".into(),
        supported: true,
        detail: "bounded SPSC rings in process memory; any power of two".into(),
    });
    if let Some(p) = row("iopoll") {
        out.push(ProbeResult {
            what: "iopoll".into(),
            supported: p.supported,
            detail: if p.supported {
                "the device completes polled I/O, but poll never enables IOPOLL (an IOPOLL ring \
                 cannot fsync); its reactors poll the CQ instead"
                    .into()
            } else {
                format!(
                    "{} — poll never enables IOPOLL; its reactors poll the CQ instead",
                    p.detail
                )
            },
        });
    }
    out
}

/// What real SPDK would need, as found on this machine.
fn spdk_prereqs() -> String {
    let vfio = Path::new("/sys/bus/pci/drivers/vfio-pci").exists();
    let huge = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Total:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "here: vfio-pci driver {}, {huge} hugepages",
        if vfio { "present" } else { "absent" }
    )
}

/// Create a scratch directory in `dir`, write and read back 4 KiB through a one-reactor run,
/// and return how long that took in µs.
fn reactor_roundtrip(dir: &Path, k: &PollKnobs) -> io::Result<u128> {
    let scratch = dir.join(format!(".snapbench-poll-probe-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = (|| {
        let cfg = EngineConfig {
            dir: scratch.clone(),
            worker: 0,
            workers: 1,
            queue_depth: 2,
            buf_bytes: 4096,
            buf_count: 2,
            dio_align_bytes: 4096,
            shared: Default::default(),
        };
        let mut r = Poll::new(k.clone(), &cfg)?;
        let file = crate::MatchId(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let run = |r: &mut Poll, op: Op<UringBuf>| -> io::Result<Option<UringBuf>> {
            r.submit(1, op)
                .map_err(|_| io::Error::other("no room for one op"))?;
            let mut out = Vec::new();
            while out.is_empty() {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no completion"));
                }
                r.reap(&mut out, deadline)?;
            }
            let c = out.pop().expect("one");
            c.res.map(|_| c.buf)
        };
        run(
            &mut r,
            Op::Create {
                file,
                kind: crate::FileKind::Data,
                prealloc_bytes: 4096,
            },
        )?;
        let mut buf = r
            .alloc_buf(4096)
            .ok_or_else(|| io::Error::other("no buffer"))?;
        buf.as_mut().fill(0x5a);
        let t = Instant::now();
        let buf = run(
            &mut r,
            Op::Write {
                file,
                offset: 0,
                buf,
                dsync: false,
            },
        )?
        .ok_or_else(|| io::Error::other("write kept its buffer"))?;
        let buf = run(
            &mut r,
            Op::Read {
                file,
                offset: 0,
                buf,
            },
        )?
        .ok_or_else(|| io::Error::other("read kept its buffer"))?;
        let us = t.elapsed().as_micros();
        if buf.as_ref().iter().any(|b| *b != 0x5a) {
            return Err(io::Error::other("read back other bytes than written"));
        }
        r.release_buf(buf);
        run(
            &mut r,
            Op::Remove {
                file,
                kind: crate::FileKind::Data,
            },
        )?;
        Ok(us)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
