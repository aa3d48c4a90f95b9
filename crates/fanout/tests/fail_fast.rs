//! Fail-fast: in `run`, after the first genuine failure (an `Err`, a panic, a
//! timeout) no new task starts, the remaining inputs are counted as not
//! started, running tasks see the token, get the grace period and are then
//! aborted, and the error names the root cause; tasks that were merely
//! cancelled never pose as the cause. `run_all` is the counterpart: it does
//! not stop on failures.
//!
//! On a current_thread runtime the "no start after the first failure" check
//! is exact: the event log numbers the failing task's return and every task
//! start, and no start may come after the failure. On a multi-thread runtime
//! lanes on other threads may be starting a task while the failure is being
//! observed, so there at most `limit` starts may follow it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{ms, runtime, secs, Kind, Live, Log, HANG};
use fanout::{fan_out, CancellationToken, Cause, Retry, TaskCtx, TaskError};
use futures_util::StreamExt as _;
use tokio::time::{sleep, timeout, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    /// A genuine failure, naming its task.
    Boom(usize),
    /// Returned by a task when it sees the run's cancellation token.
    SawCancel(usize),
}

/// Deterministic pseudo-random duration in 1..=9 ms for task `i`.
fn jitter(i: usize) -> Duration {
    ms(1 + (i as u64 * 7919 + 13) % 9)
}

// ---------------------------------------------------------------------------
// No task starts after the first failure; every input is accounted for.

async fn no_start_after_failure(lanes: usize, exact_len: bool) {
    let n = 80;
    let fail_at = 23;
    let limit = 6;
    let (log, live) = (Log::new(), Live::new());
    let (lg, l) = (log.clone(), live.clone());
    let f = move |_ctx: TaskCtx, i: usize| {
        let (lg, l) = (lg.clone(), l.clone());
        async move {
            let _guard = l.guard();
            lg.record(Kind::Start, i);
            sleep(jitter(i)).await;
            if i == fail_at {
                lg.record(Kind::Fail, i);
                return Err(E::Boom(i));
            }
            lg.record(Kind::End, i);
            Ok(i)
        }
    };
    let run = fan_out(0..n).limit(limit).lanes(lanes);
    let result = if exact_len {
        timeout(HANG, run.run(f)).await
    } else {
        // A size hint that is not exact: the run never drains the rest of
        // the iterator, so it counts only the inputs it pulled.
        timeout(
            HANG,
            fan_out((0..n).filter(|_| true))
                .limit(limit)
                .lanes(lanes)
                .run(f),
        )
        .await
    };
    let err = result.expect("the run hung").expect_err("task 23 fails");
    let case = format!("lanes {lanes}, exact_len {exact_len}");

    let fail = log.first(Kind::Fail).expect("task 23 ran");
    assert_eq!(
        log.after(fail.seq, Kind::Start),
        Vec::<usize>::new(),
        "{case}: tasks started after the first failure"
    );
    assert_eq!(err.key(), Some(&fail_at), "{case}");
    assert_eq!(err.task_error(), Some(&E::Boom(fail_at)), "{case}");
    assert!(err.others().is_empty(), "{case}: {:?}", err.others());

    let started = log.count(Kind::Start);
    let ended = log.count(Kind::End);
    let c = err.counts();
    if exact_len {
        assert_eq!(c.total(), n, "{case}: every input is accounted for: {c:?}");
        assert_eq!(c.not_started, n - started, "{case}: {c:?}");
    } else {
        // Pulled but never started: at most one lane's worth of inputs.
        assert!(c.not_started <= limit, "{case}: {c:?}");
        assert_eq!(c.total(), started + c.not_started, "{case}: {c:?}");
    }
    assert_eq!(c.succeeded, ended, "{case}: {c:?}");
    assert_eq!(c.failed, 1, "{case}: {c:?}");
    assert_eq!(c.cancelled, started - ended - 1, "{case}: {c:?}");
    assert!(c.cancelled > 0, "{case}: the test needs running siblings");
    assert!(
        !exact_len || c.not_started > 0,
        "{case}: the test needs inputs left"
    );
    assert_eq!(live.now(), 0, "{case}");
    assert!(live.max() <= limit, "{case}");
}

#[tokio::test(start_paused = true)]
async fn fail_fast_never_starts_a_task_after_the_first_error() {
    for lanes in [1, 2, 3] {
        for exact_len in [true, false] {
            no_start_after_failure(lanes, exact_len).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fail_fast_starts_at_most_limit_tasks_after_the_first_error_on_multi_thread() {
    let n = 2000;
    let limit = 8;
    for round in 0..10 {
        let fail_at = 500 + round * 97;
        let log = Log::new();
        let lg = log.clone();
        let err = timeout(
            secs(10),
            fan_out(0..n).limit(limit).run(move |_ctx, i| {
                let lg = lg.clone();
                async move {
                    lg.record(Kind::Start, i);
                    for _ in 0..2 {
                        tokio::task::yield_now().await;
                    }
                    if i == fail_at {
                        lg.record(Kind::Fail, i);
                        return Err(E::Boom(i));
                    }
                    Ok(i)
                }
            }),
        )
        .await
        .expect("the run hung")
        .expect_err("one task fails");
        let fail = log.first(Kind::Fail).expect("the failing task ran");
        let late = log.after(fail.seq, Kind::Start);
        assert!(
            late.len() <= limit,
            "round {round}: {} tasks started after the failure: {late:?}",
            late.len()
        );
        assert_eq!(err.key(), Some(&fail_at));
        let c = err.counts();
        assert_eq!(c.total(), n, "{c:?}");
        assert_eq!(c.not_started, n - log.count(Kind::Start), "{c:?}");
    }
}

/// The run's token reaches every running task at the instant of the failure.
#[tokio::test(start_paused = true)]
async fn fail_fast_signals_every_running_task_at_the_instant_of_the_failure() {
    let log = Log::new();
    let lg = log.clone();
    let start = Instant::now();
    let err = timeout(
        HANG,
        fan_out(0..10)
            .limit(10)
            .lanes(3)
            .grace(secs(1))
            .run(move |ctx: TaskCtx, i| {
                let lg = lg.clone();
                async move {
                    if i == 4 {
                        sleep(ms(20)).await;
                        return Err(E::Boom(i));
                    }
                    ctx.cancelled().await;
                    assert_eq!(start.elapsed(), ms(20), "task {i} saw the token late");
                    lg.record(Kind::SawCancel, i);
                    Ok(i)
                }
            }),
    )
    .await
    .expect("the run hung")
    .expect_err("task 4 fails");
    assert_eq!(start.elapsed(), ms(20));
    assert_eq!(log.count(Kind::SawCancel), 9);
    assert_eq!(err.counts().succeeded, 9);
}

/// An endless iterator: a fail-fast run must stop pulling it after the
/// failure. (It gives up after a million items, so that a run that drains it
/// fails this test instead of hanging forever.)
struct Endless {
    pulled: Arc<AtomicUsize>,
}

const ENDLESS_CAP: usize = 1_000_000;

impl Iterator for Endless {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let k = self.pulled.fetch_add(1, SeqCst);
        assert!(
            k < ENDLESS_CAP,
            "the run pulled {ENDLESS_CAP} inputs from an endless iterator"
        );
        Some(k)
    }
}

#[tokio::test(start_paused = true)]
async fn fail_fast_returns_after_a_failure_even_on_an_endless_input() {
    let limit = 4;
    let pulled = Arc::new(AtomicUsize::new(0));
    let it = Endless {
        pulled: pulled.clone(),
    };
    let err = timeout(
        HANG,
        fan_out(it).limit(limit).run(|_ctx, i| async move {
            sleep(ms(1 + i as u64 % 3)).await;
            if i == 10 {
                Err(E::Boom(i))
            } else {
                Ok(i)
            }
        }),
    )
    .await
    .expect("the run hung")
    .expect_err("task 10 fails");
    assert_eq!(err.key(), Some(&10));
    let pulled = pulled.load(SeqCst);
    assert!(
        pulled <= 10 + 1 + limit,
        "{pulled} inputs pulled from an endless iterator"
    );
}

// ---------------------------------------------------------------------------
// Stopping the running tasks: the token, then the grace period, then the
// abort.

/// Task 0 fails at 10 ms; task 1 watches the token and cleans up for 5 ms
/// before returning `Ok`; task 2 ignores the token.
fn grace_tasks(
    log: &Log,
    live: &Live,
) -> impl Fn(
    TaskCtx,
    usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, E>> + Send>>
       + Send
       + Sync
       + 'static {
    let (log, live) = (log.clone(), live.clone());
    move |ctx, i| {
        let (log, live) = (log.clone(), live.clone());
        Box::pin(async move {
            let _guard = live.guard();
            match i {
                0 => {
                    sleep(ms(10)).await;
                    Err(E::Boom(i))
                }
                1 => {
                    ctx.cancelled().await;
                    log.record(Kind::SawCancel, i);
                    sleep(ms(5)).await;
                    log.record(Kind::Cleanup, i);
                    Ok(i)
                }
                _ => {
                    sleep(secs(3600)).await;
                    log.record(Kind::End, i);
                    Ok(i)
                }
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn with_grace_a_task_that_watches_the_token_finishes_cleanly() {
    let (log, live) = (Log::new(), Live::new());
    let start = Instant::now();
    let err = timeout(
        HANG,
        fan_out(0..3).grace(ms(50)).run(grace_tasks(&log, &live)),
    )
    .await
    .expect("the run hung")
    .expect_err("task 0 fails");
    assert_eq!(err.key(), Some(&0));
    assert_eq!(log.indices(Kind::Cleanup), [1], "the watcher's cleanup ran");
    let c = err.counts();
    assert_eq!(c.succeeded, 1, "the watcher's Ok is counted: {c:?}");
    assert_eq!((c.failed, c.cancelled, c.total()), (1, 1, 3), "{c:?}");
    assert!(err.others().is_empty());
    // The task that ignores the token is aborted when the grace ends.
    assert_eq!(start.elapsed(), ms(10 + 50));
    assert!(log.indices(Kind::End).is_empty());
    assert_eq!(live.now(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_grace_a_task_that_ignores_the_token_is_aborted_when_the_grace_ends() {
    for grace in [ms(1), ms(50), secs(30)] {
        let (log, live) = (Log::new(), Live::new());
        let start = Instant::now();
        let err = timeout(
            HANG,
            fan_out([0, 2]).grace(grace).run(grace_tasks(&log, &live)),
        )
        .await
        .expect("the run hung")
        .expect_err("task 0 fails");
        assert_eq!(start.elapsed(), ms(10) + grace, "grace {grace:?}");
        assert_eq!(err.counts().cancelled, 1);
        assert!(log.indices(Kind::End).is_empty());
        assert_eq!(live.now(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn with_grace_a_run_returns_as_soon_as_every_task_has_finished() {
    let (log, live) = (Log::new(), Live::new());
    let start = Instant::now();
    let err = timeout(
        HANG,
        fan_out(0..2).grace(secs(30)).run(grace_tasks(&log, &live)),
    )
    .await
    .expect("the run hung")
    .expect_err("task 0 fails");
    assert_eq!(start.elapsed(), ms(10 + 5), "waited for the whole grace");
    assert_eq!(err.counts().succeeded, 1);
    assert_eq!(log.indices(Kind::Cleanup), [1]);
}

#[tokio::test(start_paused = true)]
async fn without_grace_running_tasks_are_aborted_at_once() {
    let (log, live) = (Log::new(), Live::new());
    let start = Instant::now();
    let err = timeout(HANG, fan_out(0..3).run(grace_tasks(&log, &live)))
        .await
        .expect("the run hung")
        .expect_err("task 0 fails");
    assert_eq!(start.elapsed(), ms(10));
    assert!(
        log.indices(Kind::Cleanup).is_empty(),
        "no grace, no cleanup"
    );
    assert_eq!(err.counts().cancelled, 2);
    assert_eq!(live.now(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_grace_run_all_counts_a_watching_task_that_finishes_as_succeeded() {
    let (log, live) = (Log::new(), Live::new());
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(10)).await;
        t.cancel();
    });
    let start = Instant::now();
    // Inputs 1 (watches) and 2 (ignores); 0 would fail, so it is left out.
    let report = timeout(
        HANG,
        fan_out([1, 2])
            .cancel_on(&token)
            .grace(ms(50))
            .run_all(grace_tasks(&log, &live)),
    )
    .await
    .expect("run_all hung");
    assert_eq!(start.elapsed(), ms(10 + 50));
    assert!(
        matches!(report.stopped_by(), Some(Cause::Cancelled)),
        "{:?}",
        report.stopped_by()
    );
    let outcomes = report.outcomes();
    assert!(matches!(outcomes[0], (0, Ok(1))), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], (1, Err(TaskError::Cancelled))),
        "{outcomes:?}"
    );
    assert_eq!(report.counts().succeeded, 1);
    assert_eq!(log.indices(Kind::Cleanup), [1]);
    assert_eq!(live.now(), 0);
}

// ---------------------------------------------------------------------------
// Which error is the cause.

/// Tasks that return their own error when they see the token are listed with
/// the other failures (or counted), never as the cause.
async fn cause_is_never_a_cancelled_task(grace: Duration) {
    for fail_at in [0, 7, 19] {
        let err = timeout(
            HANG,
            fan_out(0..20)
                .limit(20)
                .grace(grace)
                .run(move |ctx: TaskCtx, i| async move {
                    if i == fail_at {
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                        return Err::<(), _>(E::Boom(i));
                    }
                    ctx.cancelled().await;
                    Err(E::SawCancel(i))
                }),
        )
        .await
        .expect("the run hung")
        .expect_err("a task fails");
        let case = format!("grace {grace:?}, fail_at {fail_at}");
        match err.cause() {
            Cause::Task(f) => {
                assert_eq!(f.index, fail_at, "{case}");
                assert!(
                    matches!(f.error, TaskError::Failed(E::Boom(i)) if i == fail_at),
                    "{case}: the cause is {f:?}"
                );
            }
            other => panic!("{case}: the cause is {other:?}"),
        }
        for other in err.others() {
            assert!(
                matches!(other.error, TaskError::Failed(E::SawCancel(i)) if i == other.index),
                "{case}: {other:?}"
            );
        }
        let c = err.counts();
        assert_eq!(c.total(), 20, "{case}: {c:?}");
        assert_eq!(c.failed, 1 + err.others().len(), "{case}: {c:?}");
        assert_eq!(c.failed + c.cancelled + c.not_started, 20, "{case}: {c:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_cause_is_the_genuine_failure_never_a_task_that_was_only_cancelled() {
    cause_is_never_a_cancelled_task(Duration::ZERO).await;
    cause_is_never_a_cancelled_task(ms(100)).await;
}

#[test]
fn the_cause_is_the_genuine_failure_never_a_task_that_was_only_cancelled_on_multi_thread() {
    let rt = runtime(true);
    for _ in 0..20 {
        rt.block_on(cause_is_never_a_cancelled_task(Duration::ZERO));
        rt.block_on(cause_is_never_a_cancelled_task(ms(100)));
    }
}

/// The cause is the first failure to be observed (task 5 at 10 ms), not the
/// lowest index (task 2 fails at 20 ms, inside the grace period, and comes
/// with it as another failure).
#[tokio::test(start_paused = true)]
async fn the_cause_is_the_first_failure_observed_and_later_ones_come_with_it() {
    let f = |_ctx: TaskCtx, i: usize| async move {
        match i {
            5 => {
                sleep(ms(10)).await;
                Err(E::Boom(5))
            }
            2 => {
                sleep(ms(20)).await;
                Err(E::Boom(2))
            }
            _ => {
                sleep(secs(10)).await;
                Ok(i)
            }
        }
    };
    let err = fan_out(0..8)
        .grace(ms(30))
        .run(f)
        .await
        .expect_err("two tasks fail");
    assert_eq!(err.key(), Some(&5));
    assert_eq!(err.others().len(), 1);
    assert_eq!(err.others()[0].index, 2);
    assert!(matches!(
        err.others()[0].error,
        TaskError::Failed(E::Boom(2))
    ));
    let c = err.counts();
    assert_eq!((c.failed, c.cancelled, c.total()), (2, 6, 8), "{c:?}");

    // Without grace, task 2 is aborted before it fails: only cancelled.
    let err = fan_out(0..8).run(f).await.expect_err("task 5 fails");
    assert_eq!(err.key(), Some(&5));
    assert!(err.others().is_empty());
    assert_eq!(err.counts().cancelled, 7);
}

/// A timeout is a genuine failure that stops the run and names its task.
#[tokio::test(start_paused = true)]
async fn a_timed_out_task_stops_a_fail_fast_run_and_is_the_cause() {
    let start = Instant::now();
    let err = fan_out(0..6)
        .timeout(ms(50))
        .run(|_ctx, i| async move {
            sleep(if i == 3 { secs(10) } else { secs(1) }).await;
            Ok::<_, E>(i)
        })
        .await
        .expect_err("task 3 times out");
    assert_eq!(start.elapsed(), ms(50));
    // Every task runs 1 s > 50 ms: the first observed timeout is the cause,
    // and the others time out at the same instant or are cancelled.
    let f = err.failure().expect("a task is the cause");
    assert!(f.error.is_timeout(), "{f:?}");
    assert_eq!(err.counts().total(), 6);
    assert_eq!(
        err.counts().timed_out + err.counts().cancelled,
        6,
        "{:?}",
        err.counts()
    );
}

/// With retries, a task's failure is observed only once its attempts are
/// spent, and the remaining inputs are still reported as not started.
#[tokio::test(start_paused = true)]
async fn fail_fast_with_retries_reports_the_last_attempt_and_no_later_start() {
    let log = Log::new();
    let lg = log.clone();
    let err = fan_out(0..30)
        .limit(3)
        .retry(Retry::attempts(3).backoff(ms(10)))
        .run(move |ctx: TaskCtx, i| {
            let lg = lg.clone();
            async move {
                if ctx.attempt() == 1 {
                    lg.record(Kind::Start, i);
                }
                sleep(ms(5)).await;
                if i == 4 {
                    lg.record(Kind::Fail, i);
                    return Err(E::Boom(ctx.attempt() as usize));
                }
                Ok(i)
            }
        })
        .await
        .expect_err("task 4 fails thrice");
    // The error of the last attempt (3) is the cause.
    assert_eq!(err.task_error(), Some(&E::Boom(3)));
    assert_eq!(err.key(), Some(&4));
    let fails: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.kind == Kind::Fail)
        .collect();
    assert_eq!(fails.len(), 3);
    assert!(log.after(fails[2].seq, Kind::Start).is_empty());
    assert_eq!(err.counts().not_started, 30 - log.count(Kind::Start));
    assert_eq!(err.counts().total(), 30);
}

/// Tasks that return their own error when they see the token are only
/// cancelled: the cause stays the external cancellation.
async fn external_cancellation_with_watchers(grace: Duration) {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(10)).await;
        t.cancel();
    });
    let err = timeout(
        HANG,
        fan_out(0..8)
            .cancel_on(&token)
            .grace(grace)
            .run(|ctx: TaskCtx, i| async move {
                ctx.cancelled().await;
                Err::<(), _>(E::SawCancel(i))
            }),
    )
    .await
    .expect("the run hung")
    .expect_err("the run was cancelled");
    assert!(
        err.is_cancelled(),
        "grace {grace:?}: a task that was only cancelled poses as the cause: {:?}",
        err.cause()
    );
    assert_eq!(err.counts().total(), 8);
}

#[tokio::test(start_paused = true)]
async fn an_external_cancellation_is_never_reported_as_a_task_failure() {
    external_cancellation_with_watchers(Duration::ZERO).await;
    external_cancellation_with_watchers(ms(100)).await;
}

#[test]
fn an_external_cancellation_is_never_reported_as_a_task_failure_on_multi_thread() {
    let rt = runtime(true);
    for _ in 0..10 {
        rt.block_on(external_cancellation_with_watchers(Duration::ZERO));
        rt.block_on(external_cancellation_with_watchers(ms(100)));
    }
}

// ---------------------------------------------------------------------------
// The counterpart: a collect-all run does not stop on failures.

#[tokio::test(start_paused = true)]
async fn run_all_does_not_stop_on_failures() {
    let log = Log::new();
    let lg = log.clone();
    let report = fan_out(0..40)
        .limit(4)
        .run_all(move |_ctx, i| {
            let lg = lg.clone();
            async move {
                lg.record(Kind::Start, i);
                sleep(jitter(i)).await;
                if i % 3 == 0 {
                    Err(E::Boom(i))
                } else {
                    Ok(i)
                }
            }
        })
        .await;
    assert_eq!(log.count(Kind::Start), 40);
    let c = report.counts();
    assert_eq!(
        (c.failed, c.succeeded, c.cancelled, c.not_started),
        (14, 26, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn no_item_is_pulled_from_a_stream_input_after_the_first_failure() {
    // One lane, limit 2: task 3 fails at 3 ms; the stream is endless, so a
    // pull after the failure would show in `pulled`.
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let endless = futures_util::stream::unfold(0usize, move |i| {
        p.fetch_add(1, SeqCst);
        async move { Some((i, i + 1)) }
    });
    let err = fanout::fan_out_stream(endless)
        .limit(2)
        .lanes(1)
        .run(|_ctx, i| async move {
            sleep(ms(1 + i as u64)).await;
            if i == 3 {
                Err(i)
            } else {
                Ok(i)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.key(), Some(&3));
    // Task i sleeps 1 + i ms. 0 and 1 start at 0 ms; 2 when 0 ends (1 ms),
    // 3 when 1 ends (2 ms), 4 when 2 ends (4 ms); 3 fails at 6 ms, before 4
    // ends: inputs 0 to 4 and no more were pulled from the endless stream.
    assert_eq!(pulled.load(SeqCst), 5);
    assert_eq!(err.counts().cancelled, 1);
    // The stream was never drained: an unsized stream's rest is not counted.
    assert_eq!(err.counts().not_started, 0);
}

#[tokio::test(start_paused = true)]
async fn run_all_over_a_stream_stopped_early_reports_the_rest_as_not_started() {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(5)).await;
        t.cancel();
    });
    let report = fanout::fan_out_stream(futures_util::stream::iter(0..10u64))
        .limit(2)
        .cancel_on(&token)
        .run_all(|_ctx, i| async move {
            sleep(ms(3)).await;
            Ok::<_, ()>(i)
        })
        .await;
    assert_eq!(report.len(), 10, "one outcome per input of the stream");
    let counts = report.counts();
    // Two rounds of two tasks end at 3 and 6 ms; the stop at 5 ms cancels
    // the second round; the other six inputs never started.
    assert_eq!(
        (counts.succeeded, counts.cancelled, counts.not_started),
        (2, 2, 6)
    );
    assert!(matches!(report.stopped_by(), Some(Cause::Cancelled)));
}

#[tokio::test]
async fn a_panic_of_a_stream_input_is_reraised_after_every_task_is_gone() {
    let live = Live::new();
    let l = live.clone();
    let stream = futures_util::stream::iter(0..10usize).map(|i| {
        assert!(i != 4, "{} stream broke", common::INTENTIONAL);
        i
    });
    common::quiet_intentional_panics();
    let res = common::catch_unwind(fanout::fan_out_stream(stream).limit(3).run(move |_ctx, i| {
        let l = l.clone();
        async move {
            let _g = l.guard();
            sleep(ms(1)).await;
            Ok::<_, ()>(i)
        }
    }))
    .await;
    let payload = res.expect_err("the stream's panic is re-raised");
    assert!(common::panic_message(&*payload)
        .unwrap()
        .contains("stream broke"));
    assert_eq!(live.now(), 0);
}
