//! What can go wrong with one task, and with a whole run.
//!
//! These types hold no tokio handle, so a backend other than tokio (threads, a
//! broker) reports with the same vocabulary.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use sync_wrapper::SyncWrapper;

use crate::report::Counts;

/// The outcome of one task: its value, or why it has none.
pub type Outcome<T, E> = Result<T, TaskError<E>>;

/// Why one task did not produce a value.
///
/// Every input of a run ends with exactly one outcome: `Ok(value)` or one of
/// these. [`Failed`](TaskError::Failed), [`Panicked`](TaskError::Panicked)
/// and [`TimedOut`](TaskError::TimedOut) say the task itself failed
/// ([`is_failure`](TaskError::is_failure)): they are what stops a fail-fast
/// run. [`Cancelled`](TaskError::Cancelled) and
/// [`NotStarted`](TaskError::NotStarted) are consequences of a stop and never
/// pose as its cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskError<E> {
    /// The task returned `Err(e)` (on its last attempt, when retrying).
    Failed(E),
    /// The task panicked. The payload is kept so that it can be re-raised.
    Panicked(Panic),
    /// The task's last attempt ran longer than the per-task timeout, counted
    /// from the moment it started (time spent waiting for a slot excluded).
    TimedOut(Duration),
    /// The task had started when the run stopped (a sibling failed, the
    /// external token was cancelled, or the deadline passed) and was aborted
    /// after the grace period.
    Cancelled,
    /// The run stopped before this task's body was first polled.
    NotStarted,
}

impl<E> TaskError<E> {
    /// `true` when the task itself failed: [`Failed`](TaskError::Failed),
    /// [`Panicked`](TaskError::Panicked) or [`TimedOut`](TaskError::TimedOut),
    /// the outcomes that stop a fail-fast run; `false` for
    /// [`Cancelled`](TaskError::Cancelled) and
    /// [`NotStarted`](TaskError::NotStarted), which only follow from a stop.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Failed(_) | Self::Panicked(_) | Self::TimedOut(_)
        )
    }

    /// `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked(_))
    }

    /// `true` if the task timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut(_))
    }

    /// `true` if the task was started and then aborted by the run.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }

    /// `true` if the task never started.
    pub fn is_not_started(&self) -> bool {
        matches!(self, Self::NotStarted)
    }

    /// The task's own error, if it returned one.
    pub fn as_failed(&self) -> Option<&E> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The task's own error, if it returned one.
    pub fn into_failed(self) -> Option<E> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// A short lowercase word for logs and spans: `error`, `panic`, `timeout`,
    /// `cancelled` or `not_started`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Failed(_) => "error",
            Self::Panicked(_) => "panic",
            Self::TimedOut(_) => "timeout",
            Self::Cancelled => "cancelled",
            Self::NotStarted => "not_started",
        }
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Panicked(p) => write!(f, "panicked: {p}"),
            Self::TimedOut(d) => write!(f, "timed out after {d:?}"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::NotStarted => f.write_str("not started"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TaskError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// A caught panic: its message (when the payload is a `&str` or a `String`)
/// and the original payload, which [`into_payload`](Panic::into_payload) hands
/// back for [`std::panic::resume_unwind`].
pub struct Panic {
    message: Option<String>,
    // The payload is only reachable by value, so sharing `&Panic` across
    // threads never touches it: that is what makes `Panic` (and so the
    // errors holding it) `Sync`, as tokio's `JoinError` does.
    payload: SyncWrapper<Box<dyn Any + Send + 'static>>,
}

impl Panic {
    /// Wraps a payload caught by [`std::panic::catch_unwind`].
    pub fn new(payload: Box<dyn Any + Send + 'static>) -> Self {
        let message = payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        Self {
            message,
            payload: SyncWrapper::new(payload),
        }
    }

    /// The panic message, if the payload was a string.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The original payload, unchanged: pass it to
    /// [`std::panic::resume_unwind`] or downcast it.
    pub fn into_payload(self) -> Box<dyn Any + Send + 'static> {
        self.payload.into_inner()
    }

    /// Re-raises the original panic in the current thread.
    pub fn resume(self) -> ! {
        std::panic::resume_unwind(self.into_payload())
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panic")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => f.write_str("(non-string panic payload)"),
        }
    }
}

/// One task's failure: which task (its input index and key) and how it failed.
///
/// For unkeyed input the key is the index.
#[derive(Debug)]
pub struct Failure<K, E> {
    /// Position of the task's input in the input sequence, from 0.
    pub index: usize,
    /// The task's key (its index for unkeyed input).
    pub key: K,
    /// How it failed.
    pub error: TaskError<E>,
}

impl<K: fmt::Debug, E: fmt::Display> fmt::Display for Failure<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {:?} {}", self.key, self.error)
    }
}

/// What stopped a run before it ran every input: the root cause of a
/// fail-fast [`Error`], and [`Report::stopped_by`](crate::Report::stopped_by)
/// of a collect-all run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Cause<K, E> {
    /// A task failed, panicked or timed out: the first one the run observed.
    /// Only fail-fast runs stop on a task's failure.
    Task(Failure<K, E>),
    /// The run was cancelled from outside: its external token
    /// ([`FanOut::cancel_on`](crate::FanOut::cancel_on)), or the consumer of
    /// a stream or of [`for_each_blocking`](crate::FanOut::for_each_blocking)
    /// asking it to stop.
    Cancelled,
    /// The run's deadline passed.
    DeadlineExceeded,
}

/// Why a fail-fast run returned no results.
///
/// It carries the root cause (the first failure the run observed,
/// with its task's index and key, or the external cancellation, or the
/// deadline), every other failure observed while the run drained, and
/// the count of each outcome. Tasks that were only cancelled or never started
/// are counted, never listed and never the cause.
///
/// `Error` is `Send + Sync` when `K` and `E` are, so it converts into
/// `anyhow::Error` and `Box<dyn Error + Send + Sync>`.
///
/// It is one pointer wide (its parts are boxed), so `Result<Vec<T>, Error>`
/// costs nothing extra on the success path.
pub struct Error<K, E> {
    inner: Box<Inner<K, E>>,
}

#[derive(Debug)]
struct Inner<K, E> {
    cause: Cause<K, E>,
    others: Vec<Failure<K, E>>,
    counts: Counts,
}

impl<K: fmt::Debug, E: fmt::Debug> fmt::Debug for Error<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("cause", &self.inner.cause)
            .field("others", &self.inner.others)
            .field("counts", &self.inner.counts)
            .finish()
    }
}

impl<K, E> Error<K, E> {
    /// An error of `cause`, with the `others` failures (in the order they
    /// were observed) and the `counts` of every outcome: the inverse of
    /// [`into_parts`](Error::into_parts), for a backend that runs tasks
    /// elsewhere and reports with fanout's types.
    pub fn from_parts(cause: Cause<K, E>, others: Vec<Failure<K, E>>, counts: Counts) -> Self {
        Self {
            inner: Box::new(Inner {
                cause,
                others,
                counts,
            }),
        }
    }

    /// The root cause.
    pub fn cause(&self) -> &Cause<K, E> {
        &self.inner.cause
    }

    /// The root cause, by value.
    pub fn into_cause(self) -> Cause<K, E> {
        self.inner.cause
    }

    /// The failed task that caused the stop, if a task did.
    pub fn failure(&self) -> Option<&Failure<K, E>> {
        match &self.inner.cause {
            Cause::Task(f) => Some(f),
            _ => None,
        }
    }

    /// The key of the task that caused the stop, if a task did.
    pub fn key(&self) -> Option<&K> {
        self.failure().map(|f| &f.key)
    }

    /// The task's own error, if the cause is a task that returned `Err`.
    pub fn task_error(&self) -> Option<&E> {
        self.failure().and_then(|f| f.error.as_failed())
    }

    /// `true` if the run was stopped by its external cancellation token.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.cause, Cause::Cancelled)
    }

    /// `true` if the run was stopped by its deadline.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self.inner.cause, Cause::DeadlineExceeded)
    }

    /// Other failures (errors, panics, timeouts) observed after the
    /// cause while the run drained, in the order they were observed.
    pub fn others(&self) -> &[Failure<K, E>] {
        &self.inner.others
    }

    /// How many tasks ended in each outcome.
    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }

    /// Splits the error into its cause, the other failures and the counts.
    pub fn into_parts(self) -> (Cause<K, E>, Vec<Failure<K, E>>, Counts) {
        let inner = *self.inner;
        (inner.cause, inner.others, inner.counts)
    }
}

impl<K: fmt::Debug, E: fmt::Display> fmt::Display for Error<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        match &inner.cause {
            Cause::Task(t) => write!(f, "{t}")?,
            Cause::Cancelled => f.write_str("run cancelled")?,
            Cause::DeadlineExceeded => f.write_str("run deadline exceeded")?,
        }
        if !inner.others.is_empty() {
            write!(f, " (and {} other failure(s))", inner.others.len())?;
        }
        write!(f, "; {}", inner.counts)
    }
}

impl<K, E> std::error::Error for Error<K, E>
where
    K: fmt::Debug,
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.task_error().map(|e| e as _)
    }
}
