//! `[attack]`: the planted backdoor (for teaching and evaluation). The keys every attack shares
//! are here; each attack's own keys and their defaults are in its file (see [`super::registry`]).

use serde::{Deserialize, Serialize};

use super::registry::{AttackKind, TriggerConfig};
use crate::check::in_range;

/// How poisoned samples are relabelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    #[default]
    AllToOne,
    AllToAll,
}

/// `[attack]`: `kind` with that attack's keys, and the keys every attack shares. Unknown keys
/// (and keys of another kind) are refused by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackConfig {
    #[serde(flatten)]
    pub trigger: TriggerConfig,
    /// Share of the training set that is poisoned.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    #[serde(default)]
    pub target: u16,
    #[serde(default)]
    pub mode: TargetMode,
    #[serde(default)]
    pub seed: u64,
}

fn default_ratio() -> f64 {
    0.01
}

impl AttackConfig {
    /// An attack of `kind` with every key at its default.
    pub fn of(kind: AttackKind) -> Self {
        Self {
            trigger: TriggerConfig::of(kind),
            ratio: default_ratio(),
            target: 0,
            mode: TargetMode::AllToOne,
            seed: 0,
        }
    }

    pub fn kind(&self) -> AttackKind {
        self.trigger.kind()
    }

    /// Range checks of every key (fit to the image is checked with the data).
    pub fn validate(&self) -> Result<(), String> {
        in_range("attack.ratio", self.ratio, 0.0, true, 1.0, true)?;
        self.trigger.settings().validate(self.target)
    }
}
