//! The eframe desktop app: dataset → attack → training → detection → inspection in one window.
//!
//! Layout: a top bar (config open/save), a left panel with the four steps (dataset, attack,
//! training, detection), and a central area with the dataset view or the inspection view
//! (results table, ranked gallery, feature-space scatter). Loading and runs happen on worker
//! threads ([`worker`]); the UI thread only polls their channels.

mod actions;
mod images;
pub mod inspect;
pub mod layout;
mod panels;
mod progress;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui;

use crate::attack::Attack;
use crate::config::{
    AttackConfig, AttackKind, DetectorKind, Experiment, ModelKind, OptimizerKind, TargetMode,
};
use crate::data::{EMBEDDED_MNIST, SplitDataset, Summary};
pub use images::color_image;
use images::image_of;
use inspect::{Export, Inspect, Mark};
use progress::Progress;
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
/// Where the recently opened run folders are kept between sessions (one path a line).
const RECENT_KEY: &str = "poisonscope.recent_runs";
/// Where the marks made on opened runs are kept between sessions (JSON).
const MARKS_KEY: &str = "poisonscope.run_marks";
/// How many recently opened runs the menu lists.
const RECENT_MAX: usize = 8;

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

/// What a panel asks the window to do. Panels push commands while drawing; [`App::root_ui`]
/// applies them after the frame (the egui demo's and rerun's habit), so jobs, file I/O and state
/// swaps start from one place and never in the middle of a panel.
#[derive(Debug)]
pub enum Command {
    /// Load this dataset source.
    Load(String),
    /// Start a run (`compare`: SGD and SAM).
    Run {
        compare: bool,
    },
    Cancel,
    /// A dropped file or folder: a `.toml` opens as the config, anything else as the dataset.
    Open(PathBuf),
    OpenConfig(PathBuf),
    /// Open a saved `run` or `compare` folder (no training).
    OpenRun(PathBuf),
    /// Load the scenario with this index in [`crate::scenarios::ALL`].
    Scenario(usize),
    SaveConfig(PathBuf),
    Export(Export),
    /// Compute the t-SNE layout of one arm's detector features.
    Tsne {
        arm: usize,
        features: Arc<ndarray::Array2<f64>>,
    },
}

/// Before/after textures of the attack preview, or why the attack cannot be built.
type Preview = Result<Vec<[egui::TextureHandle; 2]>, String>;

/// What the window remembers between sessions (saved as the experiment's TOML, the file the
/// CLI runs): the settings the panels edit. Everything else in [`App`] is runtime state.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The experiment the panels edit.
    pub config: Experiment,
    /// The attack settings, kept while the attack is switched off.
    pub attack: AttackConfig,
    /// Whether an attack is planted ("no attack" is the analysts' default).
    pub attack_on: bool,
    /// Saved run folders opened in the window, most recent first.
    pub recent_runs: Vec<PathBuf>,
    /// The reviewer's marks on each opened run (sample index → poisoned?), restored when the run
    /// is opened again; kept in the window's settings, never written into the run folder.
    pub run_marks: BTreeMap<PathBuf, Vec<(usize, bool)>>,
}

impl Settings {
    /// The experiment these settings describe (the attack only when it is switched on).
    pub fn experiment(&self) -> Experiment {
        let mut config = self.config.clone();
        config.attack = self.attack_on.then(|| self.attack.clone());
        config
    }
}

/// The window: its persisted [`Settings`] and the runtime state (loaded data, workers, results,
/// caches, the commands of the frame).
pub struct App {
    pub settings: Settings,
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
    /// Commands the panels pushed this frame.
    commands: Vec<Command>,
    /// The run folder typed in the Open run menu (where no folder dialog works).
    typed_run: String,
    /// The scenario whose config is loaded (its paragraph is shown beside the results).
    pub scenario: Option<usize>,
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
        let mut app = Self::idle(config);
        let source = app.settings.config.dataset.source.clone();
        app.load(source, None);
        app
    }

    /// An app that opens the saved run or comparison in `dir` (`poisonscope gui RUN_DIR`):
    /// its settings, data, results and warnings, without training.
    pub fn opening(dir: &Path) -> Self {
        let mut app = Self::idle(Experiment::default());
        app.dataset = Err(format!("opening {}…", dir.display()));
        app.open_run(dir.to_path_buf(), None);
        app
    }

    /// An app editing `config` that loads nothing yet.
    fn idle(config: Experiment) -> Self {
        crate::wgpu::probe_in_background();
        let attack_on = config.attack.is_some();
        let attack = config
            .attack
            .clone()
            .unwrap_or_else(|| AttackConfig::of(AttackKind::Badnets));
        Self {
            settings: Settings {
                config,
                attack,
                attack_on,
                recent_runs: Vec::new(),
                run_marks: BTreeMap::new(),
            },
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
            commands: Vec::new(),
            typed_run: String::new(),
            scenario: None,
        }
    }

    /// The config as the CLI would run it (with or without the attack).
    pub fn experiment(&self) -> Experiment {
        self.settings.experiment()
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

    /// Shows finished results in the inspection view (as when a run ends).
    pub fn show_results(&mut self, finished: Finished) {
        self.remember_marks();
        self.inspect = self.inspect.for_new_result();
        // A comparison opens on the fused models: in the three-seed grid their consensus found
        // every poison wherever either arm's did (docs/detection.md).
        if let Some(fused) = finished.arms.iter().position(|a| a.name == worker::FUSED) {
            self.inspect.arm = fused;
        }
        if let Some(marks) = finished
            .opened_from
            .as_ref()
            .and_then(|dir| self.settings.run_marks.get(dir))
        {
            let n = finished.run.prepared.train_data().train.len();
            self.inspect.marks = marks
                .iter()
                .filter(|(i, _)| *i < n)
                .map(|&(i, poisoned)| {
                    (
                        i,
                        if poisoned {
                            Mark::Poisoned
                        } else {
                            Mark::Clean
                        },
                    )
                })
                .collect();
        }
        self.finished = Some(finished);
        self.view = View::Inspection;
    }

    /// Keeps the marks made on an opened run in the settings (for the next time it is opened).
    pub(super) fn remember_marks(&mut self) {
        let Some(dir) = self.finished.as_ref().and_then(|f| f.opened_from.clone()) else {
            return;
        };
        let marks: Vec<(usize, bool)> = self
            .inspect
            .marks
            .iter()
            .map(|(&i, &m)| (i, m == Mark::Poisoned))
            .collect();
        if marks.is_empty() {
            self.settings.run_marks.remove(&dir);
        } else {
            self.settings.run_marks.insert(dir, marks);
        }
        // Only the recent runs' marks are kept.
        let recent = &self.settings.recent_runs;
        self.settings.run_marks.retain(|d, _| recent.contains(d));
    }

    /// The inspection view's state (for tests and scripted sessions).
    pub fn inspect_mut(&mut self) -> &mut Inspect {
        &mut self.inspect
    }

    /// The t-SNE layout of the model shown in the inspection view, once computed (or why not).
    pub fn tsne_layout(&self) -> Option<&Result<Vec<[f64; 2]>, String>> {
        self.inspect.tsne.get(&self.inspect.arm)
    }

    /// How many samples the reviewer has marked by hand.
    pub fn marked(&self) -> usize {
        self.inspect.marks.len()
    }

    /// The run folder typed in the Open run menu (for tests and scripted sessions).
    pub fn typed_run_mut(&mut self) -> &mut String {
        &mut self.typed_run
    }

    /// The sample selected in the inspection view.
    pub fn selected(&self) -> Option<usize> {
        self.inspect.selected
    }

    /// Whether the dataset is loaded.
    pub fn dataset_loaded(&self) -> bool {
        self.dataset.is_ok() && self.loading.is_none()
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
        egui::CentralPanel::default().show(ui, |ui| {
            self.scenario_box(ui);
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
                        if let Some(command) =
                            self.inspect
                                .ui(ui, finished, &mut self.thumbnails, exporting)
                        {
                            self.commands.push(command);
                        }
                    }
                    None => {
                        ui.label("No results yet: start a run in the training step.");
                    }
                },
            }
        });
        for command in std::mem::take(&mut self.commands) {
            self.apply(command, &ctx);
        }
        if self.busy() || self.task.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(200));
        }
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
}

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

/// `75` → `1 min 15 s`.
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
        let recent: Vec<String> = self
            .settings
            .recent_runs
            .iter()
            .filter_map(|p| p.to_str().map(str::to_owned))
            .collect();
        storage.set_string(RECENT_KEY, recent.join("\n"));
        self.remember_marks();
        if let Ok(text) = serde_json::to_string(&self.settings.run_marks) {
            storage.set_string(MARKS_KEY, text);
        }
    }
}

/// What the window opens on.
pub enum Start {
    /// The last session's settings (dataset included), else the demo set.
    Restore,
    /// An experiment config.
    Config(Box<Experiment>),
    /// A saved `run` or `compare` folder.
    Run(PathBuf),
}

/// Opens the window and blocks until it is closed.
pub fn run_native(start: Start) -> Result<(), eframe::Error> {
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
            let mut app = match start {
                Start::Run(dir) => App::opening(&dir),
                Start::Config(config) => App::with_config(*config),
                Start::Restore => match restored() {
                    Some(config) => App::with_config(config),
                    None => App::new(None),
                },
            };
            if let Some(marks) = cc
                .storage
                .and_then(|s| s.get_string(MARKS_KEY))
                .and_then(|text| serde_json::from_str(&text).ok())
            {
                app.settings.run_marks = marks;
            }
            if let Some(text) = cc.storage.and_then(|s| s.get_string(RECENT_KEY)) {
                let mut kept = app.settings.recent_runs.clone();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    let path = PathBuf::from(line);
                    if !kept.contains(&path) && kept.len() < RECENT_MAX {
                        kept.push(path);
                    }
                }
                app.settings.recent_runs = kept;
            }
            Ok(Box::new(app))
        }),
    )
}
