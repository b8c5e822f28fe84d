//! The headless subcommands of `shared/design/CLI.md`: each one reads its inputs, runs the shared
//! pipeline and writes its outputs atomically into `--out`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, bail};
use poisonscope::artifacts::{self, Staged};
use poisonscope::attack::export;
use poisonscope::config::Experiment;
use poisonscope::data::{self, LoadOptions, Summary};
use poisonscope::run::Run;
use poisonscope::run::pipeline;
use poisonscope::train::checkpoint;

use crate::progress;

pub(crate) fn inspect_data(source: &str, json: bool, options: &LoadOptions) -> anyhow::Result<()> {
    let loaded = load_with_progress(source, options)?;
    let summary = Summary::of(&loaded);
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_text());
    }
    Ok(())
}

/// Loads a dataset, drawing an image folder's decoding on the terminal.
fn load_with_progress(source: &str, options: &LoadOptions) -> anyhow::Result<data::SplitDataset> {
    Ok(data::load_with(
        source,
        options,
        &AtomicBool::new(false),
        &mut progress::loading,
    )?)
}

pub(crate) fn load_config(path: &Path, overrides: &[String]) -> anyhow::Result<Experiment> {
    Ok(Experiment::from_file(path, overrides)?)
}

pub(crate) fn poison(config: &Experiment, out: &Path, force: bool) -> anyhow::Result<()> {
    if config.attack.is_none() {
        bail!("the config has no [attack] table; `poison` needs one");
    }
    artifacts::check_not_in_source(out, &config.dataset.source)?;
    let clean = load_with_progress(&config.dataset.source, &config.dataset.load_options())?;
    let poisoned =
        poisonscope::run::prepare::poison(config, &clean, &AtomicBool::new(false), &mut |_| {})?
            .context("the config has no [attack] table")?;
    let written = export::write_image_folder(out, &clean.train, &poisoned, force)?;
    println!(
        "wrote {} training images ({} poisoned, {} cover), {} and {} to {}",
        written.images,
        written.poisoned,
        written.covers,
        export::MANIFEST,
        export::PREVIEW,
        written.dir.display()
    );
    Ok(())
}

/// One line per detector: flagged count and, with ground truth, TPR/FPR/F1/AUROC.
fn summary_table(report: &poisonscope::run::report::Report) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}", 100.0 * v));
    let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let mut out = format!(
        "{:<9} {:>8} {:>7} {:>7} {:>7} {:>7}\n",
        "detector", "flagged", "TPR %", "FPR %", "F1", "AUROC"
    );
    let rows = report
        .detectors
        .iter()
        .map(|(n, d)| (n.as_str(), d))
        .chain(report.consensus.as_ref().map(|c| ("consensus", c)));
    for (name, d) in rows {
        if let Some(error) = &d.error {
            out.push_str(&format!("{name:<9} failed: {error}\n"));
            continue;
        }
        out.push_str(&format!(
            "{:<9} {:>8} {:>7} {:>7} {:>7} {:>7}\n",
            name,
            d.flagged,
            pct(d.tpr),
            pct(d.fpr),
            num(d.f1),
            num(d.auroc)
        ));
    }
    if let Some(fit) = &report.fit {
        out.push_str(&format!(
            "fit: training accuracy on the given labels {:.1} % ({:.1} % disagree), clean accuracy {:.1} %\n",
            100.0 * fit.train_accuracy,
            100.0 * fit.disagreement,
            100.0 * fit.clean_accuracy
        ));
    }
    for w in &report.warnings {
        out.push_str(&format!("warning: {}\n", w.message));
    }
    out
}

/// A folder `--force` may replace: one holding a previous run's or comparison's outputs.
fn is_previous_output(dir: &Path) -> bool {
    ["report.json", "comparison.json", checkpoint::META]
        .iter()
        .any(|name| dir.join(name).is_file())
}

/// Checks `out` before anything is loaded or trained: outside the source dataset, and new or
/// empty unless `force` replaces a previous output. Nothing is created yet.
fn check_out(out: &Path, config: &Experiment, force: bool) -> anyhow::Result<()> {
    artifacts::check_not_in_source(out, &config.dataset.source)?;
    Ok(artifacts::check_dest(
        out,
        force.then_some(&is_previous_output as _),
    )?)
}

/// The output folder, built under a hidden temporary name and renamed into place by
/// [`Staged::commit`] once every file is written: a failed or interrupted run leaves nothing.
fn stage_out(out: &Path, force: bool) -> anyhow::Result<Staged> {
    Ok(Staged::new(out, force.then_some(&is_previous_output as _))?)
}

/// Checks `config` and `out`, runs the job (both optimisers when `compare`) with a progress bar
/// labelled `label`, and writes it into `out` (staged, renamed into place when complete).
fn execute_into(
    config: &Experiment,
    out: &Path,
    force: bool,
    compare: bool,
    label: &str,
) -> anyhow::Result<Run> {
    config.validate()?;
    check_out(out, config, force)?;
    let mut bar = progress::Progress::new(label);
    let cancel = AtomicBool::new(false);
    let run = Run::execute(config, compare, &cancel, &mut |_, e| bar.run_event(&e))?;
    let staged = stage_out(out, force)?;
    run.save(staged.path())?;
    staged.commit()?;
    Ok(run)
}

/// `run`: dataset → attack → train → checkpoint → detect → report.json, scores.csv, config.toml.
pub(crate) fn run_experiment(config: &Experiment, out: &Path, force: bool) -> anyhow::Result<()> {
    let run = execute_into(config, out, force, false, "run")?;
    let outcome = &run.arms.first().context("a run trains one model")?.outcome;
    let training = &outcome.report.training;
    let asr = training
        .attack_success_rate
        .map(|a| format!(", attack success rate {:.2}%", 100.0 * a))
        .unwrap_or_default();
    print!("{}", summary_table(&outcome.report));
    println!(
        "clean accuracy {:.2}%{asr}; wrote report.json, scores.csv, config.toml, {} and {} to {}",
        100.0 * training.clean_accuracy,
        checkpoint::WEIGHTS,
        checkpoint::META,
        out.display()
    );
    Ok(())
}

/// `detect`: the saved model of a run, detected again with other `[detect]` settings.
pub(crate) fn redetect(run_dir: &Path, out: &Path, overrides: &[String]) -> anyhow::Result<()> {
    if let Some(key) = overrides.iter().find(|o| {
        let o = o.trim_start();
        !o.starts_with("detect.") && !o.starts_with("train.device=")
    }) {
        bail!(
            "`--set {key}`: only detect.* keys (and train.device, where the detectors' forward passes run) can change without retraining"
        );
    }
    let config = load_config(&run_dir.join("config.toml"), overrides)?;
    config.validate()?;
    if out.join("report.json").exists() {
        bail!(
            "{}: holds a report.json already; choose another folder (nothing is overwritten)",
            out.display()
        );
    }
    check_out(out, &config, false)?;
    let staged = stage_out(out, false)?;
    let mut bar = progress::Progress::new("detect");
    let cancel = AtomicBool::new(false);
    let (prepared, outcome) =
        pipeline::redetect(&config, run_dir, &cancel, &mut |e| bar.run_event(&e))?;
    pipeline::write_outputs(staged.path(), &config, &prepared, &outcome)?;
    staged.commit()?;
    print!("{}", summary_table(&outcome.report));
    println!(
        "wrote report.json, scores.csv, references.csv and config.toml to {}",
        out.display()
    );
    Ok(())
}

/// `compare`: the config trained with SGD and with SAM on identical data and seed.
pub(crate) fn compare(config: &Experiment, out: &Path, force: bool) -> anyhow::Result<()> {
    let run = execute_into(config, out, force, true, "compare")?;
    let comparison = run
        .comparison
        .as_ref()
        .context("a comparison trains two models")?;
    print!("{}", comparison.table());
    println!(
        "wrote {0}/sgd, {0}/sam and {0}/comparison.json",
        out.display()
    );
    Ok(())
}

/// `sweep`: the grid, resumed where a previous sweep into `out` stopped.
pub(crate) fn sweep(
    grid_path: &Path,
    out: &Path,
    tables_only: bool,
    shard: Option<&str>,
) -> anyhow::Result<()> {
    use poisonscope::sweep::{self, Grid, Shard, SweepEvent};
    let shard: Shard = shard.map_or(Ok(Shard::ALL), str::parse)?;
    let grid = Grid::from_file(grid_path)?;
    if tables_only {
        if !out.is_dir() {
            bail!("{}: no such sweep folder; nothing to merge", out.display());
        }
        let rows = sweep::tables(&grid, out)?;
        println!(
            "{} rows; rewrote the result files in {}",
            rows.len(),
            out.display()
        );
        return Ok(());
    }
    if let Some(cell) = grid.cells().first() {
        artifacts::check_not_in_source(out, &grid.experiment(cell)?.dataset.source)?;
    }
    let mut bar = progress::Progress::new("sweep");
    let cancel = AtomicBool::new(false);
    let rows = sweep::run(&grid, out, shard, &cancel, &mut |e| match e {
        SweepEvent::Share { shard, mine, total } => {
            if shard != Shard::ALL {
                eprintln!("shard {shard}: {mine} of the grid's {total} cells");
            }
        }
        SweepEvent::Claimed { id, by } => eprintln!("{id}: being run by {by}, skipped"),
        SweepEvent::Cell {
            index,
            total,
            id,
            arm,
        } => {
            eprintln!("[{}/{total}] {id} {arm}", index + 1);
            bar = progress::Progress::new(arm);
        }
        SweepEvent::Skipped { id } => eprintln!("{id}: done before, skipped"),
        SweepEvent::Run(e) => bar.run_event(e),
    })?;
    let cells = grid.cells().len();
    let finished = rows
        .iter()
        .map(|r| (&r.attack, r.ratio.to_bits(), r.seed))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "{} rows; wrote results.csv, results.json and results.md to {} ({finished} of {cells} cells finished)",
        rows.len(),
        out.display()
    );
    Ok(())
}

/// `report`: the HTML page of `dir`, written atomically to `out`.
pub(crate) fn write_report(dir: &Path, out: &Path, top: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=500).contains(&top),
        "--top must be in 1..=500, got {top}"
    );
    anyhow::ensure!(
        !out.is_dir(),
        "{}: is a folder; give the HTML file to write",
        out.display()
    );
    let html = poisonscope::html_report::build(dir, top)?;
    artifacts::write_file_at(out, html.as_bytes())?;
    println!("wrote {} ({} KB)", out.display(), html.len() / 1024);
    Ok(())
}
