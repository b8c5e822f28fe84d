//! From a detector's scores to flags.
//!
//! Every detector keeps its published rule (`detect.decision = "paper"`): SS and SPECTRE flag a
//! budget of `1.5·ε·N` in *every* class, AC a whole k-means cluster, Beatrix the 95th percentile
//! of held-out references. Those rules flag a fixed share of clean images whatever the data hold
//! (measured: 5–17 % of clean images even when the ranking is perfect). The default decision
//! (`"calibrated"`) instead reads the threshold off the clean references: each detector scores
//! the references exactly as it scores the training samples (same class statistics, same scale),
//! and a training sample is flagged when its score exceeds the `detect.reference_quantile`
//! (0.99) conformal quantile of *its class's* references' scores (`detect.reference_scope =
//! "class"`, the default; a class with fewer than 99 references, and `"pooled"`, use the quantile
//! of all references). Clean training samples then pass the threshold about as often as clean
//! references do (≈ 1 %), in every class, whether one class or all of them are poisoned, and no
//! ε is needed. The threshold is at least Hampel's outlier bound on the training scores
//! ([`outlier_floor`]); SCAn's is at least the pooled references' quantile instead
//! (`Floor::PooledReferences`: Hampel's bound sits above a target class whose index is no
//! outlier).

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

/// Fewest finite reference scores a class needs for a threshold of its own at quantile `q`: the
/// conformal quantile `⌈q·(n+1)⌉`-th smallest score exists only from `n = ⌈q/(1−q)⌉` (99 at
/// q = 0.99). A class with fewer uses the pooled threshold.
pub fn min_class_references(q: f64) -> usize {
    if q >= 1.0 {
        return usize::MAX;
    }
    ((q / (1.0 - q)) - 1e-9).ceil().max(MIN_REFERENCES as f64) as usize
}

/// The conformal `q`-quantile of a class's finite reference scores: the `⌈q·(n+1)⌉`-th smallest.
/// A clean sample exchangeable with the references exceeds it with probability at most `1 − q`
/// (marginally, over the draw of the references), whatever the score's distribution.
pub fn conformal_threshold(reference_scores: &[f64], q: f64) -> Option<f64> {
    let mut finite: Vec<f64> = reference_scores
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let n = finite.len();
    let rank = (q * (n as f64 + 1.0) - 1e-9).ceil() as usize;
    if n == 0 || rank == 0 || rank > n {
        return None;
    }
    finite.sort_by(f64::total_cmp);
    finite.get(rank - 1).copied()
}

/// The calibrated thresholds, one per class: where a class has at least
/// [`min_class_references`] finite reference scores, the conformal quantile of its own
/// references; elsewhere `pooled` (the quantile of all references). Also returns the classes
/// that fell back to `pooled`. A detector's score has a class-specific tail (SPECTRE's QUE score
/// of a class with a heavy tail, SCAn's class index that lifts a whole class): a pooled threshold
/// lets the heaviest class set it for all, flagging that class's clean samples and missing the
/// poisons of a lighter one.
pub fn class_thresholds(
    reference_scores: &[f64],
    reference_classes: &[u16],
    num_classes: usize,
    q: f64,
    pooled: f64,
) -> (Vec<f64>, Vec<usize>) {
    let mut by_class = vec![Vec::new(); num_classes];
    for (&s, &c) in reference_scores.iter().zip(reference_classes) {
        if let Some(list) = by_class.get_mut(usize::from(c))
            && s.is_finite()
        {
            list.push(s);
        }
    }
    let needed = min_class_references(q);
    let mut fell_back = Vec::new();
    let thresholds = by_class
        .iter()
        .enumerate()
        .map(|(c, scores)| {
            let own = (scores.len() >= needed)
                .then(|| conformal_threshold(scores, q))
                .flatten();
            own.unwrap_or_else(|| {
                fell_back.push(c);
                pooled
            })
        })
        .collect();
    (thresholds, fell_back)
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
    fn class_thresholds_are_conformal_quantiles_of_each_class() {
        assert_eq!(min_class_references(0.99), 99);
        assert_eq!(min_class_references(0.95), 19);
        // 1..=100: the ⌈0.99·101⌉ = 100th smallest is 100; of 1..=199 the 198th.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(conformal_threshold(&hundred, 0.99), Some(100.0));
        let more: Vec<f64> = (1..=199).map(f64::from).collect();
        assert_eq!(conformal_threshold(&more, 0.99), Some(198.0));
        assert_eq!(conformal_threshold(&hundred[..50], 0.99), None);
        // Class 0 has 100 references (scores 1..=100), class 1 has 100 (1000..), class 2 only 5:
        // each full class keeps its own threshold, the small one the pooled.
        let mut scores = hundred.clone();
        scores.extend((1000..1100).map(f64::from));
        scores.extend([5.0; 5]);
        let mut classes = vec![0u16; 100];
        classes.extend([1u16; 100]);
        classes.extend([2u16; 5]);
        let (t, fell_back) = class_thresholds(&scores, &classes, 3, 0.99, 7.0);
        assert_eq!(t, vec![100.0, 1099.0, 7.0]);
        assert_eq!(fell_back, vec![2]);
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
