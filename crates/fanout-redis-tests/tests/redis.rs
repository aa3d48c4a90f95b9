//! What only a real Redis and real processes can show: a worker paused
//! past its lease, a server crash with AOF, a coordinator killed and
//! resumed, sixteen worker processes, TLS, passwords.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{records, until_log, Farm, RedisFarm, WorkerOpts};
use fanout_redis::{BrokerErrorKind, Coordinator, RedisBroker, RedisConfig};
use fanout_redis_tests::handler::{executions, Job, JOB};
use fanout_redis_tests::server::{self, RedisServer};

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process of the test that has not been
    // reaped (the farm owns it until it is dropped).
    let rc = unsafe { libc::kill(i32::try_from(pid).expect("a pid"), sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_has_its_late_result_dropped() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut farm = RedisFarm::new(dir.path(), &[]);
    let opts = WorkerOpts {
        lease: Duration::from_millis(600),
        ..WorkerOpts::default()
    };
    let paused = farm.start_worker(opts.clone()).await;
    let broker = farm.broker().await;
    let coordinator = Coordinator::new(broker.clone());
    let run = tokio::spawn(
        coordinator
            .fan_out([Job::sleepy(3, 1500)])
            .id("paused")
            .run(&JOB),
    );
    let log = farm.log().to_owned();
    until_log(&log, "worker 0 starting the task", |e| !e.is_empty()).await;
    signal(farm.worker_pid(paused), libc::SIGSTOP);
    // The lease passes; another worker adopts the task and starts it over.
    farm.start_worker(opts).await;
    until_log(&log, "worker 1 starting the task", |e| {
        e.iter()
            .any(|x| x.what == "start" && x.worker == "worker-1")
    })
    .await;
    // Worker 0 wakes with its sleep long over: it finishes first, and
    // tries to record a result it no longer holds the lease for.
    signal(farm.worker_pid(paused), libc::SIGCONT);
    until_log(&log, "worker 0 ending the task", |e| {
        e.iter().any(|x| x.what == "end" && x.worker == "worker-0")
    })
    .await;
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run finished")
        .unwrap()
        .unwrap();
    assert_eq!(out, [9]);
    let ends: Vec<String> = executions(&log)
        .into_iter()
        .filter(|x| x.what == "end")
        .map(|x| x.worker)
        .collect();
    assert_eq!(ends, ["worker-0", "worker-1"], "worker 0 ended first");
    assert_eq!(
        records(&broker, "paused").await,
        [(0, 1, "worker-1".to_owned())],
        "only the lease holder's result is recorded"
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_with_aof_loses_no_acknowledged_task() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut farm = RedisFarm::new(
        dir.path(),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    farm.start_worker(WorkerOpts {
        limit: 2,
        ..WorkerOpts::default()
    })
    .await;
    let broker = farm.broker().await;
    let coordinator = Coordinator::new(broker.clone());
    let n = 120u64;
    // Slow enough that most tasks are still queued when the server dies.
    let run = tokio::spawn(
        coordinator
            .fan_out((0..n).map(|i| Job::sleepy(i, 20)))
            .id("crash")
            .limit(n as usize)
            .run(&JOB),
    );
    let log = farm.log().to_owned();
    until_log(&log, "a few tasks done", |e| {
        e.iter().filter(|x| x.what == "end").count() >= 10
    })
    .await;
    farm.server().crash_and_restart();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the run finished after the restart")
        .unwrap()
        .unwrap();
    assert_eq!(out, (0..n).map(|i| i * i).collect::<Vec<_>>());
    let recs = records(&broker, "crash").await;
    let fields: BTreeSet<(u64, u32)> = recs.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(recs.len(), n as usize, "each task recorded once");
    assert_eq!(fields.len(), n as usize);
    farm.stop().await;
}

/// Runs the test coordinator process.
fn coordinator_process(url: &str, run: &str, n: u64, out: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout-test-coordinator"))
        .args(["--redis", url, "--run-id", run, "--n", &n.to_string()])
        .args(["--sleep-ms", "150", "--limit", "8", "--out"])
        .arg(out)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the test coordinator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_resumes_its_run_without_running_recorded_tasks_again() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut farm = RedisFarm::new(dir.path(), &[]);
    // Sixteen slots for a coordinator that queues at most eight: nothing
    // waits in a queue, so once no task runs, every task queued so far has
    // been recorded.
    farm.start_worker(WorkerOpts::default()).await;
    farm.start_worker(WorkerOpts::default()).await;
    let url = farm.server().url();
    let out = dir.path().join("outcomes");
    let log = farm.log().to_owned();
    let mut first = coordinator_process(&url, "resumed", 40, &out);
    until_log(&log, "some tasks done", |e| {
        e.iter().filter(|x| x.what == "end").count() >= 12
    })
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    until_log(&log, "the tasks queued before the kill to finish", |e| {
        let starts = e.iter().filter(|x| x.what == "start").count();
        starts == e.iter().filter(|x| x.what == "end").count()
    })
    .await;
    let done_before: BTreeSet<u64> = executions(&log).iter().map(|x| x.index).collect();
    assert!(done_before.len() < 40, "the first coordinator finished");
    let mut second = coordinator_process(&url, "resumed", 40, &out);
    let status = tokio::time::timeout(Duration::from_secs(60), second.wait())
        .await
        .expect("the resumed run finished")
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let want: String = (0..40u64).map(|i| format!("{i} ok {}\n", i * i)).collect();
    assert_eq!(text, want);
    let mut starts: BTreeMap<u64, usize> = BTreeMap::new();
    for x in executions(&log).iter().filter(|x| x.what == "start") {
        *starts.entry(x.index).or_default() += 1;
    }
    assert_eq!(starts.len(), 40, "every task ran");
    let again: Vec<u64> = starts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        again.is_empty(),
        "recorded tasks ran again: {again:?} (done before: {done_before:?})"
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_worker_processes_share_one_run() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut farm = RedisFarm::new(dir.path(), &[]);
    for _ in 0..16 {
        farm.start_worker(WorkerOpts {
            limit: 4,
            ..WorkerOpts::default()
        })
        .await;
    }
    let broker = farm.broker().await;
    let coordinator = Coordinator::new(broker.clone());
    let n = 1600u64;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        coordinator
            .fan_out((0..n).map(|i| Job::sleepy(i, 10)))
            .id("sixteen")
            .limit(64)
            .run(&JOB),
    )
    .await
    .expect("the run finished")
    .unwrap();
    assert_eq!(out, (0..n).map(|i| i * i).collect::<Vec<_>>());
    let recs = records(&broker, "sixteen").await;
    assert_eq!(recs.len(), n as usize, "each task recorded once");
    let workers: BTreeSet<&str> = recs.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(workers.len(), 16, "every worker took part: {workers:?}");
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_a_missing_server_is_one_clear_error_without_the_password() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &["--requirepass", "right-horse-battery"]);
    let port = server.port();
    let wrong = format!("redis://:staple-guess@127.0.0.1:{port}");
    let err = RedisBroker::connect(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Auth, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("redis://:***@127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(!msg.contains("staple-guess"), "{msg}");
    // The right one works.
    RedisBroker::connect(&server.url()).await.unwrap();
    // No server there: the URL, without its password, and what to do.
    drop(server);
    let mut quick = RedisConfig::default();
    quick.connect_timeout = Duration::from_secs(2);
    let gone = RedisBroker::connect_with(
        &format!("redis://:right-horse-battery@127.0.0.1:{port}"),
        quick,
    )
    .await
    .unwrap_err();
    assert_eq!(gone.kind(), BrokerErrorKind::Unreachable, "{gone}");
    let msg = gone.to_string();
    assert!(
        msg.contains(&format!("redis://:***@127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(!msg.contains("right-horse-battery"), "{msg}");
    // Not a Redis URL at all.
    let bad = RedisBroker::connect("http://:pw-in-url@host")
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), BrokerErrorKind::BadUrl, "{bad}");
    assert!(!bad.to_string().contains("pw-in-url"), "{bad}");
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with openssl.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["genrsa", "-out", "ca.key", "2048"]);
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-days",
        "2",
        "-subj",
        "/CN=fanout test CA",
        "-out",
        "ca.crt",
    ]);
    run(&["genrsa", "-out", "server.key", "2048"]);
    run(&[
        "req",
        "-new",
        "-key",
        "server.key",
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_through_tls_and_an_untrusted_server_is_refused() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let _server = RedisServer::start(
        dir.path(),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let mut config = RedisConfig::default();
    config.ca_cert_pem = Some(std::fs::read(path("ca.crt")).unwrap());
    let broker = RedisBroker::connect_with(&url, config).await.unwrap();
    // A worker process, trusting the same CA.
    let mut worker = tokio::process::Command::new(common::worker_binary())
        .args(["--redis", &url, "--ca", &path("ca.crt")])
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
    let out = Coordinator::new(broker)
        .fan_out((0..20).map(Job::square))
        .run(&JOB)
        .await
        .unwrap();
    assert_eq!(out, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    signal(worker.id().unwrap(), libc::SIGTERM);
    assert!(worker.wait().await.unwrap().success());
    // Without the CA, the server's certificate is not trusted.
    let mut untrusting = RedisConfig::default();
    untrusting.connect_timeout = Duration::from_secs(2);
    let err = RedisBroker::connect_with(&url, untrusting)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Unreachable, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_fails_the_run_instead_of_hanging() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // No persistence: a crash loses every queued task and every result.
    let mut farm = RedisFarm::new(dir.path(), &["--appendonly", "no"]);
    farm.start_worker(WorkerOpts {
        limit: 2,
        ..WorkerOpts::default()
    })
    .await;
    let coordinator = Coordinator::new(farm.broker().await);
    let run = tokio::spawn(
        coordinator
            .fan_out((0..100).map(|i| Job::sleepy(i, 20)))
            .limit(100)
            .run(&JOB),
    );
    let log = farm.log().to_owned();
    until_log(&log, "a few tasks done", |e| {
        e.iter().filter(|x| x.what == "end").count() >= 4
    })
    .await;
    farm.server().crash_and_restart();
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run ended instead of waiting forever")
        .unwrap()
        .unwrap_err();
    let Some(fanout::TaskError::Undeliverable(why)) = err.failure().map(|f| &f.error) else {
        panic!("{err:?}");
    };
    assert!(
        why.contains("the broker lost run") && why.contains("appendonly yes"),
        "{why}"
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_node_is_refused_with_one_clear_error() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &["--cluster-enabled", "yes"]);
    let err = RedisBroker::connect(&server.url()).await.unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::BadUrl, "{err}");
    assert!(err.to_string().contains("is a Redis Cluster node"), "{err}");
}

/// The ACL user the documentation recommends: only the prefix's keys, the
/// cancel channel, and the command categories fanout uses.
const ACL_USER: &str = "fanout on >acl-user-password ~fanout:* &fanout:cancel +@stream +@hash \
                        +@sortedset +@string +@keyspace +@pubsub +@scripting +ping +info +time";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_user_is_enough_for_workers_and_coordinators() {
    if !server::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--user"];
    args.extend(ACL_USER.split_whitespace());
    let mut farm = RedisFarm::new(dir.path(), &args);
    let url = format!(
        "redis://fanout:acl-user-password@127.0.0.1:{}",
        farm.server().port()
    );
    // A worker process and a coordinator as that user; a failing task, a
    // retry and a dead letter exercise every command.
    let mut worker = tokio::process::Command::new(common::worker_binary())
        .args(["--redis", &url, "--log"])
        .arg(farm.log())
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
    let coordinator = Coordinator::new(RedisBroker::connect(&url).await.unwrap());
    let jobs = [
        Job::square(3),
        Job {
            value: 4,
            fail: true,
            ..Job::default()
        },
    ];
    let report = coordinator
        .fan_out(jobs)
        .retry(fanout::Retry::attempts(2).backoff(Duration::from_millis(10)))
        .run_all(&JOB)
        .await;
    assert_eq!(report.outcomes()[0].1.as_ref().ok(), Some(&9));
    assert_eq!(
        report.outcomes()[1]
            .1
            .as_ref()
            .err()
            .and_then(|e| e.as_failed()),
        Some(&"boom 4".to_owned())
    );
    assert_eq!(coordinator.dead_letters(&JOB).await.unwrap().len(), 1);
    // A stopped run's cancellation goes out too.
    let err = coordinator
        .fan_out([
            Job::sleepy(1, 60_000),
            Job {
                value: 2,
                fail: true,
                ..Job::default()
            },
        ])
        .run(&JOB)
        .await
        .unwrap_err();
    assert_eq!(err.key(), Some(&1));
    signal(worker.id().unwrap(), libc::SIGTERM);
    assert!(worker.wait().await.unwrap().success());
}
