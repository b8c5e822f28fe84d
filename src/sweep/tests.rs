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
    assert_eq!(grid.arms, vec![OptimizerKind::Sgd, OptimizerKind::Sam]);
}
