//! **Adaptive-Blend** (Qi et al., 2023, "Revisiting the assumption of latent separability"):
//! a blended trigger cut into 4×4 pieces; every poisoned sample gets a random half of the pieces,
//! `x' = x + α·mask·(T − x)` with α = 0.15 at training time; at test time the whole trigger with
//! α = 0.2. "Cover" samples get the same partial trigger but keep their label (as many as the
//! poisoned samples by default), which weakens the latent separation detectors rely on.
//!
//! `T` is the seeded noise pattern of [`super::blended`] or a user image, as for Blended.

use rand::Rng;
use rand::seq::index::sample;

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
