//! What a run does besides running tasks, for runs that keep a journal:
//! recall the outcomes a journal holds instead of running their tasks, and
//! record the outcomes of the tasks that ran before they are handed over.
//! A run without a journal uses [`NoJournal`], whose hooks do nothing and
//! compile away.

use std::future::{ready, Future};

use super::Done;
use crate::fan_out::NoJournal;
use crate::task_error::Outcome;

/// What to do with an input just pulled.
#[cfg_attr(
    not(all(feature = "journal", unix)),
    allow(dead_code, reason = "only journaled runs recall")
)]
pub(crate) enum Recall<T, E> {
    /// Run its task.
    Run,
    /// Deliver this outcome, recalled from the journal, instead of running
    /// the task.
    Recalled(Outcome<T, E>),
    /// Its key was pulled before in this run: the journal could not tell
    /// the two apart, so the run stops (the hooks kept the error).
    Repeated,
}

/// The hooks a run's lanes call: [`NoJournal`] for plain runs.
pub(crate) trait Recorder<K, T, E>: Send + Sync + 'static {
    /// Whether [`record`](Recorder::record) does anything: the lanes skip
    /// it otherwise.
    const RECORDS: bool;

    /// What to do with the input of `key`, pulled as input `index`. Called
    /// under the run's input lock, so in input order.
    fn recall(&self, index: usize, key: &K) -> Recall<T, E>;

    /// Records the completed outcomes among `done` (not the cancelled or
    /// never started ones), the tasks of one lane that finished together,
    /// before the lane hands them over; gives `done` back. `false` if the
    /// journal failed: the hooks kept the error, and the lane stops the
    /// run. (`done` is moved in and out, rather than borrowed, so that the
    /// lane's future holds no reference to outcomes across the wait, which
    /// would require them to be `Sync`.)
    fn record(
        &self,
        done: Vec<Done<K, T, E>>,
    ) -> impl Future<Output = (Vec<Done<K, T, E>>, bool)> + Send + '_;
}

impl<K, T, E> Recorder<K, T, E> for NoJournal
where
    K: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    const RECORDS: bool = false;

    #[inline]
    fn recall(&self, _index: usize, _key: &K) -> Recall<T, E> {
        Recall::Run
    }

    #[inline]
    fn record(
        &self,
        done: Vec<Done<K, T, E>>,
    ) -> impl Future<Output = (Vec<Done<K, T, E>>, bool)> + Send + '_ {
        ready((done, true))
    }
}
