//! `[attack]`: the planted backdoor (for teaching and evaluation), its kinds and keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, MAX_SIDE, count_in, in_range, invalid};

/// Which attack to plant (for teaching and evaluation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    Badnets,
    Blended,
    Sig,
    Wanet,
    Lf,
    AdaptiveBlend,
    Lc,
    /// BadNets with a user-supplied trigger image.
    Image,
    /// TaCT (source-specific): poisons from the source classes get the target label, cover
    /// images of other classes carry the same trigger and keep their label.
    Tact,
}

impl AttackKind {
    /// Every attack, in the order the window lists them.
    pub const ALL: [Self; 9] = [
        Self::Badnets,
        Self::Image,
        Self::Blended,
        Self::Sig,
        Self::Wanet,
        Self::Lf,
        Self::AdaptiveBlend,
        Self::Tact,
        Self::Lc,
    ];

    /// One line on what the attack does (the window's hover help).
    pub fn help(self) -> &'static str {
        match self {
            Self::Badnets => "BadNets: a small visible patch in a corner, relabelled to the target",
            Self::Image => "BadNets with your own trigger image",
            Self::Blended => "Blended: a whole-image pattern mixed in at opacity α",
            Self::Sig => {
                "SIG: a faint sinusoidal stripe added to target-class images only (clean label)"
            }
            Self::Wanet => "WaNet: an invisible smooth warp of the image",
            Self::Lf => "LF: a smooth low-frequency pattern added to the image, hard to see",
            Self::AdaptiveBlend => {
                "Adaptive-Blend: a blended trigger cut into pieces, half of them per poison, with cover images that keep their label: made to evade feature-space detectors"
            }
            Self::Lc => {
                "Label-consistent: target-class images keep their label but are first made hard with PGD (ε of 255, against a clean model the run trains first), then get a checkerboard in each corner. The preview shows the trigger only"
            }
            Self::Tact => {
                "TaCT: the patch sends only the source class to the target; cover images of other classes carry it and keep their label, so poisons and covers look alike to feature-space detectors"
            }
        }
    }

    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Badnets => "badnets",
            Self::Blended => "blended",
            Self::Sig => "sig",
            Self::Wanet => "wanet",
            Self::Lf => "lf",
            Self::AdaptiveBlend => "adaptive-blend",
            Self::Lc => "lc",
            Self::Image => "image",
            Self::Tact => "tact",
        }
    }
}

/// How poisoned samples are relabelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    #[default]
    AllToOne,
    AllToAll,
}

/// `[attack]`: the planted backdoor. Per-attack keys are optional; each attack documents its
/// defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackConfig {
    pub kind: AttackKind,
    /// Share of the training set that is poisoned.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    #[serde(default)]
    pub target: u16,
    #[serde(default)]
    pub mode: TargetMode,
    #[serde(default)]
    pub seed: u64,
    /// BadNets: side of the square patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<usize>,
    /// BadNets: `bottom-right` | `bottom-left` | `top-right` | `top-left`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Blended / Adaptive-Blend: blend weight (training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Adaptive-Blend: blend weight at test time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_test: Option<f64>,
    /// A user trigger (PNG) for BadNets/Blended/image attacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_image: Option<PathBuf>,
    /// The mask of a user trigger (PNG, white = trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_mask: Option<PathBuf>,
    /// SIG: amplitude (of 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// SIG: frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<f64>,
    /// WaNet: grid size k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_size: Option<usize>,
    /// WaNet: warping strength s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warp_strength: Option<f64>,
    /// WaNet / Adaptive-Blend: cross / cover samples per poisoned sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_ratio: Option<f64>,
    /// LF: pattern strength (of 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// LC: PGD budget ε (of 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// TaCT: the classes whose triggered images go to the target (default: class 1, or 0 when
    /// the target is 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_classes: Option<Vec<u16>>,
}

impl AttackConfig {
    /// An attack of `kind` with every per-attack key at its default.
    pub fn of(kind: AttackKind) -> Self {
        Self {
            kind,
            ratio: default_ratio(),
            target: 0,
            mode: TargetMode::AllToOne,
            seed: 0,
            patch_size: None,
            position: None,
            alpha: None,
            alpha_test: None,
            trigger_image: None,
            trigger_mask: None,
            delta: None,
            frequency: None,
            grid_size: None,
            warp_strength: None,
            cover_ratio: None,
            strength: None,
            epsilon: None,
            source_classes: None,
        }
    }
}

fn default_ratio() -> f64 {
    0.01
}

impl AttackConfig {
    /// Range checks of every per-attack key (fit to the image is checked with the data).
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("attack.ratio", self.ratio, 0.0, true, 1.0, true)?;
        let opt = |key: &str, v: Option<f64>, low: f64, low_open: bool, high: f64| match v {
            Some(v) => in_range(key, v, low, low_open, high, false),
            None => Ok(()),
        };
        if let Some(p) = self.patch_size {
            count_in("attack.patch_size", p, 1, MAX_SIDE as usize)?;
        }
        if let Some(sources) = &self.source_classes {
            if sources.is_empty() {
                return invalid("attack.source_classes is empty; name at least one class");
            }
            if sources.contains(&self.target) {
                return invalid(&format!(
                    "attack.source_classes contains the target class {}; a source-specific attack sends other classes to it",
                    self.target
                ));
            }
        }
        opt("attack.alpha", self.alpha, 0.0, true, 1.0)?;
        opt("attack.alpha_test", self.alpha_test, 0.0, true, 1.0)?;
        opt("attack.delta", self.delta, 0.0, true, 255.0)?;
        opt("attack.frequency", self.frequency, 0.0, true, 1000.0)?;
        if let Some(k) = self.grid_size {
            count_in("attack.grid_size", k, 1, 64)?;
        }
        opt("attack.warp_strength", self.warp_strength, 0.0, true, 10.0)?;
        opt("attack.cover_ratio", self.cover_ratio, 0.0, false, 10.0)?;
        opt("attack.strength", self.strength, 0.0, true, 255.0)?;
        opt("attack.epsilon", self.epsilon, 0.0, true, 255.0)?;
        for (key, path) in [
            ("attack.trigger_image", &self.trigger_image),
            ("attack.trigger_mask", &self.trigger_mask),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return invalid(&format!("{key} is empty; give the path of a PNG"));
            }
        }
        if self.trigger_mask.is_some() && self.trigger_image.is_none() {
            return invalid("attack.trigger_mask needs attack.trigger_image");
        }
        Ok(())
    }
}
