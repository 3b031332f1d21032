//! Comparison plots (plotters): one file per chart kind under `plot/`, PNG and SVG.

use std::path::PathBuf;

use super::load::Folder;

/// One chart drawn into a folder's `plot/`.
#[derive(Clone, Debug)]
pub struct Chart {
    /// File stem under `plot/` (`latency-lat`, `capacity`, …).
    pub kind: String,
    /// Its title.
    pub title: String,
    /// The PNG, relative to the results folder.
    pub png: PathBuf,
    /// The SVG, relative to the results folder.
    pub svg: PathBuf,
}

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot {kind}: {message}")]
pub struct PlotError {
    /// The chart.
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// Draw every chart `folder` has data for into `folder.path/plot/`.
pub fn draw_all(folder: &Folder) -> Result<Vec<Chart>, PlotError> {
    let _ = folder;
    Ok(Vec::new())
}
