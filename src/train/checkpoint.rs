//! Checkpoints: the trained weights (`model.bpk`, Burn's burnpack format) and what is needed to
//! rebuild and use the model (`model.json`: architecture, input shape, classes, normalisation,
//! the training config). Both are written to a temporary file in the same folder and renamed into
//! place, so a reader never sees half a checkpoint and an interrupted save leaves the old one.

use std::fs;
use std::path::{Path, PathBuf};

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

/// A hidden temporary path beside `path`.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
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
    let temp = temp_beside(&weights);
    let saved = trained.model.clone().save_file(&temp);
    if let Err(e) = saved {
        let _ = fs::remove_file(&temp);
        return Err(error(&weights, e));
    }
    fs::rename(&temp, &weights).map_err(|e| error(&weights, e))?;

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
    let temp = temp_beside(&meta_path);
    fs::write(&temp, text).map_err(|e| error(&meta_path, e))?;
    fs::rename(&temp, &meta_path).map_err(|e| error(&meta_path, e))
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

/// Loads the checkpoint in `dir` onto `device` (evaluation mode).
pub fn load(dir: &Path, device: &Device) -> Result<Loaded, TrainError> {
    let meta_path = dir.join(META);
    let text = fs::read_to_string(&meta_path).map_err(|e| error(&meta_path, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| error(&meta_path, e))?;
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
