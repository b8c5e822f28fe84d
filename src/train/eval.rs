//! Evaluation of a trained model: accuracy on a labelled set (clean accuracy on the test split,
//! attack success rate on the triggered test set), predictions, and logits.

use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Batcher, Dataset, Normalization};
use crate::model::Net;

/// Batch size used for inference.
pub const EVAL_BATCH: usize = 256;

/// Predicted class of every sample of `data`, in order.
pub fn predictions(
    model: &Net,
    data: &Dataset,
    normalization: &Normalization,
    device: &Device,
) -> Vec<u16> {
    let batcher = Batcher {
        normalization: normalization.clone(),
        augment: None,
    };
    // No augmentation, so the generator is never drawn from.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for chunk in indices.chunks(EVAL_BATCH) {
        let input = batcher.batch(data, chunk, &mut rng, device);
        let predicted: Tensor<1, burn::tensor::Int> =
            model.forward(input.images).argmax(1).reshape([chunk.len()]);
        let values = predicted
            .into_data()
            .try_to_vec_as::<i64>()
            .unwrap_or_default();
        out.extend(
            values
                .into_iter()
                .map(|v| u16::try_from(v).unwrap_or(u16::MAX)),
        );
    }
    out
}

/// Share of samples whose prediction equals their label (0 for an empty set).
pub fn accuracy(
    model: &Net,
    data: &Dataset,
    normalization: &Normalization,
    device: &Device,
) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let predicted = predictions(model, data, normalization, device);
    let correct = predicted
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / data.len() as f64
}
