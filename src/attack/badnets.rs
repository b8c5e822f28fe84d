//! **BadNets** (Gu et al., 2017): stamp a small patch onto the image.
//!
//! Defaults follow BackdoorBench: a 3×3 white square (255 on every channel) at the bottom-right
//! corner (rows and columns H−3..H−1). The patch may be placed at any corner or at an explicit
//! (x, y), and a user-supplied trigger image with a mask may replace the square
//! (`kind = "image"`, or `trigger_image` with `kind = "badnets"`): pixels where the mask is set
//! take the trigger's value, all others stay as they are.

/// Where the patch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
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
