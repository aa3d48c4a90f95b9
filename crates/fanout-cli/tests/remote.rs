//! `fanout --redis` and `fanout worker`: workers as separate processes on
//! this machine, against a Redis server each test starts (and stops by
//! pid). A distributed run prints, journals and exits as a local run does;
//! workers run only jobs signed with their secret; a dead worker's jobs run
//! elsewhere and a killed coordinator resumes, each job recorded once.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{fanout, processes_matching, send_signal, wait_for_no_process};
use fanout_redis_tests::server::{self, RedisServer};

/// A Redis server and a secret for one test, in a directory of its own.
struct Farm {
    dir: tempfile::TempDir,
    redis: RedisServer,
    secret: PathBuf,
    workers: Vec<Worker>,
}

/// A `fanout worker` process, killed (by pid) when dropped.
struct Worker {
    child: Child,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Farm {
    /// `None` (with a note) where redis-server is not installed; in CI its
    /// absence fails the test.
    fn start() -> Option<Farm> {
        if !server::available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start(dir.path(), &[]);
        let secret = write_secret(dir.path(), "secret", b"a shared secret of 32 bytes.....");
        Some(Farm {
            dir,
            redis,
            secret,
            workers: Vec::new(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a worker named `id` with `args`, and waits until it serves.
    fn worker(&mut self, id: &str, args: &[&str]) {
        let secret = self.secret.clone();
        self.worker_with_secret(id, &secret, args);
    }

    fn worker_with_secret(&mut self, id: &str, secret: &Path, args: &[&str]) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
            .arg("worker")
            .args(["--redis", &self.redis.url(), "--id", id])
            .arg("--secret-file")
            .arg(secret)
            .args(args)
            .env("PARALLEL_SHELL", "/bin/sh")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fanout worker");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("serving jobs") {
                    let _ = tx.send(());
                }
                eprintln!("[worker] {line}");
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the worker did not say it serves jobs within 20 s");
        self.workers.push(Worker { child });
    }

    /// `fanout --redis URL --secret-file SECRET ARGS` in the farm's
    /// directory.
    fn coordinator(&self, args: &[&str]) -> Command {
        self.coordinator_with_secret(&self.secret, args)
    }

    fn coordinator_with_secret(&self, secret: &Path, args: &[&str]) -> Command {
        let mut cmd = fanout();
        cmd.args(["--redis", &self.redis.url()])
            .arg("--secret-file")
            .arg(secret)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn write_secret(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("run fanout")
}

/// The joblog's records: seq -> (host, exit value), and how many records
/// each seq has.
fn joblog(path: &Path) -> (BTreeMap<u64, (String, i32)>, BTreeMap<u64, usize>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut records = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let seq: u64 = f[0].parse().unwrap();
        records.insert(seq, (f[1].to_owned(), f[6].trim().parse().unwrap()));
        *counts.entry(seq).or_insert(0) += 1;
    }
    (records, counts)
}

/// Waits (up to 30 s) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn jobs_on_two_workers_print_journal_and_exit_exactly_as_a_local_run() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "2"]);
    farm.worker("w2", &["-j", "2"]);
    let inputs: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
    let mut args = vec![
        "-k",
        "--tag",
        "-j",
        "4",
        "sleep 0.1; echo out {} $PARALLEL_SEQ; echo err {} >&2; exit $(( {} % 3 == 0 ))",
        ":::",
    ];
    args.extend(inputs.iter().map(String::as_str));

    let mut local = fanout();
    local.args(&args).stdin(Stdio::null());
    let local = output(local);
    let log = farm.path("joblog");
    let mut remote_args = vec!["--joblog", log.to_str().unwrap()];
    remote_args.extend(&args);
    let remote = output(farm.coordinator(&remote_args));

    assert_eq!(
        String::from_utf8_lossy(&remote.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&remote.stderr),
        String::from_utf8_lossy(&local.stderr)
    );
    // Four jobs failed: GNU parallel's exit code is their number.
    assert_eq!(local.status.code(), Some(4));
    assert_eq!(remote.status.code(), local.status.code());
    let (records, counts) = joblog(&log);
    assert_eq!(
        records.keys().copied().collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    for (seq, (_, exitval)) in &records {
        assert_eq!(*exitval, i32::from(seq % 3 == 0), "job {seq}");
    }
    // Four jobs out at once, two slots per worker, and a worker claims
    // only for its free slots: both ran jobs, and the Host column says so.
    let hosts: std::collections::BTreeSet<&str> =
        records.values().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["w1", "w2"].into());
}

#[test]
fn a_coordinator_without_the_workers_secret_runs_nothing_and_says_why() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &[]);
    let other = write_secret(
        farm.dir.path(),
        "other",
        b"another secret, also 32 bytes...",
    );
    let marker = farm.path("ran");
    let cmd = format!("touch {}", marker.display());
    let out = output(farm.coordinator_with_secret(&other, &[&cmd, ":::", "1"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("could not run on a worker"), "{stderr}");
    assert!(stderr.contains("secret"), "{stderr}");
    assert!(
        !marker.exists(),
        "a job not signed with the worker's secret ran"
    );

    // The secret file itself is checked before anything is sent.
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = output(farm.coordinator_with_secret(&other, &[&cmd, ":::", "1"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let short = write_secret(farm.dir.path(), "short", b"too short");
    let out = output(farm.coordinator_with_secret(&short, &[&cmd, ":::", "1"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
    assert!(!marker.exists());
}

#[test]
fn with_no_worker_the_run_says_so_and_stops_instead_of_hanging() {
    let Some(farm) = Farm::start() else { return };
    let out = output(farm.coordinator(&["echo", ":::", "1", "2"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("no fanout worker is serving"), "{stderr}");
    assert!(stderr.contains("could not run on a worker"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn options_a_worker_cannot_honour_are_refused_with_the_reason() {
    let Some(farm) = Farm::start() else { return };
    for args in [
        &["--pipe", "wc", "-l"][..],
        &["--line-buffer", "echo", ":::", "1"],
        &["--ungroup", "echo", ":::", "1"],
        &["--timeout", "200%", "echo", ":::", "1"],
        &["--memfree", "1G", "echo", ":::", "1"],
    ] {
        let out = output(farm.coordinator(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {stderr}");
        assert!(
            stderr.contains("with --redis is not supported"),
            "{args:?}: {stderr}"
        );
    }
    // A server nobody listens on: one clear error, from both sides.
    // The coordinator fails before it touches anything: a joblog of an
    // earlier run is left as it was.
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let log = farm.path("earlier-joblog");
    std::fs::write(&log, "an earlier run's joblog\n").unwrap();
    let mut coordinator = fanout();
    coordinator
        .args(["--redis", &closed, "--secret-file"])
        .arg(&farm.secret);
    coordinator
        .arg("--joblog")
        .arg(&log)
        .args(["echo", ":::", "1"]);
    let out = output(coordinator);
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to Redis at"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "an earlier run's joblog\n"
    );
    let mut worker = Command::new(env!("CARGO_BIN_EXE_fanout"));
    worker
        .args(["worker", "--redis", &closed, "--secret-file"])
        .arg(&farm.secret);
    let out = output(worker);
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to Redis at"), "{stderr}");

    let mut bare = fanout();
    bare.args(["--redis", &farm.redis.url(), "echo", ":::", "1"]);
    let out = output(bare);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis needs --secret-file"));
}

#[test]
fn a_worker_killed_mid_run_has_its_jobs_run_by_another_and_each_is_recorded_once() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "2", "--lease", "1"]);
    farm.worker("w2", &["-j", "2", "--lease", "1"]);
    let log = farm.path("joblog");
    let inputs: Vec<String> = (1..=24).map(|i| i.to_string()).collect();
    let mut args = vec!["-k", "-j", "4", "--joblog", log.to_str().unwrap()];
    args.extend(["sleep 0.3; echo {}", ":::"]);
    args.extend(inputs.iter().map(String::as_str));
    let coordinator = farm
        .coordinator(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once w1 has finished two jobs it is busy with more: kill it there.
    wait_until("w1 has recorded two jobs", || {
        joblog(&log).0.values().filter(|(h, _)| h == "w1").count() >= 2
    });
    let w1 = farm.workers.remove(0);
    let recorded_before = joblog(&log).0.len();
    drop(w1); // SIGKILL, then reaped: its jobs die with it (PDEATHSIG)
    let out = coordinator.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: String = (1..=24).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    let (records, counts) = joblog(&log);
    assert_eq!(records.len(), 24);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert!(recorded_before < 24, "the run ended before w1 was killed");
    assert!(
        records.values().filter(|(h, _)| h == "w2").count() > 24 - recorded_before - 2,
        "w2 did not take over: {records:?}"
    );
}

#[test]
fn a_coordinator_killed_mid_run_resumes_without_rerunning_a_recorded_job_or_losing_one() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "3"]);
    farm.worker("w2", &["-j", "3"]);
    let log = farm.path("joblog");
    let ran = farm.path("ran");
    let cmd = format!("echo {{}} >> {}; sleep 0.2; echo {{}}", ran.display());
    let inputs: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    // More jobs out than the workers' six slots: some wait in the queue.
    let mut args = vec!["-j", "12", "--joblog", log.to_str().unwrap(), &cmd, ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let mut first = farm
        .coordinator(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("ten jobs are recorded", || joblog(&log).0.len() >= 10);
    send_signal(first.id(), "KILL");
    first.wait().unwrap();
    let (before, _) = joblog(&log);
    assert!(before.len() < 40, "the run ended before the kill");
    // The dead coordinator's run id, kept next to the joblog.
    let id_file = farm.path("joblog.redis-run");
    let dead_run = std::fs::read_to_string(&id_file).unwrap().trim().to_owned();

    let mut resume = vec!["--resume"];
    resume.extend(&args);
    let out = output(farm.coordinator(&resume));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (records, counts) = joblog(&log);
    assert_eq!(
        records.keys().copied().collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    assert!(
        counts.values().all(|&n| n == 1),
        "a job recorded twice: {counts:?}"
    );
    // Every run of a job appended its input to `ran`.
    let mut runs: BTreeMap<u64, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&ran).unwrap().lines() {
        *runs.entry(line.parse().unwrap()).or_insert(0) += 1;
    }
    for seq in before.keys() {
        assert_eq!(runs[seq], 1, "job {seq} was recorded, then run again");
    }
    // Jobs out when the coordinator died ran at most once more.
    assert!(runs.values().all(|&n| n <= 2), "{runs:?}");
    // The resuming coordinator cancelled the dead one's run, so that the
    // jobs it had queued do not run for nobody; and its own run ended
    // cleanly, so it left no id behind.
    let cancelled = Command::new("redis-cli")
        .args(["-p", &farm.redis.port().to_string(), "EXISTS"])
        .arg(format!("fanout:run:{{{dead_run}}}:cancel"))
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&cancelled.stdout).trim(), "1");
    assert!(!id_file.exists());
    let stdout: std::collections::BTreeSet<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let missing: Vec<u64> = (1..=40).filter(|s| !before.contains_key(s)).collect();
    assert_eq!(stdout, missing.into_iter().collect());
}

#[test]
fn halt_now_stops_the_jobs_running_on_the_workers() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "4"]);
    let out = output(farm.coordinator(&[
        "--halt",
        "now,fail=1",
        "-j",
        "4",
        "if [ {} = fail ]; then sleep 0.5; exit 3; fi; sleep 41.73; touch ended.{}",
        ":::",
        "a",
        "b",
        "fail",
        "c",
    ]));
    // GNU parallel's code for --halt now,fail=1: the failing job's.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = wait_for_no_process("sleep 41.73", Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "jobs still running on the worker: {left:?}"
    );
    assert!(processes_matching("sleep 41.73").is_empty());
    // They were stopped, not waited for.
    for job in ["a", "b", "c"] {
        assert!(
            !farm.path(&format!("ended.{job}")).exists(),
            "job {job} ran to its end"
        );
    }
}

#[test]
fn a_large_output_comes_back_whole_through_bounded_chunks() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "2"]);
    // 20 MB: twenty chunks of 1 MiB and a piece.
    let out = output(farm.coordinator(&[
        "-k",
        "head -c 20000000 /dev/zero | tr '\\0' {}",
        ":::",
        "a",
        "b",
    ]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 40_000_000);
    assert!(out.stdout[..20_000_000].iter().all(|&b| b == b'a'));
    assert!(out.stdout[20_000_000..].iter().all(|&b| b == b'b'));
}

#[test]
fn a_worker_serves_again_once_a_restarted_redis_is_back() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "2"]);
    let out = output(farm.coordinator(&["-k", "echo", ":::", "before"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    // The server dies (its data with it: no persistence here) and comes
    // back on the same port; the worker reconnects by itself.
    farm.redis.crash_and_restart();
    let out = output(farm.coordinator(&["-k", "echo", ":::", "after", "again"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after\nagain\n");
    // The worker process is the same one.
    assert_eq!(farm.workers.len(), 1);
    assert!(farm.workers[0].child.try_wait().unwrap().is_none());
}

#[test]
fn a_redis_that_loses_the_run_mid_way_stops_it_with_one_clear_error() {
    let Some(mut farm) = Farm::start() else {
        return;
    };
    farm.worker("w1", &["-j", "4"]);
    let coordinator = farm
        .coordinator(&[
            "-j",
            "4",
            "sleep 2.371; echo {}",
            ":::",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the jobs run", || {
        processes_matching("sleep 2.371").len() == 4
    });
    // No persistence: the restarted server has forgotten the run.
    farm.redis.crash_and_restart();
    let out = coordinator.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert_eq!(stderr.matches("lost run").count(), 1, "{stderr}");
    assert!(stderr.contains("appendonly yes"), "{stderr}");
    assert!(
        stderr.contains("more jobs could not run either"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
