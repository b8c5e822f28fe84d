//! A before/after picture of what an attack does: for the first few poisoned samples, the clean
//! image, the poisoned image, and their difference amplified ×4 (grey = no change), each
//! enlarged ×3. Teachers show it; analysts check a trigger before training on it.

use image::{Rgb, RgbImage};

use super::PoisonedData;
use crate::data::Dataset;

/// Enlargement of each tile.
const SCALE: u32 = 3;
/// Gap between tiles, in output pixels.
const GAP: u32 = 4;

fn pixel(data: &Dataset, image: &[u8], x: usize, y: usize) -> [f32; 3] {
    let c = data.shape.channels;
    let at = |ch: usize| {
        f32::from(
            image
                .get((y * data.shape.width + x) * c + ch)
                .copied()
                .unwrap_or(0),
        )
    };
    if c == 1 {
        [at(0); 3]
    } else {
        [at(0), at(1), at(2)]
    }
}

/// Draws up to `count` poisoned samples of `poisoned` next to their clean originals.
pub fn before_after(clean: &Dataset, poisoned: &PoisonedData, count: usize) -> RgbImage {
    let indices: Vec<usize> = poisoned
        .plan
        .poisoned
        .iter()
        .copied()
        .take(count.max(1))
        .collect();
    let (h, w) = (clean.shape.height as u32, clean.shape.width as u32);
    let (tile_w, tile_h) = (w * SCALE + GAP, h * SCALE + GAP);
    let mut out = RgbImage::from_pixel(
        (indices.len() as u32).max(1) * tile_w + GAP,
        3 * tile_h + GAP,
        Rgb([40, 40, 40]),
    );
    for (col, &index) in indices.iter().enumerate() {
        let (Some(before), Some(after)) = (clean.image(index), poisoned.train.image(index)) else {
            continue;
        };
        for y in 0..h as usize {
            for x in 0..w as usize {
                let b = pixel(clean, before, x, y);
                let a = pixel(clean, after, x, y);
                let diff = [0, 1, 2].map(|i| (128.0 + 4.0 * (a[i] - b[i])).clamp(0.0, 255.0));
                for (row, value) in [b, a, diff].iter().enumerate() {
                    let color = Rgb(value.map(|v| v.round() as u8));
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let px = GAP + col as u32 * tile_w + x as u32 * SCALE + dx;
                            let py = GAP + row as u32 * tile_h + y as u32 * SCALE + dy;
                            if px < out.width() && py < out.height() {
                                out.put_pixel(px, py, color);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
