//! Watching a run while it goes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::task_error::{Outcome, TaskError};

/// A live view of a run's progress, shared between the run and any number of
/// watchers (a progress bar, a metrics exporter).
///
/// Create one, hand a clone to the run with
/// [`FanOut::progress`](crate::FanOut::progress), and call
/// [`snapshot`](Progress::snapshot) whenever you like. Counters are plain
/// atomics: attaching a `Progress` costs a few uncontended-to-lightly-contended
/// atomic increments per task, and nothing when none is attached. A snapshot
/// is not atomic across counters: each counter is exact, but a task may
/// appear in `started` a moment before it leaves `in_flight`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use fanout::{fan_out, Progress};
///
/// let progress = Progress::new();
/// let out = fan_out(0..10)
///     .progress(&progress)
///     .run(|_ctx, i| async move { Ok::<_, std::convert::Infallible>(i) })
///     .await
///     .unwrap();
/// let s = progress.snapshot();
/// assert_eq!((s.started, s.succeeded, s.in_flight), (10, 10, 0));
/// assert!(s.finished);
/// # let _ = out; }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Progress {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicUsize,
    succeeded: AtomicUsize,
    failed: AtomicUsize,
    cancelled: AtomicUsize,
    not_started: AtomicUsize,
    recalled: AtomicUsize,
    total: AtomicUsize,
    total_known: AtomicBool,
    finished: AtomicBool,
}

/// The counters of a [`Progress`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Inputs whose task has started (first attempt).
    pub started: usize,
    /// Tasks started and not yet finished.
    pub in_flight: usize,
    /// Tasks that returned `Ok`.
    pub succeeded: usize,
    /// Tasks that failed, panicked or timed out.
    pub failed: usize,
    /// Tasks aborted because the run stopped.
    pub cancelled: usize,
    /// Inputs reported as not started (known once the run has stopped).
    pub not_started: usize,
    /// Outcomes a journaled run recalled from its journal instead of running
    /// their tasks; they are counted in `succeeded` or `failed` too, never
    /// in `started`. Always 0 for runs without a journal.
    pub recalled: usize,
    /// The number of inputs, when the input iterator's size hint is exact.
    pub total: Option<usize>,
    /// `true` once the run has returned.
    pub finished: bool,
}

impl Progress {
    /// A fresh set of counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current counters.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.inner;
        // `finished` is read first, with Acquire, so that a snapshot that says
        // finished also sees every count written before the run returned.
        let finished = c.finished.load(std::sync::atomic::Ordering::Acquire);
        let started = c.started.load(Relaxed);
        let succeeded = c.succeeded.load(Relaxed);
        let failed = c.failed.load(Relaxed);
        let cancelled = c.cancelled.load(Relaxed);
        let recalled = c.recalled.load(Relaxed);
        let done = succeeded + failed + cancelled;
        Snapshot {
            started,
            in_flight: (started + recalled).saturating_sub(done),
            succeeded,
            failed,
            cancelled,
            not_started: c.not_started.load(Relaxed),
            recalled,
            total: c.total_known.load(Relaxed).then(|| c.total.load(Relaxed)),
            finished,
        }
    }

    pub(crate) fn set_total(&self, total: Option<usize>) {
        if let Some(t) = total {
            self.inner.total.store(t, Relaxed);
            self.inner.total_known.store(true, Relaxed);
        }
    }

    pub(crate) fn started(&self) {
        self.inner.started.fetch_add(1, Relaxed);
    }

    pub(crate) fn finished_task<T, E>(&self, outcome: &Outcome<T, E>) {
        let c = &self.inner;
        match outcome {
            Ok(_) => c.succeeded.fetch_add(1, Relaxed),
            Err(TaskError::Cancelled) => c.cancelled.fetch_add(1, Relaxed),
            Err(TaskError::NotStarted) => c.not_started.fetch_add(1, Relaxed),
            Err(_) => c.failed.fetch_add(1, Relaxed),
        };
    }

    /// An outcome recalled from a journal, about to be counted as finished.
    pub(crate) fn recalled(&self) {
        self.inner.recalled.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_not_started(&self, n: usize) {
        self.inner.not_started.fetch_add(n, Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.inner
            .finished
            .store(true, std::sync::atomic::Ordering::Release);
    }
}
