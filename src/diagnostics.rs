//! Is the result meaningful? How well the model fits its training set (measured on the given
//! labels, no ground truth needed) and the warnings a run carries: a model near chance, a model
//! that has not fitted its training set (every feature-space detector assumes it has), a backdoor
//! that was not learned (needs the planted attack's ground truth), detectors flagging a large
//! share of the data, a detector that failed.

use serde::{Deserialize, Serialize};

use crate::config::OptimizerKind;
use crate::detect::DetectionRun;

/// Training accuracy on the given labels below this: the model has not fitted its training set.
pub const MIN_TRAIN_ACCURACY: f64 = 0.9;
/// A class whose training samples are reproduced less often than this is named.
pub const MIN_CLASS_ACCURACY: f64 = 0.8;
/// Share of the way from chance to perfect below which a model counts as near chance.
pub const NEAR_CHANCE: f64 = 0.25;
/// Attack success rate below this: the backdoor was not learned.
pub const MIN_ATTACK_SUCCESS: f64 = 0.5;
/// A decision flagging more than this share of the training set is suspect itself.
pub const MAX_FLAGGED_SHARE: f64 = 0.2;

/// How well the trained model fits the training set it was given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Share of training samples predicted as their given label.
    pub train_accuracy: f64,
    /// The same per class (by given label); `None` for an empty class.
    pub per_class_accuracy: Vec<Option<f64>>,
    /// Share of training samples whose prediction disagrees with their given label.
    pub disagreement: f64,
    /// Accuracy on the clean test split.
    pub clean_accuracy: f64,
    /// Accuracy of guessing: 1 / classes.
    pub chance: f64,
}

impl Fit {
    /// The fit of predictions `predicted` against the given labels.
    pub fn measure(
        predicted: &[u16],
        given: &[u16],
        num_classes: usize,
        clean_accuracy: f64,
    ) -> Self {
        let mut right = vec![0usize; num_classes];
        let mut total = vec![0usize; num_classes];
        for (&p, &g) in predicted.iter().zip(given) {
            if let (Some(t), Some(r)) =
                (total.get_mut(usize::from(g)), right.get_mut(usize::from(g)))
            {
                *t += 1;
                *r += usize::from(p == g);
            }
        }
        let n: usize = total.iter().sum();
        let correct: usize = right.iter().sum();
        let train_accuracy = correct as f64 / n.max(1) as f64;
        Self {
            train_accuracy,
            per_class_accuracy: right
                .iter()
                .zip(&total)
                .map(|(&r, &t)| (t > 0).then(|| r as f64 / t as f64))
                .collect(),
            disagreement: 1.0 - train_accuracy,
            clean_accuracy,
            chance: 1.0 / num_classes.max(1) as f64,
        }
    }

    /// Whether an accuracy is within [`NEAR_CHANCE`] of the way from chance to perfect.
    fn near_chance(&self, accuracy: f64) -> bool {
        accuracy < self.chance + NEAR_CHANCE * (1.0 - self.chance)
    }
}

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    NearChance,
    NotFitted,
    ClassesNotFitted,
    BackdoorNotLearned,
    TooManyFlagged,
    DetectorFailed,
    /// Classes with too few clean references for a threshold of their own.
    FewReferences,
}

/// One warning: its kind and a sentence with what to try.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

/// What to do when the backdoor was not learned, for the arm's optimizer. SAM can refuse to fit
/// a few relabelled samples that SGD would learn; SGD that did not learn them either needs a
/// longer training, or the attack is too weak to be learned.
fn not_learned_advice(optimizer: OptimizerKind) -> &'static str {
    match optimizer {
        OptimizerKind::Sgd => {
            "look at the `loss` detector (it reads the relabelled samples the model did not \
             fit), or train longer (train.epochs): a weak attack may not be learned at all"
        }
        OptimizerKind::Sam | OptimizerKind::Asam => {
            "look at the `loss` detector (it reads the relabelled samples SAM refused to \
             fit), or compare with train.optimizer = \"sgd\" or a smaller train.rho"
        }
    }
}

/// The warnings of a run. `attack_success_rate` is only known with a planted attack.
/// `optimizer` is the arm's: the advice when a backdoor was not learned depends on it.
pub fn warnings(
    fit: &Fit,
    attack_success_rate: Option<f64>,
    detection: &DetectionRun,
    class_names: &[String],
    optimizer: OptimizerKind,
) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut warn = |kind, message: String| out.push(Warning { kind, message });
    if fit.near_chance(fit.clean_accuracy) || fit.near_chance(fit.train_accuracy) {
        warn(
            WarningKind::NearChance,
            format!(
                "the model is near chance (clean accuracy {}, training accuracy {}, chance {}): \
                 its features carry no information and the detectors' results are meaningless; \
                 train longer (train.epochs), raise train.lr, or use more data",
                pct(fit.clean_accuracy),
                pct(fit.train_accuracy),
                pct(fit.chance)
            ),
        );
    } else if fit.train_accuracy < MIN_TRAIN_ACCURACY {
        warn(
            WarningKind::NotFitted,
            format!(
                "the model has not fitted its training set: only {} of the training samples are \
                 predicted as their given label; feature-space detectors assume a fitted model \
                 (train longer, or turn augmentation off); the `loss` detector reads exactly the \
                 samples it refused to fit",
                pct(fit.train_accuracy)
            ),
        );
    }
    let poor: Vec<String> = fit
        .per_class_accuracy
        .iter()
        .enumerate()
        .filter_map(|(c, a)| {
            let a = (*a)?;
            (a < MIN_CLASS_ACCURACY).then(|| {
                let name = class_names
                    .get(c)
                    .map_or_else(|| c.to_string(), Clone::clone);
                format!("{name} ({})", pct(a))
            })
        })
        .collect();
    if !poor.is_empty() && !fit.near_chance(fit.train_accuracy) {
        warn(
            WarningKind::ClassesNotFitted,
            format!(
                "classes the model fits poorly (training accuracy on the given labels): {}",
                poor.join(", ")
            ),
        );
    }
    if let Some(asr) = attack_success_rate
        && asr < MIN_ATTACK_SUCCESS
    {
        let advice = not_learned_advice(optimizer);
        warn(
            WarningKind::BackdoorNotLearned,
            format!(
                "the planted backdoor was not learned (attack success rate {}): feature-space \
                 detectors have little to find; {advice}",
                pct(asr)
            ),
        );
    }
    let n = detection.train.predicted.len().max(1) as f64;
    for r in &detection.results {
        if let Some(error) = &r.error {
            warn(
                WarningKind::DetectorFailed,
                format!("{} failed: {error}", r.name),
            );
            continue;
        }
        let share = r.detection.flagged() as f64 / n;
        if share > MAX_FLAGGED_SHARE {
            warn(
                WarningKind::TooManyFlagged,
                format!(
                    "{} flags {} of the training set: that is not a poison set but a sign the \
                     model or the decision does not fit this data",
                    r.name,
                    pct(share)
                ),
            );
        }
    }
    let pooled: std::collections::BTreeSet<u64> = detection
        .results
        .iter()
        .filter_map(|r| r.detection.details.get("classes_with_pooled_threshold"))
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let needed = detection
        .results
        .iter()
        .find_map(|r| r.detection.details.get("references_needed_per_class"))
        .and_then(serde_json::Value::as_u64);
    if !pooled.is_empty() {
        let names: Vec<String> = pooled
            .iter()
            .map(|&c| {
                class_names
                    .get(c as usize)
                    .map_or_else(|| c.to_string(), Clone::clone)
            })
            .collect();
        warn(
            WarningKind::FewReferences,
            format!(
                "{} of {} classes ({}) have fewer than {} clean references: their calibrated \
                 thresholds come from all classes' references, and a class whose scores run \
                 high may show more false positives; raise detect.clean_per_class or give a \
                 larger test split",
                pooled.len(),
                class_names.len().max(pooled.len()),
                names.join(", "),
                needed.map_or_else(|| "enough".to_owned(), |n| n.to_string()),
            ),
        );
    }
    let share = detection.consensus.flags.iter().filter(|&&f| f).count() as f64 / n;
    if share > MAX_FLAGGED_SHARE {
        warn(
            WarningKind::TooManyFlagged,
            format!("the consensus flags {} of the training set", pct(share)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_learned_advice_fits_the_arm() {
        let sgd = not_learned_advice(OptimizerKind::Sgd);
        assert!(
            sgd.contains("train longer") && !sgd.contains("optimizer"),
            "{sgd}"
        );
        for sam in [OptimizerKind::Sam, OptimizerKind::Asam] {
            let advice = not_learned_advice(sam);
            assert!(advice.contains("train.optimizer = \"sgd\""), "{advice}");
            assert!(advice.contains("train.rho"), "{advice}");
        }
    }

    #[test]
    fn fit_counts_agreement_with_the_given_labels() {
        let fit = Fit::measure(&[0, 1, 1, 2], &[0, 1, 2, 2], 4, 0.9);
        assert!((fit.train_accuracy - 0.75).abs() < 1e-12);
        assert!((fit.disagreement - 0.25).abs() < 1e-12);
        assert_eq!(
            fit.per_class_accuracy,
            vec![Some(1.0), Some(1.0), Some(0.5), None]
        );
        assert!(!fit.near_chance(0.9));
        assert!(fit.near_chance(0.3));
    }
}
