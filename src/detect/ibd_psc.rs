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
use crate::config::{DetectorKind, IbdPscPastLast, IbdPscScore};
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
/// the disturbing rung itself). With [`IbdPscPastLast::Repeat`] and a disturbing rung at
/// [`FACTOR`], the k+1 … k+5 deepest layers at FACTOR instead, the all-layers model repeated
/// past the last layer (the reference code's indexing). `progress(done, total)` counts reference images.
pub fn select(
    prober: &Prober,
    references: &Dataset,
    ladder: &[Amplification],
    past_last: IbdPscPastLast,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Selection, Cancelled> {
    let n = references.len();
    let total = n * ladder.len();
    let mut selection = Selection::default();
    for (r, &rung) in ladder.iter().enumerate() {
        let model = rung.apply(prober.model);
        let predicted = log_probabilities(prober, &model, references, &mut |done| {
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
            selection.models = models_after(ladder, r, past_last);
            progress(total, total);
            break;
        }
    }
    Ok(selection)
}

/// Both scores of every image, each a mean over the amplified models.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Consistency {
    /// PSC: the mean softmax probability of the original prediction.
    pub probability: Vec<f64>,
    /// The mean log-odds ln(p / (1 − p)) of the original prediction.
    pub log_odds: Vec<f64>,
}

impl Consistency {
    /// The scores `score` names.
    pub fn of(&self, score: IbdPscScore) -> &[f64] {
        match score {
            IbdPscScore::Probability => &self.probability,
            IbdPscScore::LogOdds => &self.log_odds,
        }
    }
}

/// Bound of one model's log-odds, reached only when the other classes' log-probabilities are
/// −∞ (f32 log-softmax keeps any finite margin: under strong amplification margins run into the
/// thousands and are still told apart). It keeps the mean over the models finite.
pub const MAX_LOG_ODDS: f64 = 1e30;

/// ln(p_c / (1 − p_c)) from a row of log-probabilities, computed as
/// lp_c − ln Σ_{j≠c} exp(lp_j) (shifted by the largest lp_j): no 1 − p_c, which is 0 in f32
/// once p_c rounds to 1.
pub fn log_odds(log_probs: &[f32], class: usize) -> f64 {
    let Some(&own) = log_probs.get(class) else {
        return 0.0;
    };
    let others = || {
        log_probs
            .iter()
            .enumerate()
            .filter(move |&(j, _)| j != class)
            .map(|(_, &v)| f64::from(v))
    };
    let top = others().fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        return MAX_LOG_ODDS;
    }
    let rest = top + others().map(|v| (v - top).exp()).sum::<f64>().ln();
    (f64::from(own) - rest).clamp(-MAX_LOG_ODDS, MAX_LOG_ODDS)
}

/// The PSC models once `ladder[r]` disturbed the references (see [`select`]).
pub fn models_after(
    ladder: &[Amplification],
    r: usize,
    past_last: IbdPscPastLast,
) -> Vec<Amplification> {
    let Some(&rung) = ladder.get(r) else {
        return Vec::new();
    };
    let after = &ladder[r + 1..];
    let deepest = ladder.iter().map(|a| a.layers).max().unwrap_or(0);
    if past_last == IbdPscPastLast::Repeat && rung.factor == FACTOR {
        (1..=MODELS)
            .map(|i| Amplification {
                layers: (rung.layers + i).min(deepest),
                factor: FACTOR,
            })
            .collect()
    } else if after.is_empty() {
        vec![rung]
    } else {
        after.iter().take(MODELS).copied().collect()
    }
}

/// PSC and the mean log-odds of every image of `data` under `models`, for `predicted` (the
/// original model's prediction). `progress(done, total)` counts model passes.
pub fn consistency(
    prober: &Prober,
    models: &[Amplification],
    data: &Dataset,
    predicted: &[u16],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Consistency, Cancelled> {
    let n = data.len();
    let distinct = distinct(models);
    let total = n * distinct.len();
    let (mut probability, mut odds) = (vec![0.0; n], vec![0.0; n]);
    for (m, &(rung, copies)) in distinct.iter().enumerate() {
        let model = rung.apply(prober.model);
        let log_probs = log_probabilities(prober, &model, data, &mut |done| {
            progress(m * n + done, total)
        })?;
        let copies = copies as f64;
        for (i, row) in log_probs.rows().into_iter().enumerate().take(n) {
            let class = predicted.get(i).map_or(0, |&c| usize::from(c));
            let row = row.to_vec();
            probability[i] += copies * row.get(class).map_or(0.0, |&lp| f64::from(lp).exp());
            odds[i] += copies * log_odds(&row, class);
        }
    }
    let count = models.len().max(1) as f64;
    let mean = |v: Vec<f64>| v.into_iter().map(|s| s / count).collect();
    Ok(Consistency {
        probability: mean(probability),
        log_odds: mean(odds),
    })
}

/// Each different model of `models` once, with how often it occurs (the reference code's
/// repeated all-layers model is run once and counted five times).
pub fn distinct(models: &[Amplification]) -> Vec<(Amplification, usize)> {
    let mut out: Vec<(Amplification, usize)> = Vec::new();
    for &m in models {
        match out.iter_mut().find(|(seen, _)| *seen == m) {
            Some((_, count)) => *count += 1,
            None => out.push((m, 1)),
        }
    }
    out
}

/// Log-softmax outputs of `model` on the images of `data` as they are.
fn log_probabilities(
    prober: &Prober,
    model: &Net,
    data: &Dataset,
    progress: &mut dyn FnMut(usize),
) -> Result<ndarray::Array2<f32>, Cancelled> {
    let amplified = Prober { model, ..*prober };
    amplified.outputs(
        data.shape,
        data.len(),
        &mut |i, out| {
            if let Some(x) = data.image(i) {
                out.copy_from_slice(x);
            }
        },
        progress,
        probe::Output::LogProbabilities,
    )
}

/// What the detection run computed for IBD-PSC before the detectors ran.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub selection: Selection,
    /// The scores of the training set and of the references; `None` when nothing was selected.
    pub scores: Option<(Consistency, Consistency)>,
}

/// The IBD-PSC detector: reads the scores computed before the detectors run. Its published
/// rule flags PSC ≥ [`PAPER_THRESHOLD`]; with the log-odds score, mean log-odds ≥ ln(0.9 / 0.1)
/// (the same bound for an image whose probability is the same under every amplified model).
#[derive(Clone, Debug, Default)]
pub struct IbdPsc {
    pub score: IbdPscScore,
}

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
        let pair = probe
            .and_then(|p| p.scores.as_ref())
            .map(|(t, r)| (t.of(self.score), r.of(self.score)));
        let (train, reference) = probe::scores(input, pair, "IBD-PSC")?;
        let mut out = Detection::new(input.len());
        out.scores = train.to_vec();
        out.reference_scores = reference.to_vec();
        let bound = match self.score {
            IbdPscScore::Probability => PAPER_THRESHOLD,
            IbdPscScore::LogOdds => (PAPER_THRESHOLD / (1.0 - PAPER_THRESHOLD)).ln(),
        };
        out.flags = train.iter().map(|&s| s >= bound).collect();
        out.note("score", self.score);
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

    fn odds(probabilities: &[f64]) -> Vec<f64> {
        probabilities.iter().map(|p| (p / (1.0 - p)).ln()).collect()
    }

    /// f32 log-softmax of `logits`, as the prober computes it.
    fn log_softmax(logits: &[f32]) -> Vec<f32> {
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = top + logits.iter().map(|z| (z - top).exp()).sum::<f32>().ln();
        logits.iter().map(|z| z - lse).collect()
    }

    /// The log-odds equal ln(p / (1 − p)) where p is representable, and keep growing with the
    /// logit margin where p has rounded to 1.0 in f32 (the published PSC's ties).
    #[test]
    fn log_odds_keep_ranking_past_a_probability_of_one() {
        // p = e / (e + 2) for logits [1, 0, 0]: ln(p / (1 − p)) = 1 − ln 2.
        let moderate = log_odds(&log_softmax(&[1.0, 0.0, 0.0]), 0);
        assert!((moderate - (1.0 - 2f64.ln())).abs() < 1e-5, "{moderate}");
        // The original prediction is not the top class: negative log-odds.
        assert!(log_odds(&log_softmax(&[1.0, 0.0, 0.0]), 1) < -1.0);
        // Margins of 20 and 40: both probabilities are 1.0 in f32, the log-odds are 20 − ln 2
        // and 40 − ln 2.
        let (near, far) = (
            log_softmax(&[20.0, 0.0, 0.0]),
            log_softmax(&[40.0, 0.0, 0.0]),
        );
        assert_eq!((near[0].exp(), far[0].exp()), (1.0, 1.0));
        let (near, far) = (log_odds(&near, 0), log_odds(&far, 0));
        assert!((near - (20.0 - 2f64.ln())).abs() < 1e-3, "{near}");
        assert!((far - (40.0 - 2f64.ln())).abs() < 1e-3, "{far}");
        // Amplified models reach margins in the thousands: still told apart.
        let huge = log_odds(&log_softmax(&[5000.0, 0.0, -10.0]), 0);
        assert!((huge - 5000.0).abs() < 1.0, "{huge}");
        // Only an infinite margin meets the bound; a missing class scores 0.
        assert_eq!(log_odds(&[0.0, f32::NEG_INFINITY], 0), MAX_LOG_ODDS);
        assert_eq!(log_odds(&[0.0], 3), 0.0);
    }

    /// Past the last layer the extended ladder goes stronger; the reference code's indexing
    /// repeats the all-layers model, which is scored once and counted five times.
    #[test]
    fn models_past_the_last_layer_go_stronger_or_repeat() {
        let l = ladder(17);
        let at = |layers: usize, factor: f32| Amplification { layers, factor };
        // Layer 14 disturbed the references: 15, 16, 17 deepest, then two more.
        let stronger = models_after(&l, 13, IbdPscPastLast::Stronger);
        assert_eq!(&stronger[..3], &[at(15, 1.5), at(16, 1.5), at(17, 1.5)]);
        assert_eq!(stronger[3].layers, 17);
        assert!((stronger[3].factor - 2.25).abs() < 1e-6);
        let repeat = models_after(&l, 13, IbdPscPastLast::Repeat);
        assert_eq!(
            repeat,
            [
                at(15, 1.5),
                at(16, 1.5),
                at(17, 1.5),
                at(17, 1.5),
                at(17, 1.5)
            ]
        );
        assert_eq!(
            distinct(&repeat),
            [(at(15, 1.5), 1), (at(16, 1.5), 1), (at(17, 1.5), 3)]
        );
        // All 17 layers at ×1.5 disturbed them: five stronger rungs, or that model five times.
        assert_eq!(models_after(&l, 16, IbdPscPastLast::Stronger)[4].layers, 17);
        assert_eq!(
            distinct(&models_after(&l, 16, IbdPscPastLast::Repeat)),
            [(at(17, 1.5), 5)]
        );
        // A stronger rung disturbed them (a shallow model): the reference code has no models;
        // both go on up the ladder, and at its end keep the last rung.
        let last = l.len() - 1;
        assert_eq!(
            models_after(&l, 20, IbdPscPastLast::Repeat),
            models_after(&l, 20, IbdPscPastLast::Stronger)
        );
        assert_eq!(models_after(&l, last, IbdPscPastLast::Repeat), [l[last]]);
    }

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
                scores: Some((
                    Consistency {
                        probability: train.clone(),
                        log_odds: odds(&train),
                    },
                    Consistency {
                        probability: reference.clone(),
                        log_odds: odds(&reference),
                    },
                )),
            }),
            ..Probes::default()
        };
        let mut input = p.input(None);
        input.probes = Some(&probes);
        let out = IbdPsc::default().detect(&input).unwrap();
        assert_eq!(p.rates(&out.flags), (1.0, 0.0));
        assert_eq!(out.reference_scores, reference);
        assert!(out.details.contains_key("models"));
        // The log-odds score ranks the same and its published bound (ln 9) flags the same.
        let by_odds = IbdPsc {
            score: IbdPscScore::LogOdds,
        }
        .detect(&input)
        .unwrap();
        assert_eq!(by_odds.flags, out.flags);
        assert_eq!(by_odds.reference_scores, odds(&reference));

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
        let message = IbdPsc::default().detect(&input).unwrap_err().to_string();
        assert!(message.contains("at most 2.0 %"), "{message}");
    }
}
