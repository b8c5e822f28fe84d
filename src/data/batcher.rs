//! Turns samples of a [`Dataset`] into normalised Burn tensors, with optional augmentation.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, RngExt};

use super::Dataset;

/// Per-channel normalisation applied after scaling pixels to [0, 1]: `(x/255 − mean) / std`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean and standard deviation of the given (training) set.
    pub fn from_dataset(data: &Dataset) -> Self {
        let (mean, std) = data.channel_stats();
        Self { mean, std }
    }

    /// Plain `x / 255` (the PyTorch reference's convention).
    pub fn unit(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }
}

/// Training-time augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Zero-pad by this many pixels on every side, then crop a random H×W window (0 = off).
    pub crop_padding: usize,
    /// Flip left-right with probability ½. Off for digits and text, where it changes the class.
    pub horizontal_flip: bool,
}

impl Augment {
    /// The usual choice for a dataset: crop with padding of ⅛ of the side (4 px on CIFAR, 2 on
    /// MNIST… rounded down, at least 1), and flips only when flipping keeps the class.
    pub fn standard(side: usize, flip_keeps_class: bool) -> Self {
        Self {
            crop_padding: (side / 8).max(1),
            horizontal_flip: flip_keeps_class,
        }
    }
}

/// A batch ready for the model.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[batch, channels, height, width]`, normalised.
    pub images: Tensor<4>,
    /// `[batch]` class indices.
    pub labels: Tensor<1, Int>,
}

/// Builds [`Batch`]es from a dataset.
#[derive(Clone, Debug)]
pub struct Batcher {
    pub normalization: Normalization,
    pub augment: Option<Augment>,
}

impl Batcher {
    /// The float input of the samples at `indices`, laid out `[n, C, H, W]`.
    pub fn floats(&self, data: &Dataset, indices: &[usize], rng: &mut impl Rng) -> Vec<f32> {
        let shape = data.shape;
        let (h, w, c) = (shape.height, shape.width, shape.channels);
        let scale: Vec<(f32, f32)> = (0..c)
            .map(|ch| {
                let std = self.normalization.std.get(ch).copied().unwrap_or(1.0);
                let mean = self.normalization.mean.get(ch).copied().unwrap_or(0.0);
                (1.0 / (255.0 * std), mean / std)
            })
            .collect();
        let mut out = vec![0f32; indices.len() * shape.len()];
        for (slot, &index) in out.chunks_exact_mut(shape.len()).zip(indices) {
            let Some(image) = data.image(index) else {
                continue;
            };
            let (dy, dx, flip) = match self.augment {
                Some(a) => {
                    let p = a.crop_padding as i64;
                    (
                        if p > 0 {
                            rng.random_range(-p..=p) as isize
                        } else {
                            0
                        },
                        if p > 0 {
                            rng.random_range(-p..=p) as isize
                        } else {
                            0
                        },
                        a.horizontal_flip && rng.random_bool(0.5),
                    )
                }
                None => (0, 0, false),
            };
            for (ch, &(mul, sub)) in scale.iter().enumerate() {
                let plane = &mut slot[ch * h * w..(ch + 1) * h * w];
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let x_src = if flip { w - 1 - x } else { x };
                        let sx = x_src as isize + dx;
                        let v = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                            f32::from(image[(sy as usize * w + sx as usize) * c + ch])
                        } else {
                            0.0
                        };
                        plane[y * w + x] = v * mul - sub;
                    }
                }
            }
        }
        out
    }

    /// The batch of the samples at `indices` on `device`.
    pub fn batch(
        &self,
        data: &Dataset,
        indices: &[usize],
        rng: &mut impl Rng,
        device: &Device,
    ) -> Batch {
        let s = data.shape;
        let floats = self.floats(data, indices, rng);
        let images = Tensor::<4>::from_data(
            TensorData::new(floats, [indices.len(), s.channels, s.height, s.width]),
            device,
        );
        let labels: Vec<i64> = indices
            .iter()
            .map(|&i| data.labels.get(i).map_or(0, |&l| i64::from(l)))
            .collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device);
        Batch { images, labels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Origin, Shape};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tiny() -> Dataset {
        let shape = Shape {
            height: 2,
            width: 3,
            channels: 2,
        };
        let mut d = Dataset::empty(shape, vec!["a".into(), "b".into()]);
        let image: Vec<u8> = (0..12).map(|v| v * 20).collect();
        d.push(
            &image,
            1,
            Origin::Embedded {
                split: "t",
                index: 0,
            },
        );
        d
    }

    #[test]
    fn floats_are_chw_and_normalised() {
        let d = tiny();
        let b = Batcher {
            normalization: Normalization {
                mean: vec![0.0, 0.5],
                std: vec![1.0, 0.5],
            },
            augment: None,
        };
        let f = b.floats(&d, &[0], &mut ChaCha8Rng::seed_from_u64(0));
        // channel 0 = bytes 0,2,4,.. ; channel 1 = bytes 1,3,5,..
        assert!((f[1] - 40.0 / 255.0).abs() < 1e-6);
        assert!((f[6] - (20.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn flip_mirrors_rows() {
        let d = tiny();
        let b = Batcher {
            normalization: Normalization::unit(2),
            augment: Some(Augment {
                crop_padding: 0,
                horizontal_flip: true,
            }),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let plain = Batcher {
            normalization: Normalization::unit(2),
            augment: None,
        }
        .floats(&d, &[0], &mut rng);
        let mut seen_flip = false;
        for _ in 0..16 {
            let f = b.floats(&d, &[0], &mut rng);
            if f != plain {
                seen_flip = true;
                assert_eq!(f[0], plain[2]);
                assert_eq!(f[2], plain[0]);
            }
        }
        assert!(seen_flip);
    }
}
