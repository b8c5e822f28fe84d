//! A corpus of broken datasets, generated here: every case exits non-zero with one line on
//! stderr that names the file at fault and the problem, and nothing panics.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A bad dataset: the folder to inspect, the path the message must name, a word it must say.
struct Case {
    name: &'static str,
    source: PathBuf,
    names: PathBuf,
    says: &'static str,
}

/// Two well-formed class folders of 8×8 grayscale PNGs.
fn good_folder(dir: &Path) {
    for class in ["a", "b"] {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..3 {
            gray_image(8, 8, i)
                .save(sub.join(format!("{i}.png")))
                .unwrap();
        }
    }
}

/// A PNG whose header claims `side`×`side` pixels and holds no data.
fn png_header_only(side: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn build_corpus(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut case = |name: &'static str, make: &dyn Fn(&Path) -> PathBuf, says: &'static str| {
        let source = root.join(name);
        std::fs::create_dir_all(&source).unwrap();
        let names = make(&source);
        cases.push(Case {
            name,
            source,
            names,
            says,
        });
    };

    case(
        "truncated_png",
        &|d| {
            good_folder(d);
            let bad = d.join("a").join("1.png");
            let bytes = std::fs::read(&bad).unwrap();
            std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
            bad
        },
        "cannot decode image",
    );
    case(
        "corrupt_jpeg",
        &|d| {
            good_folder(d);
            let bad = d.join("b").join("x.jpg");
            std::fs::write(&bad, b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();
            bad
        },
        "cannot decode image",
    );
    case(
        "decompression_bomb",
        &|d| {
            good_folder(d);
            let bad = d.join("a").join("bomb.png");
            std::fs::write(&bad, png_header_only(100_000)).unwrap();
            bad
        },
        "limit",
    );
    case(
        "mixed_sizes",
        &|d| {
            good_folder(d);
            let bad = d.join("b").join("9.png");
            gray_image(9, 8, 0).save(&bad).unwrap();
            bad
        },
        "must share one size",
    );
    case("empty_folder", &|d| d.to_path_buf(), "empty");
    case(
        "class_without_images",
        &|d| {
            good_folder(d);
            let bad = d.join("c");
            std::fs::create_dir(&bad).unwrap();
            std::fs::write(bad.join("readme.txt"), "x").unwrap();
            bad
        },
        "no images",
    );
    case(
        "one_class",
        &|d| {
            let sub = d.join("only");
            std::fs::create_dir(&sub).unwrap();
            for i in 0..4 {
                gray_image(8, 8, i)
                    .save(sub.join(format!("{i}.png")))
                    .unwrap();
            }
            d.to_path_buf()
        },
        "only one class",
    );
    case(
        "non_utf8_name",
        &|d| {
            use std::os::unix::ffi::OsStrExt;
            good_folder(d);
            let name = std::ffi::OsStr::from_bytes(b"bad\xffname.png");
            gray_image(8, 8, 0).save(d.join("a").join(name)).unwrap();
            d.join("a")
        },
        "not valid UTF-8",
    );
    case(
        "idx_wrong_magic",
        &|d| {
            write_idx(d, "train", &cycle_labels(10, 2), 4, 4, false);
            let bad = d.join("train-images-idx3-ubyte");
            let mut bytes = std::fs::read(&bad).unwrap();
            bytes[2] = 0x09;
            std::fs::write(&bad, bytes).unwrap();
            bad
        },
        "wrong IDX magic",
    );
    case(
        "idx_count_mismatch",
        &|d| {
            write_idx(d, "train", &cycle_labels(10, 2), 4, 4, false);
            let labels = poisonscope::data::idx::encode_labels(&cycle_labels(9, 2));
            let bad = d.join("train-labels-idx1-ubyte");
            std::fs::write(&bad, labels).unwrap();
            bad
        },
        "holds 9 labels",
    );
    case(
        "idx_truncated",
        &|d| {
            write_idx(d, "train", &cycle_labels(10, 2), 4, 4, false);
            let bad = d.join("train-images-idx3-ubyte");
            let bytes = std::fs::read(&bad).unwrap();
            std::fs::write(&bad, &bytes[..bytes.len() - 5]).unwrap();
            bad
        },
        "header says 10 images",
    );
    case(
        "idx_corrupt_gzip",
        &|d| {
            write_idx(d, "train", &cycle_labels(10, 2), 4, 4, true);
            let bad = d.join("train-images-idx3-ubyte.gz");
            let mut bytes = std::fs::read(&bad).unwrap();
            let mid = bytes.len() / 2;
            bytes.truncate(mid);
            std::fs::write(&bad, bytes).unwrap();
            bad
        },
        "gzip",
    );
    case(
        "idx_missing_labels",
        &|d| {
            write_idx(d, "train", &cycle_labels(10, 2), 4, 4, false);
            std::fs::remove_file(d.join("train-labels-idx1-ubyte")).unwrap();
            d.join("train-images-idx3-ubyte")
        },
        "no label file",
    );
    case(
        "cifar_wrong_size",
        &|d| {
            let bad = d.join("data_batch_1.bin");
            let mut bytes = cifar_records(&cycle_labels(3, 3));
            bytes.pop();
            std::fs::write(&bad, bytes).unwrap();
            bad
        },
        "not a positive multiple of the 3073-byte record",
    );
    case(
        "cifar_bad_label",
        &|d| {
            let bad = d.join("data_batch_1.bin");
            std::fs::write(&bad, cifar_records(&[1, 2, 12])).unwrap();
            bad
        },
        "label 12",
    );
    cases
}

#[test]
fn every_bad_dataset_fails_cleanly_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let cases = build_corpus(root.path());
    let mut failures = Vec::new();
    for case in &cases {
        let out = poisonscope(&["inspect-data", case.source.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().collect();
        let named = case.names.to_string_lossy().replace('\u{fffd}', "");
        let ok = !out.status.success()
            && out.status.code() == Some(1)
            && lines.len() == 1
            && stderr.starts_with("error: ")
            && stderr.replace('\u{fffd}', "").contains(&named)
            && stderr.contains(case.says)
            && !stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "{}: status {:?}, stderr {stderr:?}",
                case.name,
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn missing_source_and_bad_config_fail_cleanly() {
    let out = poisonscope(&["inspect-data", "/no/such/folder"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("/no/such/folder: no such file or folder"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[train]\nepochs = 1\nlearning_rate = 3\n").unwrap();
    let out = poisonscope(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("c.toml:3: unknown field `learning_rate`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
