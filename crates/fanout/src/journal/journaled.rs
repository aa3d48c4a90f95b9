//! Keyed runs with a journal: the builder methods that give a run one, and
//! its three run modes.

use std::future::{poll_fn, Future};
use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::memory::Memory;
use super::{
    Error, Journal, JournaledStream, JsonOutcomes, Options, RecordedFailures, RunError, Store,
};
use crate::config::PanicPolicy;
use crate::ctx::TaskCtx;
use crate::engine::{self, finish, Collected, Collector, Recall, Recorder, RunState};
use crate::fan_out::{in_run_span, FanOut, NoJournal};
use crate::report::Report;
use crate::retry::RetryPolicy;
use crate::source::{Input, Keyed};
use crate::stream::{Order, TaskStream};
use crate::sync::Ordering;
use crate::task_error::Outcome;

/// The journal of a keyed run: the third type parameter of a [`FanOut`]
/// given one by [`FanOut::journal`] or [`FanOut::journal_file`]. It holds
/// the store and what to do with the failures it records
/// ([`RecordedFailures`]).
#[derive(Debug)]
pub struct Journaled<St> {
    store: St,
    failures: RecordedFailures,
}

impl<I, R> FanOut<Keyed<I>, R, NoJournal>
where
    Keyed<I>: Input,
{
    /// Gives this keyed run a journal: `store`, any [`Store`] of each key's
    /// [`Outcome`] (a [`Journal`] file, or a remote store).
    ///
    /// The run then loads the store once when it starts and, for each
    /// input, by key:
    ///
    /// - a key whose last record is a success (or a failure, with
    ///   [`RecordedFailures::Keep`]) is **recalled**: its recorded outcome is
    ///   delivered at once, at the key's place in the input, without
    ///   running the task and without taking a slot;
    /// - every other key's task runs, and its final outcome (after retries,
    ///   timeouts and panic catching: ok, failed, panicked, timed out) is
    ///   **recorded before anyone sees it**: before a stream yields it, and
    ///   so before `run` or `run_all` return it, and before a fail-fast
    ///   failure or a panic is acted on. The tasks of a lane that finish
    ///   together are recorded together ([`Store::record_all`]: one `write`
    ///   for a [`Journal`] file). Tasks cancelled or never started are not
    ///   recorded (nor is a panic raised while a cancelled task was being
    ///   dropped), so a later run runs them;
    /// - when the run returns normally (a fail-fast error included), the
    ///   store is finished ([`Store::finish`]). A run whose future is
    ///   dropped, that re-raises a panic, or whose journal failed is not:
    ///   its journal says it did not finish, as after a kill.
    ///
    /// So a run killed at any instant, then run again with the same journal,
    /// never runs a task whose outcome was recorded and loses none. The
    /// three run modes ([`run`](FanOut::run), [`run_all`](FanOut::run_all),
    /// [`stream`](FanOut::stream)) of a journaled `FanOut` say which
    /// outcomes were recalled.
    ///
    /// **Keys, not positions.** The input may be reordered, grow or shrink
    /// between runs: outcomes are found by key. Records whose key is not in
    /// this run's input stay in the journal, untouched (a later run whose
    /// input has the key again recalls them), and are not reported: a run
    /// has one outcome per input, and a fail-fast run that stops early
    /// cannot tell a key missing from its input from one it never reached.
    /// Keys must be unique within an input: a repeated key stops the run
    /// with [`RunError::RepeatedKey`].
    ///
    /// Journaled runs are async only (a store's methods are futures); the
    /// blocking run modes are not available on a journaled `FanOut`.
    ///
    /// Cost per task, on top of the run: a hash-map lookup (and a clone of
    /// the key) under the input lock, and its share of the store's
    /// `record_all`: for a [`Journal`] file, encoding its line, a share of
    /// one `write(2)` per batch, and the sync policy's share of an
    /// `fdatasync`, which blocks the lane (and so its other tasks) while
    /// it lasts. A few hundred nanoseconds per task without sync on the
    /// project's machine; the figures, per sync policy, are in the
    /// repository's `docs/BENCHMARKS.md` ("Journal"). Memory: the records
    /// loaded, and one key per input pulled (to refuse repeats).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
    /// use fanout::journal::{Fingerprint, JsonOutcomes, Options};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("squares.journal");
    /// let options = Options::new(Fingerprint::of(["squares", "v1"]));
    /// let inputs = |range: std::ops::Range<u64>| range.map(|n| (n.to_string(), n));
    ///
    /// // A first run does 0..3 (then dies, say).
    /// let journal = options.clone().resume(&path, JsonOutcomes::new())?.journal;
    /// let first = fanout::fan_out_keyed(inputs(0..3))
    ///     .journal(journal)
    ///     .run_all(|_ctx, n| async move { Ok::<u64, String>(n * n) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(first.counts().recalled, 0);
    ///
    /// // The next run, over more inputs, runs only the new ones.
    /// let journal = options.resume(&path, JsonOutcomes::new())?.journal;
    /// let second = fanout::fan_out_keyed(inputs(0..5))
    ///     .journal(journal)
    ///     .run_all(|_ctx, n| async move {
    ///         assert!(n >= 3, "recorded inputs never run again");
    ///         Ok::<u64, String>(n * n)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(second.counts().recalled, 3);
    /// assert!(second.is_recalled(0) && !second.is_recalled(3));
    /// let squares: Vec<u64> = second.successes().map(|(_, v)| *v).collect();
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// # Ok(()) }
    /// ```
    pub fn journal<St>(self, store: St) -> FanOut<Keyed<I>, R, Journaled<St>>
    where
        St: Store<Key = <Keyed<I> as Input>::Key>,
    {
        FanOut {
            source: self.source,
            cfg: self.cfg,
            retry: self.retry,
            journal: Journaled {
                store,
                failures: RecordedFailures::default(),
            },
        }
    }

    /// Gives this keyed run a journal file at `path`, opened (or created)
    /// with `options`, in the library's [`JsonOutcomes`] format: the
    /// shorthand for
    /// `.journal(options.resume(path, JsonOutcomes::new())?.journal)`.
    ///
    /// The file is opened, locked and read here, when the run is built: a
    /// second run on the same journal is refused now ([`Error::Locked`]),
    /// as is the journal of another run ([`Error::Mismatch`]: see
    /// [`Options::on_mismatch`]). The [`Opened`](super::Opened) details
    /// (a torn last line cut off, the previous run) are dropped; open the
    /// journal yourself and call [`journal`](FanOut::journal) to see them.
    ///
    /// Keys, values and errors must be serde types (keys owned, not
    /// borrowed, since they are read back). `T` and `E` are those of the
    /// task function the run is given.
    ///
    /// # Errors
    /// Those of [`Options::resume`]: the journal is locked by another run,
    /// damaged, of another run, or cannot be read or written.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
    /// use fanout::journal::{Fingerprint, Options, SyncPolicy};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("lengths.journal");
    /// let options = Options::new(Fingerprint::of(["lengths", "v1"])).sync(SyncPolicy::group(64, None));
    /// let words = ["apple", "fig", "kiwi"].map(|w| (w.to_owned(), w));
    /// let lengths = fanout::fan_out_keyed(words)
    ///     .journal_file(&path, options)?
    ///     .limit(8)
    ///     .run(|_ctx, w| async move { Ok::<usize, String>(w.len()) })
    ///     .await
    ///     .expect("no task fails, and the journal works");
    /// assert_eq!(lengths[1], ("fig".to_owned(), 3));
    /// # Ok(()) }
    /// ```
    #[allow(
        clippy::type_complexity,
        reason = "the journaled builder's type, spelled out once"
    )]
    pub fn journal_file<T, E>(
        self,
        path: impl AsRef<Path>,
        options: Options,
    ) -> Result<
        FanOut<Keyed<I>, R, Journaled<Journal<JsonOutcomes<<Keyed<I> as Input>::Key, T, E>>>>,
        Error,
    >
    where
        <Keyed<I> as Input>::Key: Serialize + DeserializeOwned + Send,
        T: Serialize + DeserializeOwned + Send,
        E: Serialize + DeserializeOwned + Send,
    {
        let journal = options.resume(path, JsonOutcomes::new())?.journal;
        Ok(self.journal(journal))
    }
}

impl<S, R, St> FanOut<S, R, Journaled<St>>
where
    S: Input,
    St: Store<Key = S::Key>,
{
    /// What the run does with a key whose last record is a failure: run it
    /// again ([`RecordedFailures::Rerun`], the default, as GNU parallel's
    /// `--resume-failed`) or deliver the failure without running
    /// ([`RecordedFailures::Keep`], as `--resume`). See
    /// [`RecordedFailures`] for what a kept failure does to a fail-fast run.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
    /// use fanout::journal::{Fingerprint, Options, RecordedFailures};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("journal");
    /// let options = Options::new(Fingerprint::of(["parse"]));
    /// let inputs = || ["1", "x"].map(|s| (s.to_owned(), s));
    /// let parse = |_ctx, s: &'static str| async move { s.parse::<u32>().map_err(|e| e.to_string()) };
    ///
    /// fanout::fan_out_keyed(inputs()).journal_file(&path, options.clone())?.run_all(parse).await.unwrap();
    /// let kept = fanout::fan_out_keyed(inputs())
    ///     .journal_file(&path, options)?
    ///     .recorded_failures(RecordedFailures::Keep)
    ///     .run_all(|_ctx, s| async move { Err::<u32, String>(format!("{s} ran again")) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(kept.counts().recalled, 2); // both, the failure of "x" too
    /// assert_eq!(kept.counts().failed, 1);
    /// assert!(kept.failures().all(|(_, e)| !e.as_failed().unwrap().contains("again")));
    /// # Ok(()) }
    /// ```
    pub fn recorded_failures(mut self, failures: RecordedFailures) -> Self {
        self.journal.failures = failures;
        self
    }

    /// Runs the tasks fail-fast, as [`FanOut::run`] does without a journal,
    /// and returns their results in input order: one `(key, result)` per
    /// input, recalled or run.
    ///
    /// A recalled success is one of the results. A failure stops the run as
    /// without a journal; so does a recalled failure (with
    /// [`RecordedFailures::Keep`]), when it is delivered. The [`Error`](crate::Error)
    /// in [`RunError::Run`] counts the outcomes recalled
    /// ([`Counts::recalled`](crate::Counts::recalled)); the inputs never
    /// pulled after a stop are counted as not started, whatever the journal
    /// holds for them. To see which results were recalled, use
    /// [`run_all`](FanOut::run_all) or [`stream`](FanOut::stream).
    ///
    /// See [`journal`](FanOut::journal) for what is recalled, recorded and
    /// when the journal is finished.
    ///
    /// # Errors
    /// A [`RunError`]: the journal's failures first, then the run's own
    /// [`Error`](crate::Error) ([`RunError::Run`]).
    ///
    /// # Panics
    /// As [`FanOut::run`]: under [`PanicPolicy::Propagate`] the first task
    /// panic is re-raised after the drain (the journal is then not
    /// finished; the panic was recorded). Panics if called outside a tokio
    /// runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use fanout::journal::{Fingerprint, Options, RunError};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("journal");
    /// let options = Options::new(Fingerprint::of(["halves"]));
    /// let inputs = || [2u32, 4, 5, 6].map(|n| (n.to_string(), n));
    /// let half = |_ctx, n: u32| async move { if n % 2 == 0 { Ok(n / 2) } else { Err(format!("{n} is odd")) } };
    ///
    /// let err = fanout::fan_out_keyed(inputs()).limit(1).journal_file(&path, options.clone())?.run(half).await.unwrap_err();
    /// let RunError::Run(err) = err else { panic!("the journal did not fail") };
    /// assert_eq!(err.key().map(String::as_str), Some("5"));
    ///
    /// // Run again: 2 and 4 are recalled, 5 runs (and fails) again.
    /// let err = fanout::fan_out_keyed(inputs()).limit(1).journal_file(&path, options)?.run(half).await.unwrap_err();
    /// assert_eq!(err.run_error().unwrap().counts().recalled, 2);
    /// # Ok(()) }
    /// ```
    #[allow(
        clippy::type_complexity,
        reason = "the results and the error, spelled out for rustdoc"
    )]
    pub fn run<T, E, F, Fut>(
        self,
        f: F,
    ) -> impl Future<Output = Result<S::Results<T>, RunError<S::Key, E, St::Error>>>
    where
        S: Send + 'static,
        S::Key: Hash + Eq + 'static,
        S::Item: 'static,
        F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
        R: RetryPolicy<S::Item, E>,
        St: Store<Value = Outcome<T, E>> + Send + Sync + 'static,
    {
        let FanOut {
            source,
            cfg,
            retry,
            journal: Journaled { store, failures },
        } = self;
        let progress = cfg.progress.clone();
        let panics = cfg.panics;
        let limit = cfg.async_limit();
        in_run_span(
            tracing::Span::current(),
            "fail_fast",
            limit,
            move |span| async move {
                let memory = match Memory::load(store, failures).await {
                    Ok(memory) => Arc::new(memory),
                    Err(error) => return Err(load_failed(error, progress.as_ref())),
                };
                let joined =
                    engine::collect(source, cfg, retry, f, true, span.clone(), memory.clone())
                        .await;
                let result = finish::fail_fast(
                    &joined.shared,
                    joined.collected,
                    panics,
                    progress.as_ref(),
                    &span,
                )
                .map(S::results);
                conclude(memory, result).await
            },
        )
    }

    /// Runs every task, never stopping on a failure, as
    /// [`FanOut::run_all`] does without a journal, and reports exactly one
    /// outcome per input, in input order, recalled or run.
    ///
    /// [`Report::is_recalled`] and [`Report::recalled`] say which outcomes
    /// were recalled, [`Counts::recalled`](crate::Counts::recalled) how
    /// many. When the run stops early (the external token, the deadline),
    /// inputs never pulled are reported with their recalled outcome if the
    /// journal has one, and as not started otherwise.
    ///
    /// See [`journal`](FanOut::journal) for what is recalled, recorded and
    /// when the journal is finished.
    ///
    /// # Errors
    /// A [`RunError`] when the journal fails or a key repeats; never
    /// [`RunError::Run`].
    ///
    /// # Panics
    /// As [`FanOut::run_all`]. Panics if called outside a tokio runtime.
    ///
    /// See [`journal`](FanOut::journal) for an example.
    #[allow(
        clippy::type_complexity,
        reason = "the report and the error, spelled out for rustdoc"
    )]
    pub fn run_all<T, E, F, Fut>(
        self,
        f: F,
    ) -> impl Future<Output = Result<Report<S::Key, T, E>, RunError<S::Key, E, St::Error>>>
    where
        S: Send + 'static,
        S::Key: Hash + Eq + 'static,
        S::Item: 'static,
        F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
        R: RetryPolicy<S::Item, E>,
        St: Store<Value = Outcome<T, E>> + Send + Sync + 'static,
    {
        let FanOut {
            source,
            cfg,
            retry,
            journal: Journaled { store, failures },
        } = self;
        let progress = cfg.progress.clone();
        let panics = cfg.panics;
        let limit = cfg.async_limit();
        in_run_span(
            tracing::Span::current(),
            "all",
            limit,
            move |span| async move {
                let memory = match Memory::load(store, failures).await {
                    Ok(memory) => Arc::new(memory),
                    Err(error) => return Err(load_failed(error, progress.as_ref())),
                };
                let joined =
                    engine::collect(source, cfg, retry, f, false, span.clone(), memory.clone())
                        .await;
                let mut collected = joined.collected;
                let mut rest = Vec::new();
                if !(panics == PanicPolicy::Propagate && collected.has_panic()) {
                    poll_fn(|cx| joined.shared.poll_rest(cx, &mut rest)).await;
                    rest = recall_rest(&memory, &joined.shared, &mut collected, rest, &progress);
                }
                let report = finish::report(
                    &joined.shared,
                    collected,
                    rest,
                    panics,
                    progress.as_ref(),
                    &span,
                );
                conclude(memory, Ok::<_, crate::Error<S::Key, E>>(report)).await
            },
        )
    }

    /// Runs tasks and hands their outcomes over as a [`JournaledStream`],
    /// in the given [`Order`], as [`FanOut::stream`] does without a
    /// journal; each outcome comes with its [`Origin`](super::Origin):
    /// recalled or run.
    ///
    /// The stream loads the journal when it is first polled, recalls and
    /// records as [`journal`](FanOut::journal) says (an outcome is recorded
    /// before the stream yields it), and finishes the journal when it ends
    /// normally; if the journal fails, it yields the [`RunError`] before
    /// any outcome that was not recorded. Recalled outcomes take no slot,
    /// but do take room in the [`window`](FanOut::window) until the
    /// consumer takes them, so memory stays O(limit + window) beyond the
    /// journal's own.
    ///
    /// # Panics
    /// As [`FanOut::stream`], when polled. Panics if polled outside a tokio
    /// runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
    /// use fanout::journal::{Fingerprint, Options, Origin};
    /// use fanout::Order;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("journal");
    /// let options = Options::new(Fingerprint::of(["doubles"]));
    /// let inputs = |n: u64| (0..n).map(|i| (i, i));
    /// let double = |_ctx, i: u64| async move { Ok::<u64, String>(2 * i) };
    ///
    /// let mut first = fanout::fan_out_keyed(inputs(2)).journal_file(&path, options.clone())?.stream(Order::Input, double);
    /// while let Some(item) = first.next().await {
    ///     assert_eq!(item.expect("the journal works").2, Origin::Ran);
    /// }
    /// let mut second = fanout::fan_out_keyed(inputs(3)).journal_file(&path, options)?.stream(Order::Input, double);
    /// let mut origins = Vec::new();
    /// while let Some(item) = second.next().await {
    ///     let (key, outcome, origin) = item.expect("the journal works");
    ///     assert_eq!(outcome.unwrap(), 2 * key);
    ///     origins.push(origin);
    /// }
    /// assert_eq!(origins, [Origin::Recalled, Origin::Recalled, Origin::Ran]);
    /// # Ok(()) }
    /// ```
    pub fn stream<T, E, F, Fut>(self, order: Order, f: F) -> JournaledStream<S::Key, T, E, St>
    where
        S: Send + 'static,
        S::Key: Hash + Eq + 'static,
        S::Item: 'static,
        F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
        R: RetryPolicy<S::Item, E> + Send + 'static,
        St: Store<Value = Outcome<T, E>> + Send + Sync + 'static,
    {
        let mode = match order {
            Order::Completion => "stream",
            Order::Input => "stream_ordered",
        };
        let span = self.run_span(mode, self.cfg.async_limit());
        let FanOut {
            source,
            cfg,
            retry,
            journal: Journaled { store, failures },
        } = self;
        let start = Box::new(move |memory: Arc<Memory<St>>| {
            TaskStream::start(source, cfg, retry, f, order, span, memory)
        });
        JournaledStream::new(store, failures, start)
    }
}

/// The error of a run whose journal could not be loaded.
fn load_failed<K, E, J>(error: J, progress: Option<&crate::Progress>) -> RunError<K, E, J> {
    if let Some(p) = progress {
        p.finish();
    }
    RunError::Load(error)
}

/// The outcomes of the inputs a stopped collect-all run never pulled: those
/// the journal recalls join the collected ones; the rest are returned, to
/// be reported as not started.
fn recall_rest<S, St, T, E>(
    memory: &Arc<Memory<St>>,
    shared: &RunState<S>,
    collected: &mut Collected<S::Key, T, E>,
    rest: Vec<(usize, S::Key)>,
    progress: &Option<crate::Progress>,
) -> Vec<(usize, S::Key)>
where
    S: Input,
    St: Store,
    Arc<Memory<St>>: Recorder<S::Key, T, E>,
    S::Key: Send,
    T: Send,
    E: Send,
{
    let mut not_started = Vec::new();
    for (index, key) in rest {
        let Recall::Recalled(outcome) = memory.recall(index, &key) else {
            not_started.push((index, key));
            continue;
        };
        if let Some(p) = progress {
            p.recalled();
            p.finished_task(&outcome);
        }
        let seq = match &outcome {
            Err(e) if e.is_failure() => Some(shared.failure_seq.fetch_add(1, Ordering::Relaxed)),
            _ => None,
        };
        collected.recalled(index);
        collected.push((index, key, outcome), seq);
    }
    not_started
}

/// Ends a journaled run that returned normally: the journal's failure
/// first, then the store is finished, then the run's own result.
async fn conclude<St, X, K, E>(
    memory: Arc<Memory<St>>,
    result: Result<X, crate::Error<K, E>>,
) -> Result<X, RunError<K, E, St::Error>>
where
    St: Store<Key = K>,
    K: Hash + Eq,
{
    if let Some(failure) = memory.take_failure() {
        return Err(failure.into());
    }
    let memory = Arc::into_inner(memory).expect("every lane, and so every task, has ended");
    memory.finish().await.map_err(RunError::Finish)?;
    result.map_err(RunError::Run)
}
