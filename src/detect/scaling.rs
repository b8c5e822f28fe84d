//! The paper's feature scaling: project onto the top principal components of the training
//! features, then whiten with the (shrunk) covariance of the clean reference set in that space,
//! `g_s = Σ^-1/2 · P · (g − μ)`.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};

use super::DetectError;
use super::linalg::{covariance, mean, sym_apply, sym_eig};

pub use crate::config::ReferenceCovariance;

/// How the scaling is fitted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingSettings {
    /// PCA rank; 0 picks the smallest rank that explains `variance` of the training features,
    /// at most `max_rank`.
    pub rank: usize,
    pub variance: f64,
    pub max_rank: usize,
    /// Shrinkage λ of the reference covariance toward `tr(Σ)/r · I`.
    pub shrinkage: f64,
    pub covariance: ReferenceCovariance,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        Self::from_config(&crate::config::DetectConfig::default())
    }
}

impl ScalingSettings {
    /// The settings the `[detect]` keys stand for.
    pub fn from_config(config: &crate::config::DetectConfig) -> Self {
        Self {
            rank: config.pca_rank,
            variance: config.pca_variance,
            max_rank: config.pca_max_rank,
            shrinkage: config.shrinkage,
            covariance: config.whitening,
        }
    }
}

/// What was chosen, for the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingRecord {
    pub rank: usize,
    pub input_dim: usize,
    pub explained_variance: f64,
    pub shrinkage: f64,
    pub reference_samples: usize,
    #[serde(default)]
    pub covariance: ReferenceCovariance,
}

/// A fitted scaling.
#[derive(Clone, Debug)]
pub struct Scaler {
    mean: Array1<f64>,
    /// `d × r` projection followed by the `r × r` whitening, as one matrix.
    transform: Array2<f64>,
    pub record: ScalingRecord,
}

impl Scaler {
    /// Fits PCA on `train` and the whitening on `reference` (whose classes are
    /// `reference_labels`, used by [`ReferenceCovariance::WithinClass`]).
    pub fn fit(
        train: ArrayView2<f64>,
        reference: ArrayView2<f64>,
        reference_labels: &[u16],
        settings: &ScalingSettings,
    ) -> Result<Self, DetectError> {
        let d = train.ncols();
        if train.nrows() < 2 || reference.nrows() < 2 || reference.ncols() != d {
            return Err(DetectError::Invalid(format!(
                "feature scaling needs ≥ 2 training and reference rows of the same width \
                 (got {}×{} and {}×{})",
                train.nrows(),
                d,
                reference.nrows(),
                reference.ncols()
            )));
        }
        let mu = mean(train);
        let (values, vectors) = sym_eig(&covariance(train))?;
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum::<f64>().max(1e-300);
        let rank = if settings.rank > 0 {
            settings.rank.min(d)
        } else {
            let mut acc = 0.0;
            let mut r = d;
            for (i, v) in values.iter().enumerate() {
                acc += v.max(0.0);
                if acc / total >= settings.variance {
                    r = i + 1;
                    break;
                }
            }
            r.min(settings.max_rank.max(1))
        };
        let explained = values.iter().take(rank).map(|v| v.max(0.0)).sum::<f64>() / total;
        let projection = vectors.slice(s![.., ..rank]).to_owned();
        let mut projected_ref = (&reference - &mu.view().insert_axis(Axis(0))).dot(&projection);
        if settings.covariance == ReferenceCovariance::WithinClass {
            if reference_labels.len() != projected_ref.nrows() {
                return Err(DetectError::Invalid(format!(
                    "{} reference labels for {} reference rows",
                    reference_labels.len(),
                    projected_ref.nrows()
                )));
            }
            let classes = reference_labels
                .iter()
                .map(|&l| usize::from(l) + 1)
                .max()
                .unwrap_or(0);
            for rows in super::linalg::indices_by_class(reference_labels, classes) {
                if rows.is_empty() {
                    continue;
                }
                let class_mean = projected_ref.select(Axis(0), &rows).mean_axis(Axis(0));
                if let Some(class_mean) = class_mean {
                    for &i in &rows {
                        let mut row = projected_ref.row_mut(i);
                        row -= &class_mean;
                    }
                }
            }
        }
        let sigma = covariance(projected_ref.view());
        let lambda = settings.shrinkage.clamp(0.0, 1.0);
        let target = sigma.diag().sum() / rank as f64;
        let shrunk = &sigma * (1.0 - lambda) + Array2::<f64>::eye(rank) * (lambda * target);
        let inv_root = sym_apply(&shrunk, |v| 1.0 / v.max(1e-12).sqrt())?;
        Ok(Self {
            mean: mu,
            transform: projection.dot(&inv_root),
            record: ScalingRecord {
                rank,
                input_dim: d,
                explained_variance: explained,
                shrinkage: lambda,
                reference_samples: reference.nrows(),
                covariance: settings.covariance,
            },
        })
    }

    /// Scales rows of features.
    pub fn apply(&self, x: ArrayView2<f64>) -> Array2<f64> {
        (&x - &self.mean.view().insert_axis(Axis(0))).dot(&self.transform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::planted;

    #[test]
    fn whitens_the_reference_set() {
        let case = planted(3, 2.0);
        let settings = ScalingSettings {
            shrinkage: 0.0,
            ..ScalingSettings::default()
        };
        let scaler = Scaler::fit(
            case.features.view(),
            case.reference.view(),
            &case.reference_labels,
            &settings,
        )
        .unwrap();
        let scaled_ref = scaler.apply(case.reference.view());
        let cov = covariance(scaled_ref.view());
        let r = scaler.record.rank;
        assert!((2..=16).contains(&r), "rank {r}");
        for i in 0..r {
            for j in 0..r {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((cov[[i, j]] - expected).abs() < 1e-6, "{cov}");
            }
        }
        assert!(scaler.record.explained_variance >= 0.99);
    }

    #[test]
    fn fixed_rank_and_shrinkage_are_recorded() {
        let case = planted(4, 0.0);
        let settings = ScalingSettings {
            rank: 5,
            shrinkage: 0.3,
            ..ScalingSettings::default()
        };
        let scaler = Scaler::fit(
            case.features.view(),
            case.reference.view(),
            &case.reference_labels,
            &settings,
        )
        .unwrap();
        assert_eq!(scaler.record.rank, 5);
        assert_eq!(scaler.record.shrinkage, 0.3);
        assert_eq!(scaler.apply(case.features.view()).ncols(), 5);
    }

    #[test]
    fn within_class_whitening_keeps_the_distance_between_classes() {
        // Two classes 10 apart along x, unit spread inside each class.
        let n = 200;
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            let noise = (((i * 37 + j * 11) % 17) as f64 - 8.0) / 4.9;
            if j == 0 && i >= n / 2 {
                10.0 + noise
            } else {
                noise
            }
        });
        let labels: Vec<u16> = (0..n).map(|i| u16::from(i >= n / 2)).collect();
        let separation = |covariance| {
            let settings = ScalingSettings {
                rank: 2,
                shrinkage: 0.0,
                covariance,
                ..ScalingSettings::default()
            };
            let scaler = Scaler::fit(x.view(), x.view(), &labels, &settings).unwrap();
            let scaled = scaler.apply(x.view());
            let a = scaled.slice(s![..n / 2, ..]).mean_axis(Axis(0)).unwrap();
            let b = scaled.slice(s![n / 2.., ..]).mean_axis(Axis(0)).unwrap();
            (&a - &b).mapv(|v| v * v).sum().sqrt()
        };
        let pooled = separation(ReferenceCovariance::Pooled);
        let within = separation(ReferenceCovariance::WithinClass);
        assert!(pooled < 2.5, "pooled {pooled}");
        assert!(within > 3.0 * pooled, "within {within}, pooled {pooled}");
    }
}
