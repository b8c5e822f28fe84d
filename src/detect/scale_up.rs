//! **SCALE-UP** (Guo et al., ICLR 2023): amplify every pixel value and see whether the prediction
//! holds. A learned trigger dominates the prediction even when the image is scaled up (the
//! "scaled prediction consistency" of poisoned inputs is high); a clean image's prediction
//! usually changes.
//!
//! Per sample: the prediction on `min(255, n · x)` for n in [`SCALES`] (the reference codes'
//! `scale_set = [3, 5, 7, 9, 11]`), SPC = the share of them equal to the prediction on `x`.
//! Score = SPC (higher = more suspicious). Published rule: SPC > [`PAPER_THRESHOLD`] (the
//! reference codes' default T = 0.5); the calibrated rule uses the references' SPC like the other
//! detectors. On images whose strokes are already saturated (white digits on black), scaling
//! changes little and clean SPC is high too: the references show it, and the calibrated threshold
//! rises with them.

use super::features::Cancelled;
use super::probe::{self, Prober, argmax_rows};
use super::{DetectError, DetectInput, Detection, Detector};
use crate::config::DetectorKind;
use crate::data::Dataset;

/// Amplification factors.
pub const SCALES: [u16; 5] = [3, 5, 7, 9, 11];
/// The reference codes' threshold on SPC.
pub const PAPER_THRESHOLD: f64 = 0.5;

/// Scaled prediction consistency of every image of `data`, given the model's predictions on the
/// unscaled images.
pub fn consistency(
    prober: &Prober,
    data: &Dataset,
    predicted: &[u16],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>, Cancelled> {
    let n = data.len();
    let k = SCALES.len();
    let total = n * k;
    let probs = prober.probabilities(
        data.shape,
        total,
        &mut |j, out| {
            let Some(x) = data.image(j / k) else {
                return;
            };
            let factor = SCALES[j % k];
            for (o, &v) in out.iter_mut().zip(x) {
                *o = u8::try_from((u16::from(v) * factor).min(255)).unwrap_or(u8::MAX);
            }
        },
        &mut |done| progress(done, total),
    )?;
    let scaled = argmax_rows(&probs);
    Ok((0..n)
        .map(|i| {
            let same = scaled[i * k..(i + 1) * k]
                .iter()
                .filter(|&&c| predicted.get(i).is_some_and(|&p| usize::from(p) == c))
                .count();
            same as f64 / k as f64
        })
        .collect())
}

/// The SCALE-UP detector: reads the consistencies computed before the detectors run.
#[derive(Clone, Debug, Default)]
pub struct ScaleUp;

impl Detector for ScaleUp {
    fn kind(&self) -> DetectorKind {
        DetectorKind::ScaleUp
    }

    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError> {
        let (train, reference) = probe::scores(
            input,
            input.probes.and_then(|p| probe::pair(&p.scale_up)),
            "SCALE-UP",
        )?;
        let mut out = Detection::new(input.len());
        out.scores = train.to_vec();
        out.reference_scores = reference.to_vec();
        out.flags = train.iter().map(|&s| s > PAPER_THRESHOLD).collect();
        out.note("scales", SCALES.len());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Probes;
    use crate::detect::testing::planted;

    /// Planted probe outcome: clean predictions change under amplification (SPC 0–0.4), the
    /// poisons' hold (SPC 1). The published rule flags exactly the poisons; the references carry
    /// the clean distribution for the calibrated rule.
    #[test]
    fn flags_consistent_predictions() {
        let p = planted(2, 3.0);
        let fifths = |i: usize| ((i * 31) % 3) as f64 / 5.0;
        let train: Vec<f64> = (0..p.labels.len())
            .map(|i| if p.poisoned[i] { 1.0 } else { fifths(i) })
            .collect();
        let reference: Vec<f64> = (0..p.reference_labels.len()).map(fifths).collect();
        let probes = Probes {
            scale_up: Some((train, reference.clone())),
            ..Probes::default()
        };
        let mut input = p.input(None);
        input.probes = Some(&probes);
        let out = ScaleUp.detect(&input).unwrap();
        assert_eq!(p.rates(&out.flags), (1.0, 0.0));
        assert_eq!(out.reference_scores, reference);
        // Scores that do not cover the references are refused.
        let short = Probes {
            scale_up: Some((vec![0.0; p.labels.len()], vec![0.0; 3])),
            ..Probes::default()
        };
        input.probes = Some(&short);
        assert!(ScaleUp.detect(&input).is_err());
    }
}
