//! The capacity search as a sans-I/O state machine: it says which load (`matches`) to try
//! next, takes the step's pass/fail verdict, and ends with a bracket [last pass, first fail].
//!
//! It grows exponentially from `start` (×`growth`, capped at `max`) until the first failing
//! step, then bisects between the last pass and the first fail until their gap is at most
//! `resolution` of the last pass (or 1). It ends early when `max` passes (capacity ≥ `max`) or
//! when `start` fails (no passing load found).

/// How a search grows and when it stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchConfig {
    /// First load tried.
    pub start: u32,
    /// Growth factor between steps before the first fail (> 1).
    pub growth: f64,
    /// Upper bound: a pass here ends the search (capacity ≥ max).
    pub max: u32,
    /// Bisection stops when first_fail − last_pass ≤ this share of last_pass (or ≤ 1).
    pub resolution: f64,
}

impl SearchConfig {
    /// Checks the configuration; the error is one line naming the problem and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.start < 1 {
            return Err("--start must be at least 1".into());
        }
        if !(self.growth.is_finite() && self.growth > 1.0) {
            return Err(format!(
                "--growth {} must be a number above 1 (e.g. 2)",
                self.growth
            ));
        }
        if self.max < self.start {
            return Err(format!(
                "--max {} is below --start {}; give a larger --max",
                self.max, self.start
            ));
        }
        if !(self.resolution.is_finite() && self.resolution >= 0.0) {
            return Err("the search resolution must be a non-negative number".into());
        }
        Ok(())
    }
}

/// How a search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Capacity lies in [last_pass, first_fail).
    Bracket {
        /// Largest load that passed.
        last_pass: u32,
        /// Smallest load that failed.
        first_fail: u32,
    },
    /// The upper bound passed: capacity ≥ `last_pass` (= max).
    AtLeastMax {
        /// The upper bound, which passed.
        last_pass: u32,
    },
    /// The start failed: capacity < `first_fail` (= start), nothing passed.
    StartFails {
        /// The start, which failed.
        first_fail: u32,
    },
}

impl Outcome {
    /// The last passing load, if any.
    pub fn last_pass(&self) -> Option<u32> {
        match *self {
            Outcome::Bracket { last_pass, .. } | Outcome::AtLeastMax { last_pass } => {
                Some(last_pass)
            }
            Outcome::StartFails { .. } => None,
        }
    }

    /// The first failing load, if any.
    pub fn first_fail(&self) -> Option<u32> {
        match *self {
            Outcome::Bracket { first_fail, .. } | Outcome::StartFails { first_fail } => {
                Some(first_fail)
            }
            Outcome::AtLeastMax { .. } => None,
        }
    }
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run a step at this load and [`Search::record`] its verdict.
    Try(u32),
    /// The search is over.
    Done(Outcome),
}

/// The search's state: the bracket so far.
#[derive(Clone, Debug)]
pub struct Search {
    cfg: SearchConfig,
    last_pass: Option<u32>,
    first_fail: Option<u32>,
    steps: u32,
}

impl Search {
    /// A search with a validated configuration.
    pub fn new(cfg: SearchConfig) -> Result<Search, String> {
        cfg.validate()?;
        Ok(Search {
            cfg,
            last_pass: None,
            first_fail: None,
            steps: 0,
        })
    }

    /// The largest load that passed so far.
    pub fn last_pass(&self) -> Option<u32> {
        self.last_pass
    }

    /// The smallest load that failed so far.
    pub fn first_fail(&self) -> Option<u32> {
        self.first_fail
    }

    /// Steps recorded so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The next load to try, or the outcome.
    pub fn next(&self) -> Next {
        let c = &self.cfg;
        match (self.last_pass, self.first_fail) {
            (None, None) => Next::Try(c.start),
            (None, Some(f)) => Next::Done(Outcome::StartFails { first_fail: f }),
            (Some(p), None) if p >= c.max => Next::Done(Outcome::AtLeastMax { last_pass: p }),
            (Some(p), None) => {
                let grown = (f64::from(p) * c.growth).ceil();
                let grown = if grown >= f64::from(c.max) {
                    c.max
                } else {
                    grown as u32
                };
                Next::Try(grown.max(p + 1).min(c.max))
            }
            (Some(p), Some(f)) => {
                debug_assert!(p < f, "last pass {p} below first fail {f}");
                let gap = f - p;
                if gap <= 1 || f64::from(gap) <= c.resolution * f64::from(p) {
                    Next::Done(Outcome::Bracket {
                        last_pass: p,
                        first_fail: f,
                    })
                } else {
                    Next::Try(p + gap / 2)
                }
            }
        }
    }

    /// Records the verdict of the step at `load` (the value [`next`](Search::next) gave).
    pub fn record(&mut self, load: u32, pass: bool) {
        debug_assert_eq!(
            self.next(),
            Next::Try(load),
            "recorded a load not asked for"
        );
        self.steps += 1;
        if pass {
            self.last_pass = Some(self.last_pass.map_or(load, |p| p.max(load)));
        } else {
            self.first_fail = Some(self.first_fail.map_or(load, |f| f.min(load)));
        }
        if let (Some(p), Some(f)) = (self.last_pass, self.first_fail) {
            debug_assert!(p < f, "non-monotone verdicts: {p} passed, {f} failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(start: u32, growth: f64, max: u32) -> SearchConfig {
        SearchConfig {
            start,
            growth,
            max,
            resolution: 0.05,
        }
    }

    /// Runs a search against a monotone threshold: loads ≤ `t` pass.
    fn run(c: SearchConfig, t: u32) -> (Outcome, u32, Vec<u32>) {
        let mut s = Search::new(c).unwrap();
        let mut tried = Vec::new();
        loop {
            match s.next() {
                Next::Try(n) => {
                    assert!(!tried.contains(&n), "tried {n} twice: {tried:?}");
                    assert!(n >= 1 && n <= c.max, "{n} outside 1..={}", c.max);
                    tried.push(n);
                    s.record(n, n <= t);
                }
                Next::Done(o) => return (o, s.steps(), tried),
            }
            assert!(tried.len() < 10_000, "does not end: {tried:?}");
        }
    }

    #[test]
    fn grows_then_bisects() {
        let (o, steps, tried) = run(cfg(100, 2.0, 100_000), 700);
        assert_eq!(&tried[..4], &[100, 200, 400, 800]);
        match o {
            Outcome::Bracket {
                last_pass,
                first_fail,
            } => {
                assert!(last_pass <= 700 && 700 < first_fail, "{o:?}");
                assert!(f64::from(first_fail - last_pass) <= 0.05 * f64::from(last_pass));
            }
            _ => panic!("{o:?}"),
        }
        assert_eq!(steps as usize, tried.len());
    }

    #[test]
    fn start_failing_and_max_passing_end_the_search() {
        assert_eq!(
            run(cfg(100, 2.0, 1000), 50).0,
            Outcome::StartFails { first_fail: 100 }
        );
        let (o, _, tried) = run(cfg(100, 2.0, 1000), 5000);
        assert_eq!(o, Outcome::AtLeastMax { last_pass: 1000 });
        assert_eq!(tried, [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn growth_always_moves_up_by_at_least_one() {
        let (o, _, tried) = run(cfg(1, 1.01, 5), 3);
        assert_eq!(tried, [1, 2, 3, 4]);
        assert_eq!(
            o,
            Outcome::Bracket {
                last_pass: 3,
                first_fail: 4
            }
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(Search::new(cfg(0, 2.0, 10)).is_err());
        assert!(Search::new(cfg(1, 1.0, 10)).is_err());
        assert!(Search::new(cfg(1, f64::NAN, 10)).is_err());
        assert!(Search::new(cfg(20, 2.0, 10)).is_err());
    }

    /// xorshift64*: a small seeded PRNG for the randomised test.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn the_bracket_always_contains_the_threshold() {
        let mut st = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let start = 1 + (rng(&mut st) % 500) as u32;
            let growth = 1.1 + (rng(&mut st) % 400) as f64 / 100.0;
            let max = start + (rng(&mut st) % 200_000) as u32;
            let c = SearchConfig {
                start,
                growth,
                max,
                resolution: (rng(&mut st) % 20) as f64 / 100.0,
            };
            let t = (rng(&mut st) % (2 * u64::from(max) + 2)) as u32;
            let (o, steps, _) = run(c, t);
            match o {
                Outcome::StartFails { first_fail } => {
                    assert!(t < start && first_fail == start, "{c:?} t={t} {o:?}")
                }
                Outcome::AtLeastMax { last_pass } => {
                    assert!(t >= max && last_pass == max, "{c:?} t={t} {o:?}")
                }
                Outcome::Bracket {
                    last_pass,
                    first_fail,
                } => {
                    assert!(last_pass <= t && t < first_fail, "{c:?} t={t} {o:?}");
                    let gap = f64::from(first_fail - last_pass);
                    assert!(
                        gap <= 1.0 || gap <= c.resolution * f64::from(last_pass),
                        "{c:?} {o:?}"
                    );
                }
            }
            // Growth steps (the +1 floor while the load is below 1/(growth − 1)), then at most
            // one bisection per bit of the gap.
            let grow =
                (f64::from(max) / f64::from(start)).ln() / growth.ln() + 1.0 / (growth - 1.0);
            assert!(
                f64::from(steps) <= grow + 2.0 + 33.0,
                "{c:?} t={t}: {steps} steps"
            );
        }
    }
}
