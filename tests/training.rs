//! End-to-end training on the embedded MNIST digits: accuracy and backdoor strength for SGD and
//! SAM, determinism, cancellation, divergence, checkpoints.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use poisonscope::config::{Experiment, OptimizerKind, TrainConfig};
use poisonscope::data::{Batcher, Dataset, Normalization};
use poisonscope::detect;
use poisonscope::run::pipeline;
use poisonscope::run::prepare::Prepared;
use poisonscope::run::report;
use poisonscope::train::job::{JobData, JobEvent, spawn_training};
use poisonscope::train::{self, TrainError, TrainEvent, checkpoint};

/// BadNets 5 % on the embedded digits, trained `epochs` with a short, fast recipe.
fn badnets_experiment(optimizer: &str, epochs: usize, limit: usize) -> Experiment {
    let text = format!(
        r#"
[dataset]
source = "embedded:mnist"
limit = {limit}
[attack]
kind = "badnets"
ratio = 0.05
[train]
optimizer = "{optimizer}"
epochs = {epochs}
batch_size = 64
lr = 0.05
augment = false
seed = 3
"#
    );
    Experiment::from_toml(Path::new("test.toml"), &text, &[]).unwrap()
}

fn never() -> AtomicBool {
    AtomicBool::new(false)
}

/// The logits of the first `n` test images, as plain numbers.
fn logits(
    model: &poisonscope::model::Net,
    data: &Dataset,
    norm: &Normalization,
    n: usize,
) -> Vec<f32> {
    let device = Device::flex();
    let batcher = Batcher {
        normalization: norm.clone(),
        augment: None,
    };
    let idx: Vec<usize> = (0..n).collect();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let batch = batcher.batch(data, &idx, &mut rng, &device);
    model
        .forward(batch.images)
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap()
}

/// Four epochs at batch 128 and lr 0.05 (the reference trains ten at lr 0.01; this is the short
/// version). SAM uses the reference's ρ = 0.05: at this learning rate ρ = 0.1 trains markedly
/// slower (95.1 % after three epochs, seed 3) — see the training issue's note. With three epochs
/// SGD reached 97.25 % and SAM (ρ 0.05) 96.75 %.
fn check_accuracy_and_backdoor(optimizer: &str) -> report::Report {
    let mut config = badnets_experiment(optimizer, 4, 0);
    config.train.batch_size = 128;
    config.train.rho = 0.05;
    let prepared = Prepared::load(&config).unwrap();
    let mut epochs = Vec::new();
    let trained = train::train(&config.train, prepared.train_data(), &never(), &mut |e| {
        if let TrainEvent::Epoch(stats) = e {
            eprintln!("{optimizer}: {stats:?}");
            epochs.push(stats);
        }
    })
    .unwrap();
    assert_eq!(epochs.len(), 4);
    assert!(
        trained.clean_accuracy >= 0.97,
        "{optimizer}: clean accuracy {}",
        trained.clean_accuracy
    );
    let asr = trained.attack_success_rate.unwrap();
    assert!(asr >= 0.90, "{optimizer}: attack success rate {asr}");
    // Detection on the trained model (the detection issue's end-to-end check).
    let data = prepared.train_data();
    let detection = detect::run(
        detect::Inspected {
            model: &trained.model,
            normalization: &trained.normalization,
            device: &Device::flex(),
            train: data.train,
            test: data.test,
        },
        &config.detect,
        pipeline::expected_ratio(&config),
        config.train.seed,
        &never(),
        &mut |_| {},
    )
    .unwrap();
    let report = poisonscope::run::evaluate::build(&config, &prepared, &trained, &detection, None);
    for (name, d) in &report.detectors {
        eprintln!(
            "{optimizer} {name}: TPR {:?} FPR {:?} F1 {:?} AUROC {:?} flagged {} ({:.1} s) {:?}",
            d.tpr, d.fpr, d.f1, d.auroc, d.flagged, d.seconds, d.details
        );
    }
    report
}

#[test]
fn sgd_learns_the_digits_and_the_badnets_backdoor() {
    check_accuracy_and_backdoor("sgd");
}

/// Also the end-to-end detection check on the SAM model, BadNets 5 %, with the default
/// (calibrated) decisions and no ε given. The published rules flagged a fixed share of clean
/// images (SS's TB rule ≈ 48 % FPR here, AC ≈ 8 %); the calibrated thresholds keep every
/// detector's FPR over the whole training set at ≤ 3 %, and the detectors whose ranking separates
/// the poisons keep their TPR (measured: SS 94 %, SCAn 100 %, Beatrix 100 %, FPR 1–2 %).
/// SPECTRE (ε unknown: its robust estimate removes 1 % while the target class is a third poison)
/// and the loss detector (the backdoor was learned, so the poisons fit their label) find little
/// here, and this test does not pretend otherwise.
#[test]
fn sam_learns_the_digits_and_the_badnets_backdoor_and_detection_finds_it() {
    let report = check_accuracy_and_backdoor("sam");
    let d = |name: &str| &report.detectors[name];
    let all = format!("{:#?}", report.detectors);
    for name in ["ac", "ss", "spectre", "scan", "beatrix", "loss"] {
        assert!(d(name).fpr.unwrap() <= 0.03, "{name}: {all}");
    }
    for name in ["ss", "scan", "beatrix"] {
        assert!(d(name).tpr.unwrap() >= 0.8, "{name}: {all}");
    }
    let consensus = report.consensus.as_ref().unwrap();
    assert!(
        consensus.tpr.unwrap() >= 0.8 && consensus.fpr.unwrap() <= 0.02,
        "{consensus:?}"
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn same_seed_gives_the_same_weights_and_another_seed_does_not() {
    let config = badnets_experiment("sam", 1, 640);
    let prepared = Prepared::load(&config).unwrap();
    let run = |seed: u64| {
        let train_config = TrainConfig {
            seed,
            ..config.train.clone()
        };
        let trained =
            train::train(&train_config, prepared.train_data(), &never(), &mut |_| {}).unwrap();
        logits(
            &trained.model,
            &prepared.clean.test,
            &trained.normalization,
            16,
        )
    };
    let first = run(3);
    assert_eq!(first, run(3), "same seed, same logits bit for bit");
    assert_ne!(first, run(4));
}

#[test]
fn cancelling_mid_epoch_stops_before_the_next_batch_and_writes_no_checkpoint() {
    let config = badnets_experiment("sgd", 2, 640);
    let prepared = Prepared::load(&config).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let cancel = AtomicBool::new(false);
    let mut batches_after_cancel = 0;
    let result = pipeline::train_and_save(&config.train, &prepared, &dir, &cancel, &mut |e| {
        if let TrainEvent::Batch { batch, .. } = e {
            if cancel.load(Ordering::Relaxed) {
                batches_after_cancel += 1;
            }
            if batch == 2 {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    });
    let error = result.unwrap_err();
    assert!(
        matches!(error, pipeline::PipelineError::Train(TrainError::Cancelled)),
        "{error}"
    );
    assert_eq!(batches_after_cancel, 0);
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn a_job_on_its_worker_thread_reports_progress_and_cancels() {
    let config = badnets_experiment("sam", 3, 640);
    let prepared = Prepared::load(&config).unwrap();
    let data = prepared.train_data();
    let job = spawn_training(
        config.train.clone(),
        Arc::new(JobData {
            train: data.train.clone(),
            test: data.test.clone(),
            triggered: data.triggered.cloned(),
        }),
        || {},
    )
    .unwrap();
    let mut started = false;
    let mut batches_after_cancel = 0;
    let mut cancelled = false;
    let end = loop {
        match job.events.recv().unwrap() {
            JobEvent::Progress(TrainEvent::Started { train_samples, .. }) => {
                assert_eq!(train_samples, 640);
                started = true;
            }
            JobEvent::Progress(TrainEvent::Batch { done, .. }) => {
                if cancelled {
                    batches_after_cancel += 1;
                }
                if done == 2 {
                    job.cancel();
                    cancelled = true;
                }
            }
            JobEvent::Progress(TrainEvent::Epoch(_)) => {
                panic!("cancelled before the first epoch ended")
            }
            other => break other,
        }
    };
    assert!(started);
    // The worker may be inside the batch it started before the flag was set.
    assert!(batches_after_cancel <= 1, "{batches_after_cancel}");
    assert!(
        matches!(end, JobEvent::Failed(TrainError::Cancelled)),
        "{end:?}"
    );
}

#[test]
fn a_diverging_loss_stops_with_a_clear_error() {
    let mut config = badnets_experiment("sgd", 1, 640);
    config.train.lr = 1e9;
    config.train.momentum = 0.0;
    let prepared = Prepared::load(&config).unwrap();
    let error =
        train::train(&config.train, prepared.train_data(), &never(), &mut |_| {}).unwrap_err();
    assert!(matches!(error, TrainError::Diverged { .. }), "{error}");
    assert!(error.to_string().contains("lower train.lr"), "{error}");
}

#[test]
fn a_checkpoint_loads_back_to_the_same_predictions() {
    let config = badnets_experiment("asam", 1, 640);
    let prepared = Prepared::load(&config).unwrap();
    let out = tempfile::tempdir().unwrap();
    let trained =
        pipeline::train_and_save(&config.train, &prepared, out.path(), &never(), &mut |_| {})
            .unwrap();
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [checkpoint::WEIGHTS, checkpoint::META],
        "no temp files left"
    );
    let loaded = checkpoint::load(out.path(), &Device::flex()).unwrap();
    assert_eq!(loaded.meta.train.optimizer, OptimizerKind::Asam);
    assert_eq!(loaded.normalization, trained.normalization);
    let test = &prepared.clean.test;
    assert_eq!(
        logits(&loaded.model, test, &loaded.normalization, 32),
        logits(&trained.model, test, &trained.normalization, 32)
    );
    // A truncated weights file is an error naming the file, not a panic.
    let weights = out.path().join(checkpoint::WEIGHTS);
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let error = checkpoint::load(out.path(), &Device::flex()).err().unwrap();
    assert!(error.to_string().contains("model.bpk"), "{error}");
}

#[test]
fn run_without_an_attack_trains_and_writes_the_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let config = out.path().join("clean.toml");
    std::fs::write(
        &config,
        "[dataset]\nsource = \"embedded:mnist\"\nlimit = 512\n[train]\noptimizer = \"sgd\"\nepochs = 1\n",
    )
    .unwrap();
    let dir = out.path().join("run");
    let stdout = common::ok_stdout(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(stdout.contains("clean accuracy"), "{stdout}");
    assert!(!stdout.contains("attack success rate"), "{stdout}");
    for name in ["model.bpk", "model.json", "training.json", "config.toml"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("training.json")).unwrap()).unwrap();
    assert_eq!(training["history"].as_array().unwrap().len(), 1);
    // Detection ran: scores and flags for every detector, no ground-truth metrics.
    for name in ["report.json", "scores.csv"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(report["attack"].is_null());
    assert!(report["training"]["attack_success_rate"].is_null());
    assert!(report["backdoor_effect"].is_null());
    assert_eq!(report["dataset"]["n_train"], 512);
    let detectors = report["detectors"].as_object().unwrap();
    assert_eq!(detectors.len(), 6, "{detectors:?}");
    for (name, d) in detectors {
        for key in ["tpr", "fpr", "precision", "f1", "auroc"] {
            assert!(d[key].is_null(), "{name}.{key} = {}", d[key]);
        }
        assert!(d["flagged"].as_u64().is_some(), "{name}");
    }
    let scores = std::fs::read_to_string(dir.join("scores.csv")).unwrap();
    let mut lines = scores.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("index,label,given_label,poisoned,"),
        "{header}"
    );
    assert!(header.contains("ss_score,ss_flag"), "{header}");
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[3], "", "poisoned is unknown without an attack");
    assert_eq!(scores.lines().count(), 513);
}

/// A model that cannot fit (learning rate far too small) is reported as near chance, with the
/// warning in report.json; the same data with the normal recipe carries no such warning.
#[test]
fn a_model_that_cannot_fit_is_flagged_as_near_chance() {
    let mut config = badnets_experiment("sgd", 1, 800);
    config.train.lr = 1e-6;
    let prepared = Prepared::load(&config).unwrap();
    let outcome = pipeline::run(&config, &prepared, &never(), &mut |_| {}).unwrap();
    let kinds: Vec<_> = outcome.report.warnings.iter().map(|w| w.kind).collect();
    assert!(
        kinds.contains(&poisonscope::diagnostics::WarningKind::NearChance),
        "{:#?} {:?}",
        outcome.report.warnings,
        outcome.report.fit
    );
    let fit = outcome.report.fit.as_ref().unwrap();
    assert!(fit.train_accuracy < 0.4, "{fit:?}");

    // Three epochs: two left the fit at 0.895–0.91 depending on which tests ran beside it (Burn's
    // device seed is process-global, so parallel tests draw different initial weights).
    let mut config = badnets_experiment("sgd", 3, 800);
    config.attack = None;
    let prepared = Prepared::load(&config).unwrap();
    let outcome = pipeline::run(&config, &prepared, &never(), &mut |_| {}).unwrap();
    let fit = outcome.report.fit.as_ref().unwrap();
    assert!(
        !outcome.report.warnings.iter().any(|w| matches!(
            w.kind,
            poisonscope::diagnostics::WarningKind::NearChance
                | poisonscope::diagnostics::WarningKind::NotFitted
        )),
        "{:#?} {fit:?}",
        outcome.report.warnings
    );
    assert!(fit.train_accuracy > 0.9, "{fit:?}");
}
