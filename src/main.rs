//! The `poisonscope` binary: the desktop workstation (no arguments, or `gui`) and the headless
//! commands of `shared/design/CLI.md`.

use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod commands;
mod progress;

use clap::{Parser, Subcommand};
use poisonscope::config::Experiment;
use poisonscope::data::LoadOptions;

#[derive(Parser)]
#[command(
    name = "poisonscope",
    version,
    about = "Find poisoned (backdoored) samples in an untrusted image dataset"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the workstation window (the default). With no CONFIG the embedded MNIST demo set is loaded.
    Gui {
        /// An experiment config (TOML) whose dataset to open.
        config: Option<PathBuf>,
    },
    /// Print format, sample counts, classes and image shape of a dataset SOURCE.
    InspectData {
        /// `embedded:mnist`, or a folder of class sub-folders, MNIST IDX files or CIFAR-10 batches.
        source: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Resize every image to HxW (e.g. 32x32); needed when sizes differ.
        #[arg(long, value_parser = parse_size)]
        resize: Option<(u32, u32)>,
        /// Share of each class held out for testing when the source has no test split.
        #[arg(long, default_value_t = 0.2)]
        test_fraction: f64,
        /// Seed of that split.
        #[arg(long, default_value_t = 0)]
        split_seed: u64,
    },
    /// Apply the config's [attack] and write the poisoned training set as an image folder.
    Poison {
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Write into a non-empty DIR.
        #[arg(long)]
        force: bool,
        /// Override one config key, e.g. --set attack.ratio=0.05
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Dataset → attack → train → detect; writes report.json, scores.csv and config.toml to DIR.
    Run {
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Replace a previous run in a non-empty DIR.
        #[arg(long)]
        force: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run the config with SGD and with SAM on identical data and seed; writes DIR/sgd, DIR/sam
    /// and DIR/comparison.json.
    Compare {
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Replace a previous comparison in a non-empty DIR.
        #[arg(long)]
        force: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Re-run the detectors on the model a `run` (or a `compare` arm) saved in RUN_DIR, without
    /// retraining; `--set detect.KEY=VALUE` changes detection settings. Writes report.json,
    /// scores.csv and config.toml to DIR.
    Detect {
        run_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Override one `detect.*` key, e.g. --set detect.feature_scaling=false
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run a grid of attacks × ratios × seeds × {SGD, SAM} (detection variants re-run on the
    /// saved models); resumable; writes DIR/results.{csv,json,md}.
    Sweep {
        grid: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Only rewrite results.{csv,json,md} from the cells finished so far.
        #[arg(long)]
        tables_only: bool,
    },
    /// One self-contained HTML page of a run or compare folder: settings, warnings, curves, the
    /// detector table, the feature scatter and the most suspicious images.
    Report {
        /// A `run`/`detect` folder, or a `compare` folder.
        dir: PathBuf,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// Images shown per detector.
        #[arg(long, default_value_t = 24)]
        top: usize,
    },
    /// Throughput figures (images/s) on this machine.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (h, w) = text
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("expected HxW, e.g. 32x32, got `{text}`"))?;
    let h = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in `{text}`"))?;
    let w = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in `{text}`"))?;
    if h == 0 || w == 0 {
        return Err(format!("size must be positive, got `{text}`"));
    }
    Ok((h, w))
}

fn open_window(config: Option<Experiment>) -> anyhow::Result<()> {
    poisonscope::ui::run_native(config).map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::*;
    match cli.command {
        None => open_window(None)?,
        Some(Command::Gui { config }) => {
            let config = match config {
                Some(path) => Some(load_config(&path, &[])?),
                None => None,
            };
            open_window(config)?;
        }
        Some(Command::InspectData {
            source,
            json,
            resize,
            test_fraction,
            split_seed,
        }) => {
            let options = LoadOptions {
                test_fraction,
                split_seed,
                resize,
                limit: 0,
            };
            inspect_data(&source, json, &options)?;
        }
        Some(Command::Poison {
            config,
            out,
            force,
            overrides,
        }) => poison(&load_config(&config, &overrides)?, &out, force)?,
        Some(Command::Run {
            config,
            out,
            force,
            overrides,
        }) => run_experiment(&load_config(&config, &overrides)?, &out, force)?,
        Some(Command::Compare {
            config,
            out,
            force,
            overrides,
        }) => compare(&load_config(&config, &overrides)?, &out, force)?,
        Some(Command::Detect {
            run_dir,
            out,
            overrides,
        }) => redetect(&run_dir, &out, &overrides)?,
        Some(Command::Sweep {
            grid,
            out,
            tables_only,
        }) => sweep(&grid, &out, tables_only)?,
        Some(Command::Report { dir, out, top }) => write_report(&dir, &out, top)?,
        Some(Command::Bench { what }) => bench::run(what)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the underlying error's Display does with newlines.
            let message = format!("{e:#}");
            let one_line: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", one_line.join(" "));
            ExitCode::FAILURE
        }
    }
}
