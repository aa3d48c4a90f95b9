//! The journal (feature `journal`): what a crash, a second run or another
//! run's journal can do to the file, and what the journal promises about
//! each. `torn` cuts a journal at every byte; `sigkill` kills a process
//! that appends records at random instants; the tests here check the lock,
//! the sidecar, the sync policies and the record format.

mod common;
#[path = "journal/sigkill.rs"]
mod sigkill;
#[path = "journal/torn.rs"]
mod torn;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fanout::journal::{
    parse, sidecar_path, EncodeError, Error, Fingerprint, Fingerprinter, Journal, JsonOutcomes,
    OnMismatch, Options, RecordFormat, SyncPolicy,
};
use fanout::{Outcome, TaskError};

/// The format most tests use: string keys, `u64` values, string errors.
pub(crate) type Format = JsonOutcomes<String, u64, String>;

pub(crate) fn format() -> Format {
    JsonOutcomes::new()
}

pub(crate) fn options(name: &str) -> Options {
    Options::new(Fingerprint::of([name])).summary(format!("test run {name}"))
}

pub(crate) fn key(i: u64) -> String {
    format!("key-{i}")
}

/// A temporary directory and a journal path in it.
pub(crate) fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    (dir, path)
}

/// A finished journal at `path` holding `ok` values for keys `0..n`.
fn journal_with(path: &Path, name: &str, n: u64) {
    let journal = options(name).create(path, format()).unwrap().journal;
    for i in 0..n {
        journal.record(&key(i), &Ok(i)).unwrap();
    }
    journal.finish().unwrap();
}

fn keys_of(records: &[(String, Outcome<u64, String>)]) -> Vec<String> {
    records.iter().map(|(k, _)| k.clone()).collect()
}

#[test]
fn a_second_open_of_a_journal_is_refused_while_the_first_holds_it() {
    let (_dir, path) = journal_path();
    let first = options("a").create(&path, format()).unwrap();
    for second in [
        options("a").resume(&path, format()),
        options("a").create(&path, format()),
    ] {
        let err = second.unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("in use by another run"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    // Refused without touching the file: the first run still has its header.
    assert_eq!(std::fs::read(&path).unwrap(), b"fanout-journal 1\n");
    drop(first);
    options("a").resume(&path, format()).unwrap();
}

#[test]
fn a_journal_of_another_run_is_refused_and_left_intact_unless_adopted() {
    let (_dir, path) = journal_path();
    journal_with(&path, "first", 3);
    let before = (
        std::fs::read(&path).unwrap(),
        std::fs::read(sidecar_path(&path)).unwrap(),
    );
    let err = options("second").resume(&path, format()).unwrap_err();
    let Error::Mismatch { summary, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(summary, "test run first");
    let message = err.to_string();
    assert!(
        message.contains("written by a different run (test run first)"),
        "{message}"
    );
    assert!(
        message.contains(&sidecar_path(&path).display().to_string()),
        "{message}"
    );
    let after = (
        std::fs::read(&path).unwrap(),
        std::fs::read(sidecar_path(&path)).unwrap(),
    );
    assert_eq!(before, after);

    let opened = options("second")
        .on_mismatch(OnMismatch::Adopt)
        .resume(&path, format())
        .unwrap();
    assert!(opened.adopted);
    let mut journal = opened.journal;
    assert_eq!(keys_of(&journal.load().unwrap()), [key(0), key(1), key(2)]);
    drop(journal);
    // Adopted: the journal is the second run's now.
    let opened = options("second").resume(&path, format()).unwrap();
    assert!(!opened.adopted);
    drop(opened);
    let err = options("first").resume(&path, format()).unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
}

#[test]
fn a_journal_without_its_sidecar_is_refused_unless_adopted() {
    let (_dir, path) = journal_path();
    journal_with(&path, "a", 2);
    std::fs::remove_file(sidecar_path(&path)).unwrap();
    let err = options("a").resume(&path, format()).unwrap_err();
    assert!(matches!(err, Error::NoSidecar { .. }), "{err:?}");
    assert!(!sidecar_path(&path).exists());
    let opened = options("a")
        .on_mismatch(OnMismatch::Adopt)
        .resume(&path, format())
        .unwrap();
    assert!(opened.adopted);
    assert_eq!(opened.previous, None);
}

#[test]
fn a_sidecar_of_another_kind_is_refused() {
    let (_dir, path) = journal_path();
    journal_with(&path, "a", 1);
    let sidecar = sidecar_path(&path);
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(text.starts_with("fanout-journal 2\n"), "{text}");
    std::fs::write(
        &sidecar,
        text.replace("fanout-journal 2", "fanout-joblog 2"),
    )
    .unwrap();
    let err = options("a").resume(&path, format()).unwrap_err();
    assert!(matches!(err, Error::BadSidecar { .. }), "{err:?}");
}

#[test]
fn a_damaged_line_before_the_last_is_an_error_naming_it() {
    let (_dir, path) = journal_path();
    journal_with(&path, "a", 3);
    let text = std::fs::read_to_string(&path).unwrap();
    let damaged = text.replacen("{\"key\":\"key-1\"", "{\"kee\":\"key-1\"", 1);
    assert_ne!(damaged, text);
    std::fs::write(&path, &damaged).unwrap();
    let err = options("a").resume(&path, format()).unwrap_err();
    let Error::Damaged { damage, .. } = &err else {
        panic!("expected damage, got {err:?}");
    };
    assert_eq!(damage.line(), 3);
    assert!(err.to_string().contains("is damaged"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);

    std::fs::write(&path, format!("not a journal\n{}", &text[17..])).unwrap();
    let err = options("a").resume(&path, format()).unwrap_err();
    assert!(
        matches!(&err, Error::Damaged { damage, .. } if damage.line() == 1),
        "{err:?}"
    );
}

#[test]
fn a_journal_without_records_is_started_over_whatever_its_sidecar() {
    let (_dir, path) = journal_path();
    options("first").create(&path, format()).unwrap();
    let opened = options("second").resume(&path, format()).unwrap();
    assert!(!opened.adopted);
    let previous = opened.previous.clone().unwrap();
    assert!(!previous.finished);
    drop(opened);
    // Started over for the second run: it resumes without a mismatch.
    options("second").resume(&path, format()).unwrap();
}

#[test]
fn the_previous_run_and_whether_it_finished_are_reported() {
    let (_dir, path) = journal_path();
    let first = options("a").create(&path, format()).unwrap();
    assert_eq!(first.previous, None);
    let first_id = first.journal.run_id();
    first.journal.finish().unwrap();

    let second = options("a").resume(&path, format()).unwrap();
    let previous = second.previous.clone().unwrap();
    assert_eq!((previous.id, previous.finished), (Some(first_id), true));
    assert_eq!(previous.summary, "test run a");
    let second_id = second.journal.run_id();
    assert_ne!(second_id, first_id);
    drop(second);

    let third = options("a").create(&path, format()).unwrap();
    let previous = third.previous.clone().unwrap();
    assert_eq!((previous.id, previous.finished), (Some(second_id), false));
}

#[test]
fn load_returns_every_record_including_this_runs() {
    let (_dir, path) = journal_path();
    journal_with(&path, "a", 2);
    let mut journal = options("a").resume(&path, format()).unwrap().journal;
    assert_eq!(keys_of(&journal.load().unwrap()), [key(0), key(1)]);
    journal
        .record(&key(0), &Err(TaskError::Failed("again".into())))
        .unwrap();
    let records = journal.load().unwrap();
    assert_eq!(keys_of(&records), [key(0), key(1), key(0)]);
    assert_eq!(
        records[2].1.as_ref().unwrap_err().as_failed().unwrap(),
        "again"
    );
}

#[test]
fn every_completed_outcome_reads_back_as_it_was_recorded() {
    let (_dir, path) = journal_path();
    let outcomes: Vec<(String, Outcome<u64, String>)> = vec![
        ("ok".into(), Ok(u64::MAX)),
        (
            "failed".into(),
            Err(TaskError::Failed("tab\t, newline\n, quote\"".into())),
        ),
        (
            "panicked".into(),
            Err(TaskError::Panicked(fanout::Panic::new(Box::new("boom")))),
        ),
        (
            "silent panic".into(),
            Err(TaskError::Panicked(fanout::Panic::new(Box::new(7u8)))),
        ),
        (
            "timed out".into(),
            Err(TaskError::TimedOut(Duration::from_millis(1500))),
        ),
        (
            "undeliverable".into(),
            Err(TaskError::Undeliverable("every worker died".into())),
        ),
        ("new\nline key".into(), Ok(0)),
    ];
    let journal = options("a").create(&path, format()).unwrap().journal;
    for (k, outcome) in &outcomes {
        journal.record(k, outcome).unwrap();
    }
    journal.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), outcomes.len() + 1, "{text}");
    let records = options("a")
        .resume(&path, format())
        .unwrap()
        .journal
        .load()
        .unwrap();
    assert_eq!(records.len(), outcomes.len());
    for ((k, expected), (read_k, read)) in outcomes.iter().zip(&records) {
        assert_eq!(k, read_k);
        match (expected, read) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(TaskError::Failed(a)), Err(TaskError::Failed(b))) => assert_eq!(a, b),
            (Err(TaskError::Panicked(a)), Err(TaskError::Panicked(b))) => {
                assert_eq!(a.message(), b.message());
            }
            (Err(TaskError::TimedOut(a)), Err(TaskError::TimedOut(b))) => assert_eq!(a, b),
            (Err(TaskError::Undeliverable(a)), Err(TaskError::Undeliverable(b))) => {
                assert_eq!(a, b)
            }
            (a, b) => panic!("{k}: recorded {a:?}, read {b:?}"),
        }
    }
}

#[test]
fn cancelled_and_never_started_tasks_are_not_recorded() {
    let (_dir, path) = journal_path();
    let mut journal = options("a").create(&path, format()).unwrap().journal;
    for outcome in [Err(TaskError::Cancelled), Err(TaskError::NotStarted)] {
        let err = journal.record(&key(0), &outcome).unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    }
    // Nothing was written, and the journal still records.
    assert_eq!(keys_of(&journal.load().unwrap()), Vec::<String>::new());
    journal.record(&key(1), &Ok(1)).unwrap();
    assert_eq!(keys_of(&journal.load().unwrap()), [key(1)]);
}

/// A broken format whose lines hold a newline.
struct TwoLines;

impl RecordFormat for TwoLines {
    type Key = u8;
    type Value = u8;
    fn kind(&self) -> &str {
        "two-lines"
    }
    fn header(&self) -> &str {
        "two lines"
    }
    fn encode(&self, key: &u8, value: &u8, line: &mut Vec<u8>) -> Result<(), EncodeError> {
        line.extend_from_slice(format!("{key}\n{value}").as_bytes());
        Ok(())
    }
    fn decode(&self, _line: &[u8]) -> Option<(u8, u8)> {
        None
    }
}

#[test]
fn a_record_whose_line_holds_a_newline_is_refused_and_not_written() {
    let (_dir, path) = journal_path();
    let journal: Journal<TwoLines> = options("a").create(&path, TwoLines).unwrap().journal;
    let err = journal.record(&1, &2).unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"two lines\n");
}

/// Records `n` records under `policy` and says how many syncs the journal
/// made.
fn syncs_after(policy: SyncPolicy, n: u64) -> (Journal<Format>, tempfile::TempDir) {
    let (dir, path) = journal_path();
    let journal = options("a")
        .sync(policy)
        .create(&path, format())
        .unwrap()
        .journal;
    for i in 0..n {
        journal.record(&key(i), &Ok(i)).unwrap();
    }
    (journal, dir)
}

#[test]
fn each_sync_policy_syncs_as_often_as_it_says() {
    let (journal, _dir) = syncs_after(SyncPolicy::None, 100);
    assert_eq!(journal.syncs(), 0);

    let (journal, _dir) = syncs_after(SyncPolicy::EveryRecord, 100);
    assert_eq!(journal.syncs(), 100);

    // Every tenth record; the five after the last group wait for `sync`.
    let (journal, _dir) = syncs_after(SyncPolicy::group(10, None), 105);
    assert_eq!(journal.syncs(), 10);
    journal.sync().unwrap();
    assert_eq!(journal.syncs(), 11);
    journal.sync().unwrap();
    assert_eq!(journal.syncs(), 11, "nothing left to sync");

    // An interval of zero: each record is written "the interval or more"
    // after the oldest unsynced one, itself, so each one syncs.
    let (journal, _dir) = syncs_after(SyncPolicy::group(1000, Some(Duration::ZERO)), 20);
    assert_eq!(journal.syncs(), 20);

    // An interval no test outlives: only the count triggers.
    let (journal, _dir) = syncs_after(SyncPolicy::group(8, Some(Duration::from_secs(3600))), 20);
    assert_eq!(journal.syncs(), 2);

    // `sync` works under any policy.
    let (journal, _dir) = syncs_after(SyncPolicy::None, 3);
    journal.sync().unwrap();
    assert_eq!(journal.syncs(), 1);
}

#[test]
#[should_panic(expected = "at least one record per group")]
fn a_group_of_no_records_is_refused() {
    let _ = SyncPolicy::group(0, None);
}

#[test]
fn a_finished_journal_says_so_in_its_sidecar() {
    let (_dir, path) = journal_path();
    let opened = options("a").create(&path, format()).unwrap();
    let run = opened.journal.run_id();
    let sidecar = std::fs::read_to_string(sidecar_path(&path)).unwrap();
    assert!(
        sidecar.contains(&format!("\nrun {run} running\n")),
        "{sidecar}"
    );
    opened.journal.finish().unwrap();
    let sidecar = std::fs::read_to_string(sidecar_path(&path)).unwrap();
    assert_eq!(
        sidecar,
        format!(
            "fanout-journal 2\nfingerprint {}\nrun {run} finished\nsummary test run a\n",
            Fingerprint::of(["a"])
        )
    );
}

#[test]
fn fingerprints_are_fnv_1a_of_length_prefixed_pieces() {
    // Computed independently from the documented algorithm.
    assert_eq!(
        Fingerprint::of(["echo", "--inputs--", "a"]).as_u64(),
        0x5228_2ba8_f200_fc15
    );
    assert_ne!(Fingerprint::of(["ab", "c"]), Fingerprint::of(["a", "bc"]));
    let mut hasher = Fingerprinter::new();
    hasher.feed(b"ab").feed(b"c");
    assert_eq!(hasher.finish(), Fingerprint::of(["ab", "c"]));
}

#[test]
fn parse_reads_only_complete_records_after_a_valid_header() {
    let f = format();
    assert_eq!(parse(&f, b"").unwrap().valid_len, 0);
    let torn_header = parse(&f, b"fanout-jour").unwrap();
    assert!(torn_header.torn && torn_header.records.is_empty());
    assert_eq!(parse(&f, b"fanout-journey\n").unwrap_err().line(), 1);
    assert_eq!(parse(&f, b"something else").unwrap_err().line(), 1);
}

#[test]
fn records_from_several_threads_at_once_are_each_appended_whole_once() {
    let (_dir, path) = journal_path();
    let mut journal = options("a")
        .sync(SyncPolicy::group(16, None))
        .create(&path, format())
        .unwrap()
        .journal;
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let journal = &journal;
            scope.spawn(move || {
                for i in 0..250 {
                    let n = thread * 1000 + i;
                    journal.record(&key(n), &Ok(n)).unwrap();
                }
            });
        }
    });
    assert_eq!(journal.syncs(), 1000 / 16);
    let records = journal.load().unwrap();
    let mut read: Vec<u64> = records
        .iter()
        .map(|(k, outcome)| {
            let n = *outcome.as_ref().unwrap();
            assert_eq!(*k, key(n));
            n
        })
        .collect();
    read.sort_unstable();
    let expected: Vec<u64> = (0..4)
        .flat_map(|t| (0..250).map(move |i| t * 1000 + i))
        .collect();
    assert_eq!(read, expected);
}
