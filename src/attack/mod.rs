//! Attacks: triggers, the poisoning plan, the poisoned training set and the triggered test set.
//!
//! Every attack is a pure, seeded function of a clean u8 image (any H×W, 1 or 3 channels): one
//! file per attack. [`Attack::from_config`] turns the `[attack]` table into a ready trigger for a
//! dataset's image shape; [`poison`] applies it along a [`PoisonPlan`].

pub mod adaptive_blend;
pub mod badnets;
pub mod blended;
pub mod export;
pub mod lc;
pub mod lf;
pub mod plan;
mod poison;
pub mod preview;
pub mod sig;
pub mod wanet;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{AttackConfig, AttackKind};
use crate::data::Shape;
pub use plan::{PlanSpec, PoisonPlan, Role};
pub use poison::{PoisonedData, poison, poison_with};

/// Why an attack could not be set up or applied.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {message}", path.display())]
    At { path: PathBuf, message: String },
}

/// A trigger made ready for one image shape.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// BadNets: a patch stamped at (row, col).
    Patch {
        patch: badnets::Patch,
        row: usize,
        col: usize,
    },
    /// Blended: a full-image pattern with weight α.
    Blend { pattern: Vec<u8>, alpha: f64 },
    /// SIG: horizontal sinusoid.
    Sig { delta: f64, frequency: f64 },
    /// WaNet: smooth warp.
    Warp { field: wanet::WarpField },
    /// LF: additive smooth pattern (one value per pixel).
    LowFrequency { pattern: Vec<f64> },
    /// LC: a checkerboard in each corner.
    Corners { patch: badnets::Patch },
    /// Adaptive-Blend: pieces of a blend pattern.
    AdaptiveBlend {
        pattern: Vec<u8>,
        alpha_train: f64,
        alpha_test: f64,
    },
}

/// A configured attack for one dataset shape.
#[derive(Clone, Debug)]
pub struct Attack {
    pub kind: AttackKind,
    pub shape: Shape,
    pub trigger: Trigger,
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

impl Attack {
    /// Builds the trigger of `config` for images of `shape`.
    pub fn from_config(config: &AttackConfig, shape: Shape) -> Result<Self, AttackError> {
        let (h, w, c) = (shape.height, shape.width, shape.channels);
        let seed = config.seed;
        let blend_pattern = |config: &AttackConfig| -> Result<Vec<u8>, AttackError> {
            match &config.trigger_image {
                Some(path) => Ok(load_trigger(path, c, Some((h, w)))?.2),
                None => Ok(blended::noise_pattern(shape.len(), seed)),
            }
        };
        let trigger = match config.kind {
            AttackKind::Badnets | AttackKind::Image | AttackKind::Tact => {
                let patch = match (&config.trigger_image, config.kind) {
                    (Some(path), _) => {
                        let (ph, pw, values) = load_trigger(path, c, None)?;
                        let mask = match &config.trigger_mask {
                            Some(mask_path) => {
                                let (_, _, m) = load_trigger(mask_path, 1, Some((ph, pw)))?;
                                m.iter().map(|&v| v > 127).collect()
                            }
                            None => values
                                .chunks_exact(c)
                                .map(|p| p.iter().any(|&v| v > 0))
                                .collect(),
                        };
                        badnets::Patch {
                            height: ph,
                            width: pw,
                            channels: c,
                            values,
                            mask,
                        }
                    }
                    (None, AttackKind::Image) => {
                        return Err(AttackError::Invalid(
                            "attack.kind = \"image\" needs attack.trigger_image".to_owned(),
                        ));
                    }
                    (None, _) => badnets::Patch::white_square(config.patch_size.unwrap_or(3), c),
                };
                let position_text = config.position.as_deref().unwrap_or("bottom-right");
                let position = badnets::Position::parse(position_text).ok_or_else(|| {
                    AttackError::Invalid(format!(
                        "attack.position = {position_text:?}: expected bottom-right, bottom-left, top-right, top-left or \"X,Y\""
                    ))
                })?;
                let (row, col) = position
                    .origin(h, w, patch.height, patch.width)
                    .ok_or_else(|| {
                        AttackError::Invalid(format!(
                            "a {}×{} trigger at {position_text} does not fit a {h}×{w} image",
                            patch.height, patch.width
                        ))
                    })?;
                Trigger::Patch { patch, row, col }
            }
            AttackKind::Blended => Trigger::Blend {
                pattern: blend_pattern(config)?,
                alpha: check_unit("alpha", config.alpha.unwrap_or(0.2))?,
            },
            AttackKind::Sig => Trigger::Sig {
                delta: config.delta.unwrap_or(40.0),
                frequency: config.frequency.unwrap_or(6.0),
            },
            AttackKind::Wanet => Trigger::Warp {
                field: wanet::WarpField::new(
                    h,
                    w,
                    config.grid_size.unwrap_or(4),
                    config.warp_strength.unwrap_or(0.5),
                    seed,
                ),
            },
            AttackKind::Lf => Trigger::LowFrequency {
                pattern: lf::pattern(h, w, config.strength.unwrap_or(0.2 * 255.0), seed),
            },
            AttackKind::AdaptiveBlend => Trigger::AdaptiveBlend {
                pattern: blend_pattern(config)?,
                alpha_train: check_unit("alpha", config.alpha.unwrap_or(0.15))?,
                alpha_test: check_unit("alpha_test", config.alpha_test.unwrap_or(0.2))?,
            },
            AttackKind::Lc => {
                if h < 2 * lc::SIDE || w < 2 * lc::SIDE {
                    return Err(AttackError::Invalid(format!(
                        "the LC trigger (3×3 in each corner) needs images of at least 6×6, got {h}×{w}"
                    )));
                }
                let epsilon = config.epsilon.unwrap_or(lc::EPSILON);
                if !(0.0..=255.0).contains(&epsilon) {
                    return Err(AttackError::Invalid(format!(
                        "attack.epsilon must be in [0, 255] (pixel units), got {epsilon}"
                    )));
                }
                Trigger::Corners {
                    patch: lc::checkerboard(c),
                }
            }
        };
        let clean_label = matches!(config.kind, AttackKind::Sig | AttackKind::Lc);
        let default_cover = match config.kind {
            AttackKind::Wanet => 2.0,
            AttackKind::AdaptiveBlend | AttackKind::Tact => 1.0,
            _ => 0.0,
        };
        let sources = (config.kind == AttackKind::Tact).then(|| {
            config
                .source_classes
                .clone()
                .unwrap_or_else(|| vec![if config.target == 1 { 0 } else { 1 }])
        });
        Ok(Self {
            kind: config.kind,
            shape,
            trigger,
            plan: PlanSpec {
                ratio: config.ratio,
                target: config.target,
                mode: config.mode,
                clean_label,
                cover_ratio: config.cover_ratio.unwrap_or(default_cover),
                sources,
                seed,
            },
        })
    }

    /// The training-time poisoned version of `image` (sample `index`).
    pub fn poison_image(&self, image: &[u8], index: usize) -> Vec<u8> {
        self.triggered(image, STREAM_TRAIN + index as u64, false, false)
    }

    /// The cover / cross version of `image`: a partial (Adaptive-Blend) or noisy (WaNet) trigger.
    /// Attacks without cover samples return the image unchanged.
    pub fn cover_image(&self, image: &[u8], index: usize) -> Vec<u8> {
        self.triggered(image, STREAM_TRAIN + index as u64, true, false)
    }

    /// The test-time triggered version of `image` (test sample `index`).
    pub fn test_image(&self, image: &[u8], index: usize) -> Vec<u8> {
        self.triggered(image, STREAM_TEST + index as u64, false, true)
    }

    fn triggered(&self, image: &[u8], stream: u64, cover: bool, test: bool) -> Vec<u8> {
        // TaCT's covers carry the whole trigger (they differ from poisons only by their label).
        let cover = cover && self.kind != AttackKind::Tact;
        let (h, w, c) = (self.shape.height, self.shape.width, self.shape.channels);
        let mut out = image.to_vec();
        let mut rng = sample_rng(self.plan.seed, stream);
        match &self.trigger {
            Trigger::Patch { patch, row, col } if !cover => {
                badnets::apply(&mut out, w, c, patch, *row, *col)
            }
            Trigger::Blend { pattern, alpha } if !cover => {
                blended::apply(&mut out, pattern, *alpha)
            }
            Trigger::Sig { delta, frequency } if !cover => {
                sig::apply(&mut out, w, c, *delta, *frequency)
            }
            Trigger::LowFrequency { pattern } if !cover => lf::apply(&mut out, c, pattern),
            Trigger::Corners { patch } if !cover => lc::apply(&mut out, h, w, c, patch),
            Trigger::Warp { field } => {
                out = field.apply(image, c, cover.then_some(&mut rng as &mut dyn rand::Rng));
            }
            Trigger::AdaptiveBlend {
                pattern,
                alpha_train,
                alpha_test,
            } => {
                let (kept, alpha) = if test {
                    (
                        (0..adaptive_blend::PIECES * adaptive_blend::PIECES).collect(),
                        *alpha_test,
                    )
                } else {
                    (adaptive_blend::random_half(&mut rng), *alpha_train)
                };
                let mask = adaptive_blend::piece_mask(h, w, &kept);
                adaptive_blend::apply(&mut out, c, pattern, &mask, alpha);
            }
            _ => {}
        }
        out
    }
}
