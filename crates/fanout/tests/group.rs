//! The heterogeneous `Group`: errgroup semantics (spawn tasks of any shape
//! one by one, join for every result or the first error) under a limit, with
//! no orphans, fail-fast, grace and both panic policies. A live-task counter
//! checks the limit and that nothing outlives `join`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Live;
use fanout::{Group, PanicPolicy, Stopped, TaskError, TrySpawnError};

#[tokio::test(start_paused = true)]
async fn group_returns_results_in_spawn_order_and_never_exceeds_its_limit() {
    let live = Live::new();
    let mut group = Group::new(3);
    for i in 0..20u64 {
        let live = live.clone();
        group
            .spawn(move |_| async move {
                let _g = live.guard();
                // Later tasks finish first.
                tokio::time::sleep(Duration::from_millis(100 - i)).await;
                Ok::<_, ()>(i)
            })
            .await
            .unwrap();
    }
    let out = group.join().await.unwrap();
    assert_eq!(out, (0..20).collect::<Vec<_>>());
    assert_eq!(live.max(), 3);
    assert_eq!(live.now(), 0);
}

#[tokio::test(start_paused = true)]
async fn group_stops_on_the_first_error_and_leaves_no_task_alive() {
    let live = Live::new();
    let mut group = Group::new(4);
    let l = live.clone();
    group
        .spawn(move |_| async move {
            let _g = l.guard();
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err::<u32, _>("boom")
        })
        .await
        .unwrap();
    for _ in 0..3 {
        let l = live.clone();
        group
            .spawn(move |_| async move {
                let _g = l.guard();
                std::future::pending::<()>().await;
                Ok(0)
            })
            .await
            .unwrap();
    }
    // The fifth spawn waits for a slot, sees the failure, and is refused.
    let refused = group.spawn(|_| async { Ok(1) }).await;
    assert_eq!(refused, Err(Stopped));
    assert!(group.token().is_cancelled());
    let err = group.join().await.unwrap_err();
    assert_eq!(err.key(), Some(&0));
    assert_eq!(err.task_error(), Some(&"boom"));
    assert_eq!(err.counts().cancelled, 3);
    assert_eq!(err.counts().not_started, 1);
    assert_eq!(live.now(), 0);
}

#[tokio::test(start_paused = true)]
async fn group_try_spawn_hands_the_closure_back_when_full() {
    let mut group = Group::<u32, ()>::new(1);
    group
        .try_spawn(|_| std::future::pending())
        .map_err(|_| ())
        .unwrap();
    match group.try_spawn(|_| async { Ok(2) }) {
        Err(TrySpawnError::Full(_)) => {}
        other => panic!("expected Full, got {:?}", other.map_err(|_| ())),
    }
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn group_grace_lets_a_task_that_watches_the_token_finish() {
    let cleaned = Arc::new(AtomicUsize::new(0));
    let mut group = Group::new(2).grace(Duration::from_secs(1));
    let c = cleaned.clone();
    group
        .spawn(move |token| async move {
            token.cancelled().await;
            c.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        })
        .await
        .unwrap();
    group.spawn(|_| async { Err("fail") }).await.unwrap();
    let err = group.join().await.unwrap_err();
    assert_eq!(err.key(), Some(&1));
    assert_eq!(err.counts().succeeded, 1);
    assert_eq!(cleaned.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn group_reraises_a_panic_with_its_payload_after_the_drain() {
    let live = Live::new();
    let l = live.clone();
    let handle = tokio::spawn(async move {
        let mut group = Group::<u32, ()>::new(2);
        let l2 = l.clone();
        group
            .spawn(move |_| async move {
                let _g = l2.guard();
                std::future::pending::<()>().await;
                Ok(0)
            })
            .await
            .unwrap();
        group
            .spawn(|_| async { std::panic::panic_any(42u32) })
            .await
            .unwrap();
        group.join().await
    });
    let payload = handle.await.unwrap_err().into_panic();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
    assert_eq!(live.now(), 0);
}

#[tokio::test]
async fn group_reports_a_panic_as_an_error_naming_the_task() {
    let mut group = Group::<u32, ()>::new(2).panics(PanicPolicy::AsError);
    group.spawn(|_| async { Ok(1) }).await.unwrap();
    group.spawn(|_| async { panic!("bad task") }).await.unwrap();
    let err = group.join().await.unwrap_err();
    let failure = err.failure().expect("a task caused the stop");
    assert_eq!(failure.index, 1);
    match &failure.error {
        TaskError::Panicked(p) => assert_eq!(p.message(), Some("bad task")),
        other => panic!("expected a panic, got {other:?}"),
    }
}
