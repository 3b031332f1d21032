//! The DS snapshot model: what a replay recorder receives from dedicated game servers.
//!
//! The model follows docs/workload.md ("Write side: matches"):
//!
//! * `matches` matches are running when the run starts (all get a [`DsEvent::Start`] at
//!   `t_ns = 0`). Each draws a total duration from a lognormal with mean `match_minutes` and SD
//!   `match_minutes_sd`, clamped to `match_minutes_min..=match_minutes_max`, divided by
//!   `time_scale`; with [`Arrivals::Poisson`] it has already run a uniform random part of it (its
//!   age), with [`Arrivals::Herd`] its age is 0.
//! * New matches arrive as a Poisson process of rate `matches / mean duration` (the mean being
//!   `match_minutes · 60 / time_scale` seconds), so the population stays near `matches` by
//!   Little's law. Arrivals are Poisson under both [`Arrivals`] settings.
//! * Match ids are 1, 2, 3, … in order of start: the initial population is `1..=matches`.
//! * A match generates a snapshot every `1 / record_hz` s, the first at a uniform random phase in
//!   `[0, 1 / record_hz)` after its start; `seq` counts 0, 1, 2, … per match. Snapshot `seq` is a
//!   keyframe when `seq` is a multiple of `round(keyframe_s · record_hz)` (at least 1): the first
//!   snapshot, then one every `keyframe_s` of match time. Keyframe spacing is not affected by
//!   `time_scale`.
//! * A delta snapshot's size is lognormal with mean `snapshot_bytes` (times
//!   `max(0.05, 1 − progress)` with `shrink`, progress = age / duration) and coefficient of
//!   variation `snapshot_cv`, clamped to `snapshot_min_bytes..=snapshot_max_bytes`; with
//!   probability `burst_fraction` it is then multiplied by `burst_factor` (capped at
//!   [`MAX_PAYLOAD_BYTES`]), and rounded to whole bytes. Because of the clamps the realised mean
//!   differs slightly from `snapshot_bytes` when the distribution is wide.
//! * With `batch_s > 0` a match sends at a uniform random phase in `[0, batch_s)` after its start
//!   and then every `batch_s`; every snapshot generated since the previous send arrives at the send
//!   time (its `t_ns`), in seq order. A final send at the match's end carries the rest.
//! * [`DsEvent::End`] comes at the match's end time, after its last snapshot. A match still
//!   running at the horizon gets no `End`.
//!
//! Every match's randomness comes from [`seed::rng_for`]`(seed, match_id)` and the arrival
//! process from stream [`seed::STREAM_ARRIVALS`], so the union of all workers' schedules is the
//! same for any worker count, and one seed always gives one schedule.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::iter::FusedIterator;

use rand::Rng;
use rand_distr::{Exp1, StandardNormal};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::seed;

/// Largest payload of any snapshot (the SNAPLOG1 frame limit), 16 MiB.
pub const MAX_PAYLOAD_BYTES: u32 = 16 << 20;

/// Smallest payload of any snapshot: it starts with the match id and seq (two `u64`s).
pub const MIN_PAYLOAD_BYTES: u32 = 16;

/// The preset names, `fps-128tick` (the default workload of `snapbench run`) first.
pub const PRESETS: &[&str] = &[
    "fps-128tick",
    "moba-30tick",
    "battle-royale-100p",
    "replay-heavy",
];

/// Largest `matches`.
pub const MAX_MATCHES: u32 = 100_000;

const NS_PER_S: f64 = 1e9;
const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

/// How the matches of a run begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// The initial population has random ages (it is mid-match at `t = 0`); new matches arrive
    /// as a Poisson process.
    Poisson,
    /// The initial population all starts fresh at `t = 0` (age 0); new matches still arrive as a
    /// Poisson process.
    Herd,
}

/// Parameters of the DS snapshot model; see the [module documentation](self) for the model and
/// [`DsParams::validate`] for the accepted ranges.
///
/// Sizes in presets and defaults written "KB" in docs/workload.md are taken as follows: whole KB are
/// KiB (48 KB = 49 152 B, 64 KB = 65 536 B, 8 KB = 8192 B, 1 MB = 1 MiB), fractional ones are
/// decimal (0.8 KB = 800 B, 1.7 KB = 1700 B, 2.8 KB = 2800 B).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DsParams {
    /// Concurrent matches: the initial population and the steady state, 1..=100 000.
    pub matches: u32,
    /// Server tick rate, 8..=128 Hz (bounds `record_hz`).
    pub tick_hz: f64,
    /// Snapshots per second per match sent to the recorder, `0 < record_hz <= tick_hz`.
    pub record_hz: f64,
    /// DS-side batching interval in seconds, 0..=3600; 0 sends each snapshot on its own.
    pub batch_s: f64,
    /// Mean payload of an ordinary delta snapshot, before bursts and shrinking; must lie in
    /// `snapshot_min_bytes..=snapshot_max_bytes` (docs/workload.md sweeps 150..=8192).
    pub snapshot_bytes: f64,
    /// Coefficient of variation of the delta-size lognormal, 0..=10 (0 = constant size).
    pub snapshot_cv: f64,
    /// Lower clamp of delta sizes, at least 16 (the payload starts with match id and seq).
    pub snapshot_min_bytes: u32,
    /// Upper clamp of delta sizes (before bursts), at most [`MAX_PAYLOAD_BYTES`].
    pub snapshot_max_bytes: u32,
    /// Fraction of delta snapshots that are bursts, 0..=1.
    pub burst_fraction: f64,
    /// Size multiplier of a burst, 1..=1000 (the result is capped at [`MAX_PAYLOAD_BYTES`]).
    pub burst_factor: f64,
    /// Match time between keyframes, in seconds, `0 < keyframe_s <= 86400`.
    pub keyframe_s: f64,
    /// Payload of a keyframe, 16..=[`MAX_PAYLOAD_BYTES`].
    pub keyframe_bytes: u32,
    /// Mean match length in minutes, within `match_minutes_min..=match_minutes_max`.
    pub match_minutes: f64,
    /// Standard deviation of the match length in minutes, 0..=10 080.
    pub match_minutes_sd: f64,
    /// Shortest match in minutes, `0 < match_minutes_min`.
    pub match_minutes_min: f64,
    /// Longest match in minutes, `match_minutes_min..=10 080` (one week).
    pub match_minutes_max: f64,
    /// How the initial population begins.
    pub arrivals: Arrivals,
    /// Time compression of match lifetimes, 0.001..=1 000 000: durations (and so arrival gaps)
    /// are divided by it; tick rate, batching and keyframe spacing are unchanged.
    pub time_scale: f64,
    /// Battle-royale shrinking: the mean delta size is multiplied by `max(0.05, 1 − progress)`,
    /// progress = age / duration of the match.
    pub shrink: bool,
}

impl Default for DsParams {
    /// The defaults of docs/workload.md: 256 matches at 64 Hz, 1.7 KB (CV 0.8) deltas clamped to
    /// 64 B..=64 KiB, 2 % bursts × 8, a 64 KiB keyframe every 60 s, 35 ± 8 min matches clamped to
    /// 10..=120 min, Poisson arrivals, no batching, no time compression, no shrinking.
    fn default() -> DsParams {
        DsParams {
            matches: 256,
            tick_hz: 64.0,
            record_hz: 64.0,
            batch_s: 0.0,
            snapshot_bytes: 1700.0,
            snapshot_cv: 0.8,
            snapshot_min_bytes: 64,
            snapshot_max_bytes: 64 * KIB,
            burst_fraction: 0.02,
            burst_factor: 8.0,
            keyframe_s: 60.0,
            keyframe_bytes: 64 * KIB,
            match_minutes: 35.0,
            match_minutes_sd: 8.0,
            match_minutes_min: 10.0,
            match_minutes_max: 120.0,
            arrivals: Arrivals::Poisson,
            time_scale: 1.0,
            shrink: false,
        }
    }
}

/// `Ok` when `lo <= v <= hi` (and `v` is a number), else the standard one-sentence error.
fn check_f64(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(format!(
            "{field} {v} is out of range; it must be in {lo}..={hi}"
        ))
    }
}

/// `Ok` when `0 < v <= hi`, else the standard one-sentence error.
fn check_positive(field: &str, v: f64, hi: f64) -> Result<(), String> {
    if v > 0.0 && v <= hi {
        Ok(())
    } else {
        Err(format!(
            "{field} {v} is out of range; it must be above 0 and at most {hi}"
        ))
    }
}

/// `Ok` when `lo <= v <= hi`, else the standard one-sentence error.
fn check_u32(field: &str, v: u32, lo: u32, hi: u32) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{field} {v} is out of range; it must be in {lo}..={hi}"
        ))
    }
}

impl DsParams {
    /// The named preset of docs/workload.md (write side), or `None` for an unknown name (see
    /// [`PRESETS`]). Parameters a preset does not set take the defaults.
    ///
    /// * `fps-128tick`: 128 Hz, 800 B deltas, 48 KiB keyframe every 60 s, 40 ± 10 min matches.
    /// * `moba-30tick`: 30 Hz, 2800 B deltas (CV 0.6), 256 KiB keyframe every 60 s, 35 ± 8 min.
    /// * `battle-royale-100p`: 64 matches, 20 Hz, 8192 B deltas shrinking with players alive,
    ///   CV 1.0, bursts × 10, 1 MiB keyframe every 30 s, 20 ± 4 min.
    /// * `replay-heavy` (CS2-like): 256 matches, 64 Hz, 1700 B deltas, keyframe every 60 s.
    pub fn preset(name: &str) -> Option<DsParams> {
        let d = DsParams::default();
        let p = match name {
            "fps-128tick" => DsParams {
                tick_hz: 128.0,
                record_hz: 128.0,
                snapshot_bytes: 800.0,
                keyframe_bytes: 48 * KIB,
                keyframe_s: 60.0,
                match_minutes: 40.0,
                match_minutes_sd: 10.0,
                ..d
            },
            "moba-30tick" => DsParams {
                tick_hz: 30.0,
                record_hz: 30.0,
                snapshot_bytes: 2800.0,
                snapshot_cv: 0.6,
                keyframe_bytes: 256 * KIB,
                keyframe_s: 60.0,
                match_minutes: 35.0,
                match_minutes_sd: 8.0,
                ..d
            },
            "battle-royale-100p" => DsParams {
                matches: 64,
                tick_hz: 20.0,
                record_hz: 20.0,
                snapshot_bytes: 8192.0,
                shrink: true,
                snapshot_cv: 1.0,
                burst_factor: 10.0,
                keyframe_bytes: MIB,
                keyframe_s: 30.0,
                match_minutes: 20.0,
                match_minutes_sd: 4.0,
                ..d
            },
            "replay-heavy" => DsParams {
                matches: 256,
                tick_hz: 64.0,
                record_hz: 64.0,
                snapshot_bytes: 1700.0,
                keyframe_s: 60.0,
                ..d
            },
            _ => return None,
        };
        Some(p)
    }

    /// Checks every field; the error is one sentence naming the field, its value and the valid
    /// range. The first bad field found is reported.
    pub fn validate(&self) -> Result<(), String> {
        check_u32("matches", self.matches, 1, MAX_MATCHES)?;
        check_f64("tick_hz", self.tick_hz, 8.0, 128.0)?;
        if !(self.record_hz > 0.0 && self.record_hz <= self.tick_hz) {
            return Err(format!(
                "record_hz {} is out of range; it must be above 0 and at most tick_hz ({})",
                self.record_hz, self.tick_hz
            ));
        }
        check_f64("batch_s", self.batch_s, 0.0, 3600.0)?;
        check_u32(
            "snapshot_max_bytes",
            self.snapshot_max_bytes,
            MIN_PAYLOAD_BYTES,
            MAX_PAYLOAD_BYTES,
        )?;
        check_u32(
            "snapshot_min_bytes",
            self.snapshot_min_bytes,
            MIN_PAYLOAD_BYTES,
            self.snapshot_max_bytes,
        )
        .map_err(|e| format!("{e} (snapshot_max_bytes)"))?;
        check_f64(
            "snapshot_bytes",
            self.snapshot_bytes,
            f64::from(self.snapshot_min_bytes),
            f64::from(self.snapshot_max_bytes),
        )
        .map_err(|e| format!("{e} (snapshot_min_bytes..=snapshot_max_bytes)"))?;
        check_f64("snapshot_cv", self.snapshot_cv, 0.0, 10.0)?;
        check_f64("burst_fraction", self.burst_fraction, 0.0, 1.0)?;
        check_f64("burst_factor", self.burst_factor, 1.0, 1000.0)?;
        check_positive("keyframe_s", self.keyframe_s, 86_400.0)?;
        check_u32(
            "keyframe_bytes",
            self.keyframe_bytes,
            MIN_PAYLOAD_BYTES,
            MAX_PAYLOAD_BYTES,
        )?;
        check_positive("match_minutes_min", self.match_minutes_min, 10_080.0)?;
        check_f64(
            "match_minutes_max",
            self.match_minutes_max,
            self.match_minutes_min,
            10_080.0,
        )
        .map_err(|e| format!("{e} (match_minutes_min..=10080)"))?;
        check_f64(
            "match_minutes",
            self.match_minutes,
            self.match_minutes_min,
            self.match_minutes_max,
        )
        .map_err(|e| format!("{e} (match_minutes_min..=match_minutes_max)"))?;
        check_f64("match_minutes_sd", self.match_minutes_sd, 0.0, 10_080.0)?;
        check_f64("time_scale", self.time_scale, 0.001, 1_000_000.0)?;
        Ok(())
    }

    /// Expected offered load in snapshots per second: `matches · record_hz`.
    pub fn snapshots_per_s(&self) -> f64 {
        f64::from(self.matches) * self.record_hz
    }

    /// Mean match duration in (compressed) run seconds: `match_minutes · 60 / time_scale`.
    pub fn mean_match_s(&self) -> f64 {
        self.match_minutes * 60.0 / self.time_scale
    }

    /// Rate of new-match arrivals per second: `matches / mean_match_s()` (Little's law).
    pub fn match_arrivals_per_s(&self) -> f64 {
        f64::from(self.matches) / self.mean_match_s()
    }
}

/// The kind of a snapshot, numbered as the SNAPLOG1 frame `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SnapKind {
    /// An ordinary delta snapshot.
    Delta = 0,
    /// A full snapshot a reader can seek to.
    Keyframe = 1,
}

/// One event of a worker's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsEvent {
    /// A match begins: the recorder creates its log. Comes before its first snapshot.
    Start {
        /// The match (1, 2, … in order of start).
        match_id: u64,
        /// Intended time, ns since the run started.
        t_ns: u64,
    },
    /// A snapshot arrives at intended time `t_ns` (ns since the run started).
    Snapshot {
        /// The match it belongs to.
        match_id: u64,
        /// 0, 1, 2, … within the match, no gaps.
        seq: u64,
        /// Intended arrival time, ns since the run started.
        t_ns: u64,
        /// Delta or keyframe.
        kind: SnapKind,
        /// Payload length, `16..=MAX_PAYLOAD_BYTES`.
        payload_bytes: u32,
    },
    /// The match ended after its last snapshot: the recorder seals its log.
    End {
        /// The match.
        match_id: u64,
        /// Intended time, ns since the run started.
        t_ns: u64,
    },
}

impl DsEvent {
    /// The event's intended time, ns since the run started.
    #[inline]
    pub fn t_ns(&self) -> u64 {
        match *self {
            DsEvent::Start { t_ns, .. }
            | DsEvent::Snapshot { t_ns, .. }
            | DsEvent::End { t_ns, .. } => t_ns,
        }
    }

    /// The match the event belongs to.
    #[inline]
    pub fn match_id(&self) -> u64 {
        match *self {
            DsEvent::Start { match_id, .. }
            | DsEvent::Snapshot { match_id, .. }
            | DsEvent::End { match_id, .. } => match_id,
        }
    }
}

/// Constants derived once from [`DsParams`].
#[derive(Clone, Debug)]
struct Model {
    period_ns: f64,
    batch_ns: f64,
    size_mu: f64,
    size_sigma: f64,
    size_min: f64,
    size_max: f64,
    burst_fraction: f64,
    burst_factor: f64,
    keyframe_every: u64,
    keyframe_bytes: u32,
    dur_mu: f64,
    dur_sigma: f64,
    dur_min_min: f64,
    dur_max_min: f64,
    ns_per_match_minute: f64,
    mean_interarrival_ns: f64,
    herd: bool,
    shrink: bool,
}

/// `(mu, sigma)` of the lognormal with the given mean and coefficient of variation.
fn lognormal_mu_sigma(mean: f64, cv: f64) -> (f64, f64) {
    let var = (cv * cv).ln_1p();
    (mean.ln() - var / 2.0, var.sqrt())
}

impl Model {
    fn new(p: &DsParams) -> Model {
        let (size_mu, size_sigma) = lognormal_mu_sigma(p.snapshot_bytes, p.snapshot_cv);
        let (dur_mu, dur_sigma) =
            lognormal_mu_sigma(p.match_minutes, p.match_minutes_sd / p.match_minutes);
        let ns_per_match_minute = 60.0 * NS_PER_S / p.time_scale;
        Model {
            period_ns: NS_PER_S / p.record_hz,
            batch_ns: p.batch_s * NS_PER_S,
            size_mu,
            size_sigma,
            size_min: f64::from(p.snapshot_min_bytes),
            size_max: f64::from(p.snapshot_max_bytes),
            burst_fraction: p.burst_fraction,
            burst_factor: p.burst_factor,
            keyframe_every: ((p.keyframe_s * p.record_hz).round() as u64).max(1),
            keyframe_bytes: p.keyframe_bytes,
            dur_mu,
            dur_sigma,
            dur_min_min: p.match_minutes_min,
            dur_max_min: p.match_minutes_max,
            ns_per_match_minute,
            mean_interarrival_ns: p.match_minutes * ns_per_match_minute / f64::from(p.matches),
            herd: p.arrivals == Arrivals::Herd,
            shrink: p.shrink,
        }
    }

    /// Payload of a delta snapshot generated at match progress `progress` (age / duration).
    #[inline]
    fn delta_bytes(&self, rng: &mut Pcg64Mcg, progress: f64) -> u32 {
        let mut mu = self.size_mu;
        if self.shrink {
            mu += shrink_factor(progress).ln();
        }
        let z: f64 = if self.size_sigma > 0.0 {
            rng.sample(StandardNormal)
        } else {
            0.0
        };
        let mut bytes = (mu + self.size_sigma * z)
            .exp()
            .clamp(self.size_min, self.size_max);
        if self.burst_fraction > 0.0 && rng.random::<f64>() < self.burst_fraction {
            bytes = (bytes * self.burst_factor).min(f64::from(MAX_PAYLOAD_BYTES));
        }
        // In range by the clamps; `as` saturates, so this cannot wrap.
        (bytes.round() as u32).max(MIN_PAYLOAD_BYTES)
    }
}

/// The shrink multiplier of the mean delta size: `max(0.05, 1 − progress)`.
#[inline]
fn shrink_factor(progress: f64) -> f64 {
    (1.0 - progress).max(0.05)
}

/// What a match's pending heap entry will emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Start,
    Snapshot,
    End,
}

/// One live match of this worker.
#[derive(Clone, Debug)]
struct Match {
    id: u64,
    rng: Pcg64Mcg,
    stage: Stage,
    start_ns: u64,
    end_ns: u64,
    /// Generation time of snapshot 0 (absolute, ns).
    first_snap_ns: f64,
    /// Time of batch send 0 (absolute, ns); unused without batching.
    send_base_ns: f64,
    next_seq: u64,
    /// Age of the match at `start_ns` (ns of compressed time).
    age0_ns: f64,
    /// Total duration of the match (ns of compressed time).
    duration_ns: f64,
}

/// Heap slot id of the pending arrival of this worker's next new match.
const ARRIVAL_SLOT: u32 = u32::MAX;

/// The schedule one worker sees: the events of the matches it owns, in nondecreasing `t_ns`
/// (ties ordered by match id, then by the match's own order).
///
/// Keeps a slab of live matches and a binary heap of their next event times; the global arrival
/// process is stepped by every worker, which keeps only its own arrivals. No allocation per
/// event once the slab has grown to the live population.
#[derive(Clone, Debug)]
pub struct DsSchedule {
    model: Model,
    seed: u64,
    worker: u64,
    workers: u64,
    horizon_ns: u64,
    slab: Vec<Match>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    arrival_rng: Pcg64Mcg,
    /// Time of the latest global arrival drawn (ns, f64 to avoid drift).
    arrival_ns: f64,
    /// Match id the next global arrival will get.
    next_arrival_id: u64,
}

impl DsSchedule {
    /// The schedule of `worker` (in `0..workers`) up to `horizon_ns`: matches with
    /// `(match_id − 1) % workers == worker` belong to it, and events with `t_ns >= horizon_ns` are
    /// never produced.
    ///
    /// # Panics
    ///
    /// If `params` fails [`DsParams::validate`] or `worker >= workers`; use
    /// [`DsSchedule::try_new`] to get an error instead.
    pub fn new(
        params: &DsParams,
        seed: u64,
        worker: u32,
        workers: u32,
        horizon_ns: u64,
    ) -> DsSchedule {
        match DsSchedule::try_new(params, seed, worker, workers, horizon_ns) {
            Ok(s) => s,
            Err(e) => panic!("DsSchedule::new: {e}"),
        }
    }

    /// Like [`DsSchedule::new`], but returns an error for invalid parameters or a `worker` not
    /// in `0..workers`.
    pub fn try_new(
        params: &DsParams,
        seed: u64,
        worker: u32,
        workers: u32,
        horizon_ns: u64,
    ) -> Result<DsSchedule, String> {
        params.validate()?;
        if worker >= workers {
            return Err(format!(
                "worker {worker} is out of range; it must be below workers ({workers})"
            ));
        }
        let (worker, workers) = (u64::from(worker), u64::from(workers));
        let matches = u64::from(params.matches);
        let own_initial = (matches + workers - 1 - worker) / workers;
        let capacity = usize::try_from(own_initial + own_initial / 4 + 16).unwrap_or(16);
        let mut s = DsSchedule {
            model: Model::new(params),
            seed,
            worker,
            workers,
            horizon_ns,
            slab: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            heap: BinaryHeap::with_capacity(capacity + 1),
            arrival_rng: seed::rng_for(seed, seed::STREAM_ARRIVALS),
            arrival_ns: 0.0,
            next_arrival_id: matches + 1,
        };
        if horizon_ns > 0 {
            for id in (worker + 1..=matches).step_by(workers as usize) {
                let slot = s.spawn(id, 0, true);
                s.heap.push(Reverse((0, id, slot)));
            }
            s.push_next_arrival();
        }
        Ok(s)
    }

    /// The time of the next event, or `None` when the schedule is exhausted.
    #[inline]
    pub fn peek_t_ns(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next event (nondecreasing `t_ns`), or `None` when no event before the horizon is left.
    pub fn next_event(&mut self) -> Option<DsEvent> {
        let mut top = self.heap.peek_mut()?;
        let Reverse((t_ns, match_id, mut slot)) = *top;
        if slot == ARRIVAL_SLOT {
            PeekMut::pop(top);
            slot = self.spawn(match_id, t_ns, false);
            self.push_next_arrival();
            return Some(self.emit(slot, t_ns, match_id));
        }
        // The common case: the match's next event replaces its entry at the top (one sift
        // down instead of a pop and a push); the order is the same, as keys are unique.
        let m = &mut self.slab[slot as usize];
        let event = Self::event_of(&self.model, m, t_ns, match_id);
        if !matches!(event, DsEvent::End { .. }) {
            let t = Self::next_t(&self.model, m);
            if t < self.horizon_ns {
                *top = Reverse((t, match_id, slot));
                return Some(event);
            }
        }
        PeekMut::pop(top);
        self.free.push(slot);
        Some(event)
    }

    /// The event of the match in `slot` (already off the heap), then its next one pushed.
    fn emit(&mut self, slot: u32, t_ns: u64, match_id: u64) -> DsEvent {
        let m = &mut self.slab[slot as usize];
        let event = Self::event_of(&self.model, m, t_ns, match_id);
        if matches!(event, DsEvent::End { .. }) {
            self.free.push(slot);
            return event;
        }
        self.schedule_next(slot);
        event
    }

    /// The event the match's pending stage emits at `t_ns` (a snapshot advances its sequence).
    #[inline]
    fn event_of(model: &Model, m: &mut Match, t_ns: u64, match_id: u64) -> DsEvent {
        match m.stage {
            Stage::Start => DsEvent::Start { match_id, t_ns },
            Stage::Snapshot => {
                let seq = m.next_seq;
                m.next_seq += 1;
                let (kind, payload_bytes) = if seq % model.keyframe_every == 0 {
                    (SnapKind::Keyframe, model.keyframe_bytes)
                } else {
                    let progress = if model.shrink {
                        let gen_ns = m.first_snap_ns + seq as f64 * model.period_ns;
                        (m.age0_ns + (gen_ns - m.start_ns as f64)) / m.duration_ns
                    } else {
                        0.0
                    };
                    (SnapKind::Delta, model.delta_bytes(&mut m.rng, progress))
                };
                DsEvent::Snapshot {
                    match_id,
                    seq,
                    t_ns,
                    kind,
                    payload_bytes,
                }
            }
            Stage::End => DsEvent::End { match_id, t_ns },
        }
    }

    /// Decides the next event of `m` (which has just emitted its pending one): sets its stage
    /// and returns its time.
    #[inline]
    fn next_t(md: &Model, m: &mut Match) -> u64 {
        let gen_ns = m.first_snap_ns + m.next_seq as f64 * md.period_ns;
        if gen_ns < m.end_ns as f64 {
            m.stage = Stage::Snapshot;
            if md.batch_ns > 0.0 {
                // The first send at or after generation; the final send is at the end.
                let mut k = ((gen_ns - m.send_base_ns) / md.batch_ns).ceil().max(0.0);
                if m.send_base_ns + k * md.batch_ns < gen_ns {
                    k += 1.0;
                }
                ((m.send_base_ns + k * md.batch_ns) as u64).min(m.end_ns)
            } else {
                (gen_ns as u64).min(m.end_ns)
            }
        } else {
            m.stage = Stage::End;
            m.end_ns
        }
    }

    /// Creates the state of match `id` starting at `start_ns` and returns its slot; its pending
    /// stage is `Start`. `initial` matches get a random age unless arrivals are `Herd`.
    fn spawn(&mut self, id: u64, start_ns: u64, initial: bool) -> u32 {
        let md = &self.model;
        let mut rng = seed::rng_for(self.seed, id);
        let z: f64 = rng.sample(StandardNormal);
        let minutes = (md.dur_mu + md.dur_sigma * z)
            .exp()
            .clamp(md.dur_min_min, md.dur_max_min);
        let duration_ns = minutes * md.ns_per_match_minute;
        let u: f64 = rng.random();
        let age0_ns = if initial && !md.herd {
            u * duration_ns
        } else {
            0.0
        };
        let snap_phase: f64 = rng.random();
        let send_phase: f64 = rng.random();
        let start_f = start_ns as f64;
        // `as` saturates: an absurdly long match simply never ends within u64 time.
        let end_ns = start_ns.saturating_add((duration_ns - age0_ns) as u64);
        let m = Match {
            id,
            rng,
            stage: Stage::Start,
            start_ns,
            end_ns,
            first_snap_ns: start_f + snap_phase * md.period_ns,
            send_base_ns: start_f + send_phase * md.batch_ns,
            next_seq: 0,
            age0_ns,
            duration_ns,
        };
        match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = m;
                slot
            }
            None => {
                self.slab.push(m);
                (self.slab.len() - 1) as u32
            }
        }
    }

    /// Decides the next event of the match in `slot` (which has just emitted its pending one) and
    /// pushes it, or frees the slot when that event would fall at or after the horizon.
    fn schedule_next(&mut self, slot: u32) {
        let m = &mut self.slab[slot as usize];
        let t_ns = Self::next_t(&self.model, m);
        if t_ns < self.horizon_ns {
            self.heap.push(Reverse((t_ns, m.id, slot)));
        } else {
            self.free.push(slot);
        }
    }

    /// Steps the global arrival process to this worker's next arrival and pushes it, unless it
    /// falls at or after the horizon (then arrivals stop for good).
    fn push_next_arrival(&mut self) {
        loop {
            let gap: f64 = self.arrival_rng.sample(Exp1);
            self.arrival_ns += gap * self.model.mean_interarrival_ns;
            let id = self.next_arrival_id;
            self.next_arrival_id += 1;
            let t_ns = self.arrival_ns as u64;
            if t_ns >= self.horizon_ns {
                return;
            }
            if (id - 1) % self.workers == self.worker {
                self.heap.push(Reverse((t_ns, id, ARRIVAL_SLOT)));
                return;
            }
        }
    }
}

/// One snapshot of a [`MatchSnapshots`] sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchSnapshot {
    /// 0, 1, 2, … within the match.
    pub seq: u64,
    /// Generation time, ns since the match started.
    pub t_ns: u64,
    /// Delta or keyframe.
    pub kind: SnapKind,
    /// Payload length, `16..=MAX_PAYLOAD_BYTES`.
    pub payload_bytes: u32,
}

/// The snapshots of one fresh match (age 0), generated without a run clock: what the prefill
/// writes ahead of a run as a finished log. The same model as [`DsSchedule`] (sizes, bursts,
/// shrinking, keyframe spacing, duration), with the match's own random stream
/// [`seed::rng_for`]`(seed, match_id)`; times are generation times since the match started (a
/// batching DS would deliver them later, which a finished log does not show). Ends at the
/// match's end; no allocation per snapshot.
#[derive(Clone, Debug)]
pub struct MatchSnapshots {
    model: Model,
    rng: Pcg64Mcg,
    next_seq: u64,
    first_snap_ns: f64,
    duration_ns: f64,
}

impl MatchSnapshots {
    /// The snapshots of match `match_id` under `seed`; an error for invalid parameters.
    pub fn new(params: &DsParams, seed: u64, match_id: u64) -> Result<MatchSnapshots, String> {
        params.validate()?;
        let model = Model::new(params);
        let mut rng = seed::rng_for(seed, match_id);
        // The same draws, in the same order, as a match of the schedule.
        let z: f64 = rng.sample(StandardNormal);
        let minutes = (model.dur_mu + model.dur_sigma * z)
            .exp()
            .clamp(model.dur_min_min, model.dur_max_min);
        let duration_ns = minutes * model.ns_per_match_minute;
        let _age: f64 = rng.random();
        let snap_phase: f64 = rng.random();
        let _send_phase: f64 = rng.random();
        Ok(MatchSnapshots {
            first_snap_ns: snap_phase * model.period_ns,
            model,
            rng,
            next_seq: 0,
            duration_ns,
        })
    }

    /// Length of the match, ns (compressed by `time_scale`).
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns as u64
    }
}

impl Iterator for MatchSnapshots {
    type Item = MatchSnapshot;

    fn next(&mut self) -> Option<MatchSnapshot> {
        let md = &self.model;
        let seq = self.next_seq;
        let gen_ns = self.first_snap_ns + seq as f64 * md.period_ns;
        if gen_ns >= self.duration_ns {
            return None;
        }
        self.next_seq += 1;
        let (kind, payload_bytes) = if seq % md.keyframe_every == 0 {
            (SnapKind::Keyframe, md.keyframe_bytes)
        } else {
            let progress = if md.shrink {
                gen_ns / self.duration_ns
            } else {
                0.0
            };
            (SnapKind::Delta, md.delta_bytes(&mut self.rng, progress))
        };
        Some(MatchSnapshot {
            seq,
            t_ns: gen_ns as u64,
            kind,
            payload_bytes,
        })
    }
}

impl Iterator for DsSchedule {
    type Item = DsEvent;

    #[inline]
    fn next(&mut self) -> Option<DsEvent> {
        self.next_event()
    }
}

impl FusedIterator for DsSchedule {}

#[cfg(test)]
mod tests;
