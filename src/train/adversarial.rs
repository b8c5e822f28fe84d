//! Projected gradient descent (Madry et al., ICLR 2018): the L∞-bounded perturbation that raises
//! a model's loss on an image's own label. The label-consistent attack (LC, Turner et al. 2019)
//! uses it to make target-class images *hard* before stamping its trigger, so that the model
//! leans on the trigger to classify them.
//!
//! Untargeted PGD on the cross-entropy of the given label: `steps` signed-gradient steps of
//! size 2.5·ε/steps (Madry's choice), each projected back into the ε-ball around the clean image
//! and into the valid pixel range; the result is rounded to u8 pixels, still within ε. The model
//! runs in evaluation mode (BatchNorm running statistics); only the input takes gradients.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{TrainError, Trained};
use crate::data::{Batcher, Dataset};

/// Images per PGD batch.
const BATCH: usize = 128;

/// The PGD budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pgd {
    /// L∞ bound, in pixel units (of 255).
    pub epsilon: f64,
    pub steps: usize,
}

/// The perturbed images (H·W·C bytes each) of the samples of `data` at `indices`, against
/// their labels in `data`. `progress(done, total)` follows every batch.
pub fn perturb(
    trained: &Trained,
    device: &Device,
    data: &Dataset,
    indices: &[usize],
    pgd: Pgd,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<u8>>, TrainError> {
    let (model, normalization) = (&trained.model, &trained.normalization);
    let shape = data.shape;
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    let batcher = Batcher {
        normalization: normalization.clone(),
        augment: None,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0); // never drawn from: no augmentation
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    // Per channel, in the model's normalised input space: ε, the step, and the pixel range.
    let std = |ch: usize| f64::from(normalization.std.get(ch).copied().unwrap_or(1.0));
    let mean = |ch: usize| f64::from(normalization.mean.get(ch).copied().unwrap_or(0.0));
    let per_channel = |f: &dyn Fn(usize) -> f64, n: usize| -> Vec<f32> {
        (0..n)
            .flat_map(|_| (0..c).flat_map(|ch| std::iter::repeat_n(f(ch) as f32, h * w)))
            .collect()
    };
    let eps = pgd.epsilon.max(0.0);
    let step = 2.5 * eps / pgd.steps.max(1) as f64;
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(BATCH) {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        let b = chunk.len();
        let dims = [b, c, h, w];
        let tensor =
            |values: Vec<f32>| Tensor::<4>::from_data(TensorData::new(values, dims), device);
        let input = batcher.batch(data, chunk, &mut rng, device);
        let clean = input.images;
        let radius = tensor(per_channel(&|ch| eps / (255.0 * std(ch)), b));
        let low = tensor(per_channel(&|ch| -mean(ch) / std(ch), b));
        let high = tensor(per_channel(&|ch| (1.0 - mean(ch)) / std(ch), b));
        let alpha = tensor(per_channel(&|ch| step / (255.0 * std(ch)), b));
        let lower = (clean.clone() - radius.clone()).max_pair(low);
        let upper = (clean.clone() + radius).min_pair(high);
        let mut x = clean;
        for _ in 0..pgd.steps {
            let tracked = x.clone().autodiff().require_grad();
            let loss = loss_fn.forward(model.forward(tracked.clone()), input.labels.clone());
            let grads = loss.backward();
            let Some(gradient) = tracked.grad(&grads) else {
                break;
            };
            x = (x + alpha.clone() * gradient.sign())
                .max_pair(lower.clone())
                .min_pair(upper.clone());
        }
        let values = x.into_data().try_to_vec_as::<f32>().unwrap_or_default();
        for (k, &index) in chunk.iter().enumerate() {
            let Some(original) = data.image(index) else {
                out.push(Vec::new());
                continue;
            };
            let mut image = original.to_vec();
            for (p, slot) in image.iter_mut().enumerate() {
                let (pixel, ch) = (p / c, p % c);
                let v = values
                    .get(k * c * h * w + ch * h * w + pixel)
                    .copied()
                    .unwrap_or(0.0);
                let value = (f64::from(v) * std(ch) + mean(ch)) * 255.0;
                let o = f64::from(*slot);
                *slot = value
                    .round()
                    .clamp((o - eps).max(0.0), (o + eps).min(255.0)) as u8;
            }
            out.push(image);
        }
        progress(out.len(), indices.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Normalization, Shape};
    use crate::model::Net;
    use burn::module::Module;

    /// PGD stays within ε of the clean image, changes it, and raises the model's loss on the
    /// given labels.
    #[test]
    fn stays_in_the_ball_and_raises_the_loss() {
        let device = Device::flex();
        let shape = Shape {
            height: 8,
            width: 8,
            channels: 1,
        };
        let mut data = Dataset::empty(shape, (0..3).map(|k| k.to_string()).collect());
        for i in 0..12u8 {
            let image: Vec<u8> = (0..64u8).map(|p| p.wrapping_mul(i + 3) / 2 + 40).collect();
            data.push(
                &image,
                u16::from(i % 3),
                crate::data::Origin::Embedded {
                    split: "test",
                    index: usize::from(i),
                },
            );
        }
        device.seed(1);
        let model = Net::new(crate::config::ModelKind::Cnn, shape, 3, &device).valid();
        let normalization = Normalization::from_dataset(&data);
        let indices: Vec<usize> = (0..12).collect();
        let pgd = Pgd {
            epsilon: 8.0,
            steps: 5,
        };
        let cancel = AtomicBool::new(false);
        let trained = Trained {
            model: model.clone(),
            normalization: normalization.clone(),
            clean_accuracy: 0.0,
            attack_success_rate: None,
            history: Vec::new(),
            seconds: 0.0,
            images_per_second: 0.0,
        };
        let hard = perturb(
            &trained,
            &device,
            &data,
            &indices,
            pgd,
            &cancel,
            &mut |_, _| {},
        )
        .unwrap();
        let mut moved = 0;
        for (i, image) in hard.iter().enumerate() {
            let clean = data.image(i).unwrap();
            for (&a, &b) in image.iter().zip(clean) {
                assert!((i32::from(a) - i32::from(b)).abs() <= 8);
                moved += usize::from(a != b);
            }
        }
        assert!(moved > 12 * 32, "PGD moved {moved} pixels");
        let loss = |set: &Dataset| {
            let batcher = Batcher {
                normalization: normalization.clone(),
                augment: None,
            };
            let batch = batcher.batch(set, &indices, &mut ChaCha8Rng::seed_from_u64(0), &device);
            CrossEntropyLossConfig::new()
                .init(&device)
                .forward(model.forward(batch.images), batch.labels)
                .into_scalar::<f32>()
        };
        let mut attacked = data.clone();
        for (i, image) in hard.iter().enumerate() {
            attacked.image_mut(i).unwrap().copy_from_slice(image);
        }
        assert!(
            loss(&attacked) > loss(&data),
            "{} vs {}",
            loss(&attacked),
            loss(&data)
        );
    }
}
