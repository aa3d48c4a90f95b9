//! `--redis` across real network links: Redis and the coordinator in one
//! network namespace, three `fanout worker`s each in a namespace of its
//! own, joined by one veth pair per worker. One worker's link is cut while
//! it runs jobs: the others must take those jobs over once its lease
//! passes, and the run must come out as a local run does, each job
//! recorded once.
//!
//! Topology (names carry the test's pid, so that concurrent or stale runs
//! never collide; nothing is created in the test's own namespace):
//!
//! ```text
//!   fo-PID-r: redis-server, coordinator        fo-PID-wI: fanout worker --id wI
//!     lo 127.0.0.1                               (I = 1, 2, 3)
//!     rI 10.213.I.1/30  <--- veth pair --->      eth0 10.213.I.2/30
//! ```
//!
//! Each worker reaches Redis at the Redis side of its own link, so no
//! routes or bridge are needed; the coordinator uses loopback. The cut is
//! `ip -n fo-PID-r link set r1 down`.
//!
//! Needs root (network namespaces) and `ip` and `redis-server`: skipped
//! with a note without them, except under CI (`CI` set), where it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Jobs in the run.
const JOBS: u64 = 60;
/// Slots per worker; the coordinator's -j is three times this.
const SLOTS: usize = 4;
/// The job: a start marker (input, then the worker's name from its
/// environment) appended to `$FO_RAN`, then work long enough that the cut
/// falls while it runs, then its output.
const COMMAND: &str = r#"echo {} "$FO_W" >> "$FO_RAN"; sleep 0.5; echo {}"#;
/// The Redis port inside the Redis namespace (a fresh namespace: free).
const PORT: u16 = 6379;
/// Everything must be over within this.
const OVERALL: Duration = Duration::from_secs(120);

/// The namespaces and processes of one test; on drop, the processes are
/// killed (by pid) and reaped, then the namespaces deleted (which deletes
/// their veths). When the test is failing, the logs are printed first.
struct Lab {
    pid: u32,
    namespaces: Vec<String>,
    processes: Vec<(String, Child)>,
    logs: Vec<PathBuf>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("fo-{}-{name}", self.pid)
    }

    /// Creates namespace `name` (deleting a stale one of the same name: it
    /// carries this pid, so a killed earlier test of this pid left it).
    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        let out = Command::new("ip")
            .args(["netns", "add", &ns])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add {ns}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.namespaces.push(ns.clone());
        Ok(ns)
    }

    /// Starts `program args` inside namespace `ns`, stdout and stderr to
    /// `DIR/NAME.out` and `DIR/NAME.err`.
    fn spawn(
        &mut self,
        name: &str,
        ns: &str,
        dir: &Path,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> u32 {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program])
            .args(args)
            .env("PARALLEL_SHELL", "/bin/sh")
            .env("PARALLEL_HOME", common::parallel_home())
            .env_remove("PARALLEL")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("create stdout file"))
            .stderr(std::fs::File::create(&err).expect("create stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        // `ip netns exec` execs the program: this pid is the program's.
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id();
        self.logs.push(out);
        self.logs.push(err);
        self.processes.push((name.to_owned(), child));
        pid
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self
            .processes
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("known process")
            .1
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if !text.is_empty() {
                    eprintln!("----- {} -----\n{}", log.display(), text.trim_end());
                }
            }
        }
        for (_, child) in &mut self.processes {
            let _ = child.kill(); // SIGKILL to this pid only
            let _ = child.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            let status = Command::new("ip")
                .args(["netns", "del", &ns])
                .stdin(Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("warning: could not delete network namespace {ns}");
            }
        }
    }
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Polls `ready` every 20 ms until it holds; panics with `what` past
/// `deadline`.
fn wait_for(deadline: Instant, what: &str, mut ready: impl FnMut() -> bool) {
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, killing it (by pid) past `deadline`.
fn wait_exit(child: &mut Child, deadline: Instant, what: &str) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish before the deadline; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start markers: (seq, worker name), in the order the jobs started.
fn markers(file: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (seq, who) = l.split_once(' ')?;
            Some((seq.parse().ok()?, who.to_owned()))
        })
        .collect()
}

/// A joblog record.
#[derive(Debug)]
struct Record {
    seq: u64,
    host: String,
    /// Starttime + JobRuntime: when the job ended, on the worker's clock
    /// (this machine's).
    end: f64,
    exitval: i32,
}

fn joblog(file: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(file).expect("read the joblog");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.splitn(9, '\t').collect();
            assert_eq!(f.len(), 9, "bad joblog record {line:?}");
            let start: f64 = f[2].trim().parse().expect("Starttime");
            let runtime: f64 = f[3].trim().parse().expect("JobRuntime");
            Record {
                seq: f[0].trim().parse().expect("Seq"),
                host: f[1].to_owned(),
                end: start + runtime,
                exitval: f[6].trim().parse().expect("Exitval"),
            }
        })
        .collect()
}

/// Whether this machine can run the test: root's network namespaces, `ip`
/// and `redis-server`. Otherwise a note and `false`, or under CI a panic.
fn can_run(lab: &mut Lab) -> bool {
    let missing = |program: &str, flag: &str| {
        !Command::new(program)
            .arg(flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let why = if missing("ip", "-V") {
        Some("`ip` (iproute2) is not installed".to_owned())
    } else if missing("redis-server", "--version") {
        Some("redis-server is not installed".to_owned())
    } else {
        lab.add_ns("r").err()
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run this test, but: {why}"
            );
            eprintln!(
                "skipping: network namespaces are needed (root, iproute2, redis-server): {why}"
            );
            false
        }
    }
}

#[test]
fn a_worker_whose_link_goes_down_mid_run_has_its_jobs_redelivered_and_nothing_is_lost_or_recorded_twice(
) {
    let deadline = Instant::now() + OVERALL;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| {
        dir.path()
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    };
    let inputs: Vec<String> = (1..=JOBS).map(|i| i.to_string()).collect();

    let mut lab = Lab {
        pid: std::process::id(),
        namespaces: Vec::new(),
        processes: Vec::new(),
        logs: Vec::new(),
    };
    if !can_run(&mut lab) {
        return;
    }

    // The same command run locally: what the distributed run must print.
    let local_out = path("local.out");
    let mut local = common::fanout()
        .args(["-k", "-j", &(3 * SLOTS).to_string(), COMMAND, ":::"])
        .args(&inputs)
        .env("FO_RAN", path("ran-local.txt"))
        .env("FO_W", "local")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&local_out).expect("create local.out"))
        .spawn()
        .expect("start the local run");
    let status = wait_exit(&mut local, deadline, "the local run");
    assert!(status.success(), "the local run failed: {status}");
    let expected = std::fs::read_to_string(&local_out).expect("read local.out");
    assert_eq!(
        expected,
        inputs.iter().map(|i| format!("{i}\n")).collect::<String>(),
        "the local run printed something unexpected"
    );

    let r = lab.ns("r");
    ip(&["-n", &r, "link", "set", "lo", "up"]);
    let mut bind = vec!["127.0.0.1".to_owned()];
    for i in 1..=3 {
        let w = lab
            .add_ns(&format!("w{i}"))
            .expect("add a worker namespace");
        let (rv, server) = (format!("r{i}"), format!("10.213.{i}.1"));
        ip(&[
            "-n", &r, "link", "add", &rv, "type", "veth", "peer", "name", "eth0", "netns", &w,
        ]);
        ip(&["-n", &r, "addr", "add", &format!("{server}/30"), "dev", &rv]);
        ip(&[
            "-n",
            &w,
            "addr",
            "add",
            &format!("10.213.{i}.2/30"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &r, "link", "set", &rv, "up"]);
        ip(&["-n", &w, "link", "set", "eth0", "up"]);
        ip(&["-n", &w, "link", "set", "lo", "up"]);
        bind.push(server);
    }

    let redis_dir = path("redis");
    std::fs::create_dir(&redis_dir).expect("redis dir");
    let port = PORT.to_string();
    let mut redis_args = vec!["--port", &port, "--bind"];
    redis_args.extend(bind.iter().map(String::as_str));
    redis_args.extend([
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--daemonize",
        "no",
        "--dir",
        &redis_dir,
    ]);
    lab.spawn("redis", &r, dir.path(), "redis-server", &redis_args, &[]);
    wait_for(deadline, "redis-server to answer", || {
        Command::new("ip")
            .args(["netns", "exec", &r, "redis-cli", "-p", &port, "ping"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
    });

    let secret = path("secret");
    std::fs::write(&secret, b"0123456789abcdef0123456789abcdef").expect("write the secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let fanout = env!("CARGO_BIN_EXE_fanout");
    let ran = path("ran.txt");
    for i in 1..=3 {
        let (name, url) = (format!("w{i}"), format!("redis://10.213.{i}.1:{PORT}"));
        let ns = lab.ns(&name);
        let slots = SLOTS.to_string();
        let args = [
            "worker",
            "--redis",
            &url,
            "--secret-file",
            &secret,
            "-j",
            &slots,
            "--id",
            &name,
            "--lease",
            "2",
        ];
        lab.spawn(
            &name,
            &ns,
            dir.path(),
            fanout,
            &args,
            &[("FO_W", &name), ("FO_RAN", &ran)],
        );
    }
    for i in 1..=3 {
        let err = dir.path().join(format!("w{i}.err"));
        wait_for(deadline, &format!("worker w{i} to serve"), || {
            std::fs::read_to_string(&err).is_ok_and(|t| t.contains("serving jobs"))
        });
    }

    let log = path("joblog");
    let url = format!("redis://127.0.0.1:{PORT}");
    let total = (3 * SLOTS).to_string();
    let mut args = vec![
        "--redis",
        &url,
        "--secret-file",
        &secret,
        "-k",
        "-j",
        &total,
        "--joblog",
        &log,
        COMMAND,
        ":::",
    ];
    args.extend(inputs.iter().map(String::as_str));
    lab.spawn("coordinator", &r, dir.path(), fanout, &args, &[]);

    // Cut w1's link as soon as its second wave starts: a worker claims a
    // job only for a free slot, after recording the one that freed it, so
    // w1 has then finished and recorded jobs, and the one just started
    // (0.5 s) is still running.
    wait_for(deadline, "w1 to start its second wave of jobs", || {
        markers(Path::new(&ran))
            .iter()
            .filter(|(_, w)| w == "w1")
            .count()
            > SLOTS
    });
    ip(&["-n", &r, "link", "set", "r1", "down"]);
    let cut = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started_on_w1: BTreeSet<u64> = markers(Path::new(&ran))
        .into_iter()
        .filter(|(_, w)| w == "w1")
        .map(|(seq, _)| seq)
        .collect();
    let cut_at = Instant::now();

    let status = wait_exit(lab.child("coordinator"), deadline, "the coordinator");
    let finished_after = cut_at.elapsed();
    let stdout = std::fs::read_to_string(dir.path().join("coordinator.out")).expect("stdout");
    assert!(status.success(), "the distributed run failed: {status}");
    assert_eq!(
        stdout, expected,
        "the distributed run printed otherwise than the local one"
    );

    // Each job recorded exactly once, and successfully.
    let records = joblog(Path::new(&log));
    let mut by_seq: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
    for rec in &records {
        by_seq.entry(rec.seq).or_default().push(rec);
    }
    let twice: Vec<_> = by_seq.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(twice.is_empty(), "jobs recorded more than once: {twice:?}");
    let missing: Vec<u64> = (1..=JOBS).filter(|s| !by_seq.contains_key(s)).collect();
    assert!(missing.is_empty(), "jobs never recorded: {missing:?}");
    assert_eq!(
        records.len() as u64,
        JOBS,
        "records beyond 1..={JOBS}: {records:?}"
    );
    let failed: Vec<_> = records.iter().filter(|r| r.exitval != 0).collect();
    assert!(failed.is_empty(), "jobs recorded as failed: {failed:?}");
    let hosts: BTreeSet<&str> = records.iter().map(|r| r.host.as_str()).collect();
    assert!(
        hosts.iter().all(|h| ["w1", "w2", "w3"].contains(h)),
        "unexpected hosts: {hosts:?}"
    );

    // What w1 finished before the cut stays its own; nothing it finished
    // after the cut reached the joblog (a little slack for the joblog's
    // millisecond rounding).
    let on_w1 = records.iter().filter(|r| r.host == "w1").count();
    assert!(
        on_w1 > 0,
        "w1 had recorded jobs before the cut, yet none is recorded as its"
    );
    let late: Vec<_> = records
        .iter()
        .filter(|r| r.host == "w1" && r.end > cut + 0.005)
        .collect();
    assert!(
        late.is_empty(),
        "recorded as w1's though they ended after its link was cut at {cut:.3}: {late:?}"
    );

    // The jobs w1 had started and could not report were taken over by w2
    // or w3: recorded as theirs, and run there again (at least once).
    let redelivered: Vec<u64> = started_on_w1
        .iter()
        .copied()
        .filter(|s| by_seq[s][0].host != "w1")
        .collect();
    assert!(
        !redelivered.is_empty(),
        "w1 had started {started_on_w1:?} when its link was cut, yet all are recorded as w1's: nothing was redelivered"
    );
    let reran = markers(Path::new(&ran));
    for seq in &redelivered {
        let host = &by_seq[seq][0].host;
        assert!(
            host == "w2" || host == "w3",
            "job {seq}, cut off on w1, is recorded by {host}"
        );
        assert!(
            reran.iter().any(|(s, w)| s == seq && w == host),
            "job {seq} is recorded by {host}, which never started it"
        );
    }
    let after_cut = records
        .iter()
        .filter(|r| r.host != "w1" && r.end > cut)
        .count();
    eprintln!(
        "w1 had started {started_on_w1:?} at the cut; {on_w1} recorded as w1's; redelivered \
         and recorded by w2/w3: {redelivered:?}; {after_cut} jobs recorded by w2/w3 ended \
         after the cut; the run finished {:.1} s after the cut",
        finished_after.as_secs_f64()
    );
}
