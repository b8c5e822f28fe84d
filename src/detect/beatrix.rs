//! Beatrix (Ma et al. 2023): higher-order Gram matrices of a convolutional layer's activations.
//! For order p = 1..8 the Gram of the element-wise p-th power, `G = Fᵖ (Fᵖ)ᵀ` (channels ×
//! channels), is brought back to scale with `sign(G)·|G|^(1/p)`; its upper triangle is compared
//! entry-wise with the median ± 10·MAD of the clean references of the sample's predicted class.
//! The deviation is the mean relative excess over entries and orders; a class's threshold is the
//! 95th percentile of held-out clean deviations (5-fold over the references).

use ndarray::Array2;
use rayon::prelude::*;

use super::linalg::{indices_by_class, median, quantile};
use super::{ConvActivations, DetectError, DetectInput, Detection, Detector};
use crate::config::DetectorKind;

/// Beatrix.
#[derive(Clone, Debug)]
pub struct Beatrix {
    pub max_order: usize,
    /// Width of the clean band in MADs.
    pub mad_factor: f64,
    pub folds: usize,
    pub quantile: f64,
}

impl Default for Beatrix {
    fn default() -> Self {
        Self {
            max_order: 8,
            mad_factor: 10.0,
            folds: 5,
            quantile: 0.95,
        }
    }
}

/// The Gram features of one sample: for each order, the upper triangle (with diagonal).
fn gram_features(row: &[f32], channels: usize, positions: usize, max_order: usize) -> Vec<f64> {
    let entries = channels * (channels + 1) / 2;
    let mut out = Vec::with_capacity(entries * max_order);
    let base = Array2::from_shape_fn((channels, positions), |(c, p)| {
        f64::from(row.get(c * positions + p).copied().unwrap_or(0.0))
    });
    for p in 1..=max_order {
        let powered = base.mapv(|v| v.powi(p as i32));
        let gram = powered.dot(&powered.t());
        let root = 1.0 / p as f64;
        for a in 0..channels {
            for b in a..channels {
                let g = gram[[a, b]];
                out.push(g.signum() * g.abs().powf(root));
            }
        }
    }
    out
}

/// Per-entry clean band `[low, high]` fitted on a set of Gram feature vectors.
struct Band {
    low: Vec<f64>,
    high: Vec<f64>,
}

impl Band {
    fn fit(samples: &[&Vec<f64>], mad_factor: f64) -> Option<Self> {
        let first = samples.first()?;
        let mut low = Vec::with_capacity(first.len());
        let mut high = Vec::with_capacity(first.len());
        let mut column = vec![0.0; samples.len()];
        for e in 0..first.len() {
            for (dst, s) in column.iter_mut().zip(samples) {
                *dst = s[e];
            }
            let m = median(&column);
            let deviations: Vec<f64> = column.iter().map(|v| (v - m).abs()).collect();
            let mad = median(&deviations);
            low.push(m - mad_factor * mad);
            high.push(m + mad_factor * mad);
        }
        Some(Self { low, high })
    }

    /// Mean relative excess outside the band.
    fn deviation(&self, g: &[f64]) -> f64 {
        let total: f64 = g
            .iter()
            .zip(self.low.iter().zip(&self.high))
            .map(|(&v, (&lo, &hi))| {
                let below = (lo - v).max(0.0) / lo.abs().max(1e-12);
                let above = (v - hi).max(0.0) / hi.abs().max(1e-12);
                below + above
            })
            .sum();
        total / g.len().max(1) as f64
    }
}

fn check(acts: &ConvActivations, rows: usize, what: &str) -> Result<(), DetectError> {
    if acts.values.nrows() != rows || acts.values.ncols() != acts.channels * acts.positions {
        return Err(DetectError::Invalid(format!(
            "{what} conv activations are {}×{}, expected {rows}×{}",
            acts.values.nrows(),
            acts.values.ncols(),
            acts.channels * acts.positions
        )));
    }
    Ok(())
}

impl Detector for Beatrix {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Beatrix
    }

    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError> {
        input.validate()?;
        let Some((train, reference)) = input.conv else {
            return Err(DetectError::Invalid(
                "Beatrix needs conv-layer activations".into(),
            ));
        };
        check(train, input.len(), "training")?;
        check(reference, input.reference_labels.len(), "reference")?;
        let (channels, positions) = (train.channels, train.positions);
        let gram = |acts: &ConvActivations, i: usize| -> Vec<f64> {
            let row = acts.values.row(i);
            let slice = row.as_slice().map_or_else(|| row.to_vec(), <[f32]>::to_vec);
            gram_features(&slice, channels, positions, self.max_order)
        };
        let ref_grams: Vec<Vec<f64>> = (0..reference.values.nrows())
            .into_par_iter()
            .map(|i| gram(reference, i))
            .collect();
        let ref_by_class = indices_by_class(input.reference_labels, input.num_classes);
        // Per class: the band from all references and the threshold from held-out folds.
        let mut bands: Vec<Option<Band>> = Vec::new();
        let mut thresholds = vec![f64::INFINITY; input.num_classes];
        // Each reference's deviation from the band fitted without it (its fold held out).
        let mut reference_scores = vec![f64::NAN; input.reference_labels.len()];
        for (c, members) in ref_by_class.iter().enumerate() {
            let all: Vec<&Vec<f64>> = members.iter().map(|&i| &ref_grams[i]).collect();
            bands.push(Band::fit(&all, self.mad_factor));
            let folds = self.folds.min(members.len());
            if folds < 2 {
                continue;
            }
            let mut held_out = Vec::new();
            for fold in 0..folds {
                let in_fold: Vec<usize> = members
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % folds == fold)
                    .map(|(_, &i)| i)
                    .collect();
                let fit: Vec<&Vec<f64>> = members
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % folds != fold)
                    .map(|(_, &i)| &ref_grams[i])
                    .collect();
                if let Some(band) = Band::fit(&fit, self.mad_factor) {
                    for i in in_fold {
                        let deviation = band.deviation(&ref_grams[i]);
                        held_out.push(deviation);
                        reference_scores[i] = deviation;
                    }
                }
            }
            thresholds[c] = quantile(&held_out, self.quantile);
        }
        let scores: Vec<f64> = (0..input.len())
            .into_par_iter()
            .map(|i| {
                let class = usize::from(input.predicted[i]);
                match bands.get(class).and_then(Option::as_ref) {
                    Some(band) => band.deviation(&gram(train, i)),
                    None => 0.0,
                }
            })
            .collect();
        let flags = scores
            .iter()
            .zip(input.predicted)
            .map(|(&s, &c)| {
                s > thresholds
                    .get(usize::from(c))
                    .copied()
                    .unwrap_or(f64::INFINITY)
            })
            .collect();
        let mut out = Detection {
            scores,
            flags,
            reference_scores,
            calibrated_flags: None,
            also_flags: None,
            classes: Some(input.predicted.to_vec()),
            floor: super::Floor::default(),
            details: serde_json::Map::new(),
        };
        out.note("layer", &train.layer);
        out.note("channels", channels);
        out.note("thresholds", &thresholds);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// 2 classes of 4-channel × 9-position activations; the planted samples have channel 3
    /// strongly co-active with channel 0 (a trigger feature), the clean ones do not.
    fn acts(rows: &[(u16, bool)], rng: &mut ChaCha8Rng) -> ConvActivations {
        let (c, p) = (4, 9);
        let mut values = Vec::new();
        for &(_, planted) in rows {
            let mut row: Vec<f32> = (0..c * p).map(|_| rng.random::<f32>()).collect();
            for k in 0..p {
                row[3 * p + k] *= 0.1;
                if planted {
                    row[3 * p + k] = 3.0 * row[k];
                }
            }
            values.extend(row);
        }
        ConvActivations {
            layer: "test".into(),
            channels: c,
            positions: p,
            values: Array2::from_shape_vec((rows.len(), c * p), values).unwrap(),
        }
    }

    #[test]
    fn flags_planted_gram_structure() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let train_rows: Vec<(u16, bool)> = (0..400)
            .map(|i| ((i % 2) as u16, i % 2 == 0 && i % 20 == 0))
            .collect();
        let ref_rows: Vec<(u16, bool)> = (0..50).map(|i| ((i % 2) as u16, false)).collect();
        let train = acts(&train_rows, &mut rng);
        let reference = acts(&ref_rows, &mut rng);
        let labels: Vec<u16> = train_rows.iter().map(|r| r.0).collect();
        let ref_labels: Vec<u16> = ref_rows.iter().map(|r| r.0).collect();
        let poisoned: Vec<bool> = train_rows.iter().map(|r| r.1).collect();
        let features = Array2::<f64>::zeros((400, 1));
        let ref_features = Array2::<f64>::zeros((50, 1));
        let input = DetectInput {
            features: features.view(),
            labels: &labels,
            num_classes: 2,
            reference: ref_features.view(),
            reference_labels: &ref_labels,
            predicted: &labels,
            conv: Some((&train, &reference)),
            logits: None,
            probes: None,
            expected_ratio: None,
            seed: 0,
        };
        let detection = Beatrix::default().detect(&input).unwrap();
        let c = crate::metrics::Confusion::count(&detection.flags, &poisoned);
        assert_eq!(c.tpr(), Some(1.0), "{c:?}");
        assert!(c.fpr().unwrap() <= 0.1, "{c:?}");
    }

    #[test]
    fn gram_of_order_one_is_the_plain_gram() {
        // Two channels, two positions: F = [[1, 2], [3, 4]]; G = [[5, 11], [11, 25]].
        let g = gram_features(&[1.0, 2.0, 3.0, 4.0], 2, 2, 1);
        assert_eq!(g, vec![5.0, 11.0, 25.0]);
        let g2 = gram_features(&[1.0, 2.0, 3.0, 4.0], 2, 2, 2);
        // Order 2: squares [[1, 4], [9, 16]] → Gram [[17, 73], [73, 337]], square-rooted.
        assert!((g2[3] - 17.0_f64.sqrt()).abs() < 1e-12);
        assert!((g2[5] - 337.0_f64.sqrt()).abs() < 1e-12);
    }
}
