//! **STRIP** (Gao et al., ACSAC 2019): superimpose a sample on clean images and look at how
//! uncertain the model becomes. A clean image blended with another image mostly loses its class,
//! so the predictions spread out (high entropy); an image carrying a learned trigger keeps
//! pointing at the target class whatever it is blended with (low entropy).
//!
//! Per sample: `OVERLAYS` superimpositions `min(255, x + r)` (the paper's `addWeighted(x, 1, r,
//! 1, 0)`) with clean references `r` drawn with a seeded generator (never the sample itself),
//! the Shannon entropy of each softmax output, averaged. Score = −entropy (higher = more
//! suspicious). Published rule, also used as the calibrated one: flag below the references'
//! entropy at a 1 % false rejection rate (the paper picks the threshold from the clean
//! entropies' distribution the same way).
//! The paper uses 100 overlays; 20 keep the cost at 20 forward passes per training image.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::decision::{flags_above, reference_threshold};
use super::features::Cancelled;
use super::probe::{self, Prober};
use super::{DetectError, DetectInput, Detection, Detector};
use crate::config::DetectorKind;
use crate::data::Dataset;

/// Superimpositions per sample.
pub const OVERLAYS: usize = 20;
/// The published rule's false rejection rate on clean inputs.
pub const FALSE_REJECTION: f64 = 0.01;

/// Mean entropy (nats) of the model's outputs on `OVERLAYS` superimpositions of every image of
/// `data` with images of `pool`. With `same` (data is the pool) a sample is never blended with
/// itself.
pub fn entropies(
    prober: &Prober,
    data: &Dataset,
    pool: &Dataset,
    same: bool,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>, Cancelled> {
    let n = data.len();
    let m = pool.len();
    if n == 0 || m == 0 || (same && m < 2) {
        return Ok(vec![f64::NAN; n]);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5721_9000);
    let partners: Vec<usize> = (0..n * OVERLAYS)
        .map(|k| {
            let i = k / OVERLAYS;
            loop {
                let r = rng.random_range(0..m);
                if !(same && r == i) {
                    break r;
                }
            }
        })
        .collect();
    let total = n * OVERLAYS;
    let probs = prober.probabilities(
        data.shape,
        total,
        &mut |k, out| {
            let (Some(x), Some(r)) = (data.image(k / OVERLAYS), pool.image(partners[k])) else {
                return;
            };
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(r) {
                *o = a.saturating_add(b);
            }
        },
        &mut |done| progress(done, total),
    )?;
    let entropy = |row: ndarray::ArrayView1<f32>| -> f64 {
        row.iter()
            .map(|&p| f64::from(p))
            .filter(|&p| p > 0.0)
            .map(|p| -p * p.ln())
            .sum()
    };
    Ok(probs
        .rows()
        .into_iter()
        .map(entropy)
        .collect::<Vec<_>>()
        .chunks(OVERLAYS)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect())
}

/// The STRIP detector: reads the entropies computed before the detectors run.
#[derive(Clone, Debug, Default)]
pub struct Strip;

impl Detector for Strip {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Strip
    }

    fn detect(&self, input: &DetectInput) -> Result<Detection, DetectError> {
        let (train, reference) = probe::scores(
            input,
            input.probes.and_then(|p| probe::pair(&p.strip)),
            "STRIP",
        )?;
        let mut out = Detection::new(input.len());
        out.scores = train.iter().map(|e| -e).collect();
        out.reference_scores = reference.iter().map(|e| -e).collect();
        if let Some(threshold) = reference_threshold(&out.reference_scores, 1.0 - FALSE_REJECTION) {
            out.flags = flags_above(&out.scores, threshold);
            out.note("entropy_threshold", -threshold);
            // The published rule is already calibrated on the references. The shared outlier
            // floor (a robust z-score over the training scores) does not suit this score: the
            // entropy is bounded below by 0 and the poisons sit at the bound, within a few MADs
            // of the clean median (measured: it flagged nothing where this rule found every
            // poison at 1.9 % FPR).
            out.calibrated_flags = Some(out.flags.clone());
        }
        out.note("overlays", OVERLAYS);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Probes;
    use crate::detect::testing::planted;

    /// Planted probe outcome: clean samples and references spread over entropies 0.8–2.0, the 30
    /// poisons near 0 (their prediction survives every superimposition).
    #[test]
    fn flags_the_low_entropy_poisons_and_about_one_percent_of_clean() {
        let p = planted(1, 3.0);
        let spread = |i: usize| 0.8 + 1.2 * ((i * 7919) % 1000) as f64 / 1000.0;
        let train: Vec<f64> = (0..p.labels.len())
            .map(|i| if p.poisoned[i] { 0.01 } else { spread(i) })
            .collect();
        let reference: Vec<f64> = (0..p.reference_labels.len())
            .map(|i| spread(i * 13 + 5))
            .collect();
        let probes = Probes {
            strip: Some((train, reference)),
            ..Probes::default()
        };
        let mut input = p.input(None);
        input.probes = Some(&probes);
        let out = Strip.detect(&input).unwrap();
        let (tpr, fpr) = p.rates(&out.flags);
        assert_eq!(tpr, 1.0);
        assert!(fpr < 0.03, "FPR {fpr}");
        assert_eq!(out.calibrated_flags.as_ref(), Some(&out.flags));
        // Without the probes it says so instead of guessing.
        assert!(Strip.detect(&p.input(None)).is_err());
    }
}
