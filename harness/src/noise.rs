//! The one noise rule of the project: when two sets of repeats are "different".
//!
//! Every comparison (search steps, `compare`, claims, the README) draws its verdict here:
//! at least [`MIN_REPEATS`] interleaved repeats on each side; two configurations differ only
//! when their min..max ranges are disjoint **and** their medians are at least
//! [`MIN_MEDIAN_GAP`] apart (relative to the smaller median); otherwise they are within noise.

use crate::results::median_min_max;

/// Fewest repeats per side for a verdict; with fewer, [`compare`] says [`Verdict::Inconclusive`].
pub const MIN_REPEATS: usize = 5;

/// Smallest relative gap between medians (0.03 = 3 %) for two configurations to differ.
pub const MIN_MEDIAN_GAP: f64 = 0.03;

/// Median, min, max and count of one configuration's repeats (NaN values ignored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median of the values.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Number of values counted (NaN excluded).
    pub n: usize,
}

impl Spread {
    /// The spread of `values`, NaN ignored; `None` when no value is left.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let (median, min, max) = median_min_max(values)?;
        let n = values.iter().filter(|v| !v.is_nan()).count();
        Some(Spread {
            median,
            min,
            max,
            n,
        })
    }
}

/// How configuration `a` compares with `b` under the noise rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `a` is lower than `b`, beyond noise.
    Lower,
    /// `a` is higher than `b`, beyond noise.
    Higher,
    /// Ranges overlap or medians are less than [`MIN_MEDIAN_GAP`] apart.
    WithinNoise,
    /// Fewer than [`MIN_REPEATS`] repeats on a side: no verdict may be drawn.
    Inconclusive,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Lower => "lower",
            Verdict::Higher => "higher",
            Verdict::WithinNoise => "within noise",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// Compares `a` with `b` under the noise rule (see the module documentation).
pub fn compare(a: &Spread, b: &Spread) -> Verdict {
    if a.n < MIN_REPEATS || b.n < MIN_REPEATS {
        return Verdict::Inconclusive;
    }
    let disjoint = a.max < b.min || b.max < a.min;
    let smaller = a.median.abs().min(b.median.abs());
    let gap = (a.median - b.median).abs();
    // Relative to the smaller median; two zero medians are never apart.
    let apart = gap > 0.0 && gap >= MIN_MEDIAN_GAP * smaller;
    if !(disjoint && apart) {
        Verdict::WithinNoise
    } else if a.median < b.median {
        Verdict::Lower
    } else {
        Verdict::Higher
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[f64]) -> Spread {
        Spread::of(v).unwrap()
    }

    #[test]
    fn spread_ignores_nan() {
        let sp = s(&[3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!((sp.median, sp.min, sp.max, sp.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn fewer_than_five_repeats_is_inconclusive() {
        let a = s(&[1.0, 1.0, 1.0, 1.0]);
        let b = s(&[9.0, 9.0, 9.0, 9.0, 9.0]);
        assert_eq!(compare(&a, &b), Verdict::Inconclusive);
        assert_eq!(compare(&b, &a), Verdict::Inconclusive);
        // NaN does not count as a repeat.
        let a = s(&[1.0, 1.0, 1.0, 1.0, f64::NAN]);
        assert_eq!(compare(&a, &b), Verdict::Inconclusive);
    }

    #[test]
    fn disjoint_and_apart_differs() {
        let a = s(&[100.0, 101.0, 102.0, 103.0, 104.0]);
        let b = s(&[110.0, 111.0, 112.0, 113.0, 114.0]);
        assert_eq!(compare(&a, &b), Verdict::Lower);
        assert_eq!(compare(&b, &a), Verdict::Higher);
    }

    #[test]
    fn overlapping_ranges_are_within_noise() {
        let a = s(&[100.0, 101.0, 102.0, 103.0, 120.0]);
        let b = s(&[110.0, 111.0, 112.0, 113.0, 114.0]);
        assert_eq!(compare(&a, &b), Verdict::WithinNoise);
    }

    #[test]
    fn disjoint_but_close_medians_are_within_noise() {
        // Disjoint, medians 2 % apart: not different.
        let a = s(&[100.0, 100.0, 100.0, 100.0, 100.0]);
        let b = s(&[102.0, 102.0, 102.0, 102.0, 102.0]);
        assert_eq!(compare(&a, &b), Verdict::WithinNoise);
        // Exactly 3 % apart: different.
        let c = s(&[103.0, 103.0, 103.0, 103.0, 103.0]);
        assert_eq!(compare(&a, &c), Verdict::Lower);
        // Identical zeros are within noise.
        let z = s(&[0.0; 5]);
        assert_eq!(compare(&z, &z), Verdict::WithinNoise);
    }
}
