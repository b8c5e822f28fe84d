//! "Find more like these": once the analyst has confirmed a few poisons (and cleared a few clean
//! images) by eye, the rest of the training set is re-ranked with what the marks say. It reads
//! only the features the detectors saw, the given labels and the analyst's marks — never the
//! ground truth.
//!
//! [`refine`] (what the window does): the rank average of the ranking the analyst was using and
//! of the marks' [`direction`], with the samples whose given label none of the marked poisons
//! carries moved after the others (a dirty-label attack relabels its poisons to its target; a
//! clean-label one poisons the target class). `docs/rerank.md` measures it, and the two
//! alternatives tried, against the detectors' own rankings: on learned backdoors the marks'
//! direction alone is best, on unlearned ones (whose poisons the features do not group) the
//! detector's ranking carries more, and the average is never far from the better of the two.

use ndarray::{Array2, ArrayView1};

/// The mean of `rows` of `features` (`None` for no rows).
fn mean_of(features: &Array2<f64>, rows: impl Iterator<Item = usize>) -> Option<Vec<f64>> {
    let mut sum = vec![0.0; features.ncols()];
    let mut n = 0usize;
    for i in rows {
        for (s, v) in sum.iter_mut().zip(features.row(i).iter()) {
            *s += v;
        }
        n += 1;
    }
    (n > 0).then(|| sum.into_iter().map(|s| s / n as f64).collect())
}

/// How far each sample lies along the direction from the background (every sample not marked
/// poisoned, the marked clean ones weighted ten times: the analyst vouched for them) to the mean
/// of the marked poisons: what the marked poisons share, averaged over whatever else differs
/// between them (their source classes). All zeros without a poisoned mark.
pub fn direction(features: &Array2<f64>, poisoned: &[usize], clean: &[usize]) -> Vec<f64> {
    let n = features.nrows();
    let poisoned: Vec<usize> = poisoned.iter().copied().filter(|&i| i < n).collect();
    let mut is_poisoned = vec![false; n];
    for &i in &poisoned {
        is_poisoned[i] = true;
    }
    let Some(poison_mean) = mean_of(features, poisoned.iter().copied()) else {
        return vec![0.0; n];
    };
    let vouched = clean
        .iter()
        .copied()
        .filter(|&i| i < n && !is_poisoned[i])
        .flat_map(|i| std::iter::repeat_n(i, 10));
    let background = (0..n).filter(|&i| !is_poisoned[i]).chain(vouched);
    let Some(background_mean) = mean_of(features, background) else {
        return vec![0.0; n];
    };
    let w: Vec<f64> = poison_mean
        .iter()
        .zip(&background_mean)
        .map(|(p, b)| p - b)
        .collect();
    (0..n)
        .map(|i| {
            features
                .row(i)
                .iter()
                .zip(&w)
                .zip(&background_mean)
                .map(|((x, w), b)| (x - b) * w)
                .sum()
        })
        .collect()
}

/// The distance to the nearest marked clean image minus the distance to the nearest marked
/// poison (without clean marks: minus the distance to the nearest poison). The nearest-neighbour
/// alternative, kept for `bench rerank`; all zeros without a poisoned mark.
pub fn nearest(features: &Array2<f64>, poisoned: &[usize], clean: &[usize]) -> Vec<f64> {
    fn closest(features: &Array2<f64>, marked: &[usize]) -> Vec<f64> {
        use rayon::prelude::*;
        let rows: Vec<ArrayView1<f64>> = marked
            .iter()
            .filter(|&&m| m < features.nrows())
            .map(|&m| features.row(m))
            .collect();
        (0..features.nrows())
            .into_par_iter()
            .map(|i| {
                let x = features.row(i);
                rows.iter()
                    .map(|r| {
                        x.iter()
                            .zip(r.iter())
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }
    if poisoned.is_empty() {
        return vec![0.0; features.nrows()];
    }
    let to_poison = closest(features, poisoned);
    if clean.is_empty() {
        return to_poison.into_iter().map(|d| -d).collect();
    }
    closest(features, clean)
        .into_iter()
        .zip(to_poison)
        .map(|(c, p)| c - p)
        .collect()
}

/// Each sample's rank percentile under `scores` (1 for the highest, towards 0 for the lowest).
pub fn percentiles(scores: &[f64]) -> Vec<f64> {
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = 1.0 - rank as f64 / n.max(1) as f64;
    }
    out
}

/// Moves the samples whose given label no marked poison carries after all the others (their
/// scores lowered by `drop`, more than the range of `scores`).
pub fn within_marked_labels(
    scores: &[f64],
    given: &[u16],
    poisoned: &[usize],
    drop: f64,
) -> Vec<f64> {
    let labels: Vec<u16> = poisoned
        .iter()
        .filter_map(|&i| given.get(i).copied())
        .collect();
    scores
        .iter()
        .zip(given)
        .map(|(&s, l)| if labels.contains(l) { s } else { s - drop })
        .collect()
}

/// The window's re-ranking (see the module's doc): `active` is the ranking the analyst was
/// using (a detector's scores or the consensus), `given` the given labels. Higher is more
/// suspicious. Without a poisoned mark, `active`'s percentiles.
pub fn refine(
    active: &[f64],
    features: &Array2<f64>,
    given: &[u16],
    poisoned: &[usize],
    clean: &[usize],
) -> Vec<f64> {
    let from_active = percentiles(active);
    if poisoned.is_empty() {
        return from_active;
    }
    let from_marks = percentiles(&direction(features, poisoned, clean));
    let combined: Vec<f64> = from_active
        .iter()
        .zip(&from_marks)
        .map(|(a, m)| a + m)
        .collect();
    within_marked_labels(&combined, given, poisoned, 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(scores: &[f64]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        order
    }

    /// Two clusters: around (0, 0) the clean samples, around (10, 10) the poisons.
    fn clusters() -> Array2<f64> {
        let points = [
            [0.0, 0.0],
            [0.5, 0.2],
            [10.0, 10.0],
            [9.5, 10.2],
            [0.1, 0.4],
            [10.3, 9.8],
        ];
        Array2::from_shape_vec((6, 2), points.iter().flatten().copied().collect()).unwrap()
    }

    #[test]
    fn samples_like_the_marked_poisons_rank_first() {
        let features = clusters();
        for clean in [vec![], vec![0]] {
            for scores in [
                direction(&features, &[2], &clean),
                nearest(&features, &[2], &clean),
            ] {
                let mut top = order(&scores)[..3].to_vec();
                top.sort_unstable();
                assert_eq!(top, [2, 3, 5], "{clean:?}: {scores:?}");
            }
        }
        assert!(direction(&features, &[], &[0]).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn refining_follows_the_marks_within_their_labels() {
        let features = clusters();
        // The active ranking puts sample 0 first; the marks say 2, 3 and 5 are alike; sample 5
        // carries another given label than the marked poison.
        let active = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0];
        let given = [1, 1, 0, 0, 1, 1];
        let refined = refine(&active, &features, &given, &[2], &[]);
        let o = order(&refined);
        let mut top = o[..2].to_vec();
        top.sort_unstable();
        assert_eq!(top, [2, 3], "{refined:?}");
        assert!(o.iter().position(|&i| i == 5) > o.iter().position(|&i| i == 3));
        // No mark: the active ranking.
        assert_eq!(
            order(&refine(&active, &features, &given, &[], &[])),
            vec![0, 1, 2, 3, 4, 5]
        );
    }
}
