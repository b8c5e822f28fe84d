//! Detection metrics against the ground-truth poison mask (this module is the only reader of
//! that mask), and the "backdoor effect" measures.

use serde::{Deserialize, Serialize};

/// Counts of a binary decision against the truth over the whole training set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

impl Confusion {
    /// Counts `flags` against `poisoned` (equal lengths; extra entries are ignored).
    pub fn count(flags: &[bool], poisoned: &[bool]) -> Self {
        let mut c = Self::default();
        for (&flag, &truth) in flags.iter().zip(poisoned) {
            match (flag, truth) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// Flagged poisoned / all poisoned; `None` when nothing is poisoned.
    pub fn tpr(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Flagged clean / all clean; `None` when everything is poisoned.
    pub fn fpr(&self) -> Option<f64> {
        ratio(self.fp, self.fp + self.tn)
    }

    /// Flagged poisoned / all flagged; 0 when nothing is flagged but something is poisoned
    /// (no correct flag was made), `None` when both are empty.
    pub fn precision(&self) -> Option<f64> {
        if self.tp + self.fp == 0 {
            return (self.tp + self.fn_ > 0).then_some(0.0);
        }
        ratio(self.tp, self.tp + self.fp)
    }

    /// Harmonic mean of precision and TPR; 0 when either is 0, `None` when nothing is poisoned.
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.tpr()?);
        Some(if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        })
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Area under the ROC curve of `scores` (higher = more suspicious) against `poisoned`: the
/// probability that a random poisoned sample outscores a random clean one, ties counting half.
/// `None` when either group is empty or a score is NaN.
pub fn auroc(scores: &[f64], poisoned: &[bool]) -> Option<f64> {
    if scores.len() != poisoned.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let positives = poisoned.iter().filter(|&&p| p).count();
    let negatives = poisoned.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Mann–Whitney U with mid-ranks for ties.
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid_rank * order[i..=j].iter().filter(|&&k| poisoned[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// The largest TPR any one threshold on `scores` reaches while flagging at most `max_fpr` of the
/// clean samples (flagged: score strictly above the threshold): what a decision that follows this
/// ranking could at best find. `None` without both groups or with a NaN score.
pub fn best_tpr_at_fpr(scores: &[f64], poisoned: &[bool], max_fpr: f64) -> Option<f64> {
    if scores.len() != poisoned.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut clean: Vec<f64> = scores
        .iter()
        .zip(poisoned)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    let positives = poisoned.len() - clean.len();
    if positives == 0 || clean.is_empty() {
        return None;
    }
    clean.sort_by(|a, b| b.total_cmp(a));
    // At most `allowed` clean samples above the threshold: the threshold is the clean score at
    // that position (ties there are not flagged).
    let allowed = (max_fpr * clean.len() as f64).floor() as usize;
    let threshold = clean.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let found = scores
        .iter()
        .zip(poisoned)
        .filter(|(s, p)| **p && **s > threshold)
        .count();
    Some(found as f64 / positives as f64)
}

/// Mean silhouette coefficient of a two-group labelling (`group[i]` true/false) under Euclidean
/// distance; `None` when a group is empty.
pub fn silhouette(rows: &[Vec<f64>], group: &[bool]) -> Option<f64> {
    let n = rows.len();
    let size_true = group.iter().filter(|&&g| g).count();
    if size_true == 0 || size_true == n || n != group.len() {
        return None;
    }
    let distance = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };
    let mut total = 0.0;
    for i in 0..n {
        let (mut same, mut other) = (0.0, 0.0);
        for j in 0..n {
            if i == j {
                continue;
            }
            let d = distance(&rows[i], &rows[j]);
            if group[j] == group[i] {
                same += d;
            } else {
                other += d;
            }
        }
        let own = if group[i] { size_true } else { n - size_true };
        if own < 2 {
            continue; // silhouette of a singleton is 0
        }
        let a = same / (own - 1) as f64;
        let b = other / (n - own) as f64;
        let denominator = a.max(b);
        if denominator > 0.0 {
            total += (b - a) / denominator;
        }
    }
    Some(total / n as f64)
}

/// Mean of the `k` largest values (all of them when fewer).
pub fn top_k_mean(values: &[f64], k: usize) -> Option<f64> {
    if values.is_empty() || k == 0 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.truncate(k);
    Some(sorted.iter().sum::<f64>() / sorted.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_counted_confusion() {
        // 4 poisoned (2 caught), 6 clean (1 wrongly flagged).
        let truth = [
            true, true, true, true, false, false, false, false, false, false,
        ];
        let flags = [
            true, true, false, false, true, false, false, false, false, false,
        ];
        let c = Confusion::count(&flags, &truth);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 5, 2));
        assert_eq!(c.tpr(), Some(0.5));
        assert_eq!(c.fpr(), Some(1.0 / 6.0));
        assert_eq!(c.precision(), Some(2.0 / 3.0));
        let f1 = c.f1().unwrap();
        assert!((f1 - 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5)).abs() < 1e-12);
    }

    #[test]
    fn nothing_flagged_is_all_missed_not_all_caught() {
        // BackdoorBench writes FP = P, FN = 0 here; the truth is TP = FP = 0, FN = P.
        let truth = [true, true, false, false, false];
        let c = Confusion::count(&[false; 5], &truth);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (0, 0, 3, 2));
        assert_eq!(c.tpr(), Some(0.0));
        assert_eq!(c.fpr(), Some(0.0));
        assert_eq!(c.precision(), Some(0.0));
        assert_eq!(c.f1(), Some(0.0));
    }

    #[test]
    fn nothing_poisoned_has_no_tpr() {
        let c = Confusion::count(&[true, false, false], &[false; 3]);
        assert_eq!(c.tpr(), None);
        assert_eq!(c.fpr(), Some(1.0 / 3.0));
        assert_eq!(c.precision(), Some(0.0));
        assert_eq!(c.f1(), None);
        let none = Confusion::count(&[false; 3], &[false; 3]);
        assert_eq!(none.precision(), None);
    }

    #[test]
    fn auroc_hand_cases() {
        assert_eq!(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]),
            Some(0.0)
        );
        // Pairs: (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.1) = 1, (0.3 vs 0.5) = 0, (0.3 vs 0.1) = 1.
        let a = auroc(&[0.5, 0.3, 0.5, 0.1], &[true, true, false, false]).unwrap();
        assert!((a - 2.5 / 4.0).abs() < 1e-12);
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auroc(&[f64::NAN, 0.2], &[true, false]), None);
    }

    #[test]
    fn silhouette_of_separated_groups() {
        let rows = vec![vec![0.0], vec![1.0], vec![10.0], vec![11.0]];
        let s = silhouette(&rows, &[false, false, true, true]).unwrap();
        // Each point: a = 1, b = 10 or 9 / 11 (mean over the other group) → close to 0.9.
        let expected = [
            (10.5 - 1.0) / 10.5,
            (9.5 - 1.0) / 9.5,
            (9.5 - 1.0) / 9.5,
            (10.5 - 1.0) / 10.5,
        ];
        assert!((s - expected.iter().sum::<f64>() / 4.0).abs() < 1e-12);
        assert_eq!(silhouette(&rows, &[false; 4]), None);
        assert_eq!(top_k_mean(&[1.0, 5.0, 3.0], 2), Some(4.0));
    }

    #[test]
    fn best_tpr_at_fpr_is_the_best_threshold_within_the_allowance() {
        // 100 clean at 0..100, poisons at 98.5 and 200: at FPR ≤ 1 % one clean (99) may be
        // flagged, the threshold is 98 and both poisons pass; at 0 % only the 200.
        let mut scores: Vec<f64> = (0..100).map(f64::from).collect();
        let mut poisoned = vec![false; 100];
        scores.extend([98.5, 200.0]);
        poisoned.extend([true, true]);
        assert_eq!(best_tpr_at_fpr(&scores, &poisoned, 0.01), Some(1.0));
        assert_eq!(best_tpr_at_fpr(&scores, &poisoned, 0.0), Some(0.5));
        assert_eq!(
            best_tpr_at_fpr(&scores[..100], &poisoned[..100], 0.01),
            None
        );
    }
}
