//! What the window does in response to commands and worker events: loading, runs, exports,
//! config files, polling the workers.

use std::path::Path;
use std::sync::Arc;

use eframe::egui;

use super::*;

impl App {
    /// Runs an export the inspection view asked for on a worker; its outcome lands in the top bar.
    pub(super) fn run_export(&mut self, export: Export, ctx: &egui::Context) {
        let Some(finished) = &self.finished else {
            return;
        };
        let wake = {
            let ctx = ctx.clone();
            move || ctx.request_repaint()
        };
        let source = finished.run.config.dataset.source.clone();
        let prepared = Arc::clone(&finished.run.prepared);
        let spawned = match export {
            Export::Decisions { path, text } => {
                Task::spawn(format!("writing {}", path.display()), wake, move || {
                    if let Some(dir) = path.parent() {
                        crate::artifacts::check_not_in_source(dir, &source)
                            .map_err(|e| worker::describe(&e))?;
                        std::fs::create_dir_all(dir).map_err(|e| {
                            format!("{}: cannot create the folder: {e}", dir.display())
                        })?;
                    }
                    crate::artifacts::write_file_at(&path, text.as_bytes())
                        .map_err(|e| e.to_string())?;
                    Ok(format!("saved {}", path.display()))
                })
            }
            Export::Cleaned { dir, keep } => Task::spawn(
                format!("writing {} kept images to {}", keep.len(), dir.display()),
                wake,
                move || {
                    let train = prepared.train_data().train;
                    let n = crate::data::export::write_kept_folder(&dir, train, &keep, &source)
                        .map_err(|e| worker::describe(&e))?;
                    Ok(format!("saved {n} kept images to {}", dir.display()))
                },
            ),
            Export::Run { dir } => {
                let run = Arc::clone(&finished.run);
                Task::spawn(
                    format!("saving the run and its report to {}", dir.display()),
                    wake,
                    move || worker::save_run(&dir, &run, REPORT_TOP),
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

    pub(super) fn load(&mut self, source: String, ctx: Option<&egui::Context>) {
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
        match Loading::spawn(source, &self.settings.config, wake) {
            Ok(loading) => self.loading = Some(loading),
            Err(e) => self.dataset = Err(format!("cannot start loading: {e}")),
        }
    }

    /// Starts a run (or the SGD-vs-SAM comparison) of the current config.
    pub fn start(&mut self, ctx: &egui::Context, compare: bool) {
        let mut config = self.experiment();
        // The window draws test-accuracy and ASR curves: evaluate every epoch unless the config
        // says otherwise (the command line evaluates after the last epoch only).
        config.train.evaluate_every.get_or_insert(1);
        if let Err(e) = config.validate() {
            self.say(false, format!("config: {e}"));
            return;
        }
        let ctx = ctx.clone();
        let work = worker::Work::Execute {
            config: Box::new(config),
            compare,
        };
        match Job::spawn(work, move || ctx.request_repaint()) {
            Ok(job) => {
                self.progress = Progress::new(job.arms);
                self.status = None;
                self.job = Some(job);
            }
            Err(e) => self.say(false, format!("cannot start the worker: {e}")),
        }
    }

    /// Opens the saved run or comparison in `dir` on a worker: the dataset is read again and the
    /// saved models detected again (no training); shown like a run that just ended.
    pub(super) fn open_run(&mut self, dir: PathBuf, ctx: Option<&egui::Context>) {
        if self.busy() {
            self.say(
                false,
                "wait for the current job to end (or cancel it) first".to_owned(),
            );
            return;
        }
        let wake = {
            let ctx = ctx.cloned();
            move || {
                if let Some(ctx) = &ctx {
                    ctx.request_repaint();
                }
            }
        };
        match Job::spawn(worker::Work::Open(dir.clone()), wake) {
            Ok(job) => {
                self.progress = Progress::new(job.arms);
                self.say(true, format!("opening {}…", dir.display()));
                self.job = Some(job);
            }
            Err(e) => self.say(false, format!("cannot start the worker: {e}")),
        }
    }

    /// Takes over what an opened run was made with: its settings and its data, and remembers
    /// the folder among the recent runs.
    fn adopt_opened(&mut self, finished: &Finished, dir: &Path) {
        let run = &finished.run;
        let config = run.config.clone();
        self.settings.attack_on = config.attack.is_some();
        if let Some(attack) = &config.attack {
            self.settings.attack = attack.clone();
        }
        self.settings.config = config;
        self.loading = None;
        self.dataset = Ok(Loaded {
            summary: Summary::of(&run.prepared.clean),
            data: run.prepared.clean.clone(),
        });
        self.preview = None;
        self.thumbnails.clear();
        let recent = &mut self.settings.recent_runs;
        recent.retain(|p| p != dir);
        recent.insert(0, dir.to_path_buf());
        recent.truncate(RECENT_MAX);
        self.say(
            true,
            format!(
                "opened {} (its models detected again, no training)",
                dir.display()
            ),
        );
    }

    /// A fresh app editing `config` that keeps what persists across configs: the recent runs
    /// and the marks made on them.
    fn replaced_by(&mut self, config: Experiment) -> Self {
        self.remember_marks();
        let mut app = Self::with_config(config);
        app.settings.recent_runs = std::mem::take(&mut self.settings.recent_runs);
        app.settings.run_marks = std::mem::take(&mut self.settings.run_marks);
        app
    }

    /// Asks the running job (and a dataset still loading) to stop.
    pub fn cancel(&mut self) {
        if let Some(job) = &self.job {
            job.worker.cancel();
        }
        if let Some(loading) = &self.loading {
            loading.cancel();
        }
    }

    pub(super) fn poll(&mut self, ctx: &egui::Context) {
        if let Some(loading) = &mut self.loading {
            let result = loading.poll();
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
                Ok(finished) => {
                    if let Some(dir) = finished.opened_from.clone() {
                        self.adopt_opened(&finished, &dir);
                    }
                    self.show_results(*finished);
                }
                Err(e) => {
                    // A window opened on a run that could not be opened has no dataset either.
                    if self.dataset.is_err() && self.loading.is_none() {
                        self.dataset = Err(e.clone());
                    }
                    self.say(false, e);
                }
            }
        }
        self.inspect.poll();
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
        if let Some(path) = dropped.into_iter().next() {
            self.commands.push(Command::Open(path));
        }
    }

    /// Carries out what a panel asked for.
    pub(super) fn apply(&mut self, command: Command, ctx: &egui::Context) {
        match command {
            Command::Load(source) => self.load(source, Some(ctx)),
            Command::Run { compare } => self.start(ctx, compare),
            Command::Cancel => self.cancel(),
            Command::Open(path) => self.open_path(&path, ctx),
            Command::OpenConfig(path) => self.open_config(&path, ctx),
            Command::OpenRun(dir) => self.open_run(dir, Some(ctx)),
            Command::Scenario(index) => self.open_scenario(index, ctx),
            Command::SaveConfig(path) => self.save_config(&path),
            Command::Export(export) => self.run_export(export, ctx),
            Command::Tsne { arm, features } => self.inspect.start_tsne(arm, features, ctx),
        }
    }

    pub(super) fn open_path(&mut self, path: &Path, ctx: &egui::Context) {
        if path.extension().is_some_and(|e| e == "toml") {
            self.open_config(path, ctx);
        } else if !self.busy() {
            let folder = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(path)
            };
            self.settings.config.dataset.source = folder.display().to_string();
            self.load(self.settings.config.dataset.source.clone(), Some(ctx));
        }
    }

    pub(super) fn open_config(&mut self, path: &Path, ctx: &egui::Context) {
        match Experiment::from_file(path, &[]) {
            Ok(config) => {
                let inspect_ctx = ctx.clone();
                *self = self.replaced_by(config);
                self.say(true, format!("opened {}", path.display()));
                inspect_ctx.request_repaint();
            }
            Err(e) => self.say(false, e.to_string()),
        }
    }

    /// Loads a scenario's config (and its dataset); its paragraph is shown until another config
    /// is opened.
    pub(super) fn open_scenario(&mut self, index: usize, ctx: &egui::Context) {
        let Some(scenario) = crate::scenarios::ALL.get(index) else {
            return;
        };
        match scenario.experiment() {
            Ok(config) => {
                *self = self.replaced_by(config);
                self.scenario = Some(index);
                let start = if scenario.compare { "Compare" } else { "Start" };
                self.say(
                    true,
                    format!("scenario: {} (press {start})", scenario.title),
                );
                ctx.request_repaint();
            }
            Err(e) => self.say(false, e.to_string()),
        }
    }

    pub(super) fn save_config(&mut self, path: &Path) {
        let result = self
            .experiment()
            .to_toml()
            .map_err(|e| e.to_string())
            .and_then(|text| {
                crate::artifacts::write_file_at(path, text.as_bytes()).map_err(|e| e.to_string())
            });
        match result {
            Ok(()) => self.say(true, format!("saved {}", path.display())),
            Err(e) => self.say(false, e),
        }
    }
}
