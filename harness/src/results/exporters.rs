//! One [`Exporter`] per results file (hyperfine's shape): each turns the results gathered so far
//! into the bytes of its file; [`super::ResultsDir::export`] writes them atomically.
//!
//! Column names and order come from [`SummaryRow`] and [`TimeseriesRow`] as declared; keys of
//! the JSON files are sorted (serde_json's map), so files stay comparable from run to run.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{RunResult, SummaryRow, TimeseriesRow, SCHEMA_VERSION};
use crate::error::ExportError;
use crate::measure::HistKind;

/// Produces one results file from the invocation's meta.json content and its runs so far.
pub trait Exporter {
    /// The file's path inside the results folder (some names depend on the runs).
    fn file_name(&self, runs: &[RunResult]) -> PathBuf;
    /// The file's complete content.
    fn serialize(
        &self,
        meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError>;
}

/// `meta.json`: the invocation's description (options, host, storage, build, times, status).
pub struct MetaJson;

/// `summary.csv`: one row per run, columns as [`SummaryRow`] declares them.
pub struct SummaryCsv;

/// `summary.json`: `schema_version` and every run's row with its nested `detail`.
pub struct SummaryJson;

/// `timeseries.csv`: the per-second rows of every run, run after run.
pub struct TimeseriesCsv;

/// `hist/RUN-KIND.hgrm`: one run's HdrHistogram percentile distribution of one op kind.
pub struct Hgrm {
    /// Index of the run in the results.
    pub run: usize,
    /// Which histogram.
    pub kind: HistKind,
}

fn json_bytes(file: &str, v: &impl Serialize) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec_pretty(v).map_err(|source| ExportError::Json {
        file: file.to_string(),
        source,
    })
}

fn csv_bytes<'a, T: Serialize + 'a>(
    file: &str,
    rows: impl IntoIterator<Item = &'a T>,
) -> Result<Vec<u8>, ExportError> {
    let err = |source: csv::Error| ExportError::Csv {
        file: file.to_string(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| err(csv::Error::from(e.into_error())))
}

impl Exporter for MetaJson {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("meta.json")
    }
    fn serialize(
        &self,
        meta: &serde_json::Value,
        _runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        json_bytes("meta.json", meta)
    }
}

impl Exporter for SummaryCsv {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("summary.csv")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        csv_bytes::<SummaryRow>("summary.csv", runs.iter().map(|r| &r.row))
    }
}

impl Exporter for SummaryJson {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("summary.json")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        let mut json = Vec::with_capacity(runs.len());
        for r in runs {
            let mut v = serde_json::to_value(&r.row).map_err(|source| ExportError::Json {
                file: "summary.json".into(),
                source,
            })?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("detail".into(), r.detail.clone());
            }
            json.push(v);
        }
        json_bytes(
            "summary.json",
            &serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "runs": json,
            }),
        )
    }
}

impl Exporter for TimeseriesCsv {
    fn file_name(&self, _runs: &[RunResult]) -> PathBuf {
        PathBuf::from("timeseries.csv")
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        csv_bytes::<TimeseriesRow>(
            "timeseries.csv",
            runs.iter().flat_map(|r| r.timeseries.iter()),
        )
    }
}

impl Exporter for Hgrm {
    fn file_name(&self, runs: &[RunResult]) -> PathBuf {
        let run_id = runs.get(self.run).map_or("", |r| r.row.run_id.as_str());
        PathBuf::from("hist").join(format!("{run_id}-{}.hgrm", self.kind.name()))
    }
    fn serialize(
        &self,
        _meta: &serde_json::Value,
        runs: &[RunResult],
    ) -> Result<Vec<u8>, ExportError> {
        let hist = runs
            .get(self.run)
            .and_then(|r| r.hists.iter().find(|(k, _)| *k == self.kind))
            .map(|(_, h)| h.percentile_distribution())
            .unwrap_or_default();
        Ok(hist.into_bytes())
    }
}

/// Write `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
