//! Renders training events on stderr: a one-line progress bar with ETA on a terminal, plain
//! lines (one per epoch) otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use poisonscope::detect::DetectEvent;
use poisonscope::run::pipeline::RunEvent;
use poisonscope::train::TrainEvent;

pub struct Progress {
    label: String,
    terminal: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// Draws an image folder's decoding on a terminal: `loading images [###   ] done/total`.
pub fn loading(done: usize, total: usize) {
    if !std::io::stderr().is_terminal() || total == 0 {
        return;
    }
    let width = 30;
    let filled = (done * width / total).min(width);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\rloading images [{}{}] {done}/{total}  ",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    if done >= total {
        let _ = writeln!(err);
    }
}

impl Progress {
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
        }
    }

    /// Renders one event of a whole run (training, then detection).
    pub fn run_event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::Training(optimizer) => self.label = (*optimizer).to_owned(),
            RunEvent::Stage(stage) => {
                if stage.starts_with("lc:") {
                    // The attack's own preparation (LC's clean model and PGD).
                    let _ = writeln!(std::io::stderr(), "{stage}");
                }
            }
            RunEvent::Loading { done, total } => loading(*done, *total),
            RunEvent::Train(e) => self.event(e),
            RunEvent::Detect(e) => self.detect_event(e),
        }
    }

    fn detect_event(&mut self, event: &DetectEvent) {
        let mut err = std::io::stderr().lock();
        match event {
            DetectEvent::Extracting { done, total } => {
                if self.terminal {
                    let _ = write!(
                        err,
                        "\r{}: extracting features {done}/{total}  ",
                        self.label
                    );
                    if done == total {
                        let _ = writeln!(err);
                    }
                }
            }
            DetectEvent::Probing { name, done, total } => {
                if self.terminal {
                    let _ = write!(
                        err,
                        "\r{}: {name}: model passes {done}/{total}  ",
                        self.label
                    );
                }
            }
            DetectEvent::Running(name) => {
                if self.terminal {
                    let _ = write!(err, "{}: {name}…", self.label);
                }
            }
            DetectEvent::Finished {
                name,
                flagged,
                seconds,
            } => {
                if self.terminal {
                    let _ = write!(err, "\r");
                }
                let _ = writeln!(
                    err,
                    "{}: {name} flagged {flagged} samples ({seconds:.1} s)",
                    self.label
                );
            }
        }
    }

    pub fn event(&mut self, event: &TrainEvent) {
        let mut err = std::io::stderr().lock();
        match event {
            TrainEvent::Started {
                epochs,
                batches_per_epoch,
                train_samples,
                device,
            } => {
                self.started = Instant::now();
                let _ = writeln!(
                    err,
                    "{}: training on {train_samples} images, {epochs} epochs × {batches_per_epoch} batches, {device}",
                    self.label
                );
            }
            TrainEvent::Batch {
                epoch,
                done,
                total,
                loss,
                images_per_second,
                ..
            } => {
                if !self.terminal {
                    return;
                }
                let now = Instant::now();
                if self
                    .last_draw
                    .is_some_and(|t| now.duration_since(t).as_millis() < 100)
                    && done < total
                {
                    return;
                }
                self.last_draw = Some(now);
                let fraction = *done as f64 / (*total).max(1) as f64;
                let elapsed = self.started.elapsed().as_secs_f64();
                let eta = elapsed / fraction.max(1e-9) * (1.0 - fraction);
                let width = 30;
                let filled = ((fraction * width as f64) as usize).min(width);
                let _ = write!(
                    err,
                    "\r{} [{}{}] {:3.0}% epoch {epoch} loss {loss:.4} {} img/s ETA {}  ",
                    self.label,
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    100.0 * fraction,
                    rate(*images_per_second),
                    duration(eta)
                );
            }
            TrainEvent::Epoch(stats) => {
                if self.terminal {
                    let _ = write!(err, "\r{:100}\r", "");
                }
                let asr = stats
                    .attack_success_rate
                    .map(|a| format!(", ASR {:.2}%", 100.0 * a))
                    .unwrap_or_default();
                let test = stats
                    .test_accuracy
                    .map(|a| format!(", test acc {:.2}%", 100.0 * a))
                    .unwrap_or_default();
                let _ = writeln!(
                    err,
                    "{}: epoch {} loss {:.4}, train acc {:.2}%{test}{asr}, {} ({} img/s)",
                    self.label,
                    stats.epoch,
                    stats.train_loss,
                    100.0 * stats.train_accuracy,
                    duration(stats.seconds),
                    rate(stats.images_per_second)
                );
            }
        }
    }
}

/// Images per second with the digits that matter: whole numbers from 10 up, one decimal below
/// (a software GPU or a large model trains at under one image per second; "0 img/s" would say it
/// stopped).
fn rate(images_per_second: f64) -> String {
    if images_per_second >= 10.0 {
        format!("{images_per_second:.0}")
    } else {
        format!("{images_per_second:.1}")
    }
}
