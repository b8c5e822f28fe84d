//! The experiment configuration: one TOML file that the GUI and the CLI both run
//! (`shared/design/CLI.md` is the contract for its keys). Unknown keys are rejected by name;
//! `--set KEY=VALUE` overrides any key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod dataset;
mod detect;
mod train;

pub use crate::attack::{AttackConfig, AttackKind, TargetMode, TriggerConfig};
pub use dataset::*;
pub use detect::*;
pub use train::*;

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// A range check's message ([`crate::check`]).
impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        Self::Invalid(message)
    }
}

/// A whole experiment: dataset, optional attack, training and detection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    #[serde(default)]
    pub dataset: DatasetConfig,
    /// Absent for a real untrusted dataset (no ground truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackConfig>,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub detect: DetectConfig,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(1, |t| t.matches('\n').count() + 1)
}

/// `[attack]` is read in two parts (`AttackConfig`'s `Deserialize`), so TOML reports its errors
/// at the table; when the error at `line` is `[attack]`'s and `message` names one of its keys
/// (`attack.KEY: …`, ``unknown field `KEY` ``), the 1-based line of that key instead.
fn attack_key_line(text: &str, line: usize, message: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let (_, attack) = root
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == "attack")?;
    let toml::de::DeValue::Table(table) = attack.get_ref() else {
        return None;
    };
    if line_of(text, attack.span().start) != line {
        return None;
    }
    let named = |key: &str| {
        message.starts_with(&format!("attack.{key}:"))
            || message.starts_with(&format!("attack.{key} "))
            || message.starts_with(&format!("unknown field `{key}`"))
    };
    table
        .iter()
        .find(|(k, _)| named(k.get_ref()))
        .map(|(k, _)| line_of(text, k.span().start))
}

/// Sets `key` (dotted, e.g. `train.epochs`) to `value` in `table`. The value is read as TOML
/// (`2`, `0.5`, `true`, `"x"`, `["ss", "ac"]`) and falls back to a plain string.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let fail = |message: &str| ConfigError::Override {
        assignment: assignment.to_owned(),
        message: message.to_owned(),
    };
    let Some((key, raw)) = assignment.split_once('=') else {
        return Err(fail("expected KEY=VALUE, e.g. train.epochs=2"));
    };
    let (key, raw) = (key.trim(), raw.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let Some((last, path)) = parts.split_last() else {
        return Err(fail("empty key"));
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(fail("empty key part"));
    }
    let mut at = table;
    for part in path {
        let entry = at
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = entry.as_table_mut() else {
            return Err(fail(&format!("`{part}` is not a table")));
        };
        at = t;
    }
    at.insert((*last).to_owned(), value);
    Ok(())
}

impl Experiment {
    /// Parses a config from TOML text; `path` is only used in messages.
    pub fn from_toml(path: &Path, text: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error| {
            let message = e.message().trim().to_owned();
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line: attack_key_line(text, line, &message).unwrap_or(line),
                message,
            }
        };
        let experiment: Self = toml::from_str(text).map_err(parse_error)?;
        if overrides.is_empty() {
            experiment.validate()?;
            return Ok(experiment);
        }
        let mut table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
            Self::deserialize(table.clone()).map_err(|e| ConfigError::Override {
                assignment: assignment.clone(),
                message: e.message().trim().to_owned(),
            })?;
        }
        let experiment =
            Self::deserialize(table).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        experiment.validate()?;
        Ok(experiment)
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml(path, &text, overrides)
    }

    /// The config as TOML (what `run` writes next to its report).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Checks values serde cannot: ranges and sizes, before anything is loaded or written.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.dataset;
        if d.source.trim().is_empty() {
            return invalid("dataset.source is empty; give a folder or `embedded:mnist`");
        }
        in_range(
            "dataset.test_fraction",
            d.test_fraction,
            0.0,
            false,
            1.0,
            true,
        )?;
        if d.limit == 1 {
            return invalid(
                "dataset.limit = 1 keeps one training image, of one class; a classification dataset needs images of at least two classes (0 keeps all)",
            );
        }
        if let Some([h, w]) = d.resize
            && !(1..=MAX_SIDE).contains(&h) | !(1..=MAX_SIDE).contains(&w)
        {
            return invalid(&format!(
                "dataset.resize = [{h}, {w}]: each side must be in 1..={MAX_SIDE}"
            ));
        }
        if let Some([h, w]) = d.resize {
            let shape = crate::data::Shape {
                height: h as usize,
                width: w as usize,
                channels: 1,
            };
            self.train.model.check_input(shape).map_err(|why| {
                ConfigError::Invalid(format!("dataset.resize = [{h}, {w}]: {why}"))
            })?;
        }
        if let Some(attack) = &self.attack {
            attack.validate().map_err(ConfigError::Invalid)?;
        }
        self.train.validate()?;
        self.detect.validate()
    }
}

pub use crate::check::MAX_SIDE;
use crate::check::in_range;

fn invalid<T>(message: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let e = Experiment::from_toml(Path::new("c.toml"), "", &[]).unwrap();
        assert_eq!(e.dataset.source, "embedded:mnist");
        assert_eq!(e.train.rho, 0.02);
        assert!(!e.train.augment);
        assert_eq!(e.train.optimizer, OptimizerKind::Sam);
        assert_eq!(e.detect.methods.len(), 6);
        assert!(e.attack.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err =
            Experiment::from_toml(Path::new("c.toml"), "[train]\nepochs = 2\nepoch = 3\n", &[])
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("c.toml:3: unknown field `epoch`"), "{err}");
    }

    /// An `[attack]` mistake is reported at its key's line, not at the table's.
    #[test]
    fn an_attack_key_error_is_named_with_its_line() {
        let text =
            "[train]\nepochs = 2\n\n[attack]\nkind = \"badnets\"\nratio = 0.1\nposition = [1]\n";
        let err = Experiment::from_toml(Path::new("c.toml"), text, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:7: attack.position: invalid type"),
            "{err}"
        );
        let text = "[attack]\nkind = \"sig\"\n\npatch_size = 3\n";
        let err = Experiment::from_toml(Path::new("c.toml"), text, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:4: unknown field `patch_size`"),
            "{err}"
        );
    }

    #[test]
    fn overrides_apply_and_unknown_override_is_named() {
        let text = "[attack]\nkind = \"badnets\"\n";
        let sets = vec!["train.epochs=2".to_owned(), "attack.ratio=0.005".to_owned()];
        let e = Experiment::from_toml(Path::new("c.toml"), text, &sets).unwrap();
        assert_eq!(e.train.epochs, 2);
        assert_eq!(e.attack.unwrap().ratio, 0.005);
        let err = Experiment::from_toml(Path::new("c.toml"), text, &["train.epoch=2".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--set train.epoch=2") && err.contains("`epoch`"),
            "{err}"
        );
        let e = Experiment::from_toml(Path::new("c.toml"), "", &["train.optimizer=sgd".to_owned()])
            .unwrap();
        assert_eq!(e.train.optimizer, OptimizerKind::Sgd);
    }

    #[test]
    fn round_trips_through_toml() {
        let e = Experiment {
            attack: Some(AttackConfig {
                seed: 3,
                trigger: TriggerConfig::Blended(crate::attack::blended::BlendedSettings {
                    alpha: 0.1,
                    trigger_image: None,
                }),
                ..AttackConfig::of(AttackKind::Blended)
            }),
            ..Experiment::default()
        };
        let text = e.to_toml().unwrap();
        assert_eq!(
            Experiment::from_toml(Path::new("x"), &text, &[]).unwrap(),
            e
        );
    }

    /// The kind lists the window reads name every kind once, and each name is the one the
    /// config parses (a kind missing from a list would vanish from the window's menus).
    #[test]
    fn the_kind_lists_are_complete_and_their_names_parse() {
        #[derive(serde::Deserialize)]
        struct Kinds {
            attack: AttackKind,
            detector: DetectorKind,
        }
        let parse = |a: &str, d: &str| -> Kinds {
            toml::from_str(&format!("attack = \"{a}\"\ndetector = \"{d}\"")).unwrap()
        };
        for kind in AttackKind::ALL {
            assert_eq!(parse(kind.name(), "ss").attack, kind);
            assert!(!kind.help().is_empty());
        }
        for kind in DetectorKind::ALL {
            assert_eq!(parse("badnets", kind.name()).detector, kind);
            assert!(!kind.help().is_empty());
        }
        let distinct = |names: Vec<&str>| {
            let n = names.len();
            let set: std::collections::BTreeSet<&str> = names.into_iter().collect();
            set.len() == n
        };
        assert!(distinct(AttackKind::ALL.iter().map(|k| k.name()).collect()));
        assert!(distinct(
            DetectorKind::ALL.iter().map(|k| k.name()).collect()
        ));
        // Every variant is listed: a match without a wildcard fails to compile when one is added.
        let listed = |k: AttackKind| match k {
            AttackKind::Badnets
            | AttackKind::Image
            | AttackKind::Blended
            | AttackKind::Sig
            | AttackKind::Wanet
            | AttackKind::Lf
            | AttackKind::AdaptiveBlend
            | AttackKind::Tact
            | AttackKind::Lc => AttackKind::ALL.contains(&k),
        };
        assert!(AttackKind::ALL.into_iter().all(listed));
        assert_eq!(AttackKind::ALL.len(), 9);
        assert_eq!(DetectorKind::ALL.len(), 9);
    }
}
