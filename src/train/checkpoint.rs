//! Checkpoints: the trained weights (`model.bpk`, Burn's burnpack format) and what is needed to
//! rebuild and use the model (`model.json`: architecture, input shape, classes, normalisation,
//! the training config). Both are written to a temporary file in the same folder and renamed into
//! place, so a reader never sees half a checkpoint and an interrupted save leaves the old one.

use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{TrainError, Trained};
use crate::config::TrainConfig;
use crate::data::{Normalization, Shape};
use crate::model::Net;

/// File name of the weights inside a run folder.
pub const WEIGHTS: &str = "model.bpk";
/// File name of the metadata inside a run folder.
pub const META: &str = "model.json";

/// What `model.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub version: u32,
    pub train: TrainConfig,
    /// `[height, width, channels]`.
    pub shape: [usize; 3],
    pub class_names: Vec<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub clean_accuracy: f64,
    pub attack_success_rate: Option<f64>,
}

fn error(path: &Path, message: impl ToString) -> TrainError {
    TrainError::Checkpoint {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Saves `trained` into `dir` (created if missing) as `model.bpk` + `model.json`.
pub fn save(
    dir: &Path,
    trained: &Trained,
    config: &TrainConfig,
    shape: Shape,
    class_names: &[String],
) -> Result<(), TrainError> {
    fs::create_dir_all(dir).map_err(|e| error(dir, e))?;
    let weights = dir.join(WEIGHTS);
    crate::artifacts::write_through(&weights, |temp| {
        trained
            .model
            .clone()
            .save_file(temp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| error(&weights, e))?;

    let meta = CheckpointMeta {
        version: 1,
        train: config.clone(),
        shape: [shape.height, shape.width, shape.channels],
        class_names: class_names.to_vec(),
        mean: trained.normalization.mean.clone(),
        std: trained.normalization.std.clone(),
        clean_accuracy: trained.clean_accuracy,
        attack_success_rate: trained.attack_success_rate,
    };
    let meta_path = dir.join(META);
    let text = serde_json::to_string_pretty(&meta).map_err(|e| error(&meta_path, e))?;
    crate::artifacts::write_file(&meta_path, text.as_bytes()).map_err(|e| error(&meta_path, e))
}

impl CheckpointMeta {
    /// The input shape, after checking that the metadata can describe a model: a shape the
    /// model takes, at least two classes, a finite mean and a positive finite std per channel.
    pub fn check(&self) -> Result<Shape, String> {
        let [height, width, channels] = self.shape;
        let shape = Shape {
            height,
            width,
            channels,
        };
        crate::model::check_input(self.train.model, shape)?;
        if self.class_names.len() < 2 {
            return Err(format!(
                "lists {} classes; a model needs at least two",
                self.class_names.len()
            ));
        }
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(format!(
                "normalisation has {} means and {} stds for {channels}-channel images",
                self.mean.len(),
                self.std.len()
            ));
        }
        let sane = |m: &f32, s: &f32| {
            m.is_finite() && m.abs() <= 1e3 && s.is_finite() && *s > 1e-6 && *s <= 1e3
        };
        if !self.mean.iter().zip(&self.std).all(|(m, s)| sane(m, s)) {
            return Err(format!(
                "normalisation mean {:?} / std {:?} is not usable (finite means, stds in (1e-6, 1e3])",
                self.mean, self.std
            ));
        }
        Ok(shape)
    }

    /// Checks that this checkpoint's model can read `data`: same image shape, same classes.
    pub fn check_data(&self, data: &crate::data::Dataset) -> Result<(), String> {
        let s = data.shape;
        if self.shape != [s.height, s.width, s.channels] {
            return Err(format!(
                "the model was trained on {}×{}×{} images but the data are {}×{}×{}",
                self.shape[0], self.shape[1], self.shape[2], s.height, s.width, s.channels
            ));
        }
        if self.class_names != data.class_names {
            return Err(format!(
                "the model was trained on {} classes ({}) but the data have {} ({})",
                self.class_names.len(),
                self.class_names.join(", "),
                data.class_names.len(),
                data.class_names.join(", ")
            ));
        }
        Ok(())
    }
}

/// A model loaded from a run folder, with its metadata and normalisation.
pub struct Loaded {
    pub model: Net,
    pub meta: CheckpointMeta,
    pub normalization: Normalization,
}

impl Loaded {
    /// The loaded model as a [`Trained`], with the training history and timings given (a
    /// checkpoint stores neither).
    pub fn into_trained(
        self,
        history: Vec<super::EpochStats>,
        seconds: f64,
        images_per_second: f64,
    ) -> Trained {
        Trained {
            model: self.model,
            normalization: self.normalization,
            history,
            clean_accuracy: self.meta.clean_accuracy,
            attack_success_rate: self.meta.attack_success_rate,
            seconds,
            images_per_second,
        }
    }
}

/// Reads and checks `model.json` in `dir` (see [`CheckpointMeta::check`]).
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta, TrainError> {
    let meta_path = dir.join(META);
    let text = fs::read_to_string(&meta_path).map_err(|e| error(&meta_path, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| error(&meta_path, e))?;
    meta.check().map_err(|why| error(&meta_path, why))?;
    Ok(meta)
}

/// Loads the checkpoint in `dir` onto `device` (evaluation mode). With `data`, the checkpoint
/// must fit it (shape, classes) before any weight is read.
pub fn load_for(
    dir: &Path,
    device: &Device,
    data: Option<&crate::data::Dataset>,
) -> Result<Loaded, TrainError> {
    let meta = read_meta(dir)?;
    if let Some(data) = data {
        meta.check_data(data)
            .map_err(|why| error(&dir.join(META), why))?;
    }
    load_checked(dir, device, meta)
}

/// Loads the checkpoint in `dir` onto `device` (evaluation mode).
pub fn load(dir: &Path, device: &Device) -> Result<Loaded, TrainError> {
    load_for(dir, device, None)
}

fn load_checked(dir: &Path, device: &Device, meta: CheckpointMeta) -> Result<Loaded, TrainError> {
    let [height, width, channels] = meta.shape;
    let shape = Shape {
        height,
        width,
        channels,
    };
    let weights = dir.join(WEIGHTS);
    let model = Net::new(meta.train.model, shape, meta.class_names.len(), device)
        .try_load_file(&weights)
        .map_err(|e| error(&weights, e))?;
    let normalization = Normalization {
        mean: meta.mean.clone(),
        std: meta.std.clone(),
    };
    Ok(Loaded {
        model,
        meta,
        normalization,
    })
}
