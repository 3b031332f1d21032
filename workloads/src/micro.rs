//! fio-style micro patterns, run closed loop at a fixed queue depth.
//!
//! `rw`, `bs_bytes`, `iodepth` and `file_size_bytes` mean what fio's `rw`, `bs`, `iodepth` and
//! `size` mean, so an engine can be checked against `fio --ioengine=<peer>` on the same file.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::seed;

/// The access pattern (fio's `rw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// Sequential reads (`read`).
    Read,
    /// Sequential writes (`write`).
    Write,
    /// Uniformly random, block-aligned reads (`randread`).
    RandRead,
    /// Uniformly random, block-aligned writes (`randwrite`).
    RandWrite,
}

impl Rw {
    /// Every pattern, in the order of its names in [`Rw::NAMES`].
    pub const ALL: [Rw; 4] = [Rw::Read, Rw::Write, Rw::RandRead, Rw::RandWrite];

    /// The fio names of the patterns: `read`, `write`, `randread`, `randwrite`.
    pub const NAMES: [&'static str; 4] = ["read", "write", "randread", "randwrite"];

    /// True for `read` and `randread`.
    pub fn is_read(self) -> bool {
        matches!(self, Rw::Read | Rw::RandRead)
    }

    /// True for `randread` and `randwrite`.
    pub fn is_random(self) -> bool {
        matches!(self, Rw::RandRead | Rw::RandWrite)
    }

    /// The fio name of the pattern (as accepted by [`FromStr`] and written by serde).
    pub fn name(self) -> &'static str {
        match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
        }
    }
}

impl fmt::Display for Rw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rw {
    type Err = String;

    /// Parses a fio pattern name; the error lists the valid names.
    fn from_str(s: &str) -> Result<Rw, String> {
        Rw::ALL
            .into_iter()
            .find(|rw| rw.name() == s)
            .ok_or_else(|| {
                format!(
                    "rw {s:?} is not a pattern; valid patterns are {}",
                    Rw::NAMES.join(", ")
                )
            })
    }
}

/// Parameters of a micro run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MicroParams {
    /// The access pattern.
    pub rw: Rw,
    /// Bytes per I/O (fio's `bs`); offsets are multiples of it.
    pub bs_bytes: u32,
    /// I/Os kept in flight per worker (closed loop), 1..=4096.
    pub iodepth: u32,
    /// Size of the file the I/Os address, a multiple of `bs_bytes`.
    pub file_size_bytes: u64,
    /// I/Os handed to the kernel per submit call (fio's `iodepth_batch_submit`, default 1 like
    /// fio's: each I/O is submitted as soon as its slot frees); 0 submits every free slot in one
    /// call, together with the wait for completions (fewer syscalls, later first submission).
    pub iodepth_batch: u32,
    // -- issue 10: micro --
    /// Random patterns visit every block once per pass, in a seeded order, before any block
    /// repeats (fio's random map; `false` is fio's `norandommap`: uniform draws with repeats).
    pub random_map: bool,
}

impl Default for MicroParams {
    /// `randread`, 4 KiB blocks, queue depth 32, a 1 GiB file.
    fn default() -> MicroParams {
        MicroParams {
            rw: Rw::RandRead,
            bs_bytes: 4096,
            iodepth: 32,
            file_size_bytes: 1 << 30,
            iodepth_batch: 1,
            random_map: true,
        }
    }
}

/// Largest accepted `iodepth`.
pub const MAX_IODEPTH: u32 = 4096;

impl MicroParams {
    /// Checks every field; the error is one sentence naming the field, its value and the valid
    /// range.
    pub fn validate(&self) -> Result<(), String> {
        if self.bs_bytes == 0 {
            return Err("bs_bytes 0 is invalid; it must be at least 1".to_string());
        }
        if !(1..=MAX_IODEPTH).contains(&self.iodepth) {
            return Err(format!(
                "iodepth {} is out of range; it must be in 1..={MAX_IODEPTH}",
                self.iodepth
            ));
        }
        if self.iodepth_batch > self.iodepth {
            return Err(format!(
                "iodepth_batch {} is larger than iodepth {}; it must be in 0..=iodepth",
                self.iodepth_batch, self.iodepth
            ));
        }
        let bs = u64::from(self.bs_bytes);
        if self.file_size_bytes < bs {
            return Err(format!(
                "file_size_bytes {} is smaller than bs_bytes {}; it must hold at least one block",
                self.file_size_bytes, self.bs_bytes
            ));
        }
        if self.file_size_bytes % bs != 0 {
            return Err(format!(
                "file_size_bytes {} is not a multiple of bs_bytes {}; use {} or {}",
                self.file_size_bytes,
                self.bs_bytes,
                self.file_size_bytes / bs * bs,
                (self.file_size_bytes / bs + 1) * bs
            ));
        }
        Ok(())
    }

    /// Number of `bs_bytes` blocks in the file (at least 1, even for invalid parameters).
    pub fn blocks(&self) -> u64 {
        (self.file_size_bytes / u64::from(self.bs_bytes.max(1))).max(1)
    }
}

/// The offsets one worker issues, in order (closed loop: the caller takes the next offset whenever
/// a slot of its queue depth frees up).
///
/// Sequential patterns walk `0, bs, 2·bs, …` and wrap to 0 after the last block. Random ones,
/// with `random_map` (the default), visit every block exactly once per pass in an order drawn
/// from the seed's stream [`seed::STREAM_MICRO_BASE`]` + worker` (a fresh order each pass, like
/// fio's random map); without it they are uniform draws with repeats (fio's `norandommap`).
/// Amortised O(1) per offset, no allocation.
#[derive(Clone, Debug)]
pub struct MicroOffsets {
    random: bool,
    bs_bytes: u64,
    blocks: u64,
    next_block: u64,
    rng: Pcg64Mcg,
    map: Option<BlockPermutation>,
}

/// A seeded permutation of `0..blocks` computed one index at a time, without a table: a
/// bijection of `0..2^k` (the smallest power of two ≥ `blocks`) built from invertible steps —
/// `x·a + c` with `a` odd, and `x ^ (x >> s)` — all modulo `2^k`, walked in counter order;
/// values ≥ `blocks` are skipped (fewer than half of all values, so < 1 skip per block on
/// average). A new pass draws new constants.
#[derive(Clone, Debug)]
struct BlockPermutation {
    blocks: u64,
    mask: u64,
    shift: u32,
    mul: [u64; 2],
    add: [u64; 2],
    counter: u64,
}

impl BlockPermutation {
    fn new(blocks: u64, rng: &mut Pcg64Mcg) -> BlockPermutation {
        let blocks = blocks.max(1);
        let size = blocks.checked_next_power_of_two().unwrap_or(1 << 63);
        let bits = size.trailing_zeros();
        let mut p = BlockPermutation {
            blocks,
            mask: size - 1,
            shift: (bits / 2).max(1),
            mul: [1; 2],
            add: [0; 2],
            counter: 0,
        };
        p.reseed(rng);
        p
    }

    fn reseed(&mut self, rng: &mut Pcg64Mcg) {
        for i in 0..2 {
            self.mul[i] = rng.random::<u64>() | 1;
            self.add[i] = rng.random::<u64>();
        }
        self.counter = 0;
    }

    /// The bijection of `0..=mask`.
    #[inline]
    fn permute(&self, i: u64) -> u64 {
        let mut x = i;
        for r in 0..2 {
            x = x.wrapping_mul(self.mul[r]).wrapping_add(self.add[r]) & self.mask;
            x ^= x >> self.shift;
        }
        x
    }

    /// The next block of this pass; starts a new pass (new order) after the last.
    #[inline]
    fn next_block(&mut self, rng: &mut Pcg64Mcg) -> u64 {
        loop {
            if self.counter > self.mask {
                self.reseed(rng);
            }
            let x = self.permute(self.counter);
            self.counter += 1;
            if x < self.blocks {
                return x;
            }
        }
    }
}

impl MicroOffsets {
    /// The offset stream of `worker` for `p` under `seed`.
    ///
    /// `p` should have passed [`MicroParams::validate`]; for invalid parameters the stream is
    /// still well defined (a zero block size counts as 1, a file smaller than a block as one
    /// block) and never panics.
    pub fn new(p: &MicroParams, seed: u64, worker: u32) -> MicroOffsets {
        let mut rng = seed::rng_for(
            seed,
            seed::STREAM_MICRO_BASE.wrapping_add(u64::from(worker)),
        );
        let random = p.rw.is_random();
        let map = (random && p.random_map).then(|| BlockPermutation::new(p.blocks(), &mut rng));
        MicroOffsets {
            random,
            bs_bytes: u64::from(p.bs_bytes.max(1)),
            blocks: p.blocks(),
            next_block: 0,
            rng,
            map,
        }
    }

    /// The byte offset of the next I/O: a multiple of `bs_bytes`, below the file size.
    #[inline]
    pub fn next_offset(&mut self) -> u64 {
        let block = if let Some(map) = &mut self.map {
            map.next_block(&mut self.rng)
        } else if self.random {
            self.rng.random_range(0..self.blocks)
        } else {
            let b = self.next_block;
            self.next_block = if b + 1 >= self.blocks { 0 } else { b + 1 };
            b
        };
        block * self.bs_bytes
    }
}

impl Iterator for MicroOffsets {
    type Item = u64;

    /// Always `Some`: the stream is endless.
    #[inline]
    fn next(&mut self) -> Option<u64> {
        Some(self.next_offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rw: Rw, bs: u32, size: u64) -> MicroParams {
        MicroParams {
            rw,
            bs_bytes: bs,
            iodepth: 8,
            file_size_bytes: size,
            iodepth_batch: 1,
            random_map: true,
        }
    }

    #[test]
    fn default_is_valid_randread_4k_qd32_1g() {
        let p = MicroParams::default();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.rw, Rw::RandRead);
        assert_eq!(
            (p.bs_bytes, p.iodepth, p.file_size_bytes),
            (4096, 32, 1 << 30)
        );
    }

    #[test]
    fn names_parse_display_and_serde_agree() {
        for (rw, name) in Rw::ALL.into_iter().zip(Rw::NAMES) {
            assert_eq!(rw.to_string(), name);
            assert_eq!(name.parse::<Rw>(), Ok(rw));
            assert_eq!(serde_json::to_string(&rw).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<Rw>(&format!("\"{name}\"")).unwrap(),
                rw
            );
        }
        let err = "randrw".parse::<Rw>().unwrap_err();
        assert!(err.contains("randrw"), "{err}");
        for name in Rw::NAMES {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn classification() {
        assert!(Rw::Read.is_read() && !Rw::Read.is_random());
        assert!(!Rw::Write.is_read() && !Rw::Write.is_random());
        assert!(Rw::RandRead.is_read() && Rw::RandRead.is_random());
        assert!(!Rw::RandWrite.is_read() && Rw::RandWrite.is_random());
    }

    #[test]
    fn validate_rejects_bad_values_naming_the_field() {
        let ok = params(Rw::Write, 4096, 1 << 20);
        assert_eq!(ok.validate(), Ok(()));
        let cases: [(MicroParams, &str); 6] = [
            (
                MicroParams {
                    bs_bytes: 0,
                    ..ok.clone()
                },
                "bs_bytes",
            ),
            (
                MicroParams {
                    iodepth: 0,
                    ..ok.clone()
                },
                "iodepth",
            ),
            (
                MicroParams {
                    iodepth: 4097,
                    ..ok.clone()
                },
                "iodepth",
            ),
            (
                MicroParams {
                    iodepth_batch: ok.iodepth + 1,
                    ..ok.clone()
                },
                "iodepth_batch",
            ),
            (
                MicroParams {
                    file_size_bytes: 2048,
                    ..ok.clone()
                },
                "file_size_bytes",
            ),
            (
                MicroParams {
                    file_size_bytes: 4096 * 3 + 1,
                    ..ok.clone()
                },
                "file_size_bytes",
            ),
        ];
        for (p, field) in cases {
            let err = p.validate().expect_err(field);
            assert!(err.starts_with(field), "{err}");
        }
    }

    #[test]
    fn sequential_walks_and_wraps() {
        for rw in [Rw::Read, Rw::Write] {
            let p = params(rw, 4096, 4096 * 4);
            let got: Vec<u64> = MicroOffsets::new(&p, 1, 0).take(10).collect();
            let want: Vec<u64> = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
                .iter()
                .map(|b| b * 4096)
                .collect();
            assert_eq!(got, want);
        }
        // A one-block file always gives offset 0.
        let p = params(Rw::Read, 512, 512);
        assert!(MicroOffsets::new(&p, 1, 0).take(5).all(|o| o == 0));
    }

    #[test]
    fn random_map_covers_every_block_once_per_pass() {
        // Sizes around powers of two, where the skipped share is largest or zero.
        for blocks in [1u64, 2, 3, 63, 64, 65, 1000, 4097] {
            let p = params(Rw::RandRead, 512, 512 * blocks);
            let mut o = MicroOffsets::new(&p, 7, 1);
            let mut passes = Vec::new();
            for _ in 0..3 {
                let mut seen = vec![0u32; blocks as usize];
                let mut order = Vec::with_capacity(blocks as usize);
                for _ in 0..blocks {
                    let off = o.next_offset();
                    assert_eq!(off % 512, 0);
                    seen[(off / 512) as usize] += 1;
                    order.push(off);
                }
                assert!(seen.iter().all(|&n| n == 1), "{blocks} blocks: {seen:?}");
                passes.push(order);
            }
            if blocks >= 63 {
                // Each pass is a fresh order, and not the sequential one.
                assert_ne!(passes[0], passes[1]);
                assert!(passes[0].windows(2).any(|w| w[1] != w[0] + 512));
            }
        }
    }

    #[test]
    fn random_offsets_aligned_in_range_and_cover_the_file() {
        let p = MicroParams {
            random_map: false,
            ..params(Rw::RandWrite, 4096, 4096 * 64)
        };
        let mut seen = [0u32; 64];
        for off in MicroOffsets::new(&p, 9, 3).take(64_000) {
            assert_eq!(off % 4096, 0);
            assert!(off + 4096 <= p.file_size_bytes);
            seen[(off / 4096) as usize] += 1;
        }
        // Uniform: each of the 64 blocks expects 1000 hits (sd ≈ 31).
        for (block, &n) in seen.iter().enumerate() {
            assert!((850..=1150).contains(&n), "block {block} hit {n} times");
        }
    }

    #[test]
    fn random_is_deterministic_per_seed_and_worker() {
        let p = params(Rw::RandRead, 4096, 1 << 30);
        let run =
            |seed, worker| -> Vec<u64> { MicroOffsets::new(&p, seed, worker).take(100).collect() };
        assert_eq!(run(5, 0), run(5, 0));
        assert_ne!(run(5, 0), run(6, 0));
        assert_ne!(run(5, 0), run(5, 1));
    }

    #[test]
    fn invalid_params_do_not_panic() {
        let p = params(Rw::RandRead, 0, 0);
        assert!(p.validate().is_err());
        let mut o = MicroOffsets::new(&p, 1, 0);
        assert_eq!(o.next_offset(), 0);
        let p = params(Rw::Read, 0, 0);
        assert_eq!(MicroOffsets::new(&p, 1, 0).next_offset(), 0);
    }
}
