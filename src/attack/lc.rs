//! **Label-consistent** backdoor (LC, Turner et al. 2019): poison only target-class images and
//! keep their labels, but first make them *hard* with an adversarial perturbation (PGD within
//! ε = 16/255 by default, on a model of the same architecture trained on clean data), so that the
//! model can only fit them by learning the trigger. The trigger is a 3×3 black-and-white
//! checkerboard stamped in all four corners (the reference codes' four-corner pattern, ±255
//! clipped to 0/255). At test time only the trigger is applied.
//!
//! The trigger lives here; the PGD step needs a trained model and runs where the data is
//! prepared (`prepare::poison`, with `train::adversarial::perturb`).

use super::badnets::{self, Patch};

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
