//! What a run does besides running tasks, for runs that keep a journal:
//! recall the outcomes a journal holds instead of running their tasks, and
//! record each task's outcome before it is handed over. A run without a
//! journal uses [`NoJournal`], whose hooks do nothing and compile away.

use std::future::Future;

use super::{Reason, RunState};
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

/// Stops a run, with the reason that a journal failed.
#[cfg_attr(
    not(all(feature = "journal", unix)),
    allow(dead_code, reason = "only journaled runs record")
)]
pub(crate) trait Halt: Sync {
    fn halt(&self);
}

impl<S> Halt for RunState<S>
where
    RunState<S>: Sync,
{
    fn halt(&self) {
        self.stop(Reason::Journal);
    }
}

/// The hooks a run's lanes call: [`NoJournal`] for plain runs.
pub(crate) trait Recorder<K, T, E>: Send + Sync + 'static {
    /// Whether outcomes are recorded: tasks then always take the boxed
    /// path (`Body::Slow`), which [`wrap`](Recorder::wrap) wraps.
    const RECORDS: bool;

    /// What to do with the input of `key`, pulled as input `index`. Called
    /// under the run's input lock, so in input order.
    fn recall(&self, index: usize, key: &K) -> Recall<T, E>;

    /// The body of a task whose outcome `body` computes: for a journaled
    /// run, it records the outcome (a panic's included) before returning
    /// it, and stops the run through `halt` if the record fails.
    fn wrap<'a, B>(
        &'a self,
        halt: &'a dyn Halt,
        key: &K,
        body: B,
    ) -> impl Future<Output = (Outcome<T, E>, u32)> + Send + 'a
    where
        B: Future<Output = (Outcome<T, E>, u32)> + Send + 'a;
}

impl<K, T, E> Recorder<K, T, E> for NoJournal {
    const RECORDS: bool = false;

    #[inline]
    fn recall(&self, _index: usize, _key: &K) -> Recall<T, E> {
        Recall::Run
    }

    #[inline]
    fn wrap<'a, B>(
        &'a self,
        _halt: &'a dyn Halt,
        _key: &K,
        body: B,
    ) -> impl Future<Output = (Outcome<T, E>, u32)> + Send + 'a
    where
        B: Future<Output = (Outcome<T, E>, u32)> + Send + 'a,
    {
        body
    }
}
