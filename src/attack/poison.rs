//! Applying an attack along its plan: the poisoned training set (given labels, poisoned and
//! cover images) and the triggered test set for the attack success rate.

use super::TargetMode;
use super::{Attack, AttackError, PoisonPlan, Role};
use crate::data::{Dataset, Origin, SplitDataset};

/// A poisoned training set with its ground truth, and the triggered test set for the attack
/// success rate.
#[derive(Clone, Debug)]
pub struct PoisonedData {
    /// The training set as the defender receives it (given labels).
    pub train: Dataset,
    pub plan: PoisonPlan,
    /// Triggered test images labelled with the attacker's intended label.
    pub triggered_test: Dataset,
    /// For each triggered test image, its index in the clean test split.
    pub triggered_test_source: Vec<usize>,
}

/// Applies `attack` to a clean dataset.
pub fn poison(clean: &SplitDataset, attack: &Attack) -> Result<PoisonedData, AttackError> {
    let plan = PoisonPlan::draw(&clean.train.labels, clean.train.num_classes(), &attack.plan)?;
    poison_with(clean, attack, plan, &[])
}

/// Applies `attack` to a clean dataset along `plan` (drawn by the caller for `attack.plan`),
/// starting the poisoned samples from `hardened` images (one per entry of the plan's
/// `poisoned`, in order; LC's adversarially perturbed ones) instead of the clean ones when given.
pub fn poison_with(
    clean: &SplitDataset,
    attack: &Attack,
    plan: PoisonPlan,
    hardened: &[Vec<u8>],
) -> Result<PoisonedData, AttackError> {
    if clean.train.shape != attack.shape {
        return Err(AttackError::Invalid(format!(
            "the attack was built for {:?} images but the dataset has {:?}",
            attack.shape, clean.train.shape
        )));
    }
    let k = clean.train.num_classes();
    if !hardened.is_empty() && hardened.len() != plan.poisoned.len() {
        return Err(AttackError::Invalid(format!(
            "{} hardened images for {} poisoned samples",
            hardened.len(),
            plan.poisoned.len()
        )));
    }
    let mut train = clean.train.clone();
    train.labels.clone_from(&plan.given_labels);
    let mut changed = 0usize;
    for (i, role) in plan.roles.iter().enumerate() {
        let (new, note) = match role {
            Role::Clean => continue,
            Role::Poison => {
                let base = plan
                    .poisoned
                    .binary_search(&i)
                    .ok()
                    .and_then(|k| hardened.get(k))
                    .map(Vec::as_slice)
                    .or_else(|| clean.train.image(i));
                (base.map(|x| attack.poison_image(x, i)), "poisoned")
            }
            Role::Cover => (
                clean.train.image(i).map(|x| attack.cover_image(x, i)),
                "cover",
            ),
        };
        if let (Some(new), Some(slot)) = (new, train.image_mut(i)) {
            if *role == Role::Poison && new.as_slice() != &*slot {
                changed += 1;
            }
            slot.copy_from_slice(&new);
        }
        if let Some(origin) = train.origins.get_mut(i) {
            *origin = Origin::Derived {
                from: Box::new(origin.clone()),
                note: note.to_owned(),
            };
        }
    }

    // A trigger that leaves every poisoned image as it was only relabels: not a backdoor.
    if !plan.poisoned.is_empty() && changed == 0 {
        return Err(AttackError::Invalid(format!(
            "the {} trigger changes no pixel of the {} poisoned images (e.g. a black patch on a black corner, a zero size or strength); choose another trigger",
            attack.kind.name(),
            plan.poisoned.len()
        )));
    }
    let target = attack.plan.target;
    let mut triggered_test = Dataset::empty(clean.test.shape, clean.test.class_names.clone());
    let mut triggered_test_source = Vec::new();
    for (i, &y) in clean.test.labels.iter().enumerate() {
        let source = attack.plan.sources.as_ref().is_none_or(|s| s.contains(&y));
        let intended = match attack.plan.mode {
            // The ASR of a source-specific attack is measured on its source classes.
            TargetMode::AllToOne if y == target || !source => continue,
            TargetMode::AllToOne => target,
            TargetMode::AllToAll => (y + 1) % k as u16,
        };
        let (Some(image), Some(origin)) = (clean.test.image(i), clean.test.origins.get(i)) else {
            continue;
        };
        triggered_test.push(
            &attack.test_image(image, i),
            intended,
            Origin::Derived {
                from: Box::new(origin.clone()),
                note: "triggered".to_owned(),
            },
        );
        triggered_test_source.push(i);
    }
    Ok(PoisonedData {
        train,
        plan,
        triggered_test,
        triggered_test_source,
    })
}
