//! **Label-consistent** backdoor (LC, Turner et al. 2019): poison only target-class images and
//! keep their labels, but first make them *hard* with an adversarial perturbation (PGD within
//! ε = 16/255 by default, on a model of the same architecture trained on clean data), so that the
//! model can only fit them by learning the trigger. The trigger is a 3×3 black-and-white
//! checkerboard stamped in all four corners (the reference codes' four-corner pattern, ±255
//! clipped to 0/255). At test time only the trigger is applied.
//!
//! The trigger lives here; the PGD step needs a trained model and runs where the data is
//! prepared (`run::prepare::poison`, with `train::adversarial::perturb`).

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::AttackError;
use super::badnets::{self, Patch};
use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use crate::check::in_range;
use crate::data::Shape;

/// Side of each corner's checkerboard.
pub const SIDE: usize = 3;
/// The default PGD budget (of 255).
pub const EPSILON: f64 = 16.0;
/// PGD steps.
pub const STEPS: usize = 10;

/// The 3×3 checkerboard with white corners (255 on every channel) and black edges' centres.
pub fn checkerboard(channels: usize) -> Patch {
    let values = (0..SIDE * SIDE)
        .flat_map(|p| {
            let v = if (p / SIDE + p % SIDE).is_multiple_of(2) {
                255
            } else {
                0
            };
            std::iter::repeat_n(v, channels)
        })
        .collect();
    Patch {
        height: SIDE,
        width: SIDE,
        channels,
        values,
        mask: vec![true; SIDE * SIDE],
    }
}

/// Stamps `patch` into the four corners of an `h`×`w`×`c` image (which must be at least as
/// large as the patch; the checkerboard is symmetric, so no corner needs mirroring).
pub fn apply(image: &mut [u8], h: usize, w: usize, c: usize, patch: &Patch) {
    if h < patch.height || w < patch.width {
        return;
    }
    let (bottom, right) = (h - patch.height, w - patch.width);
    for (row, col) in [(0, 0), (0, right), (bottom, 0), (bottom, right)] {
        badnets::apply(image, w, c, patch, row, col);
    }
}

pub const HELP: &str = "Label-consistent: target-class images keep their label but are first made hard with PGD (ε of 255, against a clean model the run trains first), then get a checkerboard in each corner. The preview shows the trigger only";

/// `kind = "lc"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LcSettings {
    /// PGD budget ε (of 255).
    pub epsilon: f64,
}

impl Default for LcSettings {
    fn default() -> Self {
        Self { epsilon: EPSILON }
    }
}

impl AttackSettings for LcSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        in_range("attack.epsilon", self.epsilon, 0.0, true, 255.0, false)
    }

    fn trigger(&self, shape: Shape, _seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        let (h, w) = (shape.height, shape.width);
        if h < 2 * SIDE || w < 2 * SIDE {
            return Err(AttackError::Invalid(format!(
                "the LC trigger (3×3 in each corner) needs images of at least 6×6, got {h}×{w}"
            )));
        }
        if !(0.0..=255.0).contains(&self.epsilon) {
            return Err(AttackError::Invalid(format!(
                "attack.epsilon must be in [0, 255] (pixel units), got {}",
                self.epsilon
            )));
        }
        Ok(Box::new(CornersTrigger {
            patch: checkerboard(shape.channels),
        }))
    }

    fn clean_label(&self) -> bool {
        true
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::number(
            "PGD ε (of 255)",
            &mut self.epsilon,
            0.0..=255.0,
        )]
    }
}

/// The checkerboard in each corner.
#[derive(Clone, Debug)]
pub struct CornersTrigger {
    pub patch: Patch,
}

impl Trigger for CornersTrigger {
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, _rng: &mut ChaCha8Rng) {
        if stamp != Stamp::Cover {
            apply(
                image,
                shape.height,
                shape.width,
                shape.channels,
                &self.patch,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_checkerboards_in_the_corners() {
        let (h, w, c) = (8, 10, 3);
        let mut image = vec![100u8; h * w * c];
        apply(&mut image, h, w, c, &checkerboard(c));
        let at = |y: usize, x: usize| image[(y * w + x) * c];
        for (y0, x0) in [(0, 0), (0, w - 3), (h - 3, 0), (h - 3, w - 3)] {
            for dy in 0..3 {
                for dx in 0..3 {
                    let want = if (dy + dx) % 2 == 0 { 255 } else { 0 };
                    assert_eq!(
                        at(y0 + dy, x0 + dx),
                        want,
                        "corner ({y0},{x0}) +({dy},{dx})"
                    );
                }
            }
        }
        // The middle is untouched; every channel carries the pattern.
        assert_eq!(at(4, 5), 100);
        assert!(image.chunks_exact(c).all(|p| p[0] == p[1] && p[1] == p[2]));
        // Too small an image is left alone.
        let mut tiny = vec![7u8; 4];
        apply(&mut tiny, 2, 2, 1, &checkerboard(1));
        assert_eq!(tiny, vec![7; 4]);
    }
}
