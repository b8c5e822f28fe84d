//! The eframe desktop app: dataset → attack → training → detection → inspection in one window.
//!
//! Layout: a top bar (config open/save), a left panel with the four steps (dataset, attack,
//! training, detection), and a central area with the dataset view or the inspection view
//! (results table, ranked gallery, feature-space scatter). Loading and runs happen on worker
//! threads ([`worker`]); the UI thread only polls their channels.

pub mod inspect;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::Instant;

use eframe::egui;

use crate::attack::Attack;
use crate::config::{
    AttackConfig, AttackKind, DetectorKind, Experiment, ModelKind, OptimizerKind, TargetMode,
};
use crate::data::{Dataset, EMBEDDED_MNIST, SplitDataset, Summary};
use crate::train::TrainEvent;
use inspect::{Export, Inspect};
use std::sync::Arc;
use worker::{Finished, Job, Loading, Task, WorkerEvent};

/// Title of the main window.
pub const APP_TITLE: &str = "poisonscope";
/// Side of a thumbnail on screen, in points.
const THUMBNAIL_SIDE: f32 = 40.0;
/// Samples shown in the attack preview.
const PREVIEW_SAMPLES: usize = 4;
/// Key of the config in eframe's storage.
/// Images per ranking in the HTML report the window saves (as `poisonscope report`'s default).
const REPORT_TOP: usize = 24;
const STORAGE_KEY: &str = "poisonscope.config.toml";

/// A dataset loaded into the window.
struct Loaded {
    summary: Summary,
    data: SplitDataset,
}

/// Which view the central area shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Dataset,
    Inspection,
}

/// Live state of a running job, for the progress bar and the curves.
#[derive(Default)]
struct Progress {
    stage: String,
    arm: usize,
    arms: usize,
    done: usize,
    total: usize,
    started: Option<Instant>,
    images_per_second: f64,
    /// Per arm: (batches done / batches per epoch, loss).
    loss: Vec<Vec<[f64; 2]>>,
    /// Per arm: (epoch, test accuracy), (epoch, attack success rate).
    accuracy: Vec<Vec<[f64; 2]>>,
    asr: Vec<Vec<[f64; 2]>>,
    batches_per_epoch: usize,
}

impl Progress {
    fn new(arms: usize) -> Self {
        Self {
            stage: "starting".to_owned(),
            arms,
            loss: vec![Vec::new(); arms],
            accuracy: vec![Vec::new(); arms],
            asr: vec![Vec::new(); arms],
            started: Some(Instant::now()),
            ..Self::default()
        }
    }

    /// Share of the whole job done, counting every arm's training.
    fn fraction(&self) -> f32 {
        if self.arms == 0 {
            return 0.0;
        }
        let arm = if self.total == 0 {
            0.0
        } else {
            self.done as f32 / self.total as f32
        };
        ((self.arm as f32 + arm) / self.arms as f32).clamp(0.0, 1.0)
    }

    fn eta_seconds(&self) -> Option<f64> {
        let elapsed = self.started?.elapsed().as_secs_f64();
        let f = f64::from(self.fraction());
        (f > 0.01).then(|| elapsed * (1.0 - f) / f)
    }

    fn apply(&mut self, arm: usize, event: &crate::pipeline::RunEvent) {
        use crate::pipeline::RunEvent;
        if arm != self.arm {
            // The next arm starts from nothing (the last one's batch count would read as done).
            self.done = 0;
            self.total = 0;
        }
        self.arm = arm;
        match event {
            RunEvent::Stage(stage) => self.stage = stage.clone(),
            RunEvent::Train(TrainEvent::Started {
                batches_per_epoch, ..
            }) => {
                self.batches_per_epoch = *batches_per_epoch;
                self.done = 0;
            }
            RunEvent::Train(TrainEvent::Batch {
                done,
                total,
                loss,
                images_per_second,
                ..
            }) => {
                self.done = *done;
                self.total = *total;
                self.images_per_second = *images_per_second;
                let x = *done as f64 / self.batches_per_epoch.max(1) as f64;
                if let Some(curve) = self.loss.get_mut(arm) {
                    curve.push([x, f64::from(*loss)]);
                }
            }
            RunEvent::Train(TrainEvent::Epoch(stats)) => {
                let x = stats.epoch as f64;
                if let Some(curve) = self.accuracy.get_mut(arm) {
                    curve.push([x, stats.test_accuracy]);
                }
                if let (Some(curve), Some(asr)) = (self.asr.get_mut(arm), stats.attack_success_rate)
                {
                    curve.push([x, asr]);
                }
            }
            RunEvent::Detect(crate::detect::DetectEvent::Extracting { done, total }) => {
                self.stage = format!("extracting features {done}/{total}");
            }
            RunEvent::Detect(crate::detect::DetectEvent::Probing { name, done, total }) => {
                self.stage = format!("{name}: model passes {done}/{total}");
            }
            RunEvent::Detect(crate::detect::DetectEvent::Running(name)) => {
                self.stage = format!("running {name}");
            }
            RunEvent::Detect(crate::detect::DetectEvent::Finished { .. }) => {}
        }
    }
}

/// Before/after textures of the attack preview, or why the attack cannot be built.
type Preview = Result<Vec<[egui::TextureHandle; 2]>, String>;

/// The application state.
pub struct App {
    /// The experiment the panels edit; the same TOML the CLI runs.
    pub config: Experiment,
    /// The attack settings, kept while the attack is switched off.
    pub attack: AttackConfig,
    /// Whether an attack is planted ("no attack" is the analysts' default).
    pub attack_on: bool,
    /// What was loaded, or why loading failed (shown in the window, not the console).
    dataset: Result<Loaded, String>,
    loading: Option<Loading>,
    job: Option<Job>,
    progress: Progress,
    /// The last finished run or comparison.
    pub finished: Option<Finished>,
    /// The last job's end: an error, or "cancelled"; or what was saved.
    pub status: Option<String>,
    /// Whether `status` reports a success (shown plainly) or a problem (shown in warning colour).
    status_ok: bool,
    /// An export under way.
    task: Option<Task>,
    pub view: View,
    class_filter: Option<u16>,
    thumbnails: inspect::TextureCache,
    preview: Option<(AttackConfig, Preview)>,
    inspect: Inspect,
}

/// The image of sample `index` as an egui image.
pub fn color_image(data: &Dataset, index: usize) -> Option<egui::ColorImage> {
    image_of(data, data.image(index)?)
}

fn image_of(data: &Dataset, pixels: &[u8]) -> Option<egui::ColorImage> {
    let s = data.shape;
    let size = [s.width, s.height];
    (pixels.len() == s.width * s.height * s.channels).then(|| match s.channels {
        1 => egui::ColorImage::from_gray(size, pixels),
        _ => egui::ColorImage::from_rgb(size, pixels),
    })
}

/// One line on what an attack does (hover help).
fn attack_help(kind: AttackKind) -> &'static str {
    match kind {
        AttackKind::Badnets => {
            "BadNets: a small visible patch in a corner, relabelled to the target"
        }
        AttackKind::Image => "BadNets with your own trigger image",
        AttackKind::Blended => "Blended: a whole-image pattern mixed in at opacity α",
        AttackKind::Sig => {
            "SIG: a faint sinusoidal stripe added to target-class images only (clean label)"
        }
        AttackKind::Wanet => "WaNet: an invisible smooth warp of the image",
        AttackKind::Lf => "LF: a smooth low-frequency pattern added to the image, hard to see",
        AttackKind::AdaptiveBlend => {
            "Adaptive-Blend: a blended trigger cut into pieces, half of them per poison, with cover images that keep their label: made to evade feature-space detectors"
        }
        AttackKind::Lc => {
            "Label-consistent: target-class images keep their label but are first made hard with PGD (ε of 255, against a clean model the run trains first), then get a checkerboard in each corner. The preview shows the trigger only"
        }
        AttackKind::Tact => {
            "TaCT: the patch sends only the source class to the target; cover images of other classes carry it and keep their label, so poisons and covers look alike to feature-space detectors"
        }
    }
}

/// One line on what a detector looks at (hover help).
fn detector_help(kind: DetectorKind) -> &'static str {
    match kind {
        DetectorKind::Ac => {
            "Activation Clustering: splits each class's features in two; a small separate cluster is suspicious"
        }
        DetectorKind::Ss => {
            "Spectral Signatures: distance along each class's top singular direction"
        }
        DetectorKind::Spectre => "SPECTRE: robust whitening, then the QUE score of each class",
        DetectorKind::Scan => {
            "SCAn: does a class's features need two components (clean + poison) instead of one"
        }
        DetectorKind::Beatrix => {
            "Beatrix: Gram-matrix statistics of the features, against the references'"
        }
        DetectorKind::Loss => {
            "Loss: each sample's loss under its given label; high when the model refused to fit the label (SAM often refuses a few relabelled poisons)"
        }
        DetectorKind::Strip => {
            "STRIP: blends each image with 20 clean references; a trigger keeps the prediction fixed (low entropy). 20 extra model passes per image"
        }
        DetectorKind::ScaleUp => {
            "SCALE-UP: multiplies the pixel values by 3 to 11; a trigger keeps the prediction (high consistency). 5 extra model passes per image"
        }
        DetectorKind::IbdPsc => {
            "IBD-PSC: amplifies the deepest BatchNorm layers until clean references break; a trigger keeps the prediction (high consistency). 5 extra model passes per image. Needs residual connections (preact-resnet18): on the plain CNN amplification changes no prediction, and it says so instead of scoring"
        }
    }
}

impl App {
    /// Starts loading `source` (the demo set when `None`) and builds the app.
    pub fn new(source: Option<&str>) -> Self {
        let mut config = Experiment::default();
        config.dataset.source = source.unwrap_or(EMBEDDED_MNIST).to_owned();
        Self::with_config(config)
    }

    /// An app editing `config` (its `[attack]`, when present, is switched on).
    pub fn with_config(config: Experiment) -> Self {
        let attack_on = config.attack.is_some();
        let attack = config
            .attack
            .clone()
            .unwrap_or_else(|| AttackConfig::of(AttackKind::Badnets));
        let mut app = Self {
            config,
            attack,
            attack_on,
            dataset: Err("loading…".to_owned()),
            loading: None,
            job: None,
            progress: Progress::default(),
            finished: None,
            status: None,
            status_ok: false,
            task: None,
            view: View::Dataset,
            class_filter: None,
            thumbnails: inspect::TextureCache::default(),
            preview: None,
            inspect: Inspect::default(),
        };
        let source = app.config.dataset.source.clone();
        app.load(source, None);
        app
    }

    /// The config as the CLI would run it (with or without the attack).
    pub fn experiment(&self) -> Experiment {
        let mut config = self.config.clone();
        config.attack = self.attack_on.then(|| self.attack.clone());
        config
    }

    /// Whether a dataset load or a run is under way.
    pub fn busy(&self) -> bool {
        self.loading.is_some() || self.job.is_some()
    }

    /// Whether an export is under way.
    pub fn exporting(&self) -> bool {
        self.task.is_some()
    }

    /// Shows a success (`ok`) or a problem in the top bar.
    fn say(&mut self, ok: bool, text: String) {
        self.status = Some(text);
        self.status_ok = ok;
    }

    /// Runs an export the inspection view asked for on a worker; its outcome lands in the top bar.
    fn run_export(&mut self, export: Export, ctx: &egui::Context) {
        let Some(finished) = &self.finished else {
            return;
        };
        let wake = {
            let ctx = ctx.clone();
            move || ctx.request_repaint()
        };
        let source = finished.config.dataset.source.clone();
        let prepared = Arc::clone(&finished.prepared);
        let spawned = match export {
            Export::Decisions { path, text } => {
                Task::spawn(format!("writing {}", path.display()), wake, move || {
                    if let Some(dir) = path.parent() {
                        crate::attack::export::check_not_in_source(dir, &source)?;
                        std::fs::create_dir_all(dir).map_err(|e| {
                            anyhow::anyhow!("{}: cannot create the folder: {e}", dir.display())
                        })?;
                    }
                    crate::artifacts::write_file(&path, text.as_bytes())
                        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
                    Ok(format!("saved {}", path.display()))
                })
            }
            Export::Cleaned { dir, keep } => Task::spawn(
                format!("writing {} kept images to {}", keep.len(), dir.display()),
                wake,
                move || {
                    let train = prepared.train_data().train;
                    let n = crate::report::write_kept_folder(&dir, train, &keep, &source)?;
                    Ok(format!("saved {n} kept images to {}", dir.display()))
                },
            ),
            Export::Run { dir } => {
                let runs = Arc::clone(&finished.runs);
                Task::spawn(
                    format!("saving the run and its report to {}", dir.display()),
                    wake,
                    move || worker::save_run(&dir, &prepared, &runs, &source, REPORT_TOP),
                )
            }
        };
        match spawned {
            Ok(task) => {
                self.say(true, format!("{}…", task.what));
                self.task = Some(task);
            }
            Err(e) => self.say(false, format!("cannot start the export: {e}")),
        }
    }

    /// Shows finished results in the inspection view (as when a run ends).
    pub fn show_results(&mut self, finished: Finished) {
        self.inspect = self.inspect.for_new_result();
        self.finished = Some(finished);
        self.view = View::Inspection;
    }

    /// The inspection view's state (for tests and scripted sessions).
    pub fn inspect_mut(&mut self) -> &mut Inspect {
        &mut self.inspect
    }

    /// How many samples the reviewer has marked by hand.
    pub fn marked(&self) -> usize {
        self.inspect.marks.len()
    }

    /// The sample selected in the inspection view.
    pub fn selected(&self) -> Option<usize> {
        self.inspect.selected
    }

    /// Whether the dataset is loaded.
    pub fn dataset_loaded(&self) -> bool {
        self.dataset.is_ok() && self.loading.is_none()
    }

    fn load(&mut self, source: String, ctx: Option<&egui::Context>) {
        let wake = {
            let ctx = ctx.cloned();
            move || {
                if let Some(ctx) = &ctx {
                    ctx.request_repaint();
                }
            }
        };
        self.finished = None;
        self.preview = None;
        self.thumbnails.clear();
        self.dataset = Err(format!("loading {source}…"));
        match Loading::spawn(source, &self.config, wake) {
            Ok(loading) => self.loading = Some(loading),
            Err(e) => self.dataset = Err(format!("cannot start loading: {e}")),
        }
    }

    /// Starts a run (or the SGD-vs-SAM comparison) of the current config.
    pub fn start(&mut self, ctx: &egui::Context, compare: bool) {
        let config = self.experiment();
        if let Err(e) = config.validate() {
            self.say(false, format!("config: {e}"));
            return;
        }
        let ctx = ctx.clone();
        match Job::spawn(config, compare, move || ctx.request_repaint()) {
            Ok(job) => {
                self.progress = Progress::new(job.arms);
                self.status = None;
                self.job = Some(job);
            }
            Err(e) => self.say(false, format!("cannot start the worker: {e}")),
        }
    }

    /// Asks the running job to stop.
    pub fn cancel(&mut self) {
        if let Some(job) = &self.job {
            job.worker.cancel();
        }
    }

    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(loading) = &self.loading {
            use std::sync::mpsc::TryRecvError;
            let result = match loading.result.try_recv() {
                Ok(result) => Some(result),
                Err(TryRecvError::Empty) => None,
                // The loading thread ended without an answer (it panicked).
                Err(TryRecvError::Disconnected) => Some(Err(format!(
                    "loading {} stopped unexpectedly (internal error); try again or report it",
                    loading.source
                ))),
            };
            if let Some(result) = result {
                if let Err(e) = &result {
                    // Shown in the top bar and on the Dataset tab, which comes to the front.
                    self.say(false, e.clone());
                    self.view = View::Dataset;
                }
                self.dataset = result.map(|data| Loaded {
                    summary: Summary::of(&data),
                    data,
                });
                self.loading = None;
            }
        }
        let mut ended = None;
        if let Some(job) = &self.job {
            while let Ok(event) = job.worker.events.try_recv() {
                match event {
                    WorkerEvent::Run(arm, event) => self.progress.apply(arm, &event),
                    WorkerEvent::Finished(finished) => ended = Some(Ok(finished)),
                    WorkerEvent::Failed(e) => ended = Some(Err(e)),
                    WorkerEvent::Cancelled => ended = Some(Err("cancelled".to_owned())),
                }
            }
            // Every event of an ended worker has been drained above: one that ended without
            // saying how must not leave the window "running" forever.
            if ended.is_none() && job.worker.is_finished() {
                ended = Some(Err(
                    "the run stopped unexpectedly (internal error); the window is ready again"
                        .to_owned(),
                ));
            }
        }
        if let Some(end) = ended {
            self.job = None;
            match end {
                Ok(finished) => self.show_results(*finished),
                Err(e) => self.say(false, e),
            }
        }
        if let Some(outcome) = self.task.as_ref().and_then(Task::poll) {
            self.task = None;
            match outcome {
                Ok(message) => self.say(true, message),
                Err(e) => self.say(false, e),
            }
        }
        // Drag and drop: a folder (or a file inside one) becomes the dataset; a .toml the config.
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(path) = dropped.first() {
            self.open_path(path, ctx);
        }
    }

    fn open_path(&mut self, path: &Path, ctx: &egui::Context) {
        if path.extension().is_some_and(|e| e == "toml") {
            self.open_config(path, ctx);
        } else if !self.busy() {
            let folder = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(path)
            };
            self.config.dataset.source = folder.display().to_string();
            self.load(self.config.dataset.source.clone(), Some(ctx));
        }
    }

    fn open_config(&mut self, path: &Path, ctx: &egui::Context) {
        match Experiment::from_file(path, &[]) {
            Ok(config) => {
                let inspect_ctx = ctx.clone();
                *self = Self::with_config(config);
                self.say(true, format!("opened {}", path.display()));
                inspect_ctx.request_repaint();
            }
            Err(e) => self.say(false, e.to_string()),
        }
    }

    fn save_config(&mut self, path: &Path) {
        let result = self
            .experiment()
            .to_toml()
            .map_err(|e| e.to_string())
            .and_then(|text| {
                crate::report::write_atomic(path, &text)
                    .map_err(|e| format!("{}: cannot write: {e}", path.display()))
            });
        match result {
            Ok(()) => self.say(true, format!("saved {}", path.display())),
            Err(e) => self.say(false, e),
        }
    }

    /// Draws the whole UI.
    pub fn root_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        egui::Panel::top("top_bar").show(ui, |ui| self.top_bar(ui));
        egui::Panel::left("steps")
            .resizable(true)
            .default_size(340.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.steps_ui(ui));
            });
        let mut exports = None;
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.view, View::Dataset, "Dataset");
                ui.add_enabled_ui(self.finished.is_some(), |ui| {
                    ui.selectable_value(&mut self.view, View::Inspection, "Inspection");
                });
            });
            ui.separator();
            match self.view {
                View::Dataset => self.dataset_view(ui),
                View::Inspection => match &self.finished {
                    Some(finished) => {
                        let exporting = self.task.is_some();
                        if let Some(export) =
                            self.inspect
                                .ui(ui, finished, &mut self.thumbnails, exporting)
                        {
                            exports = Some(export);
                        }
                    }
                    None => {
                        ui.label("No results yet: start a run in the training step.");
                    }
                },
            }
        });
        if let Some(export) = exports {
            self.run_export(export, &ctx);
        }
        if self.busy() || self.task.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(200));
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading(APP_TITLE);
            ui.separator();
            let dialogs = file_dialogs_available();
            if ui
                .add_enabled(dialogs, egui::Button::new("Open config…"))
                .on_disabled_hover_text(no_dialog("start with `poisonscope gui CONFIG`"))
                .clicked()
                && let Some(path) = rfd::FileDialog::new()
                    .add_filter("TOML", &["toml"])
                    .pick_file()
            {
                self.open_config(&path, ui.ctx());
            }
            if ui
                .add_enabled(dialogs, egui::Button::new("Save config…"))
                .on_disabled_hover_text(no_dialog("the settings are kept between sessions anyway"))
                .clicked()
                && let Some(path) = rfd::FileDialog::new()
                    .add_filter("TOML", &["toml"])
                    .set_file_name("experiment.toml")
                    .save_file()
            {
                self.save_config(&path);
            }
            if let Some(status) = &self.status {
                ui.separator();
                if self.task.is_some() {
                    ui.spinner();
                }
                let color = if self.status_ok {
                    ui.visuals().text_color()
                } else {
                    ui.visuals().warn_fg_color
                };
                ui.colored_label(color, status.as_str());
            }
        });
    }

    fn steps_ui(&mut self, ui: &mut egui::Ui) {
        let idle = !self.busy();
        egui::CollapsingHeader::new("1 · Dataset")
            .default_open(true)
            .show(ui, |ui| ui.add_enabled_ui(idle, |ui| self.dataset_step(ui)));
        egui::CollapsingHeader::new("2 · Attack (teaching / evaluation)")
            .default_open(true)
            .show(ui, |ui| ui.add_enabled_ui(idle, |ui| self.attack_step(ui)));
        egui::CollapsingHeader::new("3 · Training")
            .default_open(true)
            .show(ui, |ui| self.training_step(ui));
        egui::CollapsingHeader::new("4 · Detection")
            .default_open(true)
            .show(ui, |ui| {
                ui.add_enabled_ui(idle, |ui| self.detection_step(ui))
            });
    }

    fn dataset_step(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Source");
            ui.text_edit_singleline(&mut self.config.dataset.source)
                .labelled_by(label.id)
                .on_hover_text("an image folder (class sub-folders, optionally train/ and test/), MNIST IDX files, a CIFAR-10 binary folder, or embedded:mnist");
        });
        ui.horizontal(|ui| {
            if ui.button("Load").clicked() {
                self.load(self.config.dataset.source.clone(), Some(ui.ctx()));
            }
            if ui
                .add_enabled(file_dialogs_available(), egui::Button::new("Open folder…"))
                .on_disabled_hover_text(no_dialog("type the folder in Source and press Load"))
                .clicked()
                && let Some(folder) = rfd::FileDialog::new().pick_folder()
            {
                self.config.dataset.source = folder.display().to_string();
                self.load(self.config.dataset.source.clone(), Some(ui.ctx()));
            }
            if ui.button("Demo digits").clicked() {
                self.config.dataset.source = EMBEDDED_MNIST.to_owned();
                self.load(EMBEDDED_MNIST.to_owned(), Some(ui.ctx()));
            }
        });
        ui.label("…or drop a dataset folder onto the window.");
        ui.horizontal(|ui| {
            let label = ui.label("Use the first");
            ui.add(egui::DragValue::new(&mut self.config.dataset.limit).range(0..=1_000_000))
                .labelled_by(label.id)
                .on_hover_text("a quick look on a subset; detection results on all images need 0");
            ui.label("training images (0 = all)");
        });
    }

    fn attack_step(&mut self, ui: &mut egui::Ui) {
        ui.checkbox(&mut self.attack_on, "Plant an attack")
            .on_hover_text("for teaching and evaluation: poison a share of the training set with a known trigger, so the detectors' hits can be scored against the truth");
        if !self.attack_on {
            ui.label("No attack — this is a real untrusted dataset.");
            return;
        }
        let a = &mut self.attack;
        egui::Grid::new("attack_grid")
            .num_columns(2)
            .show(ui, |ui| {
                let label = ui.label("Kind");
                egui::ComboBox::from_id_salt("attack_kind")
                    .selected_text(a.kind.name())
                    .show_ui(ui, |ui| {
                        for kind in [
                            AttackKind::Badnets,
                            AttackKind::Blended,
                            AttackKind::Sig,
                            AttackKind::Wanet,
                            AttackKind::Lf,
                            AttackKind::AdaptiveBlend,
                            AttackKind::Tact,
                        ] {
                            ui.selectable_value(&mut a.kind, kind, kind.name())
                                .on_hover_text(attack_help(kind));
                        }
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text(attack_help(a.kind));
                ui.end_row();
                let label = ui.label("Poisoning ratio");
                ui.add(
                    egui::Slider::new(&mut a.ratio, 0.001..=0.2)
                        .logarithmic(true)
                        .custom_formatter(|v, _| format!("{:.1} %", v * 100.0))
                        .custom_parser(|t| {
                            t.trim_end_matches('%')
                                .trim()
                                .parse::<f64>()
                                .ok()
                                .map(|v| v / 100.0)
                        }),
                )
                .labelled_by(label.id)
                .on_hover_text("share of the training images that get the trigger (and, for most attacks, the target label); weak attacks are below 1 %");
                ui.end_row();
                let label = ui.label("Target class");
                ui.add(egui::DragValue::new(&mut a.target).range(0..=999))
                    .labelled_by(label.id)
                    .on_hover_text("the class the backdoor sends triggered images to (its index)");
                ui.end_row();
                ui.label("Mode");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut a.mode, TargetMode::AllToOne, "all-to-one")
                        .on_hover_text("every triggered image goes to the target class");
                    ui.radio_value(&mut a.mode, TargetMode::AllToAll, "all-to-all")
                        .on_hover_text("a triggered image of class c goes to class c + 1");
                });
                ui.end_row();
                let optional = |ui: &mut egui::Ui, label: &str, v: &mut Option<f64>, d: f64| {
                    let name = ui.label(label);
                    let mut value = v.unwrap_or(d);
                    if ui
                        .add(egui::DragValue::new(&mut value).speed(0.01))
                        .labelled_by(name.id)
                        .changed()
                    {
                        *v = Some(value);
                    }
                    ui.end_row();
                };
                match a.kind {
                    AttackKind::Badnets | AttackKind::Image | AttackKind::Tact => {
                        let label = ui.label("Patch size");
                        let mut side = a.patch_size.unwrap_or(3);
                        if ui
                            .add(egui::DragValue::new(&mut side).range(1..=32))
                            .labelled_by(label.id)
                            .changed()
                        {
                            a.patch_size = Some(side);
                        }
                        ui.end_row();
                    }
                    AttackKind::Blended => optional(ui, "Blend α", &mut a.alpha, 0.2),
                    AttackKind::AdaptiveBlend => optional(ui, "Blend α", &mut a.alpha, 0.15),
                    AttackKind::Sig => optional(ui, "Amplitude δ", &mut a.delta, 40.0),
                    AttackKind::Wanet => optional(ui, "Warp strength", &mut a.warp_strength, 0.5),
                    AttackKind::Lf => optional(ui, "Strength (of 255)", &mut a.strength, 51.0),
                    AttackKind::Lc => optional(ui, "PGD ε (of 255)", &mut a.epsilon, 16.0),
                }
                if a.kind == AttackKind::Tact {
                    let label = ui.label("Source class");
                    let default = if a.target == 1 { 0 } else { 1 };
                    let mut source = a
                        .source_classes
                        .as_ref()
                        .and_then(|s| s.first().copied())
                        .unwrap_or(default);
                    if ui
                        .add(egui::DragValue::new(&mut source).range(0..=999))
                        .labelled_by(label.id)
                        .on_hover_text("triggered images of this class go to the target; a config can name several (attack.source_classes)")
                        .changed()
                    {
                        a.source_classes = Some(vec![source]);
                    }
                    ui.end_row();
                }
            });
        if matches!(
            a.kind,
            AttackKind::Badnets | AttackKind::Image | AttackKind::Blended
        ) {
            ui.horizontal(|ui| {
                let name = a
                    .trigger_image
                    .as_ref()
                    .map_or("built-in".to_owned(), |p| p.display().to_string());
                ui.label(format!("Trigger: {name}"));
                if ui
                    .add_enabled(file_dialogs_available(), egui::Button::new("Pick image…"))
                    .on_disabled_hover_text(no_dialog("set attack.trigger_image in a config"))
                    .clicked()
                    && let Some(path) = rfd::FileDialog::new()
                        .add_filter("image", &["png", "jpg", "jpeg", "bmp"])
                        .pick_file()
                {
                    a.trigger_image = Some(path);
                }
                if a.trigger_image.is_some() && ui.button("Clear").clicked() {
                    a.trigger_image = None;
                }
            });
        }
        self.preview_ui(ui);
    }

    /// Before/after of the attack on a few training images, redrawn when a setting changes.
    fn preview_ui(&mut self, ui: &mut egui::Ui) {
        let Ok(loaded) = &self.dataset else {
            return;
        };
        let stale = self.preview.as_ref().is_none_or(|(a, _)| *a != self.attack);
        if stale {
            let train = &loaded.data.train;
            let tiles = Attack::from_config(&self.attack, train.shape)
                .map_err(|e| e.to_string())
                .map(|attack| {
                    let target = self.attack.target;
                    let picks = train
                        .labels
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| **l != target)
                        .map(|(i, _)| i)
                        .take(PREVIEW_SAMPLES);
                    picks
                        .filter_map(|i| {
                            let before = color_image(train, i)?;
                            let after = image_of(train, &attack.poison_image(train.image(i)?, i))?;
                            let tex = |name: String, img| {
                                ui.ctx()
                                    .load_texture(name, img, egui::TextureOptions::NEAREST)
                            };
                            Some([
                                tex(format!("before-{i}"), before),
                                tex(format!("after-{i}"), after),
                            ])
                        })
                        .collect()
                });
            self.preview = Some((self.attack.clone(), tiles));
        }
        let Some((_, tiles)) = &self.preview else {
            return;
        };
        match tiles {
            Ok(tiles) => {
                ui.label("Preview (top: clean, bottom: poisoned)");
                let side = egui::vec2(56.0, 56.0);
                for row in 0..2 {
                    ui.horizontal(|ui| {
                        for pair in tiles {
                            ui.add(egui::Image::new(&pair[row]).fit_to_exact_size(side));
                        }
                    });
                }
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            }
        }
    }

    fn training_step(&mut self, ui: &mut egui::Ui) {
        let idle = !self.busy();
        ui.add_enabled_ui(idle, |ui| {
            let t = &mut self.config.train;
            egui::Grid::new("train_grid").num_columns(2).show(ui, |ui| {
                let label = ui.label("Model");
                egui::ComboBox::from_id_salt("model")
                    .selected_text(match t.model {
                        ModelKind::Cnn => "small CNN",
                        ModelKind::PreActResNet18 => "PreAct-ResNet18",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut t.model, ModelKind::Cnn, "small CNN");
                        ui.selectable_value(
                            &mut t.model,
                            ModelKind::PreActResNet18,
                            "PreAct-ResNet18",
                        );
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text("small CNN for 28×28 digits; PreAct-ResNet18 for 32×32 colour images (much slower on a CPU)");
                ui.end_row();
                ui.label("Optimiser");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut t.optimizer, OptimizerKind::Sgd, "SGD")
                        .on_hover_text("plain SGD with momentum: the detectors' usual model");
                    ui.radio_value(&mut t.optimizer, OptimizerKind::Sam, "SAM")
                        .on_hover_text("sharpness-aware minimisation: the seed paper's recipe, meant to make a weak backdoor stand out in the features");
                    ui.radio_value(&mut t.optimizer, OptimizerKind::Asam, "ASAM")
                        .on_hover_text("adaptive SAM: the radius scaled per weight");
                });
                ui.end_row();
                let label = ui.label("SAM radius (rho)");
                ui.add(
                    egui::DragValue::new(&mut t.rho)
                        .speed(0.005)
                        .range(0.0..=5.0),
                )
                .labelled_by(label.id)
                .on_hover_text("how far SAM looks for the worst nearby weights; 0.02 by default (larger radii let SAM skip fitting weak backdoors)");
                ui.end_row();
                let label = ui.label("Epochs");
                ui.add(egui::DragValue::new(&mut t.epochs).range(1..=500))
                    .labelled_by(label.id)
                    .on_hover_text("passes over the training set");
                ui.end_row();
                let label = ui.label("Batch size");
                ui.add(egui::DragValue::new(&mut t.batch_size).range(2..=4096))
                    .labelled_by(label.id)
                    .on_hover_text("images per step (at least 2: BatchNorm needs a batch)");
                ui.end_row();
                let label = ui.label("Learning rate");
                ui.add(
                    egui::DragValue::new(&mut t.lr)
                        .speed(0.001)
                        .range(1e-5..=1.0),
                )
                .labelled_by(label.id)
                .on_hover_text("SGD step size; a run that stays at chance accuracy usually needs a larger one");
                ui.end_row();
                let label = ui.label("Seed");
                ui.add(egui::DragValue::new(&mut t.seed))
                    .labelled_by(label.id)
                    .on_hover_text("fixes the split, the poisoned samples, the initial weights and the batch order: the same seed gives the same run");
                ui.end_row();
                ui.label("Device");
                ui.horizontal(|ui| {
                    use crate::config::DeviceKind;
                    ui.radio_value(&mut t.device, DeviceKind::Cpu, "CPU")
                        .on_hover_text("Burn's CPU backend on every core");
                    let missing = crate::train::cuda_unavailable();
                    if ui
                        .add_enabled(
                            missing.is_none(),
                            egui::RadioButton::new(t.device == DeviceKind::Cuda, "CUDA"),
                        )
                        .on_hover_text("an NVIDIA GPU through Burn's CUDA backend")
                        .on_disabled_hover_text(missing.clone().unwrap_or_default())
                        .clicked()
                    {
                        t.device = DeviceKind::Cuda;
                    }
                    let here = crate::train::device::resolve(DeviceKind::Auto).name();
                    ui.radio_value(&mut t.device, DeviceKind::Auto, "auto")
                        .on_hover_text(format!(
                            "CUDA where it works, else the CPU (here: {here}); the report says which trained"
                        ));
                });
                ui.end_row();
            });
        });
        ui.horizontal(|ui| {
            let ready = idle && self.dataset_loaded();
            let why = if !idle {
                "a run is in progress (Cancel stops it)".to_owned()
            } else {
                match &self.dataset {
                    Err(e) if self.loading.is_some() => e.clone(),
                    Err(e) => format!("no dataset: {e}"),
                    Ok(_) => String::new(),
                }
            };
            if ui
                .add_enabled(ready, egui::Button::new("Start"))
                .on_disabled_hover_text(&why)
                .clicked()
            {
                self.start(ui.ctx(), false);
            }
            if ui
                .add_enabled(ready, egui::Button::new("Compare SGD vs SAM"))
                .on_disabled_hover_text(&why)
                .clicked()
            {
                self.start(ui.ctx(), true);
            }
            let cancellable = self.job.as_ref().is_some_and(|j| !j.worker.is_cancelling());
            if ui
                .add_enabled(cancellable, egui::Button::new("Cancel"))
                .clicked()
            {
                self.cancel();
            }
        });
        if self.job.is_some() {
            let p = &self.progress;
            let eta = p
                .eta_seconds()
                .map_or(String::new(), |s| format!(" · ETA {}", format_seconds(s)));
            let arm = if p.arms > 1 {
                format!(
                    "{} ",
                    ["SGD", "SAM"].get(p.arm).copied().unwrap_or_default()
                )
            } else {
                String::new()
            };
            ui.add(
                egui::ProgressBar::new(p.fraction())
                    .show_percentage()
                    .text(format!("{arm}{}{eta}", p.stage)),
            );
            if p.images_per_second > 0.0 {
                ui.label(format!("{:.0} images/s", p.images_per_second));
            }
        }
        self.curves_ui(ui);
    }

    fn curves_ui(&self, ui: &mut egui::Ui) {
        let p = &self.progress;
        if p.loss.iter().all(Vec::is_empty) {
            return;
        }
        let names = if p.arms > 1 {
            vec!["SGD", "SAM"]
        } else {
            vec!["run"]
        };
        ui.label("Training loss (per batch)");
        // Live curves: always fitted to the data (a wheel or drag must not pan them away).
        egui_plot::Plot::new("loss_plot")
            .height(120.0)
            // From zero: a loss falling over a small range still gets several ticks.
            .include_y(0.0)
            .allow_scroll(false)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_boxed_zoom(false)
            .legend(egui_plot::Legend::default())
            .x_axis_label("epoch")
            .show(ui, |plot| {
                for (curve, name) in p.loss.iter().zip(&names) {
                    plot.line(egui_plot::Line::new(*name, curve.clone()));
                }
            });
        ui.label("Test accuracy and attack success rate (per epoch)");
        egui_plot::Plot::new("accuracy_plot")
            .height(120.0)
            .allow_scroll(false)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_boxed_zoom(false)
            .legend(egui_plot::Legend::default())
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_label("epoch")
            .show(ui, |plot| {
                for (i, name) in names.iter().enumerate() {
                    if let Some(c) = p.accuracy.get(i) {
                        plot.line(egui_plot::Line::new(format!("{name} accuracy"), c.clone()));
                    }
                    if let Some(c) = p.asr.get(i).filter(|c| !c.is_empty()) {
                        plot.line(egui_plot::Line::new(format!("{name} ASR"), c.clone()));
                    }
                }
            });
    }

    fn detection_step(&mut self, ui: &mut egui::Ui) {
        let d = &mut self.config.detect;
        ui.label("Detectors");
        ui.horizontal_wrapped(|ui| {
            for kind in DetectorKind::ALL {
                let mut on = d.methods.contains(&kind);
                if ui
                    .checkbox(&mut on, kind.name())
                    .on_hover_text(detector_help(kind))
                    .changed()
                {
                    if on {
                        d.methods.push(kind);
                    } else {
                        d.methods.retain(|k| *k != kind);
                    }
                }
            }
        });
        ui.checkbox(
            &mut d.feature_scaling,
            "Feature scaling (PCA + clean-reference whitening)",
        )
        .on_hover_text("the seed paper's feature preparation: PCA, then whitening with the clean references, so no feature direction dominates the detectors");
        if d.feature_scaling {
            ui.horizontal(|ui| {
                ui.label("Whitening")
                    .on_hover_text("with the clean references' covariance: pooled over classes, or within each class");
                ui.radio_value(
                    &mut d.whitening,
                    crate::detect::scaling::ReferenceCovariance::Pooled,
                    "pooled",
                );
                ui.radio_value(
                    &mut d.whitening,
                    crate::detect::scaling::ReferenceCovariance::WithinClass,
                    "within-class",
                );
            });
        }
        ui.horizontal(|ui| {
            let label = ui.label("Clean references per class");
            ui.add(egui::DragValue::new(&mut d.clean_per_class).range(2..=1000))
                .labelled_by(label.id)
                .on_hover_text("trusted images per class drawn from the held-out split; they calibrate the thresholds and the whitening");
        });
        ui.horizontal(|ui| {
            ui.label("Decision");
            ui.radio_value(
                &mut d.decision,
                crate::detect::decision::Decision::Calibrated,
                "calibrated",
            )
            .on_hover_text(
                "flag a sample when its score exceeds the clean references' 99th percentile",
            );
            ui.radio_value(
                &mut d.decision,
                crate::detect::decision::Decision::Paper,
                "published rules",
            )
            .on_hover_text("each detector's own rule, as in its paper (flags a fixed share)");
        });
        ui.horizontal(|ui| {
            let label = ui.label("Consensus: flagged by at least");
            ui.add(egui::DragValue::new(&mut d.consensus_agreement).range(1..=7))
                .labelled_by(label.id)
                .on_hover_text("the consensus flags a sample when this many detectors flag it");
            ui.label("detectors");
        });
        ui.horizontal(|ui| {
            let label = ui.label("Expected poison ratio");
            let mut known = d.expected_ratio.is_some();
            if ui
                .checkbox(&mut known, "set")
                .on_hover_text("used by the published rules only; unset: each detector's default")
                .changed()
            {
                d.expected_ratio = known.then_some(0.05);
            }
            if let Some(r) = &mut d.expected_ratio {
                ui.add(egui::DragValue::new(r).speed(0.001).range(0.0..=0.5))
                    .labelled_by(label.id)
                    .on_hover_text("what the published rules assume about the poison share (a defender rarely knows it)");
            }
        });
    }

    fn dataset_view(&mut self, ui: &mut egui::Ui) {
        let loaded = match &self.dataset {
            Ok(loaded) => loaded,
            Err(message) => {
                if self.loading.is_some() {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(message.as_str());
                    });
                } else {
                    ui.colored_label(ui.visuals().error_fg_color, message.as_str());
                }
                return;
            }
        };
        let summary = &loaded.summary;
        let [h, w, c] = summary.shape;
        ui.label(format!("Dataset: {} ({})", summary.source, summary.format));
        ui.label(format!(
            "{} training / {} test images, {h}×{w}×{c}",
            summary.n_train, summary.n_test
        ));
        ui.horizontal(|ui| {
            let label = ui.label("Show class");
            let shown = self
                .class_filter
                .and_then(|c| summary.classes.get(usize::from(c)))
                .map_or("all".to_owned(), |c| c.name.clone());
            egui::ComboBox::from_id_salt("class_filter")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.class_filter, None, "all");
                    for class in &summary.classes {
                        let index = u16::try_from(class.index).unwrap_or(u16::MAX);
                        ui.selectable_value(&mut self.class_filter, Some(index), &class.name);
                    }
                })
                .response
                .labelled_by(label.id);
        });
        egui::Panel::left("class_counts_panel")
            .resizable(false)
            .exact_size(200.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("class_counts")
                    .show(ui, |ui| {
                        egui::Grid::new("class_counts")
                            .striped(true)
                            .show(ui, |ui| {
                                ui.strong("class");
                                ui.strong("train");
                                ui.strong("test");
                                ui.end_row();
                                for class in &summary.classes {
                                    ui.label(&class.name);
                                    ui.label(class.train.to_string());
                                    ui.label(class.test.to_string());
                                    ui.end_row();
                                }
                            });
                    });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            let train = &loaded.data.train;
            let shown: Vec<usize> = match self.class_filter {
                None => (0..train.len()).collect(),
                Some(c) => (0..train.len())
                    .filter(|&i| train.labels.get(i) == Some(&c))
                    .collect(),
            };
            ui.label(format!("{} training images", shown.len()));
            let step = THUMBNAIL_SIDE + ui.spacing().item_spacing.x;
            let per_row = ((ui.available_width() / step).floor() as usize).max(1);
            let rows = shown.len().div_ceil(per_row);
            egui::ScrollArea::vertical()
                .id_salt("thumbnail_grid")
                .auto_shrink([false, false])
                .show_rows(
                    ui,
                    THUMBNAIL_SIDE + ui.spacing().item_spacing.y,
                    rows,
                    |ui, range| {
                        for row in range {
                            ui.horizontal(|ui| {
                                for &i in shown.iter().skip(row * per_row).take(per_row) {
                                    if let Some(tex) =
                                        self.thumbnails.get(ui.ctx(), "data", train, i)
                                    {
                                        ui.add(egui::Image::new(&tex).fit_to_exact_size(
                                            egui::vec2(THUMBNAIL_SIDE, THUMBNAIL_SIDE),
                                        ));
                                    }
                                }
                            });
                        }
                    },
                );
        });
    }
}

/// `75` → `1 min 15 s`.
/// Why a file-dialog button is disabled, and what to do `instead`.
pub fn no_dialog(instead: &str) -> String {
    format!("no file-dialog service on this desktop (xdg-desktop-portal or zenity): {instead}")
}

/// Whether a native file dialog can open: on Linux rfd talks to the xdg desktop portal over the
/// D-Bus session bus, or runs zenity; without either it returns nothing, exactly like a cancel,
/// so the window would ignore the click. Elsewhere the system dialog is always there.
pub fn file_dialogs_available() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let on_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        };
        let portal = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && [
                "/usr/libexec/xdg-desktop-portal",
                "/usr/lib/xdg-desktop-portal",
            ]
            .iter()
            .any(|p| Path::new(p).exists());
        portal || on_path("zenity") || on_path("kdialog")
    })
}

pub fn format_seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.root_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Ok(text) = self.experiment().to_toml() {
            storage.set_string(STORAGE_KEY, text);
        }
    }
}

/// Opens the window and blocks until it is closed. With no config, the settings of the last
/// session are restored (dataset included), else the demo set is opened.
pub fn run_native(config: Option<Experiment>) -> Result<(), eframe::Error> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_TITLE)
            .with_inner_size([1400.0, 900.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        APP_TITLE,
        options,
        Box::new(move |cc| {
            let restored = || {
                let text = cc.storage?.get_string(STORAGE_KEY)?;
                Experiment::from_toml(Path::new("saved settings"), &text, &[]).ok()
            };
            let app = match config.or_else(restored) {
                Some(config) => App::with_config(config),
                None => App::new(None),
            };
            Ok(Box::new(app))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::RunEvent;

    fn batch(done: usize, total: usize) -> RunEvent {
        RunEvent::Train(TrainEvent::Batch {
            epoch: 0,
            batch: 0,
            done,
            total,
            loss: 1.0,
            lr: 0.1,
            images_per_second: 1.0,
        })
    }

    #[test]
    fn a_comparison_progress_counts_both_arms() {
        let mut p = Progress::new(2);
        p.apply(0, &batch(10, 10));
        assert!((p.fraction() - 0.5).abs() < 1e-6);
        // The second arm's first stage: half done, not finished.
        p.apply(1, &RunEvent::Stage("training (sam)".to_owned()));
        assert!((p.fraction() - 0.5).abs() < 1e-6, "{}", p.fraction());
        p.apply(1, &batch(5, 10));
        assert!((p.fraction() - 0.75).abs() < 1e-6);
    }
}
