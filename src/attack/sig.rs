//! **SIG** (Barni et al., 2019), a clean-label attack: add a horizontal sinusoid,
//! `x' = clip(x + δ·sin(2π·j·f / W))` for every row and channel, `j` the column.
//!
//! Defaults (BackdoorBench): δ = 40 (of 255), f = 6. Poisoned samples are drawn from the target
//! class and keep their label. The sum is rounded half-to-even before clipping.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::AttackError;
use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use crate::check::in_range;
use crate::data::Shape;

/// The additive value of column `j` of a `width`-wide image.
pub fn column_offset(j: usize, width: usize, delta: f64, frequency: f64) -> f64 {
    delta * (2.0 * std::f64::consts::PI * j as f64 * frequency / width as f64).sin()
}

/// Adds the sinusoid to an `h`×`w`×`c` image.
pub fn apply(image: &mut [u8], w: usize, c: usize, delta: f64, frequency: f64) {
    let offsets: Vec<f64> = (0..w)
        .map(|j| column_offset(j, w, delta, frequency))
        .collect();
    for (i, x) in image.iter_mut().enumerate() {
        let j = (i / c) % w;
        let v = f64::from(*x) + offsets.get(j).copied().unwrap_or(0.0);
        *x = v.round_ties_even().clamp(0.0, 255.0) as u8;
    }
}

pub const HELP: &str =
    "SIG: a faint sinusoidal stripe added to target-class images only (clean label)";

/// `kind = "sig"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigSettings {
    /// Amplitude δ (of 255).
    pub delta: f64,
    /// Periods across the image width.
    pub frequency: f64,
}

impl Default for SigSettings {
    fn default() -> Self {
        Self {
            delta: 40.0,
            frequency: 6.0,
        }
    }
}

impl AttackSettings for SigSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        in_range("attack.delta", self.delta, 0.0, true, 255.0, false)?;
        in_range("attack.frequency", self.frequency, 0.0, true, 1000.0, false)
    }

    fn trigger(&self, _shape: Shape, _seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        Ok(Box::new(self.clone()))
    }

    fn clean_label(&self) -> bool {
        true
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::number("Amplitude δ", &mut self.delta, 0.0..=255.0)]
    }
}

impl Trigger for SigSettings {
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, _rng: &mut ChaCha8Rng) {
        if stamp != Stamp::Cover {
            apply(
                image,
                shape.width,
                shape.channels,
                self.delta,
                self.frequency,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_gets_the_column_pattern() {
        let (h, w, c) = (5, 28, 3);
        let mut img = vec![100u8; h * w * c];
        apply(&mut img, w, c, 40.0, 6.0);
        for y in 0..h {
            for x in 0..w {
                let expected = (100.0
                    + 40.0 * (2.0 * std::f64::consts::PI * x as f64 * 6.0 / 28.0).sin())
                .round_ties_even() as u8;
                for ch in 0..c {
                    assert_eq!(img[(y * w + x) * c + ch], expected, "({y},{x},{ch})");
                }
            }
        }
        assert_eq!(img[0], 100); // sin(0) = 0
    }

    #[test]
    fn clips_at_both_ends() {
        let mut img = vec![0u8, 250, 0, 250];
        apply(&mut img, 4, 1, 40.0, 1.0);
        // columns 0..4 with f = 1: sin(0)=0, sin(π/2)=1, sin(π)≈0, sin(3π/2)=−1
        assert_eq!(img, [0, 255, 0, 210]);
    }
}
