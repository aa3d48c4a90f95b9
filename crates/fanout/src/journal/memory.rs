//! What a journaled run knows of its journal while it goes: the outcomes
//! recorded before it started, by key, and what became of each key in this
//! run; and the hooks its lanes call to recall and to record.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Origin, RecordedFailures, RunError, Store};
use crate::engine::{Done, Recall, Recorder};
use crate::task_error::Outcome;

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

    async fn record(&self, done: Vec<Done<St::Key, T, E>>) -> (Vec<Done<St::Key, T, E>>, bool) {
        let completed = || {
            done.iter()
                .filter(|(_, _, outcome)| is_completed(outcome))
                .map(|(_, key, outcome)| (key, outcome))
        };
        let Err(unrecorded) = self.store.record_all(completed()).await else {
            return (done, true);
        };
        let key = completed()
            .nth(unrecorded.recorded)
            .map(|(key, _)| key.clone())
            .expect("record_all names a record it was given");
        self.fail(Failure::Record {
            key,
            error: unrecorded.error,
        });
        (done, false)
    }
}

/// Whether an outcome is one a journal records: not that of a task
/// cancelled or never started, which a later run must run.
fn is_completed<T, E>(outcome: &Outcome<T, E>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(e) => e.is_failure(),
    }
}

impl<St: Store> fmt::Debug for Memory<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}
