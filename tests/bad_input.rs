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
    // Archives unpacked into folders named after the file they held.
    case(
        "idx_file_as_folder",
        &|d| {
            let bad = d.join("train-images-idx3-ubyte");
            std::fs::create_dir(&bad).unwrap();
            std::fs::write(bad.join("train-images-idx3-ubyte"), b"x").unwrap();
            std::fs::create_dir(d.join("train-labels-idx1-ubyte")).unwrap();
            bad
        },
        "named like an MNIST IDX file",
    );
    case(
        "cifar_file_as_folder",
        &|d| {
            let bad = d.join("data_batch_1.bin");
            std::fs::create_dir(&bad).unwrap();
            bad
        },
        "named like a CIFAR-10 binary file",
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

// ---------------------------------------------------------------------------------------------
// The generated corpus: hostile configs, datasets, checkpoints and output folders through every
// command. Each case must exit 1 with one `error: ` line naming the key or the file, never panic,
// leave the source data unchanged and create nothing outside where it was told to write.

/// A content hash of every file under `dir` (names and bytes), for "the source is unchanged".
fn tree_hash(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        f.hash(&mut hasher);
        let len = std::fs::metadata(&f).map_or(0, |m| m.len());
        if len > 64 << 20 {
            // A huge (sparse) file: its size and modification time stand for its bytes.
            len.hash(&mut hasher);
            std::fs::metadata(&f)
                .and_then(|m| m.modified())
                .ok()
                .hash(&mut hasher);
        } else {
            std::fs::read(&f).unwrap_or_default().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Every path under `dir`, sorted (to see what a failing command left behind).
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// One hostile input: the arguments, and words one of which the error line must contain.
struct Hostile {
    name: String,
    args: Vec<String>,
    names: Vec<String>,
}

/// Runs every case and asserts that each was refused cleanly (see the section comment).
fn assert_all_refused(cases: &[Hostile], watched: &[&Path], scratch: &Path) {
    println!("{} hostile cases", cases.len());
    let hashes: Vec<u64> = watched.iter().map(|d| tree_hash(d)).collect();
    let before = listing(scratch);
    let mut failures = Vec::new();
    for case in cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let out = poisonscope(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines = stderr.lines().count();
        let named = case
            .names
            .iter()
            .any(|n| !n.is_empty() && stderr.contains(n.as_str()));
        let after = listing(scratch);
        let ok = out.status.code() == Some(1)
            && lines == 1
            && stderr.starts_with("error: ")
            && named
            && !stderr.contains("panicked")
            && after == before;
        if !ok {
            let extra: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
            failures.push(format!(
                "{}: status {:?}, stderr {stderr:?}, left {extra:?}",
                case.name,
                out.status.code()
            ));
            // Clean up so the next case starts from the same tree.
            for p in extra.iter().rev() {
                let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
            }
        }
    }
    for (d, h) in watched.iter().zip(hashes) {
        if tree_hash(d) != h {
            failures.push(format!("{} changed", d.display()));
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

/// (key, bad TOML values) — every value must be refused before anything is loaded or written.
const BAD_VALUES: &[(&str, &[&str])] = &[
    (
        "dataset.source",
        &["\"\"", "\"embedded:cifar\"", "\"/no/such/folder\"", "3"],
    ),
    (
        "dataset.test_fraction",
        &["-0.1", "1.0", "nan", "inf", "\"x\""],
    ),
    (
        "dataset.resize",
        &[
            "[0, 0]",
            "[1]",
            "[32, 32, 3]",
            "[5000, 5000]",
            "[-1, 3]",
            "[28, 0]",
        ],
    ),
    ("dataset.limit", &["-1", "\"all\"", "1"]),
    ("dataset.split_seed", &["-3"]),
    ("train.epochs", &["0", "-1", "1000000", "1.5"]),
    ("train.batch_size", &["0", "1", "100000"]),
    ("train.lr", &["0", "-1", "nan", "inf", "11", "\"fast\""]),
    ("train.rho", &["-0.1", "nan", "inf", "1e6"]),
    ("train.momentum", &["-0.5", "1.0", "nan", "inf"]),
    ("train.weight_decay", &["-1", "nan", "inf", "2"]),
    ("train.optimizer", &["\"adam\"", "1"]),
    ("train.model", &["\"vgg\""]),
    ("train.schedule", &["\"step\""]),
    ("train.normalize", &["\"zscore\""]),
    ("train.device", &["\"tpu\""]),
    ("train.augment", &["\"yes\""]),
    ("train.learning_rate", &["0.1"]),
    ("detect.methods", &["[]", "[\"nope\"]", "\"ss\""]),
    ("detect.expected_ratio", &["0", "1", "nan", "-0.2", "inf"]),
    ("detect.reference_quantile", &["0", "1.5", "nan", "-1"]),
    ("detect.consensus_agreement", &["0", "100", "-2"]),
    ("detect.pca_variance", &["0", "2", "nan"]),
    ("detect.shrinkage", &["-1", "2", "nan"]),
    ("detect.clean_per_class", &["0", "1", "1000000000"]),
    ("detect.pca_rank", &["1000000"]),
    ("detect.pca_max_rank", &["0", "1000000"]),
    ("detect.tac_top_k", &["0"]),
    ("detect.outlier_floor", &["-1", "nan", "1000"]),
    ("detect.whitening", &["\"zca\""]),
    ("detect.decision", &["\"vote\""]),
    ("detect.ss_rule", &["\"xx\""]),
    ("detect.method", &["[\"ss\"]"]),
    ("other.key", &["1"]),
];

/// Bad `[attack]` keys (each case also sets `kind`).
const BAD_ATTACK: &[(&str, &str, &[&str])] = &[
    ("badnets", "ratio", &["0", "1", "-0.5", "nan", "inf", "2"]),
    (
        "badnets",
        "patch_size",
        &["0", "4000000000", "5000", "-3", "2.5"],
    ),
    (
        "badnets",
        "position",
        &[
            "\"middle\"",
            "\"99999999999999999999,1\"",
            "\"1,2,3\"",
            "\"-1,-1\"",
        ],
    ),
    ("badnets", "target", &["70000", "-1"]),
    ("badnets", "mode", &["\"all-to-none\""]),
    ("blended", "alpha", &["0", "-0.1", "1.5", "nan", "inf"]),
    ("adaptive-blend", "alpha_test", &["0", "2", "nan"]),
    ("sig", "delta", &["0", "-1", "300", "nan", "inf"]),
    ("sig", "frequency", &["0", "-1", "nan", "1e9"]),
    ("wanet", "grid_size", &["0", "1000", "-1"]),
    ("wanet", "warp_strength", &["0", "nan", "100", "-1"]),
    ("wanet", "cover_ratio", &["-1", "nan", "100"]),
    ("lf", "strength", &["0", "nan", "1000", "-5"]),
    // LC: a PGD budget outside the pixel range; a ratio beyond the target class's share.
    ("lc", "epsilon", &["-1", "nan", "300", "inf"]),
    ("lc", "ratio", &["0.5"]),
    // TaCT: no source, the target as a source, a class the demo set does not have.
    ("tact", "source_classes", &["[]", "[0]", "[99]"]),
    ("badnets", "trigger_image", &["\"\""]),
    ("badnets", "trigger_mask", &["\"\"", "\"/tmp/m.png\""]),
    ("badnets", "kind2", &["1"]),
];

#[test]
fn hostile_configs_are_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let scratch = root.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let mut cases = Vec::new();
    let mut n = 0;
    let mut add = |text: String, key: &str, value: &str, names: Vec<String>| {
        n += 1;
        let file = root.path().join(format!("c{n}.toml"));
        std::fs::write(&file, &text).unwrap();
        let out = scratch.join(format!("out{n}"));
        let leaf = key.rsplit('.').next().unwrap_or(key).to_owned();
        let mut names = names;
        names.push(leaf);
        if value.contains(['/', ':']) {
            // A path or source the message must name.
            names.push(value.trim_matches('"').to_owned());
        }
        names.push(format!("c{n}.toml"));
        for command in ["run", "compare"] {
            cases.push(Hostile {
                name: format!("{command} {key} = {value}"),
                args: vec![
                    command.to_owned(),
                    file.to_string_lossy().into_owned(),
                    "--out".to_owned(),
                    out.to_string_lossy().into_owned(),
                ],
                names: names.clone(),
            });
        }
    };
    for (key, values) in BAD_VALUES {
        let (table, leaf) = key.split_once('.').unwrap();
        for value in *values {
            add(format!("[{table}]\n{leaf} = {value}\n"), key, value, vec![]);
        }
    }
    for (kind, key, values) in BAD_ATTACK {
        for value in *values {
            add(
                format!("[attack]\nkind = \"{kind}\"\n{key} = {value}\n"),
                &format!("attack.{key}"),
                value,
                vec!["position".to_owned(), "trigger".to_owned()],
            );
        }
    }
    assert!(cases.len() >= 200, "{} cases", cases.len());
    assert_all_refused(&cases, &[], &scratch);
}

/// A CIFAR-10 folder whose `batches.meta.txt` lists `names`.
fn cifar_with_names(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("data_batch_1.bin"),
        cifar_records(&cycle_labels(20, 10)),
    )
    .unwrap();
    std::fs::write(dir.join("batches.meta.txt"), names.join("\n")).unwrap();
}

#[test]
fn hostile_datasets_and_outputs_fail_cleanly_and_write_nothing_outside_out() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut cases = Vec::new();
    let config = |name: &str, body: String| -> PathBuf {
        let path = root.path().join(format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        path
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut push = |name: String, args: Vec<String>, names: Vec<String>| {
        cases.push(Hostile { name, args, names });
    };

    // Class names that would leave the output folder, or merge classes.
    let ten = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"];
    for (i, bad) in [
        "../escape",
        "a/b",
        "..",
        ".",
        "x\ty",
        "/etc",
        "c0",
        "..\\..\\w",
        "\u{1b}[31m",
    ]
    .iter()
    .enumerate()
    {
        let dir = data.join(format!("cifar{i}"));
        let mut names = ten.to_vec();
        names.push(bad);
        cifar_with_names(&dir, &names);
        let meta = dir.join("batches.meta.txt");
        let c = config(
            &format!("cifar{i}"),
            format!(
                "[dataset]\nsource = {:?}\n[attack]\nkind = \"badnets\"\nratio = 0.1\n",
                s(&dir)
            ),
        );
        for command in ["poison", "run"] {
            push(
                format!("{command} cifar class name {bad:?}"),
                vec![
                    command.into(),
                    s(&c),
                    "--out".into(),
                    s(&scratch.join(format!("o{i}"))),
                ],
                vec![s(&meta)],
            );
        }
        push(
            format!("inspect cifar class name {bad:?}"),
            vec!["inspect-data".into(), s(&dir)],
            vec![s(&meta)],
        );
    }

    // Images too small (or too large) for the model.
    for (h, w) in [(1, 1), (1, 200), (3, 3), (2, 40)] {
        let dir = data.join(format!("tiny{h}x{w}"));
        for class in ["a", "b"] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for i in 0..6 {
                gray_image(h, w, i)
                    .save(dir.join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let c = config(
            &format!("tiny{h}x{w}"),
            format!("[dataset]\nsource = {:?}\ntest_fraction = 0.5\n", s(&dir)),
        );
        push(
            format!("run on {h}×{w} images"),
            vec![
                "run".into(),
                s(&c),
                "--out".into(),
                s(&scratch.join("tiny")),
            ],
            vec![s(&dir)],
        );
    }
    for [h, w] in [[1, 1], [2, 2], [3, 28], [300, 300]] {
        let c = config(
            &format!("resize{h}x{w}"),
            format!("[dataset]\nresize = [{h}, {w}]\nlimit = 100\n"),
        );
        push(
            format!("run resized to {h}×{w}"),
            vec!["run".into(), s(&c), "--out".into(), s(&scratch.join("r"))],
            vec!["embedded:mnist".into(), "dataset.resize".into()],
        );
    }

    // A dataset without a usable test split.
    let one_each = data.join("one_each");
    for class in ["a", "b"] {
        std::fs::create_dir_all(one_each.join(class)).unwrap();
        gray_image(8, 8, 1)
            .save(one_each.join(class).join("0.png"))
            .unwrap();
    }
    let c = config(
        "no_test",
        format!(
            "[dataset]\nsource = {:?}\ntest_fraction = 0.0\n",
            s(&one_each)
        ),
    );
    push(
        "run without a test split".into(),
        vec!["run".into(), s(&c), "--out".into(), s(&scratch.join("nt"))],
        vec![s(&one_each)],
    );

    // Layouts that are not class folders.
    for (name, dirs) in [
        ("nested", &["x/y"][..]),
        ("val_only", &["val/a", "val/b"][..]),
        ("data_named_folder", &["data_batch_1.bin/a"][..]),
    ] {
        let dir = data.join(name);
        for d in dirs {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        push(
            format!("inspect {name}"),
            vec!["inspect-data".into(), s(&dir)],
            vec![s(&dir)],
        );
    }

    // IDX: a header that asks for too much, a gzip bomb whose data outgrow the header.
    // A gzipped IDX folder with these image-file bytes and two labels.
    let idx_gz = |name: &str, images: &[u8]| -> PathBuf {
        let dir = data.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_gz(&dir.join("train-images-idx3-ubyte.gz"), images);
        write_gz(
            &dir.join("train-labels-idx1-ubyte.gz"),
            &poisonscope::data::idx::encode_labels(&[0, 1]),
        );
        dir
    };
    let mut header = poisonscope::data::idx::encode_images(0, 4, 4, &[]);
    header[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    header[8..12].copy_from_slice(&4096u32.to_be_bytes());
    header[12..16].copy_from_slice(&4096u32.to_be_bytes());
    let big_header = idx_gz("idx_big_header", &header);
    push(
        "idx header asking for terabytes".into(),
        vec!["inspect-data".into(), s(&big_header)],
        vec![s(&big_header.join("train-images-idx3-ubyte.gz"))],
    );
    let mut bytes = poisonscope::data::idx::encode_images(2, 4, 4, &[0; 32]);
    bytes.extend(std::iter::repeat_n(0u8, 64 << 20));
    let bomb = idx_gz("idx_bomb", &bytes);
    push(
        "idx gzip bomb".into(),
        vec!["inspect-data".into(), s(&bomb)],
        vec![s(&bomb.join("train-images-idx3-ubyte.gz"))],
    );
    // CIFAR: a batch file far larger than any CIFAR batch (sparse, nothing is read).
    let huge = data.join("cifar_huge");
    std::fs::create_dir_all(&huge).unwrap();
    let f = std::fs::File::create(huge.join("data_batch_1.bin")).unwrap();
    f.set_len(3073 * 1_000_000).unwrap();
    push(
        "cifar batch of 3 GB".into(),
        vec!["inspect-data".into(), s(&huge)],
        vec![s(&huge.join("data_batch_1.bin"))],
    );

    // Triggers that change nothing.
    let black = root.path().join("black.png");
    image::GrayImage::new(3, 3).save(&black).unwrap();
    let c = config(
        "black_trigger",
        format!(
            "[dataset]\nlimit = 200\n[attack]\nkind = \"image\"\nratio = 0.05\ntrigger_image = {:?}\n",
            s(&black)
        ),
    );
    for command in ["poison", "run"] {
        push(
            format!("{command} with an all-black trigger"),
            vec![
                command.into(),
                s(&c),
                "--out".into(),
                s(&scratch.join("bt")),
            ],
            vec!["changes no pixel".into()],
        );
    }
    let c = config(
        "missing_trigger",
        "[attack]\nkind = \"image\"\ntrigger_image = \"/no/such/trigger.png\"\n".to_owned(),
    );
    push(
        "missing trigger image".into(),
        vec!["run".into(), s(&c), "--out".into(), s(&scratch.join("mt"))],
        vec!["/no/such/trigger.png".into()],
    );

    // Output folders: inside the source, a file, a non-empty folder, --force on a stranger's.
    let folder = data.join("good");
    good_folder(&folder);
    let c = config(
        "good",
        format!(
            "[dataset]\nsource = {:?}\n[attack]\nkind = \"badnets\"\nratio = 0.3\n",
            s(&folder)
        ),
    );
    let a_file = scratch.join("a_file");
    std::fs::write(&a_file, "x").unwrap();
    let stranger = scratch.join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    std::fs::write(stranger.join("notes.txt"), "mine").unwrap();
    for command in ["run", "compare", "poison"] {
        push(
            format!("{command} --out inside the source"),
            vec![
                command.into(),
                s(&c),
                "--out".into(),
                s(&folder.join("out")),
            ],
            vec![s(&folder.join("out"))],
        );
        push(
            format!("{command} --out is a file"),
            vec![command.into(), s(&c), "--out".into(), s(&a_file)],
            vec![s(&a_file)],
        );
        push(
            format!("{command} --out under a file"),
            vec![
                command.into(),
                s(&c),
                "--out".into(),
                s(&a_file.join("sub")),
            ],
            vec![s(&a_file), "is not a folder".into()],
        );
        push(
            format!("{command} --out is a stranger's folder"),
            vec![command.into(), s(&c), "--out".into(), s(&stranger)],
            vec![s(&stranger)],
        );
        push(
            format!("{command} --force over a stranger's folder"),
            vec![
                command.into(),
                s(&c),
                "--out".into(),
                s(&stranger),
                "--force".into(),
            ],
            vec![s(&stranger)],
        );
    }
    push(
        "detect without a run".into(),
        vec![
            "detect".into(),
            s(&scratch.join("no_run")),
            "--out".into(),
            s(&scratch.join("d")),
        ],
        vec![s(&scratch.join("no_run"))],
    );
    push(
        "detect --set train.lr".into(),
        vec![
            "detect".into(),
            s(&scratch.join("no_run")),
            "--out".into(),
            s(&scratch.join("d")),
            "--set".into(),
            "train.lr=0.1".into(),
        ],
        vec!["train.lr".into()],
    );

    assert_all_refused(&cases, &[&data], &scratch);
}

/// `detect RUN --out OUT`, whose error must name `names`.
fn detect_case(name: &str, run: &Path, out: &Path, names: PathBuf) -> Hostile {
    Hostile {
        name: name.to_owned(),
        args: vec![
            "detect".into(),
            run.to_string_lossy().into_owned(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ],
        names: vec![names.to_string_lossy().into_owned()],
    }
}

/// Copies the files of run folder `from` into a new folder `to`.
fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

/// A trained run whose checkpoint is then damaged: `detect` must refuse it by name.
#[test]
fn damaged_checkpoints_are_refused_by_detect() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("c.toml");
    std::fs::write(
        &config,
        "[dataset]\nlimit = 200\n[train]\nepochs = 1\nbatch_size = 64\n[detect]\nmethods = [\"loss\"]\n",
    )
    .unwrap();
    let run = root.path().join("run");
    ok_stdout(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut cases = Vec::new();
    type Damage = Box<dyn Fn(&mut serde_json::Value)>;
    let damage: Vec<(&str, Damage)> = vec![
        ("std 0", Box::new(|m| m["std"] = serde_json::json!([0.0]))),
        (
            "mean 1e300",
            Box::new(|m| m["mean"] = serde_json::json!([1e300])),
        ),
        (
            "two means",
            Box::new(|m| m["mean"] = serde_json::json!([0.1, 0.2])),
        ),
        ("no std", Box::new(|m| m["std"] = serde_json::json!([]))),
        (
            "3 classes",
            Box::new(|m| m["class_names"] = serde_json::json!(["0", "1", "2"])),
        ),
        (
            "one class",
            Box::new(|m| m["class_names"] = serde_json::json!(["0"])),
        ),
        (
            "shape 32",
            Box::new(|m| m["shape"] = serde_json::json!([32, 32, 1])),
        ),
        (
            "shape rgb",
            Box::new(|m| m["shape"] = serde_json::json!([28, 28, 3])),
        ),
        (
            "shape 0",
            Box::new(|m| m["shape"] = serde_json::json!([0, 0, 1])),
        ),
        (
            "shape huge",
            Box::new(|m| m["shape"] = serde_json::json!([100000, 100000, 1])),
        ),
        ("not json", Box::new(|m| *m = serde_json::json!("x"))),
    ];
    for (i, (name, hurt)) in damage.iter().enumerate() {
        let copy = root.path().join(format!("run{i}"));
        copy_run(&run, &copy);
        let mut m = meta.clone();
        hurt(&mut m);
        std::fs::write(copy.join("model.json"), m.to_string()).unwrap();
        cases.push(detect_case(
            name,
            &copy,
            &scratch.join("d"),
            copy.join("model.json"),
        ));
    }
    // Weights that do not load, and a config whose data no longer match the model.
    let copy = root.path().join("run_bad_weights");
    copy_run(&run, &copy);
    std::fs::write(copy.join("model.bpk"), b"not weights").unwrap();
    cases.push(detect_case(
        "damaged weights",
        &copy,
        &scratch.join("d"),
        copy.join("model.bpk"),
    ));
    let copy = root.path().join("run_resized");
    copy_run(&run, &copy);
    let text = std::fs::read_to_string(copy.join("config.toml")).unwrap();
    std::fs::write(
        copy.join("config.toml"),
        text.replace("[dataset]", "[dataset]\nresize = [16, 16]"),
    )
    .unwrap();
    cases.push(detect_case(
        "data resized since training",
        &copy,
        &scratch.join("d"),
        copy.join("model.json"),
    ));
    assert_all_refused(&cases, &[&run], &scratch);
}

/// `--resize` past the bound of `dataset.resize` (or not a size at all): exit 1, one line naming
/// the option, before any image is read (it once tried to allocate 100000² × N bytes).
#[test]
fn a_resize_option_out_of_bounds_is_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    good_folder(root.path());
    for bad in [
        "100000x100000",
        "4294967295x28",
        "28x4294967296",
        "0x5",
        "2049x2049",
        "abc",
        "28",
        "-1x3",
    ] {
        let out = poisonscope(&[
            "inspect-data",
            root.path().to_str().unwrap(),
            "--resize",
            bad,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{bad}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: --resize {bad}: ")),
            "{bad}: {stderr}"
        );
    }
    let out = ok_stdout(&[
        "inspect-data",
        root.path().to_str().unwrap(),
        "--resize",
        "16x12",
    ]);
    assert!(out.contains("16×12"), "{out}");
}

/// A process of poisonscope started with `args`, its stderr collected as it comes.
struct Watched {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watched {
    fn start(args: &[&str]) -> Self {
        use std::io::Read as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poisonscope"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = std::sync::Arc::clone(&stderr);
        std::thread::Builder::new()
            .name("stderr".to_owned())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
            .unwrap();
        Self { child, stderr }
    }

    /// Waits (up to two minutes) until `ready`, then sends `signal`; returns the exit code and
    /// the whole stderr.
    fn interrupt_when(
        mut self,
        signal: &str,
        ready: impl Fn(&str) -> bool,
    ) -> (Option<i32>, String) {
        let started = std::time::Instant::now();
        while !ready(&self.stderr.lock().unwrap()) {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "ended before it could be interrupted: {}",
                self.stderr.lock().unwrap()
            );
            assert!(started.elapsed().as_secs() < 120, "never ready");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone();
        (status.code(), stderr)
    }
}

/// Hidden entries (partial folders, temporary files), claims and locks under `dir`, recursively.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".claim") || name.ends_with(".lock") {
            out.push(path.clone());
        }
        if path.is_dir() {
            out.extend(leftovers(&path));
        }
    }
    out
}

/// Ctrl-C (SIGINT) or SIGTERM in the middle of each command that writes: exit 128 + signal, one
/// line saying so, and nothing unfinished left: no hidden partial folder or temporary file
/// beside `--out`, no `--out` for the staged commands, no claim or lock in a sweep folder.
#[test]
fn an_interrupted_command_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("c.toml");
    std::fs::write(
        &config,
        "[dataset]\nsource = \"embedded:mnist\"\n[train]\nepochs = 3\nbatch_size = 64\n\
         [attack]\nkind = \"badnets\"\nratio = 0.05\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    // A run to re-detect.
    let run = root.path().join("run");
    ok_stdout(&[
        "run",
        &config,
        "--out",
        run.to_str().unwrap(),
        "--set",
        "dataset.limit=2000",
        "--set",
        "train.epochs=1",
    ]);
    let grid = root.path().join("grid.toml");
    std::fs::write(
        &grid,
        "seeds = [0]\narms = [\"sgd\"]\n[base.train]\nepochs = 3\n\
         [[attack]]\nlabel = \"BadNets\"\nkind = \"badnets\"\nratios = [0.05]\n",
    )
    .unwrap();

    let out_of = |name: &str| root.path().join("outs").join(name);
    let partial_beside = |name: &'static str| {
        let parent = root.path().join("outs");
        move |_: &str| {
            std::fs::read_dir(&parent).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!(".{name}.partial-"))
                })
            })
        }
    };
    let training = |stderr: &str| stderr.contains("training on");
    std::fs::create_dir(root.path().join("outs")).unwrap();
    /// (command, arguments, signal, when to send it)
    type Case = (
        &'static str,
        Vec<String>,
        &'static str,
        Box<dyn Fn(&str) -> bool>,
    );
    let cases: Vec<Case> = vec![
        (
            "poison",
            vec![
                "poison".into(),
                config.clone(),
                "--out".into(),
                out_of("poison").to_string_lossy().into(),
            ],
            "INT",
            Box::new(partial_beside("poison")),
        ),
        (
            "run",
            vec![
                "run".into(),
                config.clone(),
                "--out".into(),
                out_of("run").to_string_lossy().into(),
            ],
            "INT",
            Box::new(training),
        ),
        (
            "compare",
            vec![
                "compare".into(),
                config.clone(),
                "--out".into(),
                out_of("compare").to_string_lossy().into(),
            ],
            "TERM",
            Box::new(training),
        ),
        (
            "detect",
            vec![
                "detect".into(),
                run.to_string_lossy().into(),
                "--out".into(),
                out_of("detect").to_string_lossy().into(),
            ],
            "INT",
            Box::new(partial_beside("detect")),
        ),
        (
            "sweep",
            vec![
                "sweep".into(),
                grid.to_string_lossy().into(),
                "--out".into(),
                out_of("sweep").to_string_lossy().into(),
            ],
            "INT",
            Box::new(training),
        ),
    ];
    for (name, args, signal, ready) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = Watched::start(&args).interrupt_when(signal, ready);
        let expected = if signal == "INT" { 130 } else { 143 };
        assert_eq!(code, Some(expected), "{name}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ")
                && (last.contains("interrupted") || last.contains("SIGTERM")),
            "{name}: {stderr}"
        );
        let left = leftovers(&root.path().join("outs"));
        assert!(left.is_empty(), "{name} left {left:?}");
        if name == "sweep" {
            // The sweep's folder stays (finished cells are kept); its cell was not finished.
            assert!(out_of("sweep").join("cells").is_dir());
            assert_eq!(
                std::fs::read_dir(out_of("sweep").join("cells"))
                    .unwrap()
                    .count(),
                0
            );
        } else {
            assert!(!out_of(name).exists(), "{name}: --out was created");
        }
    }
}

/// Mistakes on the command line itself (an unknown flag or subcommand, a missing option, options
/// that exclude each other, a value that is not a number): exit 1 and one line naming the
/// argument, like every other refusal (not clap's multi-line usage and exit code 2).
#[test]
fn command_line_mistakes_are_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "frobnicate"),
        (&["run", "c.toml"], "--out"),
        (&["run", "c.toml", "--out", "o", "--bogus"], "--bogus"),
        (
            &[
                "sweep",
                "g.toml",
                "--out",
                "o",
                "--tables-only",
                "--shard",
                "0/2",
            ],
            "--tables-only",
        ),
        (&["sweep", "g.toml", "--out", "o", "--shard", "-1/2"], "-1"),
        (&["bench", "rerank", "r", "--marks", "1.5"], "--marks"),
        (&["inspect-data"], "SOURCE"),
    ];
    for (args, names) in cases {
        let out = poisonscope(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(names),
            "{args:?}: {stderr}"
        );
    }
    // Help and version still print and succeed.
    for flag in ["--help", "--version"] {
        let out = poisonscope(&[flag]);
        assert!(out.status.success(), "{flag}");
        assert!(!out.stdout.is_empty(), "{flag}");
    }
}
