//! No orphans: when a run returns, by any path (success, error, re-raised
//! panic), every task it started has finished or been dropped, and dropping
//! the run's future or its stream aborts every task at once. Each test counts
//! live task bodies and reads the count the moment the run returns or is
//! dropped; the cancellation grid also checks, for every position of a
//! failing task among siblings that ignore or watch the token, that the
//! error comes back promptly and names that task.
//!
//! Every time-dependent test runs on tokio's paused clock: time only moves
//! when the runtime has nothing else to do, so "the run returned at the
//! instant of the failure" is an exact, deterministic check, and a hang shows
//! up as a `tokio::time::timeout` firing, never as a wall-clock wait.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ms, runtime, secs, Kind, Live, Log, HANG};
use fanout::{fan_out, CancellationToken, Order, TaskCtx};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    /// The genuine failure of a test.
    Boom,
    /// Returned by a task when it sees the run's cancellation token.
    SawCancel,
}

// ---------------------------------------------------------------------------
// No task is alive when a run returns, by any path.

/// Runs `ok`, `error` and `panic` paths of `run` and `run_all` and checks the
/// live counter right after each returns.
async fn no_live_task_on_any_return_path() {
    // Success.
    let live = Live::new();
    let l = live.clone();
    let out = fan_out(0..40)
        .limit(8)
        .run(move |_ctx, i| {
            let l = l.clone();
            async move {
                let _g = l.guard();
                for _ in 0..i % 4 {
                    tokio::task::yield_now().await;
                }
                Ok::<_, E>(i)
            }
        })
        .await
        .expect("no task fails");
    assert_eq!(out, (0..40).collect::<Vec<_>>());
    assert_eq!(live.now(), 0, "a task is alive after a successful run");
    assert_eq!(live.created(), 40);

    // Error, with siblings that never finish on their own.
    let live = Live::new();
    let l = live.clone();
    let err = timeout(
        HANG,
        fan_out(0..40).limit(8).run(move |_ctx, i| {
            let l = l.clone();
            async move {
                let _g = l.guard();
                if i == 5 {
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                    return Err(E::Boom);
                }
                std::future::pending::<()>().await;
                Ok(i)
            }
        }),
    )
    .await
    .expect("the run hung after a failure")
    .expect_err("task 5 fails");
    assert_eq!(err.key(), Some(&5));
    assert_eq!(live.now(), 0, "a task is alive after a failed run");

    // Error in a collect-all run stopped by the external token.
    let live = Live::new();
    let l = live.clone();
    let token = CancellationToken::new();
    let t = token.clone();
    let report = timeout(
        HANG,
        fan_out(0..40)
            .limit(8)
            .cancel_on(&token)
            .run_all(move |_ctx, i| {
                let l = l.clone();
                let t = t.clone();
                async move {
                    let _g = l.guard();
                    if i == 3 {
                        tokio::task::yield_now().await;
                        t.cancel();
                    }
                    std::future::pending::<()>().await;
                    Ok::<usize, E>(i)
                }
            }),
    )
    .await
    .expect("run_all hung after the external token was cancelled");
    assert_eq!(report.len(), 40);
    assert_eq!(live.now(), 0, "a task is alive after run_all returned");

    // Panic, re-raised after the drain.
    common::quiet_intentional_panics();
    for all in [false, true] {
        let live = Live::new();
        let l = live.clone();
        let f = move |_ctx: TaskCtx, i: usize| {
            let l = l.clone();
            async move {
                let _g = l.guard();
                if i == 6 {
                    tokio::task::yield_now().await;
                    panic!("[intentional] task 6");
                }
                std::future::pending::<()>().await;
                Ok::<usize, E>(i)
            }
        };
        let caught = if all {
            common::catch_unwind(timeout(HANG, fan_out(0..40).limit(8).run_all(f)))
                .await
                .map(|_| ())
        } else {
            common::catch_unwind(timeout(HANG, fan_out(0..40).limit(8).run(f)))
                .await
                .map(|_| ())
        };
        let payload = caught.expect_err("the task's panic is re-raised");
        assert_eq!(live.now(), 0, "a task is alive when the panic is re-raised");
        assert_eq!(
            common::panic_message(&*payload),
            Some("[intentional] task 6")
        );
    }
}

#[test]
fn no_task_is_alive_when_a_run_returns_by_any_path_on_current_thread() {
    runtime(false).block_on(no_live_task_on_any_return_path());
}

#[test]
fn no_task_is_alive_when_a_run_returns_by_any_path_on_multi_thread() {
    runtime(true).block_on(no_live_task_on_any_return_path());
}

// ---------------------------------------------------------------------------
// Dropping the run's future (or stream) aborts every task.

/// A task that sleeps a while (by index) and logs its start and its end.
fn sleepy(
    live: &Live,
    log: &Log,
) -> impl Fn(
    TaskCtx,
    usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, E>> + Send>>
       + Send
       + Sync
       + 'static {
    let (live, log) = (live.clone(), log.clone());
    move |_ctx, i| {
        let (live, log) = (live.clone(), log.clone());
        Box::pin(async move {
            let _g = live.guard();
            log.record(Kind::Start, i);
            sleep(ms(10 * (i as u64 % 7 + 1))).await;
            log.record(Kind::End, i);
            Ok(i)
        })
    }
}

/// After the run was dropped at `dropped_at` (and `mark` logged), waits for
/// the live counter to reach zero and checks that it did so by aborts: no
/// time passed and no task body ran to completion after the drop.
async fn assert_aborted(live: &Live, log: &Log, mark: usize, dropped_at: Instant) {
    timeout(HANG, live.wait_zero())
        .await
        .expect("tasks are still alive a minute (paused) after the run was dropped");
    assert!(
        log.after(mark, Kind::End).is_empty(),
        "task bodies ran to completion after the run was dropped: {:?}",
        log.after(mark, Kind::End)
    );
    assert_eq!(
        dropped_at.elapsed(),
        Duration::ZERO,
        "tasks were not aborted at once: the clock had to move"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_midway_aborts_every_task() {
    for lanes in [1, 3] {
        let (live, log) = (Live::new(), Log::new());
        let run = fan_out(0..100)
            .limit(8)
            .lanes(lanes)
            .run(sleepy(&live, &log));
        assert!(
            timeout(ms(35), run).await.is_err(),
            "the run cannot finish in 35 ms"
        );
        let (mark, at) = (log.mark(), Instant::now());
        assert!(live.now() > 0, "the test needs tasks running at the drop");
        assert_aborted(&live, &log, mark, at).await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_all_future_midway_aborts_every_task() {
    for lanes in [1, 3] {
        let (live, log) = (Live::new(), Log::new());
        let run = fan_out(0..100)
            .limit(8)
            .lanes(lanes)
            .run_all(sleepy(&live, &log));
        assert!(timeout(ms(35), run).await.is_err());
        let (mark, at) = (log.mark(), Instant::now());
        assert!(live.now() > 0);
        assert_aborted(&live, &log, mark, at).await;
    }
}

/// Drop points by progress rather than time: the run is dropped as soon as
/// `k` task bodies have started, for many `k`; every task waits on a gate
/// that opens right after the drop, so a task that survived the drop would
/// run to completion.
#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_at_any_point_aborts_every_task() {
    for k in [0, 1, 2, 3, 5, 8, 11, 13] {
        let (live, log) = (Live::new(), Log::new());
        let gate = Arc::new(Semaphore::new(0));
        let (l, g, lg) = (live.clone(), gate.clone(), log.clone());
        let mut run = Box::pin(fan_out(0..60).limit(8).lanes(2).run(move |_ctx, i| {
            let (l, g, lg) = (l.clone(), g.clone(), lg.clone());
            async move {
                let _guard = l.guard();
                lg.record(Kind::Start, i);
                // Half the tasks finish on their own, so slots turn over.
                if i % 2 == 1 {
                    drop(g.acquire().await);
                }
                lg.record(Kind::End, i);
                Ok::<_, E>(i)
            }
        }));
        let started = live.clone();
        timeout(HANG, async {
            tokio::select! {
                _ = &mut run => panic!("the run finished although its tasks wait on a closed gate"),
                () = started.wait_created(k) => {}
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{k} tasks never started"));
        drop(run);
        let (mark, at) = (log.mark(), Instant::now());
        gate.add_permits(1000);
        assert_aborted(&live, &log, mark, at).await;
    }
}

/// The same on a multi-thread runtime, where aborts cross threads: the
/// counter must reach zero (a hang under a generous real-time bound fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_run_future_on_a_multi_thread_runtime_aborts_every_task() {
    for k in [1, 4, 8, 16] {
        let live = Live::new();
        let l = live.clone();
        let mut run = Box::pin(fan_out(0..200).limit(16).run(move |_ctx, i| {
            let l = l.clone();
            async move {
                let _guard = l.guard();
                if i % 3 == 0 {
                    std::future::pending::<()>().await;
                }
                tokio::task::yield_now().await;
                Ok::<_, E>(i)
            }
        }));
        let started = live.clone();
        timeout(secs(10), async {
            tokio::select! {
                _ = &mut run => panic!("the run finished although some tasks never do"),
                () = started.wait_created(k) => {}
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{k} tasks never started"));
        drop(run);
        timeout(secs(10), live.wait_zero())
            .await
            .expect("tasks are still alive 10 s after the run was dropped");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_task_stream_midway_aborts_every_task() {
    for order in [Order::Completion, Order::Input] {
        let (live, log) = (Live::new(), Log::new());
        let mut stream = fan_out(0..100)
            .limit(8)
            .lanes(2)
            .stream(order, sleepy(&live, &log));
        for _ in 0..3 {
            let (_, outcome) = stream.next().await.expect("100 inputs");
            outcome.expect("sleepy tasks succeed");
        }
        assert!(live.now() > 0);
        drop(stream);
        let (mark, at) = (log.mark(), Instant::now());
        assert_aborted(&live, &log, mark, at).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_a_task_stream_on_a_multi_thread_runtime_aborts_every_task() {
    for order in [Order::Completion, Order::Input] {
        let live = Live::new();
        let l = live.clone();
        let mut stream = fan_out(0..200).limit(16).stream(order, move |_ctx, i| {
            let l = l.clone();
            async move {
                let _guard = l.guard();
                if i % 3 == 2 {
                    std::future::pending::<()>().await;
                }
                Ok::<_, E>(i)
            }
        });
        for _ in 0..2 {
            let (_, outcome) = stream.next().await.expect("inputs 0 and 1 finish");
            outcome.expect("tasks that finish succeed");
        }
        drop(stream);
        timeout(secs(10), live.wait_zero())
            .await
            .expect("tasks are still alive 10 s after the stream was dropped");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_the_token_and_aborts_running_tasks() {
    for order in [Order::Completion, Order::Input] {
        let live = Live::new();
        let tokens = Arc::new(Mutex::new(Vec::<CancellationToken>::new()));
        let (l, tk) = (live.clone(), tokens.clone());
        let stream = fan_out(0..100u64)
            .limit(4)
            .lanes(2)
            .stream(order, move |ctx, _i| {
                let l = l.clone();
                tk.lock().unwrap().push(ctx.token().clone());
                async move {
                    let _g = l.guard();
                    std::future::pending::<Result<(), ()>>().await
                }
            });
        // The lanes run without the stream being polled.
        for _ in 0..20 {
            if live.now() == 4 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(live.now(), 4);
        drop(stream);
        let tokens = tokens.lock().unwrap().clone();
        assert_eq!(tokens.len(), 4, "no input is pulled beyond the limit");
        assert!(tokens.iter().all(CancellationToken::is_cancelled));
        // The abort lands when the runtime next runs the lanes.
        for _ in 0..20 {
            if live.now() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            live.now(),
            0,
            "{order:?}: tasks outlived the dropped stream"
        );
        assert_eq!(live.max(), 4);
    }
}

// ---------------------------------------------------------------------------
// The cancellation grid (Java's StressCancellation): `before` tasks that never
// finish on their own, one failing task, then `after` such tasks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hang {
    /// Pending forever, deaf to the token.
    Ignore,
    /// Waits for the token, then returns its own error.
    Watch,
}

async fn grid_case(before: usize, after: usize, hang: Hang, grace: Duration, paused: bool) {
    let live = Live::new();
    let l = live.clone();
    let n = before + 1 + after;
    let run = fan_out(0..n).grace(grace).run(move |ctx: TaskCtx, i| {
        let l = l.clone();
        async move {
            let _guard = l.guard();
            if i == before {
                return Err::<(), _>(E::Boom);
            }
            match hang {
                Hang::Ignore => std::future::pending::<()>().await,
                Hang::Watch => ctx.cancelled().await,
            }
            Err(E::SawCancel)
        }
    });
    let start = Instant::now();
    let bound = if paused { HANG } else { secs(10) };
    let err = timeout(bound, run)
        .await
        .unwrap_or_else(|_| panic!("case before={before} after={after} {hang:?} hung"))
        .expect_err("one task fails");
    let case = format!("case before={before} after={after} {hang:?} grace={grace:?}");
    if paused {
        // Promptly: at the instant of the failure, or, if started tasks
        // ignore the token, when the grace ends (tasks after the failing one
        // may not have started at all).
        let expected = if hang == Hang::Ignore && err.counts().cancelled > 0 {
            grace
        } else {
            Duration::ZERO
        };
        assert_eq!(start.elapsed(), expected, "{case}: returned late");
    }
    assert_eq!(
        live.now(),
        0,
        "{case}: a task is alive after the run returned"
    );
    assert_eq!(err.key(), Some(&before), "{case}: wrong cause {err:?}");
    assert_eq!(err.task_error(), Some(&E::Boom), "{case}");
    assert!(
        err.others()
            .iter()
            .all(|f| f.error.as_failed() == Some(&E::SawCancel)),
        "{case}: {err:?}"
    );
    let c = err.counts();
    assert_eq!(c.total(), n, "{case}: {c:?}");
    assert_eq!(c.failed, 1 + err.others().len(), "{case}: {c:?}");
    assert_eq!(c.succeeded + c.panicked + c.timed_out, 0, "{case}: {c:?}");
}

#[tokio::test(start_paused = true)]
async fn every_case_of_the_cancellation_grid_returns_the_error_promptly_with_no_live_task() {
    for (hang, grace) in [
        (Hang::Ignore, Duration::ZERO),
        (Hang::Watch, Duration::ZERO),
        (Hang::Ignore, ms(250)),
        (Hang::Watch, ms(250)),
    ] {
        for before in 0..16 {
            for after in 0..16 {
                grid_case(before, after, hang, grace, true).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_case_of_the_cancellation_grid_returns_with_no_live_task_on_multi_thread() {
    for hang in [Hang::Ignore, Hang::Watch] {
        for before in 0..16 {
            for after in 0..16 {
                grid_case(before, after, hang, Duration::ZERO, false).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Blocking closures started by tasks cannot be aborted: the run waits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_returns_only_after_every_blocking_closure_of_its_tasks_has_returned() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    let started = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicUsize::new(0));
    let (s, r) = (started.clone(), returned.clone());
    let err = timeout(
        secs(10),
        fan_out(0..4).limit(4).run(move |ctx: TaskCtx, i| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                if i == 0 {
                    // Fail once the three closures are running.
                    while s.load(SeqCst) < 3 {
                        sleep(ms(1)).await;
                    }
                    return Err(E::Boom);
                }
                ctx.spawn_blocking(move |token| {
                    s.fetch_add(1, SeqCst);
                    while !token.is_cancelled() {
                        std::thread::sleep(ms(1));
                    }
                    // Cleanup that outlasts the abort of the task itself.
                    std::thread::sleep(ms(20));
                    r.fetch_add(1, SeqCst);
                })
                .await;
                Ok(i)
            }
        }),
    )
    .await
    .expect("the run hung")
    .expect_err("task 0 fails");
    assert_eq!(err.key(), Some(&0));
    assert_eq!(
        returned.load(SeqCst),
        3,
        "the run returned while blocking closures were still running"
    );
}
