//! How many tasks ended in each outcome.

use std::fmt;

use crate::task_error::{Outcome, TaskError};

/// How many tasks ended in each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Tasks that returned `Ok`.
    pub succeeded: usize,
    /// Tasks that returned `Err` on their last attempt.
    pub failed: usize,
    /// Tasks that panicked.
    pub panicked: usize,
    /// Tasks whose last attempt timed out.
    pub timed_out: usize,
    /// Tasks started and then aborted because the run stopped.
    pub cancelled: usize,
    /// Inputs whose task never started because the run stopped first.
    pub not_started: usize,
    /// Tasks sent to other processes that never reached an outcome there
    /// ([`TaskError::Undeliverable`]).
    pub undeliverable: usize,
}

impl Counts {
    /// The number of inputs accounted for: the sum of every count.
    pub fn total(&self) -> usize {
        self.succeeded
            + self.failed
            + self.panicked
            + self.timed_out
            + self.cancelled
            + self.not_started
            + self.undeliverable
    }

    /// Failed, panicked, timed out and undeliverable together: the tasks
    /// that themselves failed ([`TaskError::is_failure`]).
    pub fn failures(&self) -> usize {
        self.failed + self.panicked + self.timed_out + self.undeliverable
    }

    pub(crate) fn add<T, E>(&mut self, outcome: &Outcome<T, E>) {
        match outcome {
            Ok(_) => self.succeeded += 1,
            Err(e) => self.add_error(e),
        }
    }

    pub(crate) fn add_error<E>(&mut self, e: &TaskError<E>) {
        match e {
            TaskError::Failed(_) => self.failed += 1,
            TaskError::Panicked(_) => self.panicked += 1,
            TaskError::TimedOut(_) => self.timed_out += 1,
            TaskError::Cancelled => self.cancelled += 1,
            TaskError::NotStarted => self.not_started += 1,
            TaskError::Undeliverable(_) => self.undeliverable += 1,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} succeeded, {} failed, {} panicked, {} timed out, {} cancelled, {} not started",
            self.succeeded,
            self.failed,
            self.panicked,
            self.timed_out,
            self.cancelled,
            self.not_started
        )?;
        // Only runs that send tasks elsewhere have undeliverable ones.
        if self.undeliverable > 0 {
            write!(f, ", {} undeliverable", self.undeliverable)?;
        }
        Ok(())
    }
}
