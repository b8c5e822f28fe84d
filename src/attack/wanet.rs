//! **WaNet** (Nguyen & Tran, 2021): warp the image with a smooth, fixed random field.
//!
//! As in BackdoorBench: a random k×k field in [−1, 1] (k = 4, two components: x and y
//! displacement), divided by its mean absolute value, bicubic-upsampled (a = −0.75, corners
//! aligned, like PyTorch) to H×W; the sampling grid is `clamp(identity + s·field/H, −1, 1)` with
//! s = 0.5, and the image is resampled bilinearly with corners aligned. "Cross" (noise) samples
//! get `grid + U(−1, 1)/H` per pixel, a different random warp, and keep their label; by default
//! there are twice as many of them as poisoned samples.
//!
//! Differences from the reference: the field comes from a seeded ChaCha8 stream rather than
//! torch.rand, and resampled values are rounded half-to-even to u8.

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use super::{AttackError, check_cover_ratio};
use crate::check::{count_in, in_range};
use crate::data::Shape;

/// A warping grid for one image size: for every output pixel the (x, y) source position in
/// normalised coordinates [−1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct WarpField {
    pub height: usize,
    pub width: usize,
    /// `height·width` pairs (x, y), before the strength is applied.
    pub flow: Vec<[f64; 2]>,
    /// Warping strength `s`.
    pub strength: f64,
}

/// PyTorch's cubic convolution kernel with a = −0.75.
fn cubic(t: f64) -> f64 {
    const A: f64 = -0.75;
    let t = t.abs();
    if t <= 1.0 {
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A
    } else {
        0.0
    }
}

/// Bicubic upsampling of a k×k grid of values to `out` samples along one axis pair, corners
/// aligned, border values repeated.
fn upsample_bicubic(src: &[f64], k: usize, h: usize, w: usize) -> Vec<f64> {
    let at = |y: isize, x: isize| {
        let yy = y.clamp(0, k as isize - 1) as usize;
        let xx = x.clamp(0, k as isize - 1) as usize;
        src.get(yy * k + xx).copied().unwrap_or(0.0)
    };
    let scale = |n: usize| {
        if n > 1 {
            (k - 1) as f64 / (n - 1) as f64
        } else {
            0.0
        }
    };
    let (sy, sx) = (scale(h), scale(w));
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let fy = y as f64 * sy;
        let (y0, ty) = (fy.floor() as isize, fy - fy.floor());
        for x in 0..w {
            let fx = x as f64 * sx;
            let (x0, tx) = (fx.floor() as isize, fx - fx.floor());
            let mut v = 0.0;
            for dy in -1..=2isize {
                let wy = cubic(ty - dy as f64);
                for dx in -1..=2isize {
                    v += wy * cubic(tx - dx as f64) * at(y0 + dy, x0 + dx);
                }
            }
            out.push(v);
        }
    }
    out
}

impl WarpField {
    /// The seeded field for an `h`×`w` image: k×k control points, strength `s`.
    pub fn new(h: usize, w: usize, k: usize, strength: f64, seed: u64) -> Self {
        let k = k.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let raw: Vec<[f64; 2]> = (0..k * k)
            .map(|_| {
                [
                    rng.random::<f64>() * 2.0 - 1.0,
                    rng.random::<f64>() * 2.0 - 1.0,
                ]
            })
            .collect();
        let mean_abs = raw
            .iter()
            .flat_map(|p| p.iter())
            .map(|v| v.abs())
            .sum::<f64>()
            / (2 * k * k) as f64;
        let comp = |c: usize| -> Vec<f64> {
            let src: Vec<f64> = raw.iter().map(|p| p[c] / mean_abs.max(1e-12)).collect();
            upsample_bicubic(&src, k, h, w)
        };
        let (fx, fy) = (comp(0), comp(1));
        Self {
            height: h,
            width: w,
            flow: fx.into_iter().zip(fy).map(|(x, y)| [x, y]).collect(),
            strength,
        }
    }

    /// Warps an `h`×`w`×`c` image. With `noise`, every grid point is also moved by
    /// U(−1, 1)/H (a cross sample).
    pub fn apply(&self, image: &[u8], c: usize, noise: Option<&mut dyn Rng>) -> Vec<u8> {
        let (h, w) = (self.height, self.width);
        let mut noise = noise;
        let mut out = vec![0u8; image.len()];
        for y in 0..h {
            for x in 0..w {
                let id_x = if w > 1 {
                    2.0 * x as f64 / (w - 1) as f64 - 1.0
                } else {
                    0.0
                };
                let id_y = if h > 1 {
                    2.0 * y as f64 / (h - 1) as f64 - 1.0
                } else {
                    0.0
                };
                let [fx, fy] = self.flow.get(y * w + x).copied().unwrap_or([0.0, 0.0]);
                let mut gx = id_x + self.strength * fx / h as f64;
                let mut gy = id_y + self.strength * fy / h as f64;
                if let Some(rng) = noise.as_deref_mut() {
                    gx += (rng.random::<f64>() * 2.0 - 1.0) / h as f64;
                    gy += (rng.random::<f64>() * 2.0 - 1.0) / h as f64;
                }
                let (gx, gy) = (gx.clamp(-1.0, 1.0), gy.clamp(-1.0, 1.0));
                // align_corners = true: −1 → pixel 0, +1 → pixel n−1
                let sx = (gx + 1.0) / 2.0 * (w - 1) as f64;
                let sy = (gy + 1.0) / 2.0 * (h - 1) as f64;
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (tx, ty) = (sx - x0 as f64, sy - y0 as f64);
                for ch in 0..c {
                    let px = |yy: usize, xx: usize| {
                        f64::from(image.get((yy * w + xx) * c + ch).copied().unwrap_or(0))
                    };
                    let v = (1.0 - ty) * ((1.0 - tx) * px(y0, x0) + tx * px(y0, x1))
                        + ty * ((1.0 - tx) * px(y1, x0) + tx * px(y1, x1));
                    if let Some(o) = out.get_mut((y * w + x) * c + ch) {
                        *o = v.round_ties_even().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
        out
    }
}

pub const HELP: &str = "WaNet: an invisible smooth warp of the image";

/// `kind = "wanet"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WanetSettings {
    /// Grid size k of the random field.
    pub grid_size: usize,
    /// Warping strength s.
    pub warp_strength: f64,
    /// Cross (noise) samples per poisoned sample.
    pub cover_ratio: f64,
}

impl Default for WanetSettings {
    fn default() -> Self {
        Self {
            grid_size: 4,
            warp_strength: 0.5,
            cover_ratio: 2.0,
        }
    }
}

impl AttackSettings for WanetSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        count_in("attack.grid_size", self.grid_size, 1, 64)?;
        in_range(
            "attack.warp_strength",
            self.warp_strength,
            0.0,
            true,
            10.0,
            false,
        )?;
        check_cover_ratio(self.cover_ratio)
    }

    fn trigger(&self, shape: Shape, seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        Ok(Box::new(WarpField::new(
            shape.height,
            shape.width,
            self.grid_size,
            self.warp_strength,
            seed,
        )))
    }

    fn cover_ratio(&self) -> f64 {
        self.cover_ratio
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::number(
            "Warp strength",
            &mut self.warp_strength,
            0.0..=10.0,
        )]
    }
}

impl Trigger for WarpField {
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, rng: &mut ChaCha8Rng) {
        let noise = (stamp == Stamp::Cover).then_some(rng as &mut dyn Rng);
        *image = self.apply(image, shape.channels, noise);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(h: usize, w: usize, c: usize) -> Vec<u8> {
        (0..h * w * c).map(|i| (i * 37 % 256) as u8).collect()
    }

    #[test]
    fn zero_strength_is_the_identity() {
        for (h, w, c) in [(28, 28, 1), (32, 32, 3), (9, 13, 1)] {
            let img = image(h, w, c);
            let field = WarpField::new(h, w, 4, 0.0, 3);
            assert_eq!(field.apply(&img, c, None), img);
        }
    }

    #[test]
    fn warping_moves_pixels_and_is_seeded() {
        let img = image(28, 28, 1);
        let a = WarpField::new(28, 28, 4, 0.5, 0);
        let warped = a.apply(&img, 1, None);
        assert_ne!(warped, img);
        assert_eq!(
            WarpField::new(28, 28, 4, 0.5, 0).apply(&img, 1, None),
            warped
        );
        assert_ne!(
            WarpField::new(28, 28, 4, 0.5, 1).apply(&img, 1, None),
            warped
        );
        // the field is normalised to mean |flow| ≈ 1 at the control points
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let cross = a.apply(&img, 1, Some(&mut rng));
        assert_ne!(cross, warped);
    }

    #[test]
    fn bicubic_upsampling_keeps_control_points() {
        let src = [1.0, 2.0, 3.0, 4.0];
        let up = upsample_bicubic(&src, 2, 3, 3);
        assert!((up[0] - 1.0).abs() < 1e-12 && (up[2] - 2.0).abs() < 1e-12);
        assert!((up[6] - 3.0).abs() < 1e-12 && (up[8] - 4.0).abs() < 1e-12);
        assert!((up[4] - 2.5).abs() < 1e-12);
    }
}
