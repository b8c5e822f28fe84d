//! Training: the loop (SGD, SAM, ASAM), the learning-rate schedule, evaluation (clean accuracy,
//! attack success rate), checkpoints, and a worker thread that streams [`TrainEvent`]s.
//!
//! The loop follows the PyTorch reference's conventions (`shared/reference/README.md`): a fresh
//! seeded permutation of the training set every epoch, no dropped last batch, the cosine schedule
//! stepped per batch (`lr_t = ½·lr₀·(1 + cos(π t / T))`), coupled weight decay and momentum in
//! the base SGD, and for SAM both passes in train mode with the BatchNorm running statistics
//! updated only by the first pass. The reported training loss is the first pass's.

pub mod adversarial;
pub mod checkpoint;
pub mod device;
pub mod eval;
pub mod job;
pub mod sam;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{InputNormalization, OptimizerKind, Schedule, TrainConfig};
use crate::data::{Augment, Batcher, Dataset, Normalization};
use crate::model::Net;
use sam::Ascent;

/// Times one part of a training step for `bench train --profile` (its keys start with a space:
/// they overlap the fused layers' own entries, so the profile's total leaves them out).
fn phase<T>(sam: bool, name: &str, f: impl FnOnce() -> T) -> T {
    let optimiser = if sam { "SAM" } else { "SGD" };
    crate::model::kernels::profile::time(|| format!(" {optimiser} step {name}"), 0, f)
}

/// Why training stopped without a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training was cancelled")]
    Cancelled,
    #[error(
        "training diverged: the loss became {value} at epoch {epoch}, batch {batch}; lower train.lr or train.rho"
    )]
    Diverged {
        value: f32,
        epoch: usize,
        batch: usize,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
}

/// What the training loop reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    Started {
        epochs: usize,
        batches_per_epoch: usize,
        train_samples: usize,
        device: String,
    },
    Batch {
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// Batches done so far over the whole run (1-based).
        done: usize,
        total: usize,
        loss: f32,
        lr: f64,
        images_per_second: f64,
        /// The last batch of a read from the device: every batch up to this one had finished
        /// when the event was sent (on a GPU the batches of one read arrive together; on the CPU
        /// every event is synced). Timing starts and stops at such events.
        synced: bool,
    },
    Epoch(EpochStats),
}

/// One epoch's summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss (first pass for SAM) over the epoch's samples.
    pub train_loss: f64,
    /// Training accuracy of the first pass, on the (augmented) batches as trained.
    pub train_accuracy: f64,
    /// Clean test accuracy; `None` for an epoch not evaluated (`train.evaluate_every`).
    pub test_accuracy: Option<f64>,
    /// Attack success rate on the triggered test set, when an attack is configured and the
    /// epoch was evaluated.
    pub attack_success_rate: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// A trained model with what is needed to use it.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The model in evaluation mode (no autodiff, BatchNorm running statistics).
    pub model: Net,
    pub normalization: Normalization,
    pub history: Vec<EpochStats>,
    pub clean_accuracy: f64,
    pub attack_success_rate: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// The data one training run sees.
#[derive(Clone, Copy, Debug)]
pub struct TrainData<'a> {
    /// The (possibly poisoned) training set with its given labels.
    pub train: &'a Dataset,
    /// The clean test split.
    pub test: &'a Dataset,
    /// Triggered test images labelled with the attacker's label (for the attack success rate).
    pub triggered: Option<&'a Dataset>,
}

/// Learning rate at global step `t` of `total`.
pub fn learning_rate(schedule: Schedule, lr0: f64, t: usize, total: usize) -> f64 {
    match schedule {
        Schedule::Constant => lr0,
        Schedule::Cosine => {
            let progress = t as f64 / total.max(1) as f64;
            0.5 * lr0 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

pub use device::{cuda_unavailable, device_for, wgpu_adapter};

/// Batches whose loss and accuracy a GPU training reads back together.
pub const GPU_READ_EVERY: usize = 8;

/// ... or fewer, once this long has passed since the last read.
const GPU_READ_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// A trained batch whose loss and accuracy are still on the device.
struct Pending {
    batch: usize,
    images: usize,
    lr: f64,
    loss: Tensor<1>,
    correct: Tensor<1, Int>,
}

/// A trained batch as read back.
struct ReadBatch {
    batch: usize,
    images: usize,
    lr: f64,
    loss: f32,
    correct: usize,
}

/// Reads the losses and correct counts of `pending` in one transfer.
fn read_back(pending: Vec<Pending>) -> Vec<ReadBatch> {
    if pending.is_empty() {
        return Vec::new();
    }
    let k = pending.len();
    let (mut losses, mut counts) = (Vec::with_capacity(k), Vec::with_capacity(k));
    let mut meta = Vec::with_capacity(k);
    for p in pending {
        losses.push(p.loss.inner());
        counts.push(p.correct.float().inner());
        meta.push((p.batch, p.images, p.lr));
    }
    losses.extend(counts);
    // Counts up to a batch size are exact in f32.
    let values = Tensor::cat(losses, 0)
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap_or_default();
    meta.into_iter()
        .enumerate()
        .map(|(i, (batch, images, lr))| ReadBatch {
            batch,
            images,
            lr,
            loss: values.get(i).copied().unwrap_or(f32::NAN),
            correct: values.get(k + i).map_or(0, |&c| c.max(0.0) as usize),
        })
        .collect()
}

/// Burn's CPU random generator is process-wide, so seeding and initialising a model must not
/// interleave with another thread doing the same.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Touches every parameter: Burn initialises parameters lazily, on first use, so without this
/// the random draws would happen at the first forward pass, outside [`INIT_LOCK`], and another
/// thread seeding the generator in between (two trainings at once: a comparison in the window,
/// parallel tests) would change the weights.
struct Materialize;

impl burn::module::ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        let _ = param.val();
    }
}

/// A freshly initialised model whose weights depend only on `seed`.
pub fn init_model(config: &TrainConfig, data: &Dataset, device: &Device) -> Net {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(config.seed);
    let model = Net::new(config.model, data.shape, data.num_classes(), device);
    model.visit(&mut Materialize);
    model
}

/// The input normalisation a config asks for, measured on the training set.
pub fn normalization_for(config: &TrainConfig, train: &Dataset) -> Normalization {
    match config.normalize {
        InputNormalization::Dataset => Normalization::from_dataset(train),
        InputNormalization::Unit => Normalization::unit(train.shape.channels),
    }
}

/// Trains a model as `config` says, calling `on_event` as it goes and checking `cancel` before
/// every batch.
pub fn train(
    config: &TrainConfig,
    data: TrainData<'_>,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Trained, TrainError> {
    let n = data.train.len();
    if n == 0 {
        return Err(TrainError::Invalid("the training set is empty".into()));
    }
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(TrainError::Invalid(
            "train.epochs and train.batch_size must be at least 1".into(),
        ));
    }
    let device = device_for(config.device)?;
    let train_device = device.clone().autodiff();
    let normalization = normalization_for(config, data.train);
    let augment = config.augment.then(|| {
        let side = data.train.shape.height.min(data.train.shape.width);
        // Flips change digits and text; only offer them for natural RGB images.
        Augment::standard(side, data.train.shape.channels == 3)
    });
    let batcher = Batcher {
        normalization: normalization.clone(),
        augment,
    };
    // The weights are drawn on the CPU whatever the device, so one seed gives one model on every
    // device (each GPU backend has its own generator) and a GPU run can be checked against a CPU
    // run from the same start.
    let on_host = device::on_host(config.device);
    let mut model = if on_host {
        init_model(config, data.train, &train_device)
    } else {
        init_model(config, data.train, &Device::flex().autodiff()).fork(&train_device)
    };
    let mut optim = SgdConfig::new()
        .with_momentum((config.momentum > 0.0).then(|| {
            MomentumConfig::new()
                .with_momentum(config.momentum)
                .with_dampening(0.0)
        }))
        .with_weight_decay(
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32)),
        )
        .init();
    let ascent = match config.optimizer {
        OptimizerKind::Sgd => None,
        OptimizerKind::Sam => Some(Ascent::Plain),
        OptimizerKind::Asam => Some(Ascent::Adaptive { eta: sam::ASAM_ETA }),
    };
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);

    let batches_per_epoch = n.div_ceil(config.batch_size);
    let total = batches_per_epoch * config.epochs;
    // Cross-entropy starts near ln K; fifty times that means the weights blew up (a finite loss
    // of 1e34 would otherwise pass and leave the detectors non-finite features).
    let exploded = 50.0 * (data.train.num_classes().max(2) as f32).ln();
    on_event(TrainEvent::Started {
        epochs: config.epochs,
        batches_per_epoch,
        train_samples: n,
        device: {
            let mut words = device::describe(config.device);
            if config.device == crate::config::DeviceKind::Auto {
                for why in device::auto_passed_over() {
                    words.push_str(&format!("; auto passed over {why}"));
                }
            }
            words
        },
    });
    // On a GPU every read of a value waits until the queue has run everything before it, so the
    // loss and accuracy of several batches are read back together (on the CPU a read costs
    // nothing: every batch, as the progress bar expects).
    let read_every = if on_host { 1 } else { GPU_READ_EVERY };
    let mut pending: Vec<Pending> = Vec::with_capacity(read_every);
    let mut order: Vec<usize> = (0..n).collect();
    let mut order_rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut augment_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xA5A5_5A5A);
    let mut history = Vec::with_capacity(config.epochs);
    let started = Instant::now();
    let mut rate = None::<f64>;
    let mut done = 0;
    for epoch in 1..=config.epochs {
        let epoch_started = Instant::now();
        order.shuffle(&mut order_rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut window_started = Instant::now();
        for (batch, indices) in order.chunks(config.batch_size).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            let lr = learning_rate(config.schedule, config.lr, done + pending.len(), total);
            let input = batcher.batch(data.train, indices, &mut augment_rng, &train_device);
            let (loss, correct_now) = phase(ascent.is_some(), "1 forward", || {
                let logits = model.forward(input.images.clone());
                let predicted = logits.clone().argmax(1).reshape([indices.len()]);
                let loss = loss_fn.forward(logits, input.labels.clone());
                (loss, predicted.equal(input.labels.clone()).int().sum())
            });
            let loss_now = loss.clone().detach();
            let grads = phase(ascent.is_some(), "2 backward", || {
                GradientsParams::from_grads(loss.backward(), &model)
            });
            let moved = ascent.and_then(|a| {
                phase(ascent.is_some(), "3 w + e", || {
                    sam::perturbed(&model, &grads, config.rho, a)
                })
            });
            let grads = match moved {
                Some(mut moved) => {
                    // The first pass's gradients are spent (they are in w + e): their memory
                    // goes back before the second pass, whose gradients have the same sizes.
                    drop(grads);
                    moved.set_bn_momentum(0.0);
                    let loss2 = phase(ascent.is_some(), "4 forward at w + e", || {
                        loss_fn.forward(moved.forward(input.images), input.labels)
                    });
                    phase(ascent.is_some(), "5 backward at w + e", || {
                        GradientsParams::from_grads(loss2.backward(), &moved)
                    })
                }
                None => grads,
            };
            model = phase(ascent.is_some(), "6 optimiser step", || {
                optim.step(lr, model, grads)
            });
            pending.push(Pending {
                batch,
                images: indices.len(),
                lr,
                loss: loss_now,
                correct: correct_now,
            });
            let last_of_epoch = (batch + 1) * config.batch_size >= n;
            // A slow device (a software adapter, a large model) also reads every
            // `GPU_READ_AFTER`, so the progress bar and the curves keep moving.
            let waited = window_started.elapsed() >= GPU_READ_AFTER;
            if pending.len() < read_every && !last_of_epoch && !waited {
                continue;
            }
            // The host waits here for the device: the time since the last read is the time these
            // batches took.
            let read = read_back(std::mem::take(&mut pending));
            let images: usize = read.iter().map(|b| b.images).sum();
            let instant = images as f64 / window_started.elapsed().as_secs_f64().max(1e-9);
            window_started = Instant::now();
            let last = read.len().saturating_sub(1);
            for (i, b) in read.into_iter().enumerate() {
                if !b.loss.is_finite() || b.loss > exploded {
                    return Err(TrainError::Diverged {
                        value: b.loss,
                        epoch,
                        batch: b.batch,
                    });
                }
                loss_sum += f64::from(b.loss) * b.images as f64;
                correct += b.correct;
                done += 1;
                let smoothed = rate.map_or(instant, |r| 0.8 * r + 0.2 * instant);
                rate = Some(smoothed);
                on_event(TrainEvent::Batch {
                    epoch,
                    batch: b.batch,
                    done,
                    total,
                    loss: b.loss,
                    lr: b.lr,
                    images_per_second: smoothed,
                    synced: i == last,
                });
            }
        }
        let train_seconds = epoch_started.elapsed().as_secs_f64();
        let every = config.evaluate_every.unwrap_or(0);
        let (test_accuracy, attack_success_rate) =
            if epoch == config.epochs || (every > 0 && epoch % every == 0) {
                let eval_model = model.valid();
                let accuracy = |set| eval::accuracy(&eval_model, set, &normalization, &device);
                (Some(accuracy(data.test)), data.triggered.map(accuracy))
            } else {
                (None, None)
            };
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / n as f64,
            train_accuracy: correct as f64 / n as f64,
            test_accuracy,
            attack_success_rate,
            seconds: epoch_started.elapsed().as_secs_f64(),
            images_per_second: n as f64 / train_seconds.max(1e-9),
        };
        on_event(TrainEvent::Epoch(stats.clone()));
        history.push(stats);
        // The evaluation's buffers (other sizes than the training steps') go back to the system
        // rather than waiting for the allocator's purge: memory does not grow epoch by epoch
        // (the next step takes its pages again once, a fraction of a step per epoch).
        crate::allocator::give_back_freed_memory();
    }
    let seconds = started.elapsed().as_secs_f64();
    // The optimiser's momentum and the last batch's gradients go now, and the device's pools give
    // back what only they used: the next arm or cell starts from its own model's needs.
    drop(optim);
    let model = model.valid();
    device::release_unused(&device);
    let last = history.last().cloned();
    let train_images = (n * config.epochs) as f64;
    let train_seconds: f64 = history
        .iter()
        .map(|e| n as f64 / e.images_per_second.max(1e-9))
        .sum();
    Ok(Trained {
        model,
        normalization,
        clean_accuracy: last.as_ref().and_then(|e| e.test_accuracy).unwrap_or(0.0),
        attack_success_rate: last.and_then(|e| e.attack_success_rate),
        history,
        seconds,
        images_per_second: train_images / train_seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests;
