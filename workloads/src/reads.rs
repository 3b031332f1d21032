//! The read side of the DS workload: viewers downloading, seeking in and tailing match logs
//! (docs/workload.md, "Read side: replays").
//!
//! * **Arrivals**: one-shot reads arrive as a Poisson process (open loop) of rate `reads_per_s`,
//!   or, when that is not given, `reads_per_match` × the rate at which matches finish (Little's
//!   law: `matches / mean match length`, see [`DsParams::match_arrivals_per_s`]). Each worker
//!   draws its share (`rate / workers`) from its own stream [`seed::STREAM_READS_BASE`]` +
//!   worker`, and serves only the matches it owns (`(match_id − 1) % workers`).
//! * **Target**: with probability [`RECENT_FRACTION`] a match that finished in the last
//!   [`RECENT_WINDOW_MATCH_S`] of match time (uniformly), otherwise Zipf(s = [`ZIPF_S`]) over
//!   every retained finished match ranked by recency (rank 1 = the latest to finish). When no
//!   match finished recently the Zipf choice is used.
//! * **Pattern** ([`ReadMix`], default 70/25/5): a full download; a seek (the file header, then
//!   from the keyframe at or before a uniform point of the match for [`SEEK_MIN_S`]..=
//!   [`SEEK_MAX_S`] s of match time); or a live tail of a running match (from its latest
//!   keyframe up to what the writer has published).
//! * **Live viewers** (`live_viewers`): follow a running match continuously, re-reading as the
//!   writer publishes more, and move to another running match when theirs ends.
//! * **Prefill**: `prefill_matches` finished matches (ids from [`PREFILL_ID_BASE`]) written
//!   before the run, each cut after the first snapshot that brings it to
//!   `prefill_match_bytes`, so that a short run has replays to read.
//!
//! Everything random about one read is drawn when the read is scheduled, so the same seed and
//! worker count give the same reads on every engine; which match a read resolves to depends on
//! what has finished by its intended time.

use rand::Rng;
use rand_distr::{Distribution, Exp1, Zipf};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::ds::DsParams;
use crate::seed;

/// First match id of prefilled matches: far above any id a run's schedule assigns (those count
/// up from 1), so a prefilled log never shares a name with a log the run creates.
pub const PREFILL_ID_BASE: u64 = 1 << 56;

/// Share of one-shot reads that go to a match finished in the last hour (docs/workload.md).
pub const RECENT_FRACTION: f64 = 0.8;

/// "The last hour", in match time; in run time it is divided by `time_scale`.
pub const RECENT_WINDOW_MATCH_S: f64 = 3600.0;

/// Exponent of the Zipf choice over retained matches.
pub const ZIPF_S: f64 = 1.0;

/// Shortest stretch of match time a seek reads, s.
pub const SEEK_MIN_S: f64 = 10.0;

/// Longest stretch of match time a seek reads, s.
pub const SEEK_MAX_S: f64 = 120.0;

/// Largest `read_bytes`, 16 MiB.
pub const MAX_READ_BYTES: u32 = 16 << 20;

/// What a read does with its match log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPattern {
    /// The whole finished log, from byte 0 to the end frame.
    Full,
    /// The file header, then from the keyframe at or before a point of the match for 10–120 s of
    /// match time.
    Seek,
    /// A running match: from its latest published keyframe to its published end.
    LiveTail,
}

impl ReadPattern {
    /// Lowercase name, as used in results.
    pub fn name(self) -> &'static str {
        match self {
            ReadPattern::Full => "full",
            ReadPattern::Seek => "seek",
            ReadPattern::LiveTail => "live_tail",
        }
    }
}

/// How fast a reader consumes what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pacing {
    /// Each read is issued as soon as the previous one completed (a download).
    #[serde(rename = "afap")]
    Afap,
    /// 1× playback: the next read is issued when playback reaches the end of what has been read
    /// (frame times), like a client with one read of buffer.
    #[serde(rename = "1x")]
    Playback,
}

impl std::str::FromStr for Pacing {
    type Err = String;
    fn from_str(s: &str) -> Result<Pacing, String> {
        match s.trim() {
            "afap" => Ok(Pacing::Afap),
            "1x" => Ok(Pacing::Playback),
            other => Err(format!(
                "unknown pacing `{other}`; use afap (as fast as possible) or 1x (playback speed)"
            )),
        }
    }
}

impl std::fmt::Display for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pacing::Afap => "afap",
            Pacing::Playback => "1x",
        })
    }
}

/// Shares of the read patterns, in percent; they sum to 100.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadMix {
    /// Full downloads, %.
    pub full_pct: f64,
    /// Seeks, %.
    pub seek_pct: f64,
    /// Live tails, %.
    pub live_pct: f64,
}

impl ReadMix {
    /// Parse `FULL/SEEK/LIVE` percentages, e.g. `70/25/5`; they must sum to 100.
    pub fn parse(text: &str) -> Result<ReadMix, String> {
        let parts: Vec<&str> = text.split('/').map(str::trim).collect();
        let bad = || {
            format!("read mix `{text}` must be three percentages FULL/SEEK/LIVE summing to 100, e.g. 70/25/5")
        };
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut v = [0.0; 3];
        for (slot, p) in v.iter_mut().zip(&parts) {
            *slot = p.parse::<f64>().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(slot) {
                return Err(bad());
            }
        }
        let m = ReadMix {
            full_pct: v[0],
            seek_pct: v[1],
            live_pct: v[2],
        };
        m.validate().map_err(|_| bad())?;
        Ok(m)
    }

    /// Checks that each share is in 0..=100 and that they sum to 100 (within 0.001).
    pub fn validate(&self) -> Result<(), String> {
        let all = [self.full_pct, self.seek_pct, self.live_pct];
        if all.iter().any(|p| !(0.0..=100.0).contains(p))
            || (all.iter().sum::<f64>() - 100.0).abs() > 1e-3
        {
            return Err(format!(
                "read mix {self} must be three percentages in 0..=100 summing to 100"
            ));
        }
        Ok(())
    }

    /// The pattern for a uniform draw `u` in `[0, 1)`.
    pub fn pattern(&self, u: f64) -> ReadPattern {
        let x = u * 100.0;
        if x < self.full_pct {
            ReadPattern::Full
        } else if x < self.full_pct + self.seek_pct {
            ReadPattern::Seek
        } else if self.live_pct > 0.0 {
            ReadPattern::LiveTail
        } else if self.seek_pct > 0.0 {
            ReadPattern::Seek
        } else {
            ReadPattern::Full
        }
    }
}

impl std::fmt::Display for ReadMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.full_pct, self.seek_pct, self.live_pct)
    }
}

/// Parameters of the read side; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadParams {
    /// One-shot reads per finished match, 0..=1000 (ignored when `reads_per_s` is given).
    pub reads_per_match: f64,
    /// One-shot reads per second over all workers, 0..=1 000 000, overriding `reads_per_match`.
    pub reads_per_s: Option<f64>,
    /// Shares of full downloads, seeks and live tails.
    pub mix: ReadMix,
    /// Size of one read I/O, a multiple of 4096 in 4 KiB..=16 MiB.
    pub read_bytes: u32,
    /// How fast readers consume.
    pub pacing: Pacing,
    /// Viewers following running matches continuously, 0..=10 000 over all workers.
    pub live_viewers: u32,
    /// Finished matches written before the run, 0..=100 000 over all workers (only when the
    /// read side is active).
    pub prefill_matches: u32,
    /// Bound of each prefilled log: it ends (sealed) after the first snapshot that brings it to
    /// this many bytes (header included), 4 KiB..=1 GiB.
    pub prefill_match_bytes: u64,
}

impl Default for ReadParams {
    /// docs/workload.md's defaults: 0.1 reads per match, 70/25/5, 256 KiB reads as fast as
    /// possible, no live viewers, 200 prefilled matches of 1 MiB each.
    fn default() -> ReadParams {
        ReadParams {
            reads_per_match: 0.1,
            reads_per_s: None,
            mix: ReadMix {
                full_pct: 70.0,
                seek_pct: 25.0,
                live_pct: 5.0,
            },
            read_bytes: 256 << 10,
            pacing: Pacing::Afap,
            live_viewers: 0,
            prefill_matches: 200,
            prefill_match_bytes: 1 << 20,
        }
    }
}

impl ReadParams {
    /// The read side of preset `name` (see `DsParams::preset`), `None` for an unknown name:
    /// 0.1 reads per match everywhere except `replay-heavy` (2 reads per match, 20 live
    /// viewers, 60/30/10).
    pub fn preset(name: &str) -> Option<ReadParams> {
        let d = ReadParams::default();
        match name {
            "fps-128tick" | "moba-30tick" | "battle-royale-100p" => Some(d),
            "replay-heavy" => Some(ReadParams {
                reads_per_match: 2.0,
                live_viewers: 20,
                mix: ReadMix {
                    full_pct: 60.0,
                    seek_pct: 30.0,
                    live_pct: 10.0,
                },
                ..d
            }),
            _ => None,
        }
    }

    /// Checks every field; the error is one sentence naming the field and the valid range.
    pub fn validate(&self) -> Result<(), String> {
        let range = |name: &str, v: f64, lo: f64, hi: f64| {
            if v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!(
                    "{name} {v} is out of range; it must be in {lo}..={hi}"
                ))
            }
        };
        range("reads_per_match", self.reads_per_match, 0.0, 1000.0)?;
        if let Some(r) = self.reads_per_s {
            range("reads_per_s", r, 0.0, 1e6)?;
        }
        self.mix.validate()?;
        if !(4096..=MAX_READ_BYTES).contains(&self.read_bytes) || self.read_bytes % 4096 != 0 {
            return Err(format!(
                "read_bytes {} must be a multiple of 4KiB from 4KiB to 16MiB",
                self.read_bytes
            ));
        }
        range("live_viewers", f64::from(self.live_viewers), 0.0, 10_000.0)?;
        range(
            "prefill_matches",
            f64::from(self.prefill_matches),
            0.0,
            100_000.0,
        )?;
        if !(4096..=(1 << 30)).contains(&self.prefill_match_bytes) {
            return Err(format!(
                "prefill_match_bytes {} is out of range; it must be in 4KiB..=1GiB",
                self.prefill_match_bytes
            ));
        }
        Ok(())
    }

    /// One-shot reads per second over all workers: `reads_per_s`, or `reads_per_match` × the
    /// rate at which matches finish.
    pub fn one_shot_reads_per_s(&self, ds: &DsParams) -> f64 {
        self.reads_per_s
            .unwrap_or(self.reads_per_match * ds.match_arrivals_per_s())
    }

    /// Whether the run has a read side (one-shot reads or live viewers); only then is there a
    /// prefill.
    pub fn active(&self, ds: &DsParams) -> bool {
        self.one_shot_reads_per_s(ds) > 0.0 || self.live_viewers > 0
    }

    /// "Finished in the last hour" in run time: [`RECENT_WINDOW_MATCH_S`] / `time_scale`, ns.
    pub fn recent_window_ns(ds: &DsParams) -> u64 {
        (RECENT_WINDOW_MATCH_S * 1e9 / ds.time_scale) as u64
    }

    /// Live viewers that worker `worker` of `workers` runs (viewer `v` goes to `v % workers`).
    pub fn viewers_of(&self, worker: u32, workers: u32) -> u32 {
        let (v, w) = (self.live_viewers, workers.max(1));
        v / w + u32::from(worker < v % w)
    }

    /// Ids of the prefilled matches that worker `worker` of `workers` owns, in order.
    pub fn prefill_ids(&self, worker: u32, workers: u32) -> impl Iterator<Item = u64> {
        let w = u64::from(workers.max(1));
        let me = u64::from(worker);
        (0..u64::from(self.prefill_matches))
            .map(|k| PREFILL_ID_BASE + k)
            .filter(move |id| (id - 1) % w == me)
    }
}

/// One one-shot read request: its intended time and every random choice it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadEvent {
    /// Intended request time, ns since the run started.
    pub t_ns: u64,
    /// What the read does.
    pub pattern: ReadPattern,
    /// Target class: a match finished recently (true) or Zipf over all retained (false).
    pub recent: bool,
    /// Random bits that choose the match within its class.
    pub pick: u64,
    /// Seek point as a fraction of the match's recorded time, `[0, 1)`.
    pub seek_frac: f64,
    /// Match time a seek covers, ns (10–120 s).
    pub seek_len_ns: u64,
}

impl ReadEvent {
    /// Which finished match to read, counted from the most recent (0 = the latest to finish),
    /// given `n_recent` matches finished in the recent window and `n_retained` retained in all
    /// (`n_recent <= n_retained`); `None` when nothing has finished.
    pub fn pick_finished(&self, n_recent: usize, n_retained: usize) -> Option<usize> {
        if n_retained == 0 {
            return None;
        }
        if self.recent && n_recent > 0 {
            return Some(self.pick_uniform(n_recent.min(n_retained)));
        }
        let mut rng = seed::rng_for(self.pick, 0);
        let zipf = Zipf::new(n_retained as f64, ZIPF_S).ok()?;
        let rank: f64 = zipf.sample(&mut rng);
        Some((rank as usize).clamp(1, n_retained) - 1)
    }

    /// A uniform choice among `n > 0` things (for a live tail: among running matches).
    pub fn pick_uniform(&self, n: usize) -> usize {
        ((u128::from(self.pick) * n as u128) >> 64) as usize
    }
}

/// The one-shot reads of one worker, in nondecreasing intended time, up to a horizon.
#[derive(Clone, Debug)]
pub struct ReadSchedule {
    rng: Pcg64Mcg,
    mean_gap_ns: f64,
    next_ns: f64,
    horizon_ns: u64,
    mix: ReadMix,
}

impl ReadSchedule {
    /// The reads of `worker` (of `workers`) before `horizon_ns`, starting at `from_ns`.
    pub fn new(
        reads: &ReadParams,
        ds: &DsParams,
        seed: u64,
        worker: u32,
        workers: u32,
        from_ns: u64,
        horizon_ns: u64,
    ) -> ReadSchedule {
        let rate_per_s = reads.one_shot_reads_per_s(ds) / f64::from(workers.max(1));
        let mut s = ReadSchedule {
            rng: seed::rng_for(seed, seed::STREAM_READS_BASE + u64::from(worker)),
            mean_gap_ns: if rate_per_s > 0.0 {
                1e9 / rate_per_s
            } else {
                f64::INFINITY
            },
            next_ns: from_ns as f64,
            horizon_ns,
            mix: reads.mix,
        };
        s.step();
        s
    }

    fn step(&mut self) {
        let gap: f64 = self.rng.sample(Exp1);
        self.next_ns += gap * self.mean_gap_ns;
    }

    /// Intended time of the next read, `None` when none is left before the horizon.
    pub fn peek_t_ns(&self) -> Option<u64> {
        (self.next_ns < self.horizon_ns as f64).then_some(self.next_ns as u64)
    }

    /// The next read, or `None` when none is left before the horizon.
    pub fn next_event(&mut self) -> Option<ReadEvent> {
        let t_ns = self.peek_t_ns()?;
        let rng = &mut self.rng;
        let pattern = self.mix.pattern(rng.random());
        let recent = rng.random::<f64>() < RECENT_FRACTION;
        let pick: u64 = rng.random();
        let seek_frac: f64 = rng.random();
        let seek_s = SEEK_MIN_S + rng.random::<f64>() * (SEEK_MAX_S - SEEK_MIN_S);
        self.step();
        Some(ReadEvent {
            t_ns,
            pattern,
            recent,
            pick,
            seek_frac,
            seek_len_ns: (seek_s * 1e9) as u64,
        })
    }
}

impl Iterator for ReadSchedule {
    type Item = ReadEvent;
    fn next(&mut self) -> Option<ReadEvent> {
        self.next_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn fast() -> (ReadParams, DsParams) {
        let r = ReadParams {
            reads_per_s: Some(200.0),
            ..ReadParams::default()
        };
        (r, DsParams::default())
    }

    #[test]
    fn presets_and_defaults() {
        for p in crate::ds::PRESETS {
            let r = ReadParams::preset(p).unwrap();
            r.validate().unwrap();
        }
        let rh = ReadParams::preset("replay-heavy").unwrap();
        assert_eq!(rh.reads_per_match, 2.0);
        assert_eq!(rh.live_viewers, 20);
        assert_eq!(rh.mix, ReadMix::parse("60/30/10").unwrap());
        assert_eq!(
            ReadParams::preset("fps-128tick").unwrap().reads_per_match,
            0.1
        );
        assert!(ReadParams::preset("nope").is_none());
        // 0.1 × (256 / (35 · 60 s)) reads per second at the defaults.
        let d = ReadParams::default();
        let rate = d.one_shot_reads_per_s(&DsParams::default());
        assert!((rate - 0.1 * 256.0 / 2100.0).abs() < 1e-12, "{rate}");
        assert!(d.active(&DsParams::default()));
        let off = ReadParams {
            reads_per_match: 0.0,
            ..d
        };
        assert!(!off.active(&DsParams::default()));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |r: ReadParams, needle: &str| {
            let e = r.validate().unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        let d = ReadParams::default();
        bad(
            ReadParams {
                read_bytes: 1000,
                ..d.clone()
            },
            "read_bytes",
        );
        bad(
            ReadParams {
                reads_per_s: Some(-1.0),
                ..d.clone()
            },
            "reads_per_s",
        );
        bad(
            ReadParams {
                prefill_match_bytes: 10,
                ..d.clone()
            },
            "prefill_match_bytes",
        );
        assert!(ReadMix::parse("70/25/6").is_err());
        assert!(ReadMix::parse("70/30").is_err());
        assert!(ReadMix::parse("a/b/c").is_err());
        assert_eq!(ReadMix::parse(" 100 / 0 / 0 ").unwrap().full_pct, 100.0);
        assert_eq!("1x".parse::<Pacing>().unwrap(), Pacing::Playback);
        assert!("2x".parse::<Pacing>().is_err());
    }

    #[test]
    fn seeded_and_ordered() {
        let (r, d) = fast();
        let a: Vec<ReadEvent> = ReadSchedule::new(&r, &d, 7, 0, 2, 0, 10 * S).collect();
        let b: Vec<ReadEvent> = ReadSchedule::new(&r, &d, 7, 0, 2, 0, 10 * S).collect();
        assert_eq!(a, b);
        let c: Vec<ReadEvent> = ReadSchedule::new(&r, &d, 8, 0, 2, 0, 10 * S).collect();
        assert_ne!(a, c);
        let other: Vec<ReadEvent> = ReadSchedule::new(&r, &d, 7, 1, 2, 0, 10 * S).collect();
        assert_ne!(a, other, "workers draw from their own streams");
        assert!(a.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
        assert!(a.iter().all(|e| e.t_ns < 10 * S));
        let late: Vec<ReadEvent> = ReadSchedule::new(&r, &d, 7, 0, 2, 5 * S, 10 * S).collect();
        assert!(late.iter().all(|e| e.t_ns >= 5 * S));
    }

    #[test]
    fn rate_and_mix_within_tolerance() {
        let (r, d) = fast();
        // 200 reads/s over 2 workers: 100/s each; 200 s → 20 000 reads per worker.
        let ev: Vec<ReadEvent> = ReadSchedule::new(&r, &d, 1, 1, 2, 0, 200 * S).collect();
        let n = ev.len() as f64;
        assert!((n - 20_000.0).abs() < 20_000.0 * 0.03, "{n}");
        let share = |p: ReadPattern| ev.iter().filter(|e| e.pattern == p).count() as f64 / n;
        assert!((share(ReadPattern::Full) - 0.70).abs() < 0.015);
        assert!((share(ReadPattern::Seek) - 0.25).abs() < 0.015);
        assert!((share(ReadPattern::LiveTail) - 0.05).abs() < 0.007);
        let recent = ev.iter().filter(|e| e.recent).count() as f64 / n;
        assert!((recent - RECENT_FRACTION).abs() < 0.015, "{recent}");
        let seek_s: Vec<f64> = ev.iter().map(|e| e.seek_len_ns as f64 / 1e9).collect();
        assert!(seek_s.iter().all(|s| (SEEK_MIN_S..=SEEK_MAX_S).contains(s)));
        let mean = seek_s.iter().sum::<f64>() / n;
        assert!((mean - 65.0).abs() < 1.5, "{mean}");
        // Exponential gaps: the coefficient of variation of the gaps is near 1.
        let gaps: Vec<f64> = ev
            .windows(2)
            .map(|w| (w[1].t_ns - w[0].t_ns) as f64)
            .collect();
        let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - m).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((sd / m - 1.0).abs() < 0.05, "cv {}", sd / m);
        // The derived rate: reads_per_match × matches finishing per second.
        let derived = ReadParams {
            reads_per_match: 2.0,
            ..ReadParams::default()
        };
        let fast_ds = DsParams {
            time_scale: 100.0,
            ..DsParams::default()
        };
        let want = 2.0 * fast_ds.match_arrivals_per_s() * 300.0;
        let got = ReadSchedule::new(&derived, &fast_ds, 3, 0, 1, 0, 300 * S).count() as f64;
        assert!((got - want).abs() < want * 0.1, "{got} vs {want}");
        // No rate, no reads.
        let none = ReadParams {
            reads_per_match: 0.0,
            ..ReadParams::default()
        };
        assert_eq!(ReadSchedule::new(&none, &d, 1, 0, 1, 0, 100 * S).count(), 0);
    }

    #[test]
    fn zipf_and_recent_choices() {
        let (r, d) = fast();
        let n = 200;
        let mut ranks = vec![0u64; n];
        let mut zipf_draws = 0u64;
        for e in ReadSchedule::new(&r, &d, 5, 0, 1, 0, 1000 * S).take(100_000) {
            let i = e.pick_finished(0, n).unwrap();
            ranks[i] += 1;
            zipf_draws += 1;
            // With recent matches, the recent class picks only among them.
            if e.recent {
                assert!(e.pick_finished(10, n).unwrap() < 10);
            }
        }
        // Zipf(1) over 200: P(rank k) = 1 / (k · H_200), H_200 ≈ 5.878.
        let h: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        for k in [1usize, 2, 3, 10, 50] {
            let want = zipf_draws as f64 / (k as f64 * h);
            let got = ranks[k - 1] as f64;
            assert!(
                (got - want).abs() < 4.0 * want.sqrt() + want * 0.02,
                "rank {k}: {got} vs {want}"
            );
        }
        let e = ReadSchedule::new(&r, &d, 5, 0, 1, 0, 1000 * S)
            .next()
            .unwrap();
        assert_eq!(e.pick_finished(0, 0), None);
        assert_eq!(e.pick_finished(0, 1), Some(0));
        // Uniform picks cover the range evenly.
        let mut hits = [0u32; 4];
        for e in ReadSchedule::new(&r, &d, 9, 0, 1, 0, 1000 * S).take(40_000) {
            hits[e.pick_uniform(4)] += 1;
        }
        assert!(
            hits.iter().all(|&h| (9_400..=10_600).contains(&h)),
            "{hits:?}"
        );
    }

    #[test]
    fn viewers_and_prefill_split_by_owner() {
        let r = ReadParams {
            live_viewers: 20,
            prefill_matches: 10,
            ..ReadParams::default()
        };
        let v: Vec<u32> = (0..3).map(|w| r.viewers_of(w, 3)).collect();
        assert_eq!(v, vec![7, 7, 6]);
        let mut all: Vec<u64> = (0..3).flat_map(|w| r.prefill_ids(w, 3)).collect();
        for w in 0..3u32 {
            assert!(r.prefill_ids(w, 3).all(|id| (id - 1) % 3 == u64::from(w)));
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..10).map(|k| PREFILL_ID_BASE + k).collect::<Vec<_>>()
        );
    }
}
