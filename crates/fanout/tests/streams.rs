//! Streams (L7, with L1 and L2 as they apply to streams): results as they
//! complete or in input order through a bounded window, a cancel-safe `next`,
//! no stall of running tasks by a slow consumer, cancel and drop.
//!
//! Every test runs on tokio's paused clock: times are virtual and exact.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use fanout::{fan_out, CancellationToken, Order, PanicPolicy, TaskError};
use tokio::time::{sleep, Instant};

const INTENTIONAL: &str = "[intentional]";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Counts live task bodies and the most seen at once.
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

    fn now(&self) -> usize {
        self.now.load(SeqCst)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
}

/// Virtual milliseconds since `t0`.
fn since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).expect("small")
}

/// `catch_unwind` for a future: catches a panic raised by one poll.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

fn catching<F: Future>(f: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(f))
}

fn quiet_intentional_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let intentional = p.downcast_ref::<Boom>().is_some()
                || p.downcast_ref::<&str>()
                    .is_some_and(|s| s.contains(INTENTIONAL))
                || p.downcast_ref::<String>()
                    .is_some_and(|s| s.contains(INTENTIONAL));
            if !intentional {
                previous(info);
            }
        }));
    });
}

/// A non-string panic payload, to check that the original one comes back.
#[derive(Debug, PartialEq)]
struct Boom(u32);

#[tokio::test(start_paused = true)]
async fn a_stream_in_completion_order_yields_each_result_as_soon_as_its_task_finishes() {
    let t0 = Instant::now();
    // Later inputs finish first.
    let mut stream = fan_out(0..5u64)
        .limit(5)
        .stream(Order::Completion, |_ctx, i| async move {
            sleep(ms(10 * (5 - i))).await;
            Ok::<_, ()>(i)
        });
    let mut got = Vec::new();
    while let Some((k, o)) = stream.next().await {
        got.push((k, o.unwrap(), since(t0)));
    }
    assert_eq!(
        got,
        [(4, 4, 10), (3, 3, 20), (2, 2, 30), (1, 1, 40), (0, 0, 50)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_in_input_order_yields_in_input_order_whatever_order_tasks_finish_in() {
    let t0 = Instant::now();
    let mut stream = fan_out(0..5u64)
        .limit(5)
        .stream(Order::Input, |_ctx, i| async move {
            sleep(ms(10 * (5 - i))).await;
            Ok::<_, ()>(i)
        });
    let mut got = Vec::new();
    while let Some((k, o)) = stream.next().await {
        got.push((k, o.unwrap(), since(t0)));
    }
    // Everything waits for input 0, which finishes last, at 50 ms.
    assert_eq!(
        got,
        [(0, 0, 50), (1, 1, 50), (2, 2, 50), (3, 3, 50), (4, 4, 50)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_in_input_order_starts_at_most_limit_tasks_while_the_head_is_slow() {
    for lanes in 1..=2 {
        let started = Arc::new(AtomicUsize::new(0));
        let consumed = Arc::new(AtomicUsize::new(0));
        let window = Arc::new(AtomicUsize::new(0));
        let (s, c, w) = (started.clone(), consumed.clone(), window.clone());
        let mut stream =
            fan_out(0..40u64)
                .limit(4)
                .lanes(lanes)
                .stream(Order::Input, move |ctx, i| {
                    let n = s.fetch_add(1, SeqCst) + 1;
                    w.fetch_max(n - c.load(SeqCst), SeqCst);
                    async move {
                        // The head is slow, every other task instant.
                        if ctx.index() == 0 {
                            sleep(ms(1000)).await;
                        }
                        Ok::<_, ()>(i)
                    }
                });
        // While the head runs, the window fills and nothing more starts.
        assert!(tokio::time::timeout(ms(500), stream.next()).await.is_err());
        assert_eq!(started.load(SeqCst), 4, "lanes {lanes}: head + limit - 1");
        let mut next = 0;
        while let Some((k, o)) = stream.next().await {
            assert_eq!((k, o.unwrap()), (next, next as u64));
            next += 1;
            consumed.fetch_add(1, SeqCst);
        }
        assert_eq!(next, 40);
        assert!(
            window.load(SeqCst) <= 4,
            "lanes {lanes}: started but not consumed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn pulling_the_next_result_is_cancel_safe() {
    for order in [Order::Completion, Order::Input] {
        for lanes in 1..=2 {
            let mut stream =
                fan_out(0..60u64)
                    .limit(4)
                    .lanes(lanes)
                    .stream(order, |_ctx, i| async move {
                        sleep(ms(i * 7 % 13)).await;
                        if i % 5 == 0 {
                            Err(i)
                        } else {
                            Ok(i)
                        }
                    });
            let mut seen = vec![0; 60];
            let mut timeouts = 0;
            let mut yielded = Vec::new();
            loop {
                // Each `next` is raced against a short timer that often wins:
                // the dropped `next` must lose nothing.
                match tokio::time::timeout(ms(2), stream.next()).await {
                    Err(_) => timeouts += 1,
                    Ok(None) => break,
                    Ok(Some((k, o))) => {
                        let i = k as u64;
                        match o {
                            Ok(v) => assert_eq!(v, i),
                            Err(TaskError::Failed(e)) => assert_eq!((e, i % 5), (i, 0)),
                            Err(e) => panic!("input {i}: {e:?}"),
                        }
                        seen[k] += 1;
                        yielded.push(k);
                    }
                }
            }
            assert!(timeouts > 10, "the race must actually drop `next` futures");
            assert!(seen.iter().all(|&n| n == 1), "{order:?}: {seen:?}");
            if order == Order::Input {
                assert_eq!(yielded, (0..60).collect::<Vec<_>>());
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_does_not_stall_tasks_already_in_flight() {
    for order in [Order::Completion, Order::Input] {
        let t0 = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let tm = times.clone();
        let mut stream = fan_out(0..8u64).limit(4).stream(order, move |_ctx, i| {
            let tm = tm.clone();
            async move {
                let start = since(t0);
                // Two waits, so that a stalled task would show.
                sleep(ms(5 * (i + 1))).await;
                tokio::task::yield_now().await;
                sleep(ms(5 * (i + 1))).await;
                tm.lock().unwrap().push((i, start, since(t0)));
                Ok::<_, ()>(i)
            }
        });
        let mut n = 0;
        while let Some((_, o)) = stream.next().await {
            o.unwrap();
            n += 1;
            // The consumer takes its time over every result.
            sleep(ms(1000)).await;
        }
        assert_eq!(n, 8);
        let times = times.lock().unwrap();
        assert_eq!(times.len(), 8);
        for &(i, start, end) in times.iter() {
            assert_eq!(
                end - start,
                10 * (i + 1),
                "{order:?}: input {i} was stalled ({start}..{end})"
            );
        }
        // The first `limit` started at once and all finished while the
        // consumer was still asleep over its first result.
        for &(i, start, end) in times.iter().filter(|t| t.0 < 4) {
            assert_eq!(start, 0, "input {i}");
            assert!(end <= 40, "input {i} ended at {end}");
        }
    }
}

/// A result waiting to be taken holds its task's slot; once the consumer
/// takes it, the slot is free and the next input starts at once.
#[tokio::test(start_paused = true)]
async fn a_slot_freed_by_the_consumer_is_reused_at_once() {
    for order in [Order::Completion, Order::Input] {
        let t0 = Instant::now();
        let starts = Arc::new(Mutex::new(vec![None; 6]));
        let st = starts.clone();
        let mut stream = fan_out(0..6u64)
            .limit(3)
            .lanes(1)
            .stream(order, move |ctx, i| {
                st.lock().unwrap()[ctx.index()] = Some(since(t0));
                async move {
                    // Inputs 0 and 1 are instant; the others take 1 s.
                    if i >= 2 {
                        sleep(ms(1000)).await;
                    }
                    Ok::<_, ()>(i)
                }
            });
        // Take one result at 10 ms and another at 20 ms.
        sleep(ms(10)).await;
        assert_eq!(stream.next().await.unwrap().0, 0);
        sleep(ms(10)).await;
        assert_eq!(stream.next().await.unwrap().0, 1);
        sleep(ms(10)).await;
        {
            let starts = starts.lock().unwrap();
            // 0, 1, 2 at once; 3 when result 0 was taken; 4 when result 1 was.
            assert_eq!(
                starts[..5],
                [Some(0), Some(0), Some(0), Some(10), Some(20)],
                "{order:?}"
            );
        }
        while stream.next().await.is_some() {}
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_the_token_and_aborts_running_tasks() {
    for order in [Order::Completion, Order::Input] {
        let live = Arc::new(Live::default());
        let tokens = Arc::new(Mutex::new(Vec::<CancellationToken>::new()));
        let (l, tk) = (live.clone(), tokens.clone());
        let stream = fan_out(0..100u64)
            .limit(4)
            .lanes(2)
            .stream(order, move |ctx, _i| {
                let l = l.clone();
                tk.lock().unwrap().push(ctx.token().clone());
                async move {
                    let _g = l.enter();
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
        assert_eq!(live.max.load(SeqCst), 4);
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_yields_the_remaining_outcomes_and_then_ends() {
    let live = Arc::new(Live::default());
    let l = live.clone();
    let mut stream =
        fan_out(0..10u64)
            .limit(4)
            .lanes(1)
            .stream(Order::Completion, move |_ctx, i| {
                let l = l.clone();
                async move {
                    let _g = l.enter();
                    if i >= 2 {
                        std::future::pending::<()>().await;
                    }
                    sleep(ms(1)).await;
                    Ok::<_, ()>(i)
                }
            });
    // Inputs 0 and 1 finish at 1 ms; 2 and 3 never do.
    sleep(ms(5)).await;
    let (first, o) = stream.next().await.unwrap();
    o.unwrap();
    stream.cancel();
    let mut rest = Vec::new();
    while let Some((k, o)) = stream.next().await {
        rest.push((k, o.map_err(|e| e.kind())));
    }
    rest.sort_by_key(|r| r.0);
    let other = 1 - first;
    assert_eq!(
        rest,
        [
            (other, Ok(other as u64)),
            (2, Err("cancelled")),
            (3, Err("cancelled"))
        ],
        "the finished result is still yielded, running tasks are cancelled, \
         unpulled inputs yield nothing"
    );
    assert_eq!(live.now(), 0);
    assert!(stream.next().await.is_none(), "the stream stays ended");
}

#[tokio::test(start_paused = true)]
async fn a_stream_of_100k_items_keeps_at_most_limit_of_them_outstanding() {
    const N: usize = 100_000;
    const LIMIT: usize = 8;
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
            max <= LIMIT,
            "{order:?}: {max} items pulled and not consumed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_under_propagate_is_re_raised_by_the_stream_after_every_task_is_dropped() {
    quiet_intentional_panics();
    for order in [Order::Completion, Order::Input] {
        let live = Arc::new(Live::default());
        let l = live.clone();
        let mut stream = fan_out(0..20u64)
            .limit(4)
            .lanes(2)
            .stream(order, move |_ctx, i| {
                let l = l.clone();
                async move {
                    let _g = l.enter();
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
            match catching(stream.next()).await {
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
        assert!(catching(stream.next()).await.is_ok_and(|o| o.is_none()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_under_as_error_is_yielded_as_an_outcome_and_the_stream_goes_on() {
    quiet_intentional_panics();
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

#[tokio::test(start_paused = true)]
async fn a_stream_never_runs_more_than_limit_task_bodies_at_once() {
    for order in [Order::Completion, Order::Input] {
        let live = Arc::new(Live::default());
        let l = live.clone();
        let mut stream = fan_out(0..200u64)
            .limit(5)
            .lanes(3)
            .stream(order, move |_ctx, i| {
                let l = l.clone();
                async move {
                    let _g = l.enter();
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
        assert!(live.max.load(SeqCst) <= 5, "{order:?}");
        assert_eq!(live.now(), 0);
    }
}

/// "Under `PanicPolicy::Propagate` a task panic stops the run; the stream
/// yields nothing more" (`TaskStream` docs). On a multi-thread runtime the
/// lane that sees the panic stops the run before it sends the panic, so
/// another lane may send the `Cancelled` outcomes the stop caused first.
/// Repeated, because it is a race.
#[test]
fn under_propagate_no_outcome_caused_by_the_panic_is_yielded_before_it() {
    quiet_intentional_panics();
    let mut leaked = Vec::new();
    let mut rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for round in 0..1000 {
        // A fresh runtime now and then, so that lanes land on threads anew.
        if round % 50 == 0 {
            rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
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
                match catching(stream.next()).await {
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
