//! `poisonscope bench train`: images/s of SGD and SAM steps of the small CNN or PreAct-ResNet18,
//! on the embedded digits or random images of another size, optionally one whole epoch, optionally side by side with the PyTorch reference's step
//! (`benches/torch_step.py`), in interleaved rounds so both see the same machine load.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use poisonscope::config::{DeviceKind, InputNormalization, OptimizerKind, Schedule, TrainConfig};
use poisonscope::data::{self, LoadOptions, SplitDataset};
use poisonscope::train::{self, TrainData, TrainEvent};
use serde::{Deserialize, Serialize};

use super::{TrainArgs, profile};

/// The PyTorch side, shipped in the binary so `--compare-reference` works from anywhere.
const TORCH_SCRIPT: &str = include_str!("../../benches/torch_step.py");

/// One round's figures for one side at one thread count.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Round {
    sgd_images_per_second: f64,
    sam_images_per_second: f64,
    #[serde(default)]
    epoch_seconds: Option<f64>,
    /// PyTorch's version (the reference's rounds only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    torch: String,
}

/// Images/s of `optimizer` over the timed batches.
fn measure(
    device: DeviceKind,
    optimizer: OptimizerKind,
    args: &TrainArgs,
    data: &SplitDataset,
) -> anyhow::Result<f64> {
    let (warmup, batch_size) = (args.warmup, args.batch_size);
    let needed = (args.batches + warmup) * batch_size;
    let indices: Vec<usize> = (0..needed.min(data.train.len())).collect();
    let subset = data.train.select(&indices);
    let config = bench_config(device, optimizer, args);
    // On a GPU the loop reads losses back every few batches and only a read waits for the
    // device, so the clock starts at the first read after the warm-up and stops at the last
    // batch (always read): the `synced` events.
    let mut start = None::<(usize, Instant)>;
    let mut end = None::<(usize, Instant)>;
    let cancel = AtomicBool::new(false);
    let empty = data::Dataset::empty(data.test.shape, data.test.class_names.clone());
    train::train(
        &config,
        TrainData {
            train: &subset,
            test: &empty,
            triggered: None,
        },
        &cancel,
        &mut |event| {
            if let TrainEvent::Batch {
                done, synced: true, ..
            } = event
            {
                let now = Instant::now();
                if start.is_some() {
                    end = Some((done, now));
                } else if done >= warmup {
                    start = Some((done, now));
                }
            }
        },
    )?;
    let (Some((first, from)), Some((last, to))) = (start, end) else {
        anyhow::bail!("too few batches to time");
    };
    // Every batch is whole but perhaps the last, when the training set is smaller than asked.
    let timed_images = (last * batch_size).min(subset.len()) - first * batch_size;
    Ok(timed_images as f64 / to.duration_since(from).as_secs_f64().max(1e-9))
}

fn bench_config(device: DeviceKind, optimizer: OptimizerKind, args: &TrainArgs) -> TrainConfig {
    TrainConfig {
        model: args.model.into(),
        optimizer,
        epochs: 1,
        batch_size: args.batch_size,
        augment: false,
        normalize: InputNormalization::Unit,
        schedule: Schedule::Constant,
        rho: 0.05,
        device,
        ..TrainConfig::default()
    }
}

/// Seconds of one SGD epoch over the first 8 000 training images followed by the evaluation of
/// 2 000 test images and 1 783 "triggered" ones (test images again: only the count matters),
/// the sizes of the PyTorch reference's runs.
fn epoch_seconds(device: DeviceKind, args: &TrainArgs, data: &SplitDataset) -> anyhow::Result<f64> {
    let pick = |set: &data::Dataset, n: usize| {
        let indices: Vec<usize> = (0..n).map(|i| i % set.len().max(1)).collect();
        set.select(&indices)
    };
    let (train_set, test, triggered) = (
        pick(&data.train, 8_000),
        pick(&data.test, 2_000),
        pick(&data.test, 1_783),
    );
    let config = bench_config(device, OptimizerKind::Sgd, args);
    let cancel = AtomicBool::new(false);
    let trained = train::train(
        &config,
        TrainData {
            train: &train_set,
            test: &test,
            triggered: Some(&triggered),
        },
        &cancel,
        &mut |_| {},
    )?;
    Ok(trained.seconds)
}

/// Our figures for one round on `threads` CPU threads.
fn ours(
    device: DeviceKind,
    threads: usize,
    sam_first: bool,
    args: &TrainArgs,
    data: &SplitDataset,
) -> anyhow::Result<Round> {
    // Burn's CPU backend and the fused block's matrix products run on the current rayon pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the benchmark's thread pool")?;
    poisonscope::model::kernels::profile::enable(args.profile);
    pool.install(|| {
        // Which optimiser runs first alternates between rounds (`sam_first`): the first one
        // meets a colder allocator and caches, and a slow spell of the machine should not always
        // fall on the same one.
        let (sgd_images_per_second, sam_images_per_second) = if sam_first {
            let sam = measure(device, OptimizerKind::Sam, args, data)?;
            (measure(device, OptimizerKind::Sgd, args, data)?, sam)
        } else {
            let sgd = measure(device, OptimizerKind::Sgd, args, data)?;
            (sgd, measure(device, OptimizerKind::Sam, args, data)?)
        };
        Ok(Round {
            sgd_images_per_second,
            sam_images_per_second,
            epoch_seconds: if args.epoch {
                Some(epoch_seconds(device, args, data)?)
            } else {
                None
            },
            torch: String::new(),
        })
    })
}

/// Runs `command` (the `--python` interpreter) to its end.
fn run_python(command: &mut Command, args: &TrainArgs) -> anyhow::Result<std::process::Output> {
    command.output().with_context(|| {
        format!(
            "--compare-reference: could not run {} (give a Python with torch: --python PATH)",
            args.python
        )
    })
}

/// Checks, before any round, that `--python` runs and imports torch.
fn check_python(args: &TrainArgs) -> anyhow::Result<()> {
    let output = run_python(
        Command::new(&args.python).args(["-c", "import torch"]),
        args,
    )?;
    if !output.status.success() {
        anyhow::bail!(
            "--compare-reference: {} cannot import torch (install it: python3 -m venv DIR && DIR/bin/pip install torch; then --python DIR/bin/python): {}",
            args.python,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// PyTorch's figures for one round on `threads` threads.
fn reference(threads: usize, sam_first: bool, args: &TrainArgs) -> anyhow::Result<Round> {
    let mut command = Command::new(&args.python);
    command
        .arg("-c")
        .arg(TORCH_SCRIPT)
        .args(["--threads", &threads.to_string()])
        .args(["--steps", &args.batches.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--batch-size", &args.batch_size.to_string()])
        .args(["--model", args.model.name()])
        .args(["--size", &args.size.to_string()])
        .args(["--channels", &args.channels.to_string()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string());
    if args.epoch {
        command.arg("--epoch");
    }
    if sam_first {
        command.arg("--sam-first");
    }
    let output = run_python(&mut command, args)?;
    if !output.status.success() {
        anyhow::bail!(
            "--compare-reference: {} benches/torch_step.py failed: {}",
            args.python,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("--compare-reference: unexpected output {line:?}"))
}

/// The fused layers' time in the last round (`--profile`), largest first.
fn print_profile(threads: usize) {
    let mut entries = poisonscope::model::kernels::profile::entries();
    let total: f64 = entries
        .iter()
        .filter(|(key, _)| !key.starts_with(' '))
        .map(|(_, e)| e.time.as_secs_f64())
        .sum();
    entries.sort_by_key(|e| std::cmp::Reverse(e.1.time));
    println!(
        "where the time went, last round at {threads} thread(s) (fused layers: {total:.1} s):"
    );
    println!(
        "  {:<40} {:>6} {:>9} {:>6} {:>8}",
        "layer", "calls", "s", "share", "GFLOP/s"
    );
    // The SAM step's parts (the training loop's " SAM step N …" entries): its first pass and
    // update are an SGD step's work, so their share says what SAM costs on the same batches and
    // machine state, free of the noise between the two optimisers' timed phases.
    let sam_part = |prefixes: &[&str]| -> f64 {
        entries
            .iter()
            .filter(|(key, _)| {
                prefixes
                    .iter()
                    .any(|p| key.starts_with(&format!(" SAM step {p}")))
            })
            .map(|(_, e)| e.time.as_secs_f64())
            .sum()
    };
    let (sam_all, sam_sgd_work) = (
        sam_part(&["1", "2", "3", "4", "5", "6"]),
        sam_part(&["1", "2", "6"]),
    );
    if sam_sgd_work > 0.0 {
        println!(
            "  SAM steps ÷ their own first pass and update (an SGD step's work): {:.3}",
            sam_all / sam_sgd_work
        );
    }
    for (key, e) in entries {
        let seconds = e.time.as_secs_f64();
        let rate = if e.macs > 0 {
            format!("{:.1}", 2.0 * e.macs as f64 / seconds.max(1e-9) / 1e9)
        } else {
            String::new()
        };
        println!(
            "  {key:<40} {:>6} {seconds:>9.2} {:>5.1}% {rate:>8}",
            e.calls,
            100.0 * seconds / total.max(1e-9)
        );
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        0.5 * (v[mid - 1] + v[mid])
    }
}

/// Each round's ratio `ours ÷ PyTorch` (the PyTorch round run right after ours, at the same
/// thread count) of the figure `of`: paired rounds cancel the slow spells of a shared machine
/// that hit both sides, which the ratio of the two medians does not.
fn round_ratios(ours: &[Round], theirs: &[Round], of: impl Fn(&Round) -> f64) -> Vec<f64> {
    ours.iter()
        .zip(theirs)
        .map(|(o, p)| of(o) / of(p))
        .collect()
}

/// `median [lowest–highest]` of per-round ratios.
fn spread(ratios: &[f64]) -> String {
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} [{low:.2}–{high:.2}]", median(ratios.iter().copied()))
}

fn sgd(round: &Round) -> f64 {
    round.sgd_images_per_second
}

fn sam(round: &Round) -> f64 {
    round.sam_images_per_second
}

/// Medians over rounds.
fn medians(rounds: &[Round]) -> Round {
    let epochs: Vec<f64> = rounds.iter().filter_map(|r| r.epoch_seconds).collect();
    Round {
        sgd_images_per_second: median(rounds.iter().map(|r| r.sgd_images_per_second)),
        sam_images_per_second: median(rounds.iter().map(|r| r.sam_images_per_second)),
        epoch_seconds: (!epochs.is_empty()).then(|| median(epochs.into_iter())),
        torch: rounds.first().map(|r| r.torch.clone()).unwrap_or_default(),
    }
}

/// The thread counts to measure.
fn thread_counts(args: &TrainArgs) -> Vec<usize> {
    if !args.threads.is_empty() {
        return args.threads.iter().map(|&t| t.max(1)).collect();
    }
    let from_env = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0);
    vec![from_env.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))]
}

/// The images to train on: the embedded digits at 28×28×1, random images of any other size
/// (10 classes; only the speed is measured, as PyTorch's side does with `torch.rand`).
fn bench_data(args: &TrainArgs) -> anyhow::Result<SplitDataset> {
    let digits = data::load(data::EMBEDDED_MNIST, &LoadOptions::default())?;
    let shape = data::Shape {
        height: usize::from(args.size),
        width: usize::from(args.size),
        channels: usize::from(args.channels),
    };
    if shape == digits.train.shape {
        return Ok(digits);
    }
    if !matches!(shape.channels, 1 | 3) {
        anyhow::bail!("--channels {}: the models take 1 or 3", shape.channels);
    }
    let random = |n: usize, salt: u64| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
        let mut next = move || {
            // xorshift64*: fast, fixed, good enough for pixels.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let pixels = (0..n * shape.len()).map(|_| (next() >> 56) as u8).collect();
        let labels = (0..n).map(|_| (next() % 10) as u16).collect();
        data::Dataset {
            shape,
            pixels,
            labels,
            class_names: digits.train.class_names.clone(),
            origins: (0..n)
                .map(|index| data::Origin::Embedded {
                    split: "random",
                    index,
                })
                .collect(),
        }
    };
    let needed = ((args.batches + args.warmup) * args.batch_size).max(8_000);
    Ok(SplitDataset {
        train: random(needed, 1),
        test: random(2_000, 2),
        ..digits
    })
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let data = bench_data(args)?;
    let config = TrainConfig {
        model: args.model.into(),
        device: args.device.into(),
        ..TrainConfig::default()
    };
    config.validate()?;
    config
        .model
        .check_input(data.train.shape)
        .map_err(anyhow::Error::msg)?;
    let device = train::device::resolve(args.device.into());
    let threads = thread_counts(args);
    let rounds = args.rounds.max(1);
    if args.compare_reference {
        check_python(args)?;
    }
    // rows[t] = (our rounds, PyTorch's rounds) at threads[t]; rounds interleave ours and PyTorch's
    // at every thread count so slow spells of a shared machine hit both sides.
    let mut rows: Vec<(Vec<Round>, Vec<Round>)> = vec![(Vec::new(), Vec::new()); threads.len()];
    let mut torch_version = String::new();
    for round in 0..rounds {
        for (t, &n) in threads.iter().enumerate() {
            if !args.json {
                eprintln!("round {}/{rounds}, {n} thread(s)…", round + 1);
            }
            // Odd rounds time SAM before SGD, on both sides.
            let sam_first = round % 2 == 1;
            rows[t].0.push(ours(device, n, sam_first, args, &data)?);
            if args.compare_reference {
                let round = reference(n, sam_first, args)?;
                torch_version.clone_from(&round.torch);
                rows[t].1.push(round);
            }
        }
    }
    let place = match device {
        DeviceKind::Cpu => "flex CPU".to_owned(),
        other => train::device::describe(other),
    };
    let summary: Vec<serde_json::Value> = threads
        .iter()
        .zip(&rows)
        .map(|(&n, (ours, theirs))| {
            let (o, p) = (medians(ours), medians(theirs));
            serde_json::json!({
                "threads": n,
                "ours": o, "ours_rounds": ours,
                "sam_step_over_sgd_step": o.sgd_images_per_second / o.sam_images_per_second,
                "pytorch": args.compare_reference.then_some(&p),
                "pytorch_rounds": theirs,
                "ours_over_pytorch_sgd": args.compare_reference
                    .then(|| o.sgd_images_per_second / p.sgd_images_per_second),
                "ours_over_pytorch_sam": args.compare_reference
                    .then(|| o.sam_images_per_second / p.sam_images_per_second),
                "ours_over_pytorch_sgd_by_round": args.compare_reference
                    .then(|| round_ratios(ours, theirs, sgd)),
                "ours_over_pytorch_sam_by_round": args.compare_reference
                    .then(|| round_ratios(ours, theirs, sam)),
            })
        })
        .collect();
    let dataset = if data.train.shape.height == 28 && data.train.shape.channels == 1 {
        "embedded:mnist".to_owned()
    } else {
        format!("random {0}×{0}×{1}", args.size, args.channels)
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model.name(), "dataset": dataset, "batch_size": args.batch_size,
                "batches": args.batches, "rounds": rounds, "device": device.name(),
                "profile": profile(), "torch": torch_version, "results": summary,
            })
        );
        return Ok(());
    }
    println!(
        "{}, {dataset}, batch {}, {} timed batches, {place}, {} build, median of {rounds} round(s) (SAM timed first in every second round){}",
        match args.model {
            super::Model::Cnn => "small CNN",
            super::Model::PreactResnet18 => "PreAct-ResNet18",
        },
        args.batch_size,
        args.batches,
        profile(),
        if args.compare_reference {
            format!(", interleaved with PyTorch {torch_version}")
        } else {
            String::new()
        }
    );
    if args.profile {
        print_profile(threads.last().copied().unwrap_or(1));
    }
    for (&n, (ours, theirs)) in threads.iter().zip(&rows) {
        let o = medians(ours);
        println!("{n} thread(s):");
        println!("  SGD  {:8.1} images/s", o.sgd_images_per_second);
        println!("  SAM  {:8.1} images/s", o.sam_images_per_second);
        println!(
            "  SAM step / SGD step = {:.2}",
            o.sgd_images_per_second / o.sam_images_per_second
        );
        if let Some(s) = o.epoch_seconds {
            println!("  epoch (8 000 images + evaluation of 3 783) {s:.1} s");
        }
        if args.compare_reference {
            let p = medians(theirs);
            println!(
                "  PyTorch SGD {:8.1}, SAM {:8.1} images/s, SAM/SGD step {:.2}",
                p.sgd_images_per_second,
                p.sam_images_per_second,
                p.sgd_images_per_second / p.sam_images_per_second
            );
            println!(
                "  ours ÷ PyTorch: SGD {:.2}, SAM {:.2}{}",
                o.sgd_images_per_second / p.sgd_images_per_second,
                o.sam_images_per_second / p.sam_images_per_second,
                match (o.epoch_seconds, p.epoch_seconds) {
                    (Some(a), Some(b)) => format!(", epoch {:.2} (PyTorch {b:.1} s)", b / a),
                    _ => String::new(),
                }
            );
            println!(
                "  by round (each round ÷ the PyTorch round beside it), median [range]: SGD {}, SAM {}",
                spread(&round_ratios(ours, theirs, sgd)),
                spread(&round_ratios(ours, theirs, sam))
            );
        }
    }
    Ok(())
}
