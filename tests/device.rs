//! Choosing the device: CUDA asked for where it cannot run is one clear line, `auto` falls back
//! to the CPU and the report says where training ran. With the `cuda` feature and a usable GPU,
//! a short training runs on it and agrees with the CPU; without one those tests say why and
//! skip.

mod common;

use common::poisonscope;
use poisonscope::config::DeviceKind;
use poisonscope::train::{cuda_unavailable, device};

const SHORT: [&str; 8] = [
    "--set",
    "dataset.limit=400",
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=64",
    "--set",
    "detect.methods=[\"ss\"]",
];

/// `poisonscope run sample_configs/badnets.toml --out OUT` on 400 digits, one epoch, with
/// `train.device` set to `device`.
fn short_run(out: &std::path::Path, device: &str) -> std::process::Output {
    let setting = format!("train.device=\"{device}\"");
    let mut args = vec![
        "run",
        "sample_configs/badnets.toml",
        "--out",
        out.to_str().unwrap(),
        "--set",
        &setting,
    ];
    args.extend(SHORT);
    poisonscope(&args)
}

#[test]
fn cuda_where_it_cannot_run_is_one_line_and_writes_nothing() {
    let Some(why) = cuda_unavailable() else {
        eprintln!("skipped: CUDA works here, so asking for it is no error");
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("run");
    let result = short_run(&out, "cuda");
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no backtrace: {stderr}");
    assert!(
        lines[0].contains("train.device = \"cuda\"") && lines[0].contains(&why),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn auto_trains_where_it_can_and_the_report_says_where() {
    let expected = if cuda_unavailable().is_none() {
        "cuda"
    } else {
        "cpu"
    };
    assert_eq!(device::resolve(DeviceKind::Auto).name(), expected);
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("run");
    let result = short_run(&out, "auto");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["training"]["device"], expected);
}

/// The same seeded training on the GPU and on the CPU: both learn, and their test accuracies
/// agree to a few points (kernels differ, so the weights are not bit-identical).
#[cfg(feature = "cuda")]
#[test]
fn a_short_training_on_the_gpu_agrees_with_the_cpu() {
    use std::sync::atomic::AtomicBool;

    use poisonscope::config::Experiment;
    use poisonscope::run::prepare::Prepared;

    if let Some(why) = cuda_unavailable() {
        eprintln!("skipped: no usable CUDA here ({why})");
        return;
    }
    let mut config = Experiment::default();
    config.dataset.limit = 2000;
    config.train.epochs = 2;
    config.train.batch_size = 64;
    config.train.lr = 0.05;
    let prepared = Prepared::load(&config).unwrap();
    let never = AtomicBool::new(false);
    let accuracy = |kind: DeviceKind| {
        let mut train = config.train.clone();
        train.device = kind;
        poisonscope::train::train(&train, prepared.train_data(), &never, &mut |_| {})
            .unwrap()
            .clean_accuracy
    };
    let (gpu, cpu) = (accuracy(DeviceKind::Cuda), accuracy(DeviceKind::Cpu));
    eprintln!("test accuracy: GPU {gpu:.4}, CPU {cpu:.4}");
    assert!(gpu > 0.8 && cpu > 0.8, "GPU {gpu}, CPU {cpu}");
    assert!((gpu - cpu).abs() < 0.05, "GPU {gpu}, CPU {cpu}");
}
