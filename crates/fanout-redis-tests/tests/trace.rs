//! One trace across machines: a task's span on a worker process is a child
//! of the coordinator's span for that task, itself under the caller's span
//! and the run's, in OpenTelemetry. Needs the `otel` feature.
#![cfg(feature = "otel")]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use fanout_redis::{Coordinator, RedisBroker};
use fanout_redis_tests::handler::{Job, JOB};
use fanout_redis_tests::otel::{self, SpanLine};
use fanout_redis_tests::server::{self, RedisServer};
use tracing::Instrument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_span_on_a_worker_is_a_child_of_its_span_on_the_coordinator() {
    if !server::available() {
        return;
    }
    let collected = otel::install();
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &[]);
    let spans_file = dir.path().join("worker-spans");
    let mut worker = tokio::process::Command::new(common::worker_binary())
        .args(["--redis", &server.url(), "--spans"])
        .arg(&spans_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = worker.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
        "{ready:?}"
    );

    let coordinator = Coordinator::new(RedisBroker::connect(&server.url()).await.unwrap());
    let out = coordinator
        .fan_out((0..3).map(Job::square))
        .run(&JOB)
        .instrument(tracing::info_span!("nightly_batch"))
        .await
        .unwrap();
    assert_eq!(out, [0, 1, 4]);
    // SIGTERM: the worker stops, and writes its spans.
    // SAFETY: kill(2) on our child, not yet reaped.
    unsafe {
        libc::kill(i32::try_from(worker.id().unwrap()).unwrap(), libc::SIGTERM);
    }
    assert!(worker.wait().await.unwrap().success());

    let here = collected.spans();
    let by_id: HashMap<&str, &SpanLine> = here.iter().map(|s| (s.id.as_str(), s)).collect();
    let there: Vec<SpanLine> = otel::read(&spans_file)
        .into_iter()
        .filter(|s| s.name == "fanout.remote_task")
        .collect();
    assert_eq!(there.len(), 3, "one span per task on the worker: {there:?}");
    let root = here
        .iter()
        .find(|s| s.name == "nightly_batch")
        .expect("the caller's span");
    for remote in &there {
        assert_eq!(
            remote.trace, root.trace,
            "the worker's span is in the caller's trace"
        );
        // Its parent is the coordinator's span for the task, under the
        // run's span, under the caller's.
        let task = by_id
            .get(remote.parent.as_str())
            .unwrap_or_else(|| panic!("the parent of {remote:?} is not a coordinator span"));
        assert_eq!(task.name, "fanout.task");
        let run = by_id[task.parent.as_str()];
        assert_eq!(run.name, "fanout.run");
        assert_eq!(run.parent, root.id);
    }
}
