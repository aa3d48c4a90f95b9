//! Time: the per-task timeout counts from the moment the attempt starts, not
//! while it waits for a slot; the deadline bounds the whole run; the external
//! token stops the run (no task starts after it) and is never cancelled by
//! the run; retries back off, stop as soon as the run is stopped, and never
//! exceed the limit.
//!
//! Every test but one multi-thread check runs on tokio's paused clock: times
//! are virtual and exact.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ms, secs, since, Kind, Live, Log, HANG};
use fanout::{fan_out, CancellationToken, Cause, Order, Retry, TaskCtx, TaskError};
use tokio::time::{sleep, timeout, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    /// The genuine failure of a test.
    Boom,
    /// Returned by a task when it sees the run's cancellation token.
    SawCancel,
}

#[tokio::test(start_paused = true)]
async fn the_timeout_counts_from_the_task_start_not_from_the_wait_for_a_slot() {
    let t0 = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let st = starts.clone();
    // With limit 1 the second task waits 60 ms for its slot: 120 ms after the
    // run began, but only 60 ms after its own start.
    let out = fan_out(0..2u64)
        .limit(1)
        .timeout(ms(100))
        .run(move |_ctx, i| {
            let st = st.clone();
            async move {
                st.lock().unwrap().push(since(t0));
                sleep(ms(60)).await;
                Ok::<_, ()>(i)
            }
        })
        .await
        .unwrap();
    assert_eq!(out, [0, 1]);
    assert_eq!(*starts.lock().unwrap(), [0, 60]);
    assert_eq!(since(t0), 120);
}

#[tokio::test(start_paused = true)]
async fn a_task_over_the_timeout_ends_with_timed_out_at_the_timeout() {
    let t0 = Instant::now();
    let report = fan_out([10u64, 500, 20])
        .limit(3)
        .timeout(ms(100))
        .run_all(|_ctx, d| async move {
            sleep(ms(d)).await;
            Ok::<_, ()>(d)
        })
        .await;
    assert_eq!(since(t0), 100, "the slow task is stopped at its timeout");
    let o = report.outcomes();
    assert!(matches!(o[0], (0, Ok(10))));
    assert!(matches!(o[1], (1, Err(TaskError::TimedOut(d))) if d == ms(100)));
    assert!(matches!(o[2], (2, Ok(20))));
    assert_eq!(report.counts().timed_out, 1);

    // Fail-fast: a timeout is a genuine failure and the root cause.
    let t0 = Instant::now();
    let err = fan_out([10u64, 500, 1000])
        .limit(3)
        .timeout(ms(100))
        .run(|_ctx, d| async move {
            sleep(ms(d)).await;
            Ok::<_, ()>(d)
        })
        .await
        .unwrap_err();
    assert_eq!(since(t0), 100);
    let f = err.failure().expect("a task is the cause");
    assert!(f.error.is_timeout(), "{:?}", f.error);
    // Inputs 1 and 2 time out at the same instant: either may be the cause.
    assert!(f.index == 1 || f.index == 2);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_whole_run() {
    // Ten tasks of 30 ms, two at a time, a 100 ms deadline: 0-5 finish at
    // 30, 60 and 90 ms; 6 and 7 start at 90 and are cancelled at 100; 8 and
    // 9 never start.
    let live = Live::new();
    let task = {
        let live = live.clone();
        move |_ctx: fanout::TaskCtx, i: u64| {
            let live = live.clone();
            async move {
                let _g = live.guard();
                sleep(ms(30)).await;
                Ok::<_, ()>(i)
            }
        }
    };

    let t0 = Instant::now();
    let err = fan_out(0..10u64)
        .limit(2)
        .deadline(ms(100))
        .run(task.clone())
        .await
        .unwrap_err();
    assert_eq!(since(t0), 100);
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(err.failure().is_none() && err.others().is_empty());
    let c = err.counts();
    assert_eq!(
        (c.succeeded, c.cancelled, c.not_started, c.total()),
        (6, 2, 2, 10)
    );
    assert_eq!(live.now(), 0);

    let t0 = Instant::now();
    let report = fan_out(0..10u64)
        .limit(2)
        .deadline(ms(100))
        .run_all(task.clone())
        .await;
    assert_eq!(since(t0), 100);
    assert!(
        matches!(report.stopped_by(), Some(Cause::DeadlineExceeded)),
        "{:?}",
        report.stopped_by()
    );
    let kinds: Vec<&str> = report
        .outcomes()
        .iter()
        .map(|(_, o)| o.as_ref().map_or_else(TaskError::kind, |_| "ok"))
        .collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "ok",
            "ok",
            "ok",
            "ok",
            "ok",
            "cancelled",
            "cancelled",
            "not_started",
            "not_started"
        ]
    );
    assert_eq!(live.now(), 0);

    // A stream stops at its deadline too.
    let t0 = Instant::now();
    let mut stream = fan_out(0..10u64)
        .limit(2)
        .deadline(ms(100))
        .stream(Order::Input, task);
    let mut kinds = Vec::new();
    while let Some((_, o)) = stream.next().await {
        kinds.push(o.map_or_else(|e| e.kind(), |_| "ok"));
    }
    assert_eq!(since(t0), 100);
    assert_eq!(
        kinds,
        ["ok", "ok", "ok", "ok", "ok", "ok", "cancelled", "cancelled"]
    );
    assert_eq!(live.now(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_external_token_stops_the_run_and_is_never_cancelled_by_it() {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(50)).await;
        t.cancel();
    });
    let t0 = Instant::now();
    let err = fan_out(0..10u64)
        .limit(2)
        .cancel_on(&token)
        .run(|_ctx, i| async move {
            sleep(ms(30)).await;
            Ok::<_, ()>(i)
        })
        .await
        .unwrap_err();
    assert_eq!(since(t0), 50);
    assert!(err.is_cancelled(), "{err:?}");
    let c = err.counts();
    assert_eq!((c.succeeded, c.cancelled, c.not_started), (2, 2, 6));

    // A run that fails does not cancel the caller's token.
    let outer = CancellationToken::new();
    let _ = fan_out(0..3u64)
        .cancel_on(&outer)
        .run(|_ctx, _i| async move { Err::<(), _>("no") })
        .await
        .unwrap_err();
    assert!(!outer.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn retries_count_attempts_and_back_off_exponentially() {
    let t0 = Instant::now();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let at = attempts.clone();
    let out = fan_out([7u64])
        .retry(Retry::attempts(5).backoff(ms(10)))
        .run(move |ctx, v| {
            let at = at.clone();
            async move {
                at.lock().unwrap().push((ctx.attempt(), since(t0)));
                if ctx.attempt() < 4 {
                    Err(ctx.attempt())
                } else {
                    Ok(v)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(out, [7]);
    // Attempts 1..4; delays 10, 20, 40 ms.
    assert_eq!(
        *attempts.lock().unwrap(),
        [(1, 0), (2, 10), (3, 30), (4, 70)]
    );

    // The delay is capped by `max_backoff`, and the last error is reported.
    let t0 = Instant::now();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let at = attempts.clone();
    let report = fan_out([0u64])
        .retry(Retry::attempts(5).backoff(ms(10)).max_backoff(ms(25)))
        .run_all(move |ctx, _v| {
            let at = at.clone();
            async move {
                at.lock().unwrap().push(since(t0));
                Err::<(), _>(ctx.attempt())
            }
        })
        .await;
    assert_eq!(*attempts.lock().unwrap(), [0, 10, 30, 55, 80]);
    assert!(matches!(
        report.outcomes()[0],
        (0, Err(TaskError::Failed(5)))
    ));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaky {
    Transient,
    Fatal,
}

#[tokio::test(start_paused = true)]
async fn the_retry_predicate_decides_which_errors_are_retried() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let report = fan_out([Flaky::Transient, Flaky::Fatal])
        .limit(2)
        .retry(
            Retry::attempts(3)
                .backoff(ms(5))
                .retry_if(|e: &Flaky| *e == Flaky::Transient),
        )
        .run_all(move |ctx, kind| {
            let c = c.clone();
            async move {
                c.lock().unwrap().push((ctx.index(), ctx.attempt()));
                Err::<(), _>(kind)
            }
        })
        .await;
    let mut calls = calls.lock().unwrap().clone();
    calls.sort_unstable();
    assert_eq!(
        calls,
        [(0, 1), (0, 2), (0, 3), (1, 1)],
        "Fatal is not retried"
    );
    assert!(matches!(
        report.outcomes()[1],
        (1, Err(TaskError::Failed(Flaky::Fatal)))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_with_its_own_timeout() {
    let t0 = Instant::now();
    let out = fan_out([0u64])
        .timeout(ms(50))
        .retry(Retry::attempts(3).backoff(ms(10)).retry_if(|_: &()| false))
        .run(move |ctx, _| async move {
            if ctx.attempt() == 1 {
                sleep(ms(1000)).await;
            } else {
                // 40 ms: within this attempt's own 50 ms.
                sleep(ms(40)).await;
            }
            Ok::<_, ()>((ctx.attempt(), since(t0)))
        })
        .await
        .unwrap();
    // Timed out at 50, backoff 10, attempt 2 from 60 to 100.
    assert_eq!(out, [(2, 100)]);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_as_soon_as_a_sibling_fails() {
    for grace in [Duration::ZERO, ms(1000)] {
        let t0 = Instant::now();
        let attempts = Arc::new(AtomicUsize::new(0));
        let at = attempts.clone();
        // Input 0 fails at once and backs off 100 ms; input 1 fails for good
        // at 10 ms, while input 0 is in its backoff.
        let err = fan_out([0u64, 1])
            .limit(2)
            .grace(grace)
            .retry(
                Retry::attempts(5)
                    .backoff(ms(100))
                    .retry_if(|e: &u64| *e == 0),
            )
            .run(move |_ctx, i| {
                let at = at.clone();
                async move {
                    if i == 0 {
                        at.fetch_add(1, SeqCst);
                        Err(0)
                    } else {
                        sleep(ms(10)).await;
                        Err::<(), _>(1)
                    }
                }
            })
            .await
            .unwrap_err();
        assert_eq!(
            since(t0),
            10,
            "grace {grace:?}: the backoff does not delay the stop"
        );
        assert_eq!(
            attempts.load(SeqCst),
            1,
            "grace {grace:?}: no attempt after the stop"
        );
        assert_eq!(err.key(), Some(&1), "the sibling is the cause: {err}");
        // With a grace period the task leaves its backoff with its last error,
        // a genuine failure listed with the others; without, it is aborted.
        if grace.is_zero() {
            assert_eq!(err.counts().cancelled, 1);
        } else {
            assert_eq!(err.others().len(), 1);
            assert_eq!(err.others()[0].key, 0);
            assert!(matches!(err.others()[0].error, TaskError::Failed(0)));
        }
    }
}

fn cancel_at(token: &CancellationToken, at: u64) {
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(at)).await;
        t.cancel();
    });
}

#[tokio::test(start_paused = true)]
async fn no_input_starts_after_the_external_token_is_cancelled_even_when_a_task_ends_on_it() {
    let token = CancellationToken::new();
    cancel_at(&token, 10);
    let t0 = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let st = starts.clone();
    // A cooperative task: it watches the token and ends cleanly on it.
    let report = fan_out(0..4u64)
        .limit(1)
        .cancel_on(&token)
        .run_all(move |ctx, i| {
            st.lock().unwrap().push((i, since(t0)));
            async move {
                ctx.cancelled().await;
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert_eq!(since(t0), 10);
    assert_eq!(
        *starts.lock().unwrap(),
        [(0, 0)],
        "inputs started after the cancellation"
    );
    let kinds: Vec<&str> = report
        .outcomes()
        .iter()
        .map(|(_, o)| o.as_ref().map_or_else(TaskError::kind, |_| "ok"))
        .collect();
    assert_eq!(kinds, ["ok", "not_started", "not_started", "not_started"]);
    assert!(
        matches!(report.stopped_by(), Some(Cause::Cancelled)),
        "{:?}",
        report.stopped_by()
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_as_soon_as_the_external_token_is_cancelled() {
    let token = CancellationToken::new();
    cancel_at(&token, 30);
    let t0 = Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    // Input 0 fails on every attempt, 20 ms apart; input 1 waits for its
    // slot, which input 0 holds until the cancellation.
    let report = fan_out([0u64, 1])
        .limit(1)
        .cancel_on(&token)
        .grace(ms(1000))
        .retry(Retry::attempts(10).backoff(ms(20)).multiplier(1))
        .run_all(move |ctx, i| {
            let c = c.clone();
            async move {
                c.lock().unwrap().push((i, ctx.attempt(), since(t0)));
                Err::<(), _>(ctx.attempt())
            }
        })
        .await;
    assert_eq!(since(t0), 30);
    // Attempts at 0 and 20; cancelled at 30 in the second backoff; input 1
    // must not start after the cancellation.
    assert_eq!(*calls.lock().unwrap(), [(0, 1, 0), (0, 2, 20)]);
    assert!(matches!(
        report.outcomes()[0],
        (0, Err(TaskError::Failed(2)))
    ));
    assert!(matches!(
        report.outcomes()[1],
        (1, Err(TaskError::NotStarted))
    ));
    assert!(
        matches!(report.stopped_by(), Some(Cause::Cancelled)),
        "{:?}",
        report.stopped_by()
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_ending_a_backoff_cut_short_by_the_external_token_is_not_the_root_cause() {
    let token = CancellationToken::new();
    cancel_at(&token, 30);
    let t0 = Instant::now();
    let err = fan_out([0u64])
        .cancel_on(&token)
        .grace(ms(1000))
        .retry(Retry::attempts(10).backoff(ms(20)).multiplier(1))
        .run(move |ctx, _| async move { Err::<(), _>(ctx.attempt()) })
        .await
        .unwrap_err();
    assert_eq!(since(t0), 30);
    // The run stopped because the token was cancelled; the task's last error
    // "does not stop the run again" (`Retry` docs): it is listed, not the cause.
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(err.others().len(), 1, "{err:?}");
    assert!(matches!(err.others()[0].error, TaskError::Failed(2)));
}

#[tokio::test(start_paused = true)]
async fn retries_and_timeouts_never_exceed_the_limit_of_live_tasks() {
    let bodies = Live::new();
    let tasks = Live::new();
    let open = Arc::new(Mutex::new(Vec::new()));
    let (b, t, o) = (bodies.clone(), tasks.clone(), open.clone());
    let out = fan_out(0..30u64)
        .limit(3)
        .lanes(2)
        .timeout(ms(20))
        .retry(Retry::attempts(3).backoff(ms(5)))
        .run(move |ctx, i| {
            let (b, t, o) = (b.clone(), t.clone(), o.clone());
            async move {
                // A task is "open" from its first attempt to its last.
                if ctx.attempt() == 1 {
                    o.lock().unwrap().push(t.guard());
                }
                let _body = b.guard();
                match (i % 3, ctx.attempt()) {
                    // Times out, then succeeds.
                    (0, 1) => sleep(ms(1000)).await,
                    // Fails twice, then succeeds.
                    (1, a) if a < 3 => {
                        sleep(ms(i % 4)).await;
                        return Err(a);
                    }
                    _ => sleep(ms(i % 5)).await,
                }
                o.lock().unwrap().pop();
                Ok(i)
            }
        })
        .await
        .unwrap();
    assert_eq!(out, (0..30).collect::<Vec<_>>());
    assert!(bodies.max() <= 3, "attempt bodies alive at once");
    assert_eq!(bodies.now(), 0);
    // Tasks between their first and last attempt, backoff included.
    assert!(tasks.max() <= 3, "tasks in flight at once");
}

// ---------------------------------------------------------------------------
// The external token: the run stops at once, starts nothing more, and
// leaves the caller's token alone.

/// Every task takes 10 ms; the token is cancelled at 25 ms.
#[tokio::test(start_paused = true)]
async fn an_external_cancellation_stops_the_run_with_a_cancelled_error() {
    let (live, log) = (Live::new(), Log::new());
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(25)).await;
        t.cancel();
    });
    let (l, lg) = (live.clone(), log.clone());
    let start = Instant::now();
    let err = timeout(
        HANG,
        fan_out(0..50)
            .limit(4)
            .cancel_on(&token)
            .run(move |_ctx, i| {
                let (l, lg) = (l.clone(), lg.clone());
                async move {
                    let _guard = l.guard();
                    lg.record(Kind::Start, i);
                    sleep(ms(10)).await;
                    Ok::<_, E>(i)
                }
            }),
    )
    .await
    .expect("the run hung after the external cancellation")
    .expect_err("the run was cancelled");
    assert_eq!(start.elapsed(), ms(25), "the run did not stop at once");
    assert!(err.is_cancelled(), "{err:?}");
    assert!(matches!(err.cause(), Cause::Cancelled));
    assert!(err.failure().is_none() && err.key().is_none());
    assert!(err.others().is_empty());
    let c = err.counts();
    assert_eq!(
        (c.succeeded, c.cancelled, c.not_started, c.total()),
        (8, 4, 38, 50),
        "{c:?}"
    );
    assert_eq!(log.count(Kind::Start), 12);
    assert_eq!(live.now(), 0);
}

/// Task 2 cancels the external token and returns `Ok` in the same poll: no
/// task may start after that (on multi_thread, lanes on other threads may be
/// starting one at that very moment: at most `limit`).
async fn no_start_after_external_cancel(paused: bool) {
    let limit = 4;
    for lanes in [1, 2] {
        let log = Log::new();
        let token = CancellationToken::new();
        let (lg, t) = (log.clone(), token.clone());
        let err = timeout(
            if paused { HANG } else { secs(10) },
            fan_out(0..20)
                .limit(limit)
                .lanes(lanes)
                .cancel_on(&token)
                .run(move |_ctx, i| {
                    let (lg, t) = (lg.clone(), t.clone());
                    async move {
                        lg.record(Kind::Start, i);
                        if i == 2 {
                            sleep(ms(5)).await;
                            lg.mark();
                            t.cancel();
                            return Ok(i);
                        }
                        sleep(secs(1)).await;
                        Ok::<_, E>(i)
                    }
                }),
        )
        .await
        .expect("the run hung")
        .expect_err("the run was cancelled");
        assert!(err.is_cancelled(), "{err:?}");
        let mark = log.first(Kind::Mark).expect("task 2 cancelled").seq;
        let late = log.after(mark, Kind::Start);
        if paused {
            assert_eq!(
                late,
                Vec::<usize>::new(),
                "lanes {lanes}: tasks started after the external token was cancelled"
            );
        } else {
            assert!(late.len() <= limit, "lanes {lanes}: {late:?}");
        }
        assert_eq!(err.counts().not_started, 20 - log.count(Kind::Start));
    }
}

#[tokio::test(start_paused = true)]
async fn no_task_starts_after_the_external_token_is_cancelled() {
    no_start_after_external_cancel(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_limit_tasks_start_after_the_external_token_is_cancelled_on_multi_thread() {
    no_start_after_external_cancel(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_token_is_already_cancelled_starts_no_task() {
    let log = Log::new();
    let token = CancellationToken::new();
    token.cancel();
    let lg = log.clone();
    let err = timeout(
        HANG,
        fan_out(0..10).cancel_on(&token).run(move |_ctx, i| {
            let lg = lg.clone();
            async move {
                lg.record(Kind::Start, i);
                Ok::<_, E>(i)
            }
        }),
    )
    .await
    .expect("the run hung")
    .expect_err("the token was cancelled before the run began");
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(log.indices(Kind::Start), Vec::<usize>::new());
    assert_eq!(err.counts().not_started, 10, "{:?}", err.counts());
}

#[tokio::test(start_paused = true)]
async fn a_failing_run_never_cancels_the_callers_token() {
    let token = CancellationToken::new();
    let err = fan_out(0..4)
        .cancel_on(&token)
        .run(|ctx: TaskCtx, i| async move {
            if i == 1 {
                return Err::<(), _>(E::Boom);
            }
            ctx.cancelled().await;
            Err(E::SawCancel)
        })
        .await
        .expect_err("task 1 fails");
    assert_eq!(err.key(), Some(&1));
    assert!(
        !token.is_cancelled(),
        "the run cancelled its caller's token"
    );
}
