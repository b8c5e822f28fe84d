//! Training on a named worker thread. The job owns its data, sends [`JobEvent`]s over a bounded
//! channel and stops at the next batch when cancelled; dropping the job cancels and joins it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use super::{TrainData, TrainError, TrainEvent, Trained, train};
use crate::config::TrainConfig;
use crate::data::Dataset;

/// Capacity of the event channel. Batch progress is dropped when the receiver lags (the next
/// one supersedes it); start, epoch and end events always arrive.
const CHANNEL_CAPACITY: usize = 256;

/// What the worker sends.
#[derive(Debug)]
pub enum JobEvent {
    Progress(TrainEvent),
    Finished(Box<Trained>),
    Failed(TrainError),
}

/// The data a job trains on, owned so it can move to the worker.
#[derive(Clone, Debug)]
pub struct JobData {
    pub train: Dataset,
    pub test: Dataset,
    pub triggered: Option<Dataset>,
}

/// A running training job.
pub struct TrainJob {
    pub events: Receiver<JobEvent>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl TrainJob {
    /// Starts training on a thread named `poisonscope-train`. `wake` is called after every event
    /// (the GUI passes `ctx.request_repaint`).
    pub fn spawn(
        config: TrainConfig,
        data: Arc<JobData>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (sender, events) = sync_channel(CHANNEL_CAPACITY);
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let handle = std::thread::Builder::new()
            .name("poisonscope-train".into())
            .spawn(move || run(&config, &data, &flag, &sender, &wake))?;
        Ok(Self {
            events,
            cancel,
            handle: Some(handle),
        })
    }

    /// Asks the worker to stop before its next batch.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for TrainJob {
    fn drop(&mut self) {
        self.cancel();
        if let Some(handle) = self.handle.take() {
            // Unblock a worker waiting on a full channel, then wait for it.
            while self.events.try_recv().is_ok() {}
            let _ = handle.join();
        }
    }
}

fn run(
    config: &TrainConfig,
    data: &JobData,
    cancel: &AtomicBool,
    sender: &SyncSender<JobEvent>,
    wake: &dyn Fn(),
) {
    let mut on_event = |event: TrainEvent| {
        let sent = match event {
            TrainEvent::Batch { .. } => match sender.try_send(JobEvent::Progress(event)) {
                Ok(()) | Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Disconnected(_)) => false,
            },
            _ => sender.send(JobEvent::Progress(event)).is_ok(),
        };
        if !sent {
            // Nobody listens any more: stop.
            cancel.store(true, Ordering::Relaxed);
        }
        wake();
    };
    let result = train(
        config,
        TrainData {
            train: &data.train,
            test: &data.test,
            triggered: data.triggered.as_ref(),
        },
        cancel,
        &mut on_event,
    );
    let _ = sender.send(match result {
        Ok(trained) => JobEvent::Finished(Box::new(trained)),
        Err(e) => JobEvent::Failed(e),
    });
    wake();
}
