//! What became of one task: its value, or why it has none.
//!
//! These types hold no tokio handle, so a backend other than tokio (threads, a
//! broker) reports with the same vocabulary.

use std::fmt;
use std::time::Duration;

use crate::panic::Panic;

/// The outcome of one task: its value, or why it has none.
pub type Outcome<T, E> = Result<T, TaskError<E>>;

/// Why one task did not produce a value.
///
/// Every input of a run ends with exactly one outcome: `Ok(value)` or one of
/// these. [`Failed`](TaskError::Failed), [`Panicked`](TaskError::Panicked),
/// [`TimedOut`](TaskError::TimedOut) and
/// [`Undeliverable`](TaskError::Undeliverable) say the task itself failed
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
    /// The task never reached an outcome of its own where it was sent to
    /// run: the workers that took it died every time (it went to the
    /// dead-letter list), or refused it (its input did not decode there, or
    /// no worker serves its handler with these types). The text says which.
    /// Only runs that send tasks to other processes end so; it is a failure
    /// like [`Failed`](TaskError::Failed).
    Undeliverable(String),
}

impl<E> TaskError<E> {
    /// `true` when the task itself failed: [`Failed`](TaskError::Failed),
    /// [`Panicked`](TaskError::Panicked), [`TimedOut`](TaskError::TimedOut)
    /// or [`Undeliverable`](TaskError::Undeliverable),
    /// the outcomes that stop a fail-fast run; `false` for
    /// [`Cancelled`](TaskError::Cancelled) and
    /// [`NotStarted`](TaskError::NotStarted), which only follow from a stop.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Failed(_) | Self::Panicked(_) | Self::TimedOut(_) | Self::Undeliverable(_)
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
            Self::Undeliverable(_) => "undeliverable",
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
            Self::Undeliverable(why) => write!(f, "undeliverable: {why}"),
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
