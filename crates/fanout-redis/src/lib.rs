//! fanout's runs fanned out to worker processes on other machines, through
//! Redis Streams: the same builder, the same results in input order, the
//! same fail-fast, reports, streams and `Progress`, with the tasks running
//! in [`Worker`]s anywhere that can reach the Redis.
//!
//! Two sides share one typed [`Handler`] (a name and the input, result and
//! error types). Workers serve it; a [`Coordinator`] fans runs out to it:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fanout_redis::{Coordinator, Handler, MemoryBroker, Worker};
//! use tokio_util::sync::CancellationToken;
//!
//! /// Shared by both sides: the compiler checks they agree on the types.
//! const WORD_LENGTH: Handler<String, usize, String> = Handler::new("word-length");
//!
//! // In production: `RedisBroker::connect("redis://host:6379").await?`,
//! // and the worker in processes of its own, on any number of machines.
//! let broker = MemoryBroker::new();
//! let shutdown = CancellationToken::new();
//! let worker = tokio::spawn(
//!     Worker::new(broker.clone())
//!         .limit(16)
//!         .serve(&WORD_LENGTH, |_ctx, word: String| async move {
//!             if word.is_empty() { Err("an empty word".to_owned()) } else { Ok(word.len()) }
//!         })
//!         .run(shutdown.clone()),
//! );
//!
//! let coordinator = Coordinator::new(broker);
//! let words = ["fan", "out", "across", "machines"].map(String::from);
//! let lengths = coordinator
//!     .fan_out(words)
//!     .limit(64)
//!     .run(&WORD_LENGTH)
//!     .await
//!     .map_err(|e| e.to_string())?;
//! assert_eq!(lengths, [3, 3, 6, 8]); // in input order
//!
//! shutdown.cancel();
//! let report = worker.await??;
//! assert_eq!(report.completed, 4);
//! # Ok(()) }
//! ```
//!
//! # What it promises
//!
//! - **Results as locally.** [`RemoteFanOut::run`] returns results in
//!   input order (by key for keyed input) or the first failure with the
//!   others and the counts; [`RemoteFanOut::run_all`] one outcome per
//!   input; [`RemoteFanOut::stream`] outcomes as they complete or in input
//!   order. The outcome vocabulary is fanout's [`TaskError`]: a task's
//!   error, a panic (its message), a timeout, a cancellation, or
//!   [`TaskError::Undeliverable`] for a task that could not reach an outcome
//!   (no worker serves the handler, the worker's types differ, its input
//!   does not decode there, it was dead-lettered, the broker lost it).
//! - **At-least-once execution, recorded once.** A worker takes a task on a
//!   lease, renewed while it runs; a worker that dies or stalls past the
//!   lease has the task taken over by another worker; each attempt's
//!   result is recorded once whatever the deliveries, and the result of a
//!   worker that lost its lease is dropped. Make side effects idempotent
//!   with [`RemoteCtx::idempotency_key`].
//! - **Fail-fast reaches other machines.** On the first failure, the
//!   deadline, the caller's token or a dropped run, the run is cancelled on
//!   the broker: each worker cancels the run's running tasks (their
//!   [`RemoteCtx::token`] fires, then they are dropped) and drops its queued
//!   ones unrun. Measured: the last of 1,000 running tasks on 4 workers
//!   stops about 10 ms after the failure.
//! - **Nothing acknowledged is lost** by a Redis restart with
//!   `appendonly yes` and `appendfsync always`; a Redis that lost a run's
//!   data fails the run with an error instead of leaving it waiting.
//! - **Dead letters.** A task that fails its last attempt, is delivered
//!   too often to workers that die, or is refused by a worker, is kept on
//!   its handler's dead-letter list with its last error
//!   ([`Coordinator::dead_letters`]).
//! - **Resume.** A run given an id ([`RemoteFanOut::id`]) that is run again
//!   after its coordinator died does not run again the tasks whose results
//!   were recorded.
//! - **Only what belongs gets in.** Workers run only named, typed handlers
//!   compiled into them, never code or commands sent by the coordinator;
//!   with a [`Secret`], only tasks signed with it, and coordinators accept
//!   only results signed with it. `rediss://` URLs use TLS. Passwords never
//!   appear in errors or logs.
//! - **One trace.** With the `otel` feature, each task carries the W3C
//!   `traceparent` of the coordinator's span for it, and the worker's span
//!   for the task is its child.
//!
//! # Cost
//!
//! A tiny task costs about 5 µs of coordinator CPU, 6 µs of worker CPU and
//! 6 µs of Redis CPU; a run of 10⁵ tiny tasks goes at 0.6–0.75× the speed
//! of the bare Redis commands it is made of (batched `XADD`, `XREADGROUP`,
//! `XACK`). Tasks are encoded with postcard (a 43-byte envelope for a tiny
//! task). See `docs/BENCHMARKS.md` in the repository for the figures and
//! how they were measured, and `docs/DISTRIBUTED.md` for the protocol, the
//! keys, Redis Cluster, and which Redis settings each promise needs.
//!
//! # Features
//!
//! - `otel`: carry trace context to workers (OpenTelemetry, through
//!   `tracing-opentelemetry`).
//!
//! [`TaskError`]: fanout::TaskError
//! [`TaskError::Undeliverable`]: fanout::TaskError::Undeliverable

mod broker;
mod coordinator;
mod handler;
mod secret;
#[cfg(feature = "otel")]
mod trace;
mod wire;
mod worker;

pub use broker::{
    Broker, BrokerError, BrokerErrorKind, Buried, Completion, Cursor, Delivery, Discard,
    MemoryBroker, RedisBroker, RedisConfig,
};
pub use coordinator::{Coordinator, DeadLetter, RemoteFanOut, RemoteStream};
pub use handler::Handler;
pub use secret::{Secret, WeakSecret};
pub use worker::{RemoteCtx, Worker, WorkerReport};

/// The largest task input, and the largest result or error, in bytes once
/// encoded: 16 MiB. A task whose input is larger fails as
/// [`TaskError::Undeliverable`](fanout::TaskError::Undeliverable) before it
/// is queued; one whose result is larger, on the worker. Tasks travel
/// through the broker's memory, and every byte is copied to it and from
/// it: pass large data by reference (a path on shared storage, a URL, an
/// object key).
pub const MAX_PAYLOAD: usize = 16 << 20;
