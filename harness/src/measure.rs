//! Measurement: latency histograms (HdrHistogram, 3 significant digits, nanoseconds) and the
//! counters each worker keeps; merged across workers at the end.

use hdrhistogram::Histogram;

/// Highest latency recorded exactly (1 hour, in ns); larger values are clamped to it.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct LatHist(Histogram<u64>);

impl Default for LatHist {
    fn default() -> Self {
        LatHist::new()
    }
}

impl LatHist {
    /// An empty histogram covering 1 ns .. 1 h at 3 significant digits.
    pub fn new() -> LatHist {
        LatHist(Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid bounds"))
    }

    /// Record one latency (clamped into range; never allocates).
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        let v = ns.clamp(1, MAX_LATENCY_NS);
        // In range by construction, so this cannot fail.
        let _ = self.0.record(v);
    }

    /// Add every sample of `other`.
    pub fn merge(&mut self, other: &LatHist) {
        // Same bounds by construction.
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `q` (0..=1) in microseconds, None when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.0.value_at_quantile(q) as f64 / 1000.0)
    }

    /// Largest sample in microseconds.
    pub fn max_us(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.0.max() as f64 / 1000.0)
    }

    /// Mean in microseconds.
    pub fn mean_us(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.0.mean() / 1000.0)
    }

    /// The underlying HdrHistogram (values in ns), for serializers.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.0
    }

    /// Clear all samples (keeps the allocation).
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// HdrHistogram's percentile distribution text (`.hgrm`), values in microseconds, laid out as
    /// Java HdrHistogram's `outputPercentileDistribution(out, 5, 1000.0)` writes it: a header, one
    /// row per percentile tick (value, percentile, cumulative TotalCount, 1/(1-percentile); the
    /// last row, at percentile 1, without the last column) and a `#[Mean …]`, `#[Max …]`,
    /// `#[Buckets …]` footer.
    pub fn percentile_distribution(&self) -> String {
        use std::fmt::Write;
        let h = &self.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total_count = 0u64;
        for v in h.iter_quantiles(5) {
            total_count += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value_us = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value_us:>12.3} {q:>2.12} {total_count:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value_us:>12.3} {q:>2.12} {total_count:>10}");
            }
        }
        let (mean_us, stdev_us) = if h.is_empty() {
            (0.0, 0.0)
        } else {
            (h.mean() / 1000.0, h.stdev() / 1000.0)
        };
        // The crate keeps `sub_bucket_count` private; its counts array holds
        // (buckets + 1) * sub_bucket_count / 2 entries.
        let sub_buckets = 2 * h.distinct_values() / (usize::from(h.buckets()) + 1);
        let _ = writeln!(
            out,
            "#[Mean    = {mean_us:>12.3}, StdDeviation   = {stdev_us:>12.3}]\n#[Max     = {:>12.3}, Total count    = {:>12}]\n#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
            h.max() as f64 / 1000.0,
            h.len(),
            h.buckets(),
        );
        out
    }
}

/// Summary percentiles of one histogram, in microseconds (None when empty).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, PartialEq)]
pub struct LatSummary {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Maximum.
    pub max_us: Option<f64>,
    /// Mean.
    pub mean_us: Option<f64>,
}

impl LatHist {
    /// Percentile summary.
    pub fn summary(&self) -> LatSummary {
        LatSummary {
            samples: self.count(),
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: self.max_us(),
            mean_us: self.mean_us(),
        }
    }
}

/// Op kinds with their own histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistKind {
    /// Snapshot written (DS, from intended time) or one I/O (micro, from submit).
    Lat = 0,
    /// Snapshot durable and acknowledged (DS, from intended time).
    Ack = 1,
    /// Engine-level write I/O, submit to completion.
    IoWrite = 2,
    /// Engine-level sync (fdatasync), submit to completion.
    IoSync = 3,
    /// Engine-level read I/O (replays), submit to completion.
    IoRead = 4,
    /// Replay read: time to first byte, from the read's intended request time.
    ReadTtfb = 5,
    /// Replay read: time to the whole replay (or, for a live tail, to the edge published at
    /// the request), from the intended request time.
    ReadFull = 6,
    /// Live viewers: from the writer publishing new bytes to the viewer having read them.
    ReadTail = 7,
}

/// Number of histogram kinds.
pub const N_HISTS: usize = 8;

/// Every histogram kind, in order.
pub const HIST_KINDS: [HistKind; N_HISTS] = [
    HistKind::Lat,
    HistKind::Ack,
    HistKind::IoWrite,
    HistKind::IoSync,
    HistKind::IoRead,
    HistKind::ReadTtfb,
    HistKind::ReadFull,
    HistKind::ReadTail,
];

impl HistKind {
    /// File-name-safe name.
    pub fn name(self) -> &'static str {
        match self {
            HistKind::Lat => "lat",
            HistKind::Ack => "ack",
            HistKind::IoWrite => "io_write",
            HistKind::IoSync => "io_sync",
            HistKind::IoRead => "io_read",
            HistKind::ReadTtfb => "read_ttfb",
            HistKind::ReadFull => "read_full",
            HistKind::ReadTail => "read_tail",
        }
    }
}

/// The histograms of the current second of one worker, by kind (for the `.hlog` interval
/// logs): the same samples as the window's histograms, by the second they were recorded in
/// (their completion). [`crate::driver::Ticker`] moves them into each second's tick; a
/// histogram is allocated at a second's first sample of its kind (once per second and kind,
/// never per I/O), and the main thread compresses each finished second, so memory does not
/// grow with the window.
#[derive(Clone, Debug, Default)]
pub struct SecondHists {
    /// Keep them at all (off unless a driver turns it on).
    pub on: bool,
    /// This second's histograms, by [`HistKind`].
    pub hists: [Option<LatHist>; N_HISTS],
}

impl SecondHists {
    /// Kept from the start.
    pub fn on() -> SecondHists {
        SecondHists {
            on: true,
            ..Default::default()
        }
    }

    /// Record one sample of `kind` in this second.
    #[inline]
    pub fn record(&mut self, kind: HistKind, lat_ns: u64) {
        if self.on {
            self.hists[kind as usize]
                .get_or_insert_with(LatHist::new)
                .record_ns(lat_ns);
        }
    }

    /// Take this second's histograms (the next second starts empty).
    pub fn take(&mut self) -> [Option<LatHist>; N_HISTS] {
        std::mem::take(&mut self.hists)
    }

    /// Add `other`'s histograms (another worker's of the same second).
    pub fn merge_into(into: &mut [Option<LatHist>; N_HISTS], other: &[Option<LatHist>; N_HISTS]) {
        for (a, b) in into.iter_mut().zip(other.iter()) {
            if let Some(b) = b {
                a.get_or_insert_with(LatHist::new).merge(b);
            }
        }
    }
}

/// One run's interval histograms: for each kind, the run seconds (since the run's start, as in
/// timeseries.csv) that recorded samples of the window, each as a compressed V2 histogram
/// (HdrHistogram's `V2DeflateSerializer`, values in ns).
#[derive(Clone, Debug, Default)]
pub struct Intervals {
    by_kind: [Vec<(u64, Vec<u8>)>; N_HISTS],
}

impl Intervals {
    /// Compress and add second `second`'s histograms (kinds without samples are skipped).
    pub fn push(&mut self, second: u64, hists: &[Option<LatHist>; N_HISTS]) {
        use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
        let mut ser = V2DeflateSerializer::new();
        for (k, h) in hists.iter().enumerate() {
            let Some(h) = h.as_ref().filter(|h| h.count() > 0) else {
                continue;
            };
            let mut bytes = Vec::new();
            // Serializing into a Vec cannot fail for a valid histogram; a failure would only
            // leave this second out of the .hlog (its samples stay in the .hgrm and summary).
            if ser.serialize(&h.0, &mut bytes).is_ok() {
                self.by_kind[k].push((second, bytes));
            }
        }
    }

    /// Put every kind's seconds in order.
    pub fn sort(&mut self) {
        for v in &mut self.by_kind {
            v.sort_by_key(|(sec, _)| *sec);
        }
    }

    /// The seconds of `kind` in order, each (second since the run's start, compressed V2
    /// histogram).
    pub fn of(&self, kind: HistKind) -> &[(u64, Vec<u8>)] {
        &self.by_kind[kind as usize]
    }

    /// Decode one compressed histogram of [`Intervals::of`].
    pub fn decode(bytes: &[u8]) -> Option<Histogram<u64>> {
        hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .ok()
    }
}

/// Counters and histograms of one worker (or, merged, of one run) over the measured window.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Histograms indexed by [`HistKind`].
    pub hists: [LatHist; N_HISTS],
    /// Snapshots written (DS) or I/Os completed (micro) in the window.
    pub ops: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Engine-level I/Os (writes and reads) completed in the window.
    pub io_ops: u64,
    /// Their bytes.
    pub io_bytes: u64,
    /// Engine-level syncs completed in the window.
    pub io_syncs: u64,
    /// I/O errors (any time in the run).
    pub errors: u64,
    /// Largest lag behind schedule seen, ns.
    pub max_lag_ns: u64,
    /// Replay reads completed whose intended time lies in the window (one-shot reads and live
    /// viewers' catch-ups to the edge of a match).
    pub reads: u64,
    /// Bytes of those reads delivered to the reader (the requested ranges, not the padded I/O).
    pub read_bytes: u64,
    /// Live viewers' follow-up reads in the window (after catching up).
    pub tail_reads: u64,
    /// Their bytes.
    pub tail_read_bytes: u64,
    /// Reads whose data failed verification (any time in the run).
    pub read_errors: u64,
    /// Reads dropped because the worker's queue of waiting reads was full.
    pub reads_dropped: u64,
    /// Reads that found no match to read (nothing finished, or nothing running for a live tail).
    pub reads_no_target: u64,
    // -- issue 10: histograms --
    /// The same samples as `hists`, in the current second only (off unless the driver turns
    /// it on; the ticker sends each second's away).
    pub seconds: SecondHists,
    // -- issue 11: work counters --
    /// Samples recorded through [`Stats::record`] (each goes into two histograms: the window's
    /// and its second's).
    pub hist_records: u64,
}

impl Stats {
    /// Add `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.hists.iter_mut().zip(other.hists.iter()) {
            a.merge(b);
        }
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.io_ops += other.io_ops;
        self.io_bytes += other.io_bytes;
        self.io_syncs += other.io_syncs;
        self.errors += other.errors;
        self.max_lag_ns = self.max_lag_ns.max(other.max_lag_ns);
        self.reads += other.reads;
        self.read_bytes += other.read_bytes;
        self.tail_reads += other.tail_reads;
        self.tail_read_bytes += other.tail_read_bytes;
        self.read_errors += other.read_errors;
        self.reads_dropped += other.reads_dropped;
        self.reads_no_target += other.reads_no_target;
        self.hist_records += other.hist_records;
    }

    /// Record one sample of `kind` (one that belongs to the window): in the window's histogram
    /// and in the current second's.
    #[inline]
    pub fn record(&mut self, kind: HistKind, lat_ns: u64) {
        self.hist_records += 1;
        self.hists[kind as usize].record_ns(lat_ns);
        self.seconds.record(kind, lat_ns);
    }

    /// The histogram of `kind`.
    #[inline]
    pub fn hist(&mut self, kind: HistKind) -> &mut LatHist {
        &mut self.hists[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = LatHist::new();
        let mut b = LatHist::new();
        let mut all = LatHist::new();
        for i in 1..=10_000u64 {
            let v = i * 997 % 5_000_000 + 1;
            if i % 3 == 0 {
                a.record_ns(v)
            } else {
                b.record_ns(v)
            }
            all.record_ns(v);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.count(), 10_000);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.quantile_us(q), all.quantile_us(q), "q={q}");
        }
        assert_eq!(merged.max_us(), all.max_us());
    }

    #[test]
    fn percentiles_within_three_digits() {
        let mut h = LatHist::new();
        for v in 1..=100_000u64 {
            h.record_ns(v * 1000); // 1 us .. 100 ms
        }
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.001, "{p99}");
        let p50 = h.quantile_us(0.5).unwrap();
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.001, "{p50}");
    }

    #[test]
    fn clamps_and_empty() {
        let mut h = LatHist::new();
        assert_eq!(h.quantile_us(0.5), None);
        h.record_ns(0);
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 2);
        assert!(h.max_us().unwrap() >= MAX_LATENCY_NS as f64 / 1000.0 * 0.999);
        let text = h.percentile_distribution();
        assert!(text.contains("Total count"));
    }

    /// Parses an `.hgrm` as HdrHistogram's readers do: (value, percentile, total count) rows.
    fn parse_hgrm(text: &str) -> (Vec<(f64, f64, u64)>, Vec<&str>) {
        let mut rows: Vec<(f64, f64, u64)> = Vec::new();
        let mut footer = Vec::new();
        for line in text.lines().skip(2) {
            if line.starts_with("#[") {
                footer.push(line);
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() == 4 || f.len() == 3, "row {line:?}");
            rows.push((
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            ));
            if f.len() == 4 {
                let inv: f64 = f[3].parse().unwrap();
                let want = 1.0 / (1.0 - rows.last().unwrap().1);
                assert!((inv - want).abs() <= 0.01 + want * 1e-9, "{line:?}");
            }
        }
        (rows, footer)
    }

    #[test]
    fn hgrm_is_hdrhistograms_percentile_distribution() {
        let mut h = LatHist::new();
        for i in 1..=10_000u64 {
            h.record_ns(i * 997 % 2_000_000 + 1_000);
        }
        let text = h.percentile_distribution();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let (rows, footer) = parse_hgrm(&text);
        assert!(rows.len() > 20, "{text}");
        for w in rows.windows(2) {
            assert!(w[0].2 <= w[1].2, "TotalCount decreases: {w:?}");
            assert!(w[0].0 <= w[1].0 && w[0].1 <= w[1].1, "{w:?}");
        }
        let last = rows.last().unwrap();
        assert_eq!(last.2, 10_000, "TotalCount ends at the total");
        assert_eq!(last.1, 1.0);
        let last_row = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last_row.split_whitespace().count(), 3, "{last_row:?}");
        assert!((last.0 - h.max_us().unwrap()).abs() < 0.0015, "{last:?}");
        // The row at percentile 0.5 carries (about) half the samples and the median's value.
        let mid = rows.iter().find(|r| r.1 >= 0.5).unwrap();
        assert!((mid.2 as f64 - 5_000.0).abs() < 50.0, "{mid:?}");
        assert!(
            (mid.0 - h.quantile_us(0.5).unwrap()).abs() < 0.0015,
            "{mid:?}"
        );
        assert_eq!(footer.len(), 3, "{text}");
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains(", StdDeviation   = "));
        assert_eq!(
            footer[1],
            format!(
                "#[Max     = {:>12.3}, Total count    = {:>12}]",
                h.max_us().unwrap(),
                10_000
            )
        );
        // 3 significant digits: 2048 sub-buckets, as HdrHistogram prints for the same settings.
        assert!(
            footer[2].starts_with("#[Buckets = ")
                && footer[2].ends_with("SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
        let empty = LatHist::new().percentile_distribution();
        assert_eq!(parse_hgrm(&empty).0.len(), 0);
        assert!(empty.contains("Total count    =            0]"), "{empty}");
    }

    #[test]
    fn stats_merge_adds_counters() {
        let mut a = Stats {
            ops: 3,
            bytes: 30,
            errors: 1,
            max_lag_ns: 5,
            ..Default::default()
        };
        let b = Stats {
            ops: 4,
            bytes: 40,
            errors: 0,
            max_lag_ns: 9,
            ..Default::default()
        };
        a.hist(HistKind::Lat).record_ns(1000);
        a.merge(&b);
        assert_eq!((a.ops, a.bytes, a.errors, a.max_lag_ns), (7, 70, 1, 9));
        assert_eq!(a.hists[0].count(), 1);
    }
}
