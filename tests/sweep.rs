//! `poisonscope sweep`: a tiny grid runs, writes its result files, and resumes without retraining.

mod common;

use common::{ok_stdout, poisonscope};

#[test]
fn a_small_sweep_writes_its_tables_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.toml");
    std::fs::write(
        &grid,
        r#"
seeds = [0]
arms = ["sgd", "sam"]
[base.dataset]
source = "embedded:mnist"
limit = 600
[base.train]
epochs = 1
batch_size = 64
[base.detect]
methods = ["ss", "loss"]
[[attack]]
label = "BadNets"
kind = "badnets"
ratios = [0.05]
[[variant]]
name = "calibrated"
[[variant]]
name = "paper"
set = ["detect.decision=paper"]
"#,
    )
    .unwrap();
    let out = dir.path().join("sweep");
    let args = [
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let stdout = ok_stdout(&args);
    // 2 arms × 2 variants + 2 fused rows.
    assert!(stdout.starts_with("6 rows"), "{stdout}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 6);
    let arms: Vec<&str> = rows.iter().map(|r| r["arm"].as_str().unwrap()).collect();
    assert_eq!(arms.iter().filter(|a| **a == "fused").count(), 2);
    // The paper variant's SS flags its published budget; the calibrated one reads references.
    let decision = |arm: &str, variant: &str| {
        rows.iter()
            .find(|r| r["arm"] == arm && r["variant"] == variant)
            .map(|r| r["detectors"]["ss"]["details"]["decision"].clone())
            .unwrap()
    };
    assert_eq!(decision("sam", "paper"), "paper");
    assert_eq!(decision("sam", "calibrated"), "calibrated");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.starts_with("attack,ratio,seed,arm,variant"), "{csv}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| BadNets | 5.0 % |"), "{md}");
    // Resuming skips the finished cell (no training) and gives the same rows.
    let again = poisonscope(&args);
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("skipped"), "{stderr}");
    let rows_again: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(rows, rows_again);
    // --tables-only rewrites the tables from the finished cells and runs nothing.
    std::fs::remove_file(out.join("results.md")).unwrap();
    let mut tables = args.to_vec();
    tables.push("--tables-only");
    let stdout = ok_stdout(&tables);
    assert!(stdout.starts_with("6 rows; rewrote"), "{stdout}");
    assert!(out.join("results.md").is_file());
}

/// The shipped grid (the README's table) parses and every one of its cells is a valid config.
#[test]
fn the_shipped_grid_is_valid() {
    let grid = poisonscope::sweep::Grid::from_file(std::path::Path::new(
        "sample_configs/grids/paper_table.toml",
    ))
    .unwrap();
    assert_eq!(grid.cells().len(), 27);
    assert_eq!(grid.variant.len(), 3);
}

/// The detectors grid (the README's six-attacks table): six attacks × one seed, every cell a
/// config that validates, all nine detectors configured.
#[test]
fn the_detectors_grid_is_valid() {
    let grid = poisonscope::sweep::Grid::from_file(std::path::Path::new(
        "sample_configs/grids/detectors_5pct.toml",
    ))
    .unwrap();
    let cells = grid.cells();
    assert_eq!(cells.len(), 6);
    for cell in &cells {
        let config = grid.experiment(cell).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.detect.methods,
            poisonscope::config::DetectorKind::ALL.to_vec()
        );
    }
}
