//! Choosing the device: a GPU backend asked for where it cannot run is one clear line, `auto`
//! falls back to the CPU and the report says where training ran. For each GPU backend the build
//! has (`cuda`, `wgpu`) and this machine can run, a few batches of SGD and of SAM agree with the
//! CPU from the same weights, a run trains there and its report names the adapter, and the
//! detectors' scores on one saved model agree between the CPU and the GPU. Where a backend
//! cannot run those tests print why (`skipped: ...`) and pass.

mod common;

use common::poisonscope;
use poisonscope::config::DeviceKind;
use poisonscope::train::{cuda_unavailable, device, wgpu_adapter};

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
    } else if wgpu_adapter().is_ok_and(|a| !a.is_software()) {
        "wgpu"
    } else {
        "cpu"
    };
    assert_eq!(device::resolve(DeviceKind::Auto).name(), expected);
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("run");
    let result = short_run(&out, "auto");
    assert_ok(&result);
    let report = report_of(&out);
    assert_eq!(report["training"]["device"], expected);
}

#[test]
fn wgpu_where_it_cannot_run_is_one_line_and_writes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("run");
    // No Vulkan driver (the Vulkan loader reads these lists instead of the installed ones): what
    // a Linux machine without a GPU driver sees. OpenGL is not tried (src/wgpu.rs says why), so
    // Mesa's OpenGL, still installed here, neither answers nor prints. A build without the
    // feature says so.
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_poisonscope"))
        .args([
            "run",
            "sample_configs/badnets.toml",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "train.device=\"wgpu\"",
        ])
        .args(SHORT)
        .env("VK_ICD_FILENAMES", scratch.path().join("none.json"))
        .env("VK_DRIVER_FILES", scratch.path().join("none.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    eprintln!("{stderr}");
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert_eq!(lines.len(), 1, "one line, no backtrace: {stderr}");
    assert!(lines[0].contains("train.device = \"wgpu\""), "{stderr}");
    if cfg!(feature = "wgpu") {
        assert!(lines[0].contains("no usable wgpu adapter"), "{stderr}");
    } else {
        assert!(lines[0].contains("--features wgpu"), "{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

/// What a GPU test did, line by line: printed (shown with `--nocapture` or on failure) and
/// written, when the test ends, to `target/tmp/gpu-tests-NAME.log`, which CI prints, so its log
/// shows that the GPU tests ran rather than skipped.
struct Log {
    name: &'static str,
    lines: Vec<String>,
}

impl Log {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            lines: Vec::new(),
        }
    }

    fn say(&mut self, line: String) {
        eprintln!("{line}");
        self.lines.push(line);
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("gpu-tests-{}.log", self.name));
        let mut text = format!("{}:\n", self.name);
        for line in &self.lines {
            text.push_str(&format!("  {line}\n"));
        }
        if std::thread::panicking() {
            text.push_str("  FAILED\n");
        }
        let _ = std::fs::write(path, text);
    }
}

/// The GPU backends this build has that can run here; a `skipped` line for each that cannot.
/// `POISONSCOPE_REQUIRE_GPU=wgpu` (or `cuda`, comma-separated) turns a skip of that backend into
/// a failure: CI sets it where it installed lavapipe.
fn usable_gpu_backends(log: &mut Log) -> Vec<DeviceKind> {
    let required = std::env::var("POISONSCOPE_REQUIRE_GPU").unwrap_or_default();
    let mut usable = Vec::new();
    let mut consider = |kind: DeviceKind, missing: Option<String>| match missing {
        None => usable.push(kind),
        Some(why) => {
            log.say(format!("skipped {}: {why}", kind.name()));
            assert!(
                !required.split(',').any(|r| r.trim() == kind.name()),
                "POISONSCOPE_REQUIRE_GPU asks for {} but it cannot run here: {why}",
                kind.name()
            );
        }
    };
    consider(DeviceKind::Cuda, cuda_unavailable());
    consider(DeviceKind::Wgpu, wgpu_adapter().err());
    usable
}

/// Every float parameter of a module, in visiting order.
struct Collect(Vec<Vec<f32>>);

impl burn::module::ModuleVisitor for Collect {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        self.0
            .push(param.val().into_data().try_to_vec_as::<f32>().unwrap());
    }
}

fn parameters(model: &poisonscope::model::Net) -> Vec<Vec<f32>> {
    use burn::module::Module;
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// Largest |a − b| / (|b| + 1e-3·scale) over paired values, scale = the largest |b|.
fn worst_relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            (f64::from(x) - f64::from(y)).abs() / (f64::from(y).abs() + 1e-3 * scale).max(1e-12)
        })
        .fold(0.0, f64::max)
}

/// The largest |a − b| / (1e-4 + 1e-3·|b|): at most 1 where every value is within numpy's
/// `allclose(rtol=1e-3, atol=1e-4)`. The absolute part is for values near zero that are sums of
/// terms cancelling out (BatchNorm's β after a few steps), whose relative error says nothing.
fn beyond_allclose(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs() / (1e-4 + 1e-3 * f64::from(y).abs()))
        .fold(0.0, f64::max)
}

/// Per-batch losses, final parameters and test logits of a few batches on `kind`.
struct Short {
    losses: Vec<f32>,
    parameters: Vec<Vec<f32>>,
    accuracy: f64,
    /// Bytes in use and reserved on the device once the trained model is dropped.
    memory: Option<(u64, u64)>,
}

/// 3 batches of 32 digits, one epoch, from the seed's weights (drawn on the CPU whatever the
/// device), SGD or SAM, no augmentation.
fn few_batches(
    kind: DeviceKind,
    optimizer: poisonscope::config::OptimizerKind,
    prepared: &poisonscope::run::prepare::Prepared,
) -> Short {
    use std::sync::atomic::AtomicBool;

    let config = poisonscope::config::TrainConfig {
        device: kind,
        optimizer,
        epochs: 1,
        batch_size: 32,
        lr: 0.05,
        augment: false,
        ..Default::default()
    };
    let never = AtomicBool::new(false);
    let mut losses = Vec::new();
    let trained = poisonscope::train::train(&config, prepared.train_data(), &never, &mut |e| {
        if let poisonscope::train::TrainEvent::Batch { loss, .. } = e {
            losses.push(loss);
        }
    })
    .unwrap();
    let short = Short {
        losses,
        parameters: parameters(&trained.model),
        accuracy: trained.clean_accuracy,
        memory: None,
    };
    drop(trained);
    let usage = poisonscope::train::device_for(kind)
        .unwrap()
        .memory_pool_usage();
    Short {
        memory: usage.map(|u| (u.bytes_in_use, u.bytes_reserved)),
        ..short
    }
}

/// SGD and SAM steps on each usable GPU backend agree with the CPU's from the same weights and
/// batches: every batch's loss within 1e-3 relative, every parameter and BatchNorm running
/// statistic afterwards within 1e-4 + 1e-3·|value| (kernels differ: the CPU runs our fused
/// blocks, the GPU Burn's layers, and reductions add in another order), and the test accuracies
/// (which read the running statistics SAM's second pass must not move) within half a point.
#[test]
fn sgd_and_sam_steps_on_each_gpu_backend_agree_with_the_cpu() {
    use poisonscope::config::{Experiment, OptimizerKind};
    use poisonscope::run::prepare::Prepared;

    let mut log = Log::new("steps");
    let backends = usable_gpu_backends(&mut log);
    if backends.is_empty() {
        return;
    }
    let mut config = Experiment::default();
    config.dataset.limit = 96;
    let prepared = Prepared::load(&config).unwrap();
    for optimizer in [OptimizerKind::Sgd, OptimizerKind::Sam] {
        let cpu = few_batches(DeviceKind::Cpu, optimizer, &prepared);
        for &kind in &backends {
            let started = std::time::Instant::now();
            let gpu = few_batches(kind, optimizer, &prepared);
            let loss_gap = worst_relative(&gpu.losses, &cpu.losses);
            let parameter_gap = gpu
                .parameters
                .iter()
                .zip(&cpu.parameters)
                .map(|(g, c)| beyond_allclose(g, c))
                .fold(0.0, f64::max);
            let largest_difference = gpu
                .parameters
                .iter()
                .flatten()
                .zip(cpu.parameters.iter().flatten())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            log.say(format!(
                "ran {optimizer:?} steps on {} ({:.1} s): losses {:?} (CPU {:?}), worst relative gap: losses {loss_gap:.2e}, parameters: largest difference {largest_difference:.1e}, {parameter_gap:.3} of the allowed; test accuracy {:.4} (CPU {:.4})",
                device::describe(kind),
                started.elapsed().as_secs_f64(),
                gpu.losses,
                cpu.losses,
                gpu.accuracy,
                cpu.accuracy,
            ));
            if let Some((in_use, reserved)) = gpu.memory {
                log.say(format!(
                    "{} after the {optimizer:?} training: {in_use} bytes in use, {reserved} reserved",
                    kind.name()
                ));
                // Nothing of a finished training stays on the device but the pools' pages.
                assert!(in_use < 1 << 20, "{in_use} bytes still in use");
            }
            assert_eq!(gpu.losses.len(), 3);
            assert_eq!(gpu.parameters.len(), cpu.parameters.len());
            assert!(loss_gap < 1e-3, "{optimizer:?} losses differ by {loss_gap}");
            assert!(
                parameter_gap <= 1.0,
                "{optimizer:?} parameters differ beyond 1e-4 + 1e-3·|cpu| ({parameter_gap} of it)"
            );
            assert!(
                (gpu.accuracy - cpu.accuracy).abs() <= 0.005,
                "{optimizer:?} accuracy GPU {} CPU {}",
                gpu.accuracy,
                cpu.accuracy
            );
        }
    }
}

/// On each usable GPU backend: `run --set train.device=...` trains there and the report names the
/// adapter; then the model a CPU run saved, detected again there (`detect --set
/// train.device=...`), gets the same detector scores as on the CPU.
#[test]
fn a_run_on_each_gpu_backend_names_its_adapter_and_detects_like_the_cpu() {
    let mut log = Log::new("run-and-detect");
    let backends = usable_gpu_backends(&mut log);
    if backends.is_empty() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let cpu_run = scratch.path().join("cpu");
    let result = short_run(&cpu_run, "cpu");
    assert_ok(&result);
    for kind in backends {
        let name = kind.name();
        let started = std::time::Instant::now();
        let gpu_run = scratch.path().join(name);
        let result = short_run(&gpu_run, name);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "{stderr}");
        let report = report_of(&gpu_run);
        let adapter = device::describe(kind);
        assert_eq!(report["training"]["device"], name);
        assert_eq!(report["training"]["adapter"], adapter.as_str());
        assert!(
            stderr.contains(&adapter),
            "the progress line names it: {stderr}"
        );
        let trained = started.elapsed().as_secs_f64();

        let redetected = scratch.path().join(format!("{name}-detect"));
        let setting = format!("train.device=\"{name}\"");
        let methods =
            "detect.methods=[\"ac\",\"ss\",\"spectre\",\"scan\",\"beatrix\",\"loss\",\"strip\"]";
        detect_into(&cpu_run, &redetected, &[&setting, methods]);
        let on_cpu = scratch.path().join("cpu-detect");
        if !on_cpu.exists() {
            detect_into(&cpu_run, &on_cpu, &[methods]);
        }
        let (gpu_scores, cpu_scores) = (
            score_columns(&redetected.join("scores.csv")),
            score_columns(&on_cpu.join("scores.csv")),
        );
        assert_eq!(
            gpu_scores.iter().map(|c| &c.0).collect::<Vec<_>>(),
            cpu_scores.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
        let report = report_of(&redetected);
        assert_eq!(
            report["training"]["device"], "cpu",
            "training ran on the CPU"
        );
        for ((column, gpu), (_, cpu)) in gpu_scores.iter().zip(&cpu_scores) {
            let gap = worst_relative(gpu, cpu);
            let agree = ranks_agree(gpu, cpu);
            log.say(format!(
                "ran {name} detect: {column}: worst relative gap {gap:.2e}, top-5 % sets overlap {agree:.3}"
            ));
            assert!(agree >= 0.95, "{column}: the top 5 % differ ({agree})");
        }
        log.say(format!(
            "ran run + detect on {adapter}: {:.1} s",
            started.elapsed().as_secs_f64().max(trained)
        ));
    }
}

/// Panics with the command's stderr unless it succeeded.
fn assert_ok(result: &std::process::Output) {
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The `report.json` in `dir`.
fn report_of(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// `poisonscope detect RUN --out OUT --set S...`, which must succeed.
fn detect_into(run: &std::path::Path, out: &std::path::Path, settings: &[&str]) {
    let mut args = vec![
        "detect",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    for setting in settings {
        args.extend(["--set", setting]);
    }
    assert_ok(&poisonscope(&args));
}

/// The numeric columns of a scores.csv whose header names a score (`*_score`), with values.
fn score_columns(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.ends_with("_score"))
        .map(|(i, h)| {
            let values = rows
                .iter()
                .map(|r| r[i].parse::<f32>().unwrap_or(f32::NAN))
                .collect();
            ((*h).to_owned(), values)
        })
        .collect()
}

/// Share of the top 5 % of `a` that is also in the top 5 % of `b`.
fn ranks_agree(a: &[f32], b: &[f32]) -> f64 {
    let top = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[j].total_cmp(&v[i]));
        idx.truncate((v.len() / 20).max(1));
        idx
    };
    let (ta, tb) = (top(a), top(b));
    ta.iter().filter(|i| tb.contains(i)).count() as f64 / ta.len() as f64
}
