//! Blocking runs on scoped threads: the same guarantees as async runs, as
//! they apply to threads that cannot be interrupted (results in input order,
//! the limit, cooperative fail-fast and timeouts, panics re-raised after
//! every closure returned, the external token, progress), plus
//! `spawn_blocking` inside an async run. A live-closure counter checks the
//! limit and that every closure that started has returned; property tests
//! compare runs with a sequential model.

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use common::Live;
use fanout::{fan_out, fan_out_keyed, CancellationToken, Cause, PanicPolicy, Retry, TaskError};
use proptest::prelude::*;

/// Spins (as CPU work does) until the run is cancelled, checking every
/// 100 µs; returns whether it saw the cancellation.
fn spin_until_cancelled<K>(ctx: &fanout::BlockingCtx<'_, K>) -> bool {
    for _ in 0..50_000 {
        if ctx.is_cancelled() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    false
}

#[test]
fn blocking_run_returns_results_in_input_order_and_borrows_from_the_stack() {
    let inputs: Vec<String> = (0..200).map(|i| format!("item-{i}")).collect();
    let prefix = String::from(">");
    let out = fan_out(&inputs)
        .limit(4)
        .run_blocking(|ctx, s| {
            // Later inputs finish first.
            std::thread::sleep(Duration::from_micros(((200 - ctx.index()) % 7) as u64 * 50));
            Ok::<_, ()>(format!("{prefix}{s}"))
        })
        .unwrap();
    let expected: Vec<String> = inputs.iter().map(|s| format!(">{s}")).collect();
    assert_eq!(out, expected);
}

#[test]
fn blocking_run_never_runs_more_closures_than_the_limit_and_none_after_it_returns() {
    for limit in [1, 2, 3, 8] {
        let live = Live::new();
        let out = fan_out(0..300u64)
            .limit(limit)
            .run_blocking(|_ctx, n| {
                let _g = live.guard();
                std::thread::sleep(Duration::from_micros(20));
                Ok::<_, ()>(n * 2)
            })
            .unwrap();
        assert_eq!(out.len(), 300);
        assert!(live.max() <= limit, "limit {limit}: max {}", live.max());
        assert_eq!(live.now(), 0);
        assert_eq!(live.created(), live.dropped());
    }
}

#[test]
fn blocking_fail_fast_starts_nothing_after_the_failure_is_observed() {
    // One thread: exact. The failing input is 10; nothing after it may start.
    let started = Mutex::new(Vec::new());
    let err = fan_out(0..100usize)
        .limit(1)
        .run_blocking(|ctx, n| {
            started.lock().unwrap().push(ctx.index());
            if n == 10 {
                Err("ten")
            } else {
                Ok(n)
            }
        })
        .unwrap_err();
    assert_eq!(*started.lock().unwrap(), (0..=10).collect::<Vec<_>>());
    assert_eq!(err.key(), Some(&10));
    assert_eq!(err.task_error(), Some(&"ten"));
    assert_eq!(err.counts().succeeded, 10);
    assert_eq!(err.counts().not_started, 89);
    assert_eq!(err.counts().total(), 100);
}

#[test]
fn blocking_fail_fast_cancels_running_closures_cooperatively_and_waits_for_them() {
    let live = Live::new();
    let saw_cancel = AtomicUsize::new(0);
    let err = fan_out(0..1000usize)
        .limit(4)
        .run_blocking(|_ctx, n| {
            let _g = live.guard();
            if n == 3 {
                return Err("boom");
            }
            if spin_until_cancelled(_ctx) {
                saw_cancel.fetch_add(1, SeqCst);
            }
            Ok(n)
        })
        .unwrap_err();
    assert_eq!(err.key(), Some(&3));
    // Every closure that started has returned before the call did.
    assert_eq!(live.now(), 0);
    assert_eq!(live.created(), live.dropped());
    // Only the closures running at the failure were started besides it: at
    // most one per other thread, plus those that started before it.
    assert!(live.created() <= 4 + 3, "started {}", live.created());
    assert_eq!(saw_cancel.load(SeqCst), live.created() - 1);
    let c = err.counts();
    assert_eq!(c.total(), 1000);
    assert_eq!(c.failed, 1);
    assert_eq!(c.not_started, 1000 - live.created());
}

#[test]
fn blocking_panic_is_reraised_with_its_payload_after_every_closure_returned() {
    let live = Live::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        fan_out(0..100u32).limit(3).run_blocking(|ctx, n| {
            let _g = live.guard();
            // Among the first three inputs, so it runs while two closures spin.
            if n == 1 {
                std::panic::panic_any(42u32);
            }
            spin_until_cancelled(ctx);
            Ok::<_, ()>(n)
        })
    }));
    let payload = caught.expect_err("the panic must reach the caller");
    assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
    assert_eq!(live.now(), 0);
    assert_eq!(live.created(), live.dropped());
}

#[test]
fn blocking_two_panics_at_once_reraise_one_and_report_both_as_errors() {
    let barrier = Barrier::new(2);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        fan_out(0..2u32).limit(2).run_blocking(|_ctx, n| {
            barrier.wait();
            panic!("panic {n}");
            #[allow(unreachable_code, reason = "gives the closure its return type")]
            Ok::<u32, ()>(n)
        })
    }));
    let payload = caught.expect_err("one panic must reach the caller");
    let msg = payload
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(msg == "panic 0" || msg == "panic 1", "{msg}");

    let barrier = Barrier::new(2);
    let report = fan_out(0..2u32)
        .limit(2)
        .panics(PanicPolicy::AsError)
        .run_all_blocking(|_ctx, n| {
            barrier.wait();
            panic!("panic {n}");
            #[allow(unreachable_code, reason = "gives the closure its return type")]
            Ok::<u32, ()>(n)
        });
    assert_eq!(report.counts().panicked, 2);
    for (i, (key, outcome)) in report.outcomes().iter().enumerate() {
        assert_eq!(*key, i);
        match outcome {
            Err(TaskError::Panicked(p)) => {
                assert_eq!(p.message(), Some(format!("panic {i}").as_str()))
            }
            other => panic!("expected a panic, got {other:?}"),
        }
    }
}

#[test]
fn blocking_timeout_is_cooperative_and_retries_are_counted() {
    let attempts = AtomicUsize::new(0);
    let report = fan_out(0..3u32)
        .limit(3)
        .timeout(Duration::from_millis(5))
        .retry(Retry::attempts(3).backoff(Duration::from_millis(1)))
        .run_all_blocking(|ctx, n| {
            attempts.fetch_add(1, SeqCst);
            if n == 1 {
                spin_until_cancelled(ctx);
                return Ok::<_, ()>(n);
            }
            Ok(n)
        });
    assert_eq!(report.counts().succeeded, 2);
    assert!(
        matches!(report.outcomes()[1].1, Err(TaskError::TimedOut(d)) if d == Duration::from_millis(5))
    );
    assert_eq!(attempts.load(SeqCst), 2 + 3);
}

#[test]
fn blocking_keyed_run_gives_one_result_per_key() {
    let map: BTreeMap<&str, u32> = [("a", 1), ("b", 2), ("c", 3)].into_iter().collect();
    let out = fan_out_keyed(map.clone())
        .run_blocking(|ctx, v| Ok::<_, ()>(format!("{}={}", ctx.key(), v)))
        .unwrap();
    assert_eq!(
        out,
        [
            ("a", "a=1".to_owned()),
            ("b", "b=2".to_owned()),
            ("c", "c=3".to_owned())
        ]
    );
    let err = fan_out_keyed(map)
        .run_blocking(|ctx, v| if *ctx.key() == "b" { Err(v) } else { Ok(v) })
        .unwrap_err();
    assert_eq!(err.key(), Some(&"b"));
}

#[test]
fn blocking_for_each_stops_when_the_consumer_breaks() {
    let started = AtomicUsize::new(0);
    let mut seen = 0;
    let stop = fan_out(0..100_000u64).limit(2).for_each_blocking(
        |_ctx, n| {
            started.fetch_add(1, SeqCst);
            Ok::<_, ()>(n)
        },
        |_i, _o| {
            seen += 1;
            if seen == 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(matches!(stop, Some(Cause::Cancelled)), "{:?}", stop);
    // The channel holds at most `limit` results and each thread a chunk of
    // at most 64 pulled inputs, so a stop is seen long before the end.
    assert!(
        started.load(SeqCst) < 1_000,
        "started {}",
        started.load(SeqCst)
    );
    assert!(seen >= 10);
}

#[test]
fn blocking_run_stops_when_the_external_token_is_cancelled() {
    let token = CancellationToken::new();
    let started = AtomicUsize::new(0);
    let err = fan_out(0..10_000u32)
        .limit(2)
        .cancel_on(&token)
        .run_blocking(|ctx, n| {
            if started.fetch_add(1, SeqCst) == 20 {
                token.cancel();
            }
            if n > 20 {
                spin_until_cancelled(ctx);
            }
            Ok::<_, ()>(n)
        })
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(err.failure().is_none());
    assert_eq!(err.counts().total(), 10_000);
    assert!(err.counts().not_started > 9_000);
}

#[test]
fn blocking_limit_zero_is_rejected_when_the_run_is_built() {
    let caught = catch_unwind(|| fan_out(0..1).limit(0));
    let payload = caught.expect_err("limit(0) must panic");
    let msg = payload.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("limit(0)"), "{msg}");
}

/// What a task does in the property test.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Ok(u32),
    Err(u32),
    Panic,
}

fn plan() -> impl Strategy<Value = Plan> {
    prop_oneof![
        6 => any::<u32>().prop_map(Plan::Ok),
        1 => any::<u32>().prop_map(Plan::Err),
        1 => Just(Plan::Panic),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Collect-all against a sequential model: one outcome per input, in
    /// input order, exactly the planned one; counts add up; limit held.
    #[test]
    fn blocking_run_all_matches_the_sequential_model(plans in prop::collection::vec(plan(), 0..60), limit in 1usize..5) {
        let live = Live::new();
        let report = fan_out(plans.clone())
            .limit(limit)
            .panics(PanicPolicy::AsError)
            .run_all_blocking(|_ctx, p| {
                let _g = live.guard();
                match p {
                    Plan::Ok(v) => Ok(v),
                    Plan::Err(e) => Err(e),
                    Plan::Panic => panic!("planned"),
                }
            });
        prop_assert_eq!(report.len(), plans.len());
        prop_assert!(live.max() <= limit);
        for (i, ((key, outcome), plan)) in report.outcomes().iter().zip(&plans).enumerate() {
            prop_assert_eq!(*key, i);
            match (plan, outcome) {
                (Plan::Ok(v), Ok(got)) => prop_assert_eq!(v, got),
                (Plan::Err(e), Err(TaskError::Failed(got))) => prop_assert_eq!(e, got),
                (Plan::Panic, Err(TaskError::Panicked(_))) => {}
                (p, o) => prop_assert!(false, "input {}: planned {:?}, got {:?}", i, p, o),
            }
        }
        let c = report.counts();
        prop_assert_eq!(c.total(), plans.len());
        prop_assert_eq!(c.failed, plans.iter().filter(|p| matches!(p, Plan::Err(_))).count());
    }

    /// Fail-fast with one thread against the model: the first failing input
    /// (in input order, as one thread runs them in order) is the cause,
    /// nothing after it starts, and everything before it succeeded.
    #[test]
    fn blocking_fail_fast_matches_the_sequential_model(plans in prop::collection::vec(plan(), 0..60)) {
        let started = AtomicUsize::new(0);
        let result = fan_out(plans.clone())
            .limit(1)
            .panics(PanicPolicy::AsError)
            .run_blocking(|_ctx, p| {
                started.fetch_add(1, SeqCst);
                match p {
                    Plan::Ok(v) => Ok(v),
                    Plan::Err(e) => Err(e),
                    Plan::Panic => panic!("planned"),
                }
            });
        match plans.iter().position(|p| !matches!(p, Plan::Ok(_))) {
            None => {
                let expected: Vec<u32> = plans.iter().map(|p| match p { Plan::Ok(v) => *v, _ => unreachable!() }).collect();
                prop_assert_eq!(result.unwrap(), expected);
            }
            Some(first) => {
                let err = result.unwrap_err();
                prop_assert_eq!(err.key(), Some(&first));
                prop_assert_eq!(started.load(SeqCst), first + 1);
                prop_assert_eq!(err.counts().succeeded, first);
                prop_assert_eq!(err.counts().not_started, plans.len() - first - 1);
                prop_assert!(err.others().is_empty());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_inside_an_async_run_stays_under_the_limit() {
    let live = Live::new();
    let probe = live.clone();
    let out = fan_out(0..64u64)
        .limit(3)
        .run(move |ctx, n| {
            let live = live.clone();
            async move {
                let v = ctx
                    .spawn_blocking(move |_token| {
                        let _g = live.guard();
                        std::thread::sleep(Duration::from_micros(200));
                        n * 3
                    })
                    .await;
                Ok::<_, ()>(v)
            }
        })
        .await
        .unwrap();
    assert_eq!(out, (0..64).map(|n| n * 3).collect::<Vec<_>>());
    assert!(probe.max() <= 3, "max {}", probe.max());
    assert_eq!(probe.now(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_run_returns_only_after_its_blocking_closures_returned() {
    let live = Live::new();
    let saw_cancel = std::sync::Arc::new(AtomicUsize::new(0));
    let (probe, probe_cancel) = (live.clone(), saw_cancel.clone());
    let err = fan_out(0..8u32)
        .limit(8)
        .run(move |ctx, n| {
            let live = live.clone();
            let saw_cancel = saw_cancel.clone();
            async move {
                if n == 7 {
                    // Fails once the others are inside their closures.
                    while live.created() < 7 {
                        tokio::task::yield_now().await;
                    }
                    return Err("seven");
                }
                ctx.spawn_blocking(move |token| {
                    let _g = live.guard();
                    while !token.is_cancelled() {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    saw_cancel.fetch_add(1, SeqCst);
                })
                .await;
                Ok(n)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.key(), Some(&7));
    // The tasks were aborted at once (no grace), but the run waited for the
    // seven blocking closures, which saw the token and returned.
    assert_eq!(probe.created(), 7);
    assert_eq!(probe.dropped(), 7);
    assert_eq!(probe_cancel.load(SeqCst), 7);
}

#[test]
fn blocking_runs_keep_progress_up_to_date() {
    let progress = fanout::Progress::new();
    let err = fan_out(0..100u32)
        .limit(1)
        .progress(&progress)
        .run_blocking(|_ctx, n| if n == 40 { Err(n) } else { Ok(n) })
        .unwrap_err();
    assert_eq!(err.key(), Some(&40));
    let s = progress.snapshot();
    assert!(s.finished);
    assert_eq!(s.total, Some(100));
    assert_eq!(
        (s.started, s.succeeded, s.failed, s.in_flight),
        (41, 40, 1, 0)
    );
    assert_eq!(s.not_started, 59);
}

#[test]
fn a_blocking_run_pulls_a_stream_input_waiting_for_it_by_parking() {
    // Items arrive from another thread, slowly: the workers park while the
    // stream has nothing ready and are woken by it.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
    let producer = std::thread::spawn(move || {
        for i in 0..50 {
            tx.blocking_send(i).unwrap();
        }
    });
    let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let out = fanout::fan_out_stream(input)
        .limit(3)
        .run_blocking(|_ctx, i| Ok::<_, ()>(i + 1))
        .unwrap();
    assert_eq!(out, (1..=50).collect::<Vec<_>>());
    producer.join().unwrap();
}
