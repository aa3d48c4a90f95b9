//! A worker process for the conformance suite: serves the test `job`
//! handler on a Redis until SIGTERM, logging executions to a file.
//!
//! `fanout-test-worker --redis URL [--id ID] [--limit N] [--lease-ms MS]
//! [--max-deliveries N] [--log PATH] [--other-types] [--secret TEXT]
//! [--ca PEM-FILE] [--spans PATH] [--prefetch N]`. With `--spans` (the `otel` feature),
//! the worker's spans are written to PATH when it stops.
//! Prints `ready` once it has announced itself, and its report when it
//! stops.

use std::path::PathBuf;
use std::time::Duration;

use fanout_redis::{RedisBroker, RedisConfig, Secret, Worker};
use fanout_redis_tests::handler::{job_worker, JOB_OTHER_TYPES};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut url, mut id, mut limit, mut lease_ms, mut max_deliveries) =
        (String::new(), None, 8usize, 2000u64, 3u32);
    let mut log: Option<PathBuf> = None;
    let mut other_types = false;
    let mut secret = None;
    let mut config = RedisConfig::default();
    let mut spans: Option<PathBuf> = None;
    let mut prefetch = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value");
        match a.as_str() {
            "--redis" => url = value(),
            "--id" => id = Some(value()),
            "--limit" => limit = value().parse().expect("--limit N"),
            "--lease-ms" => lease_ms = value().parse().expect("--lease-ms MS"),
            "--max-deliveries" => max_deliveries = value().parse().expect("--max-deliveries N"),
            "--log" => log = Some(PathBuf::from(value())),
            "--other-types" => other_types = true,
            "--prefetch" => prefetch = Some(value().parse().expect("--prefetch N")),
            "--spans" => spans = Some(PathBuf::from(value())),
            "--ca" => config.ca_cert_pem = Some(std::fs::read(value()).expect("read the CA file")),
            "--secret" => secret = Some(Secret::new(value()).expect("a long enough secret")),
            other => panic!("unknown argument {other}"),
        }
    }
    #[cfg(feature = "otel")]
    let collected = spans.as_ref().map(|_| fanout_redis_tests::otel::install());
    #[cfg(not(feature = "otel"))]
    assert!(spans.is_none(), "--spans needs the otel feature");
    let broker = RedisBroker::connect_with(&url, config)
        .await
        .expect("connect to Redis");
    let worker = if other_types {
        Worker::new(broker).serve(&JOB_OTHER_TYPES, |_ctx, s: String| async move { Ok(s) })
    } else {
        job_worker(broker, log)
    };
    let mut worker = worker
        .limit(limit)
        .lease(Duration::from_millis(lease_ms))
        .max_deliveries(max_deliveries)
        .drain(Duration::from_secs(5))
        .on_ready(|| println!("ready"));
    if let Some(id) = id {
        worker = worker.id(id);
    }
    if let Some(secret) = secret {
        worker = worker.secret(secret);
    }
    if let Some(n) = prefetch {
        worker = worker.prefetch(n);
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let mut term = signal(SignalKind::terminate()).expect("handle SIGTERM");
    tokio::spawn(async move {
        term.recv().await;
        stop.cancel();
    });
    let report = worker.run(shutdown).await.expect("the worker");
    #[cfg(feature = "otel")]
    if let (Some(c), Some(path)) = (&collected, &spans) {
        c.write(path);
    }
    println!("{report:?}");
}
