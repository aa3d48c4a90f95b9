//! The storage interface a run's record of finished work goes through.

use std::error::Error as StdError;
use std::future::Future;

/// Records as [`Store::load`] returns them: each key with its value, oldest
/// first; a later record of a key supersedes an earlier one.
pub type Records<K, V> = Vec<(K, V)>;

/// Where a run records what it finished, by key, so that a later run can
/// skip it: load what is recorded, record one more, finish.
///
/// [`Journal`](super::Journal) is the local implementation: an append-only
/// file. The interface holds no file concepts (no positions, offsets or
/// lines), and its methods return futures, so that a remote store
/// implements it as well: a per-run results stream on a broker, for
/// instance, that records each task's result once and can be replayed from
/// its start, maps to
///
/// | method | journal file | results stream on a broker |
/// |---|---|---|
/// | [`load`](Store::load) | the records read (and checked) when it was opened | replay the stream from its first entry |
/// | [`record`](Store::record) | one line, one `write`, then the [`SyncPolicy`](super::SyncPolicy) | add the key's entry unless the key has one (a conditional write), await the broker's acknowledgement |
/// | [`finish`](Store::finish) | mark the run finished in the sidecar, unlock | mark the run finished |
///
/// Opening (and refusing a second concurrent run, or a store of other
/// work) is each store's own business, done before a `Store` exists.
///
/// [`record`](Store::record) takes `&self`, so that the tasks of a run can
/// record at once (a remote store pipelines them; the journal file appends
/// them one at a time under its lock).
///
/// # What an implementation promises
///
/// - **Recorded means kept.** Once the future of `record` completes with
///   `Ok`, every later `load`, by this process or a later one after a crash,
///   returns the record, within the durability the store documents (the
///   journal's [`SyncPolicy`](super::SyncPolicy)).
/// - **Nothing invented, nothing torn.** `load` returns exactly what was
///   recorded, whole, oldest first. A key may appear more than once (a
///   failure, then a retry's success); the last one counts.
/// - **Keys, not positions.** Records are found by key; a caller whose
///   input was reordered or grew between runs matches them by key.
///
/// # Cancel safety
///
/// A `record` future dropped before it completes may or may not have
/// recorded: a later `load` has the record whole or not at all.
///
/// # Example
///
/// A caller generic over the store:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fanout::journal::Error> {
/// use std::collections::HashMap;
/// use fanout::journal::{Fingerprint, JsonOutcomes, Options, Store};
///
/// /// Squares each input, skipping those the store has recorded.
/// async fn squares<S>(store: &mut S, inputs: &[u64]) -> Result<Vec<u64>, S::Error>
/// where
///     S: Store<Key = u64, Value = fanout::Outcome<u64, String>>,
/// {
///     let done: HashMap<u64, _> = store.load().await?.into_iter().collect();
///     let mut out = Vec::new();
///     for &n in inputs {
///         match done.get(&n) {
///             Some(Ok(square)) => out.push(*square),
///             _ => {
///                 store.record(&n, &Ok(n * n)).await?;
///                 out.push(n * n);
///             }
///         }
///     }
///     Ok(out)
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("journal");
/// let options = Options::new(Fingerprint::of(["squares"]));
/// let mut first = options.clone().create(&path, JsonOutcomes::new())?.journal;
/// assert_eq!(squares(&mut first, &[1, 2]).await?, [1, 4]);
/// drop(first); // killed, say
/// let mut second = options.resume(&path, JsonOutcomes::new())?.journal;
/// assert_eq!(squares(&mut second, &[3, 2, 1]).await?, [9, 4, 1]); // only 3 runs
/// Store::finish(second).await?;
/// # Ok(()) }
/// ```
pub trait Store {
    /// What identifies a record.
    type Key;
    /// What is recorded about a key (the library's runs record an
    /// [`Outcome`](crate::Outcome)).
    type Value;
    /// Why the store failed.
    type Error: StdError + Send + Sync + 'static;

    /// Everything recorded so far, oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn load(
        &mut self,
    ) -> impl Future<Output = Result<Records<Self::Key, Self::Value>, Self::Error>> + Send;

    /// Records `value` for `key`, durably as the store promises, before the
    /// future completes.
    ///
    /// # Errors
    /// The record cannot be written; it may then be missing from a later
    /// `load`, never present in part.
    fn record(
        &self,
        key: &Self::Key,
        value: &Self::Value,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Marks the run finished (rather than killed) and releases the store.
    ///
    /// # Errors
    /// The mark cannot be written; the records are kept either way.
    fn finish(self) -> impl Future<Output = Result<(), Self::Error>> + Send
    where
        Self: Sized;
}
