//! Streams: a `TaskStream` yields each outcome as its task completes, or in
//! input order through a reorder window of `limit`, and pulling the next one
//! is cancel safe. The tests time every yield and every task start on tokio's
//! paused clock, where times are virtual and exact, and check that a slow
//! consumer stalls no task already running and that `cancel` ends the stream
//! cleanly. Dropping a stream, its limit and its panics are tested with the
//! other runs, in `no_orphans.rs`, `bounded.rs` and `panics.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use common::{ms, since, Live};
use fanout::{fan_out, Order, TaskError};
use tokio::time::{sleep, Instant};

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
async fn a_stream_in_input_order_stops_starting_tasks_once_its_window_is_full() {
    const LIMIT: usize = 4;
    const WINDOW: usize = 4;
    for lanes in 1..=2 {
        let started = Arc::new(AtomicUsize::new(0));
        let consumed = Arc::new(AtomicUsize::new(0));
        let ahead = Arc::new(AtomicUsize::new(0));
        let (s, c, a) = (started.clone(), consumed.clone(), ahead.clone());
        let mut stream = fan_out(0..40u64)
            .limit(LIMIT)
            .window(WINDOW)
            .lanes(lanes)
            .stream(Order::Input, move |ctx, i| {
                let n = s.fetch_add(1, SeqCst) + 1;
                a.fetch_max(n - c.load(SeqCst), SeqCst);
                async move {
                    // The head is slow, every other task instant.
                    if ctx.index() == 0 {
                        sleep(ms(1000)).await;
                    }
                    Ok::<_, ()>(i)
                }
            });
        // While the head runs, the results after it fill the slots and the
        // window, and then nothing more starts.
        assert!(tokio::time::timeout(ms(500), stream.next()).await.is_err());
        assert_eq!(started.load(SeqCst), LIMIT + WINDOW, "lanes {lanes}");
        let mut next = 0;
        while let Some((k, o)) = stream.next().await {
            assert_eq!((k, o.unwrap()), (next, next as u64));
            next += 1;
            consumed.fetch_add(1, SeqCst);
        }
        assert_eq!(next, 40);
        assert!(
            ahead.load(SeqCst) <= LIMIT + WINDOW,
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
async fn a_slot_held_by_a_waiting_result_is_reused_as_soon_as_the_consumer_takes_it() {
    for order in [Order::Completion, Order::Input] {
        // (window, start times of inputs 0 to 4)
        for (window, want) in [
            // No window: results 0 and 1 hold their slots; 3 starts when
            // result 0 is taken (10 ms), 4 when result 1 is (20 ms).
            (0, [Some(0), Some(0), Some(0), Some(10), Some(20)]),
            // A window of one: result 1 holds a slot, result 0 does not.
            (1, [Some(0), Some(0), Some(0), Some(0), Some(10)]),
        ] {
            let t0 = Instant::now();
            let starts = Arc::new(Mutex::new(vec![None; 6]));
            let st = starts.clone();
            let mut stream =
                fan_out(0..6u64)
                    .limit(3)
                    .window(window)
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
            assert_eq!(
                starts.lock().unwrap()[..5],
                want,
                "{order:?}, window {window}"
            );
            while stream.next().await.is_some() {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_yields_the_remaining_outcomes_and_then_ends() {
    let live = Live::new();
    let l = live.clone();
    let mut stream =
        fan_out(0..10u64)
            .limit(4)
            .lanes(1)
            .stream(Order::Completion, move |_ctx, i| {
                let l = l.clone();
                async move {
                    let _g = l.guard();
                    if i >= 2 {
                        std::future::pending::<()>().await;
                    }
                    sleep(ms(1)).await;
                    Ok::<_, ()>(i)
                }
            });
    // Inputs 0 and 1 finish at 1 ms; their slots then start 4 and 5. Inputs
    // 2 to 5 never finish.
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
            (3, Err("cancelled")),
            (4, Err("cancelled")),
            (5, Err("cancelled"))
        ],
        "the finished result is still yielded, running tasks are cancelled, \
         unpulled inputs yield nothing"
    );
    assert_eq!(live.now(), 0);
    assert!(stream.next().await.is_none(), "the stream stays ended");
}
