//! One task: its attempts, and the wrapper that catches its panics and
//! reports it when it is aborted.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tracing::Span;

use super::Env;
use crate::ctx::{CtxShared, TaskCtx};
use crate::panic::Panic;
use crate::progress::Progress;
use crate::retry::RetryPolicy;
use crate::sync::{AtomicBool, Mutex, Ordering, PoisonError};
use crate::task_error::{Outcome, TaskError};

/// A finished task: its index, key and outcome.
pub(crate) type Done<K, T, E> = (usize, K, Outcome<T, E>);

/// Runs the attempts of one task: calls the task function, applies the
/// per-attempt timeout and the retry policy. Returns the outcome and the
/// number of attempts made.
pub(crate) async fn attempts<K, I, T, E, F, Fut, R, H>(
    env: &Env<F, R, H>,
    shared: &Arc<CtxShared>,
    stopped: &AtomicBool,
    index: usize,
    key: K,
    item: I,
) -> (Outcome<T, E>, u32)
where
    K: Clone,
    F: Fn(TaskCtx<K>, I) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: RetryPolicy<I, E>,
{
    let max = env.retry.max_attempts();
    let mut item = Some(item);
    let mut key = Some(key);
    let mut attempt = 1;
    loop {
        let last = attempt >= max;
        let ctx = TaskCtx {
            index,
            key: if last {
                key.take().expect("key present until the last attempt")
            } else {
                key.clone().expect("key present until the last attempt")
            },
            attempt,
            shared: shared.clone(),
        };
        let fut = (env.f)(ctx, R::item_for_attempt(&mut item, last));
        let res = match env.timeout {
            None => fut.await.map_err(TaskError::Failed),
            Some(d) => match tokio::time::timeout(d, fut).await {
                Ok(r) => r.map_err(TaskError::Failed),
                Err(_) => Err(TaskError::TimedOut(d)),
            },
        };
        let err = match res {
            Ok(v) => return (Ok(v), attempt),
            Err(e) => e,
        };
        if last || stopped.load(Ordering::Acquire) {
            return (Err(err), attempt);
        }
        let Some(delay) = env.retry.retry_after(attempt, &err) else {
            return (Err(err), attempt);
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.token.cancelled() => return (Err(err), attempt),
        }
        attempt += 1;
    }
}

pin_project! {
    /// A task's body. Without a timeout or retries (the common case) it
    /// calls the task function on its first poll and polls the user's future
    /// in place; otherwise it runs [`attempts`], boxed so that the timer and
    /// retry state do not make every task's slot bigger.
    #[project = BodyProj]
    pub(crate) enum Body<'a, F, K, I, Fut, Slow> {
        Start { f: &'a F, ctx: Option<TaskCtx<K>>, item: Option<I> },
        Run { #[pin] fut: Fut },
        Slow { fut: Pin<Box<Slow>> },
    }
}

impl<F, K, I, T, E, Fut, Slow> Future for Body<'_, F, K, I, Fut, Slow>
where
    F: Fn(TaskCtx<K>, I) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    Slow: Future<Output = (Outcome<T, E>, u32)>,
{
    type Output = (Outcome<T, E>, u32);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                BodyProj::Start { f, ctx, item } => {
                    let ctx = ctx.take().expect("a task starts once");
                    let item = item.take().expect("a task starts once");
                    let fut = f(ctx, item);
                    self.set(Body::Run { fut });
                }
                BodyProj::Run { fut } => {
                    return fut.poll(cx).map(|r| (r.map_err(TaskError::Failed), 1));
                }
                BodyProj::Slow { fut } => return fut.as_mut().poll(cx),
            }
        }
    }
}

/// Drops a task's body in place, catching a panic from its destructor.
fn drop_body<B>(body: Pin<&mut Option<B>>) -> Option<Panic> {
    let mut body = body;
    catch_unwind(AssertUnwindSafe(move || body.set(None)))
        .err()
        .map(Panic::new)
}

pin_project! {
    /// Wraps a task's body so that:
    /// - the body is never polled once the run has stopped before its first
    ///   poll (the task is then "not started");
    /// - a panic while polling or dropping the body becomes the task's outcome;
    /// - a task dropped before completion (aborted) reports itself as
    ///   cancelled or not started through the lane's `aborted` list, so that
    ///   every input still gets exactly one outcome.
    pub(crate) struct Task<'a, K, T, E, B> {
        index: usize,
        key: Option<K>,
        started: bool,
        #[pin]
        body: Option<B>,
        lane: &'a LaneRefs<'a, K, T, E>,
        span: Span,
    }

    impl<'a, K, T, E, B> PinnedDrop for Task<'a, K, T, E, B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let Some(key) = this.key.take() else { return };
            let _entered = this.span.enter();
            let outcome = match drop_body(this.body) {
                Some(p) => TaskError::Panicked(p),
                None if *this.started => TaskError::Cancelled,
                None => TaskError::NotStarted,
            };
            this.span.record("task.outcome", outcome.kind());
            this.lane
                .aborted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((*this.index, key, Err(outcome)));
        }
    }
}

/// What every task of a lane refers to.
pub(crate) struct LaneRefs<'a, K, T, E> {
    pub(crate) stopped: &'a AtomicBool,
    /// With no grace period a stop aborts at once: a task must not be polled
    /// again, or a body woken by the token could still return.
    pub(crate) abort_on_stop: bool,
    /// Where a task dropped before completion reports itself.
    pub(crate) aborted: Mutex<Vec<Done<K, T, E>>>,
    /// Whether a failure stops the run (fail-fast), and whether a
    /// panic does (`PanicPolicy::Propagate`). A task that fails so raises
    /// `stopped` itself, the moment it finishes, so that no other lane
    /// starts a task while this lane gets round to delivering the failure
    /// (which records the reason and cancels the token).
    pub(crate) stop_on_failure: bool,
    pub(crate) stop_on_panic: bool,
    pub(crate) progress: Option<&'a Progress>,
}

impl<'a, K, T, E, B> Task<'a, K, T, E, B> {
    pub(crate) fn new(
        index: usize,
        key: K,
        body: B,
        lane: &'a LaneRefs<'a, K, T, E>,
        span: Span,
    ) -> Self {
        Self {
            index,
            key: Some(key),
            started: false,
            body: Some(body),
            lane,
            span,
        }
    }
}

impl<K, T, E, B> Future for Task<'_, K, T, E, B>
where
    B: Future<Output = (Outcome<T, E>, u32)>,
{
    type Output = Done<K, T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let stopped = this.lane.stopped.load(Ordering::Acquire);
        if stopped && (!*this.started || this.lane.abort_on_stop) {
            let outcome = match drop_body(this.body.as_mut()) {
                Some(p) => TaskError::Panicked(p),
                None if *this.started => TaskError::Cancelled,
                None => TaskError::NotStarted,
            };
            this.span.record("task.outcome", outcome.kind());
            let key = this.key.take().expect("task polled after completion");
            return Poll::Ready((*this.index, key, Err(outcome)));
        }
        if !*this.started {
            *this.started = true;
            if let Some(p) = this.lane.progress {
                p.started();
            }
        }
        let body = this.body.as_mut();
        let polled = catch_unwind(AssertUnwindSafe(move || {
            body.as_pin_mut()
                .expect("task polled after completion")
                .poll(cx)
        }));
        let mut outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready((outcome, attempts))) => {
                this.span.record("task.attempt", attempts);
                outcome
            }
            Err(payload) => Err(TaskError::Panicked(Panic::new(payload))),
        };
        // Drop the body here, not later inside the lane, so that a panicking
        // destructor is reported as this task's panic.
        if let Some(p) = drop_body(this.body.as_mut()) {
            if !matches!(outcome, Err(TaskError::Panicked(_))) {
                outcome = Err(TaskError::Panicked(p));
            }
        }
        this.span.record(
            "task.outcome",
            match &outcome {
                Ok(_) => "ok",
                Err(e) => e.kind(),
            },
        );
        if let Err(e) = &outcome {
            let lane = this.lane;
            if e.is_failure() && (lane.stop_on_failure || (e.is_panic() && lane.stop_on_panic)) {
                lane.stopped.store(true, Ordering::Release);
            }
        }
        let key = this.key.take().expect("task polled after completion");
        Poll::Ready((*this.index, key, outcome))
    }
}
