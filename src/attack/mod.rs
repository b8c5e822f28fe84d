//! Attacks: triggers, the poisoning plan, the poisoned training set and the triggered test set.
//!
//! Every attack is a pure, seeded function of a clean u8 image (any H×W, 1 or 3 channels): one
//! file per attack. [`Attack::from_config`] turns the `[attack]` table into a ready trigger for a
//! dataset's image shape; [`poison`] applies it along a [`PoisonPlan`].

pub mod adaptive_blend;
pub mod badnets;
pub mod blended;
mod config;
pub mod export;
pub mod lc;
pub mod lf;
pub mod plan;
mod poison;
pub mod preview;
pub mod registry;
pub mod sig;
pub mod tact;
pub mod wanet;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::Shape;
pub use config::{AttackConfig, TargetMode};
pub use plan::{PlanSpec, PoisonPlan, Role};
pub use poison::{PoisonedData, poison, poison_with};
pub use registry::{AttackKind, AttackSettings, Knob, Stamp, Trigger, TriggerConfig};

/// Why an attack could not be set up or applied.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {message}", path.display())]
    At { path: PathBuf, message: String },
}

/// A configured attack for one dataset shape.
#[derive(Clone, Debug)]
pub struct Attack {
    pub kind: AttackKind,
    pub shape: Shape,
    pub trigger: Arc<dyn Trigger>,
    pub plan: PlanSpec,
}

/// Per-sample random streams, independent of processing order.
fn sample_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Streams for the training-time poison, the cover samples and the test-time trigger.
const STREAM_TRAIN: u64 = 0;
const STREAM_TEST: u64 = 1 << 40;

/// Reads a user trigger image, converted to `channels` and resized to `size` when given.
fn load_trigger(
    path: &Path,
    channels: usize,
    size: Option<(usize, usize)>,
) -> Result<(usize, usize, Vec<u8>), AttackError> {
    let image =
        crate::data::image_folder::decode(path).map_err(|e| AttackError::Invalid(e.to_string()))?;
    let image = match size {
        Some((h, w)) => {
            image.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
        }
        None => image,
    };
    let (h, w) = (image.height() as usize, image.width() as usize);
    let bytes = if channels == 1 {
        image.to_luma8().into_raw()
    } else {
        image.to_rgb8().into_raw()
    };
    Ok((h, w, bytes))
}

fn check_unit(name: &str, v: f64) -> Result<f64, AttackError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(AttackError::Invalid(format!(
            "attack.{name} must be in [0, 1], got {v}"
        )))
    }
}

/// Cover / cross samples per poisoned sample.
fn check_cover_ratio(v: f64) -> Result<(), String> {
    crate::check::in_range("attack.cover_ratio", v, 0.0, false, 10.0, false)
}

/// A user trigger's paths: not empty, and a mask only with an image.
fn check_trigger_paths(image: Option<&Path>, mask: Option<&Path>) -> Result<(), String> {
    for (key, path) in [
        ("attack.trigger_image", image),
        ("attack.trigger_mask", mask),
    ] {
        if path.is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(format!("{key} is empty; give the path of a PNG"));
        }
    }
    if mask.is_some() && image.is_none() {
        return Err("attack.trigger_mask needs attack.trigger_image".to_owned());
    }
    Ok(())
}

impl Attack {
    /// Builds the trigger of `config` for images of `shape`.
    pub fn from_config(config: &AttackConfig, shape: Shape) -> Result<Self, AttackError> {
        let settings = config.trigger.settings();
        Ok(Self {
            kind: config.kind(),
            shape,
            trigger: Arc::from(settings.trigger(shape, config.seed)?),
            plan: PlanSpec {
                ratio: config.ratio,
                target: config.target,
                mode: config.mode,
                clean_label: settings.clean_label(),
                cover_ratio: settings.cover_ratio(),
                sources: settings.sources(config.target),
                seed: config.seed,
            },
        })
    }

    /// The training-time poisoned version of `image` (sample `index`).
    pub fn poison_image(&self, image: &[u8], index: usize) -> Vec<u8> {
        self.triggered(image, STREAM_TRAIN + index as u64, Stamp::Poison)
    }

    /// The cover / cross version of `image`: a partial (Adaptive-Blend), noisy (WaNet) or whole
    /// (TaCT) trigger. Attacks without cover samples return the image unchanged.
    pub fn cover_image(&self, image: &[u8], index: usize) -> Vec<u8> {
        self.triggered(image, STREAM_TRAIN + index as u64, Stamp::Cover)
    }

    /// The test-time triggered version of `image` (test sample `index`).
    pub fn test_image(&self, image: &[u8], index: usize) -> Vec<u8> {
        self.triggered(image, STREAM_TEST + index as u64, Stamp::Test)
    }

    fn triggered(&self, image: &[u8], stream: u64, stamp: Stamp) -> Vec<u8> {
        let mut out = image.to_vec();
        let mut rng = sample_rng(self.plan.seed, stream);
        self.trigger.stamp(&mut out, self.shape, stamp, &mut rng);
        out
    }
}
