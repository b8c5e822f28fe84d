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

use super::linalg::{median, quantile};

pub use crate::config::Decision;

/// A suspicious group (AC's small cluster, SCAn's suspicious side) is flagged only when the
/// class's clean references avoid it: at most this fraction of the group's share of the class
/// falls in it. A natural split of a clean class (two ways of writing a 7) holds references in
/// proportion; a poison cluster holds none.
pub const REFERENCE_AVOIDANCE: f64 = 1.0 / 3.0;

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

/// The training scores' own outlier bound, `median + k · 1.4826 · MAD` (Hampel's rule), or
/// `None` when `k` is 0 or there are too few finite scores. The calibrated threshold is at least
/// this: a detector whose statistic was fitted on the training set (SS's singular direction,
/// SCAn's split) spreads the clean training samples wider than the held-out references, so the
/// references' quantile alone flags 3–6 % of clean training images (measured in the sweep).
/// Poisons are a minority, so the median and MAD describe the clean majority.
pub fn outlier_floor(scores: &[f64], k: f64) -> Option<f64> {
    if k <= 0.0 {
        return None;
    }
    let finite: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() < MIN_REFERENCES {
        return None;
    }
    let centre = median(&finite);
    let deviations: Vec<f64> = finite.iter().map(|v| (v - centre).abs()).collect();
    let floor = centre + k * 1.4826 * median(&deviations);
    floor.is_finite().then_some(floor)
}

/// Flags of the scores above `threshold` (a NaN score is never flagged).
pub fn flags_above(scores: &[f64], threshold: f64) -> Vec<bool> {
    scores.iter().map(|&s| s > threshold).collect()
}

/// Puts one class's training scores and reference scores on a common scale: the robust z-score
/// `(s − median) / (1.4826 · MAD)` with the median and MAD of the class's *training* scores, so
/// per-class statistics (a class's own singular direction, its own whitening, its own clusters)
/// become comparable across classes before the references are pooled. Poisons are a minority of
/// a class, so the median and MAD describe its clean samples even when a third of it is poisoned
/// (a scale such as the median alone is not: a heavy clean tail in one class then hides the
/// poisons of another).
pub fn robust_z_by_class(train: &mut [f64], reference: &mut [f64]) {
    let centre = median(train);
    let deviations: Vec<f64> = train.iter().map(|v| (v - centre).abs()).collect();
    let spread = 1.4826 * median(&deviations);
    let (centre, spread) = if centre.is_finite() && spread.is_finite() && spread > 1e-300 {
        (centre, spread)
    } else {
        (0.0, 1.0)
    };
    for v in train.iter_mut().chain(reference.iter_mut()) {
        *v = (*v - centre) / spread;
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
    fn outlier_floor_is_hampels_bound_on_the_training_scores() {
        // 0..=20 and one far poison: median 10.5, MAD 5.5 (the poison barely moves them).
        let mut scores: Vec<f64> = (0..=20).map(f64::from).collect();
        scores.push(1000.0);
        let floor = outlier_floor(&scores, 3.0).unwrap();
        assert!(
            (floor - (10.5 + 3.0 * 1.4826 * 5.5)).abs() < 1e-9,
            "{floor}"
        );
        assert_eq!(outlier_floor(&scores, 0.0), None);
        assert_eq!(outlier_floor(&scores[..5], 3.0), None);
    }

    #[test]
    fn class_scaling_is_the_robust_z_of_the_training_scores() {
        // median 2, |deviations| 1, 0, 1, 98, 0 → MAD 1.
        let mut train = vec![1.0, 2.0, 3.0, 100.0, 2.0];
        let mut refs = vec![4.0];
        robust_z_by_class(&mut train, &mut refs);
        let s = 1.4826;
        let want = [-1.0 / s, 0.0, 1.0 / s, 98.0 / s, 0.0];
        for (a, b) in train.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{train:?}");
        }
        assert!((refs[0] - 2.0 / s).abs() < 1e-12);
    }
}
