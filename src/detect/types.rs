//! What every detector receives and returns.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Why a detector could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{0}")]
    Invalid(String),
    #[error("numerical failure: {0}")]
    Numeric(String),
}

/// Activations of a convolutional layer, one row per sample, laid out `[channels × positions]`.
#[derive(Clone, Debug)]
pub struct ConvActivations {
    /// Which layer they come from (e.g. `block2`).
    pub layer: String,
    pub channels: usize,
    pub positions: usize,
    /// `n × (channels · positions)`.
    pub values: Array2<f32>,
}

/// Everything a defender has, in the form the detectors read it. Nothing here is derived from
/// the ground-truth poison mask.
#[derive(Clone, Copy, Debug)]
pub struct DetectInput<'a> {
    /// Features of the training set (`n × d`), scaled when feature scaling is on.
    pub features: ArrayView2<'a, f64>,
    /// Given (possibly poisoned) labels of the training set.
    pub labels: &'a [u16],
    pub num_classes: usize,
    /// Features of the clean reference set, in the same space as `features`.
    pub reference: ArrayView2<'a, f64>,
    pub reference_labels: &'a [u16],
    /// The model's predictions on the training set.
    pub predicted: &'a [u16],
    /// Conv-layer activations of the training set and of the references (Beatrix).
    pub conv: Option<(&'a ConvActivations, &'a ConvActivations)>,
    /// Logits of the training set and of the references (`n × classes`), for detectors that read
    /// the model's outputs (`loss`).
    pub logits: Option<(ArrayView2<'a, f32>, ArrayView2<'a, f32>)>,
    /// Scores of the input-level probes (STRIP, SCALE-UP), when a detector asked for them.
    pub probes: Option<&'a Probes>,
    /// The defender's guess of the poisoning ratio, when there is one.
    pub expected_ratio: Option<f64>,
    pub seed: u64,
}

/// Per-sample scores from running the model on transformed inputs (`detect::probe`), for the
/// training set and for the references: computed once before the detectors that read them.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// STRIP: mean entropy over the superimpositions (training set, references).
    pub strip: Option<(Vec<f64>, Vec<f64>)>,
    /// SCALE-UP: scaled prediction consistency (training set, references).
    pub scale_up: Option<(Vec<f64>, Vec<f64>)>,
    /// IBD-PSC: the amplifications chosen and the consistency under them.
    pub ibd_psc: Option<super::ibd_psc::Probe>,
    /// Seconds the probing took, per detector name.
    pub seconds: std::collections::BTreeMap<&'static str, f64>,
}

impl DetectInput<'_> {
    /// Number of training samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the training set is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Checks that the parts agree in size.
    pub fn validate(&self) -> Result<(), DetectError> {
        let n = self.labels.len();
        if self.features.nrows() != n || self.predicted.len() != n {
            return Err(DetectError::Invalid(format!(
                "{} labels but {} feature rows and {} predictions",
                n,
                self.features.nrows(),
                self.predicted.len()
            )));
        }
        if self.reference.nrows() != self.reference_labels.len() {
            return Err(DetectError::Invalid(format!(
                "{} reference rows but {} reference labels",
                self.reference.nrows(),
                self.reference_labels.len()
            )));
        }
        if self.reference.ncols() != self.features.ncols() {
            return Err(DetectError::Invalid(format!(
                "reference features have {} dimensions, training features {}",
                self.reference.ncols(),
                self.features.ncols()
            )));
        }
        if let Some(label) = self
            .labels
            .iter()
            .find(|&&l| usize::from(l) >= self.num_classes)
        {
            return Err(DetectError::Invalid(format!(
                "label {label} is outside the {} classes",
                self.num_classes
            )));
        }
        // Third-party numeric code (SVD, FastICA, k-means) loops or panics on NaN, infinities
        // and values whose squares overflow: refuse them here, once for every detector.
        let usable = |v: &f64| v.is_finite() && v.abs() <= MAX_FEATURE;
        if !self.features.iter().all(usable) || !self.reference.iter().all(usable) {
            return Err(DetectError::Invalid(format!(
                "the features hold non-finite or huge values (beyond ±{MAX_FEATURE:e}): the model diverged; retrain with a lower train.lr or train.rho"
            )));
        }
        Ok(())
    }
}

/// Largest feature magnitude the detectors accept.
pub const MAX_FEATURE: f64 = 1e12;

/// One ranking of the training samples: a detector's (or the consensus') score and flag per
/// sample, under its name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranking {
    pub name: String,
    pub scores: Vec<f64>,
    pub flags: Vec<bool>,
}

/// The lower bound of a calibrated threshold, besides the quantile of the class's own references
/// (see `decision.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Floor {
    /// Hampel's outlier bound on the training scores: a statistic fitted on the training set
    /// spreads the clean training samples wider than the references (SS's singular direction).
    #[default]
    TrainingOutliers,
    /// The same quantile of *all* classes' references: for a score that ranks classes first and
    /// samples within a class second (SCAn's class index plus the side of the split), only a
    /// class whose clean references reach the top of all references can have flags. Hampel's
    /// bound on such a score sits above a target class whose index is no outlier.
    PooledReferences,
}

/// One detector's verdict on the training set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Per-sample suspicion (higher = more suspicious).
    pub scores: Vec<f64>,
    /// Per-sample decision of the detector's own (published) rule; replaced by the calibrated
    /// decision when `detect.decision = "calibrated"` (see `decision.rs`).
    pub flags: Vec<bool>,
    /// The same score for every clean reference sample, on the same scale as `scores` (empty when
    /// the detector cannot score references). The calibrated decision reads its threshold here.
    #[serde(default)]
    pub reference_scores: Vec<f64>,
    /// A detector's own reference-calibrated decision, when it has one that beats a threshold on
    /// its score (AC: a cluster is flagged only when the references avoid it).
    #[serde(default)]
    pub calibrated_flags: Option<Vec<bool>>,
    /// Samples a detector's own reference-checked rule flags *besides* the calibrated threshold
    /// (AC: a small cluster the references avoid).
    #[serde(default)]
    pub also_flags: Option<Vec<bool>>,
    /// The class each training sample's threshold is read in, where it is not the given label
    /// (Beatrix compares a sample with the references of its predicted class).
    #[serde(default)]
    pub classes: Option<Vec<u16>>,
    /// What the calibrated threshold is at least, besides the class's references' quantile.
    #[serde(default)]
    pub floor: Floor,
    /// What the detector decided on the way (e.g. suspected target classes, chosen rank).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Detection {
    /// An empty verdict for `n` samples: nothing suspicious.
    pub fn new(n: usize) -> Self {
        Self {
            scores: vec![0.0; n],
            flags: vec![false; n],
            reference_scores: Vec::new(),
            calibrated_flags: None,
            also_flags: None,
            classes: None,
            floor: Floor::default(),
            details: serde_json::Map::new(),
        }
    }

    /// Number of flagged samples.
    pub fn flagged(&self) -> usize {
        self.flags.iter().filter(|&&f| f).count()
    }

    /// Records a detail under `key`.
    pub fn note(&mut self, key: &str, value: impl Serialize) {
        if let Ok(v) = serde_json::to_value(value) {
            self.details.insert(key.to_owned(), v);
        }
    }
}

/// A poisoned-sample detector: scores every training sample and flags the suspicious ones by its
/// own decision rule.
pub trait Detector: Send + Sync {
    /// Which detector this is.
    fn kind(&self) -> crate::config::DetectorKind;

    /// Short name as used in configs and reports (`ss`, `ac`, ...).
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Runs the detector.
    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError>;
}
