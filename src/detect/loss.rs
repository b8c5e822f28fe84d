//! Loss / label disagreement: the cross-entropy of each training sample under its *given* label.
//! A dirty-label poison carries the attacker's label on an image of another class; a model that
//! did not learn the backdoor (SAM often refuses to fit a few relabelled samples) predicts the
//! image's true class, so the given label costs a high loss and the prediction disagrees with it.
//! Needs no new training: one read of the logits the feature pass already computed.
//!
//! Score: `logsumexp(logits) − logit[given]`. Published-style rule (`decision = "paper"`): flag
//! every sample whose prediction disagrees with its given label. Calibrated rule: the references'
//! losses under their (clean) labels set the threshold, and besides it the `budget` (1 %) of the
//! training set with the highest losses is flagged. The references are held-out images, which the
//! model fits worse than its training images: clean training samples passed the references'
//! threshold ten times less often than the 1 % it stands for (measured: 0.03–0.3 %), and it found
//! 25–35 % of unlearned Blended poisons whose ranking (AUROC 0.98) allowed 70–80 % (issue 28).
//! The budget follows the ranking and caps this detector's clean flags at 1 % of the set,
//! whatever the fit. When the backdoor *was* learned the
//! poisons fit their label and this detector finds nothing: it complements the feature-space
//! detectors, it does not replace them.

use ndarray::ArrayView2;

use super::{DetectError, DetectInput, Detection, Detector};
use crate::config::DetectorKind;

/// The loss / label-disagreement detector.
#[derive(Clone, Debug, Default)]
pub struct LossDetector {
    /// Share of the training set, the highest losses, that the calibrated decision flags besides
    /// the references' threshold (`detect.loss_budget`; 0: the threshold alone).
    pub budget: f64,
}

/// Flags of the `share` of `scores` that rank highest (at most `⌊share·n⌋`; ties at the cut are
/// not flagged).
pub fn top_share(scores: &[f64], share: f64) -> Vec<bool> {
    let k = (share * scores.len() as f64).floor() as usize;
    if k == 0 {
        return vec![false; scores.len()];
    }
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    match sorted.get(k) {
        Some(&cut) => scores.iter().map(|&s| s > cut).collect(),
        None => scores.iter().map(|s| s.is_finite()).collect(),
    }
}

/// Cross-entropy of every row of `logits` under `labels`.
pub fn cross_entropy(logits: ArrayView2<f32>, labels: &[u16]) -> Vec<f64> {
    logits
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &label)| {
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            let own = row
                .get(usize::from(label))
                .map_or(f64::NAN, |&v| f64::from(v));
            max + sum.ln() - own
        })
        .collect()
}

impl Detector for LossDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Loss
    }

    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError> {
        input.validate()?;
        let Some((train, reference)) = input.logits else {
            return Err(DetectError::Invalid(
                "the loss detector needs the model's logits".into(),
            ));
        };
        if train.nrows() != input.len() || reference.nrows() != input.reference_labels.len() {
            return Err(DetectError::Invalid(format!(
                "{} logit rows for {} samples",
                train.nrows(),
                input.len()
            )));
        }
        let mut out = Detection::new(input.len());
        out.scores = cross_entropy(train, input.labels);
        out.reference_scores = cross_entropy(reference, input.reference_labels);
        out.flags = input
            .predicted
            .iter()
            .zip(input.labels)
            .map(|(p, l)| p != l)
            .collect();
        out.note("disagreements", out.flagged());
        if self.budget > 0.0 {
            out.also_flags = Some(top_share(&out.scores, self.budget));
            out.note("budget", self.budget);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::decision::{flags_above, reference_threshold};
    use ndarray::Array2;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_k() {
        let logits = Array2::<f32>::zeros((2, 4));
        let ce = cross_entropy(logits.view(), &[0, 3]);
        assert!((ce[0] - 4f64.ln()).abs() < 1e-9 && (ce[1] - 4f64.ln()).abs() < 1e-9);
    }

    /// A model that predicts every image's true class confidently: 30 of 1000 training samples
    /// carry a planted wrong label (as unlearned dirty-label poisons do). The calibrated rule
    /// flags all of them; clean samples, drawn like the references, pass the references' 99th
    /// percentile about 1 % of the time.
    #[test]
    fn flags_planted_mislabelled_samples() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let k = 10;
        let logits_for = |true_class: u16, rng: &mut ChaCha8Rng| -> Vec<f32> {
            (0..k)
                .map(|c| {
                    let noise = rng.random::<f32>();
                    if c == usize::from(true_class) {
                        6.0 + noise
                    } else {
                        noise
                    }
                })
                .collect()
        };
        let n = 1000;
        let truth: Vec<u16> = (0..n).map(|i| (i % k) as u16).collect();
        let planted: Vec<bool> = (0..n).map(|i| i % 33 == 5).collect();
        let given: Vec<u16> = truth
            .iter()
            .zip(&planted)
            .map(|(&t, &p)| if p { (t + 1) % k as u16 } else { t })
            .collect();
        let train: Vec<f32> = truth
            .iter()
            .flat_map(|&t| logits_for(t, &mut rng))
            .collect();
        let ref_labels: Vec<u16> = (0..250).map(|i| (i % k) as u16).collect();
        let refs: Vec<f32> = ref_labels
            .iter()
            .flat_map(|&t| logits_for(t, &mut rng))
            .collect();
        let train = Array2::from_shape_vec((n, k), train).unwrap();
        let refs = Array2::from_shape_vec((250, k), refs).unwrap();
        let features = Array2::<f64>::zeros((n, 1));
        let ref_features = Array2::<f64>::zeros((250, 1));
        let input = DetectInput {
            features: features.view(),
            labels: &given,
            num_classes: k,
            reference: ref_features.view(),
            reference_labels: &ref_labels,
            predicted: &truth,
            conv: None,
            logits: Some((train.view(), refs.view())),
            probes: None,
            expected_ratio: None,
            seed: 0,
        };
        let detection = LossDetector::default().detect(&input).unwrap();
        // The published-style rule: disagreement with the given label.
        assert_eq!(detection.flags, planted);
        let threshold = reference_threshold(&detection.reference_scores, 0.99).unwrap();
        let flags = flags_above(&detection.scores, threshold);
        let c = crate::metrics::Confusion::count(&flags, &planted);
        assert_eq!(c.tpr(), Some(1.0), "{c:?}");
        assert!(c.fpr().unwrap() <= 0.03, "{c:?}");
    }

    #[test]
    fn the_budget_flags_the_top_share() {
        let scores: Vec<f64> = (0..200).map(f64::from).collect();
        let flags = top_share(&scores, 0.01);
        assert_eq!(flags.iter().filter(|&&f| f).count(), 2);
        assert!(flags[199] && flags[198] && !flags[197]);
        assert!(top_share(&scores[..50], 0.01).iter().all(|f| !f));
        // Ties at the cut are left out: never more than the budget.
        let tied = vec![1.0; 300];
        assert!(top_share(&tied, 0.01).iter().all(|f| !f));
    }
}
