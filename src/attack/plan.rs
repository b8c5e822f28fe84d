//! The poisoning plan: which training samples are poisoned (or cover/cross samples), their given
//! labels, and the ground truth kept for scoring.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::AttackError;
use super::TargetMode;

/// What the attack did to one training sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Untouched.
    Clean,
    /// Carries the trigger (and, for dirty-label attacks, the attacker's label).
    Poison,
    /// Carries a (partial or noisy) trigger but keeps its label: WaNet cross samples,
    /// Adaptive-Blend cover samples. Not counted as poisoned.
    Cover,
}

impl Role {
    /// The manifest's name for the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Poison => "poison",
            Self::Cover => "cover",
        }
    }
}

/// Which samples an attack touches and how it relabels them.
#[derive(Clone, Debug, PartialEq)]
pub struct PoisonPlan {
    /// One role per training sample.
    pub roles: Vec<Role>,
    /// The labels of the clean set.
    pub original_labels: Vec<u16>,
    /// The labels the (poisoned) training set carries.
    pub given_labels: Vec<u16>,
    /// Indices of the poisoned samples, ascending.
    pub poisoned: Vec<usize>,
    /// Indices of the cover / cross samples, ascending.
    pub covers: Vec<usize>,
}

/// What the plan needs to know about the attack.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSpec {
    pub ratio: f64,
    pub target: u16,
    pub mode: TargetMode,
    /// Clean-label attacks poison target-class samples and keep their labels.
    pub clean_label: bool,
    /// Cover / cross samples per poisoned sample.
    pub cover_ratio: f64,
    /// Source-specific attacks (TaCT): poisons come only from these classes, covers only from
    /// the classes that are neither a source nor the target.
    pub sources: Option<Vec<u16>>,
    pub seed: u64,
}

impl PoisonPlan {
    /// The ground-truth mask: `true` for poisoned samples.
    pub fn mask(&self) -> Vec<bool> {
        self.roles.iter().map(|r| *r == Role::Poison).collect()
    }

    /// Draws the plan for a training set with `labels` over `num_classes` classes.
    ///
    /// `round(ratio·N)` samples are poisoned. Dirty-label all-to-one attacks draw them from the
    /// non-target samples (BackdoorBench draws from all samples; a target-class sample relabelled
    /// to its own class is no poison), all-to-all from every sample, clean-label attacks from the
    /// target class. Cover samples are drawn from the rest. A ratio that cannot be met is an
    /// error, never a silent clamp.
    pub fn draw(labels: &[u16], num_classes: usize, spec: &PlanSpec) -> Result<Self, AttackError> {
        let n = labels.len();
        if usize::from(spec.target) >= num_classes {
            return Err(AttackError::Invalid(format!(
                "attack.target = {} but the dataset has {num_classes} classes (0..={})",
                spec.target,
                num_classes.saturating_sub(1)
            )));
        }
        if spec.clean_label && spec.mode == TargetMode::AllToAll {
            return Err(AttackError::Invalid(
                "clean-label attacks are all-to-one; set attack.mode = \"all-to-one\"".to_owned(),
            ));
        }
        let n_poison = (spec.ratio * n as f64).round() as usize;
        if n_poison == 0 {
            return Err(AttackError::Invalid(format!(
                "attack.ratio = {} poisons round({} · {n}) = 0 samples; raise the ratio",
                spec.ratio, spec.ratio
            )));
        }
        if let Some(sources) = &spec.sources {
            if spec.mode == TargetMode::AllToAll {
                return Err(AttackError::Invalid(
                    "a source-specific attack is all-to-one; set attack.mode = \"all-to-one\""
                        .to_owned(),
                ));
            }
            if let Some(&bad) = sources.iter().find(|&&c| usize::from(c) >= num_classes) {
                return Err(AttackError::Invalid(format!(
                    "attack.source_classes names class {bad} but the dataset has {num_classes} classes (0..={})",
                    num_classes.saturating_sub(1)
                )));
            }
        }
        let is_source = |y: u16| {
            spec.sources
                .as_ref()
                .is_none_or(|sources| sources.contains(&y))
        };
        let candidates: Vec<usize> = (0..n)
            .filter(|&i| {
                let Some(&y) = labels.get(i) else {
                    return false;
                };
                let is_target = y == spec.target;
                match (spec.clean_label, spec.mode) {
                    (true, _) => is_target,
                    (false, TargetMode::AllToOne) => !is_target && is_source(y),
                    (false, TargetMode::AllToAll) => true,
                }
            })
            .collect();
        if n_poison > candidates.len() {
            let pool = if spec.clean_label {
                format!("target class {} has only {}", spec.target, candidates.len())
            } else if spec.sources.is_some() {
                format!("the source classes have only {}", candidates.len())
            } else {
                format!(
                    "only {} samples are outside the target class",
                    candidates.len()
                )
            };
            return Err(AttackError::Invalid(format!(
                "attack.ratio = {} needs {n_poison} poisoned samples but {pool}",
                spec.ratio
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut shuffled = candidates;
        shuffled.shuffle(&mut rng);
        let mut poisoned: Vec<usize> = shuffled.into_iter().take(n_poison).collect();
        poisoned.sort_unstable();

        let mut roles = vec![Role::Clean; n];
        for &i in &poisoned {
            if let Some(r) = roles.get_mut(i) {
                *r = Role::Poison;
            }
        }
        let n_cover = (spec.cover_ratio * n_poison as f64).round() as usize;
        // Source-specific covers come from the other classes: they carry the trigger and keep
        // their label, teaching the model that the trigger alone does not mean the target.
        let cover_class = |i: usize| {
            spec.sources.is_none()
                || labels
                    .get(i)
                    .is_some_and(|&y| y != spec.target && !is_source(y))
        };
        let mut rest: Vec<usize> = (0..n)
            .filter(|&i| roles.get(i) == Some(&Role::Clean) && cover_class(i))
            .collect();
        if n_cover > rest.len() {
            return Err(AttackError::Invalid(format!(
                "{n_cover} cover samples requested but only {} clean samples remain",
                rest.len()
            )));
        }
        rest.shuffle(&mut rng);
        let mut covers: Vec<usize> = rest.into_iter().take(n_cover).collect();
        covers.sort_unstable();
        for &i in &covers {
            if let Some(r) = roles.get_mut(i) {
                *r = Role::Cover;
            }
        }

        let k = num_classes as u16;
        let given_labels = labels
            .iter()
            .zip(&roles)
            .map(|(&y, role)| match (role, spec.clean_label, spec.mode) {
                (Role::Poison, false, TargetMode::AllToOne) => spec.target,
                (Role::Poison, false, TargetMode::AllToAll) => (y + 1) % k,
                _ => y,
            })
            .collect();
        Ok(Self {
            roles,
            original_labels: labels.to_vec(),
            given_labels,
            poisoned,
            covers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<u16> {
        (0..1000).map(|i| (i % 10) as u16).collect()
    }

    fn spec(ratio: f64, seed: u64) -> PlanSpec {
        PlanSpec {
            ratio,
            target: 0,
            mode: TargetMode::AllToOne,
            clean_label: false,
            cover_ratio: 0.0,
            sources: None,
            seed,
        }
    }

    #[test]
    fn exact_count_no_duplicates_seeded() {
        let l = labels();
        for ratio in [0.005, 0.01, 0.05, 0.1234] {
            let p = PoisonPlan::draw(&l, 10, &spec(ratio, 0)).unwrap();
            assert_eq!(p.poisoned.len(), (ratio * 1000.0_f64).round() as usize);
            let mut d = p.poisoned.clone();
            d.dedup();
            assert_eq!(d.len(), p.poisoned.len());
            assert!(p.poisoned.iter().all(|&i| l[i] != 0));
            assert!(p.poisoned.iter().all(|&i| p.given_labels[i] == 0));
            assert_eq!(p.mask().iter().filter(|&&m| m).count(), p.poisoned.len());
            assert_eq!(PoisonPlan::draw(&l, 10, &spec(ratio, 0)).unwrap(), p);
            assert_ne!(
                PoisonPlan::draw(&l, 10, &spec(ratio, 1)).unwrap().poisoned,
                p.poisoned
            );
        }
    }

    #[test]
    fn all_to_all_shifts_labels() {
        let l = labels();
        let mut s = spec(0.05, 2);
        s.mode = TargetMode::AllToAll;
        let p = PoisonPlan::draw(&l, 10, &s).unwrap();
        for &i in &p.poisoned {
            assert_eq!(p.given_labels[i], (l[i] + 1) % 10);
        }
    }

    #[test]
    fn clean_label_uses_the_target_class_and_refuses_too_much() {
        let l = labels();
        let mut s = spec(0.05, 0);
        s.clean_label = true;
        let p = PoisonPlan::draw(&l, 10, &s).unwrap();
        assert!(p.poisoned.iter().all(|&i| l[i] == 0));
        assert_eq!(p.given_labels, l);
        s.ratio = 0.2; // 200 > the 100 samples of class 0
        let err = PoisonPlan::draw(&l, 10, &s).unwrap_err().to_string();
        assert!(
            err.contains("needs 200") && err.contains("has only 100"),
            "{err}"
        );
    }

    #[test]
    fn covers_are_separate_and_keep_labels() {
        let l = labels();
        let mut s = spec(0.02, 0);
        s.cover_ratio = 2.0;
        let p = PoisonPlan::draw(&l, 10, &s).unwrap();
        assert_eq!(p.covers.len(), 40);
        assert!(p.covers.iter().all(|i| !p.poisoned.contains(i)));
        assert!(p.covers.iter().all(|&i| p.given_labels[i] == l[i]));
    }

    #[test]
    fn zero_poisons_and_bad_target_are_errors() {
        let l = labels();
        assert!(PoisonPlan::draw(&l, 10, &spec(0.0001, 0)).is_err());
        let mut s = spec(0.01, 0);
        s.target = 10;
        assert!(PoisonPlan::draw(&l, 10, &s).is_err());
    }
}

#[cfg(test)]
mod source_specific {
    use super::*;

    #[test]
    fn poisons_come_from_the_sources_and_covers_from_the_other_classes() {
        let labels: Vec<u16> = (0..2000).map(|i| (i % 10) as u16).collect();
        let spec = PlanSpec {
            ratio: 0.02,
            target: 0,
            mode: TargetMode::AllToOne,
            clean_label: false,
            cover_ratio: 1.0,
            sources: Some(vec![1, 2]),
            seed: 3,
        };
        let p = PoisonPlan::draw(&labels, 10, &spec).unwrap();
        assert_eq!(p.poisoned.len(), 40);
        assert_eq!(p.covers.len(), 40);
        assert!(p.poisoned.iter().all(|&i| matches!(labels[i], 1 | 2)));
        assert!(p.poisoned.iter().all(|&i| p.given_labels[i] == 0));
        assert!(p.covers.iter().all(|&i| !matches!(labels[i], 0..=2)));
        assert!(p.covers.iter().all(|&i| p.given_labels[i] == labels[i]));
        // More poisons than the sources hold, or a source outside the dataset: refused.
        let mut greedy = spec.clone();
        greedy.ratio = 0.25;
        assert!(PoisonPlan::draw(&labels, 10, &greedy).is_err());
        let mut outside = spec;
        outside.sources = Some(vec![12]);
        assert!(PoisonPlan::draw(&labels, 10, &outside).is_err());
    }
}
