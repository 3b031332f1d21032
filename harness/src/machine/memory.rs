//! Peak resident memory of a run: reset the process's high-water mark (VmHWM) by writing "5" to
//! /proc/self/clear_refs at the run's start, read VmHWM (and VmRSS) from /proc/self/status at
//! its end.

/// Memory at a run's start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemStart {
    /// The high-water mark was reset (clear_refs accepted "5"); without it VmHWM is the peak of
    /// the whole process so far, not of the run.
    pub hwm_reset: bool,
    /// Resident set size when the run started, bytes (None when unreadable).
    pub rss_bytes: Option<u64>,
}

impl MemStart {
    /// Reset VmHWM and read VmRSS, now.
    pub fn now() -> MemStart {
        let hwm_reset = std::fs::write("/proc/self/clear_refs", b"5").is_ok();
        let rss_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| status_kib(&s, "VmRSS:"))
            .map(|k| k * 1024);
        MemStart {
            hwm_reset,
            rss_bytes,
        }
    }

    /// Peak RSS since [`MemStart::now`], bytes: None when the mark could not be reset (the
    /// figure would be the process's, not the run's) or /proc/self/status is unreadable.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        if !self.hwm_reset {
            return None;
        }
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| status_kib(&s, "VmHWM:"))
            .map(|k| k * 1024)
    }
}

/// The value in kB of a `Key:   1234 kB` line of a /proc/…/status text.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// (peak − start) ÷ matches, bytes per match (None without both figures or with no matches).
pub fn bytes_per_match(peak: Option<u64>, start: Option<u64>, matches: u64) -> Option<f64> {
    match (peak, start) {
        (Some(p), Some(s)) if matches > 0 => Some(p.saturating_sub(s) as f64 / matches as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_memory_lines() {
        let s = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kib(s, "VmHWM:"), Some(4096));
        assert_eq!(status_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn per_match_needs_both_figures() {
        assert_eq!(bytes_per_match(Some(3000), Some(1000), 4), Some(500.0));
        assert_eq!(bytes_per_match(Some(500), Some(1000), 4), Some(0.0));
        assert_eq!(bytes_per_match(None, Some(1000), 4), None);
        assert_eq!(bytes_per_match(Some(3000), Some(1000), 0), None);
    }

    #[test]
    fn peak_covers_an_allocation_after_the_reset() {
        let m = MemStart::now();
        if !m.hwm_reset {
            eprintln!("/proc/self/clear_refs not writable here; peak is None");
            assert_eq!(m.peak_rss_bytes(), None);
            return;
        }
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
        let peak = m.peak_rss_bytes().expect("VmHWM");
        assert!(
            peak >= m.rss_bytes.unwrap() + (60 << 20),
            "peak {peak} {m:?}"
        );
    }
}
