//! Shared code of fanout's benchmarks: a trivial task (one `splitmix64`
//! round behind `black_box`, so that the engine's cost dominates), the patterns a user
//! would otherwise write, the runtime the caller runs on, and the tracing
//! subscribers fanout is measured under.
//!
//! Two front ends use it:
//! - `benches/compare.rs`: criterion, `cargo bench -p fanout-bench`;
//! - `src/bin/ratios.rs`: every variant interleaved in one process, checksums
//!   checked, a markdown table of ns/task and ratios printed
//!   (`cargo run --release -p fanout-bench --bin ratios`). This is what
//!   `docs/BENCHMARKS.md` quotes.
//!
//! Every variant must return the results in input
//! order (unordered patterns carry the index and write `out[i]`), and the
//! caller runs inside a `tokio::spawn`ed task on a multi-thread runtime with
//! [`WORKERS`] worker threads.

pub mod load;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use rayon::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Dispatch, Instrument};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// The concurrency limit every bounded variant uses.
pub const LIMIT: usize = 64;

/// Worker threads of the benchmark runtime: one per core of the project's
/// 2-core machine.
pub const WORKERS: usize = 2;

/// The error type of the trivial task; never produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskErr;

/// The splitmix64 mixing function.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The trivial task: `splitmix64(i)` behind `#[inline(never)]` and
/// `black_box`, as a fallible call.
#[inline(never)]
pub fn task(i: u64) -> Result<u64, TaskErr> {
    Ok(black_box(splitmix64(black_box(i))))
}

/// A CPU-bound task of `rounds` chained splitmix64 rounds, used to check
/// that a variant really runs tasks in parallel.
#[inline(never)]
pub fn cpu_task(i: u64, rounds: u32) -> Result<u64, TaskErr> {
    let mut x = black_box(i);
    for _ in 0..rounds {
        x = splitmix64(x);
    }
    Ok(black_box(x))
}

/// An order-sensitive checksum of a result vector: equal checksums mean the
/// same results in the same order (with overwhelming probability).
pub fn checksum(out: &[u64]) -> u64 {
    out.iter().fold(out.len() as u64, |acc, &v| {
        splitmix64(acc ^ v).wrapping_add(acc.rotate_left(7))
    })
}

/// One way of running `n` tasks and collecting their results in input order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// A plain loop in the caller: the floor.
    Sequential,
    /// tokio `JoinSet` + `Semaphore(64)`: an owned permit acquired *before*
    /// each spawn, finished tasks reaped as they go, results placed by index.
    JoinSetSemaphore,
    /// `futures` `stream::iter(..).map(fut).buffered(64).try_collect()`: one
    /// task, no parallelism.
    Buffered,
    /// `futures` `buffer_unordered(64)` with `out[i]`: one task, no
    /// parallelism.
    BufferUnordered,
    /// rayon `par_iter().map(task).collect::<Result<Vec<_>, _>>()` on its
    /// global pool (synchronous work; the caller's worker blocks meanwhile).
    Rayon,
    /// `fanout::fan_out(0..n).limit(64).run(..)`: fail-fast, ordered.
    Fanout,
    /// As [`Fanout`](Variant::Fanout) with `.lanes(1)`: every task on one
    /// lane, so no parallelism. A diagnostic: the difference from `Fanout`
    /// is what the lanes cost each other.
    FanoutOneLane,
    /// `fanout::fan_out(0..n).limit(64).stream(Order::Completion, ..)`,
    /// every outcome placed by index: results as they complete.
    FanoutStream,
    /// `fanout::fan_out(0..n).limit(64).stream(Order::Input, ..)`, collected:
    /// results in input order through the reorder window.
    FanoutStreamOrdered,
    /// As [`JoinSetSemaphore`](Variant::JoinSetSemaphore) with an
    /// `info_span!` per task attached by `.instrument()`: the hand-rolled
    /// code with the same tracing as fanout. Not in [`ALL`](Variant::ALL).
    JoinSetSemaphoreSpans,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 9] = [
        Variant::Sequential,
        Variant::JoinSetSemaphore,
        Variant::Buffered,
        Variant::BufferUnordered,
        Variant::Rayon,
        Variant::Fanout,
        Variant::FanoutOneLane,
        Variant::FanoutStream,
        Variant::FanoutStreamOrdered,
    ];

    /// A short name, used as the criterion benchmark id.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Sequential => "sequential",
            Variant::JoinSetSemaphore => "joinset_semaphore64",
            Variant::Buffered => "buffered64",
            Variant::BufferUnordered => "buffer_unordered64",
            Variant::Rayon => "rayon",
            Variant::Fanout => "fanout_run64",
            Variant::FanoutOneLane => "fanout_run64_one_lane",
            Variant::FanoutStream => "fanout_stream64",
            Variant::FanoutStreamOrdered => "fanout_stream64_ordered",
            Variant::JoinSetSemaphoreSpans => "joinset_semaphore64_spans",
        }
    }

    /// A description for tables.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Sequential => "sequential loop (floor)",
            Variant::JoinSetSemaphore => {
                "tokio JoinSet + Semaphore(64), permit before spawn, out[i]"
            }
            Variant::Buffered => "futures buffered(64).try_collect (one task)",
            Variant::BufferUnordered => "futures buffer_unordered(64), out[i] (one task)",
            Variant::Rayon => "rayon par_iter collect Result<Vec> (sync)",
            Variant::Fanout => "fanout run, fail-fast ordered, limit 64",
            Variant::FanoutOneLane => "fanout run, limit 64, lanes(1) (diagnostic)",
            Variant::FanoutStream => "fanout stream, completion order, limit 64, out[i]",
            Variant::FanoutStreamOrdered => "fanout stream, input order, limit 64",
            Variant::JoinSetSemaphoreSpans => {
                "tokio JoinSet + Semaphore(64) + info_span per task (.instrument)"
            }
        }
    }

    /// Whether the variant runs tasks on more than one thread.
    pub fn parallel(self) -> bool {
        matches!(
            self,
            Variant::JoinSetSemaphore
                | Variant::JoinSetSemaphoreSpans
                | Variant::Rayon
                | Variant::Fanout
                | Variant::FanoutStream
                | Variant::FanoutStreamOrdered
        )
    }

    /// Runs `n` trivial tasks; the results in input order.
    pub async fn run(self, n: u64) -> Vec<u64> {
        self.run_with(n, task).await
    }

    /// Runs `n` tasks of `f`; the results in input order.
    pub async fn run_with(self, n: u64, f: fn(u64) -> Result<u64, TaskErr>) -> Vec<u64> {
        match self {
            Variant::Sequential => sequential(n, f),
            Variant::JoinSetSemaphore => joinset_semaphore(n, f, false).await,
            Variant::JoinSetSemaphoreSpans => joinset_semaphore(n, f, true).await,
            Variant::Buffered => buffered(n, f).await,
            Variant::BufferUnordered => buffer_unordered(n, f).await,
            Variant::Rayon => rayon_collect(n, f),
            Variant::Fanout => fanout_run(n, f, None).await,
            Variant::FanoutOneLane => fanout_run(n, f, Some(1)).await,
            Variant::FanoutStream => fanout_stream(n, f, fanout::Order::Completion).await,
            Variant::FanoutStreamOrdered => fanout_stream(n, f, fanout::Order::Input).await,
        }
    }
}

fn sequential(n: u64, f: fn(u64) -> Result<u64, TaskErr>) -> Vec<u64> {
    (0..n)
        .map(f)
        .collect::<Result<Vec<_>, _>>()
        .expect("the task never fails")
}

async fn joinset_semaphore(n: u64, f: fn(u64) -> Result<u64, TaskErr>, spans: bool) -> Vec<u64> {
    let sem = Arc::new(Semaphore::new(LIMIT));
    let mut set = JoinSet::new();
    let mut out = vec![0; n as usize];
    let mut place = |joined: Result<(u64, Result<u64, TaskErr>), tokio::task::JoinError>| {
        let (i, r) = joined.expect("the task never panics");
        out[i as usize] = r.expect("the task never fails");
    };
    for i in 0..n {
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let body = async move {
            let r = f(i);
            drop(permit);
            (i, r)
        };
        if spans {
            set.spawn(body.instrument(tracing::info_span!("task", task.index = i)));
        } else {
            set.spawn(body);
        }
        // Reap what has finished, so the set stays O(limit).
        while let Some(joined) = set.try_join_next() {
            place(joined);
        }
    }
    while let Some(joined) = set.join_next().await {
        place(joined);
    }
    out
}

async fn buffered(n: u64, f: fn(u64) -> Result<u64, TaskErr>) -> Vec<u64> {
    stream::iter(0..n)
        .map(|i| async move { f(i) })
        .buffered(LIMIT)
        .try_collect()
        .await
        .expect("the task never fails")
}

async fn buffer_unordered(n: u64, f: fn(u64) -> Result<u64, TaskErr>) -> Vec<u64> {
    let mut out = vec![0; n as usize];
    let mut results = stream::iter(0..n)
        .map(|i| async move { f(i).map(|v| (i, v)) })
        .buffer_unordered(LIMIT);
    while let Some(r) = results.next().await {
        let (i, v) = r.expect("the task never fails");
        out[i as usize] = v;
    }
    out
}

fn rayon_collect(n: u64, f: fn(u64) -> Result<u64, TaskErr>) -> Vec<u64> {
    (0..n)
        .into_par_iter()
        .map(f)
        .collect::<Result<Vec<_>, _>>()
        .expect("the task never fails")
}

async fn fanout_run(n: u64, f: fn(u64) -> Result<u64, TaskErr>, lanes: Option<usize>) -> Vec<u64> {
    let run = fanout::fan_out(0..n).limit(LIMIT);
    let run = match lanes {
        Some(l) => run.lanes(l),
        None => run,
    };
    run.run(move |_ctx, i| async move { f(i) })
        .await
        .expect("the task never fails")
}

async fn fanout_stream(
    n: u64,
    f: fn(u64) -> Result<u64, TaskErr>,
    order: fanout::Order,
) -> Vec<u64> {
    let mut results = fanout::fan_out(0..n)
        .limit(LIMIT)
        .stream(order, move |_ctx, i| async move { f(i) });
    let mut out = vec![0; n as usize];
    while let Some((i, outcome)) = results.next().await {
        out[i] = outcome.expect("the task never fails");
    }
    out
}

/// The tracing subscriber installed while fanout runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing {
    /// No subscriber.
    None,
    /// `tracing_subscriber::registry()` with no layers: every span is
    /// enabled and recorded in the registry.
    Registry,
    /// The registry with a `fmt` layer writing to a sink, filtered to WARN:
    /// fanout's INFO spans are disabled.
    FmtWarn,
}

impl Tracing {
    /// Every mode, in table order.
    pub const ALL: [Tracing; 3] = [Tracing::None, Tracing::Registry, Tracing::FmtWarn];

    /// A short name (command-line argument and benchmark id).
    pub fn name(self) -> &'static str {
        match self {
            Tracing::None => "no_subscriber",
            Tracing::Registry => "registry",
            Tracing::FmtWarn => "fmt_warn",
        }
    }

    /// Parses [`name`](Tracing::name).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The subscriber, if any.
    pub fn dispatch(self) -> Option<Dispatch> {
        match self {
            Tracing::None => None,
            Tracing::Registry => Some(Dispatch::new(tracing_subscriber::registry())),
            Tracing::FmtWarn => Some(Dispatch::new(
                tracing_subscriber::registry().with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::sink)
                        .with_filter(LevelFilter::WARN),
                ),
            )),
        }
    }
}

/// A multi-thread runtime with [`WORKERS`] workers. With `dispatch`, every
/// worker thread gets it as its thread-local default subscriber for its
/// whole life (so the spans fanout creates on its lanes see it), without
/// touching the process-wide default.
pub fn runtime(dispatch: Option<Dispatch>) -> Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(WORKERS);
    if let Some(d) = dispatch {
        builder.on_thread_start(move || {
            // Keep the default for the thread's whole life: the guard would
            // restore the previous one when dropped.
            std::mem::forget(tracing::dispatcher::set_default(&d));
        });
    }
    builder.build().expect("building the benchmark runtime")
}

/// Runs `variant` over `n` trivial tasks once, inside a `tokio::spawn`ed
/// task on `rt`; the wall time of the call and the result's checksum.
pub fn timed_run(rt: &Runtime, variant: Variant, n: u64) -> (Duration, u64) {
    timed_run_with(rt, variant, n, task)
}

/// As [`timed_run`], with task function `f`.
pub fn timed_run_with(
    rt: &Runtime,
    variant: Variant,
    n: u64,
    f: fn(u64) -> Result<u64, TaskErr>,
) -> (Duration, u64) {
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            let out = variant.run_with(n, f).await;
            let elapsed = start.elapsed();
            assert_eq!(
                out.len() as u64,
                n,
                "{}: wrong result count",
                variant.name()
            );
            (elapsed, checksum(&out))
        })
        .await
        .expect("the benchmark task never panics")
    })
}
