//! One lane: a tokio task that pulls inputs while it has free slots and
//! drives its task futures.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::slab::Slab;
use super::task::{attempts, Body, Done, LaneRefs, Task};
use super::{Env, Pulled, Reason, RunState};
use crate::ctx::{CtxShared, TaskCtx};
use crate::retry::RetryPolicy;
use crate::source::SendInput;
use crate::sync::{AtomicUsize, Mutex, Ordering, PoisonError};

/// Where a lane delivers finished tasks.
pub(crate) trait Collector<K, T, E>: Send {
    /// One finished task. `seq` is set for failures: their global
    /// observation number.
    fn push(&mut self, done: Done<K, T, E>, seq: Option<usize>);

    /// The failure pushed with `seq` is the one that stopped the run.
    fn set_root(&mut self, _seq: usize) {}

    /// For streams: the lane's results that wait for the consumer, and how
    /// many may.
    fn waiting(&self) -> Option<&Waiting> {
        None
    }

    /// Results delivered but not yet handed over (streams batch them).
    fn pending(&self) -> usize {
        0
    }

    /// Hands over what `push` buffered; called before the lane waits or
    /// yields.
    fn flush(&mut self) {}

    /// Called once, after the lane's last delivery.
    fn close(&mut self) {}

    /// `true` if the consumer sees outcomes in the order they are delivered
    /// (a stream): then a stop must not be published before the failure
    /// that causes it has been handed over, so tasks do not raise the stop
    /// flag themselves.
    fn ordered(&self) -> bool {
        false
    }
}

/// A stream lane's results handed over but not taken by the consumer yet,
/// how many may wait without holding a slot (the lane's share of the
/// stream's window), and the signal the consumer gives when it takes some.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    pub(crate) held: AtomicUsize,
    pub(crate) room: usize,
    pub(crate) taken: Notify,
}

/// How many tasks a lane may finish without waiting before it yields to
/// the runtime once.
const YIELD_EVERY: usize = 1024;

enum Event {
    /// Finished tasks were moved to the lane's `done` buffer.
    Done,
    Stop,
    GraceOver,
    /// A stream's consumer took results, freeing slots they held.
    Taken,
    /// A stream input had inputs (now in `pulled`), or ended.
    Input,
}

/// Pulls inputs while the lane has free slots and the run has not stopped,
/// drives the tasks, delivers their outcomes, and on a stop waits up to the
/// grace period before dropping (aborting) what still runs.
pub(crate) async fn lane<S, F, Fut, T, E, R, C>(
    shared: Arc<RunState<S>>,
    env: Arc<Env<F, R>>,
    cap: usize,
    mut sink: C,
) -> C
where
    S: SendInput,
    F: Fn(TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    R: RetryPolicy<S::Item, E>,
    C: Collector<S::Key, T, E>,
{
    // The contexts of this lane's tasks share one `Arc`, so that building a
    // context touches a lane-local counter only.
    let ctx_shared = Arc::new(CtxShared {
        token: shared.token.clone(),
        blocking: shared.blocking.clone(),
    });
    let token = &ctx_shared.token;
    let refs = LaneRefs {
        stopped: &shared.stopped,
        abort_on_stop: env.grace.is_zero(),
        aborted: Mutex::new(Vec::new()),
        stop_on_failure: env.stop_on_failure && !sink.ordered(),
        stop_on_panic: env.panics == crate::config::PanicPolicy::Propagate && !sink.ordered(),
        progress: env.progress.as_ref(),
    };
    let aborted = &refs.aborted;
    let mut tasks = Slab::new();
    // Tasks finished since the lane last delivered: every task ready in one
    // wake-up is delivered before the lane pulls again, so a burst of
    // completions takes the input lock once.
    let mut done = Vec::new();
    // Inputs pulled under the lock, started after it is released: a task's
    // first poll runs user code, which must not hold up the other lanes.
    let mut pulled = Vec::new();
    let mut since_yield = 0usize;
    let fast = env.timeout.is_none() && env.retry.max_attempts() == 1;
    let mut cancelled = pin!(token.cancelled());
    let mut grace = pin!(None::<tokio::time::Sleep>);
    let mut stopping = false;
    let mut exhausted = false;
    // A stream input had nothing ready when last pulled: the lane waits for
    // it too (the stream wakes every lane waiting for it).
    let mut input_pending = false;
    loop {
        // The external token is watched by `cancelled` below, but a task that
        // ended on it may be delivered first: check it before pulling more.
        // Only paid when the run has an external token.
        if !stopping
            && env
                .external
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
        {
            shared.stop(Reason::External);
        }
        if !stopping && shared.is_stopped() {
            stopping = true;
            if env.grace.is_zero() {
                tasks.clear();
                deliver_aborted(&shared, &env, &mut sink, aborted);
            } else {
                grace.set(Some(tokio::time::sleep(env.grace)));
            }
        }
        // A stream's results waiting for the consumer beyond the lane's share
        // of the window hold slots: a stream holds at most `limit + window`
        // inputs, running or finished and not taken.
        let over = sink.waiting().map_or(0, |w| {
            (w.held.load(Ordering::Acquire) + sink.pending()).saturating_sub(w.room)
        });
        // Inputs pulled while waiting (an `Event::Input`) are not started
        // yet: they hold slots too.
        let free = cap.saturating_sub(tasks.len() + pulled.len() + over);
        if !stopping && !exhausted && free > 0 {
            let got = poll_fn(|cx| {
                Poll::Ready(shared.pull(free, cx, |index, key, item| {
                    pulled.push((index, key, item));
                }))
            })
            .await;
            exhausted = got == Pulled::Exhausted;
            input_pending = got == Pulled::Pending;
        }
        // Every input pulled gets a task, even after a stop: its first poll
        // then reports it as not started, so that each input has an outcome.
        {
            for (index, key, item) in pulled.drain(..) {
                let span = S::task_span(&env.span, index, &key);
                let body = if fast {
                    Body::Start {
                        f: &env.f,
                        ctx: Some(TaskCtx {
                            index,
                            key: key.clone(),
                            attempt: 1,
                            shared: ctx_shared.clone(),
                        }),
                        item: Some(item),
                    }
                } else {
                    Body::Slow {
                        fut: Box::pin(attempts(
                            &env,
                            &ctx_shared,
                            &shared.stopped,
                            index,
                            key.clone(),
                            item,
                        )),
                    }
                };
                if let Some(d) = tasks.start(Task::new(index, key, body, &refs, span)) {
                    done.push(d);
                }
            }
        }
        if !done.is_empty() {
            since_yield += done.len();
            for d in done.drain(..) {
                deliver(&shared, &env, &mut sink, d);
            }
            // Tasks that finish at once never make the lane wait: give the
            // worker thread back to tokio now and then.
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                sink.flush();
                tokio::task::yield_now().await;
            }
            continue;
        }
        if tasks.is_empty() && (exhausted || stopping) {
            break;
        }
        sink.flush();
        let wants_input = input_pending && !stopping && !exhausted && free > 0;
        // Listen for the consumer whenever results hold slots: a slot it
        // frees must be refilled at once, not when a task next ends.
        let waiting = sink.waiting().filter(|_| over > 0);
        let event = {
            let mut taken = pin!(async move {
                match waiting {
                    Some(w) => w.taken.notified().await,
                    None => std::future::pending().await,
                }
            });
            poll_fn(|cx| {
                tasks.poll_woken(cx, &mut done);
                if !done.is_empty() {
                    return Poll::Ready(Event::Done);
                }
                if !stopping && cancelled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
                if let Some(g) = grace.as_mut().as_pin_mut() {
                    if g.poll(cx).is_ready() {
                        return Poll::Ready(Event::GraceOver);
                    }
                }
                if taken.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Taken);
                }
                if wants_input {
                    match shared.pull(free, cx, |index, key, item| {
                        pulled.push((index, key, item));
                    }) {
                        Pulled::Pending => {}
                        Pulled::Exhausted => {
                            exhausted = true;
                            return Poll::Ready(Event::Input);
                        }
                        Pulled::Some => return Poll::Ready(Event::Input),
                    }
                }
                Poll::Pending
            })
            .await
        };
        since_yield = 0;
        match event {
            Event::Done => {
                for d in done.drain(..) {
                    deliver(&shared, &env, &mut sink, d);
                }
            }
            Event::Stop => {
                // Woken by the token without a stop reason set: the external
                // token was cancelled.
                shared.stop(Reason::External);
            }
            Event::GraceOver => {
                grace.set(None);
                tasks.clear();
                deliver_aborted(&shared, &env, &mut sink, aborted);
            }
            Event::Taken => {}
            Event::Input => input_pending = false,
        }
    }
    drop(tasks);
    deliver_aborted(&shared, &env, &mut sink, aborted);
    sink.close();
    sink
}

/// Delivers the tasks that reported themselves while being dropped: only
/// after a stop, when the lane clears its tasks.
fn deliver_aborted<S, F, R, K, T, E, C>(
    shared: &RunState<S>,
    env: &Env<F, R>,
    sink: &mut C,
    aborted: &Mutex<Vec<Done<K, T, E>>>,
) where
    C: Collector<K, T, E>,
{
    let dropped = std::mem::take(&mut *aborted.lock().unwrap_or_else(PoisonError::into_inner));
    for d in dropped {
        deliver(shared, env, sink, d);
    }
}

fn deliver<S, F, R, K, T, E, C>(
    shared: &RunState<S>,
    env: &Env<F, R>,
    sink: &mut C,
    done: Done<K, T, E>,
) where
    C: Collector<K, T, E>,
{
    env.delivery()
        .deliver(&shared.failure_seq, |r| shared.stop(r), sink, done);
}
