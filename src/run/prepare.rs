//! The data of an experiment before training: the dataset loaded and checked for the run, and
//! the planted attack applied (LC's PGD step included). Shared by `run`, `compare`, `poison`,
//! the sweep, the reports and the window.

use std::sync::atomic::AtomicBool;

use super::pipeline::RunEvent;
use crate::attack::{self, Attack, AttackError, PoisonedData};
use crate::config::{Experiment, OptimizerKind, TrainConfig, TriggerConfig};
use crate::data::{self, DataError, SplitDataset};
use crate::train::{self, TrainData, TrainError, TrainEvent};

/// Why the data of an experiment could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The dataset could not be loaded (the message names the file).
    #[error(transparent)]
    Data(#[from] DataError),
    /// The dataset does not suit the run: the dataset source, then why.
    #[error("{dataset}: {why}")]
    Unsuitable { dataset: String, why: String },
    /// The attack could not be built or applied.
    #[error(transparent)]
    Attack(#[from] AttackError),
    /// LC's clean model could not be trained (or its PGD step was cancelled).
    #[error("LC: training the clean model for PGD: {0}")]
    CleanModel(TrainError),
    /// The device for LC's PGD step is not available.
    #[error(transparent)]
    Device(#[from] TrainError),
}

/// The data of an experiment: the clean split and, with an `[attack]`, its poisoned version.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub clean: SplitDataset,
    pub poisoned: Option<PoisonedData>,
}

impl Prepared {
    /// Loads the dataset, checks that it suits the run (image size for the model, a test split
    /// to draw clean references from), and applies the attack the config asks for.
    pub fn load(config: &Experiment) -> Result<Self, PrepareError> {
        Self::load_with(config, &AtomicBool::new(false), &mut |_| {})
    }

    /// [`Prepared::load`] with progress (an image folder's decoding as
    /// [`RunEvent::Loading`]; an LC attack's clean model as [`RunEvent::Stage`]) and
    /// cancellation.
    pub fn load_with(
        config: &Experiment,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(RunEvent),
    ) -> Result<Self, PrepareError> {
        let clean = data::load_with(
            &config.dataset.source,
            &config.dataset.load_options(),
            cancel,
            &mut |done, total| on_event(RunEvent::Loading { done, total }),
        )?;
        check_ready(config, &clean)?;
        let poisoned = poison(config, &clean, cancel, &mut |s| {
            on_event(RunEvent::Stage(s))
        })?;
        Ok(Self { clean, poisoned })
    }

    /// What the model trains on: the poisoned training set when there is an attack.
    pub fn train_data(&self) -> TrainData<'_> {
        TrainData {
            train: self
                .poisoned
                .as_ref()
                .map_or(&self.clean.train, |p| &p.train),
            test: &self.clean.test,
            triggered: self.poisoned.as_ref().map(|p| &p.triggered_test),
        }
    }
}

/// The poisoned data `config`'s `[attack]` makes of `clean` (`None` without one).
///
/// LC (label-consistent) first trains a model of the run's architecture on the *clean* training
/// set (the run's recipe with plain SGD: the attacker's own model) and perturbs the chosen
/// target-class images with PGD against it before the trigger is stamped.
pub fn poison(
    config: &Experiment,
    clean: &SplitDataset,
    cancel: &AtomicBool,
    on_stage: &mut dyn FnMut(String),
) -> Result<Option<PoisonedData>, PrepareError> {
    let Some(attack_config) = &config.attack else {
        return Ok(None);
    };
    let attack = Attack::from_config(attack_config, clean.train.shape)?;
    let TriggerConfig::Lc(lc) = &attack_config.trigger else {
        return Ok(Some(attack::poison(clean, &attack)?));
    };
    let plan =
        attack::PoisonPlan::draw(&clean.train.labels, clean.train.num_classes(), &attack.plan)?;
    on_stage("lc: training a clean model for PGD".to_owned());
    let surrogate = TrainConfig {
        optimizer: OptimizerKind::Sgd,
        ..config.train.clone()
    };
    let data = TrainData {
        train: &clean.train,
        test: &clean.test,
        triggered: None,
    };
    // Reported as stages: the run's own training curves and progress stay the victim's.
    let epochs = surrogate.epochs;
    let trained = train::train(&surrogate, data, cancel, &mut |e| {
        if let TrainEvent::Epoch(stats) = e {
            let accuracy = stats
                .test_accuracy
                .map(|a| format!(", test accuracy {:.1} %", 100.0 * a))
                .unwrap_or_default();
            on_stage(format!(
                "lc: clean model epoch {}/{epochs}{accuracy}",
                stats.epoch
            ));
        }
    })
    .map_err(PrepareError::CleanModel)?;
    on_stage(format!(
        "lc: PGD on {} target-class images",
        plan.poisoned.len()
    ));
    let device = train::device_for(surrogate.device)?;
    let pgd = train::adversarial::Pgd {
        epsilon: lc.epsilon,
        steps: attack::lc::STEPS,
    };
    let hardened = train::adversarial::perturb(
        &trained,
        &device,
        &clean.train,
        &plan.poisoned,
        pgd,
        cancel,
        &mut |_, _| {},
    )
    .map_err(PrepareError::CleanModel)?;
    Ok(Some(attack::poison_with(clean, &attack, plan, &hardened)?))
}

/// What a run needs of its data, checked before any training: images the model can take and
/// a test split for the clean references (and the clean accuracy).
pub fn check_ready(config: &Experiment, clean: &SplitDataset) -> Result<(), PrepareError> {
    let unsuitable = |why: String| PrepareError::Unsuitable {
        dataset: config.dataset.source.clone(),
        why,
    };
    crate::model::check_input(config.train.model, clean.train.shape).map_err(unsuitable)?;
    let test_classes = clean.test.class_counts().iter().filter(|&&n| n > 0).count();
    if clean.test.len() < 2 || test_classes < 2 {
        return Err(unsuitable(format!(
            "the test split holds {} samples of {test_classes} classes; detection draws its clean references from it and needs samples of at least two classes (raise dataset.test_fraction, or add images)",
            clean.test.len()
        )));
    }
    Ok(())
}
