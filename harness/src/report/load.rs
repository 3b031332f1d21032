//! A results folder read back from disk: what `report`, `compare`, `recommend` and the plots
//! work from, so that they work on any folder (an interrupted or failed suite included), not
//! only at the end of the invocation that wrote it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::results::{holds_results, RunStatus, SummaryRow};
use crate::search::SearchRow;

/// Why a results folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder (or one of its files) could not be read.
    #[error("cannot read {}: {source}; give a results folder written by `snapbench run` or `snapbench search`", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The folder holds no results.
    #[error("{} holds no results (no meta.json or summary.csv); give a folder written by `snapbench run` or `snapbench search`", path.display())]
    NotResults {
        /// The folder.
        path: PathBuf,
    },
    /// A CSV file does not parse.
    #[error("{}: {source}; the file is damaged or from another tool", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: csv::Error,
    },
    /// meta.json does not parse.
    #[error("{}: {source}; the file is damaged or from another tool", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// One per-second row of timeseries.csv (the columns the report and plots use).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SecondRow {
    /// Run.
    pub run_id: String,
    /// Second since the run started.
    pub second: u64,
    /// warmup | measured | after.
    pub phase: String,
    /// Ops completed that second.
    pub ops: u64,
    /// Write latency p99 of that second, µs.
    pub lat_p99_us: Option<f64>,
    /// Process CPU that second, cores.
    pub cpu_cores: Option<f64>,
}

/// One histogram file under `hist/`.
#[derive(Clone, Debug)]
pub struct HistFile {
    /// The run it belongs to.
    pub run_id: String,
    /// Its kind (`lat`, `ack`, `read_ttfb`, …: [`crate::measure::HistKind::name`]).
    pub kind: String,
    /// The `.hgrm` file.
    pub path: PathBuf,
}

/// One row of `calibration.csv` (written by `bench/calibrate-vs-fio.sh`): one round of one
/// calibration row, for one tool.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CalibrationRow {
    /// The row's label (`psync-qd1`, …).
    pub row: String,
    /// The I/O pattern (`randread 4k 1`).
    pub pattern: String,
    /// `snapbench` or `fio`.
    pub tool: String,
    /// The round (1-based; rounds interleave the tools).
    pub round: u32,
    /// I/Os per second.
    pub iops: f64,
    /// p99 latency, submit to completion, µs.
    pub p99_us: f64,
    /// Process CPU per I/O, µs, as the tool itself reports it (fio's leaves out its SQPOLL
    /// thread).
    pub cpu_us_per_io: f64,
    /// CPU per I/O, µs, measured the same way for both tools from outside: the child's
    /// whole-life rusage (every thread: SQPOLL, io-wq, pools), when the CSV has it.
    pub cpu_us_per_io_rusage: Option<f64>,
    /// Context switches (voluntary and involuntary, every thread) per I/O, when recorded.
    pub csw_per_io: Option<f64>,
    /// Where the row's threads ran, in words (the same for both tools), when recorded.
    pub placement: String,
}

impl CalibrationRow {
    /// CPU per I/O as compared between the tools: from outside when recorded, else the
    /// tool's own figure.
    pub fn cpu_compared_us_per_io(&self) -> f64 {
        self.cpu_us_per_io_rusage
            .filter(|v| v.is_finite())
            .unwrap_or(self.cpu_us_per_io)
    }
}

/// A results folder as read from disk.
#[derive(Clone, Debug)]
pub struct Folder {
    /// Its path.
    pub path: PathBuf,
    /// meta.json (`Null` when the folder has none).
    pub meta: serde_json::Value,
    /// summary.csv's rows, in run order.
    pub rows: Vec<SummaryRow>,
    /// search.csv's rows (empty when the folder is not a search's).
    pub search: Vec<SearchRow>,
    /// timeseries.csv's rows.
    pub seconds: Vec<SecondRow>,
    /// The `.hgrm` files under `hist/`, sorted by name.
    pub hists: Vec<HistFile>,
    /// calibration.csv's rows (empty without one).
    pub calibration: Vec<CalibrationRow>,
}

fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, LoadError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let err = |source| LoadError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut r = csv::Reader::from_path(path).map_err(err)?;
    r.deserialize().collect::<Result<Vec<T>, _>>().map_err(err)
}

impl Folder {
    /// Read the folder at `path`.
    pub fn load(path: &Path) -> Result<Folder, LoadError> {
        let md = std::fs::metadata(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !md.is_dir() || !holds_results(path) {
            return Err(LoadError::NotResults {
                path: path.to_path_buf(),
            });
        }
        let meta_path = path.join("meta.json");
        let meta = if meta_path.exists() {
            let text = std::fs::read_to_string(&meta_path).map_err(|source| LoadError::Read {
                path: meta_path.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|source| LoadError::Json {
                path: meta_path,
                source,
            })?
        } else {
            serde_json::Value::Null
        };
        let mut hists = Vec::new();
        let hist_dir = path.join("hist");
        if hist_dir.is_dir() {
            let entries = std::fs::read_dir(&hist_dir).map_err(|source| LoadError::Read {
                path: hist_dir.clone(),
                source,
            })?;
            for e in entries.flatten() {
                let p = e.path();
                let Some(stem) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".hgrm"))
                else {
                    continue;
                };
                if let Some((run_id, kind)) = split_hist_name(stem) {
                    hists.push(HistFile {
                        run_id: run_id.to_string(),
                        kind: kind.to_string(),
                        path: p.clone(),
                    });
                }
            }
            hists.sort_by(|a, b| a.path.cmp(&b.path));
        }
        let mut rows: Vec<SummaryRow> = read_csv(&path.join("summary.csv"))?;
        fill_matches_from_meta(&mut rows, &meta);
        fill_config_ids(&mut rows);
        Ok(Folder {
            path: path.to_path_buf(),
            meta,
            rows,
            search: read_csv(&path.join("search.csv"))?,
            seconds: read_csv(&path.join("timeseries.csv"))?,
            hists,
            calibration: read_csv(&path.join("calibration.csv"))?,
        })
    }

    /// A folder held in memory only, from its summary and search rows (no files, no meta.json):
    /// what tests and tools that build rows themselves hand to `compare` and `recommend`.
    pub fn from_rows(path: &Path, rows: Vec<SummaryRow>, search: Vec<SearchRow>) -> Folder {
        Folder {
            path: path.to_path_buf(),
            meta: serde_json::Value::Null,
            rows,
            search,
            seconds: Vec::new(),
            hists: Vec::new(),
            calibration: Vec::new(),
        }
    }

    /// The runs that ended `ok`.
    pub fn ok_rows(&self) -> impl Iterator<Item = &SummaryRow> {
        self.rows.iter().filter(|r| r.status == RunStatus::Ok)
    }

    /// Engine variants in order of first appearance (the order colours are given in).
    pub fn variants(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let names = self
            .rows
            .iter()
            .map(|r| &r.variant)
            .chain(self.search.iter().map(|s| &s.variant))
            .chain(self.calibration.iter().map(|c| &c.row));
        for v in names {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        out
    }

    /// Workloads in order of first appearance.
    pub fn workloads(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r.workload) {
                out.push(r.workload.clone());
            }
        }
        out
    }

    /// One line saying what the numbers were measured on: machine, kernel, device,
    /// filesystem and date (the plots' caption and the report's header).
    pub fn caption(&self) -> String {
        let m = &self.meta;
        let host = &m["host"];
        let cpus = host["available_cpus"]
            .as_u64()
            .map_or(String::new(), |n| format!("{n} CPUs"));
        let cpu = host["cpu_model"].as_str().unwrap_or("unknown CPU");
        let kernel = host["kernel_release"].as_str().unwrap_or("unknown kernel");
        let fs = m["storage"]["fs"]["fs_type"]
            .as_str()
            .unwrap_or("unknown fs");
        let date = m["start_utc"]
            .as_str()
            .map_or("unknown date", |d| d.get(..10).unwrap_or(d));
        format!(
            "{}, {cpu}{}{cpus}; Linux {kernel}; {}; {fs}; {date}",
            host["hostname"].as_str().unwrap_or("unknown host"),
            if cpus.is_empty() { "" } else { ", " },
            device_words(&self.meta)
        )
    }
}

/// Folders written before summary.csv had a `matches` column: take each DS run's matches from
/// meta.json's options of that run.
fn fill_matches_from_meta(rows: &mut [SummaryRow], meta: &serde_json::Value) {
    let Some(runs) = meta["runs"].as_array() else {
        return;
    };
    for r in rows.iter_mut().filter(|r| r.matches.is_none()) {
        let opts = runs
            .iter()
            .find(|o| o["run_id"].as_str() == Some(r.run_id.as_str()));
        if let Some(o) = opts {
            if o["workload"]["kind"].as_str() == Some("ds") {
                r.matches = o["workload"]["params"]["matches"]
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok());
            }
        }
    }
}

/// Folders written before summary.csv had a `config_id` column: a run's configuration is its
/// run id without the repeat suffix (`-rN`), so repeats still group and variants never merge.
fn fill_config_ids(rows: &mut [SummaryRow]) {
    for r in rows.iter_mut().filter(|r| r.config_id.is_empty()) {
        let id = r.run_id.as_str();
        let base = match id.rsplit_once("-r") {
            Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
            _ => id,
        };
        r.config_id = base.to_string();
    }
}

/// Sub-folders of `path` that hold results, sorted by name (a result *set*: one folder per
/// invocation, e.g. `runs/` and `search/`).
pub fn result_subfolders(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && holds_results(p))
        .collect();
    out.sort();
    out
}

/// Split `RUN_ID-KIND` (a `.hgrm` stem) where KIND is one of the histogram kinds.
fn split_hist_name(stem: &str) -> Option<(&str, &str)> {
    crate::measure::HIST_KINDS.iter().find_map(|k| {
        stem.strip_suffix(k.name())
            .and_then(|r| r.strip_suffix('-'))
            .map(|run| (run, k.name()))
    })
}

/// Whether the disk behind the results looks virtual (virtio, Xen, VMware, Hyper-V) or is
/// cached by the host (a write-back cache on a virtual disk): then latencies describe the
/// host's cache, not a drive.
pub fn virtual_disk(meta: &serde_json::Value) -> Option<String> {
    let b = &meta["storage"]["block"];
    let driver = b["driver"].as_str().unwrap_or("");
    let vendor = b["vendor"].as_str().unwrap_or("");
    let name = b["disk"].as_str().unwrap_or("");
    let virt = driver.starts_with("virtio")
        || driver.contains("xen")
        || vendor == "0x1af4"
        || name.starts_with("vd")
        || name.starts_with("xvd");
    if !virt {
        return None;
    }
    let cache = b["write_cache"].as_str().unwrap_or("unknown");
    Some(format!(
        "a virtual disk ({name}, driver {}, write cache {cache}): the host may cache it, so latencies and throughput describe this VM's storage stack, not an NVMe drive",
        if driver.is_empty() { "unknown" } else { driver }
    ))
}

/// The device in a few words: name, model, rotational or not, virtual or not.
pub fn device_words(meta: &serde_json::Value) -> String {
    let b = &meta["storage"]["block"];
    let Some(disk) = b["disk"].as_str() else {
        return "unknown device".into();
    };
    let model = b["model"].as_str().map(str::trim).filter(|m| !m.is_empty());
    let kind = if virtual_disk(meta).is_some() {
        match b["driver"].as_str() {
            Some(d) => format!("virtual disk ({d})"),
            None => "virtual disk".into(),
        }
    } else if disk.starts_with("nvme") {
        "NVMe".into()
    } else if b["rotational"].as_bool() == Some(true) {
        "rotational".into()
    } else {
        "SSD".into()
    };
    match model {
        Some(m) => format!("{disk} {m}, {kind}"),
        None => format!("{disk}, {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_names_split_at_the_kind() {
        assert_eq!(split_hist_name("01-null-lat"), Some(("01-null", "lat")));
        assert_eq!(
            split_hist_name("03-buffered_threads_4-io_write"),
            Some(("03-buffered_threads_4", "io_write"))
        );
        assert_eq!(
            split_hist_name("12-uring-read_ttfb"),
            Some(("12-uring", "read_ttfb"))
        );
        assert_eq!(split_hist_name("nothing"), None);
    }

    #[test]
    fn a_virtio_disk_is_called_virtual() {
        let meta = serde_json::json!({"storage": {"block": {"disk": "vda", "driver": "virtio_blk", "vendor": "0x1af4", "write_cache": "write back", "rotational": true}}});
        assert!(virtual_disk(&meta).unwrap().contains("not an NVMe drive"));
        assert_eq!(device_words(&meta), "vda, virtual disk (virtio_blk)");
        let nvme = serde_json::json!({"storage": {"block": {"disk": "nvme0n1", "driver": "nvme", "model": "Samsung SSD 990 PRO", "rotational": false}}});
        assert_eq!(virtual_disk(&nvme), None);
        assert_eq!(device_words(&nvme), "nvme0n1 Samsung SSD 990 PRO, NVMe");
    }

    #[test]
    fn a_committed_folder_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261203T145523Z-capacity-quick/a-w1");
        let f = Folder::load(&dir).unwrap();
        assert!(!f.rows.is_empty());
        assert!(!f.search.is_empty());
        assert!(f.search.iter().any(|s| s.last_pass.is_some()));
        assert!(f.caption().contains("ext4"), "{}", f.caption());
    }

    #[test]
    fn an_older_folder_gets_its_matches_from_meta() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/20261202T182820Z-default");
        let f = Folder::load(&dir).unwrap();
        assert!(!f.rows.is_empty());
        assert!(
            f.rows.iter().all(|r| r.matches == Some(256)),
            "{:?}",
            f.rows[0].matches
        );
        // No config_id column: each run is its own configuration, never one merged group.
        let ids: std::collections::BTreeSet<&str> =
            f.rows.iter().map(|r| r.config_id.as_str()).collect();
        assert_eq!(ids.len(), f.rows.len());
    }
}
