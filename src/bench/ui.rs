//! `poisonscope bench ui`: frame time of the inspection view.

use std::time::Instant;

use poisonscope::data::{self, LoadOptions};
use poisonscope::detect::{Consensus, Ranking};

/// Builds an inspection view of `points` samples (the demo digits repeated, seeded random
/// detector scores, five Gaussian clusters in the scatter) and times `frames` frames.
pub fn frames(points: usize, frames: usize) -> anyhow::Result<()> {
    use eframe::egui;
    use poisonscope::run::prepare::Prepared;
    use poisonscope::run::report::{DatasetInfo, DetectorReport, Report, TrainingInfo};
    use poisonscope::ui::{App, worker};
    use rand::{RngExt, SeedableRng};

    let demo = data::load("embedded:mnist", &LoadOptions::default())?;
    let indices: Vec<usize> = (0..points).map(|i| i % demo.train.len()).collect();
    let train = demo.train.select(&indices);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let detectors = ["ac", "ss", "spectre", "scan", "beatrix"]
        .iter()
        .map(|name| {
            let scores: Vec<f64> = (0..points).map(|_| rng.random::<f64>()).collect();
            let flags: Vec<bool> = scores.iter().map(|s| *s > 0.95).collect();
            Ranking {
                name: (*name).to_owned(),
                scores,
                flags,
            }
        })
        .collect::<Vec<_>>();
    let projection = train
        .labels
        .iter()
        .map(|&l| {
            let angle = f64::from(l) * 0.6;
            [
                5.0 * angle.cos() + rng.random::<f64>() - 0.5,
                5.0 * angle.sin() + rng.random::<f64>() - 0.5,
            ]
        })
        .collect();
    let report = Report {
        version: poisonscope::run::report::VERSION,
        dataset: DatasetInfo {
            source: "embedded:mnist".to_owned(),
            n_train: points,
            classes: train.class_names.clone(),
            shape: [28, 28, 1],
            ..DatasetInfo::default()
        },
        training: TrainingInfo {
            rho: 0.05,
            device: "cpu".to_owned(),
            ..TrainingInfo::default()
        },
        detectors: detectors
            .iter()
            .map(|r| {
                let row = DetectorReport {
                    flagged: r.flags.iter().filter(|f| **f).count(),
                    ..DetectorReport::default()
                };
                (r.name.clone(), row)
            })
            .collect(),
        ..Report::default()
    };
    let score_sets: Vec<&[f64]> = detectors.iter().map(|r| r.scores.as_slice()).collect();
    let flag_sets: Vec<&[bool]> = detectors.iter().map(|r| r.flags.as_slice()).collect();
    let consensus = Consensus {
        scores: poisonscope::detect::consensus::mean_rank(&score_sets, points),
        flags: poisonscope::detect::consensus::agreement(&flag_sets, points, 2),
        agreement: 2,
    };
    let arm = worker::Arm {
        name: "sam".to_owned(),
        report,
        predicted: train.labels.clone(),
        consensus,
        detectors,
        projection,
        features: std::sync::Arc::new(ndarray::Array2::zeros((points, 2))),
    };
    let prepared = Prepared {
        clean: data::SplitDataset {
            train,
            test: demo.test.clone(),
            ..demo
        },
        poisoned: None,
    };
    let mut app = App::new(None);
    app.show_results(worker::Finished {
        run: std::sync::Arc::new(poisonscope::run::Run::without_models(
            poisonscope::config::Experiment::default(),
            std::sync::Arc::new(prepared),
        )),
        arms: vec![arm],
        opened_from: None,
    });
    let ctx = egui::Context::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1400.0, 900.0));
    let mut times = Vec::new();
    for frame in 0..frames + 5 {
        let input = egui::RawInput {
            screen_rect: Some(screen),
            // Hover the scatter, moving a little every frame (nearest-point search, tooltip).
            events: vec![egui::Event::PointerMoved(egui::pos2(
                1150.0 + (frame % 20) as f32,
                650.0,
            ))],
            ..Default::default()
        };
        let start = Instant::now();
        let mut output = ctx.run_ui(input, |ui| app.root_ui(ui));
        // No GPU here: the texture uploads are dropped.
        output.textures_delta.clear();
        let meshes = ctx.tessellate(std::mem::take(&mut output.shapes), output.pixels_per_point);
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        if frame >= 5 {
            times.push(elapsed);
        }
        std::hint::black_box(meshes);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "inspection view, {points} samples, {frames} frames, 1400×900: median {:.1} ms, p95 {:.1} ms, max {:.1} ms per frame (CPU: layout + tessellation)",
        at(0.5),
        at(0.95),
        at(1.0)
    );
    Ok(())
}
