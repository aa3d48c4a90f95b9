//! Blocking and CPU work on scoped threads, with the same policies and the
//! same outcome, report and error types as the async runs.
//!
//! `limit` threads (the caller's thread excluded) pull inputs from the shared
//! iterator in adaptive chunks: one input at a time while closures are slow
//! (so that a stop leaves few pulled-but-not-started inputs and the load
//! stays balanced), doubling up to [`MAX_CHUNK`] while they are fast (so that
//! the lock is taken rarely when closures take a microsecond). Every input is
//! checked against the stop flag right before its closure starts.

mod ctx;
#[cfg(all(test, fanout_loom))]
mod loom;
mod run;

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Span;

pub use ctx::BlockingCtx;

use crate::config::{Config, PanicPolicy};
use crate::engine::{Collected, Collector, Delivery, Done, Pulled, Reason, RunState};
use crate::panic::Panic;
use crate::retry::RetryPolicy;
use crate::source::Input;
use crate::sync::{AtomicUsize, Condvar, Mutex, Ordering, PoisonError};
use crate::task_error::{Outcome, TaskError};

/// The most inputs a thread pulls at once.
const MAX_CHUNK: usize = 64;
/// Closures faster than this on average make a thread pull bigger chunks.
const FAST: Duration = Duration::from_micros(20);
/// How often the caller's thread checks the external token and the deadline.
const TICK: Duration = Duration::from_millis(1);

/// The state of one blocking run, borrowed by its threads.
struct Run<'a, S, F, R> {
    shared: RunState<S>,
    f: &'a F,
    retry: &'a R,
    timeout: Option<Duration>,
    delivery: Delivery<'a>,
    span: &'a Span,
    /// Wakes backoff sleeps and the caller's watch when the run stops.
    wake: Mutex<()>,
    woken: Condvar,
    running: AtomicUsize,
}

impl<S, F, R> Run<'_, S, F, R> {
    fn stop(&self, reason: Reason) -> bool {
        let won = self.shared.stop(reason);
        let _g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        self.woken.notify_all();
        won
    }

    /// Sleeps for `delay` unless the run stops first; `false` if it did.
    fn sleep_unless_stopped(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        let mut g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.shared.is_stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            g = self
                .woken
                .wait_timeout(g, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<'a, S, F, R> Run<'a, S, F, R>
where
    S: Input + Send,
{
    fn new(
        source: S,
        cfg: &'a Config,
        f: &'a F,
        retry: &'a R,
        stop_on_failure: bool,
        span: &'a Span,
    ) -> Self {
        Self {
            shared: RunState::for_run(source, cfg),
            f,
            retry,
            timeout: cfg.timeout,
            delivery: Delivery {
                stop_on_failure,
                panics: cfg.panics,
                progress: cfg.progress.as_ref(),
                external: cfg.external.as_ref(),
            },
            span,
            wake: Mutex::new(()),
            woken: Condvar::new(),
            running: AtomicUsize::new(0),
        }
    }

    fn worker<T, E, C>(&self, sink: &mut C)
    where
        F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
        R: RetryPolicy<S::Item, E>,
        C: Collector<S::Key, T, E>,
    {
        let mut batch = VecDeque::new();
        let mut chunk = 1;
        let waker = thread_waker();
        let cx = Context::from_waker(&waker);
        loop {
            if self.shared.is_stopped() {
                break;
            }
            let pulled = self
                .shared
                .pull(chunk, &cx, |i, k, item| batch.push_back((i, k, item)));
            if batch.is_empty() {
                if pulled == Pulled::Pending {
                    // A stream input with nothing ready wakes this thread
                    // when it has; a stop is seen within a tick.
                    std::thread::park_timeout(TICK);
                    continue;
                }
                break;
            }
            let pulled = batch.len() as u32;
            let started = Instant::now();
            while let Some((index, key, item)) = batch.pop_front() {
                let outcome = if self.shared.is_stopped() {
                    Err(TaskError::NotStarted)
                } else {
                    self.run_one(index, &key, item)
                };
                self.deliver(sink, (index, key, outcome));
            }
            sink.flush();
            chunk = if started.elapsed() / pulled < FAST {
                (chunk * 2).min(MAX_CHUNK)
            } else {
                1
            };
        }
    }

    fn run_one<T, E>(&self, index: usize, key: &S::Key, item: S::Item) -> Outcome<T, E>
    where
        F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
        R: RetryPolicy<S::Item, E>,
    {
        let span = S::task_span(self.span, index, key);
        let _entered = span.enter();
        if let Some(p) = self.delivery.progress {
            p.started();
        }
        let max = self.retry.max_attempts();
        let mut item = Some(item);
        let mut attempt = 1;
        let outcome = loop {
            let last = attempt >= max;
            let deadline = self.timeout.map(|d| Instant::now() + d);
            let ctx = BlockingCtx {
                index,
                key,
                attempt,
                stopped: &self.shared.stopped,
                token: &self.shared.token,
                deadline,
            };
            let input = R::item_for_attempt(&mut item, last);
            let err = match catch_unwind(AssertUnwindSafe(|| (self.f)(&ctx, input))) {
                Err(payload) => break Err(TaskError::Panicked(Panic::new(payload))),
                Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    TaskError::TimedOut(self.timeout.unwrap_or_default())
                }
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(e)) => TaskError::Failed(e),
            };
            if last || self.shared.is_stopped() {
                break Err(err);
            }
            match self.retry.retry_after(attempt, &err) {
                Some(delay) if self.sleep_unless_stopped(delay) => attempt += 1,
                _ => break Err(err),
            }
        };
        span.record("task.attempt", attempt);
        span.record(
            "task.outcome",
            match &outcome {
                Ok(_) => "ok",
                Err(e) => e.kind(),
            },
        );
        outcome
    }

    fn deliver<T, E, C: Collector<S::Key, T, E>>(&self, sink: &mut C, done: Done<S::Key, T, E>) {
        self.delivery
            .deliver(&self.shared.failure_seq, |r| self.stop(r), sink, done);
    }

    /// On the caller's thread while the workers run: turns the external
    /// token and the deadline into a stop. Returns once every worker is done.
    fn watch(&self, cfg: &Config, started: Instant) {
        let deadline = cfg.deadline.map(|d| started + d);
        let mut g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        while self.running.load(Ordering::Acquire) > 0 {
            if !self.shared.is_stopped() {
                if cfg
                    .external
                    .as_ref()
                    .is_some_and(CancellationToken::is_cancelled)
                {
                    drop(g);
                    self.stop(Reason::External);
                    g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    drop(g);
                    self.stop(Reason::Deadline);
                    g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
            }
            g = self
                .woken
                .wait_timeout(g, TICK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn needs_watch(cfg: &Config) -> bool {
        cfg.external.is_some() || cfg.deadline.is_some()
    }

    fn worker_exit(&self) {
        // Only the last worker wakes the caller's watch: with hundreds of
        // threads, each taking the lock on its way out made them queue.
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
            self.woken.notify_all();
        }
    }
}

/// A waker that unparks the current thread: how a worker thread waits for a
/// stream input (an iterator never makes it wait).
fn thread_waker() -> Waker {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// After a stop, the inputs never pulled, with their indices and keys (see
/// `RunState::poll_rest`), waiting for a stream input by parking.
fn rest_of<S: Input>(shared: &RunState<S>) -> Vec<(usize, S::Key)> {
    let waker = thread_waker();
    let cx = Context::from_waker(&waker);
    let mut rest = Vec::new();
    while shared.poll_rest(&cx, &mut rest).is_pending() {
        std::thread::park_timeout(TICK);
    }
    rest
}

/// The number of worker threads: the limit, or fewer when the input is
/// known to be shorter.
fn thread_count<S: Input>(cfg: &Config, source: &S) -> usize {
    let limit = cfg.blocking_limit();
    source.exact_len().map_or(limit, |n| limit.min(n.max(1)))
}

/// Runs a blocking run to completion on `threads` scoped threads and
/// returns what they collected. Returns only when every closure has
/// returned. Re-raises a panic of the input iterator.
pub(crate) fn collect<S, T, E, F, R>(
    source: S,
    cfg: &Config,
    retry: &R,
    f: &F,
    stop_on_failure: bool,
    span: &Span,
) -> (Collected<S::Key, T, E>, RunState<S>)
where
    S: Input + Send,
    F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
    T: Send,
    E: Send,
    R: RetryPolicy<S::Item, E>,
{
    let threads = thread_count(cfg, &source);
    let run = Run::new(source, cfg, f, retry, stop_on_failure, span);
    let started = Instant::now();
    run.running.store(threads, Ordering::Release);
    // Workers hand their results over here instead of through `join`: the
    // scope waits for every closure to return, but joining would also wait
    // for each OS thread to be torn down, which with thousands of threads
    // took most of the time between a failure and the caller's return.
    // One slot per worker, so that workers on their way out do not queue on
    // a shared lock either.
    let slots: Vec<Mutex<Collected<S::Key, T, E>>> =
        (0..threads).map(|_| Mutex::default()).collect();
    std::thread::scope(|s| {
        for slot in &slots {
            let run = &run;
            s.spawn(move || {
                let mut sink = Collected::default();
                run.worker(&mut sink);
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = sink;
                run.worker_exit();
            });
        }
        if Run::<S, F, R>::needs_watch(cfg) {
            run.watch(cfg, started);
        }
        // Leaving the scope waits for every worker; a panic of one (a bug of
        // ours: workers catch every panic of user code) is re-raised there.
    });
    let mut collected = Collected::default();
    for slot in slots {
        collected.merge(slot.into_inner().unwrap_or_else(PoisonError::into_inner));
    }
    if let Some(p) = run.shared.take_source_panic() {
        std::panic::resume_unwind(p);
    }
    (collected, run.shared)
}

/// Finished tasks sent to the caller's thread together.
type Batch<K, T, E> = Vec<Done<K, T, E>>;

/// Sends finished tasks to the caller's thread, one message per chunk of
/// inputs (so fast closures do not pay a thread wake-up each).
struct ChannelSink<'a, K, T, E> {
    tx: mpsc::SyncSender<Batch<K, T, E>>,
    batch: Batch<K, T, E>,
    /// Emptied batches handed back by the caller's thread: reusing them
    /// keeps memory flat (batches allocated on one thread and freed on
    /// another made the allocator's footprint creep up with the run's
    /// length).
    spare: &'a Mutex<Vec<Batch<K, T, E>>>,
}

impl<K: Send, T: Send, E: Send> Collector<K, T, E> for ChannelSink<'_, K, T, E> {
    fn push(&mut self, done: Done<K, T, E>, _seq: Option<usize>) {
        if self.batch.capacity() == 0 {
            self.batch = self
                .spare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(MAX_CHUNK));
        }
        self.batch.push(done);
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            // The receiver lives until every worker is done.
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }
}

/// Runs a blocking run and calls `each` on the caller's thread with every
/// outcome as it completes. Returns the shared state (for the stop reason).
pub(crate) fn for_each<S, T, E, F, R, G>(
    source: S,
    cfg: &Config,
    retry: &R,
    f: &F,
    span: &Span,
    mut each: G,
) -> Option<Reason>
where
    S: Input + Send,
    F: Fn(&BlockingCtx<'_, S::Key>, S::Item) -> Result<T, E> + Sync,
    T: Send,
    E: Send,
    R: RetryPolicy<S::Item, E>,
    G: FnMut(S::Key, Outcome<T, E>) -> ControlFlow<()>,
{
    let threads = thread_count(cfg, &source);
    let run = Run::new(source, cfg, f, retry, false, span);
    let started = Instant::now();
    let deadline = cfg.deadline.map(|d| started + d);
    run.running.store(threads, Ordering::Release);
    // A full channel blocks the threads: memory stays O(limit) (a chunk per
    // thread, and one per thread in the channel) however slow the consumer
    // is.
    let (tx, rx) = mpsc::sync_channel(threads);
    let spare = Mutex::new(Vec::new());
    let mut consumer_panic = None;
    let mut panicked = None;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (run, spare) = (&run, &spare);
            s.spawn(move || {
                let mut sink = ChannelSink {
                    tx,
                    batch: Vec::new(),
                    spare,
                };
                run.worker(&mut sink);
                sink.flush();
                drop(sink);
                run.worker_exit();
            });
        }
        drop(tx);
        loop {
            let next = if Run::<S, F, R>::needs_watch(cfg) {
                match rx.recv_timeout(TICK) {
                    Ok(done) => Some(done),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if !run.shared.is_stopped() {
                            if cfg
                                .external
                                .as_ref()
                                .is_some_and(CancellationToken::is_cancelled)
                            {
                                run.stop(Reason::External);
                            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                                run.stop(Reason::Deadline);
                            }
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                }
            } else {
                rx.recv().ok()
            };
            let Some(mut batch) = next else { break };
            for (_, key, outcome) in batch.drain(..) {
                if consumer_panic.is_some() || panicked.is_some() {
                    continue;
                }
                if run.delivery.panics == PanicPolicy::Propagate {
                    if let Err(TaskError::Panicked(_)) = &outcome {
                        run.stop(Reason::Failure);
                        if let Err(TaskError::Panicked(p)) = outcome {
                            panicked = Some(p);
                        }
                        continue;
                    }
                }
                match catch_unwind(AssertUnwindSafe(|| each(key, outcome))) {
                    Ok(ControlFlow::Continue(())) => {}
                    Ok(ControlFlow::Break(())) => {
                        run.stop(Reason::Consumer);
                    }
                    Err(p) => {
                        run.stop(Reason::Consumer);
                        consumer_panic = Some(p);
                    }
                }
            }
            let mut spare = spare.lock().unwrap_or_else(PoisonError::into_inner);
            if spare.len() < 2 * threads {
                spare.push(batch);
            }
        }
    });
    if let Some(p) = &cfg.progress {
        p.finish();
    }
    if let Some(p) = run.shared.take_source_panic() {
        std::panic::resume_unwind(p);
    }
    if let Some(p) = consumer_panic {
        std::panic::resume_unwind(p);
    }
    if let Some(p) = panicked {
        p.resume();
    }
    run.shared.reason()
}
