//! Why a grid could not be read or run.

use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use crate::run::pipeline::PipelineError;
use crate::run::prepare::PrepareError;

/// Why a grid could not be read or run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: cannot {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The grid file is not a valid grid.
    #[error("{}: {message}", path.display())]
    Grid { path: PathBuf, message: String },
    /// A cell's experiment is not a valid config.
    #[error("{}: cell {cell}", path.display())]
    Cell {
        path: PathBuf,
        cell: String,
        #[source]
        source: Box<SweepError>,
    },
    #[error("variant {variant}: bad detect settings {set:?}")]
    Variant {
        variant: String,
        set: Vec<String>,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error(
        "{}: held by {by} for over two minutes; if that process has ended, remove the file",
        path.display()
    )]
    Locked { path: PathBuf, by: String },
    #[error(
        "--shard {0}: expected K/N with 0 <= K < N (K 0-based, as Slurm's SLURM_ARRAY_TASK_ID and Kubernetes' JOB_COMPLETION_INDEX are)"
    )]
    Shard(String),
    #[error("{}: no finished cells", .0.display())]
    NoFinishedCells(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("cannot write a config: {0}")]
    Toml(#[from] toml::ser::Error),
    #[error("cannot serialise the results: {0}")]
    Json(#[from] serde_json::Error),
}

/// `SweepError::Io` for `path`.
pub(crate) fn cannot(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> SweepError {
    let path = path.to_path_buf();
    move |source| SweepError::Io {
        path,
        action,
        source,
    }
}
