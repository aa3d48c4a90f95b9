//! The blocking run modes of [`FanOut`].

use std::ops::ControlFlow;

use super::BlockingCtx;
use crate::engine::finish;
use crate::error::{Cause, Error};
use crate::fan_out::FanOut;
use crate::report::Report;
use crate::retry::RetryPolicy;
use crate::source::Input;
use crate::task_error::Outcome;

impl<S, R> FanOut<S, R>
where
    S: Input + Send,
{
    /// Runs a synchronous closure for every input on `limit` scoped threads
    /// (default: the number of CPUs), never stopping on a failure, and
    /// reports exactly one outcome per input, in input order.
    ///
    /// The blocking twin of [`run_all`](FanOut::run_all); see
    /// [`run_blocking`](FanOut::run_blocking) for what blocking runs share.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`](crate::PanicPolicy::Propagate), re-raises
    /// the first closure panic after every closure has returned; likewise a
    /// panic of the input iterator.
    ///
    /// ```
    /// let report = fanout::fan_out(["1", "x", "3"])
    ///     .run_all_blocking(|_ctx, s| s.parse::<u32>());
    /// assert_eq!(report.counts().succeeded, 2);
    /// assert!(report.outcomes()[1].1.is_err());
    /// ```
    pub fn run_all_blocking<T, E, F>(self, f: F) -> Report<S::Key, T, E>
    where
        F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
        T: Send,
        E: Send,
        R: RetryPolicy<S::Item, E>,
    {
        let span = self.run_span("all_blocking", self.cfg_ref().blocking_limit());
        let (source, cfg, retry) = self.into_parts();
        span.in_scope(|| {
            let (c, shared) = super::collect(source, &cfg, &retry, &f, false, &span);
            let rest = if cfg.panics == crate::PanicPolicy::Propagate && c.has_panic() {
                Vec::new()
            } else {
                super::rest_of(&shared)
            };
            finish::report(&shared, c, rest, cfg.panics, cfg.progress.as_ref(), &span)
        })
    }

    /// Runs a synchronous closure for every input on `limit` scoped threads
    /// and calls `each` on the caller's thread with every outcome as it
    /// completes: the blocking counterpart of a completion-order
    /// [`stream`](FanOut::stream).
    ///
    /// `each` returning [`ControlFlow::Break`] stops the run (no new start,
    /// running closures see [`BlockingCtx::is_cancelled`]); the outcomes of
    /// closures still running are then delivered too. Memory is O(limit):
    /// the threads wait while `each` is busy. Returns why the run stopped
    /// early ([`Cause::Cancelled`] after a `Break` or the external token,
    /// [`Cause::DeadlineExceeded`]), or `None` if every input ran.
    ///
    /// # Panics
    /// Re-raises a panic of `each` after every closure has returned, and,
    /// under [`PanicPolicy::Propagate`](crate::PanicPolicy::Propagate), the
    /// first closure panic (then `each` sees no further outcome).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    ///
    /// let mut sum = 0u64;
    /// fanout::fan_out(1..=1000u64).for_each_blocking(
    ///     |_ctx, n| Ok::<_, std::convert::Infallible>(n * n),
    ///     |_index, outcome| {
    ///         sum += outcome.unwrap();
    ///         ControlFlow::Continue(())
    ///     },
    /// );
    /// assert_eq!(sum, 333_833_500);
    /// ```
    pub fn for_each_blocking<T, E, F, G>(self, f: F, each: G) -> Option<Cause<S::Key, E>>
    where
        F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
        T: Send,
        E: Send,
        R: RetryPolicy<S::Item, E>,
        G: FnMut(S::Key, Outcome<T, E>) -> ControlFlow<()>,
    {
        let span = self.run_span("each_blocking", self.cfg_ref().blocking_limit());
        let (source, cfg, retry) = self.into_parts();
        span.in_scope(|| super::for_each(source, &cfg, &retry, &f, &span, each))
            .map(crate::engine::Reason::as_cause)
    }
}

impl<S, R> FanOut<S, R>
where
    S: Input + Send,
{
    /// Runs a synchronous closure for every input on `limit` scoped threads
    /// (default: the number of CPUs), fail-fast, and returns the results in
    /// input order: `out[i]` is the result of input `i` (keyed input gives
    /// `(key, result)` pairs in input order, one per input).
    ///
    /// It uses `limit` threads, or one per input when the input is known to
    /// be shorter. No async runtime is needed. The closure and the inputs may borrow from
    /// the caller's stack: the call returns only when every closure that
    /// started has returned. What the async [`run`](FanOut::run) promises holds
    /// here too, with these differences, since threads cannot be interrupted:
    ///
    /// - **Cancellation is cooperative.** After the first failure no
    ///   new closure starts (each input is checked right before its closure
    ///   starts) and the rest are counted as not started; running closures see
    ///   [`BlockingCtx::is_cancelled`] turn `true` and should return early.
    ///   There is no abort, so no grace period: the call waits for them.
    /// - **Timeouts are cooperative.** An attempt that returns after its
    ///   timeout ends as [`TimedOut`](crate::TaskError::TimedOut), whatever
    ///   it returned; `is_cancelled` turns `true` when the timeout passes.
    /// - The external token and the deadline are checked every millisecond by
    ///   the caller's thread, which otherwise only waits.
    /// - Retry backoff sleeps on the worker thread and ends early on a stop.
    ///
    /// Inputs are pulled in adaptive chunks (1 to 64), so that microsecond
    /// closures take the input lock rarely; cost per input is measured in
    /// `docs/BENCHMARKS.md`.
    ///
    /// # Errors
    /// An [`Error`] with the root cause (the first failure observed, named
    /// by its index and key), the other failures and the count of each
    /// outcome.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`](crate::PanicPolicy::Propagate) (the
    /// default), re-raises the first closure panic, with its payload, after
    /// every closure has returned; likewise a panic of the input iterator.
    ///
    /// ```
    /// let words = vec![String::from("fan"), String::from("out")];
    /// let suffix = String::from("!"); // borrowed by every closure
    /// let out = fanout::fan_out(&words)
    ///     .limit(2)
    ///     .run_blocking(|_ctx, w| Ok::<_, std::convert::Infallible>(format!("{w}{suffix}")))
    ///     .unwrap();
    /// assert_eq!(out, ["fan!", "out!"]);
    /// ```
    ///
    /// A closure that captures something that cannot be shared between
    /// threads is rejected at compile time:
    ///
    /// ```compile_fail
    /// let counter = std::rc::Rc::new(std::cell::Cell::new(0));
    /// let _ = fanout::fan_out(0..10).run_blocking(|_ctx, n| {
    ///     counter.set(counter.get() + n); // `Rc<Cell<i32>>` cannot be shared between threads safely
    ///     Ok::<_, ()>(n)
    /// });
    /// ```
    pub fn run_blocking<T, E, F>(self, f: F) -> Result<S::Results<T>, Error<S::Key, E>>
    where
        F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
        T: Send,
        E: Send,
        R: RetryPolicy<S::Item, E>,
    {
        let span = self.run_span("fail_fast_blocking", self.cfg_ref().blocking_limit());
        let (source, cfg, retry) = self.into_parts();
        span.in_scope(|| {
            let (c, shared) = super::collect(source, &cfg, &retry, &f, true, &span);
            finish::fail_fast(&shared, c, cfg.panics, cfg.progress.as_ref(), &span)
        })
        .map(S::results)
    }
}
