//! The attack registry: one line per attack names its kind, its config name, its settings type
//! and its one-line help. The config, the CLI and the window all read what this generates:
//! [`AttackKind`] (with `ALL`, `name`, `help`) and [`TriggerConfig`] (the `[attack]` keys of each
//! kind, tagged by `kind`). Adding an attack touches its own file (settings + trigger) and one
//! line of the `attacks!` invocation below (and its `pub mod` in `attack/mod.rs`).

use std::ops::RangeInclusive;
use std::path::PathBuf;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{AttackError, adaptive_blend, badnets, blended, lc, lf, sig, tact, wanet};
use crate::data::Shape;

/// Which version of the trigger an image gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// A poisoned training sample.
    Poison,
    /// A cover / cross sample (keeps its label): a partial or noisy trigger, or none.
    Cover,
    /// A test image for the attack success rate.
    Test,
}

/// A trigger made ready for one image shape.
pub trait Trigger: Send + Sync + std::fmt::Debug {
    /// Puts the `stamp` version of the trigger on `image` (`shape`); `rng` is the sample's own
    /// random stream.
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, rng: &mut ChaCha8Rng);
}

/// One attack's `[attack]` keys, and what it does with them.
pub trait AttackSettings {
    /// Range checks of the keys (fit to the image is checked by [`Self::trigger`]); `target` is
    /// the attack's target class.
    fn validate(&self, _target: u16) -> Result<(), String> {
        Ok(())
    }

    /// The ready trigger for images of `shape`.
    fn trigger(&self, shape: Shape, seed: u64) -> Result<Box<dyn Trigger>, AttackError>;

    /// Poisons are drawn from the target class and keep their label.
    fn clean_label(&self) -> bool {
        false
    }

    /// Cover / cross samples per poisoned sample.
    fn cover_ratio(&self) -> f64 {
        0.0
    }

    /// Source-specific attacks: the classes whose triggered images go to `target`.
    fn sources(&self, _target: u16) -> Option<Vec<u16>> {
        None
    }

    /// The settings the window offers, as plain values it can edit.
    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        Vec::new()
    }

    /// The user trigger image, for attacks that take one.
    fn trigger_image(&mut self) -> Option<&mut Option<PathBuf>> {
        None
    }
}

/// A setting the window shows for an attack.
pub enum Knob<'a> {
    /// A real number (`speed`: drag step).
    Number {
        label: &'static str,
        value: &'a mut f64,
        range: RangeInclusive<f64>,
        speed: f64,
    },
    /// A whole number.
    Count {
        label: &'static str,
        value: &'a mut usize,
        range: RangeInclusive<usize>,
    },
    /// One class (the first of a list; `default` when the list is unset).
    Class {
        label: &'static str,
        help: &'static str,
        value: &'a mut Option<Vec<u16>>,
        default: u16,
    },
}

impl<'a> Knob<'a> {
    /// A real number in `range`, dragged in steps of 0.01.
    pub fn number(label: &'static str, value: &'a mut f64, range: RangeInclusive<f64>) -> Self {
        Self::Number {
            label,
            value,
            range,
            speed: 0.01,
        }
    }

    /// The side of a square patch.
    pub fn patch_size(value: &'a mut usize) -> Self {
        Self::Count {
            label: "Patch size",
            value,
            range: 1..=32,
        }
    }
}

macro_rules! attacks {
    ($($kind:ident = $name:literal, $settings:ty, $help:expr;)*) => {
        crate::kinds::named_kinds! {
            /// Which attack to plant (for teaching and evaluation).
            pub enum AttackKind {
                $($kind = $name, $help;)*
            }
        }

        /// The per-attack `[attack]` keys, tagged by `kind`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum TriggerConfig {
            $(#[serde(rename = $name)] $kind($settings),)*
        }

        impl TriggerConfig {
            /// The attack of `kind` with every key at its default.
            pub fn of(kind: AttackKind) -> Self {
                match kind {
                    $(AttackKind::$kind => Self::$kind(<$settings>::default()),)*
                }
            }

            pub fn kind(&self) -> AttackKind {
                match self {
                    $(Self::$kind(_) => AttackKind::$kind,)*
                }
            }

            pub fn settings(&self) -> &dyn AttackSettings {
                match self {
                    $(Self::$kind(s) => s,)*
                }
            }

            pub fn settings_mut(&mut self) -> &mut dyn AttackSettings {
                match self {
                    $(Self::$kind(s) => s,)*
                }
            }
        }
    };
}

attacks! {
    Badnets = "badnets", badnets::BadnetsSettings, badnets::HELP;
    Image = "image", badnets::ImageSettings, badnets::IMAGE_HELP;
    Blended = "blended", blended::BlendedSettings, blended::HELP;
    Sig = "sig", sig::SigSettings, sig::HELP;
    Wanet = "wanet", wanet::WanetSettings, wanet::HELP;
    Lf = "lf", lf::LfSettings, lf::HELP;
    AdaptiveBlend = "adaptive-blend", adaptive_blend::AdaptiveBlendSettings, adaptive_blend::HELP;
    Tact = "tact", tact::TactSettings, tact::HELP;
    Lc = "lc", lc::LcSettings, lc::HELP;
}

#[cfg(test)]
mod tests {
    use super::super::AttackConfig;
    use super::*;

    #[test]
    fn every_attack_round_trips_through_toml_with_its_defaults() {
        for kind in AttackKind::ALL {
            let config = AttackConfig::of(kind);
            assert_eq!(config.kind(), kind);
            let text = toml::to_string(&config).unwrap();
            assert!(
                text.contains(&format!("kind = \"{}\"", kind.name())),
                "{text}"
            );
            let back: AttackConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, config, "{text}");
            assert_eq!(config.validate(), Ok(()), "{kind:?}");
        }
    }

    #[test]
    fn a_key_the_kind_does_not_read_is_refused_by_name() {
        let parse = |text: &str| toml::from_str::<AttackConfig>(text).map_err(|e| e.to_string());
        let err = parse("kind = \"blended\"\npatch_size = 3\n").unwrap_err();
        assert!(
            err.contains("unknown field `patch_size`") && err.contains("alpha"),
            "{err}"
        );
        let err = parse("kind = \"badnets\"\npatch_sise = 3\n").unwrap_err();
        assert!(err.contains("patch_sise"), "{err}");
        assert!(parse("kind = \"badnets\"\npatch_size = 3\nratio = 0.1\n").is_ok());
        assert!(parse("kind = \"image\"\npatch_size = 3\n").is_ok());
        for kind in AttackKind::ALL {
            let text = format!("kind = \"{}\"\nno_such_key = 1\n", kind.name());
            let err = parse(&text).unwrap_err();
            assert!(err.contains("unknown field `no_such_key`"), "{text}: {err}");
        }
        let err = parse("kind = \"badnets\"\nposition = \"middle\"\n").unwrap_err();
        assert!(err.contains("attack.position = \"middle\""), "{err}");
    }

    /// The defaults each attack's file documents (BackdoorBench's, METHODS.md).
    #[test]
    fn defaults_are_the_documented_ones() {
        let of = |kind| TriggerConfig::of(kind);
        let TriggerConfig::Badnets(b) = of(AttackKind::Badnets) else {
            panic!()
        };
        assert_eq!(
            (b.patch_size, b.position),
            (3, badnets::Position::BottomRight)
        );
        let TriggerConfig::Blended(b) = of(AttackKind::Blended) else {
            panic!()
        };
        assert_eq!(b.alpha, 0.2);
        let TriggerConfig::AdaptiveBlend(a) = of(AttackKind::AdaptiveBlend) else {
            panic!()
        };
        assert_eq!((a.alpha, a.alpha_test, a.cover_ratio), (0.15, 0.2, 1.0));
        let TriggerConfig::Sig(s) = of(AttackKind::Sig) else {
            panic!()
        };
        assert_eq!((s.delta, s.frequency), (40.0, 6.0));
        let TriggerConfig::Wanet(w) = of(AttackKind::Wanet) else {
            panic!()
        };
        assert_eq!((w.grid_size, w.warp_strength, w.cover_ratio), (4, 0.5, 2.0));
        let TriggerConfig::Lf(l) = of(AttackKind::Lf) else {
            panic!()
        };
        assert_eq!(l.strength, 51.0);
        let TriggerConfig::Lc(l) = of(AttackKind::Lc) else {
            panic!()
        };
        assert_eq!(l.epsilon, 16.0);
        let tact = of(AttackKind::Tact);
        assert_eq!(tact.settings().sources(0), Some(vec![1]));
        assert_eq!(tact.settings().sources(1), Some(vec![0]));
        assert_eq!(tact.settings().cover_ratio(), 1.0);
        assert!(of(AttackKind::Sig).settings().clean_label());
        assert!(of(AttackKind::Lc).settings().clean_label());
        assert!(!of(AttackKind::Badnets).settings().clean_label());
    }

    #[test]
    fn positions_round_trip_through_their_text() {
        for p in [
            badnets::Position::BottomRight,
            badnets::Position::TopLeft,
            badnets::Position::At { x: 3, y: 4 },
        ] {
            assert_eq!(badnets::Position::parse(&p.to_string()), Some(p));
        }
    }
}
