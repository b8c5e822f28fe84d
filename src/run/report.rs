//! The serde types of the run's report (`report.json`) and the SGD-vs-SAM comparison
//! (`comparison.json`), as `shared/design/CLI.md` specifies them. `evaluate` computes what fills
//! them (and `scores.csv`) from the run; the ground-truth fields are `null` when there is no
//! planted attack.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{AttackKind, OptimizerKind};
use crate::detect::scaling::ScalingRecord;
use crate::diagnostics::{Fit, Warning};

/// Format version of `report.json`.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub source: String,
    pub n_train: usize,
    pub n_test: usize,
    pub classes: Vec<String>,
    /// `[height, width, channels]`
    pub shape: [usize; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackInfo {
    pub kind: AttackKind,
    pub ratio: f64,
    pub target: u16,
    pub n_poisoned: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub optimizer: OptimizerKind,
    pub rho: f64,
    pub epochs: usize,
    pub seed: u64,
    pub clean_accuracy: f64,
    pub attack_success_rate: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub final_train_loss: Option<f64>,
    /// Where it trained (`cpu`, `cuda`): `train.device = "auto"` resolved. Reports written
    /// before this field read as `cpu`.
    #[serde(default = "cpu")]
    pub device: String,
    /// The hardware in words: the wgpu adapter's name, API and kind, "CUDA GPU 0", or the CPU
    /// backend with its thread count. Absent from reports written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

fn cpu() -> String {
    "cpu".to_owned()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackdoorEffect {
    /// Mean of the k largest trigger activation changes of the last conv layer's channels.
    pub tac_top_k: Option<f64>,
    pub tac_k: usize,
    /// Silhouette of clean vs poisoned penultimate features within the classes holding poison.
    pub silhouette: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorReport {
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
    pub auroc: Option<f64>,
    /// AUROC within the classes (by given label) that hold poisoned samples — the reference's
    /// "AUROC(tgt)".
    pub auroc_poisoned_classes: Option<f64>,
    /// The best TPR any threshold on this detector's score reaches at FPR ≤ 1.5 % (ground truth):
    /// what a decision that follows the ranking could find; where it is low, no decision on this
    /// score finds the poisons at an acceptable false-positive rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking_tpr: Option<f64>,
    pub flagged: usize,
    pub seconds: f64,
    /// What the detector decided on the way (target classes, chosen rank, thresholds...).
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Why the detector failed (its other fields are then empty); absent when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub dataset: DatasetInfo,
    pub attack: Option<AttackInfo>,
    pub training: TrainingInfo,
    pub backdoor_effect: Option<BackdoorEffect>,
    /// The fitted feature scaling (`null` when off).
    pub feature_scaling: Option<ScalingRecord>,
    /// ε handed to the detectors' published rules (`null`: each detector's default).
    pub expected_ratio: Option<f64>,
    /// Where `expected_ratio` came from: `config`, `oracle` (the attack's true ratio, asked for
    /// with `detect.oracle_ratio`) or `default`.
    #[serde(default)]
    pub expected_ratio_source: String,
    /// The defender's estimate of the poisoning ratio (median share flagged by the detectors).
    #[serde(default)]
    pub estimated_ratio: Option<f64>,
    /// `calibrated` or `paper` (see `detect/decision.rs`).
    #[serde(default)]
    pub decision: String,
    pub reference_samples: usize,
    /// How well the model fits its training set (given labels), and its clean accuracy.
    #[serde(default)]
    pub fit: Option<Fit>,
    /// What makes this result doubtful, with what to try; empty when nothing does.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    pub detectors: BTreeMap<String, DetectorReport>,
    /// The detectors' joint verdict: mean rank percentile, flagged by agreement.
    #[serde(default)]
    pub consensus: Option<DetectorReport>,
}

/// `training.json`: the per-epoch figures of a run's training.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    pub history: Vec<crate::train::EpochStats>,
}

/// `comparison.json`'s delta: SAM − SGD per detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub f1: Option<f64>,
    pub auroc: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub sgd: Report,
    pub sam: Report,
    pub delta: BTreeMap<String, Delta>,
    /// The two arms fused, per detector and for the consensus (key `consensus`): rank
    /// percentiles averaged, flagged where either arm flags.
    #[serde(default)]
    pub fused: BTreeMap<String, DetectorReport>,
}
