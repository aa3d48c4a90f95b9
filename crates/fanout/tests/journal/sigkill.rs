//! A process appending records, killed with SIGKILL at random instants,
//! then resumed: every record it reported as written before the kill is
//! read back, none is recorded twice, and while it runs its journal is
//! refused to anyone else.
//!
//! The child is this test binary itself, run with `CHILD_ENV` set on the
//! ignored test `journal_child_process`: it resumes the journal, records
//! the keys not yet recorded in order, and prints `recorded K` after each
//! `record` returned. The parent reads those lines, kills the child after a
//! random number of them plus a random spin, and checks the file.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{format, journal_path, key, options};
use crate::common::{kill_soon, Rng};
use fanout::journal::{parse, sidecar_path, Error, SyncPolicy};

/// Set, to the journal's path, in the child's environment.
const CHILD_ENV: &str = "FANOUT_JOURNAL_TEST_CHILD";
/// The sync policy the child uses: `none`, `record` or `group`.
const POLICY_ENV: &str = "FANOUT_JOURNAL_TEST_POLICY";
/// How many keys the child records before it finishes (default: all).
const BATCH_ENV: &str = "FANOUT_JOURNAL_TEST_BATCH";
/// Replays a failed run of the trial: its seed.
const SEED_ENV: &str = "FANOUT_JOURNAL_TEST_SEED";
/// How many keys the child records in one run at most, so that a kill
/// lands in the middle of a run, and in all (more than the kills consume).
const BATCH: u64 = 1000;
const KEYS: u64 = 70_000;
/// How many kills the trial makes.
const KILLS: usize = 60;

/// The key of a child's `recorded K` line (the test harness may print its
/// own text before it on the same line).
fn reported_key(line: &str) -> Option<u64> {
    let (_, k) = line.split_once("recorded ")?;
    Some(k.trim().parse().unwrap())
}

#[test]
fn sigkill_at_random_instants_never_loses_a_reported_record_nor_records_one_twice() {
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
    let mut reported = BTreeSet::new();
    let mut recorded = 0u64;
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
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill::journal_child_process",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .env(POLICY_ENV, policy)
            .env(BATCH_ENV, BATCH.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wanted = rng.below(40);
        let mut seen_now = 0;
        while seen_now < wanted {
            let Some(line) = lines.next() else { break };
            if let Some(k) = reported_key(&line.unwrap()) {
                assert!(reported.insert(k), "{k} reported twice");
                seen_now += 1;
            }
        }
        if seen_now > 0 {
            // The child holds the lock while it records.
            let err = options("sigkill").resume(&path, format()).unwrap_err();
            assert!(matches!(err, Error::Locked { .. }), "{err:?}");
            refusals += 1;
        }
        // A child that finished its batch already is not killed.
        if kill_soon(&mut child, &mut rng) {
            kills += 1;
        }
        for line in lines {
            if let Some(k) = reported_key(&line.unwrap()) {
                assert!(reported.insert(k), "{k} reported twice");
            }
        }

        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Killed before it created the journal: then nothing was
            // ever reported or recorded.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    reported.is_empty() && recorded == 0,
                    "seed {seed}, kill {kills}: the journal is gone"
                );
                continue;
            }
            Err(e) => panic!("seed {seed}: cannot read the journal: {e}"),
        };
        let contents = parse(&format(), &bytes).unwrap();
        let keys: Vec<String> = contents.records.iter().map(|(k, _)| k.clone()).collect();
        // Keys are recorded in order, each once: the journal is 0, 1, ...
        let expected: Vec<String> = (0..keys.len() as u64).map(key).collect();
        assert_eq!(keys, expected, "seed {seed}, kill {kills}");
        for (i, (_, outcome)) in contents.records.iter().enumerate() {
            assert_eq!(outcome.as_ref().ok(), Some(&(i as u64)), "seed {seed}");
        }
        let now = keys.len() as u64;
        assert!(
            reported.iter().all(|&k| k < now),
            "seed {seed}, kill {kills}: a reported record is missing ({} reported, {now} recorded)",
            reported.len()
        );
        // At most the record in flight at the kill was written unreported.
        assert!(
            now - reported.len() as u64 <= 1,
            "seed {seed}, kill {kills}"
        );
        assert!(now >= recorded, "seed {seed}: records vanished");
        recorded = now;
        // The unreported record counts as reported from now on.
        reported.extend(0..now);
    }
    assert!(
        refusals > KILLS / 2,
        "only {refusals} lock checks were made in {runs} runs"
    );

    // A last run without a kill records the rest and finishes.
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill::journal_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &path)
        .env(POLICY_ENV, "none")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let contents = parse(&format(), &std::fs::read(&path).unwrap()).unwrap();
    let keys: Vec<String> = contents.records.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, (0..KEYS).map(key).collect::<Vec<_>>(), "seed {seed}");
    let sidecar = std::fs::read_to_string(sidecar_path(&path)).unwrap();
    assert!(sidecar.contains(" finished\n"), "{sidecar}");
    println!("{kills} kills in {runs} runs, {recorded} records before the last run, seed {seed}");
}

/// The child process of the trial above; it refuses to run on its own.
#[test]
#[ignore = "the child process of the SIGKILL trial, which runs it with its environment set"]
fn journal_child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        panic!("run by sigkill_at_random_instants_... as its child process, with {CHILD_ENV} set");
    };
    let policy = match std::env::var(POLICY_ENV).as_deref() {
        Ok("record") => SyncPolicy::EveryRecord,
        Ok("group") => SyncPolicy::group(8, None),
        _ => SyncPolicy::None,
    };
    let mut journal = options("sigkill")
        .sync(policy)
        .resume(&path, format())
        .unwrap()
        .journal;
    let done = journal.load().unwrap().len() as u64;
    let batch = std::env::var(BATCH_ENV).map_or(KEYS, |b| b.parse().unwrap());
    for i in done..KEYS.min(done + batch) {
        journal.record(&key(i), &Ok(i)).unwrap();
        println!("recorded {i}");
    }
    journal.finish().unwrap();
}
