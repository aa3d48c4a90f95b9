//! Time (L6): per-task timeouts from the task's start, the run's deadline,
//! the external token, and retries with backoff that stop on cancellation and
//! never exceed the limit.
//!
//! Every test runs on tokio's paused clock: times are virtual and exact.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanout::{fan_out, CancellationToken, Cause, Order, Retry, TaskError};
use tokio::time::{sleep, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Virtual milliseconds since `t0`.
fn since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).expect("small")
}

/// Counts live things and the most seen at once.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    max: AtomicUsize,
}

struct LiveGuard(Arc<Live>);

impl Live {
    fn enter(self: &Arc<Self>) -> LiveGuard {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        LiveGuard(self.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
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
    let live = Arc::new(Live::default());
    let task = {
        let live = live.clone();
        move |_ctx: fanout::TaskCtx, i: u64| {
            let live = live.clone();
            async move {
                let _g = live.enter();
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
    assert_eq!(live.now.load(SeqCst), 0);

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
    assert_eq!(live.now.load(SeqCst), 0);

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
    assert_eq!(live.now.load(SeqCst), 0);
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
    let bodies = Arc::new(Live::default());
    let tasks = Arc::new(Live::default());
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
                    o.lock().unwrap().push(t.enter());
                }
                let _body = b.enter();
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
    assert!(bodies.max.load(SeqCst) <= 3, "attempt bodies alive at once");
    assert_eq!(bodies.now.load(SeqCst), 0);
    // Tasks between their first and last attempt, backoff included.
    assert!(tasks.max.load(SeqCst) <= 3, "tasks in flight at once");
}
