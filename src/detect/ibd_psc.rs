//! **IBD-PSC** (Hou et al., ICML 2024): amplify the scale and shift (γ, β) of the model's deepest
//! BatchNorm layers and see whether the prediction survives. Amplification wrecks a clean
//! image's prediction; an image carrying a learned trigger keeps it ("parameter-oriented scaling
//! consistency").
//!
//! Per sample: the softmax probability of the original prediction under each of [`MODELS`]
//! amplified copies of the model, averaged (PSC, higher = more suspicious). Published rule:
//! PSC ≥ [`PAPER_THRESHOLD`] (0.9); the calibrated rule uses the references' PSC like the other
//! detectors.
//!
//! **Adaptive layer selection**, as the reference code does it: amplify the k deepest BatchNorm
//! layers by [`FACTOR`] for k = 1, 2, …; the first k whose error on the clean references
//! (against their labels) exceeds [`XI`] starts the ladder, and the PSC models are the [`MODELS`]
//! rungs *after* it (k+1 … k+5 layers; the code indexes `sorted[:k+1]`; where that runs past the
//! last layer, the code repeats the all-layers model and the ladder here takes its next, stronger
//! rungs instead). Shallow models (our CNN
//! has two BatchNorm layers) run out of layers before the error reaches ξ; the reference code
//! then fails (`prob_start` returns nothing). Here the ladder goes on with every layer amplified
//! by 1.5², 1.5³, … up to 1.5^[`MAX_POWER`]; when even that leaves the references mostly
//! correct, the model does not respond to amplification and the detector says so instead of
//! scoring. The rungs tried and their clean errors are in the report.

use serde::Serialize;

use super::features::Cancelled;
use super::probe::{self, Prober};
use super::{DetectError, DetectInput, Detection, Detector};
use crate::config::DetectorKind;
use crate::data::Dataset;
use crate::model::Net;

/// The amplification factor of a BatchNorm layer's γ and β.
pub const FACTOR: f32 = 1.5;
/// Amplified models whose probabilities are averaged.
pub const MODELS: usize = 5;
/// Clean error the selected amplification must exceed.
pub const XI: f64 = 0.6;
/// The published threshold on PSC.
pub const PAPER_THRESHOLD: f64 = 0.9;
/// Largest power of [`FACTOR`] applied to every layer once the layers are used up.
pub const MAX_POWER: i32 = 12;

/// One amplified model: its `layers` deepest BatchNorm layers' γ and β times `factor`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Amplification {
    pub layers: usize,
    pub factor: f32,
}

impl Amplification {
    /// The amplified copy of `model`.
    pub fn apply(self, model: &Net) -> Net {
        model.amplified(self.layers, self.factor)
    }
}

/// The amplifications in order of strength for a model with `batch_norms` BatchNorm layers: the
/// k deepest at [`FACTOR`] for k = 1 … `batch_norms`, then all of them at FACTOR², FACTOR³, …
pub fn ladder(batch_norms: usize) -> Vec<Amplification> {
    let deeper = (1..=batch_norms).map(|layers| Amplification {
        layers,
        factor: FACTOR,
    });
    let stronger = (2..=MAX_POWER).map(|p| Amplification {
        layers: batch_norms,
        factor: FACTOR.powi(p),
    });
    deeper.chain(stronger).collect()
}

/// What the adaptive selection tried and chose.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Selection {
    /// Each rung tried on the references, with its clean error.
    pub tried: Vec<(Amplification, f64)>,
    /// The PSC models; empty when no rung disturbed the references beyond [`XI`].
    pub models: Vec<Amplification>,
}

/// Adaptive selection on the clean `references` (with their labels): the [`MODELS`] rungs of
/// `ladder` after the first whose clean error exceeds [`XI`] (fewer at the ladder's end, at least
/// the disturbing rung itself). `progress(done, total)` counts reference images.
pub fn select(
    prober: &Prober,
    references: &Dataset,
    ladder: &[Amplification],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Selection, Cancelled> {
    let n = references.len();
    let total = n * ladder.len();
    let mut selection = Selection::default();
    for (r, &rung) in ladder.iter().enumerate() {
        let model = rung.apply(prober.model);
        let predicted = probabilities(prober, &model, references, &mut |done| {
            progress(r * n + done, total)
        })?;
        let wrong = probe::argmax_rows(&predicted)
            .iter()
            .zip(&references.labels)
            .filter(|(p, l)| **p != usize::from(**l))
            .count();
        let error = wrong as f64 / n.max(1) as f64;
        selection.tried.push((rung, error));
        if error > XI {
            let after = &ladder[r + 1..];
            selection.models = if after.is_empty() {
                vec![rung]
            } else {
                after.iter().take(MODELS).copied().collect()
            };
            progress(total, total);
            break;
        }
    }
    Ok(selection)
}

/// PSC of every image of `data`: the mean over `models` of the softmax probability of
/// `predicted` (the original model's prediction). `progress(done, total)` counts model passes.
pub fn consistency(
    prober: &Prober,
    models: &[Amplification],
    data: &Dataset,
    predicted: &[u16],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>, Cancelled> {
    let n = data.len();
    let total = n * models.len();
    let mut sum = vec![0.0; n];
    for (m, &rung) in models.iter().enumerate() {
        let model = rung.apply(prober.model);
        let probs = probabilities(prober, &model, data, &mut |done| {
            progress(m * n + done, total)
        })?;
        for (i, s) in sum.iter_mut().enumerate() {
            let class = predicted.get(i).map_or(0, |&c| usize::from(c));
            *s += probs.get((i, class)).map_or(0.0, |&p| f64::from(p));
        }
    }
    let count = models.len().max(1) as f64;
    Ok(sum.into_iter().map(|s| s / count).collect())
}

/// Softmax outputs of `model` on the images of `data` as they are.
fn probabilities(
    prober: &Prober,
    model: &Net,
    data: &Dataset,
    progress: &mut dyn FnMut(usize),
) -> Result<ndarray::Array2<f32>, Cancelled> {
    let amplified = Prober { model, ..*prober };
    amplified.probabilities(
        data.shape,
        data.len(),
        &mut |i, out| {
            if let Some(x) = data.image(i) {
                out.copy_from_slice(x);
            }
        },
        progress,
    )
}

/// What the detection run computed for IBD-PSC before the detectors ran.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub selection: Selection,
    /// PSC of the training set and of the references; `None` when nothing was selected.
    pub scores: Option<(Vec<f64>, Vec<f64>)>,
}

/// The IBD-PSC detector: reads the scores computed before the detectors run.
#[derive(Clone, Debug, Default)]
pub struct IbdPsc;

impl Detector for IbdPsc {
    fn kind(&self) -> DetectorKind {
        DetectorKind::IbdPsc
    }

    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError> {
        let probe = input.probes.and_then(|p| p.ibd_psc.as_ref());
        if let Some(p) = probe.filter(|p| p.selection.models.is_empty()) {
            let tried = &p.selection.tried;
            let strongest = tried.last().map_or(
                Amplification {
                    layers: 0,
                    factor: 1.0,
                },
                |t| t.0,
            );
            let worst = tried.iter().map(|t| t.1).fold(0.0, f64::max);
            return Err(DetectError::Invalid(format!(
                "IBD-PSC: amplifying the BatchNorm layers (deepest first, then all {} up to ×{:.0}) \
                 never raised the clean references' error above {:.0} % (at most {:.1} %): the \
                 prediction survives amplification for every input, so the consistency separates \
                 nothing. A plain conv–BN–ReLU stack passes the scale straight through; IBD-PSC \
                 needs residual connections (model = \"preact-resnet18\")",
                strongest.layers,
                strongest.factor,
                100.0 * XI,
                100.0 * worst
            )));
        }
        let (train, reference) =
            probe::scores(input, probe.and_then(|p| p.scores.as_ref()), "IBD-PSC")?;
        let mut out = Detection::new(input.len());
        out.scores = train.to_vec();
        out.reference_scores = reference.to_vec();
        out.flags = train.iter().map(|&s| s >= PAPER_THRESHOLD).collect();
        if let Some(p) = probe {
            out.note("models", &p.selection.models);
            out.note("selection", &p.selection.tried);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Probes;
    use crate::detect::testing::planted;

    #[test]
    fn the_ladder_goes_deeper_then_stronger() {
        let l = ladder(2);
        assert_eq!(l.len(), 2 + (MAX_POWER as usize - 1));
        assert_eq!(
            l[0],
            Amplification {
                layers: 1,
                factor: 1.5
            }
        );
        assert_eq!(
            l[1],
            Amplification {
                layers: 2,
                factor: 1.5
            }
        );
        assert_eq!(l[2].layers, 2);
        assert!((l[2].factor - 2.25).abs() < 1e-6);
        assert!(
            l.windows(2)
                .all(|w| w[1].layers >= w[0].layers && w[1].factor >= w[0].factor)
        );
    }

    /// Planted probe outcome: clean PSC 0.1–0.7, the poisons' 0.95. The published rule flags
    /// exactly the poisons; a selection that found nothing is an error, not a score.
    #[test]
    fn flags_consistent_predictions_and_refuses_an_unresponsive_model() {
        let p = planted(4, 3.0);
        let clean = |i: usize| 0.1 + ((i * 17) % 7) as f64 / 10.0;
        let train: Vec<f64> = (0..p.labels.len())
            .map(|i| if p.poisoned[i] { 0.95 } else { clean(i) })
            .collect();
        let reference: Vec<f64> = (0..p.reference_labels.len()).map(clean).collect();
        let rung = Amplification {
            layers: 2,
            factor: 1.5,
        };
        let probes = Probes {
            ibd_psc: Some(Probe {
                selection: Selection {
                    tried: vec![(rung, 0.7)],
                    models: vec![rung],
                },
                scores: Some((train, reference.clone())),
            }),
            ..Probes::default()
        };
        let mut input = p.input(None);
        input.probes = Some(&probes);
        let out = IbdPsc.detect(&input).unwrap();
        assert_eq!(p.rates(&out.flags), (1.0, 0.0));
        assert_eq!(out.reference_scores, reference);
        assert!(out.details.contains_key("models"));

        let unresponsive = Probes {
            ibd_psc: Some(Probe {
                selection: Selection {
                    tried: vec![(rung, 0.02)],
                    models: Vec::new(),
                },
                scores: None,
            }),
            ..Probes::default()
        };
        input.probes = Some(&unresponsive);
        let message = IbdPsc.detect(&input).unwrap_err().to_string();
        assert!(message.contains("at most 2.0 %"), "{message}");
    }
}
