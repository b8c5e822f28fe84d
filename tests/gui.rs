//! The window, driven headless with egui_kittest: find widgets by label, click, check state.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use poisonscope::ui::{App, View};

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size(eframe::egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.root_ui(ui), app)
}

/// Steps the UI until `done` holds (the worker threads run meanwhile).
fn wait_for(harness: &mut Harness<'static, App>, what: &str, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    while !done(harness.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "timed out waiting for {what}; status: {:?}",
            harness.state().status
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.step();
    harness.step();
}

/// A short run on 600 demo digits: one epoch at batch 64 and learning rate `lr`, two detectors.
fn short_run(app: &mut App, lr: f64) {
    app.settings.config.dataset.limit = 600;
    app.settings.config.train.epochs = 1;
    app.settings.config.train.batch_size = 64;
    app.settings.config.train.lr = lr;
    app.settings.config.detect.methods = vec![
        poisonscope::config::DetectorKind::Ss,
        poisonscope::config::DetectorKind::Loss,
    ];
}

fn loaded_demo() -> Harness<'static, App> {
    let mut h = harness(App::new(None));
    wait_for(&mut h, "the demo set", App::dataset_loaded);
    h
}

#[test]
fn opens_on_the_demo_set() {
    let h = loaded_demo();
    h.get_by_label("poisonscope");
    h.get_by_label_contains("8000 training / 2000 test images");
    h.get_by_label("805"); // training digits of class 2
    h.get_by_label("No attack — this is a real untrusted dataset.");
}

#[test]
fn shows_a_load_error_in_the_window() {
    let mut h = harness(App::new(Some("/no/such/dataset")));
    wait_for(&mut h, "the load to fail", |app| !app.busy());
    // In the top bar (wherever the user is) and on the Dataset tab, which comes to the front.
    assert_eq!(
        h.get_all_by_label_contains("/no/such/dataset: no such file or folder")
            .count(),
        2
    );
    assert_eq!(h.state().view, View::Dataset);
    // Nothing to train on: Start stays disabled.
    assert!(h.get_by_label("Start").accesskit_node().is_disabled());
    h.get_by_label("Start").click();
    h.step();
    assert!(!h.state().busy());
}

/// The scenario: demo set, BadNets 5 %, a short training, results in the table and the
/// gallery.
#[test]
fn badnets_run_shows_results_table_and_ranked_gallery() {
    let mut h = loaded_demo();
    h.get_by_label("Plant an attack").click();
    h.step();
    h.get_by_label("Patch size"); // the BadNets settings appeared
    {
        let app = h.state_mut();
        app.settings.attack.ratio = 0.05;
        app.settings.config.dataset.limit = 600;
        app.settings.config.train.epochs = 1;
        app.settings.config.train.batch_size = 64;
        app.settings.config.train.lr = 0.05;
        app.settings.config.train.augment = false;
    }
    h.step();
    h.get_by_label_contains("Preview (top: clean, bottom: poisoned)");
    h.get_by_label("Start").click();
    h.step();
    assert!(h.state().busy(), "the run started");
    wait_for(&mut h, "the results", |app| !app.busy());
    assert_eq!(h.state().status, None);
    let finished = h.state().finished.as_ref().expect("results");
    assert_eq!(finished.arms.len(), 1);
    assert_eq!(
        finished.arms[0].report.attack.as_ref().unwrap().n_poisoned,
        30
    );
    assert_eq!(h.state().view, View::Inspection);
    // The results table: a row per detector with its metrics.
    h.get_by_label("detector");
    h.get_by_label("SAM flagged");
    h.get_by_label("SAM TPR");
    assert!(
        h.get_all_by_label("scan").count() >= 2,
        "a table row besides the checkbox"
    );
    // The ranked gallery: every sample, the most suspicious first.
    h.get_by_label_contains("Ranked gallery: 600 images");
    h.get_by_label_contains("#1 ");
    // Clicking a gallery item selects it; marking it is remembered.
    h.get_by_label_contains("#1 ").click();
    h.run_steps(4);
    let selected = h.state().selected().expect("the clicked tile is selected");
    h.get_by_label(&format!("Sample {selected}"));
    h.get_by_label("Mark poisoned").click();
    h.run_steps(4);
    assert_eq!(h.state().marked(), 1);

    // The analyst's own threshold: the top K of the ranking, the counts follow live.
    h.get_by_label("the top").click();
    h.run_steps(2);
    assert!(h.state_mut().inspect_mut().use_top);
    h.state_mut().inspect_mut().top_k = 7;
    h.run_steps(2);
    h.get_by_label_contains("600 images, 7 flagged");
    h.get_by_label_contains("keeps 593 of 600");
    h.get_by_label("its decision").click();
    h.run_steps(2);
    assert!(!h.state_mut().inspect_mut().use_top);

    // The t-SNE layout: asked for from the scatter, computed on a worker, then drawn.
    h.get_by_label("t-SNE").click();
    h.run_steps(2);
    assert!(h.state().tsne_layout().is_none());
    h.get_by_label_contains("Compute t-SNE").click();
    h.run_steps(2);
    wait_for(&mut h, "the t-SNE layout", |app| {
        app.tsne_layout().is_some()
    });
    let layout = h.state().tsne_layout().unwrap().as_ref().expect("a layout");
    assert_eq!(layout.len(), 600);
    assert!(h.query_by_label_contains("Compute t-SNE").is_none());
    h.get_by_label("PCA").click();
    h.run_steps(2);

    // Export without a file dialog: a typed folder, the kept count shown before writing.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("cleaned");
    h.get_by_label("Export to folder").focus();
    h.step();
    h.get_by_label("Export to folder")
        .type_text(dest.to_str().unwrap());
    h.run_steps(2);
    h.get_by_label_contains("keeps ");
    h.get_by_label("Export cleaned dataset").click();
    h.run_steps(2);
    if let Some(confirm) = h.query_by_label_contains("Confirm: remove") {
        // More than 10 % flagged: nothing written until the second click.
        assert!(!dest.exists());
        confirm.click();
        h.run_steps(2);
    }
    // The export runs on a worker; the window stays live and says when it is done.
    wait_for(&mut h, "the export", |app| !app.exporting());
    let status = h.state().status.clone().unwrap_or_default();
    assert!(status.starts_with("saved "), "{status}");
    assert!(dest.join("kept.csv").is_file(), "{status}");

    // The whole run and its HTML report, into another new folder.
    let saved = out.path().join("saved-run");
    h.state_mut().inspect_mut().export_dir = saved.display().to_string();
    h.run_steps(2);
    h.get_by_label("Save run + report").click();
    h.run_steps(2);
    wait_for(&mut h, "the saved run", |app| !app.exporting());
    let status = h.state().status.clone().unwrap_or_default();
    assert!(status.starts_with("saved the run and "), "{status}");
    for file in [
        "report.json",
        "scores.csv",
        "references.csv",
        "config.toml",
        "training.json",
        "report.html",
    ] {
        assert!(saved.join(file).is_file(), "{file} missing; {status}");
    }
    let html = std::fs::read_to_string(saved.join("report.html")).unwrap();
    assert!(
        html.contains("<img"),
        "the report shows the suspicious images"
    );
    // Saving again into the same (now full) folder refuses and keeps what is there.
    h.get_by_label("Save run + report").click();
    h.run_steps(2);
    wait_for(&mut h, "the refused save", |app| !app.exporting());
    let status = h.state().status.clone().unwrap_or_default();
    assert!(!status.starts_with("saved"), "{status}");
    assert!(saved.join("report.html").is_file());
}

/// Keyboard review in the gallery: arrows move the selection in ranking order, P/C mark, U
/// unmarks, Space enlarges; marks feed the kept count.
#[test]
fn keyboard_review_moves_and_marks() {
    use eframe::egui::Key;
    let mut h = loaded_demo();
    short_run(h.state_mut(), 0.05);
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the results", |app| !app.busy());
    assert_eq!(h.state().status, None);
    // Nothing selected: → selects the most suspicious sample, → again the second.
    h.get_by_label_contains("#1 ").click();
    h.run_steps(2);
    let first = h.state().selected().expect("selected");
    h.key_press(Key::ArrowRight);
    h.run_steps(2);
    let second = h.state().selected().expect("still selected");
    assert_ne!(first, second, "→ moved the selection");
    h.get_by_label(&format!("Sample {second}"));
    h.key_press(Key::ArrowLeft);
    h.run_steps(2);
    assert_eq!(h.state().selected(), Some(first), "← moved back");
    // ↓ moves a whole row: further than one step.
    h.key_press(Key::ArrowDown);
    h.run_steps(2);
    let below = h.state().selected().expect("selected");
    assert_ne!(below, second);
    h.key_press(Key::ArrowUp);
    h.run_steps(2);
    assert_eq!(h.state().selected(), Some(first), "↑ moved back up");

    let kept_before = {
        let app = h.state_mut();
        let finished = app.finished.as_ref().expect("results").arms[0].clone();
        app.inspect_mut().kept(&finished).len()
    };
    h.key_press(Key::P);
    h.run_steps(2);
    assert_eq!(h.state().marked(), 1);
    assert_eq!(
        h.state_mut().inspect_mut().marks.get(&first),
        Some(&poisonscope::ui::inspect::Mark::Poisoned)
    );
    h.key_press(Key::ArrowRight);
    h.key_press(Key::C);
    h.run_steps(2);
    assert_eq!(
        h.state_mut().inspect_mut().marks.get(&second),
        Some(&poisonscope::ui::inspect::Mark::Clean)
    );
    // The marks decide the kept set: the poisoned mark removes `first`, the clean mark keeps
    // `second`, whatever the ranking flagged.
    {
        let app = h.state_mut();
        let arm = app.finished.as_ref().expect("results").arms[0].clone();
        let kept = app.inspect_mut().kept(&arm);
        assert!(!kept.contains(&first));
        assert!(kept.contains(&second));
        assert!(kept.len() <= kept_before + 1);
    }
    h.key_press(Key::U);
    h.run_steps(2);
    assert_eq!(h.state().marked(), 1, "U removed the mark of the selection");
    assert!(!h.state_mut().inspect_mut().enlarged);
    h.key_press(Key::Space);
    h.run_steps(2);
    assert!(h.state_mut().inspect_mut().enlarged, "Space enlarges");
    // Keys typed into a text field do not mark.
    h.get_by_label("Export to folder").focus();
    h.step();
    h.get_by_label("Export to folder").type_text("p");
    h.run_steps(2);
    assert_eq!(h.state().marked(), 1);

    // Far down the gallery by keyboard: the first tiles are scrolled away (the gallery draws
    // only visible rows).
    h.state_mut().inspect_mut().export_dir.clear();
    h.run_steps(1);
    h.key_press(Key::Escape);
    h.run_steps(1);
    for _ in 0..12 {
        h.key_press(Key::ArrowDown);
        h.run_steps(1);
    }
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("#1 ").is_none(),
        "the gallery scrolled down with the selection"
    );
    // A second run opens at #1, with nothing selected or marked.
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the second results", |app| !app.busy());
    h.get_by_label_contains("#1 ");
    assert_eq!(h.state().selected(), None);
    assert_eq!(h.state().marked(), 0);
}

/// A run whose model cannot learn (learning rate far too small) shows the near-chance warning
/// above its results.
#[test]
fn a_run_that_did_not_learn_shows_a_warning_banner() {
    let mut h = loaded_demo();
    {
        short_run(h.state_mut(), 1e-6);
    }
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the results", |app| !app.busy());
    let finished = h.state().finished.as_ref().expect("results");
    assert!(
        !finished.arms[0].report.warnings.is_empty(),
        "{:?}",
        finished.arms[0].report.fit
    );
    h.run_steps(2);
    h.get_by_label_contains("Warning: the model is near chance");
}

#[test]
fn cancel_stops_a_run() {
    let mut h = loaded_demo();
    {
        let app = h.state_mut();
        app.settings.config.dataset.limit = 2000;
        app.settings.config.train.epochs = 50;
    }
    h.get_by_label("Start").click();
    h.step();
    assert!(h.state().busy());
    std::thread::sleep(Duration::from_millis(300));
    h.step();
    h.get_by_label("Cancel").click();
    h.step();
    wait_for(&mut h, "the cancel", |app| !app.busy());
    assert_eq!(h.state().status.as_deref(), Some("cancelled"));
    assert!(h.state().finished.is_none());
}

/// A run that fails (training diverges at a learning rate of 10) ends in a visible error and an
/// idle window whose Start button works again.
#[test]
fn a_failing_run_shows_its_error_and_start_is_enabled_again() {
    let mut h = loaded_demo();
    {
        let app = h.state_mut();
        app.settings.config.dataset.limit = 600;
        app.settings.config.train.epochs = 2;
        app.settings.config.train.batch_size = 64;
        app.settings.config.train.lr = 10.0;
        app.settings.config.train.optimizer = poisonscope::config::OptimizerKind::Sgd;
    }
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the failure", |app| !app.busy());
    let status = h.state().status.clone().expect("an error message");
    assert!(status.contains("diverged"), "{status}");
    h.run_steps(2);
    h.get_by_label_contains("training diverged");
    assert!(
        !h.get_by_label("Start").accesskit_node().is_disabled(),
        "Start is enabled again"
    );
    assert!(h.state().finished.is_none());
}

/// What a desktop hands egui for a dropped folder.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl eframe::egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        Err("a folder".to_owned())
    }
}

/// A folder dropped onto the window becomes the dataset (kittest's dropped-file input: no window
/// manager needed).
#[test]
fn a_dropped_folder_is_loaded_as_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["cats", "dogs"] {
        let sub = dir.path().join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..5u8 {
            image::GrayImage::from_pixel(8, 8, image::Luma([i * 40]))
                .save(sub.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let mut h = loaded_demo();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(dir.path().to_path_buf())));
    h.step();
    wait_for(&mut h, "the dropped folder", App::dataset_loaded);
    let source = h.state().experiment().dataset.source;
    assert_eq!(source, dir.path().display().to_string());
    h.run_steps(2);
    assert!(h.get_all_by_label_contains("8 training").count() >= 1);
}

/// A large folder loads on a worker with a "Cancel loading" button beside its progress; a click
/// stops it at the next image and the window says so (nothing loaded, Start disabled).
#[test]
fn loading_a_folder_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        let sub = dir.path().join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..1500u32 {
            image::GrayImage::from_fn(16, 16, |x, y| image::Luma([((x * y + i) % 256) as u8]))
                .save(sub.join(format!("{i:04}.png")))
                .unwrap();
        }
    }
    let mut h = harness(App::new(Some(&dir.path().display().to_string())));
    h.step();
    assert!(h.state().busy());
    h.get_by_label("Cancel loading").click();
    h.step();
    wait_for(&mut h, "the load to stop", |app| !app.busy());
    assert!(!h.state().dataset_loaded());
    assert!(h.get_all_by_label_contains("loading cancelled").count() >= 1);
    assert!(h.get_by_label("Start").accesskit_node().is_disabled());
}

/// A comparison shows SGD, SAM and the two fused (flagged where either flags) as three models.
#[test]
fn a_comparison_offers_the_fused_models() {
    let mut h = loaded_demo();
    h.get_by_label("Plant an attack").click();
    h.step();
    {
        let app = h.state_mut();
        app.settings.attack.ratio = 0.05;
        short_run(app, 0.05);
    }
    h.get_by_label("Compare SGD vs SAM").click();
    h.step();
    wait_for(&mut h, "the comparison", |app| !app.busy());
    let finished = h.state().finished.as_ref().expect("results");
    let names: Vec<&str> = finished.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["sgd", "sam", "fused"]);
    assert!(finished.run.comparison.is_some());
    let (sgd, sam, fused) = (&finished.arms[0], &finished.arms[1], &finished.arms[2]);
    let either: Vec<bool> = (0..600)
        .map(|i| sgd.consensus.flags[i] || sam.consensus.flags[i])
        .collect();
    assert_eq!(fused.consensus.flags, either);
    let union = either.iter().filter(|&&f| f).count();
    let sgd_flagged = sgd.consensus.flags.iter().filter(|&&f| f).count();
    h.run_steps(2);
    // The comparison opens on the fused models; the arms are a click away.
    assert_eq!(h.state_mut().inspect_mut().arm, 2);
    h.get_by_label_contains(&format!("600 images, {union} flagged"));
    h.state_mut().inspect_mut().arm = 0;
    h.run_steps(3);
    h.get_by_label_contains(&format!("600 images, {sgd_flagged} flagged"));
    h.get_by_label("FUSED").click();
    h.run_steps(3);
    h.get_by_label_contains(&format!("600 images, {union} flagged"));
}

/// Every attack in the menu shows its own settings (from the attack registry), and choosing one
/// resets the attack's keys to that kind's defaults.
#[test]
fn each_attack_in_the_menu_shows_its_own_settings() {
    use poisonscope::config::{AttackKind, TriggerConfig};
    let mut h = loaded_demo();
    h.state_mut().settings.attack_on = true;
    h.run();
    for (name, setting) in [
        ("blended", "Blend α"),
        ("sig", "Amplitude δ"),
        ("wanet", "Warp strength"),
        ("lf", "Strength (of 255)"),
        ("adaptive-blend", "Blend α"),
        ("tact", "Source class"),
        ("badnets", "Patch size"),
    ] {
        h.get_by_label("Kind").click();
        h.run();
        h.get_by_label(name).click();
        h.run();
        let kind = h.state().settings.attack.kind();
        assert_eq!(kind.name(), name);
        assert_eq!(
            h.state().settings.attack.trigger,
            TriggerConfig::of(kind),
            "{name}"
        );
        h.get_by_label(setting);
    }
    assert_eq!(h.state().settings.attack.kind(), AttackKind::Badnets);
}

/// An LC run from the window: the preview says PGD comes at run time, IBD-PSC is offered with the
/// other detectors and, on the plain CNN, its row says why it could not score while the other
/// detectors report; the attack's own training shows as a stage, not as the run's curves.
#[test]
fn an_lc_run_with_ibd_psc_reports_why_ibd_psc_cannot_score_a_plain_cnn() {
    let mut h = loaded_demo();
    {
        let app = h.state_mut();
        short_run(app, 0.05);
        app.settings.attack_on = true;
        app.settings.attack.ratio = 0.05;
    }
    h.run();
    // LC is chosen from the attack menu like the others.
    h.get_by_label("Kind").click();
    h.run();
    h.get_by_label("lc").click();
    h.run();
    assert_eq!(
        h.state().settings.attack.kind(),
        poisonscope::config::AttackKind::Lc
    );
    h.get_by_label_contains("PGD noise is added when the run starts");
    h.get_by_label("ibd-psc").click();
    h.run();
    assert!(
        h.state()
            .settings
            .config
            .detect
            .methods
            .contains(&poisonscope::config::DetectorKind::IbdPsc)
    );
    h.get_by_label("Start").click();
    h.run();
    wait_for(&mut h, "the LC run", |app| !app.busy());
    let finished = h.state().finished.as_ref().expect("the run finished");
    let report = &finished.arms[0].report;
    let ibd = &report.detectors["ibd-psc"];
    let why = ibd.error.as_deref().unwrap_or_default();
    assert!(why.contains("residual connections"), "{why}");
    assert!(report.detectors["ss"].error.is_none());
    assert_eq!(report.attack.as_ref().map(|a| a.n_poisoned), Some(30));
    h.get_by_label_contains("IBD-PSC: amplifying the BatchNorm layers");
}

/// Writes `n_train` training and `n_test` test digits of the demo set as an image folder
/// (`train/CLASS/i.png`, `test/CLASS/i.png`).
fn digits_folder(dir: &std::path::Path, n_train: usize, n_test: usize) {
    let data = poisonscope::data::load("embedded:mnist", &Default::default()).unwrap();
    for (split, set, n) in [
        ("train", &data.train, n_train),
        ("test", &data.test, n_test),
    ] {
        for i in 0..n {
            let class = &set.class_names[usize::from(set.labels[i])];
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            image::GrayImage::from_raw(28, 28, set.image(i).unwrap().to_vec())
                .unwrap()
                .save(folder.join(format!("{i:05}.png")))
                .unwrap();
        }
    }
}

/// A saved comparison, made on the command line, opened in the window through the path
/// `poisonscope gui RUN_DIR` takes and through the Open run menu: its table, gallery and
/// warnings without training, a mark, an export; then the dataset moved, and changed: refused
/// in one line each, no other dataset's images shown under the run's scores.
#[test]
fn a_saved_comparison_opens_without_training() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("digits");
    digits_folder(&data, 600, 300);
    let config = root.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[dataset]\nsource = {:?}\n[train]\nepochs = 1\nbatch_size = 64\nlr = 0.05\n\
             [detect]\nmethods = [\"ss\", \"loss\"]\n[attack]\nkind = \"badnets\"\nratio = 0.05\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let run = root.path().join("cmp");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_poisonscope"))
        .args([
            "compare",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let saved_scores = std::fs::read_to_string(run.join("sam").join("scores.csv")).unwrap();

    // As `poisonscope gui RUN_DIR` starts the window.
    let mut h = harness(App::opening(&run));
    h.step();
    assert!(h.state().busy());
    wait_for(&mut h, "the opened run", |app| !app.busy());
    let status = h.state().status.clone().unwrap_or_default();
    assert!(status.starts_with("opened "), "{status}");
    let finished = h.state().finished.as_ref().expect("results");
    assert!(finished.opened_from.is_some());
    // SGD, SAM and the fused arm, and no training: the arms' histories are the saved ones.
    assert_eq!(finished.arms.len(), 3);
    assert_eq!(
        finished.arms[0].report.attack.as_ref().unwrap().n_poisoned,
        30
    );
    assert_eq!(h.state().view, View::Inspection);
    assert!(h.state().dataset_loaded());
    assert_eq!(
        h.state().experiment().dataset.source,
        data.display().to_string()
    );
    assert_eq!(h.state().settings.recent_runs, vec![run.clone()]);
    h.get_by_label("detector");
    h.get_by_label_contains("Ranked gallery: 600 images");
    h.get_by_label_contains("#1 ").click();
    h.run_steps(4);
    h.get_by_label("Mark poisoned").click();
    h.run_steps(4);
    assert_eq!(h.state().marked(), 1);
    let out = root.path().join("exported");
    h.state_mut().inspect_mut().export_dir = out.display().to_string();
    h.run_steps(2);
    h.get_by_label("Export scores + marks").click();
    h.run_steps(2);
    wait_for(&mut h, "the export", |app| !app.exporting());
    let decisions = std::fs::read_to_string(out.join("decisions.csv")).unwrap();
    assert_eq!(decisions.lines().count(), 601);
    // Opening read the run; it wrote nothing into it.
    assert_eq!(
        std::fs::read_to_string(run.join("sam").join("scores.csv")).unwrap(),
        saved_scores
    );

    // Through the menu, on a window that shows the demo set: the typed folder.
    let mut h = loaded_demo();
    h.get_by_label("Open run").click();
    h.run_steps(2);
    h.state_mut()
        .typed_run_mut()
        .push_str(run.to_str().unwrap());
    h.run_steps(2);
    h.get_by_label("Open").click();
    h.run_steps(2);
    wait_for(&mut h, "the opened run", |app| !app.busy());
    assert!(
        h.state()
            .finished
            .as_ref()
            .is_some_and(|f| f.arms.len() == 3)
    );
    h.get_by_label_contains("Ranked gallery: 600 images");
    // A mark made on the opened run comes back when the run is opened again (from Recent).
    h.get_by_label_contains("#1 ").click();
    h.run_steps(4);
    h.get_by_label("Mark poisoned").click();
    h.run_steps(4);
    let marked = h.state().selected();
    assert_eq!(h.state().marked(), 1);
    h.get_by_label("Open run").click();
    h.run_steps(2);
    h.get_by_label(run.to_str().unwrap()).click();
    h.run_steps(2);
    wait_for(&mut h, "the run opened again", |app| !app.busy());
    assert_eq!(h.state().marked(), 1, "the mark is restored");
    assert_eq!(
        h.state_mut().inspect_mut().marks.keys().next().copied(),
        marked
    );

    // The dataset changed (one training image replaced): refused, nothing shown.
    let first = std::fs::read_dir(data.join("train").join("0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    image::GrayImage::from_pixel(28, 28, image::Luma([255]))
        .save(&first)
        .unwrap();
    let mut h = harness(App::opening(&run));
    wait_for(&mut h, "the refusal", |app| !app.busy());
    let status = h.state().status.clone().unwrap_or_default();
    assert!(status.contains("not the dataset the run in"), "{status}");
    assert!(h.state().finished.is_none());
    assert!(!h.state().dataset_loaded());

    // The dataset moved: one line naming it.
    std::fs::rename(&data, root.path().join("moved")).unwrap();
    let mut h = harness(App::opening(&run));
    wait_for(&mut h, "the refusal", |app| !app.busy());
    let status = h.state().status.clone().unwrap_or_default();
    assert!(
        status.starts_with(&format!("{}: ", data.display())) && status.contains("no longer there"),
        "{status}"
    );
    assert_eq!(status.lines().count(), 1);
    assert!(h.state().finished.is_none());
}

/// The Scenarios menu: every scenario listed; one loaded, its paragraph shown above the views,
/// run from its own button (on fewer digits and one epoch, to keep the test short), and the
/// paragraph still beside the results.
#[test]
fn a_scenario_loads_runs_and_shows_what_to_look_for() {
    let mut h = loaded_demo();
    h.get_by_label("Scenarios").click();
    h.run_steps(2);
    for scenario in poisonscope::scenarios::ALL {
        h.get_by_label(scenario.title);
    }
    let chosen = poisonscope::scenarios::ALL
        .iter()
        .position(|s| s.id == "no_attack")
        .unwrap();
    h.get_by_label(poisonscope::scenarios::ALL[chosen].title)
        .click();
    h.run_steps(2);
    wait_for(&mut h, "the scenario's dataset", App::dataset_loaded);
    assert_eq!(h.state().scenario, Some(chosen));
    assert!(h.state().experiment().attack.is_none());
    let paragraph = poisonscope::scenarios::ALL[chosen].look_for;
    h.get_by_label(paragraph);
    h.state_mut().settings.config.dataset.limit = 600;
    h.state_mut().settings.config.train.epochs = 1;
    h.run_steps(2);
    h.get_by_label("Run this scenario (SGD vs SAM)").click();
    h.run_steps(2);
    assert!(h.state().busy());
    wait_for(&mut h, "the results", |app| !app.busy());
    let finished = h.state().finished.as_ref().expect("results");
    assert_eq!(finished.arms.len(), 3, "SGD, SAM and fused");
    assert_eq!(h.state().view, View::Inspection);
    h.get_by_label(paragraph);
    h.get_by_label("detector");
}

/// "Find more like the marked": after marking two poisons and one clean image, the gallery is
/// re-ordered (marked poisons first, marked clean last), says so, and the top-K flags follow.
#[test]
fn marks_re_rank_the_gallery() {
    let mut h = loaded_demo();
    short_run(h.state_mut(), 0.05);
    {
        let app = h.state_mut();
        app.settings.attack_on = true;
        app.settings.attack.ratio = 0.05;
        app.settings.config.train.augment = false;
    }
    h.step();
    h.get_by_label("Start").click();
    h.run_steps(2);
    wait_for(&mut h, "the results", |app| !app.busy());
    let truth = h
        .state()
        .finished
        .as_ref()
        .and_then(|f| f.run.truth.clone())
        .expect("ground truth");
    h.run_steps(2);
    let before = h
        .state_mut()
        .inspect_mut()
        .gallery_order()
        .unwrap()
        .to_vec();
    // The reviewer confirms two poisons and one clean image from further down the ranking.
    let poisons: Vec<usize> = before
        .iter()
        .rev()
        .copied()
        .filter(|&i| truth[i])
        .take(2)
        .collect();
    let clean = before.iter().copied().find(|&i| !truth[i]).unwrap();
    {
        use poisonscope::ui::inspect::Mark;
        let inspect = h.state_mut().inspect_mut();
        for &p in &poisons {
            inspect.marks.insert(p, Mark::Poisoned);
        }
        inspect.marks.insert(clean, Mark::Clean);
    }
    h.run_steps(2);
    h.get_by_label("Find more like the marked").click();
    h.run_steps(3);
    assert!(h.state_mut().inspect_mut().find_like);
    let after = h
        .state_mut()
        .inspect_mut()
        .gallery_order()
        .unwrap()
        .to_vec();
    assert_ne!(before, after, "the order changed");
    let mut first_two = after[..2].to_vec();
    first_two.sort_unstable();
    let mut marked = poisons.clone();
    marked.sort_unstable();
    assert_eq!(first_two, marked, "the marked poisons first");
    assert_eq!(after.last(), Some(&clean), "the marked clean image last");
    h.get_by_label_contains("refined by your marks (2 poisoned first, 1 clean last)");
    // Off again: the detector's order comes back.
    h.get_by_label("Find more like the marked").click();
    h.run_steps(3);
    assert_eq!(h.state_mut().inspect_mut().gallery_order().unwrap(), before);
}

/// The device choice offers wgpu where an adapter answers (naming it in the hover text) and greys
/// it out where none does (a build without the feature, a machine without a driver); choosing it
/// sets `train.device`.
#[test]
fn the_device_choice_offers_wgpu_where_an_adapter_answers() {
    use poisonscope::config::DeviceKind;

    let mut h = loaded_demo();
    // The window probes on a thread of its own; wait for the same answer here.
    let adapter = poisonscope::wgpu::wgpu_adapter();
    h.step();
    h.step();
    let disabled = h.get_by_label("wgpu").accesskit_node().is_disabled();
    assert_eq!(disabled, adapter.is_err(), "{adapter:?}");
    h.get_by_label("wgpu").click();
    h.step();
    let expected = if adapter.is_ok() {
        DeviceKind::Wgpu
    } else {
        DeviceKind::Cpu
    };
    assert_eq!(h.state().settings.config.train.device, expected);
}

#[test]
fn ibd_psc_offers_its_score_once_chosen() {
    let mut h = loaded_demo();
    assert!(
        h.query_by_label("log-odds").is_none(),
        "only with IBD-PSC on"
    );
    h.get_by_label("ibd-psc").click();
    h.run();
    h.get_by_label("log-odds").click();
    h.run();
    let detect = h.state().experiment().detect;
    assert!(
        detect
            .methods
            .contains(&poisonscope::config::DetectorKind::IbdPsc)
    );
    assert_eq!(
        detect.ibd_psc_score,
        poisonscope::config::IbdPscScore::LogOdds
    );
}
