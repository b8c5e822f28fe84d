//! The scatter's 2-d layouts of the detectors' features: the principal plane (at once) and t-SNE
//! (on request, on a worker).

use std::sync::Arc;

use crate::detect::linalg;

use super::worker::Pending;

/// The first two principal components of `features` (zeros when they cannot be computed).
pub fn project(features: &ndarray::Array2<f64>) -> Vec<[f64; 2]> {
    linalg::principal_plane(features.view())
}

/// Perplexity of the t-SNE layout.
const TSNE_PERPLEXITY: f64 = 30.0;
/// Barnes-Hut approximation threshold θ.
const TSNE_THETA: f64 = 0.5;
/// Gradient iterations.
const TSNE_ITERATIONS: usize = 500;

/// A 2-d t-SNE layout of `features` (Barnes-Hut, `linfa-tsne`).
pub fn tsne(features: &ndarray::Array2<f64>) -> Result<Vec<[f64; 2]>, String> {
    use linfa::traits::Transformer;
    let data = features.as_standard_layout().into_owned();
    let embedding = linfa_tsne::TSneParams::embedding_size(2)
        .perplexity(TSNE_PERPLEXITY)
        .approx_threshold(TSNE_THETA)
        .max_iter(TSNE_ITERATIONS)
        .transform(data)
        .map_err(|e| format!("t-SNE: {e}"))?;
    Ok(embedding.rows().into_iter().map(|r| [r[0], r[1]]).collect())
}

/// A t-SNE layout being computed on a worker thread.
pub struct Layout {
    pub arm: usize,
    pending: Pending<Vec<[f64; 2]>>,
}

impl Layout {
    /// Starts t-SNE of `features` on a thread named `poisonscope-tsne`.
    pub fn spawn(
        arm: usize,
        features: Arc<ndarray::Array2<f64>>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let pending = Pending::spawn("poisonscope-tsne", wake, move || tsne(&features))?;
        Ok(Self { arm, pending })
    }

    /// The layout (or why there is none), once computed.
    pub fn poll(&self) -> Option<Result<Vec<[f64; 2]>, String>> {
        self.pending.poll(|| "t-SNE".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsne_separates_two_distant_clusters() {
        let n = 120;
        let x = ndarray::Array2::from_shape_fn((n, 5), |(i, j)| {
            let offset = if i < n / 2 { 0.0 } else { 50.0 };
            offset + ((i * 7 + j * 13) % 11) as f64 * 0.1
        });
        let layout = tsne(&x).unwrap();
        let centre = |range: std::ops::Range<usize>| {
            let k = range.len() as f64;
            let (sx, sy) = range.fold((0.0, 0.0), |(a, b), i| (a + layout[i][0], b + layout[i][1]));
            [sx / k, sy / k]
        };
        let (a, b) = (centre(0..n / 2), centre(n / 2..n));
        let between = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        let spread = layout[..n / 2]
            .iter()
            .map(|p| ((p[0] - a[0]).powi(2) + (p[1] - a[1]).powi(2)).sqrt())
            .fold(0.0, f64::max);
        assert!(between > spread, "between {between}, spread {spread}");
    }

    #[test]
    fn projection_keeps_the_direction_of_largest_variance() {
        let x = ndarray::array![[0.0, 0.0], [10.0, 0.1], [20.0, -0.1], [30.0, 0.0]];
        let p = project(&x);
        let spread = |j: usize| {
            let v: Vec<f64> = p.iter().map(|r| r[j]).collect();
            v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
        };
        assert!((spread(0) - 30.0).abs() < 0.01, "{p:?}");
        assert!(spread(1) < 1.0);
    }
}
