//! The `poisonscope` binary: the desktop workstation (no arguments, or `gui`) and the headless
//! commands of `shared/design/CLI.md`.

/// mimalloc: a training step frees and reallocates activations of tens of megabytes; glibc
/// unmaps every block above 32 MB and maps it again, and the page faults took a fifth of a
/// PreAct-ResNet18 step (measured with `perf`, see the CPU-speed notes). How long it keeps
/// freed memory: [`poisonscope::allocator`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod commands;
mod progress;

use clap::{Parser, Subcommand};
use poisonscope::data::LoadOptions;
use poisonscope::ui::Start;

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
    /// Open the workstation window (the default). With no argument the last session's settings
    /// (else the embedded MNIST demo set) are loaded.
    Gui {
        /// An experiment config (TOML) whose dataset to open, or a folder a `run` or `compare`
        /// wrote, opened with its results (no training).
        config_or_run: Option<PathBuf>,
    },
    /// Print format, sample counts, classes and image shape of a dataset SOURCE.
    InspectData {
        /// `embedded:mnist`, or a folder of class sub-folders, MNIST IDX files or CIFAR-10 batches.
        source: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Resize every image to HxW (e.g. 32x32); needed when sizes differ.
        #[arg(long, value_name = "HxW", allow_hyphen_values = true)]
        resize: Option<String>,
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
        /// Override one `detect.*` key, e.g. --set detect.feature_scaling=false, or
        /// `train.device` (where the detectors' forward passes run)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run a grid of attacks × ratios × seeds × {SGD, SAM} (detection variants re-run on the
    /// saved models); resumable; writes DIR/results.{csv,json,md}.
    Sweep {
        grid: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Only rewrite results.{csv,json,md} from the cells finished so far (every shard's).
        #[arg(long, conflicts_with = "shard")]
        tables_only: bool,
        /// Run share K of N (0-based K, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT): N
        /// processes sharing DIR run the grid once between them.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
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
        .ok_or_else(|| "expected HxW, e.g. 32x32".to_owned())?;
    // The bound of `dataset.resize`: a larger side fits no model here.
    let max = poisonscope::check::MAX_SIDE;
    let side = |text: &str, what: &str| {
        text.trim()
            .parse::<u64>()
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| format!("the {what} must be a whole number in 1..={max}"))
    };
    Ok((side(h, "height")?, side(w, "width")?))
}

fn open_window(start: Start) -> anyhow::Result<()> {
    poisonscope::ui::run_native(start).map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::*;
    match cli.command {
        None => open_window(Start::Restore)?,
        Some(Command::Gui { config_or_run }) => {
            let start = match config_or_run {
                Some(path) if path.is_dir() => Start::Run(path),
                Some(path) => Start::Config(Box::new(load_config(&path, &[])?)),
                None => Start::Restore,
            };
            open_window(start)?;
        }
        Some(Command::InspectData {
            source,
            json,
            resize,
            test_fraction,
            split_seed,
        }) => {
            let resize = resize
                .map(|text| {
                    parse_size(&text).map_err(|why| anyhow::anyhow!("--resize {text}: {why}"))
                })
                .transpose()?;
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
            shard,
        }) => sweep(&grid, &out, tables_only, shard.as_deref())?,
        Some(Command::Report { dir, out, top }) => write_report(&dir, &out, top)?,
        Some(Command::Bench { what }) => bench::run(what)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    use clap::error::ErrorKind;
    poisonscope::allocator::keep_freed_memory_between_steps();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        // A mistake on the command line: one line naming the argument, exit code 1, like every
        // other refusal (clap's own style is several lines and exit code 2).
        Err(e) => {
            // The message and what it lists (missing arguments), without the tip and usage.
            let text = e.to_string();
            let said: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let line = said.join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            eprintln!("error: {line} (see --help)");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C / SIGTERM remove the unfinished output before the process exits.
    if let Err(e) = poisonscope::interrupt::install() {
        eprintln!(
            "warning: cannot catch Ctrl-C ({e}); an interrupted output may leave a hidden partial folder"
        );
    }
    match run(cli) {
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
