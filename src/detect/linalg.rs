//! Small linear-algebra helpers over `ndarray`, built on `linfa-linalg`'s symmetric
//! eigendecomposition: covariance, sorted eigenpairs, matrix functions of symmetric matrices.

use linfa_linalg::eigh::Eigh;
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::DetectError;

/// Column means of `x` (`n × d` → `d`); zeros for an empty matrix.
pub fn mean(x: ArrayView2<f64>) -> Array1<f64> {
    x.mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()))
}

/// `x` minus its column means.
pub fn centered(x: ArrayView2<f64>) -> Array2<f64> {
    let mu = mean(x);
    &x - &mu.view().insert_axis(Axis(0))
}

/// Sample covariance (divides by `n − 1`, or by 1 for a single row).
pub fn covariance(x: ArrayView2<f64>) -> Array2<f64> {
    let c = centered(x);
    let denominator = (x.nrows().max(2) - 1) as f64;
    c.t().dot(&c) / denominator
}

/// Each row of `x` on the first two principal axes of `x` (zeros when they cannot be
/// computed): the window's and the HTML report's feature scatter.
pub fn principal_plane(x: ArrayView2<f64>) -> Vec<[f64; 2]> {
    let n = x.nrows();
    let Ok((_, vectors)) = sym_eig(&covariance(x)) else {
        return vec![[0.0; 2]; n];
    };
    let k = vectors.ncols().min(2);
    let projected = centered(x).dot(&vectors.slice(ndarray::s![.., ..k]));
    (0..n)
        .map(|i| {
            let at = |j: usize| projected.get((i, j)).copied().unwrap_or(0.0);
            [at(0), at(1)]
        })
        .collect()
}

/// Eigenpairs of a symmetric matrix, eigenvalues descending; eigenvector `i` is column `i`.
pub fn sym_eig(a: &Array2<f64>) -> Result<(Array1<f64>, Array2<f64>), DetectError> {
    // Symmetrise first: accumulated round-off would otherwise leak into the eigenvectors.
    let sym = (a + &a.t()) * 0.5;
    let (values, vectors) = sym
        .eigh()
        .map_err(|e| DetectError::Numeric(format!("eigendecomposition failed: {e}")))?;
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    let sorted_values = order.iter().map(|&i| values[i]).collect();
    let sorted_vectors = vectors.select(Axis(1), &order);
    Ok((sorted_values, sorted_vectors))
}

/// `f(A)` for a symmetric `A`: `V diag(f(λ)) Vᵀ`.
pub fn sym_apply(a: &Array2<f64>, f: impl Fn(f64) -> f64) -> Result<Array2<f64>, DetectError> {
    let (values, vectors) = sym_eig(a)?;
    let scaled = &vectors * &values.mapv(f).insert_axis(Axis(0));
    Ok(scaled.dot(&vectors.t()))
}

/// Pseudo-inverse of a symmetric positive semi-definite matrix: eigenvalues below
/// `1e-10 · λ_max` count as zero.
pub fn sym_pinv(a: &Array2<f64>) -> Result<Array2<f64>, DetectError> {
    let (values, vectors) = sym_eig(a)?;
    let cutoff = values.iter().copied().fold(0.0_f64, f64::max) * 1e-10;
    let inverted = values.mapv(|v| if v > cutoff { 1.0 / v } else { 0.0 });
    let scaled = &vectors * &inverted.insert_axis(Axis(0));
    Ok(scaled.dot(&vectors.t()))
}

/// The top right singular vector of `x` (= the top eigenvector of `xᵀx`).
pub fn top_right_singular_vector(x: ArrayView2<f64>) -> Result<Array1<f64>, DetectError> {
    let gram = x.t().dot(&x);
    let (_, vectors) = sym_eig(&gram)?;
    Ok(vectors.column(0).to_owned())
}

/// Indices of the `k` largest values (ties broken by index), largest first.
pub fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]).then(i.cmp(&j)));
    order.truncate(k);
    order
}

/// The `q`-quantile (0..=1) of `values` by linear interpolation (numpy's default); NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    let fraction = position - low as f64;
    sorted[low] * (1.0 - fraction) + sorted[high] * fraction
}

/// Median (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// Indices of each class: `result[c]` lists the rows whose label is `c`.
pub fn indices_by_class(labels: &[u16], num_classes: usize) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &label) in labels.iter().enumerate() {
        if let Some(list) = by_class.get_mut(usize::from(label)) {
            list.push(i);
        }
    }
    by_class
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn eigenpairs_are_sorted_and_reconstruct() {
        let a = array![[2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.5]];
        let (values, vectors) = sym_eig(&a).unwrap();
        assert!(values[0] >= values[1] && values[1] >= values[2]);
        let rebuilt = (&vectors * &values.clone().insert_axis(Axis(0))).dot(&vectors.t());
        for (x, y) in rebuilt.iter().zip(a.iter()) {
            assert!((x - y).abs() < 1e-9, "{rebuilt} vs {a}");
        }
        // 2x2 block eigenvalues: (5 ± √5) / 2.
        assert!((values[0] - (5.0 + 5.0_f64.sqrt()) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn matrix_functions() {
        let a = array![[4.0, 0.0], [0.0, 9.0]];
        let root = sym_apply(&a, f64::sqrt).unwrap();
        assert!((root[[0, 0]] - 2.0).abs() < 1e-12 && (root[[1, 1]] - 3.0).abs() < 1e-12);
        let singular = array![[1.0, 1.0], [1.0, 1.0]];
        let p = sym_pinv(&singular).unwrap();
        // pinv of [[1,1],[1,1]] is [[.25,.25],[.25,.25]].
        for v in p.iter() {
            assert!((v - 0.25).abs() < 1e-12);
        }
    }

    #[test]
    fn quantiles_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!((quantile(&v, 0.85) - 3.55).abs() < 1e-12);
        assert!(median(&[]).is_nan());
        assert_eq!(top_k(&[0.5, 3.0, 1.0, 3.0], 3), vec![1, 3, 2]);
    }

    #[test]
    fn covariance_matches_hand_count() {
        let x = array![[1.0, 2.0], [3.0, 6.0]];
        let c = covariance(x.view());
        assert_eq!(c, array![[2.0, 4.0], [4.0, 8.0]]);
        let v = top_right_singular_vector(centered(x.view()).view()).unwrap();
        // Direction (1, 2)/√5 up to sign.
        assert!((v[0].abs() - 1.0 / 5.0_f64.sqrt()).abs() < 1e-9);
    }
}
