//! A whole job as one value: the prepared data, its trained and inspected arms (one model, or
//! SGD then SAM), the ground truth when an attack was planted, and for two arms the comparison
//! with the fused rows. The CLI's `run` and `compare` and the window's run job all build one with
//! [`Run::execute`] and write it with [`Run::save`]; the stages themselves are in
//! [`pipeline`] (train, detect, redetect), [`prepare`] and [`evaluate`]; [`report`] holds the
//! serde types of what is written.

pub mod evaluate;
mod open;
pub mod pipeline;
pub mod prepare;
pub mod report;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::Experiment;
use pipeline::{ArmRun, PipelineError, RunEvent};
use prepare::Prepared;
use report::Comparison;

/// A finished run or comparison.
pub struct Run {
    pub config: Experiment,
    pub prepared: Arc<Prepared>,
    /// The ground-truth poison mask of the training set when an attack was planted (for the
    /// measures and the views only; the detectors never see it).
    pub truth: Option<Vec<bool>>,
    /// One arm for a run; SGD then SAM for a comparison.
    pub arms: Vec<ArmRun>,
    /// For two arms: the reports side by side, the deltas and the fused rows.
    pub comparison: Option<Comparison>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("arms", &self.arms)
            .field("comparison", &self.comparison.is_some())
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Prepares the data of `config` (dataset, attack), then trains and inspects it once, or
    /// with SGD and with SAM when `compare`; events carry the arm's index (preparation is arm 0).
    pub fn execute(
        config: &Experiment,
        compare: bool,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(usize, RunEvent),
    ) -> Result<Self, PipelineError> {
        let prepared = Arc::new(Prepared::load_with(config, cancel, &mut |e| {
            on_event(0, e)
        })?);
        let arms = pipeline::run_arms(config, &prepared, compare, cancel, on_event)?;
        let comparison = comparison_of(&arms, &prepared);
        Ok(Self {
            config: config.clone(),
            truth: evaluate::poison_mask(&prepared),
            prepared,
            arms,
            comparison,
        })
    }

    /// An empty run over `prepared` (no models): what a view shows before anything is trained.
    pub fn without_models(config: Experiment, prepared: Arc<Prepared>) -> Self {
        Self {
            config,
            truth: evaluate::poison_mask(&prepared),
            prepared,
            arms: Vec::new(),
            comparison: None,
        }
    }

    /// Writes the run into `dir` in the layout `run` and `compare` produce
    /// ([`pipeline::save_arms`]).
    pub fn save(&self, dir: &Path) -> Result<(), PipelineError> {
        pipeline::save_arms(dir, &self.prepared, &self.arms, self.comparison.as_ref())
    }
}

/// For two arms (SGD, SAM): their reports side by side, the deltas and the fused rows.
fn comparison_of(arms: &[ArmRun], prepared: &Prepared) -> Option<Comparison> {
    let [sgd, sam] = arms else {
        return None;
    };
    let mut comparison = Comparison::new(sgd.outcome.report.clone(), sam.outcome.report.clone());
    comparison.fused = pipeline::fuse(&sgd.outcome.detection, &sam.outcome.detection, prepared);
    Some(comparison)
}
