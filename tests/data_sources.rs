//! `inspect-data` reads every SOURCE kind and reports the right counts.

mod common;

use common::*;
use serde_json::Value;

fn inspect(source: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect-data", source, "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok_stdout(&args)).unwrap()
}

fn class_names(report: &Value) -> Vec<&str> {
    report["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

fn counts(report: &Value, split: &str) -> Vec<u64> {
    report["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[split].as_u64().unwrap())
        .collect()
}

#[test]
fn embedded_mnist_report() {
    let r = inspect("embedded:mnist", &[]);
    assert_eq!(r["format"], "embedded-mnist");
    assert_eq!(r["n_train"], 8000);
    assert_eq!(r["n_test"], 2000);
    assert_eq!(r["shape"], serde_json::json!([28, 28, 1]));
    assert_eq!(
        counts(&r, "train"),
        [784, 882, 805, 828, 789, 679, 811, 882, 755, 785]
    );
    assert_eq!(
        counts(&r, "test"),
        [217, 245, 186, 204, 191, 184, 203, 188, 189, 193]
    );
    let text = ok_stdout(&["inspect-data", "embedded:mnist"]);
    assert!(text.contains("8000 train / 2000 test"), "{text}");
}

#[test]
fn idx_folder_raw_and_gz() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), "train", &cycle_labels(30, 3), 12, 10, gz);
        write_idx(dir.path(), "t10k", &cycle_labels(9, 3), 12, 10, gz);
        let r = inspect(dir.path().to_str().unwrap(), &[]);
        assert_eq!(r["format"], "mnist-idx");
        assert_eq!(
            (r["n_train"].as_u64(), r["n_test"].as_u64()),
            (Some(30), Some(9))
        );
        assert_eq!(r["shape"], serde_json::json!([12, 10, 1]));
        assert_eq!(counts(&r, "train"), [10, 10, 10]);
        assert_eq!(counts(&r, "test"), [3, 3, 3]);
    }
}

#[test]
fn idx_folder_without_test_split_is_split_by_class() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", &cycle_labels(50, 2), 8, 8, false);
    let r = inspect(dir.path().to_str().unwrap(), &["--test-fraction", "0.2"]);
    assert_eq!(counts(&r, "train"), [20, 20]);
    assert_eq!(counts(&r, "test"), [5, 5]);
    assert_eq!(r["split"]["kind"], "seeded");
}

#[test]
fn cifar10_binary_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("data_batch_1.bin"),
        cifar_records(&cycle_labels(20, 10)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data_batch_2.bin"),
        cifar_records(&cycle_labels(10, 10)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_batch.bin"),
        cifar_records(&cycle_labels(10, 10)),
    )
    .unwrap();
    let r = inspect(dir.path().to_str().unwrap(), &[]);
    assert_eq!(r["format"], "cifar10-binary");
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(30), Some(10))
    );
    assert_eq!(r["shape"], serde_json::json!([32, 32, 3]));
    assert_eq!(r["classes"][0]["name"], "airplane");
    assert_eq!(counts(&r, "train"), [3; 10]);
}

#[test]
fn cifar10_planes_become_channels_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut record = vec![4u8];
    record.extend(std::iter::repeat_n(10u8, 1024));
    record.extend(std::iter::repeat_n(20u8, 1024));
    record.extend(std::iter::repeat_n(30u8, 1024));
    let mut bytes = record.clone();
    bytes.extend(cifar_records(&[1]));
    std::fs::write(dir.path().join("data_batch_1.bin"), bytes).unwrap();
    let options = poisonscope::data::LoadOptions {
        test_fraction: 0.0,
        ..Default::default()
    };
    let d = poisonscope::data::load(dir.path().to_str().unwrap(), &options).unwrap();
    let first = d.train.image(0).unwrap();
    assert_eq!(&first[..6], &[10, 20, 30, 10, 20, 30]);
    assert_eq!(d.train.labels[0], 4);
}

#[test]
fn image_folder_gray_png_and_rgb_mixed_formats() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("cat", 6), ("dog", 4), ("emu", 5)] {
        let sub = dir.path().join(class);
        std::fs::create_dir(&sub).unwrap();
        for i in 0..n {
            let path = sub.join(format!("{i}.png"));
            gray_image(16, 16, i).save(&path).unwrap();
        }
    }
    std::fs::write(dir.path().join("cat").join("notes.txt"), "not an image").unwrap();
    let r = inspect(dir.path().to_str().unwrap(), &["--test-fraction", "0.2"]);
    assert_eq!(r["format"], "image-folder");
    assert_eq!(r["shape"], serde_json::json!([16, 16, 1]));
    assert_eq!(class_names(&r), ["cat", "dog", "emu"]);
    // round(0.2·6)=1, round(0.2·4)=1, round(0.2·5)=1
    assert_eq!(counts(&r, "train"), [5, 3, 4]);
    assert_eq!(counts(&r, "test"), [1, 1, 1]);

    // One RGB JPEG and one BMP make the whole set RGB.
    rgb_image(16, 16, 1)
        .save(dir.path().join("dog").join("x.jpg"))
        .unwrap();
    rgb_image(16, 16, 2)
        .save(dir.path().join("emu").join("y.bmp"))
        .unwrap();
    let r = inspect(dir.path().to_str().unwrap(), &["--test-fraction", "0.2"]);
    assert_eq!(r["shape"], serde_json::json!([16, 16, 3]));
    assert_eq!(
        r["n_train"].as_u64().unwrap() + r["n_test"].as_u64().unwrap(),
        17
    );
}

#[test]
fn image_folder_with_train_and_test_and_resize() {
    let dir = tempfile::tempdir().unwrap();
    for (split, n) in [("train", 4), ("test", 2)] {
        for class in ["a", "b"] {
            let sub = dir.path().join(split).join(class);
            std::fs::create_dir_all(&sub).unwrap();
            for i in 0..n {
                let side = 10 + i;
                gray_image(side, side, i)
                    .save(sub.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    let source = dir.path().to_str().unwrap();
    let out = poisonscope(&["inspect-data", source]);
    assert!(!out.status.success());
    let r = inspect(source, &["--resize", "8x9"]);
    assert_eq!(r["split"]["kind"], "from-source");
    assert_eq!(r["shape"], serde_json::json!([8, 9, 1]));
    assert_eq!(counts(&r, "train"), [4, 4]);
    assert_eq!(counts(&r, "test"), [2, 2]);
}

/// The split layouts analysts bring: `train/` alone (the test split held out of it),
/// `train/ test/ val/` (validation left out, and said so), `Train/ Test/` (any case). Each is
/// read as the classes inside, never as classes named `train` or `test`.
#[test]
fn split_folder_layouts_are_understood() {
    let root = tempfile::tempdir().unwrap();
    let classes = |dir: &std::path::Path| {
        for class in ["cat", "dog"] {
            let sub = dir.join(class);
            std::fs::create_dir_all(&sub).unwrap();
            for i in 0..5 {
                gray_image(8, 8, i)
                    .save(sub.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    };
    let layouts: &[(&str, &[&str], &str, &[&str])] = &[
        ("train_only", &["train"], "seeded", &[]),
        (
            "train_test_val",
            &["train", "test", "val"],
            "from-source",
            &["val/"],
        ),
        (
            "train_val",
            &["train", "validation"],
            "seeded",
            &["validation/"],
        ),
        ("capitals", &["Train", "Test"], "from-source", &[]),
    ];
    for (name, folders, split, left_out) in layouts {
        let source = root.path().join(name);
        for folder in *folders {
            classes(&source.join(folder));
        }
        let r = inspect(source.to_str().unwrap(), &[]);
        assert_eq!(class_names(&r), ["cat", "dog"], "{name}: {r}");
        assert_eq!(r["split"]["kind"], *split, "{name}: {r}");
        let total = r["n_train"].as_u64().unwrap() + r["n_test"].as_u64().unwrap();
        assert_eq!(
            total,
            if *split == "seeded" { 10 } else { 20 },
            "{name}: {r}"
        );
        let said: Vec<&str> = r["left_out"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(said, *left_out, "{name}: {r}");
        if !left_out.is_empty() {
            let text = ok_stdout(&["inspect-data", source.to_str().unwrap()]);
            assert!(text.contains("left out: "), "{name}: {text}");
        }
    }
}

/// `dataset.limit` and the split read only the images they keep, and give the same samples
/// (order, labels, pixels) as reading everything and selecting afterwards did: the record
/// formats still select after reading, so an image folder exported from IDX files must match.
#[test]
fn a_limited_image_folder_keeps_the_same_samples_as_its_idx_twin() {
    let root = tempfile::tempdir().unwrap();
    let labels: Vec<u8> = (0..60).map(|i| (i % 3) as u8).collect();
    let idx = root.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    write_idx(&idx, "train", &labels, 6, 5, false);
    // The same images as PNGs, one class folder per label, file names in record order.
    let folder = root.path().join("folder");
    let data = poisonscope::data::load(idx.to_str().unwrap(), &Default::default()).unwrap();
    let pixels_of = |d: &poisonscope::data::Dataset, i: usize| d.image(i).unwrap().to_vec();
    let mut all = data.train.clone();
    all.pixels.extend_from_slice(&data.test.pixels);
    all.labels.extend_from_slice(&data.test.labels);
    all.origins.extend(data.test.origins.iter().cloned());
    let mut record_of = Vec::new();
    for i in 0..all.len() {
        let poisonscope::data::Origin::Record { index, .. } = all.origins[i] else {
            panic!()
        };
        record_of.push(index);
    }
    for (i, &record) in record_of.iter().enumerate() {
        let dir = folder.join(format!("c{}", all.labels[i]));
        std::fs::create_dir_all(&dir).unwrap();
        image::GrayImage::from_raw(5, 6, pixels_of(&all, i))
            .unwrap()
            .save(dir.join(format!("{record:04}.png")))
            .unwrap();
    }
    for limit in [0, 7, 20] {
        let options = poisonscope::data::LoadOptions {
            limit,
            split_seed: 3,
            ..Default::default()
        };
        let a = poisonscope::data::load(idx.to_str().unwrap(), &options).unwrap();
        let b = poisonscope::data::load(folder.to_str().unwrap(), &options).unwrap();
        // The two formats list their samples in different orders (records interleave the
        // classes, folders group them): compare the samples kept, as sets.
        let samples = |d: &poisonscope::data::Dataset| {
            let mut v: Vec<(u16, Vec<u8>)> = (0..d.len())
                .map(|i| (d.labels[i], pixels_of(d, i)))
                .collect();
            v.sort();
            v
        };
        for (x, y) in [(&a.train, &b.train), (&a.test, &b.test)] {
            assert_eq!(x.len(), y.len(), "limit {limit}");
            assert_eq!(samples(x), samples(y), "limit {limit}");
        }
        if limit > 0 {
            assert_eq!(b.train.len(), limit);
        }
    }
}

/// An image folder's load reports its progress on the calling thread, counting up to every image
/// kept, and stops with "loading cancelled" once asked to.
#[test]
fn an_image_folder_load_reports_progress_and_can_be_cancelled() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    for class in ["a", "b", "c"] {
        let dir = root.path().join(class);
        std::fs::create_dir(&dir).unwrap();
        for i in 0..200 {
            gray_image(16, 16, i)
                .save(dir.join(format!("{i:03}.png")))
                .unwrap();
        }
    }
    let source = root.path().to_str().unwrap();
    let options = poisonscope::data::LoadOptions {
        limit: 300,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let loaded = poisonscope::data::load_with(
        source,
        &options,
        &AtomicBool::new(false),
        &mut |done, total| seen.push((done, total)),
    )
    .unwrap();
    // The 20 % test split (120) and the 300 training images kept: 420 decoded, not 600.
    assert_eq!((loaded.train.len(), loaded.test.len()), (300, 120));
    assert_eq!(seen.last(), Some(&(420, 420)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");

    let cancel = AtomicBool::new(false);
    cancel.store(true, Ordering::Relaxed);
    let err = poisonscope::data::load_with(source, &options, &cancel, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert_eq!(err, "loading cancelled");
}

/// On a terminal (here a pseudo-terminal made by util-linux `script`), `inspect-data` draws the
/// image folder's decoding as a progress bar that ends at every kept image; off a terminal it
/// prints nothing of it (the JSON and text outputs stay clean).
#[test]
fn the_command_line_shows_the_loading_progress_on_a_terminal() {
    let root = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        let dir = root.path().join(class);
        std::fs::create_dir(&dir).unwrap();
        for i in 0..50 {
            gray_image(8, 8, i)
                .save(dir.join(format!("{i:02}.png")))
                .unwrap();
        }
    }
    let source = root.path().to_str().unwrap();
    let plain = poisonscope(&["inspect-data", source]);
    assert!(plain.status.success());
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("loading images"));
    let command = format!(
        "{} inspect-data {source}",
        env!("CARGO_BIN_EXE_poisonscope")
    );
    let Ok(out) = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
    else {
        eprintln!("skipped: no `script` (util-linux) to make a pseudo-terminal");
        return;
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    let why = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && (why.contains("pseudo-terminal") || why.contains("openpty")) {
        eprintln!("skipped: no pseudo-terminal here ({why})");
        return;
    }
    assert!(out.status.success(), "{shown}{why}");
    // 100 images, 20 of them held out: every one decoded.
    assert!(
        shown.contains("loading images [##############################] 100/100"),
        "{shown}"
    );
}
