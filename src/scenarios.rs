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
settings). Look at Beatrix and SCAn: Beatrix finds every poison in both models, SCAn 97 % (SGD) \
and 85 % (SAM), each flagging under 1 % of clean images; the consensus finds 99 % / 88 %, and in \
the gallery ranked by either the top tiles show the patch. AC finds 84 % with SGD but 16 % with \
SAM: the same data, another model, another feature space. SS and loss find almost nothing here \
— a learned backdoor fits its label, so the loss has nothing to show. The window opens on the \
fused models (flagged where either model flags): consensus 99 %.";

const LOOK_WEAK: &str = "Only 10 of the 2 000 digits are poisoned (0.5 %, the BadNets patch). \
Neither model learns the backdoor in 3 epochs (attack success rate 0.9 % SGD, 2.0 % SAM): the \
feature-space detectors have no backdoor to see, and the run says so in its warning. What is left \
is that the models do not fit 10 relabelled digits: the loss detector flags 8 of 10 (SGD) and all \
10 (SAM). SAM, which refuses to memorise them, makes them stand out in feature space too: SPECTRE \
2 → 6 of 10, AC 2 → 5, the consensus 4 → 8. Switch the gallery to the loss ranking, and compare \
the SGD, SAM and fused models. (Measured on these settings, seed 0; one seed, so a poison or two \
either way is noise.)";

const LOOK_FAINT: &str = "20 digits blended with noise at α 0.05 — look at a flagged tile: the \
trigger is hard to see. Neither model learns it (attack success rate 0.5 % SGD, 0.7 % SAM), so \
this is a hunt for images whose label the model does not believe: the loss detector finds 95 % \
(SGD) and 90 % (SAM). SAM makes them stand out in feature space as well: SPECTRE 40 → 80 %, the \
consensus 60 → 85 % (fused 85 %). AC goes the other way (35 → 20 %): one seed and 20 poisons, so \
a few images either way is noise.";

const LOOK_TACT: &str = "TaCT poisons only digits of class 1 (60 of them go to 0 with the \
patch) and adds 60 cover digits of other classes that carry the same patch and keep their label, \
so \"patch means 0\" is no longer true and feature-space separation is harder. Both models learn \
it (attack success on 1s: 95.5 % SGD, 97.6 % SAM). In the SGD model SCAn, built for \
source-specific attacks, and SPECTRE find nearly every poison (100 %, 98 %), SS half; in the SAM \
model only SCAn does (98 %), so the consensus, which needs two detectors to agree, falls from \
98 % to 3 %. Rank the gallery by SCAn, or look at the fused models (98 %).";

const LOOK_LC: &str = "Label-consistent poisons keep their true label (0): the attacker \
first pushes 100 digits of class 0 with PGD noise against a clean model (the run trains it \
first), then stamps checkerboards in the corners. A label audit finds nothing — the loss \
detector flags none — and the models barely learn the backdoor in 3 epochs (attack success \
12.2 % SGD, 17.7 % SAM). Yet SCAn finds the poisons (91 % SGD, 100 % SAM): the PGD noise itself \
sets them apart in feature space; in the SAM model Beatrix finds 79 % too, and so does the \
consensus. Look at the enlarged tiles: the noise and the corner squares are visible.";

const LOOK_NONE: &str = "No attack: every flag is a false positive. On these 2 000 clean \
digits the calibrated decisions flag at most about 1 % per detector (SGD model: loss 1.3 % — its \
decision always takes the 1 % of highest losses —, AC 0.4 %, SPECTRE 0.2 %, SS and Beatrix \
0.15 %, SCAn none), and the consensus 7 images (0.35 %; SAM model: 5). Look at what the top of a \
ranking holds: badly written or ambiguous digits, not triggers. This is the baseline to compare \
every other scenario with — a detector that flags far more than 1 % on clean data is reading \
the data, not a backdoor.";

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
