//! What a journaled run knows of its journal while it goes: the outcomes
//! recorded before it started, by key, and what became of each key in this
//! run; and the hooks its lanes call to recall and to record.

use std::any::Any;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{Origin, RecordedFailures, RunError, Store};
use crate::engine::{Halt, Recall, Recorder};
use crate::panic::Panic;
use crate::task_error::{Outcome, TaskError};

/// A journaled run's view of its store.
pub(crate) struct Memory<St: Store> {
    store: St,
    failures: RecordedFailures,
    /// Every key recorded before the run or pulled during it.
    entries: Mutex<HashMap<St::Key, Entry<St::Value>>>,
    /// The first thing that went wrong with the journal; later ones are
    /// consequences of the stop it caused, or of the same cause.
    failure: Mutex<Option<Failure<St::Key, St::Error>>>,
}

/// What the run knows of one key.
enum Entry<V> {
    /// Recorded before the run; not pulled yet.
    Recorded(V),
    /// Pulled, and its task run (or about to be).
    Ran,
    /// Pulled, and its recorded outcome delivered instead.
    Recalled,
}

/// Why the journal of a run failed it.
pub(crate) enum Failure<K, J> {
    Record { key: K, error: J },
    Repeated { key: K, index: usize },
}

impl<K, E, J> From<Failure<K, J>> for RunError<K, E, J> {
    fn from(failure: Failure<K, J>) -> Self {
        match failure {
            Failure::Record { key, error } => RunError::Record { key, error },
            Failure::Repeated { key, index } => RunError::RepeatedKey { key, index },
        }
    }
}

fn lock<X>(mutex: &Mutex<X>) -> MutexGuard<'_, X> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<St> Memory<St>
where
    St: Store,
    St::Key: Hash + Eq,
{
    /// Loads what `store` holds; a later record of a key supersedes an
    /// earlier one.
    pub(crate) async fn load(mut store: St, failures: RecordedFailures) -> Result<Self, St::Error> {
        let records = store.load().await?;
        let mut entries = HashMap::with_capacity(records.len());
        for (key, value) in records {
            entries.insert(key, Entry::Recorded(value));
        }
        Ok(Memory {
            store,
            failures,
            entries: Mutex::new(entries),
            failure: Mutex::new(None),
        })
    }

    /// Whether the outcome of `key`, pulled in this run, was recalled.
    pub(crate) fn origin(&self, key: &St::Key) -> Origin {
        match lock(&self.entries).get(key) {
            Some(Entry::Recalled) => Origin::Recalled,
            _ => Origin::Ran,
        }
    }

    /// The first failure of the journal, if any (taken once).
    pub(crate) fn take_failure(&self) -> Option<Failure<St::Key, St::Error>> {
        lock(&self.failure).take()
    }

    fn fail(&self, failure: Failure<St::Key, St::Error>) {
        lock(&self.failure).get_or_insert(failure);
    }

    /// Marks the run finished in the store.
    pub(crate) async fn finish(self) -> Result<(), St::Error> {
        self.store.finish().await
    }
}

impl<St, T, E> Recorder<St::Key, T, E> for std::sync::Arc<Memory<St>>
where
    St: Store<Value = Outcome<T, E>> + Send + Sync + 'static,
    St::Key: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    const RECORDS: bool = true;

    fn recall(&self, index: usize, key: &St::Key) -> Recall<T, E> {
        let mut entries = lock(&self.entries);
        let mut entry = match entries.entry(key.clone()) {
            MapEntry::Vacant(vacant) => {
                vacant.insert(Entry::Ran);
                return Recall::Run;
            }
            MapEntry::Occupied(entry) => entry,
        };
        let recalled = match entry.get() {
            Entry::Ran | Entry::Recalled => {
                drop(entries);
                self.fail(Failure::Repeated {
                    key: key.clone(),
                    index,
                });
                return Recall::Repeated;
            }
            Entry::Recorded(Ok(_)) => true,
            Entry::Recorded(Err(e)) => self.failures == RecordedFailures::Keep && e.is_failure(),
        };
        if !recalled {
            entry.insert(Entry::Ran);
            return Recall::Run;
        }
        match entry.insert(Entry::Recalled) {
            Entry::Recorded(outcome) => Recall::Recalled(outcome),
            Entry::Ran | Entry::Recalled => unreachable!("matched as recorded above"),
        }
    }

    fn wrap<'a, B>(
        &'a self,
        halt: &'a dyn Halt,
        key: &St::Key,
        body: B,
    ) -> impl Future<Output = (Outcome<T, E>, u32)> + Send + 'a
    where
        B: Future<Output = (Outcome<T, E>, u32)> + Send + 'a,
    {
        let key = key.clone();
        async move {
            let (outcome, attempts) = match CatchUnwind::new(body).await {
                Ok((outcome, attempts)) => (outcome, Some(attempts)),
                Err(payload) => (Err(TaskError::Panicked(Panic::new(payload))), None),
            };
            if let Err(error) = self.store.record(&key, &outcome).await {
                self.fail(Failure::Record { key, error });
                halt.halt();
            }
            match (outcome, attempts) {
                (outcome, Some(attempts)) => (outcome, attempts),
                // Raised again, with its original payload, once recorded:
                // the task then ends as any panicking task does.
                (Err(TaskError::Panicked(panic)), None) => panic.resume(),
                (_, None) => unreachable!("only a panic has no attempt count"),
            }
        }
    }
}

impl<St: Store> fmt::Debug for Memory<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Runs a task's body to its end, catching a panic while it is polled or
    /// dropped, as the engine does for a task without a journal: the panic
    /// is then the outcome recorded.
    struct CatchUnwind<F> {
        #[pin]
        fut: Option<F>,
    }
}

impl<F> CatchUnwind<F> {
    fn new(fut: F) -> Self {
        CatchUnwind { fut: Some(fut) }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut fut = self.project().fut;
        let polled = catch_unwind(AssertUnwindSafe(|| {
            fut.as_mut()
                .as_pin_mut()
                .expect("polled after completion")
                .poll(cx)
        }));
        let ended = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(payload) => Err(payload),
        };
        // Dropped here, so that a panicking destructor is the task's panic.
        let dropped = catch_unwind(AssertUnwindSafe(|| fut.set(None)));
        Poll::Ready(match (ended, dropped) {
            (Ok(_), Err(payload)) => Err(payload),
            (ended, _) => ended,
        })
    }
}
