//! The outcome of every task of a collect-all run, and outcome counts.

use std::fmt;

use crate::error::{Cause, Error, Failure, TaskError};

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
    }

    /// Failed, panicked and timed out together: the genuine failures.
    pub fn genuine_failures(&self) -> usize {
        self.failed + self.panicked + self.timed_out
    }

    pub(crate) fn add<T, E>(&mut self, outcome: &Result<T, TaskError<E>>) {
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
        )
    }
}

/// Every outcome of a collect-all run, in input order, and their counts.
///
/// `outcomes()[i]` belongs to input `i`; there is exactly one outcome per
/// input. For unkeyed input the key is the index.
#[derive(Debug)]
pub struct Report<K, T, E> {
    outcomes: Vec<(K, Result<T, TaskError<E>>)>,
    counts: Counts,
    stopped_by: Option<Stop>,
}

/// Why a collect-all run stopped before every task had run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// The external cancellation token was cancelled.
    Cancelled,
    /// The run's deadline passed.
    DeadlineExceeded,
    /// A task panicked under [`PanicPolicy::Propagate`](crate::PanicPolicy):
    /// only seen by a stream, as a collect-all run re-raises the panic.
    Panicked,
}

impl<K, T, E> Report<K, T, E> {
    pub(crate) fn new(
        outcomes: Vec<(K, Result<T, TaskError<E>>)>,
        stopped_by: Option<Stop>,
    ) -> Self {
        let mut counts = Counts::default();
        for (_, o) in &outcomes {
            counts.add(o);
        }
        Self {
            outcomes,
            counts,
            stopped_by,
        }
    }

    /// Every outcome, in input order.
    pub fn outcomes(&self) -> &[(K, Result<T, TaskError<E>>)] {
        &self.outcomes
    }

    /// Every outcome, in input order, by value.
    pub fn into_outcomes(self) -> Vec<(K, Result<T, TaskError<E>>)> {
        self.outcomes
    }

    /// How many tasks ended in each outcome.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Why the run stopped early, or `None` if every task ran.
    pub fn stopped_by(&self) -> Option<Stop> {
        self.stopped_by
    }

    /// The number of outcomes (= the number of inputs).
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// `true` if the input was empty.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// `true` if every task succeeded.
    pub fn is_success(&self) -> bool {
        self.counts.succeeded == self.outcomes.len()
    }

    /// The successful results with their keys, in input order.
    pub fn successes(&self) -> impl Iterator<Item = (&K, &T)> {
        self.outcomes
            .iter()
            .filter_map(|(k, o)| o.as_ref().ok().map(|t| (k, t)))
    }

    /// The failures (of every kind) with their keys, in input order.
    pub fn failures(&self) -> impl Iterator<Item = (&K, &TaskError<E>)> {
        self.outcomes
            .iter()
            .filter_map(|(k, o)| o.as_ref().err().map(|e| (k, e)))
    }

    /// All results in input order if every task succeeded; otherwise an
    /// [`Error`] whose cause is the genuine failure with the lowest index
    /// (or the stop reason, if no task failed) and whose `others` are the
    /// remaining genuine failures in input order.
    ///
    /// # Errors
    /// When any input did not succeed.
    pub fn into_result(self) -> Result<Vec<(K, T)>, Error<K, E>> {
        if self.is_success() {
            return Ok(self
                .outcomes
                .into_iter()
                .filter_map(|(k, o)| o.ok().map(|t| (k, t)))
                .collect());
        }
        let counts = self.counts;
        let mut failures = self
            .outcomes
            .into_iter()
            .enumerate()
            .filter_map(|(index, (key, o))| match o {
                Err(error) if error.is_genuine() => Some(Failure { index, key, error }),
                _ => None,
            });
        let cause = match failures.next() {
            Some(f) => Cause::Task(f),
            None if self.stopped_by == Some(Stop::DeadlineExceeded) => Cause::DeadlineExceeded,
            None => Cause::Cancelled,
        };
        Err(Error::new(cause, failures.collect(), counts))
    }
}

impl<K, T, E> IntoIterator for Report<K, T, E> {
    type Item = (K, Result<T, TaskError<E>>);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.outcomes.into_iter()
    }
}
