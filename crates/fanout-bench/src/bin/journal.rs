//! What a journal record costs under each sync policy, side by side in one
//! process, on the disk that holds `--dir`.
//!
//! Two record formats: the library's `JsonOutcomes` (a `u64` key and an
//! `Ok(u64)` outcome) and a line shaped like a GNU parallel joblog record
//! (nine tab-separated fields, formatted per record, as the `fanout`
//! command writes them). For each: the format alone (encoding into memory,
//! no file), then `Journal::record` under `SyncPolicy::None`, `Group` of
//! 8, 64 and 512 records, and `EveryRecord`; and the cost of reading the
//! records back on resume. Variants run round-robin, `--rounds` times; the
//! table gives the median ns per record with the range.
//!
//! With `--cli PATH` (a release build of the `fanout` command) it also
//! times `fanout -j 8 true ::: 1..N` without a joblog and with
//! `--joblog-sync none|group|record`, round-robin, and gives the extra wall
//! time per job over the run without a joblog.
//!
//! ```text
//! cargo build --release -p fanout-cli -p fanout-bench
//! target/release/journal --cli target/release/fanout
//! target/release/journal --dir /mnt/other-disk --rounds 3
//! ```

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fanout::journal::{EncodeError, Fingerprint, JsonOutcomes, Options, RecordFormat, SyncPolicy};
use fanout_bench::load::{wait_quiet, LoadMeter};

/// Records per round for the policies that do not sync each record.
const RECORDS: u64 = 100_000;
/// Records per round under `EveryRecord` (each costs an `fdatasync`).
const SYNCED_RECORDS: u64 = 2_000;
/// Jobs per `fanout` run with `--cli`.
const CLI_JOBS: u64 = 2_000;

/// A line shaped like a GNU parallel joblog record.
#[derive(Debug, Clone, Copy)]
struct GnuLike;

impl RecordFormat for GnuLike {
    type Key = u64;
    type Value = u64;
    fn kind(&self) -> &str {
        "bench-gnu-like"
    }
    fn header(&self) -> &str {
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
    }
    fn encode(&self, seq: &u64, value: &u64, line: &mut Vec<u8>) -> Result<(), EncodeError> {
        let text = format!(
            "{seq}\t:\t{:.3}\t{:10.3}\t0\t{}\t0\t0\ttrue {seq}",
            1_796_189_922.117 + *seq as f64 / 1000.0,
            0.001,
            value % 7
        );
        line.extend_from_slice(text.as_bytes());
        Ok(())
    }
    fn decode(&self, line: &[u8]) -> Option<(u64, u64)> {
        let text = std::str::from_utf8(line).ok()?;
        let f: Vec<&str> = text.splitn(9, '\t').collect();
        if f.len() != 9 {
            return None;
        }
        f[2].parse::<f64>().ok()?;
        f[3].trim().parse::<f64>().ok()?;
        Some((f[0].parse().ok()?, f[5].parse().ok()?))
    }
}

type Json = JsonOutcomes<u64, u64, String>;

/// What one variant does per round.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// The format's `encode` into a reused buffer, no file.
    EncodeOnly,
    /// `Journal::record` under a policy.
    Record(SyncPolicy),
    /// Reading the records back (`Options::resume` + `load`).
    Resume,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::EncodeOnly => "format only (no file)".to_owned(),
            Mode::Record(SyncPolicy::None) => "record, sync none".to_owned(),
            Mode::Record(SyncPolicy::EveryRecord) => "record, sync every record".to_owned(),
            Mode::Record(SyncPolicy::Group { records, .. }) => {
                format!("record, sync group of {records}")
            }
            Mode::Record(other) => format!("record, {other:?}"),
            Mode::Resume => "resume (read back), per record".to_owned(),
        }
    }

    fn records(self) -> u64 {
        match self {
            Mode::Record(SyncPolicy::EveryRecord) => SYNCED_RECORDS,
            _ => RECORDS,
        }
    }
}

const MODES: [Mode; 7] = [
    Mode::EncodeOnly,
    Mode::Record(SyncPolicy::None),
    Mode::Record(SyncPolicy::Group {
        records: std::num::NonZeroU32::new(8).unwrap(),
        interval: None,
    }),
    Mode::Record(SyncPolicy::Group {
        records: std::num::NonZeroU32::new(64).unwrap(),
        interval: None,
    }),
    Mode::Record(SyncPolicy::Group {
        records: std::num::NonZeroU32::new(512).unwrap(),
        interval: None,
    }),
    Mode::Record(SyncPolicy::EveryRecord),
    Mode::Resume,
];

/// Runs one variant once; returns ns per record.
fn measure<F>(format: F, value: fn(u64) -> F::Value, mode: Mode, dir: &Path, name: &str) -> f64
where
    F: RecordFormat<Key = u64> + Copy,
{
    let n = mode.records();
    let path = dir.join(name);
    let options = Options::new(Fingerprint::of(["journal bench", name]));
    match mode {
        Mode::EncodeOnly => {
            let mut line = Vec::new();
            let start = Instant::now();
            for i in 0..n {
                line.clear();
                format.encode(&i, &value(i), &mut line).expect("encode");
                black_box(&line);
            }
            start.elapsed().as_nanos() as f64 / n as f64
        }
        Mode::Record(policy) => {
            let journal = options
                .sync(policy)
                .create(&path, format)
                .expect("create")
                .journal;
            let start = Instant::now();
            for i in 0..n {
                journal.record(&i, &value(i)).expect("record");
            }
            journal.sync().expect("sync");
            let elapsed = start.elapsed();
            journal.finish().expect("finish");
            elapsed.as_nanos() as f64 / n as f64
        }
        Mode::Resume => {
            let journal = options.create(&path, format).expect("create").journal;
            for i in 0..n {
                journal.record(&i, &value(i)).expect("record");
            }
            journal.finish().expect("finish");
            let options = Options::new(Fingerprint::of(["journal bench", name]));
            let start = Instant::now();
            let records = options
                .resume(&path, format)
                .expect("resume")
                .journal
                .load()
                .expect("load");
            let elapsed = start.elapsed();
            assert_eq!(records.len() as u64, n);
            elapsed.as_nanos() as f64 / n as f64
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn range(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The file system that holds `dir`, from `/proc/mounts`.
fn file_system(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} {} on {}", f[2], f[0], f[1])))
        })
        .max()
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = std::env::temp_dir();
    let mut rounds = 5;
    let mut cli = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--dir" => dir = PathBuf::from(value()),
            "--rounds" => rounds = value().parse().unwrap_or_else(|_| usage("bad --rounds")),
            "--cli" => cli = Some(PathBuf::from(value())),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let work = tempfile_dir(&dir);
    println!(
        "Journal benchmark: {} rounds, files in {} ({})\n",
        rounds,
        dir.display(),
        file_system(&dir)
    );
    records_table(&work, rounds);
    if let Some(cli) = cli {
        cli_table(&cli, &work, rounds);
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// A fresh directory under `dir` for this run's files.
fn tempfile_dir(dir: &Path) -> PathBuf {
    let work = dir.join(format!("fanout-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("creating the work directory");
    work
}

fn records_table(work: &Path, rounds: usize) {
    let (waited, quiet) = wait_quiet(Duration::from_secs(60));
    let meter = LoadMeter::start();
    let formats = ["JsonOutcomes", "GNU-like TSV"];
    let mut samples = vec![vec![Vec::new(); MODES.len()]; formats.len()];
    for round in 0..=rounds {
        for k in 0..MODES.len() {
            let m = (k + round) % MODES.len();
            for (f, samples) in samples.iter_mut().enumerate() {
                let name = format!("f{f}m{m}");
                let ns = if f == 0 {
                    measure(Json::new(), Ok, MODES[m], work, &name)
                } else {
                    measure(GnuLike, |i| i, MODES[m], work, &name)
                };
                // Round 0 warms up.
                if round > 0 {
                    samples[m].push(ns);
                }
            }
        }
    }
    let load = meter.finish();
    let mut out = String::new();
    writeln!(out, "### Per record: median [min–max] of {rounds} rounds").unwrap();
    writeln!(out).unwrap();
    writeln!(
        out,
        "| variant | records per round | {} | {} |",
        formats[0], formats[1]
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for (m, mode) in MODES.iter().enumerate() {
        let mut cells = Vec::new();
        for samples in &mut samples {
            let (lo, hi) = range(&samples[m]);
            let med = median(&mut samples[m]);
            cells.push(format!("{} [{}–{}]", fmt_ns(med), fmt_ns(lo), fmt_ns(hi)));
        }
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            mode.name(),
            mode.records(),
            cells[0],
            cells[1]
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nLoad: waited {:.1} s for a quiet machine ({}), 1-minute load average {:.2} at the start, other processes {:.0} % of the CPU time during the measurement.\n",
        waited.as_secs_f64(),
        if quiet { "quiet" } else { "not quiet after 60 s" },
        load.loadavg_start,
        load.foreign * 100.0
    )
    .unwrap();
    print!("{out}");
}

fn cli_table(cli: &Path, work: &Path, rounds: usize) {
    let variants: [(&str, Option<&str>); 4] = [
        ("no --joblog", None),
        ("--joblog-sync none", Some("none")),
        ("--joblog-sync group", Some("group")),
        ("--joblog-sync record", Some("record")),
    ];
    let inputs = work.join("inputs");
    let text: String = (1..=CLI_JOBS).map(|i| format!("{i}\n")).collect();
    std::fs::write(&inputs, text).expect("writing the inputs");
    let (waited, quiet) = wait_quiet(Duration::from_secs(60));
    let meter = LoadMeter::start();
    let mut secs = vec![Vec::new(); variants.len()];
    for round in 0..=rounds {
        for k in 0..variants.len() {
            let v = (k + round) % variants.len();
            let log = work.join("joblog");
            let _ = std::fs::remove_file(&log);
            let mut cmd = Command::new(cli);
            cmd.args(["-j", "8", "-a"]).arg(&inputs);
            if let Some(policy) = variants[v].1 {
                cmd.arg("--joblog")
                    .arg(&log)
                    .args(["--joblog-sync", policy]);
            }
            cmd.arg("true").stdout(Stdio::null());
            let start = Instant::now();
            let status = cmd.status().expect("running fanout");
            let elapsed = start.elapsed().as_secs_f64();
            assert!(status.success(), "{}: {status}", variants[v].0);
            if round > 0 {
                secs[v].push(elapsed);
            }
        }
    }
    let load = meter.finish();
    let base = median(&mut secs[0].clone());
    let base_min = range(&secs[0]).0;
    println!(
        "### `fanout -j 8 -a INPUTS true`, {CLI_JOBS} jobs: median [min–max] of {rounds} rounds\n"
    );
    println!(
        "| variant | wall time | per job | extra per job over no joblog: medians | minimums |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (v, (name, _)) in variants.iter().enumerate() {
        let (lo, hi) = range(&secs[v]);
        let med = median(&mut secs[v]);
        println!(
            "| {name} | {med:.3} s [{lo:.3}–{hi:.3}] | {:.0} µs | {:+.1} µs | {:+.1} µs |",
            med / CLI_JOBS as f64 * 1e6,
            (med - base) / CLI_JOBS as f64 * 1e6,
            (lo - base_min) / CLI_JOBS as f64 * 1e6
        );
    }
    println!(
        "\nLoad: waited {:.1} s for a quiet machine ({}), 1-minute load average {:.2} at the start, other processes {:.0} % of the CPU time during the measurement.",
        waited.as_secs_f64(),
        if quiet { "quiet" } else { "not quiet after 60 s" },
        load.loadavg_start,
        load.foreign * 100.0
    );
}

fn usage(msg: &str) -> ! {
    eprintln!("journal: {msg}");
    eprintln!("usage: journal [--dir DIR] [--rounds R] [--cli PATH-TO-FANOUT]");
    std::process::exit(2)
}
