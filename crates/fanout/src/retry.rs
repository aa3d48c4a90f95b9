//! Retry policies: how many attempts, which errors, and how long to back off.

use std::fmt;
use std::time::Duration;

use crate::task_error::TaskError;

/// No retries: each task runs once. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetry;

/// Retry failed tasks with exponential backoff.
///
/// A task is attempted at most [`attempts`](Retry::attempts) times. After a
/// failed attempt it is retried when the error is
/// [`Failed`](TaskError::Failed) and the predicate accepts it, or when the
/// attempt [timed out](TaskError::TimedOut); a panic is never retried. Before
/// attempt `n + 1` the task sleeps `min(initial · multiplier^(n-1), max)`.
///
/// Semantics the run guarantees:
/// - the backoff sleep keeps the task's slot, so retries never let more than
///   `limit` tasks be alive, and never let a later input overtake;
/// - the sleep ends early, and no further attempt starts, as soon as the run
///   is cancelled (a sibling failed, the external token, the deadline): the
///   task then ends with the last attempt's error, which does not stop the
///   run again;
/// - the per-task timeout applies to each attempt separately;
/// - [`TaskCtx::attempt`](crate::TaskCtx::attempt) tells the task which
///   attempt it is (from 1).
///
/// Retrying needs the input again, so a run with a `Retry` policy requires
/// `Item: Clone`; the item is cloned before every attempt but the last
/// possible one.
///
/// ```
/// use std::time::Duration;
/// use fanout::Retry;
///
/// #[derive(Debug)]
/// enum MyError { Transient, Fatal }
///
/// let policy = Retry::attempts(4)
///     .backoff(Duration::from_millis(10))
///     .max_backoff(Duration::from_secs(1))
///     .retry_if(|e: &MyError| matches!(e, MyError::Transient));
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct Retry<P = RetryAll> {
    attempts: u32,
    initial: Duration,
    max: Duration,
    multiplier: u32,
    predicate: P,
}

/// The default retry predicate of [`Retry`]: every error is retried.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryAll;

impl Retry<RetryAll> {
    /// At most `attempts` attempts per task (the first run included), every
    /// error retried, backoff starting at 100 ms, doubling, capped at 10 s.
    ///
    /// # Panics
    /// If `attempts` is 0: a task runs at least once.
    #[track_caller]
    pub fn attempts(attempts: u32) -> Self {
        assert!(
            attempts >= 1,
            "fanout: Retry::attempts(0) is invalid: the count includes the first attempt, so use 1 for no retries"
        );
        Self {
            attempts,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2,
            predicate: RetryAll,
        }
    }
}

impl<P> Retry<P> {
    /// The delay before the second attempt. Default 100 ms.
    pub fn backoff(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// The longest delay between two attempts. Default 10 s.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The factor the delay grows by after each attempt. Default 2; 1 gives
    /// a constant delay.
    pub fn multiplier(mut self, multiplier: u32) -> Self {
        self.multiplier = multiplier.max(1);
        self
    }

    /// Retry only the errors for which `predicate` returns `true`. Timeouts
    /// are retried regardless; panics never are.
    pub fn retry_if<E, Q>(self, predicate: Q) -> Retry<Q>
    where
        Q: Fn(&E) -> bool + Send + Sync + 'static,
    {
        Retry {
            attempts: self.attempts,
            initial: self.initial,
            max: self.max,
            multiplier: self.multiplier,
            predicate,
        }
    }

    /// The delay after failed attempt `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.saturating_pow(attempt.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl<P> fmt::Debug for Retry<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("attempts", &self.attempts)
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("multiplier", &self.multiplier)
            .finish_non_exhaustive()
    }
}

/// What a run needs from a retry policy. Implemented by [`NoRetry`] and
/// [`Retry`]; you do not need to implement it.
pub trait RetryPolicy<I, E>: Send + Sync + 'static {
    /// The most attempts a task gets.
    fn max_attempts(&self) -> u32;

    /// The input for the next attempt: moved out on the last possible
    /// attempt, cloned otherwise.
    fn item_for_attempt(item: &mut Option<I>, last: bool) -> I;

    /// The delay before retrying after failed attempt `attempt`, or `None`
    /// to give up with this error.
    fn retry_after(&self, attempt: u32, error: &TaskError<E>) -> Option<Duration>;
}

impl<I, E> RetryPolicy<I, E> for NoRetry {
    fn max_attempts(&self) -> u32 {
        1
    }

    fn item_for_attempt(item: &mut Option<I>, _last: bool) -> I {
        item.take().expect("fanout: NoRetry runs each task once")
    }

    fn retry_after(&self, _attempt: u32, _error: &TaskError<E>) -> Option<Duration> {
        None
    }
}

/// Whether a retry predicate accepts an error. Implemented for [`RetryAll`]
/// and for closures `Fn(&E) -> bool`.
pub trait RetryPredicate<E>: Send + Sync + 'static {
    /// `true` to retry after `error`.
    fn accepts(&self, error: &E) -> bool;
}

impl<E> RetryPredicate<E> for RetryAll {
    fn accepts(&self, _error: &E) -> bool {
        true
    }
}

impl<E, F: Fn(&E) -> bool + Send + Sync + 'static> RetryPredicate<E> for F {
    fn accepts(&self, error: &E) -> bool {
        self(error)
    }
}

impl<I: Clone, E, P: RetryPredicate<E>> RetryPolicy<I, E> for Retry<P> {
    fn max_attempts(&self) -> u32 {
        self.attempts
    }

    fn item_for_attempt(item: &mut Option<I>, last: bool) -> I {
        if last {
            item.take().expect("fanout: no attempt after the last one")
        } else {
            item.clone().expect("fanout: no attempt after the last one")
        }
    }

    fn retry_after(&self, attempt: u32, error: &TaskError<E>) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        let retry = match error {
            TaskError::Failed(e) => self.predicate.accepts(e),
            TaskError::TimedOut(_) => true,
            _ => false,
        };
        retry.then(|| self.delay(attempt))
    }
}
