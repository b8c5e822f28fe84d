//! Spectral Signatures (Tran et al. 2018): per class, the squared projection of each centred
//! feature on the class's top singular direction.

use ndarray::Axis;

use super::decision::robust_z_by_class;
use crate::config::DetectorKind;

use super::linalg::{indices_by_class, mean, quantile, top_k, top_right_singular_vector};
use super::{DetectError, DetectInput, Detection, Detector};

/// Expected poisoning ratio when the defender gives none.
pub const DEFAULT_RATIO: f64 = 0.05;

pub use crate::config::SsRule;

/// Spectral Signatures.
#[derive(Clone, Debug, Default)]
pub struct SpectralSignatures {
    pub rule: SsRule,
}

impl Detector for SpectralSignatures {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Ss
    }

    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError> {
        input.validate()?;
        let n = input.len();
        let mut out = Detection::new(n);
        let ratio = input.expected_ratio.unwrap_or(DEFAULT_RATIO);
        let budget = (1.5 * ratio * n as f64).floor() as usize;
        out.reference_scores = vec![f64::NAN; input.reference_labels.len()];
        let ref_by_class = indices_by_class(input.reference_labels, input.num_classes);
        for (members, refs) in indices_by_class(input.labels, input.num_classes)
            .into_iter()
            .zip(&ref_by_class)
        {
            if members.len() < 2 {
                continue;
            }
            let rows = input.features.select(Axis(0), &members);
            let mu = mean(rows.view()).insert_axis(Axis(0));
            let x = &rows - &mu;
            let v = top_right_singular_vector(x.view())?;
            // The signed projections; the references of the class centred the same way.
            let mut scores: Vec<f64> = x.dot(&v).to_vec();
            // The published rules read the squared projection itself.
            let squared: Vec<f64> = scores.iter().map(|p| p * p).collect();
            let r = &input.reference.select(Axis(0), refs) - &mu;
            let mut ref_scores: Vec<f64> = r.dot(&v).to_vec();
            // Distance from the class's (clean-majority) median along the signature direction,
            // in robust standard deviations: ranks like the squared projection, and is
            // comparable across classes.
            robust_z_by_class(&mut scores, &mut ref_scores);
            for v in scores.iter_mut().chain(ref_scores.iter_mut()) {
                *v = v.abs();
            }
            let flagged: Vec<usize> = match self.rule {
                SsRule::Tb => top_k(&squared, budget.min(members.len() / 2)),
                SsRule::Bb => {
                    let cut = quantile(&squared, 0.85);
                    (0..squared.len()).filter(|&i| squared[i] > cut).collect()
                }
            };
            for (&i, &s) in members.iter().zip(&scores) {
                out.scores[i] = s;
            }
            for (&i, &s) in refs.iter().zip(&ref_scores) {
                out.reference_scores[i] = s;
            }
            for local in flagged {
                out.flags[members[local]] = true;
            }
        }
        out.note("rule", self.rule);
        out.note("expected_ratio", ratio);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::planted;

    #[test]
    fn finds_a_planted_cluster() {
        let case = planted(7, 2.5);
        let detection = SpectralSignatures::default()
            .detect(&case.input(Some(case.ratio())))
            .unwrap();
        let (tpr, fpr) = case.rates(&detection.flags);
        assert!(tpr >= 0.9, "tpr {tpr}");
        // The rule flags about 1.5·ε·N in each of the 4 classes whatever they hold, so the FPR
        // is set by the budget: (4 · 1.5 · 30 − 30) / 1200 = 0.125.
        assert!(fpr <= 0.13, "fpr {fpr}");
        // The score ranks the planted samples first within their class.
        assert!(case.auroc_in_target(&detection.scores) > 0.95);
    }

    #[test]
    fn bb_rule_flags_fifteen_percent_per_class() {
        let case = planted(8, 0.0);
        let detection = SpectralSignatures { rule: SsRule::Bb }
            .detect(&case.input(None))
            .unwrap();
        let share = detection.flagged() as f64 / case.labels.len() as f64;
        assert!((share - 0.15).abs() < 0.02, "share {share}");
    }
}
