//! Where an engine's helper threads run (`pool_cpus` / `iowq_cpus`): on the worker's CPU, or on
//! every CPU of the run. The harness pins each worker thread to one CPU before it builds its
//! engine; a thread the worker spawns inherits that one-CPU mask unless told otherwise, while
//! io-wq workers get the kernel's mask. Either way the choice is stated and recorded
//! ([`Caps::helper_placement`](crate::Caps::helper_placement)).
//!
//! The default everywhere is `all`: a service does not pin its I/O pool to the core of the
//! thread that submits, and a helper that shares the worker's core steals it. The capacity
//! table ranks engines by matches per busy core (process CPU, all threads), so an engine that
//! offloads to idle cores is not flattered by this default.

use std::io;

use crate::knobs::knob_choice;

knob_choice! {
    /// Where helper threads (a pool, tokio's runtime and blocking threads, io-wq) may run.
    pub enum HelperCpus {
        /// Every CPU the process may use (the main thread's affinity mask).
        #[default]
        All = "all",
        /// The worker thread's own CPU mask (its pin).
        Worker = "worker",
    }
}

/// A CPU mask, as the kernel takes it.
#[derive(Clone, Copy)]
pub struct CpuMask(pub libc::cpu_set_t);

impl CpuMask {
    /// The process's CPUs: the affinity mask of its main thread (whose thread id is the
    /// process id), which the harness never pins.
    pub fn of_process() -> io::Result<CpuMask> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        Self::of(pid)
    }

    /// The calling thread's affinity mask.
    pub fn of_current_thread() -> io::Result<CpuMask> {
        Self::of(0)
    }

    fn of(tid: libc::pid_t) -> io::Result<CpuMask> {
        // SAFETY: cpu_set_t is plain data; all zeros is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`, a local.
        let r = unsafe {
            libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CpuMask(set))
    }

    /// The mask for `choice`: the process's CPUs, or the calling (worker) thread's.
    pub fn for_choice(choice: HelperCpus) -> io::Result<CpuMask> {
        match choice {
            HelperCpus::All => Self::of_process(),
            HelperCpus::Worker => Self::of_current_thread(),
        }
    }

    /// Restricts the calling thread to this mask (sched_setaffinity).
    pub fn apply_to_current_thread(&self) -> io::Result<()> {
        // SAFETY: the kernel reads size_of::<cpu_set_t>() bytes from `self.0`, alive for the call.
        let r =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Checks that a thread can take this mask (a spawned thread applies it and exits), so that
    /// helper threads that apply it at their start (where an error has nowhere to go) do not
    /// fail silently.
    pub fn verify(&self) -> io::Result<()> {
        let mask = *self;
        std::thread::Builder::new()
            .name("sb-place-check".into())
            .spawn(move || mask.apply_to_current_thread())?
            .join()
            .map_err(|_| io::Error::other("placement check thread panicked"))?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot place a thread on CPUs {}: {e}", mask.list()),
                )
            })
    }

    /// The CPUs in the mask, ascending.
    pub fn cpus(&self) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `i` is below CPU_SETSIZE, the bound of the set.
            .filter(|&i| unsafe { libc::CPU_ISSET(i, &self.0) })
            .collect()
    }

    /// The mask as a CPU list (`0-3,6`), as /sys and taskset print it.
    pub fn list(&self) -> String {
        cpu_list(&self.cpus())
    }
}

/// `cpus` (ascending) as a CPU list: `0-3,6`; `none` when empty.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

/// How a placement reads in results: `all CPUs of the run (0-1)` or `the worker's CPU (0)`.
pub fn describe(choice: HelperCpus, mask: &CpuMask) -> String {
    match choice {
        HelperCpus::All => format!("all CPUs of the run ({})", mask.list()),
        HelperCpus::Worker => format!("the worker's CPU ({})", mask.list()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list(&[]), "none");
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn worker_mask_follows_the_pin_and_process_mask_does_not() {
        let process = CpuMask::of_process().expect("process mask");
        let first = process.cpus()[0];
        let (worker, all) = std::thread::spawn(move || {
            // SAFETY: cpu_set_t is plain data.
            let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `first` is below CPU_SETSIZE.
            unsafe { libc::CPU_SET(first, &mut one) };
            CpuMask(one).apply_to_current_thread().expect("pin");
            (
                CpuMask::for_choice(HelperCpus::Worker)
                    .expect("worker")
                    .cpus(),
                CpuMask::for_choice(HelperCpus::All).expect("all").cpus(),
            )
        })
        .join()
        .expect("thread");
        assert_eq!(worker, vec![first]);
        assert_eq!(all, process.cpus());
    }
}
