//! `inspect-data` reads every SOURCE kind and reports the right counts.

mod common;

use common::*;
use serde_json::Value;

fn inspect(source: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect-data", source, "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok_stdout(&args)).unwrap()
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
    let names: Vec<&str> = r["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cat", "dog", "emu"]);
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
