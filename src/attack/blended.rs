//! **Blended** (Chen et al., 2017): blend a full-image pattern into the image,
//! `x' = (1 − α)·x + α·T`, rounded half-to-even (numpy's `rint`, as the PyTorch reference does).
//!
//! Defaults: α = 0.2 (BackdoorBench, backdoor-toolbox); weak attacks use α 0.05–0.1. `T` is a
//! seeded uniform-noise pattern (ChaCha8, one value per pixel and channel) or a user image
//! resized to the dataset's size. BackdoorBench blends a Hello Kitty picture; we ship no such
//! image (licence), so a user supplies one when wanted.

use std::path::{Path, PathBuf};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use super::{AttackError, check_trigger_paths, check_unit, load_trigger};
use crate::check::in_range;
use crate::data::Shape;

/// A seeded uniform-noise pattern of `len` bytes.
pub fn noise_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random::<u8>()).collect()
}

/// `round_half_even((1 − α)·x + α·t)` clipped to u8.
pub fn blend_pixel(x: u8, t: u8, alpha: f64) -> u8 {
    ((1.0 - alpha) * f64::from(x) + alpha * f64::from(t))
        .round_ties_even()
        .clamp(0.0, 255.0) as u8
}

/// Blends `pattern` (same length as `image`) into `image` with weight `alpha`.
pub fn apply(image: &mut [u8], pattern: &[u8], alpha: f64) {
    for (x, &t) in image.iter_mut().zip(pattern) {
        *x = blend_pixel(*x, t, alpha);
    }
}

pub const HELP: &str = "Blended: a whole-image pattern mixed in at opacity α";

/// `kind = "blended"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlendedSettings {
    /// Blend weight α.
    pub alpha: f64,
    /// A user pattern (PNG, resized to the images) instead of the seeded noise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_image: Option<PathBuf>,
}

impl Default for BlendedSettings {
    fn default() -> Self {
        Self {
            alpha: 0.2,
            trigger_image: None,
        }
    }
}

impl AttackSettings for BlendedSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        in_range("attack.alpha", self.alpha, 0.0, true, 1.0, false)?;
        check_trigger_paths(self.trigger_image.as_deref(), None)
    }

    fn trigger(&self, shape: Shape, seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        Ok(Box::new(BlendTrigger {
            pattern: blend_pattern(self.trigger_image.as_deref(), shape, seed)?,
            alpha: check_unit("alpha", self.alpha)?,
        }))
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::number("Blend α", &mut self.alpha, 0.0..=1.0)]
    }

    fn trigger_image(&mut self) -> Option<&mut Option<PathBuf>> {
        Some(&mut self.trigger_image)
    }
}

/// The pattern `T`: the user's image resized to `shape`, or seeded noise.
pub(super) fn blend_pattern(
    image: Option<&Path>,
    shape: Shape,
    seed: u64,
) -> Result<Vec<u8>, AttackError> {
    match image {
        Some(path) => Ok(load_trigger(path, shape.channels, Some((shape.height, shape.width)))?.2),
        None => Ok(noise_pattern(shape.len(), seed)),
    }
}

/// A full-image pattern with weight α.
#[derive(Clone, Debug)]
pub struct BlendTrigger {
    pub pattern: Vec<u8>,
    pub alpha: f64,
}

impl Trigger for BlendTrigger {
    fn stamp(&self, image: &mut Vec<u8>, _shape: Shape, stamp: Stamp, _rng: &mut ChaCha8Rng) {
        if stamp != Stamp::Cover {
            apply(image, &self.pattern, self.alpha);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pixel_is_the_rounded_blend() {
        let clean: Vec<u8> = (0..=255).collect();
        let pattern = noise_pattern(256, 7);
        let mut img = clean.clone();
        apply(&mut img, &pattern, 0.2);
        for i in 0..256 {
            let exact = 0.8 * f64::from(clean[i]) + 0.2 * f64::from(pattern[i]);
            assert_eq!(img[i], exact.round_ties_even() as u8, "pixel {i}");
        }
        // rint: 0.5 rounds to 0, 1.5 to 2, 2.5 to 2
        assert_eq!(blend_pixel(0, 5, 0.1), 0);
        assert_eq!(blend_pixel(0, 15, 0.1), 2);
        assert_eq!(blend_pixel(0, 25, 0.1), 2);
    }

    #[test]
    fn pattern_is_seeded() {
        assert_eq!(noise_pattern(100, 1), noise_pattern(100, 1));
        assert_ne!(noise_pattern(100, 1), noise_pattern(100, 2));
    }
}
