//! `poisonscope sweep GRID.toml --out DIR`: a grid of attacks × ratios × seeds × arms (SGD,
//! SAM...), each arm trained once and its saved model detected with every detection variant; the
//! two arms of a cell are also fused. Resumable: a finished cell leaves `DIR/cells/<cell>.json`
//! and is skipped next time. Writes `results.json` (every row), `results.csv` and `results.md`
//! (mean ± std over seeds, the seed paper's Table-1 layout: rows attacks, columns detectors,
//! SGD → SAM with the paired per-seed delta).
//!
//! Grid file:
//! ```toml
//! seeds = [0, 1, 2]
//! arms = ["sgd", "sam"]
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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::{Experiment, OptimizerKind};
use crate::detect::DetectionRun;
use crate::pipeline::{self, Prepared, RunEvent};
use crate::report::{self, DetectorReport};
use crate::train::checkpoint;

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

/// The grid file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub seeds: Vec<u64>,
    #[serde(default = "default_arms")]
    pub arms: Vec<OptimizerKind>,
    #[serde(default)]
    pub base: toml::Table,
    pub attack: Vec<GridAttack>,
    #[serde(default = "default_variants")]
    pub variant: Vec<Variant>,
}

fn default_arms() -> Vec<OptimizerKind> {
    vec![OptimizerKind::Sgd, OptimizerKind::Sam]
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
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let grid: Self =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(!grid.seeds.is_empty(), "{}: no seeds", path.display());
        anyhow::ensure!(!grid.arms.is_empty(), "{}: no arms", path.display());
        for cell in grid.cells() {
            grid.experiment(&cell)
                .with_context(|| format!("{}: cell {}", path.display(), cell.id()))?;
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
    pub fn experiment(&self, cell: &Cell) -> anyhow::Result<Experiment> {
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
        Ok(Experiment::from_toml(Path::new("grid"), &text, &[])?)
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
    /// Starting cell `index` (0-based) of `total`, arm `arm`.
    Cell {
        index: usize,
        total: usize,
        id: &'a str,
        arm: &'a str,
    },
    Skipped {
        id: &'a str,
    },
    Run(&'a RunEvent),
}

fn row_of(
    cell: &Cell,
    arm: &str,
    variant: &str,
    report: &report::Report,
    train_seconds: Option<f64>,
) -> Row {
    let mut detectors = report.detectors.clone();
    if let Some(c) = &report.consensus {
        detectors.insert("consensus".to_owned(), c.clone());
    }
    Row {
        attack: cell.label.clone(),
        ratio: cell.ratio,
        seed: cell.seed,
        arm: arm.to_owned(),
        variant: variant.to_owned(),
        clean_accuracy: Some(report.training.clean_accuracy),
        attack_success_rate: report.training.attack_success_rate,
        train_accuracy: report.fit.as_ref().map(|f| f.train_accuracy),
        estimated_ratio: report.estimated_ratio,
        n_train: report.dataset.n_train,
        warnings: report.warnings.iter().map(|w| w.message.clone()).collect(),
        detectors,
        train_seconds,
    }
}

fn optimizer_name(o: OptimizerKind) -> &'static str {
    match o {
        OptimizerKind::Sgd => "sgd",
        OptimizerKind::Sam => "sam",
        OptimizerKind::Asam => "asam",
    }
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
) -> anyhow::Result<Vec<Row>> {
    let id = cell.id();
    let config = grid.experiment(cell)?;
    let prepared = Prepared::load(&config)?;
    let mut rows = Vec::new();
    // Per variant: the detection runs of the arms (for the fusion).
    let mut runs: Vec<Vec<DetectionRun>> = vec![Vec::new(); grid.variant.len()];
    for &optimizer in &grid.arms {
        let arm = optimizer_name(optimizer);
        on_event(SweepEvent::Cell {
            index,
            total,
            id: &id,
            arm,
        });
        let mut arm_config = config.clone();
        arm_config.train.optimizer = optimizer;
        let arm_dir = dir.join("models").join(&id).join(arm);
        std::fs::create_dir_all(&arm_dir)
            .with_context(|| format!("{}: cannot create the folder", arm_dir.display()))?;
        // A model this arm saved before (same [train] settings) is reused: detection changes
        // are re-measured without retraining by deleting `cells/`.
        let saved = crate::train::device_for(arm_config.train.device)
            .ok()
            .and_then(|device| {
                checkpoint::load_for(&arm_dir, &device, Some(prepared.train_data().train)).ok()
            })
            .filter(|loaded| loaded.meta.train == arm_config.train);
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
            variant_config.detect = table.try_into().with_context(|| {
                format!(
                    "variant {}: bad detect settings {:?}",
                    variant.name, variant.set
                )
            })?;
            let outcome = pipeline::detect_and_report(
                &variant_config,
                &prepared,
                trained.clone(),
                cancel,
                &mut |e| on_event(SweepEvent::Run(&e)),
            )?;
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

/// Runs (or resumes) the grid into `dir` and writes the result files. Returns every row.
pub fn run(
    grid: &Grid,
    dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(SweepEvent),
) -> anyhow::Result<Vec<Row>> {
    let cells_dir = dir.join("cells");
    std::fs::create_dir_all(&cells_dir)
        .with_context(|| format!("{}: cannot create the folder", cells_dir.display()))?;
    let cells = grid.cells();
    let mut all = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let id = cell.id();
        let path = cell_path(dir, cell);
        if let Some(rows) = finished_rows(&path) {
            on_event(SweepEvent::Skipped { id: &id });
            all.extend(rows);
            continue;
        }
        let rows = run_cell(grid, cell, dir, cancel, on_event, index, cells.len())?;
        report::write_atomic(&path, &serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        all.extend(rows);
        // The tables so far: a long grid shows its finished cells while it runs.
        write_results(dir, grid, &all)?;
    }
    write_results(dir, grid, &all)?;
    Ok(all)
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

/// Rewrites the result files from the cells finished so far, running nothing.
pub fn tables(grid: &Grid, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let rows: Vec<Row> = grid
        .cells()
        .iter()
        .filter_map(|cell| finished_rows(&cell_path(dir, cell)))
        .flatten()
        .collect();
    anyhow::ensure!(!rows.is_empty(), "{}: no finished cells", dir.display());
    write_results(dir, grid, &rows)?;
    Ok(rows)
}

/// Mean and sample standard deviation (0 for one value); `None` when empty.
fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

fn pct_ms(values: &[f64]) -> String {
    mean_std(values).map_or("–".to_owned(), |(m, s)| {
        if values.len() > 1 {
            format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
        } else {
            format!("{:.1}", 100.0 * m)
        }
    })
}

/// The ordered detector names that appear in `rows` (consensus last).
fn detector_names(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        for k in r.detectors.keys() {
            if k != "consensus" && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names.push("consensus".to_owned());
    names
}

/// Writes `results.json`, `results.csv` and `results.md`.
pub fn write_results(dir: &Path, grid: &Grid, rows: &[Row]) -> anyhow::Result<()> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        report::write_atomic(&path, text)
            .with_context(|| format!("{}: cannot write", path.display()))
    };
    write("results.json", &serde_json::to_string_pretty(rows)?)?;
    let names = detector_names(rows);
    let mut csv = String::from(
        "attack,ratio,seed,arm,variant,clean_accuracy,attack_success_rate,train_accuracy,estimated_ratio",
    );
    for n in &names {
        let _ = write!(csv, ",{n}_tpr,{n}_fpr,{n}_auroc,{n}_flagged");
    }
    csv.push('\n');
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for r in rows {
        let _ = write!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            crate::attack::export::csv_field(&r.attack),
            r.ratio,
            r.seed,
            r.arm,
            crate::attack::export::csv_field(&r.variant),
            opt(r.clean_accuracy),
            opt(r.attack_success_rate),
            opt(r.train_accuracy),
            opt(r.estimated_ratio)
        );
        for n in &names {
            match r.detectors.get(n) {
                Some(d) => {
                    let _ = write!(
                        csv,
                        ",{},{},{},{}",
                        opt(d.tpr),
                        opt(d.fpr),
                        opt(d.auroc),
                        d.flagged
                    );
                }
                None => csv.push_str(",,,,"),
            }
        }
        csv.push('\n');
    }
    write("results.csv", &csv)?;
    write("results.md", &markdown(grid, rows))?;
    Ok(())
}

/// The tables of `results.md`.
pub fn markdown(grid: &Grid, rows: &[Row]) -> String {
    let names = detector_names(rows);
    let arms: Vec<&str> = grid.arms.iter().map(|&o| optimizer_name(o)).collect();
    let (first, second) = (arms.first().copied(), arms.get(1).copied());
    let mut cells: Vec<(String, f64)> = Vec::new();
    for r in rows {
        if !cells.iter().any(|(a, x)| *a == r.attack && *x == r.ratio) {
            cells.push((r.attack.clone(), r.ratio));
        }
    }
    let select = |attack: &str, ratio: f64, arm: &str, variant: &str| -> Vec<&Row> {
        rows.iter()
            .filter(|r| {
                r.attack == attack && r.ratio == ratio && r.arm == arm && r.variant == variant
            })
            .collect()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Sweep results\n\nSeeds {:?}; arms {}; mean ± std over seeds. TPR and FPR are over the \
         whole training set (%). Δ = paired per-seed difference {} − {} (mean ± std; the \
         per-seed values in brackets). `fused` = the two arms' rank percentiles averaged, \
         flagged where either flags.\n",
        grid.seeds,
        arms.join(", "),
        second.unwrap_or("-"),
        first.unwrap_or("-")
    );
    let _ = writeln!(out, "## Training\n");
    let _ = writeln!(
        out,
        "| attack | ratio | seeds done | {} |",
        arms.iter()
            .map(|a| format!("{a} clean acc. | {a} ASR | {a} train acc. (given labels)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|{}", "---|".repeat(3 * arms.len()));
    let first_variant = grid.variant.first().map_or("default", |v| v.name.as_str());
    for (attack, ratio) in &cells {
        let done = first.map_or(0, |a| select(attack, *ratio, a, first_variant).len());
        let mut line = format!("| {attack} | {:.1} % | {done} |", 100.0 * ratio);
        for arm in &arms {
            let rs = select(attack, *ratio, arm, first_variant);
            let col = |f: &dyn Fn(&Row) -> Option<f64>| -> String {
                pct_ms(&rs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let _ = write!(
                line,
                " {} | {} | {} |",
                col(&|r| r.clean_accuracy),
                col(&|r| r.attack_success_rate),
                col(&|r| r.train_accuracy)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    for variant in &grid.variant {
        let _ = writeln!(
            out,
            "\n## Detection, variant `{}` {}\n",
            variant.name,
            if variant.set.is_empty() {
                "(the defaults)".to_owned()
            } else {
                format!("({})", variant.set.join(", "))
            }
        );
        for (metric, what) in [("tpr", "TPR %"), ("fpr", "FPR %")] {
            let _ = writeln!(
                out,
                "**{what}** ({} → {}, Δ; fused)\n",
                first.unwrap_or("-"),
                second.unwrap_or("-")
            );
            let _ = writeln!(out, "| attack | ratio | {} |", names.join(" | "));
            let _ = writeln!(out, "|---|---|{}", "---|".repeat(names.len()));
            for (attack, ratio) in &cells {
                let mut line = format!("| {attack} | {:.1} % |", 100.0 * ratio);
                for name in &names {
                    let value = |r: &Row| -> Option<f64> {
                        let d = r.detectors.get(name)?;
                        if metric == "tpr" { d.tpr } else { d.fpr }
                    };
                    let by_seed = |arm: &str| -> BTreeMap<u64, f64> {
                        select(attack, *ratio, arm, &variant.name)
                            .into_iter()
                            .filter_map(|r| Some((r.seed, value(r)?)))
                            .collect()
                    };
                    let a = first.map(by_seed).unwrap_or_default();
                    let b = second.map(by_seed).unwrap_or_default();
                    let f = by_seed("fused");
                    let vals = |m: &BTreeMap<u64, f64>| m.values().copied().collect::<Vec<_>>();
                    let deltas: Vec<f64> =
                        a.iter().filter_map(|(s, x)| Some(b.get(s)? - x)).collect();
                    let delta = mean_std(&deltas).map_or("–".to_owned(), |(m, s)| {
                        let each: Vec<String> = deltas
                            .iter()
                            .map(|d| format!("{:+.0}", 100.0 * d))
                            .collect();
                        if deltas.len() > 1 {
                            format!("{:+.1} ± {:.1} [{}]", 100.0 * m, 100.0 * s, each.join(", "))
                        } else {
                            format!("{:+.1}", 100.0 * m)
                        }
                    });
                    let _ = write!(
                        line,
                        " {} → {} (Δ {}; fused {}) |",
                        pct_ms(&vals(&a)),
                        pct_ms(&vals(&b)),
                        delta,
                        pct_ms(&vals(&f))
                    );
                }
                let _ = writeln!(out, "{line}");
            }
            out.push('\n');
        }
        // Mean over detectors (not the consensus) per arm: the issue's "mean TPR" / "mean FPR".
        let _ = writeln!(out, "**Mean over detectors** (TPR / FPR %)\n");
        let _ = writeln!(out, "| attack | ratio | {} | fused |", arms.join(" | "));
        let _ = writeln!(out, "|---|---|{}---|", "---|".repeat(arms.len()));
        for (attack, ratio) in &cells {
            let mut line = format!("| {attack} | {:.1} % |", 100.0 * ratio);
            for arm in arms.iter().copied().chain(std::iter::once("fused")) {
                let rs = select(attack, *ratio, arm, &variant.name);
                let mean_of = |f: &dyn Fn(&DetectorReport) -> Option<f64>| -> Vec<f64> {
                    rs.iter()
                        .filter_map(|r| {
                            let v: Vec<f64> = r
                                .detectors
                                .iter()
                                .filter(|(k, _)| k.as_str() != "consensus")
                                .filter_map(|(_, d)| f(d))
                                .collect();
                            mean_std(&v).map(|(m, _)| m)
                        })
                        .collect()
                };
                let _ = write!(
                    line,
                    " {} / {} |",
                    pct_ms(&mean_of(&|d| d.tpr)),
                    pct_ms(&mean_of(&|d| d.fpr))
                );
            }
            let _ = writeln!(out, "{line}");
        }
        // The consensus against the defender's own estimate ε̂ (no ground truth): the issue asks
        // for at most 2·ε̂·N flagged.
        let _ = writeln!(
            out,
            "\n**Consensus flagged vs the estimate ε̂** (% of the training set: ε̂ / consensus \
             flagged; runs with consensus > 2·ε̂·N)\n"
        );
        let _ = writeln!(out, "| attack | ratio | {} |", arms.join(" | "));
        let _ = writeln!(out, "|---|---|{}", "---|".repeat(arms.len()));
        for (attack, ratio) in &cells {
            let mut line = format!("| {attack} | {:.1} % |", 100.0 * ratio);
            for arm in &arms {
                let rs = select(attack, *ratio, arm, &variant.name);
                let share = |r: &Row| -> Option<f64> {
                    let flagged = r.detectors.get("consensus")?.flagged;
                    Some(flagged as f64 / r.n_train.max(1) as f64)
                };
                let estimates: Vec<f64> = rs.iter().filter_map(|r| r.estimated_ratio).collect();
                let shares: Vec<f64> = rs.iter().filter_map(|r| share(r)).collect();
                let over = rs
                    .iter()
                    .filter(|r| match (share(r), r.estimated_ratio) {
                        (Some(s), Some(e)) => s > 2.0 * e,
                        _ => false,
                    })
                    .count();
                let _ = write!(
                    line,
                    " {} / {} ({over} of {}) |",
                    pct_ms(&estimates),
                    pct_ms(&shares),
                    rs.len()
                );
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_expands_cells_and_configs() {
        let text = r#"
seeds = [0, 1]
[base.train]
epochs = 2
[[attack]]
label = "BadNets"
kind = "badnets"
patch_size = 4
ratios = [0.01, 0.05]
"#;
        let grid: Grid = toml::from_str(text).unwrap();
        let cells = grid.cells();
        assert_eq!(cells.len(), 4);
        let e = grid.experiment(&cells[3]).unwrap();
        let attack = e.attack.unwrap();
        assert_eq!(
            (attack.ratio, attack.seed, attack.patch_size),
            (0.05, 1, Some(4))
        );
        assert_eq!((e.train.seed, e.train.epochs), (1, 2));
        assert_eq!(cells[3].id(), "0-badnets-r0.05-s1");
        assert_eq!(grid.arms, vec![OptimizerKind::Sgd, OptimizerKind::Sam]);
    }

    #[test]
    fn mean_std_is_the_sample_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]).unwrap();
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[]), None);
    }
}
