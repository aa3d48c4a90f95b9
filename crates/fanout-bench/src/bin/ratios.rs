//! Interleaved ratios: every variant of [`fanout_bench::Variant`] run in one
//! process, round-robin (warm-up, then 21 / 11 / 7 reps for N = 10^4 / 10^5
//! / 10^6), medians taken, each run's checksum compared with the sequential
//! loop's. Prints markdown tables of ns/task and of the ratios fanout /
//! `JoinSet`+`Semaphore` and fanout / sequential, a parallelism check with
//! CPU-bound tasks, and fanout's cost under tracing subscribers (each
//! subscriber in its own child process, as the process-wide default,
//! children interleaved).
//!
//! ```text
//! cargo run --release -p fanout-bench --bin ratios
//! cargo run --release -p fanout-bench --bin ratios -- --sizes 10000,100000 --rounds 2
//! # only the interleaved table, for some variants (names as in criterion):
//! cargo run --release -p fanout-bench --bin ratios -- --compare-only \
//!     --variants sequential,joinset_semaphore64,fanout_run64,fanout_stream64,fanout_stream64_ordered
//! ```
//!
//! Before each measurement it waits (up to a minute) until other processes
//! use less than 8 % of the machine over 300 ms. The machine's load is
//! reported with every table: the time waited, the 1-minute load average
//! when the measurement started and the share of CPU time that other
//! processes used while it ran (from `/proc`).

use std::process::Command;
use std::time::Duration;

use fanout_bench::load::LoadMeter;
use fanout_bench::{cpu_task, runtime, timed_run, timed_run_with, TaskErr, Tracing, Variant};

const DEFAULT_SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

/// Rounds of the CPU-bound task in the parallelism check (about 20 µs).
const CPU_ROUNDS: u32 = 5_000;
/// Tasks in the parallelism check.
const CPU_N: u64 = 20_000;

fn reps_for(n: u64) -> usize {
    match n {
        n if n >= 1_000_000 => 7,
        n if n >= 100_000 => 11,
        _ => 21,
    }
}

fn child_reps_for(n: u64) -> usize {
    match n {
        n if n >= 1_000_000 => 3,
        n if n >= 100_000 => 4,
        _ => 7,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = DEFAULT_SIZES.to_vec();
    let mut rounds = 3;
    let mut child = None;
    let mut compare_only = false;
    let mut variants = Variant::ALL.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--sizes" => {
                sizes = value()
                    .split(',')
                    .map(|s| s.parse().unwrap_or_else(|_| usage("bad --sizes")))
                    .collect();
            }
            "--rounds" => rounds = value().parse().unwrap_or_else(|_| usage("bad --rounds")),
            "--compare-only" => compare_only = true,
            "--variants" => {
                variants = value()
                    .split(',')
                    .map(|name| {
                        Variant::ALL
                            .into_iter()
                            .find(|v| v.name() == name)
                            .unwrap_or_else(|| usage(&format!("unknown variant {name}")))
                    })
                    .collect();
            }
            "--child" => {
                child = Some(Tracing::from_name(value()).unwrap_or_else(|| usage("bad --child")));
            }
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if let Some(mode) = child {
        run_child(mode, &sizes);
        return;
    }
    println!("# fanout-bench ratios\n");
    println!(
        "Caller inside a `tokio::spawn`ed task on a multi-thread runtime with {} workers; limit {}; \
         task = splitmix64(i) behind #[inline(never)] + black_box, Result<u64, _>, results in input order.\n",
        fanout_bench::WORKERS,
        fanout_bench::LIMIT
    );
    compare(&sizes, &variants);
    if !compare_only {
        parallelism();
        tracing_children(&sizes, rounds);
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("ratios: {msg}");
    eprintln!(
        "usage: ratios [--sizes N,N,..] [--rounds R] [--compare-only] [--variants NAME,..]   \
         (or --child MODE, internal)"
    );
    std::process::exit(2)
}

/// Per-variant samples of one N, in ns per task.
struct Samples {
    ns: Vec<Vec<f64>>,
}

fn ns_per_task(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn compare(sizes: &[u64], variants: &[Variant]) {
    let rt = runtime(None);
    let mut results = Vec::new();
    for &n in sizes {
        let reps = reps_for(n);
        let waited = wait_quiet();
        let meter = LoadMeter::start();
        let (_, want) = timed_run(&rt, Variant::Sequential, n);
        // Warm-up: one run of each.
        for &v in variants {
            let (_, got) = timed_run(&rt, v, n);
            check(v, n, got, want);
        }
        let mut s = Samples {
            ns: vec![Vec::with_capacity(reps); variants.len()],
        };
        for rep in 0..reps {
            for k in 0..variants.len() {
                let idx = (k + rep) % variants.len();
                let v = variants[idx];
                let (d, got) = timed_run(&rt, v, n);
                check(v, n, got, want);
                s.ns[idx].push(ns_per_task(d, n));
            }
        }
        let load = meter.finish();
        results.push((n, reps, s, load, waited));
    }

    let head: String = results
        .iter()
        .map(|(n, reps, ..)| format!(" N = {} ({reps} reps) |", group(*n)))
        .collect();
    println!("## ns per task: median [min–max] of interleaved reps\n");
    println!("| variant | parallel? |{head}");
    println!("|---|---|{}", "---|".repeat(results.len()));
    for (k, v) in variants.iter().enumerate() {
        let cells: String = results
            .iter()
            .map(|(_, _, s, ..)| {
                let st = Stats::of(&s.ns[k]);
                format!(
                    " {} [{}–{}] |",
                    fmt_ns(st.median),
                    fmt_ns(st.min),
                    fmt_ns(st.max)
                )
            })
            .collect();
        let par = if v.parallel() { "yes" } else { "no" };
        println!("| {} | {par} |{cells}", v.label());
    }
    println!("\nEvery run's checksum equalled the sequential loop's (results complete and in input order).\n");

    let pos = |want: Variant| variants.iter().position(|&v| v == want);
    if let (Some(f), Some(j), Some(q)) = (
        pos(Variant::Fanout),
        pos(Variant::JoinSetSemaphore),
        pos(Variant::Sequential),
    ) {
        fanout_ratios(&results, f, j, q);
    }
    if let (Some(f), Some(sc), Some(so)) = (
        pos(Variant::Fanout),
        pos(Variant::FanoutStream),
        pos(Variant::FanoutStreamOrdered),
    ) {
        stream_ratios(&results, f, sc, so);
    }
    load_table(&results);
}

/// One N's measurements: N, reps, samples, load, time waited for quiet.
type Measured = (u64, usize, Samples, fanout_bench::load::Load, Duration);

fn fanout_ratios(results: &[Measured], f: usize, j: usize, q: usize) {
    println!("## fanout ratios (targets: fanout / JoinSet+Semaphore ≤ 0.5×, aim 0.2×)\n");
    println!(
        "| N | fanout ns | JoinSet+Semaphore ns | sequential ns | fanout / JoinSet+Semaphore | \
         same, median of per-rep ratios | fanout / sequential | ≤ 0.5× | ≤ 0.2× |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, _, s, ..) in results {
        let (fm, jm, qm) = (
            Stats::of(&s.ns[f]).median,
            Stats::of(&s.ns[j]).median,
            Stats::of(&s.ns[q]).median,
        );
        let paired: Vec<f64> = s.ns[f].iter().zip(&s.ns[j]).map(|(a, b)| a / b).collect();
        let ratio = fm / jm;
        println!(
            "| {} | {} | {} | {} | {:.3}× | {:.3}× | {:.1}× | {} | {} |",
            group(*n),
            fmt_ns(fm),
            fmt_ns(jm),
            fmt_ns(qm),
            ratio,
            Stats::of(&paired).median,
            fm / qm,
            yes_no(ratio <= 0.5),
            yes_no(ratio <= 0.2),
        );
    }
}

fn stream_ratios(results: &[Measured], f: usize, sc: usize, so: usize) {
    println!("\n## streams against run (target: stream / run ≤ 1.5×)\n");
    println!(
        "| N | run ns | stream (completion) ns | stream (input order) ns | \
         completion / run | same, median of per-rep ratios | input order / run | ≤ 1.5× |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (n, _, s, ..) in results {
        let (fm, cm, om) = (
            Stats::of(&s.ns[f]).median,
            Stats::of(&s.ns[sc]).median,
            Stats::of(&s.ns[so]).median,
        );
        let paired: Vec<f64> = s.ns[sc].iter().zip(&s.ns[f]).map(|(a, b)| a / b).collect();
        println!(
            "| {} | {} | {} | {} | {:.2}× | {:.2}× | {:.2}× | {} |",
            group(*n),
            fmt_ns(fm),
            fmt_ns(cm),
            fmt_ns(om),
            cm / fm,
            Stats::of(&paired).median,
            om / fm,
            yes_no(cm / fm <= 1.5),
        );
    }
}

fn load_table(results: &[Measured]) {
    println!("\n## load during the measurement above\n");
    println!(
        "| N | waited for a quiet machine | 1-min load average at start | \
         CPU share used by other processes during |"
    );
    println!("|---|---|---|---|");
    for (n, _, _, load, waited) in results {
        println!(
            "| {} | {} | {:.2} | {:.0} % |",
            group(*n),
            fmt_wait(*waited),
            load.loadavg_start,
            load.foreign * 100.0
        );
    }
    println!();
}

fn check(v: Variant, n: u64, got: u64, want: u64) {
    assert_eq!(
        got,
        want,
        "{} at N = {n}: checksum differs from the sequential loop's",
        v.name()
    );
}

fn cpu20(i: u64) -> Result<u64, TaskErr> {
    cpu_task(i, CPU_ROUNDS)
}

/// CPU-bound tasks: a variant that really runs tasks in parallel gets close
/// to a 2× speed-up over the sequential loop on 2 workers.
fn parallelism() {
    let rt = runtime(None);
    let variants = [
        Variant::Sequential,
        Variant::JoinSetSemaphore,
        Variant::Rayon,
        Variant::Fanout,
    ];
    let reps = 5;
    let waited = wait_quiet();
    let meter = LoadMeter::start();
    let (_, want) = timed_run_with(&rt, Variant::Sequential, CPU_N, cpu20);
    let mut ns = vec![Vec::new(); variants.len()];
    for rep in 0..=reps {
        for k in 0..variants.len() {
            let idx = (k + rep) % variants.len();
            let (d, got) = timed_run_with(&rt, variants[idx], CPU_N, cpu20);
            check(variants[idx], CPU_N, got, want);
            if rep > 0 {
                ns[idx].push(ns_per_task(d, CPU_N));
            }
        }
    }
    let load = meter.finish();
    let seq = Stats::of(&ns[0]).median;
    println!(
        "## parallelism check: {} CPU-bound tasks of {CPU_ROUNDS} splitmix64 rounds ({reps} reps; \
         waited {} for a quiet machine, load avg {:.2} at start, other processes {:.0} % CPU)\n",
        group(CPU_N),
        fmt_wait(waited),
        load.loadavg_start,
        load.foreign * 100.0
    );
    println!("| variant | µs per task, median [min–max] | speed-up vs sequential |");
    println!("|---|---|---|");
    for (k, v) in variants.iter().enumerate() {
        let st = Stats::of(&ns[k]);
        println!(
            "| {} | {:.2} [{:.2}–{:.2}] | {:.2}× |",
            v.label(),
            st.median / 1000.0,
            st.min / 1000.0,
            st.max / 1000.0,
            seq / st.median
        );
    }
    println!();
}

/// The variants measured under each subscriber: fanout, and the hand-rolled
/// `JoinSet` + `Semaphore` with the same span per task.
const TRACED: [Variant; 2] = [Variant::Fanout, Variant::JoinSetSemaphoreSpans];

/// In a child process: installs `mode` as the process-wide default
/// subscriber, runs each of [`TRACED`] over each N (one warm-up each, then a
/// few interleaved reps), and prints `variant n checksum ns ns ..` lines
/// for the parent.
fn run_child(mode: Tracing, sizes: &[u64]) {
    if let Some(d) = mode.dispatch() {
        tracing::dispatcher::set_global_default(d).expect("no default subscriber yet");
    }
    let rt = runtime(None);
    for &n in sizes {
        let sums: Vec<u64> = TRACED.iter().map(|&v| timed_run(&rt, v, n).1).collect();
        let mut ns = vec![Vec::new(); TRACED.len()];
        for rep in 0..child_reps_for(n) {
            for k in 0..TRACED.len() {
                let idx = (k + rep) % TRACED.len();
                let (d, got) = timed_run(&rt, TRACED[idx], n);
                assert_eq!(got, sums[idx], "checksum differs between runs");
                ns[idx].push(format!("{:.3}", ns_per_task(d, n)));
            }
        }
        for (k, v) in TRACED.iter().enumerate() {
            println!("{} {n} {} {}", v.name(), sums[k], ns[k].join(" "));
        }
    }
}

fn tracing_children(sizes: &[u64], rounds: usize) {
    let exe = std::env::current_exe().expect("own path");
    let sizes_arg = sizes
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let modes = Tracing::ALL;
    // ns[mode][variant][size] = samples
    let mut ns = vec![vec![vec![Vec::new(); sizes.len()]; TRACED.len()]; modes.len()];
    let rt = runtime(None);
    let want: Vec<u64> = sizes
        .iter()
        .map(|&n| timed_run(&rt, Variant::Sequential, n).1)
        .collect();
    drop(rt);
    let meter = LoadMeter::start();
    let mut waited = Duration::ZERO;
    for round in 0..rounds {
        for k in 0..modes.len() {
            let idx = (k + round) % modes.len();
            waited += wait_quiet();
            let out = Command::new(&exe)
                .args(["--child", modes[idx].name(), "--sizes", &sizes_arg])
                .output()
                .expect("running the child");
            assert!(
                out.status.success(),
                "child {} failed: {}",
                modes[idx].name(),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).expect("utf-8");
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                let name = fields.next().expect("variant");
                let v = TRACED
                    .iter()
                    .position(|v| v.name() == name)
                    .expect("known variant");
                let n: u64 = fields.next().and_then(|f| f.parse().ok()).expect("n");
                let sum: u64 = fields.next().and_then(|f| f.parse().ok()).expect("sum");
                let s = sizes.iter().position(|&x| x == n).expect("known n");
                assert_eq!(
                    sum,
                    want[s],
                    "{name} under {}: checksum differs from the sequential loop's",
                    modes[idx].name()
                );
                ns[idx][v][s].extend(fields.map(|f| f.parse::<f64>().expect("ns")));
            }
        }
    }
    let load = meter.finish();
    println!(
        "## under tracing subscribers ({rounds} rounds of one child process per subscriber, \
         interleaved; each subscriber is the process-wide default of its child; waited {} in all for a \
         quiet machine; load avg {:.2} at start, other processes {:.0} % CPU)\n",
        fmt_wait(waited),
        load.loadavg_start,
        load.foreign * 100.0
    );
    println!(
        "| N | variant | reps | no subscriber ns | registry() ns | fmt layer filtered to WARN ns | \
         registry / none | fmt WARN / none |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let median = |m: usize, v: usize, s: usize| Stats::of(&ns[m][v][s]).median;
    for (s, &n) in sizes.iter().enumerate() {
        for (v, variant) in TRACED.iter().enumerate() {
            let m: Vec<f64> = (0..modes.len()).map(|k| median(k, v, s)).collect();
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× |",
                group(n),
                variant.label(),
                ns[0][v][s].len(),
                fmt_ns(m[0]),
                fmt_ns(m[1]),
                fmt_ns(m[2]),
                m[1] / m[0],
                m[2] / m[0]
            );
        }
    }
    println!("\nfanout / (JoinSet + Semaphore + span per task), same subscriber:\n");
    println!("| N | no subscriber | registry() | fmt WARN |");
    println!("|---|---|---|---|");
    for (s, &n) in sizes.iter().enumerate() {
        let cells: String = (0..modes.len())
            .map(|m| format!(" {:.3}× |", median(m, 0, s) / median(m, 1, s)))
            .collect();
        println!("| {} |{cells}", group(n));
    }
    println!();
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(xs: &[f64]) -> Self {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Stats {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

fn fmt_ns(x: f64) -> String {
    if x < 100.0 {
        format!("{x:.1}")
    } else {
        group(x.round() as u64)
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "not met"
    }
}

/// The longest [`wait_quiet`] waits.
const QUIET_MAX_WAIT: Duration = Duration::from_secs(60);
/// Waits (at most [`QUIET_MAX_WAIT`]) until the machine is quiet; returns
/// the time waited.
fn wait_quiet() -> Duration {
    fanout_bench::load::wait_quiet(QUIET_MAX_WAIT).0
}

fn fmt_wait(d: Duration) -> String {
    if d >= QUIET_MAX_WAIT {
        format!("{:.1} s (gave up: not quiet)", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
