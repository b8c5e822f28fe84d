//! **Adaptive-Blend** (Qi et al., 2023, "Revisiting the assumption of latent separability"):
//! a blended trigger cut into 4×4 pieces; every poisoned sample gets a random half of the pieces,
//! `x' = x + α·mask·(T − x)` with α = 0.15 at training time; at test time the whole trigger with
//! α = 0.2. "Cover" samples get the same partial trigger but keep their label (as many as the
//! poisoned samples by default), which weakens the latent separation detectors rely on.
//!
//! `T` is the seeded noise pattern of [`super::blended`] or a user image, as for Blended.

use std::path::PathBuf;

use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::blended::blend_pattern;
use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use super::{AttackError, check_cover_ratio, check_trigger_paths, check_unit};
use crate::check::in_range;
use crate::data::Shape;

/// Pieces per side of the trigger grid.
pub const PIECES: usize = 4;

/// The mask of the pieces in `kept` (indices into the PIECES×PIECES grid) on an `h`×`w` image.
pub fn piece_mask(h: usize, w: usize, kept: &[usize]) -> Vec<bool> {
    let mut mask = vec![false; h * w];
    for &piece in kept {
        let (pr, pc) = (piece / PIECES, piece % PIECES);
        let (r0, r1) = (pr * h / PIECES, (pr + 1) * h / PIECES);
        let (c0, c1) = (pc * w / PIECES, (pc + 1) * w / PIECES);
        for r in r0..r1 {
            for c in c0..c1 {
                if let Some(m) = mask.get_mut(r * w + c) {
                    *m = true;
                }
            }
        }
    }
    mask
}

/// A random half of the pieces.
pub fn random_half(rng: &mut impl Rng) -> Vec<usize> {
    let n = PIECES * PIECES;
    let mut kept = sample(rng, n, n / 2).into_vec();
    kept.sort_unstable();
    kept
}

/// `x + α·mask·(T − x)`, rounded half-to-even, on an image with `c` channels.
pub fn apply(image: &mut [u8], c: usize, pattern: &[u8], mask: &[bool], alpha: f64) {
    for (i, (x, &t)) in image.iter_mut().zip(pattern).enumerate() {
        if mask.get(i / c).copied().unwrap_or(false) {
            *x = super::blended::blend_pixel(*x, t, alpha);
        }
    }
}

pub const HELP: &str = "Adaptive-Blend: a blended trigger cut into pieces, half of them per poison, with cover images that keep their label: made to evade feature-space detectors";

/// `kind = "adaptive-blend"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveBlendSettings {
    /// Blend weight at training time.
    pub alpha: f64,
    /// Blend weight at test time.
    pub alpha_test: f64,
    /// Cover samples per poisoned sample.
    pub cover_ratio: f64,
    /// A user pattern (PNG) instead of the seeded noise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_image: Option<PathBuf>,
}

impl Default for AdaptiveBlendSettings {
    fn default() -> Self {
        Self {
            alpha: 0.15,
            alpha_test: 0.2,
            cover_ratio: 1.0,
            trigger_image: None,
        }
    }
}

impl AttackSettings for AdaptiveBlendSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        in_range("attack.alpha", self.alpha, 0.0, true, 1.0, false)?;
        in_range("attack.alpha_test", self.alpha_test, 0.0, true, 1.0, false)?;
        check_cover_ratio(self.cover_ratio)?;
        check_trigger_paths(self.trigger_image.as_deref(), None)
    }

    fn trigger(&self, shape: Shape, seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        Ok(Box::new(AdaptiveBlendTrigger {
            pattern: blend_pattern(self.trigger_image.as_deref(), shape, seed)?,
            alpha_train: check_unit("alpha", self.alpha)?,
            alpha_test: check_unit("alpha_test", self.alpha_test)?,
        }))
    }

    fn cover_ratio(&self) -> f64 {
        self.cover_ratio
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::number("Blend α", &mut self.alpha, 0.0..=1.0)]
    }

    fn trigger_image(&mut self) -> Option<&mut Option<PathBuf>> {
        Some(&mut self.trigger_image)
    }
}

/// Pieces of a blend pattern: a random half per poison and cover, the whole at test time.
#[derive(Clone, Debug)]
pub struct AdaptiveBlendTrigger {
    pub pattern: Vec<u8>,
    pub alpha_train: f64,
    pub alpha_test: f64,
}

impl Trigger for AdaptiveBlendTrigger {
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, rng: &mut ChaCha8Rng) {
        let (kept, alpha) = if stamp == Stamp::Test {
            ((0..PIECES * PIECES).collect(), self.alpha_test)
        } else {
            (random_half(rng), self.alpha_train)
        };
        let mask = piece_mask(shape.height, shape.width, &kept);
        apply(image, shape.channels, &self.pattern, &mask, alpha);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn half_of_the_pieces_cover_half_the_image() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let kept = random_half(&mut rng);
        assert_eq!(kept.len(), 8);
        let mask = piece_mask(28, 28, &kept);
        assert_eq!(mask.iter().filter(|&&m| m).count(), 8 * 7 * 7);
        let full = piece_mask(28, 28, &(0..16).collect::<Vec<_>>());
        assert!(full.iter().all(|&m| m));
    }

    #[test]
    fn only_masked_pixels_change() {
        let mut img = vec![100u8; 8 * 8];
        let pattern = vec![200u8; 8 * 8];
        let mask = piece_mask(8, 8, &[0]);
        apply(&mut img, 1, &pattern, &mask, 0.15);
        assert_eq!(img[0], 115);
        assert_eq!(img[9], 115);
        assert_eq!(img[2], 100);
    }
}
