//! Integrity: `out[i]` belongs to input `i`, a keyed run gives one result
//! per input with its key, and a report has exactly one outcome per input, in
//! input order, whatever order the tasks finish in and however the run ends.
//! The tests here check unkeyed runs directly; `keyed` checks maps and pairs;
//! `model` runs random plans in every mode against a sequential model, which
//! also pins down start times, which error wins, the counts and the limit.

mod common;
#[path = "integrity/keyed.rs"]
mod keyed;
#[path = "integrity/model.rs"]
mod model;

use common::{ms, secs, HANG};
use fanout::{fan_out, CancellationToken, Cause, PanicPolicy, TaskCtx, TaskError};
use tokio::time::{sleep, timeout};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    /// A genuine failure, naming its task.
    Boom(usize),
}

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
    common::quiet_intentional_panics();
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

/// A collect-all run stopped by the external token still has one outcome per
/// input, in input order: ok, cancelled while running, or never started.
#[tokio::test(start_paused = true)]
async fn an_external_cancellation_gives_run_all_one_outcome_per_input() {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(25)).await;
        t.cancel();
    });
    let report = timeout(
        HANG,
        fan_out(0..50)
            .limit(4)
            .cancel_on(&token)
            .run_all(|_ctx, i| async move {
                sleep(ms(10)).await;
                Ok::<_, E>(i)
            }),
    )
    .await
    .expect("run_all hung");
    assert!(
        matches!(report.stopped_by(), Some(Cause::Cancelled)),
        "{:?}",
        report.stopped_by()
    );
    assert_eq!(report.len(), 50);
    for (i, (key, outcome)) in report.outcomes().iter().enumerate() {
        assert_eq!(*key, i);
        match i {
            0..=7 => assert_eq!(outcome.as_ref().ok(), Some(&i)),
            8..=11 => assert!(matches!(outcome, Err(TaskError::Cancelled)), "{i}"),
            _ => assert!(matches!(outcome, Err(TaskError::NotStarted)), "{i}"),
        }
    }
    let c = report.counts();
    assert_eq!((c.succeeded, c.cancelled, c.not_started), (8, 4, 38));
}

#[tokio::test(start_paused = true)]
async fn a_keyed_stream_gives_one_result_per_key_in_stream_order() {
    let pairs = futures_util::stream::iter((0..20u64).map(|i| (format!("k{i}"), i)));
    let out = fanout::fan_out_keyed_stream(pairs)
        .limit(4)
        .run(|_ctx, i| async move {
            // Later inputs finish first.
            sleep(ms(20 - i)).await;
            Ok::<_, ()>(i * i)
        })
        .await
        .unwrap();
    let want: Vec<_> = (0..20u64).map(|i| (format!("k{i}"), i * i)).collect();
    assert_eq!(out, want);
}
