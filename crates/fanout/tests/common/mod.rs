//! Helpers shared by every integration test of the library, each written
//! once: a live-task counter ([`Live`]) that also tracks the most bodies alive
//! at once, an event log with a global sequence number ([`Log`]), a
//! future-level [`catch_unwind`], a panic hook that keeps intentional panics
//! out of the test output, a guard whose destructor panics, duration and
//! clock helpers, the hang bound, the runtimes the tests build by hand,
//! what the model tests' task bodies did ([`Bodies`]), and the SIGKILL
//! trials' seeded instants ([`Rng`], [`kill_soon`]).
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind as std_catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Marker put in every intentional panic message, so that the quiet hook
/// can skip it.
pub(crate) const INTENTIONAL: &str = "[intentional]";

/// The bound under which a run must return once it has a reason to; under
/// the paused clock, reaching it means the run hung.
pub(crate) const HANG: Duration = Duration::from_secs(60);

/// Counts live task bodies (or blocking closures): a [`LiveGuard`] counts up
/// on creation and down on drop. Also tracks the highest count seen and how
/// many guards were made and dropped. Works on and off a runtime.
#[derive(Clone, Default)]
pub(crate) struct Live(Arc<LiveInner>);

#[derive(Default)]
struct LiveInner {
    now: AtomicUsize,
    max: AtomicUsize,
    created: AtomicUsize,
    dropped: AtomicUsize,
    changed: Notify,
}

/// Held by a task body for as long as it is alive.
pub(crate) struct LiveGuard(Arc<LiveInner>);

impl Live {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A guard for one task body: counts it live until dropped.
    pub(crate) fn guard(&self) -> LiveGuard {
        let now = self.0.now.fetch_add(1, SeqCst) + 1;
        self.0.max.fetch_max(now, SeqCst);
        self.0.created.fetch_add(1, SeqCst);
        self.0.changed.notify_waiters();
        LiveGuard(self.0.clone())
    }

    /// Bodies alive now.
    pub(crate) fn now(&self) -> usize {
        self.0.now.load(SeqCst)
    }

    /// The most bodies alive at once so far.
    pub(crate) fn max(&self) -> usize {
        self.0.max.load(SeqCst)
    }

    /// Guards made so far.
    pub(crate) fn created(&self) -> usize {
        self.0.created.load(SeqCst)
    }

    /// Guards dropped so far.
    pub(crate) fn dropped(&self) -> usize {
        self.0.dropped.load(SeqCst)
    }

    /// Completes once `pred` holds (checked on every guard change).
    pub(crate) async fn wait_until(&self, pred: impl Fn(&Self) -> bool) {
        loop {
            let mut changed = pin!(self.0.changed.notified());
            changed.as_mut().enable();
            if pred(self) {
                return;
            }
            changed.await;
        }
    }

    /// Completes once no body is alive.
    pub(crate) async fn wait_zero(&self) {
        self.wait_until(|l| l.now() == 0).await;
    }

    /// Completes once at least `k` guards have been made.
    pub(crate) async fn wait_created(&self, k: usize) {
        self.wait_until(|l| l.created() >= k).await;
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
        self.0.dropped.fetch_add(1, SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// What happened, in an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A task body started.
    Start,
    /// A task body is about to return its genuine failure.
    Fail,
    /// A task body ran to completion (about to return `Ok`).
    End,
    /// A task saw the run's cancellation token.
    SawCancel,
    /// A task's cleanup after cancellation ran.
    Cleanup,
    /// A point in the test itself (for example: the run was dropped here).
    Mark,
}

/// One logged event: its global sequence number, kind and task index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) seq: usize,
    pub(crate) kind: Kind,
    pub(crate) index: usize,
}

/// An event log with a global sequence number: events are numbered under one
/// lock, so the numbers give a total order across threads.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an event; returns its sequence number.
    pub(crate) fn record(&self, kind: Kind, index: usize) -> usize {
        let mut events = self.lock();
        let seq = events.len();
        events.push(Event { seq, kind, index });
        seq
    }

    /// Records a test-side mark; returns its sequence number.
    pub(crate) fn mark(&self) -> usize {
        self.record(Kind::Mark, usize::MAX)
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// The first event of this kind.
    pub(crate) fn first(&self, kind: Kind) -> Option<Event> {
        self.lock().iter().copied().find(|e| e.kind == kind)
    }

    /// Indices of the events of this kind, in log order.
    pub(crate) fn indices(&self, kind: Kind) -> Vec<usize> {
        self.lock()
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.index)
            .collect()
    }

    pub(crate) fn count(&self, kind: Kind) -> usize {
        self.lock().iter().filter(|e| e.kind == kind).count()
    }

    /// Indices of the events of this kind logged after sequence number `seq`.
    pub(crate) fn after(&self, seq: usize, kind: Kind) -> Vec<usize> {
        self.lock()
            .iter()
            .filter(|e| e.seq > seq && e.kind == kind)
            .map(|e| e.index)
            .collect()
    }
}

/// Awaits `fut`, catching a panic raised while polling it.
pub(crate) async fn catch_unwind<F: Future>(fut: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut fut = pin!(fut);
    poll_fn(
        move |cx| match std_catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        },
    )
    .await
}

/// The message of a string panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Installs (once per process) a panic hook that stays silent for intentional
/// panics (string payloads containing [`INTENTIONAL`], and non-string
/// payloads, which only `panic_any` raises, on purpose) and defers to the
/// previous hook for everything else.
pub(crate) fn quiet_intentional_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let intentional = match panic_message(info.payload()) {
                Some(message) => message.contains(INTENTIONAL),
                None => true,
            };
            if !intentional {
                previous(info);
            }
        }));
    });
}

/// A guard whose destructor panics (intentionally).
pub(crate) struct PanicOnDrop(pub(crate) &'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Whole milliseconds since `t0` (virtual ones under the paused clock).
pub(crate) fn since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).expect("small")
}

/// A runtime of the given flavour: [`paused_runtime`], or a 4-worker
/// [`multi_thread_runtime`].
pub(crate) fn runtime(multi_thread: bool) -> Runtime {
    if multi_thread {
        multi_thread_runtime(4)
    } else {
        paused_runtime()
    }
}

/// A `current_thread` runtime with a paused clock: time only moves when the
/// runtime has nothing else to do, so times are virtual and exact.
pub(crate) fn paused_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("current_thread runtime")
}

/// A `multi_thread` runtime with `workers` worker threads (its clock cannot
/// be paused).
pub(crate) fn multi_thread_runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("multi_thread runtime")
}

/// What the task bodies of a model test did: how many were alive (and the
/// most at once), and when each input's attempts started, in ms since the
/// run began.
pub(crate) struct Bodies {
    pub(crate) t0: Instant,
    pub(crate) live: Live,
    pub(crate) starts: Mutex<Vec<Vec<u64>>>,
}

impl Bodies {
    /// For `n` inputs; the clock starts now.
    pub(crate) fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            live: Live::new(),
            starts: Mutex::new(vec![Vec::new(); n]),
        })
    }

    /// Milliseconds since the run began.
    pub(crate) fn now_ms(&self) -> u64 {
        since(self.t0)
    }

    /// A body for input `index` starts: counted alive until the guard drops.
    pub(crate) fn enter(&self, index: usize) -> LiveGuard {
        let guard = self.live.guard();
        self.starts.lock().unwrap()[index].push(self.now_ms());
        guard
    }
}

/// xorshift64*: small, seeded, good enough to pick instants.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Spins for a random instant under 400 µs, then SIGKILLs `child` unless it
/// has ended already (then it is not killed); `true` if the kill ended it.
pub(crate) fn kill_soon(child: &mut std::process::Child, rng: &mut Rng) -> bool {
    let spin = Duration::from_micros(rng.below(400));
    let start = std::time::Instant::now();
    while start.elapsed() < spin {
        std::hint::spin_loop();
    }
    if child.try_wait().unwrap().is_some() {
        return false;
    }
    // `Child::kill` is SIGKILL.
    child.kill().unwrap();
    !child.wait().unwrap().success()
}
