//! Machine facts, one concern per module: [`cpu`] time, [`disk`] counters, block devices and
//! direct-I/O alignment, the [`host`] and [`storage`] descriptions for meta.json, thread
//! [`affinity`], and the page [`cache`].
//!
//! Everything here reads /proc, /sys and a few system calls (through rustix, except getrusage,
//! which rustix lacks). Nothing panics: a missing or unparsable file yields `None` (or JSON
//! `null`), never an error.

pub mod affinity;
pub mod cache;
pub mod cpu;
pub mod disk;
pub mod host;
pub mod irq;
pub mod memory;
pub mod storage;
mod sysfs;
pub mod threads;

pub use affinity::{available_cpus, count_threads, pin_current_thread};
pub use cache::{drop_before_window, drop_caches, invalidate_file};
pub use cpu::{proc_cpu, sys_cpu, ProcCpu, SysCpu};
pub use disk::{
    block_dev_of, dio_align, disk_stats, file_size_bytes, is_block_device_path, BlockDev, DioAlign,
    DiskStats, NoDirectIo,
};
pub use host::{build_info, describe_host, fio_version};
pub use storage::describe_storage;

/// A fresh scratch directory under `base` for the machine tests, removed by the caller.
#[cfg(test)]
fn scratch_dir(base: &str, tag: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(base).join(format!(
        "snapbench-machine-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create scratch dir");
    p
}
