//! The worker: serves named handlers, taking their tasks from the broker
//! and recording their results, with its own concurrency limit.
//!
//! Inside, a worker is a local fanout run over the stream of deliveries
//! (pulled only when one of its slots is free), collecting outcomes as they
//! complete. Beside it: a heartbeat (renews the leases of the tasks it
//! holds and announces it), a sweeper (adopts the tasks of workers whose
//! lease passed, dead-letters those delivered too often, queues due
//! retries) and a listener for cancelled runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fanout::{Order, PanicPolicy, TaskError};
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{Broker, BrokerError, Completion, Delivery, Discard};
use crate::handler::Handler;
use crate::secret::Secret;
use crate::wire::{self, Envelope, Recorded, WireOutcome};

/// What a task running on a worker knows about itself, and how it sends
/// output to its coordinator while it runs.
#[derive(Clone)]
pub struct RemoteCtx {
    run: Arc<str>,
    index: u64,
    attempt: u32,
    worker: Arc<str>,
    token: CancellationToken,
    out: Arc<dyn Emit>,
}

impl std::fmt::Debug for RemoteCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCtx")
            .field("run", &self.run)
            .field("index", &self.index)
            .field("attempt", &self.attempt)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// Output chunks to the broker, type-erased (a context is not generic over
/// the broker).
trait Emit: Send + Sync {
    fn emit(
        &self,
        run: &str,
        chunk: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BrokerError>> + Send + '_>>;
    fn backlog(
        &self,
        run: &str,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BrokerError>> + Send + '_>>;
}

impl<B: Broker> Emit for B {
    fn emit(
        &self,
        run: &str,
        chunk: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BrokerError>> + Send + '_>> {
        let run = run.to_owned();
        Box::pin(async move { Broker::emit(self, &run, chunk).await })
    }

    fn backlog(
        &self,
        run: &str,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BrokerError>> + Send + '_>> {
        let run = run.to_owned();
        Box::pin(async move { Broker::backlog(self, &run).await })
    }
}

impl RemoteCtx {
    /// The id of the run the task belongs to.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The task's position in the run's input, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// This worker's id.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// `"{run}:{index}"`: a key for the task's side effects that is the
    /// same on every delivery and attempt (execution is at least once).
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run, self.index)
    }

    /// Cancelled when the run is cancelled (a sibling failed, its deadline
    /// passed, its coordinator stopped it or went away): the task is then
    /// dropped.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// `true` once the run is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Sends `bytes` of output on `channel` (a number of the handler's
    /// choosing: the `fanout` command uses 1 for stdout and 2 for stderr) to
    /// the run's coordinator, which hands it to its
    /// [`on_output`](crate::RemoteFanOut::on_output) handler, in order, and
    /// before the task's outcome. Sends over 1 MiB go as several chunks.
    ///
    /// Bounded: when 64 chunks of the run already wait on the broker for
    /// the coordinator, this waits until it has read half of them; so a
    /// task producing output faster than the coordinator reads it is slowed
    /// down, and the broker holds at most about 64 MiB of a run's output.
    ///
    /// # Errors
    /// The broker cannot be reached, or the run was cancelled while this
    /// waited.
    pub async fn send(&self, channel: u8, bytes: &[u8]) -> Result<(), BrokerError> {
        for piece in bytes.chunks(crate::broker::OUTPUT_CHUNK) {
            let chunk = wire::Chunk {
                index: self.index,
                attempt: self.attempt,
                worker: self.worker.to_string(),
                channel,
                bytes: piece.to_vec(),
            };
            let encoded = wire::encode(&chunk).expect("a chunk always encodes");
            let waiting = self.out.emit(&self.run, encoded).await?;
            if waiting <= crate::broker::OUTPUT_BACKLOG {
                continue;
            }
            let mut pause = Duration::from_millis(5);
            loop {
                // The coordinator reads in batches as chunks arrive; a
                // short, growing pause between looks at the backlog.
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.token.cancelled() => {
                        return Err(BrokerError::new(
                            crate::BrokerErrorKind::Io,
                            format!("run {} was cancelled while its output waited", self.run),
                        ));
                    }
                }
                pause = (pause * 2).min(Duration::from_millis(200));
                if self.out.backlog(&self.run).await? <= crate::broker::OUTPUT_BACKLOG / 2 {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// A handler with its types erased, as the worker calls it.
trait Serve: Send + Sync {
    fn types(&self) -> u64;
    fn type_names(&self) -> String;
    fn call(
        &self,
        ctx: RemoteCtx,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Future<Output = WireOutcome> + Send>>;
}

struct Typed<I, T, E, F> {
    /// The handler's type fingerprint, computed once.
    types: u64,
    handler: std::marker::PhantomData<Handler<I, T, E>>,
    f: Arc<F>,
}

impl<I, T, E, F, Fut> Serve for Typed<I, T, E, F>
where
    I: DeserializeOwned + Send + 'static,
    T: Serialize + Send + 'static,
    E: Serialize + Send + 'static,
    F: Fn(RemoteCtx, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    fn types(&self) -> u64 {
        self.types
    }

    fn type_names(&self) -> String {
        Handler::<I, T, E>::type_names()
    }

    fn call(
        &self,
        ctx: RemoteCtx,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Future<Output = WireOutcome> + Send>> {
        let item: I = match wire::decode(payload) {
            Ok(item) => item,
            Err(e) => {
                let why = format!(
                    "task {} of run {}: its input does not decode as {}: {e}",
                    ctx.index,
                    ctx.run,
                    std::any::type_name::<I>()
                );
                return Box::pin(std::future::ready(WireOutcome::Undeliverable(why)));
            }
        };
        let index = ctx.index;
        let fut = (self.f)(ctx, item);
        Box::pin(async move {
            let out = match timeout {
                None => fut.await,
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(out) => out,
                    Err(_) => {
                        return WireOutcome::TimedOut(
                            u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                        )
                    }
                },
            };
            let encoded = match &out {
                Ok(v) => wire::encode(v).map(WireOutcome::Ok),
                Err(e) => wire::encode(e).map(WireOutcome::Failed),
            };
            match encoded {
                Ok(WireOutcome::Ok(b) | WireOutcome::Failed(b)) if b.len() > crate::MAX_PAYLOAD => {
                    WireOutcome::Undeliverable(wire::too_large(index, "result", b.len()))
                }
                Ok(outcome) => outcome,
                Err(e) => WireOutcome::Undeliverable(format!(
                    "task {index}: its result does not serialize: {e}"
                )),
            }
        })
    }
}

/// A worker process's server: takes the tasks of the handlers it serves
/// from the broker, runs at most `limit` at once, and records their
/// results.
///
/// - Execution is at least once: a task is leased to the worker that took
///   it; the lease is renewed while it runs (every `lease / 3`) and, if the
///   worker dies or stalls past it, another worker's sweep adopts the task.
///   A task delivered more than `max_deliveries` times goes to the dead-letter
///   list and its run records it as undeliverable. Results are recorded
///   once per task attempt, and not at all by a worker that lost the lease.
/// - A cancelled run's running tasks are dropped, and its queued ones are
///   dropped unrun.
/// - A worker claims tasks for its free slots only (see
///   [`prefetch`](Worker::prefetch)): a queued task goes to whichever worker
///   frees a slot first, never waits behind long tasks in a busy worker.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use fanout_redis::{Handler, RedisBroker, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// const SQUARE: Handler<u64, u64, String> = Handler::new("square");
///
/// let broker = RedisBroker::connect("redis://127.0.0.1:6379").await?;
/// let shutdown = CancellationToken::new();
/// let report = Worker::new(broker)
///     .limit(16)
///     .serve(&SQUARE, |_ctx, n| async move { Ok(n * n) })
///     .run(shutdown)
///     .await?;
/// println!("{} tasks done", report.completed);
/// # Ok(()) }
/// ```
#[must_use = "a Worker serves nothing until `run` is awaited"]
pub struct Worker<B> {
    broker: B,
    id: String,
    limit: usize,
    lease: Duration,
    max_deliveries: u32,
    drain: Duration,
    prefetch: usize,
    secret: Option<Secret>,
    handlers: HashMap<String, Arc<dyn Serve>>,
    on_ready: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> std::fmt::Debug for Worker<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("limit", &self.limit)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Tasks run and recorded (whatever their outcome).
    pub completed: u64,
    /// Tasks dropped unrun or stopped: their run was cancelled.
    pub discarded: u64,
    /// Tasks held when the worker stopped and not finished within the
    /// drain time: their lease will pass and another worker takes them.
    pub handed_back: u64,
}

/// A worker id: the host name, the process id and a random suffix.
fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".to_owned());
    let mut bytes = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        u32::from_le_bytes(bytes)
    )
}

impl<B: Broker> Worker<B> {
    /// A worker on `broker`, serving nothing yet. Defaults: limit 64, lease
    /// 30 s, 5 deliveries before a task is dead-lettered, 30 s to drain
    /// when stopping; an id made of the host name, pid and a random part.
    pub fn new(broker: B) -> Self {
        Self {
            broker,
            id: default_id(),
            limit: fanout::DEFAULT_LIMIT,
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            drain: Duration::from_secs(30),
            prefetch: 0,
            secret: None,
            handlers: HashMap::new(),
            on_ready: None,
        }
    }

    /// The worker's id (a consumer name on the broker): unique per worker.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The most tasks run at once. Default 64.
    ///
    /// # Panics
    /// If `limit` is 0.
    #[track_caller]
    pub fn limit(mut self, limit: usize) -> Self {
        assert!(
            limit > 0,
            "fanout-redis: a worker's limit must be at least 1"
        );
        self.limit = limit;
        self
    }

    /// How long a task stays this worker's without its lease being renewed
    /// (the worker renews it every third of it). Shorter: a dead worker's
    /// tasks are taken over sooner; longer: a stalled worker keeps them
    /// longer. Default 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How many deliveries a task gets before it goes to the dead-letter
    /// list (its run recording it as undeliverable). Default 5.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// How long, once told to stop, the worker lets running tasks finish
    /// before handing them back. Default 30 s.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// How many tasks the worker claims beyond those it runs: claimed
    /// tasks wait in the worker (their lease renewed) until a slot frees.
    /// Default 0: a queued task goes to whichever worker frees a slot
    /// first, and never waits behind a long task in a busy worker while
    /// another has room. Measured with 10⁵ tiny tasks on 2 workers of limit
    /// 256, a prefetch of 0 was no slower than 64 or 256 (claims already
    /// come in batches of the free slots); raise it only if tasks are
    /// shorter than a round trip to the broker and workers idle between
    /// claims.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// Runs only tasks signed with `secret`, and signs the results it
    /// records (see [`Secret`]). A task not signed with it is not run: it
    /// goes to the handler's dead letters, and its run records it as
    /// undeliverable. Default: no secret, every task is run.
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Calls `f` once the worker has announced itself on the broker (runs
    /// see it from then on) and is about to take tasks: for a readiness
    /// probe, or a supervisor waiting for it.
    pub fn on_ready(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_ready = Some(Box::new(f));
        self
    }

    /// Serves `handler` with `f`.
    ///
    /// # Panics
    /// If the worker already serves a handler of that name.
    #[track_caller]
    pub fn serve<I, T, E, F, Fut>(mut self, handler: &Handler<I, T, E>, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        T: Serialize + Send + 'static,
        E: Serialize + Send + 'static,
        F: Fn(RemoteCtx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let name = handler.name().to_owned();
        assert!(
            !self.handlers.contains_key(&name),
            "fanout-redis: the worker already serves a handler named '{name}'"
        );
        self.handlers.insert(
            name,
            Arc::new(Typed {
                types: handler.types(),
                handler: std::marker::PhantomData,
                f: Arc::new(f),
            }),
        );
        self
    }

    /// Serves until `shutdown` is cancelled, then stops taking tasks, lets
    /// the running ones finish for up to the drain time, and returns what it
    /// did. Connection failures are retried for as long as it runs.
    ///
    /// # Errors
    /// The broker cannot be reached when it starts.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<WorkerReport, BrokerError> {
        let names: Vec<String> = self.handlers.keys().cloned().collect();
        // Announce the worker now: a failure to reach the broker shows here.
        self.broker.renew(&self.id, &names, &[]).await?;
        if let Some(ready) = self.on_ready.take() {
            ready();
        }
        let state = Arc::new(State {
            broker: self.broker.clone(),
            id: Arc::from(self.id.as_str()),
            names,
            handlers: self.handlers,
            held: Mutex::new(Held::default()),
            runs: Mutex::new(Runs::default()),
            lease: self.lease,
            max_deliveries: self.max_deliveries,
            limit: self.limit,
            prefetch: self.prefetch,
            secret: self.secret,
            emitter: Arc::new(self.broker.clone()),
        });
        let mut background = JoinSet::new();
        let (reclaimed_tx, reclaimed_rx) = mpsc::unbounded_channel();
        let (discard_tx, mut discard_rx) = mpsc::unbounded_channel();
        spawn_heartbeat(&mut background, &state);
        spawn_sweeper(&mut background, &state, reclaimed_tx);
        spawn_listener(&mut background, &state);
        let stop_taking = shutdown.child_token();
        let feed = Feed {
            state: state.clone(),
            buffer: VecDeque::new(),
            reclaimed: reclaimed_rx,
            stop: stop_taking.clone(),
            discards: discard_tx,
        };
        let deliveries = futures_util::stream::unfold(feed, |mut feed| async move {
            feed.next().await.map(|d| (d, feed))
        });
        let s = state.clone();
        let mut outcomes = fanout::fan_out_keyed_stream(deliveries)
            .limit(self.limit)
            .panics(PanicPolicy::AsError)
            .stream(Order::Completion, move |ctx, env| {
                work(s.clone(), ctx.key().clone(), env)
            });
        let mut report = WorkerReport::default();
        let mut drain_until: Option<Instant> = None;
        let mut aborted = false;
        loop {
            let drain_over = async {
                match drain_until {
                    Some(at) if !aborted => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                next = outcomes.next() => {
                    let Some(first) = next else { break };
                    let mut batch = vec![first];
                    while let Some(Some(more)) = outcomes.next().now_or_never() {
                        batch.push(more);
                        if batch.len() >= 256 {
                            break;
                        }
                    }
                    state.settle(batch, &mut report).await;
                }
                Some(d) = discard_rx.recv() => {
                    report.discarded += 1;
                    state.discard(vec![d]).await;
                }
                () = shutdown.cancelled(), if drain_until.is_none() => {
                    stop_taking.cancel();
                    drain_until = Some(Instant::now() + self.drain);
                }
                () = drain_over => {
                    // What still runs is handed back: not recorded, its lease
                    // passes, another worker takes it.
                    aborted = true;
                    outcomes.cancel();
                }
            }
        }
        while let Ok(d) = discard_rx.try_recv() {
            report.discarded += 1;
            state.discard(vec![d]).await;
        }
        background.abort_all();
        while background.join_next().await.is_some() {}
        report.handed_back = state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64;
        Ok(report)
    }
}

/// A delivery as the worker's engine runs it: its key.
#[derive(Debug, Clone)]
struct TaskMeta {
    handler: String,
    entry: String,
    run: Arc<str>,
    index: u64,
    attempt: u32,
    /// How many times the entry has been delivered (more than once after a
    /// worker died or stalled with it).
    deliveries: u32,
}

/// The queue entries a worker holds (claimed, not yet settled), by
/// handler: their leases are renewed.
#[derive(Default)]
struct Held(HashMap<String, HashSet<String>>);

impl Held {
    fn insert(&mut self, handler: &str, entry: String) {
        match self.0.get_mut(handler) {
            Some(entries) => {
                entries.insert(entry);
            }
            None => {
                self.0.insert(handler.to_owned(), HashSet::from([entry]));
            }
        }
    }

    fn remove(&mut self, handler: &str, entry: &str) {
        if let Some(entries) = self.0.get_mut(handler) {
            entries.remove(entry);
        }
    }

    fn len(&self) -> usize {
        self.0.values().map(HashSet::len).sum()
    }

    fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .flat_map(|(h, es)| es.iter().map(move |e| (h.clone(), e.clone())))
            .collect()
    }
}

/// What became of a delivery.
enum Settled {
    Record(Recorded),
    Discard,
}

/// The cancellation state of the runs this worker has seen.
#[derive(Default)]
struct Runs {
    /// Runs known cancelled, with when they were learned of.
    cancelled: HashMap<Arc<str>, Instant>,
    /// Runs checked against the authoritative flag, and when.
    checked: HashMap<Arc<str>, Instant>,
    /// The tokens of runs with tasks running here.
    tokens: HashMap<Arc<str>, (CancellationToken, usize)>,
}

/// How long a run known not cancelled is trusted before its flag is read
/// again (the broadcast can be missed while reconnecting).
const RECHECK: Duration = Duration::from_secs(2);
/// How long cancelled runs and checks are remembered.
const FORGET: Duration = Duration::from_secs(600);

struct State<B> {
    broker: B,
    id: Arc<str>,
    names: Vec<String>,
    handlers: HashMap<String, Arc<dyn Serve>>,
    /// Entries claimed and not yet settled: their leases are renewed.
    held: Mutex<Held>,
    runs: Mutex<Runs>,
    lease: Duration,
    max_deliveries: u32,
    limit: usize,
    prefetch: usize,
    secret: Option<Secret>,
    /// The broker, as output chunks go to it.
    emitter: Arc<dyn Emit>,
}

impl<B: Broker> State<B> {
    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_cancelled(&self, run: &str) -> bool {
        self.runs().cancelled.contains_key(run)
    }

    fn cancel(&self, run: &str) {
        let mut runs = self.runs();
        let now = Instant::now();
        runs.cancelled.insert(Arc::from(run), now);
        if let Some((token, _)) = runs.tokens.get(run) {
            token.cancel();
        }
        runs.cancelled
            .retain(|_, at| now.saturating_duration_since(*at) < FORGET);
    }

    /// The token of `run` for one more running task.
    fn token(&self, run: &Arc<str>) -> CancellationToken {
        let mut runs = self.runs();
        let cancelled = runs.cancelled.contains_key(run);
        let entry = runs
            .tokens
            .entry(run.clone())
            .or_insert_with(|| (CancellationToken::new(), 0));
        entry.1 += 1;
        if cancelled {
            entry.0.cancel();
        }
        entry.0.clone()
    }

    fn release_token(&self, run: &str) {
        let mut runs = self.runs();
        if let Some(entry) = runs.tokens.get_mut(run) {
            entry.1 -= 1;
            if entry.1 == 0 {
                runs.tokens.remove(run);
            }
        }
    }

    /// Reads the authoritative cancellation flags of the runs among `runs`
    /// not checked recently.
    async fn check_runs(&self, runs: Vec<Arc<str>>) {
        let now = Instant::now();
        let stale: Vec<Arc<str>> = {
            let r = self.runs();
            let mut seen = HashSet::new();
            runs.into_iter()
                .filter(|run| {
                    !r.cancelled.contains_key(run)
                        && r.checked
                            .get(run)
                            .is_none_or(|at| now.saturating_duration_since(*at) >= RECHECK)
                        && seen.insert(run.clone())
                })
                .collect()
        };
        if stale.is_empty() {
            return;
        }
        let names: Vec<String> = stale.iter().map(|r| r.to_string()).collect();
        match self.broker.cancelled(&names).await {
            Ok(flags) => {
                for (run, cancelled) in stale.into_iter().zip(flags) {
                    if cancelled {
                        self.cancel(&run);
                    }
                    let mut r = self.runs();
                    r.checked.insert(run, now);
                    r.checked
                        .retain(|_, at| now.saturating_duration_since(*at) < FORGET);
                }
            }
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "cannot read run cancellations")
            }
        }
    }

    /// Records what finished (once per attempt, only where this worker
    /// still holds the lease), drops what was cancelled.
    async fn settle(
        &self,
        batch: Vec<(TaskMeta, fanout::Outcome<Settled, std::convert::Infallible>)>,
        report: &mut WorkerReport,
    ) {
        let mut completions = Vec::new();
        let mut discards = Vec::new();
        for (meta, outcome) in batch {
            let settled = match outcome {
                Ok(s) => s,
                Err(TaskError::Panicked(p)) => Settled::Record(Recorded {
                    index: meta.index,
                    attempt: meta.attempt,
                    worker: self.id.to_string(),
                    outcome: WireOutcome::Panicked(
                        p.message()
                            .unwrap_or("(non-string panic payload)")
                            .to_owned(),
                    ),
                    signature: None,
                }),
                // Stopped because the worker is stopping: not recorded, the
                // lease passes, another worker takes it.
                Err(_) => continue,
            };
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&meta.handler, &meta.entry);
            match settled {
                Settled::Record(mut rec) => {
                    if let Some(secret) = &self.secret {
                        secret.sign_record(&meta.run, &mut rec);
                    }
                    let field = format!("{}:{}", rec.index, rec.attempt);
                    match wire::encode(&rec) {
                        Ok(record) => completions.push(Completion {
                            handler: meta.handler,
                            entry: meta.entry,
                            run: meta.run.to_string(),
                            field,
                            record,
                        }),
                        Err(e) => tracing::error!(error = %e, "a result record does not encode"),
                    }
                }
                Settled::Discard => discards.push(Discard {
                    handler: meta.handler,
                    entry: meta.entry,
                }),
            }
        }
        report.completed += completions.len() as u64;
        report.discarded += discards.len() as u64;
        if let Err(e) = self.broker.complete(&self.id, completions).await {
            // Not acknowledged: the entries are redelivered after the lease,
            // and recorded then.
            tracing::warn!(worker = %self.id, error = %e, "cannot record results");
        }
        self.discard(discards).await;
    }

    async fn discard(&self, discards: Vec<Discard>) {
        if let Err(e) = self.broker.discard(discards).await {
            tracing::warn!(worker = %self.id, error = %e, "cannot drop cancelled tasks");
        }
    }
}

/// Runs one delivery: checks it, runs its handler with the run's token and
/// the attempt's time limit.
async fn work<B: Broker>(
    state: Arc<State<B>>,
    meta: TaskMeta,
    env: Envelope,
) -> Result<Settled, std::convert::Infallible> {
    let undeliverable = |why: String| {
        Ok(Settled::Record(Recorded {
            index: meta.index,
            attempt: meta.attempt,
            worker: state.id.to_string(),
            outcome: WireOutcome::Undeliverable(why),
            signature: None,
        }))
    };
    if env.version != wire::VERSION {
        return undeliverable(format!(
            "worker {} reads task format {}, not {}: run workers and coordinators of the same version",
            state.id,
            wire::VERSION,
            env.version
        ));
    }
    if let Some(secret) = &state.secret {
        if !secret.verify_envelope(&env) {
            let why = format!(
                "worker {} runs only tasks signed with its secret, and task {} of run {} is {}: \
                 give the coordinator and the workers the same secret",
                state.id,
                meta.index,
                meta.run,
                if env.signature.is_some() {
                    "signed with another"
                } else {
                    "not signed"
                }
            );
            tracing::warn!(worker = %state.id, run = %meta.run, index = meta.index, "refusing a task not signed with this worker's secret");
            let task = wire::encode(&env).expect("an envelope always encodes");
            if let Err(e) = state
                .broker
                .bury(&meta.handler, task, why.clone(), None)
                .await
            {
                tracing::warn!(worker = %state.id, error = %e, "cannot move a refused task to the dead letters");
            }
            return undeliverable(why);
        }
    }
    let Some(serve) = state.handlers.get(&meta.handler).cloned() else {
        return undeliverable(format!(
            "worker {} does not serve handler '{}'",
            state.id, meta.handler
        ));
    };
    if serve.types() != env.types {
        return undeliverable(format!(
            "worker {} serves handler '{}' with {}, not the types this task was sent with",
            state.id,
            meta.handler,
            serve.type_names()
        ));
    }
    if state.is_cancelled(&meta.run) {
        return Ok(Settled::Discard);
    }
    let token = state.token(&meta.run);
    let ctx = RemoteCtx {
        run: meta.run.clone(),
        index: meta.index,
        attempt: meta.attempt,
        worker: state.id.clone(),
        token: token.clone(),
        out: state.emitter.clone(),
    };
    let span = tracing::info_span!(
        "fanout.remote_task",
        fanout.run = %meta.run,
        fanout.handler = %meta.handler,
        task.index = meta.index,
        task.attempt = meta.attempt,
        task.deliveries = meta.deliveries,
        task.outcome = tracing::field::Empty,
    );
    set_parent(&span, env.traceparent.as_deref());
    let timeout = env.timeout_ms.map(Duration::from_millis);
    let call = serve.call(ctx, &env.payload, timeout);
    let outcome = async {
        tokio::select! {
            // The task first: one that watches its token ends on its own
            // (and is recorded); one that does not is dropped.
            biased;
            outcome = call => Some(outcome),
            () = token.cancelled() => None,
        }
    }
    .instrument(span.clone())
    .await;
    state.release_token(&meta.run);
    let Some(outcome) = outcome else {
        span.record("task.outcome", "cancelled");
        return Ok(Settled::Discard);
    };
    span.record(
        "task.outcome",
        match &outcome {
            WireOutcome::Ok(_) => "ok",
            WireOutcome::Failed(_) => "error",
            WireOutcome::Panicked(_) => "panic",
            WireOutcome::TimedOut(_) => "timeout",
            WireOutcome::Undeliverable(_) => "undeliverable",
        },
    );
    Ok(Settled::Record(Recorded {
        index: meta.index,
        attempt: meta.attempt,
        worker: state.id.to_string(),
        outcome,
        signature: None,
    }))
}

/// Makes `span` a child of the coordinator's span for the task, when
/// OpenTelemetry is on and the task carries its `traceparent`.
#[cfg_attr(
    not(feature = "otel"),
    allow(unused_variables, reason = "used with `otel` only")
)]
fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "otel")]
    if let Some(cx) = traceparent.and_then(crate::trace::parse_traceparent) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(cx);
    }
}

/// The deliveries the worker's engine pulls: adopted ones first, then new
/// ones claimed (up to the limit at once), after dropping those of
/// cancelled runs.
struct Feed<B> {
    state: Arc<State<B>>,
    buffer: VecDeque<(TaskMeta, Envelope)>,
    reclaimed: mpsc::UnboundedReceiver<Delivery>,
    stop: CancellationToken,
    discards: mpsc::UnboundedSender<Discard>,
}

impl<B: Broker> Feed<B> {
    async fn next(&mut self) -> Option<(TaskMeta, Envelope)> {
        loop {
            if let Some(next) = self.buffer.pop_front() {
                return Some(next);
            }
            if self.stop.is_cancelled() {
                return None;
            }
            let mut got: Vec<Delivery> = Vec::new();
            while let Ok(d) = self.reclaimed.try_recv() {
                got.push(d);
            }
            if got.is_empty() {
                let state = &self.state;
                // Up to `limit + prefetch` held: the engine asks for a task
                // only when a slot is free, so one is always claimable.
                let held = state
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len();
                let max = (state.limit + state.prefetch).saturating_sub(held).max(1);
                let claim =
                    state
                        .broker
                        .claim(&state.id, &state.names, max, Duration::from_secs(1));
                tokio::select! {
                    claimed = claim => match claimed {
                        Ok(claimed) => got = claimed,
                        Err(e) => {
                            tracing::warn!(worker = %state.id, error = %e, "cannot take tasks; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                                () = self.stop.cancelled() => return None,
                            }
                            continue;
                        }
                    },
                    Some(d) = self.reclaimed.recv() => got.push(d),
                    () = self.stop.cancelled() => return None,
                }
            }
            self.accept(got).await;
        }
    }

    /// Reads deliveries into the buffer: unreadable ones and those of
    /// cancelled runs are dropped.
    async fn accept(&mut self, got: Vec<Delivery>) {
        let mut read = Vec::new();
        {
            let mut held = self
                .state
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for d in got {
                held.insert(&d.handler, d.entry.clone());
                match wire::decode::<Envelope>(&d.task) {
                    Ok(env) => read.push((d, env)),
                    Err(e) => {
                        tracing::warn!(entry = %d.entry, error = %e, "dropping a queue entry that is not a fanout task");
                        held.remove(&d.handler, &d.entry);
                        let _ = self.discards.send(Discard {
                            handler: d.handler,
                            entry: d.entry,
                        });
                    }
                }
            }
        }
        // The run ids, shared: a batch is mostly one run's tasks.
        let mut runs: Vec<Arc<str>> = Vec::new();
        let run_ids: Vec<Arc<str>> = read
            .iter()
            .map(|(_, env)| match runs.iter().find(|r| ***r == *env.run) {
                Some(r) => r.clone(),
                None => {
                    let r: Arc<str> = Arc::from(env.run.as_str());
                    runs.push(r.clone());
                    r
                }
            })
            .collect();
        self.state.check_runs(runs).await;
        for ((d, env), run) in read.into_iter().zip(run_ids) {
            if self.state.is_cancelled(&env.run) {
                self.state
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&d.handler, &d.entry);
                let _ = self.discards.send(Discard {
                    handler: d.handler,
                    entry: d.entry,
                });
                continue;
            }
            let meta = TaskMeta {
                handler: d.handler,
                entry: d.entry,
                run,
                index: env.index,
                attempt: env.attempt,
                deliveries: d.deliveries,
            };
            self.buffer.push_back((meta, env));
        }
    }
}

/// Renews the leases of held tasks and announces the worker, every third
/// of the lease or every second, whichever is sooner: coordinators count
/// the workers that announced themselves within the last five seconds.
fn spawn_heartbeat<B: Broker>(tasks: &mut JoinSet<()>, state: &Arc<State<B>>) {
    let state = state.clone();
    tasks.spawn(async move {
        let every = (state.lease / 3).min(Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let held: Vec<(String, String)> = state
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pairs();
            if let Err(e) = state.broker.renew(&state.id, &state.names, &held).await {
                tracing::warn!(worker = %state.id, error = %e, "cannot renew leases");
            }
        }
    });
}

/// Adopts the tasks of dead or stalled workers, every half lease.
fn spawn_sweeper<B: Broker>(
    tasks: &mut JoinSet<()>,
    state: &Arc<State<B>>,
    adopted: mpsc::UnboundedSender<Delivery>,
) {
    let state = state.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(state.lease / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state
                .broker
                .reclaim(
                    &state.id,
                    &state.names,
                    state.lease,
                    state.max_deliveries,
                    state.secret.as_ref(),
                )
                .await
            {
                Ok(found) => {
                    for d in found {
                        if adopted.send(d).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(worker = %state.id, error = %e, "cannot sweep for abandoned tasks"),
            }
        }
    });
}

/// Hears cancelled runs (subscribing again after a lost connection).
fn spawn_listener<B: Broker>(tasks: &mut JoinSet<()>, state: &Arc<State<B>>) {
    let state = state.clone();
    tasks.spawn(async move {
        loop {
            match state.broker.cancellations().await {
                Ok(mut runs) => {
                    while let Some(run) = runs.next().await {
                        state.cancel(&run);
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %state.id, error = %e, "cannot hear cancellations")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
