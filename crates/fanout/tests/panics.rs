//! Panics: a panicking task is a failure like any other and stops the run at
//! once, and a panic is never swallowed. The tests form a matrix: panic
//! sources (the task body, a destructor run while the task is aborted, a
//! non-string payload, two panics at once, a panic while the run is
//! cancelling) crossed with both panic policies and the `run` and `run_all`
//! modes, plus the same rules for streams.
//!
//! Under `PanicPolicy::Propagate` the original payload must be re-raised in
//! the caller only after every task has been dropped (the live counter is
//! checked inside the catch); under `PanicPolicy::AsError` the panic must
//! come back as `TaskError::Panicked`, naming its task. Either way siblings
//! are cancelled at once, which the paused clock checks exactly.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{ms, multi_thread_runtime, secs, Live, PanicOnDrop, HANG, INTENTIONAL};
use fanout::{
    fan_out, fan_out_keyed, CancellationToken, Cause, Order, PanicPolicy, TaskCtx, TaskError,
};
use tokio::time::{sleep, timeout, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    Boom,
}

type BoxFut = Pin<Box<dyn Future<Output = Result<usize, E>> + Send>>;

/// Which run mode a case uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    RunAll,
}

const MODES: [Mode; 2] = [Mode::Run, Mode::RunAll];

/// What a case's run ended with.
enum Ended {
    /// `run` returned.
    Run(Result<Vec<usize>, fanout::Error<usize, E>>),
    /// `run_all` returned.
    All(fanout::Report<usize, usize, E>),
    /// The run re-raised a panic; the live count inside the catch.
    Panicked(Box<dyn std::any::Any + Send>, usize),
}

/// Runs `f` over `0..n` in `mode` under `policy`, catching a re-raised panic
/// and reading the live counter inside the catch.
async fn run_case<F>(
    mode: Mode,
    policy: PanicPolicy,
    n: usize,
    builder: impl FnOnce(
        fanout::FanOut<fanout::Indexed<std::ops::Range<usize>>>,
    ) -> fanout::FanOut<fanout::Indexed<std::ops::Range<usize>>>,
    f: F,
    live: &Live,
) -> Ended
where
    F: Fn(TaskCtx, usize) -> BoxFut + Send + Sync + 'static,
{
    common::quiet_intentional_panics();
    let b = builder(fan_out(0..n).panics(policy));
    let caught = match mode {
        Mode::Run => common::catch_unwind(timeout(HANG, b.run(f)))
            .await
            .map(|r| Ended::Run(r.expect("the run hung"))),
        Mode::RunAll => common::catch_unwind(timeout(HANG, b.run_all(f)))
            .await
            .map(|r| Ended::All(r.expect("run_all hung"))),
    };
    caught.unwrap_or_else(|payload| Ended::Panicked(payload, live.now()))
}

fn expect_panicked(ended: Ended, case: &str) -> Box<dyn std::any::Any + Send> {
    match ended {
        Ended::Panicked(payload, live_in_catch) => {
            assert_eq!(
                live_in_catch, 0,
                "{case}: the panic was re-raised before every task was dropped"
            );
            payload
        }
        Ended::Run(r) => panic!("{case}: run returned instead of panicking: {r:?}"),
        Ended::All(r) => panic!("{case}: run_all returned instead of panicking: {r:?}"),
    }
}

// ---------------------------------------------------------------------------
// Source 1: a panic in the task body.

/// Task 3 panics at 10 ms; the others never finish on their own.
fn body_panics(live: &Live) -> impl Fn(TaskCtx, usize) -> BoxFut + Send + Sync + 'static {
    let live = live.clone();
    move |_ctx, i| {
        let live = live.clone();
        Box::pin(async move {
            let _guard = live.guard();
            if i == 3 {
                sleep(ms(10)).await;
                panic!("[intentional] task 3 body");
            }
            std::future::pending::<()>().await;
            Ok(i)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_panic_is_re_raised_with_its_payload_after_every_task_is_dropped() {
    for mode in MODES {
        let live = Live::new();
        let start = Instant::now();
        let ended = run_case(
            mode,
            PanicPolicy::Propagate,
            8,
            |b| b,
            body_panics(&live),
            &live,
        )
        .await;
        let payload = expect_panicked(ended, &format!("{mode:?}"));
        assert_eq!(
            common::panic_message(&*payload),
            Some("[intentional] task 3 body")
        );
        assert_eq!(
            start.elapsed(),
            ms(10),
            "{mode:?}: siblings not cancelled at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_panic_is_re_raised_after_every_task_is_dropped_on_multi_thread() {
    for mode in MODES {
        for _ in 0..10 {
            let live = Live::new();
            let l = live.clone();
            let f = move |_ctx: TaskCtx, i: usize| -> BoxFut {
                let l = l.clone();
                Box::pin(async move {
                    let _guard = l.guard();
                    if i == 5 {
                        tokio::task::yield_now().await;
                        panic!("[intentional] task 5 body");
                    }
                    std::future::pending::<()>().await;
                    Ok(i)
                })
            };
            let ended = run_case(mode, PanicPolicy::Propagate, 32, |b| b, f, &live).await;
            let payload = expect_panicked(ended, &format!("{mode:?}"));
            assert_eq!(
                common::panic_message(&*payload),
                Some("[intentional] task 5 body")
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_panic_becomes_an_error_naming_the_task_under_as_error() {
    // Fail-fast: the panic is the cause, siblings are cancelled at once.
    let live = Live::new();
    let start = Instant::now();
    match run_case(
        Mode::Run,
        PanicPolicy::AsError,
        8,
        |b| b,
        body_panics(&live),
        &live,
    )
    .await
    {
        Ended::Run(Err(err)) => {
            assert_eq!(start.elapsed(), ms(10), "siblings not cancelled at once");
            let f = err.failure().expect("a task is the cause");
            assert_eq!((f.index, f.key), (3, 3));
            match &f.error {
                TaskError::Panicked(p) => {
                    assert_eq!(p.message(), Some("[intentional] task 3 body"));
                }
                other => panic!("the cause is {other:?}"),
            }
            let c = err.counts();
            assert_eq!((c.panicked, c.cancelled, c.total()), (1, 7, 8), "{c:?}");
            assert_eq!(live.now(), 0);
        }
        _ => panic!("run did not return an error"),
    }

    // Collect-all: the panic is task 3's outcome and the run goes on.
    let live = Live::new();
    let l = live.clone();
    let f = move |_ctx: TaskCtx, i: usize| -> BoxFut {
        let l = l.clone();
        Box::pin(async move {
            let _guard = l.guard();
            sleep(ms(10 * i as u64)).await;
            if i == 3 {
                panic!("[intentional] task 3 body");
            }
            Ok(i)
        })
    };
    match run_case(Mode::RunAll, PanicPolicy::AsError, 8, |b| b, f, &live).await {
        Ended::All(report) => {
            for (i, (k, o)) in report.outcomes().iter().enumerate() {
                assert_eq!(*k, i);
                match (i, o) {
                    (3, Err(TaskError::Panicked(p))) => {
                        assert_eq!(p.message(), Some("[intentional] task 3 body"));
                    }
                    (_, Ok(v)) => assert_eq!(*v, i),
                    (_, o) => panic!("input {i}: {o:?}"),
                }
            }
            assert_eq!(report.counts().succeeded, 7);
        }
        _ => panic!("run_all did not return a report"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_panic_under_as_error_names_the_task_key() {
    common::quiet_intentional_panics();
    let pages = [("home", 1), ("about", 2), ("blog", 3)];
    let err = fan_out_keyed(pages)
        .panics(PanicPolicy::AsError)
        .run(|_ctx, n| async move {
            if n == 2 {
                panic!("[intentional] about");
            }
            sleep(secs(1)).await;
            Ok::<_, E>(n)
        })
        .await
        .expect_err("about panics");
    let f = err.failure().expect("a task is the cause");
    assert_eq!((f.index, f.key), (1, "about"));
    assert!(
        matches!(&f.error, TaskError::Panicked(p) if p.message() == Some("[intentional] about"))
    );
}

// ---------------------------------------------------------------------------
// Source 2: a panic in a task's destructor while it is aborted.

/// Task 0 fails at 10 ms (`run`), or the external token is cancelled at
/// 10 ms (`run_all`, which does not stop on failures); task 1 holds a guard
/// whose destructor panics and never finishes, so it is aborted.
fn destructor_panics(live: &Live) -> impl Fn(TaskCtx, usize) -> BoxFut + Send + Sync + 'static {
    let live = live.clone();
    move |_ctx, i| {
        let live = live.clone();
        Box::pin(async move {
            let _guard = live.guard();
            match i {
                0 => {
                    sleep(ms(10)).await;
                    Err(E::Boom)
                }
                1 => {
                    let _bomb = PanicOnDrop("[intentional] task 1 destructor");
                    std::future::pending::<()>().await;
                    Ok(i)
                }
                _ => {
                    std::future::pending::<()>().await;
                    Ok(i)
                }
            }
        })
    }
}

fn cancelled_at_10ms() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(ms(10)).await;
        t.cancel();
    });
    token
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_destructor_during_abort_is_re_raised_under_propagate() {
    for mode in MODES {
        let live = Live::new();
        let token = cancelled_at_10ms();
        let start = Instant::now();
        let ended = run_case(
            mode,
            PanicPolicy::Propagate,
            4,
            |b| b.cancel_on(&token),
            destructor_panics(&live),
            &live,
        )
        .await;
        let payload = expect_panicked(ended, &format!("{mode:?}"));
        assert_eq!(
            common::panic_message(&*payload),
            Some("[intentional] task 1 destructor"),
            "{mode:?}"
        );
        assert_eq!(start.elapsed(), ms(10));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_destructor_during_abort_is_reported_under_as_error() {
    // Fail-fast: task 0's error stays the cause; the destructor's panic comes
    // with it, naming task 1.
    let live = Live::new();
    match run_case(
        Mode::Run,
        PanicPolicy::AsError,
        4,
        |b| b,
        destructor_panics(&live),
        &live,
    )
    .await
    {
        Ended::Run(Err(err)) => {
            assert_eq!(err.key(), Some(&0));
            assert_eq!(err.task_error(), Some(&E::Boom));
            let panicked: Vec<_> = err.others().iter().filter(|f| f.error.is_panic()).collect();
            assert_eq!(panicked.len(), 1, "{:?}", err.others());
            assert_eq!(panicked[0].index, 1);
            assert!(matches!(&panicked[0].error,
                TaskError::Panicked(p) if p.message() == Some("[intentional] task 1 destructor")));
            let c = err.counts();
            assert_eq!(
                (c.failed, c.panicked, c.cancelled, c.total()),
                (1, 1, 2, 4),
                "{c:?}"
            );
            assert_eq!(live.now(), 0);
        }
        _ => panic!("run did not return an error"),
    }

    // Collect-all stopped by the external token: task 1's outcome is the
    // destructor's panic.
    let live = Live::new();
    let token = cancelled_at_10ms();
    match run_case(
        Mode::RunAll,
        PanicPolicy::AsError,
        4,
        |b| b.cancel_on(&token),
        destructor_panics(&live),
        &live,
    )
    .await
    {
        Ended::All(report) => {
            let o = report.outcomes();
            assert!(
                matches!(o[0], (0, Err(TaskError::Failed(E::Boom)))),
                "{o:?}"
            );
            assert!(
                matches!(&o[1], (1, Err(TaskError::Panicked(p)))
                if p.message() == Some("[intentional] task 1 destructor")),
                "{o:?}"
            );
            assert!(matches!(o[2], (2, Err(TaskError::Cancelled))), "{o:?}");
            assert!(matches!(o[3], (3, Err(TaskError::Cancelled))), "{o:?}");
            assert_eq!(live.now(), 0);
        }
        _ => panic!("run_all did not return a report"),
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_run_whose_task_destructor_panics_aborts_every_task_without_crashing() {
    common::quiet_intentional_panics();
    let live = Live::new();
    let run = fan_out(1..6).run(destructor_panics(&live));
    assert!(timeout(ms(5), run).await.is_err());
    timeout(HANG, live.wait_zero())
        .await
        .expect("tasks still alive after the run was dropped");
}

// ---------------------------------------------------------------------------
// Source 3: a non-string payload.

fn non_string_payload() -> impl Fn(TaskCtx, usize) -> BoxFut + Send + Sync + 'static {
    move |_ctx, i| {
        Box::pin(async move {
            if i == 2 {
                tokio::task::yield_now().await;
                std::panic::panic_any(42u32);
            }
            sleep(secs(1)).await;
            Ok(i)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_non_string_payload_is_re_raised_unchanged_under_propagate() {
    for mode in MODES {
        let live = Live::new();
        let ended = run_case(
            mode,
            PanicPolicy::Propagate,
            5,
            |b| b,
            non_string_payload(),
            &live,
        )
        .await;
        let payload = expect_panicked(ended, &format!("{mode:?}"));
        assert_eq!(payload.downcast_ref::<u32>(), Some(&42), "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_non_string_payload_is_kept_in_the_error_under_as_error() {
    let live = Live::new();
    match run_case(
        Mode::Run,
        PanicPolicy::AsError,
        5,
        |b| b,
        non_string_payload(),
        &live,
    )
    .await
    {
        Ended::Run(Err(err)) => match err.into_cause() {
            Cause::Task(f) => {
                assert_eq!(f.index, 2);
                match f.error {
                    TaskError::Panicked(p) => {
                        assert_eq!(p.message(), None);
                        assert_eq!(
                            p.into_payload().downcast::<u32>().ok().as_deref(),
                            Some(&42)
                        );
                    }
                    other => panic!("the cause is {other:?}"),
                }
            }
            other => panic!("the cause is {other:?}"),
        },
        _ => panic!("run did not return an error"),
    }
    match run_case(
        Mode::RunAll,
        PanicPolicy::AsError,
        5,
        |b| b,
        non_string_payload(),
        &live,
    )
    .await
    {
        Ended::All(report) => {
            let (k, o) = report.into_outcomes().swap_remove(2);
            assert_eq!(k, 2);
            match o {
                Err(TaskError::Panicked(p)) => {
                    assert_eq!(
                        p.into_payload().downcast::<u32>().ok().as_deref(),
                        Some(&42)
                    );
                }
                other => panic!("outcome 2 is {other:?}"),
            }
        }
        _ => panic!("run_all did not return a report"),
    }
}

// ---------------------------------------------------------------------------
// Source 4: two panics at once.

/// Tasks 0 and 1, on two lanes, meet at a barrier and both panic; the rest
/// succeed. On current_thread the two lanes resume at the same instant
/// (the second lane's task panics inside the grace period the first panic
/// opened); on multi_thread both panic truly at once on two threads.
fn two_panics(
    multi_thread: bool,
    panics: &Arc<AtomicUsize>,
) -> impl Fn(TaskCtx, usize) -> BoxFut + Send + Sync + 'static {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let arrived = Arc::new(AtomicUsize::new(0));
    let panics = panics.clone();
    move |_ctx, i| {
        let (barrier, arrived, panics) = (barrier.clone(), arrived.clone(), panics.clone());
        Box::pin(async move {
            if i < 2 {
                if multi_thread {
                    // A spinning barrier: both threads leave it together.
                    arrived.fetch_add(1, SeqCst);
                    let t = std::time::Instant::now();
                    while arrived.load(SeqCst) < 2 && t.elapsed() < Duration::from_secs(5) {
                        std::thread::yield_now();
                    }
                } else {
                    barrier.wait().await;
                }
                panics.fetch_add(1, SeqCst);
                panic!("[intentional] task {i}");
            }
            // Only reached by run_all (fail-fast stops before these start).
            tokio::task::yield_now().await;
            Ok(i)
        })
    }
}

fn two_panics_case(
    multi_thread: bool,
) -> impl FnOnce(
    fanout::FanOut<fanout::Indexed<std::ops::Range<usize>>>,
) -> fanout::FanOut<fanout::Indexed<std::ops::Range<usize>>> {
    move |b| {
        // One slot per lane, so tasks 0 and 1 run on different lanes.
        let b = b.limit(2).lanes(2);
        if multi_thread {
            b
        } else {
            b.grace(ms(1))
        }
    }
}

async fn two_panics_at_once(multi_thread: bool) {
    for mode in MODES {
        // Propagate: exactly one payload, one of the two.
        let live = Live::new();
        let panics = Arc::new(AtomicUsize::new(0));
        let ended = run_case(
            mode,
            PanicPolicy::Propagate,
            6,
            two_panics_case(multi_thread),
            two_panics(multi_thread, &panics),
            &live,
        )
        .await;
        let payload = expect_panicked(ended, &format!("{mode:?}"));
        assert_eq!(
            panics.load(SeqCst),
            2,
            "{mode:?}: the test needs two panics"
        );
        let msg = common::panic_message(&*payload).map(str::to_owned);
        assert!(
            matches!(
                msg.as_deref(),
                Some("[intentional] task 0" | "[intentional] task 1")
            ),
            "{mode:?}: {msg:?}"
        );

        // AsError: both reported.
        let panics = Arc::new(AtomicUsize::new(0));
        let ended = run_case(
            mode,
            PanicPolicy::AsError,
            6,
            two_panics_case(multi_thread),
            two_panics(multi_thread, &panics),
            &live,
        )
        .await;
        assert_eq!(
            panics.load(SeqCst),
            2,
            "{mode:?}: the test needs two panics"
        );
        let mut reported: Vec<usize> = match ended {
            Ended::Run(Err(err)) => {
                assert_eq!(err.counts().panicked, 2, "{:?}", err.counts());
                err.failure()
                    .into_iter()
                    .chain(err.others())
                    .filter(|f| f.error.is_panic())
                    .map(|f| f.index)
                    .collect()
            }
            Ended::All(report) => {
                assert_eq!(report.counts().succeeded, 4);
                report
                    .outcomes()
                    .iter()
                    .filter(|(_, o)| matches!(o, Err(TaskError::Panicked(_))))
                    .map(|(k, _)| *k)
                    .collect()
            }
            _ => panic!("{mode:?}: no error value under AsError"),
        };
        reported.sort_unstable();
        assert_eq!(reported, [0, 1], "{mode:?}: both panics are reported");
    }
}

#[tokio::test(start_paused = true)]
async fn two_panics_at_once_re_raise_exactly_one_payload_or_report_both() {
    two_panics_at_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_panics_at_once_on_two_threads_re_raise_exactly_one_payload_or_report_both() {
    two_panics_at_once(true).await;
}

// ---------------------------------------------------------------------------
// Source 5: a panic while the run is cancelling.

/// Task 0 fails at 10 ms; the others watch the token and panic when they see
/// it, inside the grace period.
fn panic_on_cancel() -> impl Fn(TaskCtx, usize) -> BoxFut + Send + Sync + 'static {
    move |ctx, i| {
        Box::pin(async move {
            if i == 0 {
                sleep(ms(10)).await;
                return Err(E::Boom);
            }
            ctx.cancelled().await;
            panic!("[intentional] task {i} on cancel");
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_the_run_is_cancelling_is_never_swallowed() {
    let live = Live::new();
    let ended = run_case(
        Mode::Run,
        PanicPolicy::Propagate,
        3,
        |b| b.grace(ms(50)),
        panic_on_cancel(),
        &live,
    )
    .await;
    let payload = expect_panicked(ended, "Propagate");
    let msg = common::panic_message(&*payload).map(str::to_owned);
    assert!(
        matches!(
            msg.as_deref(),
            Some("[intentional] task 1 on cancel" | "[intentional] task 2 on cancel")
        ),
        "{msg:?}"
    );

    match run_case(
        Mode::Run,
        PanicPolicy::AsError,
        3,
        |b| b.grace(ms(50)),
        panic_on_cancel(),
        &live,
    )
    .await
    {
        Ended::Run(Err(err)) => {
            assert_eq!(err.key(), Some(&0), "the error stays the cause");
            let mut idx: Vec<_> = err
                .others()
                .iter()
                .filter(|f| f.error.is_panic())
                .map(|f| f.index)
                .collect();
            idx.sort_unstable();
            assert_eq!(idx, [1, 2]);
        }
        _ => panic!("run did not return an error"),
    }
}

// ---------------------------------------------------------------------------
// Streams.

#[tokio::test(start_paused = true)]
async fn a_task_panic_in_a_stream_is_re_raised_from_next_after_every_task_is_dropped() {
    common::quiet_intentional_panics();
    for order in [Order::Completion, Order::Input] {
        let live = Live::new();
        let mut stream = fan_out(0..8).stream(order, body_panics(&live));
        let start = Instant::now();
        let caught = common::catch_unwind(timeout(HANG, async {
            if let Some((k, o)) = stream.next().await {
                panic!("{order:?}: unexpected outcome {k}: {o:?}");
            }
        }))
        .await;
        let payload = caught.expect_err("the panic is re-raised from next");
        assert_eq!(
            live.now(),
            0,
            "{order:?}: re-raised before every task was dropped"
        );
        assert_eq!(
            common::panic_message(&*payload),
            Some("[intentional] task 3 body")
        );
        assert_eq!(start.elapsed(), ms(10));
    }
}

/// A non-string panic payload, to check that the original one comes back.
#[derive(Debug, PartialEq)]
struct Boom(u32);

#[tokio::test(start_paused = true)]
async fn a_panic_under_propagate_is_re_raised_by_the_stream_after_every_task_is_dropped() {
    common::quiet_intentional_panics();
    for order in [Order::Completion, Order::Input] {
        let live = Live::new();
        let l = live.clone();
        let mut stream = fan_out(0..20u64)
            .limit(4)
            .lanes(2)
            .stream(order, move |_ctx, i| {
                let l = l.clone();
                async move {
                    let _g = l.guard();
                    match i {
                        0 => Ok::<u64, ()>(0),
                        2 => {
                            sleep(ms(5)).await;
                            std::panic::panic_any(Boom(7))
                        }
                        _ => std::future::pending().await,
                    }
                }
            });
        let mut yielded = Vec::new();
        let payload = loop {
            match common::catch_unwind(stream.next()).await {
                Ok(Some((k, o))) => yielded.push((k, o.map_err(|e| e.kind()))),
                Ok(None) => panic!("{order:?}: the stream ended without re-raising the panic"),
                Err(p) => break p,
            }
        };
        // Re-raised after the drain: nothing is alive when it surfaces.
        assert_eq!(
            live.now(),
            0,
            "{order:?}: tasks alive when the panic surfaced"
        );
        assert_eq!(payload.downcast_ref::<Boom>(), Some(&Boom(7)));
        assert_eq!(yielded, [(0, Ok(0))], "{order:?}: nothing after the panic");
        assert!(common::catch_unwind(stream.next())
            .await
            .is_ok_and(|o| o.is_none()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_under_as_error_is_yielded_as_an_outcome_and_the_stream_goes_on() {
    common::quiet_intentional_panics();
    let mut stream = fan_out(0..6u64)
        .limit(2)
        .panics(PanicPolicy::AsError)
        .stream(Order::Input, |_ctx, i| async move {
            if i == 3 {
                panic!("{INTENTIONAL} task three");
            }
            Ok::<_, ()>(i)
        });
    let mut got = Vec::new();
    while let Some((k, o)) = stream.next().await {
        match o {
            Ok(v) => got.push((k, format!("ok {v}"))),
            Err(TaskError::Panicked(p)) => got.push((k, p.message().unwrap().to_owned())),
            Err(e) => panic!("{e:?}"),
        }
    }
    let three = format!("{INTENTIONAL} task three");
    assert_eq!(
        got,
        [
            (0, "ok 0".to_owned()),
            (1, "ok 1".to_owned()),
            (2, "ok 2".to_owned()),
            (3, three),
            (4, "ok 4".to_owned()),
            (5, "ok 5".to_owned()),
        ]
    );
}

/// "Under `PanicPolicy::Propagate` a task panic stops the run; the stream
/// yields nothing more" (`TaskStream` docs). On a multi-thread runtime the
/// lane that sees the panic stops the run before it sends the panic, so
/// another lane may send the `Cancelled` outcomes the stop caused first.
/// Repeated, because it is a race.
#[test]
fn under_propagate_no_outcome_caused_by_the_panic_is_yielded_before_it() {
    common::quiet_intentional_panics();
    let mut leaked = Vec::new();
    let mut rt = multi_thread_runtime(2);
    for round in 0..1000 {
        // A fresh runtime now and then, so that lanes land on threads anew.
        if round > 0 && round % 50 == 0 {
            rt = multi_thread_runtime(2);
        }
        let yielded = rt.block_on(async {
            let mut stream = fan_out(0..16u64).limit(8).lanes(2).stream(
                Order::Completion,
                |_ctx, i| async move {
                    if i == 0 {
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                        std::panic::panic_any(Boom(0));
                    }
                    // Busy siblings: their lane polls them, and so can see
                    // the stop, all the time.
                    for _ in 0..1_000_000 {
                        tokio::task::yield_now().await;
                    }
                    Ok::<u64, ()>(i)
                },
            );
            let mut yielded = Vec::new();
            loop {
                match common::catch_unwind(stream.next()).await {
                    Ok(Some((k, o))) => yielded.push((k, o.map_err(|e| e.kind()))),
                    Ok(None) => panic!("the stream ended without re-raising the panic"),
                    Err(p) => {
                        assert_eq!(p.downcast_ref::<Boom>(), Some(&Boom(0)));
                        break yielded;
                    }
                }
            }
        });
        if !yielded.is_empty() {
            leaked.push((round, yielded));
        }
    }
    assert!(
        leaked.is_empty(),
        "{} of 1000 rounds yielded outcomes before the panic, e.g. {:?}",
        leaked.len(),
        leaked.first()
    );
}
