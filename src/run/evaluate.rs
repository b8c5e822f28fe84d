//! Every measure of a run, computed from the run and (for the ground-truth ones) the planted
//! attack: the per-detector rates and AUROCs, the report assembled from training, detection and
//! the backdoor effect, `scores.csv`, and the SGD-vs-SAM deltas. `report` holds the serde types
//! these fill.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::Experiment;
use crate::detect::DetectionRun;
use crate::diagnostics::Fit;
use crate::metrics::{self, Confusion};
use crate::run::prepare::Prepared;
use crate::run::report::*;
use std::sync::atomic::AtomicBool;

use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::detect::features;
use crate::train::Trained;

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
        let classes = poisoned_classes(t, labels);
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
        ranking_tpr: truth.and_then(|t| metrics::best_tpr_at_fpr(scores, t, RANKING_FPR)),
        flagged: flags.iter().filter(|&&f| f).count(),
        seconds,
        details,
        error: None,
    }
}

/// The false-positive allowance of [`DetectorReport::ranking_tpr`].
pub const RANKING_FPR: f64 = 0.015;

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
            kind: a.kind(),
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
        config.train.optimizer,
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
            adapter: Some(crate::train::device::describe(config.train.device)),
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

/// `references.csv`: the clean references the calibrated thresholds are read from, one row each:
/// `test_index,label,<method>_score,...` (`test_index` into the test split; a detector that scores
/// no references leaves its column empty). With `scores.csv`, every decision can be re-derived.
pub fn references_csv(prepared: &Prepared, detection: &DetectionRun) -> String {
    let labels = &prepared.clean.test.labels;
    let mut out = String::from("test_index,label");
    for r in &detection.results {
        let _ = write!(out, ",{}_score", r.name);
    }
    out.push('\n');
    for (k, &i) in detection.reference_indices.iter().enumerate() {
        let label = labels.get(i).map_or(String::new(), u16::to_string);
        let _ = write!(out, "{i},{label}");
        for r in &detection.results {
            match r.detection.reference_scores.get(k) {
                Some(s) if s.is_finite() => {
                    let _ = write!(out, ",{s}");
                }
                _ => out.push(','),
            }
        }
        out.push('\n');
    }
    out
}

/// Triggered test images compared with their clean originals for TAC (at most this many).
const TAC_SAMPLES: usize = 1000;
/// Samples used for the silhouette (at most this many, seeded).
const SILHOUETTE_SAMPLES: usize = 2000;

/// TAC and silhouette: how strongly the backdoor shows in the model (needs ground truth).
pub fn backdoor_effect(
    trained: &Trained,
    device: &Device,
    prepared: &Prepared,
    detection: &DetectionRun,
    k: usize,
    seed: u64,
    cancel: &AtomicBool,
) -> Option<BackdoorEffect> {
    let poisoned = prepared.poisoned.as_ref()?;
    let (model, normalization) = (&trained.model, &trained.normalization);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7ac);
    // TAC on triggered test images vs their clean versions.
    let mut pick: Vec<usize> = (0..poisoned.triggered_test.len()).collect();
    pick.shuffle(&mut rng);
    pick.truncate(TAC_SAMPLES);
    pick.sort_unstable();
    let triggered = poisoned.triggered_test.select(&pick);
    let sources: Vec<usize> = pick
        .iter()
        .filter_map(|&i| poisoned.triggered_test_source.get(i).copied())
        .collect();
    let clean = prepared.clean.test.select(&sources);
    let tac = (|| {
        let a = features::extract(
            model,
            &triggered,
            normalization,
            device,
            cancel,
            &mut |_, _| {},
        )
        .ok()?;
        let b =
            features::extract(model, &clean, normalization, device, cancel, &mut |_, _| {}).ok()?;
        let change = (&a.channel_means - &b.channel_means)
            .mapv(f64::abs)
            .mean_axis(ndarray::Axis(0))?;
        metrics::top_k_mean(change.as_slice()?, k)
    })();
    // Silhouette of clean vs poisoned features inside the classes that hold poison.
    let truth = poison_mask(prepared)?;
    let given = &poisoned.train.labels;
    let classes = poisoned_classes(&truth, given);
    let mut rows: Vec<usize> = (0..given.len())
        .filter(|&i| classes.binary_search(&given[i]).is_ok())
        .collect();
    rows.shuffle(&mut rng);
    rows.truncate(SILHOUETTE_SAMPLES);
    let features = &detection.train.features;
    let points: Vec<Vec<f64>> = rows.iter().map(|&i| features.row(i).to_vec()).collect();
    let groups: Vec<bool> = rows.iter().map(|&i| truth[i]).collect();
    Some(BackdoorEffect {
        tac_top_k: tac,
        tac_k: k,
        silhouette: metrics::silhouette(&points, &groups),
    })
}

/// The classes (by given label) that hold at least one poisoned sample, ascending.
fn poisoned_classes(truth: &[bool], labels: &[u16]) -> Vec<u16> {
    let mut classes: Vec<u16> = truth
        .iter()
        .zip(labels)
        .filter(|(t, _)| **t)
        .map(|(_, l)| *l)
        .collect();
    classes.sort_unstable();
    classes.dedup();
    classes
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
