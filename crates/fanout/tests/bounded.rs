//! Bounded: at most `limit` task bodies are alive at any moment, retries and
//! timeouts included, in every run mode; inputs are pulled one at a time,
//! only when a slot is free, so a streamed run holds O(limit) memory; and a
//! limit of zero is rejected when the run is built. A live-task counter keeps
//! the most bodies alive at once, and counting iterators check every pull.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{ms, secs, Live, HANG};
use fanout::{fan_out, Order, Retry, TaskCtx};
use tokio::time::{sleep, timeout};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    Transient,
    Fatal,
}

/// A task whose kind depends on its index: succeeds after a while, fails
/// once then succeeds on retry, hangs past the timeout on its first attempt,
/// or fails on every attempt. Every first attempt sleeps (or hangs) so that
/// `limit` bodies are alive at once at the start.
async fn mixed(live: Live, ctx: TaskCtx, i: usize, paused: bool) -> Result<usize, E> {
    let _guard = live.guard();
    let wait = async {
        if paused {
            sleep(ms(1 + (i as u64 * 31) % 7)).await;
        } else {
            for _ in 0..1 + i % 3 {
                tokio::task::yield_now().await;
            }
        }
    };
    match (i % 4, ctx.attempt()) {
        (0, _) => {
            wait.await;
            Ok(i)
        }
        (1, 1) => {
            wait.await;
            Err(E::Transient)
        }
        (2, 1) => {
            // Past the timeout: the attempt is dropped when it fires.
            std::future::pending::<()>().await;
            Ok(i)
        }
        (3, _) => {
            wait.await;
            Err(E::Fatal)
        }
        _ => {
            wait.await;
            Ok(i)
        }
    }
}

fn check_limit(
    n: usize,
    limit: usize,
    lanes: usize,
    live: &Live,
    counts: &fanout::Counts,
    paused: bool,
) {
    let case = format!("n {n}, limit {limit}, lanes {lanes}");
    assert!(
        live.max() <= limit,
        "{case}: {} bodies alive at once",
        live.max()
    );
    assert_eq!(live.now(), 0, "{case}");
    assert_eq!(counts.total(), n, "{case}: {counts:?}");
    // Kinds 0..3 of `mixed`: ok, ok after a retry, ok after a timeout, failed.
    let fatal = (0..n).filter(|i| i % 4 == 3).count();
    if paused {
        assert_eq!(counts.failed, fatal, "{case}: {counts:?}");
        assert_eq!(counts.timed_out, 0, "{case}: {counts:?}");
    } else {
        // In real time a loaded machine may let a short timeout fire on
        // any task; the counts still add up.
        assert!(
            counts.failed + counts.timed_out >= fatal,
            "{case}: {counts:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_number_of_live_task_bodies_never_exceeds_the_limit() {
    let n = 150;
    for limit in [1, 2, 3, 7, 64] {
        for lanes in [1, 2, 3, 8] {
            let live = Live::new();
            let l = live.clone();
            let report = timeout(
                HANG,
                fan_out(0..n)
                    .limit(limit)
                    .lanes(lanes)
                    .timeout(ms(20))
                    .retry(Retry::attempts(3).backoff(ms(5)))
                    .run_all(move |ctx, i| mixed(l.clone(), ctx, i, true)),
            )
            .await
            .expect("run_all hung");
            check_limit(n, limit, lanes, &live, report.counts(), true);
            // Every first attempt waits, so the limit is reached: the bound
            // above is not met by running one task at a time.
            assert_eq!(live.max(), limit, "limit {limit}, lanes {lanes}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_number_of_live_task_bodies_never_exceeds_the_limit_on_multi_thread() {
    // Each timeout costs a millisecond or two of real time here.
    let n = 100;
    for limit in [1, 2, 3, 7, 64] {
        for lanes in [None, Some(3)] {
            let live = Live::new();
            let l = live.clone();
            let mut b = fan_out(0..n)
                .limit(limit)
                .timeout(ms(1))
                .retry(Retry::attempts(3).backoff(Duration::ZERO));
            if let Some(lanes) = lanes {
                b = b.lanes(lanes);
            }
            let report = timeout(
                secs(20),
                b.run_all(move |ctx, i| mixed(l.clone(), ctx, i, false)),
            )
            .await
            .expect("run_all hung");
            check_limit(n, limit, lanes.unwrap_or(4), &live, report.counts(), false);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_fail_fast_run_never_exceeds_the_limit_during_its_grace_period() {
    for limit in [1, 3, 8] {
        let live = Live::new();
        let l = live.clone();
        let err = fan_out(0..50)
            .limit(limit)
            .lanes(2)
            .grace(ms(100))
            .run(move |ctx: TaskCtx, i| {
                let l = l.clone();
                async move {
                    let _guard = l.guard();
                    if i == 10 {
                        return Err(E::Fatal);
                    }
                    tokio::select! {
                        () = sleep(ms(3)) => Ok(i),
                        () = ctx.cancelled() => {
                            sleep(ms(50)).await;
                            Ok(i)
                        }
                    }
                }
            })
            .await
            .expect_err("task 10 fails");
        assert!(live.max() <= limit, "limit {limit}: {}", live.max());
        assert_eq!(err.counts().total(), 50);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_never_runs_more_than_limit_task_bodies_at_once() {
    for order in [Order::Completion, Order::Input] {
        let live = Live::new();
        let l = live.clone();
        let mut stream = fan_out(0..200u64)
            .limit(5)
            .lanes(3)
            .stream(order, move |_ctx, i| {
                let l = l.clone();
                async move {
                    let _g = l.guard();
                    sleep(ms(i * 37 % 11)).await;
                    Ok::<_, ()>(i)
                }
            });
        let mut n = 0;
        while let Some((_, o)) = stream.next().await {
            o.unwrap();
            n += 1;
            if n % 7 == 0 {
                sleep(ms(3)).await;
            }
        }
        assert_eq!(n, 200);
        assert!(live.max() <= 5, "{order:?}");
        assert_eq!(live.now(), 0);
    }
}

// ---------------------------------------------------------------------------
// Lazy input.

/// An iterator that counts the items it hands out and checks, on every
/// pull, that no more than `done + limit` have been pulled (`done`: tasks
/// that have finished).
struct Counting {
    next: usize,
    n: usize,
    limit: usize,
    pulled: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    worst: Arc<AtomicUsize>,
}

impl Iterator for Counting {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.next == self.n {
            return None;
        }
        let pulled = self.pulled.fetch_add(1, SeqCst) + 1;
        let allowed = self.done.load(SeqCst) + self.limit;
        self.worst.fetch_max(pulled.saturating_sub(allowed), SeqCst);
        self.next += 1;
        Some(self.next - 1)
    }
}

struct Lazy {
    pulled: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    worst: Arc<AtomicUsize>,
}

fn counting(n: usize, limit: usize) -> (Counting, Lazy) {
    let lazy = Lazy {
        pulled: Arc::default(),
        done: Arc::default(),
        worst: Arc::default(),
    };
    let it = Counting {
        next: 0,
        n,
        limit,
        pulled: lazy.pulled.clone(),
        done: lazy.done.clone(),
        worst: lazy.worst.clone(),
    };
    (it, lazy)
}

#[tokio::test(start_paused = true)]
async fn input_is_pulled_lazily_never_more_than_completed_plus_limit() {
    let n = 200;
    for limit in [1, 2, 5, 16] {
        for all in [false, true] {
            let (it, lazy) = counting(n, limit);
            let done = lazy.done.clone();
            let b = fan_out(it).limit(limit).lanes(2);
            let f = move |_ctx: TaskCtx, i: usize| {
                let done = done.clone();
                async move {
                    sleep(ms(1 + (i as u64 * 13) % 5)).await;
                    done.fetch_add(1, SeqCst);
                    Ok::<_, E>(i)
                }
            };
            if all {
                assert_eq!(b.run_all(f).await.counts().succeeded, n);
            } else {
                assert_eq!(b.run(f).await.expect("no failure").len(), n);
            }
            assert_eq!(
                lazy.worst.load(SeqCst),
                0,
                "limit {limit}, run_all {all}: pulled ahead of completed + limit"
            );
            assert_eq!(lazy.pulled.load(SeqCst), n);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_pulls_no_more_than_limit_and_window_inputs_ahead_of_its_consumer() {
    for order in [Order::Completion, Order::Input] {
        let (limit, window) = (4, 6);
        let (it, lazy) = counting(1000, limit);
        let live = Live::new();
        let l = live.clone();
        let run = fan_out(it).limit(limit).window(window);
        let mut stream = run.stream(order, move |_ctx, i| {
            let l = l.clone();
            async move {
                let _guard = l.guard();
                sleep(ms(1 + (i as u64 * 7) % 3)).await;
                Ok::<_, E>(i)
            }
        });
        for consumed in 1..=10 {
            stream.next().await.expect("1000 inputs").1.expect("ok");
            // The consumer dawdles: nothing more may be pulled meanwhile.
            sleep(secs(1)).await;
            let pulled = lazy.pulled.load(SeqCst);
            assert!(
                pulled <= consumed + limit + window,
                "{order:?}: {pulled} inputs pulled after {consumed} consumed"
            );
        }
        assert!(live.max() <= limit);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_of_100k_items_keeps_at_most_limit_and_window_of_them_outstanding() {
    const N: usize = 100_000;
    const LIMIT: usize = 8;
    const WINDOW: usize = 16;
    for order in [Order::Completion, Order::Input] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let consumed = Arc::new(AtomicUsize::new(0));
        let outstanding = Arc::new(AtomicUsize::new(0));
        let (p, c, o) = (pulled.clone(), consumed.clone(), outstanding.clone());
        // The input counts what has been pulled from it: items pulled but
        // not yet consumed are all the run may hold in memory.
        let input = (0..N).inspect(move |_| {
            let n = p.fetch_add(1, SeqCst) + 1;
            o.fetch_max(n - c.load(SeqCst), SeqCst);
        });
        let mut stream = fan_out(input)
            .limit(LIMIT)
            .window(WINDOW)
            .stream(order, |_ctx, i| async move { Ok::<_, ()>(i) });
        let mut sum = 0;
        let mut last = None;
        while let Some((k, o)) = stream.next().await {
            sum += o.unwrap();
            if order == Order::Input {
                assert_eq!(k, last.map_or(0, |l| l + 1));
            }
            last = Some(k);
            consumed.fetch_add(1, SeqCst);
        }
        assert_eq!(consumed.load(SeqCst), N);
        assert_eq!(sum, N * (N - 1) / 2);
        let max = outstanding.load(SeqCst);
        assert!(
            max <= LIMIT + WINDOW,
            "{order:?}: {max} items pulled and not consumed"
        );
    }
}

// ---------------------------------------------------------------------------
// Zero is rejected when the run is built.

#[test]
#[should_panic(expected = "fanout: limit(0) would never run a task; use a limit of at least 1")]
fn a_limit_of_zero_is_rejected_when_the_run_is_built() {
    let _ = fan_out(0..3).limit(0);
}

#[test]
#[should_panic(expected = "fanout: lanes(0) would never run a task")]
fn zero_lanes_are_rejected_when_the_run_is_built() {
    let _ = fan_out(0..3).lanes(0);
}

#[test]
#[should_panic(expected = "Retry::attempts(0) is invalid")]
fn zero_attempts_are_rejected_when_the_policy_is_built() {
    let _ = Retry::attempts(0);
}

// ---------------------------------------------------------------------------
// Stream inputs are pulled as lazily as iterators.

/// A stream of `0..n` that counts how many items have been pulled from it.
fn counted_stream(
    n: usize,
    pulled: Arc<AtomicUsize>,
) -> impl futures_util::Stream<Item = usize> + Send + 'static {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(0..n).map(move |i| {
        pulled.fetch_add(1, SeqCst);
        i
    })
}

#[tokio::test(start_paused = true)]
async fn a_stream_input_is_pulled_only_when_a_slot_is_free() {
    let limit = 3;
    let pulled = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (p, d) = (pulled.clone(), done.clone());
    let watcher = tokio::spawn(async move {
        // Whenever a task is about to end, no more than `limit` inputs are
        // pulled beyond those that have ended.
        let mut worst = 0;
        for _ in 0..200 {
            sleep(ms(1)).await;
            worst = worst.max(p.load(SeqCst) - d.load(SeqCst));
        }
        worst
    });
    let d = done.clone();
    let out = fanout::fan_out_stream(counted_stream(50, pulled.clone()))
        .limit(limit)
        .run(move |_ctx, i| {
            let d = d.clone();
            async move {
                sleep(ms(1 + (i as u64 * 7) % 3)).await;
                d.fetch_add(1, SeqCst);
                Ok::<_, E>(i)
            }
        })
        .await
        .unwrap();
    assert_eq!(out, (0..50).collect::<Vec<_>>());
    assert_eq!(pulled.load(SeqCst), 50);
    assert!(watcher.await.unwrap() <= limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_nothing_ready_is_waited_for_by_every_lane_with_a_free_slot() {
    // Items arrive one by one from another task, each only after the
    // previous one was taken by a task: a lane that misses the wake-up of
    // the stream would leave the run hanging (bounded here by a timeout).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<usize>(1);
    let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let producer = tokio::spawn(async move {
        for i in 0..200 {
            tx.send(i).await.unwrap();
        }
    });
    let run = fanout::fan_out_stream(input)
        .limit(8)
        .lanes(2)
        .run(|_ctx, i| async move { Ok::<_, E>(i * 2) });
    let out = timeout(secs(20), run).await.expect("the run hung").unwrap();
    assert_eq!(out, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    producer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_stream_inputs_all_start_even_when_the_stream_then_waits() {
    // Three inputs come at once after 10 ms, then nothing for a long time:
    // the three must start at once, not when the stream gives a fourth.
    let started = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let s = started.clone();
    let run = tokio::spawn(
        fanout::fan_out_stream(input)
            .limit(8)
            .lanes(1)
            .run(move |_ctx, i| {
                s.fetch_add(1, SeqCst);
                async move { Ok::<_, E>(i) }
            }),
    );
    sleep(ms(1)).await;
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    sleep(ms(10)).await;
    assert_eq!(started.load(SeqCst), 3, "inputs pulled but not started");
    drop(tx);
    assert_eq!(run.await.unwrap().unwrap(), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_input_that_comes_in_bursts_never_runs_more_than_limit_at_once() {
    // Inputs come in bursts of 8, each after the previous burst has run
    // (a queue handing out batches): every lane waits on the stream when a
    // burst comes, and a lane must not pull more than its free slots.
    for order in [Order::Completion, Order::Input] {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
        let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let producer = tokio::spawn(async move {
            for burst in 0..6u64 {
                for i in 0..8 {
                    tx.send((burst * 8 + i, burst)).unwrap();
                }
                sleep(ms(40)).await;
            }
        });
        let live = Live::new();
        let l = live.clone();
        let mut stream =
            fanout::fan_out_keyed_stream(input)
                .limit(4)
                .stream(order, move |ctx, _burst| {
                    let l = l.clone();
                    let k = *ctx.key();
                    async move {
                        let _g = l.guard();
                        sleep(ms(5)).await;
                        Ok::<_, E>(k)
                    }
                });
        let mut n = 0;
        while let Some((_, o)) = timeout(secs(20), stream.next())
            .await
            .expect("the run hung")
        {
            o.unwrap();
            n += 1;
        }
        producer.await.unwrap();
        assert_eq!(n, 48);
        assert!(live.max() <= 4, "{order:?}: {} ran at once", live.max());
    }
}
