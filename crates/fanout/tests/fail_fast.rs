//! L3 (fail-fast) and L5 (integrity) of `run` and `run_all`.
//!
//! On a current_thread runtime the "no start after the first failure" check
//! is exact: the event log numbers the failing task's return and every task
//! start, and no start may come after the failure. On a multi-thread runtime
//! lanes on other threads may be starting a task while the failure is being
//! observed, so there at most `limit` starts may follow it.

mod live;

use std::time::Duration;

use fanout::{fan_out, Cause, PanicPolicy, Retry, TaskCtx, TaskError};
use live::{ms, runtime, secs, Kind, Live, Log};
use tokio::time::{sleep, timeout, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    /// A genuine failure, naming its task.
    Boom(usize),
    /// Returned by a task when it sees the run's cancellation token.
    SawCancel(usize),
}

const HANG: Duration = Duration::from_secs(60);

/// Deterministic pseudo-random duration in 1..=9 ms for task `i`.
fn jitter(i: usize) -> Duration {
    ms(1 + (i as u64 * 7919 + 13) % 9)
}

// ---------------------------------------------------------------------------
// L3: no task starts after the first failure; every input is accounted for.

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

// ---------------------------------------------------------------------------
// L3: which error is the cause.

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

// ---------------------------------------------------------------------------
// L5: integrity.

async fn results_in_input_order_when_finishing_in_reverse(paused: bool) {
    for (n, limit) in [(1, 1), (10, 10), (50, 7), (300, 64)] {
        let f = move |_ctx: TaskCtx, i: usize| async move {
            if paused {
                sleep(ms((n - i) as u64)).await;
            } else {
                for _ in 0..(n - i) % 17 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, E>(i * 3 + 1)
        };
        let out = fan_out(0..n).limit(limit).run(f).await.expect("no failure");
        assert_eq!(out.len(), n);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, i * 3 + 1, "out[{i}] does not belong to input {i}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn run_returns_out_i_for_input_i_when_tasks_finish_in_reverse_order() {
    results_in_input_order_when_finishing_in_reverse(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_returns_out_i_for_input_i_on_a_multi_thread_runtime() {
    results_in_input_order_when_finishing_in_reverse(false).await;
}

/// Every kind of outcome, finishing in reverse order: one outcome per input,
/// in input order, with the right kind.
#[tokio::test(start_paused = true)]
async fn run_all_gives_exactly_one_outcome_per_input_in_input_order() {
    live::quiet_intentional_panics();
    let n = 60;
    let report = fan_out(0..n)
        .limit(8)
        .timeout(ms(500))
        .panics(PanicPolicy::AsError)
        .run_all(move |_ctx, i| async move {
            sleep(ms((n - i) as u64)).await;
            match i % 4 {
                0 => Ok(i * 2),
                1 => Err(E::Boom(i)),
                2 => panic!("[intentional] task {i}"),
                _ => {
                    sleep(secs(10)).await;
                    Ok(0)
                }
            }
        })
        .await;
    assert_eq!(report.len(), n);
    assert!(report.stopped_by().is_none());
    for (i, (key, outcome)) in report.outcomes().iter().enumerate() {
        assert_eq!(*key, i, "outcome {i} has key {key}");
        match (i % 4, outcome) {
            (0, Ok(v)) => assert_eq!(*v, i * 2),
            (1, Err(TaskError::Failed(E::Boom(j)))) => assert_eq!(*j, i),
            (2, Err(TaskError::Panicked(p))) => {
                assert_eq!(
                    p.message(),
                    Some(format!("[intentional] task {i}").as_str())
                );
            }
            (3, Err(TaskError::TimedOut(d))) => assert_eq!(*d, ms(500)),
            (_, o) => panic!("input {i}: unexpected outcome {o:?}"),
        }
    }
    let c = report.counts();
    assert_eq!(
        (c.succeeded, c.failed, c.panicked, c.timed_out, c.total()),
        (15, 15, 15, 15, n),
        "{c:?}"
    );
}

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
