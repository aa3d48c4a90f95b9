//! fanout against the patterns a user would otherwise write, in the same
//! run: for 10^4, 10^5 and 10^6 trivial tasks, a sequential loop, tokio
//! `JoinSet` + `Semaphore(64)`, `futures` `buffered(64)` and
//! `buffer_unordered(64)`, rayon, and fanout's fail-fast ordered run with
//! limit 64; then fanout under tracing subscribers.
//!
//! Throughput is reported in elements (tasks) per second; ns/task is the
//! reported time divided by N. The caller runs inside a `tokio::spawn`ed
//! task on a 2-worker multi-thread runtime.
//!
//! `cargo bench -p fanout-bench` (all), or e.g.
//! `cargo bench -p fanout-bench -- 'compare/100000'`.
//!
//! The `tracing` groups run last: they install thread-local subscribers on
//! the worker threads of their own runtimes, and once a subscriber exists
//! anywhere in the process, tracing's callsite cache no longer lets
//! disabled spans cost nothing. So the `compare` groups measure "no
//! subscriber" in a pristine process, and the `tracing` groups repeat it
//! (`no_subscriber`) next to the subscribers for a same-conditions ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use fanout_bench::{runtime, timed_run, Tracing, Variant};
use tokio::runtime::Runtime;

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

fn measurement_time(n: u64) -> Duration {
    match n {
        n if n >= 1_000_000 => Duration::from_secs(5),
        n if n >= 100_000 => Duration::from_secs(3),
        _ => Duration::from_secs(2),
    }
}

/// `iters` back-to-back runs inside one spawned task; their total time.
fn spawned_iters(rt: &Runtime, variant: Variant, n: u64, iters: u64) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(variant.run(n).await);
            }
            start.elapsed()
        })
        .await
        .expect("the benchmark task never panics")
    })
}

fn compare(c: &mut Criterion) {
    let rt = runtime(None);
    for n in SIZES {
        let (_, want) = timed_run(&rt, Variant::Sequential, n);
        for v in Variant::ALL {
            let (_, got) = timed_run(&rt, v, n);
            assert_eq!(
                got,
                want,
                "{} n={n}: checksum differs from sequential",
                v.name()
            );
        }
        let mut group = c.benchmark_group(format!("compare/{n}"));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(measurement_time(n))
            .throughput(Throughput::Elements(n));
        for v in Variant::ALL {
            group.bench_function(v.name(), |b| {
                b.iter_custom(|iters| spawned_iters(&rt, v, n, iters));
            });
        }
        group.finish();
    }
}

fn tracing(c: &mut Criterion) {
    let runtimes: Vec<(Tracing, Runtime)> = Tracing::ALL
        .into_iter()
        .map(|t| (t, runtime(t.dispatch())))
        .collect();
    for n in SIZES {
        let mut group = c.benchmark_group(format!("tracing/{n}"));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(measurement_time(n))
            .throughput(Throughput::Elements(n));
        for (t, rt) in &runtimes {
            group.bench_function(t.name(), |b| {
                b.iter_custom(|iters| spawned_iters(rt, Variant::Fanout, n, iters));
            });
        }
        group.finish();
    }
}

// Written out instead of `criterion_group!`/`criterion_main!`, whose
// generated `pub fn` has no doc comment (the workspace denies missing docs).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    compare(&mut c);
    tracing(&mut c);
    c.final_summary();
}
