//! First light: a coordinator and a worker on a memory broker.

use std::time::Duration;

use fanout_redis::{Coordinator, Handler, MemoryBroker, Worker};
use tokio_util::sync::CancellationToken;

const SQUARE: Handler<u64, u64, String> = Handler::new("square");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squares_come_back_in_input_order() {
    let broker = MemoryBroker::new();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(broker.clone())
            .limit(8)
            .serve(&SQUARE, |_ctx, n| async move {
                if n == 1000 {
                    Err("no".to_owned())
                } else {
                    Ok(n * n)
                }
            })
            .run(shutdown.clone()),
    );
    let coordinator = Coordinator::new(broker);
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        coordinator.fan_out(0..100u64).limit(16).run(&SQUARE),
    )
    .await
    .expect("hung")
    .unwrap();
    assert_eq!(out, (0..100u64).map(|n| n * n).collect::<Vec<_>>());
    eprintln!("first run done");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        coordinator.fan_out([1u64, 1000, 2]).run(&SQUARE),
    )
    .await
    .expect("second run hung")
    .unwrap_err();
    eprintln!("second run done");
    assert_eq!(err.task_error().map(String::as_str), Some("no"));
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("worker did not stop")
        .unwrap()
        .unwrap();
    assert!(report.completed >= 101, "{report:?}");
}
