//! The stages of one experiment, shared by the CLI and the GUI: load the dataset, apply the
//! optional attack, train, save the checkpoint, detect, measure, report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::config::{ConfigError, Experiment, OptimizerKind, TrainConfig};
use crate::detect::{self, DetectEvent, DetectionRun, Ranking};
use crate::run::evaluate;
use crate::run::prepare::{PrepareError, Prepared};
use crate::run::report::{self, Comparison, Report, TrainingLog};
use crate::train::{self, TrainError, TrainEvent, Trained, checkpoint};

/// Why a run, a comparison or a re-detection stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Loading the dataset or applying the attack failed.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// Training failed, was cancelled, or a checkpoint could not be saved or loaded.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Detection failed or was cancelled.
    #[error(transparent)]
    Detect(#[from] detect::RunError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An output file or folder could not be written.
    #[error("{}: cannot {action}", path.display())]
    Write {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// `detect` on a saved run with a config whose `[train]` differs from the run's.
    #[error("{}: the checkpoint was trained with other [train] settings than this config", .0.display())]
    OtherTraining(PathBuf),
    #[error("cannot serialise the report: {0}")]
    Serialize(#[from] serde_json::Error),
    /// Outputs are saved for one or two trained models.
    #[error("a run has one or two trained models, not {0}")]
    ArmCount(usize),
    /// A folder opened as a saved run is not one.
    #[error("{}: {message}", path.display())]
    NotARun { path: PathBuf, message: String },
    /// The dataset of a saved run moved, or is no longer the one the run saw.
    #[error("{source_name}: {message}")]
    DatasetChanged {
        source_name: String,
        message: String,
    },
}

/// `PipelineError::Write` for `path`.
fn cannot(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError {
    let path = path.to_path_buf();
    move |source| PipelineError::Write {
        path,
        action,
        source,
    }
}

/// Trains on `prepared` and, once training has finished, saves the checkpoint into `dir`.
/// A cancelled or failed training writes nothing.
pub fn train_and_save(
    config: &TrainConfig,
    prepared: &Prepared,
    dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Trained, PipelineError> {
    let data = prepared.train_data();
    let trained = train::train(config, data, cancel, on_event)?;
    checkpoint::save(
        dir,
        &trained,
        config,
        data.train.shape,
        &data.train.class_names,
    )?;
    Ok(trained)
}

/// Progress of a whole run.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// A new stage started (`"detection"`, `"lc: clean model epoch 1/10"`...).
    Stage(String),
    /// An image folder being decoded: `done` of `total` images.
    Loading {
        done: usize,
        total: usize,
    },
    /// An arm's training started, with this optimiser (`"sgd"`, `"sam"`, `"asam"`).
    Training(&'static str),
    Train(TrainEvent),
    Detect(DetectEvent),
}

/// What one run produced.
pub struct Outcome {
    pub trained: Trained,
    pub detection: DetectionRun,
    pub report: Report,
}

/// The poisoning ratio handed to the detectors' published rules: `detect.expected_ratio`; the
/// attack's true ratio only when `detect.oracle_ratio` asks for it (a defender does not know it).
pub fn expected_ratio(config: &Experiment) -> Option<f64> {
    config.detect.expected_ratio.or_else(|| {
        config
            .detect
            .oracle_ratio
            .then(|| config.attack.as_ref().map(|a| a.ratio))
            .flatten()
    })
}

/// Dataset → attack → train → detect → report (saved by [`save_arms`]).
pub fn run(
    config: &Experiment,
    prepared: &Prepared,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<Outcome, PipelineError> {
    let optimizer = config.train.optimizer.name();
    on_event(RunEvent::Training(optimizer));
    let trained = train::train(&config.train, prepared.train_data(), cancel, &mut |e| {
        on_event(RunEvent::Train(e))
    })?;
    detect_and_report(config, prepared, trained, cancel, on_event)
}

/// The detection half of a run: detectors on `trained`, backdoor effect, report.
pub fn detect_and_report(
    config: &Experiment,
    prepared: &Prepared,
    trained: Trained,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<Outcome, PipelineError> {
    on_event(RunEvent::Stage("detection".to_owned()));
    let device = train::device_for(config.train.device)?;
    let data = prepared.train_data();
    let detection = detect::run(
        detect::Inspected {
            model: &trained.model,
            normalization: &trained.normalization,
            device: &device,
            train: data.train,
            test: data.test,
        },
        &config.detect,
        expected_ratio(config),
        config.train.seed,
        cancel,
        &mut |e| on_event(RunEvent::Detect(e)),
    )?;
    let effect = evaluate::backdoor_effect(
        &trained,
        &device,
        prepared,
        &detection,
        config.detect.tac_top_k,
        config.train.seed,
        cancel,
    );
    let report = evaluate::build(config, prepared, &trained, &detection, effect);
    Ok(Outcome {
        trained,
        detection,
        report,
    })
}

/// Re-runs detection on the model a previous `run` saved in `run_dir`, without retraining.
/// `config` is that run's config (its `[detect]` may differ); the data are prepared again from
/// it, which gives the same samples because every stage is seeded. Training figures (time,
/// history) come from the run's `report.json` and `training.json` when present.
pub fn redetect(
    config: &Experiment,
    run_dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<(Prepared, Outcome), PipelineError> {
    on_event(RunEvent::Stage("loading the data and the model".to_owned()));
    let prepared = Prepared::load_with(config, cancel, on_event)?;
    let outcome = redetect_on(config, &prepared, run_dir, cancel, on_event)?;
    Ok((prepared, outcome))
}

/// [`redetect`] on data already prepared from `config` (a comparison's two arms share theirs).
pub fn redetect_on(
    config: &Experiment,
    prepared: &Prepared,
    run_dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<Outcome, PipelineError> {
    let device = train::device_for(config.train.device)?;
    let loaded = checkpoint::load_for(run_dir, &device, Some(prepared.train_data().train))?;
    if !loaded.meta.train.trains_like(&config.train) {
        return Err(PipelineError::OtherTraining(run_dir.to_path_buf()));
    }
    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }
    let previous: Option<Report> = read(&run_dir.join("report.json"));
    let (seconds, images_per_second) = previous.as_ref().map_or((0.0, 0.0), |r| {
        (r.training.seconds, r.training.images_per_second)
    });
    let history = read::<TrainingLog>(&run_dir.join("training.json"))
        .map(|t| t.history)
        .unwrap_or_default();
    let trained = loaded.into_trained(history, seconds, images_per_second);
    let mut outcome = detect_and_report(config, prepared, trained, cancel, on_event)?;
    // The report's training section is the saved training's: where it ran (`detect --set
    // train.device=…` moves only the detectors' forward passes).
    if let Some(previous) = previous {
        outcome.report.training.device = previous.training.device;
        outcome.report.training.adapter = previous.training.adapter;
    }
    Ok(outcome)
}

/// Writes `report.json`, `scores.csv`, `references.csv` and `config.toml` of a finished run into
/// `dir`.
pub fn write_outputs(
    dir: &Path,
    config: &Experiment,
    prepared: &Prepared,
    outcome: &Outcome,
) -> Result<(), PipelineError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        crate::artifacts::write_text(&path, text).map_err(cannot("write", &path))
    };
    write("config.toml", &config.to_toml()?)?;
    write(
        "report.json",
        &serde_json::to_string_pretty(&outcome.report)?,
    )?;
    write(
        "scores.csv",
        &evaluate::scores_csv(prepared, &outcome.detection),
    )?;
    write(
        "references.csv",
        &evaluate::references_csv(prepared, &outcome.detection),
    )?;
    let log = TrainingLog {
        history: outcome.trained.history.clone(),
    };
    write("training.json", &serde_json::to_string_pretty(&log)?)?;
    Ok(())
}

/// The two arms of a comparison fused, per detector and for the consensus: each sample's rank
/// percentiles averaged over the arms, flagged where either arm flags it. The arms catch
/// different poisons (SGD the learned backdoor, SAM the poisons it refused to fit); in the sweep
/// the intersection was never better than the better arm.
pub fn fuse(
    a: &DetectionRun,
    b: &DetectionRun,
    prepared: &Prepared,
) -> std::collections::BTreeMap<String, report::DetectorReport> {
    let train = prepared.train_data().train;
    let truth = evaluate::poison_mask(prepared);
    fused_samples(a, b, train.len())
        .into_iter()
        .map(
            |Ranking {
                 name,
                 scores,
                 flags,
             }| {
                let report = evaluate::detector_report(
                    &flags,
                    &scores,
                    truth.as_deref(),
                    &train.labels,
                    0.0,
                    serde_json::Map::new(),
                );
                (name, report)
            },
        )
        .collect()
}

/// The fused arms per sample: for every detector that ran in both arms (in `a`'s order) and
/// last for the consensus, the mean rank percentile and the flags of either arm.
pub fn fused_samples(a: &DetectionRun, b: &DetectionRun, n: usize) -> Vec<Ranking> {
    let one = |name: &str, sa: &[f64], sb: &[f64], fa: &[bool], fb: &[bool]| Ranking {
        name: name.to_owned(),
        scores: detect::consensus::mean_rank(&[sa, sb], n),
        flags: detect::consensus::agreement(&[fa, fb], n, 1),
    };
    let mut out: Vec<Ranking> = a
        .results
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|ra| {
            let rb = b
                .results
                .iter()
                .find(|rb| rb.kind == ra.kind && rb.error.is_none())?;
            let (da, db) = (&ra.detection, &rb.detection);
            Some(one(ra.name, &da.scores, &db.scores, &da.flags, &db.flags))
        })
        .collect();
    let (ca, cb) = (&a.consensus, &b.consensus);
    out.push(one(
        "consensus",
        &ca.scores,
        &cb.scores,
        &ca.flags,
        &cb.flags,
    ));
    out
}

/// One trained and inspected model: its name (`sgd`, `sam`, `asam`), the config it ran with and
/// what it produced.
pub struct ArmRun {
    pub name: &'static str,
    pub config: Experiment,
    pub outcome: Outcome,
}

impl std::fmt::Debug for ArmRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmRun")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The configs a job trains: `config` itself, or for a comparison the same config with SGD and
/// with SAM (the config's own sharpness-aware optimiser when it names one).
pub fn arm_configs(config: &Experiment, compare: bool) -> Vec<Experiment> {
    let optimizers = if compare {
        let sam = match config.train.optimizer {
            OptimizerKind::Sgd => OptimizerKind::Sam,
            other => other,
        };
        vec![OptimizerKind::Sgd, sam]
    } else {
        vec![config.train.optimizer]
    };
    optimizers
        .into_iter()
        .map(|optimizer| {
            let mut arm = config.clone();
            arm.train.optimizer = optimizer;
            arm
        })
        .collect()
}

/// Trains and inspects every arm of a job (one for a run, SGD then SAM for a comparison) on the
/// same prepared data; events carry the arm's index.
pub fn run_arms(
    config: &Experiment,
    prepared: &Prepared,
    compare: bool,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(usize, RunEvent),
) -> Result<Vec<ArmRun>, PipelineError> {
    arm_configs(config, compare)
        .into_iter()
        .enumerate()
        .map(|(i, arm)| {
            let outcome = run(&arm, prepared, cancel, &mut |e| on_event(i, e))?;
            Ok(ArmRun {
                name: arm.train.optimizer.name(),
                config: arm,
                outcome,
            })
        })
        .collect()
}

/// Writes finished arms into `dir` in the layout `run` and `compare` produce: one arm's model
/// (checkpoint), `report.json`, `scores.csv`, `training.json` and `config.toml` in `dir`; two
/// arms in `dir/sgd` and `dir/sam`, with `comparison.json` (the arms' [`Comparison`], fused rows
/// included) beside them.
pub fn save_arms(
    dir: &Path,
    prepared: &Prepared,
    arms: &[ArmRun],
    comparison: Option<&Comparison>,
) -> Result<(), PipelineError> {
    let data = prepared.train_data();
    let save = |dir: &Path, arm: &ArmRun| -> Result<(), PipelineError> {
        std::fs::create_dir_all(dir).map_err(cannot("create the folder", dir))?;
        checkpoint::save(
            dir,
            &arm.outcome.trained,
            &arm.config.train,
            data.train.shape,
            &data.train.class_names,
        )?;
        write_outputs(dir, &arm.config, prepared, &arm.outcome)
    };
    match (arms, comparison) {
        ([arm], _) => save(dir, arm),
        ([sgd, sam], Some(comparison)) => {
            save(&dir.join("sgd"), sgd)?;
            save(&dir.join("sam"), sam)?;
            let path = dir.join("comparison.json");
            crate::artifacts::write_text(&path, &serde_json::to_string_pretty(comparison)?)
                .map_err(cannot("write", &path))
        }
        _ => Err(PipelineError::ArmCount(arms.len())),
    }
}
