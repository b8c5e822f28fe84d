//! `poisonscope poison` writes a poisoned image folder that `inspect-data` reads back, with a
//! manifest that agrees; every sample config builds its attack.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use poisonscope::attack::{self, Attack, Role};
use poisonscope::config::Experiment;
use poisonscope::data;

fn read_manifest(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("index,file,original_label,given_label,poisoned,role")
    );
    lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn badnets_export_round_trips_through_inspect_data() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("poisoned");
    let out_s = out.to_str().unwrap();
    let stdout = ok_stdout(&["poison", "sample_configs/badnets.toml", "--out", out_s]);
    assert!(
        stdout.contains("8000 training images (80 poisoned, 0 cover)"),
        "{stdout}"
    );

    let rows = read_manifest(&out);
    assert_eq!(rows.len(), 8000);
    let preview = image::open(out.join("preview.png")).unwrap();
    assert_eq!(preview.height(), 3 * (28 * 3 + 4) + 4);
    let poisoned: Vec<&Vec<String>> = rows.iter().filter(|r| r[4] == "1").collect();
    assert_eq!(poisoned.len(), 80);
    assert!(
        poisoned
            .iter()
            .all(|r| r[3] == "0" && r[2] != "0" && r[5] == "poison")
    );
    let mut given: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *given.entry(r[3].clone()).or_default() += 1;
        assert!(out.join(&r[1]).is_file(), "{}", r[1]);
        assert!(r[1].starts_with(&format!("{}/", r[3])));
    }

    // A poisoned file carries the 3×3 white patch; the clean set's image does not.
    let first = poisoned[0];
    let img = image::open(out.join(&first[1])).unwrap().to_luma8();
    for y in 25..28 {
        for x in 25..28 {
            assert_eq!(img.get_pixel(x, y).0[0], 255);
        }
    }

    let report: serde_json::Value =
        serde_json::from_str(&ok_stdout(&["inspect-data", out_s, "--json"])).unwrap();
    assert_eq!(report["format"], "image-folder");
    assert_eq!(report["shape"], serde_json::json!([28, 28, 1]));
    assert_eq!(
        report["n_train"].as_u64().unwrap() + report["n_test"].as_u64().unwrap(),
        8000
    );
    for class in report["classes"].as_array().unwrap() {
        let total = class["train"].as_u64().unwrap() + class["test"].as_u64().unwrap();
        assert_eq!(total, given[class["name"].as_str().unwrap()]);
    }
    // class 0 grew by exactly the 80 relabelled digits (784 clean zeros in the reference split)
    assert_eq!(given["0"], 784 + 80);

    // A second export into the same folder is refused without --force, allowed with it.
    let again = poisonscope(&["poison", "sample_configs/badnets.toml", "--out", out_s]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    ok_stdout(&[
        "poison",
        "sample_configs/badnets.toml",
        "--out",
        out_s,
        "--force",
        "--set",
        "attack.ratio=0.05",
    ]);
    assert_eq!(
        read_manifest(&out).iter().filter(|r| r[4] == "1").count(),
        400
    );

    // A folder that is not an export is never replaced, even with --force.
    let foreign = tmp.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
    let refused = poisonscope(&[
        "poison",
        "sample_configs/badnets.toml",
        "--out",
        foreign.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(foreign.join("precious.txt").is_file());
}

#[test]
fn never_writes_inside_the_source_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_idx_folder(&src);
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[dataset]\nsource = {:?}\n[attack]\nkind = \"badnets\"\nratio = 0.1\n",
            src.to_str().unwrap()
        ),
    )
    .unwrap();
    let inside = src.join("out");
    let out = poisonscope(&[
        "poison",
        config.to_str().unwrap(),
        "--out",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlaps the source dataset"));
    assert!(!inside.exists());
}

fn write_idx_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write_idx(dir, "train", &cycle_labels(40, 2), 8, 8, false);
}

#[test]
fn every_sample_config_builds_and_poisons() {
    let clean = data::load(
        "embedded:mnist",
        &data::LoadOptions {
            limit: 2000,
            ..Default::default()
        },
    )
    .unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir("sample_configs").unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue; // sample_configs/grids/ holds sweep grids, not run configs
        }
        let config = Experiment::from_file(&path, &[]).unwrap();
        let Some(attack_config) = &config.attack else {
            continue;
        };
        let attack = Attack::from_config(attack_config, clean.train.shape).unwrap();
        let p = attack::poison(&clean, &attack).unwrap();
        let expected = (attack_config.ratio * 2000.0).round() as usize;
        assert_eq!(p.plan.poisoned.len(), expected, "{}", path.display());
        for &i in &p.plan.poisoned {
            assert_ne!(
                p.train.image(i),
                clean.train.image(i),
                "{}: sample {i} unchanged",
                path.display()
            );
        }
        let untouched = p.plan.roles.iter().position(|r| *r == Role::Clean).unwrap();
        assert_eq!(p.train.image(untouched), clean.train.image(untouched));
        assert!(!p.triggered_test.is_empty());
        assert!(
            p.triggered_test
                .labels
                .iter()
                .all(|&l| l == attack_config.target)
        );
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} attack configs");
}

#[test]
fn reference_blend_config_reproduces_the_reference_attack() {
    use sha2::{Digest, Sha256};
    let pattern = image::open("assets/triggers/reference_blend_28x28.png")
        .unwrap()
        .to_luma8();
    let digest: String = Sha256::digest(pattern.as_raw())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "bcb4044735f7dadd1f3f76b600735523f0b4e4d3e1e0d2459f340e1d635a284c"
    );

    let config =
        Experiment::from_file(Path::new("sample_configs/blended_reference.toml"), &[]).unwrap();
    let clean = data::load("embedded:mnist", &data::LoadOptions::default()).unwrap();
    let attack = Attack::from_config(config.attack.as_ref().unwrap(), clean.train.shape).unwrap();
    let p = attack::poison(&clean, &attack).unwrap();
    assert_eq!(p.plan.poisoned.len(), 80);
    // the reference: rint((1 - a) * x + a * P) in uint8
    let i = p.plan.poisoned[0];
    let (before, after) = (clean.train.image(i).unwrap(), p.train.image(i).unwrap());
    for (k, (&x, &y)) in before.iter().zip(after).enumerate() {
        let expected =
            (0.9 * f64::from(x) + 0.1 * f64::from(pattern.as_raw()[k])).round_ties_even();
        assert_eq!(f64::from(y), expected, "pixel {k}");
    }
    assert_eq!(p.triggered_test.len(), 2000 - 217);
}

/// TaCT on the demo digits: poisons are source-class images relabelled to the target, covers are
/// images of the other classes carrying the very same patch under their own label, and the
/// attack success rate is measured on triggered source-class test images only.
#[test]
fn tact_poisons_the_source_and_covers_the_others_with_the_same_patch() {
    let config = Experiment::from_file(Path::new("sample_configs/tact.toml"), &[]).unwrap();
    let attack_config = config.attack.clone().unwrap();
    let clean = data::load("embedded:mnist", &config.dataset.load_options()).unwrap();
    let attack = Attack::from_config(&attack_config, clean.train.shape).unwrap();
    let poisoned = attack::poison(&clean, &attack).unwrap();
    let plan = &poisoned.plan;
    assert_eq!(plan.poisoned.len(), 80);
    assert_eq!(plan.covers.len(), 80);
    let (h, w) = (clean.train.shape.height, clean.train.shape.width);
    let corner_is_white =
        |image: &[u8]| (h - 3..h).all(|r| (w - 3..w).all(|c| image[r * w + c] == 255));
    for (i, role) in plan.roles.iter().enumerate() {
        let (original, given) = (plan.original_labels[i], plan.given_labels[i]);
        let image = poisoned.train.image(i).unwrap();
        match role {
            Role::Poison => {
                assert_eq!((original, given), (1, 0));
                assert!(corner_is_white(image));
            }
            Role::Cover => {
                assert!(
                    original >= 2,
                    "covers come from neither the source nor the target"
                );
                assert_eq!(given, original, "covers keep their label");
                assert!(corner_is_white(image), "covers carry the full patch");
            }
            Role::Clean => assert_eq!(given, original),
        }
    }
    let sources: Vec<u16> = poisoned
        .triggered_test_source
        .iter()
        .map(|&i| clean.test.labels[i])
        .collect();
    assert!(!sources.is_empty() && sources.iter().all(|&y| y == 1));
    assert!(poisoned.triggered_test.labels.iter().all(|&y| y == 0));
}

/// LC on a small slice of the demo digits: the poisons are target-class images that keep their
/// label, carry the checkerboard in all four corners, and differ from the clean image elsewhere
/// by PGD noise within ε (and by some noise: the clean model was really attacked). The triggered
/// test images carry only the checkerboards.
#[test]
fn lc_hardens_target_images_within_epsilon_and_stamps_the_corners() {
    let config = Experiment::from_file(
        Path::new("sample_configs/lc.toml"),
        &[
            "dataset.limit=600".to_owned(),
            "train.epochs=1".to_owned(),
            "attack.epsilon=8".to_owned(),
        ],
    )
    .unwrap();
    let clean = data::load("embedded:mnist", &config.dataset.load_options()).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let poisoned = poisonscope::run::prepare::poison(&config, &clean, &cancel, &mut |_| {})
        .unwrap()
        .unwrap();
    let plan = &poisoned.plan;
    assert_eq!(plan.poisoned.len(), 30);
    let (h, w) = (clean.train.shape.height, clean.train.shape.width);
    let in_corner = |r: usize, c: usize| (r < 3 || r >= h - 3) && (c < 3 || c >= w - 3);
    let mut noisy = 0;
    for &i in &plan.poisoned {
        assert_eq!((plan.original_labels[i], plan.given_labels[i]), (0, 0));
        let (before, after) = (
            clean.train.image(i).unwrap(),
            poisoned.train.image(i).unwrap(),
        );
        for r in 0..h {
            for c in 0..w {
                let (x, y) = (before[r * w + c], after[r * w + c]);
                if in_corner(r, c) {
                    let (dr, dc) = (r.min(h - 1 - r), c.min(w - 1 - c));
                    let want = if (dr + dc) % 2 == 0 { 255 } else { 0 };
                    assert_eq!(y, want, "sample {i} corner pixel ({r},{c})");
                } else {
                    assert!(x.abs_diff(y) <= 8, "sample {i} pixel ({r},{c}): {x} → {y}");
                    noisy += usize::from(x != y);
                }
            }
        }
    }
    assert!(
        noisy > 30 * 100,
        "PGD changed only {noisy} pixels of 30 images"
    );
    // Everything else is the clean set.
    for (i, role) in plan.roles.iter().enumerate() {
        if *role == Role::Clean {
            assert_eq!(poisoned.train.image(i), clean.train.image(i));
        }
    }
    let i = poisoned.triggered_test_source[0];
    let (x, t) = (
        clean.test.image(i).unwrap(),
        poisoned.triggered_test.image(0).unwrap(),
    );
    for r in 0..h {
        for c in 0..w {
            if !in_corner(r, c) {
                assert_eq!(
                    x[r * w + c],
                    t[r * w + c],
                    "the test trigger adds no PGD noise"
                );
            }
        }
    }
}
