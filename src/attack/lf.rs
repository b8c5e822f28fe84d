//! **LF** (low-frequency trigger, Zeng et al., 2021): add a smooth, seeded pattern.
//!
//! The reference (BackdoorBench) optimises the pattern with DeepFool against a clean model and
//! low-pass filters it. We use the option METHODS.md allows: a fixed seeded smooth pattern —
//! Gaussian noise (ChaCha8), blurred with a Gaussian of σ = max(H, W)/8 (separable, edges
//! repeated), then min-max scaled to [0, strength] with strength = 0.2·255 by default, the same
//! pattern on every channel. `x' = clip(round(x + pattern))`.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::AttackError;
use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use crate::check::in_range;
use crate::data::Shape;

fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil().max(1.0) as isize;
    let k: Vec<f64> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    k.into_iter().map(|v| v / sum).collect()
}

fn blur_1d(src: &[f64], h: usize, w: usize, kernel: &[f64], along_rows: bool) -> Vec<f64> {
    let r = (kernel.len() / 2) as isize;
    let mut out = vec![0.0; src.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (t, kv) in kernel.iter().enumerate() {
                let d = t as isize - r;
                let (yy, xx) = if along_rows {
                    (y as isize, (x as isize + d).clamp(0, w as isize - 1))
                } else {
                    ((y as isize + d).clamp(0, h as isize - 1), x as isize)
                };
                acc += kv
                    * src
                        .get(yy as usize * w + xx as usize)
                        .copied()
                        .unwrap_or(0.0);
            }
            if let Some(o) = out.get_mut(y * w + x) {
                *o = acc;
            }
        }
    }
    out
}

/// The smooth pattern for an `h`×`w` image, values in [0, strength].
pub fn pattern(h: usize, w: usize, strength: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise: Vec<f64> = (0..h * w)
        .map(|_| {
            // Box–Muller
            let u1: f64 = rng.random::<f64>().max(1e-12);
            let u2: f64 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect();
    let kernel = gaussian_kernel(h.max(w) as f64 / 8.0);
    let smooth = blur_1d(&blur_1d(&noise, h, w, &kernel, true), h, w, &kernel, false);
    let lo = smooth.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = smooth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = (hi - lo).max(1e-12);
    smooth
        .into_iter()
        .map(|v| (v - lo) / span * strength)
        .collect()
}

/// Adds `pattern` (one value per pixel) to every channel of an image.
pub fn apply(image: &mut [u8], c: usize, pattern: &[f64]) {
    for (i, x) in image.iter_mut().enumerate() {
        let add = pattern.get(i / c).copied().unwrap_or(0.0);
        *x = (f64::from(*x) + add).round_ties_even().clamp(0.0, 255.0) as u8;
    }
}

pub const HELP: &str = "LF: a smooth low-frequency pattern added to the image, hard to see";

/// `kind = "lf"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LfSettings {
    /// Largest value of the pattern (of 255).
    pub strength: f64,
}

impl Default for LfSettings {
    fn default() -> Self {
        Self {
            strength: 0.2 * 255.0,
        }
    }
}

impl AttackSettings for LfSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        in_range("attack.strength", self.strength, 0.0, true, 255.0, false)
    }

    fn trigger(&self, shape: Shape, seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        Ok(Box::new(LfTrigger {
            pattern: pattern(shape.height, shape.width, self.strength, seed),
        }))
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::number(
            "Strength (of 255)",
            &mut self.strength,
            0.0..=255.0,
        )]
    }
}

/// The pattern for one image size.
#[derive(Clone, Debug)]
pub struct LfTrigger {
    pub pattern: Vec<f64>,
}

impl Trigger for LfTrigger {
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, _rng: &mut ChaCha8Rng) {
        if stamp != Stamp::Cover {
            apply(image, shape.channels, &self.pattern);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_spans_zero_to_strength_and_is_smooth() {
        let p = pattern(28, 28, 51.0, 0);
        let lo = p.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(lo.abs() < 1e-9 && (hi - 51.0).abs() < 1e-9);
        // neighbouring pixels differ by far less than the range (low frequency)
        let max_step = (0..28 * 27)
            .map(|i| (p[(i / 27) * 28 + i % 27] - p[(i / 27) * 28 + i % 27 + 1]).abs())
            .fold(0.0, f64::max);
        assert!(max_step < 51.0 / 4.0, "{max_step}");
        assert_eq!(pattern(28, 28, 51.0, 0), p);
        assert_ne!(pattern(28, 28, 51.0, 1), p);
    }

    #[test]
    fn adds_to_every_channel() {
        let mut img = vec![10u8, 20, 30, 250, 250, 250];
        apply(&mut img, 3, &[1.4, 9.6]);
        assert_eq!(img, [11, 21, 31, 255, 255, 255]);
    }
}
