//! The outcome of every task of a collect-all run, and outcome counts.

use crate::counts::Counts;
use crate::error::{Cause, Error, Failure};
use crate::task_error::{Outcome, TaskError};

/// Every outcome of a collect-all run, in input order, and their counts.
///
/// `outcomes()[i]` belongs to input `i`; there is exactly one outcome per
/// input. For unkeyed input the key is the index. The report of a
/// journaled run also says which outcomes were recalled from its journal
/// rather than run ([`is_recalled`](Report::is_recalled),
/// [`recalled`](Report::recalled), [`Counts::recalled`]).
///
/// Made by [`FanOut::run_all`](crate::FanOut::run_all) and
/// [`FanOut::run_all_blocking`](crate::FanOut::run_all_blocking); a backend
/// that runs tasks elsewhere builds one with
/// [`from_outcomes`](Report::from_outcomes) or by collecting
/// `(key, outcome)` pairs.
#[derive(Debug)]
pub struct Report<K, T, E> {
    outcomes: Vec<(K, Outcome<T, E>)>,
    counts: Counts,
    stopped_by: Option<Cause<K, E>>,
    /// The indices of the outcomes recalled from a journal, ascending.
    recalled: Vec<usize>,
}

impl<K, T, E> Report<K, T, E> {
    /// A report of `outcomes` (one per input, in input order) for a run that
    /// `stopped_by` stopped early, or that ran every input (`None`). The
    /// counts are computed from the outcomes.
    pub fn from_outcomes(
        outcomes: Vec<(K, Outcome<T, E>)>,
        stopped_by: Option<Cause<K, E>>,
    ) -> Self {
        let mut counts = Counts::default();
        for (_, o) in &outcomes {
            counts.add(o);
        }
        Self {
            outcomes,
            counts,
            stopped_by,
            recalled: Vec::new(),
        }
    }

    /// Marks the outcomes at `indices` (any order) as recalled from a
    /// journal.
    pub(crate) fn with_recalled(mut self, mut indices: Vec<usize>) -> Self {
        indices.sort_unstable();
        self.counts.recalled = indices.len();
        self.recalled = indices;
        self
    }

    /// Every outcome, in input order.
    pub fn outcomes(&self) -> &[(K, Outcome<T, E>)] {
        &self.outcomes
    }

    /// Every outcome, in input order, by value.
    pub fn into_outcomes(self) -> Vec<(K, Outcome<T, E>)> {
        self.outcomes
    }

    /// How many tasks ended in each outcome.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Why the run stopped before running every input, or `None` if every
    /// task ran: [`Cause::Cancelled`] (the external token) or
    /// [`Cause::DeadlineExceeded`]. A collect-all run never stops on a task's
    /// failure, so this is never [`Cause::Task`] for the reports fanout
    /// makes (a panic under [`PanicPolicy::Propagate`](crate::PanicPolicy)
    /// is re-raised instead).
    pub fn stopped_by(&self) -> Option<&Cause<K, E>> {
        self.stopped_by.as_ref()
    }

    /// Whether the outcome of input `index` was recalled from the run's
    /// journal rather than produced by running its task (always `false` for
    /// runs without a journal). Cost: a binary search.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let report = fanout::fan_out(0..2)
    ///     .run_all(|_ctx, n| async move { Ok::<_, ()>(n) })
    ///     .await;
    /// assert!(!report.is_recalled(0));
    /// # }
    /// ```
    pub fn is_recalled(&self, index: usize) -> bool {
        self.recalled.binary_search(&index).is_ok()
    }

    /// The outcomes recalled from the run's journal, with their keys, in
    /// input order; [`Counts::recalled`] counts them. Empty for runs without
    /// a journal.
    pub fn recalled(&self) -> impl Iterator<Item = (&K, &Outcome<T, E>)> {
        self.recalled.iter().map(|&i| {
            let (k, o) = &self.outcomes[i];
            (k, o)
        })
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

    /// The tasks that themselves failed (errors, panics, timeouts: see
    /// [`TaskError::is_failure`]) with their keys, in input order. Cancelled
    /// and not-started tasks are in [`outcomes`](Report::outcomes) and
    /// [`counts`](Report::counts).
    pub fn failures(&self) -> impl Iterator<Item = (&K, &TaskError<E>)> {
        self.outcomes.iter().filter_map(|(k, o)| match o {
            Err(e) if e.is_failure() => Some((k, e)),
            _ => None,
        })
    }

    /// All results in input order if every task succeeded; otherwise an
    /// [`Error`] whose cause is the failure with the lowest index (or the
    /// stop reason, if no task failed) and whose `others` are the remaining
    /// failures in input order.
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
                Err(error) if error.is_failure() => Some(Failure { index, key, error }),
                _ => None,
            });
        let cause = match failures.next() {
            Some(f) => Cause::Task(f),
            None => self.stopped_by.unwrap_or(Cause::Cancelled),
        };
        Err(Error::from_parts(cause, failures.collect(), counts))
    }
}

impl<K, T, E> FromIterator<(K, Outcome<T, E>)> for Report<K, T, E> {
    /// A report of a run that ran every input: one outcome per input, in
    /// input order.
    fn from_iter<I: IntoIterator<Item = (K, Outcome<T, E>)>>(iter: I) -> Self {
        Self::from_outcomes(iter.into_iter().collect(), None)
    }
}

impl<K, T, E> IntoIterator for Report<K, T, E> {
    type Item = (K, Outcome<T, E>);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.outcomes.into_iter()
    }
}
