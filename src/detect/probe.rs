//! Input-level probing: the model's softmax outputs on transformed copies of images (STRIP's
//! superimpositions, SCALE-UP's amplified pixels), computed in evaluation batches before the
//! detectors run. The detectors themselves only read the per-sample scores made here.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::features::Cancelled;
use super::{DetectError, DetectInput};
use crate::data::{Batcher, Dataset, Normalization, Shape};
use crate::model::Net;
use crate::train::eval::EVAL_BATCH;

/// The model, its input normalisation and its device: what a probe runs images through.
pub struct Prober<'a> {
    pub model: &'a Net,
    pub normalization: &'a Normalization,
    pub device: &'a Device,
    pub cancel: &'a AtomicBool,
}

impl Prober<'_> {
    /// Softmax outputs (`count × classes`) of the images `make(k, buffer)` writes (H·W·C bytes
    /// of `shape` each) for k in `0..count`. `progress(done)` follows every batch.
    pub fn probabilities(
        &self,
        shape: Shape,
        count: usize,
        make: &mut dyn FnMut(usize, &mut [u8]),
        progress: &mut dyn FnMut(usize),
    ) -> Result<Array2<f32>, Cancelled> {
        let batcher = Batcher {
            normalization: self.normalization.clone(),
            augment: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0); // never drawn from: no augmentation
        let size = shape.height * shape.width * shape.channels;
        let mut out = Vec::new();
        let mut classes = 0;
        let mut start = 0;
        while start < count {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Cancelled);
            }
            let b = EVAL_BATCH.min(count - start);
            let mut chunk = Dataset::empty(shape, Vec::new());
            chunk.pixels = vec![0; b * size];
            chunk.labels = vec![0; b];
            for (k, image) in chunk.pixels.chunks_exact_mut(size).enumerate() {
                make(start + k, image);
            }
            let indices: Vec<usize> = (0..b).collect();
            let input = batcher.batch(&chunk, &indices, &mut rng, self.device);
            let probs: Tensor<2> = softmax(self.model.forward(input.images), 1);
            classes = probs.dims()[1];
            out.extend(probs.into_data().try_to_vec_as::<f32>().unwrap_or_default());
            start += b;
            progress(start);
        }
        Ok(Array2::from_shape_vec((count, classes), out)
            .unwrap_or_else(|_| Array2::zeros((count, classes))))
    }
}

/// Index of the largest entry of each row.
pub fn argmax_rows(probs: &Array2<f32>) -> Vec<usize> {
    probs
        .rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

/// The probe scores (training set, references) an input-level detector reads, checked: present,
/// one per sample and per reference, finite. `what` names the detector in the errors.
pub fn scores<'a>(
    input: &DetectInput,
    pair: Option<&'a (Vec<f64>, Vec<f64>)>,
    what: &str,
) -> Result<(&'a [f64], &'a [f64]), DetectError> {
    input.validate()?;
    let Some((train, reference)) = pair else {
        return Err(DetectError::Invalid(format!(
            "{what} needs its model probes (computed by the detection run)"
        )));
    };
    if train.len() != input.len() || reference.len() != input.reference_labels.len() {
        return Err(DetectError::Invalid(format!(
            "{what}: {} scores for {} samples, {} for {} references",
            train.len(),
            input.len(),
            reference.len(),
            input.reference_labels.len()
        )));
    }
    if train.iter().chain(reference).any(|v| !v.is_finite()) {
        return Err(DetectError::Numeric(format!("{what}: non-finite scores")));
    }
    Ok((train, reference))
}
