//! **TaCT** (Tang et al., 2021, "Demon in the variant"), source-specific: the BadNets patch sends
//! only the source classes' images to the target. "Cover" images of other classes carry the
//! same patch and keep their label (as many as the poisons by default), so poisons and covers
//! look alike to feature-space detectors and the trigger alone does not decide the class.
//!
//! Default source: class 1, or class 0 when the target is 1.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::badnets::{BadnetsSettings, Position};
use super::registry::{AttackSettings, Knob, Trigger};
use super::{AttackError, check_cover_ratio, check_trigger_paths};
use crate::check::{MAX_SIDE, count_in};
use crate::data::Shape;

pub const HELP: &str = "TaCT: the patch sends only the source class to the target; cover images of other classes carry it and keep their label, so poisons and covers look alike to feature-space detectors";

/// `kind = "tact"`: BadNets' patch keys, the source classes and the cover share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TactSettings {
    /// The classes whose triggered images go to the target (default: class 1, or 0 when the
    /// target is 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_classes: Option<Vec<u16>>,
    /// Cover samples per poisoned sample.
    pub cover_ratio: f64,
    /// Side of the square patch.
    pub patch_size: usize,
    pub position: Position,
    /// A user trigger (PNG) instead of the square.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_image: Option<PathBuf>,
    /// The mask of a user trigger (PNG, white = trigger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_mask: Option<PathBuf>,
}

impl Default for TactSettings {
    fn default() -> Self {
        Self {
            source_classes: None,
            cover_ratio: 1.0,
            patch_size: 3,
            position: Position::BottomRight,
            trigger_image: None,
            trigger_mask: None,
        }
    }
}

/// The source used when a config names none.
fn default_source(target: u16) -> u16 {
    if target == 1 { 0 } else { 1 }
}

impl AttackSettings for TactSettings {
    fn validate(&self, target: u16) -> Result<(), String> {
        count_in("attack.patch_size", self.patch_size, 1, MAX_SIDE as usize)?;
        if let Some(sources) = &self.source_classes {
            if sources.is_empty() {
                return Err("attack.source_classes is empty; name at least one class".to_owned());
            }
            if sources.contains(&target) {
                return Err(format!(
                    "attack.source_classes contains the target class {target}; a source-specific attack sends other classes to it"
                ));
            }
        }
        check_cover_ratio(self.cover_ratio)?;
        check_trigger_paths(self.trigger_image.as_deref(), self.trigger_mask.as_deref())
    }

    fn trigger(&self, shape: Shape, _seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        // BadNets' patch; covers carry the whole trigger: they differ from poisons only by
        // their label.
        let patch = BadnetsSettings {
            patch_size: self.patch_size,
            position: self.position,
            trigger_image: self.trigger_image.clone(),
            trigger_mask: self.trigger_mask.clone(),
        };
        Ok(Box::new(patch.patch_trigger(shape, true)?))
    }

    fn cover_ratio(&self) -> f64 {
        self.cover_ratio
    }

    fn sources(&self, target: u16) -> Option<Vec<u16>> {
        Some(
            self.source_classes
                .clone()
                .unwrap_or_else(|| vec![default_source(target)]),
        )
    }

    fn knobs(&mut self, target: u16) -> Vec<Knob<'_>> {
        vec![
            Knob::patch_size(&mut self.patch_size),
            Knob::Class {
                label: "Source class",
                help: "triggered images of this class go to the target; a config can name several (attack.source_classes)",
                value: &mut self.source_classes,
                default: default_source(target),
            },
        ]
    }

    fn trigger_image(&mut self) -> Option<&mut Option<PathBuf>> {
        Some(&mut self.trigger_image)
    }
}
