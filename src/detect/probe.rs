//! Input-level probing: the model's softmax outputs on transformed copies of images (STRIP's
//! superimpositions, SCALE-UP's amplified pixels) or under amplified copies of the model
//! (IBD-PSC), computed in evaluation batches before the detectors run, for the training set and
//! the references with one progress count. The detectors themselves only read the per-sample
//! scores made here.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::features::Cancelled;
use std::collections::BTreeMap;
use std::time::Instant;

use super::{
    DetectError, DetectEvent, DetectInput, Probes, RunError, features, ibd_psc, scale_up, strip,
};
use crate::config::{DetectorKind, IbdPscPastLast};
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
        self.outputs(shape, count, make, progress, Output::Probabilities)
    }

    /// The model's outputs, softmax or log-softmax (`output`), as [`Self::probabilities`]
    /// describes them.
    pub fn outputs(
        &self,
        shape: Shape,
        count: usize,
        make: &mut dyn FnMut(usize, &mut [u8]),
        progress: &mut dyn FnMut(usize),
        output: Output,
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
            let logits = self.model.forward(input.images);
            let probs: Tensor<2> = match output {
                Output::Probabilities => softmax(logits, 1),
                Output::LogProbabilities => log_softmax(logits, 1),
            };
            classes = probs.dims()[1];
            out.extend(probs.into_data().try_to_vec_as::<f32>().unwrap_or_default());
            start += b;
            progress(start);
        }
        Ok(Array2::from_shape_vec((count, classes), out)
            .unwrap_or_else(|_| Array2::zeros((count, classes))))
    }
}

/// What [`Prober::outputs`] returns per image and class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Probabilities,
    /// Log-softmax: a probability that rounds to 1.0 in f32 keeps its distance from certainty
    /// in the other classes' log-probabilities.
    LogProbabilities,
}

/// A probe's (training set, references) scores as slices.
pub fn pair(scores: &Option<(Vec<f64>, Vec<f64>)>) -> Option<(&[f64], &[f64])> {
    scores.as_ref().map(|(t, r)| (t.as_slice(), r.as_slice()))
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
    pair: Option<(&'a [f64], &'a [f64])>,
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
    if train.iter().chain(reference.iter()).any(|v| !v.is_finite()) {
        return Err(DetectError::Numeric(format!("{what}: non-finite scores")));
    }
    Ok((train, reference))
}

/// The images the input-level probes score: the training set and the references, with the
/// model's predictions on each.
#[derive(Clone, Copy)]
pub(super) struct ProbeSets<'a> {
    pub(super) train: &'a Dataset,
    pub(super) references: &'a Dataset,
    pub(super) train_predicted: &'a [u16],
    pub(super) reference_predicted: &'a [u16],
}

/// One of the two [`ProbeSets`].
struct Side<'a> {
    data: &'a Dataset,
    predicted: &'a [u16],
    is_reference: bool,
}

/// The input-level probes the configured detectors read (STRIP's entropies, SCALE-UP's and
/// IBD-PSC's consistencies), for the training set and the references; nothing when none is
/// configured.
pub(super) fn probe_inputs(
    prober: &Prober,
    sets: ProbeSets,
    methods: &[DetectorKind],
    past_last: IbdPscPastLast,
    seed: u64,
    on_event: &mut dyn FnMut(DetectEvent),
) -> Result<Probes, RunError> {
    let mut probes = Probes::default();
    if methods.contains(&DetectorKind::Strip) {
        probes.strip = Some(probe_both(
            "strip",
            strip::OVERLAYS,
            sets,
            &mut probes.seconds,
            on_event,
            &mut |side, progress| {
                let pool = sets.references;
                strip::entropies(prober, side.data, pool, side.is_reference, seed, progress)
            },
        )?);
    }
    if methods.contains(&DetectorKind::ScaleUp) {
        probes.scale_up = Some(probe_both(
            "scale-up",
            scale_up::SCALES.len(),
            sets,
            &mut probes.seconds,
            on_event,
            &mut |side, progress| {
                scale_up::consistency(prober, side.data, side.predicted, progress)
            },
        )?);
    }
    if methods.contains(&DetectorKind::IbdPsc) {
        probes.ibd_psc = Some(probe_ibd_psc(
            prober,
            sets,
            past_last,
            &mut probes.seconds,
            on_event,
        )?);
    }
    Ok(probes)
}

/// IBD-PSC's adaptive selection on the references, then the consistency of the training set
/// and the references under the selected amplifications.
fn probe_ibd_psc(
    prober: &Prober,
    sets: ProbeSets,
    past_last: IbdPscPastLast,
    seconds: &mut BTreeMap<&'static str, f64>,
    on_event: &mut dyn FnMut(DetectEvent),
) -> Result<ibd_psc::Probe, RunError> {
    let start = Instant::now();
    let ladder = ibd_psc::ladder(prober.model.batch_norm_count());
    let selection = ibd_psc::select(
        prober,
        sets.references,
        &ladder,
        past_last,
        &mut |done, total| {
            on_event(DetectEvent::Probing {
                name: "ibd-psc selection",
                done,
                total,
            })
        },
    )
    .map_err(|_| RunError::Cancelled)?;
    let models = selection.models.clone();
    let scores = if models.is_empty() {
        None
    } else {
        Some(probe_both(
            "ibd-psc",
            ibd_psc::distinct(&models).len(),
            sets,
            &mut BTreeMap::new(),
            on_event,
            &mut |side, progress| {
                ibd_psc::consistency(prober, &models, side.data, side.predicted, progress)
            },
        )?)
    };
    seconds.insert("ibd-psc", start.elapsed().as_secs_f64());
    Ok(ibd_psc::Probe { selection, scores })
}

/// `score(side, progress)`: the probe's scores of the images of `side.data` (one per image,
/// or IBD-PSC's two).
type ProbeScore<'a, T> =
    dyn FnMut(&Side, &mut dyn FnMut(usize, usize)) -> Result<T, features::Cancelled> + 'a;

/// A per-image probe score of the training set, then of the references, with one progress
/// count over both (`per_image` model passes per image) and the seconds recorded under `name`.
fn probe_both<T>(
    name: &'static str,
    per_image: usize,
    sets: ProbeSets,
    seconds: &mut BTreeMap<&'static str, f64>,
    on_event: &mut dyn FnMut(DetectEvent),
    score: &mut ProbeScore<T>,
) -> Result<(T, T), RunError> {
    let start = Instant::now();
    let total = (sets.train.len() + sets.references.len()) * per_image;
    let mut run = |side: Side, offset: usize| {
        score(&side, &mut |done, _| {
            on_event(DetectEvent::Probing {
                name,
                done: offset + done,
                total,
            })
        })
        .map_err(|_| RunError::Cancelled)
    };
    let on_train = run(
        Side {
            data: sets.train,
            predicted: sets.train_predicted,
            is_reference: false,
        },
        0,
    )?;
    let on_references = run(
        Side {
            data: sets.references,
            predicted: sets.reference_predicted,
            is_reference: true,
        },
        sets.train.len() * per_image,
    )?;
    seconds.insert(name, start.elapsed().as_secs_f64());
    Ok((on_train, on_references))
}
