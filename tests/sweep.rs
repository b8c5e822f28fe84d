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
    // Each arm's model folder is a run folder: it opens as a saved run (no training).
    let arm = out.join("models").join("0-badnets-r0.05-s0").join("sam");
    let opened = poisonscope::run::Run::open(
        &arm,
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(opened.arms.len(), 1);
    assert_eq!(opened.arms[0].name, "sam");
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
    let variants: Vec<&str> = grid.variant.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        variants,
        ["calibrated", "calibrated-100", "pooled", "paper"]
    );
    let arms: Vec<&str> = grid.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(arms, ["sgd", "sam", "sam-rho0.05"]);
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

/// A grid of three one-arm cells, small enough to train in seconds.
const SMALL_GRID: &str = r#"
seeds = [0]
arms = ["sgd"]
[base.dataset]
source = "embedded:mnist"
limit = 300
[base.train]
epochs = 1
batch_size = 64
[base.detect]
methods = ["ss", "loss"]
[[attack]]
label = "BadNets"
kind = "badnets"
ratios = [0.03, 0.05, 0.1]
"#;

/// Starts `sweep GRID --out OUT`, without waiting.
fn start_sweep(grid: &std::path::Path, out: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_poisonscope"))
        .args([
            "sweep",
            grid.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `docs/cluster/shard.sh` for `grid` into `out`, run with this build's binary.
fn shard_script(grid: &std::path::Path, out: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new("bash");
    command
        .arg("docs/cluster/shard.sh")
        .env("POISONSCOPE", env!("CARGO_BIN_EXE_poisonscope"))
        .env("GRID", grid)
        .env("OUT", out)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SHARD_INDEX")
        .env_remove("SHARDS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// The cluster script's shard arithmetic, under Slurm (any array start), Kubernetes and by hand
/// (`echo` in place of the binary prints the command it would run); the Kubernetes manifest's
/// completions and SHARDS agree, and the Slurm script runs the shard script.
#[test]
fn the_cluster_scripts_give_each_task_its_shard() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "0/4",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "8"),
                ("SLURM_ARRAY_TASK_MIN", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "3/4",
        ),
        (&[("JOB_COMPLETION_INDEX", "2"), ("SHARDS", "3")], "2/3"),
        (&[("SHARD_INDEX", "1"), ("SHARDS", "2")], "1/2"),
        (&[], "0/1"),
    ];
    let (grid, out) = (std::path::Path::new("g.toml"), std::path::Path::new("o"));
    for (env, shard) in cases {
        let output = shard_script(grid, out)
            .env("POISONSCOPE", "echo")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout.trim(),
            format!("sweep g.toml --out o --shard {shard}"),
            "{env:?}"
        );
    }
    // Kubernetes without SHARDS: a clear refusal, nothing run.
    let output = shard_script(grid, out)
        .env("POISONSCOPE", "echo")
        .env("JOB_COMPLETION_INDEX", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SHARDS"));

    let manifest = std::fs::read_to_string("docs/cluster/sweep-job.yaml").unwrap();
    let value = |key: &str| -> String {
        manifest
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in the manifest"))
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    assert_eq!(value("completions:"), value("parallelism:"));
    let shards_line = manifest
        .lines()
        .skip_while(|l| !l.contains("name: SHARDS"))
        .nth(1)
        .unwrap();
    assert_eq!(
        shards_line
            .trim()
            .trim_start_matches("value:")
            .trim()
            .trim_matches('"'),
        value("completions:")
    );
    assert!(manifest.contains("completionMode: Indexed"));
    let slurm = std::fs::read_to_string("docs/cluster/sweep.slurm").unwrap();
    assert!(slurm.contains("#SBATCH --array=") && slurm.contains("shard.sh"));
}

/// Waits for a sweep process; returns its stderr (panics with it when the process failed).
fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// Lines of `[k/n] CELL ARM`: the cells a process trained.
fn trained(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

/// Nothing but finished files: no claim, lock or hidden temporary file left in `out`.
fn assert_tidy(out: &std::path::Path) {
    for dir in [out.to_path_buf(), out.join("cells")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.') && !name.ends_with(".claim") && !name.ends_with(".lock"),
                "{} left in {}",
                name,
                dir.display()
            );
        }
    }
}

/// Two shards run at once on one folder, then a merge: the same `results.csv` as one process,
/// each cell trained by exactly one shard. Two unsharded processes at once on one folder: each
/// cell trained once (the other process sees the claim and moves on).
#[test]
fn shards_run_the_grid_once_and_merge_to_the_single_process_tables() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.toml");
    std::fs::write(&grid, SMALL_GRID).unwrap();

    let one = dir.path().join("one");
    let stderr = finish(start_sweep(&grid, &one));
    assert_eq!(trained(&stderr).len(), 3, "{stderr}");
    let expected = std::fs::read_to_string(one.join("results.csv")).unwrap();
    assert_eq!(expected.lines().count(), 4, "{expected}");

    // The shards as a Slurm array `--array=1-2` runs them: through docs/cluster/shard.sh.
    let sharded = dir.path().join("sharded");
    let task = |id: &str| {
        shard_script(&grid, &sharded)
            .envs([
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ])
            .spawn()
            .unwrap()
    };
    let a = task("1");
    let b = task("2");
    let (a, b) = (finish(a), finish(b));
    assert!(a.contains("shard 0/2: 2 of the grid's 3 cells"), "{a}");
    assert!(b.contains("shard 1/2: 1 of the grid's 3 cells"), "{b}");
    // Cells 0 and 2 are shard 0's, cell 1 shard 1's.
    assert_eq!(trained(&a).len(), 2, "{a}");
    assert!(trained(&b).len() == 1 && b.contains("r0.05"), "{b}");
    let merged = ok_stdout(&[
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        sharded.to_str().unwrap(),
        "--tables-only",
    ]);
    assert!(merged.starts_with("3 rows; rewrote"), "{merged}");
    assert_eq!(
        std::fs::read_to_string(sharded.join("results.csv")).unwrap(),
        expected
    );
    assert_tidy(&sharded);

    let twice = dir.path().join("twice");
    let a = start_sweep(&grid, &twice);
    let b = start_sweep(&grid, &twice);
    let (a, b) = (finish(a), finish(b));
    let runs: Vec<String> = trained(&a).into_iter().chain(trained(&b)).collect();
    assert_eq!(runs.len(), 3, "each cell trained once:\n{a}\n{b}");
    // Whoever finished last rewrote the tables from every cell.
    assert_eq!(
        std::fs::read_to_string(twice.join("results.csv")).unwrap(),
        expected
    );
    assert_tidy(&twice);
}

#[test]
fn a_bad_shard_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.toml");
    std::fs::write(&grid, SMALL_GRID).unwrap();
    let out = dir.path().join("out");
    for bad in ["2/2", "1", "a/3", "0/0"] {
        let result = poisonscope(&[
            "sweep",
            grid.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--shard",
            bad,
        ]);
        assert_eq!(result.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("--shard {bad}")), "{stderr}");
        assert!(!out.exists());
    }
}
