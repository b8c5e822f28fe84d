//! Poisoned-sample detection: features of the training set from the trained model, the paper's
//! feature scaling, and the detectors (one file each, one [`Detector`] trait).
//!
//! Detectors see only what a defender has: the training set with its given labels, the model's
//! outputs, and a small clean reference set from the test split. The ground-truth poison mask
//! never reaches this module (`metrics` is its only reader).

pub mod ac;
pub mod beatrix;
pub mod features;
pub mod linalg;
pub mod scaling;
pub mod scan;
pub mod spectre;
pub mod ss;
#[cfg(test)]
pub mod testing;
mod types;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use ndarray::Array2;

pub use types::{ConvActivations, DetectError, DetectInput, Detection, Detector};

use crate::config::{DetectConfig, DetectorKind};
use crate::data::{Dataset, Normalization};
use crate::model::Net;
use features::Extracted;
use scaling::{Scaler, ScalingRecord};

/// The detector a config names.
pub fn detector_for(kind: DetectorKind, config: &DetectConfig) -> Box<dyn Detector> {
    match kind {
        DetectorKind::Ac => Box::new(ac::ActivationClustering::default()),
        DetectorKind::Ss => Box::new(ss::SpectralSignatures {
            rule: config.ss_rule,
        }),
        DetectorKind::Spectre => Box::new(spectre::Spectre::default()),
        DetectorKind::Scan => Box::new(scan::Scan::default()),
        DetectorKind::Beatrix => Box::new(beatrix::Beatrix::default()),
    }
}

/// What detection reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectEvent {
    /// Features of `done` of `total` samples extracted.
    Extracting { done: usize, total: usize },
    /// A detector started.
    Running(&'static str),
    /// A detector finished.
    Finished {
        name: &'static str,
        flagged: usize,
        seconds: f64,
    },
}

/// One detector's outcome.
#[derive(Clone, Debug)]
pub struct DetectorResult {
    pub kind: DetectorKind,
    pub name: &'static str,
    pub detection: Detection,
    pub seconds: f64,
}

/// Everything detection produced.
#[derive(Clone, Debug)]
pub struct DetectionRun {
    /// The model's view of the training set (unscaled features, conv activations, predictions).
    pub train: Extracted,
    /// Indices (into the test split) of the clean references, and their extracted view.
    pub reference_indices: Vec<usize>,
    pub reference: Extracted,
    /// The features the detectors saw (scaled when scaling is on).
    pub detector_features: Array2<f64>,
    pub scaling: Option<ScalingRecord>,
    pub expected_ratio: Option<f64>,
    pub results: Vec<DetectorResult>,
}

/// Why detection stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("detection cancelled")]
    Cancelled,
    #[error("{detector}: {error}")]
    Detector {
        detector: &'static str,
        error: DetectError,
    },
    #[error("feature scaling: {0}")]
    Scaling(DetectError),
}

/// Extracts features and runs every configured detector on `train` (given labels), with
/// references drawn from `test`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &Net,
    normalization: &Normalization,
    device: &Device,
    train: &Dataset,
    test: &Dataset,
    config: &DetectConfig,
    expected_ratio: Option<f64>,
    seed: u64,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(DetectEvent),
) -> Result<DetectionRun, RunError> {
    let reference_indices = features::reference_indices(test, config.clean_per_class, seed);
    let reference_set = test.select(&reference_indices);
    let total = train.len() + reference_set.len();
    let extracted = features::extract(model, train, normalization, device, cancel, &mut |d, _| {
        on_event(DetectEvent::Extracting { done: d, total });
    })
    .map_err(|_| RunError::Cancelled)?;
    let offset = train.len();
    let reference = features::extract(
        model,
        &reference_set,
        normalization,
        device,
        cancel,
        &mut |d, _| {
            on_event(DetectEvent::Extracting {
                done: offset + d,
                total,
            });
        },
    )
    .map_err(|_| RunError::Cancelled)?;
    let (detector_features, reference_features, scaling) = if config.feature_scaling {
        let scaler = Scaler::fit(
            extracted.features.view(),
            reference.features.view(),
            &reference_set.labels,
            &config.scaling_settings(),
        )
        .map_err(RunError::Scaling)?;
        (
            scaler.apply(extracted.features.view()),
            scaler.apply(reference.features.view()),
            Some(scaler.record.clone()),
        )
    } else {
        (extracted.features.clone(), reference.features.clone(), None)
    };
    let input = DetectInput {
        features: detector_features.view(),
        labels: &train.labels,
        num_classes: train.num_classes(),
        reference: reference_features.view(),
        reference_labels: &reference_set.labels,
        predicted: &extracted.predicted,
        conv: Some((&extracted.conv, &reference.conv)),
        expected_ratio,
        seed,
    };
    let mut results = Vec::new();
    for &kind in &config.methods {
        if cancel.load(Ordering::Relaxed) {
            return Err(RunError::Cancelled);
        }
        let detector = detector_for(kind, config);
        let name = detector.name();
        on_event(DetectEvent::Running(name));
        let start = Instant::now();
        let detection = detector
            .detect(&input)
            .map_err(|error| RunError::Detector {
                detector: name,
                error,
            })?;
        let seconds = start.elapsed().as_secs_f64();
        on_event(DetectEvent::Finished {
            name,
            flagged: detection.flagged(),
            seconds,
        });
        results.push(DetectorResult {
            kind,
            name,
            detection,
            seconds,
        });
    }
    Ok(DetectionRun {
        train: extracted,
        reference_indices,
        reference,
        detector_features,
        scaling,
        expected_ratio,
        results,
    })
}
