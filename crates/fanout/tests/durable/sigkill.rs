//! A process running a journaled keyed run, killed with SIGKILL at random
//! instants and run again, compared with a run that was never interrupted:
//! no task whose outcome was recorded runs again, no outcome the process
//! saw is missing from the journal, no key is recorded twice, and the end
//! is the uninterrupted run's.
//!
//! The child is this test binary itself, run with `CHILD_ENV` set on the
//! ignored test `durable_child_process`: a journaled stream over `KEYS`
//! inputs, whose tasks print `ran N` when they start and whose consumer
//! prints `got key-N ran` or `got key-N recalled` for each outcome it is
//! handed, then `finished`. The parent reads those lines, kills the child
//! after a random number of outcomes plus a random spin, and checks the
//! journal against what the child printed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use fanout::journal::{RecordedFailures, SyncPolicy};
use fanout::{fan_out_keyed, Order};

use super::{expected, inputs, journal_path, key, options, plain, records_in};
use crate::common::{kill_soon, Rng};

/// Set, to the journal's path, in the child's environment.
const CHILD_ENV: &str = "FANOUT_DURABLE_TEST_CHILD";
/// The sync policy the child uses: `none`, `record` or `group`.
const POLICY_ENV: &str = "FANOUT_DURABLE_TEST_POLICY";
/// Replays a failed run of the trial: its seed.
const SEED_ENV: &str = "FANOUT_DURABLE_TEST_SEED";
/// Inputs of the run: more than the kills consume, so that each kill lands
/// in the middle of a run.
const KEYS: u64 = 20_000;
/// How many kills the trial makes.
const KILLS: usize = 60;

/// A line the child printed (the test harness may print its own text before
/// it on the same line).
#[derive(Debug)]
enum Said {
    Ran(u64),
    Got { key: String, recalled: bool },
    Finished,
}

fn said(line: &str) -> Option<Said> {
    if let Some((_, n)) = line.split_once("ran ") {
        if let Ok(n) = n.trim().parse() {
            return Some(Said::Ran(n));
        }
    }
    if let Some((_, rest)) = line.split_once("got ") {
        let (key, origin) = rest.trim().split_once(' ')?;
        return Some(Said::Got {
            key: key.to_owned(),
            recalled: origin == "recalled",
        });
    }
    line.ends_with("finished").then_some(Said::Finished)
}

/// What the parent knows across runs.
#[derive(Default)]
struct Seen {
    /// Keys the child was handed as run (not recalled), over every run.
    got_ran: BTreeSet<String>,
}

impl Seen {
    /// Checks one line of a run that started with `before` recorded.
    fn check(&mut self, said: &Said, before: &BTreeSet<String>, seed: u64) {
        match said {
            Said::Ran(n) => assert!(
                !before.contains(&key(*n)),
                "seed {seed}: input {n} ran again although its outcome was recorded"
            ),
            Said::Got { key, recalled } => {
                assert_eq!(
                    *recalled,
                    before.contains(key),
                    "seed {seed}: {key} recalled iff recorded before the run"
                );
                if !recalled {
                    assert!(
                        self.got_ran.insert(key.clone()),
                        "seed {seed}: {key} handed over as run twice"
                    );
                }
            }
            Said::Finished => {}
        }
    }
}

/// The keys recorded in the journal at `path`, checked: each once, with the
/// outcome its input gives, the ones recorded `before` first and unchanged.
fn check_journal(path: &Path, before: &[String], seed: u64) -> Vec<String> {
    if !path.exists() {
        // Killed before it created the journal: nothing was recorded yet.
        assert!(before.is_empty(), "seed {seed}: the journal is gone");
        return Vec::new();
    }
    let records = records_in(path);
    let keys: Vec<String> = records.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        &keys[..before.len()],
        before,
        "seed {seed}: records vanished"
    );
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "seed {seed}: a key recorded twice"
    );
    for (k, outcome) in &records {
        let i: u64 = k["key-".len()..].parse().unwrap();
        assert_eq!(plain(outcome), expected(i), "seed {seed}: {k}");
    }
    keys
}

fn child(path: &Path, policy: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "sigkill::durable_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, path)
        .env(POLICY_ENV, policy)
        .stdout(Stdio::piped());
    command
}

#[test]
fn sigkill_at_random_instants_never_reruns_a_recorded_task_nor_loses_or_repeats_an_outcome() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                | 1
        });
    println!("seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = Rng(seed);
    let (_dir, path) = journal_path();
    let mut seen = Seen::default();
    let mut recorded: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut refusals = 0;
    let mut runs = 0;
    while kills < KILLS {
        runs += 1;
        assert!(
            runs < 10 * KILLS,
            "seed {seed}: the child finishes before it can be killed"
        );
        let policy = ["none", "group", "record"][rng.below(3) as usize];
        let before: BTreeSet<String> = recorded.iter().cloned().collect();
        let mut process = child(&path, policy).spawn().unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let wanted = rng.below(40);
        let mut handed = 0;
        while handed < wanted {
            let Some(line) = lines.next() else { break };
            let Some(said) = said(&line.unwrap()) else {
                continue;
            };
            seen.check(&said, &before, seed);
            if matches!(
                said,
                Said::Got {
                    recalled: false,
                    ..
                }
            ) {
                handed += 1;
            }
        }
        if handed > 0 {
            // The child holds the journal while it runs.
            let err = fan_out_keyed(inputs(0..1))
                .journal_file::<u64, String>(&path, options("sigkill"))
                .unwrap_err();
            assert!(
                matches!(err, fanout::journal::Error::Locked { .. }),
                "{err:?}"
            );
            refusals += 1;
        }
        // A child that ended already is not killed.
        if kill_soon(&mut process, &mut rng) {
            kills += 1;
        }
        for line in lines {
            if let Some(said) = said(&line.unwrap()) {
                seen.check(&said, &before, seed);
            }
        }
        recorded = check_journal(&path, &recorded, seed);
        // Every outcome the child was handed had been recorded.
        let missing: Vec<&String> = seen
            .got_ran
            .iter()
            .filter(|k| !recorded.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "seed {seed}, kill {kills}: handed over but not recorded: {missing:?}"
        );
    }
    assert!(
        refusals > KILLS / 2,
        "only {refusals} lock checks were made in {runs} runs"
    );

    // A last run, not killed, does the rest and finishes.
    let before: BTreeSet<String> = recorded.iter().cloned().collect();
    let mut process = child(&path, "none").spawn().unwrap();
    let mut finished = false;
    let mut handed = BTreeMap::new();
    for line in BufReader::new(process.stdout.take().unwrap()).lines() {
        let Some(said) = said(&line.unwrap()) else {
            continue;
        };
        seen.check(&said, &before, seed);
        match said {
            Said::Got { key, recalled } => {
                assert!(handed.insert(key, recalled).is_none(), "seed {seed}");
            }
            Said::Finished => finished = true,
            Said::Ran(_) => {}
        }
    }
    assert!(process.wait().unwrap().success(), "seed {seed}");
    assert!(finished, "seed {seed}");
    assert_eq!(
        handed.len() as u64,
        KEYS,
        "seed {seed}: one outcome per input"
    );
    let recorded = check_journal(&path, &recorded, seed);
    assert_eq!(recorded.len() as u64, KEYS, "seed {seed}");

    // The same as a run that was never interrupted.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let uninterrupted =
        rt.block_on(fan_out_keyed(inputs(0..KEYS)).run_all(|_ctx, i| async move { expected(i) }));
    let want: BTreeMap<String, Result<u64, String>> = uninterrupted
        .into_outcomes()
        .into_iter()
        .map(|(k, o)| (k, plain(&o)))
        .collect();
    let got: BTreeMap<String, Result<u64, String>> = records_in(&path)
        .into_iter()
        .map(|(k, o)| (k, plain(&o)))
        .collect();
    assert!(
        got == want,
        "seed {seed}: the journal differs from an uninterrupted run"
    );
    let opened = options("sigkill")
        .resume(&path, super::Format::new())
        .unwrap();
    assert!(opened.previous.unwrap().finished, "seed {seed}");
    println!("{kills} kills in {runs} runs, seed {seed}");
}

/// The child process of the trial above; it refuses to run on its own.
#[test]
#[ignore = "the child process of the SIGKILL trial, which runs it with its environment set"]
fn durable_child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        panic!("run by sigkill_at_random_instants_... as its child process, with {CHILD_ENV} set");
    };
    let policy = match std::env::var(POLICY_ENV).as_deref() {
        Ok("record") => SyncPolicy::EveryRecord,
        Ok("group") => SyncPolicy::group(8, None),
        _ => SyncPolicy::None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut stream = fan_out_keyed(inputs(0..KEYS))
            .limit(8)
            .journal_file(&path, options("sigkill").sync(policy))
            .unwrap()
            .recorded_failures(RecordedFailures::Keep)
            .stream(Order::Completion, |_ctx, i| async move {
                println!("ran {i}");
                for _ in 0..i % 4 {
                    tokio::task::yield_now().await;
                }
                expected(i)
            });
        while let Some(item) = stream.next().await {
            let (k, _outcome, origin) = item.unwrap();
            let origin = if origin.is_recalled() {
                "recalled"
            } else {
                "ran"
            };
            println!("got {k} {origin}");
        }
        println!("finished");
    });
}
