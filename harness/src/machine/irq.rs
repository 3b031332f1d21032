//! Which CPUs take a disk's interrupts: the disk's queue interrupts in /proc/interrupts, named
//! after its device (`virtio1-req.0` for a virtio disk whose device is virtio1, `nvme0q3` for
//! an NVMe namespace of controller nvme0). Best effort: None when the lines cannot be found.

/// The interrupt-name prefix of `disk`'s device: the name of what /sys/block/DISK/device
/// points at (e.g. "virtio1", "nvme0"); None for disks without one (loop, ram).
pub fn irq_prefix(disk: &str) -> Option<String> {
    let real = std::fs::canonicalize(format!("/sys/block/{disk}/device")).ok()?;
    real.file_name()?.to_str().map(str::to_string)
}

/// Per-CPU interrupt counts summed over the queue interrupts of the device named `prefix`
/// (lines whose name is `prefix-…` other than `-config`, or `prefixqN`), from a
/// /proc/interrupts text; None when no line matches.
pub fn parse_interrupts(text: &str, prefix: &str) -> Option<Vec<u64>> {
    let mut lines = text.lines();
    let cpus = lines.next()?.split_whitespace().count();
    let mut sum = vec![0u64; cpus];
    let mut found = false;
    for line in lines {
        let Some(name) = line.split_whitespace().last() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let queue = (rest.starts_with('-') && rest != "-config")
            || (rest.starts_with('q') && rest[1..].bytes().all(|b| b.is_ascii_digit()));
        if !queue {
            continue;
        }
        let counts = line.split_whitespace().skip(1).take(cpus);
        for (i, c) in counts.enumerate() {
            sum[i] += c.parse::<u64>().unwrap_or(0);
        }
        found = true;
    }
    found.then_some(sum)
}

/// The disk's per-CPU queue-interrupt counts now (None when not found).
pub fn disk_irq_counts(disk: &str) -> Option<Vec<u64>> {
    let prefix = irq_prefix(disk)?;
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    parse_interrupts(&text, &prefix)
}

/// The CPUs whose count grew between two readings.
pub fn cpus_between(earlier: &[u64], later: &[u64]) -> Vec<usize> {
    later
        .iter()
        .enumerate()
        .filter(|(i, c)| **c > earlier.get(*i).copied().unwrap_or(0))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "           CPU0       CPU1       \n\
 35:          0          1 PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n\
 36:          0   20253531 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
 37:          5          0 PCI-MSIX-0000:00:03.0   0-edge      virtio10-req.0\n\
 40:         10          0 PCI-MSIX-0000:00:04.0   0-edge      nvme0q0\n\
 41:          0          7 PCI-MSIX-0000:00:04.0   1-edge      nvme0q1\n\
NMI:          0          0   Non-maskable interrupts\n";

    #[test]
    fn finds_virtio_and_nvme_queues() {
        assert_eq!(parse_interrupts(TEXT, "virtio1"), Some(vec![0, 20253531]));
        assert_eq!(parse_interrupts(TEXT, "nvme0"), Some(vec![10, 7]));
        assert_eq!(parse_interrupts(TEXT, "virtio7"), None);
        assert_eq!(cpus_between(&[0, 5], &[0, 9]), vec![1]);
        assert_eq!(cpus_between(&[3, 5], &[3, 5]), Vec::<usize>::new());
    }
}
