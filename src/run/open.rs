//! A saved `run` or `compare` folder opened again (the window's File → Open run…, and
//! `poisonscope gui RUN_DIR`): its config and model are read, the dataset is read again from its
//! source and poisoned again (every stage is seeded), and the saved model is detected again — no
//! training. The window then shows it as if it had just run.
//!
//! The run's images are only shown under its results when the data are the run's: the dataset
//! must still be at its source, and the samples read again must give the labels and the detector
//! scores saved in the run's `scores.csv` (to a relative 1e-4). A moved dataset, or one whose
//! images changed, is refused in one line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::pipeline::{self, ArmRun, Outcome, PipelineError, RunEvent};
use super::prepare::Prepared;
use super::{Run, evaluate};
use crate::config::Experiment;

/// What a saved folder holds: one arm in the folder itself, or a comparison's two.
fn arm_dirs(dir: &Path) -> Result<Vec<PathBuf>, PipelineError> {
    let is_arm = |d: &Path| d.join("config.toml").is_file() && d.join("scores.csv").is_file();
    if dir.join("comparison.json").is_file() && is_arm(&dir.join("sgd")) && is_arm(&dir.join("sam"))
    {
        return Ok(vec![dir.join("sgd"), dir.join("sam")]);
    }
    if is_arm(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let message = if !dir.exists() {
        "no such folder".to_owned()
    } else if !dir.is_dir() {
        "is not a folder; open the folder a `run` or `compare` wrote".to_owned()
    } else {
        "not a saved run: a `run` folder holds config.toml and scores.csv, a `compare` folder \
         sgd/, sam/ and comparison.json"
            .to_owned()
    };
    Err(PipelineError::NotARun {
        path: dir.to_path_buf(),
        message,
    })
}

impl Run {
    /// Opens the saved run or comparison in `dir` (see the module's doc). Events carry the arm's
    /// index, as [`Run::execute`]'s do.
    pub fn open(
        dir: &Path,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(usize, RunEvent),
    ) -> Result<Self, PipelineError> {
        let dirs = arm_dirs(dir)?;
        let configs = dirs
            .iter()
            .map(|d| Experiment::from_file(&d.join("config.toml"), &[]))
            .collect::<Result<Vec<_>, _>>()?;
        // A comparison's own config is its SAM arm's (`compare` trains SGD beside it).
        let Some(config) = configs.last().cloned() else {
            return Err(PipelineError::ArmCount(0));
        };
        let source = &config.dataset.source;
        if source != crate::data::EMBEDDED_MNIST && !Path::new(source).exists() {
            return Err(PipelineError::DatasetChanged {
                source_name: source.clone(),
                message: format!(
                    "the dataset of the run in {} is no longer there (moved or deleted); its images cannot be shown",
                    dir.display()
                ),
            });
        }
        on_event(0, RunEvent::Stage("reading the dataset again".to_owned()));
        let prepared = Arc::new(Prepared::load_with(&config, cancel, &mut |e| {
            on_event(0, e)
        })?);
        let mut arms = Vec::new();
        for (i, (arm_dir, arm_config)) in dirs.iter().zip(configs).enumerate() {
            on_event(
                i,
                RunEvent::Stage("detecting again with the saved model".to_owned()),
            );
            let outcome =
                pipeline::redetect_on(&arm_config, &prepared, arm_dir, cancel, &mut |e| {
                    on_event(i, e)
                })?;
            check_same_data(arm_dir, &arm_config, &prepared, &outcome)?;
            arms.push(ArmRun {
                name: arm_config.train.optimizer.name(),
                config: arm_config,
                outcome,
            });
        }
        let comparison = super::comparison_of(&arms, &prepared);
        Ok(Self {
            config,
            truth: evaluate::poison_mask(&prepared),
            prepared,
            arms,
            comparison,
        })
    }
}

/// Compares what was read and detected again with the arm's saved `scores.csv`: the same number
/// of training samples, the same labels, given labels and poison marks, the same scores.
fn check_same_data(
    arm_dir: &Path,
    config: &Experiment,
    prepared: &Prepared,
    outcome: &Outcome,
) -> Result<(), PipelineError> {
    let path = arm_dir.join("scores.csv");
    let saved = std::fs::read_to_string(&path).map_err(|e| PipelineError::NotARun {
        path: path.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let now = evaluate::scores_csv(prepared, &outcome.detection);
    let changed = |message: String| PipelineError::DatasetChanged {
        source_name: config.dataset.source.clone(),
        message: format!(
            "not the dataset the run in {} saw ({message}); refusing to show its images under the run's scores",
            arm_dir.display()
        ),
    };
    let (saved_lines, now_lines) = (saved.lines().count(), now.lines().count());
    if saved_lines != now_lines {
        return Err(changed(format!(
            "{} training images then, {} now",
            saved_lines.saturating_sub(1),
            now_lines.saturating_sub(1)
        )));
    }
    let mut lines = saved.lines().zip(now.lines());
    if let Some((a, b)) = lines.next()
        && a != b
    {
        return Err(changed(format!("scores.csv columns `{a}` then, `{b}` now")));
    }
    let names: Vec<String> = saved
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    for (row, (a, b)) in lines.enumerate() {
        for (column, (x, y)) in a.split(',').zip(b.split(',')).enumerate() {
            if x == y {
                continue;
            }
            let name = names.get(column).map_or("?", String::as_str);
            let close = match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) if name.ends_with("_score") => {
                    (x.is_nan() && y.is_nan())
                        || (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0)
                }
                _ => false,
            };
            if !close && !name.ends_with("_flag") {
                return Err(changed(format!("sample {row}: {name} {x} then, {y} now")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_is_not_a_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = arm_dirs(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a saved run"), "{err}");
        let err = arm_dirs(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(err.ends_with("nope: no such folder"), "{err}");
    }
}
