//! Grid reading, cell names and resumption.

use super::*;

#[test]
fn grid_expands_cells_and_configs() {
    let text = r#"
seeds = [0, 1]
[base.train]
epochs = 2
[[attack]]
label = "BadNets"
kind = "badnets"
patch_size = 4
ratios = [0.01, 0.05]
"#;
    let grid: Grid = toml::from_str(text).unwrap();
    let cells = grid.cells();
    assert_eq!(cells.len(), 4);
    let e = grid.experiment(&cells[3]).unwrap();
    let attack = e.attack.unwrap();
    let crate::config::TriggerConfig::Badnets(badnets) = &attack.trigger else {
        panic!("{attack:?}")
    };
    assert_eq!(
        (attack.ratio, attack.seed, badnets.patch_size),
        (0.05, 1, 4)
    );
    assert_eq!((e.train.seed, e.train.epochs), (1, 2));
    assert_eq!(cells[3].id(), "0-badnets-r0.05-s1");
    let names: Vec<&str> = grid.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["sgd", "sam"]);
    let sam = grid.arm_experiment(&cells[3], &grid.arms[1]).unwrap();
    assert_eq!(sam.train.optimizer, OptimizerKind::Sam);
}

#[test]
fn arms_take_settings_and_bad_arms_are_refused() {
    let text = r#"
seeds = [0]
arms = ["sgd", { name = "sam-rho0.05", set = ["train.optimizer=sam", "train.rho=0.05"] }]
[[attack]]
label = "BadNets"
kind = "badnets"
ratios = [0.01]
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.toml");
    std::fs::write(&path, text).unwrap();
    let grid = Grid::from_file(&path).unwrap();
    let cell = &grid.cells()[0];
    let sgd = grid.arm_experiment(cell, &grid.arms[0]).unwrap();
    let sam = grid.arm_experiment(cell, &grid.arms[1]).unwrap();
    assert_eq!(sgd.train.optimizer, OptimizerKind::Sgd);
    assert_eq!(
        (sam.train.optimizer, sam.train.rho),
        (OptimizerKind::Sam, 0.05)
    );
    assert_eq!(grid.arms[1].name, "sam-rho0.05");
    for (arms, says) in [
        (r#"["sgd", { name = "../x" }]"#, "arm name"),
        (r#"["sgd", "sgd"]"#, "two arms named"),
        (r#"["sgd", { name = "fused" }]"#, "taken"),
        (
            r#"["sgd", { name = "x", set = ["detect.decision=paper"] }]"#,
            "not a train",
        ),
        (r#"["sgd", { name = "x", set = ["train.rho=-1"] }]"#, "rho"),
    ] {
        let bad = text.replace(
            r#"["sgd", { name = "sam-rho0.05", set = ["train.optimizer=sam", "train.rho=0.05"] }]"#,
            arms,
        );
        std::fs::write(&path, bad).unwrap();
        let error = Grid::from_file(&path).unwrap_err();
        let mut e = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            e = format!("{e}: {s}");
            source = s.source();
        }
        assert!(e.contains(says), "{arms}: {e}");
    }
}
