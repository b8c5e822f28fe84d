//! `poisonscope bench train`: training throughput of the small CNN on the embedded MNIST set,
//! SGD and SAM, with the PyTorch reference's settings (x/255 inputs, no augmentation, batch 128).
//! Run `shared/reference` with the same thread count next to it for the ratios.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Subcommand;
use poisonscope::config::{InputNormalization, OptimizerKind, Schedule, TrainConfig};
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
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Images/s of `optimizer` over the timed batches.
fn measure(
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
    let What::Train {
        batches,
        warmup,
        batch_size,
        json,
    } = what;
    let data = data::load("embedded:mnist", &LoadOptions::default())?;
    // Burn's CPU backend runs on rayon's global pool, which honours RAYON_NUM_THREADS.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let sgd = measure(OptimizerKind::Sgd, batches, warmup, batch_size, &data)?;
    let sam = measure(OptimizerKind::Sam, batches, warmup, batch_size, &data)?;
    let step_ratio = sgd / sam;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": "cnn", "dataset": "embedded:mnist", "batch_size": batch_size,
                "batches": batches, "threads": threads,
                "sgd_images_per_second": sgd, "sam_images_per_second": sam,
                "sam_step_over_sgd_step": step_ratio,
            })
        );
    } else {
        println!(
            "small CNN, embedded MNIST, batch {batch_size}, {batches} timed batches, {threads} threads (flex CPU)"
        );
        println!("  SGD  {sgd:8.1} images/s");
        println!("  SAM  {sam:8.1} images/s");
        println!("  SAM step / SGD step = {step_ratio:.2}");
    }
    Ok(())
}
