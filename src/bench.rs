//! `poisonscope bench train`: training throughput of the small CNN on the embedded MNIST set,
//! SGD and SAM, with the PyTorch reference's settings (x/255 inputs, no augmentation, batch 128).
//! Run `shared/reference` with the same thread count next to it for the ratios.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Subcommand;
use poisonscope::config::{DeviceKind, InputNormalization, OptimizerKind, Schedule, TrainConfig};
use poisonscope::data::{self, LoadOptions};
use poisonscope::train::{self, TrainData, TrainEvent};

#[derive(Subcommand)]
pub enum What {
    /// Images per second of SGD and SAM training steps.
    Train {
        /// Timed batches per optimiser (after the warm-up batches).
        #[arg(long, default_value_t = 20)]
        batches: usize,
        /// Untimed batches first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Where to train: cpu, cuda (a build with `--features cuda`), auto.
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Frame time of the inspection view (layout and tessellation on the CPU, no GPU painting)
    /// with POINTS samples in the gallery and the scatter, the pointer hovering the scatter.
    Ui {
        #[arg(long, default_value_t = 60_000)]
        points: usize,
        /// Timed frames (after 5 untimed ones).
        #[arg(long, default_value_t = 60)]
        frames: usize,
    },
}

/// `--device` (clap's names for [`DeviceKind`]).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
    Auto,
}

impl From<Device> for DeviceKind {
    fn from(device: Device) -> Self {
        match device {
            Device::Cpu => Self::Cpu,
            Device::Cuda => Self::Cuda,
            Device::Auto => Self::Auto,
        }
    }
}

/// The build profile this binary was compiled with (speed figures are meaningless without it).
fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug/test profile (opt-level 1, numeric crates at 3)"
    } else {
        "release"
    }
}

/// Images/s of `optimizer` over the timed batches.
fn measure(
    device: DeviceKind,
    optimizer: OptimizerKind,
    batches: usize,
    warmup: usize,
    batch_size: usize,
    data: &data::SplitDataset,
) -> anyhow::Result<f64> {
    let needed = (batches + warmup) * batch_size;
    let indices: Vec<usize> = (0..needed.min(data.train.len())).collect();
    let subset = data.train.select(&indices);
    let config = TrainConfig {
        optimizer,
        epochs: 1,
        batch_size,
        augment: false,
        normalize: InputNormalization::Unit,
        schedule: Schedule::Constant,
        rho: 0.05,
        device,
        ..TrainConfig::default()
    };
    let mut timed_from = None::<Instant>;
    let mut timed_images = 0usize;
    let mut last = Instant::now();
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
            if let TrainEvent::Batch { done, .. } = event {
                last = Instant::now();
                if done == warmup {
                    timed_from = Some(last);
                } else if done > warmup {
                    timed_images += batch_size;
                }
            }
        },
    )?;
    let Some(from) = timed_from else {
        anyhow::bail!("too few batches to time");
    };
    Ok(timed_images as f64 / last.duration_since(from).as_secs_f64().max(1e-9))
}

pub fn run(what: What) -> anyhow::Result<()> {
    let (batches, warmup, batch_size, device, json) = match what {
        What::Train {
            batches,
            warmup,
            batch_size,
            device,
            json,
        } => (batches, warmup, batch_size, DeviceKind::from(device), json),
        What::Ui { points, frames } => return ui_frames(points, frames),
    };
    let data = data::load("embedded:mnist", &LoadOptions::default())?;
    // Burn's CPU backend runs on rayon's global pool, which honours RAYON_NUM_THREADS.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = TrainConfig {
        device,
        ..TrainConfig::default()
    };
    config.validate()?;
    let device = train::device::resolve(device);
    let sgd = measure(
        device,
        OptimizerKind::Sgd,
        batches,
        warmup,
        batch_size,
        &data,
    )?;
    let sam = measure(
        device,
        OptimizerKind::Sam,
        batches,
        warmup,
        batch_size,
        &data,
    )?;
    let step_ratio = sgd / sam;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": "cnn", "dataset": "embedded:mnist", "batch_size": batch_size,
                "batches": batches, "threads": threads, "device": device.name(),
                "profile": profile(),
                "sgd_images_per_second": sgd, "sam_images_per_second": sam,
                "sam_step_over_sgd_step": step_ratio,
            })
        );
    } else {
        println!(
            "small CNN, embedded MNIST, batch {batch_size}, {batches} timed batches, {}, {} build",
            match device {
                DeviceKind::Cuda => "CUDA GPU 0".to_owned(),
                _ => format!("{threads} threads (flex CPU)"),
            },
            profile()
        );
        println!("  SGD  {sgd:8.1} images/s");
        println!("  SAM  {sam:8.1} images/s");
        println!("  SAM step / SGD step = {step_ratio:.2}");
    }
    Ok(())
}

/// Builds an inspection view of `points` samples (the demo digits repeated, seeded random
/// detector scores, five Gaussian clusters in the scatter) and times `frames` frames.
fn ui_frames(points: usize, frames: usize) -> anyhow::Result<()> {
    use eframe::egui;
    use poisonscope::prepare::Prepared;
    use poisonscope::report::{DatasetInfo, DetectorReport, Report, TrainingInfo};
    use poisonscope::ui::{App, worker};
    use rand::{RngExt, SeedableRng};

    let demo = data::load("embedded:mnist", &LoadOptions::default())?;
    let indices: Vec<usize> = (0..points).map(|i| i % demo.train.len()).collect();
    let train = demo.train.select(&indices);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let detectors = ["ac", "ss", "spectre", "scan", "beatrix"]
        .iter()
        .map(|name| {
            let scores: Vec<f64> = (0..points).map(|_| rng.random::<f64>()).collect();
            let flags: Vec<bool> = scores.iter().map(|s| *s > 0.95).collect();
            ((*name).to_owned(), scores, flags)
        })
        .collect::<Vec<_>>();
    let projection = train
        .labels
        .iter()
        .map(|&l| {
            let angle = f64::from(l) * 0.6;
            [
                5.0 * angle.cos() + rng.random::<f64>() - 0.5,
                5.0 * angle.sin() + rng.random::<f64>() - 0.5,
            ]
        })
        .collect();
    let report = Report {
        version: poisonscope::report::VERSION,
        dataset: DatasetInfo {
            source: "embedded:mnist".to_owned(),
            n_train: points,
            classes: train.class_names.clone(),
            shape: [28, 28, 1],
            ..DatasetInfo::default()
        },
        training: TrainingInfo {
            rho: 0.05,
            device: "cpu".to_owned(),
            ..TrainingInfo::default()
        },
        detectors: detectors
            .iter()
            .map(|(name, _, flags)| {
                let row = DetectorReport {
                    flagged: flags.iter().filter(|f| **f).count(),
                    ..DetectorReport::default()
                };
                (name.clone(), row)
            })
            .collect(),
        ..Report::default()
    };
    let score_sets: Vec<&[f64]> = detectors.iter().map(|(_, s, _)| s.as_slice()).collect();
    let flag_sets: Vec<&[bool]> = detectors.iter().map(|(_, _, f)| f.as_slice()).collect();
    let consensus = poisonscope::detect::Consensus {
        scores: poisonscope::detect::consensus::mean_rank(&score_sets, points),
        flags: poisonscope::detect::consensus::agreement(&flag_sets, points, 2),
        agreement: 2,
    };
    let arm = worker::Arm {
        name: "sam".to_owned(),
        report,
        predicted: train.labels.clone(),
        consensus,
        detectors,
        projection,
        features: std::sync::Arc::new(ndarray::Array2::zeros((points, 2))),
    };
    let prepared = Prepared {
        clean: data::SplitDataset {
            train,
            test: demo.test.clone(),
            ..demo
        },
        poisoned: None,
    };
    let mut app = App::new(None);
    app.show_results(worker::Finished {
        prepared: std::sync::Arc::new(prepared),
        truth: None,
        arms: vec![arm],
        comparison: None,
        config: poisonscope::config::Experiment::default(),
        runs: std::sync::Arc::default(),
    });
    let ctx = egui::Context::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1400.0, 900.0));
    let mut times = Vec::new();
    for frame in 0..frames + 5 {
        let input = egui::RawInput {
            screen_rect: Some(screen),
            // Hover the scatter, moving a little every frame (nearest-point search, tooltip).
            events: vec![egui::Event::PointerMoved(egui::pos2(
                1150.0 + (frame % 20) as f32,
                650.0,
            ))],
            ..Default::default()
        };
        let start = Instant::now();
        let mut output = ctx.run_ui(input, |ui| app.root_ui(ui));
        // No GPU here: the texture uploads are dropped.
        output.textures_delta.clear();
        let meshes = ctx.tessellate(std::mem::take(&mut output.shapes), output.pixels_per_point);
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        if frame >= 5 {
            times.push(elapsed);
        }
        std::hint::black_box(meshes);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "inspection view, {points} samples, {frames} frames, 1400×900: median {:.1} ms, p95 {:.1} ms, max {:.1} ms per frame (CPU: layout + tessellation)",
        at(0.5),
        at(0.95),
        at(1.0)
    );
    Ok(())
}
