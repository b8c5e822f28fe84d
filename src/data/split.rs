//! Seeded, stratified splitting and sub-sampling of labelled samples.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Indices grouped by label, each group in ascending order.
fn indices_by_label(labels: &[u16]) -> Vec<Vec<usize>> {
    let classes = labels
        .iter()
        .map(|&l| usize::from(l) + 1)
        .max()
        .unwrap_or(0);
    let mut groups = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        if let Some(group) = groups.get_mut(usize::from(label)) {
            group.push(i);
        }
    }
    groups
}

/// Splits sample indices into (train, test): from every class, `round(test_fraction · n_c)`
/// samples chosen with a seeded shuffle go to test. Both lists are sorted ascending, so the
/// samples keep their source order.
pub fn stratified_split(labels: &[u16], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::with_capacity(labels.len());
    let mut test = Vec::new();
    for mut group in indices_by_label(labels) {
        group.shuffle(&mut rng);
        let n_test = (test_fraction * group.len() as f64).round() as usize;
        let (held, kept) = group.split_at(n_test.min(group.len()));
        test.extend_from_slice(held);
        train.extend_from_slice(kept);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Picks `n` sample indices with class shares as in the whole set (largest-remainder rounding,
/// seeded choice inside each class). Sorted ascending.
pub fn stratified_subset(labels: &[u16], n: usize, seed: u64) -> Vec<usize> {
    if n >= labels.len() {
        return (0..labels.len()).collect();
    }
    let groups = indices_by_label(labels);
    let total = labels.len() as f64;
    let exact: Vec<f64> = groups
        .iter()
        .map(|g| n as f64 * g.len() as f64 / total)
        .collect();
    let mut quota: Vec<usize> = exact.iter().map(|q| q.floor() as usize).collect();
    let mut missing = n - quota.iter().sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..groups.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for c in by_remainder {
        if missing == 0 {
            break;
        }
        if quota[c] < groups[c].len() {
            quota[c] += 1;
            missing -= 1;
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = Vec::with_capacity(n);
    for (mut group, q) in groups.into_iter().zip(quota) {
        group.shuffle(&mut rng);
        keep.extend(group.into_iter().take(q));
    }
    keep.sort_unstable();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<u16> {
        (0..1000).map(|i| (i % 7) as u16 % 3).collect()
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels = labels();
        let (train, test) = stratified_split(&labels, 0.2, 0);
        assert_eq!(train.len() + test.len(), labels.len());
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), labels.len());
        for class in 0..3u16 {
            let n = labels.iter().filter(|&&l| l == class).count();
            let n_test = test.iter().filter(|&&i| labels[i] == class).count();
            assert_eq!(n_test, (0.2 * n as f64).round() as usize);
        }
        assert_eq!(
            stratified_split(&labels, 0.2, 0),
            (train.clone(), test.clone())
        );
        assert_ne!(stratified_split(&labels, 0.2, 1).1, test);
    }

    #[test]
    fn subset_keeps_class_shares() {
        let labels = labels();
        let keep = stratified_subset(&labels, 100, 3);
        assert_eq!(keep.len(), 100);
        let counts: Vec<usize> = (0..3u16)
            .map(|c| keep.iter().filter(|&&i| labels[i] == c).count())
            .collect();
        let full: Vec<usize> = (0..3u16)
            .map(|c| labels.iter().filter(|&&l| l == c).count())
            .collect();
        for (k, f) in counts.iter().zip(&full) {
            let expected = 100.0 * *f as f64 / 1000.0;
            assert!((*k as f64 - expected).abs() < 1.0, "{counts:?} vs {full:?}");
        }
    }
}
