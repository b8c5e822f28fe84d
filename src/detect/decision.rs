//! From a detector's scores to flags.
//!
//! Every detector keeps its published rule (`detect.decision = "paper"`): SS and SPECTRE flag a
//! budget of `1.5·ε·N` in *every* class, AC a whole k-means cluster, Beatrix the 95th percentile
//! of held-out references. Those rules flag a fixed share of clean images whatever the data hold
//! (measured: 5–17 % of clean images even when the ranking is perfect). The default decision
//! (`"calibrated"`) instead reads the threshold off the clean references: each detector scores
//! the references exactly as it scores the training samples (same class statistics, same scale),
//! and a training sample is flagged when its score exceeds the `detect.reference_quantile`
//! (0.99) quantile of the references' scores. Clean training samples then pass the threshold
//! about as often as clean references do (≈ 1 %, less because the model fits its training
//! samples better than unseen ones), in every class, whether one class or all of them are
//! poisoned, and no ε is needed.

use serde::{Deserialize, Serialize};

use super::linalg::{median, quantile};

/// Which rule turns scores into flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Threshold at a high quantile of the clean references' scores.
    #[default]
    Calibrated,
    /// Each detector's published rule (the seed paper's setting).
    Paper,
}

impl Decision {
    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Calibrated => "calibrated",
            Self::Paper => "paper",
        }
    }
}

/// Fewest finite reference scores a calibrated threshold is read from.
pub const MIN_REFERENCES: usize = 10;

/// The calibrated threshold: the `q`-quantile of the finite reference scores, or `None` when
/// there are too few of them.
pub fn reference_threshold(reference_scores: &[f64], q: f64) -> Option<f64> {
    let finite: Vec<f64> = reference_scores
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.len() < MIN_REFERENCES {
        return None;
    }
    let t = quantile(&finite, q);
    t.is_finite().then_some(t)
}

/// Flags of the scores above `threshold` (a NaN score is never flagged).
pub fn flags_above(scores: &[f64], threshold: f64) -> Vec<bool> {
    scores.iter().map(|&s| s > threshold).collect()
}

/// Divides one class's training scores and reference scores by the median training score of the
/// class, so per-class statistics (a class's own singular direction, its own whitening) become
/// comparable across classes before the references are pooled. Poisons are a minority of a
/// class, so the median is a clean sample's score.
pub fn scale_by_class_median(train: &mut [f64], reference: &mut [f64]) {
    let m = median(train);
    let scale = if m.is_finite() && m > 1e-300 { m } else { 1.0 };
    for v in train.iter_mut().chain(reference.iter_mut()) {
        *v /= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_reference_quantile() {
        let refs: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(reference_threshold(&refs, 0.99), Some(99.0));
        assert_eq!(reference_threshold(&refs[..5], 0.99), None);
        let flags = flags_above(&[98.0, 99.0, 99.5, f64::NAN], 99.0);
        assert_eq!(flags, vec![false, false, true, false]);
    }

    #[test]
    fn class_scaling_uses_the_training_median() {
        let mut train = vec![1.0, 2.0, 3.0, 100.0, 2.0];
        let mut refs = vec![4.0];
        scale_by_class_median(&mut train, &mut refs);
        assert_eq!(train, vec![0.5, 1.0, 1.5, 50.0, 1.0]);
        assert_eq!(refs, vec![2.0]);
    }
}
