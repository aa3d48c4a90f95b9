//! The async engine: a few lanes pull inputs from a shared source and each
//! drives up to its share of the limit of task futures.
//!
//! Why lanes and not one tokio task per input: spawning costs about 1 µs
//! per task on the project's 2-core machine (`docs/BENCHMARKS.md`), which is
//! the whole budget of a trivial task. A lane is one spawned tokio task that
//! polls its task futures in a slab of reused slots (`slab.rs`), so starting
//! a task allocates nothing and wakes no other thread. There is one lane per
//! runtime worker thread (never more than the limit), so the work is still
//! spread over every core; the limit is split between lanes, so the number of
//! live task bodies never exceeds it. The price: tasks of one lane are polled
//! by one thread, so a task that blocks its thread stalls its lane-mates.
//! Blocking work belongs in `TaskCtx::spawn_blocking` or a blocking run.

pub(crate) mod finish;
mod lane;
#[cfg(all(test, fanout_loom))]
mod loom;
mod slab;
mod task;

use std::any::Any;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Span;

pub(crate) use lane::{lane, Collector, Waiting};
pub(crate) use task::Done;

use crate::config::{Config, PanicPolicy};
use crate::ctx::BlockingTracker;
use crate::error::{Cause, Failure};
use crate::progress::Progress;
use crate::source::SendInput;
use crate::sync::{AtomicBool, AtomicU8, AtomicUsize, Mutex, Ordering, PoisonError};
use crate::task_error::TaskError;

/// Why a run stopped; the first writer wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reason {
    /// A failure under fail-fast, or a panic under `Propagate`.
    Failure = 1,
    /// The external token.
    External = 2,
    /// The run's deadline.
    Deadline = 3,
    /// The input iterator panicked.
    Source = 4,
    /// A stream's consumer called `cancel` or dropped it.
    Consumer = 5,
}

impl Reason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Failure,
            2 => Self::External,
            3 => Self::Deadline,
            4 => Self::Source,
            5 => Self::Consumer,
            _ => return None,
        })
    }

    /// The [`Cause`] a collect-all report or a blocking `for_each` gives
    /// for a stop that is not a task's failure. (A failure only stops such
    /// runs under `PanicPolicy::Propagate`, and then the panic is re-raised
    /// instead of reported; so are panics of the input and of a lane.)
    pub(crate) fn as_cause<K, E>(self) -> Cause<K, E> {
        match self {
            Self::Deadline => Cause::DeadlineExceeded,
            _ => Cause::Cancelled,
        }
    }
}

/// The input, pulled under a lock by whichever lane has a free slot.
pub(crate) struct Pull<S> {
    pub(crate) source: S,
    pub(crate) next_index: usize,
    pub(crate) exhausted: bool,
}

/// One input as pulled: its index, key and item.
type Pulling<S> = (
    usize,
    <S as crate::source::Input>::Key,
    <S as crate::source::Input>::Item,
);

/// What a pull got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// As many inputs as asked for, or fewer because the run stopped.
    Some,
    /// The input is at its end (or its iterator panicked).
    Exhausted,
    /// A stream input has nothing ready: the caller is woken when it has.
    Pending,
}

/// The lanes (or threads) waiting for a stream input to have an item: the
/// stream is polled with a waker that wakes them all, so that whichever
/// lane polled it last, every lane with a free slot hears of new input.
#[derive(Default)]
pub(crate) struct InputWaiters {
    wakers: Mutex<Vec<Waker>>,
}

impl InputWaiters {
    fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

impl Wake for InputWaiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        for w in wakers {
            w.wake();
        }
    }
}

/// State shared by the lanes and the caller.
pub(crate) struct RunState<S> {
    pub(crate) pull: Mutex<Pull<S>>,
    /// Set once when the run stops: no task body starts after a lane reads it.
    pub(crate) stopped: AtomicBool,
    reason: AtomicU8,
    /// Cancelled when the run stops; tasks see it through their context.
    pub(crate) token: CancellationToken,
    /// Orders failures across lanes, so that "others" are listed in
    /// the order they were observed and the first panic is the one re-raised.
    pub(crate) failure_seq: AtomicUsize,
    pub(crate) source_panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Blocking closures started by tasks through `TaskCtx::spawn_blocking`.
    pub(crate) blocking: Arc<BlockingTracker>,
    /// Who waits for a stream input, and the waker the stream is polled with.
    input_waiters: Arc<InputWaiters>,
    input_waker: Waker,
}

impl<S> RunState<S> {
    /// The shared state of a run over `source` with `cfg`'s policies: the
    /// run's token is a child of the external one, and a run whose external
    /// token is already cancelled is stopped before it starts anything.
    pub(crate) fn for_run(source: S, cfg: &Config) -> Self
    where
        S: crate::source::Input,
    {
        if let Some(p) = &cfg.progress {
            p.set_total(source.exact_len());
        }
        let token = match &cfg.external {
            Some(t) => t.child_token(),
            None => CancellationToken::new(),
        };
        let shared = Self::new(source, token);
        if shared.token.is_cancelled() {
            shared.stop(Reason::External);
        }
        shared
    }

    fn new(source: S, token: CancellationToken) -> Self {
        let input_waiters = Arc::<InputWaiters>::default();
        Self {
            pull: Mutex::new(Pull {
                source,
                next_index: 0,
                exhausted: false,
            }),
            stopped: AtomicBool::new(false),
            reason: AtomicU8::new(0),
            token,
            failure_seq: AtomicUsize::new(0),
            source_panic: Mutex::new(None),
            blocking: Arc::default(),
            input_waker: Waker::from(input_waiters.clone()),
            input_waiters,
        }
    }

    /// Stops the run; returns `true` if this call decided the reason.
    pub(crate) fn stop(&self, reason: Reason) -> bool {
        let won = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.stopped.store(true, Ordering::Release);
        self.token.cancel();
        won
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn reason(&self) -> Option<Reason> {
        Reason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// Pulls up to `n` inputs under the lock, handing each to `take` with its
    /// index; stops early at the end of the input, when the run has stopped,
    /// or when a stream input has nothing ready. `Pending` only when nothing
    /// was taken (then `cx` is woken when the stream has an input). A panic
    /// of the input is kept for the caller, and stops the run.
    pub(crate) fn pull(
        &self,
        n: usize,
        cx: &Context<'_>,
        mut take: impl FnMut(usize, S::Key, S::Item),
    ) -> Pulled
    where
        S: crate::source::Input,
    {
        let mut pull = self.pull.lock().unwrap_or_else(PoisonError::into_inner);
        for taken in 0..n {
            if pull.exhausted {
                return Pulled::Exhausted;
            }
            // Checked under the lock, so no input is pulled after a stop that
            // another worker made visible before we took it.
            if self.is_stopped() {
                return Pulled::Some;
            }
            match self.poll_input(&mut pull, cx) {
                Poll::Ready(Some((index, key, item))) => take(index, key, item),
                Poll::Ready(None) => return Pulled::Exhausted,
                // Inputs taken before the stream ran dry must be started:
                // only a pull that took nothing waits.
                Poll::Pending if taken > 0 => return Pulled::Some,
                Poll::Pending => return Pulled::Pending,
            }
        }
        if pull.exhausted {
            Pulled::Exhausted
        } else {
            Pulled::Some
        }
    }

    /// The next input, numbered. `Pending` only for a stream with nothing
    /// ready, and then `cx` is registered to hear when it has: registered
    /// before a second poll, so that an item arriving in between is not
    /// missed. An iterator is polled once, without touching the waiters.
    fn poll_input(&self, pull: &mut Pull<S>, cx: &Context<'_>) -> Poll<Option<Pulling<S>>>
    where
        S: crate::source::Input,
    {
        let mut input_cx = Context::from_waker(&self.input_waker);
        let mut polled = self.poll_source(pull, &mut input_cx);
        if polled.is_pending() {
            self.input_waiters.register(cx.waker());
            polled = self.poll_source(pull, &mut input_cx);
        }
        polled
    }

    fn poll_source(&self, pull: &mut Pull<S>, cx: &mut Context<'_>) -> Poll<Option<Pulling<S>>>
    where
        S: crate::source::Input,
    {
        let index = pull.next_index;
        let source = &mut pull.source;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.poll_next(cx, index)))
        {
            Ok(Poll::Ready(Some((key, item)))) => {
                pull.next_index += 1;
                Poll::Ready(Some((index, key, item)))
            }
            Ok(Poll::Ready(None)) => {
                pull.exhausted = true;
                Poll::Ready(None)
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => {
                pull.exhausted = true;
                self.source_panic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(p);
                self.stop(Reason::Source);
                Poll::Ready(None)
            }
        }
    }

    /// After a stop, pulls the inputs that were never pulled, keeping their
    /// keys in `rest`: a collect-all report has one outcome per input, so
    /// the input must be finite. `Pending` while a stream input waits; a
    /// panic of the input is re-raised.
    pub(crate) fn poll_rest(&self, cx: &Context<'_>, rest: &mut Vec<(usize, S::Key)>) -> Poll<()>
    where
        S: crate::source::Input,
    {
        let mut pull = self.pull.lock().unwrap_or_else(PoisonError::into_inner);
        while !pull.exhausted {
            match self.poll_input(&mut pull, cx) {
                Poll::Ready(Some((index, key, _item))) => rest.push((index, key)),
                Poll::Ready(None) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        drop(pull);
        if let Some(p) = self.take_source_panic() {
            std::panic::resume_unwind(p);
        }
        Poll::Ready(())
    }

    /// The number of inputs never pulled, if the iterator knows it exactly
    /// (0 once it is exhausted).
    pub(crate) fn not_pulled(&self) -> usize
    where
        S: crate::source::Input,
    {
        let pull = self.pull.lock().unwrap_or_else(PoisonError::into_inner);
        if pull.exhausted {
            0
        } else {
            pull.source.exact_len().unwrap_or(0)
        }
    }

    pub(crate) fn take_source_panic(&self) -> Option<Box<dyn Any + Send>> {
        self.source_panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// How a finished task is handed to its collector: shared by the async lanes
/// and the blocking threads.
pub(crate) struct Delivery<'a> {
    /// Fail-fast: a failure stops the run.
    pub(crate) stop_on_failure: bool,
    pub(crate) panics: PanicPolicy,
    pub(crate) progress: Option<&'a Progress>,
    pub(crate) external: Option<&'a CancellationToken>,
}

impl Delivery<'_> {
    /// Counts the outcome, hands it to `sink`, and stops the run (through
    /// `stop`, which returns `true` for the call that decided the reason) if
    /// it is a failure that should.
    pub(crate) fn deliver<K, T, E, C: Collector<K, T, E>>(
        &self,
        failure_seq: &AtomicUsize,
        stop: impl Fn(Reason) -> bool,
        sink: &mut C,
        done: Done<K, T, E>,
    ) {
        if let Some(p) = self.progress {
            p.finished_task(&done.2);
        }
        let Err(e) = &done.2 else {
            sink.push(done, None);
            return;
        };
        if !e.is_failure() {
            sink.push(done, None);
            return;
        }
        // A task that ended because the external token fired (a cooperative
        // task, a backoff cut short) must not pose as the cause: record the
        // cancellation first. Only paid on failures, and only with a token.
        if self.external.is_some_and(CancellationToken::is_cancelled) {
            stop(Reason::External);
        }
        let stops = self.stop_on_failure || (e.is_panic() && self.panics == PanicPolicy::Propagate);
        let seq = failure_seq.fetch_add(1, Ordering::Relaxed);
        // Pushed before the stop is published, so that a stream's consumer
        // gets this failure before any outcome the stop causes elsewhere.
        sink.push(done, Some(seq));
        if stops {
            sink.flush();
            if stop(Reason::Failure) {
                sink.set_root(seq);
            }
        }
    }
}

/// What every lane of a run shares and never changes.
pub(crate) struct Env<F, R> {
    pub(crate) f: F,
    pub(crate) retry: R,
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Duration,
    /// Fail-fast: a failure stops the run.
    pub(crate) stop_on_failure: bool,
    pub(crate) panics: PanicPolicy,
    pub(crate) progress: Option<Progress>,
    pub(crate) external: Option<CancellationToken>,
    pub(crate) span: Span,
}

impl<F, R> Env<F, R> {
    pub(crate) fn new(f: F, retry: R, cfg: &Config, stop_on_failure: bool, span: Span) -> Self {
        Self {
            f,
            retry,
            timeout: cfg.timeout,
            grace: cfg.grace,
            stop_on_failure,
            panics: cfg.panics,
            progress: cfg.progress.clone(),
            external: cfg.external.clone(),
            span,
        }
    }

    pub(crate) fn delivery(&self) -> Delivery<'_> {
        Delivery {
            stop_on_failure: self.stop_on_failure,
            panics: self.panics,
            progress: self.progress.as_ref(),
            external: self.external.as_ref(),
        }
    }
}

/// The lane count and each lane's share of the limit.
pub(crate) fn lane_caps(cfg: &Config) -> Vec<usize> {
    let workers = cfg.lanes.unwrap_or_else(|| {
        tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .unwrap_or(1)
    });
    let limit = cfg.async_limit();
    let lanes = workers.clamp(1, limit);
    let (base, extra) = (limit / lanes, limit % lanes);
    (0..lanes).map(|i| base + usize::from(i < extra)).collect()
}

/// Everything the lanes of a collecting (non-stream) run produced.
pub(crate) struct Collected<K, T, E> {
    /// Successful tasks, unordered.
    pub(crate) ok: Vec<(usize, K, T)>,
    /// Genuine failures with their observation sequence number, unordered.
    pub(crate) failures: Vec<(usize, Failure<K, E>)>,
    /// The sequence number of the failure that stopped the run, if one did.
    pub(crate) root: Option<usize>,
    /// Cancelled and not-started tasks that had been pulled, unordered.
    pub(crate) stopped: Vec<(usize, K, TaskError<E>)>,
}

impl<K, T, E> Default for Collected<K, T, E> {
    fn default() -> Self {
        Self {
            ok: Vec::new(),
            failures: Vec::new(),
            root: None,
            stopped: Vec::new(),
        }
    }
}

impl<K: Send, T: Send, E: Send> Collector<K, T, E> for Collected<K, T, E> {
    fn push(&mut self, done: Done<K, T, E>, seq: Option<usize>) {
        let (index, key, outcome) = done;
        match outcome {
            Ok(v) => self.ok.push((index, key, v)),
            Err(error) => match seq {
                Some(seq) => self.failures.push((seq, Failure { index, key, error })),
                None => self.stopped.push((index, key, error)),
            },
        }
    }

    fn set_root(&mut self, seq: usize) {
        self.root = Some(seq);
    }
}

impl<K, T, E> Collected<K, T, E> {
    pub(crate) fn merge(&mut self, other: Self) {
        self.ok.extend(other.ok);
        self.failures.extend(other.failures);
        self.root = self.root.or(other.root);
        self.stopped.extend(other.stopped);
    }

    /// Whether a task panicked (a collect-all run under
    /// `PanicPolicy::Propagate` re-raises it rather than drain the input).
    pub(crate) fn has_panic(&self) -> bool {
        self.failures.iter().any(|(_, f)| f.error.is_panic())
    }

    /// Removes the first panic observed (for `PanicPolicy::Propagate`).
    pub(crate) fn take_first_panic(&mut self) -> Option<crate::panic::Panic> {
        let pos = self
            .failures
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| f.error.is_panic())
            .min_by_key(|(_, (seq, _))| *seq)
            .map(|(i, _)| i)?;
        match self.failures.swap_remove(pos).1.error {
            TaskError::Panicked(p) => Some(p),
            _ => unreachable!("filtered on is_panic"),
        }
    }
}

/// What the caller gets back after the lanes are joined.
pub(crate) struct Joined<S, K, T, E> {
    pub(crate) collected: Collected<K, T, E>,
    pub(crate) shared: Arc<RunState<S>>,
}

/// Runs the lanes of a collecting run to completion and joins them.
///
/// Returns only when every lane, and so every task, has finished or been
/// dropped. Re-raises a panic of the input iterator or of a lane itself.
pub(crate) async fn collect<S, F, Fut, T, E, R>(
    source: S,
    cfg: Config,
    retry: R,
    f: F,
    stop_on_failure: bool,
    span: Span,
) -> Joined<S, S::Key, T, E>
where
    S: SendInput,
    F: Fn(crate::TaskCtx<S::Key>, S::Item) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    R: crate::retry::RetryPolicy<S::Item, E>,
{
    let shared = Arc::new(RunState::for_run(source, &cfg));
    let caps = lane_caps(&cfg);
    let env = Arc::new(Env::new(f, retry, &cfg, stop_on_failure, span));
    let mut lanes = JoinSet::new();
    for cap in caps {
        lanes.spawn(lane(shared.clone(), env.clone(), cap, Collected::default()));
    }
    let mut collected = Collected::default();
    let mut lane_panic = None;
    let deadline = cfg.deadline.map(tokio::time::sleep);
    tokio::pin!(deadline);
    loop {
        let joined = tokio::select! {
            biased;
            j = lanes.join_next() => j,
            () = async { deadline.as_mut().as_pin_mut().expect("guarded").await }, if deadline.is_some() && !shared.is_stopped() => {
                shared.stop(Reason::Deadline);
                continue;
            }
        };
        match joined {
            None => break,
            Some(Ok(c)) => collected.merge(c),
            Some(Err(e)) => {
                // A lane only panics on a bug of ours or in a `Debug` of a key;
                // stop the others and re-raise once they are joined.
                shared.stop(Reason::Failure);
                if let Ok(p) = e.try_into_panic() {
                    lane_panic.get_or_insert(p);
                }
            }
        }
    }
    shared.blocking.wait_idle().await;
    if let Some(p) = shared.take_source_panic() {
        std::panic::resume_unwind(p);
    }
    if let Some(p) = lane_panic {
        std::panic::resume_unwind(p);
    }
    Joined { collected, shared }
}
