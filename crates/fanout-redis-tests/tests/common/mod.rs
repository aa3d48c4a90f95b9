//! A broker and its workers, for one test: either the memory broker with
//! workers as tasks in the test's own process, or a real Redis with
//! workers as separate processes (the `fanout-test-worker` binary).

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fanout_redis::{Broker, Cursor, MemoryBroker, RedisBroker, WorkerReport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use fanout_redis_tests::handler::{executions, job_worker, Execution, JOB_OTHER_TYPES};
use fanout_redis_tests::server::RedisServer;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub(crate) struct WorkerOpts {
    /// Tasks run at once.
    pub limit: usize,
    /// The lease of a task it holds.
    pub lease: Duration,
    /// Deliveries before a task is dead-lettered.
    pub max_deliveries: u32,
    /// Serve `job` with other types (a worker built from other code).
    pub other_types: bool,
    /// Run only tasks signed with this secret.
    pub secret: Option<&'static str>,
    /// Tasks claimed beyond those running (default: the limit).
    pub prefetch: Option<usize>,
}

impl Default for WorkerOpts {
    fn default() -> Self {
        Self {
            limit: 8,
            lease: Duration::from_secs(2),
            max_deliveries: 3,
            other_types: false,
            secret: None,
            prefetch: None,
        }
    }
}

/// A broker and workers on it.
pub(crate) trait Farm: Send {
    /// The broker's type.
    type B: Broker;

    /// A connection to the broker, for a coordinator.
    fn broker(&self) -> impl std::future::Future<Output = Self::B> + Send;

    /// Starts a worker; returns its number.
    fn start_worker(&mut self, opts: WorkerOpts)
        -> impl std::future::Future<Output = usize> + Send;

    /// Kills a worker at once (SIGKILL, or its task aborted): what it holds
    /// stays leased to it until the lease passes.
    fn kill_worker(&mut self, n: usize);

    /// The file every worker logs its executions to.
    fn log(&self) -> &Path;

    /// Stops every worker (gracefully) and returns their reports, where the
    /// farm can read them.
    fn stop(&mut self) -> impl std::future::Future<Output = Vec<WorkerReport>> + Send;
}

/// The memory broker, with workers as tasks of the test's runtime.
pub(crate) struct MemoryFarm {
    broker: MemoryBroker,
    log: PathBuf,
    workers: Vec<(CancellationToken, Option<JoinHandle<WorkerReport>>)>,
}

impl MemoryFarm {
    /// A farm logging executions under `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            broker: MemoryBroker::new(),
            log: dir.join("executions.log"),
            workers: Vec::new(),
        }
    }
}

impl Farm for MemoryFarm {
    type B = MemoryBroker;

    async fn broker(&self) -> MemoryBroker {
        self.broker.clone()
    }

    async fn start_worker(&mut self, opts: WorkerOpts) -> usize {
        let n = self.workers.len();
        let shutdown = CancellationToken::new();
        let worker = if opts.other_types {
            fanout_redis::Worker::new(self.broker.clone())
                .serve(&JOB_OTHER_TYPES, |_ctx, s: String| async move { Ok(s) })
        } else {
            job_worker(self.broker.clone(), Some(self.log.clone()))
        };
        let worker = match opts.prefetch {
            Some(n) => worker.prefetch(n),
            None => worker,
        };
        let worker = match opts.secret {
            Some(s) => worker.secret(fanout_redis::Secret::new(s).expect("a long enough secret")),
            None => worker,
        };
        let run = worker
            .id(format!("memory-worker-{n}"))
            .limit(opts.limit)
            .lease(opts.lease)
            .max_deliveries(opts.max_deliveries)
            .drain(Duration::from_secs(5))
            .run(shutdown.clone());
        let task = tokio::spawn(async move { run.await.expect("a memory broker never fails") });
        self.workers.push((shutdown, Some(task)));
        n
    }

    fn kill_worker(&mut self, n: usize) {
        if let Some(task) = self.workers[n].1.take() {
            task.abort();
        }
    }

    fn log(&self) -> &Path {
        &self.log
    }

    async fn stop(&mut self) -> Vec<WorkerReport> {
        let mut reports = Vec::new();
        for (shutdown, task) in &mut self.workers {
            shutdown.cancel();
            if let Some(task) = task.take() {
                if let Ok(r) = task.await {
                    reports.push(r);
                }
            }
        }
        reports
    }
}

/// A real Redis started for the test, with workers as processes.
pub(crate) struct RedisFarm {
    server: RedisServer,
    log: PathBuf,
    workers: Vec<tokio::process::Child>,
}

impl RedisFarm {
    /// Starts a Redis (with `extra` settings) whose files, and the
    /// execution log, go under `dir`.
    pub(crate) fn new(dir: &Path, extra: &[&str]) -> Self {
        Self {
            server: RedisServer::start(dir, extra),
            log: dir.join("executions.log"),
            workers: Vec::new(),
        }
    }

    /// The server.
    pub(crate) fn server(&mut self) -> &mut RedisServer {
        &mut self.server
    }

    /// The process id of worker `n`.
    pub(crate) fn worker_pid(&self, n: usize) -> u32 {
        self.workers[n].id().unwrap_or(0)
    }
}

/// The test worker binary.
pub(crate) fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fanout-test-worker"))
}

impl Farm for RedisFarm {
    type B = RedisBroker;

    async fn broker(&self) -> RedisBroker {
        RedisBroker::connect(&self.server.url())
            .await
            .expect("connect to the test's Redis")
    }

    async fn start_worker(&mut self, opts: WorkerOpts) -> usize {
        let n = self.workers.len();
        let mut cmd = tokio::process::Command::new(worker_binary());
        cmd.arg("--redis")
            .arg(self.server.url())
            .arg("--id")
            .arg(format!("worker-{n}"))
            .arg("--limit")
            .arg(opts.limit.to_string())
            .arg("--lease-ms")
            .arg(opts.lease.as_millis().to_string())
            .arg("--max-deliveries")
            .arg(opts.max_deliveries.to_string())
            .arg("--log")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if opts.other_types {
            cmd.arg("--other-types");
        }
        if let Some(s) = opts.secret {
            cmd.arg("--secret").arg(s);
        }
        if let Some(n) = opts.prefetch {
            cmd.arg("--prefetch").arg(n.to_string());
        }
        let mut child = cmd.spawn().expect("start the test worker");
        // The worker prints one line once it has announced itself.
        let stdout = child.stdout.take().expect("piped");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
            "worker {n} did not start: {ready:?}"
        );
        self.workers.push(child);
        n
    }

    fn kill_worker(&mut self, n: usize) {
        let _ = self.workers[n].start_kill();
    }

    fn log(&self) -> &Path {
        &self.log
    }

    async fn stop(&mut self) -> Vec<WorkerReport> {
        for w in &self.workers {
            if let Some(pid) = w.id() {
                // SAFETY: kill(2) on a child of ours that has not been reaped.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for w in &mut self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(20), w.wait()).await;
        }
        Vec::new()
    }
}

/// Waits (bounded: 30 s) until `pred` holds of the execution log.
pub(crate) async fn until_log(log: &Path, what: &str, pred: impl Fn(&[Execution]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if pred(&executions(log)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The records of `run` on the broker, as `(index, attempt, worker)`.
pub(crate) async fn records<B: Broker>(broker: &B, run: &str) -> Vec<(u64, u32, String)> {
    let (mut cursor, mut all) = (Cursor::start(), Vec::new());
    loop {
        let (next, recs) = broker
            .results(run, &cursor, Duration::from_millis(1))
            .await
            .unwrap();
        if recs.is_empty() {
            return all;
        }
        cursor = next;
        all.extend(recs.iter().map(|r| decode_record(r)));
    }
}

/// The first fields of an encoded record: two postcard varints and a
/// string (a varint length, then the bytes).
fn decode_record(bytes: &[u8]) -> (u64, u32, String) {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut at = 0;
    let index = varint(bytes, &mut at);
    let attempt = u32::try_from(varint(bytes, &mut at)).expect("an attempt number");
    let len = usize::try_from(varint(bytes, &mut at)).expect("a length");
    let worker = String::from_utf8(bytes[at..at + len].to_vec()).expect("a worker id");
    (index, attempt, worker)
}
