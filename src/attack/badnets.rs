//! **BadNets** (Gu et al., 2017): stamp a small patch onto the image.
//!
//! Defaults follow BackdoorBench: a 3×3 white square (255 on every channel) at the bottom-right
//! corner (rows and columns H−3..H−1). The patch may be placed at any corner or at an explicit
//! (x, y), and a user-supplied trigger image with a mask may replace the square
//! (`kind = "image"`, or `trigger_image` with `kind = "badnets"`): pixels where the mask is set
//! take the trigger's value, all others stay as they are.

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::registry::{AttackSettings, Knob, Stamp, Trigger};
use super::{AttackError, check_trigger_paths, load_trigger};
use crate::check::{MAX_SIDE, count_in};
use crate::data::Shape;

pub const HELP: &str = "BadNets: a small visible patch in a corner, relabelled to the target";
pub const IMAGE_HELP: &str = "BadNets with your own trigger image";

/// `kind = "badnets"`: a white square (or a user trigger image) at a corner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BadnetsSettings {
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

impl Default for BadnetsSettings {
    fn default() -> Self {
        Self {
            patch_size: 3,
            position: Position::BottomRight,
            trigger_image: None,
            trigger_mask: None,
        }
    }
}

impl BadnetsSettings {
    /// The patch placed on images of `shape` (`on_covers`: cover samples carry it too).
    pub(super) fn patch_trigger(
        &self,
        shape: Shape,
        on_covers: bool,
    ) -> Result<PatchTrigger, AttackError> {
        let patch = Patch::of(
            self.patch_size,
            self.trigger_image.as_deref(),
            self.trigger_mask.as_deref(),
            shape.channels,
        )?;
        PatchTrigger::place(patch, self.position, shape, on_covers)
    }
}

impl AttackSettings for BadnetsSettings {
    fn validate(&self, _target: u16) -> Result<(), String> {
        count_in("attack.patch_size", self.patch_size, 1, MAX_SIDE as usize)?;
        check_trigger_paths(self.trigger_image.as_deref(), self.trigger_mask.as_deref())
    }

    fn trigger(&self, shape: Shape, _seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        Ok(Box::new(self.patch_trigger(shape, false)?))
    }

    fn knobs(&mut self, _target: u16) -> Vec<Knob<'_>> {
        vec![Knob::patch_size(&mut self.patch_size)]
    }

    fn trigger_image(&mut self) -> Option<&mut Option<PathBuf>> {
        Some(&mut self.trigger_image)
    }
}

/// `kind = "image"`: BadNets with a user trigger image (required) and its optional mask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageSettings(pub BadnetsSettings);

impl AttackSettings for ImageSettings {
    fn validate(&self, target: u16) -> Result<(), String> {
        self.0.validate(target)
    }

    fn trigger(&self, shape: Shape, seed: u64) -> Result<Box<dyn Trigger>, AttackError> {
        if self.0.trigger_image.is_none() {
            return Err(AttackError::Invalid(
                "attack.kind = \"image\" needs attack.trigger_image".to_owned(),
            ));
        }
        self.0.trigger(shape, seed)
    }

    fn knobs(&mut self, target: u16) -> Vec<Knob<'_>> {
        self.0.knobs(target)
    }

    fn trigger_image(&mut self) -> Option<&mut Option<PathBuf>> {
        self.0.trigger_image()
    }
}

/// A user trigger image as a patch; its mask from `mask` (white = trigger) or, without one, its
/// non-black pixels.
fn user_patch(path: &Path, mask: Option<&Path>, channels: usize) -> Result<Patch, AttackError> {
    let (ph, pw, values) = load_trigger(path, channels, None)?;
    let mask = match mask {
        Some(mask_path) => {
            let (_, _, m) = load_trigger(mask_path, 1, Some((ph, pw)))?;
            m.iter().map(|&v| v > 127).collect()
        }
        None => values
            .chunks_exact(channels)
            .map(|p| p.iter().any(|&v| v > 0))
            .collect(),
    };
    Ok(Patch {
        height: ph,
        width: pw,
        channels,
        values,
        mask,
    })
}

/// A patch stamped at one place.
#[derive(Clone, Debug)]
pub struct PatchTrigger {
    pub patch: Patch,
    pub row: usize,
    pub col: usize,
    /// Cover samples carry the whole trigger too (TaCT); otherwise they stay clean.
    pub on_covers: bool,
}

impl PatchTrigger {
    /// `patch` at `position` on images of `shape`, or why it does not fit.
    pub(super) fn place(
        patch: Patch,
        position: Position,
        shape: Shape,
        on_covers: bool,
    ) -> Result<Self, AttackError> {
        let (h, w) = (shape.height, shape.width);
        let (row, col) = position
            .origin(h, w, patch.height, patch.width)
            .ok_or_else(|| {
                AttackError::Invalid(format!(
                    "a {}×{} trigger at {position} does not fit a {h}×{w} image",
                    patch.height, patch.width
                ))
            })?;
        Ok(Self {
            patch,
            row,
            col,
            on_covers,
        })
    }
}

impl Trigger for PatchTrigger {
    fn stamp(&self, image: &mut Vec<u8>, shape: Shape, stamp: Stamp, _rng: &mut ChaCha8Rng) {
        if stamp != Stamp::Cover || self.on_covers {
            apply(
                image,
                shape.width,
                shape.channels,
                &self.patch,
                self.row,
                self.col,
            );
        }
    }
}

/// Where the patch goes: a corner, or `"X,Y"` (column, row of its top-left pixel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Position {
    #[default]
    BottomRight,
    BottomLeft,
    TopRight,
    TopLeft,
    /// Top-left corner of the patch at column `x`, row `y`.
    At {
        x: usize,
        y: usize,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BottomRight => f.write_str("bottom-right"),
            Self::BottomLeft => f.write_str("bottom-left"),
            Self::TopRight => f.write_str("top-right"),
            Self::TopLeft => f.write_str("top-left"),
            Self::At { x, y } => write!(f, "{x},{y}"),
        }
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "attack.position = {text:?}: expected bottom-right, bottom-left, top-right, top-left or \"X,Y\""
            ))
        })
    }
}

impl Position {
    /// Parses `bottom-right`, `bottom-left`, `top-right`, `top-left` or `X,Y`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "bottom-right" => Self::BottomRight,
            "bottom-left" => Self::BottomLeft,
            "top-right" => Self::TopRight,
            "top-left" => Self::TopLeft,
            other => {
                let (x, y) = other.split_once(',')?;
                Self::At {
                    x: x.trim().parse().ok()?,
                    y: y.trim().parse().ok()?,
                }
            }
        })
    }

    /// The (row, column) of the patch's top-left pixel for a `ph`×`pw` patch on an `h`×`w`
    /// image, or `None` when the patch does not fit.
    pub fn origin(self, h: usize, w: usize, ph: usize, pw: usize) -> Option<(usize, usize)> {
        if ph > h || pw > w {
            return None;
        }
        let (row, col) = match self {
            Self::BottomRight => (h - ph, w - pw),
            Self::BottomLeft => (h - ph, 0),
            Self::TopRight => (0, w - pw),
            Self::TopLeft => (0, 0),
            Self::At { x, y } => (y, x),
        };
        (row.checked_add(ph)? <= h && col.checked_add(pw)? <= w).then_some((row, col))
    }
}

/// A patch: `height`×`width`×`channels` values and a mask of the same height×width.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub values: Vec<u8>,
    pub mask: Vec<bool>,
}

impl Patch {
    /// The user's trigger `image` when given, else a white square of side `size`.
    pub(super) fn of(
        size: usize,
        image: Option<&Path>,
        mask: Option<&Path>,
        channels: usize,
    ) -> Result<Self, AttackError> {
        match image {
            Some(path) => user_patch(path, mask, channels),
            None => Ok(Self::white_square(size, channels)),
        }
    }

    /// The classic white square.
    pub fn white_square(side: usize, channels: usize) -> Self {
        Self {
            height: side,
            width: side,
            channels,
            values: vec![255; side * side * channels],
            mask: vec![true; side * side],
        }
    }
}

/// Stamps `patch` onto an `h`×`w`×`c` image at `(row, col)`. The patch must have `c` channels.
pub fn apply(image: &mut [u8], w: usize, c: usize, patch: &Patch, row: usize, col: usize) {
    for py in 0..patch.height {
        for px in 0..patch.width {
            if !patch
                .mask
                .get(py * patch.width + px)
                .copied()
                .unwrap_or(false)
            {
                continue;
            }
            let dst = ((row + py) * w + col + px) * c;
            let src = (py * patch.width + px) * patch.channels;
            for ch in 0..c {
                if let (Some(d), Some(&s)) = (image.get_mut(dst + ch), patch.values.get(src + ch)) {
                    *d = s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_square_bottom_right_changes_exactly_the_block() {
        for (h, w, c) in [(28, 28, 1), (32, 32, 3), (10, 7, 3)] {
            let clean: Vec<u8> = (0..h * w * c).map(|i| (i * 7 % 200) as u8).collect();
            let mut img = clean.clone();
            let patch = Patch::white_square(3, c);
            let (row, col) = Position::BottomRight.origin(h, w, 3, 3).unwrap();
            apply(&mut img, w, c, &patch, row, col);
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        let i = (y * w + x) * c + ch;
                        if y >= h - 3 && x >= w - 3 {
                            assert_eq!(img[i], 255);
                        } else {
                            assert_eq!(img[i], clean[i]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn positions() {
        assert_eq!(Position::TopLeft.origin(28, 28, 3, 3), Some((0, 0)));
        assert_eq!(Position::TopRight.origin(28, 28, 3, 3), Some((0, 25)));
        assert_eq!(Position::BottomLeft.origin(28, 28, 3, 3), Some((25, 0)));
        assert_eq!(
            Position::parse("4,5").unwrap().origin(28, 28, 3, 3),
            Some((5, 4))
        );
        assert_eq!(Position::parse("26,5").unwrap().origin(28, 28, 3, 3), None);
        assert_eq!(Position::parse("middle"), None);
    }

    #[test]
    fn mask_limits_the_patch() {
        let mut img = vec![0u8; 4 * 4];
        let patch = Patch {
            height: 2,
            width: 2,
            channels: 1,
            values: vec![9, 8, 7, 6],
            mask: vec![true, false, false, true],
        };
        apply(&mut img, 4, 1, &patch, 1, 1);
        assert_eq!(img, [0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0]);
    }
}
