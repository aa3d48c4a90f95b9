//! Results as a stream: as they complete, or in input order.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Span;

use crate::config::{Config, PanicPolicy, DEFAULT_WINDOW_PER_SLOT};
use crate::ctx::{BlockingTracker, TaskCtx};
use crate::engine::{self, Collector, Done, Env, Reason, RunState, Waiting};
use crate::panic::Panic;
use crate::progress::Progress;
use crate::retry::RetryPolicy;
use crate::source::SendInput;
use crate::task_error::{Outcome, TaskError};

/// The order in which a [`TaskStream`] yields outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// As tasks finish. No head-of-line blocking.
    #[default]
    Completion,
    /// In input order, through a bounded reorder window: a result that
    /// finished ahead of an earlier input waits; at most `limit + window`
    /// inputs are in the stream at once (see
    /// [`FanOut::window`](crate::FanOut::window), default 8 × `limit`), so a
    /// slow early task delays later starts, as `buffered` does, and memory
    /// stays O(limit).
    Input,
}

/// The stop handle of a running stream, with the input type erased.
trait RunControl: Send + Sync {
    fn stop(&self, reason: Reason);
    fn take_source_panic(&self) -> Option<Box<dyn std::any::Any + Send>>;
}

impl<S: Send> RunControl for RunState<S> {
    fn stop(&self, reason: Reason) {
        RunState::stop(self, reason);
    }

    fn take_source_panic(&self) -> Option<Box<dyn std::any::Any + Send>> {
        RunState::take_source_panic(self)
    }
}

/// Finished tasks as a lane sends them: the lane's number and a batch.
type FromLane<K, T, E> = (usize, Vec<Done<K, T, E>>);
/// A finished task waiting in the reorder window: lane, key, outcome.
type FromLaneOrdered<K, T, E> = (usize, K, Outcome<T, E>);

struct StreamSink<K, T, E> {
    tx: Option<mpsc::UnboundedSender<FromLane<K, T, E>>>,
    lane: usize,
    waiting: Arc<[Waiting]>,
    // Outcomes of one wake-up of the lane go out as one message, so the
    // consumer is woken once per batch rather than once per task.
    batch: Vec<Done<K, T, E>>,
}

impl<K: Send + 'static, T: Send + 'static, E: Send + 'static> Collector<K, T, E>
    for StreamSink<K, T, E>
{
    fn push(&mut self, done: Done<K, T, E>, _seq: Option<usize>) {
        self.batch.push(done);
    }

    fn pending(&self) -> usize {
        self.batch.len()
    }

    fn ordered(&self) -> bool {
        true
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.waiting[self.lane]
            .held
            .fetch_add(batch.len(), Ordering::AcqRel);
        // The receiver is gone only when the stream was dropped, and then
        // this lane is being aborted: the outcomes have nobody to go to.
        if let Some(tx) = &self.tx {
            let _ = tx.send((self.lane, batch));
        }
    }

    fn close(&mut self) {
        self.flush();
        // The stream ends when the channel closes, so every lane lets go of
        // its sender as soon as it is done.
        self.tx = None;
    }

    fn waiting(&self) -> Option<&Waiting> {
        Some(&self.waiting[self.lane])
    }
}

/// Outcomes of a running [`FanOut::stream`](crate::FanOut::stream), each as
/// `(key, outcome)` (the key is the index for unkeyed input).
///
/// - Every task that started yields exactly one outcome; inputs never pulled
///   yield nothing, so the input may be endless.
/// - A failure does not stop the stream. [`cancel`](TaskStream::cancel)
///   stops it gracefully (no new start, token cancelled, grace, abort; the
///   remaining outcomes, `Cancelled` ones included, are still yielded);
///   dropping it stops it at once, aborting every task.
/// - Under [`PanicPolicy::Propagate`] a task panic stops the run; the stream
///   yields nothing more, waits until every task is dropped, then re-raises
///   the panic from `next`.
/// - The stream ends (`None`) only once every task and lane has finished.
///
/// Cost: outcomes cross from their lane to the consumer through a channel,
/// one message per batch of results, so that a lane running ahead of its
/// consumer (within the [`window`](crate::FanOut::window)) pays a thread
/// wake-up per batch rather than per task; a trivial task costs about as
/// much as in [`run`](crate::FanOut::run) (the ratio, measured, is in
/// `docs/BENCHMARKS.md`).
///
/// # Cancel safety
/// [`next`](TaskStream::next) and `Stream::poll_next` are cancel safe: an
/// outcome is removed only when it is returned.
#[must_use = "a TaskStream runs its tasks only while it is polled or alive; dropping it aborts them"]
pub struct TaskStream<K, T, E> {
    rx: mpsc::UnboundedReceiver<FromLane<K, T, E>>,
    /// Outcomes received in a batch and not yet taken, with their lanes.
    received: VecDeque<(usize, Done<K, T, E>)>,
    lanes: JoinSet<StreamSink<K, T, E>>,
    waiting: Arc<[Waiting]>,
    /// Per lane: outcomes taken by the consumer that the lane has not heard
    /// of yet, and after how many it does. They go back in bulk rather than
    /// one at a time, which woke the lane for one task at a time.
    taken: Vec<usize>,
    give_back_every: Vec<usize>,
    control: Arc<dyn RunControl>,
    blocking: Arc<BlockingTracker>,
    reorder: Option<Reorder<K, T, E>>,
    panics: PanicPolicy,
    panicked: Option<Panic>,
    lane_panic: Option<Box<dyn std::any::Any + Send>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    progress: Option<Progress>,
    closed: bool,
    finished: bool,
    _span: Span,
}

struct Reorder<K, T, E> {
    next: usize,
    buf: VecDeque<Option<FromLaneOrdered<K, T, E>>>,
}

impl<K, T, E> Reorder<K, T, E> {
    fn insert(&mut self, lane: usize, (index, key, outcome): Done<K, T, E>) {
        let at = index - self.next;
        if at >= self.buf.len() {
            self.buf.resize_with(at + 1, || None);
        }
        self.buf[at] = Some((lane, key, outcome));
    }

    fn pop(&mut self) -> Option<FromLaneOrdered<K, T, E>> {
        if !matches!(self.buf.front(), Some(Some(_))) {
            return None;
        }
        self.next += 1;
        self.buf.pop_front().flatten()
    }
}

impl<K, T, E> TaskStream<K, T, E>
where
    K: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of a built run, taken apart by the caller"
    )]
    pub(crate) fn start<S, F, Fut, R, H>(
        source: S,
        cfg: Config,
        retry: R,
        f: F,
        order: Order,
        span: Span,
        journal: H,
    ) -> Self
    where
        S: SendInput<Key = K>,
        F: Fn(TaskCtx<K>, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        R: RetryPolicy<S::Item, E>,
        H: crate::engine::Recorder<K, T, E>,
    {
        let shared = Arc::new(RunState::for_run(source, &cfg));
        let caps = engine::lane_caps(&cfg);
        let limit = cfg.async_limit();
        let window = cfg
            .window
            .unwrap_or(limit.saturating_mul(DEFAULT_WINDOW_PER_SLOT));
        // Each lane's share of the window, as its share of the limit.
        let waiting: Arc<[Waiting]> = caps
            .iter()
            .map(|&cap| Waiting {
                room: window.saturating_mul(cap).div_ceil(limit),
                ..Waiting::default()
            })
            .collect();
        let give_back_every = waiting.iter().map(|w| (w.room / 4).max(1)).collect();
        let taken = vec![0; caps.len()];
        let env = Arc::new(Env::new(f, retry, &cfg, false, span.clone(), journal));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut lanes = JoinSet::new();
        for (lane, cap) in caps.into_iter().enumerate() {
            let sink = StreamSink {
                tx: Some(tx.clone()),
                lane,
                waiting: waiting.clone(),
                batch: Vec::new(),
            };
            lanes.spawn(engine::lane(shared.clone(), env.clone(), cap, sink));
        }
        Self {
            rx,
            received: VecDeque::new(),
            lanes,
            waiting,
            taken,
            give_back_every,
            blocking: shared.blocking.clone(),
            control: shared,
            reorder: (order == Order::Input).then(|| Reorder {
                next: 0,
                buf: VecDeque::new(),
            }),
            panics: cfg.panics,
            panicked: None,
            lane_panic: None,
            deadline: cfg.deadline.map(|d| Box::pin(tokio::time::sleep(d))),
            progress: cfg.progress,
            closed: false,
            finished: false,
            _span: span,
        }
    }

    /// The next outcome, or `None` once every task has finished.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<(K, Outcome<T, E>)> {
        poll_fn(|cx| self.poll_outcome(cx)).await
    }

    /// Stops the run: no new task starts, the token is cancelled, running
    /// tasks get the grace period and are then aborted. The outcomes of the
    /// tasks that had started are still yielded; then the stream ends.
    pub fn cancel(&self) {
        self.control.stop(Reason::Consumer);
    }

    /// The consumer took an outcome of `lane`: the lane hears of it now if
    /// enough of the lane's were taken, or else with the others once
    /// nothing received is left to take
    /// ([`release_all`](Self::release_all)).
    fn release(&mut self, lane: usize) {
        self.taken[lane] += 1;
        if self.taken[lane] >= self.give_back_every[lane] {
            self.give_back(lane);
        }
    }

    /// Tells every lane of the outcomes taken.
    fn release_all(&mut self) {
        for lane in 0..self.taken.len() {
            if self.taken[lane] > 0 {
                self.give_back(lane);
            }
        }
    }

    fn give_back(&mut self, lane: usize) {
        let w = &self.waiting[lane];
        w.held
            .fetch_sub(std::mem::take(&mut self.taken[lane]), Ordering::AcqRel);
        w.taken.notify_one();
    }

    /// Hands `item` to the consumer; once nothing received is left to take,
    /// every lane hears of the outcomes taken.
    fn take(&mut self, item: (K, Outcome<T, E>)) -> Poll<Option<(K, Outcome<T, E>)>> {
        if self.received.is_empty() {
            self.release_all();
        }
        Poll::Ready(Some(item))
    }

    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Option<(K, Outcome<T, E>)>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(d) = &mut self.deadline {
            if d.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                self.control.stop(Reason::Deadline);
            }
        }
        loop {
            if self.panicked.is_none() {
                if let Some((lane, key, outcome)) = self.reorder.as_mut().and_then(Reorder::pop) {
                    self.release(lane);
                    return self.take((key, outcome));
                }
            }
            if let Some((lane, done)) = self.received.pop_front() {
                if self.panicked.is_some() {
                    self.release(lane);
                    continue;
                }
                if self.panics == PanicPolicy::Propagate {
                    if let Err(TaskError::Panicked(_)) = &done.2 {
                        self.release(lane);
                        self.control.stop(Reason::Failure);
                        if let Err(TaskError::Panicked(p)) = done.2 {
                            self.panicked = Some(p);
                        }
                        continue;
                    }
                }
                match &mut self.reorder {
                    Some(r) => r.insert(lane, done),
                    None => {
                        self.release(lane);
                        return self.take((done.1, done.2));
                    }
                }
                continue;
            }
            // Nothing received is left to take: the lanes may be waiting for
            // the consumer to start more tasks.
            self.release_all();
            if !self.closed {
                match self.rx.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some((lane, batch))) => {
                        self.received.extend(batch.into_iter().map(|d| (lane, d)));
                        continue;
                    }
                    Poll::Ready(None) => self.closed = true,
                }
            }
            // Every lane has dropped its sender: join them, so that the
            // stream ends only when no task and no lane is left.
            loop {
                match self.lanes.poll_join_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => break,
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => {
                        if let Ok(p) = e.try_into_panic() {
                            self.lane_panic.get_or_insert(p);
                        }
                    }
                }
            }
            // Blocking closures started by tasks cannot be aborted: the
            // stream ends only once they have returned.
            if self.blocking.poll_idle(cx).is_pending() {
                return Poll::Pending;
            }
            if self.panicked.is_none() && self.lane_panic.is_none() {
                if let Some((lane, key, outcome)) = self.reorder.as_mut().and_then(Reorder::pop) {
                    self.release(lane);
                    return self.take((key, outcome));
                }
            }
            self.finished = true;
            if let Some(p) = &self.progress {
                p.finish();
            }
            if let Some(p) = self.control.take_source_panic() {
                std::panic::resume_unwind(p);
            }
            if let Some(p) = self.lane_panic.take() {
                std::panic::resume_unwind(p);
            }
            if let Some(p) = self.panicked.take() {
                p.resume();
            }
            return Poll::Ready(None);
        }
    }
}

impl<K, T, E> Stream for TaskStream<K, T, E>
where
    K: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Item = (K, Outcome<T, E>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_outcome(cx)
    }
}

// No field is ever pinned structurally: the `Sleep` is boxed.
impl<K, T, E> Unpin for TaskStream<K, T, E> {}

impl<K, T, E> Drop for TaskStream<K, T, E> {
    fn drop(&mut self) {
        // Cancel first so that tasks watching the token see it; dropping the
        // `JoinSet` then aborts the lanes, which drops every task.
        self.control.stop(Reason::Consumer);
    }
}

impl<K, T, E> fmt::Debug for TaskStream<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskStream")
            .field("lanes", &self.lanes.len())
            .field("ordered", &self.reorder.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
