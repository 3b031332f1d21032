//! Threads and CPUs: pinning the calling thread, the CPUs this process may use, and counting
//! its threads by name (io-wq workers, SQPOLL threads).

use std::io;

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// Pins the calling thread to CPU `cpu` (sched_setaffinity); Err with the reason (a CPU beyond
/// the set size, or the kernel's refusal, e.g. a CPU outside the cgroup's cpuset).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let max = CpuSet::MAX_CPU;
    if cpu >= max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot pin to CPU {cpu}: beyond the {max}-CPU affinity mask"),
        ));
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    // None: the calling thread.
    sched_setaffinity(None, &set).map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("cannot pin thread to CPU {cpu}: {e}"))
    })
}

/// Number of CPUs this process may run on (sched_getaffinity count); at least 1.
pub fn available_cpus() -> usize {
    if let Ok(set) = sched_getaffinity(None) {
        let n = set.count();
        if n > 0 {
            return n as usize;
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Count of this process's threads whose name starts with `prefix` (/proc/self/task/*/comm),
/// e.g. "iou-wrk" for io-wq workers, "iou-sqp" for SQPOLL threads.
pub fn count_threads(prefix: &str) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|comm| comm.trim_end_matches('\n').starts_with(prefix))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_and_cpu_count() {
        assert!(available_cpus() >= 1);
        // Pin a spawned thread so the test harness thread keeps its affinity.
        let r = std::thread::spawn(|| {
            pin_current_thread(0)?;
            Ok::<usize, io::Error>(available_cpus())
        })
        .join()
        .expect("thread");
        assert_eq!(r.expect("pin to CPU 0"), 1);
        assert!(pin_current_thread(usize::MAX).is_err());
    }

    #[test]
    fn thread_counting() {
        assert_eq!(count_threads("nonexistent-prefix"), 0);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("sbtest-counted".into())
            .spawn(move || {
                let _ = ready_tx.send(());
                let _ = rx.recv();
            })
            .expect("spawn");
        ready_rx.recv().expect("thread started");
        let n = count_threads("sbtest-count");
        drop(tx);
        h.join().expect("join");
        assert!(n >= 1, "named thread not counted");
    }
}
