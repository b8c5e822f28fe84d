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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttackConfig {
    #[serde(flatten)]
    pub trigger: TriggerConfig,
    /// Share of the training set that is poisoned.
    pub ratio: f64,
    pub target: u16,
    pub mode: TargetMode,
    pub seed: u64,
}

/// The keys every attack shares, as read.
#[derive(Deserialize)]
struct Shared {
    #[serde(default = "default_ratio")]
    ratio: f64,
    #[serde(default)]
    target: u16,
    #[serde(default)]
    mode: TargetMode,
    #[serde(default)]
    seed: u64,
}

const SHARED_KEYS: [&str; 4] = ["ratio", "target", "mode", "seed"];

/// Read in two parts, the shared keys and the kind's own, so that an error names its key: a
/// derived flattened struct reports "invalid type: sequence, expected a string" without saying
/// which key was meant.
impl<'de> Deserialize<'de> for AttackConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut own = toml::Table::deserialize(deserializer)?;
        let mut shared = toml::Table::new();
        for key in SHARED_KEYS {
            if let Some(value) = own.remove(key) {
                shared.insert(key.to_owned(), value);
            }
        }
        let Shared {
            ratio,
            target,
            mode,
            seed,
        } = Shared::deserialize(toml::Value::Table(shared.clone()))
            .map_err(|e| D::Error::custom(blame(&shared, e.message(), Shared::deserialize)))?;
        let trigger = TriggerConfig::deserialize(toml::Value::Table(own.clone())).map_err(|e| {
            let kind = own
                .get("kind")
                .filter(|k| AttackKind::deserialize((*k).clone()).is_ok());
            let Some(kind) = kind else {
                // No kind, or not a known one: that is the message.
                let message = e.message().trim();
                return D::Error::custom(if own.contains_key("kind") {
                    format!("attack.kind: {message}")
                } else {
                    message.to_owned()
                });
            };
            D::Error::custom(blame(&own, e.message(), |mut one: toml::Value| {
                if let Some(t) = one.as_table_mut() {
                    t.insert("kind".to_owned(), kind.clone());
                }
                TriggerConfig::deserialize(one)
            }))
        })?;
        Ok(Self {
            trigger,
            ratio,
            target,
            mode,
            seed,
        })
    }
}

/// `message` (an error reading `table`) with the key it is about: the first key that fails on
/// its own (every key has a default, so one key alone reads when its value is right).
fn blame<T>(
    table: &toml::Table,
    message: &str,
    read: impl Fn(toml::Value) -> Result<T, toml::de::Error>,
) -> String {
    let message = message.trim();
    for (key, value) in table {
        if key == "kind" {
            continue;
        }
        let one = toml::Table::from_iter([(key.clone(), value.clone())]);
        if read(toml::Value::Table(one)).is_err() {
            return if message.contains(&format!("`{key}`"))
                || message.contains(&format!("attack.{key}"))
            {
                message.to_owned()
            } else {
                format!("attack.{key}: {message}")
            };
        }
    }
    message.to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        toml::from_str::<AttackConfig>(text)
            .unwrap_err()
            .message()
            .to_owned()
    }

    /// Every mistake names its key, whether it is a shared key, the kind's own or the kind.
    #[test]
    fn a_wrong_value_names_its_key() {
        for (text, expected) in [
            (
                "kind = \"badnets\"\nposition = [\"a\"]",
                "attack.position: invalid type",
            ),
            (
                "kind = \"wanet\"\ngrid_size = 2.5",
                "attack.grid_size: invalid type",
            ),
            (
                "kind = \"tact\"\nsource_classes = [70000]",
                "attack.source_classes: ",
            ),
            (
                "kind = \"badnets\"\nratio = \"x\"",
                "attack.ratio: invalid type",
            ),
            (
                "kind = \"badnets\"\ntarget = -1",
                "attack.target: invalid value",
            ),
            ("kind = 5", "attack.kind: invalid type"),
            ("kind = \"nope\"", "attack.kind: unknown variant `nope`"),
            ("patch_size = 3", "missing field `kind`"),
            (
                "kind = \"sig\"\npatch_size = 3",
                "unknown field `patch_size`",
            ),
        ] {
            let message = error(text);
            assert!(message.starts_with(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn shared_and_own_keys_are_read_with_their_defaults() {
        let config: AttackConfig =
            toml::from_str("kind = \"sig\"\nratio = 0.05\ndelta = 20\nseed = 4").unwrap();
        assert_eq!((config.ratio, config.target, config.seed), (0.05, 0, 4));
        assert_eq!(config.mode, TargetMode::AllToOne);
        let TriggerConfig::Sig(sig) = &config.trigger else {
            panic!("{config:?}")
        };
        assert_eq!((sig.delta, sig.frequency), (20.0, 6.0));
    }
}
