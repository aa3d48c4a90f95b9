//! Structured fan-out/fan-in on tokio: run a batch of work in parallel under
//! a concurrency limit, stop cleanly on the first failure or collect every
//! outcome, and get the results in input order, by key, or as they complete.
//!
//! ```
//! # #[derive(Debug)] struct FetchError;
//! # async fn fetch(url: &str) -> Result<usize, FetchError> { Ok(url.len()) }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::Error<usize, FetchError>> {
//! let urls = vec!["https://a.example", "https://b.example", "https://c.example"];
//! let sizes = fanout::fan_out(urls)
//!     .limit(16)
//!     .run(|_ctx, url| async move { fetch(url).await })
//!     .await?;
//! assert_eq!(sizes, [17, 17, 17]); // sizes[i] belongs to urls[i]
//! # Ok(()) }
//! ```
//!
//! Keyed input gives keyed results; a collect-all run reports every outcome:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::collections::HashMap;
//!
//! let jobs = HashMap::from([("a", 1), ("b", 0), ("c", 3)]);
//! let report = fanout::fan_out_keyed(jobs)
//!     .run_all(|_ctx, n| async move { if n == 0 { Err("zero") } else { Ok(10 / n) } })
//!     .await;
//! assert_eq!(report.counts().succeeded, 2);
//! let (key, error) = report.failures().next().unwrap();
//! assert_eq!((*key, error.as_failed()), ("b", Some(&"zero")));
//! # }
//! ```
//!
//! # Which one do I use
//!
//! Async tasks run on tokio; blocking or CPU-bound closures run on scoped
//! threads (no runtime needed, and they may borrow from the caller's stack).
//!
//! | you have | you want | async (tokio) | blocking (threads) |
//! |---|---|---|---|
//! | a batch of inputs (`Vec`, iterator) | all results in input order, stop on the first failure | [`fan_out`]`(items).`[`run`](FanOut::run) | [`fan_out`]`(items).`[`run_blocking`](FanOut::run_blocking) |
//! | a map or pairs | results by key, stop on the first failure | [`fan_out_keyed`]`(map).`[`run`](FanOut::run) | [`fan_out_keyed`]`(map).`[`run_blocking`](FanOut::run_blocking) |
//! | either | every outcome (ok, failed, panicked, timed out, cancelled, not started) | [`run_all`](FanOut::run_all) → [`Report`] | [`run_all_blocking`](FanOut::run_all_blocking) → [`Report`] |
//! | a huge or endless input | results as they complete, O(limit) memory | [`stream`](FanOut::stream)`(`[`Order::Completion`]`, f)` | [`for_each_blocking`](FanOut::for_each_blocking) |
//! | inputs that arrive over time (a `Stream`) | any of the above, the stream pulled only when a slot is free | [`fan_out_stream`]`(s)`, [`fan_out_keyed_stream`]`(s)` | the same (threads park while the stream has nothing ready) |
//! | either | results in input order while the run goes | [`stream`](FanOut::stream)`(`[`Order::Input`]`, f)` | — |
//! | async tasks that must call blocking code | the blocking part under the run's limit | [`TaskCtx::spawn_blocking`] inside [`run`](FanOut::run) | — |
//! | tasks of different shapes, spawned one by one | errgroup (`Go` / `TryGo` / `Wait`) with a limit | [`Group`] | — |
//!
//! Differences between the two sides, since threads cannot be interrupted:
//! on the blocking side cancellation and timeouts are cooperative (closures
//! poll [`BlockingCtx::is_cancelled`]) and a run always waits for every
//! closure that started; there is no grace period and no abort. The default
//! limit is 64 for async runs and the number of CPUs for blocking runs (which
//! use that many threads).
//!
//! All of them share the policies of [`FanOut`]: [`limit`](FanOut::limit),
//! per-task [`timeout`](FanOut::timeout), a run [`deadline`](FanOut::deadline),
//! an external [`cancel_on`](FanOut::cancel_on) token,
//! [`retry`](FanOut::retry) with backoff, a [`grace`](FanOut::grace) period
//! before aborting, a [`PanicPolicy`], and [`Progress`].
//!
//! # Guarantees
//!
//! Each is proved by the test file of the same name in `crates/fanout/tests/`
//! (`no_orphans.rs`, `bounded.rs`, `fail_fast.rs`, `panics.rs`,
//! `integrity.rs`, `time.rs`, `streams.rs`, `observability.rs`); blocking
//! runs by `blocking.rs`, [`Group`] by `group.rs`.
//!
//! - **No orphans.** When a run returns, by any path (success, error,
//!   re-raised panic), every task it started has finished or been dropped.
//!   Dropping the run's future, or a [`TaskStream`], cancels the run's token
//!   and aborts every task. Task spans close before the run's span.
//! - **Bounded.** At most `limit` task bodies are alive at any moment,
//!   retries and timeouts included. Inputs, from an iterator or a stream,
//!   are pulled one at a time, only when a slot is free, so a streamed run
//!   holds O(limit) memory. A limit of zero panics when the run is built.
//! - **Fail-fast.** In [`run`](FanOut::run), after the first failure (an
//!   `Err`, a panic, a timeout: [`TaskError::is_failure`]) is observed, no
//!   new task body starts; the remaining inputs are counted as not started
//!   (those never pulled when the iterator knows how many are left:
//!   fail-fast never drains an iterator, so endless ones are fine); running
//!   tasks see their [`TaskCtx::token`] cancelled and, after the grace
//!   period, are aborted. The [`Error`] names the root cause with its task's
//!   index or key, lists the other failures, and counts every outcome. Tasks
//!   that were merely cancelled never pose as the cause.
//! - **Panics.** A panicking task is a failure like any other and stops the
//!   run at once. By default ([`PanicPolicy::Propagate`]) its original
//!   payload is re-raised in the caller after the drain; with
//!   [`PanicPolicy::AsError`] it becomes [`TaskError::Panicked`], naming the
//!   task. A panic in a task's destructor while it is aborted is caught and
//!   reported the same way. A panic is never swallowed.
//! - **Integrity.** `out[i]` belongs to input `i`; keyed runs give one
//!   result per input with its key; a [`Report`] has exactly one outcome per
//!   input, in input order.
//! - **Time.** The per-task timeout counts from the moment the attempt
//!   starts (not while it waits for a slot); the deadline bounds the whole
//!   run; the external token stops it. Retries back off, stop as soon as the
//!   run is cancelled, and never exceed the limit.
//! - **Streams.** [`TaskStream`] yields outcomes as they complete, or in
//!   input order through a bounded reorder window; pulling the next one is
//!   cancel safe.
//! - **Observability.** A `fanout.run` span per run, child of the caller's
//!   current span, and a `fanout.task` span per task (`task.index`,
//!   `task.key` for keyed input, `task.attempt`, `task.outcome`), exportable
//!   to OpenTelemetry through `tracing-opentelemetry` (see
//!   `examples/otel.rs`). [`Progress`] shows started, in flight, succeeded,
//!   failed, cancelled and not started while the run goes.
//!
//! # How it runs, and what it costs
//!
//! A run does not spawn a tokio task per input. It spawns one *lane* per
//! runtime worker thread (at most `limit`); each lane pulls inputs from the
//! shared iterator while it has free slots (its share of the limit) and
//! polls its task futures itself. Starting a task therefore costs no
//! allocation and no cross-thread wake-up, and the work still spreads over
//! every worker. The trade-off: tasks of one lane share a thread, so a task
//! that blocks its thread (CPU work, blocking I/O) stalls its lane-mates;
//! give such work to [`TaskCtx::spawn_blocking`] or a blocking run.
//!
//! A trivial task costs a few tens of nanoseconds in [`run`](FanOut::run),
//! about a twentieth of what tokio `JoinSet` + `Semaphore` cost; a
//! [`TaskStream`] costs a little more, since outcomes cross to the
//! consumer's task; spans cost nothing measurable without a subscriber that
//! records them. The figures, side by side with the alternatives, and the
//! commands that measure them, are in the repository's
//! `docs/BENCHMARKS.md`.
//!
//! # Runtime requirements
//!
//! Runs must be awaited inside a tokio runtime (current-thread or
//! multi-thread). [`FanOut::timeout`], [`FanOut::deadline`],
//! [`FanOut::grace`] and [`Retry`] backoff need the runtime's time driver
//! (`enable_time`, on by default with `#[tokio::main]`).
//!
//! # Feature flags
//!
//! - `otel`: builds `examples/otel.rs`, which exports the run's spans
//!   through OpenTelemetry. The library itself never depends on
//!   OpenTelemetry: its spans are plain `tracing` spans.
//! - `journal` (Unix only): the `fanout::journal` module, a crash-safe
//!   journal of finished work (locked, torn-tail safe, fingerprinted, with
//!   an fsync policy) that the `fanout` command's `--joblog` is written
//!   with. Adds `libc`, `serde` and `serde_json`; off by default.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85, the `rust-version` of the manifest, which clippy's
//! `incompatible_msrv` lint checks the code against: the crate's own code
//! needs 1.81 (`reason =` in lint attributes), and the tokio release the
//! lock file holds, 1.54, needs 1.85. The tests need 1.88 (proptest 1.12).

mod blocking;
mod config;
mod counts;
mod ctx;
mod engine;
mod error;
mod fan_out;
mod group;
#[cfg(all(feature = "journal", unix))]
pub mod journal;
mod panic;
mod progress;
mod report;
mod retry;
mod source;
mod stream;
mod sync;
mod task_error;

pub use blocking::BlockingCtx;
pub use config::{PanicPolicy, DEFAULT_LIMIT};
pub use counts::Counts;
pub use ctx::TaskCtx;
pub use error::{Cause, Error, Failure};
pub use fan_out::{fan_out, fan_out_keyed, fan_out_keyed_stream, fan_out_stream, FanOut};
pub use group::{Group, Stopped, TrySpawnError};
pub use panic::Panic;
pub use progress::{Progress, Snapshot};
pub use report::Report;
pub use retry::{NoRetry, Retry, RetryAll, RetryPolicy, RetryPredicate};
pub use source::{FromStream, Indexed, Input, Keyed};
pub use stream::{Order, TaskStream};
pub use task_error::{Outcome, TaskError};
/// The cancellation token type of [`FanOut::cancel_on`] and
/// [`TaskCtx::token`], re-exported from `tokio-util`.
pub use tokio_util::sync::CancellationToken;
