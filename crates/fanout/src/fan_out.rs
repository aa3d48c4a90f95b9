//! The run builder, and the three async run modes (the three blocking ones
//! are in `blocking/run.rs`).

use std::future::{poll_fn, Future};
use std::time::Duration;

use futures_core::Stream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, PanicPolicy};
use crate::ctx::TaskCtx;
use crate::engine;
use crate::error::Error;
use crate::progress::Progress;
use crate::report::Report;
use crate::retry::{NoRetry, Retry, RetryPolicy};
use crate::source::{FromStream, Indexed, Input, Keyed};
use crate::stream::{Order, TaskStream};

/// Starts building a run over unkeyed inputs: a `Vec`, a slice's iterator, a
/// range, any iterator. Results are indexed: `out[i]` belongs to input `i`.
///
/// Inputs are pulled lazily, one at a time, only when a slot is free: the
/// iterator is never collected up front. It must be `Send + 'static` because
/// the lanes, which run on the runtime's worker threads, pull from it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let lengths = fanout::fan_out(vec!["a", "bb", "ccc"])
///     .limit(2)
///     .run(|_ctx, s| async move { Ok::<_, std::convert::Infallible>(s.len()) })
///     .await
///     .unwrap();
/// assert_eq!(lengths, [1, 2, 3]);
/// # }
/// ```
pub fn fan_out<I>(items: I) -> FanOut<Indexed<I::IntoIter>>
where
    I: IntoIterator,
{
    FanOut::new(Indexed(items.into_iter()))
}

/// Starts building a run over keyed inputs: a `HashMap`, a `BTreeMap`, a
/// `Vec` of pairs, any iterator of `(key, item)`. Results and errors carry the
/// keys: one result per input, in input order (the map's iteration order).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::collections::BTreeMap;
///
/// let pages = BTreeMap::from([("home", "/"), ("about", "/about")]);
/// let sizes = fanout::fan_out_keyed(pages)
///     .run(|_ctx, path| async move { Ok::<_, std::convert::Infallible>(path.len()) })
///     .await
///     .unwrap();
/// assert_eq!(sizes, [("about", 6), ("home", 1)]);
/// # }
/// ```
pub fn fan_out_keyed<I, K, V>(items: I) -> FanOut<Keyed<I::IntoIter>>
where
    I: IntoIterator<Item = (K, V)>,
    K: Clone + std::fmt::Debug,
{
    FanOut::new(Keyed(items.into_iter()))
}

/// Starts building a run over a stream of items, pulled as a
/// [`fan_out`] run pulls an iterator: one at a time, only when a slot is
/// free, so the stream's producer is held back while every slot is busy.
/// Results are indexed by position in the stream, as with [`fan_out`].
///
/// The stream is polled by whichever lane has a free slot (on the runtime's
/// worker threads, so it must be `Send + 'static` for async runs); when it
/// has nothing ready, every lane with a free slot waits for it, along with
/// its running tasks. A blocking run polls it on its threads, which park
/// while it has nothing ready (and look for a stop every millisecond): a
/// stream that needs a runtime to make progress must not be given to a
/// blocking run outside one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::stream;
///
/// let doubled = fanout::fan_out_stream(stream::iter(1..=3))
///     .run(|_ctx, n| async move { Ok::<_, std::convert::Infallible>(n * 2) })
///     .await
///     .unwrap();
/// assert_eq!(doubled, [2, 4, 6]);
/// # }
/// ```
pub fn fan_out_stream<St>(stream: St) -> FanOut<Indexed<FromStream<St>>>
where
    St: Stream,
{
    FanOut::new(Indexed(FromStream::new(stream)))
}

/// Starts building a run over a stream of `(key, item)` pairs: as
/// [`fan_out_stream`], with results and errors carrying the keys, as with
/// [`fan_out_keyed`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::stream;
///
/// let pages = stream::iter([("home", "/"), ("about", "/about")]);
/// let sizes = fanout::fan_out_keyed_stream(pages)
///     .run(|_ctx, path| async move { Ok::<_, std::convert::Infallible>(path.len()) })
///     .await
///     .unwrap();
/// assert_eq!(sizes, [("home", 1), ("about", 6)]);
/// # }
/// ```
pub fn fan_out_keyed_stream<St, K, V>(stream: St) -> FanOut<Keyed<FromStream<St>>>
where
    St: Stream<Item = (K, V)>,
    K: Clone + std::fmt::Debug,
{
    FanOut::new(Keyed(FromStream::new(stream)))
}

/// A run being configured: its input, policies and retry policy.
///
/// Made by [`fan_out`] or [`fan_out_keyed`]; consumed by one of six run
/// modes, which differ in where tasks run and what they return:
///
/// | method | tasks | stops on the first failure | returns |
/// |---|---|---|---|
/// | [`run`](FanOut::run) | async, on tokio | yes (fail-fast) | `Result<Vec<T>, Error>` in input order (keyed: `Vec<(K, T)>`) |
/// | [`run_all`](FanOut::run_all) | async | no (collect-all) | a [`Report`] with one outcome per input |
/// | [`stream`](FanOut::stream) | async | no; drop or cancel it to stop | a [`TaskStream`] of outcomes as they complete, or in input order |
/// | [`run_blocking`](FanOut::run_blocking) | closures on scoped threads | yes | as `run` |
/// | [`run_all_blocking`](FanOut::run_all_blocking) | closures on scoped threads | no | as `run_all` |
/// | [`for_each_blocking`](FanOut::for_each_blocking) | closures on scoped threads | no; the consumer stops it | each outcome to a callback, as it completes |
///
/// Every mode guarantees:
/// - **no orphans**: when the run returns (by any path, panics included)
///   every task has finished or been dropped; dropping an async run's future
///   (or its stream) cancels the run's token and aborts every task;
/// - **bounded**: at most `limit` task bodies are alive at once, retries
///   and timeouts included, and inputs are pulled only when a slot is free;
/// - **one outcome per input**: ok, failed, panicked, timed out, cancelled
///   or not started;
/// - **spans**: a `fanout.run` span, child of the caller's current span, and
///   one `fanout.task` span per task (fields `task.index`, `task.key` for
///   keyed input, `task.attempt`, `task.outcome`), closed before the run's.
///
/// Cost per task: a few tens of nanoseconds for a trivial async task, about
/// a twentieth of tokio `JoinSet` + `Semaphore`; the figures, and the
/// command that measures them, are in the repository's `docs/BENCHMARKS.md`.
///
/// The builder is consuming: each setter returns the updated builder.
#[must_use = "a FanOut does nothing until one of its run methods is awaited"]
#[derive(Debug)]
pub struct FanOut<S, R = NoRetry> {
    source: S,
    cfg: Config,
    retry: R,
}

impl<S> FanOut<S, NoRetry> {
    fn new(source: S) -> Self {
        Self {
            source,
            cfg: Config::default(),
            retry: NoRetry,
        }
    }
}

impl<S, R> FanOut<S, R> {
    /// The most task bodies alive at once. Default: [`DEFAULT_LIMIT`](crate::DEFAULT_LIMIT)
    /// (64) for async runs; for blocking runs, the number of CPUs
    /// (`std::thread::available_parallelism`), which is also the number of
    /// threads they use.
    ///
    /// # Panics
    /// If `limit` is 0: a run that may run nothing would hang, so it is
    /// rejected here, when the run is built.
    #[track_caller]
    pub fn limit(mut self, limit: usize) -> Self {
        assert!(
            limit > 0,
            "fanout: limit(0) would never run a task; use a limit of at least 1"
        );
        self.cfg.limit = Some(limit);
        self
    }

    /// A time limit for each attempt of each task, counted from the moment
    /// the attempt starts running (time spent waiting for a slot excluded).
    /// A task over it ends with [`TaskError::TimedOut`](crate::TaskError::TimedOut): a failure,
    /// retried by a [`Retry`] policy. Default: none.
    ///
    /// Needs a runtime with the time driver enabled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.cfg.timeout = Some(timeout);
        self
    }

    /// A time limit for the whole run, counted from its first poll. When it
    /// passes, the run stops as on a cancellation: no new task starts, the
    /// token is cancelled, running tasks get the grace period and are then
    /// aborted. [`run`](FanOut::run) returns an [`Error`] whose cause is
    /// [`Cause::DeadlineExceeded`](crate::Cause::DeadlineExceeded); [`run_all`](FanOut::run_all) reports the
    /// tasks it stopped as cancelled or not started. Default: none.
    ///
    /// Needs a runtime with the time driver enabled.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.cfg.deadline = Some(deadline);
        self
    }

    /// Stops the run when `token` is cancelled (the run watches a child
    /// token, so cancelling the run never cancels `token`). Default: none.
    pub fn cancel_on(mut self, token: &CancellationToken) -> Self {
        self.cfg.external = Some(token.clone());
        self
    }

    /// How long running tasks may go on after the run's token is cancelled
    /// before they are aborted (dropped at their next await point). Tasks
    /// that finish within it keep their results. Default: zero (abort at
    /// once, as `JoinSet` does).
    ///
    /// `Duration::MAX` means never abort: after a stop the run waits for
    /// every running task to return by itself (they still see the token).
    /// Use it when tasks own something that must not be dropped mid-way,
    /// such as a child process they reap.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.cfg.grace = grace;
        self
    }

    /// What a panicking task does to the run. Default
    /// [`PanicPolicy::Propagate`].
    pub fn panics(mut self, policy: PanicPolicy) -> Self {
        self.cfg.panics = policy;
        self
    }

    /// Keeps `progress` up to date while the run goes. Default: none.
    pub fn progress(mut self, progress: &Progress) -> Self {
        self.cfg.progress = Some(progress.clone());
        self
    }

    /// How many finished results a [`stream`](FanOut::stream) may hold for
    /// its consumer on top of its running tasks: results handed over but not
    /// taken yet and, in [`Order::Input`], results waiting for an earlier
    /// input (the reorder window). At most `limit + window` inputs are in a
    /// stream at once, running or finished and not taken; past that no new
    /// task starts until the consumer takes some, so a slow consumer slows
    /// the starting of tasks, never the polling of running ones, and memory
    /// stays bounded whatever the number of inputs. With a window of 0 a
    /// waiting result holds its task's slot, as in `futures`'
    /// `buffered(limit)`: at most `limit` results in memory. Default: 8 ×
    /// `limit`; lower it when results are large. Other run modes ignore it:
    /// they collect results as tasks finish.
    ///
    /// Why 8 × `limit`: a result crosses from the thread that ran its task
    /// to the consumer's, and with no window the lanes waited for the
    /// consumer after every batch, which cost as much as the tasks;
    /// `docs/BENCHMARKS.md` has the figures.
    pub fn window(mut self, window: usize) -> Self {
        self.cfg.window = Some(window);
        self
    }

    /// The number of lanes (tokio tasks that drive the task futures).
    /// Default: one per runtime worker thread, at most `limit`. An engine
    /// detail, exposed for the project's own tests and benchmarks.
    #[doc(hidden)]
    #[track_caller]
    pub fn lanes(mut self, lanes: usize) -> Self {
        assert!(
            lanes > 0,
            "fanout: lanes(0) would never run a task; use at least 1"
        );
        self.cfg.lanes = Some(lanes);
        self
    }

    /// Retries failed attempts as `policy` says. Requires `Item: Clone`.
    pub fn retry<P>(self, policy: Retry<P>) -> FanOut<S, Retry<P>> {
        FanOut {
            source: self.source,
            cfg: self.cfg,
            retry: policy,
        }
    }

    pub(crate) fn cfg_ref(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn into_parts(self) -> (S, Config, R) {
        (self.source, self.cfg, self.retry)
    }

    pub(crate) fn run_span(&self, mode: &'static str, limit: usize) -> tracing::Span {
        run_span(&tracing::Span::current(), mode, limit)
    }
}

fn run_span(parent: &tracing::Span, mode: &'static str, limit: usize) -> tracing::Span {
    tracing::info_span!(
        parent: parent,
        "fanout.run",
        fanout.mode = mode,
        fanout.limit = limit,
        fanout.outcome = tracing::field::Empty,
    )
}

/// Runs `body` inside a `fanout.run` span whose parent is the span current
/// when the future is first polled (so `.instrument(span)` on the run's
/// future works), or, if none is current then, the span current when the
/// run was built (so a future built in a span and spawned keeps it).
async fn in_run_span<B: Future>(
    built_in: tracing::Span,
    mode: &'static str,
    limit: usize,
    body: impl FnOnce(tracing::Span) -> B,
) -> B::Output {
    let polled_in = tracing::Span::current();
    let parent = if polled_in.is_none() {
        built_in
    } else {
        polled_in
    };
    let span = run_span(&parent, mode, limit);
    body(span.clone()).instrument(span).await
}

impl<S: Input, R> FanOut<S, R> {
    /// Runs the tasks fail-fast and returns their results in input order:
    /// `out[i]` is the result of input `i`, whatever order tasks finish in;
    /// keyed input gives `(key, result)` pairs in input order, exactly one
    /// per input (collect them into a map if you like).
    ///
    /// On the first failure observed (an `Err`, a panic, a timeout), or when
    /// the external token is cancelled or the deadline passes, no new task
    /// starts, the run's token is cancelled, running tasks get the grace
    /// period and are then aborted, and the error names the root cause with
    /// its task's index and key; tasks that were only cancelled never pose as
    /// the cause. Failures are observed in completion order, so the cause is
    /// the first to *fail*, not the lowest index.
    ///
    /// The future returns only once every task has finished or been dropped.
    /// Dropping it cancels the token and aborts every task. The run's span is
    /// a child of the span current when the future is first polled, or else
    /// of the one current when `run` was called.
    ///
    /// # Errors
    /// An [`Error`] with the root cause, the other failures, and the count of
    /// each outcome. Inputs pulled but not started count as not started; so
    /// do the inputs never pulled, when the iterator knows how many are left
    /// (`ExactSizeIterator`-like size hints: a `Vec`, a range, a map). The
    /// run never drains the rest of the iterator, so an endless or
    /// side-effecting iterator is safe.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`] (the default) the first task panic is
    /// re-raised with its original payload after every task has been
    /// dropped; a panic of the input iterator likewise. Panics if called
    /// outside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let err = fanout::fan_out(0..10)
    ///     .run(|_ctx, n| async move { if n == 3 { Err("three") } else { Ok(n) } })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.key(), Some(&3));
    /// assert_eq!(err.task_error(), Some(&"three"));
    ///
    /// let pairs = fanout::fan_out_keyed([("a", 1), ("b", 2)])
    ///     .run(|_ctx, n| async move { Ok::<_, std::convert::Infallible>(n * 10) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(pairs, [("a", 10), ("b", 20)]);
    /// # }
    /// ```
    pub fn run<T, E, F, Fut>(
        self,
        f: F,
    ) -> impl Future<Output = Result<S::Results<T>, Error<S::Key, E>>>
    where
        S: Send + 'static,
        S::Key: 'static,
        S::Item: 'static,
        F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        R: RetryPolicy<S::Item, E>,
    {
        let progress = self.cfg.progress.clone();
        let panics = self.cfg.panics;
        let limit = self.cfg.async_limit();
        in_run_span(
            tracing::Span::current(),
            "fail_fast",
            limit,
            move |span| async move {
                let joined =
                    engine::collect(self.source, self.cfg, self.retry, f, true, span.clone()).await;
                engine::finish::fail_fast(
                    &joined.shared,
                    joined.collected,
                    panics,
                    progress.as_ref(),
                    &span,
                )
                .map(S::results)
            },
        )
    }

    /// Runs every task, never stopping on a failure, and reports exactly one
    /// outcome per input, in input order.
    ///
    /// The run stops early only when the external token is cancelled, the
    /// deadline passes, or (under [`PanicPolicy::Propagate`]) a task panics;
    /// then running tasks are cancelled (after the grace period), and every
    /// input left is reported as
    /// [`TaskError::NotStarted`](crate::TaskError::NotStarted), so the input
    /// must be finite.
    ///
    /// # Panics
    /// Re-raises, after every task has been dropped, the first task panic
    /// observed under [`PanicPolicy::Propagate`], or a panic of the input
    /// iterator. Panics if called outside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let report = fanout::fan_out(1..=4)
    ///     .run_all(|_ctx, n| async move { if n % 2 == 0 { Err(n) } else { Ok(n * 10) } })
    ///     .await;
    /// assert_eq!(report.counts().succeeded, 2);
    /// assert_eq!(report.counts().failed, 2);
    /// assert!(matches!(report.outcomes()[1], (1, Err(fanout::TaskError::Failed(2)))));
    /// # }
    /// ```
    pub fn run_all<T, E, F, Fut>(self, f: F) -> impl Future<Output = Report<S::Key, T, E>>
    where
        S: Send + 'static,
        S::Key: 'static,
        S::Item: 'static,
        F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        R: RetryPolicy<S::Item, E>,
    {
        let progress = self.cfg.progress.clone();
        let panics = self.cfg.panics;
        let limit = self.cfg.async_limit();
        in_run_span(
            tracing::Span::current(),
            "all",
            limit,
            move |span| async move {
                let joined =
                    engine::collect(self.source, self.cfg, self.retry, f, false, span.clone())
                        .await;
                // The inputs never pulled are reported as not started; not
                // when a panic is about to be re-raised instead.
                let mut rest = Vec::new();
                if !(panics == PanicPolicy::Propagate && joined.collected.has_panic()) {
                    poll_fn(|cx| joined.shared.poll_rest(cx, &mut rest)).await;
                }
                engine::finish::report(
                    &joined.shared,
                    joined.collected,
                    rest,
                    panics,
                    progress.as_ref(),
                    &span,
                )
            },
        )
    }

    /// Runs tasks and hands their outcomes over as a [`TaskStream`], in the
    /// given [`Order`]. A failure does not stop the stream; drop it, or call
    /// [`TaskStream::cancel`], to stop.
    ///
    /// Memory stays O(limit) whatever the number of inputs: at most
    /// `limit + window` inputs are in the stream at once, running or finished
    /// and not taken ([`window`](FanOut::window), default 8 × `limit`); past
    /// that no new task starts, so a slow consumer slows the starting of
    /// tasks, never the polling of running ones.
    ///
    /// # Panics
    /// Panics if called outside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use futures_util::StreamExt;
    /// use fanout::Order;
    ///
    /// let mut results = fanout::fan_out(0..100)
    ///     .limit(8)
    ///     .stream(Order::Input, |_ctx, n| async move { Ok::<_, std::convert::Infallible>(n * 2) });
    /// let mut sum = 0;
    /// while let Some((index, outcome)) = results.next().await {
    ///     assert_eq!(outcome.unwrap(), index * 2);
    ///     sum += index;
    /// }
    /// assert_eq!(sum, 4950);
    /// # }
    /// ```
    pub fn stream<T, E, F, Fut>(self, order: Order, f: F) -> TaskStream<S::Key, T, E>
    where
        S: Send + 'static,
        S::Key: 'static,
        S::Item: 'static,
        F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        R: RetryPolicy<S::Item, E>,
    {
        let mode = match order {
            Order::Completion => "stream",
            Order::Input => "stream_ordered",
        };
        let span = self.run_span(mode, self.cfg.async_limit());
        TaskStream::start(self.source, self.cfg, self.retry, f, order, span)
    }
}
