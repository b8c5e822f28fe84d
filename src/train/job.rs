//! Work on a named worker thread ([`Worker`]): typed events over a bounded channel, a cancel
//! flag checked between steps, cancel-and-join on drop. Training is one such job: it owns its
//! data, sends [`JobEvent`]s and stops at the next batch when cancelled.

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

/// A named worker thread that reports events of type `E` over a bounded channel and checks a
/// cancel flag; dropping it cancels the work and joins the thread. The training job and the
/// GUI's run job are both one of these.
pub struct Worker<E> {
    pub events: Receiver<E>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// The worker thread's side of a [`Worker`]: sends events, wakes the receiver, reads the cancel
/// flag.
pub struct Reporter<E> {
    sender: SyncSender<E>,
    cancel: Arc<AtomicBool>,
    wake: Box<dyn Fn() + Send>,
}

impl<E> Reporter<E> {
    /// Sends `event` and wakes the receiver. A `droppable` event (batch progress) is dropped when
    /// the channel is full, as the next one supersedes it; the others wait for room. When nobody
    /// listens any more, the work is cancelled.
    pub fn send(&self, event: E, droppable: bool) {
        let delivered = if droppable {
            !matches!(
                self.sender.try_send(event),
                Err(TrySendError::Disconnected(_))
            )
        } else {
            self.sender.send(event).is_ok()
        };
        if !delivered {
            self.cancel.store(true, Ordering::Relaxed);
        }
        (self.wake)();
    }

    /// The flag the work checks between steps.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

impl<E: Send + 'static> Worker<E> {
    /// Runs `work` on a thread called `name`; `wake` is called after every event (the GUI passes
    /// `ctx.request_repaint`).
    pub fn spawn(
        name: &str,
        wake: impl Fn() + Send + 'static,
        work: impl FnOnce(&Reporter<E>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (sender, events) = sync_channel(CHANNEL_CAPACITY);
        let cancel = Arc::new(AtomicBool::new(false));
        let reporter = Reporter {
            sender,
            cancel: Arc::clone(&cancel),
            wake: Box::new(wake),
        };
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                work(&reporter);
                // The job's activations, freed, go back to the system now rather than after
                // the allocator's purge delay.
                crate::allocator::give_back_freed_memory();
            })?;
        Ok(Self {
            events,
            cancel,
            handle: Some(handle),
        })
    }
}

impl<E> Worker<E> {
    /// Asks the work to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether [`Worker::cancel`] was called (or the receiver went away).
    pub fn is_cancelling(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl<E> Drop for Worker<E> {
    fn drop(&mut self) {
        self.cancel();
        if let Some(handle) = self.handle.take() {
            // Unblock a worker waiting on a full channel, then wait for it.
            while self.events.try_recv().is_ok() {}
            let _ = handle.join();
        }
    }
}

/// A running training job.
pub type TrainJob = Worker<JobEvent>;

/// Starts training on a thread named `poisonscope-train`. `wake` is called after every event
/// (the GUI passes `ctx.request_repaint`).
pub fn spawn_training(
    config: TrainConfig,
    data: Arc<JobData>,
    wake: impl Fn() + Send + 'static,
) -> std::io::Result<TrainJob> {
    Worker::spawn("poisonscope-train", wake, move |reporter| {
        let result = train(
            &config,
            TrainData {
                train: &data.train,
                test: &data.test,
                triggered: data.triggered.as_ref(),
            },
            reporter.cancel_flag(),
            &mut |event| {
                let droppable = matches!(event, TrainEvent::Batch { .. });
                reporter.send(JobEvent::Progress(event), droppable);
            },
        );
        reporter.send(
            match result {
                Ok(trained) => JobEvent::Finished(Box::new(trained)),
                Err(e) => JobEvent::Failed(e),
            },
            false,
        );
    })
}
