//! End-to-end detection through the CLI: `compare` writes both runs and the deltas.

mod common;

use std::path::Path;

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn compare_writes_both_runs_and_sam_minus_sgd() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("badnets.toml");
    std::fs::write(
        &config,
        "[dataset]\nsource = \"embedded:mnist\"\nlimit = 600\n\
         [attack]\nkind = \"badnets\"\nratio = 0.05\n\
         [train]\nepochs = 1\nbatch_size = 64\nlr = 0.05\naugment = false\nseed = 1\n\
         [detect]\nmethods = [\"ss\", \"ac\"]\n",
    )
    .unwrap();
    let out = dir.path().join("cmp");
    let stdout = common::ok_stdout(&[
        "compare",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("detector"), "{stdout}");
    for arm in ["sgd", "sam"] {
        for file in ["report.json", "scores.csv", "config.toml", "model.bpk"] {
            assert!(out.join(arm).join(file).is_file(), "{arm}/{file} missing");
        }
    }
    let sgd = read_json(&out.join("sgd/report.json"));
    let sam = read_json(&out.join("sam/report.json"));
    assert_eq!(sgd["training"]["optimizer"], "sgd");
    assert_eq!(sam["training"]["optimizer"], "sam");
    assert_eq!(sgd["attack"]["n_poisoned"], 30);
    assert_eq!(sgd["attack"], sam["attack"], "identical poisoned data");
    let comparison = read_json(&out.join("comparison.json"));
    for name in ["ss", "ac"] {
        let (a, b) = (&sgd["detectors"][name], &sam["detectors"][name]);
        for key in ["tpr", "fpr", "f1"] {
            let expected = b[key].as_f64().unwrap() - a[key].as_f64().unwrap();
            let delta = comparison["delta"][name][key].as_f64().unwrap();
            assert!((delta - expected).abs() < 1e-12, "{name}.{key}");
        }
        assert!(a["auroc"].as_f64().is_some());
    }
    // The shareable report: one self-contained page with both arms.
    let html_path = dir.path().join("report.html");
    common::ok_stdout(&[
        "report",
        out.to_str().unwrap(),
        "--out",
        html_path.to_str().unwrap(),
        "--top",
        "5",
    ]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    for part in [
        "<h2>Detectors</h2>",
        "SAM TPR %",
        "Δ TPR (SAM − SGD)",
        "Most suspicious images",
        "first two principal axes",
        "data:image/png;base64,",
        "optimiser sam",
    ] {
        assert!(html.contains(part), "the report lacks {part:?}");
    }
    // Two arms × (consensus + 2 detectors) × 5 images.
    assert_eq!(html.matches("<img ").count(), 30);
    assert!(
        !html.contains("src=\"http"),
        "nothing fetched from the network"
    );
    let missing = common::poisonscope(&[
        "report",
        dir.path().join("nothing").to_str().unwrap(),
        "--out",
        html_path.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));

    // The ground-truth measures exist with an attack.
    assert!(sam["backdoor_effect"]["silhouette"].as_f64().is_some());
    assert!(sam["backdoor_effect"]["tac_top_k"].as_f64().is_some());
    // At most 250 references per class (the default), every class with enough for a threshold
    // of its own.
    let references = sam["feature_scaling"]["reference_samples"]
        .as_u64()
        .unwrap();
    assert!((990..=2500).contains(&references), "{references}");

    // `detect` re-runs the detectors on the saved SAM model with other settings, no retraining.
    let again = dir.path().join("raw");
    common::ok_stdout(&[
        "detect",
        out.join("sam").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--set",
        "detect.feature_scaling=false",
        "--set",
        "detect.clean_per_class=30",
    ]);
    let raw = read_json(&again.join("report.json"));
    assert_eq!(raw["feature_scaling"], serde_json::Value::Null);
    // 30 references per class are too few for a class's own threshold: pooled, and said so.
    let pooled = &raw["detectors"]["ss"]["details"]["classes_with_pooled_threshold"];
    assert_eq!(pooled.as_array().map(Vec::len), Some(10), "{pooled}");
    let warned = raw["warnings"].as_array().unwrap().iter().any(|w| {
        w["kind"] == "few-references"
            && w["message"]
                .as_str()
                .unwrap()
                .contains("fewer than 99 clean references")
    });
    assert!(warned, "{}", raw["warnings"]);
    assert_eq!(raw["attack"], sam["attack"], "the same poisoned data again");
    assert_eq!(
        raw["training"]["clean_accuracy"],
        sam["training"]["clean_accuracy"]
    );
    // Same model, same settings → the same detection as the run.
    let same = dir.path().join("same");
    common::ok_stdout(&[
        "detect",
        out.join("sam").to_str().unwrap(),
        "--out",
        same.to_str().unwrap(),
    ]);
    let same_dir = same;
    let same = read_json(&same_dir.join("report.json"));
    // The decision re-derived from the two CSVs: SS flags a sample when its score exceeds the
    // conformal 0.99 quantile of its class's n references (the ⌈0.99·(n+1)⌉-th smallest) and
    // the outlier floor; the report's per-class thresholds are those.
    let table = |name: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(same_dir.join(name))
            .unwrap()
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    };
    let (scores, refs) = (table("scores.csv"), table("references.csv"));
    let col = |rows: &[Vec<String>], name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert_eq!(refs.len() as u64 - 1, references);
    let mut by_class: Vec<Vec<f64>> = vec![Vec::new(); 10];
    let (rl, rs) = (col(&refs, "label"), col(&refs, "ss_score"));
    for r in &refs[1..] {
        let c: usize = r[rl].parse().unwrap();
        by_class[c].push(r[rs].parse().unwrap());
    }
    let conformal: Vec<f64> = by_class
        .iter_mut()
        .map(|scores| {
            assert!((99..=250).contains(&scores.len()), "{}", scores.len());
            scores.sort_by(f64::total_cmp);
            let rank = (0.99 * (scores.len() as f64 + 1.0) - 1e-9).ceil() as usize;
            scores[rank - 1]
        })
        .collect();
    let details = &same["detectors"]["ss"]["details"];
    let floor = details["outlier_floor"].as_f64().unwrap();
    let reported: Vec<f64> = details["class_thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for c in 0..10 {
        assert!(
            (reported[c] - conformal[c].max(floor)).abs() < 1e-9,
            "class {c}"
        );
    }
    let (gl, ss, sf) = (
        col(&scores, "given_label"),
        col(&scores, "ss_score"),
        col(&scores, "ss_flag"),
    );
    for r in &scores[1..] {
        let c: usize = r[gl].parse().unwrap();
        let s: f64 = r[ss].parse().unwrap();
        assert_eq!(r[sf] == "1", s > reported[c], "{r:?}");
    }
    for name in ["ss", "ac"] {
        assert_eq!(
            same["detectors"][name]["tpr"], sam["detectors"][name]["tpr"],
            "{name}"
        );
        assert_eq!(
            same["detectors"][name]["auroc"], sam["detectors"][name]["auroc"],
            "{name}"
        );
    }
    // Changing anything but detection would need retraining: refused, nothing written.
    let refused = common::poisonscope(&[
        "detect",
        out.join("sam").to_str().unwrap(),
        "--out",
        dir.path().join("refused").to_str().unwrap(),
        "--set",
        "attack.ratio=0.1",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only detect.* keys"));
    assert!(!dir.path().join("refused").exists());
}

/// The input-level detectors on a model that learned a BadNets patch (SGD, 5 % of 1 000 digits,
/// 3 epochs):
/// STRIP's superimposed poisons keep their prediction, so their entropy is far below the clean
/// images'; its threshold (the references' 1 % false rejection) flags them and few clean ones.
/// SCALE-UP runs and scores every sample in fifths; on white-on-black digits scaling saturates
/// the strokes, so clean images keep their prediction as well — the poisons' consistency is high,
/// and so is the clean images'.
#[test]
fn strip_and_scale_up_on_a_learned_patch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("badnets.toml");
    std::fs::write(
        &config,
        "[dataset]\nsource = \"embedded:mnist\"\nlimit = 1000\n\
         [attack]\nkind = \"badnets\"\nratio = 0.05\n\
         [train]\noptimizer = \"sgd\"\nepochs = 3\nbatch_size = 64\nlr = 0.05\nseed = 0\n\
         [detect]\nmethods = [\"strip\", \"scale-up\"]\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    common::ok_stdout(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let report = read_json(&out.join("report.json"));
    let asr = report["training"]["attack_success_rate"].as_f64().unwrap();
    assert!(asr > 0.9, "the backdoor was learned (ASR {asr})");
    let strip = &report["detectors"]["strip"];
    let value = |d: &serde_json::Value, key: &str| d[key].as_f64().unwrap();
    assert!(value(strip, "auroc") > 0.95, "{strip}");
    assert!(value(strip, "tpr") > 0.8, "{strip}");
    assert!(value(strip, "fpr") < 0.05, "{strip}");
    assert!(
        strip["seconds"].as_f64().unwrap() > 0.0,
        "probing time counted"
    );
    // Per-sample scores: SCALE-UP's consistency is a share of five scales.
    let scores = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let mut lines = scores.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (spc, poisoned) = (at("scale-up_score"), at("poisoned"));
    let mut poison_spc = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let v: f64 = cells[spc].parse().unwrap();
        assert!((v * 5.0 - (v * 5.0).round()).abs() < 1e-9 && (0.0..=1.0).contains(&v));
        if cells[poisoned] == "1" {
            poison_spc.push(v);
        }
    }
    assert_eq!(poison_spc.len(), 50);
    let mean = poison_spc.iter().sum::<f64>() / 50.0;
    assert!(
        mean > 0.8,
        "a learned patch survives amplification: mean SPC {mean}"
    );
}
