//! Seeded random-number helpers.
//!
//! Every random stream of a workload is derived from the run's seed and a *stream number* with
//! [`rng_for`], so that each stream is independent of how work is split across workers:
//!
//! | stream | used for |
//! |---|---|
//! | [`STREAM_ARRIVALS`] (0) | the DS model's match-arrival process |
//! | `match_id` (1, 2, …) | everything random about one DS match |
//! | [`STREAM_MICRO_BASE`] `+ worker` | the offsets of one micro-pattern worker |
//! | [`STREAM_READS_BASE`] `+ worker` | the one-shot replay reads of one DS worker |

use rand_pcg::Pcg64Mcg;

/// Stream number of the DS model's global match-arrival process (match ids start at 1).
pub const STREAM_ARRIVALS: u64 = 0;

/// First stream number of the micro patterns: worker `w` uses `STREAM_MICRO_BASE + w`.
pub const STREAM_MICRO_BASE: u64 = 1 << 63;

/// First stream number of the DS read side: worker `w` uses `STREAM_READS_BASE + w`.
pub const STREAM_READS_BASE: u64 = (1 << 63) + (1 << 62);

/// One step of SplitMix64 (Steele, Lea and Flood, 2014): a bijective 64-bit mixer.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random generator of stream `stream` under seed `seed`.
///
/// The 128-bit PCG state is built from SplitMix64 mixing of `seed` and `stream`; for a fixed seed,
/// distinct streams get distinct states. Cheap (no allocation), so one generator per match is fine.
#[inline]
pub fn rng_for(seed: u64, stream: u64) -> Pcg64Mcg {
    let hi = splitmix64(seed ^ splitmix64(stream));
    let lo = splitmix64(hi ^ 0x6A09_E667_F3BC_C908);
    Pcg64Mcg::new((u128::from(hi) << 64) | u128::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn splitmix_known_values() {
        // Reference outputs of SplitMix64 seeded with 0: the first two values of the sequence.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_and_stream_repeat() {
        let a: Vec<u64> = rng_for(42, 7).random_iter().take(16).collect();
        let b: Vec<u64> = rng_for(42, 7).random_iter().take(16).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn streams_and_seeds_differ() {
        let first = |seed, stream| rng_for(seed, stream).random::<u64>();
        assert_ne!(first(42, 1), first(42, 2));
        assert_ne!(first(42, 1), first(43, 1));
        assert_ne!(first(0, 0), first(0, 1));
    }
}
