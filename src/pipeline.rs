//! The stages of one experiment, shared by the CLI and the GUI: load the dataset, apply the
//! optional attack, train, save the checkpoint. (Detection joins here with issue 5.)

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::attack::{self, Attack, PoisonedData};
use crate::config::{Experiment, TrainConfig};
use crate::data::{self, SplitDataset};
use crate::train::{self, TrainData, TrainEvent, Trained, checkpoint};

/// The data of an experiment: the clean split and, with an `[attack]`, its poisoned version.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub clean: SplitDataset,
    pub poisoned: Option<PoisonedData>,
}

impl Prepared {
    /// Loads the dataset and applies the attack the config asks for.
    pub fn load(config: &Experiment) -> anyhow::Result<Self> {
        let clean = data::load(&config.dataset.source, &config.dataset.load_options())?;
        let poisoned = match &config.attack {
            Some(attack_config) => {
                let attack = Attack::from_config(attack_config, clean.train.shape)?;
                Some(attack::poison(&clean, &attack)?)
            }
            None => None,
        };
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

/// Trains on `prepared` and, once training has finished, saves the checkpoint into `dir`.
/// A cancelled or failed training writes nothing.
pub fn train_and_save(
    config: &TrainConfig,
    prepared: &Prepared,
    dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> anyhow::Result<Trained> {
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
