//! What a fail-fast run returns when it stops early: the root cause, the
//! other failures and the counts.
//!
//! These types hold no tokio handle, so a backend other than tokio (threads, a
//! broker) reports with the same vocabulary.

use std::fmt;

use crate::counts::Counts;
use crate::task_error::TaskError;

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
