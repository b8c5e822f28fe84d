//! The progress of a running job: the bar, the ETA and the loss curves.

use std::time::Instant;

use crate::train::TrainEvent;

/// Live state of a running job, for the progress bar and the curves.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) stage: String,
    pub(super) arm: usize,
    pub(super) arms: usize,
    pub(super) done: usize,
    pub(super) total: usize,
    pub(super) started: Option<Instant>,
    pub(super) images_per_second: f64,
    /// Where the running arm trains, as its `Started` event names it.
    pub(super) device: String,
    /// Per arm: (batches done / batches per epoch, loss).
    pub(super) loss: Vec<Vec<[f64; 2]>>,
    /// Per arm: (epoch, test accuracy), (epoch, attack success rate).
    pub(super) accuracy: Vec<Vec<[f64; 2]>>,
    pub(super) asr: Vec<Vec<[f64; 2]>>,
    pub(super) batches_per_epoch: usize,
}

impl Progress {
    pub(super) fn new(arms: usize) -> Self {
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
    pub(super) fn fraction(&self) -> f32 {
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

    pub(super) fn eta_seconds(&self) -> Option<f64> {
        let elapsed = self.started?.elapsed().as_secs_f64();
        let f = f64::from(self.fraction());
        (f > 0.01).then(|| elapsed * (1.0 - f) / f)
    }

    pub(super) fn apply(&mut self, arm: usize, event: &crate::run::pipeline::RunEvent) {
        use crate::run::pipeline::RunEvent;
        if arm != self.arm {
            // The next arm starts from nothing (the last one's batch count would read as done).
            self.done = 0;
            self.total = 0;
        }
        self.arm = arm;
        match event {
            RunEvent::Stage(stage) => self.stage = stage.clone(),
            RunEvent::Loading { done, total } => {
                self.stage = format!("loading images {done} / {total}");
            }
            RunEvent::Training(optimizer) => self.stage = format!("training ({optimizer})"),
            RunEvent::Train(TrainEvent::Started {
                batches_per_epoch,
                device,
                ..
            }) => {
                self.batches_per_epoch = *batches_per_epoch;
                self.device.clone_from(device);
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
                if let (Some(curve), Some(accuracy)) =
                    (self.accuracy.get_mut(arm), stats.test_accuracy)
                {
                    curve.push([x, accuracy]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::pipeline::RunEvent;

    fn batch(done: usize, total: usize) -> RunEvent {
        RunEvent::Train(TrainEvent::Batch {
            epoch: 0,
            batch: 0,
            done,
            total,
            loss: 1.0,
            lr: 0.1,
            images_per_second: 1.0,
            synced: true,
        })
    }

    #[test]
    fn a_comparison_progress_counts_both_arms() {
        let mut p = Progress::new(2);
        p.apply(0, &batch(10, 10));
        assert!((p.fraction() - 0.5).abs() < 1e-6);
        // The second arm's first stage: half done, not finished.
        p.apply(1, &RunEvent::Training("sam"));
        assert!((p.fraction() - 0.5).abs() < 1e-6, "{}", p.fraction());
        p.apply(1, &batch(5, 10));
        assert!((p.fraction() - 0.75).abs() < 1e-6);
    }
}
