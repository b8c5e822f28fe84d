//! Poisoned-sample detection: features of the training set from the trained model, the paper's
//! feature scaling, and the detectors (one file each, one [`Detector`] trait).
//!
//! Detectors see only what a defender has: the training set with its given labels, the model's
//! outputs, and a small clean reference set from the test split. The ground-truth poison mask
//! never reaches this module (`metrics` is its only reader).

pub mod ac;
pub mod beatrix;
pub mod consensus;
pub mod decision;
pub mod features;
pub mod ibd_psc;
pub mod like;
pub mod linalg;
pub mod loss;
pub mod probe;
pub mod scale_up;
pub mod scaling;
pub mod scan;
pub mod spectre;
pub mod ss;
pub mod strip;
#[cfg(test)]
pub mod testing;
mod types;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use ndarray::Array2;

pub use types::{
    ConvActivations, DetectError, DetectInput, Detection, Detector, Floor, Probes, Ranking,
};

use decision::Decision;

use crate::config::{DetectConfig, DetectorKind, ReferenceScope};
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
        DetectorKind::Loss => Box::new(loss::LossDetector {
            budget: config.loss_budget,
        }),
        DetectorKind::Strip => Box::new(strip::Strip),
        DetectorKind::ScaleUp => Box::new(scale_up::ScaleUp),
        DetectorKind::IbdPsc => Box::new(ibd_psc::IbdPsc {
            score: config.ibd_psc_score,
        }),
    }
}

/// What detection reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectEvent {
    /// Features of `done` of `total` samples extracted.
    Extracting { done: usize, total: usize },
    /// A detector started.
    Running(&'static str),
    /// An input-level detector ran the model on `done` of `total` transformed images.
    Probing {
        name: &'static str,
        done: usize,
        total: usize,
    },
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
    /// The verdict; when the detector failed, nothing flagged and `error` says why.
    pub detection: Detection,
    pub seconds: f64,
    /// Why the detector failed (the run goes on without it).
    pub error: Option<String>,
}

/// The detectors' joint verdict.
#[derive(Clone, Debug, Default)]
pub struct Consensus {
    /// Mean rank percentile over the detectors that ran (1 = ranked first by all).
    pub scores: Vec<f64>,
    /// Flagged by at least `agreement` detectors.
    pub flags: Vec<bool>,
    pub agreement: usize,
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
    /// ε handed to the detectors' published rules (`None`: each detector's default).
    pub expected_ratio: Option<f64>,
    pub decision: Decision,
    /// The defender's estimate of the poisoning ratio: the median share flagged by the detectors
    /// that ran (needs no ground truth).
    pub estimated_ratio: f64,
    pub results: Vec<DetectorResult>,
    pub consensus: Consensus,
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
    #[error(
        "the model's {0} hold non-finite or huge values: the model diverged or its checkpoint is damaged; retrain with a lower train.lr or train.rho"
    )]
    NotFinite(&'static str),
}

/// True when every value is finite and within ±[`types::MAX_FEATURE`].
fn usable<T: Copy + Into<f64>>(values: ndarray::ArrayView2<'_, T>) -> bool {
    values.iter().all(|&v| {
        let v: f64 = v.into();
        v.is_finite() && v.abs() <= types::MAX_FEATURE
    })
}

/// What detection looks at: the trained model (with its input normalisation, on its device),
/// the possibly poisoned training set under its given labels, and the test set the clean
/// references are drawn from.
#[derive(Clone, Copy)]
pub struct Inspected<'a> {
    pub model: &'a Net,
    pub normalization: &'a Normalization,
    pub device: &'a Device,
    pub train: &'a Dataset,
    pub test: &'a Dataset,
}

/// Extracts features and runs every configured detector on `on.train` (given labels), with
/// references drawn from `on.test`; `expected_ratio` is the poisoning-ratio hint of the rules
/// that need one.
pub fn run(
    on: Inspected<'_>,
    config: &DetectConfig,
    expected_ratio: Option<f64>,
    seed: u64,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(DetectEvent),
) -> Result<DetectionRun, RunError> {
    let Inspected {
        model,
        normalization,
        device,
        train,
        test,
    } = on;
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
    if !usable(extracted.features.view()) || !usable(reference.features.view()) {
        return Err(RunError::NotFinite("features"));
    }
    if !usable(extracted.logits.view()) || !usable(reference.logits.view()) {
        return Err(RunError::NotFinite("outputs (logits)"));
    }
    let (detector_features, reference_features, scaling) = if config.feature_scaling {
        let scaler = Scaler::fit(
            extracted.features.view(),
            reference.features.view(),
            &reference_set.labels,
            &scaling::ScalingSettings::from_config(config),
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
    let probes = probe::probe_inputs(
        &probe::Prober {
            model,
            normalization,
            device,
            cancel,
        },
        probe::ProbeSets {
            train,
            references: &reference_set,
            train_predicted: &extracted.predicted,
            reference_predicted: &reference.predicted,
        },
        &config.methods,
        config.ibd_psc_past_last,
        seed,
        on_event,
    )?;
    let input = DetectInput {
        features: detector_features.view(),
        labels: &train.labels,
        num_classes: train.num_classes(),
        reference: reference_features.view(),
        reference_labels: &reference_set.labels,
        predicted: &extracted.predicted,
        conv: Some((&extracted.conv, &reference.conv)),
        logits: Some((extracted.logits.view(), reference.logits.view())),
        probes: Some(&probes),
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
        let (detection, error) = match run_one(detector.as_ref(), &input) {
            Ok(mut detection) => {
                decide(&mut detection, config, &input);
                (detection, None)
            }
            Err(message) => (Detection::new(train.len()), Some(message)),
        };
        // Input-level detectors: the model passes they needed count as theirs.
        let seconds =
            start.elapsed().as_secs_f64() + probes.seconds.get(name).copied().unwrap_or(0.0);
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
            error,
        });
    }
    let ran: Vec<&DetectorResult> = results.iter().filter(|r| r.error.is_none()).collect();
    let n = train.len();
    let shares: Vec<f64> = ran
        .iter()
        .map(|r| r.detection.flagged() as f64 / n.max(1) as f64)
        .collect();
    let scores: Vec<&[f64]> = ran.iter().map(|r| r.detection.scores.as_slice()).collect();
    let flags: Vec<&[bool]> = ran.iter().map(|r| r.detection.flags.as_slice()).collect();
    let agreement = config.consensus_agreement.min(ran.len().max(1));
    let consensus = Consensus {
        scores: consensus::mean_rank(&scores, n),
        flags: consensus::agreement(&flags, n, agreement),
        agreement,
    };
    Ok(DetectionRun {
        train: extracted,
        reference_indices,
        reference,
        detector_features,
        scaling,
        expected_ratio,
        decision: config.decision,
        estimated_ratio: if shares.is_empty() {
            0.0
        } else {
            linalg::median(&shares)
        },
        results,
        consensus,
    })
}

/// Runs one detector; an error or a panic inside third-party numeric code becomes a message, so
/// a failing detector fails alone.
fn run_one(detector: &dyn Detector, input: &DetectInput) -> Result<Detection, String> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| detector.detect(input)));
    match outcome {
        Ok(Ok(detection)) if detection.scores.len() == input.len() => Ok(detection),
        Ok(Ok(_)) => Err("returned the wrong number of scores".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!(
            "numerical failure: {}",
            panic_message(panic.as_ref())
        )),
    }
}

/// The message a caught panic carried.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Applies the configured decision to a detector's verdict. The published rule's flag count is
/// kept in the details either way.
pub(crate) fn decide(detection: &mut Detection, config: &DetectConfig, input: &DetectInput) {
    let paper = detection.flagged();
    detection.note("paper_rule_flagged", paper);
    if config.decision == Decision::Paper {
        detection.note("decision", Decision::Paper.name());
        return;
    }
    if let Some(flags) = detection.calibrated_flags.take() {
        detection.flags = flags;
        detection.note("decision", Decision::Calibrated.name());
        return;
    }
    let q = config.reference_quantile;
    let usable = detection.reference_scores.len() == input.reference_labels.len();
    let pooled = usable
        .then(|| decision::reference_threshold(&detection.reference_scores, q))
        .flatten();
    let Some(pooled) = pooled else {
        // Too few references scored: the published rule stands, and the report says so.
        detection.note("decision", Decision::Paper.name());
        detection.note(
            "decision_note",
            "too few reference scores for the calibrated threshold; published rule used",
        );
        return;
    };
    let (per_class, fell_back) = match config.reference_scope {
        ReferenceScope::Class => decision::class_thresholds(
            &detection.reference_scores,
            input.reference_labels,
            input.num_classes,
            q,
            pooled,
        ),
        ReferenceScope::Pooled => (vec![pooled; input.num_classes], Vec::new()),
    };
    let floor = match detection.floor {
        Floor::TrainingOutliers => decision::outlier_floor(&detection.scores, config.outlier_floor),
        Floor::PooledReferences => Some(pooled),
    };
    let thresholds: Vec<f64> = per_class
        .iter()
        .map(|&t| floor.map_or(t, |f| t.max(f)))
        .collect();
    let classes = detection.classes.take();
    let classes = classes.as_deref().unwrap_or(input.labels);
    let mut flags: Vec<bool> = detection
        .scores
        .iter()
        .zip(classes)
        .map(|(&s, &c)| s > thresholds.get(usize::from(c)).copied().unwrap_or(pooled))
        .collect();
    if let Some(also) = detection.also_flags.take() {
        let added = flags
            .iter_mut()
            .zip(&also)
            .filter(|(f, a)| !**f && **a)
            .map(|(f, _)| *f = true)
            .count();
        detection.note("flagged_by_own_rule_only", added);
    }
    detection.flags = flags;
    detection.note("decision", Decision::Calibrated.name());
    detection.note("reference_scope", config.reference_scope.name());
    detection.note("reference_threshold", pooled);
    detection.note("class_thresholds", &thresholds);
    if !fell_back.is_empty() {
        detection.note("classes_with_pooled_threshold", &fell_back);
        detection.note(
            "references_needed_per_class",
            decision::min_class_references(q),
        );
    }
    match (detection.floor, floor) {
        (Floor::TrainingOutliers, Some(floor)) => detection.note("outlier_floor", floor),
        (Floor::PooledReferences, _) => detection.note("floor", "pooled references' quantile"),
        (Floor::TrainingOutliers, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A score shaped like SCAn's: a class index `j` plus a within-class part in (−½, ½). The
    /// poisons top their class (index 1.5, no outlier among the ten), so Hampel's bound on all
    /// training scores sits above the whole class; the pooled references' quantile does not.
    #[test]
    fn pooled_reference_floor_keeps_a_class_whose_index_is_no_outlier() {
        let index = [1.5, 0.5, -0.5, 1.0, -1.0, 0.0, 0.8, -0.8, 0.3, -0.3];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut side = || 0.5 * rng.random_range(-1.0..0.98);
        let (mut scores, mut labels, mut poisoned) = (Vec::new(), Vec::new(), Vec::new());
        let (mut reference_scores, mut reference_labels) = (Vec::new(), Vec::new());
        for (c, &j) in index.iter().enumerate() {
            for _ in 0..200 {
                scores.push(j + side());
                labels.push(c as u16);
                poisoned.push(false);
            }
            for _ in 0..100 {
                reference_scores.push(j + side());
                reference_labels.push(c as u16);
            }
        }
        for _ in 0..20 {
            scores.push(index[0] + 0.4995);
            labels.push(0);
            poisoned.push(true);
        }
        let (features, reference) = (Array2::zeros((labels.len(), 1)), Array2::zeros((1000, 1)));
        let input = DetectInput {
            features: features.view(),
            labels: &labels,
            num_classes: 10,
            reference: reference.view(),
            reference_labels: &reference_labels,
            predicted: &labels,
            conv: None,
            logits: None,
            probes: None,
            expected_ratio: None,
            seed: 0,
        };
        let rates = |floor: Floor| {
            let mut detection = Detection::new(labels.len());
            detection.scores.clone_from(&scores);
            detection.reference_scores.clone_from(&reference_scores);
            detection.floor = floor;
            decide(&mut detection, &DetectConfig::default(), &input);
            let c = crate::metrics::Confusion::count(&detection.flags, &poisoned);
            (c.tpr().unwrap_or(0.0), c.fpr().unwrap_or(1.0))
        };
        let (tpr, _) = rates(Floor::TrainingOutliers);
        assert_eq!(
            tpr, 0.0,
            "Hampel's bound on all training scores is above class 0"
        );
        let (tpr, fpr) = rates(Floor::PooledReferences);
        assert_eq!(tpr, 1.0);
        assert!(fpr <= 0.015, "fpr {fpr}");
    }
}
