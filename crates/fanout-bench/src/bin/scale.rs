//! Scale benchmarks of fanout: memory that stays flat with the number of tasks, fail-fast
//! latency with 10,000 tasks in flight, CPU-bound work against rayon and
//! `std::thread::scope`, and linear growth of the run time.
//!
//! ```text
//! cargo build --release -p fanout-bench --bin scale
//! B=target/release/scale
//! $B memory                        # the whole matrix, one child process per run
//! $B memory --n 10000000 [--leaky] [--blocking] [--limit 64]   # one process
//! $B failfast [--reps 100]         # async: 10,000 tokio tasks sleeping 1 s
//! $B failfast --blocking [--secs 120] [--tasks 10000]   # threads polling the token
//! $B failfast --floor [--tasks 256]   # the same with bare scoped threads, no fanout
//! $B cpu [--reps 11]               # 10^6 x ~1 us and 10^4 x ~50 us vs rayon
//! $B linear [--reps 31]            # time(2*10^5) / time(10^5)
//! ```
//!
//! Async runs use a multi-thread tokio runtime with 2 workers (the project's
//! machine has 2 cores) and the caller runs inside a `tokio::spawn`ed task,
//! as a library user's code would. Blocking runs need no
//! runtime.
//!
//! Every section first waits (at most a minute, unless `--no-wait`) until
//! other processes use less than 8 % of the machine over 300 ms, then prints
//! the 1-minute load average at its start and the share of the machine's CPU
//! time that other processes used while it ran (from `/proc`).

use std::collections::HashSet;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fanout::{fan_out, Order};
use fanout_bench::load::{Load, LoadMeter};
use fanout_bench::{checksum, cpu_task as work, splitmix64, task as trivial, TaskErr as Boom};
use rayon::prelude::*;
use tokio::runtime::Runtime;

/// Worker threads of the async runtime.
const WORKERS: usize = 2;
/// The limit of the streamed (memory) and linear async runs.
const LIMIT: usize = 64;
/// Tasks in flight in the fail-fast benchmark.
const FAILFAST_TASKS: usize = 10_000;
/// How long every fail-fast task would run if nothing stopped it
/// (`--task-secs` changes it).
const TASK_RUN: Duration = Duration::from_secs(1);
/// How often a blocking fail-fast closure polls its token.
const POLL: Duration = Duration::from_millis(1);

/// Command-line options shared by the subcommands.
#[derive(Debug, Default)]
struct Opts {
    n: Option<u64>,
    leaky: bool,
    blocking: bool,
    reps: Option<usize>,
    runs: Option<usize>,
    limit: Option<usize>,
    tasks: Option<usize>,
    secs: Option<f64>,
    task_secs: Option<f64>,
    floor: bool,
    no_wait: bool,
    max_wait: Option<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        usage("missing subcommand")
    };
    let opts = parse(&args[1..]);
    match cmd.as_str() {
        "memory" => match opts.n {
            Some(n) => memory_one(n, &opts),
            None => memory_matrix(&opts),
        },
        "failfast" => failfast(&opts),
        "cpu" => cpu(&opts),
        "linear" => linear(&opts),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
        }
        other => usage(&format!("unknown subcommand {other}")),
    }
}

const USAGE: &str = "usage: scale memory [--n N] [--leaky] [--blocking] [--limit L] [--runs R]
       scale failfast [--blocking] [--reps R] [--secs S] [--tasks T] [--task-secs S] [--floor]
       scale cpu [--reps R]
       scale linear [--reps R]
common: --no-wait (do not wait for a quiet machine), --max-wait S (wait at most S s; default 60)";

/// Prints `msg` and the usage, then exits with status 2.
fn usage(msg: &str) -> ! {
    eprintln!("scale: {msg}\n{USAGE}");
    std::process::exit(2)
}

/// Parses the options after the subcommand.
fn parse(args: &[String]) -> Opts {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
                .clone()
        };
        match a.as_str() {
            "--n" => o.n = Some(num(&value()) as u64),
            "--reps" => o.reps = Some(num(&value()) as usize),
            "--runs" => o.runs = Some(num(&value()) as usize),
            "--limit" => o.limit = Some(num(&value()) as usize),
            "--tasks" => o.tasks = Some(num(&value()) as usize),
            "--secs" => o.secs = Some(num(&value())),
            "--task-secs" => o.task_secs = Some(num(&value())),
            "--leaky" => o.leaky = true,
            "--blocking" => o.blocking = true,
            "--floor" => o.floor = true,
            "--no-wait" => o.no_wait = true,
            "--max-wait" => o.max_wait = Some(num(&value())),
            other => usage(&format!("unknown option {other}")),
        }
    }
    o
}

/// A number, also written as `1e7` or `10_000_000`.
fn num(s: &str) -> f64 {
    s.replace('_', "")
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .unwrap_or_else(|| usage(&format!("not a number: {s}")))
}

/// The async runtime: multi-thread, [`WORKERS`] workers, timers on.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Runs `fut` inside a `tokio::spawn`ed task on `rt` (the caller is a
/// worker task, as a server handler would be).
fn in_worker<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("bench task panicked") })
}

// ---------------------------------------------------------------- memory

/// One memory run in this process: N items through a stream (async) or
/// `for_each_blocking` (blocking), folded into a sum (or kept in a set with
/// `--leaky`). Prints a human line and a `RESULT` line for the matrix.
fn memory_one(n: u64, o: &Opts) {
    let limit = o.limit.unwrap_or(LIMIT);
    let hwm_before = vm_kib("VmHWM");
    let (wall, sum, kept, hwm_after_runtime) = if o.blocking {
        memory_blocking(n, limit, o.leaky)
    } else {
        memory_async(n, limit, o.leaky)
    };
    let hwm = vm_kib("VmHWM");
    let expected = (0..n).fold(0u64, |s, i| s.wrapping_add(splitmix64(i)));
    assert_eq!(
        sum, expected,
        "the fold's sum differs from the sequential one"
    );
    let mode = if o.blocking { "blocking" } else { "async" };
    let rate = n as f64 / wall.as_secs_f64();
    println!(
        "memory: mode={mode} leaky={} limit={limit} n={n} wall={:.3} s throughput={:.0} items/s \
         ({:.1} ns/item) peak RSS (VmHWM)={:.1} MiB (at start {:.1} MiB, after setup {:.1} MiB) \
         kept={kept} sum ok",
        o.leaky,
        wall.as_secs_f64(),
        rate,
        wall.as_nanos() as f64 / n as f64,
        hwm as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        hwm_after_runtime as f64 / 1024.0,
    );
    println!(
        "RESULT mode={mode} leaky={} n={n} wall_ns={} hwm_kib={hwm}",
        o.leaky,
        wall.as_nanos()
    );
}

/// Async: `fan_out(0..n).limit(limit).stream(Order::Completion, ..)`.
/// Returns the wall time, the sum, the number of results kept and the
/// VmHWM after the runtime was built.
fn memory_async(n: u64, limit: usize, leaky: bool) -> (Duration, u64, usize, u64) {
    let rt = runtime();
    // Let the workers start before taking the baseline.
    in_worker(&rt, async {});
    let after_setup = vm_kib("VmHWM");
    let (wall, sum, kept) = in_worker(&rt, async move {
        let started = Instant::now();
        let mut results = fan_out(0..n)
            .limit(limit)
            .stream(Order::Completion, |_ctx, i| async move { trivial(i) });
        let mut sum = 0u64;
        let mut kept = leaky.then(HashSet::new);
        while let Some((_index, outcome)) = results.next().await {
            let v = outcome.expect("the trivial task never fails");
            sum = sum.wrapping_add(v);
            if let Some(set) = &mut kept {
                set.insert(v);
            }
        }
        let wall = started.elapsed();
        (wall, sum, kept.map_or(0, |s| s.len()))
    });
    (wall, sum, kept, after_setup)
}

/// Blocking: `fan_out(0..n).limit(limit).for_each_blocking(..)`.
fn memory_blocking(n: u64, limit: usize, leaky: bool) -> (Duration, u64, usize, u64) {
    let after_setup = vm_kib("VmHWM");
    let started = Instant::now();
    let mut sum = 0u64;
    let mut kept = leaky.then(HashSet::new);
    let stop = fan_out(0..n).limit(limit).for_each_blocking(
        |_ctx, i| trivial(i),
        |_index, outcome| {
            let v = outcome.expect("the trivial task never fails");
            sum = sum.wrapping_add(v);
            if let Some(set) = &mut kept {
                set.insert(v);
            }
            ControlFlow::Continue(())
        },
    );
    let wall = started.elapsed();
    assert!(stop.is_none(), "the run stopped early: {stop:?}");
    (wall, sum, kept.map_or(0, |s| s.len()), after_setup)
}

/// A `Vm*` field of `/proc/self/status`, in KiB.
fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The memory matrix: every variant at N = 10^6 and 10^7, each run in its
/// own child process, runs interleaved; medians and the 10^7 / 10^6 ratio.
fn memory_matrix(o: &Opts) {
    let runs = o.runs.unwrap_or(3);
    let limit = o.limit.unwrap_or(LIMIT);
    let sizes = [1_000_000u64, 10_000_000];
    // (blocking, leaky)
    let variants = [(false, false), (false, true), (true, false)];
    let exe = std::env::current_exe().expect("current exe");
    let waited = quiet(o);
    let meter = LoadMeter::start();
    // results[variant][size] = (wall_ns, hwm_kib) per run
    let mut results = vec![vec![Vec::new(); sizes.len()]; variants.len()];
    for run in 0..runs {
        for (vi, &(blocking, leaky)) in variants.iter().enumerate() {
            for (si, &n) in sizes.iter().enumerate() {
                let mut cmd = Command::new(&exe);
                cmd.args([
                    "memory",
                    "--n",
                    &n.to_string(),
                    "--limit",
                    &limit.to_string(),
                ]);
                if blocking {
                    cmd.arg("--blocking");
                }
                if leaky {
                    cmd.arg("--leaky");
                }
                let out = cmd.output().expect("run child");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "child failed: {text}");
                let line = text
                    .lines()
                    .find(|l| l.starts_with("RESULT "))
                    .expect("RESULT line");
                let field = |k: &str| -> u64 {
                    line.split_whitespace()
                        .find_map(|f| f.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                        .expect("field")
                };
                let (wall, hwm) = (field("wall_ns"), field("hwm_kib"));
                eprintln!(
                    "run {run}: blocking={blocking} leaky={leaky} n={n}: {:.3} s, {:.1} MiB",
                    wall as f64 / 1e9,
                    hwm as f64 / 1024.0
                );
                results[vi][si].push((wall, hwm));
            }
        }
    }
    let load = meter.finish();
    println!(
        "\n### Memory: N items streamed, limit {limit}, results folded \
         ({runs} processes per cell, medians; {})\n",
        describe(&load, waited)
    );
    println!(
        "| variant | N | wall s | throughput items/s | ns/item | peak RSS MiB (median) | \
         all runs MiB | 10^7 / 10^6 peak RSS | target ≤ 1.05 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (vi, &(blocking, leaky)) in variants.iter().enumerate() {
        let name = format!(
            "{}{}",
            if blocking {
                "for_each_blocking"
            } else {
                "stream(Completion)"
            },
            if leaky { " + leaky set" } else { "" }
        );
        let hwm_med: Vec<f64> = results[vi]
            .iter()
            .map(|r| median(&r.iter().map(|x| x.1 as f64).collect::<Vec<_>>()))
            .collect();
        let ratio = hwm_med[1] / hwm_med[0];
        for (si, &n) in sizes.iter().enumerate() {
            let wall = median(
                &results[vi][si]
                    .iter()
                    .map(|x| x.0 as f64)
                    .collect::<Vec<_>>(),
            );
            let all: Vec<String> = results[vi][si]
                .iter()
                .map(|x| format!("{:.1}", x.1 as f64 / 1024.0))
                .collect();
            let (ratio_cell, verdict) = if si == 1 {
                let v = if leaky {
                    "(leaky: must grow)".to_string()
                } else {
                    met(ratio <= 1.05).to_string()
                };
                (format!("{ratio:.3}"), v)
            } else {
                (String::new(), String::new())
            };
            println!(
                "| {name} | {n} | {:.3} | {:.0} | {:.1} | {:.1} | {} | {ratio_cell} | {verdict} |",
                wall / 1e9,
                n as f64 / (wall / 1e9),
                wall / n as f64,
                hwm_med[si] / 1024.0,
                all.join(", "),
            );
        }
    }
}

// -------------------------------------------------------------- failfast

/// What the tasks of one fail-fast run report.
#[derive(Debug, Default)]
struct Probe {
    /// Task bodies that have started.
    started: AtomicUsize,
    /// Task bodies alive (started, not yet returned or dropped).
    live: AtomicUsize,
    /// Task bodies that ran their full second.
    completed: AtomicUsize,
    /// Tasks alive when the failing task returned its error.
    live_at_failure: AtomicUsize,
    /// When the failing task returned its error.
    failed_at: Mutex<Option<Instant>>,
    /// When the live count last dropped to zero.
    all_gone_at: Mutex<Option<Instant>>,
}

impl Probe {
    fn enter(&self) -> LiveGuard<'_> {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self)
    }

    fn gone_since(&self, failed_at: Instant) -> Duration {
        self.all_gone_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(failed_at))
    }

    fn fail_now(&self) {
        self.live_at_failure
            .store(self.live.load(Ordering::Acquire), Ordering::Release);
        *self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}

/// Decrements [`Probe::live`] when a task body returns or is dropped.
#[derive(Debug)]
struct LiveGuard<'a>(&'a Probe);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .all_gone_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

/// One fail-fast rep's figures.
#[derive(Debug, Clone, Copy)]
struct Rep {
    /// From the failing task's timestamp to the caller holding the error.
    latency: Duration,
    /// Tasks alive right after the run returned.
    live_at_return: usize,
    /// Tasks alive when the failing task returned its error.
    live_at_failure: usize,
    /// Tasks that started.
    started: usize,
    /// Tasks that ran their full second.
    completed: usize,
    /// From the call to the failure.
    to_failure: Duration,
    /// From the failure to the moment the last task body returned or was
    /// dropped (the rest of `latency` is the run's own wind-down).
    to_all_gone: Duration,
}

/// The fail-fast benchmark: `tasks` tasks in flight that would each run
/// for a second (`--task-secs`); the last one to start fails once all have started.
fn failfast(o: &Opts) {
    let tasks = o.tasks.unwrap_or(FAILFAST_TASKS);
    let run_for = o.task_secs.map_or(TASK_RUN, Duration::from_secs_f64);
    let waited = quiet(o);
    let meter = LoadMeter::start();
    let mut reps = Vec::new();
    let started = Instant::now();
    let label;
    if o.blocking || o.floor {
        label = if o.floor {
            format!(
                "floor without fanout: std::thread::scope, {tasks} threads, closures of {:.0} s \
                 polling an AtomicBool every 1 ms",
                run_for.as_secs_f64()
            )
        } else {
            format!(
                "run_blocking, limit({tasks}) = {tasks} threads, closures of {:.0} s polling \
                 is_cancelled every 1 ms",
                run_for.as_secs_f64()
            )
        };
        let budget = Duration::from_secs_f64(o.secs.unwrap_or(120.0));
        let max_reps = o.reps.unwrap_or(usize::MAX);
        // No warm-up: every rep creates its threads afresh anyway. At least
        // one rep, however long it takes.
        while reps.is_empty() || (started.elapsed() < budget && reps.len() < max_reps) {
            let rep = if o.floor {
                failfast_floor(tasks, run_for)
            } else {
                failfast_blocking(tasks, run_for)
            };
            eprintln!("rep {}: {rep:?}", reps.len());
            reps.push(rep);
        }
    } else {
        label = format!(
            "run, limit({tasks}), tasks awaiting tokio::time::sleep({:.0} s)",
            run_for.as_secs_f64()
        );
        let rt = runtime();
        let n = o.reps.unwrap_or(100);
        failfast_async(&rt, tasks, run_for);
        for _ in 0..n {
            reps.push(failfast_async(&rt, tasks, run_for));
            // Let the runtime settle between reps.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let load = meter.finish();
    let mut ms: Vec<f64> = reps.iter().map(|r| r.latency.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let p50 = percentile(&ms, 0.50);
    let p99 = percentile(&ms, 0.99);
    let max_live = reps.iter().map(|r| r.live_at_return).max().unwrap_or(0);
    let min_live_fail = reps.iter().map(|r| r.live_at_failure).min().unwrap_or(0);
    let completed: usize = reps.iter().map(|r| r.completed).sum();
    let min_started = reps.iter().map(|r| r.started).min().unwrap_or(0);
    let to_fail_max = reps
        .iter()
        .map(|r| r.to_failure.as_secs_f64() * 1e3)
        .fold(0.0, f64::max);
    let gone = median(
        &reps
            .iter()
            .map(|r| r.to_all_gone.as_secs_f64() * 1e3)
            .collect::<Vec<_>>(),
    );
    let to_fail = median(
        &reps
            .iter()
            .map(|r| r.to_failure.as_secs_f64() * 1e3)
            .collect::<Vec<_>>(),
    );
    println!(
        "\n### Fail-fast: {tasks} tasks, {label} ({} reps in {:.0} s; {})\n",
        reps.len(),
        started.elapsed().as_secs_f64(),
        describe(&load, waited)
    );
    println!(
        "| mode | tasks | reps | p50 ms | p99 ms | max ms | target p99 < 5 ms | \
         started (min) | tasks alive at failure (min) | alive after return (max) | \
         ran to the end (all reps) | failure to last task gone ms (median) | \
         call to failure ms (median, max) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {tasks} | {} | {p50:.2} | {p99:.2} | {:.2} | {} | {min_started} | {min_live_fail} | \
         {max_live} | {completed} | {gone:.2} | {to_fail:.0}, {to_fail_max:.0} |",
        if o.floor {
            "thread::scope floor"
        } else if o.blocking {
            "blocking"
        } else {
            "async"
        },
        reps.len(),
        ms.last().copied().unwrap_or(f64::NAN),
        met(p99 < 5.0),
    );
    println!(
        "\nall latencies ms (sorted): {}",
        ms.iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// One async rep, the caller inside a worker task.
fn failfast_async(rt: &Runtime, tasks: usize, run_for: Duration) -> Rep {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let last = tasks - 1;
    in_worker(rt, async move {
        let call = Instant::now();
        let probe = p.clone();
        let result = fan_out(0..tasks).limit(tasks).run(move |_ctx, i| {
            let p = p.clone();
            async move {
                let _live = p.enter();
                if i == last {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while p.started.load(Ordering::Acquire) < tasks {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    p.fail_now();
                    return Err(Boom);
                }
                tokio::time::sleep(run_for).await;
                p.completed.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
        });
        let result = result.await;
        let returned = Instant::now();
        let live_at_return = probe.live.load(Ordering::Acquire);
        let err = result.expect_err("the run must fail");
        assert_eq!(err.key(), Some(&last), "wrong root cause: {err:?}");
        let failed_at = probe
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expect("failure time");
        Rep {
            latency: returned.saturating_duration_since(failed_at),
            live_at_return,
            live_at_failure: probe.live_at_failure.load(Ordering::Acquire),
            started: probe.started.load(Ordering::Acquire),
            completed: probe.completed.load(Ordering::Acquire),
            to_failure: failed_at - call,
            to_all_gone: probe.gone_since(failed_at),
        }
    })
}

/// The body of a blocking fail-fast closure: polls `cancelled` every
/// millisecond for up to `run_for`; the closure of the last input fails ~10
/// ms after every closure has started (`on_fail` runs right after the
/// failure's timestamp).
fn blocking_body(
    probe: &Probe,
    i: usize,
    tasks: usize,
    run_for: Duration,
    cancelled: impl Fn() -> bool,
    on_fail: impl FnOnce(),
) -> Result<bool, Boom> {
    let _live = probe.enter();
    let begin = Instant::now();
    if i == tasks - 1 {
        while probe.started.load(Ordering::Acquire) < tasks && begin.elapsed() < run_for * 30 {
            std::thread::sleep(POLL);
        }
        std::thread::sleep(Duration::from_millis(10));
        probe.fail_now();
        on_fail();
        return Err(Boom);
    }
    loop {
        if cancelled() {
            return Ok(false);
        }
        if begin.elapsed() >= run_for {
            probe.completed.fetch_add(1, Ordering::AcqRel);
            return Ok(true);
        }
        std::thread::sleep(POLL);
    }
}

/// The figures of a finished blocking rep.
fn blocking_rep(probe: &Probe, call: Instant, returned: Instant) -> Rep {
    let live_at_return = probe.live.load(Ordering::Acquire);
    let failed_at = probe
        .failed_at
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expect("failure time");
    Rep {
        latency: returned.saturating_duration_since(failed_at),
        live_at_return,
        live_at_failure: probe.live_at_failure.load(Ordering::Acquire),
        started: probe.started.load(Ordering::Acquire),
        completed: probe.completed.load(Ordering::Acquire),
        to_failure: failed_at - call,
        to_all_gone: probe.gone_since(failed_at),
    }
}

/// One blocking rep: fanout's `run_blocking` with `limit(tasks)`, so
/// `tasks` threads, each closure polling `is_cancelled` every millisecond.
fn failfast_blocking(tasks: usize, run_for: Duration) -> Rep {
    let probe = Probe::default();
    let call = Instant::now();
    let result = fan_out(0..tasks).limit(tasks).run_blocking(|ctx, i| {
        blocking_body(&probe, i, tasks, run_for, || ctx.is_cancelled(), || {})
    });
    let returned = Instant::now();
    let rep = blocking_rep(&probe, call, returned);
    let err = result.expect_err("the run must fail");
    assert_eq!(err.key(), Some(&(tasks - 1)), "wrong root cause: {err:?}");
    rep
}

/// The floor of [`failfast_blocking`] without fanout: one scoped thread per
/// task (`std::thread::scope`), polling a shared `AtomicBool` that the
/// failing closure sets; the caller joins every thread in order.
fn failfast_floor(tasks: usize, run_for: Duration) -> Rep {
    let probe = Probe::default();
    let stop = AtomicBool::new(false);
    let call = Instant::now();
    let failed = std::thread::scope(|s| {
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let (probe, stop) = (&probe, &stop);
                s.spawn(move || {
                    blocking_body(
                        probe,
                        i,
                        tasks,
                        run_for,
                        || stop.load(Ordering::Acquire),
                        || stop.store(true, Ordering::Release),
                    )
                })
            })
            .collect();
        let mut failed = None;
        for (i, h) in handles.into_iter().enumerate() {
            if let Err(e) = h.join().expect("closure panicked") {
                failed.get_or_insert((i, e));
            }
        }
        failed
    });
    let returned = Instant::now();
    let rep = blocking_rep(&probe, call, returned);
    assert_eq!(failed, Some((tasks - 1, Boom)), "wrong failure");
    rep
}

// ------------------------------------------------------------------- cpu

/// The ways of running CPU-bound items compared by `scale cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cpu {
    Sequential,
    Fanout,
    Rayon,
    Scope2,
}

impl Cpu {
    const ALL: [Cpu; 4] = [Cpu::Sequential, Cpu::Fanout, Cpu::Rayon, Cpu::Scope2];

    fn name(self) -> &'static str {
        match self {
            Cpu::Sequential => "sequential loop",
            Cpu::Fanout => "fanout run_blocking (default limit)",
            Cpu::Rayon => "rayon par_iter().map().collect::<Result<Vec<_>,_>>()",
            Cpu::Scope2 => "std::thread::scope, 2 chunks",
        }
    }

    /// Runs `n` items of `rounds` rounds; the results in input order.
    fn run(self, n: u64, rounds: u32) -> Vec<u64> {
        let out: Result<Vec<u64>, Boom> = match self {
            Cpu::Sequential => (0..n).map(|i| work(i, rounds)).collect(),
            Cpu::Fanout => fan_out(0..n)
                .run_blocking(|_ctx, i| work(i, rounds))
                .map_err(|_| Boom),
            Cpu::Rayon => (0..n).into_par_iter().map(|i| work(i, rounds)).collect(),
            Cpu::Scope2 => {
                let mid = n / 2;
                std::thread::scope(|s| {
                    let a = s.spawn(|| (0..mid).map(|i| work(i, rounds)).collect());
                    let b: Result<Vec<u64>, Boom> = (mid..n).map(|i| work(i, rounds)).collect();
                    let a: Result<Vec<u64>, Boom> = a.join().expect("chunk panicked");
                    let mut a = a?;
                    a.extend(b?);
                    Ok(a)
                })
            }
        };
        out.expect("the CPU task never fails")
    }
}

/// splitmix64 rounds per nanosecond on this machine (the best of 7 timings
/// of 2,000 items of 10,000 rounds).
fn calibrate() -> f64 {
    let rounds = 10_000u32;
    let items = 2_000u64;
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let t = Instant::now();
        for i in 0..items {
            black_box(work(i, rounds).ok());
        }
        best = best.min(t.elapsed().as_nanos() as f64);
    }
    f64::from(rounds) * items as f64 / best
}

/// CPU-bound items: fanout's blocking run against rayon, scoped threads
/// and a sequential loop, interleaved in one process.
fn cpu(o: &Opts) {
    let reps = o.reps.unwrap_or(11);
    let waited = quiet(o);
    let rate = calibrate();
    let r1 = (rate * 1_000.0).round() as u32;
    let r50 = (rate * 50_000.0).round() as u32;
    println!(
        "calibration: {:.1} splitmix64 rounds per µs → {r1} rounds ≈ 1 µs, {r50} rounds ≈ 50 µs; \
         rayon threads {}, available_parallelism {}",
        rate * 1_000.0,
        rayon::current_num_threads(),
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
    );
    for (label, n, rounds) in [("~1 µs", 1_000_000u64, r1), ("~50 µs", 10_000u64, r50)] {
        let meter = LoadMeter::start();
        let reference = checksum(&Cpu::Sequential.run(n, rounds));
        // Warm-up of every variant (and checksum check).
        for v in Cpu::ALL {
            assert_eq!(
                checksum(&v.run(n, rounds)),
                reference,
                "{} differs",
                v.name()
            );
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); Cpu::ALL.len()];
        for rep in 0..reps {
            for k in 0..Cpu::ALL.len() {
                // Rotate the order every rep.
                let vi = (k + rep) % Cpu::ALL.len();
                let t = Instant::now();
                let out = Cpu::ALL[vi].run(n, rounds);
                let el = t.elapsed().as_nanos() as f64;
                black_box(&out);
                drop(out);
                times[vi].push(el / n as f64);
            }
        }
        let load = meter.finish();
        let med: Vec<f64> = times.iter().map(|t| median(t)).collect();
        let fan = Cpu::ALL.iter().position(|&v| v == Cpu::Fanout).unwrap_or(1);
        let ray = Cpu::ALL.iter().position(|&v| v == Cpu::Rayon).unwrap_or(2);
        let seq = med[0];
        let paired: Vec<f64> = times[fan]
            .iter()
            .zip(&times[ray])
            .map(|(f, r)| f / r)
            .collect();
        println!(
            "\n### CPU: {n} items of {label} ({rounds} rounds), {reps} reps interleaved, \
             median ns/item ({})\n",
            describe(&load, waited)
        );
        println!("| variant | ns/item median | min | speed-up vs sequential | / rayon |");
        println!("|---|---|---|---|---|");
        for (vi, v) in Cpu::ALL.iter().enumerate() {
            let min = times[vi].iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "| {} | {:.1} | {:.1} | {:.2}× | {:.3} |",
                v.name(),
                med[vi],
                min,
                seq / med[vi],
                med[vi] / med[ray]
            );
        }
        let ratio = med[fan] / med[ray];
        println!(
            "\nfanout / rayon: {ratio:.3} (ratio of medians), {:.3} (median of per-rep ratios); \
             target ≤ 1.1: {}",
            median(&paired),
            met(ratio <= 1.1)
        );
    }
}

// ---------------------------------------------------------------- linear

/// time(2·10^5 tasks) / time(10^5 tasks) for the async `run` (limit 64)
/// and for `run_blocking` (default limit), trivial tasks, interleaved.
fn linear(o: &Opts) {
    let reps = o.reps.unwrap_or(31);
    let sizes = [100_000u64, 200_000];
    let waited = quiet(o);
    let meter = LoadMeter::start();
    let rt = runtime();
    let reference: Vec<u64> = sizes
        .iter()
        .map(|&n| checksum(&(0..n).map(|i| trivial(i).unwrap_or(0)).collect::<Vec<_>>()))
        .collect();
    let run_async = |n: u64| -> (f64, u64) {
        in_worker(&rt, async move {
            let t = Instant::now();
            let out = fan_out(0..n)
                .limit(LIMIT)
                .run(|_ctx, i| async move { trivial(i) })
                .await
                .expect("trivial task never fails");
            let el = t.elapsed().as_nanos() as f64;
            (el, checksum(&out))
        })
    };
    let run_blocking = |n: u64| -> (f64, u64) {
        let t = Instant::now();
        let out = fan_out(0..n)
            .run_blocking(|_ctx, i| trivial(i))
            .expect("trivial task never fails");
        let el = t.elapsed().as_nanos() as f64;
        (el, checksum(&out))
    };
    // [mode][size] -> times
    let mut times = vec![vec![Vec::new(); sizes.len()]; 2];
    for rep in 0..=reps {
        for k in 0..4 {
            let slot = (k + rep) % 4;
            let (mode, si) = (slot / 2, slot % 2);
            let (el, sum) = if mode == 0 {
                run_async(sizes[si])
            } else {
                run_blocking(sizes[si])
            };
            assert_eq!(sum, reference[si], "checksum differs");
            if rep > 0 {
                times[mode][si].push(el);
            }
        }
    }
    let load = meter.finish();
    println!(
        "\n### Linear growth: trivial tasks, {reps} reps interleaved, medians ({})\n",
        describe(&load, waited)
    );
    println!(
        "| run | 10^5 ms | 2·10^5 ms | ns/task at 10^5 | ns/task at 2·10^5 | \
         ratio of medians | median of per-rep ratios | target ≤ 2.2 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (mode, name) in ["async run, limit 64", "run_blocking, default limit"]
        .iter()
        .enumerate()
    {
        let a = median(&times[mode][0]);
        let b = median(&times[mode][1]);
        let paired: Vec<f64> = times[mode][1]
            .iter()
            .zip(&times[mode][0])
            .map(|(y, x)| y / x)
            .collect();
        println!(
            "| {name} | {:.2} | {:.2} | {:.1} | {:.1} | {:.3} | {:.3} | {} |",
            a / 1e6,
            b / 1e6,
            a / sizes[0] as f64,
            b / sizes[1] as f64,
            b / a,
            median(&paired),
            met(b / a <= 2.2)
        );
    }
}

// ----------------------------------------------------------------- stats

/// The median (mean of the two middle values for an even count).
fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 0 {
        (s[m - 1] + s[m]) / 2.0
    } else {
        s[m]
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

// ------------------------------------------------------------------ load

/// The longest [`quiet`] waits unless `--max-wait` says otherwise.
const QUIET_MAX_WAIT: Duration = Duration::from_secs(60);
/// Waits until the machine is quiet, at most [`QUIET_MAX_WAIT`] or
/// `--max-wait` (not at all with `--no-wait`); returns the time waited and
/// whether the machine got quiet.
fn quiet(o: &Opts) -> Option<(Duration, bool)> {
    if o.no_wait {
        return None;
    }
    Some(fanout_bench::load::wait_quiet(
        o.max_wait.map_or(QUIET_MAX_WAIT, Duration::from_secs_f64),
    ))
}

/// The load line printed with every table.
fn describe(load: &Load, waited: Option<(Duration, bool)>) -> String {
    let wait = match waited {
        None => "did not wait for a quiet machine".to_string(),
        Some((d, false)) => {
            format!("waited {:.0} s, gave up: not quiet", d.as_secs_f64())
        }
        Some((d, true)) => format!("waited {:.1} s for a quiet machine", d.as_secs_f64()),
    };
    format!(
        "{wait}; load avg {:.2} at start; other processes {:.0} % of the machine's CPU",
        load.loadavg_start,
        load.foreign * 100.0
    )
}
