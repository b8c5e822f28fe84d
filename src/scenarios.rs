//! Ready experiments for teaching (the window's Scenarios menu): each a config in
//! `sample_configs/scenarios/`, small enough to run in a couple of minutes on two cores, with a
//! paragraph shown beside its results — what to look for, and why. The paragraphs state what was
//! measured on these settings (`docs/scenarios.md` has the numbers and the command), not hopes.

use std::path::Path;

use crate::config::{ConfigError, Experiment};

/// One ready experiment.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// The config's file stem in `sample_configs/scenarios/`.
    pub id: &'static str,
    pub title: &'static str,
    /// Whether it is meant as an SGD-vs-SAM comparison (else one SAM run).
    pub compare: bool,
    /// What to look for, and why.
    pub look_for: &'static str,
    /// The config's text.
    pub config: &'static str,
}

impl Scenario {
    /// The scenario's experiment.
    pub fn experiment(&self) -> Result<Experiment, ConfigError> {
        let path = format!("sample_configs/scenarios/{}.toml", self.id);
        Experiment::from_toml(Path::new(&path), self.config, &[])
    }
}

macro_rules! scenario_config {
    ($id:literal) => {
        include_str!(concat!("../sample_configs/scenarios/", $id, ".toml"))
    };
}

/// Every scenario, in the menu's order.
pub const ALL: [Scenario; 6] = [
    Scenario {
        id: "strong_badnets",
        title: "Strong BadNets: both models learn it, the detectors find it",
        compare: true,
        look_for: LOOK_STRONG,
        config: scenario_config!("strong_badnets"),
    },
    Scenario {
        id: "weak_badnets",
        title: "A weak attack: where SAM and the loss detector matter",
        compare: true,
        look_for: LOOK_WEAK,
        config: scenario_config!("weak_badnets"),
    },
    Scenario {
        id: "faint_blend",
        title: "A faint blend (α 0.05, 1 %)",
        compare: true,
        look_for: LOOK_FAINT,
        config: scenario_config!("faint_blend"),
    },
    Scenario {
        id: "tact_scan",
        title: "TaCT: a source-specific attack only SCAn finds",
        compare: true,
        look_for: LOOK_TACT,
        config: scenario_config!("tact_scan"),
    },
    Scenario {
        id: "clean_label_lc",
        title: "Clean-label LC: poisons that keep their label",
        compare: false,
        look_for: LOOK_LC,
        config: scenario_config!("clean_label_lc"),
    },
    Scenario {
        id: "no_attack",
        title: "No attack: what false positives look like",
        compare: true,
        look_for: LOOK_NONE,
        config: scenario_config!("no_attack"),
    },
];

const LOOK_STRONG: &str = "100 of the 2 000 digits carry a white corner patch and say \"0\". \
Both models learn the backdoor (attack success rate 99.8 % SGD, 99.4 % SAM, measured on these \
settings). Look at SCAn and Beatrix: they find (nearly) every poison in both models at about 1–2 % \
of clean images flagged, and so does the consensus; in the gallery ranked by either, the top tiles \
all show the patch. AC finds 86 % with SGD but 12 % with SAM: the same data, another model, \
another feature space. SS, SPECTRE and loss find almost nothing here — a learned backdoor fits \
its label, so the loss has nothing to show.";

const LOOK_WEAK: &str = "Only 10 of the 2 000 digits are poisoned (0.5 %, the BadNets patch). \
Neither model learns the backdoor in 3 epochs (attack success rate 0.9 % SGD, 2.0 % SAM): the \
feature-space detectors have no backdoor to see, and the run says so in its warning. What is left \
is that the models do not fit 10 relabelled digits: the loss detector flags 9 of 10 (SGD) and 8 \
(SAM). SAM, which refuses to memorise them, makes the rest stand out: SPECTRE 1 to 6 of 10, AC \
0 to 3, the consensus 2 to 6. Switch the gallery to the loss ranking and the fused model to see it. \
(Measured on these settings, seed 0; one seed, so a point or two either way is noise.)";

const LOOK_FAINT: &str = "20 digits blended with noise at α 0.05 — look at a flagged tile: the \
trigger is hard to see. Neither model learns it (attack success rate 0.5 % SGD, 0.7 % SAM), so \
this is again a hunt for images whose label the model does not believe: the loss detector finds \
85 % (SGD) and 65 % (SAM), SPECTRE 35 % in both, the feature-space rest nothing. Here SAM does \
not help — say so when you teach it; the fused model (both rankings averaged) finds 60 % at \
the consensus, more than either arm alone (35 % / 30 %).";

const LOOK_TACT: &str = "TaCT poisons only digits of class 1 (60 of them go to 0 with the \
patch) and adds 60 cover digits of other classes that carry the same patch and keep their label, \
so \"patch means 0\" is no longer true and feature-space separation fails. Both models learn it \
(attack success on 1s: 95.5 % SGD, 97.6 % SAM). Only SCAn, built for source-specific attacks, \
finds every poison in both models; SS finds 55 % with SGD and none with SAM; the consensus \
needs two detectors to agree and so misses them in the SAM model. Rank the gallery by SCAn.";

const LOOK_LC: &str = "Label-consistent poisons keep their true label (0): the attacker \
first pushes 100 digits of class 0 with PGD noise against a clean model (the run trains it \
first), then stamps checkerboards in the corners. A label audit finds nothing — the loss \
detector flags none — and the model barely learns the backdoor in 3 epochs (attack success \
17.7 %). Yet SCAn finds every poison (100 %, SAM model): the PGD noise itself sets them apart \
in feature space. Look at the enlarged tiles: the noise and the corner squares are visible.";

const LOOK_NONE: &str = "No attack: every flag is a false positive. On these 2 000 clean \
digits the calibrated decisions flag what they promise, about 1 % per detector (Beatrix 2.2 %, \
loss 1.4 %, SPECTRE 1.3 %, SS 0.5 %, AC 0.3 %, SCAn none, SGD model), and the consensus 13 \
images (0.65 %) in each model. Look at what the top of a ranking holds: badly written or \
ambiguous digits, not triggers. This is the baseline to compare every other scenario with — a \
detector that flags far more than 1 % on clean data is reading the data, not a backdoor.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_a_valid_small_config_with_its_paragraph() {
        let mut ids = std::collections::HashSet::new();
        for s in ALL {
            assert!(ids.insert(s.id), "{} twice", s.id);
            let config = s.experiment().unwrap();
            config.validate().unwrap();
            // Small enough for a couple of minutes on two cores.
            assert!(
                config.dataset.limit > 0 && config.dataset.limit <= 2000,
                "{}",
                s.id
            );
            assert!(config.train.epochs <= 3, "{}", s.id);
            assert!(s.look_for.len() > 200, "{}: the paragraph", s.id);
            let on_disk =
                std::fs::read_to_string(format!("sample_configs/scenarios/{}.toml", s.id)).unwrap();
            assert_eq!(on_disk, s.config);
        }
        assert!(ALL.len() >= 6);
        assert!(ALL.iter().any(|s| s.experiment().unwrap().attack.is_none()));
    }
}
