//! The run's report (`report.json`), the per-sample scores (`scores.csv`) and the SGD-vs-SAM
//! comparison (`comparison.json`), as `shared/design/CLI.md` specifies them. Every number here is
//! computed from the run; the ground-truth fields are `null` when there is no planted attack.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{AttackKind, Experiment, OptimizerKind};
use crate::detect::DetectionRun;
use crate::detect::scaling::ScalingRecord;
use crate::diagnostics::{Fit, Warning};
use crate::metrics::{self, Confusion};
use crate::prepare::Prepared;
use crate::train::Trained;

/// Format version of `report.json`.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectorReport {
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
    pub auroc: Option<f64>,
    /// AUROC within the classes (by given label) that hold poisoned samples — the reference's
    /// "AUROC(tgt)".
    pub auroc_poisoned_classes: Option<f64>,
    pub flagged: usize,
    pub seconds: f64,
    /// What the detector decided on the way (target classes, chosen rank, thresholds...).
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Why the detector failed (its other fields are then empty); absent when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// The ground truth of a planted attack: which training samples are poisoned.
pub fn poison_mask(prepared: &Prepared) -> Option<Vec<bool>> {
    prepared.poisoned.as_ref().map(|p| {
        let mut mask = vec![false; p.train.len()];
        for &i in &p.plan.poisoned {
            if let Some(m) = mask.get_mut(i) {
                *m = true;
            }
        }
        mask
    })
}

/// Metrics of one detector against `truth` (all `None` without ground truth).
pub fn detector_report(
    flags: &[bool],
    scores: &[f64],
    truth: Option<&[bool]>,
    labels: &[u16],
    seconds: f64,
    details: serde_json::Map<String, serde_json::Value>,
) -> DetectorReport {
    let confusion = truth.map(|t| Confusion::count(flags, t));
    let in_classes = truth.and_then(|t| {
        let mut classes: Vec<u16> = t
            .iter()
            .zip(labels)
            .filter(|(p, _)| **p)
            .map(|(_, l)| *l)
            .collect();
        classes.sort_unstable();
        classes.dedup();
        let (s, p): (Vec<f64>, Vec<bool>) = scores
            .iter()
            .zip(t)
            .zip(labels)
            .filter(|(_, l)| classes.binary_search(l).is_ok())
            .map(|((s, p), _)| (*s, *p))
            .unzip();
        metrics::auroc(&s, &p)
    });
    DetectorReport {
        tpr: confusion.and_then(|c| c.tpr()),
        fpr: confusion.and_then(|c| c.fpr()),
        precision: confusion.and_then(|c| c.precision()),
        f1: confusion.and_then(|c| c.f1()),
        auroc: truth.and_then(|t| metrics::auroc(scores, t)),
        auroc_poisoned_classes: in_classes,
        flagged: flags.iter().filter(|&&f| f).count(),
        seconds,
        details,
        error: None,
    }
}

/// Where the ε handed to the detectors comes from (see `pipeline::expected_ratio`).
pub fn expected_ratio_source(config: &Experiment) -> &'static str {
    if config.detect.expected_ratio.is_some() {
        "config"
    } else if config.detect.oracle_ratio && config.attack.is_some() {
        "oracle"
    } else {
        "default"
    }
}

/// Assembles the report of one run.
pub fn build(
    config: &Experiment,
    prepared: &Prepared,
    trained: &Trained,
    detection: &DetectionRun,
    backdoor_effect: Option<BackdoorEffect>,
) -> Report {
    let train = prepared
        .poisoned
        .as_ref()
        .map_or(&prepared.clean.train, |p| &p.train);
    let s = train.shape;
    let truth = poison_mask(prepared);
    let attack = match (&config.attack, &prepared.poisoned) {
        (Some(a), Some(p)) => Some(AttackInfo {
            kind: a.kind,
            ratio: a.ratio,
            target: a.target,
            n_poisoned: p.plan.poisoned.len(),
        }),
        _ => None,
    };
    let detectors = detection
        .results
        .iter()
        .map(|r| {
            let mut report = detector_report(
                &r.detection.flags,
                &r.detection.scores,
                truth.as_deref(),
                &train.labels,
                r.seconds,
                r.detection.details.clone(),
            );
            if let Some(error) = &r.error {
                report = DetectorReport {
                    error: Some(error.clone()),
                    ..detector_report(&[], &[], None, &[], r.seconds, Default::default())
                };
            }
            (r.name.to_owned(), report)
        })
        .collect();
    let mut consensus_details = serde_json::Map::new();
    consensus_details.insert(
        "agreement".to_owned(),
        serde_json::Value::from(detection.consensus.agreement),
    );
    let consensus = detector_report(
        &detection.consensus.flags,
        &detection.consensus.scores,
        truth.as_deref(),
        &train.labels,
        0.0,
        consensus_details,
    );
    let fit = Fit::measure(
        &detection.train.predicted,
        &train.labels,
        train.num_classes(),
        trained.clean_accuracy,
    );
    let warnings = crate::diagnostics::warnings(
        &fit,
        trained.attack_success_rate,
        detection,
        &train.class_names,
    );
    Report {
        version: VERSION,
        dataset: DatasetInfo {
            source: prepared.clean.source.clone(),
            n_train: train.len(),
            n_test: prepared.clean.test.len(),
            classes: train.class_names.clone(),
            shape: [s.height, s.width, s.channels],
        },
        attack,
        training: TrainingInfo {
            optimizer: config.train.optimizer,
            rho: config.train.rho,
            epochs: config.train.epochs,
            seed: config.train.seed,
            clean_accuracy: trained.clean_accuracy,
            attack_success_rate: trained.attack_success_rate,
            seconds: trained.seconds,
            images_per_second: trained.images_per_second,
            final_train_loss: trained.history.last().map(|h| h.train_loss),
            device: crate::train::device::resolve(config.train.device)
                .name()
                .to_owned(),
        },
        backdoor_effect,
        feature_scaling: detection.scaling.clone(),
        expected_ratio: detection.expected_ratio,
        expected_ratio_source: expected_ratio_source(config).to_owned(),
        estimated_ratio: Some(detection.estimated_ratio),
        decision: detection.decision.name().to_owned(),
        reference_samples: detection.reference_indices.len(),
        fit: Some(fit),
        warnings,
        detectors,
        consensus: Some(consensus),
    }
}

/// `scores.csv`: `index,label,given_label,poisoned,<method>_score,<method>_flag,...`; `label` is
/// the clean label, `poisoned` is empty without ground truth.
pub fn scores_csv(prepared: &Prepared, detection: &DetectionRun) -> String {
    let given = prepared
        .poisoned
        .as_ref()
        .map_or(&prepared.clean.train.labels, |p| &p.train.labels);
    let clean = &prepared.clean.train.labels;
    let truth = poison_mask(prepared);
    let mut out = String::from("index,label,given_label,poisoned");
    for r in &detection.results {
        let _ = write!(out, ",{0}_score,{0}_flag", r.name);
    }
    out.push('\n');
    for i in 0..given.len() {
        let poisoned = truth
            .as_ref()
            .map_or(String::new(), |t| u8::from(t[i]).to_string());
        let _ = write!(out, "{i},{},{},{poisoned}", clean[i], given[i]);
        for r in &detection.results {
            let _ = write!(
                out,
                ",{},{}",
                r.detection.scores[i],
                u8::from(r.detection.flags[i])
            );
        }
        out.push('\n');
    }
    out
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

impl Comparison {
    pub fn new(sgd: Report, sam: Report) -> Self {
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        let delta = sgd
            .detectors
            .iter()
            .filter_map(|(name, a)| {
                let b = sam.detectors.get(name)?;
                Some((
                    name.clone(),
                    Delta {
                        tpr: diff(a.tpr, b.tpr),
                        fpr: diff(a.fpr, b.fpr),
                        f1: diff(a.f1, b.f1),
                        auroc: diff(a.auroc, b.auroc),
                    },
                ))
            })
            .collect();
        Self {
            sgd,
            sam,
            delta,
            fused: BTreeMap::new(),
        }
    }

    /// A plain-text table: one row per detector, SGD and SAM side by side.
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}", 100.0 * v));
        let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "clean accuracy: SGD {} %, SAM {} % | ASR: SGD {} %, SAM {} %",
            pct(Some(self.sgd.training.clean_accuracy)),
            pct(Some(self.sam.training.clean_accuracy)),
            pct(self.sgd.training.attack_success_rate),
            pct(self.sam.training.attack_success_rate),
        );
        let _ = writeln!(
            out,
            "{:<9} {:>12} {:>12} {:>12} {:>14} {:>7} {:>12}",
            "detector",
            "TPR % sgd/sam",
            "FPR % sgd/sam",
            "F1 sgd/sam",
            "AUROC sgd/sam",
            "ΔTPR",
            "fused TPR/FPR"
        );
        let consensus = self.sgd.consensus.as_ref().zip(self.sam.consensus.as_ref());
        let rows = self
            .sgd
            .detectors
            .iter()
            .filter_map(|(name, a)| Some((name.as_str(), a, self.sam.detectors.get(name)?)))
            .chain(consensus.map(|(a, b)| ("consensus", a, b)));
        for (name, a, b) in rows {
            let d = match (a.tpr, b.tpr) {
                (Some(x), Some(y)) => Some(y - x),
                _ => None,
            };
            let fused = self
                .fused
                .get(name)
                .map_or("-".to_owned(), |f| format!("{}/{}", pct(f.tpr), pct(f.fpr)));
            let _ = writeln!(
                out,
                "{:<9} {:>12} {:>12} {:>12} {:>14} {:>7} {:>12}",
                name,
                format!("{}/{}", pct(a.tpr), pct(b.tpr)),
                format!("{}/{}", pct(a.fpr), pct(b.fpr)),
                format!("{}/{}", num(a.f1), num(b.f1)),
                format!("{}/{}", num(a.auroc), num(b.auroc)),
                d.map_or("-".to_owned(), |d| format!("{:+.1}", 100.0 * d)),
                fused,
            );
        }
        for (arm, report) in [("SGD", &self.sgd), ("SAM", &self.sam)] {
            for w in &report.warnings {
                let _ = writeln!(out, "warning ({arm}): {}", w.message);
            }
        }
        out
    }
}

/// Writes `text` to `path` through a temporary file in the same folder, then renames it.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    crate::artifacts::write_file(path, text.as_bytes())
}

/// Writes the training samples `keep` of `data` as an image folder (`DIR/<class>/<index>.png`,
/// plus `kept.csv`) — the cleaned dataset. The folder must be new or empty and must not overlap
/// the dataset's `source`; the images are written into a hidden sibling folder that is renamed
/// into place at the end, so a failed export leaves nothing half-written. Returns the number of
/// images written.
pub fn write_kept_folder(
    dir: &Path,
    data: &crate::data::Dataset,
    keep: &[usize],
    source: &str,
) -> anyhow::Result<usize> {
    crate::attack::export::check_not_in_source(dir, source)?;
    let staged = crate::artifacts::Staged::new(dir, None)?;
    write_kept_into(staged.path(), data, keep)?;
    staged.commit()?;
    Ok(keep.len())
}

fn write_kept_into(temp: &Path, data: &crate::data::Dataset, keep: &[usize]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let s = data.shape;
    let color = if s.channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut manifest = String::from("index,file,label\n");
    for &i in keep {
        let (Some(pixels), Some(&label)) = (data.image(i), data.labels.get(i)) else {
            continue;
        };
        let class = data
            .class_names
            .get(usize::from(label))
            .map_or("unknown", String::as_str);
        let folder = crate::artifacts::child(temp, class)?;
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("{}: cannot create the folder", folder.display()))?;
        let file = format!("{class}/{i:06}.png");
        let path = temp.join(&file);
        image::save_buffer(&path, pixels, s.width as u32, s.height as u32, color)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        let _ = writeln!(
            manifest,
            "{i},{},{}",
            crate::attack::export::csv_field(&file),
            crate::attack::export::csv_field(class)
        );
    }
    let path = temp.join("kept.csv");
    std::fs::write(&path, manifest).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
