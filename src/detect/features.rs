//! Feature extraction: one batched pass of the trained model over a dataset gives the
//! penultimate features, the last conv block's activations (channel-reduced for Beatrix) and the
//! predictions; and the clean reference set drawn per class from the test split.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Device, Int, Tensor};
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::ConvActivations;
use crate::data::{Batcher, Dataset, Normalization};
use crate::model::Net;
use crate::train::eval::EVAL_BATCH;

/// Beatrix reads at most this many channels; wider layers are averaged in channel groups.
pub const MAX_CONV_CHANNELS: usize = 64;

/// What one pass of the model gives about every sample of a dataset.
#[derive(Clone, Debug)]
pub struct Extracted {
    /// Penultimate features, `n × d`.
    pub features: Array2<f64>,
    /// Last conv block, channel-reduced to at most [`MAX_CONV_CHANNELS`].
    pub conv: ConvActivations,
    /// Per-channel spatial mean of the (unreduced) last conv block, `n × channels` (for TAC).
    pub channel_means: Array2<f64>,
    /// Logits, `n × classes` (for the `loss` detector and the fit diagnostics).
    pub logits: Array2<f32>,
    pub predicted: Vec<u16>,
}

/// Extraction was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap_or_default()
}

/// Runs `model` over `data` in evaluation batches. `progress(done, total)` is called after
/// every batch; the cancel flag is checked before each.
pub fn extract(
    model: &Net,
    data: &Dataset,
    normalization: &Normalization,
    device: &Device,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Extracted, Cancelled> {
    let batcher = Batcher {
        normalization: normalization.clone(),
        augment: None,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0); // never drawn from: no augmentation
    let n = data.len();
    let indices: Vec<usize> = (0..n).collect();
    let mut features = Vec::new();
    let mut conv_values = Vec::new();
    let mut means = Vec::new();
    let mut predicted = Vec::with_capacity(n);
    let mut logits = Vec::new();
    let (mut dim, mut channels, mut reduced, mut positions, mut classes) = (0, 0, 0, 0, 0);
    let mut done = 0;
    for chunk in indices.chunks(EVAL_BATCH) {
        if cancel.load(Ordering::Relaxed) {
            return Err(Cancelled);
        }
        let b = chunk.len();
        let input = batcher.batch(data, chunk, &mut rng, device);
        let out = model.inspect(input.images);
        let [_, c, h, w] = out.conv.dims();
        let groups = c.min(MAX_CONV_CHANNELS);
        let group_size = c / groups;
        let conv = if group_size > 1 {
            out.conv
                .clone()
                .reshape([b, groups, group_size, h * w])
                .mean_dim(2)
                .reshape([b, groups * h * w])
        } else {
            out.conv.clone().reshape([b, c * h * w])
        };
        let channel_mean = out.conv.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]);
        dim = out.features.dims()[1];
        (channels, reduced, positions) = (c, groups, h * w);
        features.extend(to_vec(out.features));
        conv_values.extend(to_vec(conv));
        means.extend(to_vec(channel_mean));
        classes = out.logits.dims()[1];
        logits.extend(to_vec(out.logits.clone()));
        let argmax: Tensor<1, Int> = out.logits.argmax(1).reshape([b]);
        predicted.extend(
            argmax
                .into_data()
                .try_to_vec_as::<i64>()
                .unwrap_or_default()
                .into_iter()
                .map(|v| u16::try_from(v).unwrap_or(u16::MAX)),
        );
        done += b;
        progress(done, n);
    }
    let as_f64 = |v: Vec<f32>, cols: usize| {
        Array2::from_shape_vec((n, cols), v.into_iter().map(f64::from).collect())
            .unwrap_or_else(|_| Array2::zeros((n, cols)))
    };
    Ok(Extracted {
        features: as_f64(features, dim),
        conv: ConvActivations {
            layer: model.conv_layer_name().to_owned(),
            channels: reduced,
            positions,
            values: Array2::from_shape_vec((n, reduced * positions), conv_values)
                .unwrap_or_else(|_| Array2::zeros((n, reduced * positions))),
        },
        channel_means: as_f64(means, channels),
        logits: Array2::from_shape_vec((n, classes), logits)
            .unwrap_or_else(|_| Array2::zeros((n, classes))),
        predicted,
    })
}

/// Draws up to `per_class` indices of each class of `test` (seeded), sorted.
pub fn reference_indices(test: &Dataset, per_class: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c1ea);
    let mut by_class = vec![Vec::new(); test.num_classes()];
    for (i, &l) in test.labels.iter().enumerate() {
        if let Some(list) = by_class.get_mut(usize::from(l)) {
            list.push(i);
        }
    }
    let mut chosen = Vec::new();
    for mut list in by_class {
        list.shuffle(&mut rng);
        list.truncate(per_class);
        chosen.extend(list);
    }
    chosen.sort_unstable();
    chosen
}
