//! **Blended** (Chen et al., 2017): blend a full-image pattern into the image,
//! `x' = (1 − α)·x + α·T`, rounded half-to-even (numpy's `rint`, as the PyTorch reference does).
//!
//! Defaults: α = 0.2 (BackdoorBench, backdoor-toolbox); weak attacks use α 0.05–0.1. `T` is a
//! seeded uniform-noise pattern (ChaCha8, one value per pixel and channel) or a user image
//! resized to the dataset's size. BackdoorBench blends a Hello Kitty picture; we ship no such
//! image (licence), so a user supplies one when wanted.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
