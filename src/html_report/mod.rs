//! `poisonscope report DIR --out report.html`: one self-contained HTML page (styles, charts and
//! images inlined, nothing fetched) that an analyst can mail or archive: the settings, the fit
//! and the warnings, the training curves, the detector table (SGD and SAM with their differences
//! after a `compare`), the training set's features projected on their two principal axes and
//! coloured by flag and ground truth, and each detector's most suspicious images with scores.
//!
//! DIR is a `run` (or `detect`) folder, or a `compare` folder holding `sgd/` and `sam/`.
//! Everything is read from the folder; the images and features come from the dataset named in
//! its `config.toml` and the saved model. When the dataset is gone, the page says so and still
//! carries the tables and curves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use base64::Engine as _;

use crate::config::{ConfigError, Experiment};
use crate::data::Dataset;
use crate::detect::{Ranking, consensus, features, linalg};
use crate::run::prepare::Prepared;
use crate::run::report::{DetectorReport, Report};
use crate::train::{self, EpochStats, checkpoint};

mod charts;
mod sections;

use charts::{curves, scatter};
use sections::{detector_table, galleries, summary};

/// One arm's files.
struct Arm {
    name: String,
    dir: PathBuf,
    config: Experiment,
    report: Report,
    history: Vec<EpochStats>,
    scores: Scores,
    /// The consensus as the run computed it (mean rank percentile, flags by agreement).
    consensus: (Vec<f64>, Vec<bool>),
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A run file that exists but is not what a run writes.
    #[error("{}: {problem}", path.display())]
    Malformed { path: PathBuf, problem: String },
    /// The folder is neither a run nor a comparison.
    #[error("{}: holds neither report.json (a run) nor comparison.json (a compare)", .0.display())]
    NotARun(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run's model could not be loaded.
    #[error(transparent)]
    Model(#[from] train::TrainError),
    #[error("feature extraction was cancelled")]
    Cancelled,
}

fn cannot_read(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.to_path_buf();
    move |source| ReportError::Read { path, source }
}

fn malformed(path: &Path, problem: impl Into<String>) -> ReportError {
    ReportError::Malformed {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// `scores.csv`: per sample, the given label, the ground truth when known, and per detector
/// the score and the flag.
#[derive(Default)]
struct Scores {
    given: Vec<u16>,
    poisoned: Option<Vec<bool>>,
    detectors: Vec<Ranking>,
}

impl Scores {
    fn read(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(cannot_read(path))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| malformed(path, "empty"))?
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let names: Vec<String> = header
            .iter()
            .filter_map(|h| h.strip_suffix("_score"))
            .filter(|n| column(&format!("{n}_flag")).is_some())
            .map(str::to_owned)
            .collect();
        let mut out = Self {
            detectors: names
                .iter()
                .map(|n| Ranking {
                    name: n.clone(),
                    ..Ranking::default()
                })
                .collect(),
            ..Self::default()
        };
        let (given_at, poisoned_at) = (column("given_label"), column("poisoned"));
        let mut poisoned = Vec::new();
        for (row, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            let bad = || malformed(path, format!("row {} is malformed", row + 2));
            let cell = |at: Option<usize>| at.and_then(|a| cells.get(a).copied());
            out.given.push(
                cell(given_at)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(bad)?,
            );
            if let Some(p) = cell(poisoned_at) {
                poisoned.push(p == "1");
            }
            for Ranking {
                name,
                scores,
                flags,
            } in &mut out.detectors
            {
                let score = cell(column(&format!("{name}_score")))
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(bad)?;
                let flag = cell(column(&format!("{name}_flag"))).ok_or_else(bad)? == "1";
                scores.push(score);
                flags.push(flag);
            }
        }
        if poisoned_at.is_some() && poisoned.len() == out.given.len() {
            out.poisoned = Some(poisoned);
        }
        Ok(out)
    }

    /// The consensus as the run computed it: mean rank percentile, flagged by agreement.
    fn consensus(&self, agreement: usize) -> (Vec<f64>, Vec<bool>) {
        let n = self.given.len();
        let scores: Vec<&[f64]> = self.detectors.iter().map(|d| d.scores.as_slice()).collect();
        let flags: Vec<&[bool]> = self.detectors.iter().map(|d| d.flags.as_slice()).collect();
        let need = agreement.min(flags.len().max(1));
        (
            consensus::mean_rank(&scores, n),
            consensus::agreement(&flags, n, need),
        )
    }
}

fn read_arm(name: &str, dir: &Path) -> Result<Arm, ReportError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(cannot_read(&path))
    };
    let report: Report = serde_json::from_str(&read("report.json")?).map_err(|e| {
        malformed(
            &dir.join("report.json"),
            format!("not a poisonscope report: {e}"),
        )
    })?;
    let config = Experiment::from_file(&dir.join("config.toml"), &[])?;
    let history = read("training.json")
        .ok()
        .and_then(|t| serde_json::from_str::<crate::run::report::TrainingLog>(&t).ok())
        .map(|log| log.history)
        .unwrap_or_default();
    let scores = Scores::read(&dir.join("scores.csv"))?;
    let consensus = scores.consensus(config.detect.consensus_agreement);
    Ok(Arm {
        name: name.to_owned(),
        dir: dir.to_path_buf(),
        config,
        report,
        history,
        scores,
        consensus,
    })
}

/// The arms of DIR: `sgd/` and `sam/` of a comparison, or the run itself.
fn read_arms(dir: &Path) -> Result<Vec<Arm>, ReportError> {
    if dir.join("comparison.json").is_file() {
        return ["sgd", "sam"]
            .iter()
            .map(|name| read_arm(name, &dir.join(name)))
            .collect();
    }
    if !dir.join("report.json").is_file() {
        return Err(ReportError::NotARun(dir.to_path_buf()));
    }
    Ok(vec![read_arm("run", dir)?])
}

/// HTML-escapes `text`.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The config name of a setting (`sgd`, `preact-resnet18`).
fn config_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{:.1}", 100.0 * v))
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.warn{color:#b00}\
.banner{background:#fff3cd;border:1px solid #e0b000;padding:6px 10px}\
.gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0;width:112px;font-size:11px}\
.gallery img{width:84px;height:84px;image-rendering:pixelated;border:1px solid #999}\
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:12px;color:#444}";

/// The whole page for DIR, with `top` images per ranking.
pub fn build(dir: &Path, top: usize) -> Result<String, ReportError> {
    build_with(dir, top, None)
}

/// [`build`], with the run's data already prepared (the window has it; the CLI loads it again
/// from the run's config).
pub fn build_with(
    dir: &Path,
    top: usize,
    prepared: Option<&Prepared>,
) -> Result<String, ReportError> {
    let arms = read_arms(dir)?;
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>poisonscope report — {0}</title><style>{STYLE}</style></head><body><h1>poisonscope report</h1><p><code>{0}</code></p>",
        esc(&dir.display().to_string())
    );
    html.push_str("<h2>Settings, fit and warnings</h2>");
    for arm in &arms {
        html.push_str(&summary(arm));
    }
    html.push_str("<h2>Training</h2>");
    html.push_str(&curves(&arms));
    html.push_str("<h2>Detectors</h2><p>TPR and FPR over the whole training set (with ground truth only when an attack was planted for evaluation).</p>");
    html.push_str(&detector_table(&arms));
    // Images and features need the dataset and the model: say so when they are gone.
    let loaded = match prepared {
        Some(_) => Ok(None),
        None => arms
            .first()
            .map(|arm| Prepared::load(&arm.config))
            .transpose(),
    };
    let prepared = loaded.as_ref().map(|loaded| prepared.or(loaded.as_ref()));
    match prepared {
        Ok(Some(prepared)) => {
            html.push_str("<h2>Feature space</h2>");
            for arm in &arms {
                match scatter(arm, prepared) {
                    Ok(svg) => html.push_str(&svg),
                    Err(e) => {
                        let _ = write!(
                            html,
                            "<p class=\"warn\">no scatter: {}</p>",
                            esc(&format!("{e:#}"))
                        );
                    }
                }
            }
            html.push_str("<h2>Most suspicious images</h2>");
            for arm in &arms {
                let _ = write!(html, "<h3>{}</h3>", esc(&arm.name.to_uppercase()));
                html.push_str(&galleries(arm, prepared.train_data().train, top));
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(
                html,
                "<p class=\"warn\">The images and the feature scatter are left out: the dataset could not be loaded ({}).</p>",
                esc(&format!("{e:#}"))
            );
        }
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
