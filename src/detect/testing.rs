//! Synthetic feature sets with a planted poison cluster, for the detectors' unit tests.

use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DetectInput, Detector};
use crate::metrics;

/// A synthetic defender's view: `classes` Gaussian classes and, inside class 0, a small cluster
/// shifted away from the class centre (the "poison").
pub struct Planted {
    pub features: Array2<f64>,
    pub labels: Vec<u16>,
    pub poisoned: Vec<bool>,
    pub reference: Array2<f64>,
    pub reference_labels: Vec<u16>,
    pub num_classes: usize,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// 4 classes × 300 samples in 16 dimensions, 25 clean references per class; with `shift > 0`,
/// 30 extra samples labelled 0 sit `shift` class-widths away from class 0's centre along a random
/// direction, with half the spread of a class.
pub fn planted(seed: u64, shift: f64) -> Planted {
    planted_in(seed, shift, 16)
}

/// [`planted`] in `dim` dimensions.
pub fn planted_in(seed: u64, shift: f64, dim: usize) -> Planted {
    planted_refs(seed, shift, dim, 25)
}

/// [`planted_in`] with `refs` clean references per class (100: each class has a calibrated
/// threshold of its own).
pub fn planted_refs(seed: u64, shift: f64, dim: usize, refs: usize) -> Planted {
    let (classes, per_class, poison) = (4, 300, 30);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<Array1<f64>> = (0..classes)
        .map(|_| Array1::from_shape_fn(dim, |_| 4.0 * normal(&mut rng)))
        .collect();
    let mut direction = Array1::from_shape_fn(dim, |_| normal(&mut rng));
    direction /= direction.dot(&direction).sqrt();
    // Class spread: unit variance per dimension, so a class is about √dim wide.
    let offset = &means[0] + &(&direction * (shift * 4.0));
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut poisoned = Vec::new();
    for (c, mean) in means.iter().enumerate() {
        for _ in 0..per_class {
            rows.extend(mean.iter().map(|m| m + normal(&mut rng)));
            labels.push(c as u16);
            poisoned.push(false);
        }
    }
    if shift > 0.0 {
        for _ in 0..poison {
            rows.extend(offset.iter().map(|m| m + 0.5 * normal(&mut rng)));
            labels.push(0);
            poisoned.push(true);
        }
    }
    let n = labels.len();
    let features = Array2::from_shape_vec((n, dim), rows).expect("shape");
    let mut ref_rows = Vec::new();
    let mut reference_labels = Vec::new();
    for (c, mean) in means.iter().enumerate() {
        for _ in 0..refs {
            ref_rows.extend(mean.iter().map(|m| m + normal(&mut rng)));
            reference_labels.push(c as u16);
        }
    }
    let reference = Array2::from_shape_vec((reference_labels.len(), dim), ref_rows).expect("shape");
    Planted {
        features,
        labels,
        poisoned,
        reference,
        reference_labels,
        num_classes: classes,
    }
}

impl Planted {
    /// The detector input (predictions = given labels).
    pub fn input(&self, expected_ratio: Option<f64>) -> DetectInput<'_> {
        DetectInput {
            features: self.features.view(),
            labels: &self.labels,
            num_classes: self.num_classes,
            reference: self.reference.view(),
            reference_labels: &self.reference_labels,
            predicted: &self.labels,
            conv: None,
            logits: None,
            probes: None,
            expected_ratio,
            seed: 0,
        }
    }

    /// The true poisoning ratio.
    pub fn ratio(&self) -> f64 {
        self.poisoned.iter().filter(|&&p| p).count() as f64 / self.labels.len() as f64
    }

    /// (TPR, FPR) of `flags`.
    pub fn rates(&self, flags: &[bool]) -> (f64, f64) {
        let c = metrics::Confusion::count(flags, &self.poisoned);
        (c.tpr().unwrap_or(0.0), c.fpr().unwrap_or(0.0))
    }

    /// AUROC of `scores` restricted to class 0.
    pub fn auroc_in_target(&self, scores: &[f64]) -> f64 {
        let (s, p): (Vec<f64>, Vec<bool>) = self
            .labels
            .iter()
            .zip(scores.iter().zip(&self.poisoned))
            .filter(|(l, _)| **l == 0)
            .map(|(_, (s, p))| (*s, *p))
            .unzip();
        metrics::auroc(&s, &p).unwrap_or(0.0)
    }
}

/// The flags of `detector`'s default calibrated decision on `case`.
pub fn calibrated(detector: &dyn Detector, case: &Planted) -> Vec<bool> {
    let input = case.input(None);
    let mut detection = detector.detect(&input).expect("detects");
    super::decide(
        &mut detection,
        &crate::config::DetectConfig::default(),
        &input,
    );
    detection.flags
}
