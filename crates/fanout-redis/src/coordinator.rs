//! The coordinator: fans a run out to a handler's workers and gets back
//! what a local run gives.
//!
//! How: the run is a local fanout run whose tasks are proxies. Each proxy
//! queues its task on the broker (batched with its siblings') and waits for
//! the task's result in the run's results log, which one reader tails. The
//! local engine keeps doing what it does (bounds the tasks in flight, puts
//! results in input order, stops on the first failure, watches the deadline
//! and the caller's token, keeps `Progress`, makes the spans); a proxy that
//! is dropped before its result came (the run stopped) has the run
//! cancelled on the broker, which every worker hears.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use fanout::{
    Cause, Counts, Error, Failure, FanOut, Input, NoRetry, Order, Outcome, Panic, PanicPolicy,
    Progress, Report, Retry, RetryPolicy, TaskCtx, TaskError, TaskStream,
};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, Buried, Cursor, Logged};
use crate::handler::Handler;
use crate::secret::Secret;
use crate::wire::{self, Chunk, Envelope, Recorded, WireOutcome};

/// How long a run waits for a worker serving its handler to announce
/// itself before its tasks fail as undeliverable. Default of
/// [`RemoteFanOut::worker_wait`].
const WORKER_WAIT: Duration = Duration::from_secs(10);
/// A worker counts as present if it announced itself within this.
const PRESENCE: Duration = Duration::from_secs(5);
/// The most envelopes queued in one round trip.
const BATCH: usize = 512;

/// Runs batches of work on the workers that serve a [`Handler`], through a
/// broker, and returns what a local [`fanout`] run returns: results in
/// input order (or by key), a [`Report`] with one outcome per input, or a
/// stream of outcomes.
///
/// Cloning is cheap. Dropping the last clone stops its background task,
/// which publishes the cancellation of runs whose futures were dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use fanout_redis::{Coordinator, Handler, RedisBroker};
///
/// const SQUARE: Handler<u64, u64, String> = Handler::new("square");
///
/// let coordinator = Coordinator::new(RedisBroker::connect("redis://127.0.0.1:6379").await?);
/// let squares = coordinator
///     .fan_out(1..=100u64)
///     .limit(64)
///     .run(&SQUARE)
///     .await
///     .map_err(|e| e.to_string())?;
/// assert_eq!(squares[9], 100);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Coordinator<B> {
    broker: B,
    janitor: Arc<Janitor>,
    secret: Option<Secret>,
}

/// Publishes the cancellation of runs whose futures were dropped (their
/// own cleanup cannot wait for the broker); owned by the coordinator.
struct Janitor {
    tx: mpsc::UnboundedSender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<B> std::fmt::Debug for Coordinator<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

impl<B: Broker> Coordinator<B> {
    /// A coordinator sending runs through `broker`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(broker: B) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let b = broker.clone();
        let task = tokio::spawn(async move {
            while let Some(run) = rx.recv().await {
                if let Err(e) = b.cancel(&run).await {
                    tracing::warn!(run = %run, error = %e, "cannot publish the cancellation of a dropped run");
                }
            }
        });
        Self {
            broker,
            janitor: Arc::new(Janitor { tx, task }),
            secret: None,
        }
    }

    /// Signs every task with `secret`, and accepts only results signed with
    /// it (see [`Secret`]): a result that is not comes back as
    /// [`TaskError::Undeliverable`]. Workers need the same secret. Default:
    /// no secret.
    #[must_use]
    pub fn with_secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// The dead letters of `handler`'s queue, oldest first: tasks that
    /// failed their last attempt (with that attempt's error), that were
    /// delivered more than a worker's `max_deliveries` to workers that died
    /// or stalled, or that a worker refused (not signed with its secret).
    /// The newest 100,000 are kept per handler. Reading them removes
    /// nothing: see [`clear_dead_letters`](Coordinator::clear_dead_letters).
    ///
    /// # Errors
    /// The broker cannot be read.
    pub async fn dead_letters<I, T, E>(
        &self,
        handler: &Handler<I, T, E>,
    ) -> Result<Vec<DeadLetter<I, E>>, BrokerError>
    where
        I: DeserializeOwned,
        E: DeserializeOwned,
    {
        let buried = self.broker.dead_letters(handler.name()).await?;
        Ok(buried
            .into_iter()
            .map(|b| DeadLetter::read(b, handler.types()))
            .collect())
    }

    /// How many workers serving `handler` are alive: they announced
    /// themselves (with their heartbeat, every second) within the last
    /// five seconds. One round trip.
    ///
    /// # Errors
    /// The broker cannot be read.
    pub async fn workers<I, T, E>(&self, handler: &Handler<I, T, E>) -> Result<usize, BrokerError> {
        self.broker.live_workers(handler.name(), PRESENCE).await
    }

    /// Cancels the run `id`, as its own coordinator does when it stops:
    /// workers stop its running tasks and skip its queued ones. For a run
    /// whose coordinator died and will not be resumed (a resumed run clears
    /// the cancellation, so a later run may reuse the id). Cancelling a run
    /// that ended, or that never existed, does nothing visible.
    ///
    /// # Errors
    /// The broker cannot be written.
    pub async fn cancel_run(&self, id: &str) -> Result<(), BrokerError> {
        self.broker.cancel(id).await
    }

    /// Empties `handler`'s dead-letter list.
    ///
    /// # Errors
    /// The broker cannot be written.
    pub async fn clear_dead_letters<I, T, E>(
        &self,
        handler: &Handler<I, T, E>,
    ) -> Result<(), BrokerError> {
        self.broker.clear_dead_letters(handler.name()).await
    }

    /// A run over unkeyed inputs: see [`fanout::fan_out`].
    pub fn fan_out<I>(&self, items: I) -> RemoteFanOut<B, fanout::Indexed<I::IntoIter>>
    where
        I: IntoIterator,
    {
        self.remote(fanout::fan_out(items))
    }

    /// A run over `(key, item)` pairs: see [`fanout::fan_out_keyed`].
    pub fn fan_out_keyed<I, K, V>(&self, items: I) -> RemoteFanOut<B, fanout::Keyed<I::IntoIter>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Clone + std::fmt::Debug,
    {
        self.remote(fanout::fan_out_keyed(items))
    }

    /// A run over a stream of inputs: see [`fanout::fan_out_stream`].
    pub fn fan_out_stream<St>(
        &self,
        stream: St,
    ) -> RemoteFanOut<B, fanout::Indexed<fanout::FromStream<St>>>
    where
        St: Stream,
    {
        self.remote(fanout::fan_out_stream(stream))
    }

    fn remote<S>(&self, local: FanOut<S>) -> RemoteFanOut<B, S> {
        RemoteFanOut {
            coordinator: self.clone(),
            local,
            run_id: None,
            timeout: None,
            retry: NoRetry,
            panics: PanicPolicy::Propagate,
            external: None,
            keep: Duration::from_secs(24 * 3600),
            worker_wait: WORKER_WAIT,
            on_output: None,
        }
    }
}

/// What a run's tasks send while they run ([`RemoteCtx::send`]), as
/// [`RemoteFanOut::on_output`] hands it over.
///
/// [`RemoteCtx::send`]: crate::RemoteCtx::send
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// A piece of a task's output.
    Chunk {
        /// The task's position in the run's input.
        index: u64,
        /// Its attempt, from 1.
        attempt: u32,
        /// The worker whose delivery of the attempt sent it.
        worker: String,
        /// Which output (the handler's choice: the `fanout` command uses 1
        /// for stdout and 2 for stderr).
        channel: u8,
        /// The bytes, at most 1 MiB.
        bytes: Vec<u8>,
    },
    /// The attempt's outcome was recorded from `worker`'s delivery: its
    /// output is the chunks that worker sent. Chunks of the same attempt
    /// from other workers came from deliveries that died or stalled past
    /// their lease, and are void.
    Recorded {
        /// The task's position in the run's input.
        index: u64,
        /// Its attempt, from 1.
        attempt: u32,
        /// The worker whose result counts.
        worker: String,
    },
}

/// The caller's output handler.
type OnOutput = Arc<dyn Fn(Output) + Send + Sync>;

/// A task on a handler's dead-letter list: see
/// [`Coordinator::dead_letters`].
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetter<I, E> {
    /// The run it belonged to.
    pub run: String,
    /// Its position in the run's input.
    pub index: u64,
    /// Its last attempt, from 1.
    pub attempt: u32,
    /// Its input; `None` if it does not decode as the handler's input type
    /// (it was queued by code built with other types).
    pub input: Option<I>,
    /// How its last attempt ended: the task's error, panic or timeout, or
    /// [`TaskError::Undeliverable`] when it did not run to an outcome.
    pub error: TaskError<E>,
    /// Why it is on the list, in words.
    pub why: String,
}

impl<I: DeserializeOwned, E: DeserializeOwned> DeadLetter<I, E> {
    fn read(b: Buried, types: u64) -> Self {
        let env = wire::decode::<Envelope>(&b.task).ok();
        let input = env
            .as_ref()
            .filter(|e| e.types == types)
            .and_then(|e| wire::decode::<I>(&e.payload).ok());
        let error = match b.outcome.as_deref().map(wire::decode::<WireOutcome>) {
            Some(Ok(WireOutcome::Failed(bytes))) => match wire::decode::<E>(&bytes) {
                Ok(e) => TaskError::Failed(e),
                Err(_) => TaskError::Undeliverable(b.why.clone()),
            },
            Some(Ok(WireOutcome::Panicked(m))) => TaskError::Panicked(Panic::new(Box::new(m))),
            Some(Ok(WireOutcome::TimedOut(ms))) => TaskError::TimedOut(Duration::from_millis(ms)),
            _ => TaskError::Undeliverable(b.why.clone()),
        };
        Self {
            run: env.as_ref().map(|e| e.run.clone()).unwrap_or_default(),
            index: env.as_ref().map_or(0, |e| e.index),
            attempt: env.as_ref().map_or(0, |e| e.attempt),
            input,
            error,
            why: b.why,
        }
    }
}

/// A run being configured, to be sent to a handler's workers: the local
/// [`FanOut`]'s settings (limit, deadline, cancellation token, progress,
/// stream window), and those that take effect on the workers (the
/// per-attempt timeout, retries, which panics).
///
/// What differs from a local run, because the tasks run elsewhere:
/// - `limit` bounds the tasks *queued or running* for this run, across all
///   workers; each worker also has its own limit.
/// - A timeout counts from the moment a worker starts the attempt (not
///   while it waits in the queue), as locally.
/// - Retries: a failed attempt's error comes back, the retry policy
///   decides, and the next attempt is queued after the backoff on the
///   broker's delayed list, so any worker may take it. The proxy keeps its
///   slot meanwhile.
/// - A panic's payload cannot cross machines: it comes back as its
///   message, and is re-raised as a `String` payload.
/// - Cancellation (a failure, the deadline, the caller's token, dropping
///   the run) is published on the broker: workers cancel the run's running
///   tasks (their [`RemoteCtx::token`](crate::RemoteCtx::token) fires and
///   they are dropped) and drop its queued ones without running them.
/// - Execution is at least once (a worker that dies mid-task has its task
///   run again elsewhere after its lease), recording exactly once.
#[must_use = "a RemoteFanOut does nothing until one of its run methods is awaited"]
pub struct RemoteFanOut<B, S, R = NoRetry> {
    coordinator: Coordinator<B>,
    local: FanOut<S>,
    run_id: Option<String>,
    timeout: Option<Duration>,
    retry: R,
    panics: PanicPolicy,
    external: Option<CancellationToken>,
    keep: Duration,
    worker_wait: Duration,
    on_output: Option<OnOutput>,
}

impl<B, S, R> std::fmt::Debug for RemoteFanOut<B, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFanOut")
            .field("run_id", &self.run_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<B: Broker, S, R> RemoteFanOut<B, S, R> {
    /// The most tasks of this run queued or running at once, across every
    /// worker. Default [`fanout::DEFAULT_LIMIT`].
    ///
    /// # Panics
    /// If `limit` is 0.
    #[track_caller]
    pub fn limit(mut self, limit: usize) -> Self {
        self.local = self.local.limit(limit);
        self
    }

    /// A time limit for each attempt, counted on the worker from the
    /// attempt's start. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A time limit for the whole run, counted from its first poll. Default:
    /// none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.local = self.local.deadline(deadline);
        self
    }

    /// Stops the run when `token` is cancelled. Default: none.
    pub fn cancel_on(mut self, token: &CancellationToken) -> Self {
        self.external = Some(token.clone());
        self
    }

    /// What a task's panic does to the run. Default
    /// [`PanicPolicy::Propagate`]: the run stops, and the panic's message is
    /// re-raised after the drain.
    pub fn panics(mut self, policy: PanicPolicy) -> Self {
        self.panics = policy;
        self
    }

    /// Keeps `progress` up to date while the run goes: started counts tasks
    /// queued.
    pub fn progress(mut self, progress: &Progress) -> Self {
        self.local = self.local.progress(progress);
        self
    }

    /// For [`stream`](RemoteFanOut::stream): see [`FanOut::window`].
    pub fn window(mut self, window: usize) -> Self {
        self.local = self.local.window(window);
        self
    }

    /// The run's id. A run given the id of an earlier, interrupted run (a
    /// coordinator that died) resumes it: tasks whose result was recorded
    /// are not run again; the others are queued again (one in flight when
    /// the coordinator died may then run twice; its result is recorded
    /// once). Default: a fresh random id. Any text without `{` or `}`.
    ///
    /// # Panics
    /// If `id` is empty or holds `{` or `}`.
    #[track_caller]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        assert!(
            !id.is_empty() && !id.contains(['{', '}']),
            "fanout-redis: a run id cannot be empty or hold {{ or }}"
        );
        self.run_id = Some(id);
        self
    }

    /// How long the run's results stay on the broker after the run (to
    /// resume it, or inspect it). Default one day.
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// How long the run waits, at its start, for a worker serving its
    /// handler to announce itself; past that its tasks fail as
    /// [`TaskError::Undeliverable`]. Default 10 s.
    pub fn worker_wait(mut self, wait: Duration) -> Self {
        self.worker_wait = wait;
        self
    }

    /// Hands what the tasks send while they run ([`RemoteCtx::send`]) to
    /// `f`, as it arrives: for each attempt, its chunks in the order its
    /// worker sent them, then [`Output::Recorded`] naming the worker whose
    /// result counts, always before the task's outcome is handed to the
    /// run. `f` runs on the task that reads the run's results: keep it short
    /// (write to a file, send on a channel). Without it, chunks are dropped
    /// as they arrive.
    ///
    /// Output is bounded on the broker: at most 64 chunks of 1 MiB of a run
    /// wait for the coordinator; a task that sends more waits in
    /// [`RemoteCtx::send`] until the coordinator has read some.
    ///
    /// [`RemoteCtx::send`]: crate::RemoteCtx::send
    pub fn on_output(mut self, f: impl Fn(Output) + Send + Sync + 'static) -> Self {
        self.on_output = Some(Arc::new(f));
        self
    }

    /// Retries failed attempts as `policy` says (attempts, backoff, which
    /// errors), each retry queued on the broker's delayed list.
    pub fn retry<P>(self, policy: Retry<P>) -> RemoteFanOut<B, S, Retry<P>> {
        RemoteFanOut {
            coordinator: self.coordinator,
            local: self.local,
            run_id: self.run_id,
            timeout: self.timeout,
            retry: policy,
            panics: self.panics,
            external: self.external,
            keep: self.keep,
            worker_wait: self.worker_wait,
            on_output: self.on_output,
        }
    }
}

/// Why a proxy got no value: what the worker said, before it is mapped
/// onto [`TaskError`].
#[derive(Debug)]
enum Remote<E> {
    Failed(E),
    Panicked(String),
    TimedOut(Duration),
    Undeliverable(String),
}

impl<E> Remote<E> {
    fn into_task_error(self) -> TaskError<E> {
        match self {
            Remote::Failed(e) => TaskError::Failed(e),
            Remote::Panicked(m) => TaskError::Panicked(Panic::new(Box::new(m))),
            Remote::TimedOut(d) => TaskError::TimedOut(d),
            Remote::Undeliverable(m) => TaskError::Undeliverable(m),
        }
    }
}

/// A task's outcome as the local engine reports it, mapped back onto the
/// vocabulary of a local run.
fn unwrap_error<E>(e: TaskError<Remote<E>>) -> TaskError<E> {
    match e {
        TaskError::Failed(remote) => remote.into_task_error(),
        TaskError::Panicked(p) => TaskError::Panicked(p),
        TaskError::TimedOut(d) => TaskError::TimedOut(d),
        TaskError::Cancelled => TaskError::Cancelled,
        TaskError::NotStarted => TaskError::NotStarted,
        TaskError::Undeliverable(m) => TaskError::Undeliverable(m),
        // `TaskError` is non-exhaustive; a kind this crate does not know
        // cannot come from the proxies it runs.
        other => TaskError::Undeliverable(format!("unexpected outcome {}", other.kind())),
    }
}

fn unwrap_outcome<T, E>(o: Outcome<T, Remote<E>>) -> Outcome<T, E> {
    o.map_err(unwrap_error)
}

/// A waiting proxy, or a record that came before it looked.
enum Slot {
    Waiting(oneshot::Sender<Recorded>),
    Arrived(Recorded),
}

/// What the proxies of one run share.
struct RunShared<B> {
    broker: B,
    run: String,
    handler: &'static str,
    types: u64,
    timeout_ms: Option<u64>,
    /// Results by `(index, attempt)`.
    slots: Mutex<HashMap<(u64, u32), Slot>>,
    /// Envelopes for the batching queuer.
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    /// `Some(Ok)` once the run may queue tasks (a worker is present, the
    /// results already recorded have been read); `Some(Err)` if it cannot.
    ready: watch::Receiver<Option<Result<(), String>>>,
    /// Cancelled to stop the run from inside (a panic under `Propagate`).
    stop: CancellationToken,
    /// The run has been cancelled on the broker (or is about to be).
    cancel_sent: AtomicBool,
    janitor: mpsc::UnboundedSender<String>,
    /// Set once the broker failed for good: every proxy ends with it.
    broken: Mutex<Option<String>>,
    secret: Option<Secret>,
    on_output: Option<OnOutput>,
}

impl<B: Broker> RunShared<B> {
    /// Registers the proxy for `(index, attempt)`: the record, if it came
    /// already, or a receiver for it.
    fn expect(&self, index: u64, attempt: u32) -> Result<Recorded, oneshot::Receiver<Recorded>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.remove(&(index, attempt)) {
            Some(Slot::Arrived(rec)) => Ok(rec),
            _ => {
                let (tx, rx) = oneshot::channel();
                // Checked under the slots' lock, which `break_all` holds
                // while it breaks: no proxy waits on a broken run.
                if self.broken().is_none() {
                    slots.insert((index, attempt), Slot::Waiting(tx));
                }
                Err(rx)
            }
        }
    }

    /// A record from the log: to its proxy, or kept until it looks. Under
    /// a secret, a record not signed with it stands for an undeliverable
    /// task.
    fn arrived(&self, mut rec: Recorded) {
        if let Some(secret) = &self.secret {
            if !secret.verify_record(&self.run, &rec) {
                tracing::warn!(run = %self.run, index = rec.index, worker = %rec.worker, "a result not signed with the run's secret");
                rec.outcome = WireOutcome::Undeliverable(format!(
                    "task {}: its result (from worker '{}') is {} with this coordinator's secret: \
                     give the coordinator and the workers the same secret",
                    rec.index,
                    rec.worker,
                    if rec.signature.is_some() {
                        "signed with another secret, not"
                    } else {
                        "not signed"
                    }
                ));
            }
        }
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (rec.index, rec.attempt);
        match slots.remove(&key) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(rec);
            }
            _ => {
                slots.insert(key, Slot::Arrived(rec));
            }
        }
    }

    /// Entries of the run's log, in order: chunks to the output handler
    /// (then dropped from the broker), records to their proxies.
    async fn take(&self, entries: Vec<Logged>) -> Result<(), BrokerError> {
        let mut consumed = Vec::new();
        for entry in entries {
            match entry {
                Logged::Record(r) => match wire::decode::<Recorded>(&r) {
                    Ok(rec) => {
                        if let Some(f) = &self.on_output {
                            f(Output::Recorded {
                                index: rec.index,
                                attempt: rec.attempt,
                                worker: rec.worker.clone(),
                            });
                        }
                        self.arrived(rec);
                    }
                    Err(e) => {
                        tracing::warn!(run = %self.run, error = %e, "a result record does not decode");
                    }
                },
                Logged::Chunk(id, bytes) => {
                    if let Some(f) = &self.on_output {
                        match wire::decode::<Chunk>(&bytes) {
                            Ok(c) => f(Output::Chunk {
                                index: c.index,
                                attempt: c.attempt,
                                worker: c.worker,
                                channel: c.channel,
                                bytes: c.bytes,
                            }),
                            Err(e) => {
                                tracing::warn!(run = %self.run, error = %e, "an output chunk does not decode");
                            }
                        }
                    }
                    consumed.push(id);
                }
            }
        }
        self.broker.consumed(&self.run, consumed).await
    }

    /// Every waiting proxy ends: the broker failed for good.
    fn break_all(&self, why: String) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        *self.broken.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        // Dropping the senders wakes the receivers with an error.
        slots.retain(|_, s| matches!(s, Slot::Arrived(_)));
    }

    fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The run must be cancelled on the broker: done once, by the janitor
    /// (which outlives a dropped run).
    fn request_cancel(&self) {
        if !self.cancel_sent.swap(true, Ordering::AcqRel) {
            let _ = self.janitor.send(self.run.clone());
        }
    }

    fn envelope(
        &self,
        index: u64,
        attempt: u32,
        payload: &[u8],
        traceparent: Option<String>,
    ) -> Vec<u8> {
        let mut env = Envelope::<&[u8], &str> {
            version: wire::VERSION,
            run: &self.run,
            index,
            attempt,
            types: self.types,
            timeout_ms: self.timeout_ms,
            traceparent,
            signature: None,
            payload,
        };
        if let Some(secret) = &self.secret {
            secret.sign_envelope(&mut env);
        }
        wire::encode(&env).expect("an envelope always encodes")
    }
}

/// Requests the run's cancellation if dropped before it is disarmed: a
/// proxy dropped while its task is queued or running (the run stopped, or
/// its future was dropped).
struct InFlight<'a, B: Broker> {
    shared: &'a RunShared<B>,
    armed: bool,
}

impl<B: Broker> Drop for InFlight<'_, B> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.request_cancel();
        }
    }
}

/// The W3C `traceparent` of the current span, to make the worker's span
/// its child.
fn traceparent() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            return Some(format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            ));
        }
    }
    None
}

/// One task of the run, as the local engine runs it: queues the task's
/// attempts and waits for their results.
async fn proxy<B, K, I, T, E, R>(
    shared: Arc<RunShared<B>>,
    retry: Arc<R>,
    ctx: TaskCtx<K>,
    item: I,
) -> Result<T, Remote<E>>
where
    B: Broker,
    I: Serialize,
    T: DeserializeOwned,
    E: DeserializeOwned,
    R: RetryPolicy<I, E>,
{
    let mut ready = shared.ready.clone();
    let go = ready
        .wait_for(Option::is_some)
        .await
        .map(|r| r.clone().expect("checked by wait_for"))
        .unwrap_or_else(|_| Err("the run's coordinator stopped".to_owned()));
    go.map_err(Remote::Undeliverable)?;
    let index = ctx.index() as u64;
    let payload = wire::encode(&item).map_err(|e| {
        Remote::Undeliverable(format!("task {index}: its input does not serialize: {e}"))
    })?;
    drop(item);
    if payload.len() > crate::MAX_PAYLOAD {
        return Err(Remote::Undeliverable(wire::too_large(
            index,
            "input",
            payload.len(),
        )));
    }
    let trace = traceparent();
    let mut guard = InFlight {
        shared: &shared,
        armed: true,
    };
    let mut attempt = 1;
    // The backoff before the current attempt, once a retry was decided.
    let mut backoff: Option<Duration> = None;
    loop {
        // A resumed run finds the attempts recorded before in its log:
        // those are not queued again.
        let rec = match shared.expect(index, attempt) {
            Ok(rec) => rec,
            Err(rx) => {
                let env = shared.envelope(index, attempt, &payload, trace.clone());
                match backoff {
                    None => {
                        let _ = shared.outbox.send(env);
                    }
                    Some(delay) => {
                        if let Err(e) = shared.broker.schedule(shared.handler, delay, env).await {
                            guard.armed = false;
                            return Err(Remote::Undeliverable(e.to_string()));
                        }
                    }
                }
                match rx.await {
                    Ok(rec) => rec,
                    Err(_) => {
                        guard.armed = false;
                        let why = shared.broken().unwrap_or_else(|| {
                            "the run's results could no longer be read".to_owned()
                        });
                        return Err(Remote::Undeliverable(why));
                    }
                }
            }
        };
        let last = rec.outcome.clone();
        let err = match rec.outcome {
            WireOutcome::Ok(bytes) => {
                guard.armed = false;
                return wire::decode(&bytes).map_err(|e| {
                    Remote::Undeliverable(format!(
                        "task {index}: its result does not decode here: {e} (do both sides build from the same code?)"
                    ))
                });
            }
            WireOutcome::Failed(bytes) => match wire::decode::<E>(&bytes) {
                Ok(e) => TaskError::Failed(e),
                Err(e) => {
                    guard.armed = false;
                    return Err(Remote::Undeliverable(format!(
                        "task {index}: its error does not decode here: {e}"
                    )));
                }
            },
            WireOutcome::Panicked(m) => TaskError::Panicked(Panic::new(Box::new(m))),
            WireOutcome::TimedOut(ms) => TaskError::TimedOut(Duration::from_millis(ms)),
            WireOutcome::Undeliverable(m) => {
                guard.armed = false;
                return Err(Remote::Undeliverable(m));
            }
        };
        let again = if ctx.is_cancelled() {
            None
        } else {
            retry.retry_after(attempt, &err)
        };
        let Some(delay) = again else {
            guard.armed = false;
            if !ctx.is_cancelled() {
                // Failed for good: to the dead letters, before the run
                // hears of it.
                let why = format!(
                    "failed its last attempt ({attempt}) on worker '{}': {}",
                    rec.worker,
                    last.describe()
                );
                let task = shared.envelope(index, attempt, &payload, None);
                let outcome = wire::encode(&last).ok();
                if let Err(e) = shared.broker.bury(shared.handler, task, why, outcome).await {
                    tracing::warn!(run = %shared.run, index, error = %e, "cannot add a failed task to the dead letters");
                }
            }
            return Err(match err {
                TaskError::Failed(e) => Remote::Failed(e),
                TaskError::Panicked(p) => Remote::Panicked(p.message().unwrap_or("").to_owned()),
                TaskError::TimedOut(d) => Remote::TimedOut(d),
                other => Remote::Undeliverable(other.kind().to_owned()),
            });
        };
        attempt += 1;
        backoff = Some(delay);
    }
}

/// The run's background tasks: the queuer, the results reader and the
/// start-up check. They live in the run's future; dropping it stops them.
fn start_background<B: Broker>(
    tasks: &mut JoinSet<()>,
    shared: &Arc<RunShared<B>>,
    mut outbox: mpsc::UnboundedReceiver<Vec<u8>>,
    ready: watch::Sender<Option<Result<(), String>>>,
    keep: Duration,
    worker_wait: Duration,
) {
    let s = shared.clone();
    tasks.spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = outbox.recv().await {
            batch.push(first);
            while batch.len() < BATCH {
                match outbox.try_recv() {
                    Ok(env) => batch.push(env),
                    Err(_) => break,
                }
            }
            if let Err(e) = s
                .broker
                .enqueue(s.handler, std::mem::take(&mut batch))
                .await
            {
                s.break_all(e.to_string());
                return;
            }
        }
    });
    let s = shared.clone();
    tasks.spawn(async move {
        // Start-up: the run's records so far (a resumed run's), then a
        // worker present.
        let setup = async {
            s.broker.begin(&s.run, keep).await?;
            let mut cursor = Cursor::start();
            loop {
                let (next, entries) = s
                    .broker
                    .results(&s.run, &cursor, Duration::from_millis(1))
                    .await?;
                if entries.is_empty() {
                    break;
                }
                cursor = next;
                s.take(entries).await?;
            }
            let until = tokio::time::Instant::now() + worker_wait;
            while s.broker.live_workers(s.handler, PRESENCE).await? == 0 {
                if tokio::time::Instant::now() >= until {
                    return Ok::<_, BrokerError>((cursor, false));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok((cursor, true))
        };
        let mut cursor = match setup.await {
            Ok((cursor, true)) => {
                let _ = ready.send(Some(Ok(())));
                cursor
            }
            Ok((_, false)) => {
                let _ = ready.send(Some(Err(format!(
                    "no worker serves handler '{}': none announced itself in the last {:.0?}; \
                     start a worker that serves it",
                    s.handler, worker_wait
                ))));
                return;
            }
            Err(e) => {
                let _ = ready.send(Some(Err(e.to_string())));
                return;
            }
        };
        loop {
            match s
                .broker
                .results(&s.run, &cursor, Duration::from_secs(1))
                .await
            {
                Ok((_, records)) if records.is_empty() => {
                    // A quiet second: check that the broker still has the
                    // run (a server restarted without persistence has
                    // nothing, and the run would wait forever).
                    match s.broker.still_there(&s.run).await {
                        Ok(true) => {}
                        Ok(false) => {
                            s.break_all(format!(
                                "the broker lost run {}'s tasks and results: it restarted \
                                 without persistence, or its keys were deleted or evicted \
                                 (run Redis with appendonly yes and maxmemory-policy noeviction)",
                                s.run
                            ));
                            return;
                        }
                        Err(e) => {
                            s.break_all(e.to_string());
                            return;
                        }
                    }
                }
                Ok((next, entries)) => {
                    cursor = next;
                    if let Err(e) = s.take(entries).await {
                        s.break_all(e.to_string());
                        return;
                    }
                }
                Err(e) => {
                    s.break_all(e.to_string());
                    return;
                }
            }
        }
    });
}

/// A fresh run id: 16 random hex digits.
fn fresh_id() -> String {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    format!("{:016x}", u64::from_le_bytes(bytes))
}

/// A run, started: the local run of proxies (not polled yet) and what
/// ends it.
struct Started<B, S, R> {
    local: FanOut<S>,
    retry: Arc<R>,
    ending: Ending<B>,
    panics: PanicPolicy,
}

/// What a run needs to end: its shared state and background tasks.
struct Ending<B> {
    shared: Arc<RunShared<B>>,
    background: JoinSet<()>,
    keep: Duration,
}

impl<B: Broker, S: Input, R> RemoteFanOut<B, S, R> {
    fn start<I, T, E>(self, handler: &Handler<I, T, E>) -> Started<B, S, R> {
        let run = self.run_id.unwrap_or_else(fresh_id);
        let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = watch::channel(None);
        let stop = match &self.external {
            Some(t) => t.child_token(),
            None => CancellationToken::new(),
        };
        let shared = Arc::new(RunShared {
            broker: self.coordinator.broker.clone(),
            run,
            handler: handler.name(),
            types: handler.types(),
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            slots: Mutex::new(HashMap::new()),
            outbox: outbox_tx,
            ready: ready_rx,
            stop: stop.clone(),
            cancel_sent: AtomicBool::new(false),
            janitor: self.coordinator.janitor.tx.clone(),
            broken: Mutex::new(None),
            secret: self.coordinator.secret.clone(),
            on_output: self.on_output,
        });
        let mut background = JoinSet::new();
        start_background(
            &mut background,
            &shared,
            outbox_rx,
            ready_tx,
            self.keep,
            self.worker_wait,
        );
        Started {
            local: self.local.cancel_on(&stop).panics(self.panics),
            retry: Arc::new(self.retry),
            ending: Ending {
                shared,
                background,
                keep: self.keep,
            },
            panics: self.panics,
        }
    }
}

impl<B: Broker> Ending<B> {
    /// After the local run: the cancellation published if the run stopped
    /// with tasks still out, and the run's keys set to expire.
    async fn end(mut self) {
        self.background.abort_all();
        while self.background.join_next().await.is_some() {}
        if self.shared.cancel_sent.load(Ordering::Acquire) {
            // The janitor publishes too; doing it here as well means the
            // cancellation is out before the run returns.
            let _ = self.shared.broker.cancel(&self.shared.run).await;
        }
        let _ = self.shared.broker.end(&self.shared.run, self.keep).await;
    }
}

/// Re-raises the first remote panic under `PanicPolicy::Propagate` (its
/// message as a `String` payload).
fn reraise<E>(panics: PanicPolicy, e: &TaskError<E>) {
    if panics == PanicPolicy::Propagate {
        if let TaskError::Panicked(p) = e {
            std::panic::resume_unwind(Box::new(p.message().unwrap_or("").to_owned()));
        }
    }
}

impl<B, S, R> RemoteFanOut<B, S, R>
where
    B: Broker,
    S: Input + Send + 'static,
    S::Key: 'static,
    S::Item: Serialize + 'static,
{
    /// Runs the tasks fail-fast on `handler`'s workers and returns their
    /// results in input order (keyed input: `(key, result)` pairs), as
    /// [`FanOut::run`] does.
    ///
    /// # Errors
    /// An [`Error`] naming the first failure observed (a task's error, a
    /// remote panic, a timeout, or [`TaskError::Undeliverable`]: no worker,
    /// a dead-lettered task, a broker that failed for good), with the other
    /// failures and the counts.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`] (the default), re-raises a task's
    /// panic message after the drain.
    pub async fn run<T, E>(
        self,
        handler: &Handler<S::Item, T, E>,
    ) -> Result<S::Results<T>, Error<S::Key, E>>
    where
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + Send + 'static,
        R: RetryPolicy<S::Item, E>,
    {
        let Started {
            local,
            retry,
            ending,
            panics,
        } = self.start(handler);
        let shared = ending.shared.clone();
        let result = local
            .run(move |ctx, item| proxy(shared.clone(), retry.clone(), ctx, item))
            .await;
        ending.end().await;
        result.map_err(|e| {
            let (cause, others, counts) = e.into_parts();
            let cause = match cause {
                Cause::Task(f) => Cause::Task(unwrap_failure(f)),
                Cause::Cancelled => Cause::Cancelled,
                Cause::DeadlineExceeded => Cause::DeadlineExceeded,
                _ => Cause::Cancelled,
            };
            let others: Vec<Failure<S::Key, E>> = others.into_iter().map(unwrap_failure).collect();
            let counts = recount(counts, &cause, &others);
            if let Cause::Task(f) = &cause {
                reraise(panics, &f.error);
            }
            for f in &others {
                reraise(panics, &f.error);
            }
            Error::from_parts(cause, others, counts)
        })
    }

    /// Runs every task on `handler`'s workers, never stopping on a failure,
    /// and reports one outcome per input, in input order, as
    /// [`FanOut::run_all`] does.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`] (the default) a remote panic stops
    /// the run, and its message is re-raised after the drain.
    pub async fn run_all<T, E>(self, handler: &Handler<S::Item, T, E>) -> Report<S::Key, T, E>
    where
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + Send + 'static,
        R: RetryPolicy<S::Item, E>,
    {
        let Started {
            local,
            retry,
            ending,
            panics,
        } = self.start(handler);
        let shared = ending.shared.clone();
        let stop = ending.shared.stop.clone();
        let report = local
            .run_all(move |ctx, item| {
                let fut = proxy(shared.clone(), retry.clone(), ctx, item);
                let stop = stop.clone();
                async move {
                    let out = fut.await;
                    // A panic stops every mode under `Propagate`.
                    if matches!(&out, Err(Remote::Panicked(_))) && panics == PanicPolicy::Propagate
                    {
                        stop.cancel();
                    }
                    out
                }
            })
            .await;
        ending.end().await;
        let stopped_by = report.stopped_by().map(|c| match c {
            Cause::DeadlineExceeded => Cause::DeadlineExceeded,
            _ => Cause::Cancelled,
        });
        let outcomes: Vec<(S::Key, Outcome<T, E>)> = report
            .into_outcomes()
            .into_iter()
            .map(|(k, o)| (k, unwrap_outcome(o)))
            .collect();
        for (_, o) in &outcomes {
            if let Err(e) = o {
                reraise(panics, e);
            }
        }
        Report::from_outcomes(outcomes, stopped_by)
    }

    /// Runs the tasks on `handler`'s workers and hands their outcomes over
    /// as they complete, or in input order, as [`FanOut::stream`] does.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`] (the default) a remote panic stops
    /// the run; the stream yields nothing more and re-raises the panic's
    /// message once every task is gone.
    pub fn stream<T, E>(
        self,
        order: Order,
        handler: &Handler<S::Item, T, E>,
    ) -> RemoteStream<B, S::Key, T, E>
    where
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + Send + 'static,
        R: RetryPolicy<S::Item, E>,
    {
        let Started {
            local,
            retry,
            ending,
            panics,
        } = self.start(handler);
        let shared = ending.shared.clone();
        let inner = local.stream(order, move |ctx, item| {
            proxy(shared.clone(), retry.clone(), ctx, item)
        });
        RemoteStream {
            inner,
            panics,
            panicked: None,
            stop: ending.shared.stop.clone(),
            finishing: None,
            ending: Some(ending),
        }
    }
}

fn unwrap_failure<K, E>(f: Failure<K, Remote<E>>) -> Failure<K, E> {
    Failure {
        index: f.index,
        key: f.key,
        error: unwrap_error(f.error),
    }
}

/// The local engine counted every remote failure as "failed"; a remote
/// panic, timeout or undeliverable task is counted as such instead.
fn recount<K, E>(mut counts: Counts, cause: &Cause<K, E>, others: &[Failure<K, E>]) -> Counts {
    let failures = others.iter().map(|f| &f.error).chain(match cause {
        Cause::Task(f) => Some(&f.error),
        _ => None,
    });
    for e in failures {
        let bucket = match e {
            TaskError::Panicked(_) => &mut counts.panicked,
            TaskError::TimedOut(_) => &mut counts.timed_out,
            TaskError::Undeliverable(_) => &mut counts.undeliverable,
            _ => continue,
        };
        *bucket += 1;
        counts.failed = counts.failed.saturating_sub(1);
    }
    counts
}

/// Outcomes of a run on a handler's workers, as they complete or in input
/// order: a [`TaskStream`] whose outcomes speak the local vocabulary.
///
/// # Cancel safety
/// [`next`](RemoteStream::next) is cancel safe.
#[must_use = "a RemoteStream runs its tasks only while it is polled or alive; dropping it cancels them"]
pub struct RemoteStream<B, K, T, E> {
    inner: TaskStream<K, T, Remote<E>>,
    panics: PanicPolicy,
    panicked: Option<String>,
    stop: CancellationToken,
    /// Ending the run, once every outcome is out.
    finishing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ending: Option<Ending<B>>,
}

impl<B, K, T, E> std::fmt::Debug for RemoteStream<B, K, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStream").finish_non_exhaustive()
    }
}

impl<B, K, T, E> RemoteStream<B, K, T, E>
where
    B: Broker,
    K: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    /// The next outcome, or `None` once every task has finished.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<(K, Outcome<T, E>)> {
        std::future::poll_fn(|cx| self.poll_outcome(cx)).await
    }

    /// Stops the run: no new task is queued, the run is cancelled on the
    /// broker, and the outcomes of the tasks out are still yielded.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Option<(K, Outcome<T, E>)>> {
        loop {
            if let Some(finishing) = &mut self.finishing {
                if finishing.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.finishing = None;
                if let Some(m) = self.panicked.take() {
                    std::panic::resume_unwind(Box::new(m));
                }
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some((k, o))) => {
                    if self.panicked.is_some() {
                        continue;
                    }
                    if let Err(TaskError::Failed(Remote::Panicked(m))) = &o {
                        if self.panics == PanicPolicy::Propagate {
                            self.panicked = Some(m.clone());
                            self.stop.cancel();
                            continue;
                        }
                    }
                    return Poll::Ready(Some((k, unwrap_outcome(o))));
                }
                Poll::Ready(None) => {
                    let Some(ending) = self.ending.take() else {
                        return Poll::Ready(None);
                    };
                    self.finishing = Some(Box::pin(ending.end()));
                }
            }
        }
    }
}

impl<B, K, T, E> Stream for RemoteStream<B, K, T, E>
where
    B: Broker,
    K: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Item = (K, Outcome<T, E>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_outcome(cx)
    }
}

impl<B, K, T, E> Unpin for RemoteStream<B, K, T, E> {}
