//! The distributed mode's benchmark: throughput of tiny tasks against the
//! raw Redis floor, Redis CPU per task, fail-fast latency to remote
//! workers, and the task codec.
//!
//! `cargo build --release -p fanout-redis-tests --bins && ./target/release/redis-bench`
//! (`--quick` for a short run; `--sizes 10000,100000 --workers 1,2,4`).
//! Starts its own `redis-server` on a loopback port (no persistence), and
//! its workers as processes (`fanout-test-worker`, beside this binary).
//!
//! The floor is the same work done with no fanout code: batched `XADD` of
//! the tasks, workers that `XREADGROUP` batches and answer each with an
//! `XADD` to a results stream and an `XACK`/`XDEL` (one pipeline per
//! batch), and a reader that tails the results. It keeps as many tasks
//! outstanding as the fanout run's limit.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fanout_redis::{Coordinator, RedisBroker};
use fanout_redis_tests::handler::{executions, Job, JOB};
use fanout_redis_tests::server::RedisServer;
use redis::aio::MultiplexedConnection;
use redis::Value;

/// Tasks outstanding at once, for fanout (its limit) and the floor.
const OUTSTANDING: usize = 8192;
/// A worker's limit, in both.
const WORKER_LIMIT: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("floor-worker") {
        let url = args.get(1).expect("floor-worker URL");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(floor_worker(url));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // For profiling: fanout's throughput only.
    let only_fanout = args.iter().any(|a| a == "--only-fanout");
    let list = |flag: &str, default: &[usize]| -> Vec<usize> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.split(',').map(|x| x.parse().expect("a number")).collect())
            .unwrap_or_else(|| default.to_vec())
    };
    let sizes = list(
        "--sizes",
        if quick { &[10_000] } else { &[10_000, 100_000] },
    );
    let workers = list("--workers", if quick { &[1, 2] } else { &[1, 2, 4] });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        codec();
        let dir = tempfile::tempdir().unwrap();
        // `--appendfsync everysec|always`: Redis with AOF on.
        let fsync = args
            .iter()
            .position(|a| a == "--appendfsync")
            .and_then(|i| args.get(i + 1));
        let server = match fsync {
            Some(mode) => RedisServer::start(
                dir.path(),
                &["--appendonly", "yes", "--appendfsync", mode],
            ),
            None => RedisServer::start(dir.path(), &["--appendonly", "no"]),
        };
        match fsync {
            Some(mode) => println!(
                "\n## Throughput (tiny tasks; Redis with AOF, appendfsync {mode}, loopback)\n"
            ),
            None => println!("\n## Throughput (tiny tasks; Redis without persistence, loopback)\n"),
        }
        println!("CPU in µs per task: Redis / coordinator / workers.\n");
        println!("| tasks | workers | fanout tasks/s | floor tasks/s | fanout / floor | CPU fanout | CPU floor |");
        println!("|---:|---:|---:|---:|---:|---|---|");
        for &n in &sizes {
            for &w in &workers {
                let f = fanout_throughput(&server, n, w).await;
                if only_fanout {
                    println!("| {n} | {w} | {:.0} | | | {:.1} / {:.1} / {:.1} | |", f.0, f.1, f.2, f.3);
                    continue;
                }
                let r = floor_throughput(&server, n, w).await;
                println!(
                    "| {n} | {w} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} |",
                    f.0,
                    r.0,
                    f.0 / r.0,
                    f.1,
                    f.2,
                    f.3,
                    r.1,
                    r.2,
                    r.3
                );
            }
        }
        if only_fanout {
            return;
        }
        println!("\n## Fail-fast latency (1,000 tasks in flight on 4 workers)\n");
        fail_fast_latency(&server, if quick { 2 } else { 5 }).await;
    });
}

/// The test worker binary, beside this one.
fn worker_binary() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .with_file_name("fanout-test-worker")
}

/// Child processes, killed when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `n` test workers, and waits until each says it is ready.
fn start_workers(url: &str, n: usize, limit: usize, log: Option<&std::path::Path>) -> Procs {
    let mut procs = Vec::new();
    for i in 0..n {
        let mut cmd = Command::new(worker_binary());
        cmd.args(["--redis", url, "--id", &format!("bench-{i}")])
            .args(["--limit", &limit.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .expect("start fanout-test-worker (build it with --bins)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        procs.push(child);
    }
    Procs(procs)
}

/// The child is killed when the benchmark dies, however it dies.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child
    // before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// CPU time used so far by process `pid`, from `/proc`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Throughput, and CPU µs per task: Redis, the coordinator (this
/// process), the workers.
type Measured = (f64, f64, f64, f64);

fn cpu_of(procs: &Procs) -> Duration {
    procs.0.iter().map(|c| cpu_time(c.id())).sum()
}

async fn fanout_throughput(server: &RedisServer, n: usize, w: usize) -> Measured {
    let url = server.url();
    let workers = start_workers(&url, w, WORKER_LIMIT, None);
    let coordinator = Coordinator::new(RedisBroker::connect(&url).await.unwrap());
    // Warm-up: connections, scripts, consumer group.
    coordinator
        .fan_out((0..1000u64).map(Job::square))
        .limit(OUTSTANDING)
        .run(&JOB)
        .await
        .unwrap();
    let cpu0 = cpu_time(server.pid());
    let (me0, w0) = (cpu_time(std::process::id()), cpu_of(&workers));
    let t0 = Instant::now();
    let out = coordinator
        .fan_out((0..n as u64).map(Job::square))
        .limit(OUTSTANDING)
        .keep(Duration::from_secs(60))
        .run(&JOB)
        .await
        .unwrap();
    let took = t0.elapsed();
    let cpu = cpu_time(server.pid()) - cpu0;
    let (me, wk) = (cpu_time(std::process::id()) - me0, cpu_of(&workers) - w0);
    assert_eq!(out.len(), n);
    assert_eq!(out[n - 1], (n as u64 - 1).pow(2));
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    (n as f64 / took.as_secs_f64(), per(cpu), per(me), per(wk))
}

const FLOOR_Q: &str = "floor:q";
const FLOOR_RES: &str = "floor:res";

async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A floor worker: takes batches, answers each entry, acknowledges.
async fn floor_worker(url: &str) {
    let mut con = connect(url).await;
    let me = format!("c{}", std::process::id());
    println!("ready");
    loop {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg(&me)
            .arg("COUNT")
            .arg(WORKER_LIMIT)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(FLOOR_Q)
            .arg(">")
            .query_async(&mut con)
            .await
            .unwrap();
        let entries = stream_entries(&reply);
        if entries.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for (id, payload) in &entries {
            pipe.cmd("XADD")
                .arg(FLOOR_RES)
                .arg("*")
                .arg("r")
                .arg(payload)
                .ignore();
            pipe.cmd("XACK").arg(FLOOR_Q).arg("g").arg(id).ignore();
            pipe.cmd("XDEL").arg(FLOOR_Q).arg(id).ignore();
        }
        pipe.query_async::<()>(&mut con).await.unwrap();
    }
}

/// `(id, first field's value)` of each entry of an `XREAD`/`XREADGROUP`
/// reply for one stream.
fn stream_entries(reply: &Value) -> Vec<(String, Vec<u8>)> {
    fn items(v: &Value) -> Option<&[Value]> {
        match v {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let streams: Vec<&Value> = match reply {
        Value::Array(a) => a.iter().collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => return out,
    };
    for s in streams {
        let entries = match s {
            Value::Array(pair) if pair.len() == 2 => &pair[1],
            other => other,
        };
        for e in items(entries).unwrap_or(&[]) {
            if let Some([Value::BulkString(id), fields]) = items(e) {
                if let Some([_, Value::BulkString(v), ..]) = items(fields) {
                    out.push((String::from_utf8_lossy(id).into_owned(), v.clone()));
                }
            }
        }
    }
    out
}

async fn floor_throughput(server: &RedisServer, n: usize, w: usize) -> Measured {
    let url = server.url();
    let mut con = connect(&url).await;
    let _: () = redis::cmd("DEL")
        .arg(FLOOR_Q)
        .arg(FLOOR_RES)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(FLOOR_Q)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut procs = Vec::new();
    for _ in 0..w {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["floor-worker", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        procs.push(child);
    }
    let procs = Procs(procs);
    // The payload of a fanout task of the same work: its envelope's size.
    let payload = vec![7u8; envelope_size()];
    let cpu0 = cpu_time(server.pid());
    let (me0, w0) = (cpu_time(std::process::id()), cpu_of(&procs));
    let t0 = Instant::now();
    let mut reader = connect(&url).await;
    let (mut sent, mut got, mut last) = (0usize, 0usize, "0-0".to_owned());
    while got < n {
        // Keep OUTSTANDING tasks out, in batches of 512.
        while sent < n && sent - got < OUTSTANDING {
            let batch = (n - sent).min(512).min(OUTSTANDING - (sent - got));
            let mut pipe = redis::pipe();
            for _ in 0..batch {
                pipe.cmd("XADD")
                    .arg(FLOOR_Q)
                    .arg("*")
                    .arg("t")
                    .arg(&payload)
                    .ignore();
            }
            pipe.query_async::<()>(&mut con).await.unwrap();
            sent += batch;
        }
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(FLOOR_RES)
            .arg(&last)
            .query_async(&mut reader)
            .await
            .unwrap();
        let entries = stream_entries(&reply);
        if let Some((id, _)) = entries.last() {
            last.clone_from(id);
        }
        got += entries.len();
    }
    let took = t0.elapsed();
    let cpu = cpu_time(server.pid()) - cpu0;
    let (me, wk) = (cpu_time(std::process::id()) - me0, cpu_of(&procs) - w0);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    (n as f64 / took.as_secs_f64(), per(cpu), per(me), per(wk))
}

/// The encoded size of a tiny task's envelope, as fanout queues it:
/// the version, a 16-digit run id, index, attempt, type fingerprint,
/// no timeout, no trace, no signature, and the input.
fn envelope_size() -> usize {
    let input = postcard::to_allocvec(&Job::square(12_345)).unwrap();
    #[derive(serde::Serialize)]
    struct Shape<'a> {
        version: u8,
        run: &'a str,
        index: u64,
        attempt: u32,
        types: u64,
        timeout_ms: Option<u64>,
        traceparent: Option<String>,
        signature: Option<[u8; 32]>,
        payload: &'a [u8],
    }
    postcard::to_allocvec(&Shape {
        version: 1,
        run: "0123456789abcdef",
        index: 12_345,
        attempt: 1,
        types: u64::MAX / 3,
        timeout_ms: None,
        traceparent: None,
        signature: None,
        payload: &input,
    })
    .unwrap()
    .len()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn fail_fast_latency(server: &RedisServer, rounds: usize) {
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions");
    let _workers = start_workers(&url, 4, 250, Some(&log));
    let coordinator = Coordinator::new(RedisBroker::connect(&url).await.unwrap());
    let mut to_last = Vec::new();
    let mut to_return = Vec::new();
    for round in 0..rounds {
        let run = format!("failfast-{round}");
        let mut jobs: Vec<Job> = (0..1000u64).map(|i| Job::sleepy(i, 600_000)).collect();
        jobs[500] = Job {
            value: 500,
            sleep_ms: 1500,
            fail: true,
            ..Job::default()
        };
        let err = coordinator
            .fan_out(jobs)
            .id(run.clone())
            .limit(1000)
            .run(&JOB)
            .await
            .unwrap_err();
        let returned = now_ns();
        assert_eq!(err.key(), Some(&500));
        // Every other task was started, and must hear the cancellation.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (failed_at, last_cancel) = loop {
            let e = executions(&log);
            let mine: Vec<_> = e.iter().filter(|x| x.run == run).collect();
            let cancels: Vec<u128> = mine
                .iter()
                .filter(|x| x.what == "cancelled")
                .map(|x| x.at_ns)
                .collect();
            // Tasks still in a worker's buffer when the run was cancelled
            // are dropped unstarted; each one that started must stop.
            let started = mine.iter().filter(|x| x.what == "start").count();
            if cancels.len() + 1 == started {
                let failed = mine
                    .iter()
                    .find(|x| x.what == "end" && x.index == 500)
                    .unwrap()
                    .at_ns;
                break (failed, *cancels.iter().max().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "only {} of the {} started cancelled",
                cancels.len(),
                started - 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        to_last.push((last_cancel - failed_at) as f64 / 1e6);
        to_return.push((returned - failed_at) as f64 / 1e6);
    }
    let show = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "median {:.1} ms, max {:.1} ms ({} runs)",
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        )
    };
    println!(
        "- from the failure (its worker) to the last of the other tasks stopped on the 4 workers: {}",
        show(&mut to_last)
    );
    println!(
        "- from the failure to the coordinator's `run` returning the error: {}",
        show(&mut to_return)
    );
}

/// postcard (what fanout uses) against JSON, on the test job.
fn codec() {
    println!("## Codec (the task input `Job`, encode + decode)\n");
    let job = Job {
        value: 123_456,
        sleep_ms: 0,
        ..Job::default()
    };
    let rounds = 200_000u32;
    let t0 = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let b = postcard::to_allocvec(std::hint::black_box(&job)).unwrap();
        bytes = b.len();
        let back: Job = postcard::from_bytes(&b).unwrap();
        std::hint::black_box(back);
    }
    let post = t0.elapsed() / rounds;
    let t0 = Instant::now();
    let mut jbytes = 0;
    for _ in 0..rounds {
        let b = serde_json::to_vec(std::hint::black_box(&job)).unwrap();
        jbytes = b.len();
        let back: Job = serde_json::from_slice(&b).unwrap();
        std::hint::black_box(back);
    }
    let json = t0.elapsed() / rounds;
    println!("| format | bytes | ns per encode + decode |");
    println!("|---|---:|---:|");
    println!("| postcard | {bytes} | {} |", post.as_nanos());
    println!("| JSON (serde_json) | {jbytes} | {} |", json.as_nanos());
    println!(
        "\nA whole tiny task's envelope is {} bytes in postcard.",
        envelope_size()
    );
}
