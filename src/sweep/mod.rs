//! `poisonscope sweep GRID.toml --out DIR`: a grid of attacks × ratios × seeds × arms (SGD,
//! SAM...), each arm trained once and its saved model detected with every detection variant; the
//! two arms of a cell are also fused. Each arm's folder `DIR/models/<cell>/<arm>/` is a `run`
//! folder (model, config.toml, report.json, scores.csv of the first variant) that the window,
//! `detect` and `report` open. Resumable: a finished cell leaves `DIR/cells/<cell>.json`
//! and is skipped next time. Writes `results.json` (every row), `results.csv` and `results.md`
//! (mean ± std over seeds, the seed paper's Table-1 layout: rows attacks, columns detectors,
//! SGD → SAM with the paired per-seed delta).
//!
//! Shards (`--shard K/N`, see [`Shard`]): N processes, on N machines sharing `DIR`, run the grid
//! once between them. Cell `i` (in [`Grid::cells`] order) belongs to shard `i mod N`. A process
//! claims a cell before running it (`cells/<cell>.claim`, created exclusively, holding
//! `HOST PID`), so two processes given the same share (or a shard and an unsharded resume) never
//! run one cell twice; the claim is removed when the cell is written, or on Ctrl-C / SIGTERM. A
//! claim whose process is gone is taken over (at once on the same machine, after a lease without
//! renewal from another: `claim.rs`). The tables are rewritten from every finished cell on disk,
//! under `results.lock`, so the last writer's tables hold every cell finished before it.
//! `docs/cluster/` runs a grid as a Slurm job array or a Kubernetes Indexed Job.
//!
//! Grid file:
//! ```toml
//! seeds = [0, 1, 2]
//! arms = ["sgd", "sam"]         # or arms with settings and a name (the model folder's):
//! # arms = ["sgd", "sam", { name = "sam-rho0.05", set = ["train.optimizer=sam", "train.rho=0.05"] }]
//! [base]                       # an experiment config (its [attack] comes from the grid)
//! train = { epochs = 10 }
//! [[attack]]
//! label = "BadNets"
//! kind = "badnets"             # any [attack] key
//! ratios = [0.005, 0.01]
//! [[variant]]                  # detection settings re-run on the saved models
//! name = "calibrated"
//! set = []                     # `detect.KEY=VALUE` overrides
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

mod claim;
mod shard;

pub use shard::Shard;

use serde::{Deserialize, Serialize};

use crate::config::{Experiment, OptimizerKind};
use crate::detect::DetectionRun;
use crate::run::pipeline::{self, RunEvent};
use crate::run::prepare::Prepared;
use crate::run::report::DetectorReport;
use crate::train::checkpoint;

mod error;
mod tables;

pub use error::SweepError;
pub(crate) use error::cannot;

use tables::row_of;
pub use tables::{markdown, tables, write_results};

/// One attack row of the grid: an `[attack]` table without its ratio, and the ratios to run.
#[derive(Clone, Debug, Deserialize)]
pub struct GridAttack {
    /// Row label in the tables (`BadNets`, `Blended α 0.1`...).
    pub label: String,
    pub ratios: Vec<f64>,
    /// The other `[attack]` keys.
    #[serde(flatten)]
    pub attack: toml::Table,
}

/// A detection variant: a name and `detect.*` overrides.
#[derive(Clone, Debug, Deserialize)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub set: Vec<String>,
}

/// One arm of every cell: a name (its model folder, its column in the tables) and `train.*`
/// overrides. Written in a grid as an optimizer's name (`"sam"`: that optimizer, the base's other
/// settings) or as `{ name = "sam-rho0.05", set = ["train.optimizer=sam", "train.rho=0.05"] }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "ArmSpec")]
pub struct Arm {
    pub name: String,
    pub set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ArmSpec {
    Optimizer(OptimizerKind),
    Named {
        name: String,
        #[serde(default)]
        set: Vec<String>,
    },
}

impl From<ArmSpec> for Arm {
    fn from(spec: ArmSpec) -> Self {
        match spec {
            ArmSpec::Optimizer(o) => Self::optimizer(o),
            ArmSpec::Named { name, set } => Self { name, set },
        }
    }
}

impl Arm {
    /// The arm that trains with `optimizer` and the base's other settings.
    pub fn optimizer(optimizer: OptimizerKind) -> Self {
        Self {
            name: optimizer.name().to_owned(),
            set: vec![format!("train.optimizer={}", optimizer.name())],
        }
    }

    /// Why this arm cannot be used, if it cannot: its name becomes a folder name and a column.
    fn problem(&self) -> Option<String> {
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.name.is_empty() || !self.name.chars().all(safe) || self.name.starts_with('.') {
            return Some(format!(
                "arm name {:?}: use letters, digits, '-', '_' and '.' (it names the model folder)",
                self.name
            ));
        }
        if self.name == "fused" {
            return Some("arm name \"fused\" is taken by the fused arms' rows".to_owned());
        }
        self.set
            .iter()
            .find(|s| !s.trim_start().starts_with("train."))
            .map(|s| {
                format!(
                    "arm {:?}: {s:?} is not a train.* setting (an arm changes the training only; detection settings are variants)",
                    self.name
                )
            })
    }
}

/// The grid file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub seeds: Vec<u64>,
    #[serde(default = "default_arms")]
    pub arms: Vec<Arm>,
    #[serde(default)]
    pub base: toml::Table,
    pub attack: Vec<GridAttack>,
    #[serde(default = "default_variants")]
    pub variant: Vec<Variant>,
}

fn default_arms() -> Vec<Arm> {
    vec![
        Arm::optimizer(OptimizerKind::Sgd),
        Arm::optimizer(OptimizerKind::Sam),
    ]
}

fn default_variants() -> Vec<Variant> {
    vec![Variant {
        name: "default".to_owned(),
        set: Vec::new(),
    }]
}

/// One measured row: a cell (attack, ratio, seed), an arm (or `fused`), a detection variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub attack: String,
    pub ratio: f64,
    pub seed: u64,
    pub arm: String,
    pub variant: String,
    pub clean_accuracy: Option<f64>,
    pub attack_success_rate: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub estimated_ratio: Option<f64>,
    /// Training samples (for the flagged shares).
    #[serde(default)]
    pub n_train: usize,
    pub warnings: Vec<String>,
    /// Per detector (and `consensus`).
    pub detectors: BTreeMap<String, DetectorReport>,
    pub train_seconds: Option<f64>,
}

impl Grid {
    /// Reads a grid file; every cell's config is validated before anything runs.
    pub fn from_file(path: &Path) -> Result<Self, SweepError> {
        let text = std::fs::read_to_string(path).map_err(cannot("read", path))?;
        let invalid = |message: String| SweepError::Grid {
            path: path.to_path_buf(),
            message,
        };
        let grid: Self = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if grid.seeds.is_empty() {
            return Err(invalid("no seeds".to_owned()));
        }
        if grid.arms.is_empty() {
            return Err(invalid("no arms".to_owned()));
        }
        for (i, arm) in grid.arms.iter().enumerate() {
            if let Some(problem) = arm.problem() {
                return Err(invalid(problem));
            }
            if grid.arms[..i].iter().any(|a| a.name == arm.name) {
                return Err(invalid(format!("two arms named {:?}", arm.name)));
            }
        }
        for cell in grid.cells() {
            for arm in &grid.arms {
                grid.arm_experiment(&cell, arm)
                    .map_err(|e| SweepError::Cell {
                        path: path.to_path_buf(),
                        cell: format!("{} {}", cell.id(), arm.name),
                        source: Box::new(e),
                    })?;
            }
        }
        Ok(grid)
    }

    /// Every (attack, ratio, seed) cell, seed by seed: a grid stopped part-way has covered every
    /// attack and ratio with its first seeds.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for &seed in &self.seeds {
            for (a, attack) in self.attack.iter().enumerate() {
                for &ratio in &attack.ratios {
                    out.push(Cell {
                        attack: a,
                        label: attack.label.clone(),
                        ratio,
                        seed,
                    });
                }
            }
        }
        out
    }

    /// The experiment of a cell: the base, its attack at its ratio, the seed on attack and
    /// training.
    pub fn experiment(&self, cell: &Cell) -> Result<Experiment, SweepError> {
        self.experiment_with(cell, &[])
    }

    /// The experiment of one arm of a cell: the cell's, with the arm's `train.*` settings.
    pub fn arm_experiment(&self, cell: &Cell, arm: &Arm) -> Result<Experiment, SweepError> {
        self.experiment_with(cell, &arm.set)
    }

    fn experiment_with(&self, cell: &Cell, overrides: &[String]) -> Result<Experiment, SweepError> {
        let mut table = self.base.clone();
        let mut attack = self
            .attack
            .get(cell.attack)
            .map(|a| a.attack.clone())
            .unwrap_or_default();
        attack.insert("ratio".into(), toml::Value::Float(cell.ratio));
        attack.insert("seed".into(), toml::Value::Integer(cell.seed as i64));
        table.insert("attack".into(), toml::Value::Table(attack));
        let train = table
            .entry("train")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(t) = train.as_table_mut() {
            t.insert("seed".into(), toml::Value::Integer(cell.seed as i64));
        }
        let text = toml::to_string(&table)?;
        Ok(Experiment::from_toml(Path::new("grid"), &text, overrides)?)
    }
}

/// One (attack, ratio, seed) cell.
#[derive(Clone, Debug)]
pub struct Cell {
    pub attack: usize,
    pub label: String,
    pub ratio: f64,
    pub seed: u64,
}

impl Cell {
    /// A file-name-safe id.
    pub fn id(&self) -> String {
        let label: String = self
            .label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!("{}-{}-r{}-s{}", self.attack, label, self.ratio, self.seed)
    }
}

/// What the sweep reports while it runs.
pub enum SweepEvent<'a> {
    /// This process's share: `mine` of the grid's `total` cells.
    Share {
        shard: Shard,
        mine: usize,
        total: usize,
    },
    /// Starting cell `index` (0-based) of `total` (this shard's), arm `arm`.
    Cell {
        index: usize,
        total: usize,
        id: &'a str,
        arm: &'a str,
    },
    /// Finished before (by this process or another).
    Skipped {
        id: &'a str,
    },
    /// Being run by another process (`by`: `HOST PID`).
    Claimed {
        id: &'a str,
        by: &'a str,
    },
    Run(&'a RunEvent),
}

/// Runs one cell: every arm trained (model saved under `dir`), every variant detected, the
/// first two arms fused per variant.
fn run_cell(
    grid: &Grid,
    cell: &Cell,
    dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(SweepEvent),
    index: usize,
    total: usize,
) -> Result<Vec<Row>, SweepError> {
    let id = cell.id();
    let config = grid.experiment(cell)?;
    let prepared = Prepared::load(&config)?;
    let mut rows = Vec::new();
    // Per variant: the detection runs of the arms (for the fusion).
    let mut runs: Vec<Vec<DetectionRun>> = vec![Vec::new(); grid.variant.len()];
    for arm_spec in &grid.arms {
        let arm = arm_spec.name.as_str();
        on_event(SweepEvent::Cell {
            index,
            total,
            id: &id,
            arm,
        });
        let arm_config = grid.arm_experiment(cell, arm_spec)?;
        let arm_dir = dir.join("models").join(&id).join(arm);
        std::fs::create_dir_all(&arm_dir).map_err(cannot("create the folder", &arm_dir))?;
        // A model this arm saved before (same [train] settings) is reused: detection changes
        // are re-measured without retraining by deleting `cells/`.
        let saved = crate::train::device_for(arm_config.train.device)
            .ok()
            .and_then(|device| {
                checkpoint::load_for(&arm_dir, &device, Some(prepared.train_data().train)).ok()
            })
            .filter(|loaded| loaded.meta.train.trains_like(&arm_config.train));
        let (trained, train_seconds) = match saved {
            Some(loaded) => (loaded.into_trained(Vec::new(), 0.0, 0.0), None),
            None => {
                let trained = pipeline::train_and_save(
                    &arm_config.train,
                    &prepared,
                    &arm_dir,
                    cancel,
                    &mut |e| on_event(SweepEvent::Run(&RunEvent::Train(e))),
                )?;
                let seconds = trained.seconds;
                (trained, Some(seconds))
            }
        };
        for (v, variant) in grid.variant.iter().enumerate() {
            let mut variant_config = arm_config.clone();
            let mut table = toml::Table::try_from(&variant_config.detect)?;
            for assignment in &variant.set {
                let key = assignment.trim_start_matches("detect.");
                crate::config::apply_override(&mut table, key)?;
            }
            variant_config.detect = table.try_into().map_err(|source| SweepError::Variant {
                variant: variant.name.clone(),
                set: variant.set.clone(),
                source: Box::new(source),
            })?;
            let outcome = pipeline::detect_and_report(
                &variant_config,
                &prepared,
                trained.clone(),
                cancel,
                &mut |e| on_event(SweepEvent::Run(&e)),
            )?;
            // The first variant's outputs beside the model make the arm's folder a `run` folder:
            // `poisonscope gui`, `detect` and `report` open it. Written when the model was just
            // trained (or the folder lacks them): a reused model has no history to write.
            if v == 0 && (train_seconds.is_some() || !arm_dir.join("scores.csv").is_file()) {
                pipeline::write_outputs(&arm_dir, &variant_config, &prepared, &outcome)?;
            }
            rows.push(row_of(
                cell,
                arm,
                &variant.name,
                &outcome.report,
                train_seconds,
            ));
            if let Some(list) = runs.get_mut(v) {
                list.push(outcome.detection);
            }
        }
    }
    for (variant, list) in grid.variant.iter().zip(&runs) {
        if let [a, b, ..] = list.as_slice() {
            let fused = pipeline::fuse(a, b, &prepared);
            rows.push(Row {
                attack: cell.label.clone(),
                ratio: cell.ratio,
                seed: cell.seed,
                arm: "fused".to_owned(),
                variant: variant.name.clone(),
                clean_accuracy: None,
                attack_success_rate: None,
                train_accuracy: None,
                estimated_ratio: None,
                n_train: prepared.train_data().train.len(),
                warnings: Vec::new(),
                detectors: fused,
                train_seconds: None,
            });
        }
    }
    Ok(rows)
}

/// Runs (or resumes) `shard`'s share of the grid into `dir` and writes the result files from
/// every finished cell (this shard's and the others'). Returns those rows.
pub fn run(
    grid: &Grid,
    dir: &Path,
    shard: Shard,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<Vec<Row>, SweepError> {
    let cells_dir = dir.join("cells");
    std::fs::create_dir_all(&cells_dir).map_err(cannot("create the folder", &cells_dir))?;
    let all = grid.cells();
    let mine: Vec<&Cell> = shard.share(&all);
    on_event(SweepEvent::Share {
        shard,
        mine: mine.len(),
        total: all.len(),
    });
    for (index, cell) in mine.iter().enumerate() {
        let id = cell.id();
        let path = cell_path(dir, cell);
        if finished_rows(&path).is_some() {
            on_event(SweepEvent::Skipped { id: &id });
            continue;
        }
        let claim = match claim::take(&claim_path(dir, cell))? {
            Ok(claim) => claim,
            Err(by) => {
                on_event(SweepEvent::Claimed { id: &id, by: &by });
                continue;
            }
        };
        // Another process may have finished the cell between the look and the claim.
        if finished_rows(&path).is_some() {
            on_event(SweepEvent::Skipped { id: &id });
            continue;
        }
        let rows = run_cell(grid, cell, dir, cancel, on_event, index, mine.len())?;
        crate::artifacts::write_text(&path, &serde_json::to_string_pretty(&rows)?)
            .map_err(cannot("write", &path))?;
        drop(claim);
        // The tables so far: a long grid shows its finished cells while it runs.
        tables::rewrite(dir, grid)?;
    }
    tables::rewrite(dir, grid)
}

/// Where a cell's claim is kept while a process runs it.
fn claim_path(dir: &Path, cell: &Cell) -> PathBuf {
    dir.join("cells").join(format!("{}.claim", cell.id()))
}

/// Where a finished cell's rows are kept.
fn cell_path(dir: &Path, cell: &Cell) -> PathBuf {
    dir.join("cells").join(format!("{}.json", cell.id()))
}

/// The rows of a finished cell, if it has finished.
fn finished_rows(path: &Path) -> Option<Vec<Row>> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests;
