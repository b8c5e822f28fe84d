//! The consensus of several detectors: a ranking score (the mean rank percentile) and a decision
//! by *agreement*: a sample is flagged when at least `detect.consensus_agreement` detectors flag
//! it (the union of every detector's flags adds up their false positives). Also the fusion of two
//! arms of a comparison (SGD and SAM): their rank percentiles averaged, flagged where either flags.

/// Each sample's rank percentile under `scores`: 1 for the highest score, 1/n for the lowest
/// (ties in index order; NaN counts as the lowest).
pub fn rank_percentiles(scores: &[f64]) -> Vec<f64> {
    let n = scores.len();
    let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])).then(a.cmp(&b)));
    let mut out = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = (rank + 1) as f64 / n.max(1) as f64;
    }
    out
}

/// The mean over score vectors of each sample's rank percentile (vectors of another length are
/// skipped).
pub fn mean_rank(score_sets: &[&[f64]], n: usize) -> Vec<f64> {
    let mut total = vec![0.0; n];
    let mut counted = 0usize;
    for scores in score_sets.iter().filter(|s| s.len() == n) {
        for (t, r) in total.iter_mut().zip(rank_percentiles(scores)) {
            *t += r;
        }
        counted += 1;
    }
    if counted > 0 {
        for t in &mut total {
            *t /= counted as f64;
        }
    }
    total
}

/// Flags of the samples flagged by at least `agreement` of `flag_sets` (vectors of another length
/// are skipped; `agreement` is at least 1 and at most the number of sets).
pub fn agreement(flag_sets: &[&[bool]], n: usize, agreement: usize) -> Vec<bool> {
    let sets: Vec<&&[bool]> = flag_sets.iter().filter(|f| f.len() == n).collect();
    let need = agreement.clamp(1, sets.len().max(1));
    let mut votes = vec![0usize; n];
    for flags in &sets {
        for (v, &f) in votes.iter_mut().zip(flags.iter()) {
            *v += usize::from(f);
        }
    }
    if sets.is_empty() {
        return vec![false; n];
    }
    votes.into_iter().map(|v| v >= need).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rank_puts_the_sample_every_detector_ranks_first_highest() {
        let a = [0.1, 0.9, 0.5];
        let b = [3.0, 7.0, 1.0];
        let c = mean_rank(&[&a, &b], 3);
        assert!((c[1] - 1.0).abs() < 1e-12);
        assert!(c[1] > c[0] && c[1] > c[2]);
    }

    #[test]
    fn agreement_needs_enough_votes() {
        let a = [true, true, false, false];
        let b = [true, false, true, false];
        let c = [true, false, false, false];
        assert_eq!(
            agreement(&[&a, &b, &c], 4, 2),
            vec![true, false, false, false]
        );
        assert_eq!(
            agreement(&[&a, &b, &c], 4, 1),
            vec![true, true, true, false]
        );
        // More than the number of detectors: all must agree.
        assert_eq!(agreement(&[&a, &b], 4, 5), vec![true, false, false, false]);
        assert_eq!(agreement(&[], 2, 2), vec![false, false]);
    }
}
