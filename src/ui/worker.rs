//! The GUI's background work: loading a dataset, and a whole run (or an SGD-vs-SAM comparison)
//! on a named worker thread that reports typed events over a bounded channel. The UI thread only
//! polls the channel; dropping a job cancels it and waits for the thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::layout::project;
use crate::config::Experiment;
use crate::data::{self, SplitDataset};
use crate::detect::{DetectionRun, Ranking};
use crate::run::Run;
use crate::run::pipeline::{self, RunEvent};
use crate::run::prepare::Prepared;
use crate::run::report::Report;
use crate::train::TrainEvent;
use crate::train::job::Worker;

/// One trained and inspected model (a run has one, a comparison two: SGD then SAM).
#[derive(Clone, Debug)]
pub struct Arm {
    /// `"sgd"`, `"sam"`, `"asam"`.
    pub name: String,
    pub report: Report,
    /// Per detector (in config order): its score and flag per training sample.
    pub detectors: Vec<Ranking>,
    /// The detectors' consensus: mean rank percentile and flags by agreement.
    pub consensus: crate::detect::Consensus,
    /// The model's predicted class per training sample.
    pub predicted: Vec<u16>,
    /// First two principal components of the features the detectors saw, per sample.
    pub projection: Vec<[f64; 2]>,
    /// The features the detectors saw (for the t-SNE layout, computed on request).
    pub features: Arc<ndarray::Array2<f64>>,
}

/// Everything a finished job hands to the window.
#[derive(Debug)]
pub struct Finished {
    /// The job: data, ground truth, trained models and their outcomes, comparison (shared with
    /// the worker that saves it).
    pub run: Arc<Run>,
    /// What the window shows of each arm (a comparison adds the fused arm).
    pub arms: Vec<Arm>,
    /// The saved run folder this was opened from (`None`: trained in this window).
    pub opened_from: Option<std::path::PathBuf>,
}

/// What the worker sends.
#[derive(Debug)]
pub enum WorkerEvent {
    /// An event of the arm with this index.
    Run(usize, RunEvent),
    Finished(Box<Finished>),
    Failed(String),
    Cancelled,
}

/// What a job does.
pub enum Work {
    /// Train and inspect `config` (with SGD and with SAM when `compare`).
    Execute {
        config: Box<Experiment>,
        compare: bool,
    },
    /// Open the saved run or comparison in this folder (no training).
    Open(std::path::PathBuf),
}

/// A running job: a run, a comparison, or a saved one being opened.
pub struct Job {
    pub worker: Worker<WorkerEvent>,
    /// How many arms the job trains or opens (1 or 2).
    pub arms: usize,
}

impl Job {
    /// Starts `work` on a thread named `poisonscope-run`.
    pub fn spawn(work: Work, wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let arms = match &work {
            Work::Execute { compare, .. } => 1 + usize::from(*compare),
            Work::Open(dir) => 1 + usize::from(dir.join("comparison.json").is_file()),
        };
        let worker = Worker::spawn("poisonscope-run", wake, move |reporter| {
            // A panic in the pipeline ends in a visible error, not a window stuck "running".
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let send = |arm: usize, event: RunEvent| {
                    let droppable = matches!(event, RunEvent::Train(TrainEvent::Batch { .. }));
                    reporter.send(WorkerEvent::Run(arm, event), droppable);
                };
                let cancel = reporter.cancel_flag();
                match &work {
                    Work::Execute { config, compare } => {
                        send(0, RunEvent::Stage("loading the dataset".to_owned()));
                        Run::execute(config, *compare, cancel, &mut |i, e| send(i, e))
                            .map(|run| inspected(run, None))
                    }
                    Work::Open(dir) => Run::open(dir, cancel, &mut |i, e| send(i, e))
                        .map(|run| inspected(run, Some(dir.clone()))),
                }
            }));
            let last = match outcome {
                Ok(Ok(finished)) => WorkerEvent::Finished(Box::new(finished)),
                Ok(Err(_)) if reporter.cancel_flag().load(Ordering::Relaxed) => {
                    WorkerEvent::Cancelled
                }
                Ok(Err(e)) => WorkerEvent::Failed(describe(&e)),
                Err(panic) => WorkerEvent::Failed(format!(
                    "internal error: {}",
                    crate::detect::panic_message(panic.as_ref())
                )),
            };
            reporter.send(last, false);
        })?;
        Ok(Self { worker, arms })
    }
}

/// What the window shows of a finished (or opened) run: each arm's rankings, consensus,
/// predictions and feature-space projection, and for a comparison the fused arm.
fn inspected(run: Run, opened_from: Option<std::path::PathBuf>) -> Finished {
    let mut arms: Vec<Arm> = run
        .arms
        .iter()
        .map(|run| {
            let outcome = &run.outcome;
            let detectors = outcome
                .detection
                .results
                .iter()
                .map(|r| Ranking {
                    name: r.name.to_owned(),
                    scores: r.detection.scores.clone(),
                    flags: r.detection.flags.clone(),
                })
                .collect();
            Arm {
                name: run.name.to_owned(),
                projection: project(&outcome.detection.detector_features),
                features: Arc::new(outcome.detection.detector_features.clone()),
                predicted: outcome.detection.train.predicted.clone(),
                consensus: outcome.detection.consensus.clone(),
                detectors,
                report: outcome.report.clone(),
            }
        })
        .collect();
    if let ([a, b], [_, sam]) = (run.arms.as_slice(), arms.as_slice()) {
        let fused = fused_arm(
            &a.outcome.detection,
            &b.outcome.detection,
            sam,
            &run.prepared,
        );
        arms.push(fused);
    }
    Finished {
        run: Arc::new(run),
        arms,
        opened_from,
    }
}

/// The name of the fused arm of a comparison.
pub const FUSED: &str = "fused";

/// The two arms of a comparison fused (`pipeline::fused_samples`: rank percentiles averaged,
/// flagged where either arm flags), shown as a third model beside SGD and SAM. Its report holds
/// the fused detector rows (no training figures of its own: SAM's are kept, its warnings are
/// the arms'); its scatter is SAM's feature space.
fn fused_arm(a: &DetectionRun, b: &DetectionRun, sam: &Arm, prepared: &Prepared) -> Arm {
    let n = sam.predicted.len();
    let mut detectors = pipeline::fused_samples(a, b, n);
    let consensus = detectors.pop().unwrap_or_default();
    let mut report = sam.report.clone();
    let mut rows = pipeline::fuse(a, b, prepared);
    report.consensus = rows.remove("consensus");
    report.detectors = rows;
    report.warnings.clear();
    Arm {
        name: FUSED.to_owned(),
        report,
        detectors,
        consensus: crate::detect::Consensus {
            scores: consensus.scores,
            flags: consensus.flags,
            agreement: 1,
        },
        predicted: sam.predicted.clone(),
        projection: sam.projection.clone(),
        features: Arc::clone(&sam.features),
    }
}

/// A one-answer computation on a [`Worker`] thread: loading a dataset, a t-SNE layout, an
/// export. A panic becomes an error message; a thread that ends without answering is reported.
pub struct Pending<T: Send + 'static> {
    /// Always `Some` until dropped.
    worker: Option<Worker<Result<T, String>>>,
}

impl<T: Send + 'static> Drop for Pending<T> {
    /// A computation still running when its answer is no longer wanted (a new dataset asked
    /// for, a new result shown) cannot be interrupted; it is joined on a thread of its own so the
    /// window never waits for it.
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            join_elsewhere(worker);
        }
    }
}

/// Drops `worker` (cancel, then join) on a thread of its own when it is still running, so the
/// window never waits for it.
fn join_elsewhere<E: Send + 'static>(worker: Worker<E>) {
    if !worker.is_finished() {
        let _ = std::thread::Builder::new()
            .name("poisonscope-join".into())
            .spawn(move || drop(worker));
    }
}

impl<T: Send + 'static> Pending<T> {
    /// Runs `work` on a thread called `name`; `wake` repaints the window when it answers.
    pub fn spawn(
        name: &str,
        wake: impl Fn() + Send + 'static,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let worker = Worker::spawn(name, wake, move |reporter| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|panic| {
                    Err(format!(
                        "internal error: {}",
                        crate::detect::panic_message(panic.as_ref())
                    ))
                });
            reporter.send(outcome, false);
        })?;
        Ok(Self {
            worker: Some(worker),
        })
    }

    /// The answer once there is one; `what()` names the work if its thread died without one
    /// (called only then: this is polled every frame).
    pub fn poll(&self, what: impl FnOnce() -> String) -> Option<Result<T, String>> {
        let worker = self.worker.as_ref()?;
        match worker.events.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(_) if worker.is_finished() => Some(Err(format!(
                "{} stopped unexpectedly (internal error); try again or report it",
                what()
            ))),
            Err(_) => None,
        }
    }
}

/// A background task of the window (an export): what it does, for the status line, and its
/// outcome, a message for the status line or an error.
pub struct Task {
    pub what: String,
    pending: Pending<String>,
}

impl Task {
    /// Runs `work` on a thread named `poisonscope-task`; a panic becomes an error message.
    pub fn spawn(
        what: impl Into<String>,
        wake: impl Fn() + Send + 'static,
        work: impl FnOnce() -> Result<String, String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let pending = Pending::spawn("poisonscope-task", wake, work)?;
        Ok(Self {
            what: what.into(),
            pending,
        })
    }

    /// The outcome, once the task has ended.
    pub fn poll(&self) -> Option<Result<String, String>> {
        self.pending.poll(|| self.what.clone())
    }
}

/// Saves a finished job's models and outputs into `dir` (a new or empty folder outside the
/// dataset, written under a temporary name and renamed into place), then its HTML report
/// (`report.html`, with `top` images per ranking) beside them. A report that cannot be built
/// leaves the saved run and says why.
pub fn save_run(dir: &std::path::Path, run: &Run, top: usize) -> Result<String, String> {
    crate::artifacts::check_not_in_source(dir, &run.config.dataset.source)
        .map_err(|e| describe(&e))?;
    let staged = crate::artifacts::Staged::new(dir, None).map_err(|e| describe(&e))?;
    run.save(staged.path()).map_err(|e| describe(&e))?;
    staged.commit().map_err(|e| describe(&e))?;
    let report = dir.join("report.html");
    let written = crate::html_report::build_with(dir, top, Some(&run.prepared))
        .map_err(|e| describe(&e))
        .and_then(|html| {
            crate::artifacts::write_file_at(&report, html.as_bytes()).map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => Ok(format!("saved the run and {}", report.display())),
        Err(e) => Ok(format!(
            "saved the run to {}, but not its report: {e}",
            dir.display()
        )),
    }
}

/// An error and its causes on one line (`a: b: c`), as the status line shows it.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let line = e.to_string();
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = e.source();
    }
    text
}

/// What the loading thread sends.
enum LoadEvent {
    /// Images decoded so far, of how many (image folders).
    Progress(usize, usize),
    Done(Box<Result<SplitDataset, String>>),
}

/// A dataset being loaded on a worker thread, with its progress; cancelled when dropped.
pub struct Loading {
    pub source: String,
    /// Images decoded and to decode (image folders; `(0, 0)` until known).
    pub progress: (usize, usize),
    /// Always `Some` until dropped.
    worker: Option<Worker<LoadEvent>>,
}

impl Drop for Loading {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            join_elsewhere(worker);
        }
    }
}

impl Loading {
    /// Loads `source` with `config`'s dataset options on a thread named `poisonscope-load`.
    pub fn spawn(
        source: String,
        config: &Experiment,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut dataset = config.dataset.clone();
        dataset.source.clone_from(&source);
        let worker = Worker::spawn("poisonscope-load", wake, move |reporter| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                data::load_with(
                    &dataset.source,
                    &dataset.load_options(),
                    reporter.cancel_flag(),
                    &mut |done, total| reporter.send(LoadEvent::Progress(done, total), true),
                )
                .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|panic| {
                Err(format!(
                    "internal error: {}",
                    crate::detect::panic_message(panic.as_ref())
                ))
            });
            reporter.send(LoadEvent::Done(Box::new(outcome)), false);
        })?;
        Ok(Self {
            source,
            progress: (0, 0),
            worker: Some(worker),
        })
    }

    /// Asks the loading to stop at the next image.
    pub fn cancel(&self) {
        if let Some(worker) = &self.worker {
            worker.cancel();
        }
    }

    /// The dataset (or why it could not be loaded), once done; records the progress meanwhile.
    pub fn poll(&mut self) -> Option<Result<SplitDataset, String>> {
        let worker = self.worker.as_ref()?;
        // Read before the events: a thread that had ended had sent all of them.
        let ended = worker.is_finished();
        while let Ok(event) = worker.events.try_recv() {
            match event {
                LoadEvent::Progress(done, total) => self.progress = (done, total),
                LoadEvent::Done(outcome) => return Some(*outcome),
            }
        }
        ended.then(|| {
            Err(format!(
                "loading {} stopped unexpectedly (internal error); try again or report it",
                self.source
            ))
        })
    }
}
